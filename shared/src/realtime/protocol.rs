//! The WebSocket commands, typed: one [`Command`] per `type`, parsed once at the edge
//! (`commands::handle`) from a message's `type` and normalised `data`, its payload read by
//! the same rules as the REST body of the same operation.
//!
//! A message is `{"type", "data", "request_id"}`: serde's adjacently tagged representation
//! (`tag = "type", content = "data"`). The seed's other shapes are one normalisation step
//! ([`normalise`]) plus the payload types below, never a case of one command:
//! - `filters` at the top level are data written one level up: `normalise` merges them into
//!   `data` (`data` wins);
//! - `topics` at the top level travel beside `data`; the one payload that reads topics
//!   ([`Topics`]) takes them before `data.topics`, every other payload ignores them;
//! - a batch's `data` may be the bare array of items ([`Batch`]);
//! - commands that name a record take its id out of `data` first ([`WithId`]), then read
//!   the rest as the REST body;
//! - an unknown `type` is the variant [`Command::Unknown`], answered with a 400 on `type`.

use std::cell::RefCell;

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::areas::auth::UpdateProfileRequest;
use crate::areas::invitations::CreateInvitation;
use crate::areas::issues::{CreateIssue, ListIssuesParams, UpdateIssue};
use crate::areas::labels::{
    BatchCreateLabels, BatchDeleteLabels, BatchUpdateLabels, CreateLabel, ListLabelsParams,
    UpdateLabel,
};
use crate::areas::projects::{
    CreateProject, CreateProjectStatus, ProjectFilter, UpdateProject, UpdateProjectStatus,
};
use crate::areas::teams::{AddTeamMember, ChangeTeamMemberRole, CreateTeam, UpdateTeam};
use crate::areas::workspaces::{CreateWorkspace, UpdateWorkspace};
use crate::error::{AppError, AppResult};
use crate::kernel::input::json::from_json_value;
use crate::kernel::paging::PageParams;

/// One command of the WebSocket protocol. Variants are grouped by the area whose service
/// runs them; each payload is what that service takes.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Command {
    // Connection and sync.
    Ping(IgnoredAny),
    Subscribe(Topics),
    Unsubscribe(Topics),
    GetConnectionInfo(IgnoredAny),
    Sync(Body<SyncArgs>),
    /// Whether the app shows this connection's events to the user now (mobile push skips
    /// users with a live foreground connection).
    Presence(Body<PresenceArgs>),
    // Profile and workspaces.
    UpdateProfile(Body<UpdateProfileRequest>),
    CreateWorkspace(Body<CreateWorkspace>),
    UpdateWorkspace(WithId<UpdateWorkspace>),
    DeleteWorkspace(WithId),
    GetCurrentWorkspace(IgnoredAny),
    QueryWorkspaceMembers(WorkspaceMembers),
    // Labels.
    CreateLabel(Body<CreateLabel>),
    UpdateLabel(WithId<UpdateLabel>),
    DeleteLabel(WithId),
    QueryLabels(Body<ListLabelsParams>),
    BatchCreateLabels(Batch<BatchCreateLabels>),
    BatchUpdateLabels(Batch<BatchUpdateLabels>),
    BatchDeleteLabels(Batch<BatchDeleteLabels>),
    // Teams and team members.
    CreateTeam(Body<CreateTeam>),
    UpdateTeam(WithId<UpdateTeam>),
    DeleteTeam(WithId),
    QueryTeams(QueryTeams),
    AddTeamMember(InTeam<AddTeamMember>),
    UpdateTeamMember(TeamMember<ChangeTeamMemberRole>),
    RemoveTeamMember(TeamMember),
    ListTeamMembers(ListTeamMembers),
    // Invitations.
    InviteWorkspaceMember(Body<CreateInvitation>),
    AcceptInvitation(AcceptInvitation),
    // Projects and project statuses.
    CreateProject(Body<CreateProject>),
    UpdateProject(WithId<UpdateProject>),
    DeleteProject(WithId),
    QueryProjects(QueryProjects),
    CreateProjectStatus(Body<CreateProjectStatus>),
    UpdateProjectStatus(WithId<UpdateProjectStatus>),
    DeleteProjectStatus(WithId),
    QueryProjectStatuses(QueryProjectStatuses),
    GetProjectStatusById(WithId),
    // Issues.
    CreateIssue(Body<CreateIssue>),
    UpdateIssue(WithId<UpdateIssue>),
    DeleteIssue(WithId),
    QueryIssues(QueryIssues),
    GetIssue(GetIssue),
    /// Any other `type` (tried when no variant above is named).
    #[serde(untagged)]
    Unknown(UnknownCommand),
}

/// A command of a `type` this server does not know.
#[derive(Debug, Deserialize)]
pub struct UnknownCommand {
    #[serde(rename = "type")]
    pub kind: String,
}

