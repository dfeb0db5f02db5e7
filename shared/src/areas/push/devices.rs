//! Registered push devices: `POST/GET /auth/devices`, `DELETE /auth/devices/{id}`.
//!
//! Keys (docs/data-model.md): the device `USER#{user}` / `DEVICE#{id}` (a user's devices
//! are one Query), and the token's owner `PUSHTOKEN#{platform}#{sha256(token)}` /
//! `PUSHTOKEN` naming the device that holds it. Invariant: a device item exists exactly
//! while its token's owner item names it, so a token belongs to one user at a time:
//! registering it again (another user, or the same one after a reinstall) deletes the old
//! device, writes the new one and moves the owner item in one transaction.
//!
//! A device remembers the session that registered it: logging that session out deletes it
//! (`AuthService::logout`, same transaction as the session).
//!
//! Storage cost (calls): register 3 (session + owner batch, the user's devices, one
//! transaction) plus the provider's endpoint call; list 2; delete 2.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::provider::PushProvider;
use crate::areas::auth::require_session;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, Principal};
use crate::kernel::context::{ServiceContext, found, retry_unversioned, version_conflict};
use crate::kernel::keys;
use crate::kernel::paging::query_all;
use crate::kernel::record::{from_item, to_item};
use crate::storage::{Condition, Query, SortKey, Store, Table, WriteOp};

/// Longest device token accepted (APNs tokens are 64 hex characters, FCM ones ~160; SNS
/// takes up to 4 KB).
pub const MAX_DEVICE_TOKEN_CHARS: usize = 4096;
/// Longest app id (a bundle id such as `com.example.momentum`).
pub const MAX_APP_ID_CHARS: usize = 255;
/// Devices one user may hold at once (bounds every push's fan-out and the logout
/// transaction: two deletes per device).
pub const MAX_DEVICES_PER_USER: usize = 20;

const NOT_FOUND: &str = "device";

/// The push service a device is reached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Apple Push Notification service (iOS, macOS).
    Apns,
    /// Firebase Cloud Messaging (Android).
    Fcm,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Apns => "apns",
            Platform::Fcm => "fcm",
        }
    }
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    pub platform: Platform,
    /// The token the platform gave the app (APNs device token, FCM registration token).
    #[schema(min_length = 1, max_length = 4096, pattern = "^[\\x21-\\x7E]+$")]
    pub token: String,
    /// The app's bundle / package id.
    #[schema(min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9._-]+$")]
    pub app_id: String,
}

/// A stored device (`USER#{user}` / `DEVICE#{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub id: String,
    pub user_id: String,
    pub platform: Platform,
    pub token: String,
    pub app_id: String,
    /// The session that registered it: logging it out deletes the device.
    pub session_id: String,
    /// The provider's address of the device (an SNS platform endpoint ARN); none locally.
    pub endpoint: Option<String>,
    pub created_at: String,
}

/// The owner of a token (`PUSHTOKEN#{platform}#{sha256}` / `PUSHTOKEN`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenOwner {
    pk: String,
    sk: String,
    entity: String,
    user_id: String,
    device_id: String,
}

/// A device as its owner sees it (the token is shown by its last characters only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub platform: Platform,
    pub app_id: String,
    /// The token's last 8 characters, to recognise it.
    pub token_suffix: String,
    /// Whether this device was registered by the session making the request.
    pub this_session: bool,
    pub created_at: String,
}

