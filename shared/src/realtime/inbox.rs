//! The `user:{id}` topic: a user's notifications on their own connections. It is implicit:
//! every connection is on its owner's topic from `$connect` on (found through the owner
//! index, `ConnectionRegistry::connections_of`), and no one can subscribe to it
//! (`Topic::parse_for_client` refuses `user:`), so nobody else's sockets ever receive it.

use std::collections::BTreeMap;

use serde_json::json;

use super::broadcaster::Broadcaster;
use crate::areas::notifications::NotificationService;
use crate::areas::notifications::dispatcher::Delivered;
use crate::error::AppResult;
use crate::kernel::topic::UserTopic;

/// Sends each delivered notification (`notification.created`) and the new unread count of
/// its workspace (`notifications.unread_count`) to the recipient's connections; records
/// `delivered_at` when a socket accepted it. Returns the posts accepted.
pub async fn send_to_users(
    broadcaster: &Broadcaster,
    inbox: &NotificationService,
    delivered: &[Delivered],
) -> AppResult<usize> {
    // One owner-index lookup per recipient, not per notification: a batch often holds
    // several for one user (a comment that mentions them on an issue they subscribe to).
    let mut by_user: BTreeMap<&str, Vec<&Delivered>> = BTreeMap::new();
    for d in delivered {
        by_user.entry(&d.notification.user_id).or_default().push(d);
    }
    let mut accepted = 0;
    for (user_id, theirs) in by_user {
        let connections = broadcaster
            .worker()
            .registry()
            .connections_of(user_id, None)
            .await?;
        if connections.is_empty() {
            continue;
        }
        for d in theirs {
            let n = &d.notification;
            let created = json!({
                "type": "notification.created",
                "topic": UserTopic(user_id),
                "notification": n,
            });
            let sent = broadcaster.post_all(connections.clone(), &created).await;
            broadcaster
                .post_all(
                    connections.clone(),
                    &unread_count(user_id, &n.workspace_id, d.unread),
                )
                .await;
            if sent.delivered > 0 {
                accepted += sent.delivered;
                inbox.mark_delivered(user_id, &n.id).await?;
            }
        }
    }
    Ok(accepted)
}

/// `notifications.unread_count`: a user's unread count in one workspace, on `user:{id}`.
fn unread_count(user_id: &str, workspace_id: &str, count: i64) -> serde_json::Value {
    json!({
        "type": "notifications.unread_count",
        "topic": UserTopic(user_id),
        "workspace_id": workspace_id,
        "count": count,
    })
}

/// Sends a user's unread count in `workspace_id` to their own connections after a
/// read-state change moved it (`count` as stored, or read now when `None`). Returns the
/// posts accepted.
pub async fn send_unread_count(
    broadcaster: &Broadcaster,
    inbox: &NotificationService,
    user_id: &str,
    workspace_id: &str,
    count: Option<i64>,
) -> AppResult<usize> {
    let connections = broadcaster
        .worker()
        .registry()
        .connections_of(user_id, None)
        .await?;
    if connections.is_empty() {
        return Ok(0);
    }
    let count = match count {
        Some(c) => c,
        None => inbox.unread_of(user_id, workspace_id).await?,
    };
    let sent = broadcaster
        .post_all(connections, &unread_count(user_id, workspace_id, count))
        .await;
    Ok(sent.delivered)
}
