//! Limits and checks of what a request names (ids, labels, identifiers, categories).

use serde_json::json;

use super::model::{Issue, Priority, UpdateIssue};
use super::slots::RefRequest;
use crate::areas::workflows::StateCategory;
use crate::error::{AppError, AppResult};
use crate::kernel::context::required_text;
use crate::kernel::input::text::optional_text;

pub use crate::kernel::limits::{
    MAX_ID_CHARS, MAX_ISSUE_DESCRIPTION_CHARS as MAX_DESCRIPTION_CHARS,
    MAX_ISSUE_LABELS as MAX_LABELS, MAX_PARENT_DEPTH, MAX_QUERY_CHARS, MAX_TITLE_CHARS,
};

/// An id from a body or query: non-empty, bounded, printable (it becomes part of a key).
pub(super) fn id_input(field: &str, raw: &str) -> AppResult<String> {
    let id = raw.trim();
    if id.is_empty() || id.len() > MAX_ID_CHARS || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AppError::validation(field, "is not a valid id"));
    }
    Ok(id.to_owned())
}

pub(super) fn opt_id_input(field: &str, raw: Option<&str>) -> AppResult<Option<String>> {
    raw.map(|r| id_input(field, r)).transpose()
}

pub(super) fn label_input(raw: &[String]) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for id in raw {
        let id = id_input("label_ids", id)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.len() > MAX_LABELS {
        return Err(AppError::validation(
            "label_ids",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    Ok(out)
}

/// `ENG-42` (any case) -> `ENG-42`; anything else is not an identifier.
pub(super) fn parse_identifier(raw: &str) -> Option<String> {
    let (key, num) = raw.rsplit_once('-')?;
    let key_ok =
        !key.is_empty() && key.len() <= 20 && key.chars().all(|c| c.is_ascii_alphanumeric());
    let num_ok = !num.is_empty() && num.len() <= 12 && num.chars().all(|c| c.is_ascii_digit());
    if !key_ok || !num_ok {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(format!("{}-{n}", key.to_ascii_uppercase()))
}

pub(super) fn parse_category(raw: &str) -> AppResult<StateCategory> {
    serde_json::from_value(json!(raw)).map_err(|_| {
        AppError::validation(
            "state_category",
            "must be one of triage, backlog, unstarted, started, completed, canceled",
        )
    })
}

/// A clearable id of an update, checked: absent stays absent, `null` stays `null`.
fn patch_id(field: &str, raw: &Option<Option<String>>) -> AppResult<Option<Option<String>>> {
    raw.as_ref()
        .map(|v| opt_id_input(field, v.as_deref()))
        .transpose()
}

/// The fields of an issue update, checked (`None`: keep; `Some(None)`: clear).
pub(super) struct IssuePatch {
    title: Option<String>,
    description: Option<Option<String>>,
    priority: Option<Option<Priority>>,
    state_id: Option<String>,
    assignee: Option<Option<String>>,
    labels: Option<Vec<String>>,
    project: Option<Option<String>>,
    cycle: Option<Option<String>>,
    parent: Option<Option<String>>,
}

impl IssuePatch {
    /// Checks the fields (no storage needed) in the order their errors are reported.
    pub(super) fn parse(req: &UpdateIssue) -> AppResult<Self> {
        let title = match &req.title {
            None => None,
            Some(None) => return Err(AppError::validation("title", "cannot be null")),
            Some(Some(t)) => Some(required_text("title", t, MAX_TITLE_CHARS)?),
        };
        let description = req
            .description
            .as_ref()
            .map(|d| optional_text("description", d.as_deref(), MAX_DESCRIPTION_CHARS))
            .transpose()?;
        let state_id = match &req.state_id {
            None => None,
            Some(None) => return Err(AppError::validation("state_id", "cannot be null")),
            Some(Some(s)) => Some(id_input("state_id", s)?),
        };
        Ok(Self {
            title,
            description,
            priority: req.priority,
            state_id,
            assignee: patch_id("assignee_id", &req.assignee_id)?,
            labels: req
                .label_ids
                .as_ref()
                .map(|l| label_input(l.as_deref().unwrap_or_default()))
                .transpose()?,
            project: patch_id("project_id", &req.project_id)?,
            cycle: patch_id("cycle_id", &req.cycle_id)?,
            parent: patch_id("parent_id", &req.parent_id)?,
        })
    }

    /// The references to read with the issue: only what the update sets.
    pub(super) fn refs(&self) -> RefRequest {
        RefRequest {
            assignee: self.assignee.clone().flatten(),
            labels: self.labels.clone().unwrap_or_default(),
            project: self.project.clone().flatten(),
            cycle: self.cycle.clone().flatten(),
            parent: self.parent.clone().flatten(),
        }
    }

    pub(super) fn apply(self, current: &Issue) -> Issue {
        let mut next = current.clone();
        if let Some(t) = self.title {
            next.title = t;
        }
        if let Some(d) = self.description {
            next.description = d;
        }
        if let Some(p) = self.priority {
            next.priority = p.unwrap_or_default();
        }
        if let Some(a) = self.assignee {
            next.assignee_id = a;
        }
        if let Some(l) = self.labels {
            next.label_ids = l;
        }
        if let Some(p) = self.project {
            next.project_id = p;
        }
        if let Some(c) = self.cycle {
            next.cycle_id = c;
        }
        if let Some(p) = self.parent {
            next.parent_id = p;
        }
        if let Some(s) = self.state_id {
            next.state_id = s;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(parse_identifier("eng-042").as_deref(), Some("ENG-42"));
        assert_eq!(parse_identifier("iss_abc"), None);
        assert_eq!(parse_identifier("ENG-"), None);
        assert_eq!(parse_identifier("-4"), None);
    }
}
