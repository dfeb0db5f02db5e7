//! Limits and checks of what a request names (ids, labels, identifiers, categories).

use serde_json::json;

use crate::areas::workflows::StateCategory;
use crate::error::{AppError, AppResult};

pub const MAX_TITLE_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_LABELS: usize = 20;
/// How far up the parent chain a parent change looks for a cycle.
pub const MAX_PARENT_DEPTH: usize = 50;
/// Longest id accepted in a body or query (ids are ~48 characters).
pub const MAX_ID_CHARS: usize = 100;
pub const MAX_QUERY_CHARS: usize = 255;

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
