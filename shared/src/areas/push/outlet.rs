//! The outlet when push is on (`MOMENTUM_PUSH=log|sns`): the one place that decides where a
//! `PushMessage` goes. A user with a live foreground socket is skipped (it already showed
//! the notification); otherwise every device of the user gets the provider's payload, and a
//! device the provider says is gone is deleted (`PushOutcome::removed`).

use std::sync::Arc;

use super::devices::DeviceService;
use super::provider::Delivery;
use super::{PushMessage, PushOutcome, PushOutlet};
use crate::error::AppResult;

/// Whether a user has a live connection that said it is in the foreground (implemented by
/// the realtime connection registry, which areas do not import).
#[async_trait::async_trait]
pub trait ForegroundProbe: Send + Sync + 'static {
    async fn in_foreground(&self, user_id: &str) -> AppResult<bool>;
}

pub struct DevicePush {
    devices: Arc<DeviceService>,
    foreground: Option<Arc<dyn ForegroundProbe>>,
}

impl DevicePush {
    pub fn new(devices: Arc<DeviceService>, foreground: Option<Arc<dyn ForegroundProbe>>) -> Self {
        Self {
            devices,
            foreground,
        }
    }
}

#[async_trait::async_trait]
impl PushOutlet for DevicePush {
    async fn push(&self, message: PushMessage) -> AppResult<PushOutcome> {
        let mut outcome = PushOutcome::default();
        if let Some(probe) = &self.foreground
            && probe.in_foreground(&message.user_id).await?
        {
            outcome.skipped_foreground = true;
            return Ok(outcome);
        }
        let provider = self.devices.provider().clone();
        for device in self.devices.of_user(&message.user_id).await? {
            match provider.send(&device, &message).await {
                Delivery::Accepted => outcome.accepted += 1,
                Delivery::Gone => {
                    if self.devices.remove(&device).await? {
                        outcome.removed += 1;
                    }
                    tracing::info!(device = %device.id, "push device gone: removed");
                }
                Delivery::Failed(why) => {
                    tracing::warn!(device = %device.id, error = %why, "push not sent");
                }
            }
        }
        Ok(outcome)
    }
}
