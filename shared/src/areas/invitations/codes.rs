//! Invite codes: a shareable code that lets anyone with an account join, until it expires
//! or its uses run out.

use super::layout::*;
use super::model::*;
use super::service::*;
use serde_json::json;

use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::access::EntityType;
use crate::kernel::access::Member;
use crate::kernel::access::Principal;
use crate::kernel::access::{Action, Role};
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{delete_existing, found, put_new};
use crate::kernel::paging::workspace_page;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::storage::{Condition, Table, Update, WriteOp};

pub use crate::kernel::limits::{DEFAULT_CODE_HOURS, MAX_CODE_HOURS, MAX_CODE_USES};

/// Invite codes: 12 characters without look-alikes (no 0/O, 1/I/L).
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

pub const CODE_LEN: usize = 12;

/// A new random invite code.
pub(super) fn random_code() -> String {
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

impl InvitationService {
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
        let got = workspace_page(
            self.ctx.store.as_ref(),
            &scope.workspace_id,
            &format!("{INVITE_CODE}#"),
            limit,
            page.cursor.clone(),
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
            .session(who, Action::Manage, &[invite_code_lookup_key(&code)])
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
        let (user, raw_user, mut got) = self
            .user(who, Action::Contribute, &[invite_code_lookup_key(&code)])
            .await?;
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
