//! Records to storage items and back.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{AppError, AppResult};
use crate::storage::{Item, Key};

/// Serialises a record into a storage item.
pub fn to_item<T: Serialize>(record: &T) -> Item {
    match serde_json::to_value(record) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("records serialise to JSON objects"),
    }
}

/// Reads a record back from a storage item.
pub fn from_item<T: DeserializeOwned>(item: Item) -> AppResult<T> {
    serde_json::from_value(Value::Object(item)).map_err(|e| {
        tracing::error!(error = %e, "stored item does not match its record type");
        AppError::internal("internal error")
    })
}

/// A storage item for a served record: its fields plus the key and an `entity` tag.
pub fn record_item<T: Serialize>(key: &Key, entity: &str, record: &T) -> Item {
    let mut item = to_item(record);
    item.insert("pk".into(), Value::String(key.pk.clone()));
    item.insert("sk".into(), Value::String(key.sk.clone()));
    item.insert("entity".into(), Value::String(entity.to_owned()));
    item
}
