//! The local shim's dispatcher: fed with committed change records (the shim's change sink),
//! it records a delivery per matching webhook and works each webhook's queue in `seq`
//! order, with the retry schedule of `service`. Time comes from the service's `Clock`: a
//! waiting delivery is retried once the clock reaches its `next_attempt_at`, checked every
//! `POLL` of real time, so a test that moves a `ManualClock` sees the retry without
//! sleeping through the schedule.
//!
//! Ordering is strict per webhook: a delivery waiting for a retry holds back the later ones
//! of the same webhook (until it succeeds or fails for good). Pending deliveries are kept
//! in memory (their records in the store): a restart of the shim drops their retries.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::service::{Next, WebhookCache, WebhookService};
use crate::kernel::changes::{ChangeRecord, ChangeSink, Revocation};

/// How often a waiting queue looks at the clock.
const POLL: Duration = Duration::from_millis(50);
/// Pause after a store error before the same attempt again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct LocalDispatcher {
    tx: mpsc::UnboundedSender<Vec<ChangeRecord>>,
}

impl LocalDispatcher {
    pub fn start(service: Arc<WebhookService>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<ChangeRecord>>();
        tokio::spawn(async move {
            let mut queues: HashMap<String, mpsc::UnboundedSender<String>> = HashMap::new();
            // Webhooks whose creation record went by, with its seq: records arrive in seq
            // order, so a record seen later is after the webhook's creation.
            let mut created: HashMap<String, i64> = HashMap::new();
            let mut cache = WebhookCache::default();
            while let Some(records) = rx.recv().await {
                for record in &records {
                    if record.event == "webhook.created" {
                        created.insert(record.entity_id.clone(), record.seq);
                    }
                }
                let matched = match service.matching(&records, &created, &mut cache).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e.message, "webhook matching failed");
                        continue;
                    }
                };
                for (webhook, record) in matched {
                    let delivery = match service.new_delivery(&webhook, record).await {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(error = %e.message, "could not record a delivery");
                            continue;
                        }
                    };
                    let queue = queues.entry(webhook.id.clone()).or_insert_with(|| {
                        worker(
                            service.clone(),
                            webhook.workspace_id.clone(),
                            webhook.id.clone(),
                        )
                    });
                    let _ = queue.send(delivery.id);
                }
            }
        });
        Self { tx }
    }

    /// Hands committed records over (in commit order per workspace).
    pub fn submit(&self, records: Vec<ChangeRecord>) {
        let _ = self.tx.send(records);
    }
}

/// One webhook's queue: deliveries in arrival (= `seq`) order, one at a time.
fn worker(
    service: Arc<WebhookService>,
    ws: String,
    webhook_id: String,
) -> mpsc::UnboundedSender<String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut queue: VecDeque<String> = VecDeque::new();
        loop {
            while let Ok(id) = rx.try_recv() {
                queue.push_back(id);
            }
            let Some(head) = queue.front().cloned() else {
                match rx.recv().await {
                    Some(id) => queue.push_back(id),
                    None => return,
                }
                continue;
            };
            match service.attempt(&ws, &webhook_id, &head).await {
                Ok(Next::Done | Next::WebhookOff) => {
                    queue.pop_front();
                }
                Ok(Next::RetryAt(at)) => {
                    while service.now_epoch() < at {
                        tokio::select! {
                            _ = tokio::time::sleep(POLL) => {}
                            got = rx.recv() => match got {
                                Some(id) => queue.push_back(id),
                                None => return,
                            },
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, webhook_id = %webhook_id, "webhook attempt failed");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    });
    tx
}

/// Alone (the shim without its WebSocket emulation), the dispatcher is the change sink.
impl ChangeSink for LocalDispatcher {
    fn committed(&self, records: Vec<ChangeRecord>) {
        self.submit(records);
    }

    fn revoked(&self, _revocation: Revocation) {}
}
