//! Who may see what: one visibility rule per entity type. REST reads, the change feed (REST
//! `changes` and WebSocket `sync`), the broadcaster and presence all ask this module, so an
//! outlet cannot show a record that another outlet would refuse. The table is
//! docs/permissions.md's "Visibility"; `tests/tests/visibility.rs` checks the outlets against
//! it for every role and every entity type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::access::{Action, Role};

/// The kinds of entity a change record can be about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Workspace,
    WorkspaceMember,
    Invitation,
    InviteCode,
    Team,
    TeamMember,
    Workflow,
    WorkflowState,
    Project,
    ProjectStatus,
    Issue,
    Cycle,
    Label,
    Comment,
    Webhook,
}

impl EntityType {
    /// Every entity type; the visibility test iterates this list.
    pub const ALL: [EntityType; 15] = [
        EntityType::Workspace,
        EntityType::WorkspaceMember,
        EntityType::Invitation,
        EntityType::InviteCode,
        EntityType::Team,
        EntityType::TeamMember,
        EntityType::Workflow,
        EntityType::WorkflowState,
        EntityType::Project,
        EntityType::ProjectStatus,
        EntityType::Issue,
        EntityType::Cycle,
        EntityType::Label,
        EntityType::Comment,
        EntityType::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Workspace => "workspace",
            EntityType::WorkspaceMember => "workspace_member",
            EntityType::Invitation => "invitation",
            EntityType::InviteCode => "invite_code",
            EntityType::Team => "team",
            EntityType::TeamMember => "team_member",
            EntityType::Workflow => "workflow",
            EntityType::WorkflowState => "workflow_state",
            EntityType::Project => "project",
            EntityType::ProjectStatus => "project_status",
            EntityType::Issue => "issue",
            EntityType::Cycle => "cycle",
            EntityType::Label => "label",
            EntityType::Comment => "comment",
            EntityType::Webhook => "webhook",
        }
    }

    /// The rule: what a member's role must allow to read entities of this type. Invite codes
    /// are credentials (a code joins with its role) and invitations name people and roles,
    /// so both are for those who manage the workspace's people. Webhooks (their URLs and
    /// delivery state) are for those who manage integrations.
    pub fn read_action(self) -> Action {
        match self {
            EntityType::Invitation | EntityType::InviteCode | EntityType::Webhook => Action::Manage,
            EntityType::Workspace
            | EntityType::WorkspaceMember
            | EntityType::Team
            | EntityType::TeamMember
            | EntityType::Workflow
            | EntityType::WorkflowState
            | EntityType::Project
            | EntityType::ProjectStatus
            | EntityType::Issue
            | EntityType::Cycle
            | EntityType::Label
            | EntityType::Comment => Action::Read,
        }
    }

    /// Whether the entity's subject (the invitee of an invitation) may read it whatever
    /// their role.
    pub fn subject_reads(self) -> bool {
        matches!(self, EntityType::Invitation)
    }

    /// What a reader needs to see a change about an entity of this type; `subject` is the
    /// user the entity is about, when the rule lets them read it and they are known.
    pub fn audience(self, subject: Option<&str>) -> Audience {
        Audience {
            min_role: self.read_action().min_role(),
            user_id: subject.filter(|_| self.subject_reads()).map(str::to_owned),
        }
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityType {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        EntityType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

/// What a reader needs to see one change record: a current role of at least `min_role` in
/// the record's workspace, or being `user_id` (and still a member). Stored with the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Audience {
    pub min_role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl Audience {
    /// Whether a current member with `role` sees the record.
    pub fn admits(&self, user_id: &str, role: Role) -> bool {
        role >= self.min_role || self.user_id.as_deref() == Some(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in EntityType::ALL {
            assert_eq!(t.as_str().parse::<EntityType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!("nope".parse::<EntityType>().is_err());
    }

    #[test]
    fn manage_only_types_admit_their_subject() {
        let a = EntityType::Invitation.audience(Some("u1"));
        assert!(!a.admits("u2", Role::Member));
        assert!(a.admits("u1", Role::Guest));
        assert!(a.admits("u2", Role::Admin));
        let code = EntityType::InviteCode.audience(Some("u1"));
        assert_eq!(code.user_id, None, "codes have no subject reader");
        assert!(!code.admits("u1", Role::Member));
        assert!(EntityType::Issue.audience(None).admits("u", Role::Guest));
    }
}
