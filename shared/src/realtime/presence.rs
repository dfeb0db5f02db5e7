//! Presence messages: `user_joined` when a user's first live connection in a workspace opens,
//! `user_left` when their last one has been closed for the grace window
//! (`MOMENTUM_PRESENCE_GRACE_SECS`), so a page reload or a network blip is neither a leave
//! nor a second join. Both are `DirectMessage`s (the seed's shape) posted to the live
//! connections of the workspace's current members other than the user's own
//! (`ConnectionRegistry::present_live`: the one rule every outlet asks).
//!
//! The debounce lives in the store: every close records a `PendingLeave` (the registry's
//! `disconnect`), a connect within the window clears it without a word, and a leave that is
//! due (its `left_at` + grace is past on the injected clock) is announced by whichever comes
//! first: the next connect or disconnect in the workspace, `GET /ws/online`,
//! `POST /ws/cleanup`, or, in the shim, a task that sweeps once the window has passed. (In
//! the cloud nothing wakes up at the end of a window by itself: a delayed SQS message or a
//! schedule would; until then a leave waits for the workspace's next presence event.) Clearing is conditional, so each
//! leave is announced at most once.

use serde_json::json;

use crate::error::AppResult;
use crate::realtime::broadcaster::Broadcaster;
use crate::realtime::connections::{Connection, ConnectionRegistry, PendingLeave};
use crate::realtime::direct::{DirectMessage, MessageType};

#[derive(Clone)]
pub struct Presence {
    registry: ConnectionRegistry,
    broadcaster: Broadcaster,
    grace_secs: u64,
}

impl Presence {
    pub fn new(registry: ConnectionRegistry, broadcaster: Broadcaster, grace_secs: u64) -> Self {
        Self {
            registry,
            broadcaster,
            grace_secs,
        }
    }

    pub fn grace_secs(&self) -> u64 {
        self.grace_secs
    }

    fn due(&self, leave: &PendingLeave, now: u64) -> bool {
        leave.left_at.saturating_add(self.grace_secs) <= now
    }

    /// After `$connect`: announces `user_joined` unless the user already had a live
    /// connection in the workspace or is back within the grace window, and announces the
    /// leaves that have come due meanwhile. Returns the messages posted.
    pub async fn joined(&self, conn: &Connection) -> AppResult<Vec<DirectMessage>> {
        let Some(ws) = conn.workspace_id.as_deref() else {
            return Ok(Vec::new());
        };
        let now = self.registry.now();
        let live = self.registry.present_live(ws).await?;
        let user = conn.user_id.as_str();
        let already_here = live
            .iter()
            .any(|c| c.user_id == user && c.connection_id != conn.connection_id);
        let mut join = !already_here;
        let mut messages = Vec::new();
        for leave in self.registry.pending_leaves(ws).await? {
            let due = self.due(&leave, now);
            if leave.user_id == user {
                if !self.registry.clear_leave(&leave).await? {
                    // Another sweep took it (and announced it if it was due): a join stands.
                    continue;
                }
                if !due {
                    // Back within the window: to the others they never left.
                    join = false;
                } else if !already_here {
                    // Gone past the window and not yet announced: say so before the join.
                    messages.push(self.message(MessageType::UserLeft, ws, user));
                }
            } else if due
                && self.registry.clear_leave(&leave).await?
                && !live.iter().any(|c| c.user_id == leave.user_id)
            {
                messages.push(self.message(MessageType::UserLeft, ws, &leave.user_id));
            }
        }
        if join {
            messages.push(self.message(MessageType::UserJoined, ws, user));
        }
        self.post(&live, &messages).await;
        Ok(messages)
    }

    /// Announces the workspace's due leaves of users with no live connection left (and
    /// drops those of users who are still or again connected). Returns the messages posted.
    pub async fn sweep(&self, workspace_id: &str) -> AppResult<Vec<DirectMessage>> {
        let now = self.registry.now();
        let due: Vec<PendingLeave> = self
            .registry
            .pending_leaves(workspace_id)
            .await?
            .into_iter()
            .filter(|l| self.due(l, now))
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let live = self.registry.present_live(workspace_id).await?;
        let mut messages = Vec::new();
        for leave in due {
            if self.registry.clear_leave(&leave).await?
                && !live.iter().any(|c| c.user_id == leave.user_id)
            {
                messages.push(self.message(MessageType::UserLeft, workspace_id, &leave.user_id));
            }
        }
        self.post(&live, &messages).await;
        Ok(messages)
    }

    fn message(&self, kind: MessageType, workspace_id: &str, user_id: &str) -> DirectMessage {
        DirectMessage::presence(kind, workspace_id, user_id, self.registry.now_rfc3339())
    }

    /// Posts each message to the live connections of everyone but its subject.
    async fn post(&self, live: &[Connection], messages: &[DirectMessage]) {
        for m in messages {
            let to: Vec<String> = live
                .iter()
                .filter(|c| c.user_id != m.from_user_id)
                .map(|c| c.connection_id.clone())
                .collect();
            let d = self.broadcaster.post_all(to, &json!(m)).await;
            tracing::debug!(message_type = ?m.message_type, delivered = d.delivered, "presence");
        }
    }
}
