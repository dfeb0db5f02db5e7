//! A new team's records (the team, its creator as lead, its workflow and default states) and
//! their writes: used when a team is created and when a workspace is created with its first
//! team.

use serde_json::json;

use super::model::{Team, TeamMember, TeamRole};
use crate::areas::workflows::{Workflow, WorkflowState, default_states};
use crate::error::AppError;
use crate::kernel::access::EntityType;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{claim, put_new};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::topic::Topic;

pub use crate::kernel::limits::{MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_URL_KEY, MIN_URL_KEY};

/// A new team's records: the team, its creator as lead, its workflow and default states.
pub struct NewTeam {
    pub team: Team,
    pub lead: TeamMember,
    pub workflow: Workflow,
    pub states: Vec<WorkflowState>,
}

impl NewTeam {
    pub fn build(
        workspace_id: &str,
        key: String,
        name: String,
        description: Option<String>,
        creator: &str,
        now: &str,
    ) -> Self {
        let team_id = ids::new_id(Kind::Team, workspace_id);
        let workflow_id = ids::new_id(Kind::Workflow, workspace_id);
        let (states, default_state_id) = default_states(workspace_id, &workflow_id, now);
        let workflow = Workflow {
            id: workflow_id.clone(),
            workspace_id: workspace_id.to_owned(),
            team_id: team_id.clone(),
            name: format!("{name} workflow"),
            default_state_id,
            version: 1,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        };
        let team = Team {
            id: team_id.clone(),
            workspace_id: workspace_id.to_owned(),
            key,
            name,
            description,
            workflow_id,
            created_by: creator.to_owned(),
            version: 1,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        };
        let lead = TeamMember {
            workspace_id: workspace_id.to_owned(),
            team_id,
            user_id: creator.to_owned(),
            role: TeamRole::Lead,
            joined_at: now.to_owned(),
        };
        Self {
            team,
            lead,
            workflow,
            states,
        }
    }

    /// Adds the writes and change records of the new team to a plan. The team key is
    /// claimed (CONFLICT on `key_field` when taken).
    pub fn plan<T>(&self, plan: Plan<T>, key_field: &str) -> Plan<T> {
        let ws = &self.team.workspace_id;
        let mut plan = plan
            .op(put_new(&keys::team(ws, &self.team.id), "team", &self.team))
            .guarded(
                claim(keys::team_key(ws, &self.team.key), &self.team.id),
                AppError::validation(key_field, "this team key is already used in the workspace")
                    .with_code(crate::error::ErrorCode::Conflict),
            )
            .op(put_new(
                &keys::team_member(ws, &self.team.id, &self.lead.user_id),
                "team_member",
                &self.lead,
            ))
            .op(put_new(
                &keys::workflow(ws, &self.workflow.id),
                "workflow",
                &self.workflow,
            ));
        for s in &self.states {
            plan = plan.op(put_new(
                &keys::state(ws, &self.workflow.id, &s.id),
                "workflow_state",
                s,
            ));
        }
        let team_topic = Topic::Team(self.team.id.clone());
        plan.change(
            Change::new(
                EntityType::Team,
                &self.team.id,
                ChangeKind::Created,
                &self.team,
            )
            .topic(team_topic.clone()),
        )
        .change(
            Change::new(
                EntityType::Workflow,
                &self.workflow.id,
                ChangeKind::Created,
                json!({"workflow": self.workflow, "states": self.states}),
            )
            .topic(team_topic),
        )
    }
}
