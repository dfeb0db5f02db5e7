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

use super::layout::*;
use super::model::*;
use time::OffsetDateTime;

use crate::areas::auth::UserRecord;
use crate::areas::workspaces::Workspace;
use crate::error::{AppError, AppResult};
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::access::SESSION_REVOKED;
use crate::kernel::access::{Action, Role};
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{ServiceContext, found, put_versioned};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::normalize_email;
use crate::kernel::keys;
use crate::kernel::paging::workspace_page;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::from_item;
use crate::storage::{Item, Key, Query, SortKey, Table};

pub(super) fn changed_concurrently() -> AppError {
    AppError::conflict("the invitation was changed concurrently; reload and retry")
}

pub(super) fn not_pending(status: InvitationStatus) -> AppError {
    match status {
        InvitationStatus::Expired => AppError::conflict("this invitation has expired"),
        other => AppError::conflict(format!(
            "this invitation is no longer pending (it was {})",
            other.as_str()
        )),
    }
}

pub struct InvitationService {
    pub(super) ctx: ServiceContext,
}

impl InvitationService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    pub(super) fn now(&self) -> OffsetDateTime {
        self.ctx.clock.now()
    }

    /// The workspace a create means: the given id, else the caller's current workspace.
    /// Invites an email (`Manage`). 409 when the email has a pending invitation here or
    /// belongs to a member.
    pub async fn create(&self, who: &Principal, req: CreateInvitation) -> AppResult<Invitation> {
        let (email, email_key) = normalize_email("email", &req.email)?;
        let ws = self
            .ctx
            .access
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
        let stale = stale_marker_owner(marker.as_ref(), now)?;
        let invitee =
            account.and_then(|m| m.get("user_id").and_then(|v| v.as_str()).map(str::to_owned));
        if let Some(user_id) = &invitee {
            let got = self
                .ctx
                .store
                .get(Table::Main, &keys::member(&ws, user_id))
                .await?;
            if got.is_some() {
                return Err(email_of_member());
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
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(invitation_plan(
                    &invitation,
                    &email_key,
                    ttl,
                    stale.as_deref(),
                    invitee.as_deref(),
                ))
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
        let user: UserRecord = self.user(who, Action::Read, &[]).await?.0;
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
        let got = workspace_page(
            self.ctx.store.as_ref(),
            &scope.workspace_id,
            &format!("{}#", keys::INVITATION),
            limit,
            page.cursor.clone(),
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
    pub(super) async fn user(
        &self,
        who: &Principal,
        action: Action,
        extra: &[Key],
    ) -> AppResult<(UserRecord, Item, Vec<Option<Item>>)> {
        let mut keys_ = vec![keys::user(&who.user_id)];
        keys_.extend_from_slice(extra);
        let mut got = self.ctx.access.session(who, action, &keys_).await?;
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
                Action::Contribute,
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
        let next = inv.answered(InvitationStatus::Accepted, stamp);
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
        let next = inv.answered(InvitationStatus::Declined, stamp);
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
        let next = inv.answered(InvitationStatus::Revoked, stamp);
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
}
