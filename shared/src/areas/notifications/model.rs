//! Notification records, their keys, requests and views (docs/notifications.md).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::kernel::keys;
use crate::storage::Key;

/// How long changes to one issue by one actor fold into one notification: fixed windows of
/// this many seconds, counted from the epoch (a change at 10:04:59 and one at 10:05:00 land
/// in two windows). Fixed windows make the notification id a pure function of the change
/// record, so a retried stream batch writes the same item instead of a second one.
pub const FOLD_WINDOW_SECS: i64 = 300;

/// Why a user is notified.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotificationType {
    /// An issue was assigned to you.
    Assigned,
    /// You were removed as an issue's assignee.
    Unassigned,
    /// `@username` in an issue's description or a comment.
    Mentioned,
    /// A comment on an issue you subscribe to.
    Comment,
    /// An issue you subscribe to moved to another workflow state.
    StateChanged,
    /// An issue you subscribe to got another priority.
    PriorityChanged,
    /// You were invited to a workspace.
    Invited,
    /// You were added to a team.
    TeamAdded,
}

impl NotificationType {
    pub const ALL: [NotificationType; 8] = [
        NotificationType::Assigned,
        NotificationType::Unassigned,
        NotificationType::Mentioned,
        NotificationType::Comment,
        NotificationType::StateChanged,
        NotificationType::PriorityChanged,
        NotificationType::Invited,
        NotificationType::TeamAdded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::Assigned => "assigned",
            NotificationType::Unassigned => "unassigned",
            NotificationType::Mentioned => "mentioned",
            NotificationType::Comment => "comment",
            NotificationType::StateChanged => "state_changed",
            NotificationType::PriorityChanged => "priority_changed",
            NotificationType::Invited => "invited",
            NotificationType::TeamAdded => "team_added",
        }
    }

    /// Short text for a push title.
    pub fn headline(self) -> &'static str {
        match self {
            NotificationType::Assigned => "Assigned to you",
            NotificationType::Unassigned => "Unassigned",
            NotificationType::Mentioned => "You were mentioned",
            NotificationType::Comment => "New comment",
            NotificationType::StateChanged => "Status changed",
            NotificationType::PriorityChanged => "Priority changed",
            NotificationType::Invited => "Workspace invitation",
            NotificationType::TeamAdded => "Added to a team",
        }
    }

    /// Whether a notification of this type is about someone who need not be a member of its
    /// workspace (an invitation reaches its invitee before they join).
    pub fn reaches_non_members(self) -> bool {
        matches!(self, NotificationType::Invited)
    }
}

/// One notification in a user's inbox. Several changes to one issue by one actor within a
/// fold window are one notification: `types` lists every reason, `count` the changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// Sortable: newer windows sort after older ones.
    pub id: String,
    /// The recipient.
    pub user_id: String,
    pub workspace_id: String,
    /// The first reason (the one that created the notification).
    #[serde(rename = "type")]
    pub kind: NotificationType,
    /// Every reason folded in, first one first, each once.
    pub types: Vec<NotificationType>,
    /// What it is about: `issue`, `invitation` or `team`.
    pub subject_type: String,
    pub subject_id: String,
    /// Set when the subject is an issue (also for comments: the issue commented on).
    pub issue_id: Option<String>,
    /// The latest comment folded in, when a comment caused it.
    pub comment_id: Option<String>,
    /// Who made the change(s).
    pub actor_id: String,
    /// A short title of the subject (`ENG-12 Fix login`, a workspace or team name).
    pub title: String,
    /// How many changes were folded in.
    pub count: u32,
    /// The change log number of the last change folded in (a change is applied once).
    pub last_seq: i64,
    pub read_at: Option<String>,
    pub archived_at: Option<String>,
    /// Hidden from the inbox until then (still unread).
    pub snoozed_until: Option<String>,
    /// When a socket or a push provider first accepted it.
    pub delivered_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

impl Notification {
    /// Counted in the unread count: not read and not archived.
    pub fn counts_unread(&self) -> bool {
        self.read_at.is_none() && self.archived_at.is_none()
    }
}

/// `NOTIF#` items of a user's partition.
pub const NOTIF_PREFIX: &str = "NOTIF#";
const UNREAD_PREFIX: &str = "NOTIFUNREAD#";
/// The attribute of the unread counter item.
pub const UNREAD_ATTR: &str = "unread";
/// `entity` of a user's unread counter in one workspace.
pub const UNREAD_ENTITY: &str = "notification_unread";

