//! WebSocket commands over the resource-group services: labels (incl. batch), teams and team
//! members, invitations, projects, project statuses, issues. Each parses `data` into the same
//! input type as the REST route and calls the same service method. `None` means "not a
//! resource command".

use serde_json::{Value, json};

use crate::error::{AppError, AppResult};
use crate::input::json::from_json_value;
use crate::realtime::commands::{CommandError, take_str};
use crate::realtime::connections::Connection;
use crate::services::auth::Principal;
use crate::services::labels::{BatchCreateLabels, BatchDeleteLabels, BatchUpdateLabels};
use crate::services::pagination::PageParams;
use crate::state::AppState;

type Reply = Result<Value, CommandError>;

fn ok<T: serde::Serialize>(v: T) -> Reply {
    serde_json::to_value(v).map_err(|_| AppError::internal("reply does not serialise").into())
}

fn parse<T: serde::de::DeserializeOwned>(data: Value) -> AppResult<T> {
    from_json_value(data)
}

/// Takes `limit` and `cursor` out of `data` (list commands mix them with filters).
fn page_of(data: &mut Value) -> AppResult<PageParams> {
    let mut page = serde_json::Map::new();
    if let Some(d) = data.as_object_mut() {
        for k in ["limit", "cursor"] {
            if let Some(v) = d.remove(k) {
                page.insert(k.to_owned(), v);
            }
        }
    }
    parse(Value::Object(page))
}

/// The seed's batch commands send a bare array as `data`.
fn batch_body(data: Value, field: &str) -> Value {
    match data {
        Value::Array(items) => json!({ field: items }),
        other => other,
    }
}

/// The seed's `query_issues` filters by `status`; it means a state category.
fn issue_filters(mut data: Value) -> Value {
    if let Some(d) = data.as_object_mut()
        && let Some(Value::String(status)) = d.remove("status")
    {
        let category = match status.as_str() {
            "in_progress" | "in-progress" => "started",
            "todo" => "unstarted",
            "done" => "completed",
            "cancelled" => "canceled",
            other => other,
        };
        d.entry("state_category").or_insert(json!(category));
    }
    data
}

