//! Accounts, sessions and tokens. Used by the REST auth function and (later) WebSocket
//! `update_profile`; it sees no HTTP types.
//!
//! Storage cost (calls): register 1 (transaction), login 3 (email marker, user, session
//! transaction), refresh 2 (token, rotation transaction), logout 2 (the session's push
//! devices, one transaction), get profile 1 (batch of user + session), update profile 2,
//! change password 3.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::model::{EmailMarker, Profile, RefreshRecord, UserRecord};
use crate::areas::push::DeviceService;
use crate::areas::push::devices::session_devices;
use crate::auth::{PasswordHasher, TokenIssuer, new_refresh_token, refresh_token_hash};
use crate::clock::Clock;
use crate::config::AuthConfig;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Principal, SessionRecord, TOKEN_REVOKED, is_api_token, parse_token};
use crate::kernel::changes::{ChangeLog, Revocation};
use crate::kernel::context::{retry_unversioned, version_conflict};
use crate::kernel::input::text::{normalize_email, optional_text, optional_url, validate_username};
use crate::kernel::keys;
use crate::kernel::limits::{MAX_BIO_CHARS, MAX_DISPLAY_NAME_CHARS, MAX_EMAIL_CHARS};
use crate::kernel::paging::query_all;
use crate::kernel::record::{from_item, to_item};
use crate::ratelimit::{AuthAction, RateLimits};
use crate::storage::{
    Condition, MAX_TRANSACTION_OPS, Query, SortKey, Store, Table, Update, WriteOp,
};

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(min_length = 3, max_length = 254, format = Email)]
    pub email: String,
    #[schema(pattern = "^\\s*[A-Za-z0-9][A-Za-z0-9_.-]{2,31}\\s*$")]
    pub username: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[serde(default)]
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(min_length = 1, max_length = 512)]
    pub refresh_token: String,
}

/// Absent fields stay as they are; `null` or `""` clears an optional field.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    #[serde(default)]
    #[schema(pattern = "^\\s*[A-Za-z0-9][A-Za-z0-9_.-]{2,31}\\s*$")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 100)]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(
        max_length = 2048,
        pattern = "^\\s*(https://[^/\\s\\x00-\\x1F\\x7F-\\x9F][^\\s\\x00-\\x1F\\x7F-\\x9F]*)?\\s*$"
    )]
    pub avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 500)]
    pub bio: Option<Option<String>>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// The same answer whether or not the email was already registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegisterAccepted {
    pub status: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    #[serde(flatten)]
    pub tokens: TokenPair,
    pub user: Profile,
}

/// The account routes (`/auth/*`: logout, profile, password, tokens) need a signed-in
/// session: an API token cannot end sessions, change who the user is or mint more tokens,
/// so a leaked one cannot take the account over.
pub fn require_session(who: &Principal) -> AppResult<()> {
    if who.is_api_token() {
        return Err(AppError::forbidden(
            "API tokens are not accepted on account routes; sign in",
        ));
    }
    Ok(())
}

const INVALID_CREDENTIALS: &str = "invalid email or password";
const SESSION_REVOKED: &str = "session expired or revoked; log in again";
use crate::kernel::limits::MAX_LOGIN_PASSWORD_BYTES;

pub struct AuthService {
    store: Arc<dyn Store>,
    hasher: PasswordHasher,
    tokens: TokenIssuer,
    refresh_ttl_secs: u64,
    clock: Arc<dyn Clock>,
    limits: Arc<RateLimits>,
    /// Where ended sessions are announced (their sockets close).
    changes: ChangeLog,
    /// Push devices, deleted with the session that registered them.
    devices: Option<Arc<DeviceService>>,
}

impl AuthService {
    pub fn new(store: Arc<dyn Store>, config: &AuthConfig, clock: Arc<dyn Clock>) -> Self {
        Self::with_hasher(
            store,
            config,
            clock,
            PasswordHasher::new(config.hash_concurrency),
        )
    }

    pub fn with_hasher(
        store: Arc<dyn Store>,
        config: &AuthConfig,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
    ) -> Self {
        Self {
            changes: ChangeLog::new(store.clone(), clock.clone()),
            store,
            hasher,
            tokens: TokenIssuer::new(config),
            refresh_ttl_secs: config.refresh_ttl_secs,
            clock,
            limits: Arc::new(RateLimits::unlimited()),
            devices: None,
        }
    }

    /// The push devices logout deletes (those the ended session registered).
    pub fn with_devices(mut self, devices: Arc<DeviceService>) -> Self {
        self.devices = Some(devices);
        self
    }

