//! Change record -> notifications: who is told what, and who gets subscribed. Pure: the
//! dispatcher gathers the facts a record needs (`Needs`) and applies the `Outcome`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::model::{NotificationType, SubscriptionReason};
use crate::kernel::access::EntityType;
use crate::kernel::changes::{ChangeKind, ChangeRecord};

/// What the dispatcher must read before `outcome` can decide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The activity entries of this issue version (for `issue.updated`).
    pub activity: bool,
    /// The issue's subscribers.
    pub subscribers: bool,
    /// `@username` tokens to resolve against the workspace's members.
    pub mention_tokens: Vec<String>,
    /// The invited email, to find its account.
    pub invitee_email: Option<String>,
}

/// One changed field of the issue version a record is about.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// What the dispatcher read.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub activity: Vec<FieldChange>,
    /// Users subscribed (explicitly unsubscribed ones left out).
    pub subscribers: Vec<String>,
    /// The resolved `@username` mentions (user ids).
    pub mentioned: Vec<String>,
    /// The invited email's account, when it has one.
    pub invitee: Option<String>,
}

/// What a record causes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Recipient -> reasons (each once, in the order found). Never the actor.
    pub notify: BTreeMap<String, Vec<NotificationType>>,
    /// Automatic subscriptions to the record's issue (put only where none exists).
    pub subscribe: Vec<(String, SubscriptionReason)>,
}

impl Outcome {
    fn tell(&mut self, actor: &str, user: &str, kind: NotificationType) {
        if user == actor || user.is_empty() {
            return;
        }
        let reasons = self.notify.entry(user.to_owned()).or_default();
        if !reasons.contains(&kind) {
            reasons.push(kind);
        }
    }

    fn subscribe(&mut self, user: &str, reason: SubscriptionReason) {
        if !user.is_empty() && !self.subscribe.iter().any(|(u, _)| u == user) {
            self.subscribe.push((user.to_owned(), reason));
        }
    }
}

fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// What `record` needs read.
pub fn needs(record: &ChangeRecord) -> Needs {
    let d = &record.data;
    match (record.entity_type, record.kind) {
        (EntityType::Issue, ChangeKind::Created) => Needs {
            mention_tokens: crate::areas::comments::mention_tokens(
                text(d, "description").unwrap_or(""),
            ),
            ..Needs::default()
        },
        (EntityType::Issue, ChangeKind::Updated) => Needs {
            activity: true,
            subscribers: true,
            ..Needs::default()
        },
        (EntityType::Comment, ChangeKind::Created) => Needs {
            subscribers: true,
            ..Needs::default()
        },
        (EntityType::Invitation, ChangeKind::Created) => Needs {
            invitee_email: text(d, "email").map(str::to_owned),
            ..Needs::default()
        },
        _ => Needs::default(),
    }
}

/// The `@username` tokens newly in an issue's description in this version (needs the
/// activity first).
pub fn new_description_mentions(activity: &[FieldChange]) -> Vec<String> {
    let Some(change) = activity.iter().find(|c| c.field == "description") else {
        return Vec::new();
    };
    let before = crate::areas::comments::mention_tokens(change.from.as_str().unwrap_or(""));
    crate::areas::comments::mention_tokens(change.to.as_str().unwrap_or(""))
        .into_iter()
        .filter(|t| !before.iter().any(|b| b.eq_ignore_ascii_case(t)))
        .collect()
}

