//! Storage layout (docs/data-model.md, "Issues and cycles", has the full table):
//!
//! - The canonical record `WS#{ws}` / `ISSUE#{id}` (what `GET /issues/{id}` reads in the
//!   same batch as the caller's session and membership). Its `gsi1` serves team lists by
//!   creation (`…#TEAM#{team}#ISSUES#CREATED` / number), its `gsi2` workspace lists by
//!   creation (`…#ISSUES#CREATED` / creation key).
//! - Items that exist to find the issue another way ("index entries"), written in the same
//!   transaction as the canonical record so they never disagree with it:
//!   - the *assignee* entry `WS#{ws}#ISSUES#ASSIGNEE#{user|none}` / creation key, whose gsi1
//!     and gsi2 keys order the team's and the workspace's issues by update time;
//!   - the *project* entry `WS#{ws}#ISSUES#PROJECT#{project|none}` / creation key, whose
//!     gsi1 and gsi2 keys order by priority.
//!
//!   Every issue has both, so they are key-only (`entity = issue_ref`, `issue_id` and their
//!   keys, ~300 bytes instead of a ~1 KB copy, in the table and in both GSIs): a list
//!   through them reads the records with one BatchGet per page (`bulk::resolve`).
//!   - a *parent* copy `WS#{ws}#ISSUES#PARENT#{parent}` when the issue has a parent, and a
//!     *cycle* copy `WS#{ws}#ISSUES#CYCLE#{cycle}` when it is in a cycle: whole records,
//!     so sub-issues and a cycle's issues (and its stats) stay one Query; only issues with a
//!     parent or a cycle pay for them.
//!
//!   The main-table entries are strongly consistent lists of exactly one relation
//!   (sub-issues, a cycle's issues, an assignee's, a project's), ordered by creation.
//! - Activity: `WS#{ws}#ISSUE#{id}#ACTIVITY` / `{version:010}#{n:03}`, oldest first.
//! - Identifier lookup: `WS#{ws}` / `ISSUEKEY#{TEAMKEY}-{number}` -> issue id.
//!
//! The creation key is the hex of the UUIDv7 inside the issue id: the id's base64url text

use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::model::{Issue, SortBy};
use crate::kernel::ids;
use crate::kernel::keys;
use crate::kernel::record::to_item;
use crate::storage::{Index, Item, Key};

const IDENTIFIER: &str = "ISSUEKEY";

/// `entity` of a key-only index entry: it names an issue (`issue_id`) whose canonical item
/// holds the record.
pub(super) const ISSUE_REF: &str = "issue_ref";

/// The canonical key of the issue an index entry names (`None` for anything else: a
/// canonical item, or a whole copy).
pub(super) fn entry_target(item: &Item) -> Option<Key> {
    if item.get("entity").and_then(serde_json::Value::as_str) != Some(ISSUE_REF) {
        return None;
    }
    let id = item.get("issue_id")?.as_str()?;
    let ws = ids::workspace_of(ids::Kind::Issue, id).ok()?;
    Some(keys::issue(&ws, id))
}

/// The identifier lookup item (`ENG-42` -> issue id).
pub fn identifier_key(ws: &str, identifier: &str) -> Key {
    keys::scoped(ws, IDENTIFIER, identifier)
}

/// The identifier lookup item of a numbered issue.
pub(super) fn identifier_item(issue: &Issue) -> Item {
    let key = identifier_key(&issue.workspace_id, &issue.identifier);
    let mut lookup = Item::new();
    lookup.insert("issue_id".into(), json!(issue.id));
    lookup.insert("pk".into(), json!(key.pk));
    lookup.insert("sk".into(), json!(key.sk));
    lookup.insert("entity".into(), json!("issue_identifier"));
    lookup
}

pub fn activity_partition(ws: &str, issue_id: &str) -> String {
    format!("WS#{ws}#ISSUE#{issue_id}#ACTIVITY")
}

