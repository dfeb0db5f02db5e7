//! Comments on issues: threaded replies, `@username` mentions, author-only edits, soft
//! deletes that keep the thread (see docs/data-model.md, "Projects and comments").
//!
//! Each comment is stored twice in the workspace partition, written in one transaction:
//! the record under `COMMENT#{comment_id}` (reads by id: one batch with the access check)
//! and a copy under `CMTLIST#{issue_id}#{created}` (an issue's comments, oldest first, with
//! one Query), where `created` is the hex of the time-ordered UUIDv7 inside the comment id.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, AppResult};
use crate::kernel::access::EntityType;
use crate::kernel::access::Member;
use crate::kernel::access::Principal;
use crate::kernel::access::Scope;
use crate::kernel::access::{Action, Role};
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, put_new, put_versioned, version_conflict,
};
use crate::kernel::context::{expected_version, retry_unversioned};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::paging::workspace_members;
use crate::kernel::paging::workspace_page;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::from_item;
use crate::kernel::topic::Topic;
use crate::storage::{Condition, Key, Table, WriteOp};

pub use crate::kernel::limits::MAX_COMMENT_BODY_CHARS as MAX_BODY_CHARS;
/// Sort-key prefix of the per-issue listing copies.
pub const COMMENT_LIST: &str = "CMTLIST";

/// A comment (`WS#{ws}` / `COMMENT#{id}`, copied under `CMTLIST#{issue_id}#{created}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Comment {
    pub id: String,
    pub workspace_id: String,
    pub issue_id: String,
    /// The comment this one replies to (same issue).
    pub parent_id: Option<String>,
    pub author_id: String,
    /// Markdown; empty once deleted.
    pub body: String,
    /// Members mentioned as `@username` in the body.
    pub mentions: Vec<String>,
    /// Soft-deleted: the body is gone, the thread stays.
    pub deleted: bool,
    /// When the author last changed the body.
    pub edited_at: Option<String>,
    pub deleted_at: Option<String>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateComment {
    pub issue_id: String,
    /// Markdown, 1–10,000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub body: String,
    /// Reply to this comment of the same issue.
    #[serde(default)]
    pub parent_id: Option<String>,
}

/// `version`, when given (or `If-Match`), must match.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateComment {
    #[schema(min_length = 1, max_length = 10000)]
    pub body: String,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommentListParams {
    /// The issue whose comments to list.
    pub issue_id: String,
}

/// The listing copy of a comment.
pub fn comment_list_key(workspace_id: &str, issue_id: &str, comment_id: &str) -> Key {
    keys::scoped(
        workspace_id,
        COMMENT_LIST,
        &format!("{issue_id}#{}", created_order(comment_id)),
    )
}

/// The sort-key prefix of an issue's listing copies.
pub fn comment_list_prefix(issue_id: &str) -> String {
    format!("{COMMENT_LIST}#{issue_id}#")
}

/// The creation order of a comment id (see `ids::creation_key`).
fn created_order(comment_id: &str) -> String {
    ids::creation_key(comment_id)
}

/// Markdown body: 1..=10,000 characters; CRLF becomes LF, surrounding blank space goes;
/// tabs and newlines are kept, other control characters refused.
pub fn validate_body(field: &str, raw: &str) -> AppResult<String> {
    crate::kernel::input::text::at_most_chars(field, raw, MAX_BODY_CHARS)?;
    let text = raw.replace("\r\n", "\n");
    let text = text.trim_end();
    // Drop leading blank lines but keep the first line's indentation (code blocks).
    let first = text
        .find(|c: char| !c.is_whitespace())
        .ok_or_else(|| AppError::validation(field, "is required"))?;
    let start = text[..first].rfind('\n').map_or(0, |i| i + 1);
    let text = &text[start..];
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(AppError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text.to_owned())
}