    /// The change log whose sink hears of ended sessions (the services' one, so the shim's
    /// sink installed there closes sockets).
    pub fn with_changes(mut self, changes: ChangeLog) -> Self {
        self.changes = changes;
        self
    }

    /// A revocation of `sessions` of `user_id`: its item goes into the transaction that
    /// deletes them; `announce` after that transaction committed.
    fn revocation(&self, user_id: &str, sessions: Vec<String>) -> (Revocation, WriteOp) {
        let revocation = Revocation {
            user_id: user_id.to_owned(),
            session_ids: sessions,
            at: self.clock.rfc3339(),
        };
        let op = revocation.op(self.clock.epoch_secs());
        (revocation, op)
    }

    /// The rate limits login, register and refresh obey (none unless set).
    pub fn with_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = limits;
        self
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// Verifies a bearer credential without a storage call: an access token (JWT) by its
    /// signature, an API token (`mtm_pat_...`) by its shape only. Session liveness, and an
    /// API token's hash, expiry, scopes and restriction, are checked by the service calls
    /// that read on the user's behalf, in the same batch as their data.
    pub fn authenticate(&self, bearer: &str) -> AppResult<Principal> {
        if is_api_token(bearer) {
            let (user_id, proof) =
                parse_token(bearer).ok_or_else(|| AppError::unauthorized(TOKEN_REVOKED))?;
            return Ok(Principal::api_token(user_id, proof));
        }
        let claims = self.tokens.verify_at(bearer, self.clock.epoch_secs())?;
        Ok(Principal::session(claims.sub, claims.sid))
    }

