//! Where invitations live in the table: the pending-invitation marker per (workspace, email),
//! the invitee's index, invite codes with their lookup and use counter, and the write ops
//! that join a user to a workspace. The keys are documented in docs/data-model.md
//! ("Invitations and labels").

use super::model::*;
use serde_json::json;

use crate::areas::auth::UserRecord;
use crate::areas::workspaces::membership_of;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::access::EntityType;
use crate::kernel::access::Member;
use crate::kernel::access::Role;
use crate::kernel::changes::{Change, ChangeKind, CounterRef, Plan};
use crate::kernel::context::put_new;
use crate::kernel::keys;
use crate::kernel::record::record_item;
use crate::storage::{Condition, Item, Key, Table, Update, WriteOp};
use time::OffsetDateTime;

pub(super) const INVITE_EMAIL: &str = "INVITEEMAIL";

pub(super) const INVITE_CODE: &str = "INVITECODE";

pub(super) const CODE_USES: &str = "CODEUSES";

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

pub(super) fn uses_counter(workspace_id: &str, code: &str) -> CounterRef {
    CounterRef {
        key: invite_code_uses_key(workspace_id, code),
        attr: "uses",
    }
}

pub(super) fn delete_op(key: Key) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition: None,
    }
}

/// The pending marker item: names the invitation and carries its expiry.
pub(super) fn pending_marker(ws: &str, email_key: &str, inv: &Invitation, ttl: i64) -> Item {
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
pub(super) fn release_marker(ws: &str, email_key: &str, invitation_id: &str) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key: pending_invite_key(ws, email_key),
        condition: Some(Condition::AttrEquals(
            "owner_id".into(),
            json!(invitation_id),
        )),
    }
}

pub(super) fn member_of(user: &UserRecord, ws: &str, role: Role, now: &str) -> Member {
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
pub(super) fn join_ops<T>(plan: Plan<T>, member: &Member) -> Plan<T> {
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
pub(super) fn make_current<T>(plan: Plan<T>, user: &Item, user_id: &str, ws: &str) -> Plan<T> {
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

pub(super) fn already_member() -> AppError {
    AppError::conflict("you are already a member of this workspace")
}

/// 409 on `email`: a live invitation to this workspace is pending for it.
pub(super) fn email_already_invited() -> AppError {
    AppError::validation(
        "email",
        "this email already has a pending invitation to the workspace",
    )
    .with_code(ErrorCode::Conflict)
}

/// 409 on `email`: it belongs to a member of the workspace.
pub(super) fn email_of_member() -> AppError {
    AppError::validation("email", "this email belongs to a member of the workspace")
        .with_code(ErrorCode::Conflict)
}

/// The owner (invitation id) of a pending-invitation marker whose invitation has expired, so
/// a new invitation may take the marker over; a live marker is a 409.
pub(super) fn stale_marker_owner(
    marker: Option<&Item>,
    now: OffsetDateTime,
) -> AppResult<Option<String>> {
    let Some(m) = marker else {
        return Ok(None);
    };
    let live = m
        .get("expires_at")
        .and_then(|v| v.as_str())
        .is_some_and(|e| !expired(e, now));
    if live {
        return Err(email_already_invited());
    }
    Ok(m.get("owner_id")
        .and_then(|v| v.as_str())
        .map(str::to_owned))
}

/// The writes of a new invitation: the record, the pending marker (new, or taken over from
/// the expired invitation `stale`, whose invitee-side mirror goes), the invitee-side mirror,
/// and, when the email has an account, a check that it has not joined meanwhile.
pub(super) fn invitation_plan(
    invitation: &Invitation,
    email_key: &str,
    ttl: i64,
    stale: Option<&str>,
    invitee: Option<&str>,
) -> Plan<()> {
    let ws = &invitation.workspace_id;
    let marker = pending_marker(ws, email_key, invitation, ttl);
    let mut plan = Plan::new(()).op(put_new(
        &keys::invitation(ws, &invitation.id),
        "invitation",
        invitation,
    ));
    plan = match stale {
        None => plan.guarded(
            WriteOp::put_new(Table::Main, marker),
            email_already_invited(),
        ),
        Some(old) => plan
            .guarded(
                WriteOp::Put {
                    table: Table::Main,
                    item: marker,
                    condition: Some(Condition::AttrEquals("owner_id".into(), json!(old))),
                },
                email_already_invited(),
            )
            .op(delete_op(invite_for_key(email_key, old))),
    };
    let mut mirror = record_item(
        &invite_for_key(email_key, &invitation.id),
        "invitation_for",
        invitation,
    );
    mirror.insert("ttl".into(), ttl.into());
    plan = plan.op(WriteOp::put(Table::Main, mirror));
    if let Some(user_id) = invitee {
        plan = plan.guarded(
            WriteOp::ConditionCheck {
                table: Table::Main,
                key: keys::member(ws, user_id),
                condition: Condition::NotExists,
            },
            email_of_member(),
        );
    }
    plan.change(Change::new(
        EntityType::Invitation,
        &invitation.id,
        ChangeKind::Created,
        invitation,
    ))
}