/// The rules (docs/notifications.md, "Types").
pub fn outcome(record: &ChangeRecord, facts: &Facts) -> Outcome {
    let actor = record.actor_id.as_str();
    let d = &record.data;
    let mut out = Outcome::default();
    match (record.entity_type, record.kind) {
        (EntityType::Issue, ChangeKind::Created) => {
            if let Some(creator) = text(d, "created_by") {
                out.subscribe(creator, SubscriptionReason::Creator);
            }
            if let Some(assignee) = text(d, "assignee_id") {
                out.tell(actor, assignee, NotificationType::Assigned);
                out.subscribe(assignee, SubscriptionReason::Assignee);
            }
            for user in &facts.mentioned {
                out.tell(actor, user, NotificationType::Mentioned);
                out.subscribe(user, SubscriptionReason::Mentioned);
            }
        }
        (EntityType::Issue, ChangeKind::Updated) => {
            for change in &facts.activity {
                match change.field.as_str() {
                    "assignee_id" => {
                        if let Some(old) = change.from.as_str() {
                            out.tell(actor, old, NotificationType::Unassigned);
                        }
                        if let Some(new) = change.to.as_str() {
                            out.tell(actor, new, NotificationType::Assigned);
                            out.subscribe(new, SubscriptionReason::Assignee);
                        }
                    }
                    "state_id" => {
                        for user in &facts.subscribers {
                            out.tell(actor, user, NotificationType::StateChanged);
                        }
                    }
                    "priority" => {
                        for user in &facts.subscribers {
                            out.tell(actor, user, NotificationType::PriorityChanged);
                        }
                    }
                    _ => {}
                }
            }
            for user in &facts.mentioned {
                out.tell(actor, user, NotificationType::Mentioned);
                out.subscribe(user, SubscriptionReason::Mentioned);
            }
        }
        (EntityType::Comment, ChangeKind::Created) => {
            let mentions: Vec<&str> = d
                .get("mentions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for user in &mentions {
                out.tell(actor, user, NotificationType::Mentioned);
            }
            for user in &facts.subscribers {
                out.tell(actor, user, NotificationType::Comment);
            }
            if let Some(author) = text(d, "author_id") {
                out.subscribe(author, SubscriptionReason::Commenter);
            }
            for user in mentions {
                out.subscribe(user, SubscriptionReason::Mentioned);
            }
        }
        // An edit tells only whom it newly mentions (`previous_mentions`, carried by the
        // record); everyone else heard of the comment when it was made.
        (EntityType::Comment, ChangeKind::Updated) => {
            let list = |field: &str| -> Vec<&str> {
                d.get(field)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default()
            };
            let before = list("previous_mentions");
            for user in list("mentions") {
                if !before.contains(&user) {
                    out.tell(actor, user, NotificationType::Mentioned);
                    out.subscribe(user, SubscriptionReason::Mentioned);
                }
            }
        }
        (EntityType::Invitation, ChangeKind::Created) => {
            if let Some(invitee) = &facts.invitee {
                out.tell(actor, invitee, NotificationType::Invited);
            }
        }
        (EntityType::TeamMember, ChangeKind::Created) => {
            if let Some(user) = text(d, "user_id") {
                out.tell(actor, user, NotificationType::TeamAdded);
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(entity_type: EntityType, kind: ChangeKind, actor: &str, data: Value) -> ChangeRecord {
        ChangeRecord {
            seq: 1,
            workspace_id: "w".into(),
            event: format!("{entity_type}.x"),
            entity_type,
            entity_id: "e".into(),
            kind,
            actor_id: actor.into(),
            at: "2026-01-01T00:00:00Z".into(),
            topics: vec![],
            data,
            audience: None,
        }
    }

    fn change(field: &str, from: Value, to: Value) -> FieldChange {
        FieldChange {
            field: field.into(),
            from,
            to,
        }
    }

    #[test]
    fn assignment_tells_the_new_and_the_old_assignee_never_the_actor() {
        let r = record(EntityType::Issue, ChangeKind::Updated, "a", json!({}));
        let facts = Facts {
            activity: vec![change("assignee_id", json!("old"), json!("new"))],
            ..Facts::default()
        };
        let out = outcome(&r, &facts);
        assert_eq!(out.notify["new"], vec![NotificationType::Assigned]);
        assert_eq!(out.notify["old"], vec![NotificationType::Unassigned]);
        let self_assigned = Facts {
            activity: vec![change("assignee_id", Value::Null, json!("a"))],
            ..Facts::default()
        };
        assert!(outcome(&r, &self_assigned).notify.is_empty());
    }

    #[test]
    fn state_and_priority_reach_subscribers_once_each_reason() {
        let r = record(EntityType::Issue, ChangeKind::Updated, "a", json!({}));
        let facts = Facts {
            activity: vec![
                change("state_id", json!("s1"), json!("s2")),
                change("priority", json!("low"), json!("high")),
            ],
            subscribers: vec!["a".into(), "b".into()],
            ..Facts::default()
        };
        let out = outcome(&r, &facts);
        assert_eq!(out.notify.len(), 1);
        assert_eq!(
            out.notify["b"],
            vec![
                NotificationType::StateChanged,
                NotificationType::PriorityChanged
            ]
        );
    }

    #[test]
    fn a_comment_edit_tells_only_the_newly_mentioned() {
        let r = record(
            EntityType::Comment,
            ChangeKind::Updated,
            "a",
            json!({"author_id": "a", "mentions": ["m", "n", "a"], "previous_mentions": ["m"]}),
        );
        let facts = Facts {
            subscribers: vec!["s".into(), "m".into()],
            ..Facts::default()
        };
        let out = outcome(&r, &facts);
        assert_eq!(out.notify.len(), 1, "{:?}", out.notify);
        assert_eq!(out.notify["n"], vec![NotificationType::Mentioned]);
        assert!(
            out.subscribe
                .contains(&("n".into(), SubscriptionReason::Mentioned))
        );
    }

    #[test]
    fn comments_tell_mentioned_and_subscribers_and_subscribe_the_author() {
        let r = record(
            EntityType::Comment,
            ChangeKind::Created,
            "a",
            json!({"author_id": "a", "mentions": ["m"]}),
        );
        let facts = Facts {
            subscribers: vec!["s".into(), "m".into()],
            ..Facts::default()
        };
        let out = outcome(&r, &facts);
        assert_eq!(
            out.notify["m"],
            vec![NotificationType::Mentioned, NotificationType::Comment]
        );
        assert_eq!(out.notify["s"], vec![NotificationType::Comment]);
        assert!(
            out.subscribe
                .contains(&("a".into(), SubscriptionReason::Commenter))
        );
    }

    #[test]
    fn only_new_description_mentions_count() {
        let a = vec![change(
            "description",
            json!("hi @ana"),
            json!("hi @ana and @bo"),
        )];
        assert_eq!(new_description_mentions(&a), vec!["bo".to_owned()]);
    }
}
