//! What every domain service is built from, and small rules they share.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::{AppError, AppResult};
use crate::kernel::access::Access;
use crate::kernel::changes::ChangeLog;
use crate::kernel::record::{from_item, record_item};
use crate::storage::{Condition, Item, Key, Store, Table, WriteOp};

#[derive(Clone)]
pub struct ServiceContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub access: Access,
    pub changes: ChangeLog,
}

impl ServiceContext {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            access: Access::new(store.clone(), clock.clone()),
            changes: ChangeLog::new(store.clone(), clock.clone()),
            store,
            clock,
        }
    }

    pub fn now(&self) -> String {
        self.clock.rfc3339()
    }
}

/// Reads a record from an optional item, or the given "not found".
pub fn found<T: DeserializeOwned>(item: Option<Item>, what: &str) -> AppResult<T> {
    item.map(from_item)
        .transpose()?
        .ok_or_else(|| AppError::not_found(what))
}

/// A put of a new record (fails if the key exists).
pub fn put_new<T: Serialize>(key: &Key, entity: &str, record: &T) -> WriteOp {
    WriteOp::put_new(Table::Main, record_item(key, entity, record))
}

/// A put replacing a record only if its stored `version` is `version`.
pub fn put_versioned<T: Serialize>(key: &Key, entity: &str, record: &T, version: i64) -> WriteOp {
    WriteOp::Put {
        table: Table::Main,
        item: record_item(key, entity, record),
        condition: Some(Condition::VersionEquals(version)),
    }
}

/// A delete that requires the item to exist.
pub fn delete_existing(key: Key) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition: Some(Condition::Exists),
    }
}

/// A delete that does not care whether the item is there: for items only their owner's
/// record reaches (markers, memberships, states), already checked through that record.
pub fn delete_any(key: Key) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition: None,
    }
}

/// A check that the item exists (a record the write refers to, not deleted meanwhile).
pub fn exists_check(key: Key) -> WriteOp {
    WriteOp::ConditionCheck {
        table: Table::Main,
        key,
        condition: Condition::Exists,
    }
}

/// A put of a uniqueness marker (fails if the value is taken).
pub fn claim(key: Key, owner_id: &str) -> WriteOp {
    let mut item = Item::new();
    item.insert("pk".into(), key.pk.into());
    item.insert("sk".into(), key.sk.into());
    item.insert("entity".into(), "marker".into());
    item.insert("owner_id".into(), owner_id.into());
    WriteOp::put_new(Table::Main, item)
}

/// Required text: trimmed, 1..=max characters, no control characters.
pub fn required_text(field: &str, raw: &str, max: usize) -> AppResult<String> {
    match crate::kernel::input::text::optional_text(field, Some(raw), max)? {
        Some(text) => Ok(text),
        None => Err(AppError::validation(field, "is required")),
    }
}

/// `#RRGGBB` colors (stored upper-case).
pub fn color(field: &str, raw: &str) -> AppResult<String> {
    let ok =
        raw.len() == 7 && raw.starts_with('#') && raw[1..].chars().all(|c| c.is_ascii_hexdigit());
    if ok {
        Ok(raw.to_ascii_uppercase())
    } else {
        Err(AppError::validation(field, "must be a color like #A1B2C3"))
    }
}

/// Checks a client-supplied expected version against the stored one (412 on mismatch).
pub fn check_version(expected: Option<i64>, actual: i64) -> AppResult<()> {
    match expected {
        Some(v) if v != actual => Err(AppError::new(
            crate::error::ErrorCode::PreconditionFailed,
            format!("version mismatch: expected {v}, current is {actual}"),
        )),
        _ => Ok(()),
    }
}

/// The 412 a versioned write reports when it lost a race.
pub fn version_conflict() -> AppError {
    AppError::new(
        crate::error::ErrorCode::PreconditionFailed,
        "the resource was modified concurrently; reload and retry",
    )
}

/// How many times a write that stated no version reads, plans and commits before giving up.
/// It only loses to a write of the same record that committed in between, so k writers of one
/// record need at most k - 1 retries: 16 attempts absorb bursts far beyond what one record
/// sees, and past that the client is told to come back (503 + `Retry-After`) rather than
/// being held. With the backoff below the sleeps add up to well under a second.
pub const UNVERSIONED_ATTEMPTS: u32 = 16;

