//! Mobile push: what the inbox hands over for one notification, and the outlet that sends
//! it (APNs / FCM through Amazon SNS in the cloud, a recording sink locally). The inbox
//! (`areas::notifications`) decides *whether* a notification is pushed (preferences,
//! visibility); the outlet decides *where* (the user's devices) and whether a live
//! foreground socket already showed it.

pub mod devices;
pub mod local;
pub mod outlet;
pub mod payload;
pub mod provider;
pub mod sns;

pub use devices::{DeletedDevice, Device, DeviceRecord, DeviceService, Platform, RegisterDevice};
pub use local::{LocalPushLog, PushRecord};
pub use outlet::{DevicePush, ForegroundProbe};
pub use provider::{Delivery, NoProvider, PushProvider};
pub use sns::{SnsPlatforms, SnsPush};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AppResult;

/// One notification to push to every device of one user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushMessage {
    pub user_id: String,
    pub workspace_id: String,
    pub notification_id: String,
    /// Short, human-readable ("Ana assigned you MOM-12").
    pub title: String,
    pub body: String,
    /// The user's unread count after this notification (the app icon badge).
    pub badge: u64,
    /// Small machine-readable payload for the app (type, subject ids); kept small so the
    /// whole provider payload stays under APNs' 4 KB.
    pub data: Value,
}

/// What happened to one `PushMessage`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushOutcome {
    /// Devices whose provider accepted the message (> 0 means "delivered").
    pub accepted: usize,
    /// Not pushed: the user had a live foreground socket that already showed it.
    pub skipped_foreground: bool,
    /// Device endpoints removed because the provider said they are gone.
    pub removed: usize,
}

/// Sends pushes. Implementations never fail the notification that caused them: errors are
/// for the caller to log and count.
#[async_trait::async_trait]
pub trait PushOutlet: Send + Sync + 'static {
    async fn push(&self, message: PushMessage) -> AppResult<PushOutcome>;
}

/// The outlet when push is not configured: nothing is sent.
pub struct NoPush;

#[async_trait::async_trait]
impl PushOutlet for NoPush {
    async fn push(&self, _message: PushMessage) -> AppResult<PushOutcome> {
        Ok(PushOutcome::default())
    }
}
