//! WebSocket commands over the resource-group services (labels, teams, projects, project
//! statuses, issues, invitations). `None` means "not a resource command".

use serde_json::Value;

use crate::error::AppResult;
use crate::realtime::connections::Connection;
use crate::services::auth::Principal;
use crate::state::AppState;

pub async fn dispatch(
    _state: &AppState,
    _who: &Principal,
    _conn: &Connection,
    _kind: &str,
    _data: Value,
) -> Option<AppResult<Value>> {
    None
}
