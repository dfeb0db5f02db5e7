//! The inbox: writing (and folding) notifications, listing them, read state, unread counts
//! and preferences. Every write of a notification's read state and its unread counter is one
//! transaction conditioned on the notification's version, so counts stay exact however many
//! writers race (docs/notifications.md, "Read state and counts").

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::*;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, Member, Principal, Role};
use crate::kernel::changes::ChangeRecord;
use crate::kernel::context::ServiceContext;
use crate::kernel::keys;
use crate::kernel::paging::{MAX_LIMIT, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::storage::{Condition, Item, Key, Query, SortKey, Table, Update, WriteOp};

/// Attempts of one read-modify-write before answering 503.
const ATTEMPTS: u32 = 16;
/// Queries one list page may take while filters drop items.
const MAX_LIST_QUERIES: usize = 8;
/// Notifications per `mark-read` transaction (each with a counter update at most).
const MARK_CHUNK: usize = 40;
/// Most notifications one `mark-read` call turns read.
pub const MAX_MARK_READ: usize = 1000;

/// What a notification is about, as the dispatcher describes it.
#[derive(Clone, Debug)]
pub struct Subject {
    pub subject_type: &'static str,
    pub subject_id: String,
    pub issue_id: Option<String>,
    pub comment_id: Option<String>,
    pub title: String,
}

pub struct NotificationService {
    pub(super) ctx: ServiceContext,
    unread_listener: std::sync::OnceLock<std::sync::Arc<dyn UnreadListener>>,
}

/// Why a user's unread counter moved (stored on the counter item as `changed_by`): the
/// cloud's stream delivers the counts of read-state changes to the user's sockets, while a
/// new notification's count travels with `notification.created`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CountCause {
    Notified,
    ReadState,
}

impl CountCause {
    fn as_str(self) -> &'static str {
        match self {
            CountCause::Notified => "notified",
            CountCause::ReadState => READ_STATE_CAUSE,
        }
    }
}

/// `changed_by` of an unread counter moved by read / unread / archive / mark-read.
pub const READ_STATE_CAUSE: &str = "read_state";

/// Told when a user's read-state change moved their unread count in a workspace (the shim,
/// which has the sockets at hand; in the cloud the counter's stream record does it).
pub trait UnreadListener: Send + Sync + 'static {
    fn unread_changed(&self, user_id: &str, workspace_id: &str);
}

pub(super) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn contended() -> AppError {
    AppError::unavailable("the notification kept changing; try again")
}

fn counter_op(user_id: &str, workspace_id: &str, by: i64, cause: CountCause) -> WriteOp {
    WriteOp::Update {
        table: Table::Main,
        key: unread_key(user_id, workspace_id),
        update: Update::default()
            .set("entity", UNREAD_ENTITY)
            .set("user_id", user_id)
            .set("workspace_id", workspace_id)
            .set("changed_by", cause.as_str())
            .add(UNREAD_ATTR, by),
        condition: None,
    }
}

fn put_versioned(n: &Notification, previous: Option<i64>) -> WriteOp {
    WriteOp::Put {
        table: Table::Main,
        item: record_item(&notification_key(&n.user_id, &n.id), "notification", n),
        condition: Some(match previous {
            None => Condition::NotExists,
            Some(v) => Condition::VersionEquals(v),
        }),
    }
}

