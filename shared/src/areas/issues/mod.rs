//! Issues: per-team numbering and identifiers (`ENG-42`), partial updates with optimistic
//! concurrency, an activity history, workflow transitions, sub-issues, and lists with
//! filters, sorts and cursor pagination.
//!
//! `layout` describes how an issue is stored; `list` how lists find it again.

mod bulk;
mod input;
mod layout;
mod list;
mod model;
mod plan;
pub mod references;
mod service;
mod slots;
mod workflow;

pub use bulk::{relation_issues, rewrite_issues, rewrite_issues_guarded, workspace_issues};
pub use input::{
    MAX_DESCRIPTION_CHARS, MAX_ID_CHARS, MAX_LABELS, MAX_PARENT_DEPTH, MAX_QUERY_CHARS,
    MAX_TITLE_CHARS,
};
pub use layout::{
    activity_partition, assignee_partition, cycle_partition, identifier_key, project_partition,
};
pub use model::{
    Activity, CreateIssue, Issue, ListIssuesParams, Priority, SortBy, TransitionIssue, Transitions,
    UpdateIssue,
};
pub use service::IssueService;
pub use workflow::{allowed_targets, workflow_states};