/// The issues assigned to a user (or to no one), main table, by creation.
pub fn assignee_partition(ws: &str, assignee: Option<&str>) -> String {
    format!("WS#{ws}#ISSUES#ASSIGNEE#{}", assignee.unwrap_or("none"))
}

/// The issues of a project (or of none), main table, by creation.
pub fn project_partition(ws: &str, project: Option<&str>) -> String {
    format!("WS#{ws}#ISSUES#PROJECT#{}", project.unwrap_or("none"))
}

pub(super) fn parent_partition(ws: &str, parent: &str) -> String {
    format!("WS#{ws}#ISSUES#PARENT#{parent}")
}

/// The issues of a cycle (main table, by creation).
pub fn cycle_partition(ws: &str, cycle: &str) -> String {
    format!("WS#{ws}#ISSUES#CYCLE#{cycle}")
}

pub(super) fn team_index_partition(ws: &str, team: &str, sort: SortBy) -> String {
    format!("WS#{ws}#TEAM#{team}#ISSUES#{}", sort.tag())
}

pub(super) fn workspace_index_partition(ws: &str, sort: SortBy) -> String {
    format!("WS#{ws}#ISSUES#{}", sort.tag())
}

/// Creation order of an issue (see `ids::creation_key`).
fn creation_key(id: &str) -> String {
    ids::creation_key(id)
}

/// A timestamp as sortable text (microseconds since the epoch, zero-padded).
fn time_key(rfc3339: &str) -> String {
    let micros = time::OffsetDateTime::parse(rfc3339, &Rfc3339)
        .map(|t| t.unix_timestamp_nanos() / 1000)
        .unwrap_or(0)
        .max(0);
    format!("{micros:017}")
}

/// Sort key of an issue in a team-scoped index (ties broken by number).
fn team_sort_key(issue: &Issue, sort: SortBy) -> String {
    match sort {
        SortBy::Created => format!("{:010}", issue.number),
        SortBy::Updated => format!("{}#{:010}", time_key(&issue.updated_at), issue.number),
        SortBy::Priority => format!("{}#{:010}", issue.priority.rank(), issue.number),
    }
}

/// Sort key of an issue in a workspace-scoped index or an in-memory sort (unique).
pub(super) fn workspace_sort_key(issue: &Issue, sort: SortBy) -> String {
    let ck = creation_key(&issue.id);
    match sort {
        SortBy::Created => ck,
        SortBy::Updated => format!("{}#{ck}", time_key(&issue.updated_at)),
        SortBy::Priority => format!("{}#{ck}", issue.priority.rank()),
    }
}