/// Runs a read-modify-write (`attempt`: read the record, plan, commit). A caller that stated
/// a version (`expected`) asked for optimistic concurrency, so a lost race is its 412. A
/// caller that stated none never entered a race: a lost one (a 412 from a version condition)
/// is retried on the latest version, with jittered backoff, and only after
/// `UNVERSIONED_ATTEMPTS` answered 503. `attempt` must re-read everything it plans from.
pub async fn retry_unversioned<T, F, Fut>(expected: Option<i64>, mut attempt: F) -> AppResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = AppResult<T>>,
{
    if expected.is_some() {
        return attempt().await;
    }
    for n in 0..UNVERSIONED_ATTEMPTS {
        match attempt().await {
            Err(e) if e.code == crate::error::ErrorCode::PreconditionFailed => {
                if n + 1 < UNVERSIONED_ATTEMPTS {
                    // Full jitter, so the writers that lost one round do not collide again.
                    let cap_ms = 4u64 << n.min(4);
                    let ms = 1 + rand::random::<u64>() % cap_ms;
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
            }
            other => return other,
        }
    }
    Err(AppError::unavailable(
        "the record is being changed by many writers at once; retry",
    ))
}

/// For `Option<Option<T>>` fields: an explicit `null` is `Some(None)` (clear), an absent
/// field `None` (keep). Use with `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The expected version of a write: the body's `version` and the `If-Match` header must
/// agree when both are given.
pub fn expected_version(body: Option<i64>, if_match: Option<i64>) -> AppResult<Option<i64>> {
    match (body, if_match) {
        // Two preconditions that cannot both hold: the write is refused as a failed one.
        (Some(a), Some(b)) if a != b => Err(AppError {
            field: Some("version".into()),
            ..AppError::new(
                crate::error::ErrorCode::PreconditionFailed,
                "differs from the If-Match header",
            )
        }),
        (a, b) => Ok(a.or(b)),
    }
}

/// Parses an `If-Match` header value: a version number, optionally quoted (`"3"`, `W/"3"`);
/// `*` means any version.
pub fn parse_if_match(raw: Option<&str>) -> AppResult<Option<i64>> {
    let Some(raw) = raw.map(|r| r.trim_matches([' ', '\t'])) else {
        return Ok(None);
    };
    if raw == "*" {
        return Ok(None);
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    tag.parse::<i64>()
        .map(Some)
        .map_err(|_| AppError::validation("If-Match", "must be the record's version, e.g. \"3\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// An attempt that loses the race `losses` times, then succeeds; counts its runs.
    async fn run(expected: Option<i64>, losses: u32) -> (AppResult<u32>, u32) {
        let runs = AtomicU32::new(0);
        let result = retry_unversioned(expected, || async {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            if n < losses {
                Err(version_conflict())
            } else {
                Ok(n)
            }
        })
        .await;
        (result, runs.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_stated_version_is_tried_once() {
        let (result, runs) = run(Some(3), 1).await;
        assert_eq!(result.unwrap_err().code, ErrorCode::PreconditionFailed);
        assert_eq!(runs, 1);
    }

    #[tokio::test]
    async fn no_version_retries_until_it_applies() {
        let (result, runs) = run(None, 9).await;
        assert_eq!(result.unwrap(), 9);
        assert_eq!(runs, 10);
    }

    #[tokio::test]
    async fn no_version_gives_up_with_503_and_retry_after() {
        let (result, runs) = run(None, u32::MAX).await;
        let e = result.unwrap_err();
        assert_eq!(e.code, ErrorCode::ServiceUnavailable);
        assert!(e.retry_after.is_some());
        assert_eq!(runs, UNVERSIONED_ATTEMPTS);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let runs = AtomicU32::new(0);
        let result: AppResult<()> = retry_unversioned(None, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(AppError::conflict("a name is taken"))
        })
        .await;
        assert_eq!(result.unwrap_err().code, ErrorCode::Conflict);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