/// The notification id for a change: one per (recipient, workspace, subject, actor, fold
/// window). The window start leads, so ids sort by window.
pub fn notification_id(
    user_id: &str,
    workspace_id: &str,
    subject_id: &str,
    actor_id: &str,
    window: i64,
) -> String {
    let mut h = Sha256::new();
    for part in [user_id, workspace_id, subject_id, actor_id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{window:010}{hex}")
}

/// The shape of a notification id (OpenAPI pattern and the 404 check).
pub const NOTIFICATION_ID_PATTERN: &str = "^[0-9]{10}[0-9a-f]{16}$";

pub fn is_notification_id(id: &str) -> bool {
    id.len() == 26
        && id[..10].bytes().all(|b| b.is_ascii_digit())
        && id[10..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn notification_key(user_id: &str, id: &str) -> Key {
    Key::new(keys::user_partition(user_id), format!("{NOTIF_PREFIX}{id}"))
}

/// The unread counter of one user in one workspace.
pub fn unread_key(user_id: &str, workspace_id: &str) -> Key {
    Key::new(
        keys::user_partition(user_id),
        format!("{UNREAD_PREFIX}{workspace_id}"),
    )
}

pub fn unread_prefix() -> &'static str {
    UNREAD_PREFIX
}

pub fn preferences_key(user_id: &str) -> Key {
    Key::new(keys::user_partition(user_id), "NOTIFPREFS")
}

/// `GET /notifications` filters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListNotificationsParams {
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// `true`: only unread ones; `false`: only read ones; absent: both.
    pub unread: Option<bool>,
    /// `true`: only archived ones; absent or `false`: the inbox (not archived, not snoozed).
    pub archived: Option<bool>,
    /// Only notifications with this reason among their `types`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<NotificationType>,
    /// Only this workspace's.
    pub workspace_id: Option<String>,
}

/// `PUT /notifications/{id}`: absent fields stay; `null` clears `snoozed_until`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNotification {
    /// `true` marks it read, `false` unread.
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub read: Option<bool>,
    /// `true` archives it (it leaves the inbox and the unread count), `false` restores it.
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub archived: Option<bool>,
    /// RFC 3339 time until which it is hidden from the inbox; `null` un-snoozes.
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub snoozed_until: Option<Option<String>>,
}

/// `POST /notifications/mark-read`: all of the caller's notifications, or those up to and
/// including `up_to_id`, or those of one issue (the filters combine).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, pattern = "^[0-9]{10}[0-9a-f]{16}$")]
    pub up_to_id: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub issue_id: Option<String>,
    /// Only this workspace's.
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub workspace_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MarkedRead {
    /// How many notifications turned read.
    pub marked: u32,
}

/// The unread count of one workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnreadCount {
    pub workspace_id: String,
    pub count: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadCounts {
    /// One entry per workspace the caller is a member of and has notifications in.
    pub workspaces: Vec<UnreadCount>,
    pub total: i64,
}

/// Where one type of notification goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TypePreference {
    /// Written to the inbox (and sent to the user's sockets).
    pub inbox: bool,
    /// Also pushed to the user's devices (only when `inbox` is on).
    pub push: bool,
}

impl Default for TypePreference {
    fn default() -> Self {
        Self {
            inbox: true,
            push: true,
        }
    }
}

/// A user's notification preferences, one entry per type (defaults: everything on).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationPreferences {
    #[serde(default)]
    pub assigned: TypePreference,
    #[serde(default)]
    pub unassigned: TypePreference,
    #[serde(default)]
    pub mentioned: TypePreference,
    #[serde(default)]
    pub comment: TypePreference,
    #[serde(default)]
    pub state_changed: TypePreference,
    #[serde(default)]
    pub priority_changed: TypePreference,
    #[serde(default)]
    pub invited: TypePreference,
    #[serde(default)]
    pub team_added: TypePreference,
}

impl NotificationPreferences {
    pub fn of(&self, kind: NotificationType) -> TypePreference {
        match kind {
            NotificationType::Assigned => self.assigned,
            NotificationType::Unassigned => self.unassigned,
            NotificationType::Mentioned => self.mentioned,
            NotificationType::Comment => self.comment,
            NotificationType::StateChanged => self.state_changed,
            NotificationType::PriorityChanged => self.priority_changed,
            NotificationType::Invited => self.invited,
            NotificationType::TeamAdded => self.team_added,
        }
    }

