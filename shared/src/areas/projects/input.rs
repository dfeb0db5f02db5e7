//! Limits and checks of what a project or status request names, and the errors they answer.

use super::model::{Priority, Project, UpdateProject};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::context::required_text;
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::storage::{Item, Key};

pub use crate::kernel::limits::{
    MAX_POSITION, MAX_PROJECT_DESCRIPTION_CHARS, MAX_PROJECT_KEY_CHARS, MAX_PROJECT_NAME_CHARS,
    MAX_STATUS_NAME_CHARS,
};

/// 1–10 ASCII letters/digits, upper-cased.
pub fn validate_project_key(field: &str, raw: &str) -> AppResult<String> {
    let key = raw.trim();
    let ok = (1..=MAX_PROJECT_KEY_CHARS).contains(&key.len())
        && key.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(key.to_ascii_uppercase())
    } else {
        Err(AppError::validation(
            field,
            "must be 1-10 letters or digits",
        ))
    }
}

/// A calendar date `YYYY-MM-DD` (a real day: no February 30th).
pub fn validate_date(field: &str, raw: &str) -> AppResult<String> {
    let bad = || AppError::validation(field, "must be a date like 2026-03-31");
    let b = raw.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(bad());
    }
    let year: i32 = raw[0..4].parse().map_err(|_| bad())?;
    let month: u8 = raw[5..7].parse().map_err(|_| bad())?;
    let day: u8 = raw[8..10].parse().map_err(|_| bad())?;
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    Ok(raw.to_owned())
}

pub(super) fn validate_position(raw: i64) -> AppResult<i64> {
    if (0..=MAX_POSITION).contains(&raw) {
        Ok(raw)
    } else {
        Err(AppError::validation(
            "position",
            format!("must be between 0 and {MAX_POSITION}"),
        ))
    }
}

/// A user id the caller names (an owner): a UUID, else it names no member.
pub(super) fn validate_user_id(field: &str, raw: &str) -> AppResult<String> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| AppError::validation(field, "is not a member of the workspace"))
}

/// A status id the caller names: one of this workspace's, else 400.
pub(super) fn validate_status_id(field: &str, raw: &str, ws: &str) -> AppResult<String> {
    match ids::workspace_of(Kind::ProjectStatus, raw) {
        Ok(of) if of == ws => Ok(raw.to_owned()),
        _ => Err(not_a_status(field)),
    }
}

pub(super) fn not_a_status(field: &str) -> AppError {
    AppError::unknown_reference(field, "is not a project status of the workspace")
}

pub(super) fn not_a_member(field: &str) -> AppError {
    AppError::unknown_reference(field, "is not a member of the workspace")
}

pub(super) fn key_taken() -> AppError {
    AppError::validation(
        "project_key",
        "this project key is already used in the workspace",
    )
    .with_code(ErrorCode::Conflict)
}

/// A clearable field of an update, checked: absent stays absent, `null` stays `null`.
fn patch<T>(
    raw: &Option<Option<String>>,
    check: impl Fn(&str) -> AppResult<T>,
) -> AppResult<Option<Option<T>>> {
    raw.as_ref()
        .map(|v| v.as_deref().map(&check).transpose())
        .transpose()
}

/// The fields of a project update, checked (`None`: keep; `Some(None)`: clear).
pub(super) struct ProjectPatch {
    name: Option<String>,
    project_key: Option<String>,
    description: Option<Option<String>>,
    target_date: Option<Option<String>>,
    pub(super) owner_id: Option<Option<String>>,
    pub(super) status_id: Option<Option<String>>,
    priority: Option<Priority>,
}

impl ProjectPatch {
    /// Checks the fields in the order their errors are reported.
    pub(super) fn parse(req: &UpdateProject, ws: &str) -> AppResult<Self> {
        Ok(Self {
            name: req
                .name
                .as_deref()
                .map(|n| required_text("name", n, MAX_PROJECT_NAME_CHARS))
                .transpose()?,
            project_key: req
                .project_key
                .as_deref()
                .map(|k| validate_project_key("project_key", k))
                .transpose()?,
            description: req
                .description
                .as_ref()
                .map(|d| optional_text("description", d.as_deref(), MAX_PROJECT_DESCRIPTION_CHARS))
                .transpose()?,
            target_date: patch(&req.target_date, |d| validate_date("target_date", d))?,
            owner_id: patch(&req.owner_id, |o| validate_user_id("owner_id", o))?,
            status_id: patch(&req.status_id, |s| validate_status_id("status_id", s, ws))?,
            priority: req.priority,
        })
    }

    pub(super) fn apply(self, current: &Project) -> Project {
        let mut next = current.clone();
        if let Some(name) = self.name {
            next.name = name;
        }
        if let Some(key) = self.project_key {
            next.project_key = key;
        }
        if let Some(d) = self.description {
            next.description = d;
        }
        if let Some(d) = self.target_date {
            next.target_date = d;
        }
        if let Some(o) = self.owner_id {
            next.owner_id = o;
        }
        if let Some(s) = self.status_id {
            next.status_id = s;
        }
        if let Some(p) = self.priority {
            next.priority = p;
        }
        next
    }
}

/// The owner and status a create or update names, read in its authorization batch.
pub(super) struct Named {
    owner: Option<String>,
    status: Option<String>,
}

impl Named {
    /// The caller as owner needs no read: authorization reads their membership anyway.
    pub(super) fn new(caller: &str, owner: Option<String>, status: Option<String>) -> Self {
        Self {
            owner: owner.filter(|o| o != caller),
            status,
        }
    }

    pub(super) fn keys(&self, ws: &str) -> Vec<Key> {
        let mut out = Vec::new();
        if let Some(o) = &self.owner {
            out.push(keys::member(ws, o));
        }
        if let Some(s) = &self.status {
            out.push(keys::project_status(ws, s));
        }
        out
    }

    /// Checks what was read for `keys` (in their order); returns the status's item.
    pub(super) fn check(&self, got: Vec<Option<Item>>) -> AppResult<Option<Item>> {
        let mut got = got.into_iter();
        if self.owner.is_some() && got.next().flatten().is_none() {
            return Err(not_a_member("owner_id"));
        }
        match self.status {
            Some(_) => got
                .next()
                .flatten()
                .map(Some)
                .ok_or_else(|| not_a_status("status_id")),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(validate_date("d", "2024-02-29").is_ok());
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "+202-01-01",
            "2026-01-01T00:00:00Z",
            "",
        ] {
            assert!(validate_date("d", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_keys() {
        assert_eq!(validate_project_key("k", " ab1 ").unwrap(), "AB1");
        for bad in ["", "ABCDEFGHIJK", "A-B", "ÄB", "A B"] {
            assert!(validate_project_key("k", bad).is_err(), "{bad}");
        }
    }
}
