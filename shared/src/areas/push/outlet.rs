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
        if let Some(probe) = &self.foreground {
            // Unknown counts as background: a duplicate alert is better than a missed one.
            let foreground = probe
                .in_foreground(&message.user_id)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "foreground check failed; pushing");
                    false
                });
            if foreground {
                outcome.skipped_foreground = true;
                return Ok(outcome);
            }
        }
        let provider = self.devices.provider().clone();
        for device in self.devices.of_user(&message.user_id).await? {
            match provider.send(&device, &message).await {
                Delivery::Accepted => outcome.accepted += 1,
                // One device's cleanup failing does not hold up the others; the next push
                // finds it gone again.
                Delivery::Gone => match self.devices.remove(&device).await {
                    Ok(removed) => {
                        outcome.removed += usize::from(removed);
                        tracing::info!(device = %device.id, "push device gone: removed");
                    }
                    Err(e) => {
                        tracing::warn!(device = %device.id, error = %e, "could not remove a gone device");
                    }
                },
                Delivery::Failed(why) => {
                    tracing::warn!(device = %device.id, error = %why, "push not sent");
                }
            }
        }
        Ok(outcome)
    }
}