impl NotificationService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            ctx,
            unread_listener: std::sync::OnceLock::new(),
        }
    }

    /// Installs the listener of read-state count changes (once; later calls are ignored).
    pub fn set_unread_listener(&self, listener: std::sync::Arc<dyn UnreadListener>) {
        let _ = self.unread_listener.set(listener);
    }

    fn unread_changed(&self, user_id: &str, workspace_id: &str) {
        if let Some(listener) = self.unread_listener.get() {
            listener.unread_changed(user_id, workspace_id);
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.ctx.clock.now()
    }

    /// Writes `kinds` of `record` into `user_id`'s inbox: a new notification, or the one of
    /// the same subject and actor in the record's fold window (unread again). Applying a
    /// record twice changes nothing the second time (`last_seq`). `None` when it was
    /// already applied.
    pub async fn apply(
        &self,
        user_id: &str,
        record: &ChangeRecord,
        kinds: &[NotificationType],
        subject: &Subject,
    ) -> AppResult<Option<Notification>> {
        let at = parse_time(&record.at).map_or(0, |t| t.unix_timestamp());
        let window = at.div_euclid(FOLD_WINDOW_SECS) * FOLD_WINDOW_SECS;
        let id = notification_id(
            user_id,
            &record.workspace_id,
            &subject.subject_id,
            &record.actor_id,
            window,
        );
        let key = notification_key(user_id, &id);
        for _ in 0..ATTEMPTS {
            let existing = self.ctx.store.get(Table::Main, &key).await?;
            let (next, previous, newly_unread) = match existing {
                Some(item) => {
                    let n: Notification = from_item(item)?;
                    if n.last_seq >= record.seq {
                        return Ok(None);
                    }
                    let mut next = n.clone();
                    for k in kinds {
                        if !next.types.contains(k) {
                            next.types.push(*k);
                        }
                    }
                    next.count += 1;
                    next.last_seq = record.seq;
                    next.read_at = None;
                    next.archived_at = None;
                    if subject.comment_id.is_some() {
                        next.comment_id = subject.comment_id.clone();
                    }
                    next.updated_at = record.at.clone();
                    next.version += 1;
                    (next, Some(n.version), !n.counts_unread())
                }
                None => {
                    let Some(first) = kinds.first() else {
                        return Ok(None);
                    };
                    let n = Notification {
                        id: id.clone(),
                        user_id: user_id.to_owned(),
                        workspace_id: record.workspace_id.clone(),
                        kind: *first,
                        types: kinds.to_vec(),
                        subject_type: subject.subject_type.to_owned(),
                        subject_id: subject.subject_id.clone(),
                        issue_id: subject.issue_id.clone(),
                        comment_id: subject.comment_id.clone(),
                        actor_id: record.actor_id.clone(),
                        title: subject.title.clone(),
                        count: 1,
                        last_seq: record.seq,
                        read_at: None,
                        archived_at: None,
                        snoozed_until: None,
                        delivered_at: None,
                        created_at: record.at.clone(),
                        updated_at: record.at.clone(),
                        version: 1,
                    };
                    (n, None, true)
                }
            };
            let mut ops = vec![put_versioned(&next, previous)];
            if newly_unread {
                ops.push(counter_op(
                    user_id,
                    &record.workspace_id,
                    1,
                    CountCause::Notified,
                ));
            }
            match self.ctx.store.transact(ops).await {
                Ok(()) => return Ok(Some(next)),
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contended())
    }

    /// Records that a socket or push provider accepted the notification (first time only).
    pub async fn mark_delivered(&self, user_id: &str, id: &str) -> AppResult<()> {
        let key = notification_key(user_id, id);
        let now = self.ctx.clock.rfc3339();
        for _ in 0..ATTEMPTS {
            let Some(item) = self.ctx.store.get(Table::Main, &key).await? else {
                return Ok(());
            };
            let mut n: Notification = from_item(item)?;
            if n.delivered_at.is_some() {
                return Ok(());
            }
            let previous = n.version;
            n.delivered_at = Some(now.clone());
            n.version += 1;
            match self
                .ctx
                .store
                .transact(vec![put_versioned(&n, Some(previous))])
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contended())
    }

    /// The unread count of one user in one workspace (for push badges and realtime).
    pub async fn unread_of(&self, user_id: &str, workspace_id: &str) -> AppResult<i64> {
        Ok(self
            .ctx
            .store
            .get(Table::Main, &unread_key(user_id, workspace_id))
            .await?
            .and_then(|i| i.get(UNREAD_ATTR).and_then(serde_json::Value::as_i64))
            .unwrap_or(0))
    }

    /// The members among `(workspace, user)` pairs, by pair (one BatchGet).
    pub async fn members(
        &self,
        pairs: &[(String, String)],
    ) -> AppResult<HashMap<(String, String), Role>> {
        let mut out = HashMap::new();
        for chunk in pairs.chunks(100) {
            let keys: Vec<Key> = chunk.iter().map(|(ws, u)| keys::member(ws, u)).collect();
            let got = self.ctx.store.batch_get(Table::Main, &keys).await?;
            for (pair, item) in chunk.iter().zip(got) {
                if let Some(item) = item {
                    let m: Member = from_item(item)?;
                    out.insert(pair.clone(), m.role);
                }
            }
        }
        Ok(out)
    }

    /// Whether `n` may be shown to its recipient: they are still a member of its workspace
    /// (an invitation needs none).
    fn shown(n: &Notification, members: &HashMap<(String, String), Role>) -> bool {
        n.kind.reaches_non_members()
            || members.contains_key(&(n.workspace_id.clone(), n.user_id.clone()))
    }

    async fn membership_of(
        &self,
        notes: &[Notification],
        known: &mut HashMap<(String, String), Role>,
        asked: &mut std::collections::HashSet<(String, String)>,
    ) -> AppResult<()> {
        let pairs: Vec<(String, String)> = notes
            .iter()
            .map(|n| (n.workspace_id.clone(), n.user_id.clone()))
            .filter(|p| asked.insert(p.clone()))
            .collect();
        if !pairs.is_empty() {
            known.extend(self.members(&pairs).await?);
        }
        Ok(())
    }

    /// `GET /notifications`: newest first, filtered; notifications of workspaces the caller
    /// has left are never shown.
    pub async fn list(
        &self,
        who: &Principal,
        p: &ListNotificationsParams,
    ) -> AppResult<Paged<Notification>> {
        let limit = match p.limit {
            None => crate::kernel::paging::DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(AppError::validation(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}"),
                ));
            }
        };
        if let Some(ws) = &p.workspace_id {
            crate::kernel::ids::parse_workspace_id(ws)
                .map_err(|_| AppError::validation("workspace_id", "not a workspace id"))?;
        }
        self.ctx.access.session(who, Action::Read, &[]).await?;
        let now = self.now();
        let mut known = HashMap::new();
        let mut asked = std::collections::HashSet::new();
        let mut items = Vec::new();
        let mut cursor = p.cursor.clone();
        for _ in 0..MAX_LIST_QUERIES {
            let want = limit - items.len() as u32;
            let page = self
                .ctx
                .store
                .query(
                    &Query::new(Table::Main, keys::user_partition(&who.user_id))
                        .sort(SortKey::BeginsWith(NOTIF_PREFIX.to_owned()))
                        .backward()
                        .limit(want)
                        .cursor(cursor.take()),
                )
                .await?;
            let notes: Vec<Notification> = page
                .items
                .into_iter()
                .map(from_item)
                .collect::<AppResult<_>>()?;
            self.membership_of(&notes, &mut known, &mut asked).await?;
            for n in notes {
                if Self::shown(&n, &known) && matches(&n, p, now) {
                    items.push(n);
                }
            }
            cursor = page.next_cursor;
            if cursor.is_none() || items.len() as u32 >= limit {
                break;
            }
        }
        Ok(Paged {
            items,
            next_cursor: cursor,
        })
    }

    /// `GET /notifications/unread-count`: per workspace the caller is a member of.
    pub async fn unread_counts(&self, who: &Principal) -> AppResult<UnreadCounts> {
        self.ctx.access.session(who, Action::Read, &[]).await?;
        let items = crate::kernel::paging::query_all(
            self.ctx.store.as_ref(),
            Query::new(Table::Main, keys::user_partition(&who.user_id))
                .sort(SortKey::BeginsWith(unread_prefix().to_owned())),
        )
        .await?;
        let counts: Vec<UnreadCount> = items
            .into_iter()
            .filter_map(|i| {
                Some(UnreadCount {
                    workspace_id: i.get("workspace_id")?.as_str()?.to_owned(),
                    count: i.get(UNREAD_ATTR)?.as_i64()?,
                })
            })
            .collect();
        let pairs: Vec<(String, String)> = counts
            .iter()
            .map(|c| (c.workspace_id.clone(), who.user_id.clone()))
            .collect();
        let members = self.members(&pairs).await?;
        let workspaces: Vec<UnreadCount> = counts
            .into_iter()
            .filter(|c| members.contains_key(&(c.workspace_id.clone(), who.user_id.clone())))
            .collect();
        Ok(UnreadCounts {
            total: workspaces.iter().map(|c| c.count).sum(),
            workspaces,
        })
    }

    /// One of the caller's notifications, 404 unless shown to them.
    async fn get_own(&self, who: &Principal, id: &str, action: Action) -> AppResult<Notification> {
        if !is_notification_id(id) {
            return Err(AppError::not_found("notification"));
        }
        let got = self
            .ctx
            .access
            .session(who, action, &[notification_key(&who.user_id, id)])
            .await?;
        let n: Notification = from_item(
            got.into_iter()
                .next()
                .flatten()
                .ok_or_else(|| AppError::not_found("notification"))?,
        )?;
        if !n.kind.reaches_non_members() {
            let members = self
                .members(&[(n.workspace_id.clone(), n.user_id.clone())])
                .await?;
            if !Self::shown(&n, &members) {
                return Err(AppError::not_found("notification"));
            }
        }
        Ok(n)
    }

    /// `PUT /notifications/{id}`: read / unread / archived / snoozed until.
    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateNotification,
    ) -> AppResult<Notification> {
        let snooze = match parse_snooze(&req.snoozed_until) {
            Ok(s) => s,
            Err(e) => {
                // Someone else's notification (or none) is a 404 whatever the body says.
                self.get_own(who, id, Action::Contribute).await?;
                return Err(e);
            }
        };
        for _ in 0..ATTEMPTS {
            let current = self.get_own(who, id, Action::Contribute).await?;
            let now = self.ctx.clock.rfc3339();
            let mut next = current.clone();
            match req.read {
                Some(true) if next.read_at.is_none() => next.read_at = Some(now.clone()),
                Some(false) => next.read_at = None,
                _ => {}
            }
            match req.archived {
                Some(true) if next.archived_at.is_none() => next.archived_at = Some(now.clone()),
                Some(false) => next.archived_at = None,
                _ => {}
            }
            if let Some(s) = &snooze {
                next.snoozed_until = s.clone();
            }
            if next == current {
                return Ok(current);
            }
            next.updated_at = now;
            next.version += 1;
            let delta = i64::from(next.counts_unread()) - i64::from(current.counts_unread());
            let mut ops = vec![put_versioned(&next, Some(current.version))];
            if delta != 0 {
                ops.push(counter_op(
                    &who.user_id,
                    &next.workspace_id,
                    delta,
                    CountCause::ReadState,
                ));
            }
            match self.ctx.store.transact(ops).await {
                Ok(()) => {
                    if delta != 0 {
                        self.unread_changed(&who.user_id, &next.workspace_id);
                    }
                    return Ok(next);
                }
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contended())
    }

    /// `POST /notifications/mark-read`: every unread notification of the caller that
    /// matches (at most `MAX_MARK_READ` per call; `marked` says how many).
    pub async fn mark_read(&self, who: &Principal, req: MarkRead) -> AppResult<MarkedRead> {
        if let Some(id) = &req.up_to_id
            && !is_notification_id(id)
        {
            return Err(AppError::validation("up_to_id", "not a notification id"));
        }
        if let Some(issue) = &req.issue_id {
            crate::kernel::ids::workspace_of(crate::kernel::ids::Kind::Issue, issue)
                .map_err(|_| AppError::validation("issue_id", "not an issue id"))?;
        }
        if let Some(ws) = &req.workspace_id {
            crate::kernel::ids::parse_workspace_id(ws)
                .map_err(|_| AppError::validation("workspace_id", "not a workspace id"))?;
        }
        self.ctx
            .access
            .session(who, Action::Contribute, &[])
            .await?;
        let sort = match &req.up_to_id {
            Some(id) => SortKey::Between(NOTIF_PREFIX.to_owned(), format!("{NOTIF_PREFIX}{id}")),
            None => SortKey::BeginsWith(NOTIF_PREFIX.to_owned()),
        };
        let items = crate::kernel::paging::query_all(
            self.ctx.store.as_ref(),
            Query::new(Table::Main, keys::user_partition(&who.user_id)).sort(sort),
        )
        .await?;
        let mut notes: Vec<Notification> = Vec::new();
        for item in items {
            let n: Notification = from_item(item)?;
            let wanted = n.read_at.is_none()
                && req
                    .issue_id
                    .as_ref()
                    .is_none_or(|i| n.issue_id.as_ref() == Some(i))
                && req
                    .workspace_id
                    .as_ref()
                    .is_none_or(|w| &n.workspace_id == w);
            if wanted {
                notes.push(n);
            }
        }
        let mut known = HashMap::new();
        let mut asked = std::collections::HashSet::new();
        self.membership_of(&notes, &mut known, &mut asked).await?;
        notes.retain(|n| Self::shown(n, &known));
        notes.truncate(MAX_MARK_READ);
        let now = self.ctx.clock.rfc3339();
        let mut marked = 0u32;
        for chunk in notes.chunks(MARK_CHUNK) {
            let mut ops = Vec::new();
            let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
            for n in chunk {
                let mut next = n.clone();
                next.read_at = Some(now.clone());
                next.updated_at = now.clone();
                next.version += 1;
                if n.counts_unread() {
                    *deltas.entry(n.workspace_id.as_str()).or_default() -= 1;
                }
                ops.push(put_versioned(&next, Some(n.version)));
            }
            let moved: Vec<String> = deltas.keys().map(|ws| ws.to_string()).collect();
            for (ws, d) in deltas {
                ops.push(counter_op(&who.user_id, ws, d, CountCause::ReadState));
            }
            match self.ctx.store.transact(ops).await {
                Ok(()) => {
                    marked += chunk.len() as u32;
                    for ws in &moved {
                        self.unread_changed(&who.user_id, ws);
                    }
                }
                // One of them changed meanwhile: each on its own, re-read.
                Err(e) if e.is_condition_failure() => {
                    for n in chunk {
                        let req = UpdateNotification {
                            read: Some(true),
                            ..Default::default()
                        };
                        let before = self.get_own(who, &n.id, Action::Contribute).await;
                        if let Ok(b) = before
                            && b.read_at.is_none()
                        {
                            self.update(who, &n.id, req).await?;
                            marked += 1;
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(MarkedRead { marked })
    }

    /// The preferences of many users (defaults where none are stored), by user.
    pub async fn preferences_of(
        &self,
        users: &[String],
    ) -> AppResult<HashMap<String, NotificationPreferences>> {
        let mut out = HashMap::new();
        for chunk in users.chunks(100) {
            let keys: Vec<Key> = chunk.iter().map(|u| preferences_key(u)).collect();
            let got = self.ctx.store.batch_get(Table::Main, &keys).await?;
            for (u, item) in chunk.iter().zip(got) {
                let prefs = match item {
                    Some(i) => from_item(i)?,
                    None => NotificationPreferences::default(),
                };
                out.insert(u.clone(), prefs);
            }
        }
        Ok(out)
    }

    /// `GET /auth/notification-preferences`.
    pub async fn preferences(&self, who: &Principal) -> AppResult<NotificationPreferences> {
        // An account route (`/auth/*`): sessions only, as for the profile.
        crate::areas::auth::require_session(who)?;
        let got = self
            .ctx
            .access
            .session(who, Action::Read, &[preferences_key(&who.user_id)])
            .await?;
        match got.into_iter().next().flatten() {
            Some(i) => from_item(i),
            None => Ok(NotificationPreferences::default()),
        }
    }

    /// `PUT /auth/notification-preferences`: absent types and fields stay.
    pub async fn set_preferences(
        &self,
        who: &Principal,
        req: UpdatePreferences,
    ) -> AppResult<NotificationPreferences> {
        let mut prefs = self.preferences(who).await?;
        prefs.apply(&req);
        let mut item: Item = record_item(
            &preferences_key(&who.user_id),
            "notification_preferences",
            &prefs,
        );
        item.insert("user_id".into(), json!(who.user_id));
        self.ctx
            .store
            .transact(vec![WriteOp::put(Table::Main, item)])
            .await?;
        Ok(prefs)
    }
}

/// `snoozed_until` as stored (RFC 3339), `Some(None)` to clear, `None` to keep.
#[allow(clippy::option_option)]
fn parse_snooze(raw: &Option<Option<String>>) -> AppResult<Option<Option<String>>> {
    Ok(match raw {
        Some(Some(t)) => Some(Some(
            parse_time(t)
                .ok_or_else(|| {
                    AppError::validation("snoozed_until", "must be an RFC 3339 date-time")
                })?
                .format(&Rfc3339)
                .map_err(|_| AppError::validation("snoozed_until", "out of range"))?,
        )),
        Some(None) => Some(None),
        None => None,
    })
}

/// Whether `n` passes the list filters at `now`.
fn matches(n: &Notification, p: &ListNotificationsParams, now: OffsetDateTime) -> bool {
    if p.workspace_id
        .as_ref()
        .is_some_and(|w| &n.workspace_id != w)
    {
        return false;
    }
    if p.kind.is_some_and(|k| !n.types.contains(&k)) {
        return false;
    }
    if p.unread.is_some_and(|u| u != n.read_at.is_none()) {
        return false;
    }
    if p.archived == Some(true) {
        return n.archived_at.is_some();
    }
    let snoozed = n
        .snoozed_until
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|t| t > now);
    n.archived_at.is_none() && !snoozed
}
