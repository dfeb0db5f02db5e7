//! Invitations by email and shareable invite codes: the two ways into a workspace.
//!
//! An invitation lives in its workspace partition (`INVITE#{id}`). While it is pending, a
//! marker `INVITEEMAIL#{email}` in the same partition makes it the only pending invitation
//! of that email there, and a mirror in `INVITEFOR#{email}` lists it for the invitee. Both
//! carry a `ttl` at the expiry, and both go when the invitation is answered or revoked.
//! `expired` is never stored: a pending invitation past `expires_at` reads as expired.
//!
//! An invite code lives in its workspace partition (`INVITECODE#{code}`) and, for joiners
//! who do not know the workspace, under a global lookup item (`INVITECODE#{code}` /
//! `INVITECODE`). Its uses are counted by a change-log counter (`CODEUSES#{code}`) advanced
//! in the same transaction as the membership, so `max_uses` holds under concurrency.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::areas::auth::UserRecord;
use crate::areas::workspaces::Workspace;
use crate::areas::workspaces::membership_of;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::access::EntityType;
use crate::kernel::access::Member;
use crate::kernel::access::Principal;
use crate::kernel::access::SESSION_REVOKED;
use crate::kernel::access::{Action, Role};
use crate::kernel::changes::{Change, ChangeKind, CounterRef, Plan};
use crate::kernel::context::{ServiceContext, delete_existing, found, put_new, put_versioned};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::normalize_email;
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::storage::{Condition, Item, Key, Query, SortKey, Table, Update, WriteOp};

/// How long an invitation stays valid.
pub const INVITATION_TTL_DAYS: i64 = 7;
pub const DEFAULT_CODE_HOURS: i64 = 168;
pub const MAX_CODE_HOURS: i64 = 720;
pub const MAX_CODE_USES: i64 = 1000;
/// Invite codes: 12 characters without look-alikes (no 0/O, 1/I/L).
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
pub const CODE_LEN: usize = 12;

const INVITE_EMAIL: &str = "INVITEEMAIL";
const INVITE_CODE: &str = "INVITECODE";
const CODE_USES: &str = "CODEUSES";

// Keys of this area (documented in docs/data-model.md, "Invitations and labels").

/// Marker of the pending invitation of an email in a workspace.
pub fn pending_invite_key(workspace_id: &str, email_key: &str) -> Key {
    keys::scoped(workspace_id, INVITE_EMAIL, email_key)
}

/// The invitee-side mirror of a pending invitation.
pub fn invite_for_key(email_key: &str, invitation_id: &str) -> Key {
    Key::new(
        invite_for_partition(email_key),
        format!("{}#{invitation_id}", keys::INVITATION),
    )
}

pub fn invite_for_partition(email_key: &str) -> String {
    format!("INVITEFOR#{email_key}")
}

/// An invite code in its workspace partition.
pub fn invite_code_key(workspace_id: &str, code: &str) -> Key {
    keys::scoped(workspace_id, INVITE_CODE, code)
}

/// The global lookup of an invite code (joiners do not know the workspace).
pub fn invite_code_lookup_key(code: &str) -> Key {
    Key::new(format!("{INVITE_CODE}#{code}"), INVITE_CODE)
}

/// The counter of an invite code's uses.
pub fn invite_code_uses_key(workspace_id: &str, code: &str) -> Key {
    keys::scoped(workspace_id, CODE_USES, code)
}

fn uses_counter(workspace_id: &str, code: &str) -> CounterRef {
    CounterRef {
        key: invite_code_uses_key(workspace_id, code),
        attr: "uses",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    /// Pending past `expires_at` (derived when reading, never stored).
    Expired,
}

impl InvitationStatus {
    fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Declined => "declined",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Expired => "expired",
        }
    }
}

