//! Opaque pagination cursors shared by both adapters: the key attributes of the last item of
//! a page, base64url-encoded. A cursor is bound to the partition it was issued for, so one
//! cannot be replayed against another partition (another workspace's data).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{Index, Item, StoreError, StoreResult, schema};

/// The position after which the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub pk: String,
    pub sk: String,
    /// Index partition and sort key, for index queries.
    pub index_key: Option<(String, String)>,
}

fn str_attr(item: &Item, name: &str) -> StoreResult<String> {
    item.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Internal(format!("item without string {name}")))
}

impl Position {
    pub fn of(item: &Item, index: Option<Index>) -> StoreResult<Self> {
        let index_key = match index {
            Some(ix) => Some((str_attr(item, ix.pk_attr())?, str_attr(item, ix.sk_attr())?)),
            None => None,
        };
        Ok(Self {
            pk: str_attr(item, schema::PK)?,
            sk: str_attr(item, schema::SK)?,
            index_key,
        })
    }

    pub fn encode(&self) -> String {
        let parts: Vec<&str> = match &self.index_key {
            Some((ipk, isk)) => vec![&self.pk, &self.sk, ipk, isk],
            None => vec![&self.pk, &self.sk],
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&parts).expect("strings serialize"))
    }

    /// Decodes a cursor for a query on `query_pk` (of the table or of `index`). Anything this
    /// store did not issue for that partition is `InvalidCursor`.
    pub fn decode(cursor: &str, index: Option<Index>, query_pk: &str) -> StoreResult<Self> {
        if cursor.is_empty() || cursor.len() > 4096 {
            return Err(StoreError::InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| StoreError::InvalidCursor)?;
        let parts: Vec<String> =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
        let position = match (index, parts.as_slice()) {
            (None, [pk, sk]) => Self {
                pk: pk.clone(),
                sk: sk.clone(),
                index_key: None,
            },
            (Some(_), [pk, sk, ipk, isk]) => Self {
                pk: pk.clone(),
                sk: sk.clone(),
                index_key: Some((ipk.clone(), isk.clone())),
            },
            _ => return Err(StoreError::InvalidCursor),
        };
        let partition = match &position.index_key {
            Some((ipk, _)) => ipk,
            None => &position.pk,
        };
        if partition != query_pk {
            return Err(StoreError::InvalidCursor);
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_to_partition() {
        let p = Position {
            pk: "A".into(),
            sk: "1".into(),
            index_key: Some(("G".into(), "x".into())),
        };
        let c = p.encode();
        assert_eq!(Position::decode(&c, Some(Index::Gsi1), "G").unwrap(), p);
        assert!(Position::decode(&c, Some(Index::Gsi1), "OTHER").is_err());
        assert!(Position::decode(&c, None, "A").is_err());
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for c in ["", "!!!", "e30", "WyJhIl0", &"A".repeat(5000)] {
            assert!(matches!(
                Position::decode(c, None, "A"),
                Err(StoreError::InvalidCursor)
            ));
        }
    }

    proptest::proptest! {
        /// Whatever a client sends as a cursor, decoding answers `InvalidCursor` or a
        /// position in the asked partition; it never panics.
        #[test]
        fn arbitrary_strings_decode_to_err_or_a_valid_position(
            cursor in proptest::prelude::any::<String>(),
            indexed in proptest::prelude::any::<bool>(),
        ) {
            let index = indexed.then_some(Index::Gsi1);
            if let Ok(p) = Position::decode(&cursor, index, "A") {
                let partition = p.index_key.as_ref().map_or(&p.pk, |(ipk, _)| ipk);
                proptest::prop_assert_eq!(partition.as_str(), "A");
                proptest::prop_assert_eq!(p.index_key.is_some(), indexed);
            }
        }

        /// Base64 of arbitrary JSON-ish text (past the first decoding step) is refused or
        /// valid, never a panic.
        #[test]
        fn arbitrary_payloads_never_panic(
            payload in "\\[(\"[A-Za-z0-9#]{0,8}\",?){0,5}\\]|.{0,64}",
        ) {
            let cursor = URL_SAFE_NO_PAD.encode(payload.as_bytes());
            let _ = Position::decode(&cursor, None, "A");
            let _ = Position::decode(&cursor, Some(Index::Gsi1), "A");
        }

        /// Every position round-trips through its cursor.
        #[test]
        fn encode_decode_round_trip(
            pk in ".{0,40}",
            sk in ".{0,40}",
            index_key in proptest::option::of((".{0,40}", ".{0,40}")),
        ) {
            let p = Position { pk, sk, index_key };
            let (index, partition) = match &p.index_key {
                Some((ipk, _)) => (Some(Index::Gsi1), ipk.clone()),
                None => (None, p.pk.clone()),
            };
            let cursor = p.encode();
            if cursor.len() <= 4096 {
                proptest::prop_assert_eq!(Position::decode(&cursor, index, &partition).ok(), Some(p));
            }
        }
    }
}