fn is_username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The `@username` tokens of a body, lower-cased, in order of appearance, without
/// duplicates. An `@` inside a word (an email address) starts no mention.
pub fn mention_tokens(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in body.char_indices() {
        let starts = c == '@' && !prev.is_some_and(|p| is_username_char(p) || p == '@');
        prev = Some(c);
        if !starts {
            continue;
        }
        let rest = &body[i + 1..];
        let len = rest
            .find(|c: char| !is_username_char(c))
            .unwrap_or(rest.len());
        let token = rest[..len].to_ascii_lowercase();
        if !token.is_empty() && !out.contains(&token) {
            out.push(token);
        }
    }
    out
}

/// Resolves mention tokens against members (case-insensitive usernames): a token matches
/// members named exactly so, else (sentence punctuation: `@ada.`) without trailing dots and
/// dashes. Every matching member is mentioned; unknown names are ignored.
pub fn resolve_mentions(tokens: &[String], members: &[Member]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in tokens {
        let named = |t: &str| -> Vec<&Member> {
            members
                .iter()
                .filter(|m| m.username.eq_ignore_ascii_case(t))
                .collect()
        };
        let mut hits = named(token);
        if hits.is_empty() {
            let trimmed = token.trim_end_matches(['.', '-']);
            if trimmed != token && !trimmed.is_empty() {
                hits = named(trimmed);
            }
        }
        for m in hits {
            if !out.contains(&m.user_id) {
                out.push(m.user_id.clone());
            }
        }
    }
    out
}

fn comment_change(kind: ChangeKind, c: &Comment) -> Change {
    Change::new(EntityType::Comment, &c.id, kind, c).topic(Topic::Issue(c.issue_id.clone()))
}

/// `comment.updated` carries the comment and `previous_mentions` (who it mentioned before
/// the edit), so consumers of the record alone (the notification inbox) tell newly
/// mentioned users from those mentioned already.
fn comment_edit(current: &Comment, next: &Comment) -> Change {
    let mut change = comment_change(ChangeKind::Updated, next);
    if let Some(data) = change.data.as_object_mut() {
        data.insert(
            "previous_mentions".into(),
            serde_json::json!(current.mentions),
        );
    }
    change
}

pub struct CommentService {
    ctx: ServiceContext,
}

