//! The WebSocket command protocol (`$default`): `{"type", "data", "request_id"}` in,
//! `{"type": "response", "request_id", "success", "data" | "error", "meta"}` out. A message
//! is parsed once, here, into a typed [`Command`] (`protocol.rs`), which calls the same
//! service as the REST route, so validation, permissions and the change log are the same.
//! A bad message gets an error reply; the connection stays up.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::kernel::access::{Action, Principal};
use crate::kernel::input::json::{StrictJsonError, strict_json};
use crate::kernel::paging::PageParams;
use crate::kernel::paging::{MAX_CHANGES_LIMIT, changes_limit};
use crate::realtime::connections::{Connection, ConnectionRegistry};
use crate::realtime::protocol::{
    AcceptInvitation, Batch, Body, Command, GetIssue, InTeam, ListTeamMembers, QueryIssues,
    QueryProjectStatuses, QueryProjects, QueryTeams, SyncArgs, TeamMember, Topics, UnknownCommand,
    WithId, WorkspaceMembers, normalise,
};
use crate::state::AppState;

/// API Gateway's WebSocket message limit.
pub use crate::kernel::limits::MAX_WS_MESSAGE_BYTES as MAX_MESSAGE_BYTES;

/// A message's envelope. Its `type` and `data` become a [`Command`] once the connection's
/// session is known to be live; the name shows in "not a command" errors.
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    request_id: Option<Value>,
    /// The seed's `subscribe` puts topics at the top level.
    #[serde(default)]
    topics: Option<Vec<String>>,
    /// The seed's `query_*` commands put filters at the top level.
    #[serde(default)]
    filters: Option<Value>,
}

/// What a command answers: its data, or the error body.
type Answer = Result<Value, Box<ErrorBody>>;

fn reply(kind: &str, request_id: &Value, result: Answer, connection_id: &str) -> Value {
    let meta = json!({
        "timestamp": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "connection_id": connection_id,
    });
    match result {
        Ok(data) => json!({
            "type": kind, "request_id": request_id, "success": true, "data": data, "meta": meta,
        }),
        Err(error) => json!({
                "type": "response", "request_id": request_id, "success": false,
            "error": error, "meta": meta,
        }),
    }
}

/// The `request_id` of a message that may not be a command (`null` when unreadable).
fn request_id_of(text: &str) -> Value {
    if text.len() > MAX_MESSAGE_BYTES {
        return Value::Null;
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("request_id").cloned())
        .unwrap_or(Value::Null)
}

/// What to send back for one message.
#[derive(Debug)]
pub struct Reply {
    pub message: Value,
    /// The connection's session ended (or it is unknown): close it after the reply.
    pub close: bool,
}

impl Reply {
    fn open(message: Value) -> Self {
        Self {
            message,
            close: false,
        }
    }
}

/// The connection, if its session is still live; 401 otherwise (logged out, password
/// changed, refresh token reused, expired).
async fn live_connection(
    state: &AppState,
    registry: &ConnectionRegistry,
    connection_id: &str,
) -> AppResult<Connection> {
    let conn = registry.require(connection_id).await?;
    state
        .ctx
        .access
        .session(&conn.principal(), Action::Read, &[])
        .await?;
    Ok(conn)
}

