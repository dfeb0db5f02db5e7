//! Issue subscriptions: who hears about an issue's comments, state and priority changes.
//! Automatic ones (creator, assignee, mentioned, commenters) are written by the dispatcher
//! from change records, put only where no subscription item exists; explicit ones by
//! `POST/DELETE /issues/{id}/subscription`, which overwrite. An explicit unsubscribe is kept
//! as `subscribed: false`, so it wins over any later automatic subscription.

use std::collections::HashMap;

use super::model::*;
use super::service::NotificationService;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, Principal};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::storage::{Query, SortKey, Table, WriteOp};

impl NotificationService {
    /// Reads the caller's access to an issue (404 unless they can read it).
    async fn readable_issue(&self, who: &Principal, issue_id: &str) -> AppResult<String> {
        let ws = ids::workspace_of(Kind::Issue, issue_id)?;
        let (_, got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Read,
                "issue",
                &[keys::issue(&ws, issue_id)],
            )
            .await?;
        if got.into_iter().next().flatten().is_none() {
            return Err(AppError::not_found("issue"));
        }
        Ok(ws)
    }

    async fn put_subscription(
        &self,
        ws: &str,
        issue_id: &str,
        user_id: &str,
        reason: SubscriptionReason,
        subscribed: bool,
        only_if_none: bool,
    ) -> AppResult<()> {
        let sub = IssueSubscription {
            issue_id: issue_id.to_owned(),
            workspace_id: ws.to_owned(),
            user_id: user_id.to_owned(),
            reason,
            subscribed,
            updated_at: self.ctx.clock.rfc3339(),
        };
        let item = record_item(
            &subscription_key(ws, issue_id, user_id),
            "issue_subscription",
            &sub,
        );
        let op = if only_if_none {
            WriteOp::put_new(Table::Main, item)
        } else {
            WriteOp::put(Table::Main, item)
        };
        match self.ctx.store.transact(vec![op]).await {
            Ok(()) => Ok(()),
            Err(e) if only_if_none && e.is_condition_failure() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /issues/{id}/subscription` (`subscribed: true`) and `DELETE` (`false`).
    pub async fn set_subscription(
        &self,
        who: &Principal,
        issue_id: &str,
        subscribed: bool,
    ) -> AppResult<SubscriptionState> {
        let ws = self.readable_issue(who, issue_id).await?;
        self.put_subscription(
            &ws,
            issue_id,
            &who.user_id,
            SubscriptionReason::Manual,
            subscribed,
            false,
        )
        .await?;
        Ok(SubscriptionState {
            issue_id: issue_id.to_owned(),
            subscribed,
        })
    }

    /// `GET /issues/{id}/subscribers`: current members subscribed to the issue.
    pub async fn subscribers(
        &self,
        who: &Principal,
        issue_id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<IssueSubscription>> {
        let limit = page.limit()?;
        let ws = self.readable_issue(who, issue_id).await?;
        let got = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, subscription_partition(&ws, issue_id))
                    .sort(SortKey::BeginsWith("SUB#".into()))
                    .limit(limit)
                    .cursor(page.cursor.clone()),
            )
            .await?;
        let subs: Vec<IssueSubscription> = got
            .items
            .into_iter()
            .map(from_item)
            .collect::<AppResult<_>>()?;
        let pairs: Vec<(String, String)> = subs
            .iter()
            .map(|s| (ws.clone(), s.user_id.clone()))
            .collect();
        let members = self.members(&pairs).await?;
        Ok(Paged {
            items: subs
                .into_iter()
                .filter(|s| s.subscribed && members.contains_key(&(ws.clone(), s.user_id.clone())))
                .collect(),
            next_cursor: got.next_cursor,
        })
    }

    /// Automatic subscription (never over an existing one, explicit unsubscribes included).
    pub async fn subscribe_automatically(
        &self,
        ws: &str,
        issue_id: &str,
        user_id: &str,
        reason: SubscriptionReason,
    ) -> AppResult<()> {
        self.put_subscription(ws, issue_id, user_id, reason, true, true)
            .await
    }

    /// Users subscribed to an issue (explicit unsubscribes left out).
    pub async fn subscribed_users(&self, ws: &str, issue_id: &str) -> AppResult<Vec<String>> {
        let items = crate::kernel::paging::query_all(
            self.ctx.store.as_ref(),
            Query::new(Table::Main, subscription_partition(ws, issue_id))
                .sort(SortKey::BeginsWith("SUB#".into())),
        )
        .await?;
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for item in items {
            let s: IssueSubscription = from_item(item)?;
            if s.subscribed && seen.insert(s.user_id.clone(), ()).is_none() {
                out.push(s.user_id);
            }
        }
        Ok(out)
    }
}
