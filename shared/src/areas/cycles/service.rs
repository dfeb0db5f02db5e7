//! Cycles: time-boxed iterations of a team, numbered per team, with a status derived from
//! their dates, the issues assigned to them and completion stats.
//!
//! Storage (docs/data-model.md, "Issues and cycles"): the record `WS#{ws}` / `CYCLE#{id}`, in
//! `gsi1` under `WS#{ws}#TEAM#{team}#CYCLES` sorted by `{starts_on}#{number}`; the per-team
//! counter `WS#{ws}` / `TEAMCYCLESEQ#{team}`; a cycle's issues are the issue copies in
//! `WS#{ws}#ISSUES#CYCLE#{cycle}` (see `issues`).

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::Date;
use time::macros::format_description;
use utoipa::{IntoParams, ToSchema};

use crate::areas::issues::{
    Issue, cycle_partition, relation_issues, rewrite_issues, workflow_states,
};
use crate::areas::workflows::StateCategory;
use crate::error::{AppError, AppResult};
use crate::kernel::access::Action;
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::changes::{Change, ChangeKind, CounterRef, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, found, retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::kernel::topic::Topic;
use crate::storage::{Condition, Index, Key, Query, Table, WriteOp};

/// Issues one `POST /cycles/{id}/issues` may assign.
pub use crate::kernel::limits::MAX_CYCLE_ASSIGN as MAX_ASSIGN;
/// Issues of one cycle that stats and deletes consider.
pub use crate::kernel::limits::MAX_CYCLE_ISSUES;
pub use crate::kernel::limits::{MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS};

fn team_cycles_partition(ws: &str, team: &str) -> String {
    format!("WS#{ws}#TEAM#{team}#CYCLES")
}

/// The per-team cycle-number counter (`seq`).
fn cycle_counter(ws: &str, team: &str) -> CounterRef {
    CounterRef {
        key: keys::scoped(ws, "TEAMCYCLESEQ", team),
        attr: "seq",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cycle {
    pub id: String,
    pub workspace_id: String,
    pub team_id: String,
    /// Per-team sequence number, from 1.
    pub number: i64,
    /// Default `Cycle {number}`.
    pub name: String,
    pub description: Option<String>,
    /// `YYYY-MM-DD`, first day.
    pub starts_on: String,
    /// `YYYY-MM-DD`, last day (after `starts_on`).
    pub ends_on: String,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CycleStatus {
    /// Today is before `starts_on`.
    Planned,
    /// Today is between `starts_on` and `ends_on`.
    Active,
    /// Today is after `ends_on`.
    Completed,
}

/// A cycle with its status (derived from the dates and today's date).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CycleView {
    #[serde(flatten)]
    pub cycle: Cycle,
    pub status: CycleStatus,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCycle {
    pub team_id: String,
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub starts_on: String,
    /// `YYYY-MM-DD`, after `starts_on`.
    #[schema(format = Date)]
    pub ends_on: String,
}

/// Absent fields stay; `description: null` clears it; `version`, when given, must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCycle {
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 2000)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    #[schema(format = Date)]
    pub starts_on: Option<String>,
    #[serde(default)]
    #[schema(format = Date)]
    pub ends_on: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignIssues {
    /// 1..=50 issues of the cycle's team.
    #[schema(min_items = 1, max_items = 50)]
    pub issue_ids: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCyclesParams {
    /// The team whose cycles to list (by start date).
    pub team_id: String,
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Issue counts of a cycle by state category.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CategoryCounts {
    pub triage: u64,
    pub backlog: u64,
    pub unstarted: u64,
    pub started: u64,
    pub completed: u64,
    pub canceled: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CycleStats {
    pub cycle_id: String,
    pub total: u64,
    pub by_category: CategoryCounts,
    /// Issues in a completed state.
    pub completed: u64,
    pub canceled: u64,
    /// `completed / (total - canceled) * 100`, one decimal; 0 when nothing counts.
    pub completion_percent: f64,
}

fn parse_date(field: &str, raw: &str) -> AppResult<Date> {
    Date::parse(raw.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| AppError::validation(field, "must be a date like 2026-01-31"))
}

fn format_date(d: Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

fn check_dates(starts: Date, ends: Date) -> AppResult<()> {
    if ends <= starts {
        return Err(AppError::unprocessable(
            "ends_on",
            "must be after starts_on",
        ));
    }
    Ok(())
}

pub fn completion_percent(completed: u64, total: u64, canceled: u64) -> f64 {
    let counted = total.saturating_sub(canceled);
    if counted == 0 {
        return 0.0;
    }
    (completed as f64 * 1000.0 / counted as f64).round() / 10.0
}

fn cycle_item(cycle: &Cycle) -> crate::storage::Item {
    let mut item = record_item(&keys::cycle(&cycle.workspace_id, &cycle.id), "cycle", cycle);
    item.insert(
        Index::Gsi1.pk_attr().into(),
        json!(team_cycles_partition(&cycle.workspace_id, &cycle.team_id)),
    );
    item.insert(
        Index::Gsi1.sk_attr().into(),
        json!(format!("{}#{:010}", cycle.starts_on, cycle.number)),
    );
    item
}

fn cycle_change(kind: ChangeKind, cycle: &Cycle) -> Change {
    Change::new(EntityType::Cycle, &cycle.id, kind, cycle).topic(Topic::Team(cycle.team_id.clone()))
}

pub struct CycleService {
    ctx: ServiceContext,
}

impl CycleService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    fn view(&self, cycle: Cycle) -> CycleView {
        let today = self.ctx.clock.now().date();
        let status = match (
            parse_date("starts_on", &cycle.starts_on),
            parse_date("ends_on", &cycle.ends_on),
        ) {
            (Ok(s), _) if today < s => CycleStatus::Planned,
            (_, Ok(e)) if today > e => CycleStatus::Completed,
            _ => CycleStatus::Active,
        };
        CycleView { cycle, status }
    }

    /// Authorizes and reads a cycle by id with `extra` keys in the same batch (returned
    /// aligned with `extra`).
    async fn read(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
        extra: &[Key],
    ) -> AppResult<(Vec<Option<crate::storage::Item>>, Cycle)> {
        let got = self
            .ctx
            .access
            .load(who, Kind::Cycle, id, keys::cycle, action, extra)
            .await?;
        Ok((got.extra, got.record))
    }

    pub async fn create(&self, who: &Principal, req: CreateCycle) -> AppResult<CycleView> {
        let ws = ids::workspace_of(Kind::Team, req.team_id.trim())
            .map_err(|_| AppError::not_found("team"))?;
        let team_id = req.team_id.trim().to_owned();
        let name = optional_text("name", req.name.as_deref(), MAX_NAME_CHARS)?;
        let description = optional_text(
            "description",
            req.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        let starts = parse_date("starts_on", &req.starts_on)?;
        let ends = parse_date("ends_on", &req.ends_on)?;
        check_dates(starts, ends)?;
        let (_, mut items) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Contribute,
                "team",
                &[keys::team(&ws, &team_id)],
            )
            .await?;
        if items.pop().flatten().is_none() {
            return Err(AppError::not_found("team"));
        }
        let now = self.ctx.now();
        let id = ids::new_id(Kind::Cycle, &ws);
        let counter = cycle_counter(&ws, &team_id);
        let committed = self
            .ctx
            .changes
            .commit(
                &ws,
                &who.user_id,
                std::slice::from_ref(&counter),
                |counters| {
                    let number = counters.get(&counter) + 1;
                    let cycle = Cycle {
                        id: id.clone(),
                        workspace_id: ws.clone(),
                        team_id: team_id.clone(),
                        number,
                        name: name.clone().unwrap_or_else(|| format!("Cycle {number}")),
                        description: description.clone(),
                        starts_on: format_date(starts),
                        ends_on: format_date(ends),
                        created_by: who.user_id.clone(),
                        version: 1,
                        created_at: now.clone(),
                        updated_at: now.clone(),
                    };
                    Ok(Plan::new(cycle.clone())
                        .op(WriteOp::put_new(Table::Main, cycle_item(&cycle)))
                        .guarded(
                            WriteOp::ConditionCheck {
                                table: Table::Main,
                                key: keys::team(&ws, &team_id),
                                condition: Condition::Exists,
                            },
                            AppError::not_found("team"),
                        )
                        .bump(counter.clone(), 1)
                        .change(cycle_change(ChangeKind::Created, &cycle)))
                },
            )
            .await?;
        Ok(self.view(committed.output))
    }

    pub async fn get(&self, who: &Principal, id: &str) -> AppResult<CycleView> {
        let (_, cycle) = self
            .read(who, id, EntityType::Cycle.read_action(), &[])
            .await?;
        Ok(self.view(cycle))
    }

    /// A team's cycles by start date.
    pub async fn list(
        &self,
        who: &Principal,
        params: &ListCyclesParams,
    ) -> AppResult<Paged<CycleView>> {
        let limit = PageParams {
            limit: params.limit,
            cursor: None,
        }
        .limit()?;
        let team_id = params.team_id.trim();
        let ws = ids::workspace_of(Kind::Team, team_id).map_err(|_| AppError::not_found("team"))?;
        let (_, mut items) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                EntityType::Cycle.read_action(),
                "team",
                &[keys::team(&ws, team_id)],
            )
            .await?;
        if items.pop().flatten().is_none() {
            return Err(AppError::not_found("team"));
        }
        let page = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, team_cycles_partition(&ws, team_id))
                    .index(Index::Gsi1)
                    .limit(limit)
                    .cursor(params.cursor.clone()),
            )
            .await?;
        Ok(Paged {
            items: page
                .items
                .into_iter()
                .map(|i| from_item(i).map(|c| self.view(c)))
                .collect::<AppResult<_>>()?,
            next_cursor: page.next_cursor,
        })
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateCycle,
        if_match: Option<i64>,
    ) -> AppResult<CycleView> {
        let expected = crate::kernel::context::expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateCycle,
        expected: Option<i64>,
    ) -> AppResult<CycleView> {
        let (_, current) = self.read(who, id, Action::Contribute, &[]).await?;
        check_version(expected, current.version)?;
        let mut next = current.clone();
        if let Some(name) = &req.name {
            next.name = crate::kernel::context::required_text("name", name, MAX_NAME_CHARS)?;
        }
        if let Some(d) = &req.description {
            next.description = optional_text("description", d.as_deref(), MAX_DESCRIPTION_CHARS)?;
        }
        let starts = match &req.starts_on {
            Some(s) => parse_date("starts_on", s)?,
            None => parse_date("starts_on", &current.starts_on)?,
        };
        let ends = match &req.ends_on {
            Some(e) => parse_date("ends_on", e)?,
            None => parse_date("ends_on", &current.ends_on)?,
        };
        check_dates(starts, ends)?;
        next.starts_on = format_date(starts);
        next.ends_on = format_date(ends);
        if next == current {
            return Ok(self.view(current));
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        self.ctx
            .changes
            .commit(&current.workspace_id, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        WriteOp::Put {
                            table: Table::Main,
                            item: cycle_item(&next),
                            condition: Some(Condition::VersionEquals(current.version)),
                        },
                        version_conflict(),
                    )
                    .change(cycle_change(ChangeKind::Updated, &next)))
            })
            .await?;
        Ok(self.view(next))
    }

    /// Deletes the cycle; its issues leave it (`cycle_id` becomes null, with activity).
    pub async fn delete(&self, who: &Principal, id: &str) -> AppResult<()> {
        let (_, cycle) = self.read(who, id, Action::Contribute, &[]).await?;
        let ws = cycle.workspace_id.clone();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        WriteOp::Delete {
                            table: Table::Main,
                            key: keys::cycle(&ws, id),
                            condition: Some(Condition::Exists),
                        },
                        AppError::not_found("cycle"),
                    )
                    .change(cycle_change(ChangeKind::Deleted, &cycle)))
            })
            .await?;
        // Assignments check that the cycle exists in their transaction, so after the delete
        // this list is complete.
        let issues = relation_issues(&self.ctx, &cycle_partition(&ws, id), usize::MAX).await?;
        rewrite_issues(&self.ctx, &ws, &who.user_id, issues, None, |issue| {
            (issue.cycle_id.as_deref() == Some(id)).then(|| {
                let mut next = issue.clone();
                next.cycle_id = None;
                next
            })
        })
        .await?;
        Ok(())
    }

    /// Puts issues of the cycle's team into the cycle.
    pub async fn add_issues(
        &self,
        who: &Principal,
        id: &str,
        req: AssignIssues,
    ) -> AppResult<Vec<Issue>> {
        let mut issue_ids: Vec<String> = Vec::new();
        for raw in &req.issue_ids {
            let raw = raw.trim();
            if raw.is_empty() || raw.len() > 100 {
                return Err(AppError::validation("issue_ids", "contains an invalid id"));
            }
            if !issue_ids.iter().any(|i| i == raw) {
                issue_ids.push(raw.to_owned());
            }
        }
        if issue_ids.is_empty() || issue_ids.len() > MAX_ASSIGN {
            return Err(AppError::validation(
                "issue_ids",
                format!("must hold 1 to {MAX_ASSIGN} issue ids"),
            ));
        }
        let ws = ids::workspace_of(Kind::Cycle, id)?;
        let extra: Vec<Key> = issue_ids.iter().map(|i| keys::issue(&ws, i)).collect();
        let (items, cycle) = self.read(who, id, Action::Contribute, &extra).await?;
        let mut issues = Vec::with_capacity(issue_ids.len());
        for (issue_id, item) in issue_ids.iter().zip(items) {
            let issue: Issue = item.map(from_item).transpose()?.ok_or_else(|| {
                AppError::unknown_reference("issue_ids", format!("issue {issue_id} not found"))
            })?;
            if issue.team_id != cycle.team_id {
                return Err(AppError::validation(
                    "issue_ids",
                    format!("issue {} belongs to another team", issue.identifier),
                ));
            }
            issues.push(issue);
        }
        let cycle_id = cycle.id.clone();
        rewrite_issues(
            &self.ctx,
            &ws,
            &who.user_id,
            issues,
            Some((keys::cycle(&ws, id), AppError::not_found("cycle"))),
            |issue| {
                let mut next = issue.clone();
                next.cycle_id = Some(cycle_id.clone());
                Some(next)
            },
        )
        .await
    }

    /// Takes an issue out of the cycle (404 when it is not in it).
    pub async fn remove_issue(
        &self,
        who: &Principal,
        id: &str,
        issue_id: &str,
    ) -> AppResult<Issue> {
        let ws = ids::workspace_of(Kind::Cycle, id)?;
        let (mut items, cycle) = self
            .read(who, id, Action::Contribute, &[keys::issue(&ws, issue_id)])
            .await?;
        let issue: Issue = found(items[0].take(), "issue")?;
        if issue.cycle_id.as_deref() != Some(cycle.id.as_str()) {
            return Err(AppError::not_found("issue in this cycle"));
        }
        let mut out = rewrite_issues(&self.ctx, &ws, &who.user_id, vec![issue], None, |i| {
            (i.cycle_id.as_deref() == Some(id)).then(|| {
                let mut next = i.clone();
                next.cycle_id = None;
                next
            })
        })
        .await?;
        out.pop().ok_or_else(|| AppError::not_found("issue"))
    }

    /// Counts the cycle's issues by state category.
    pub async fn stats(&self, who: &Principal, id: &str) -> AppResult<CycleStats> {
        let (_, cycle) = self
            .read(who, id, EntityType::Cycle.read_action(), &[])
            .await?;
        let ws = cycle.workspace_id.clone();
        let issues =
            relation_issues(&self.ctx, &cycle_partition(&ws, id), MAX_CYCLE_ISSUES).await?;
        let mut by_category = CategoryCounts::default();
        let mut workflows: Vec<String> = issues.iter().map(|i| i.workflow_id.clone()).collect();
        workflows.sort();
        workflows.dedup();
        let mut categories = std::collections::HashMap::new();
        for wf in &workflows {
            for s in workflow_states(&self.ctx, &ws, wf).await? {
                categories.insert(s.id, s.category);
            }
        }
        for issue in &issues {
            match categories.get(&issue.state_id) {
                Some(StateCategory::Triage) => by_category.triage += 1,
                Some(StateCategory::Backlog) => by_category.backlog += 1,
                Some(StateCategory::Unstarted) => by_category.unstarted += 1,
                Some(StateCategory::Started) => by_category.started += 1,
                Some(StateCategory::Completed) => by_category.completed += 1,
                Some(StateCategory::Canceled) => by_category.canceled += 1,
                None => {}
            }
        }
        let total = issues.len() as u64;
        Ok(CycleStats {
            cycle_id: cycle.id,
            total,
            completed: by_category.completed,
            canceled: by_category.canceled,
            completion_percent: completion_percent(
                by_category.completed,
                total,
                by_category.canceled,
            ),
            by_category,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent() {
        assert_eq!(completion_percent(0, 0, 0), 0.0);
        assert_eq!(completion_percent(0, 2, 2), 0.0);
        assert_eq!(completion_percent(1, 4, 1), 33.3);
        assert_eq!(completion_percent(2, 2, 0), 100.0);
    }

    #[test]
    fn dates() {
        assert!(parse_date("starts_on", "2026-02-30").is_err());
        assert!(parse_date("starts_on", "tomorrow").is_err());
        let a = parse_date("starts_on", "2026-01-01").unwrap();
        let b = parse_date("ends_on", "2026-01-14").unwrap();
        assert!(check_dates(a, b).is_ok());
        assert_eq!(
            check_dates(b, a).unwrap_err().field.as_deref(),
            Some("ends_on")
        );
        assert!(check_dates(a, a).is_err());
        assert_eq!(format_date(a), "2026-01-01");
    }
}