    fn slot(&mut self, kind: NotificationType) -> &mut TypePreference {
        match kind {
            NotificationType::Assigned => &mut self.assigned,
            NotificationType::Unassigned => &mut self.unassigned,
            NotificationType::Mentioned => &mut self.mentioned,
            NotificationType::Comment => &mut self.comment,
            NotificationType::StateChanged => &mut self.state_changed,
            NotificationType::PriorityChanged => &mut self.priority_changed,
            NotificationType::Invited => &mut self.invited,
            NotificationType::TeamAdded => &mut self.team_added,
        }
    }

    /// Applies a partial update.
    pub fn apply(&mut self, update: &UpdatePreferences) {
        for kind in NotificationType::ALL {
            if let Some(p) = update.of(kind) {
                let slot = self.slot(kind);
                if let Some(inbox) = p.inbox {
                    slot.inbox = inbox;
                }
                if let Some(push) = p.push {
                    slot.push = push;
                }
            }
        }
    }
}

/// A partial preference of one type: absent fields stay.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypePreferenceUpdate {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub inbox: Option<bool>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub push: Option<bool>,
}

/// `PUT /auth/notification-preferences`: absent types stay as they are.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePreferences {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub assigned: Option<TypePreferenceUpdate>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub unassigned: Option<TypePreferenceUpdate>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub mentioned: Option<TypePreferenceUpdate>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub comment: Option<TypePreferenceUpdate>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub state_changed: Option<TypePreferenceUpdate>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub priority_changed: Option<TypePreferenceUpdate>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub invited: Option<TypePreferenceUpdate>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub team_added: Option<TypePreferenceUpdate>,
}

impl UpdatePreferences {
    fn of(&self, kind: NotificationType) -> Option<TypePreferenceUpdate> {
        match kind {
            NotificationType::Assigned => self.assigned,
            NotificationType::Unassigned => self.unassigned,
            NotificationType::Mentioned => self.mentioned,
            NotificationType::Comment => self.comment,
            NotificationType::StateChanged => self.state_changed,
            NotificationType::PriorityChanged => self.priority_changed,
            NotificationType::Invited => self.invited,
            NotificationType::TeamAdded => self.team_added,
        }
    }
}

/// Absent is `None`; an explicit `null` is refused (the schema says the field is not
/// nullable).
fn non_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Why a user subscribes to an issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionReason {
    Creator,
    Assignee,
    Mentioned,
    Commenter,
    /// `POST /issues/{id}/subscription` (or, with `subscribed: false`, the explicit
    /// unsubscribe that automatic subscriptions never override).
    Manual,
}

/// A user's subscription to an issue. An explicit unsubscribe is kept as
/// `subscribed: false`, so a later automatic subscription (put only when none exists) does
/// not undo it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IssueSubscription {
    pub issue_id: String,
    pub workspace_id: String,
    pub user_id: String,
    pub reason: SubscriptionReason,
    pub subscribed: bool,
    pub updated_at: String,
}

/// The subscription partition of an issue.
pub fn subscription_partition(workspace_id: &str, issue_id: &str) -> String {
    format!("WS#{workspace_id}#ISSUE#{issue_id}#SUBS")
}

pub fn subscription_key(workspace_id: &str, issue_id: &str, user_id: &str) -> Key {
    Key::new(
        subscription_partition(workspace_id, issue_id),
        format!("SUB#{user_id}"),
    )
}

/// `POST/DELETE /issues/{id}/subscription`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionState {
    pub issue_id: String,
    pub subscribed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_sortable_and_well_formed() {
        let a = notification_id("u", "w", "i", "x", 5_000_000);
        assert_eq!(a, notification_id("u", "w", "i", "x", 5_000_000));
        assert_ne!(a, notification_id("u", "w", "i", "y", 5_000_000));
        assert!(is_notification_id(&a), "{a}");
        assert!(notification_id("u", "w", "i", "x", 5_000_001) > a);
        assert!(!is_notification_id("zz"));
    }

    #[test]
    fn preferences_default_on_and_apply_partially() {
        let mut p = NotificationPreferences::default();
        assert!(p.of(NotificationType::Comment).push);
        let update: UpdatePreferences =
            serde_json::from_value(serde_json::json!({"comment": {"push": false}})).unwrap();
        // `null` is not "leave as is": refused, as the schema says.
        assert!(
            serde_json::from_value::<UpdatePreferences>(serde_json::json!({"comment": null}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<MarkRead>(serde_json::json!({"workspace_id": null})).is_err()
        );
        p.apply(&update);
        assert_eq!(
            p.of(NotificationType::Comment),
            TypePreference {
                inbox: true,
                push: false
            }
        );
        assert!(p.of(NotificationType::Assigned).push);
    }
}
