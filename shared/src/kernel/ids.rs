//! Entity ids carry their workspace: `{prefix}_{base64url(workspace uuid ++ entity uuid)}`.
//! So a request naming only `/issues/{id}` can read the issue, the caller's membership and
//! session in one batch, and a forged id pointing into another workspace finds no membership
//! (404) rather than data. Clients treat ids as opaque strings.

use base64::Engine;
use base64::alphabet::Alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// base64 with its 64 URL-safe characters in ASCII order, so encoded ids sort like their
/// bytes: ids of one workspace sort by creation time (the entity part is a UUIDv7).
const SORTABLE: GeneralPurpose = GeneralPurpose::new(
    &match Alphabet::new("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz") {
        Ok(a) => a,
        Err(_) => panic!("valid alphabet"),
    },
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// The kinds of workspace-scoped entities and their id prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Team,
    Workflow,
    State,
    Project,
    ProjectStatus,
    Issue,
    Cycle,
    Label,
    Comment,
    Invitation,
    InviteCode,
    Webhook,
    WebhookDelivery,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Team => "team",
            Kind::Workflow => "wf",
            Kind::State => "st",
            Kind::Project => "proj",
            Kind::ProjectStatus => "ps",
            Kind::Issue => "iss",
            Kind::Cycle => "cyc",
            Kind::Label => "lbl",
            Kind::Comment => "cmt",
            Kind::Invitation => "inv",
            Kind::InviteCode => "code",
            Kind::Webhook => "wh",
            Kind::WebhookDelivery => "whd",
        }
    }

    /// What the entity is called in messages ("issue not found").
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Team => "team",
            Kind::Workflow => "workflow",
            Kind::State => "workflow state",
            Kind::Project => "project",
            Kind::ProjectStatus => "project status",
            Kind::Issue => "issue",
            Kind::Cycle => "cycle",
            Kind::Label => "label",
            Kind::Comment => "comment",
            Kind::Invitation => "invitation",
            Kind::InviteCode => "invite code",
            Kind::Webhook => "webhook",
            Kind::WebhookDelivery => "delivery",
        }
    }
}

/// A new id of `kind` in `workspace_id` (time-ordered: UUIDv7).
pub fn new_id(kind: Kind, workspace_id: &str) -> String {
    let ws = Uuid::parse_str(workspace_id).expect("workspace ids are UUIDs");
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(ws.as_bytes());
    bytes[16..].copy_from_slice(Uuid::now_v7().as_bytes());
    format!("{}_{}", kind.prefix(), SORTABLE.encode(bytes))
}

/// The workspace of an id of `kind`; anything malformed is "not found" (the id names
/// nothing this caller can see).
pub fn workspace_of(kind: Kind, id: &str) -> AppResult<String> {
    let not_found = || AppError::not_found(kind.noun());
    let encoded = id
        .strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or_else(not_found)?;
    if encoded.len() != 43 {
        return Err(not_found());
    }
    let bytes = SORTABLE.decode(encoded).map_err(|_| not_found())?;
    let ws = Uuid::from_slice(&bytes[..16]).map_err(|_| not_found())?;
    Ok(ws.to_string())
}

/// The creation order of any scoped id: the hex of the UUIDv7 it carries (the id text sorts
/// the same way; this form is also fixed-width). Unparseable ids map to themselves.
pub fn creation_key(id: &str) -> String {
    id.split_once('_')
        .and_then(|(_, enc)| SORTABLE.decode(enc).ok())
        .filter(|b| b.len() == 32)
        .map(|b| b[16..].iter().map(|x| format!("{x:02x}")).collect())
        .unwrap_or_else(|| id.to_owned())
}

/// Validates a workspace id (a UUID) from a path or body.
pub fn parse_workspace_id(id: &str) -> AppResult<String> {
    Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| AppError::not_found("workspace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_workspace() {
        let ws = Uuid::new_v4().to_string();
        let id = new_id(Kind::Issue, &ws);
        assert!(id.starts_with("iss_"));
        assert_eq!(workspace_of(Kind::Issue, &id).unwrap(), ws);
        assert!(workspace_of(Kind::Team, &id).is_err(), "kind is checked");
        for bad in ["", "iss_", "iss_!!", "iss_abc", &format!("{id}x")] {
            let err = workspace_of(Kind::Issue, bad).unwrap_err();
            assert_eq!(err.code.as_str(), "NOT_FOUND");
        }
        assert_ne!(new_id(Kind::Issue, &ws), id);
    }

    #[test]
    fn ids_sort_by_creation() {
        let ws = Uuid::new_v4().to_string();
        let ids: Vec<String> = (0..200)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_micros(50));
                new_id(Kind::Issue, &ws)
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