/// The canonical item and the index copies of an issue.
pub(super) fn index_items(issue: &Issue) -> Vec<Item> {
    let ws = issue.workspace_id.as_str();
    let team = issue.team_id.as_str();
    let ck = creation_key(&issue.id);
    let base = to_item(issue);
    let build = |key: Key, entity: &str, gsi: &[(Index, String, String)]| -> Item {
        let mut item = base.clone();
        item.insert("pk".into(), json!(key.pk));
        item.insert("sk".into(), json!(key.sk));
        item.insert("entity".into(), json!(entity));
        for (ix, pk, sk) in gsi {
            item.insert(ix.pk_attr().into(), json!(pk));
            item.insert(ix.sk_attr().into(), json!(sk));
        }
        item
    };
    let sorted = |sort: SortBy| {
        [
            (
                Index::Gsi1,
                team_index_partition(ws, team, sort),
                team_sort_key(issue, sort),
            ),
            (
                Index::Gsi2,
                workspace_index_partition(ws, sort),
                workspace_sort_key(issue, sort),
            ),
        ]
    };
    let copy = |pk: String, gsi: &[(Index, String, String)]| {
        build(Key::new(pk, ck.clone()), "issue_copy", gsi)
    };
    let entry = |pk: String, gsi: &[(Index, String, String)]| {
        let mut item = Item::new();
        item.insert("issue_id".into(), json!(issue.id));
        let key = Key::new(pk, ck.clone());
        item.insert("pk".into(), json!(key.pk));
        item.insert("sk".into(), json!(key.sk));
        item.insert("entity".into(), json!(ISSUE_REF));
        for (ix, pk, sk) in gsi {
            item.insert(ix.pk_attr().into(), json!(pk));
            item.insert(ix.sk_attr().into(), json!(sk));
        }
        item
    };
    let mut out = vec![
        build(
            keys::issue(ws, &issue.id),
            "issue",
            &sorted(SortBy::Created),
        ),
        entry(
            assignee_partition(ws, issue.assignee_id.as_deref()),
            &sorted(SortBy::Updated),
        ),
        entry(
            project_partition(ws, issue.project_id.as_deref()),
            &sorted(SortBy::Priority),
        ),
    ];
    if let Some(parent) = &issue.parent_id {
        out.push(copy(parent_partition(ws, parent), &[]));
    }
    if let Some(cycle) = &issue.cycle_id {
        out.push(copy(cycle_partition(ws, cycle), &[]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ids::Kind;

    #[test]
    fn creation_keys_sort_in_creation_order() {
        let ws = uuid::Uuid::new_v4().to_string();
        let mut ids = Vec::new();
        for _ in 0..200 {
            ids.push(ids::new_id(Kind::Issue, &ws));
        }
        let keys: Vec<String> = ids.iter().map(|i| creation_key(i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys[0].len(), 32);
    }

    fn issue(assignee: Option<&str>, parent: Option<&str>) -> Issue {
        let ws = uuid::Uuid::now_v7().to_string();
        Issue {
            id: ids::new_id(Kind::Issue, &ws),
            workspace_id: ws.clone(),
            team_id: ids::new_id(Kind::Team, &ws),
            workflow_id: ids::new_id(Kind::Workflow, &ws),
            number: 7,
            identifier: "ENG-7".into(),
            title: "A title".into(),
            description: Some("x".repeat(2000)),
            priority: super::super::model::Priority::High,
            state_id: ids::new_id(Kind::State, &ws),
            assignee_id: assignee.map(str::to_owned),
            label_ids: vec![],
            project_id: None,
            cycle_id: None,
            parent_id: parent.map(str::to_owned),
            created_by: "u".into(),
            version: 1,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-02T00:00:00Z".into(),
        }
    }

    /// The assignee and project entries every issue has hold its keys, not its record (a
    /// 2,000-character description is stored once), and lead back to the canonical item.
    #[test]
    fn assignee_and_project_entries_are_key_only() {
        let parent = issue(None, None);
        let i = issue(Some("user-1"), Some(&parent.id));
        let items = index_items(&i);
        assert_eq!(items.len(), 4, "canonical, assignee, project, parent");
        let canonical = Key::of(&items[0]).unwrap();
        assert_eq!(canonical, keys::issue(&i.workspace_id, &i.id));
        for entry in &items[1..3] {
            assert_eq!(entry_target(entry), Some(canonical.clone()));
            assert!(!entry.contains_key("description") && !entry.contains_key("title"));
            assert!(
                serde_json::to_string(entry).unwrap().len() < 500,
                "{entry:?}"
            );
            assert!(entry.contains_key("gsi1pk") && entry.contains_key("gsi2pk"));
        }
        // The parent copy stays a whole record: sub-issues are one Query.
        assert_eq!(items[3]["description"], json!(i.description));
        assert_eq!(entry_target(&items[3]), None);
        assert_eq!(entry_target(&items[0]), None);
    }

    #[test]
    fn time_keys_sort() {
        let a = time_key("2026-01-01T00:00:00Z");
        let b = time_key("2026-01-01T00:00:00.5Z");
        let c = time_key("2026-01-01T00:00:01Z");
        assert!(a < b && b < c);
    }
}
