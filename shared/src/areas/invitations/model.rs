//! Invitations and invite codes as stored and served, and the requests that make them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};
use crate::kernel::access::Member;
use crate::kernel::access::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    /// Pending past `expires_at` (derived when reading, never stored).
    Expired,
}

impl InvitationStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Accepted => "accepted",
            InvitationStatus::Declined => "declined",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Expired => "expired",
        }
    }
}

/// An invitation (`WS#{ws}` / `INVITE#{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Invitation {
    pub id: String,
    pub workspace_id: String,
    /// The workspace's name when the invitation was made (for the invitee's list).
    pub workspace_name: String,
    /// The invited address as given (compared case-insensitively).
    pub email: String,
    /// The role the invitee gets on accepting.
    pub role: Role,
    pub status: InvitationStatus,
    pub invited_by: String,
    pub expires_at: String,
    /// When the invitee accepted or declined, or an admin revoked.
    pub responded_at: Option<String>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Invitation {
    /// As served: a pending invitation past its expiry reads as expired.
    pub(super) fn at(mut self, now: OffsetDateTime) -> Self {
        if self.status == InvitationStatus::Pending && expired(&self.expires_at, now) {
            self.status = InvitationStatus::Expired;
        }
        self
    }

    /// The invitation once answered (accepted, declined or revoked) at `stamp`: a new version.
    pub(super) fn answered(&self, status: InvitationStatus, stamp: String) -> Self {
        let mut next = self.clone();
        next.status = status;
        next.responded_at = Some(stamp.clone());
        next.updated_at = stamp;
        next.version += 1;
        next
    }
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[schema(min_length = 3, max_length = 254, format = Email)]
    pub email: String,
    /// `admin`, `member` (default) or `guest`; `owner` only when the caller is an owner.
    #[serde(default)]
    pub role: Option<Role>,
}

/// What accepting an invitation made.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedInvitation {
    pub invitation: Invitation,
    pub member: Member,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InviteCodeStatus {
    Active,
    /// Past `expires_at` (derived when reading).
    Expired,
    /// `uses` reached `max_uses` (derived when reading).
    Exhausted,
}

/// A shareable invite code (`WS#{ws}` / `INVITECODE#{code}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InviteCode {
    pub code: String,
    pub workspace_id: String,
    /// The role joiners get.
    pub role: Role,
    /// `null`: unlimited.
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub status: InviteCodeStatus,
    pub expires_at: String,
    pub created_by: String,
    pub created_at: String,
}

impl InviteCode {
    pub(super) fn at(mut self, now: OffsetDateTime) -> Self {
        self.status = if expired(&self.expires_at, now) {
            InviteCodeStatus::Expired
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            InviteCodeStatus::Exhausted
        } else {
            InviteCodeStatus::Active
        };
        self
    }
}

/// The global lookup item of a code: what a join needs before it knows the workspace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CodeLookup {
    pub(super) code: String,
    pub(super) workspace_id: String,
    pub(super) role: Role,
    pub(super) max_uses: Option<i64>,
    pub(super) expires_at: String,
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteCode {
    /// `member` (default), `guest` or `admin`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(admin|member|guest)$")]
    pub role: Option<Role>,
    /// 1..=1000; unlimited when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_uses: Option<i64>,
    /// 1..=720 (default 168, a week).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 720)]
    pub expires_in_hours: Option<i64>,
}

/// How long an invitation stays valid.
pub const INVITATION_TTL_DAYS: i64 = 7;

/// True when `expires_at` (RFC 3339) is not after `now`; unreadable times count as expired.
pub(super) fn expired(expires_at: &str, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(expires_at, &Rfc3339).map_or(true, |t| t <= now)
}

pub(super) fn format_time(t: OffsetDateTime) -> AppResult<String> {
    t.format(&Rfc3339)
        .map_err(|_| AppError::internal("could not format a time"))
}