impl Device {
    fn of(r: &DeviceRecord, session_id: &str) -> Self {
        let chars: Vec<char> = r.token.chars().collect();
        Self {
            id: r.id.clone(),
            platform: r.platform,
            app_id: r.app_id.clone(),
            token_suffix: chars[chars.len().saturating_sub(8)..].iter().collect(),
            this_session: r.session_id == session_id,
            created_at: r.created_at.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedDevice {
    pub id: String,
    pub deleted: bool,
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn owner_key(platform: Platform, token: &str) -> crate::storage::Key {
    keys::push_token(platform.as_str(), &token_hash(token))
}

/// The two deletes that remove a device: its item and its token's owner item (only while
/// that still names it; the invariant says it does, a failure means a concurrent move).
fn delete_ops(device: &DeviceRecord) -> [WriteOp; 2] {
    [
        WriteOp::Delete {
            table: Table::Main,
            key: keys::device(&device.user_id, &device.id),
            condition: Some(Condition::Exists),
        },
        WriteOp::Delete {
            table: Table::Main,
            key: owner_key(device.platform, &device.token),
            condition: Some(Condition::AttrEquals(
                "device_id".into(),
                serde_json::json!(device.id),
            )),
        },
    ]
}

/// A user's devices, oldest first.
pub async fn devices_of(store: &dyn Store, user_id: &str) -> AppResult<Vec<DeviceRecord>> {
    query_all(
        store,
        Query::new(Table::Main, keys::user_partition(user_id))
            .sort(SortKey::BeginsWith(keys::DEVICE_PREFIX.into())),
    )
    .await?
    .into_iter()
    .map(from_item)
    .collect()
}

/// The devices `session_id` registered, and the writes that delete them (for the
/// transaction that ends the session).
pub async fn session_devices(
    store: &dyn Store,
    user_id: &str,
    session_id: &str,
) -> AppResult<(Vec<DeviceRecord>, Vec<WriteOp>)> {
    let devices: Vec<DeviceRecord> = devices_of(store, user_id)
        .await?
        .into_iter()
        .filter(|d| d.session_id == session_id)
        .collect();
    let ops = devices.iter().flat_map(delete_ops).collect();
    Ok((devices, ops))
}

/// The same rules as the schema of `RegisterDevice` (nothing is trimmed: a token with a
/// space is not a token).
fn validate(req: &RegisterDevice) -> AppResult<(String, String)> {
    let token = req.token.as_str();
    if token.is_empty() {
        return Err(AppError::validation("token", "is required"));
    }
    if token.chars().count() > MAX_DEVICE_TOKEN_CHARS {
        return Err(AppError::validation(
            "token",
            format!("must be at most {MAX_DEVICE_TOKEN_CHARS} characters"),
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AppError::validation(
            "token",
            "must be printable ASCII without spaces",
        ));
    }
    let app_id = req.app_id.as_str();
    if app_id.is_empty() {
        return Err(AppError::validation("app_id", "is required"));
    }
    if app_id.chars().count() > MAX_APP_ID_CHARS {
        return Err(AppError::validation(
            "app_id",
            format!("must be at most {MAX_APP_ID_CHARS} characters"),
        ));
    }
    if !app_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(AppError::validation(
            "app_id",
            "may contain only letters, digits, '.', '_' and '-'",
        ));
    }
    Ok((token.to_owned(), app_id.to_owned()))
}

pub struct DeviceService {
    ctx: ServiceContext,
    provider: Arc<dyn PushProvider>,
}

impl DeviceService {
    pub fn new(ctx: ServiceContext, provider: Arc<dyn PushProvider>) -> Self {
        Self { ctx, provider }
    }

    pub fn provider(&self) -> &Arc<dyn PushProvider> {
        &self.provider
    }

    /// Registers a device of the caller's session. Registering a token again moves it here
    /// (from another user, or from this user's older registration of it).
    pub async fn register(&self, who: &Principal, req: RegisterDevice) -> AppResult<Device> {
        require_session(who)?;
        let (token, app_id) = validate(&req)?;
        let platform = req.platform;
        // The provider's endpoint is made once, after the first read proved the session
        // live: creating it is idempotent for one token (SNS answers the existing
        // endpoint), so a failed transaction leaves nothing a retry would not reuse.
        let endpoint = tokio::sync::OnceCell::new();
        let record = retry_unversioned(None, || {
            self.register_once(who, platform, &token, &app_id, &endpoint)
        })
        .await?;
        Ok(Device::of(&record, &who.session_id))
    }

    async fn register_once(
        &self,
        who: &Principal,
        platform: Platform,
        token: &str,
        app_id: &str,
        endpoint: &tokio::sync::OnceCell<Option<String>>,
    ) -> AppResult<DeviceRecord> {
        let owner_key = owner_key(platform, token);
        let mut got = self
            .ctx
            .access
            .session(who, Action::Read, std::slice::from_ref(&owner_key))
            .await?;
        let owner: Option<TokenOwner> = got.pop().flatten().map(from_item).transpose()?;
        let endpoint = endpoint
            .get_or_try_init(|| self.provider.endpoint(platform, token))
            .await?
            .clone();
        let mut ops = Vec::new();
        if let Some(owner) = &owner {
            // The token's current device goes (moved away from its user, or replaced by
            // this registration of the same user); the owner item is rewritten below.
            let old = self
                .ctx
                .store
                .get(Table::Main, &keys::device(&owner.user_id, &owner.device_id))
                .await?;
            if old.is_none() {
                return Err(version_conflict());
            }
            ops.push(WriteOp::Delete {
                table: Table::Main,
                key: keys::device(&owner.user_id, &owner.device_id),
                condition: Some(Condition::Exists),
            });
        } else {
            let held = devices_of(self.ctx.store.as_ref(), &who.user_id)
                .await?
                .len();
            if held >= MAX_DEVICES_PER_USER {
                return Err(AppError::unprocessable(
                    "token",
                    format!("at most {MAX_DEVICES_PER_USER} devices per user; delete one first"),
                ));
            }
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        let key = keys::device(&who.user_id, &id);
        let record = DeviceRecord {
            pk: key.pk,
            sk: key.sk,
            entity: "device".into(),
            id: id.clone(),
            user_id: who.user_id.clone(),
            platform,
            token: token.to_owned(),
            app_id: app_id.to_owned(),
            session_id: who.session_id.clone(),
            endpoint,
            created_at: self.ctx.now(),
        };
        let new_owner = TokenOwner {
            pk: owner_key.pk.clone(),
            sk: owner_key.sk.clone(),
            entity: "push_token".into(),
            user_id: who.user_id.clone(),
            device_id: id,
        };
        ops.push(WriteOp::put_new(Table::Main, to_item(&record)));
        ops.push(match &owner {
            // Moved only if it still names the device read above.
            Some(old) => WriteOp::Put {
                table: Table::Main,
                item: to_item(&new_owner),
                condition: Some(Condition::AttrEquals(
                    "device_id".into(),
                    serde_json::json!(old.device_id),
                )),
            },
            None => WriteOp::put_new(Table::Main, to_item(&new_owner)),
        });
        match self.ctx.store.transact(ops).await {
            Ok(()) => Ok(record),
            // Someone registered or deleted the token meanwhile: read again and decide.
            Err(e) if e.is_condition_failure() => Err(version_conflict()),
            Err(e) => Err(e.into()),
        }
    }

    /// The caller's devices, oldest first.
    pub async fn list(&self, who: &Principal) -> AppResult<Vec<Device>> {
        require_session(who)?;
        self.ctx.access.session(who, Action::Read, &[]).await?;
        Ok(devices_of(self.ctx.store.as_ref(), &who.user_id)
            .await?
            .iter()
            .map(|d| Device::of(d, &who.session_id))
            .collect())
    }

    /// Deletes one of the caller's devices; its provider endpoint goes too.
    pub async fn delete(&self, who: &Principal, device_id: &str) -> AppResult<DeletedDevice> {
        require_session(who)?;
        // Ids are 32 lowercase hex characters (`Uuid::simple`); anything else names nothing.
        if device_id.len() != 32
            || !device_id
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(AppError::not_found(NOT_FOUND));
        }
        let key = keys::device(&who.user_id, device_id);
        let mut got = self
            .ctx
            .access
            .session(who, Action::Read, std::slice::from_ref(&key))
            .await?;
        let record: DeviceRecord = found(got.pop().flatten(), NOT_FOUND)?;
        if !self.remove(&record).await? {
            return Err(AppError::not_found(NOT_FOUND));
        }
        Ok(DeletedDevice {
            id: record.id,
            deleted: true,
        })
    }

    /// Deletes a device and then its provider endpoint; false when it was already gone
    /// (deleted or moved meanwhile).
    pub async fn remove(&self, device: &DeviceRecord) -> AppResult<bool> {
        match self.ctx.store.transact(delete_ops(device).to_vec()).await {
            Ok(()) => {}
            Err(e) if e.is_condition_failure() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.provider.forget(device).await;
        Ok(true)
    }

    /// The user's devices (what a push goes to).
    pub async fn of_user(&self, user_id: &str) -> AppResult<Vec<DeviceRecord>> {
        devices_of(self.ctx.store.as_ref(), user_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: &str, app_id: &str) -> RegisterDevice {
        RegisterDevice {
            platform: Platform::Apns,
            token: token.into(),
            app_id: app_id.into(),
        }
    }

    #[test]
    fn validation_names_the_field() {
        for bad in ["", " ", " abc", "a\tb", "é"] {
            assert_eq!(
                validate(&req(bad, "com.x")).unwrap_err().field.as_deref(),
                Some("token"),
                "{bad:?}"
            );
        }
        let long = "a".repeat(MAX_DEVICE_TOKEN_CHARS + 1);
        assert_eq!(
            validate(&req(&long, "com.x")).unwrap_err().field.as_deref(),
            Some("token")
        );
        assert_eq!(
            validate(&req("abc", "")).unwrap_err().field.as_deref(),
            Some("app_id")
        );
        for bad in ["com x", " com.x", &"a".repeat(MAX_APP_ID_CHARS + 1)] {
            assert_eq!(
                validate(&req("abc", bad)).unwrap_err().field.as_deref(),
                Some("app_id"),
                "{bad:?}"
            );
        }
        assert!(validate(&req(&"a".repeat(MAX_DEVICE_TOKEN_CHARS), "com.x")).is_ok());
    }
}
