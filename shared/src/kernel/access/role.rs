//! Workspace roles and what each may do: the permission matrix of docs/permissions.md, in
//! one place for REST and WebSocket alike.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};

/// A member's role in a workspace, weakest first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Guest,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

/// What a request wants to do inside a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// See anything in the workspace.
    Read,
    /// Create and change work: issues, projects, cycles, comments, own team membership.
    Contribute,
    /// Manage structure and people: teams, labels, workflows and states, project statuses,
    /// invitations, invite codes, members (except owners).
    Manage,
    /// Update the workspace itself (name, url key, settings).
    Configure,
    /// Delete the workspace, grant or revoke the owner role.
    Own,
}

impl Action {
    /// The weakest role allowed to do this.
    pub fn min_role(self) -> Role {
        match self {
            Action::Read => Role::Guest,
            Action::Contribute => Role::Member,
            Action::Manage | Action::Configure => Role::Admin,
            Action::Own => Role::Owner,
        }
    }
}

impl Role {
    /// The permission matrix.
    pub fn allows(self, action: Action) -> bool {
        self >= action.min_role()
    }

    /// Errs with FORBIDDEN unless the role allows the action.
    pub fn require(self, action: Action) -> AppResult<()> {
        if self.allows(action) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "a workspace {} may not do this",
                self.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix() {
        use Action::*;
        use Role::*;
        let table = [
            (Guest, [true, false, false, false, false]),
            (Member, [true, true, false, false, false]),
            (Admin, [true, true, true, true, false]),
            (Owner, [true, true, true, true, true]),
        ];
        for (role, expected) in table {
            let got = [Read, Contribute, Manage, Configure, Own].map(|a| role.allows(a));
            assert_eq!(got, expected, "{role:?}");
        }
        assert!(Guest.require(Contribute).is_err());
    }
}