impl Command {
    /// The command a message of `kind` with `content` (from [`normalise`]) asks for, or the
    /// 400 its payload gets (naming the field, as the REST route would).
    pub fn parse(kind: String, content: Value) -> AppResult<Command> {
        PAYLOAD_ERROR.with(|slot| slot.take());
        let parsed = serde_json::from_value::<Command>(json!({"type": kind, "data": content}));
        // A payload's own error wins: serde, after a variant's payload failed, also tries
        // `Unknown`, which fits any message.
        match (PAYLOAD_ERROR.with(|slot| slot.take()), parsed) {
            (Some(e), _) => Err(e),
            (None, Ok(command)) => Ok(command),
            (None, Err(e)) => Err(AppError::validation(
                "message",
                format!("not a command: {e}"),
            )),
        }
    }
}

/// What a command's payload is read from ([`Content`]): the message's `data`, absent or
/// `null` being `{}`, with the seed's top-level `filters` (an object) filling in keys `data`
/// lacks; and the seed's top-level `topics`.
pub fn normalise(data: Value, topics: Option<Vec<String>>, filters: Option<Value>) -> Value {
    let mut data = match data {
        Value::Null => Value::Object(Map::new()),
        other => other,
    };
    if let (Value::Object(d), Some(Value::Object(filters))) = (&mut data, filters) {
        for (k, v) in filters {
            d.entry(k).or_insert(v);
        }
    }
    json!({"data": data, "topics": topics})
}

/// A payload's input: the message's normalised `data` and the top-level `topics`.
#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    topics: Option<Vec<String>>,
}

thread_local! {
    /// The error of the payload serde is reading in [`Command::parse`] on this thread: a
    /// `Deserialize` impl cannot hand an `AppError` (with its field) to its caller through
    /// serde's error type, which keeps only a message.
    static PAYLOAD_ERROR: RefCell<Option<AppError>> = const { RefCell::new(None) };
}

/// Reads a payload from its `data` with `read`; its error goes to [`PAYLOAD_ERROR`].
fn payload<'de, D, T>(d: D, read: impl FnOnce(Fields) -> AppResult<T>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let Content { data, topics } = Content::deserialize(d)?;
    read(Fields { data, topics }).map_err(|e| {
        let message = e.message.clone();
        PAYLOAD_ERROR.with(|slot| {
            slot.borrow_mut().get_or_insert(e);
        });
        D::Error::custom(message)
    })
}

/// Implements `Deserialize` for a payload type by a reader of its [`Fields`].
macro_rules! payload {
    ($($ty:ident $(<$t:ident>)?: $read:expr;)*) => {$(
        impl<'de $(, $t: serde::de::DeserializeOwned)?> Deserialize<'de> for $ty $(<$t>)? {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                payload(d, $read)
            }
        }
    )*};
}

/// A command's `data`, read field by field: named parts (ids, paging) are taken out first,
/// the rest is read last, either as a REST input type or refused when anything is left.
pub struct Fields {
    data: Value,
    /// The message's top-level `topics`, which only [`Topics`] reads.
    topics: Option<Vec<String>>,
}

impl Fields {
    /// A required, non-empty string field (an id).
    fn id(&mut self, field: &str) -> AppResult<String> {
        match self.take(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(AppError::validation(field, "must be a non-empty string")),
            None => Err(AppError::validation(field, "is required")),
        }
    }

    /// An optional string field.
    fn optional(&mut self, field: &str) -> AppResult<Option<String>> {
        match self.take(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AppError::validation(field, "must be a string")),
        }
    }

    /// `limit` and `cursor` (list commands mix them with filters).
    fn page(&mut self) -> AppResult<PageParams> {
        let mut page = Map::new();
        for k in ["limit", "cursor"] {
            if let Some(v) = self.take(k) {
                page.insert(k.to_owned(), v);
            }
        }
        from_json_value(Value::Object(page))
    }

    /// Topic names: the top-level `topics`, else `data.topics`.
    fn topics(&mut self) -> AppResult<Vec<String>> {
        if let Some(topics) = self.topics.take() {
            return Ok(topics);
        }
        match self.take("topics") {
            Some(v) => from_json_value(v)
                .map_err(|_| AppError::validation("topics", "must be a list of topic names")),
            None => Err(AppError::validation("topics", "is required")),
        }
    }

    /// The rest, read as `T` (the REST input of the same operation).
    fn rest<T: serde::de::DeserializeOwned>(self) -> AppResult<T> {
        from_json_value(self.data)
    }

    /// Nothing may be left (as REST bodies refuse fields they do not know).
    fn done(self) -> AppResult<()> {
        match self.data.as_object().and_then(|d| d.keys().next()) {
            Some(k) => Err(AppError::validation(
                k.clone(),
                format!("unknown field `{k}`"),
            )),
            None => Ok(()),
        }
    }

    fn take(&mut self, field: &str) -> Option<Value> {
        self.data.as_object_mut().and_then(|d| d.remove(field))
    }
}

