//! `MOMENTUM_PUSH=log` (the local default): nothing leaves the machine; each push that would
//! be sent is recorded, per device, in memory (the last `LOCAL_PUSH_LOG_SIZE`). The shim
//! serves a user's records at `GET /dev/push-log`; tests read them there.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::PushMessage;
use super::devices::{DeviceRecord, Platform};
use super::payload::{apns_payload, fcm_payload};
use super::provider::{Delivery, PushProvider};
use crate::error::AppResult;

/// Records kept (the oldest go first).
pub const LOCAL_PUSH_LOG_SIZE: usize = 1000;

/// One push that would have been sent to one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PushRecord {
    pub device_id: String,
    pub user_id: String,
    pub platform: Platform,
    pub notification_id: String,
    /// The provider payload exactly as it would be sent (APNs or FCM JSON).
    #[schema(value_type = Object)]
    pub payload: Value,
}

#[derive(Default)]
pub struct LocalPushLog {
    records: Mutex<VecDeque<PushRecord>>,
}

impl LocalPushLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// The records of `user_id`'s devices, oldest first.
    pub fn of_user(&self, user_id: &str) -> Vec<PushRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.user_id == user_id)
            .cloned()
            .collect()
    }
}

#[async_trait::async_trait]
impl PushProvider for LocalPushLog {
    async fn endpoint(&self, _platform: Platform, _token: &str) -> AppResult<Option<String>> {
        Ok(None)
    }

    async fn send(&self, device: &DeviceRecord, message: &PushMessage) -> Delivery {
        let payload = match device.platform {
            Platform::Apns => apns_payload(message),
            Platform::Fcm => fcm_payload(message),
        };
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() == LOCAL_PUSH_LOG_SIZE {
            records.pop_front();
        }
        records.push_back(PushRecord {
            device_id: device.id.clone(),
            user_id: device.user_id.clone(),
            platform: device.platform,
            notification_id: message.notification_id.clone(),
            payload,
        });
        Delivery::Accepted
    }

    async fn forget(&self, _device: &DeviceRecord) {}
}
