//! The consumer: committed change records in, notifications out. Notifications are made
//! here and only here, from the records (never by the handler that wrote them), so REST,
//! WebSocket commands and any later writer notify the same way. The shim feeds it in-process
//! (`LocalNotifier`); in the cloud the DynamoDB stream does.
//!
//! Per record: gather the facts the rules need (`rules::needs`), decide (`rules::outcome`),
//! write automatic subscriptions, then for each recipient check at delivery that they are
//! still a member who may see the record (`ChangeRecord::visible_to`, the one rule) and what
//! their preferences allow, write the notification and push it where asked.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::model::{Notification, NotificationType};
use super::rules::{self, Facts, FieldChange};
use super::service::{NotificationService, Subject};
use crate::areas::comments::resolve_mentions;
use crate::areas::issues::activity_partition;
use crate::areas::push::{PushMessage, PushOutlet};
use crate::error::AppResult;
use crate::kernel::access::{EntityType, Role};
use crate::kernel::changes::{ChangeRecord, ChangeSink, Revocation};
use crate::kernel::keys;
use crate::kernel::paging::{query_all, workspace_members};
use crate::storage::{Query, SortKey, Table};

/// One notification written for one record.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub notification: Notification,
    /// The recipient's unread count in its workspace after it.
    pub unread: i64,
}