/// `subscribe` / `unsubscribe`: topic names (`workspace:{id}`, `issues`, ...).
#[derive(Debug)]
pub struct Topics {
    pub topics: Vec<String>,
}

/// The whole `data` as the REST body of the same operation.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// A record's `id` and, as the REST body, the rest of `data` (by default ignored).
#[derive(Debug)]
pub struct WithId<T = IgnoredAny> {
    pub id: String,
    pub body: T,
}

/// A batch request; the seed sends its items as a bare array for `data`.
#[derive(Debug)]
pub struct Batch<T>(pub T);

/// The field a batch request holds its items in.
pub trait BatchOf {
    const ITEMS: &'static str;
}

impl BatchOf for BatchCreateLabels {
    const ITEMS: &'static str = "labels";
}

impl BatchOf for BatchUpdateLabels {
    const ITEMS: &'static str = "labels";
}

impl BatchOf for BatchDeleteLabels {
    const ITEMS: &'static str = "ids";
}

impl<'de, T: BatchOf + serde::de::DeserializeOwned> Deserialize<'de> for Batch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        payload(d, |f| match f.data {
            Value::Array(items) => from_json_value(json!({ T::ITEMS: items })).map(Batch),
            other => from_json_value(other).map(Batch),
        })
    }
}

/// `presence`: `{"state": "foreground" | "background"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceArgs {
    pub state: AppPresence,
}

/// Where the app is: a connection counts as foreground only after it says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppPresence {
    Foreground,
    Background,
}