/// Handles one text message of a connection and returns the reply to send back.
pub async fn handle(
    state: &AppState,
    registry: &ConnectionRegistry,
    connection_id: &str,
    text: &str,
) -> Reply {
    // Every message counts, readable or not, before any work or storage call.
    if let Err(e) = state.limits.check_ws_command(connection_id).await {
        let rid = request_id_of(text);
        return Reply::open(reply("response", &rid, Err(e.into()), connection_id));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        let e = AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
        );
        return Reply::open(reply(
            "response",
            &Value::Null,
            Err(e.into()),
            connection_id,
        ));
    }
    let parsed = match strict_json(text.as_bytes()) {
        Ok(value) => serde_json::from_value::<Incoming>(value),
        Err(StrictJsonError::Invalid(e)) => Err(e),
        Err(duplicate) => {
            let rid = request_id_of(text);
            return Reply::open(reply(
                "response",
                &rid,
                Err(duplicate.into_error("data.").into()),
                connection_id,
            ));
        }
    };
    let incoming: Incoming = match parsed {
        Ok(m) => m,
        Err(e) => {
            let err = AppError::validation("message", format!("not a command: {e}"));
            // Echo a request_id when the JSON was readable but not a command.
            let rid = request_id_of(text);
            return Reply::open(reply("response", &rid, Err(err.into()), connection_id));
        }
    };
    let rid = incoming.request_id.clone().unwrap_or(Value::Null);
    let kind = if incoming.kind == "ping" {
        "pong"
    } else {
        "response"
    };
    let (result, close) = match live_connection(state, registry, connection_id).await {
        Ok(mut conn) => {
            // Any message proves the connection alive (it resets API Gateway's idle timer
            // too); `ping` is the one clients send for this alone. A failed refresh is not
            // the command's failure: the next message tries again.
            if let Err(e) = registry.touch(&mut conn).await {
                tracing::warn!(connection = %connection_id, error = %e, "could not refresh last_seen");
            }
            (run(state, registry, &conn, incoming).await, false)
        }
        Err(e) => (Err(e.into()), true),
    };
    Reply {
        message: reply(kind, &rid, result, connection_id),
        close,
    }
}

/// Parses the message's command (its `data` normalised) and runs it.
async fn run(
    state: &AppState,
    registry: &ConnectionRegistry,
    conn: &Connection,
    incoming: Incoming,
) -> Answer {
    let Incoming {
        kind,
        data,
        topics,
        filters,
        ..
    } = incoming;
    let command = Command::parse(kind, normalise(data, topics, filters))?;
    execute(state, registry, conn, command).await
}

fn ok<T: serde::Serialize>(v: T) -> Answer {
    serde_json::to_value(v).map_err(|_| AppError::internal("reply does not serialise").into())
}

/// The answer to a delete of `id`, once it succeeded.
fn deleted_after(result: AppResult<()>, id: String) -> Answer {
    result?;
    Ok(json!({"deleted": true, "id": id}))
}

/// A workspace named by the command, else the connection's current one.
fn workspace_or_current(named: Option<String>, conn: &Connection) -> AppResult<String> {
    named
        .or_else(|| conn.workspace_id.clone())
        .ok_or_else(|| AppError::validation("workspace_id", "is required"))
}

/// What an area's handler did with a command: answered it, or passed it on (not its area's;
/// boxed, as a command is large next to an answer).
enum Routed {
    Answered(Answer),
    Passed(Box<Command>),
}

/// A service call's result as an answer.
fn answer<T, E>(result: Result<T, E>) -> Answer
where
    T: serde::Serialize,
    Box<ErrorBody>: From<E>,
{
    ok(result?)
}

/// Runs one command: each variant is one call of its area's service (the REST route's).
/// The areas' handlers are tried in turn; each variant belongs to exactly one of them.
async fn execute(
    s: &AppState,
    registry: &ConnectionRegistry,
    conn: &Connection,
    command: Command,
) -> Answer {
    let who = &conn.principal();
    let command = match connection_commands(s, registry, conn, command).await {
        Routed::Answered(a) => return a,
        Routed::Passed(c) => *c,
    };
    let command = match workspace_commands(s, conn, command).await {
        Routed::Answered(a) => return a,
        Routed::Passed(c) => *c,
    };
    let command = match label_commands(s, who, command).await {
        Routed::Answered(a) => return a,
        Routed::Passed(c) => *c,
    };
    let command = match team_commands(s, who, command).await {
        Routed::Answered(a) => return a,
        Routed::Passed(c) => *c,
    };
    let command = match project_commands(s, who, command).await {
        Routed::Answered(a) => return a,
        Routed::Passed(c) => *c,
    };
    let command = match issue_commands(s, who, command).await {
        Routed::Answered(a) => return a,
        Routed::Passed(c) => *c,
    };
    match command {
        Command::Unknown(UnknownCommand { kind }) => {
            Err(AppError::validation("type", format!("unknown command type {kind:?}")).into())
        }
        // Unreachable: every other variant has its area's handler above.
        other => Err(AppError::internal(format!("no handler for {other:?}")).into()),
    }
}

