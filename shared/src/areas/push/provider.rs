//! What a push provider does for the outlet (`DevicePush`): give a device an address at
//! registration, send one payload to one device, forget a device. The rules around it
//! (which devices, foreground skip, removing what the provider says is gone) live once, in
//! `outlet.rs`; `SnsPush` and `LocalPushLog` only speak to their provider.

use super::PushMessage;
use super::devices::{DeviceRecord, Platform};
use crate::error::AppResult;

/// What the provider said about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// The provider knows the device is gone (APNs "Unregistered", FCM "UNREGISTERED", an
    /// SNS endpoint disabled): the device is removed.
    Gone,
    /// Anything else (throttled, a network error): counted and logged, the device stays.
    Failed(String),
}

#[async_trait::async_trait]
pub trait PushProvider: Send + Sync + 'static {
    /// The provider's address for `token` (an SNS platform endpoint ARN), stored on the
    /// device; `None` when the provider needs none. Called at registration, before the
    /// device is written, so it must be idempotent for one token.
    async fn endpoint(&self, platform: Platform, token: &str) -> AppResult<Option<String>>;

    /// Sends one notification to one device.
    async fn send(&self, device: &DeviceRecord, message: &PushMessage) -> Delivery;

    /// The device was deleted: release its address (best effort; failures are logged).
    async fn forget(&self, device: &DeviceRecord);
}

/// Push off (`MOMENTUM_PUSH=off`): devices are kept, nothing is sent.
pub struct NoProvider;

#[async_trait::async_trait]
impl PushProvider for NoProvider {
    async fn endpoint(&self, _platform: Platform, _token: &str) -> AppResult<Option<String>> {
        Ok(None)
    }

    async fn send(&self, _device: &DeviceRecord, _message: &PushMessage) -> Delivery {
        Delivery::Failed("push is off".into())
    }

    async fn forget(&self, _device: &DeviceRecord) {}
}
