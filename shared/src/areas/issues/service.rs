//! Issues: per-team numbering and identifiers (`ENG-42`), partial updates with optimistic
//! concurrency, an activity history, workflow transitions, sub-issues, and lists with
//! filters, sorts and cursor pagination.
//!
//! Storage layout (docs/data-model.md, "Issues and cycles", has the full table):
//!
//! - The canonical record `WS#{ws}` / `ISSUE#{id}` (what `GET /issues/{id}` reads in the
//!   same batch as the caller's session and membership). Its `gsi1` serves team lists by
//!   creation (`…#TEAM#{team}#ISSUES#CREATED` / number), its `gsi2` workspace lists by
//!   creation (`…#ISSUES#CREATED` / creation key).
//! - Copies of the record that exist to be found another way ("index entries"), written in
//!   the same transaction as the canonical record so they never disagree with it:
//!   - the *assignee* copy `WS#{ws}#ISSUES#ASSIGNEE#{user|none}` / creation key, whose gsi1
//!     and gsi2 keys order the team's and the workspace's issues by update time;
//!   - the *project* copy `WS#{ws}#ISSUES#PROJECT#{project|none}` / creation key, whose gsi1
//!     and gsi2 keys order by priority;
//!   - a *parent* copy `WS#{ws}#ISSUES#PARENT#{parent}` when the issue has a parent, and a
//!     *cycle* copy `WS#{ws}#ISSUES#CYCLE#{cycle}` when it is in a cycle.
//!
//!   The main-table copies are strongly consistent lists of exactly one relation (sub-issues,
//!   a cycle's issues, an assignee's, a project's), ordered by creation.
//! - Activity: `WS#{ws}#ISSUE#{id}#ACTIVITY` / `{version:010}#{n:03}`, oldest first.
//! - Identifier lookup: `WS#{ws}` / `ISSUEKEY#{TEAMKEY}-{number}` -> issue id.
//!
//! The creation key is the hex of the UUIDv7 inside the issue id: the id's base64url text
//! does not sort in creation order, the UUID does.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::areas::issues::references::exists_unmarked;
use crate::areas::teams::Team;
use crate::areas::workflows::{StateCategory, Workflow, WorkflowState};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::access::Action;
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::changes::{Change, ChangeKind, CounterRef, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, expected_version, found, required_text, retry_unversioned,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::paging::query_all;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item, to_item};
use crate::kernel::topic::Topic;
use crate::storage::cursor::Position;
use crate::storage::{Condition, Index, Item, Key, Query, SortKey, Table, WriteOp};

pub const MAX_TITLE_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_LABELS: usize = 20;
/// How far up the parent chain a parent change looks for a cycle.
pub const MAX_PARENT_DEPTH: usize = 50;
/// Longest id accepted in a body or query (ids are ~48 characters).
pub const MAX_ID_CHARS: usize = 100;
pub const MAX_QUERY_CHARS: usize = 255;
/// Items read per query while filtering a list page in memory.
const SCAN_BATCH: u32 = 100;
/// Queries one list page may spend filtering in memory before it returns what it has
/// (possibly fewer than `limit` items, with a `next_cursor`).
const MAX_SCAN_CALLS: usize = 5;
/// A relation set (sub-issues, a cycle's, an assignee's or a project's issues) up to this
/// size is sorted in memory for `sort=updated|priority`; larger ones use the sort index.
const MAX_SORTED_SET: u32 = 1000;
/// Issues per transaction when one request changes many (cycle assignment, detaching).
const BULK_CHUNK: usize = 10;
const SEEK_PREFIX: &str = "k.";

// ---------------------------------------------------------------------------------------
// Keys

const IDENTIFIER: &str = "ISSUEKEY";

/// The identifier lookup item (`ENG-42` -> issue id).
pub fn identifier_key(ws: &str, identifier: &str) -> Key {
    keys::scoped(ws, IDENTIFIER, identifier)
}

fn activity_partition(ws: &str, issue_id: &str) -> String {
    format!("WS#{ws}#ISSUE#{issue_id}#ACTIVITY")
}

/// The issues assigned to a user (or to no one), main table, by creation.
pub fn assignee_partition(ws: &str, assignee: Option<&str>) -> String {
    format!("WS#{ws}#ISSUES#ASSIGNEE#{}", assignee.unwrap_or("none"))
}

/// The issues of a project (or of none), main table, by creation.
pub fn project_partition(ws: &str, project: Option<&str>) -> String {
    format!("WS#{ws}#ISSUES#PROJECT#{}", project.unwrap_or("none"))
}

fn parent_partition(ws: &str, parent: &str) -> String {
    format!("WS#{ws}#ISSUES#PARENT#{parent}")
}

/// The issues of a cycle (main table, by creation).
pub fn cycle_partition(ws: &str, cycle: &str) -> String {
    format!("WS#{ws}#ISSUES#CYCLE#{cycle}")
}

fn team_index_partition(ws: &str, team: &str, sort: SortBy) -> String {
    format!("WS#{ws}#TEAM#{team}#ISSUES#{}", sort.tag())
}

fn workspace_index_partition(ws: &str, sort: SortBy) -> String {
    format!("WS#{ws}#ISSUES#{}", sort.tag())
}

/// Creation order of an issue (see `ids::creation_key`).
fn creation_key(id: &str) -> String {
    ids::creation_key(id)
}

/// A timestamp as sortable text (microseconds since the epoch, zero-padded).
fn time_key(rfc3339: &str) -> String {
    let micros = time::OffsetDateTime::parse(rfc3339, &Rfc3339)
        .map(|t| t.unix_timestamp_nanos() / 1000)
        .unwrap_or(0)
        .max(0);
    format!("{micros:017}")
}

// ---------------------------------------------------------------------------------------
// Records and inputs

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    None,
    Low,
    Medium,
    High,
    Urgent,
}

impl Priority {
    /// Importance, least first (so `order=desc` lists urgent first, none last).
    pub fn rank(self) -> u8 {
        match self {
            Priority::None => 0,
            Priority::Low => 1,
            Priority::Medium => 2,
            Priority::High => 3,
            Priority::Urgent => 4,
        }
    }

    pub fn parse(field: &str, raw: &str) -> AppResult<Self> {
        Ok(match raw {
            "none" => Priority::None,
            "low" => Priority::Low,
            "medium" => Priority::Medium,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => {
                return Err(AppError::validation(
                    field,
                    "must be one of none, low, medium, high, urgent",
                ));
            }
        })
    }
}

/// An issue, as stored and served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Issue {
    pub id: String,
    pub workspace_id: String,
    pub team_id: String,
    /// The team's workflow, whose states the issue moves through.
    pub workflow_id: String,
    /// Per-team sequence number, from 1.
    pub number: i64,
    /// `{TEAMKEY}-{number}`, e.g. `ENG-42`; `GET /issues/ENG-42` finds the issue.
    pub identifier: String,
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub state_id: String,
    pub assignee_id: Option<String>,
    #[serde(default)]
    pub label_ids: Vec<String>,
    pub project_id: Option<String>,
    pub cycle_id: Option<String>,
    pub parent_id: Option<String>,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// One changed field of an issue: who changed it, from what to what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    pub issue_id: String,
    pub workspace_id: String,
    pub actor_id: String,
    /// The field (`title`, `state_id`, ...) or `created`.
    pub field: String,
    pub from: Value,
    pub to: Value,
    pub at: String,
    /// The issue version this change produced.
    pub version: i64,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssue {
    pub team_id: String,
    /// 1–255 characters.
    #[schema(min_length = 1, max_length = 255)]
    pub title: String,
    /// Up to 10,000 characters.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// Default `none`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// A member of the workspace.
    #[serde(default)]
    pub assignee_id: Option<String>,
    /// Up to 20 labels of the workspace.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub label_ids: Option<Vec<String>>,
    #[serde(default)]
    pub project_id: Option<String>,
    /// A cycle of the same team.
    #[serde(default)]
    pub cycle_id: Option<String>,
    /// An issue of the same team.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// A state of the team's workflow; default the workflow's default state.
    #[serde(default)]
    pub state_id: Option<String>,
}