/// Connection and sync.
async fn connection_commands(
    s: &AppState,
    registry: &ConnectionRegistry,
    conn: &Connection,
    command: Command,
) -> Routed {
    Routed::Answered(match command {
        Command::Ping(_) => Ok(json!({"pong": true})),
        Command::Subscribe(Topics { topics }) => answer(
            registry
                .subscribe(conn, &topics)
                .await
                .map(|topics| json!({ "subscribed": topics })),
        ),
        Command::Unsubscribe(Topics { topics }) => answer(
            registry
                .unsubscribe(conn, &topics)
                .await
                .map(|topics| json!({ "unsubscribed": topics })),
        ),
        Command::GetConnectionInfo(_) => connection_info(registry, conn).await,
        Command::Sync(Body(args)) => sync(s, conn, args).await,
        Command::Presence(Body(args)) => {
            let foreground = args.state == crate::realtime::protocol::AppPresence::Foreground;
            answer(
                registry
                    .set_foreground(conn, foreground)
                    .await
                    .map(|()| json!({ "foreground": foreground })),
            )
        }
        other => return Routed::Passed(Box::new(other)),
    })
}

async fn sync(s: &AppState, conn: &Connection, args: SyncArgs) -> Answer {
    let ws = workspace_or_current(args.workspace_id, conn)?;
    if args.since < 0 {
        return Err(AppError::validation("since", "must be >= 0").into());
    }
    let limit = changes_limit(args.limit, MAX_CHANGES_LIMIT)?;
    answer(
        s.workspaces
            .changes(&conn.principal(), &ws, args.since, limit)
            .await,
    )
}

/// Profile, workspaces and invitations.
async fn workspace_commands(s: &AppState, conn: &Connection, command: Command) -> Routed {
    let who = &conn.principal();
    Routed::Answered(match command {
        Command::UpdateProfile(Body(req)) => answer(s.auth.update_profile(who, req).await),
        Command::CreateWorkspace(Body(req)) => answer(s.workspaces.create(who, req).await),
        Command::UpdateWorkspace(WithId { id, body }) => {
            answer(s.workspaces.update(who, &id, body, None).await)
        }
        Command::DeleteWorkspace(WithId { id, .. }) => {
            deleted_after(s.workspaces.delete(who, &id).await, id)
        }
        Command::GetCurrentWorkspace(_) => answer(s.workspaces.current(who).await),
        Command::QueryWorkspaceMembers(WorkspaceMembers { workspace_id, page }) => {
            workspace_members(s, conn, workspace_id, page).await
        }
        Command::InviteWorkspaceMember(Body(req)) => answer(s.invitations.create(who, req).await),
        Command::AcceptInvitation(AcceptInvitation { id }) => {
            answer(s.invitations.accept(who, &id).await)
        }
        other => return Routed::Passed(Box::new(other)),
    })
}

async fn workspace_members(
    s: &AppState,
    conn: &Connection,
    workspace_id: Option<String>,
    page: AppResult<PageParams>,
) -> Answer {
    let ws = workspace_or_current(workspace_id, conn)?;
    answer(s.workspaces.members(&conn.principal(), &ws, &page?).await)
}

async fn label_commands(s: &AppState, who: &Principal, command: Command) -> Routed {
    Routed::Answered(match command {
        Command::CreateLabel(Body(req)) => answer(s.labels.create(who, req).await),
        Command::UpdateLabel(WithId { id, body }) => {
            answer(s.labels.update(who, &id, body, None).await)
        }
        Command::DeleteLabel(WithId { id, .. }) => answer(s.labels.delete(who, &id).await),
        Command::QueryLabels(Body(params)) => answer(s.labels.list(who, &params).await),
        Command::BatchCreateLabels(Batch(req)) => answer(
            s.labels
                .batch_create(who, req)
                .await
                .map_err(ErrorBody::from),
        ),
        Command::BatchUpdateLabels(Batch(req)) => answer(
            s.labels
                .batch_update(who, req)
                .await
                .map_err(ErrorBody::from),
        ),
        Command::BatchDeleteLabels(Batch(req)) => answer(
            s.labels
                .batch_delete(who, req)
                .await
                .map_err(ErrorBody::from),
        ),
        other => return Routed::Passed(Box::new(other)),
    })
}

