//! Key layout of the main table (see docs/data-model.md). Every key is built here.

use crate::storage::Key;

pub const USER_PROFILE_SK: &str = "PROFILE";
pub const SESSION_PREFIX: &str = "SESSION#";

pub fn user(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), USER_PROFILE_SK)
}

/// Uniqueness marker of an email (lower-cased).
pub fn email(email_key: &str) -> Key {
    Key::new(format!("EMAIL#{email_key}"), "EMAIL")
}

pub fn session(user_id: &str, session_id: &str) -> Key {
    Key::new(
        format!("USER#{user_id}"),
        format!("{SESSION_PREFIX}{session_id}"),
    )
}

pub fn user_partition(user_id: &str) -> String {
    format!("USER#{user_id}")
}

pub const API_TOKEN_PREFIX: &str = "TOKEN#";

/// A personal API token, in its owner's partition (their tokens are one Query).
pub fn api_token(user_id: &str, token_id: &str) -> Key {
    Key::new(
        user_partition(user_id),
        format!("{API_TOKEN_PREFIX}{token_id}"),
    )
}

/// A token's index item in a workspace it acts in (the admins' list is one Query).
pub fn workspace_token(workspace_id: &str, token_id: &str) -> Key {
    Key::new(
        workspace_partition(workspace_id),
        format!("{API_TOKEN_PREFIX}{token_id}"),
    )
}

pub const DEVICE_PREFIX: &str = "DEVICE#";

/// A registered push device, in its owner's partition (their devices are one Query).
pub fn device(user_id: &str, device_id: &str) -> Key {
    Key::new(
        user_partition(user_id),
        format!("{DEVICE_PREFIX}{device_id}"),
    )
}

/// Who holds a push token now (`platform` is `apns` / `fcm`, `token_hash` its SHA-256): a
/// token belongs to one user at a time, so registering it elsewhere moves it.
pub fn push_token(platform: &str, token_hash: &str) -> Key {
    Key::new(format!("PUSHTOKEN#{platform}#{token_hash}"), "PUSHTOKEN")
}

/// A refresh token, keyed by its SHA-256.
pub fn refresh_token(token_hash: &str) -> Key {
    Key::new(format!("REFRESH#{token_hash}"), "REFRESH")
}

// Workspace-scoped items live in the workspace's partition, so a workspace's lists are
// strongly consistent Queries and its data never shares a partition with another's.

pub fn workspace_partition(workspace_id: &str) -> String {
    format!("WS#{workspace_id}")
}

pub fn workspace(workspace_id: &str) -> Key {
    Key::new(workspace_partition(workspace_id), "META")
}

/// Global uniqueness marker of a workspace `url_key`.
pub fn workspace_url_key(url_key: &str) -> Key {
    Key::new(format!("WSKEY#{url_key}"), "WSKEY")
}

pub const MEMBER_PREFIX: &str = "MEMBER#";

pub fn member(workspace_id: &str, user_id: &str) -> Key {
    Key::new(
        workspace_partition(workspace_id),
        format!("{MEMBER_PREFIX}{user_id}"),
    )
}

pub const MEMBERSHIP_PREFIX: &str = "WSMEMBER#";

/// The user-side mirror of a membership: lists a user's workspaces in one Query.
pub fn membership(user_id: &str, workspace_id: &str) -> Key {
    Key::new(
        user_partition(user_id),
        format!("{MEMBERSHIP_PREFIX}{workspace_id}"),
    )
}

/// An entity of the workspace partition: `{PREFIX}#{id}`.
pub fn scoped(workspace_id: &str, prefix: &str, id: &str) -> Key {
    Key::new(workspace_partition(workspace_id), format!("{prefix}#{id}"))
}

pub const TEAM: &str = "TEAM";
pub const TEAM_KEY: &str = "TEAMKEY";
pub const TEAM_MEMBER: &str = "TEAMMEMBER";
pub const WORKFLOW: &str = "WORKFLOW";
pub const STATE: &str = "STATE";

pub fn team(workspace_id: &str, team_id: &str) -> Key {
    scoped(workspace_id, TEAM, team_id)
}

/// Per-workspace uniqueness marker of a team key (upper-cased).
pub fn team_key(workspace_id: &str, key: &str) -> Key {
    scoped(workspace_id, TEAM_KEY, key)
}

pub fn team_member(workspace_id: &str, team_id: &str, user_id: &str) -> Key {
    scoped(workspace_id, TEAM_MEMBER, &format!("{team_id}#{user_id}"))
}

pub fn workflow(workspace_id: &str, workflow_id: &str) -> Key {
    scoped(workspace_id, WORKFLOW, workflow_id)
}

/// States sort under their workflow: `STATE#{workflow}#{state}`.
pub fn state(workspace_id: &str, workflow_id: &str, state_id: &str) -> Key {
    scoped(workspace_id, STATE, &format!("{workflow_id}#{state_id}"))
}

pub const PROJECT: &str = "PROJECT";
pub const PROJECT_KEY: &str = "PROJKEY";
pub const PROJECT_STATUS: &str = "PSTATUS";
pub const ISSUE: &str = "ISSUE";
pub const CYCLE: &str = "CYCLE";
pub const LABEL: &str = "LABEL";
pub const LABEL_NAME: &str = "LABELNAME";
pub const COMMENT: &str = "COMMENT";
pub const INVITATION: &str = "INVITE";
pub const WEBHOOK: &str = "WEBHOOK";
pub const WEBHOOK_DELIVERY: &str = "WHDELIVERY";

pub fn project(workspace_id: &str, project_id: &str) -> Key {
    scoped(workspace_id, PROJECT, project_id)
}

pub fn project_status(workspace_id: &str, status_id: &str) -> Key {
    scoped(workspace_id, PROJECT_STATUS, status_id)
}

pub fn issue(workspace_id: &str, issue_id: &str) -> Key {
    scoped(workspace_id, ISSUE, issue_id)
}

pub fn cycle(workspace_id: &str, cycle_id: &str) -> Key {
    scoped(workspace_id, CYCLE, cycle_id)
}

pub fn label(workspace_id: &str, label_id: &str) -> Key {
    scoped(workspace_id, LABEL, label_id)
}

pub fn comment(workspace_id: &str, comment_id: &str) -> Key {
    scoped(workspace_id, COMMENT, comment_id)
}

pub fn invitation(workspace_id: &str, invitation_id: &str) -> Key {
    scoped(workspace_id, INVITATION, invitation_id)
}

pub fn webhook(workspace_id: &str, webhook_id: &str) -> Key {
    scoped(workspace_id, WEBHOOK, webhook_id)
}

/// Deliveries sort under their webhook, oldest first: `WHDELIVERY#{webhook}#{delivery}`.
pub fn webhook_delivery(workspace_id: &str, webhook_id: &str, delivery_id: &str) -> Key {
    scoped(
        workspace_id,
        WEBHOOK_DELIVERY,
        &format!("{webhook_id}#{delivery_id}"),
    )
}

/// A team's issue-number counter (`seq`), apart from the team record so that versioned
/// puts of the team never reset it.
pub fn team_issue_counter(workspace_id: &str, team_id: &str) -> Key {
    scoped(workspace_id, "TEAMSEQ", team_id)
}
