//! The broadcaster's input in the cloud: DynamoDB Stream records of the main table, filtered
//! (by the event source mapping) to inserted change records.

use aws_lambda_events::event::dynamodb::Event;
use momentum_shared::services::changes::ChangeRecord;

use crate::Realtime;

/// The change records of a stream batch, in stream order (per workspace this is commit
/// order: one partition key per workspace log). Other items are ignored.
pub fn change_records(event: Event) -> Vec<ChangeRecord> {
    event
        .records
        .into_iter()
        .filter(|r| r.event_name == "INSERT")
        .filter_map(|r| {
            let image = r.change.new_image;
            let is_change = matches!(image.get("entity"), Some(serde_dynamo::AttributeValue::S(s)) if s == "change");
            if !is_change {
                return None;
            }
            match serde_dynamo::from_item::<_, ChangeRecord>(image) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable change record in stream");
                    None
                }
            }
        })
        .collect()
}

/// Delivers a stream batch. Errors are logged, not retried: a lost event is recovered by the
/// client's `sync`, while a retried batch would duplicate every event already delivered.
pub async fn handle(rt: &Realtime, event: Event) {
    let records = change_records(event);
    match rt.broadcaster.deliver(&records).await {
        Ok(d) => tracing::info!(
            records = records.len(),
            delivered = d.delivered,
            gone = d.gone,
            failed = d.failed,
            "fan-out"
        ),
        Err(e) => tracing::error!(error = %e, "fan-out failed"),
    }
}