/// Teams and team members.
async fn team_commands(s: &AppState, who: &Principal, command: Command) -> Routed {
    Routed::Answered(match command {
        Command::CreateTeam(Body(req)) => answer(s.teams.create(who, req).await),
        Command::UpdateTeam(WithId { id, body }) => {
            answer(s.teams.update(who, &id, body, None).await)
        }
        Command::DeleteTeam(WithId { id, .. }) => deleted_after(s.teams.delete(who, &id).await, id),
        Command::QueryTeams(QueryTeams { page, workspace_id }) => {
            answer(s.teams.list(who, workspace_id.as_deref(), &page).await)
        }
        Command::AddTeamMember(InTeam { team_id, body }) => {
            answer(s.teams.add_member(who, &team_id, body).await)
        }
        Command::UpdateTeamMember(TeamMember {
            team_id,
            user_id,
            body,
        }) => answer(
            s.teams
                .change_member_role(who, &team_id, &user_id, body)
                .await,
        ),
        Command::RemoveTeamMember(TeamMember {
            team_id, user_id, ..
        }) => answer(
            s.teams
                .remove_member(who, &team_id, &user_id)
                .await
                .map(|()| json!({"removed": true, "team_id": team_id, "user_id": user_id})),
        ),
        Command::ListTeamMembers(ListTeamMembers { team_id, page }) => {
            answer(s.teams.members(who, &team_id, &page).await)
        }
        other => return Routed::Passed(Box::new(other)),
    })
}

/// Projects and project statuses.
async fn project_commands(s: &AppState, who: &Principal, command: Command) -> Routed {
    Routed::Answered(match command {
        Command::CreateProject(Body(req)) => answer(s.projects.create(who, req).await),
        Command::UpdateProject(WithId { id, body }) => {
            answer(s.projects.update(who, &id, body, None).await)
        }
        Command::DeleteProject(WithId { id, .. }) => {
            deleted_after(s.projects.delete(who, &id, None).await, id)
        }
        Command::QueryProjects(QueryProjects { page, filter }) => {
            answer(s.projects.list(who, &filter, &page).await)
        }
        Command::CreateProjectStatus(Body(req)) => answer(s.projects.create_status(who, req).await),
        Command::UpdateProjectStatus(WithId { id, body }) => {
            answer(s.projects.update_status(who, &id, body, None).await)
        }
        Command::DeleteProjectStatus(WithId { id, .. }) => {
            deleted_after(s.projects.delete_status(who, &id, None).await, id)
        }
        Command::QueryProjectStatuses(QueryProjectStatuses { workspace_id }) => {
            answer(s.projects.list_statuses(who, workspace_id.as_deref()).await)
        }
        Command::GetProjectStatusById(WithId { id, .. }) => {
            answer(s.projects.get_status(who, &id).await)
        }
        other => return Routed::Passed(Box::new(other)),
    })
}

async fn issue_commands(s: &AppState, who: &Principal, command: Command) -> Routed {
    Routed::Answered(match command {
        Command::CreateIssue(Body(req)) => answer(s.issues.create(who, req).await),
        Command::UpdateIssue(WithId { id, body }) => {
            answer(s.issues.update(who, &id, body, None).await)
        }
        Command::DeleteIssue(WithId { id, .. }) => {
            deleted_after(s.issues.delete(who, &id).await, id)
        }
        Command::QueryIssues(QueryIssues(params)) => answer(s.issues.list(who, &params).await),
        Command::GetIssue(GetIssue { id, workspace_id }) => {
            answer(s.issues.get(who, &id, workspace_id.as_deref()).await)
        }
        other => return Routed::Passed(Box::new(other)),
    })
}

async fn connection_info(registry: &ConnectionRegistry, conn: &Connection) -> Answer {
    let subs: Vec<String> = registry
        .subscriptions(&conn.connection_id)
        .await?
        .into_iter()
        .map(|s| s.topic)
        .collect();
    ok(json!({
        "connection_id": conn.connection_id, "user_id": conn.user_id,
        "workspace_id": conn.workspace_id, "connected_at": conn.connected_at,
        "subscriptions": subs, "foreground": conn.foreground,
    }))
}
