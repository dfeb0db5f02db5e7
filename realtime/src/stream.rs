//! The broadcaster's input in the cloud: DynamoDB Stream records of the main table, filtered
//! (by the event source mapping) to inserted change records and revocations, and to unread
//! counters moved by a read-state change (their new count goes to the user's sockets).

use aws_lambda_events::event::dynamodb::Event;
use momentum_shared::areas::notifications::dispatcher::NotificationDispatcher;
use momentum_shared::areas::notifications::{READ_STATE_CAUSE, UNREAD_ENTITY};
use momentum_shared::error::AppResult;
use momentum_shared::kernel::changes::{ChangeRecord, Revocation};
use momentum_shared::realtime::inbox::{send_to_users, send_unread_count};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Realtime;

/// What one stream batch carries, in stream order.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    /// Change records (per workspace in commit order: one partition key per workspace log).
    pub changes: Vec<ChangeRecord>,
    /// Ended sessions whose connections must close.
    pub revocations: Vec<Revocation>,
    /// Unread counts moved by a user's read-state change (read, unread, archive, mark-read).
    pub unread: Vec<UnreadCount>,
}

/// A user's unread counter in one workspace, as its stream image carries it.
#[derive(Debug, Deserialize, PartialEq)]
pub struct UnreadCount {
    pub user_id: String,
    pub workspace_id: String,
    pub unread: i64,
    #[serde(default)]
    changed_by: String,
}

fn read<T: DeserializeOwned>(image: serde_dynamo::Item) -> Option<T> {
    match serde_dynamo::from_item::<_, T>(image) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::error!(error = %e, "unreadable item in stream");
            None
        }
    }
}

/// Sorts a stream batch into change records and revocations; other items are ignored.
pub fn batch(event: Event) -> Batch {
    let mut out = Batch::default();
    for r in event.records {
        let inserted = r.event_name == "INSERT";
        let image = r.change.new_image;
        let entity = match image.get("entity") {
            Some(serde_dynamo::AttributeValue::S(s)) => s.clone(),
            _ => continue,
        };
        match entity.as_str() {
            "change" if inserted => out.changes.extend(read::<ChangeRecord>(image)),
            Revocation::ENTITY if inserted => out.revocations.extend(read::<Revocation>(image)),
            // A new notification's count travels with `notification.created`.
            UNREAD_ENTITY if r.event_name != "REMOVE" => out
                .unread
                .extend(read::<UnreadCount>(image).filter(|u| u.changed_by == READ_STATE_CAUSE)),
            _ => {}
        }
    }
    out
}

/// The change records of a stream batch, in stream order.
pub fn change_records(event: Event) -> Vec<ChangeRecord> {
    batch(event).changes
}

/// Delivers a stream batch, then closes the connections of revoked sessions. A batch whose
/// fan-out could not be done or handed over (storage or the shard queue unavailable) is an
/// error, so the event source retries it: bisecting the batch, a bounded number of times,
/// for records at most 5 minutes old, then recording it in the stream's failure queue
/// (`infra/template.yaml`), so a bad record never blocks the shard. A retried batch may
/// deliver some events twice; clients drop events by `seq`, and recover anything lost with
/// `sync`. Revocations are handled even when the fan-out failed. Notifications are made
/// from the same records (`notify`); their failure fails the batch too (they are
/// idempotent, so the retry writes nothing twice).
pub async fn handle(rt: &Realtime, event: Event) -> Result<(), lambda_runtime::Error> {
    let batch = batch(event);
    let fanned = rt.broadcaster.deliver(&batch.changes).await;
    match &fanned {
        Ok(d) => tracing::info!(
            records = batch.changes.len(),
            delivered = d.delivered,
            queued = d.queued,
            gone = d.gone,
            failed = d.failed,
            stale = d.stale,
            "fan-out"
        ),
        Err(e) => tracing::error!(error = %e, "fan-out failed"),
    }
    // Notifications from the same records (idempotent: a retried batch adds nothing).
    let notified = notify(rt, &batch.changes).await;
    if let Err(e) = &notified {
        tracing::error!(error = %e, "notifications failed");
    }
    for u in &batch.unread {
        let sent = send_unread_count(
            &rt.broadcaster,
            &rt.state.notifications,
            &u.user_id,
            &u.workspace_id,
            Some(u.unread),
        )
        .await;
        if let Err(e) = sent {
            // Not retried: the count is only a hint, and the next change sends it again.
            tracing::warn!(user = %u.user_id, error = %e, "unread count not sent");
        }
    }
    for revocation in &batch.revocations {
        match rt.broadcaster.revoke(revocation).await {
            Ok(closed) => tracing::info!(user = %revocation.user_id, closed, "sessions revoked"),
            Err(e) => tracing::error!(error = %e, "closing revoked connections failed"),
        }
    }
    fanned?;
    notified?;
    Ok(())
}

/// Makes the notifications of `records` (the dispatcher of `areas::notifications`) and
/// sends each to its recipient's connections. Returns how many were written.
pub async fn notify(rt: &Realtime, records: &[ChangeRecord]) -> AppResult<usize> {
    let dispatcher =
        NotificationDispatcher::new(rt.state.notifications.clone(), rt.state.push.clone());
    let delivered = dispatcher.handle(records).await?;
    send_to_users(&rt.broadcaster, &rt.state.notifications, &delivered).await?;
    Ok(delivered.len())
}