/// Absent fields stay; `null` clears an optional field. `version` (or `If-Match`), when
/// given, must match the stored version.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIssue {
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(nullable = false, value_type = String, min_length = 1, max_length = 255)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 10000)]
    pub description: Option<Option<String>>,
    /// `null` means `none`.
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<Priority>)]
    pub priority: Option<Option<Priority>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub assignee_id: Option<Option<String>>,
    /// The whole set; `null` or `[]` removes every label.
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<Vec<String>>)]
    #[schema(max_items = 20)]
    pub label_ids: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub project_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub cycle_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<String>>,
    /// Must be an allowed transition from the current state (409 otherwise).
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = String, nullable = false)]
    pub state_id: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionIssue {
    pub state_id: String,
    #[serde(default)]
    pub version: Option<i64>,
}

/// The states an issue may move to from its current state.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Transitions {
    pub issue_id: String,
    pub current_state: Option<WorkflowState>,
    pub allowed: Vec<WorkflowState>,
}

/// Filters, sort and page of `GET /issues`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListIssuesParams {
    /// Default: the team's workspace, else the caller's current workspace.
    pub workspace_id: Option<String>,
    pub team_id: Option<String>,
    pub project_id: Option<String>,
    pub assignee_id: Option<String>,
    pub state_id: Option<String>,
    /// triage | backlog | unstarted | started | completed | canceled
    #[param(pattern = "^(triage|backlog|unstarted|started|completed|canceled)$")]
    pub state_category: Option<String>,
    /// none | low | medium | high | urgent
    #[param(pattern = "^(none|low|medium|high|urgent)$")]
    pub priority: Option<String>,
    pub label_id: Option<String>,
    pub cycle_id: Option<String>,
    pub parent_id: Option<String>,
    /// Case-insensitive substring of the title.
    #[param(max_length = 255)]
    pub q: Option<String>,
    /// created (default) | updated | priority
    #[param(pattern = "^(created|updated|priority)$")]
    pub sort: Option<String>,
    /// desc (default: newest, most recently updated or most urgent first) | asc
    #[param(pattern = "^(asc|desc)$")]
    pub order: Option<String>,
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor` (same filters and sort).
    pub cursor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Created,
    Updated,
    Priority,
}

impl SortBy {
    fn parse(raw: Option<&str>) -> AppResult<Self> {
        match raw {
            None | Some("created") => Ok(SortBy::Created),
            Some("updated") => Ok(SortBy::Updated),
            Some("priority") => Ok(SortBy::Priority),
            Some(_) => Err(AppError::validation(
                "sort",
                "must be one of created, updated, priority",
            )),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            SortBy::Created => "CREATED",
            SortBy::Updated => "UPDATED",
            SortBy::Priority => "PRIORITY",
        }
    }
}

/// Sort key of an issue in a team-scoped index (ties broken by number).
fn team_sort_key(issue: &Issue, sort: SortBy) -> String {
    match sort {
        SortBy::Created => format!("{:010}", issue.number),
        SortBy::Updated => format!("{}#{:010}", time_key(&issue.updated_at), issue.number),
        SortBy::Priority => format!("{}#{:010}", issue.priority.rank(), issue.number),
    }
}

/// Sort key of an issue in a workspace-scoped index or an in-memory sort (unique).
fn workspace_sort_key(issue: &Issue, sort: SortBy) -> String {
    let ck = creation_key(&issue.id);
    match sort {
        SortBy::Created => ck,
        SortBy::Updated => format!("{}#{ck}", time_key(&issue.updated_at)),
        SortBy::Priority => format!("{}#{ck}", issue.priority.rank()),
    }
}

// ---------------------------------------------------------------------------------------
// Writes shared by every mutation

/// The canonical item and the index copies of an issue.
fn index_items(issue: &Issue) -> Vec<Item> {
    let ws = issue.workspace_id.as_str();
    let team = issue.team_id.as_str();
    let ck = creation_key(&issue.id);
    let base = to_item(issue);
    let build = |key: Key, entity: &str, gsi: &[(Index, String, String)]| -> Item {
        let mut item = base.clone();
        item.insert("pk".into(), json!(key.pk));
        item.insert("sk".into(), json!(key.sk));
        item.insert("entity".into(), json!(entity));
        for (ix, pk, sk) in gsi {
            item.insert(ix.pk_attr().into(), json!(pk));
            item.insert(ix.sk_attr().into(), json!(sk));
        }
        item
    };
    let sorted = |sort: SortBy| {
        [
            (
                Index::Gsi1,
                team_index_partition(ws, team, sort),
                team_sort_key(issue, sort),
            ),
            (
                Index::Gsi2,
                workspace_index_partition(ws, sort),
                workspace_sort_key(issue, sort),
            ),
        ]
    };
    let mut out = vec![
        build(
            keys::issue(ws, &issue.id),
            "issue",
            &sorted(SortBy::Created),
        ),
        build(
            Key::new(
                assignee_partition(ws, issue.assignee_id.as_deref()),
                ck.clone(),
            ),
            "issue_copy",
            &sorted(SortBy::Updated),
        ),
        build(
            Key::new(
                project_partition(ws, issue.project_id.as_deref()),
                ck.clone(),
            ),
            "issue_copy",
            &sorted(SortBy::Priority),
        ),
    ];
    if let Some(parent) = &issue.parent_id {
        out.push(build(
            Key::new(parent_partition(ws, parent), ck.clone()),
            "issue_copy",
            &[],
        ));
    }
    if let Some(cycle) = &issue.cycle_id {
        out.push(build(
            Key::new(cycle_partition(ws, cycle), ck),
            "issue_copy",
            &[],
        ));
    }
    out
}

/// Adds the writes that take an issue from `prev` to `next` (either may be absent: create,
/// delete). The canonical item is conditioned on the version read (or on not existing), so
/// the copies, written or deleted in the same transaction, always follow the winner.
fn plan_issue_writes<T>(mut plan: Plan<T>, prev: Option<&Issue>, next: Option<&Issue>) -> Plan<T> {
    let old: Vec<Item> = prev.map(index_items).unwrap_or_default();
    let new: Vec<Item> = next.map(index_items).unwrap_or_default();
    let new_keys: HashSet<Key> = new.iter().filter_map(Key::of).collect();
    let guard = match prev {
        Some(p) => Condition::VersionEquals(p.version),
        None => Condition::NotExists,
    };
    let lost_race = || {
        AppError::new(
            ErrorCode::PreconditionFailed,
            "the issue was modified concurrently; reload and retry",
        )
    };
    for (i, item) in new.into_iter().enumerate() {
        if i == 0 {
            plan = plan.guarded(
                WriteOp::Put {
                    table: Table::Main,
                    item,
                    condition: Some(guard.clone()),
                },
                lost_race(),
            );
        } else {
            plan = plan.op(WriteOp::put(Table::Main, item));
        }
    }
    for (i, item) in old.iter().enumerate() {
        let Some(key) = Key::of(item) else { continue };
        if new_keys.contains(&key) {
            continue;
        }
        if i == 0 {
            // Deleting the issue itself.
            plan = plan.guarded(
                WriteOp::Delete {
                    table: Table::Main,
                    key,
                    condition: Some(guard.clone()),
                },
                lost_race(),
            );
        } else {
            plan = plan.op(WriteOp::Delete {
                table: Table::Main,
                key,
                condition: None,
            });
        }
    }
    plan
}

/// One field change, for the activity history.
#[derive(Clone, Debug)]
struct FieldChange {
    field: &'static str,
    from: Value,
    to: Value,
}

/// The user-visible fields that differ between two versions of an issue.
fn diff(a: &Issue, b: &Issue) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut cmp = |field: &'static str, x: Value, y: Value| {
        if x != y {
            out.push(FieldChange {
                field,
                from: x,
                to: y,
            });
        }
    };
    cmp("title", json!(a.title), json!(b.title));
    cmp("description", json!(a.description), json!(b.description));
    cmp("priority", json!(a.priority), json!(b.priority));
    cmp("state_id", json!(a.state_id), json!(b.state_id));
    cmp("assignee_id", json!(a.assignee_id), json!(b.assignee_id));
    cmp("label_ids", json!(a.label_ids), json!(b.label_ids));
    cmp("project_id", json!(a.project_id), json!(b.project_id));
    cmp("cycle_id", json!(a.cycle_id), json!(b.cycle_id));
    cmp("parent_id", json!(a.parent_id), json!(b.parent_id));
    out
}

fn activity_op(issue: &Issue, actor: &str, at: &str, n: usize, change: FieldChange) -> WriteOp {
    let record = Activity {
        issue_id: issue.id.clone(),
        workspace_id: issue.workspace_id.clone(),
        actor_id: actor.to_owned(),
        field: change.field.to_owned(),
        from: change.from,
        to: change.to,
        at: at.to_owned(),
        version: issue.version,
    };
    let key = Key::new(
        activity_partition(&issue.workspace_id, &issue.id),
        format!("{:010}#{n:03}", issue.version),
    );
    WriteOp::put_new(Table::Main, record_item(&key, "issue_activity", &record))
}

/// The change record of an issue, with its realtime topics.
fn issue_change(kind: ChangeKind, issue: &Issue, previous: Option<&Issue>) -> Change {
    let mut change = Change::new(EntityType::Issue, &issue.id, kind, issue)
        .topic(Topic::Team(issue.team_id.clone()))
        .topic(Topic::Issue(issue.id.clone()));
    let mut projects: Vec<&String> = issue.project_id.iter().collect();
    if let Some(old) = previous.and_then(|p| p.project_id.as_ref())
        && !projects.contains(&old)
    {
        projects.push(old);
    }
    for p in projects {
        change = change.topic(Topic::Project(p.to_string()));
    }
    change
}

/// Adds an update of `current` to `next` (version and time already advanced): the issue
/// writes, one activity entry per changed field and the change record.
fn plan_update<T>(mut plan: Plan<T>, current: &Issue, next: &Issue, actor: &str) -> Plan<T> {
    plan = plan_issue_writes(plan, Some(current), Some(next));
    for (n, change) in diff(current, next).into_iter().enumerate() {
        plan = plan.op(activity_op(next, actor, &next.updated_at, n, change));
    }
    plan.change(issue_change(ChangeKind::Updated, next, Some(current)))
}

fn exists_check(key: Key, error: AppError) -> (WriteOp, AppError) {
    (
        WriteOp::ConditionCheck {
            table: Table::Main,
            key,
            condition: Condition::Exists,
        },
        error,
    )
}

/// The guard of a move into a state: it still exists and is not being deleted (else the
/// issue could land in a state deleted meanwhile).
fn state_guard(ws: &str, workflow_id: &str, state_id: &str) -> (WriteOp, AppError) {
    exists_unmarked(
        keys::state(ws, workflow_id, state_id),
        AppError::validation("state_id", "the state was deleted or is being deleted"),
    )
}

// ---------------------------------------------------------------------------------------
// Input checks

/// An id from a body or query: non-empty, bounded, printable (it becomes part of a key).
fn id_input(field: &str, raw: &str) -> AppResult<String> {
    let id = raw.trim();
    if id.is_empty() || id.len() > MAX_ID_CHARS || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AppError::validation(field, "is not a valid id"));
    }
    Ok(id.to_owned())
}

fn opt_id_input(field: &str, raw: Option<&str>) -> AppResult<Option<String>> {
    raw.map(|r| id_input(field, r)).transpose()
}

fn label_input(raw: &[String]) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for id in raw {
        let id = id_input("label_ids", id)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.len() > MAX_LABELS {
        return Err(AppError::validation(
            "label_ids",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    Ok(out)
}

/// `ENG-42` (any case) -> `ENG-42`; anything else is not an identifier.
fn parse_identifier(raw: &str) -> Option<String> {
    let (key, num) = raw.rsplit_once('-')?;
    let key_ok =
        !key.is_empty() && key.len() <= 20 && key.chars().all(|c| c.is_ascii_alphanumeric());
    let num_ok = !num.is_empty() && num.len() <= 12 && num.chars().all(|c| c.is_ascii_digit());
    if !key_ok || !num_ok {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(format!("{}-{n}", key.to_ascii_uppercase()))
}

fn parse_category(raw: &str) -> AppResult<StateCategory> {
    serde_json::from_value(json!(raw)).map_err(|_| {
        AppError::validation(
            "state_category",
            "must be one of triage, backlog, unstarted, started, completed, canceled",
        )
    })
}

/// References a create or update names, read in the authorization batch.
#[derive(Default)]
struct RefRequest {
    assignee: Option<String>,
    labels: Vec<String>,
    project: Option<String>,
    cycle: Option<String>,
    parent: Option<String>,
}

struct RefSlots {
    assignee: Option<usize>,
    labels: Vec<usize>,
    project: Option<usize>,
    cycle: Option<usize>,
    parent: Option<usize>,
}

impl RefRequest {
    fn keys(&self, ws: &str, keys_out: &mut Vec<Key>) -> RefSlots {
        let mut push = |k: Key| {
            keys_out.push(k);
            keys_out.len() - 1
        };
        RefSlots {
            assignee: self.assignee.as_ref().map(|u| push(keys::member(ws, u))),
            labels: self
                .labels
                .iter()
                .map(|l| push(keys::label(ws, l)))
                .collect(),
            project: self.project.as_ref().map(|p| push(keys::project(ws, p))),
            cycle: self.cycle.as_ref().map(|c| push(keys::cycle(ws, c))),
            parent: self.parent.as_ref().map(|p| push(keys::issue(ws, p))),
        }
    }
}

/// What the referenced records said, checked.
struct Refs {
    parent: Option<Issue>,
    guards: Vec<(WriteOp, AppError)>,
}

impl RefSlots {
    /// Checks the references of an issue of `team_id` (`self_id` for updates).
    fn check(
        &self,
        ws: &str,
        req: &RefRequest,
        items: &mut [Option<Item>],
        team_id: &str,
        self_id: Option<&str>,
    ) -> AppResult<Refs> {
        let mut guards = Vec::new();
        if let (Some(i), Some(user)) = (self.assignee, &req.assignee) {
            if items[i].is_none() {
                return Err(AppError::unknown_reference(
                    "assignee_id",
                    "is not a member of this workspace",
                ));
            }
            guards.push(exists_unmarked(
                keys::member(ws, user),
                AppError::validation(
                    "assignee_id",
                    "is no longer a member of this workspace (or is being removed)",
                ),
            ));
        }
        for (&i, label) in self.labels.iter().zip(&req.labels) {
            if items[i].is_none() {
                return Err(AppError::unknown_reference(
                    "label_ids",
                    format!("label {label} not found in this workspace"),
                ));
            }
            guards.push(exists_unmarked(
                keys::label(ws, label),
                AppError::validation(
                    "label_ids",
                    format!("label {label} was deleted or is being deleted"),
                ),
            ));
        }
        if let (Some(i), Some(project)) = (self.project, &req.project) {
            if items[i].is_none() {
                return Err(AppError::unknown_reference(
                    "project_id",
                    "project not found in this workspace",
                ));
            }
            guards.push(exists_unmarked(
                keys::project(ws, project),
                AppError::validation("project_id", "the project was deleted or is being deleted"),
            ));
        }
        if let (Some(i), Some(cycle)) = (self.cycle, &req.cycle) {
            let item = items[i]
                .take()
                .ok_or_else(|| AppError::unknown_reference("cycle_id", "cycle not found"))?;
            if item.get("team_id").and_then(Value::as_str) != Some(team_id) {
                return Err(AppError::unprocessable(
                    "cycle_id",
                    "the cycle belongs to another team",
                ));
            }
            guards.push(exists_check(
                keys::cycle(ws, cycle),
                AppError::validation("cycle_id", "the cycle was deleted"),
            ));
        }
        let mut parent = None;
        if let Some(i) = self.parent {
            if req.parent.as_deref() == self_id {
                return Err(AppError::validation(
                    "parent_id",
                    "an issue cannot be its own parent",
                ));
            }
            let p: Issue = items[i].take().map(from_item).transpose()?.ok_or_else(|| {
                AppError::unknown_reference("parent_id", "parent issue not found")
            })?;
            if p.team_id != team_id {
                return Err(AppError::validation(
                    "parent_id",
                    "the parent issue belongs to another team",
                ));
            }
            parent = Some(p);
        }
        Ok(Refs { parent, guards })
    }
}

// ---------------------------------------------------------------------------------------
// Reads shared with cycles

/// Every state of a workflow, by position.
pub async fn workflow_states(
    ctx: &ServiceContext,
    ws: &str,
    workflow_id: &str,
) -> AppResult<Vec<WorkflowState>> {
    let page = ctx
        .store
        .query(
            &Query::new(Table::Main, keys::workspace_partition(ws))
                .sort(SortKey::BeginsWith(format!(
                    "{}#{workflow_id}#",
                    keys::STATE
                )))
                .limit(1000),
        )
        .await?;
    let mut states: Vec<WorkflowState> = page
        .items
        .into_iter()
        .map(from_item)
        .collect::<AppResult<_>>()?;
    states.sort_by_key(|s| s.position);
    Ok(states)
}

/// The states `from` may move to (`transitions_to` of `None`: any other state).
pub fn allowed_targets<'a>(
    states: &'a [WorkflowState],
    from: Option<&WorkflowState>,
) -> Vec<&'a WorkflowState> {
    states
        .iter()
        .filter(|s| match from {
            None => true,
            Some(f) if s.id == f.id => false,
            Some(f) => f
                .transitions_to
                .as_ref()
                .is_none_or(|targets| targets.contains(&s.id)),
        })
        .collect()
}

/// Every issue of a main-table relation partition (a cycle's, a parent's sub-issues), up to
/// `max`, oldest first.
pub async fn relation_issues(ctx: &ServiceContext, pk: &str, max: usize) -> AppResult<Vec<Issue>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = ctx
            .store
            .query(
                &Query::new(Table::Main, pk)
                    .limit(MAX_SORTED_SET)
                    .cursor(cursor.take()),
            )
            .await?;
        for item in page.items {
            out.push(from_item(item)?);
        }
        match page.next_cursor {
            Some(c) if out.len() < max => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// Applies `mutate` to many issues, `BULK_CHUNK` per transaction (each atomic, with activity
/// and change records). An issue changed concurrently is re-read and the change re-applied.
/// `guard`, when given, must exist in every transaction (e.g. the cycle being assigned).
pub async fn rewrite_issues<F>(
    ctx: &ServiceContext,
    ws: &str,
    actor: &str,
    issues: Vec<Issue>,
    guard: Option<(Key, AppError)>,
    mutate: F,
) -> AppResult<Vec<Issue>>
where
    F: Fn(&Issue) -> Option<Issue>,
{
    let guards: Vec<(WriteOp, AppError)> = guard
        .into_iter()
        .map(|(key, err)| exists_check(key, err))
        .collect();
    rewrite_issues_guarded(ctx, ws, actor, issues, &guards, mutate).await
}

/// `rewrite_issues` with any guards (conditions every transaction must meet).
pub async fn rewrite_issues_guarded<F>(
    ctx: &ServiceContext,
    ws: &str,
    actor: &str,
    issues: Vec<Issue>,
    guards: &[(WriteOp, AppError)],
    mutate: F,
) -> AppResult<Vec<Issue>>
where
    F: Fn(&Issue) -> Option<Issue>,
{
    let mut out = Vec::with_capacity(issues.len());
    for chunk in issues.chunks(BULK_CHUNK) {
        let mut chunk = chunk.to_vec();
        let mut attempt = 0;
        loop {
            let now = ctx.now();
            let mut unchanged = Vec::new();
            let mut pairs = Vec::new();
            for current in &chunk {
                match mutate(current) {
                    Some(mut next) if !diff(current, &next).is_empty() => {
                        next.version = current.version + 1;
                        next.updated_at = now.clone();
                        pairs.push((current.clone(), next));
                    }
                    _ => unchanged.push(current.clone()),
                }
            }
            if pairs.is_empty() {
                out.extend(unchanged);
                break;
            }
            let result = ctx
                .changes
                .commit(ws, actor, &[], |_| {
                    let mut plan = Plan::new(());
                    for (op, err) in guards {
                        plan = plan.guarded(op.clone(), err.clone());
                    }
                    for (current, next) in &pairs {
                        plan = plan_update(plan, current, next, actor);
                    }
                    Ok(plan)
                })
                .await;
            match result {
                Ok(_) => {
                    out.extend(unchanged);
                    out.extend(pairs.into_iter().map(|(_, next)| next));
                    break;
                }
                Err(e) if e.code == ErrorCode::PreconditionFailed && attempt < 4 => {
                    // Someone changed one of them: re-read the chunk and decide again.
                    attempt += 1;
                    let keys: Vec<Key> = chunk.iter().map(|i| keys::issue(ws, &i.id)).collect();
                    let fresh = ctx.store.batch_get(Table::Main, &keys).await?;
                    chunk = fresh
                        .into_iter()
                        .flatten()
                        .map(from_item)
                        .collect::<AppResult<_>>()?;
                }
                // None of these writes states a version: losing every round is contention,
                // not the caller's stale read.
                Err(e) if e.code == ErrorCode::PreconditionFailed => {
                    return Err(AppError::unavailable(
                        "these issues are being changed by many writers at once; retry",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// Every issue of the workspace that `keep` accepts, from the canonical items (strongly
/// consistent, every page): for the rare write that must find issues by a field that no copy
/// is keyed by (a label, a state).
pub async fn workspace_issues(
    ctx: &ServiceContext,
    ws: &str,
    keep: impl Fn(&Issue) -> bool,
) -> AppResult<Vec<Issue>> {
    let items = query_all(
        ctx.store.as_ref(),
        Query::new(Table::Main, keys::workspace_partition(ws))
            .sort(SortKey::BeginsWith(format!("{}#", keys::ISSUE))),
    )
    .await?;
    let mut out = Vec::new();
    for item in items {
        let issue: Issue = from_item(item)?;
        if keep(&issue) {
            out.push(issue);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Lists

/// Filters applied to every issue a list reads (the index chosen serves some exactly).
#[derive(Default)]
struct Filter {
    team: Option<String>,
    project: Option<String>,
    assignee: Option<String>,
    states: Option<HashSet<String>>,
    priority: Option<Priority>,
    label: Option<String>,
    cycle: Option<String>,
    parent: Option<String>,
    q: Option<String>,
}

/// Which filter an access path answers exactly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Covered {
    Nothing,
    Team,
    Parent,
    Cycle,
    Assignee,
    Project,
}

impl Filter {
    fn matches(&self, i: &Issue) -> bool {
        let eq = |want: &Option<String>, have: Option<&String>| {
            want.as_ref().is_none_or(|w| have == Some(w))
        };
        eq(&self.team, Some(&i.team_id))
            && eq(&self.project, i.project_id.as_ref())
            && eq(&self.assignee, i.assignee_id.as_ref())
            && eq(&self.cycle, i.cycle_id.as_ref())
            && eq(&self.parent, i.parent_id.as_ref())
            && self.states.as_ref().is_none_or(|s| s.contains(&i.state_id))
            && self.priority.is_none_or(|p| i.priority == p)
            && self.label.as_ref().is_none_or(|l| i.label_ids.contains(l))
            && self
                .q
                .as_ref()
                .is_none_or(|q| i.title.to_lowercase().contains(q.as_str()))
    }

    /// True when the path answers every filter given, so pages need no filtering.
    fn exact_on(&self, covered: Covered) -> bool {
        (self.team.is_none() || covered == Covered::Team)
            && (self.project.is_none() || covered == Covered::Project)
            && (self.assignee.is_none() || covered == Covered::Assignee)
            && (self.cycle.is_none() || covered == Covered::Cycle)
            && (self.parent.is_none() || covered == Covered::Parent)
            && self.states.is_none()
            && self.priority.is_none()
            && self.label.is_none()
            && self.q.is_none()
    }
}

fn items_to_issues(items: Vec<Item>) -> AppResult<Vec<Issue>> {
    items.into_iter().map(from_item).collect()
}

/// Pages through `query`, keeping what `filter` accepts: one query when the path answers
/// every filter, else up to `MAX_SCAN_CALLS` batches. The cursor is the store's position of
/// the last item returned (or scanned, when the budget ran out first).
async fn stream_page(
    ctx: &ServiceContext,
    query: Query,
    filter: &Filter,
    exact: bool,
    limit: u32,
    cursor: Option<String>,
) -> AppResult<Paged<Issue>> {
    if cursor
        .as_deref()
        .is_some_and(|c| c.starts_with(SEEK_PREFIX))
    {
        return Err(AppError::validation("cursor", "invalid or foreign cursor"));
    }
    if exact {
        let page = ctx.store.query(&query.limit(limit).cursor(cursor)).await?;
        return Ok(Paged {
            items: items_to_issues(page.items)?,
            next_cursor: page.next_cursor,
        });
    }
    let index = query.index;
    let mut kept: Vec<(Item, Issue)> = Vec::new();
    let mut cursor = cursor;
    for _ in 0..MAX_SCAN_CALLS {
        let page = ctx
            .store
            .query(&query.clone().limit(SCAN_BATCH).cursor(cursor.take()))
            .await?;
        for item in page.items {
            let issue: Issue = from_item(item.clone())?;
            if !filter.matches(&issue) {
                continue;
            }
            if kept.len() as u32 == limit {
                // One more match exists: resume after the last one returned.
                let last = &kept.last().expect("limit >= 1").0;
                let next = Position::of(last, index)?.encode();
                return Ok(Paged {
                    items: kept.into_iter().map(|(_, i)| i).collect(),
                    next_cursor: Some(next),
                });
            }
            kept.push((item, issue));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => {
                return Ok(Paged {
                    items: kept.into_iter().map(|(_, i)| i).collect(),
                    next_cursor: None,
                });
            }
        }
    }
    Ok(Paged {
        items: kept.into_iter().map(|(_, i)| i).collect(),
        next_cursor: cursor,
    })
}

/// Sorts a whole (small) relation set in memory; the cursor is the last sort key returned.
fn sorted_page(
    issues: Vec<Issue>,
    filter: &Filter,
    sort: SortBy,
    descending: bool,
    limit: u32,
    after: Option<&str>,
) -> AppResult<Paged<Issue>> {
    let after = match after {
        None => None,
        Some(c) => {
            let raw = c
                .strip_prefix(SEEK_PREFIX)
                .and_then(|enc| URL_SAFE_NO_PAD.decode(enc).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AppError::validation("cursor", "invalid or foreign cursor"))?;
            Some(raw)
        }
    };
    let mut keyed: Vec<(String, Issue)> = issues
        .into_iter()
        .filter(|i| filter.matches(i))
        .map(|i| (workspace_sort_key(&i, sort), i))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        keyed.reverse();
    }
    if let Some(after) = &after {
        keyed.retain(|(k, _)| if descending { k < after } else { k > after });
    }
    let more = keyed.len() > limit as usize;
    keyed.truncate(limit as usize);
    let next_cursor = if more {
        keyed
            .last()
            .map(|(k, _)| format!("{SEEK_PREFIX}{}", URL_SAFE_NO_PAD.encode(k)))
    } else {
        None
    };
    Ok(Paged {
        items: keyed.into_iter().map(|(_, i)| i).collect(),
        next_cursor,
    })
}

// ---------------------------------------------------------------------------------------
// The service

pub struct IssueService {
    ctx: ServiceContext,
}

impl IssueService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    pub async fn create(&self, who: &Principal, req: CreateIssue) -> AppResult<Issue> {
        let team_id = id_input("team_id", &req.team_id)?;
        let ws =
            ids::workspace_of(Kind::Team, &team_id).map_err(|_| AppError::not_found("team"))?;
        let title = required_text("title", &req.title, MAX_TITLE_CHARS)?;
        let description = crate::kernel::input::text::optional_text(
            "description",
            req.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        let refs = RefRequest {
            assignee: opt_id_input("assignee_id", req.assignee_id.as_deref())?,
            labels: label_input(req.label_ids.as_deref().unwrap_or_default())?,
            project: opt_id_input("project_id", req.project_id.as_deref())?,
            cycle: opt_id_input("cycle_id", req.cycle_id.as_deref())?,
            parent: opt_id_input("parent_id", req.parent_id.as_deref())?,
        };
        let state_input = opt_id_input("state_id", req.state_id.as_deref())?;

        let mut keys_wanted = vec![keys::team(&ws, &team_id)];
        let slots = refs.keys(&ws, &mut keys_wanted);
        let (_, mut items) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Contribute, "team", &keys_wanted)
            .await?;
        let team: Team = found(items[0].take(), "team")?;
        let checked = slots.check(&ws, &refs, &mut items, &team.id, None)?;
        let mut guards = checked.guards;
        guards.push(exists_check(
            keys::team(&ws, &team.id),
            AppError::not_found("team"),
        ));
        if let Some(parent) = &checked.parent {
            guards.push(exists_check(
                keys::issue(&ws, &parent.id),
                AppError::validation("parent_id", "the parent issue was deleted"),
            ));
        }

        // The state: the one asked for (of the team's workflow) or the workflow's default.
        let explicit_state = state_input.is_some();
        let state_id = match state_input {
            Some(state_id) => {
                let key = keys::state(&ws, &team.workflow_id, &state_id);
                if self.ctx.store.get(Table::Main, &key).await?.is_none() {
                    return Err(AppError::unknown_reference(
                        "state_id",
                        "is not a state of the team's workflow",
                    ));
                }
                state_id
            }
            None => {
                let key = keys::workflow(&ws, &team.workflow_id);
                let workflow: Workflow = found(
                    self.ctx.store.get(Table::Main, &key).await?,
                    "team workflow",
                )?;
                workflow.default_state_id
            }
        };
        if explicit_state {
            guards.push(state_guard(&ws, &team.workflow_id, &state_id));
        }

        let now = self.ctx.now();
        let template = Issue {
            id: ids::new_id(Kind::Issue, &ws),
            workspace_id: ws.clone(),
            team_id: team.id.clone(),
            workflow_id: team.workflow_id.clone(),
            number: 0,
            identifier: String::new(),
            title,
            description,
            priority: req.priority.unwrap_or_default(),
            state_id,
            assignee_id: refs.assignee.clone(),
            label_ids: refs.labels.clone(),
            project_id: refs.project.clone(),
            cycle_id: refs.cycle.clone(),
            parent_id: refs.parent.clone(),
            created_by: who.user_id.clone(),
            version: 1,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let counter = CounterRef {
            key: keys::team_issue_counter(&ws, &team.id),
            attr: "seq",
        };
        let committed = self
            .ctx
            .changes
            .commit(
                &ws,
                &who.user_id,
                std::slice::from_ref(&counter),
                |counters| {
                    let number = counters.get(&counter) + 1;
                    let mut issue = template.clone();
                    issue.number = number;
                    issue.identifier = format!("{}-{number}", team.key);
                    let mut lookup = Item::new();
                    lookup.insert("issue_id".into(), json!(issue.id));
                    let lookup_key = identifier_key(&ws, &issue.identifier);
                    lookup.insert("pk".into(), json!(lookup_key.pk));
                    lookup.insert("sk".into(), json!(lookup_key.sk));
                    lookup.insert("entity".into(), json!("issue_identifier"));
                    let mut plan = plan_issue_writes(Plan::new(issue.clone()), None, Some(&issue))
                        .bump(counter.clone(), 1)
                        .guarded(
                            WriteOp::put_new(Table::Main, lookup),
                            AppError::conflict("the issue number was taken concurrently; retry"),
                        )
                        .op(activity_op(
                            &issue,
                            &who.user_id,
                            &now,
                            0,
                            FieldChange {
                                field: "created",
                                from: Value::Null,
                                to: json!(issue.identifier),
                            },
                        ));
                    for (op, err) in &guards {
                        plan = plan.guarded(op.clone(), err.clone());
                    }
                    Ok(plan.change(issue_change(ChangeKind::Created, &issue, None)))
                },
            )
            .await?;
        Ok(committed.output)
    }

    /// By id (1 storage call), or by identifier (`ENG-42`) in `workspace_id` or the caller's
    /// current workspace.
    pub async fn get(
        &self,
        who: &Principal,
        id_or_identifier: &str,
        workspace_id: Option<&str>,
    ) -> AppResult<Issue> {
        if let Some(identifier) = parse_identifier(id_or_identifier) {
            let ws = match workspace_id {
                Some(w) => ids::parse_workspace_id(w)?,
                None => self.ctx.access.current_workspace(who).await?.ok_or_else(|| {
                    AppError::validation(
                        "workspace_id",
                        "no current workspace: pass workspace_id or switch to a workspace first",
                    )
                })?,
            };
            let (_, mut items) = self
                .ctx
                .access
                .authorize(
                    who,
                    &ws,
                    EntityType::Issue.read_action(),
                    "issue",
                    &[identifier_key(&ws, &identifier)],
                )
                .await?;
            let issue_id = items
                .pop()
                .flatten()
                .and_then(|i| i.get("issue_id").and_then(Value::as_str).map(str::to_owned))
                .ok_or_else(|| AppError::not_found("issue"))?;
            let item = self
                .ctx
                .store
                .get(Table::Main, &keys::issue(&ws, &issue_id))
                .await?;
            return found(item, "issue");
        }
        let (_, issue) = self
            .read(who, id_or_identifier, EntityType::Issue.read_action(), &[])
            .await?;
        Ok(issue)
    }

    /// Authorizes and reads an issue by id with `extra` keys in the same batch.
    async fn read(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
        extra: &[Key],
    ) -> AppResult<(Vec<Option<Item>>, Issue)> {
        let ws = ids::workspace_of(Kind::Issue, id)?;
        let mut wanted = vec![keys::issue(&ws, id)];
        wanted.extend_from_slice(extra);
        let (_, mut items) = self
            .ctx
            .access
            .authorize(who, &ws, action, "issue", &wanted)
            .await?;
        let issue: Issue = found(items[0].take(), "issue")?;
        Ok((items, issue))
    }

    /// Checks a move to `target` against the workflow: 400 when it is not a state of the
    /// issue's workflow, 409 (listing the allowed states) when the current state does not
    /// lead there.
    async fn check_transition(&self, issue: &Issue, target: &str) -> AppResult<()> {
        if target == issue.state_id {
            return Ok(());
        }
        let states = workflow_states(&self.ctx, &issue.workspace_id, &issue.workflow_id).await?;
        let Some(to) = states.iter().find(|s| s.id == target) else {
            return Err(AppError::unknown_reference(
                "state_id",
                "is not a state of this issue's workflow",
            ));
        };
        let from = states.iter().find(|s| s.id == issue.state_id);
        let allowed = allowed_targets(&states, from);
        if allowed.iter().any(|s| s.id == to.id) {
            return Ok(());
        }
        let list: Vec<String> = allowed
            .iter()
            .map(|s| format!("{} ({})", s.name, s.id))
            .collect();
        Err(AppError::conflict(format!(
            "cannot move from {} to {}; allowed: {}",
            from.map_or("its current state", |f| f.name.as_str()),
            to.name,
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            }
        )))
    }

    /// Walks up from `parent`, refusing a cycle through `issue_id` or a chain deeper than
    /// `MAX_PARENT_DEPTH`. Returns a version check per ancestor, so a concurrent re-parenting
    /// that would close a loop makes one of the two transactions fail.
    async fn ancestor_guards(
        &self,
        ws: &str,
        issue_id: &str,
        parent: &Issue,
    ) -> AppResult<Vec<(WriteOp, AppError)>> {
        let moved = || AppError::conflict("the issue hierarchy changed concurrently; retry");
        let mut guards = Vec::new();
        let mut current = parent.clone();
        for depth in 1.. {
            guards.push((
                WriteOp::ConditionCheck {
                    table: Table::Main,
                    key: keys::issue(ws, &current.id),
                    condition: Condition::VersionEquals(current.version),
                },
                moved(),
            ));
            let Some(up) = current.parent_id.clone() else {
                break;
            };
            if up == issue_id {
                return Err(AppError::validation(
                    "parent_id",
                    "would make the issue its own ancestor",
                ));
            }
            if depth >= MAX_PARENT_DEPTH {
                return Err(AppError::validation(
                    "parent_id",
                    format!("the parent chain is deeper than {MAX_PARENT_DEPTH}"),
                ));
            }
            match self
                .ctx
                .store
                .get(Table::Main, &keys::issue(ws, &up))
                .await?
            {
                Some(item) => current = from_item(item)?,
                None => break,
            }
        }
        Ok(guards)
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateIssue,
        if_match: Option<i64>,
    ) -> AppResult<Issue> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateIssue,
        expected: Option<i64>,
    ) -> AppResult<Issue> {
        // Shape checks first (they need no storage).
        let title = match &req.title {
            None => None,
            Some(None) => return Err(AppError::validation("title", "cannot be null")),
            Some(Some(t)) => Some(required_text("title", t, MAX_TITLE_CHARS)?),
        };
        let description = req
            .description
            .as_ref()
            .map(|d| {
                crate::kernel::input::text::optional_text(
                    "description",
                    d.as_deref(),
                    MAX_DESCRIPTION_CHARS,
                )
            })
            .transpose()?;
        let state_id = match &req.state_id {
            None => None,
            Some(None) => return Err(AppError::validation("state_id", "cannot be null")),
            Some(Some(s)) => Some(id_input("state_id", s)?),
        };
        let assignee = req
            .assignee_id
            .as_ref()
            .map(|a| opt_id_input("assignee_id", a.as_deref()))
            .transpose()?;
        let labels = req
            .label_ids
            .as_ref()
            .map(|l| label_input(l.as_deref().unwrap_or_default()))
            .transpose()?;
        let project = req
            .project_id
            .as_ref()
            .map(|p| opt_id_input("project_id", p.as_deref()))
            .transpose()?;
        let cycle = req
            .cycle_id
            .as_ref()
            .map(|c| opt_id_input("cycle_id", c.as_deref()))
            .transpose()?;
        let parent = req
            .parent_id
            .as_ref()
            .map(|p| opt_id_input("parent_id", p.as_deref()))
            .transpose()?;

        let ws = ids::workspace_of(Kind::Issue, id)?;
        // References to check: only what is newly set.
        let refs = RefRequest {
            assignee: assignee.clone().flatten(),
            labels: labels.clone().unwrap_or_default(),
            project: project.clone().flatten(),
            cycle: cycle.clone().flatten(),
            parent: parent.clone().flatten(),
        };
        let mut extra = Vec::new();
        let slots = refs.keys(&ws, &mut extra);
        let (mut items, current) = self.read(who, id, Action::Contribute, &extra).await?;
        check_version(expected, current.version)?;
        // `items` is aligned with `extra` after the issue: shift the slots by one.
        let mut aligned: Vec<Option<Item>> = items.drain(1..).collect();
        let mut next = current.clone();
        if let Some(t) = title {
            next.title = t;
        }
        if let Some(d) = description {
            next.description = d;
        }
        if let Some(p) = req.priority {
            next.priority = p.unwrap_or_default();
        }
        if let Some(a) = assignee {
            next.assignee_id = a;
        }
        if let Some(l) = labels {
            next.label_ids = l;
        }
        if let Some(p) = project {
            next.project_id = p;
        }
        if let Some(c) = cycle {
            next.cycle_id = c;
        }
        if let Some(p) = parent {
            next.parent_id = p;
        }
        if let Some(s) = state_id {
            next.state_id = s;
        }
        if diff(&current, &next).is_empty() {
            return Ok(current);
        }
        // Check only references that change (an unchanged dangling one is left alone).
        let (mut refs, mut slots) = (refs, slots);
        if current.assignee_id == next.assignee_id {
            refs.assignee = None;
            slots.assignee = None;
        }
        if current.project_id == next.project_id {
            refs.project = None;
            slots.project = None;
        }
        if current.cycle_id == next.cycle_id {
            refs.cycle = None;
            slots.cycle = None;
        }
        if current.parent_id == next.parent_id {
            refs.parent = None;
            slots.parent = None;
        }
        (refs.labels, slots.labels) = refs
            .labels
            .iter()
            .cloned()
            .zip(slots.labels.iter().copied())
            .filter(|(label, _)| !current.label_ids.contains(label))
            .unzip();
        let checked = slots.check(&ws, &refs, &mut aligned, &current.team_id, Some(id))?;
        let mut guards = checked.guards;
        if let Some(parent) = &checked.parent {
            guards.extend(self.ancestor_guards(&ws, id, parent).await?);
        }
        if next.state_id != current.state_id {
            self.check_transition(&current, &next.state_id).await?;
            guards.push(state_guard(&ws, &current.workflow_id, &next.state_id));
        }
        self.commit_update(&who.user_id, &current, next, guards)
            .await
    }

    async fn commit_update(
        &self,
        actor: &str,
        current: &Issue,
        mut next: Issue,
        guards: Vec<(WriteOp, AppError)>,
    ) -> AppResult<Issue> {
        next.version = current.version + 1;
        next.updated_at = self.ctx.now();
        self.ctx
            .changes
            .commit(&current.workspace_id, actor, &[], |_| {
                let mut plan = plan_update(Plan::new(()), current, &next, actor);
                for (op, err) in &guards {
                    plan = plan.guarded(op.clone(), err.clone());
                }
                Ok(plan)
            })
            .await?;
        Ok(next)
    }

    /// Deletes the issue, its identifier and index copies; its sub-issues lose their parent.
    pub async fn delete(&self, who: &Principal, id: &str) -> AppResult<()> {
        // A delete states no version: an update committed since the read is re-read, not a 412.
        let ws = retry_unversioned(None, || self.delete_once(who, id)).await?;
        // After the delete no new sub-issue can name it (creates and re-parenting check that
        // the parent exists in their transaction), so this finds every child.
        let children = relation_issues(&self.ctx, &parent_partition(&ws, id), usize::MAX).await?;
        rewrite_issues(&self.ctx, &ws, &who.user_id, children, None, |child| {
            (child.parent_id.as_deref() == Some(id)).then(|| {
                let mut next = child.clone();
                next.parent_id = None;
                next
            })
        })
        .await?;
        Ok(())
    }

    /// Deletes the issue itself (its index copies and identifier with it); returns its
    /// workspace.
    async fn delete_once(&self, who: &Principal, id: &str) -> AppResult<String> {
        let (_, current) = self.read(who, id, Action::Contribute, &[]).await?;
        let ws = current.workspace_id.clone();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let plan = plan_issue_writes(Plan::new(()), Some(&current), None)
                    .op(WriteOp::Delete {
                        table: Table::Main,
                        key: identifier_key(&ws, &current.identifier),
                        condition: None,
                    })
                    .change(issue_change(ChangeKind::Deleted, &current, None));
                Ok(plan)
            })
            .await?;
        Ok(ws)
    }

    pub async fn list(&self, who: &Principal, p: &ListIssuesParams) -> AppResult<Paged<Issue>> {
        let limit = PageParams {
            limit: p.limit,
            cursor: None,
        }
        .limit()?;
        let sort = SortBy::parse(p.sort.as_deref())?;
        let descending = match p.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(AppError::validation("order", "must be asc or desc")),
        };
        let priority = p
            .priority
            .as_deref()
            .map(|v| Priority::parse("priority", v))
            .transpose()?;
        let category = p
            .state_category
            .as_deref()
            .map(parse_category)
            .transpose()?;
        let q = match p.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
                return Err(AppError::validation(
                    "q",
                    format!("must be at most {MAX_QUERY_CHARS} characters"),
                ));
            }
            q => q.map(str::to_lowercase),
        };
        let mut filter = Filter {
            team: opt_id_input("team_id", p.team_id.as_deref())?,
            project: opt_id_input("project_id", p.project_id.as_deref())?,
            assignee: opt_id_input("assignee_id", p.assignee_id.as_deref())?,
            states: opt_id_input("state_id", p.state_id.as_deref())?.map(|s| HashSet::from([s])),
            priority,
            label: opt_id_input("label_id", p.label_id.as_deref())?,
            cycle: opt_id_input("cycle_id", p.cycle_id.as_deref())?,
            parent: opt_id_input("parent_id", p.parent_id.as_deref())?,
            q,
        };

        // The workspace: the team's (checked in the authorization batch), else the given or
        // current one.
        let ws = match &filter.team {
            Some(team) => {
                let ws =
                    ids::workspace_of(Kind::Team, team).map_err(|_| AppError::not_found("team"))?;
                if let Some(w) = &p.workspace_id
                    && ids::parse_workspace_id(w)? != ws
                {
                    return Err(AppError::not_found("team"));
                }
                let (_, mut items) = self
                    .ctx
                    .access
                    .authorize(
                        who,
                        &ws,
                        EntityType::Issue.read_action(),
                        "team",
                        &[keys::team(&ws, team)],
                    )
                    .await?;
                if items.pop().flatten().is_none() {
                    return Err(AppError::not_found("team"));
                }
                ws
            }
            None => {
                self.ctx
                    .access
                    .resolve(
                        who,
                        p.workspace_id.as_deref(),
                        EntityType::Issue.read_action(),
                    )
                    .await?
                    .workspace_id
            }
        };
        if let Some(category) = category {
            let page = self
                .ctx
                .store
                .query(
                    &Query::new(Table::Main, keys::workspace_partition(&ws))
                        .sort(SortKey::BeginsWith(format!("{}#", keys::STATE)))
                        .limit(1000),
                )
                .await?;
            let mut ids = HashSet::new();
            for item in page.items {
                let state: WorkflowState = from_item(item)?;
                if state.category == category {
                    ids.insert(state.id);
                }
            }
            filter.states = Some(match filter.states.take() {
                Some(given) => given.intersection(&ids).cloned().collect(),
                None => ids,
            });
        }

        // A relation partition when the list names one (most selective first).
        let relation = if let Some(parent) = &filter.parent {
            Some((parent_partition(&ws, parent), Covered::Parent))
        } else if let Some(cycle) = &filter.cycle {
            Some((cycle_partition(&ws, cycle), Covered::Cycle))
        } else if let Some(assignee) = &filter.assignee {
            Some((assignee_partition(&ws, Some(assignee)), Covered::Assignee))
        } else {
            filter
                .project
                .as_ref()
                .map(|project| (project_partition(&ws, Some(project)), Covered::Project))
        };
        let cursor = p.cursor.clone();
        if let Some((pk, covered)) = relation {
            if sort == SortBy::Created {
                let mut query = Query::new(Table::Main, pk);
                if descending {
                    query = query.backward();
                }
                let exact = filter.exact_on(covered);
                return stream_page(&self.ctx, query, &filter, exact, limit, cursor).await;
            }
            let seek = cursor.as_deref().is_none_or(|c| c.starts_with(SEEK_PREFIX));
            if seek {
                let page = self
                    .ctx
                    .store
                    .query(&Query::new(Table::Main, pk).limit(MAX_SORTED_SET))
                    .await?;
                if page.next_cursor.is_none() {
                    let issues = items_to_issues(page.items)?;
                    return sorted_page(
                        issues,
                        &filter,
                        sort,
                        descending,
                        limit,
                        cursor.as_deref(),
                    );
                }
                if cursor.is_some() {
                    return Err(AppError::validation("cursor", "invalid or foreign cursor"));
                }
            }
            // Too large to sort in memory: the sort index, filtered while paging.
        }
        let (index, pk, covered) = match &filter.team {
            Some(team) => (
                Index::Gsi1,
                team_index_partition(&ws, team, sort),
                Covered::Team,
            ),
            None => (
                Index::Gsi2,
                workspace_index_partition(&ws, sort),
                Covered::Nothing,
            ),
        };
        let mut query = Query::new(Table::Main, pk).index(index);
        if descending {
            query = query.backward();
        }
        let exact = filter.exact_on(covered);
        stream_page(&self.ctx, query, &filter, exact, limit, cursor).await
    }

    /// A page of a partition that hangs off a readable issue (its activity, its children).
    async fn related(
        &self,
        who: &Principal,
        id: &str,
        page: &PageParams,
        partition: fn(&str, &str) -> String,
    ) -> AppResult<crate::storage::Page> {
        let limit = page.limit()?;
        let (_, issue) = self
            .read(who, id, EntityType::Issue.read_action(), &[])
            .await?;
        Ok(self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, partition(&issue.workspace_id, id))
                    .limit(limit)
                    .cursor(page.cursor.clone()),
            )
            .await?)
    }

    /// The issue's history, oldest first.
    pub async fn activity(
        &self,
        who: &Principal,
        id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<Activity>> {
        Paged::of(self.related(who, id, page, activity_partition).await?)
    }

    /// Sub-issues, oldest first.
    pub async fn children(
        &self,
        who: &Principal,
        id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<Issue>> {
        let got = self.related(who, id, page, parent_partition).await?;
        Ok(Paged {
            items: items_to_issues(got.items)?,
            next_cursor: got.next_cursor,
        })
    }

    pub async fn transitions(&self, who: &Principal, id: &str) -> AppResult<Transitions> {
        let (_, issue) = self
            .read(who, id, EntityType::Issue.read_action(), &[])
            .await?;
        let states = workflow_states(&self.ctx, &issue.workspace_id, &issue.workflow_id).await?;
        let current = states.iter().find(|s| s.id == issue.state_id).cloned();
        let allowed = allowed_targets(&states, current.as_ref())
            .into_iter()
            .cloned()
            .collect();
        Ok(Transitions {
            issue_id: issue.id,
            current_state: current,
            allowed,
        })
    }

    /// Moves the issue to another state of its workflow, if its current state allows it.
    pub async fn transition(
        &self,
        who: &Principal,
        id: &str,
        req: TransitionIssue,
        if_match: Option<i64>,
    ) -> AppResult<Issue> {
        let expected = expected_version(req.version, if_match)?;
        let target = id_input("state_id", &req.state_id)?;
        retry_unversioned(expected, || async {
            let (_, current) = self.read(who, id, Action::Contribute, &[]).await?;
            check_version(expected, current.version)?;
            self.check_transition(&current, &target).await?;
            if target == current.state_id {
                return Ok(current);
            }
            let guards = vec![state_guard(
                &current.workspace_id,
                &current.workflow_id,
                &target,
            )];
            let mut next = current.clone();
            next.state_id = target.clone();
            self.commit_update(&who.user_id, &current, next, guards)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_keys_sort_in_creation_order() {
        let ws = uuid::Uuid::new_v4().to_string();
        let mut ids = Vec::new();
        for _ in 0..200 {
            ids.push(ids::new_id(Kind::Issue, &ws));
        }
        let keys: Vec<String> = ids.iter().map(|i| creation_key(i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys[0].len(), 32);
    }

    #[test]
    fn identifiers() {
        assert_eq!(parse_identifier("eng-042").as_deref(), Some("ENG-42"));
        assert_eq!(parse_identifier("iss_abc"), None);
        assert_eq!(parse_identifier("ENG-"), None);
        assert_eq!(parse_identifier("-4"), None);
    }

    #[test]
    fn time_keys_sort() {
        let a = time_key("2026-01-01T00:00:00Z");
        let b = time_key("2026-01-01T00:00:00.5Z");
        let c = time_key("2026-01-01T00:00:01Z");
        assert!(a < b && b < c);
    }
}