    /// Registers an account. `client` is the caller's network address (rate limits:
    /// per address, then per email).
    pub async fn register(
        &self,
        client: Option<IpAddr>,
        req: RegisterRequest,
    ) -> AppResult<RegisterAccepted> {
        self.limits
            .check_auth_ip(AuthAction::Register, client)
            .await?;
        let (email, email_key) = normalize_email("email", &req.email)?;
        self.limits
            .check_auth_user(AuthAction::Register, &email_key)
            .await?;
        let username = validate_username("username", &req.username)?;
        crate::auth::password::validate_password("password", &req.password)?;
        let display_name = optional_text(
            "display_name",
            req.display_name.as_deref(),
            MAX_DISPLAY_NAME_CHARS,
        )?;
        // Hash before looking at the email so both outcomes cost the same time.
        let password_hash = self.hasher.hash(req.password).await?;
        let now = self.clock.rfc3339();
        let id = uuid::Uuid::now_v7().to_string();
        let user_key = keys::user(&id);
        let user = UserRecord {
            pk: user_key.pk,
            sk: user_key.sk,
            entity: "user".into(),
            id: id.clone(),
            email,
            email_key: email_key.clone(),
            username,
            display_name,
            avatar_url: None,
            bio: None,
            password_hash,
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        let marker_key = keys::email(&email_key);
        let marker = EmailMarker {
            pk: marker_key.pk,
            sk: marker_key.sk,
            entity: "email_marker".into(),
            user_id: id,
        };
        let result = self
            .store
            .transact(vec![
                WriteOp::put_new(Table::Main, to_item(&user)),
                WriteOp::put_new(Table::Main, to_item(&marker)),
            ])
            .await;
        match result {
            Ok(()) => {}
            // The email is taken: answer exactly as for a new account.
            Err(e) if e.condition_failed_at(1) => {
                tracing::info!("registration for an existing email ignored");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(RegisterAccepted {
            status: "accepted".into(),
            message: "If this email can be registered, the account is ready: log in to continue."
                .into(),
        })
    }

    /// Logs in. `client` is the caller's network address (rate limits: per address, then
    /// per account).
    pub async fn login(
        &self,
        client: Option<IpAddr>,
        req: LoginRequest,
    ) -> AppResult<LoginResponse> {
        self.limits.check_auth_ip(AuthAction::Login, client).await?;
        if req.email.trim().is_empty() {
            return Err(AppError::validation("email", "is required"));
        }
        if req.email.trim().chars().count() > MAX_EMAIL_CHARS {
            return Err(AppError::validation(
                "email",
                format!("must be at most {MAX_EMAIL_CHARS} characters"),
            ));
        }
        if req.password.is_empty() {
            return Err(AppError::validation("password", "is required"));
        }
        if req.password.len() > MAX_LOGIN_PASSWORD_BYTES {
            return Err(AppError::validation("password", "is too long"));
        }
        let email_key = req.email.trim().to_lowercase();
        self.limits
            .check_auth_user(AuthAction::Login, &email_key)
            .await?;
        let marker = self
            .store
            .get(Table::Main, &keys::email(&email_key))
            .await?;
        let user: Option<UserRecord> = match marker {
            Some(m) => {
                let marker: EmailMarker = from_item(m)?;
                self.store
                    .get(Table::Main, &keys::user(&marker.user_id))
                    .await?
                    .map(from_item)
                    .transpose()?
            }
            None => None,
        };
        let Some(user) = user else {
            self.hasher.verify_nobody(req.password).await?;
            return Err(AppError::unauthorized(INVALID_CREDENTIALS));
        };
        let check = self
            .hasher
            .verify(req.password.clone(), user.password_hash.clone())
            .await?;
        if !check.valid {
            return Err(AppError::unauthorized(INVALID_CREDENTIALS));
        }
        let mut extra = Vec::new();
        if check.needs_rehash {
            let rehashed = self.hasher.hash(req.password).await?;
            extra.push(WriteOp::Update {
                table: Table::Main,
                key: keys::user(&user.id),
                update: Update::default().set("password_hash", rehashed),
                // Only if the password did not change meanwhile.
                condition: Some(Condition::AttrEquals(
                    "password_hash".into(),
                    json!(user.password_hash),
                )),
            });
        }
        let tokens = self.open_session(&user.id, extra).await?;
        Ok(LoginResponse {
            tokens,
            user: Profile::from(&user),
        })
    }

    /// Writes a new session and its first refresh token, plus `extra` writes, atomically.
    async fn open_session(&self, user_id: &str, extra: Vec<WriteOp>) -> AppResult<TokenPair> {
        let session_id = uuid::Uuid::now_v7().to_string();
        let now = self.clock.epoch_secs();
        let stamp = self.clock.rfc3339();
        let expires_at = now + self.refresh_ttl_secs;
        let key = keys::session(user_id, &session_id);
        let session = SessionRecord {
            pk: key.pk,
            sk: key.sk,
            entity: "session".into(),
            user_id: user_id.to_owned(),
            session_id: session_id.clone(),
            created_at: stamp.clone(),
            last_used_at: stamp,
            expires_at,
            ttl: expires_at,
        };
        let (refresh_token, refresh_op) = self.new_refresh(user_id, &session_id, now);
        let mut ops = vec![WriteOp::put_new(Table::Main, to_item(&session)), refresh_op];
        let n_extra = extra.len();
        ops.extend(extra);
        if let Err(e) = self.store.transact(ops).await {
            if n_extra > 0 && e.condition_failed_at(2) {
                return Err(AppError::unauthorized(INVALID_CREDENTIALS));
            }
            return Err(e.into());
        }
        self.token_pair(user_id, &session_id, refresh_token, now)
    }

    fn new_refresh(&self, user_id: &str, session_id: &str, now: u64) -> (String, WriteOp) {
        let token = new_refresh_token();
        let key = keys::refresh_token(&refresh_token_hash(&token));
        let expires_at = now + self.refresh_ttl_secs;
        let record = RefreshRecord {
            pk: key.pk,
            sk: key.sk,
            entity: "refresh_token".into(),
            user_id: user_id.to_owned(),
            session_id: session_id.to_owned(),
            used: false,
            expires_at,
            ttl: expires_at,
        };
        (token, WriteOp::put_new(Table::Main, to_item(&record)))
    }

    fn token_pair(
        &self,
        user_id: &str,
        session_id: &str,
        refresh_token: String,
        now: u64,
    ) -> AppResult<TokenPair> {
        Ok(TokenPair {
            access_token: self.tokens.issue(user_id, session_id, now)?,
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: self.tokens.ttl_secs(),
            refresh_expires_in: self.refresh_ttl_secs,
        })
    }

    /// Rotates a refresh token: the old one is spent, a new one issued in the same session.
    /// Presenting a spent token again revokes the whole session (token family).
    /// `client` is the caller's network address (rate limits: per address, then per user).
    pub async fn refresh(
        &self,
        client: Option<IpAddr>,
        req: RefreshRequest,
    ) -> AppResult<TokenPair> {
        self.limits
            .check_auth_ip(AuthAction::Refresh, client)
            .await?;
        let token = req.refresh_token.trim();
        if token.is_empty() {
            return Err(AppError::validation("refresh_token", "is required"));
        }
        if token.len() > 256 {
            return Err(AppError::unauthorized("invalid refresh token"));
        }
        let key = keys::refresh_token(&refresh_token_hash(token));
        let Some(item) = self.store.get(Table::Main, &key).await? else {
            return Err(AppError::unauthorized("invalid refresh token"));
        };
        let record: RefreshRecord = from_item(item)?;
        self.limits
            .check_auth_user(AuthAction::Refresh, &record.user_id)
            .await?;
        let now = self.clock.epoch_secs();
        if record.used {
            // Reuse of a rotated token: someone holds a copy. Revoke the family.
            let (revocation, announce) =
                self.revocation(&record.user_id, vec![record.session_id.clone()]);
            self.store
                .transact(vec![
                    WriteOp::Delete {
                        table: Table::Main,
                        key: keys::session(&record.user_id, &record.session_id),
                        condition: None,
                    },
                    announce,
                ])
                .await?;
            self.changes.revoked(revocation);
            tracing::warn!(user_id = %record.user_id, "refresh token reuse: session revoked");
            return Err(AppError::unauthorized(
                "refresh token reuse detected; the session was revoked",
            ));
        }
        if record.expires_at <= now {
            return Err(AppError::unauthorized("refresh token expired"));
        }
        let (new_token, new_op) = self.new_refresh(&record.user_id, &record.session_id, now);
        let session_expiry = now + self.refresh_ttl_secs;
        let result = self
            .store
            .transact(vec![
                WriteOp::Update {
                    table: Table::Main,
                    key,
                    update: Update::default().set("used", true).set("used_at", now),
                    condition: Some(Condition::AttrEquals("used".into(), json!(false))),
                },
                new_op,
                WriteOp::Update {
                    table: Table::Main,
                    key: keys::session(&record.user_id, &record.session_id),
                    update: Update::default()
                        .set("last_used_at", self.clock.rfc3339())
                        .set("expires_at", session_expiry)
                        .set("ttl", session_expiry),
                    condition: Some(Condition::Exists),
                },
            ])
            .await;
        match result {
            Ok(()) => self.token_pair(&record.user_id, &record.session_id, new_token, now),
            // A concurrent refresh with the same token won: this one is refused. It is not
            // treated as reuse, since it cannot be told apart from a client's retry.
            Err(e) if e.condition_failed_at(0) => {
                Err(AppError::unauthorized("refresh token already used"))
            }
            Err(e) if e.condition_failed_at(2) => Err(AppError::unauthorized(SESSION_REVOKED)),
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes the caller's session: its refresh tokens and access tokens stop working, and
    /// the push devices it registered are deleted in the same transaction (their provider
    /// endpoints right after).
    pub async fn logout(&self, who: &Principal) -> AppResult<()> {
        require_session(who)?;
        let (revocation, announce) = self.revocation(&who.user_id, vec![who.session_id.clone()]);
        let mut attempt = 0;
        let devices = loop {
            let (devices, device_ops) = match &self.devices {
                Some(_) => {
                    session_devices(self.store.as_ref(), &who.user_id, &who.session_id).await?
                }
                None => (Vec::new(), Vec::new()),
            };
            let mut ops = vec![
                WriteOp::Delete {
                    table: Table::Main,
                    key: keys::session(&who.user_id, &who.session_id),
                    condition: None,
                },
                announce.clone(),
            ];
            ops.extend(device_ops);
            match self.store.transact(ops).await {
                Ok(()) => break devices,
                // A device was moved to another user or deleted meanwhile: read again.
                Err(e) if e.is_condition_failure() && attempt < 3 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        };
        self.changes.revoked(revocation);
        if let Some(service) = &self.devices {
            for device in &devices {
                service.provider().forget(device).await;
            }
        }
        Ok(())
    }

    /// Loads the caller's user record, checking in the same call that the session is live.
    /// Every account route (profile, password) goes through here, so none accepts an API
    /// token.
    async fn load_user(&self, who: &Principal) -> AppResult<UserRecord> {
        require_session(who)?;
        let got = self
            .store
            .batch_get(
                Table::Main,
                &[
                    keys::user(&who.user_id),
                    keys::session(&who.user_id, &who.session_id),
                ],
            )
            .await?;
        let [user, session] = <[_; 2]>::try_from(got)
            .map_err(|_| AppError::internal("batch get returned a wrong count"))?;
        let session: SessionRecord = session
            .map(from_item)
            .transpose()?
            .ok_or_else(|| AppError::unauthorized(SESSION_REVOKED))?;
        if session.expires_at <= self.clock.epoch_secs() {
            return Err(AppError::unauthorized(SESSION_REVOKED));
        }
        user.map(from_item)
            .transpose()?
            .ok_or_else(|| AppError::unauthorized(SESSION_REVOKED))
    }

    pub async fn profile(&self, who: &Principal) -> AppResult<Profile> {
        Ok(Profile::from(&self.load_user(who).await?))
    }

    pub async fn update_profile(
        &self,
        who: &Principal,
        req: UpdateProfileRequest,
    ) -> AppResult<Profile> {
        // A profile has no client-stated version: a concurrent change is always retried.
        retry_unversioned(None, || self.update_profile_once(who, &req)).await
    }

    async fn update_profile_once(
        &self,
        who: &Principal,
        req: &UpdateProfileRequest,
    ) -> AppResult<Profile> {
        let mut user = self.load_user(who).await?;
        let mut update = Update::default();
        if let Some(username) = &req.username {
            user.username = validate_username("username", username)?;
            update = update.set("username", user.username.clone());
        }
        if let Some(display_name) = &req.display_name {
            user.display_name = optional_text(
                "display_name",
                display_name.as_deref(),
                MAX_DISPLAY_NAME_CHARS,
            )?;
            update = update.set("display_name", json!(user.display_name));
        }
        if let Some(avatar_url) = &req.avatar_url {
            user.avatar_url = optional_url("avatar_url", avatar_url.as_deref())?;
            update = update.set("avatar_url", json!(user.avatar_url));
        }
        if let Some(bio) = &req.bio {
            user.bio = optional_text("bio", bio.as_deref(), MAX_BIO_CHARS)?;
            update = update.set("bio", json!(user.bio));
        }
        if update.set.is_empty() {
            return Ok(Profile::from(&user));
        }
        user.updated_at = self.clock.rfc3339();
        let update = update
            .set("updated_at", user.updated_at.clone())
            .add("version", 1);
        let result = self
            .store
            .transact(vec![WriteOp::Update {
                table: Table::Main,
                key: keys::user(&user.id),
                update,
                condition: Some(Condition::VersionEquals(user.version)),
            }])
            .await;
        match result {
            Ok(()) => {
                user.version += 1;
                Ok(Profile::from(&user))
            }
            Err(e) if e.condition_failed_at(0) => Err(version_conflict()),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes the password and revokes every session of the user, including the caller's;
    /// the caller gets a fresh session in the same transaction.
    pub async fn change_password(
        &self,
        who: &Principal,
        req: ChangePasswordRequest,
    ) -> AppResult<TokenPair> {
        let user = self.load_user(who).await?;
        crate::auth::password::validate_password("new_password", &req.new_password)?;
        if req.current_password.len() > MAX_LOGIN_PASSWORD_BYTES {
            return Err(AppError::forbidden("current password is incorrect"));
        }
        let check = self
            .hasher
            .verify(req.current_password, user.password_hash.clone())
            .await?;
        if !check.valid {
            return Err(AppError::forbidden("current password is incorrect"));
        }
        let new_hash = self.hasher.hash(req.new_password).await?;

        let sessions: Vec<crate::storage::Key> = query_all(
            self.store.as_ref(),
            Query::new(Table::Main, keys::user_partition(&user.id))
                .sort(SortKey::BeginsWith(keys::SESSION_PREFIX.into())),
        )
        .await?
        .iter()
        .filter_map(crate::storage::Key::of)
        .collect();
        let ended: Vec<String> = sessions
            .iter()
            .filter_map(|k| k.sk.strip_prefix(keys::SESSION_PREFIX).map(str::to_owned))
            .collect();
        let (revocation, announce) = self.revocation(&user.id, ended);
        let deletes: Vec<WriteOp> = sessions
            .into_iter()
            .map(|key| WriteOp::Delete {
                table: Table::Main,
                key,
                condition: None,
            })
            .collect();
        // The final transaction carries the password change, the new session and as many
        // revocations as fit; any overflow is revoked first.
        let room = MAX_TRANSACTION_OPS - 4;
        let (overflow, last) = deletes.split_at(deletes.len().saturating_sub(room));
        for chunk in overflow.chunks(MAX_TRANSACTION_OPS) {
            self.store.transact(chunk.to_vec()).await?;
        }
        let change = WriteOp::Update {
            table: Table::Main,
            key: keys::user(&user.id),
            update: Update::default()
                .set("password_hash", new_hash)
                .set("updated_at", self.clock.rfc3339())
                .add("version", 1),
            condition: Some(Condition::AttrEquals(
                "password_hash".into(),
                json!(user.password_hash),
            )),
        };
        let mut extra = last.to_vec();
        extra.insert(0, change);
        extra.push(announce);
        let pair = self.open_session(&user.id, extra).await.map_err(|e| {
            if e.code == crate::error::ErrorCode::Unauthorized {
                AppError::conflict("the password was changed concurrently")
            } else {
                e
            }
        })?;
        self.changes.revoked(revocation);
        Ok(pair)
    }
}
