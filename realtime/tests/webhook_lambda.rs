//! The cloud webhook dispatcher fed real Lambda events: a DynamoDB Stream INSERT of a
//! change record, then the SQS jobs it queues, with an injected sender and a manual clock.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use momentum_shared::AppState;
use momentum_shared::areas::webhooks::sender::{Outbound, SendResult, WebhookSender};
use momentum_shared::areas::webhooks::{CreateWebhook, signing};
use momentum_shared::clock::ManualClock;
use momentum_shared::config::AppConfig;
use momentum_shared::error::AppResult;
use momentum_shared::storage::embedded::EmbeddedStore;
use realtime::webhooks::{DeliveryJob, DeliveryQueue};
use serde_json::{Value, json};

mod common;

/// Answers with scripted statuses and records what was sent.
#[derive(Default)]
struct Scripted {
    statuses: Mutex<Vec<u16>>,
    sent: Mutex<Vec<Outbound>>,
}

#[async_trait]
impl WebhookSender for Scripted {
    async fn send(&self, request: Outbound) -> SendResult {
        self.sent.lock().unwrap().push(request);
        let status = self.statuses.lock().unwrap().pop().unwrap_or(200);
        SendResult::Answered { status }
    }
}

#[derive(Default)]
struct Recorded(Mutex<Vec<(DeliveryJob, u32)>>);

#[async_trait]
impl DeliveryQueue for Recorded {
    async fn enqueue(&self, job: &DeliveryJob, delay_secs: u32) -> AppResult<()> {
        self.0.lock().unwrap().push((job.clone(), delay_secs));
        Ok(())
    }
}

impl Recorded {
    fn take(&self) -> Vec<(DeliveryJob, u32)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// An SQS event carrying `jobs`, as the event source mapping delivers it.
fn sqs_event(jobs: &[DeliveryJob]) -> Value {
    let records: Vec<Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            json!({
                "messageId": format!("m{i}"), "receiptHandle": "r", "body": serde_json::to_string(job).unwrap(),
                "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:momentum-webhook-jobs",
                "awsRegion": "eu-west-1"
            })
        })
        .collect();
    json!({"Records": records})
}

/// A DynamoDB Stream event of change record `seq` of `ws` (an issue update).
fn stream_event(ws: &str, seq: i64) -> Value {
    json!({"Records": [common::issue_update_insert(ws, seq)]})
}

#[tokio::test]
async fn stream_records_become_signed_attempts_retried_through_the_queue() {
    let mut config = AppConfig::for_tests();
    config.webhooks.allow_private = true;
    let clock = ManualClock::starting_now();
    let sender = Arc::new(Scripted::default());
    let state = AppState::with_webhook_sender(
        config,
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(clock.clone()),
        sender.clone(),
    );
    let (_, who, ws) = common::owner_and_workspace(&state, "hooks", "Hooks").await;
    let created = state
        .webhooks
        .create(
            &who,
            CreateWebhook {
                workspace_id: Some(ws.clone()),
                url: "http://127.0.0.1:9/hook".into(),
                description: None,
                event_types: None,
                team_id: None,
                project_id: None,
                enabled: None,
                audience: None,
            },
        )
        .await
        .unwrap();
    let created_seq = created.webhook.created_seq.expect("known after create");
    let queue = Recorded::default();

    // A record from before the webhook existed is not its business.
    let n = realtime::webhooks::handle(&state.webhooks, &queue, stream_event(&ws, created_seq))
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n = realtime::webhooks::handle(&state.webhooks, &queue, stream_event(&ws, created_seq + 1))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let jobs = queue.take();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1, 0, "due at once");
    let job = jobs[0].0.clone();
    assert_eq!(job.webhook_id, created.webhook.id);

    // First attempt: 500, so the job comes back after a minute.
    sender.statuses.lock().unwrap().push(500);
    realtime::webhooks::handle(
        &state.webhooks,
        &queue,
        sqs_event(std::slice::from_ref(&job)),
    )
    .await
    .unwrap();
    assert_eq!(queue.take(), vec![(job.clone(), 60)]);
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let header = |o: &Outbound, name: &str| {
        o.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let ts: i64 = header(&sent[0], "Momentum-Timestamp").parse().unwrap();
    assert!(signing::verify(
        &created.secret,
        &header(&sent[0], "Momentum-Signature"),
        ts,
        &sent[0].body
    ));
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["seq"], json!(created_seq + 1));
    assert_eq!(body["event"], "issue.updated");

    // Arriving early (a hop), nothing is sent; the job goes back for the time left.
    clock.advance_secs(20);
    realtime::webhooks::handle(
        &state.webhooks,
        &queue,
        sqs_event(std::slice::from_ref(&job)),
    )
    .await
    .unwrap();
    assert_eq!(queue.take(), vec![(job.clone(), 40)]);
    assert_eq!(sender.sent.lock().unwrap().len(), 1);

    // Due: sent again, succeeds, nothing more queued.
    clock.advance_secs(40);
    realtime::webhooks::handle(
        &state.webhooks,
        &queue,
        sqs_event(std::slice::from_ref(&job)),
    )
    .await
    .unwrap();
    assert!(queue.take().is_empty());
    assert_eq!(sender.sent.lock().unwrap().len(), 2);
}

#[test]
fn long_waits_hop_in_steps_sqs_can_delay() {
    use realtime::webhooks::{MAX_DELAY_SECS, delay_until};
    assert_eq!(delay_until(100, 100), 0);
    assert_eq!(delay_until(50, 100), 0);
    assert_eq!(delay_until(100 + 300, 100), 300);
    assert_eq!(delay_until(100 + 86_400, 100), MAX_DELAY_SECS as u32);
}
