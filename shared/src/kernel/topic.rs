//! Realtime topics: what a change record is published on and what a connection subscribes
//! to. Built and parsed only here; everywhere else a topic is a `Topic`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{AppError, AppResult};
use crate::kernel::ids::{self, Kind};

/// A topic. Its text form (`workspace:{id}`, `team:{id}`, ...) is what clients send and
/// what change records and subscriptions store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every change of a workspace.
    Workspace(String),
    /// Every issue change of a workspace (the seed's `issues` shorthand).
    Issues(String),
    /// Every project change of a workspace (the seed's `projects` shorthand).
    Projects(String),
    Team(String),
    Project(String),
    Issue(String),
}

impl Topic {
    /// The workspace the topic belongs to (ids carry their workspace).
    pub fn workspace_id(&self) -> AppResult<String> {
        match self {
            Topic::Workspace(ws) | Topic::Issues(ws) | Topic::Projects(ws) => Ok(ws.clone()),
            Topic::Team(id) => ids::workspace_of(Kind::Team, id),
            Topic::Project(id) => ids::workspace_of(Kind::Project, id),
            Topic::Issue(id) => ids::workspace_of(Kind::Issue, id),
        }
    }

    /// The topics that name a whole workspace (its own and the shorthands).
    pub fn workspace_wide(workspace_id: &str) -> [Topic; 3] {
        [
            Topic::Workspace(workspace_id.to_owned()),
            Topic::Issues(workspace_id.to_owned()),
            Topic::Projects(workspace_id.to_owned()),
        ]
    }

    /// Parses a topic as a client names it: the text forms, plus the bare shorthands
    /// `issues` / `projects` for `current_workspace`. Errors name the `topics` field.
    pub fn parse_for_client(raw: &str, current_workspace: Option<&str>) -> AppResult<Topic> {
        match raw {
            "issues" | "projects" => {
                let ws = current_workspace.ok_or_else(|| {
                    AppError::validation(
                        "topics",
                        format!(
                            "{raw:?} needs a current workspace: switch to one or use workspace:{{id}}"
                        ),
                    )
                })?;
                Ok(if raw == "issues" {
                    Topic::Issues(ws.to_owned())
                } else {
                    Topic::Projects(ws.to_owned())
                })
            }
            _ => {
                let invalid = || AppError::validation("topics", format!("unknown topic {raw:?}"));
                let (kind, id) = raw.split_once(':').ok_or_else(invalid)?;
                let topic = match kind {
                    "workspace" => Topic::Workspace(ids::parse_workspace_id(id)?),
                    "issues" => Topic::Issues(ids::parse_workspace_id(id)?),
                    "projects" => Topic::Projects(ids::parse_workspace_id(id)?),
                    "team" => Topic::Team(id.to_owned()),
                    "project" => Topic::Project(id.to_owned()),
                    "issue" => Topic::Issue(id.to_owned()),
                    // A user's own topic is implicit (every connection of theirs is on it
                    // from `$connect` on) and nobody else's is open to anyone.
                    "user" => {
                        return Err(AppError::forbidden(
                            "user:{id} topics cannot be subscribed: each connection receives its own user's notifications",
                        ));
                    }
                    _ => return Err(invalid()),
                };
                // An id that names nothing a client could see is "not found".
                topic.workspace_id()?;
                Ok(topic)
            }
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Workspace(id) => write!(f, "workspace:{id}"),
            Topic::Issues(id) => write!(f, "issues:{id}"),
            Topic::Projects(id) => write!(f, "projects:{id}"),
            Topic::Team(id) => write!(f, "team:{id}"),
            Topic::Project(id) => write!(f, "project:{id}"),
            Topic::Issue(id) => write!(f, "issue:{id}"),
        }
    }
}

/// A user's own topic, `user:{id}`: only the server sends on it, to that user's own
/// connections (`realtime::inbox`). It is apart from [`Topic`] because no one subscribes to
/// it (`Topic::parse_for_client` refuses `user:`) and it belongs to no workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTopic<'a>(pub &'a str);

impl fmt::Display for UserTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user:{}", self.0)
    }
}

impl Serialize for UserTopic<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a text is not a topic.
#[derive(Debug, PartialEq, Eq)]
pub struct NotATopic;

impl FromStr for Topic {
    type Err = NotATopic;

    /// The text forms only. Workspace ids are canonicalised (UUID form), so
    /// `workspace:{ID}` in any case names one topic.
    fn from_str(s: &str) -> Result<Self, NotATopic> {
        let (kind, id) = s.split_once(':').ok_or(NotATopic)?;
        let workspace = || ids::parse_workspace_id(id).map_err(|_| NotATopic);
        Ok(match kind {
            "workspace" => Topic::Workspace(workspace()?),
            "issues" => Topic::Issues(workspace()?),
            "projects" => Topic::Projects(workspace()?),
            "team" if !id.is_empty() => Topic::Team(id.to_owned()),
            "project" if !id.is_empty() => Topic::Project(id.to_owned()),
            "issue" if !id.is_empty() => Topic::Issue(id.to_owned()),
            _ => return Err(NotATopic),
        })
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse()
            .map_err(|_| serde::de::Error::custom(format!("not a topic: {raw:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let ws = uuid::Uuid::new_v4().to_string();
        let team = ids::new_id(Kind::Team, &ws);
        for t in [
            Topic::Workspace(ws.clone()),
            Topic::Issues(ws.clone()),
            Topic::Projects(ws.clone()),
            Topic::Team(team.clone()),
            Topic::Project(ids::new_id(Kind::Project, &ws)),
            Topic::Issue(ids::new_id(Kind::Issue, &ws)),
        ] {
            assert_eq!(t.to_string().parse::<Topic>(), Ok(t.clone()));
            assert_eq!(t.workspace_id().unwrap(), ws);
            let json = serde_json::to_value(&t).unwrap();
            assert_eq!(json, serde_json::json!(t.to_string()));
            assert_eq!(serde_json::from_value::<Topic>(json).unwrap(), t);
        }
        let upper = format!("workspace:{}", ws.to_uppercase());
        assert_eq!(upper.parse::<Topic>(), Ok(Topic::Workspace(ws.clone())));
    }

    #[test]
    fn clients_get_field_errors() {
        let ws = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            Topic::parse_for_client("issues", Some(&ws)).unwrap(),
            Topic::Issues(ws.clone())
        );
        let e = Topic::parse_for_client("issues", None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("topics"));
        for bad in ["", "nope", "chat:1"] {
            let e = Topic::parse_for_client(bad, Some(&ws)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("topics"), "{bad}");
        }
        for unknown in ["team:", "workspace:not-a-uuid", "issue:iss_nope"] {
            let e = Topic::parse_for_client(unknown, Some(&ws)).unwrap_err();
            assert_eq!(e.code.as_str(), "NOT_FOUND", "{unknown}");
        }
        let foreign = Topic::parse_for_client("team:team_garbage", Some(&ws)).unwrap_err();
        assert_eq!(foreign.code.as_str(), "NOT_FOUND");
    }
}
