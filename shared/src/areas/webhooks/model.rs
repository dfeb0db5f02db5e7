//! Webhook and delivery records and the request and answer types of the webhooks API.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::kernel::access::{EntityType, Role};
use crate::kernel::changes::ChangeRecord;

/// Event type patterns per webhook.
pub const MAX_EVENT_TYPES: usize = 20;
/// Longest event type pattern.
pub const MAX_EVENT_TYPE_CHARS: usize = 40;
pub const MAX_WEBHOOK_DESCRIPTION_CHARS: usize = 500;
/// Webhooks per workspace.
pub const MAX_WEBHOOKS_PER_WORKSPACE: usize = 100;

/// What an event type pattern looks like: `*`, `{entity_type}.*`, `{entity_type}.{kind}`.
pub fn event_type_pattern() -> String {
    let types: Vec<&str> = EntityType::ALL.iter().map(|t| t.as_str()).collect();
    format!(
        "^(\\*|({})\\.(\\*|created|updated|deleted))$",
        types.join("|")
    )
}

/// The OpenAPI schema of `event_types`: 1–20 patterns.
fn event_types_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(event_type_pattern())),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_EVENT_TYPES))
        .build()
}

/// A webhook (`WS#{ws}` / `WEBHOOK#{id}`). Its secret is not stored (see `signing`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub workspace_id: String,
    /// Where deliveries are POSTed (`https://`; `http://` in local mode only).
    pub url: String,
    pub description: Option<String>,
    /// Patterns the event must match: `*`, `issue.*`, `comment.created`.
    pub event_types: Vec<String>,
    /// Only changes about this team (records carrying topic `team:{id}`).
    pub team_id: Option<String>,
    /// Only changes about this project (records carrying topic `project:{id}`).
    pub project_id: Option<String>,
    pub enabled: bool,
    /// Whose view the webhook gets: a record is delivered only when a member of this role
    /// may read it (the visibility rule of the change feed). Never above its creator's role.
    pub audience: Role,
    /// Why the server disabled it (410 from the receiver, too many failures); cleared when
    /// re-enabled.
    pub disabled_reason: Option<String>,
    /// Which derived secret signs now (bumped by rotation).
    pub secret_version: i64,
    /// Until when the previous secret still signs too (RFC 3339), after a rotation.
    pub previous_secret_expires_at: Option<String>,
    /// Failed attempts since the last success (set by the dispatcher).
    #[serde(default)]
    pub consecutive_failures: i64,
    /// When the current failure streak began (RFC 3339).
    #[serde(default)]
    pub failing_since: Option<String>,
    /// The `seq` of its `webhook.created` record: it gets the records after it.
    #[serde(default)]
    pub created_seq: Option<i64>,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A webhook with its secret: returned only by create and rotate-secret.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_...`: the HMAC key of `Momentum-Signature`. Shown this once.
    pub secret: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Default `["*"]` (every event the audience may see).
    #[serde(default)]
    #[schema(schema_with = event_types_schema)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Default `member`; at most the creator's role.
    #[serde(default)]
    pub audience: Option<Role>,
}

/// Absent fields stay; `null` clears `description`, `team_id`, `project_id`. Setting
/// `enabled: true` clears `disabled_reason` and the failure streak.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    #[schema(schema_with = event_types_schema)]
    pub event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub team_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub project_id: Option<Option<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub audience: Option<Role>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListWebhooksParams {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDeliveriesParams {
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet delivered; `next_attempt_at` says when it is tried (again).
    Pending,
    Succeeded,
    /// Given up: retries exhausted, the webhook disabled or deleted, or the record no
    /// longer visible to its audience.
    Failed,
}

/// One change record's delivery to one webhook (`WS#{ws}` /
/// `WHDELIVERY#{webhook}#{delivery}`), kept 30 days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub workspace_id: String,
    /// The change record's `seq` (0 for `webhook.test`).
    pub seq: i64,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The receiver's last HTTP status, if it answered.
    pub response_code: Option<u16>,
    /// Duration of the last attempt.
    pub latency_ms: Option<u64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// What is delivered (the change record as the feed serves it).
    #[schema(value_type = Object)]
    pub record: ChangeRecord,
}

/// The JSON body of a delivery: the change record as `GET /workspaces/{id}/changes` serves
/// it, plus which delivery and webhook it is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Payload {
    pub delivery_id: String,
    pub webhook_id: String,
    pub workspace_id: String,
    pub seq: i64,
    pub event: String,
    pub entity_type: String,
    pub entity_id: String,
    pub actor_id: String,
    pub at: String,
    pub data: serde_json::Value,
}
