//! Webhooks: admins manage them per workspace (`Manage`); the dispatcher (the shim's
//! in-process one, or the cloud Lambda) asks this service which webhooks a committed change
//! record goes to, records a delivery for each, and makes the attempts. Business rules live
//! here once: the event filter, the scope filter, the visibility rule (the feed's, through
//! `ChangeRecord::visible_to`), signing, the retry schedule and the disable rules.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::*;
use super::sender::{Outbound, SendResult, WebhookSender};
use super::signing::{self, derive_secret, signature_header};
use super::target::{TargetPolicy, check_resolves, parse_url};
use crate::config::WebhookConfig;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, Audience, EntityType, Principal, Role};
use crate::kernel::changes::{Change, ChangeKind, ChangeRecord, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, delete_existing, expected_version, found, put_new,
    put_versioned, retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::storage::{Condition, Query, SortKey, Table, Update, WriteOp};

/// Waits after the 1st, 2nd, ... failed attempt: 1 min, 5 min, 30 min, 2 h, 6 h, 24 h.
/// After the 7th failed attempt the delivery has failed.
pub const RETRY_SCHEDULE_SECS: [i64; 6] = [60, 300, 1800, 7200, 21_600, 86_400];
/// Delivery records live this long (DynamoDB TTL).
pub const DELIVERY_RETENTION_SECS: i64 = 30 * 24 * 3600;

fn parse_time(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn format_time(epoch: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Validates event type patterns: `*`, `{entity_type}.*` or `{entity_type}.{kind}` with a
/// known entity type and kind (`created`, `updated`, `deleted`).
pub fn parse_event_types(raw: Option<Vec<String>>) -> AppResult<Vec<String>> {
    let list = raw.unwrap_or_else(|| vec!["*".to_owned()]);
    let bad = |msg: String| AppError::validation("event_types", msg);
    if list.is_empty() {
        return Err(bad("event_types must name at least one pattern".into()));
    }
    if list.len() > MAX_EVENT_TYPES {
        return Err(bad(format!("at most {MAX_EVENT_TYPES} event types")));
    }
    let mut out: Vec<String> = Vec::new();
    for p in list {
        let valid = p.len() <= MAX_EVENT_TYPE_CHARS
            && (p == "*"
                || p.split_once('.').is_some_and(|(t, k)| {
                    t.parse::<EntityType>().is_ok()
                        && matches!(k, "*" | "created" | "updated" | "deleted")
                }));
        if !valid {
            return Err(bad(format!(
                "{p:?} is not an event type pattern like \"*\", \"issue.*\" or \"comment.created\""
            )));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Whether `event` (`issue.updated`) matches one of `patterns`.
pub fn event_matches(patterns: &[String], event: &str) -> bool {
    let entity = event.split_once('.').map_or(event, |(t, _)| t);
    patterns
        .iter()
        .any(|p| p == "*" || p == event || p.strip_suffix(".*") == Some(entity))
}

impl Webhook {
    /// Whether a committed change record goes to this webhook: committed after the
    /// webhook's own `webhook.created` record (`created_seq`, or what the dispatcher saw go
    /// by before it was stored), enabled, its event types match, it is about the webhook's
    /// team/project, and the webhook's audience may read it (the one visibility rule, as
    /// the feed asks it; a webhook is nobody's subject).
    pub fn wants(&self, record: &ChangeRecord, seen_created: Option<i64>) -> bool {
        let scoped = |prefix: &str, id: &Option<String>| {
            id.as_ref().is_none_or(|id| {
                record.entity_id == *id
                    || record
                        .topics
                        .iter()
                        .any(|t| t.to_string() == format!("{prefix}:{id}"))
            })
        };
        self.created_seq
            .or(seen_created)
            .is_some_and(|created| record.seq > created)
            && self.enabled
            && record.workspace_id == self.workspace_id
            && event_matches(&self.event_types, &record.event)
            && scoped("team", &self.team_id)
            && scoped("project", &self.project_id)
            && self.admits(record)
    }

    /// The visibility rule for this webhook's audience.
    pub fn admits(&self, record: &ChangeRecord) -> bool {
        record.visible_to(&self.id, self.audience)
    }
}

/// What the dispatcher does next with a delivery after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Delivered, or given up: nothing more.
    Done,
    /// Try again at this time (unix seconds).
    RetryAt(i64),
    /// The webhook is off (disabled, deleted): drop its queue.
    WebhookOff,
}

pub struct WebhookService {
    ctx: ServiceContext,
    config: WebhookConfig,
    sender: Arc<dyn WebhookSender>,
}

impl WebhookService {
    pub fn new(ctx: ServiceContext, config: WebhookConfig, sender: Arc<dyn WebhookSender>) -> Self {
        Self {
            ctx,
            config,
            sender,
        }
    }

    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_http: self.config.allow_http,
            allow_private: self.config.allow_private,
        }
    }

    fn key(&self) -> AppResult<&[u8]> {
        self.config.secret_key.as_deref().ok_or_else(|| {
            AppError::unavailable("webhooks are not configured (MOMENTUM_WEBHOOK_SECRET_KEY)")
        })
    }

    pub fn now_epoch(&self) -> i64 {
        self.ctx.clock.now().unix_timestamp()
    }

    /// The secrets that sign now: the current one, and the previous one during its grace.
    fn signing_secrets(&self, webhook: &Webhook) -> AppResult<Vec<String>> {
        let key = self.key()?;
        let mut secrets = vec![derive_secret(key, &webhook.id, webhook.secret_version)];
        let grace = webhook
            .previous_secret_expires_at
            .as_deref()
            .and_then(parse_time);
        if grace.is_some_and(|until| until > self.now_epoch()) && webhook.secret_version > 1 {
            secrets.push(derive_secret(key, &webhook.id, webhook.secret_version - 1));
        }
        Ok(secrets)
    }

    async fn check_url(&self, raw: &str) -> AppResult<String> {
        let url = parse_url(self.policy(), raw)?;
        check_resolves(self.policy(), &url).await?;
        Ok(url.to_string())
    }

    /// A team or project id the webhook is scoped to must exist in its workspace (404 on
    /// the field otherwise).
    async fn check_scope(
        &self,
        ws: &str,
        team_id: Option<&str>,
        project_id: Option<&str>,
    ) -> AppResult<()> {
        let checks = [
            (
                "team_id",
                Kind::Team,
                team_id,
                keys::team as fn(&str, &str) -> _,
            ),
            ("project_id", Kind::Project, project_id, keys::project),
        ];
        for (field, kind, id, key) in checks {
            let Some(id) = id else { continue };
            let missing = || AppError::unknown_reference(field, format!("no such {}", kind.noun()));
            if ids::workspace_of(kind, id).ok().as_deref() != Some(ws) {
                return Err(missing());
            }
            if self
                .ctx
                .store
                .get(Table::Main, &key(ws, id))
                .await?
                .is_none()
            {
                return Err(missing());
            }
        }
        Ok(())
    }

    fn check_audience(audience: Role, creator: Role) -> AppResult<()> {
        if audience > creator {
            return Err(AppError::forbidden(format!(
                "a webhook's audience may not be above its creator's role ({})",
                creator.as_str()
            )));
        }
        Ok(())
    }

    async fn webhooks_of(&self, ws: &str) -> AppResult<Vec<Webhook>> {
        let query = Query::new(Table::Main, keys::workspace_partition(ws))
            .sort(SortKey::BeginsWith(format!("{}#", keys::WEBHOOK)))
            .limit(MAX_WEBHOOKS_PER_WORKSPACE as u32 + 1);
        Ok(Paged::<Webhook>::of(self.ctx.store.query(&query).await?)?.items)
    }

    /// Webhooks of a workspace (`Manage`), in creation order.
    pub async fn list(
        &self,
        who: &Principal,
        params: &ListWebhooksParams,
    ) -> AppResult<Paged<Webhook>> {
        let page = PageParams {
            limit: params.limit,
            cursor: params.cursor.clone(),
        };
        let limit = page.limit()?;
        let scope = self
            .ctx
            .access
            .resolve(who, params.workspace_id.as_deref(), Action::Manage)
            .await?;
        let query = Query::new(Table::Main, keys::workspace_partition(&scope.workspace_id))
            .sort(SortKey::BeginsWith(format!("{}#", keys::WEBHOOK)))
            .cursor(page.cursor.clone())
            .limit(limit);
        Paged::of(self.ctx.store.query(&query).await?)
    }

    pub async fn get(&self, who: &Principal, id: &str) -> AppResult<Webhook> {
        Ok(self
            .ctx
            .access
            .load(who, Kind::Webhook, id, keys::webhook, Action::Manage, &[])
            .await?
            .record)
    }

    /// Creates a webhook (`Manage`) and returns it with its secret (shown this once).
    pub async fn create(
        &self,
        who: &Principal,
        req: CreateWebhook,
    ) -> AppResult<WebhookWithSecret> {
        let scope = self
            .ctx
            .access
            .resolve(who, req.workspace_id.as_deref(), Action::Manage)
            .await?;
        let ws = scope.workspace_id.clone();
        let description = optional_text(
            "description",
            req.description.as_deref(),
            MAX_WEBHOOK_DESCRIPTION_CHARS,
        )?;
        let event_types = parse_event_types(req.event_types)?;
        let audience = req.audience.unwrap_or(Role::Member);
        Self::check_audience(audience, scope.role)?;
        self.key()?;
        let url = self.check_url(&req.url).await?;
        self.check_scope(&ws, req.team_id.as_deref(), req.project_id.as_deref())
            .await?;
        if self.webhooks_of(&ws).await?.len() >= MAX_WEBHOOKS_PER_WORKSPACE {
            return Err(AppError::unprocessable(
                "workspace_id",
                format!("a workspace has at most {MAX_WEBHOOKS_PER_WORKSPACE} webhooks"),
            ));
        }
        let now = self.ctx.now();
        let webhook = Webhook {
            id: ids::new_id(Kind::Webhook, &ws),
            workspace_id: ws.clone(),
            url,
            description,
            event_types,
            team_id: req.team_id,
            project_id: req.project_id,
            enabled: req.enabled.unwrap_or(true),
            audience,
            disabled_reason: None,
            secret_version: 1,
            previous_secret_expires_at: None,
            consecutive_failures: 0,
            failing_since: None,
            created_seq: None,
            created_by: who.user_id.clone(),
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        let key = keys::webhook(&ws, &webhook.id);
        let committed = self
            .ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .op(put_new(&key, "webhook", &webhook))
                    .change(Change::new(
                        EntityType::Webhook,
                        &webhook.id,
                        ChangeKind::Created,
                        &webhook,
                    )))
            })
            .await?;
        // Its first record is the one after its own: remembered for dispatchers that did
        // not see the `webhook.created` record go by (a restarted shim, other Lambdas).
        let mut webhook = webhook;
        webhook.created_seq = committed.seqs.first().copied();
        if let Some(seq) = webhook.created_seq {
            let op = WriteOp::Update {
                table: Table::Main,
                key,
                update: Update::default().set("created_seq", seq),
                condition: Some(Condition::Exists),
            };
            ignore_missing(self.ctx.store.transact(vec![op]).await)?;
        }
        let secret = derive_secret(self.key()?, &webhook.id, webhook.secret_version);
        Ok(WebhookWithSecret { webhook, secret })
    }

    /// Updates a webhook (`Manage`); `version` (or `If-Match`) must match (412).
    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateWebhook,
        if_match: Option<i64>,
    ) -> AppResult<Webhook> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateWebhook,
        expected: Option<i64>,
    ) -> AppResult<Webhook> {
        let got = self
            .ctx
            .access
            .load::<Webhook>(who, Kind::Webhook, id, keys::webhook, Action::Manage, &[])
            .await?;
        let current = got.record;
        check_version(expected, current.version)?;
        let ws = current.workspace_id.clone();
        let mut next = current.clone();
        if let Some(url) = &req.url {
            next.url = self.check_url(url).await?;
        }
        if let Some(d) = &req.description {
            next.description =
                optional_text("description", d.as_deref(), MAX_WEBHOOK_DESCRIPTION_CHARS)?;
        }
        if let Some(types) = &req.event_types {
            next.event_types = parse_event_types(Some(types.clone()))?;
        }
        if let Some(team) = &req.team_id {
            next.team_id = team.clone();
        }
        if let Some(project) = &req.project_id {
            next.project_id = project.clone();
        }
        if let Some(audience) = req.audience {
            Self::check_audience(audience, got.scope.role)?;
            next.audience = audience;
        }
        if let Some(enabled) = req.enabled {
            if enabled && !current.enabled {
                next.disabled_reason = None;
                next.consecutive_failures = 0;
                next.failing_since = None;
            }
            next.enabled = enabled;
        }
        self.check_scope(&ws, next.team_id.as_deref(), next.project_id.as_deref())
            .await?;
        if next == current {
            return Ok(current);
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        self.commit_update(&who.user_id, &current, &next).await?;
        Ok(next)
    }

    async fn commit_update(&self, actor: &str, current: &Webhook, next: &Webhook) -> AppResult<()> {
        let key = keys::webhook(&current.workspace_id, &current.id);
        self.ctx
            .changes
            .commit(&current.workspace_id, actor, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        put_versioned(&key, "webhook", next, current.version),
                        version_conflict(),
                    )
                    .change(Change::new(
                        EntityType::Webhook,
                        &next.id,
                        ChangeKind::Updated,
                        next,
                    )))
            })
            .await?;
        Ok(())
    }

    /// Deletes a webhook (`Manage`). Its deliveries expire with their TTL; pending ones are
    /// dropped at their next attempt.
    pub async fn delete(&self, who: &Principal, id: &str) -> AppResult<Webhook> {
        let got = self
            .ctx
            .access
            .load::<Webhook>(who, Kind::Webhook, id, keys::webhook, Action::Manage, &[])
            .await?;
        let webhook = got.record;
        let ws = webhook.workspace_id.clone();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        delete_existing(keys::webhook(&ws, &webhook.id)),
                        AppError::not_found("webhook"),
                    )
                    .change(Change::new(
                        EntityType::Webhook,
                        &webhook.id,
                        ChangeKind::Deleted,
                        &webhook,
                    )))
            })
            .await?;
        Ok(webhook)
    }

    /// A new secret (`Manage`): the version is bumped and the old secret keeps signing, as a
    /// second `v1=` entry, for `MOMENTUM_WEBHOOK_SECRET_GRACE_SECS`.
    pub async fn rotate_secret(&self, who: &Principal, id: &str) -> AppResult<WebhookWithSecret> {
        self.key()?;
        let webhook = retry_unversioned(None, || async {
            let current = self.get(who, id).await?;
            let mut next = current.clone();
            next.secret_version += 1;
            next.previous_secret_expires_at = Some(format_time(
                self.now_epoch() + self.config.secret_grace.as_secs() as i64,
            ));
            next.version += 1;
            next.updated_at = self.ctx.now();
            self.commit_update(&who.user_id, &current, &next).await?;
            Ok(next)
        })
        .await?;
        let secret = derive_secret(self.key()?, &webhook.id, webhook.secret_version);
        Ok(WebhookWithSecret { webhook, secret })
    }

    /// Deliveries of a webhook (`Manage`), oldest first.
    pub async fn deliveries(
        &self,
        who: &Principal,
        id: &str,
        params: &ListDeliveriesParams,
    ) -> AppResult<Paged<Delivery>> {
        let page = PageParams {
            limit: params.limit,
            cursor: params.cursor.clone(),
        };
        let limit = page.limit()?;
        let webhook = self.get(who, id).await?;
        let query = Query::new(
            Table::Main,
            keys::workspace_partition(&webhook.workspace_id),
        )
        .sort(SortKey::BeginsWith(format!(
            "{}#{}#",
            keys::WEBHOOK_DELIVERY,
            webhook.id
        )))
        .cursor(page.cursor.clone())
        .limit(limit);
        Paged::of(self.ctx.store.query(&query).await?)
    }

    /// Sends a `webhook.test` event now (`Manage`), whatever the filters, and returns its
    /// delivery (one attempt, no retries).
    pub async fn test(&self, who: &Principal, id: &str) -> AppResult<Delivery> {
        let webhook = self.get(who, id).await?;
        let record = ChangeRecord {
            seq: 0,
            workspace_id: webhook.workspace_id.clone(),
            event: "webhook.test".into(),
            entity_type: EntityType::Webhook,
            entity_id: webhook.id.clone(),
            kind: ChangeKind::Updated,
            actor_id: who.user_id.clone(),
            at: self.ctx.now(),
            topics: Vec::new(),
            data: json!({"message": "This is a test delivery from Momentum."}),
            // Carries nothing of the workspace: any audience may receive it.
            audience: Some(Audience {
                min_role: Role::Guest,
                user_id: None,
            }),
        };
        let delivery = self.new_delivery(&webhook, record).await?;
        self.attempt_now(&webhook, delivery, false).await
    }

    /// Delivers a past delivery's record again now (`Manage`): one attempt, recorded on the
    /// same delivery, no automatic retries after it.
    pub async fn redeliver(
        &self,
        who: &Principal,
        id: &str,
        delivery_id: &str,
    ) -> AppResult<Delivery> {
        let webhook = self.get(who, id).await?;
        let ws = &webhook.workspace_id;
        if ids::workspace_of(Kind::WebhookDelivery, delivery_id)
            .ok()
            .as_deref()
            != Some(ws)
        {
            return Err(AppError::not_found("delivery"));
        }
        let delivery: Delivery = found(
            self.ctx
                .store
                .get(
                    Table::Main,
                    &keys::webhook_delivery(ws, &webhook.id, delivery_id),
                )
                .await?,
            "delivery",
        )?;
        if !webhook.admits(&delivery.record) {
            return Err(AppError::unprocessable(
                "delivery_id",
                "the record is not visible to the webhook's audience",
            ));
        }
        self.attempt_now(&webhook, delivery, false).await
    }

    // ---- the dispatcher's side ----

    /// Which webhooks each of `records` (one commit's, or one stream batch's) goes to:
    /// one Query per workspace of the batch. `seen_created` gives the `seq` of each
    /// `webhook.created` record the caller has seen go by (see `Webhook::wants`).
    pub async fn matching(
        &self,
        records: &[ChangeRecord],
        seen_created: &std::collections::HashMap<String, i64>,
        cache: &mut WebhookCache,
    ) -> AppResult<Vec<(Webhook, ChangeRecord)>> {
        if self.config.secret_key.is_none() {
            return Ok(Vec::new());
        }
        // A webhook's own record makes its workspace's list be read again, so a webhook
        // created, changed or deleted through this process counts from its next record.
        for record in records {
            if record.entity_type == EntityType::Webhook {
                cache.forget(&record.workspace_id);
            }
        }
        let mut out = Vec::new();
        for record in records {
            let ws = record.workspace_id.as_str();
            let webhooks = match cache.fresh(ws) {
                Some(webhooks) => webhooks,
                None => cache.keep(ws, self.webhooks_of(ws).await?),
            };
            for webhook in webhooks {
                if webhook.wants(record, seen_created.get(&webhook.id).copied()) {
                    out.push((webhook.clone(), record.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Records a pending delivery of `record` to `webhook`, due now.
    pub async fn new_delivery(
        &self,
        webhook: &Webhook,
        record: ChangeRecord,
    ) -> AppResult<Delivery> {
        let now = self.ctx.now();
        let delivery = Delivery {
            id: ids::new_id(Kind::WebhookDelivery, &webhook.workspace_id),
            webhook_id: webhook.id.clone(),
            workspace_id: webhook.workspace_id.clone(),
            seq: record.seq,
            event: record.event.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now.clone()),
            last_attempt_at: None,
            response_code: None,
            latency_ms: None,
            error: None,
            created_at: now.clone(),
            updated_at: now,
            record,
        };
        self.save_delivery(&delivery).await?;
        Ok(delivery)
    }

    async fn save_delivery(&self, d: &Delivery) -> AppResult<()> {
        let key = keys::webhook_delivery(&d.workspace_id, &d.webhook_id, &d.id);
        let mut item = record_item(&key, "webhook_delivery", d);
        item.insert(
            "ttl".into(),
            json!(self.now_epoch() + DELIVERY_RETENTION_SECS),
        );
        self.ctx
            .store
            .transact(vec![WriteOp::put(Table::Main, item)])
            .await?;
        Ok(())
    }

    /// One scheduled attempt of a pending delivery (the dispatcher calls it when due).
    pub async fn attempt(
        &self,
        workspace_id: &str,
        webhook_id: &str,
        delivery_id: &str,
    ) -> AppResult<Next> {
        let got = self
            .ctx
            .store
            .batch_get(
                Table::Main,
                &[
                    keys::webhook(workspace_id, webhook_id),
                    keys::webhook_delivery(workspace_id, webhook_id, delivery_id),
                ],
            )
            .await?;
        let mut got = got.into_iter();
        let webhook: Option<Webhook> = got.next().flatten().map(from_item).transpose()?;
        let Some(mut delivery) = got
            .next()
            .flatten()
            .map(from_item::<Delivery>)
            .transpose()?
        else {
            return Ok(Next::Done);
        };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(Next::Done);
        }
        let give_up = |reason: &str| {
            let mut d = delivery.clone();
            d.status = DeliveryStatus::Failed;
            d.next_attempt_at = None;
            d.error = Some(reason.to_owned());
            d.updated_at = self.ctx.now();
            d
        };
        let Some(webhook) = webhook.filter(|w| w.enabled) else {
            self.save_delivery(&give_up("the webhook is disabled or deleted"))
                .await?;
            return Ok(Next::WebhookOff);
        };
        // Checked again at delivery time: the audience may have been lowered meanwhile.
        if !webhook.admits(&delivery.record) {
            self.save_delivery(&give_up("not visible to the webhook's audience"))
                .await?;
            return Ok(Next::Done);
        }
        let due = delivery.next_attempt_at.as_deref().and_then(parse_time);
        if let Some(due) = due.filter(|d| *d > self.now_epoch()) {
            return Ok(Next::RetryAt(due));
        }
        delivery = self.attempt_now(&webhook, delivery, true).await?;
        let webhook_off = !self
            .load_webhook(workspace_id, webhook_id)
            .await?
            .is_some_and(|w| w.enabled);
        Ok(match (delivery.status, webhook_off) {
            (DeliveryStatus::Pending, false) => Next::RetryAt(
                delivery
                    .next_attempt_at
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or_else(|| self.now_epoch()),
            ),
            (_, true) => Next::WebhookOff,
            _ => Next::Done,
        })
    }

    async fn load_webhook(&self, ws: &str, id: &str) -> AppResult<Option<Webhook>> {
        self.ctx
            .store
            .get(Table::Main, &keys::webhook(ws, id))
            .await?
            .map(from_item)
            .transpose()
    }

    /// Body and headers of a delivery, signed now.
    pub fn outbound(&self, webhook: &Webhook, delivery: &Delivery) -> AppResult<Outbound> {
        let r = &delivery.record;
        let payload = Payload {
            delivery_id: delivery.id.clone(),
            webhook_id: webhook.id.clone(),
            workspace_id: r.workspace_id.clone(),
            seq: r.seq,
            event: r.event.clone(),
            entity_type: r.entity_type.as_str().to_owned(),
            entity_id: r.entity_id.clone(),
            actor_id: r.actor_id.clone(),
            at: r.at.clone(),
            data: r.data.clone(),
        };
        let body = serde_json::to_vec(&payload).map_err(|_| AppError::internal("payload"))?;
        let timestamp = self.now_epoch();
        let signature = signature_header(&self.signing_secrets(webhook)?, timestamp, &body);
        Ok(Outbound {
            url: webhook.url.clone(),
            headers: vec![
                ("content-type", "application/json".to_owned()),
                (signing::TIMESTAMP_HEADER, timestamp.to_string()),
                (signing::SIGNATURE_HEADER, signature),
                (signing::WEBHOOK_ID_HEADER, webhook.id.clone()),
                (signing::DELIVERY_ID_HEADER, delivery.id.clone()),
                (signing::EVENT_HEADER, r.event.clone()),
            ],
            body,
        })
    }

    /// Sends once, records the outcome on the delivery and the webhook's failure streak
    /// (disabling it per the rules), and returns the delivery as saved. `retry` schedules
    /// the next attempt after a failure (automatic deliveries); manual ones do not retry.
    async fn attempt_now(
        &self,
        webhook: &Webhook,
        mut delivery: Delivery,
        retry: bool,
    ) -> AppResult<Delivery> {
        let request = self.outbound(webhook, &delivery)?;
        let started = Instant::now();
        let result = self.sender.send(request).await;
        let latency = started.elapsed().as_millis() as u64;
        let now = self.now_epoch();
        delivery.attempts += 1;
        delivery.last_attempt_at = Some(format_time(now));
        delivery.latency_ms = Some(latency);
        delivery.updated_at = format_time(now);
        let (ok, gone) = match &result {
            SendResult::Answered { status } => {
                delivery.response_code = Some(*status);
                delivery.error =
                    (!(200..300).contains(status)).then(|| format!("receiver answered {status}"));
                ((200..300).contains(status), *status == 410)
            }
            SendResult::Failed { error } => {
                delivery.response_code = None;
                delivery.error = Some(error.clone());
                (false, false)
            }
        };
        let retry_index = delivery.attempts as usize - 1;
        (delivery.status, delivery.next_attempt_at) = if ok {
            (DeliveryStatus::Succeeded, None)
        } else if retry && !gone && retry_index < RETRY_SCHEDULE_SECS.len() {
            (
                DeliveryStatus::Pending,
                Some(format_time(now + RETRY_SCHEDULE_SECS[retry_index])),
            )
        } else {
            (DeliveryStatus::Failed, None)
        };
        self.save_delivery(&delivery).await?;
        self.record_streak(webhook, ok, gone).await?;
        Ok(delivery)
    }

    /// A success ends the failure streak; a failure extends it, and disables the webhook
    /// when the receiver answered 410, or the streak reached `disable_after_failures`
    /// attempts over at least `disable_after` (a day).
    async fn record_streak(&self, webhook: &Webhook, ok: bool, gone: bool) -> AppResult<()> {
        let key = keys::webhook(&webhook.workspace_id, &webhook.id);
        let Some(current) = self
            .load_webhook(&webhook.workspace_id, &webhook.id)
            .await?
        else {
            return Ok(());
        };
        let now = self.now_epoch();
        if ok {
            if current.consecutive_failures == 0 {
                return Ok(());
            }
            let op = WriteOp::Update {
                table: Table::Main,
                key,
                update: Update::default()
                    .set("consecutive_failures", 0)
                    .remove("failing_since"),
                condition: Some(Condition::Exists),
            };
            return ignore_missing(self.ctx.store.transact(vec![op]).await);
        }
        let failures = current.consecutive_failures + 1;
        let since = current
            .failing_since
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(now);
        let reason = if gone {
            Some("the receiver answered 410 Gone".to_owned())
        } else if failures >= i64::from(self.config.disable_after_failures)
            && now - since >= self.config.disable_after.as_secs() as i64
        {
            Some(format!(
                "{failures} consecutive failed deliveries since {}",
                format_time(since)
            ))
        } else {
            None
        };
        match reason {
            None => {
                let op = WriteOp::Update {
                    table: Table::Main,
                    key,
                    update: Update::default()
                        .set("consecutive_failures", failures)
                        .set("failing_since", format_time(since)),
                    condition: Some(Condition::Exists),
                };
                ignore_missing(self.ctx.store.transact(vec![op]).await)
            }
            Some(reason) => self.disable(webhook, reason, failures, since).await,
        }
    }

    /// Turns a webhook off with a `webhook.updated` change record naming the reason (the
    /// record carries the webhook as stored: no secret is stored, so none leaks).
    async fn disable(
        &self,
        webhook: &Webhook,
        reason: String,
        failures: i64,
        since: i64,
    ) -> AppResult<()> {
        let result = retry_unversioned(None, || async {
            let Some(current) = self
                .load_webhook(&webhook.workspace_id, &webhook.id)
                .await?
            else {
                return Ok(());
            };
            if !current.enabled {
                return Ok(());
            }
            let mut next = current.clone();
            next.enabled = false;
            next.disabled_reason = Some(reason.clone());
            next.consecutive_failures = failures;
            next.failing_since = Some(format_time(since));
            next.version += 1;
            next.updated_at = self.ctx.now();
            // The actor of a server-side change is the webhook's creator.
            self.commit_update(&current.created_by, &current, &next)
                .await
        })
        .await;
        tracing::warn!(webhook_id = %webhook.id, reason = %reason, "webhook disabled");
        result
    }
}

/// A streak update whose webhook was deleted meanwhile has nothing to update.
fn ignore_missing(r: Result<(), crate::storage::StoreError>) -> AppResult<()> {
    match r {
        Err(crate::storage::StoreError::TransactionCanceled { .. }) => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_patterns_are_validated_and_matched() {
        let all = parse_event_types(None).unwrap();
        assert_eq!(all, ["*"]);
        let p = parse_event_types(Some(vec!["issue.*".into(), "comment.created".into()])).unwrap();
        assert!(event_matches(&p, "issue.updated"));
        assert!(event_matches(&p, "comment.created"));
        assert!(!event_matches(&p, "comment.deleted"));
        assert!(!event_matches(&p, "label.created"));
        assert!(event_matches(&all, "label.created"));
        for bad in ["issue", "issues.*", "issue.moved", "", "*.*"] {
            let err = parse_event_types(Some(vec![bad.into()])).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("event_types"), "{bad}");
        }
        assert!(parse_event_types(Some(vec![])).is_err());
        assert!(parse_event_types(Some(vec!["*".into(); 21])).is_err());
    }

    #[test]
    fn retry_schedule_is_the_documented_one() {
        assert_eq!(
            RETRY_SCHEDULE_SECS,
            [60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600, 24 * 3600]
        );
    }
}

/// The webhooks of each workspace as last read, so records of a workspace without webhooks
/// (nearly all) cost no query each. An entry is read again after `WebhookCache::TTL` (a
/// webhook changed through another process is seen within that time) or at once when a
/// webhook record of its workspace goes by. A fresh cache per Lambda invocation batch
/// (`WebhookCache::default()`) reads each workspace once per batch.
#[derive(Default)]
pub struct WebhookCache {
    entries: std::collections::HashMap<String, (Instant, Vec<Webhook>)>,
}

impl WebhookCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);

    fn fresh(&self, ws: &str) -> Option<&[Webhook]> {
        self.entries
            .get(ws)
            .filter(|(read_at, _)| read_at.elapsed() < Self::TTL)
            .map(|(_, webhooks)| webhooks.as_slice())
    }

    fn keep(&mut self, ws: &str, webhooks: Vec<Webhook>) -> &[Webhook] {
        let entry = self
            .entries
            .entry(ws.to_owned())
            .insert_entry((Instant::now(), webhooks))
            .into_mut();
        &entry.1
    }

    fn forget(&mut self, ws: &str) {
        self.entries.remove(ws);
    }
}