pub async fn dispatch(
    s: &AppState,
    who: &Principal,
    _conn: &Connection,
    kind: &str,
    mut data: Value,
) -> Option<Reply> {
    let result: Reply = async {
        match kind {
            // Labels.
            "create_label" => ok(s.labels.create(who, parse(data)?).await?),
            "update_label" => {
                let id = take_str(&mut data, "id")?;
                ok(s.labels.update(who, &id, parse(data)?, None).await?)
            }
            "delete_label" => {
                let id = take_str(&mut data, "id")?;
                ok(s.labels.delete(who, &id).await?)
            }
            "query_labels" => ok(s.labels.list(who, &parse(data)?).await?),
            "batch_create_labels" => {
                let req: BatchCreateLabels = parse(batch_body(data, "labels"))?;
                s.labels
                    .batch_create(who, req)
                    .await
                    .map_err(CommandError::from)
                    .and_then(ok)
            }
            "batch_update_labels" => {
                let req: BatchUpdateLabels = parse(batch_body(data, "labels"))?;
                s.labels
                    .batch_update(who, req)
                    .await
                    .map_err(CommandError::from)
                    .and_then(ok)
            }
            "batch_delete_labels" => {
                let req: BatchDeleteLabels = parse(batch_body(data, "ids"))?;
                s.labels
                    .batch_delete(who, req)
                    .await
                    .map_err(CommandError::from)
                    .and_then(ok)
            }
            // Teams and team members.
            "create_team" => ok(s.teams.create(who, parse(data)?).await?),
            "update_team" => {
                let id = take_str(&mut data, "id")?;
                ok(s.teams.update(who, &id, parse(data)?, None).await?)
            }
            "delete_team" => {
                let id = take_str(&mut data, "id")?;
                s.teams.delete(who, &id).await?;
                ok(json!({"deleted": true, "id": id}))
            }
            "query_teams" => {
                let page = page_of(&mut data)?;
                let ws = optional(&mut data, "workspace_id")?;
                no_more(&data)?;
                ok(s.teams.list(who, ws.as_deref(), &page).await?)
            }
            "add_team_member" => {
                let team = take_str(&mut data, "team_id")?;
                ok(s.teams.add_member(who, &team, parse(data)?).await?)
            }
            "update_team_member" => {
                let team = take_str(&mut data, "team_id")?;
                let user = take_str(&mut data, "user_id")?;
                ok(s.teams
                    .change_member_role(who, &team, &user, parse(data)?)
                    .await?)
            }
            "remove_team_member" => {
                let team = take_str(&mut data, "team_id")?;
                let user = take_str(&mut data, "user_id")?;
                s.teams.remove_member(who, &team, &user).await?;
                ok(json!({"removed": true, "team_id": team, "user_id": user}))
            }
            "list_team_members" => {
                let team = take_str(&mut data, "team_id")?;
                let page = page_of(&mut data)?;
                no_more(&data)?;
                ok(s.teams.members(who, &team, &page).await?)
            }
            // Invitations.
            "invite_workspace_member" => ok(s.invitations.create(who, parse(data)?).await?),
            "accept_invitation" => {
                let id = match take_str(&mut data, "invitation_id") {
                    Ok(id) => id,
                    Err(_) => take_str(&mut data, "id")?,
                };
                ok(s.invitations.accept(who, &id).await?)
            }
            // Projects.
            "create_project" => ok(s.projects.create(who, parse(data)?).await?),
            "update_project" => {
                let id = take_str(&mut data, "id")?;
                ok(s.projects.update(who, &id, parse(data)?, None).await?)
            }
            "delete_project" => {
                let id = take_str(&mut data, "id")?;
                s.projects.delete(who, &id, None).await?;
                ok(json!({"deleted": true, "id": id}))
            }
            "query_projects" => {
                let page = page_of(&mut data)?;
                ok(s.projects.list(who, &parse(data)?, &page).await?)
            }
            // Project statuses.
            "create_project_status" => ok(s.projects.create_status(who, parse(data)?).await?),
            "update_project_status" => {
                let id = take_str(&mut data, "id")?;
                ok(s.projects
                    .update_status(who, &id, parse(data)?, None)
                    .await?)
            }
            "delete_project_status" => {
                let id = take_str(&mut data, "id")?;
                s.projects.delete_status(who, &id, None).await?;
                ok(json!({"deleted": true, "id": id}))
            }
            "query_project_statuses" => {
                let ws = optional(&mut data, "workspace_id")?;
                no_more(&data)?;
                ok(s.projects.list_statuses(who, ws.as_deref()).await?)
            }
            "get_project_status_by_id" => {
                let id = take_str(&mut data, "id")?;
                ok(s.projects.get_status(who, &id).await?)
            }
            // Issues.
            "create_issue" => ok(s.issues.create(who, parse(data)?).await?),
            "update_issue" => {
                let id = take_str(&mut data, "id")?;
                ok(s.issues.update(who, &id, parse(data)?, None).await?)
            }
            "delete_issue" => {
                let id = take_str(&mut data, "id")?;
                s.issues.delete(who, &id).await?;
                ok(json!({"deleted": true, "id": id}))
            }
            "query_issues" => ok(s.issues.list(who, &parse(issue_filters(data))?).await?),
            "get_issue" => {
                let id = take_str(&mut data, "id")?;
                let ws = optional(&mut data, "workspace_id")?;
                no_more(&data)?;
                ok(s.issues.get(who, &id, ws.as_deref()).await?)
            }
            _ => Err(CommandError::unknown()),
        }
    }
    .await;
    match result {
        Err(e) if e.is_unknown() => None,
        other => Some(other),
    }
}

fn optional(data: &mut Value, field: &str) -> AppResult<Option<String>> {
    match data.as_object_mut().and_then(|d| d.remove(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AppError::validation(field, "must be a string")),
    }
}

/// Refuses fields a command does not know (as REST bodies do).
fn no_more(data: &Value) -> AppResult<()> {
    match data.as_object().and_then(|d| d.keys().next()) {
        Some(k) => Err(AppError::validation(
            k.clone(),
            format!("unknown field `{k}`"),
        )),
        None => Ok(()),
    }
}