/// An invitation (`WS#{ws}` / `INVITE#{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Invitation {
    pub id: String,
    pub workspace_id: String,
    /// The workspace's name when the invitation was made (for the invitee's list).
    pub workspace_name: String,
    /// The invited address as given (compared case-insensitively).
    pub email: String,
    /// The role the invitee gets on accepting.
    pub role: Role,
    pub status: InvitationStatus,
    pub invited_by: String,
    pub expires_at: String,
    /// When the invitee accepted or declined, or an admin revoked.
    pub responded_at: Option<String>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Invitation {
    /// As served: a pending invitation past its expiry reads as expired.
    fn at(mut self, now: OffsetDateTime) -> Self {
        if self.status == InvitationStatus::Pending && expired(&self.expires_at, now) {
            self.status = InvitationStatus::Expired;
        }
        self
    }
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[schema(min_length = 3, max_length = 254, format = Email)]
    pub email: String,
    /// `admin`, `member` (default) or `guest`; `owner` only when the caller is an owner.
    #[serde(default)]
    pub role: Option<Role>,
}

/// What accepting an invitation made.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedInvitation {
    pub invitation: Invitation,
    pub member: Member,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InviteCodeStatus {
    Active,
    /// Past `expires_at` (derived when reading).
    Expired,
    /// `uses` reached `max_uses` (derived when reading).
    Exhausted,
}

/// A shareable invite code (`WS#{ws}` / `INVITECODE#{code}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InviteCode {
    pub code: String,
    pub workspace_id: String,
    /// The role joiners get.
    pub role: Role,
    /// `null`: unlimited.
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub status: InviteCodeStatus,
    pub expires_at: String,
    pub created_by: String,
    pub created_at: String,
}

impl InviteCode {
    fn at(mut self, now: OffsetDateTime) -> Self {
        self.status = if expired(&self.expires_at, now) {
            InviteCodeStatus::Expired
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            InviteCodeStatus::Exhausted
        } else {
            InviteCodeStatus::Active
        };
        self
    }
}

/// The global lookup item of a code: what a join needs before it knows the workspace.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CodeLookup {
    code: String,
    workspace_id: String,
    role: Role,
    max_uses: Option<i64>,
    expires_at: String,
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteCode {
    /// `member` (default), `guest` or `admin`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(admin|member|guest)$")]
    pub role: Option<Role>,
    /// 1..=1000; unlimited when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_uses: Option<i64>,
    /// 1..=720 (default 168, a week).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 720)]
    pub expires_in_hours: Option<i64>,
}

/// True when `expires_at` (RFC 3339) is not after `now`; unreadable times count as expired.
fn expired(expires_at: &str, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(expires_at, &Rfc3339).map_or(true, |t| t <= now)
}

fn format_time(t: OffsetDateTime) -> AppResult<String> {
    t.format(&Rfc3339)
        .map_err(|_| AppError::internal("could not format a time"))
}

/// A new random invite code.
fn random_code() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// A code from a path: case-insensitive; anything that cannot be a code is "not found".
pub fn parse_code(raw: &str) -> AppResult<String> {
    let code = raw.trim().to_ascii_uppercase();
    if code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
        Ok(code)
    } else {
        Err(AppError::not_found("invite code"))
    }
}

fn delete_op(key: Key) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition: None,
    }
}

/// The pending marker item: names the invitation and carries its expiry.
fn pending_marker(ws: &str, email_key: &str, inv: &Invitation, ttl: i64) -> Item {
    let key = pending_invite_key(ws, email_key);
    let mut item = Item::new();
    item.insert("pk".into(), key.pk.into());
    item.insert("sk".into(), key.sk.into());
    item.insert("entity".into(), "marker".into());
    item.insert("owner_id".into(), inv.id.clone().into());
    item.insert("expires_at".into(), inv.expires_at.clone().into());
    item.insert("ttl".into(), ttl.into());
    item
}

/// The marker's delete, only while it still names `invitation_id`.
fn release_marker(ws: &str, email_key: &str, invitation_id: &str) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key: pending_invite_key(ws, email_key),
        condition: Some(Condition::AttrEquals(
            "owner_id".into(),
            json!(invitation_id),
        )),
    }
}

fn changed_concurrently() -> AppError {
    AppError::conflict("the invitation was changed concurrently; reload and retry")
}

fn not_pending(status: InvitationStatus) -> AppError {
    match status {
        InvitationStatus::Expired => AppError::conflict("this invitation has expired"),
        other => AppError::conflict(format!(
            "this invitation is no longer pending (it was {})",
            other.as_str()
        )),
    }
}

fn already_member() -> AppError {
    AppError::conflict("you are already a member of this workspace")
}

