//! Limits and checks of what a project or status request names, and the errors they answer.

use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::ids::{self, Kind};

pub const MAX_PROJECT_NAME_CHARS: usize = 100;
pub const MAX_PROJECT_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_PROJECT_KEY_CHARS: usize = 10;
pub const MAX_STATUS_NAME_CHARS: usize = 50;
pub const MAX_POSITION: i64 = 1_000_000;

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