#[derive(Clone)]
pub struct NotificationDispatcher {
    service: Arc<NotificationService>,
    push: Arc<dyn PushOutlet>,
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl NotificationDispatcher {
    pub fn new(service: Arc<NotificationService>, push: Arc<dyn PushOutlet>) -> Self {
        Self { service, push }
    }

    /// Processes records in order. Safe to repeat (a stream retry): a record already
    /// applied changes nothing.
    pub async fn handle(&self, records: &[ChangeRecord]) -> AppResult<Vec<Delivered>> {
        let mut out = Vec::new();
        for record in records {
            out.extend(self.handle_one(record).await?);
        }
        Ok(out)
    }

    /// The issue a record is about, if any.
    fn issue_of(record: &ChangeRecord) -> Option<String> {
        match record.entity_type {
            EntityType::Issue => Some(record.entity_id.clone()),
            EntityType::Comment => text(&record.data, "issue_id"),
            _ => None,
        }
    }

    async fn facts(&self, record: &ChangeRecord) -> AppResult<Facts> {
        let needs = rules::needs(record);
        let store = self.service.ctx.store.as_ref();
        let ws = &record.workspace_id;
        let mut facts = Facts::default();
        let mut tokens = needs.mention_tokens.clone();
        if needs.activity {
            let version = record
                .data
                .get("version")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let items = query_all(
                store,
                Query::new(Table::Main, activity_partition(ws, &record.entity_id))
                    .sort(SortKey::BeginsWith(format!("{version:010}#"))),
            )
            .await?;
            facts.activity = items
                .into_iter()
                .map(|i| FieldChange {
                    field: i
                        .get("field")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    from: i.get("from").cloned().unwrap_or(Value::Null),
                    to: i.get("to").cloned().unwrap_or(Value::Null),
                })
                .collect();
            tokens.extend(rules::new_description_mentions(&facts.activity));
        }
        if needs.subscribers
            && let Some(issue) = Self::issue_of(record)
        {
            facts.subscribers = self.service.subscribed_users(ws, &issue).await?;
        }
        if !tokens.is_empty() {
            let members = workspace_members(store, ws).await?;
            facts.mentioned = resolve_mentions(&tokens, &members);
        }
        if let Some(email) = needs.invitee_email {
            let marker = store
                .get(Table::Main, &keys::email(&email.trim().to_lowercase()))
                .await?;
            facts.invitee = marker.and_then(|m| text(&Value::Object(m), "user_id"));
        }
        Ok(facts)
    }

    /// What the record's notifications are about (one extra read for comments and teams).
    async fn subject(&self, record: &ChangeRecord) -> AppResult<Subject> {
        let d = &record.data;
        let ws = &record.workspace_id;
        let issue_title = |i: &Value| {
            format!(
                "{} {}",
                text(i, "identifier").unwrap_or_default(),
                text(i, "title").unwrap_or_default()
            )
        };
        Ok(match record.entity_type {
            EntityType::Issue => Subject {
                subject_type: "issue",
                subject_id: record.entity_id.clone(),
                issue_id: Some(record.entity_id.clone()),
                comment_id: None,
                title: issue_title(d),
            },
            EntityType::Comment => {
                let issue_id = text(d, "issue_id").unwrap_or_default();
                let issue = self
                    .service
                    .ctx
                    .store
                    .get(Table::Main, &keys::issue(ws, &issue_id))
                    .await?
                    .map(Value::Object)
                    .unwrap_or(Value::Null);
                Subject {
                    subject_type: "issue",
                    subject_id: issue_id.clone(),
                    issue_id: Some(issue_id),
                    comment_id: Some(record.entity_id.clone()),
                    title: issue_title(&issue),
                }
            }
            EntityType::Invitation => Subject {
                subject_type: "invitation",
                subject_id: record.entity_id.clone(),
                issue_id: None,
                comment_id: None,
                title: text(d, "workspace_name").unwrap_or_default(),
            },
            _ => {
                let team_id = text(d, "team_id").unwrap_or_default();
                let team = self
                    .service
                    .ctx
                    .store
                    .get(Table::Main, &keys::team(ws, &team_id))
                    .await?
                    .map(Value::Object)
                    .unwrap_or(Value::Null);
                Subject {
                    subject_type: "team",
                    subject_id: team_id,
                    issue_id: None,
                    comment_id: None,
                    title: text(&team, "name").unwrap_or_default(),
                }
            }
        })
    }

    async fn handle_one(&self, record: &ChangeRecord) -> AppResult<Vec<Delivered>> {
        let interesting = matches!(
            (record.entity_type, record.event.rsplit('.').next()),
            (EntityType::Issue, Some("created" | "updated"))
                | (EntityType::Comment, Some("created" | "updated"))
                | (EntityType::Invitation, Some("created"))
                | (EntityType::TeamMember, Some("created"))
        );
        if !interesting {
            return Ok(Vec::new());
        }
        let facts = self.facts(record).await?;
        let outcome = rules::outcome(record, &facts);
        let ws = &record.workspace_id;
        if let Some(issue) = Self::issue_of(record) {
            for (user, reason) in &outcome.subscribe {
                self.service
                    .subscribe_automatically(ws, &issue, user, *reason)
                    .await?;
            }
        }
        if outcome.notify.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<String> = outcome.notify.keys().cloned().collect();
        let pairs: Vec<(String, String)> = users.iter().map(|u| (ws.clone(), u.clone())).collect();
        let members = self.service.members(&pairs).await?;
        let prefs = self.service.preferences_of(&users).await?;
        let subject = self.subject(record).await?;
        let mut out = Vec::new();
        for (user, kinds) in &outcome.notify {
            let role: Option<Role> = members.get(&(ws.clone(), user.clone())).copied();
            // Visibility at delivery: a current member the record is visible to; an
            // invitation's invitee is its subject and needs no membership.
            let allowed = match role {
                Some(role) => record.visible_to(user, role),
                None => kinds.iter().all(|k| k.reaches_non_members()),
            };
            if !allowed {
                continue;
            }
            let p = prefs.get(user).cloned().unwrap_or_default();
            let kinds: Vec<NotificationType> =
                kinds.iter().copied().filter(|k| p.of(*k).inbox).collect();
            if kinds.is_empty() {
                continue;
            }
            let push = kinds.iter().any(|k| p.of(*k).push);
            let Some(n) = self.service.apply(user, record, &kinds, &subject).await? else {
                continue;
            };
            let unread = self.service.unread_of(user, ws).await?;
            if push {
                self.push(&n, unread).await;
            }
            out.push(Delivered {
                notification: n,
                unread,
            });
        }
        Ok(out)
    }

    /// Hands one notification to the push outlet; `delivered_at` when a provider took it.
    /// Push never fails the notification: errors are logged.
    async fn push(&self, n: &Notification, badge: i64) {
        let message = PushMessage {
            user_id: n.user_id.clone(),
            workspace_id: n.workspace_id.clone(),
            notification_id: n.id.clone(),
            title: n.kind.headline().to_owned(),
            body: n.title.clone(),
            badge: badge.max(0) as u64,
            data: json!({
                "type": n.kind,
                "subject_type": n.subject_type,
                "subject_id": n.subject_id,
                "issue_id": n.issue_id,
            }),
        };
        match self.push.push(message).await {
            Ok(outcome) if outcome.accepted > 0 => {
                if let Err(e) = self.service.mark_delivered(&n.user_id, &n.id).await {
                    tracing::warn!(error = %e.message, "could not record a push delivery");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "push failed"),
        }
    }
}

/// The shim's consumer: records in commit order, one batch after another, on a task of its
/// own (a slow push never holds up a request).
#[derive(Clone)]
pub struct LocalNotifier {
    tx: mpsc::UnboundedSender<Vec<ChangeRecord>>,
}

impl LocalNotifier {
    /// `then` sees what each batch delivered (the shim sends it to the user's sockets).
    pub fn start<F>(dispatcher: NotificationDispatcher, then: F) -> Self
    where
        F: Fn(Vec<Delivered>) -> futures::future::BoxFuture<'static, ()> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<ChangeRecord>>();
        tokio::spawn(async move {
            while let Some(records) = rx.recv().await {
                match dispatcher.handle(&records).await {
                    Ok(delivered) if !delivered.is_empty() => then(delivered).await,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e.message, "notifications failed"),
                }
            }
        });
        Self { tx }
    }

    pub fn submit(&self, records: Vec<ChangeRecord>) {
        let _ = self.tx.send(records);
    }
}

impl ChangeSink for LocalNotifier {
    fn committed(&self, records: Vec<ChangeRecord>) {
        self.submit(records);
    }

    fn revoked(&self, _revocation: Revocation) {}
}