/// `sync`: changes after `since` in a workspace (default: the connection's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    pub workspace_id: Option<String>,
    pub since: i64,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `query_workspace_members`: a workspace (default: the connection's) and a page. The page
/// is checked after the workspace is known to be given (a missing one is the first error),
/// so its error waits here.
#[derive(Debug)]
pub struct WorkspaceMembers {
    pub workspace_id: Option<String>,
    pub page: AppResult<PageParams>,
}

/// `query_teams`: a page of a workspace's teams (default: the current workspace).
#[derive(Debug)]
pub struct QueryTeams {
    pub page: PageParams,
    pub workspace_id: Option<String>,
}

/// A team's `team_id` and, as the REST body, the rest of `data`.
#[derive(Debug)]
pub struct InTeam<T> {
    pub team_id: String,
    pub body: T,
}

/// A team member (`team_id`, `user_id`) and, as the REST body, the rest of `data` (by
/// default ignored).
#[derive(Debug)]
pub struct TeamMember<T = IgnoredAny> {
    pub team_id: String,
    pub user_id: String,
    pub body: T,
}

/// `list_team_members`: a page of a team's members.
#[derive(Debug)]
pub struct ListTeamMembers {
    pub team_id: String,
    pub page: PageParams,
}

/// `accept_invitation`: `invitation_id`, or `id`.
#[derive(Debug)]
pub struct AcceptInvitation {
    pub id: String,
}

/// `query_projects`: a page and the filters of `GET /projects`.
#[derive(Debug)]
pub struct QueryProjects {
    pub page: PageParams,
    pub filter: ProjectFilter,
}

/// `query_project_statuses`: a workspace's statuses (default: the current workspace).
#[derive(Debug)]
pub struct QueryProjectStatuses {
    pub workspace_id: Option<String>,
}

/// `query_issues`: the filters of `GET /issues`; the seed's `status` (`todo`, `in_progress`,
/// `done`, `cancelled`) means a state category.
#[derive(Debug)]
pub struct QueryIssues(pub ListIssuesParams);

/// `get_issue`: by id or identifier (`ENG-12`), optionally in a given workspace.
#[derive(Debug)]
pub struct GetIssue {
    pub id: String,
    pub workspace_id: Option<String>,
}

/// The seed's `status` filter as the state category it names.
fn issue_filters(mut f: Fields) -> Fields {
    if let Some(Value::String(status)) = f.take("status") {
        let category = match status.as_str() {
            "in_progress" | "in-progress" => "started",
            "todo" => "unstarted",
            "done" => "completed",
            "cancelled" => "canceled",
            other => other,
        };
        if let Some(d) = f.data.as_object_mut() {
            d.entry("state_category").or_insert(json!(category));
        }
    }
    f
}

payload! {
    Topics: |mut f: Fields| Ok(Topics { topics: f.topics()? });
    Body<T>: |f: Fields| f.rest().map(Body);
    WithId<T>: |mut f: Fields| Ok(WithId { id: f.id("id")?, body: f.rest()? });
    InTeam<T>: |mut f: Fields| Ok(InTeam { team_id: f.id("team_id")?, body: f.rest()? });
    TeamMember<T>: |mut f: Fields| Ok(TeamMember {
        team_id: f.id("team_id")?,
        user_id: f.id("user_id")?,
        body: f.rest()?,
    });
    WorkspaceMembers: |mut f: Fields| Ok(WorkspaceMembers {
        workspace_id: f.optional("workspace_id")?,
        page: f.rest(),
    });
    QueryTeams: |mut f: Fields| {
        let page = f.page()?;
        let workspace_id = f.optional("workspace_id")?;
        f.done()?;
        Ok(QueryTeams { page, workspace_id })
    };
    ListTeamMembers: |mut f: Fields| {
        let team_id = f.id("team_id")?;
        let page = f.page()?;
        f.done()?;
        Ok(ListTeamMembers { team_id, page })
    };
    AcceptInvitation: |mut f: Fields| {
        let id = match f.id("invitation_id") {
            Ok(id) => id,
            Err(_) => f.id("id")?,
        };
        Ok(AcceptInvitation { id })
    };
    QueryProjects: |mut f: Fields| Ok(QueryProjects { page: f.page()?, filter: f.rest()? });
    QueryProjectStatuses: |mut f: Fields| {
        let workspace_id = f.optional("workspace_id")?;
        f.done()?;
        Ok(QueryProjectStatuses { workspace_id })
    };
    QueryIssues: |f: Fields| issue_filters(f).rest().map(QueryIssues);
    GetIssue: |mut f: Fields| {
        let id = f.id("id")?;
        let workspace_id = f.optional("workspace_id")?;
        f.done()?;
        Ok(GetIssue { id, workspace_id })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: &str, data: Value) -> AppResult<Command> {
        Command::parse(kind.to_owned(), normalise(data, None, None))
    }

    #[test]
    fn the_seed_shapes_read_as_typed_commands() {
        // Topics at the top level win over `data.topics`; other commands ignore them.
        let top = || Some(vec!["issues".to_owned()]);
        let content = normalise(json!({"topics": 5}), top(), None);
        match Command::parse("subscribe".into(), content) {
            Ok(Command::Subscribe(Topics { topics })) => assert_eq!(topics, ["issues"]),
            other => panic!("{other:?}"),
        }
        let content = normalise(json!({"display_name": "A"}), top(), None);
        assert!(Command::parse("update_profile".into(), content).is_ok());
        // Top-level filters fill in what `data` lacks.
        let content = normalise(
            json!({"limit": 5}),
            None,
            Some(json!({"limit": 9, "level": "issue"})),
        );
        assert_eq!(content["data"], json!({"limit": 5, "level": "issue"}));
        assert_eq!(normalise(Value::Null, None, None)["data"], json!({}));
        // A batch's bare array is its items.
        match parse("batch_delete_labels", json!(["lbl_a", "lbl_b"])) {
            Ok(Command::BatchDeleteLabels(Batch(req))) => assert_eq!(req.ids.len(), 2),
            other => panic!("{other:?}"),
        }
        match parse("update_label", json!({"id": "lbl_a", "name": "Bug"})) {
            Ok(Command::UpdateLabel(WithId { id, body })) => {
                assert_eq!(id, "lbl_a");
                assert_eq!(body.name.as_deref(), Some("Bug"));
            }
            other => panic!("{other:?}"),
        }
        match parse("query_issues", json!({"status": "todo"})) {
            Ok(Command::QueryIssues(QueryIssues(p))) => {
                assert_eq!(p.state_category.as_deref(), Some("unstarted"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("ping", json!("anything")),
            Ok(Command::Ping(_))
        ));
    }

    #[test]
    fn unknown_types_are_a_variant_and_payload_errors_name_their_field() {
        match parse("teleport", json!({"to": "mars"})) {
            Ok(Command::Unknown(UnknownCommand { kind })) => assert_eq!(kind, "teleport"),
            other => panic!("{other:?}"),
        }
        let field = |kind: &str, data: Value| parse(kind, data).unwrap_err().field;
        // A known type with a bad payload is that payload's 400, never "unknown".
        assert_eq!(
            field("create_label", json!({"name": 5})).as_deref(),
            Some("name")
        );
        assert_eq!(
            field("update_label", json!({"name": "x"})).as_deref(),
            Some("id")
        );
        assert_eq!(
            field("batch_create_labels", json!([{"name": "x"}])).as_deref(),
            Some("labels[0].color")
        );
        assert_eq!(field("subscribe", json!({})).as_deref(), Some("topics"));
        assert_eq!(
            field("get_issue", json!({"id": "ENG-1", "x": 1})).as_deref(),
            Some("x")
        );
        assert_eq!(
            field("sync", json!({"since": "no"})).as_deref(),
            Some("since")
        );
    }
}
