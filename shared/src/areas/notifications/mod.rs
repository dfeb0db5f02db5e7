//! The notification inbox and issue subscriptions (docs/notifications.md): notifications are
//! made from committed change records by the dispatcher, folded per issue and actor, read and
//! archived by their recipient, counted per workspace.

pub mod dispatcher;
mod model;
pub mod rules;
mod service;
mod subscriptions;

pub use model::*;
pub use service::{MAX_MARK_READ, NotificationService, READ_STATE_CAUSE, Subject, UnreadListener};