fn member_of(user: &UserRecord, ws: &str, role: Role, now: &str) -> Member {
    Member {
        workspace_id: ws.to_owned(),
        user_id: user.id.clone(),
        role,
        username: user.username.clone(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        joined_at: now.to_owned(),
    }
}

/// The writes that make `member` a member (guarded: already a member is a 409, a deleted
/// workspace a 404).
fn join_ops<T>(plan: Plan<T>, member: &Member) -> Plan<T> {
    let ws = &member.workspace_id;
    plan.guarded(
        WriteOp::ConditionCheck {
            table: Table::Main,
            key: keys::workspace(ws),
            condition: Condition::Exists,
        },
        AppError::not_found("workspace"),
    )
    .guarded(
        put_new(&keys::member(ws, &member.user_id), "member", member),
        already_member(),
    )
    .op(WriteOp::put(
        Table::Main,
        record_item(
            &keys::membership(&member.user_id, ws),
            "membership",
            &membership_of(member),
        ),
    ))
}

/// Makes the joined workspace current for a user who has none.
fn make_current<T>(plan: Plan<T>, user: &Item, user_id: &str, ws: &str) -> Plan<T> {
    if user
        .get("current_workspace_id")
        .is_some_and(|v| v.is_string())
    {
        return plan;
    }
    plan.op(WriteOp::Update {
        table: Table::Main,
        key: keys::user(user_id),
        update: Update::default().set("current_workspace_id", ws.to_owned()),
        condition: Some(Condition::Exists),
    })
}

pub struct InvitationService {
    ctx: ServiceContext,
}

impl InvitationService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    fn now(&self) -> OffsetDateTime {
        self.ctx.clock.now()
    }

    /// The workspace a create means: the given id, else the caller's current workspace.
    async fn target_workspace(&self, who: &Principal, given: Option<&str>) -> AppResult<String> {
        match given {
            Some(id) => ids::parse_workspace_id(id),
            None => self
                .ctx
                .access
                .current_workspace(who)
                .await?
                .ok_or_else(|| {
                    AppError::validation(
                        "workspace_id",
                        "no current workspace: pass workspace_id or switch to a workspace first",
                    )
                }),
        }
    }

    /// Invites an email (`Manage`). 409 when the email has a pending invitation here or
    /// belongs to a member.
    pub async fn create(&self, who: &Principal, req: CreateInvitation) -> AppResult<Invitation> {
        let (email, email_key) = normalize_email("email", &req.email)?;
        let ws = self
            .target_workspace(who, req.workspace_id.as_deref())
            .await?;
        let marker_key = pending_invite_key(&ws, &email_key);
        let (scope, got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                "workspace",
                &[
                    keys::workspace(&ws),
                    marker_key.clone(),
                    keys::email(&email_key),
                ],
            )
            .await?;
        let role = req.role.unwrap_or(Role::Member);
        if role == Role::Owner && scope.role != Role::Owner {
            return Err(AppError::forbidden("only owners invite owners"));
        }
        let [workspace, marker, account] = <[_; 3]>::try_from(got)
            .map_err(|_| AppError::internal("batch get returned a wrong count"))?;
        let workspace: Workspace = found(workspace, "workspace")?;
        let now = self.now();
        // A marker whose invitation expired is taken over; a live one is a 409.
        let stale = match &marker {
            Some(m) => {
                let live = m
                    .get("expires_at")
                    .and_then(|v| v.as_str())
                    .is_some_and(|e| !expired(e, now));
                if live {
                    return Err(AppError::validation(
                        "email",
                        "this email already has a pending invitation to the workspace",
                    )
                    .with_code(ErrorCode::Conflict));
                }
                m.get("owner_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            }
            None => None,
        };
        let invitee =
            account.and_then(|m| m.get("user_id").and_then(|v| v.as_str()).map(str::to_owned));
        let member_taken = || {
            AppError::validation("email", "this email belongs to a member of the workspace")
                .with_code(ErrorCode::Conflict)
        };
        if let Some(user_id) = &invitee {
            let got = self
                .ctx
                .store
                .get(Table::Main, &keys::member(&ws, user_id))
                .await?;
            if got.is_some() {
                return Err(member_taken());
            }
        }
        let expires = now + time::Duration::days(INVITATION_TTL_DAYS);
        let ttl = expires.unix_timestamp();
        let created_at = format_time(now)?;
        let invitation = Invitation {
            id: ids::new_id(Kind::Invitation, &ws),
            workspace_id: ws.clone(),
            workspace_name: workspace.name,
            email,
            role,
            status: InvitationStatus::Pending,
            invited_by: who.user_id.clone(),
            expires_at: format_time(expires)?,
            responded_at: None,
            version: 1,
            created_at: created_at.clone(),
            updated_at: created_at,
        };
        let taken = || {
            AppError::validation(
                "email",
                "this email already has a pending invitation to the workspace",
            )
            .with_code(ErrorCode::Conflict)
        };
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let marker = pending_marker(&ws, &email_key, &invitation, ttl);
                let mut plan = Plan::new(()).op(put_new(
                    &keys::invitation(&ws, &invitation.id),
                    "invitation",
                    &invitation,
                ));
                plan = match &stale {
                    None => plan.guarded(WriteOp::put_new(Table::Main, marker), taken()),
                    Some(old) => plan
                        .guarded(
                            WriteOp::Put {
                                table: Table::Main,
                                item: marker,
                                condition: Some(Condition::AttrEquals(
                                    "owner_id".into(),
                                    json!(old),
                                )),
                            },
                            taken(),
                        )
                        .op(delete_op(invite_for_key(&email_key, old))),
                };
                let mut mirror = record_item(
                    &invite_for_key(&email_key, &invitation.id),
                    "invitation_for",
                    &invitation,
                );
                mirror.insert("ttl".into(), ttl.into());
                plan = plan.op(WriteOp::put(Table::Main, mirror));
                if let Some(user_id) = &invitee {
                    plan = plan.guarded(
                        WriteOp::ConditionCheck {
                            table: Table::Main,
                            key: keys::member(&ws, user_id),
                            condition: Condition::NotExists,
                        },
                        member_taken(),
                    );
                }
                Ok(plan.change(Change::new(
                    EntityType::Invitation,
                    &invitation.id,
                    ChangeKind::Created,
                    &invitation,
                )))
            })
            .await?;
        Ok(invitation)
    }

    /// The caller's pending invitations, across workspaces (expired ones left out).
    pub async fn list_mine(
        &self,
        who: &Principal,
        page: &PageParams,
    ) -> AppResult<Paged<Invitation>> {
        let limit = page.limit()?;
        let user: UserRecord = self.user(who, &[]).await?.0;
        let got = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, invite_for_partition(&user.email_key))
                    .sort(SortKey::BeginsWith(format!("{}#", keys::INVITATION)))
                    .limit(limit)
                    .cursor(page.cursor.clone()),
            )
            .await?;
        let now = self.now();
        let mut items = Vec::new();
        for item in got.items {
            let inv = from_item::<Invitation>(item)?.at(now);
            if inv.status == InvitationStatus::Pending {
                items.push(inv);
            }
        }
        Ok(Paged {
            items,
            next_cursor: got.next_cursor,
        })
    }

    /// A workspace's invitations, in id order (`Manage`).
    pub async fn list_for_workspace(
        &self,
        who: &Principal,
        workspace_id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<Invitation>> {
        let limit = page.limit()?;
        let scope = self
            .ctx
            .access
            .scope(who, workspace_id, EntityType::Invitation.read_action())
            .await?;
        let got = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(&scope.workspace_id))
                    .sort(SortKey::BeginsWith(format!("{}#", keys::INVITATION)))
                    .limit(limit)
                    .cursor(page.cursor.clone()),
            )
            .await?;
        let now = self.now();
        Ok(Paged {
            items: got
                .items
                .into_iter()
                .map(|i| from_item::<Invitation>(i).map(|inv| inv.at(now)))
                .collect::<AppResult<_>>()?,
            next_cursor: got.next_cursor,
        })
    }

    /// Reads the caller's user record (checking the session) and `extra`, in one call.
    async fn user(
        &self,
        who: &Principal,
        extra: &[Key],
    ) -> AppResult<(UserRecord, Item, Vec<Option<Item>>)> {
        let mut keys_ = vec![keys::user(&who.user_id)];
        keys_.extend_from_slice(extra);
        let mut got = self.ctx.access.session(who, &keys_).await?;
        let rest = got.split_off(1);
        let raw = got
            .pop()
            .flatten()
            .ok_or_else(|| AppError::unauthorized(SESSION_REVOKED))?;
        Ok((from_item(raw.clone())?, raw, rest))
    }

    /// The invitation `id` as its invitee sees it: 404 unless the caller's email is the
    /// invited one. Also reads the caller's membership of its workspace.
    async fn as_invitee(
        &self,
        who: &Principal,
        invitation_id: &str,
    ) -> AppResult<(UserRecord, Item, Invitation, bool)> {
        let ws = ids::workspace_of(Kind::Invitation, invitation_id)?;
        let (user, raw, mut got) = self
            .user(
                who,
                &[
                    keys::invitation(&ws, invitation_id),
                    keys::member(&ws, &who.user_id),
                ],
            )
            .await?;
        let member = got.pop().flatten().is_some();
        let inv: Invitation = found(got.pop().flatten(), "invitation")?;
        if inv.email.to_lowercase() != user.email_key {
            return Err(AppError::not_found("invitation"));
        }
        Ok((user, raw, inv, member))
    }

    /// Accepts an invitation addressed to the caller: membership, invitation and change
    /// records in one transaction.
    pub async fn accept(
        &self,
        who: &Principal,
        invitation_id: &str,
    ) -> AppResult<AcceptedInvitation> {
        let (user, raw_user, inv, is_member) = self.as_invitee(who, invitation_id).await?;
        let now = self.now();
        let inv = inv.at(now);
        if inv.status != InvitationStatus::Pending {
            return Err(not_pending(inv.status));
        }
        if is_member {
            return Err(already_member());
        }
        let ws = inv.workspace_id.clone();
        let stamp = format_time(now)?;
        let member = member_of(&user, &ws, inv.role, &stamp);
        let mut next = inv.clone();
        next.status = InvitationStatus::Accepted;
        next.responded_at = Some(stamp.clone());
        next.updated_at = stamp;
        next.version += 1;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let plan = Plan::new(()).guarded(
                    put_versioned(
                        &keys::invitation(&ws, &inv.id),
                        "invitation",
                        &next,
                        inv.version,
                    ),
                    changed_concurrently(),
                );
                let plan = join_ops(plan, &member)
                    .guarded(
                        release_marker(&ws, &user.email_key, &inv.id),
                        changed_concurrently(),
                    )
                    .op(delete_op(invite_for_key(&user.email_key, &inv.id)));
                Ok(make_current(plan, &raw_user, &user.id, &ws)
                    .change(Change::new(
                        EntityType::WorkspaceMember,
                        &user.id,
                        ChangeKind::Created,
                        &member,
                    ))
                    .change(
                        Change::new(EntityType::Invitation, &inv.id, ChangeKind::Updated, &next)
                            .subject(&user.id),
                    ))
            })
            .await?;
        Ok(AcceptedInvitation {
            invitation: next,
            member,
        })
    }

    /// Declines an invitation addressed to the caller.
    pub async fn decline(&self, who: &Principal, invitation_id: &str) -> AppResult<Invitation> {
        let (user, _, inv, _) = self.as_invitee(who, invitation_id).await?;
        let now = self.now();
        let inv = inv.at(now);
        if inv.status != InvitationStatus::Pending {
            return Err(not_pending(inv.status));
        }
        let ws = inv.workspace_id.clone();
        let stamp = format_time(now)?;
        let mut next = inv.clone();
        next.status = InvitationStatus::Declined;
        next.responded_at = Some(stamp.clone());
        next.updated_at = stamp;
        next.version += 1;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        put_versioned(
                            &keys::invitation(&ws, &inv.id),
                            "invitation",
                            &next,
                            inv.version,
                        ),
                        changed_concurrently(),
                    )
                    .guarded(
                        release_marker(&ws, &user.email_key, &inv.id),
                        changed_concurrently(),
                    )
                    .op(delete_op(invite_for_key(&user.email_key, &inv.id)))
                    .change(
                        Change::new(EntityType::Invitation, &inv.id, ChangeKind::Updated, &next)
                            .subject(&who.user_id),
                    ))
            })
            .await?;
        Ok(next)
    }

    /// Revokes a pending (or expired) invitation (`Manage`).
    pub async fn revoke(&self, who: &Principal, invitation_id: &str) -> AppResult<Invitation> {
        let ws = ids::workspace_of(Kind::Invitation, invitation_id)?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                "invitation",
                &[keys::invitation(&ws, invitation_id)],
            )
            .await?;
        let inv: Invitation = found(got.pop().flatten(), "invitation")?;
        if inv.status != InvitationStatus::Pending {
            return Err(AppError::conflict(format!(
                "only pending invitations can be revoked (this one was {})",
                inv.status.as_str()
            )));
        }
        let email_key = inv.email.to_lowercase();
        // An expired invitation's marker may have been taken over by a newer invitation.
        let marker = self
            .ctx
            .store
            .get(Table::Main, &pending_invite_key(&ws, &email_key))
            .await?;
        let owns_marker = marker
            .as_ref()
            .and_then(|m| m.get("owner_id"))
            .and_then(|v| v.as_str())
            == Some(inv.id.as_str());
        let stamp = self.ctx.now();
        let mut next = inv.clone();
        next.status = InvitationStatus::Revoked;
        next.responded_at = Some(stamp.clone());
        next.updated_at = stamp;
        next.version += 1;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(()).guarded(
                    put_versioned(
                        &keys::invitation(&ws, &inv.id),
                        "invitation",
                        &next,
                        inv.version,
                    ),
                    changed_concurrently(),
                );
                if owns_marker {
                    plan = plan.guarded(
                        release_marker(&ws, &email_key, &inv.id),
                        changed_concurrently(),
                    );
                }
                Ok(plan
                    .op(delete_op(invite_for_key(&email_key, &inv.id)))
                    .change(Change::new(
                        EntityType::Invitation,
                        &inv.id,
                        ChangeKind::Updated,
                        &next,
                    )))
            })
            .await?;
        Ok(next)
    }

    /// Creates an invite code (`Manage`).
    pub async fn create_code(
        &self,
        who: &Principal,
        workspace_id: &str,
        req: CreateInviteCode,
    ) -> AppResult<InviteCode> {
        let scope = self
            .ctx
            .access
            .scope(who, workspace_id, Action::Manage)
            .await?;
        let role = req.role.unwrap_or(Role::Member);
        if role == Role::Owner {
            return Err(AppError::validation(
                "role",
                "invite codes grant admin, member or guest",
            ));
        }
        if let Some(n) = req.max_uses
            && !(1..=MAX_CODE_USES).contains(&n)
        {
            return Err(AppError::validation(
                "max_uses",
                format!("must be between 1 and {MAX_CODE_USES}"),
            ));
        }
        let hours = req.expires_in_hours.unwrap_or(DEFAULT_CODE_HOURS);
        if !(1..=MAX_CODE_HOURS).contains(&hours) {
            return Err(AppError::validation(
                "expires_in_hours",
                format!("must be between 1 and {MAX_CODE_HOURS}"),
            ));
        }
        let ws = scope.workspace_id;
        let now = self.now();
        let expires = now + time::Duration::hours(hours);
        let collision =
            || AppError::validation("code", "code collision").with_code(ErrorCode::Conflict);
        for attempt in 0..3 {
            let code = InviteCode {
                code: random_code(),
                workspace_id: ws.clone(),
                role,
                max_uses: req.max_uses,
                uses: 0,
                status: InviteCodeStatus::Active,
                expires_at: format_time(expires)?,
                created_by: who.user_id.clone(),
                created_at: format_time(now)?,
            };
            let lookup = CodeLookup {
                code: code.code.clone(),
                workspace_id: ws.clone(),
                role,
                max_uses: code.max_uses,
                expires_at: code.expires_at.clone(),
            };
            let result = self
                .ctx
                .changes
                .commit(&ws, &who.user_id, &[], |_| {
                    let lookup_item = record_item(
                        &invite_code_lookup_key(&lookup.code),
                        "invite_code_lookup",
                        &lookup,
                    );
                    Ok(Plan::new(())
                        .guarded(
                            put_new(&invite_code_key(&ws, &code.code), "invite_code", &code),
                            collision(),
                        )
                        .guarded(WriteOp::put_new(Table::Main, lookup_item), collision())
                        .change(Change::new(
                            EntityType::InviteCode,
                            &code.code,
                            ChangeKind::Created,
                            &code,
                        )))
                })
                .await;
            match result {
                Ok(_) => return Ok(code),
                Err(e) if e.field.as_deref() == Some("code") && attempt < 2 => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// A workspace's invite codes (`Manage`).
    pub async fn list_codes(
        &self,
        who: &Principal,
        workspace_id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<InviteCode>> {
        let limit = page.limit()?;
        let scope = self
            .ctx
            .access
            .scope(who, workspace_id, EntityType::InviteCode.read_action())
            .await?;
        let got = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(&scope.workspace_id))
                    .sort(SortKey::BeginsWith(format!("{INVITE_CODE}#")))
                    .limit(limit)
                    .cursor(page.cursor.clone()),
            )
            .await?;
        let now = self.now();
        Ok(Paged {
            items: got
                .items
                .into_iter()
                .map(|i| from_item::<InviteCode>(i).map(|c| c.at(now)))
                .collect::<AppResult<_>>()?,
            next_cursor: got.next_cursor,
        })
    }

    /// Deletes an invite code (`Manage` of its workspace).
    pub async fn delete_code(&self, who: &Principal, raw_code: &str) -> AppResult<InviteCode> {
        let code = parse_code(raw_code)?;
        let mut got = self
            .ctx
            .access
            .session(who, &[invite_code_lookup_key(&code)])
            .await?;
        let lookup: CodeLookup = found(got.pop().flatten(), "invite code")?;
        let ws = lookup.workspace_id;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                "invite code",
                &[invite_code_key(&ws, &code)],
            )
            .await?;
        let record: InviteCode = found(got.pop().flatten(), "invite code")?;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        delete_existing(invite_code_key(&ws, &code)),
                        AppError::not_found("invite code"),
                    )
                    .op(delete_op(invite_code_lookup_key(&code)))
                    .op(delete_op(invite_code_uses_key(&ws, &code)))
                    .change(Change::new(
                        EntityType::InviteCode,
                        &code,
                        ChangeKind::Deleted,
                        &record,
                    )))
            })
            .await?;
        Ok(record.at(self.now()))
    }

    /// Joins the workspace of an invite code (any signed-in user). Expiry and `max_uses`
    /// are checked; the use is counted in the same transaction as the membership.
    pub async fn join(&self, who: &Principal, raw_code: &str) -> AppResult<Member> {
        let code = parse_code(raw_code)?;
        let (user, raw_user, mut got) = self.user(who, &[invite_code_lookup_key(&code)]).await?;
        let lookup: CodeLookup = found(got.pop().flatten(), "invite code")?;
        let now = self.now();
        if expired(&lookup.expires_at, now) {
            return Err(AppError::conflict("this invite code has expired"));
        }
        let ws = lookup.workspace_id.clone();
        let member = member_of(&user, &ws, lookup.role, &format_time(now)?);
        let counter = uses_counter(&ws, &code);
        self.ctx
            .changes
            .commit(
                &ws,
                &who.user_id,
                std::slice::from_ref(&counter),
                |counters| {
                    let used = counters.get(&counter);
                    if lookup.max_uses.is_some_and(|max| used >= max) {
                        return Err(AppError::conflict(
                            "this invite code has reached its maximum number of uses",
                        ));
                    }
                    let plan = Plan::new(()).guarded(
                        WriteOp::Update {
                            table: Table::Main,
                            key: invite_code_key(&ws, &code),
                            update: Update::default().set("uses", used + 1),
                            condition: Some(Condition::Exists),
                        },
                        AppError::not_found("invite code"),
                    );
                    Ok(
                        make_current(join_ops(plan, &member), &raw_user, &user.id, &ws)
                            .bump(counter.clone(), 1)
                            .change(Change::new(
                                EntityType::WorkspaceMember,
                                &user.id,
                                ChangeKind::Created,
                                &member,
                            ))
                            .change(Change::new(
                                EntityType::InviteCode,
                                &code,
                                ChangeKind::Updated,
                                json!({"code": code, "workspace_id": ws, "uses": used + 1}),
                            )),
                    )
                },
            )
            .await?;
        Ok(member)
    }
}