impl CommentService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    /// User ids mentioned in `body` (one Query of the member partition, only when the body
    /// has `@` tokens).
    async fn mentions(&self, ws: &str, body: &str) -> AppResult<Vec<String>> {
        let tokens = mention_tokens(body);
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let members = workspace_members(self.ctx.store.as_ref(), ws).await?;
        Ok(resolve_mentions(&tokens, &members))
    }

    /// Both copies of a comment, the record guarded by `guard`.
    fn writes(comment: &Comment, guard: Option<i64>) -> (WriteOp, WriteOp) {
        let ws = &comment.workspace_id;
        let record_key = keys::comment(ws, &comment.id);
        let record = match guard {
            None => put_new(&record_key, "comment", comment),
            Some(v) => put_versioned(&record_key, "comment", comment, v),
        };
        let list_key = comment_list_key(ws, &comment.issue_id, &comment.id);
        let copy = WriteOp::put(
            Table::Main,
            crate::kernel::record::record_item(&list_key, "comment_list", comment),
        );
        (record, copy)
    }

    pub async fn create(&self, who: &Principal, req: CreateComment) -> AppResult<Comment> {
        let ws = ids::workspace_of(Kind::Issue, &req.issue_id)?;
        let body = validate_body("body", &req.body)?;
        let bad_parent =
            || AppError::unknown_reference("parent_id", "is not a comment of this issue");
        let parent_id = match req.parent_id.as_deref() {
            Some(p) => match ids::workspace_of(Kind::Comment, p) {
                Ok(of) if of == ws => Some(p.to_owned()),
                _ => return Err(bad_parent()),
            },
            None => None,
        };
        let mut extra = vec![keys::issue(&ws, &req.issue_id)];
        if let Some(p) = &parent_id {
            extra.push(keys::comment(&ws, p));
        }
        let (_, got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Contribute, Kind::Issue.noun(), &extra)
            .await?;
        let mut got = got.into_iter();
        if got.next().flatten().is_none() {
            return Err(AppError::not_found(Kind::Issue.noun()));
        }
        if parent_id.is_some() {
            let parent: Comment = got
                .next()
                .flatten()
                .map(from_item)
                .transpose()?
                .ok_or_else(bad_parent)?;
            if parent.issue_id != req.issue_id {
                return Err(bad_parent());
            }
        }
        let mentions = self.mentions(&ws, &body).await?;
        let now = self.ctx.now();
        let comment = Comment {
            id: ids::new_id(Kind::Comment, &ws),
            workspace_id: ws.clone(),
            issue_id: req.issue_id.clone(),
            parent_id,
            author_id: who.user_id.clone(),
            body,
            mentions,
            deleted: false,
            edited_at: None,
            deleted_at: None,
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let (record, copy) = Self::writes(&comment, None);
                Ok(Plan::new(())
                    .op(record)
                    .op(copy)
                    .guarded(
                        WriteOp::ConditionCheck {
                            table: Table::Main,
                            key: keys::issue(&ws, &comment.issue_id),
                            condition: Condition::Exists,
                        },
                        AppError::not_found(Kind::Issue.noun()),
                    )
                    .change(comment_change(ChangeKind::Created, &comment)))
            })
            .await?;
        Ok(comment)
    }

    /// An issue's comments, oldest first (replies carry `parent_id`; deleted ones stay as
    /// tombstones so threads keep their shape).
    pub async fn list(
        &self,
        who: &Principal,
        issue_id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<Comment>> {
        let limit = page.limit()?;
        let ws = ids::workspace_of(Kind::Issue, issue_id)?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                EntityType::Comment.read_action(),
                Kind::Issue.noun(),
                &[keys::issue(&ws, issue_id)],
            )
            .await?;
        if got.pop().flatten().is_none() {
            return Err(AppError::not_found(Kind::Issue.noun()));
        }
        let got = workspace_page(
            self.ctx.store.as_ref(),
            &ws,
            &comment_list_prefix(issue_id),
            limit,
            page.cursor.clone(),
        )
        .await?;
        Paged::of(got)
    }

    async fn authorize_comment(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
    ) -> AppResult<(Scope, Comment)> {
        let got = self
            .ctx
            .access
            .load(who, Kind::Comment, id, keys::comment, action, &[])
            .await?;
        Ok((got.scope, got.record))
    }

    pub async fn get(&self, who: &Principal, id: &str) -> AppResult<Comment> {
        Ok(self
            .authorize_comment(who, id, EntityType::Comment.read_action())
            .await?
            .1)
    }

    /// Changes the body (the author only); mentions are resolved again.
    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateComment,
        if_match: Option<i64>,
    ) -> AppResult<Comment> {
        let expected = expected_version(req.version, if_match)?;
        let body = validate_body("body", &req.body)?;
        retry_unversioned(expected, || self.update_once(who, id, &body, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        id: &str,
        body: &str,
        expected: Option<i64>,
    ) -> AppResult<Comment> {
        let (scope, current) = self.authorize_comment(who, id, Action::Contribute).await?;
        if current.author_id != who.user_id {
            return Err(AppError::forbidden("only the author may edit a comment"));
        }
        if current.deleted {
            return Err(AppError::conflict("the comment was deleted"));
        }
        check_version(expected, current.version)?;
        if body == current.body {
            return Ok(current);
        }
        let mentions = self.mentions(&scope.workspace_id, body).await?;
        let now = self.ctx.now();
        let mut next = current.clone();
        next.body = body.to_owned();
        next.mentions = mentions;
        next.edited_at = Some(now.clone());
        next.updated_at = now;
        next.version += 1;
        self.commit_update(&scope, &who.user_id, &current, &next, ChangeKind::Updated)
            .await?;
        Ok(next)
    }

    /// Soft-deletes a comment (its author, or an admin or owner): the body and mentions go,
    /// the comment stays in its thread as `deleted`. Deleting it again changes nothing.
    pub async fn delete(
        &self,
        who: &Principal,
        id: &str,
        if_match: Option<i64>,
    ) -> AppResult<Comment> {
        retry_unversioned(if_match, || self.delete_once(who, id, if_match)).await
    }

    async fn delete_once(
        &self,
        who: &Principal,
        id: &str,
        if_match: Option<i64>,
    ) -> AppResult<Comment> {
        let (scope, current) = self.authorize_comment(who, id, Action::Contribute).await?;
        if current.author_id != who.user_id && scope.role < Role::Admin {
            return Err(AppError::forbidden(
                "only the author or an admin may delete a comment",
            ));
        }
        check_version(if_match, current.version)?;
        if current.deleted {
            return Ok(current);
        }
        let now = self.ctx.now();
        let mut next = current.clone();
        next.body = String::new();
        next.mentions = Vec::new();
        next.deleted = true;
        next.deleted_at = Some(now.clone());
        next.updated_at = now;
        next.version += 1;
        self.commit_update(&scope, &who.user_id, &current, &next, ChangeKind::Deleted)
            .await?;
        Ok(next)
    }

    async fn commit_update(
        &self,
        scope: &Scope,
        actor: &str,
        current: &Comment,
        next: &Comment,
        kind: ChangeKind,
    ) -> AppResult<()> {
        self.ctx
            .changes
            .commit(&scope.workspace_id, actor, &[], |_| {
                let (record, copy) = Self::writes(next, Some(current.version));
                Ok(Plan::new(())
                    .guarded(record, version_conflict())
                    .op(copy)
                    .change(match kind {
                        ChangeKind::Updated => comment_edit(current, next),
                        _ => comment_change(kind, next),
                    }))
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user_id: &str, username: &str) -> Member {
        Member {
            workspace_id: "w".into(),
            user_id: user_id.into(),
            role: Role::Member,
            username: username.into(),
            email: format!("{username}@example.com"),
            display_name: None,
            joined_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(
            mention_tokens("hi @Ada and @bob.smith, mail ada@example.com, @ada again @ @@x"),
            ["ada", "bob.smith"]
        );
        assert_eq!(mention_tokens("(@carol) @dave."), ["carol", "dave."]);
    }

    #[test]
    fn resolution() {
        let members = [member("1", "ada"), member("2", "Bob"), member("3", "dave")];
        let tokens = mention_tokens("@ADA @bob @nobody @dave. @ada");
        assert_eq!(resolve_mentions(&tokens, &members), ["1", "2", "3"]);
    }

    #[test]
    fn bodies() {
        assert_eq!(
            validate_body("b", "\r\n\n    code\r\nmore  \n").unwrap(),
            "    code\nmore"
        );
        assert!(validate_body("b", " \n\t ").is_err());
        assert!(validate_body("b", "a\u{7}").is_err());
        assert!(validate_body("b", &"x".repeat(MAX_BODY_CHARS + 1)).is_err());
        assert!(validate_body("b", &"é".repeat(MAX_BODY_CHARS)).is_ok());
    }

    #[test]
    fn listing_order_follows_creation() {
        let ws = uuid::Uuid::new_v4().to_string();
        let ids: Vec<String> = (0..50)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_micros(200));
                ids::new_id(Kind::Comment, &ws)
            })
            .collect();
        let orders: Vec<String> = ids.iter().map(|i| created_order(i)).collect();
        let mut sorted = orders.clone();
        sorted.sort();
        assert_eq!(orders, sorted);
        assert_eq!(orders[0].len(), 32);
    }
}
