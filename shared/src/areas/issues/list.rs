//! The list planner of `GET /issues`: which partition or index answers the filters, how a
//! page is filtered in memory, and the two cursor kinds (a store position, or `k.` and the
//! last sort key of a relation set sorted in memory).

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::bulk::{items_to_issues, records, resolve};
use super::input::{MAX_QUERY_CHARS, opt_id_input, parse_category};
use super::layout::{
    assignee_partition, cycle_partition, parent_partition, project_partition, team_index_partition,
    workspace_index_partition, workspace_sort_key,
};
use super::model::{Issue, ListIssuesParams, Priority, SortBy};
use super::workflow::workspace_states;
use crate::areas::workflows::StateCategory;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{EntityType, Principal};
use crate::kernel::context::ServiceContext;
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::from_item;
use crate::storage::cursor::Position;
use crate::storage::{Index, Item, Query, Table};

/// Items read per query while filtering a list page in memory.
const SCAN_BATCH: u32 = 100;
/// Queries one list page may spend filtering in memory before it returns what it has
/// (possibly fewer than `limit` items, with a `next_cursor`).
const MAX_SCAN_CALLS: usize = 5;
/// A relation set (sub-issues, a cycle's, an assignee's or a project's issues) up to this
/// size is sorted in memory for `sort=updated|priority`; larger ones use the sort index.
const MAX_SORTED_SET: u32 = 1000;
const SEEK_PREFIX: &str = "k.";

/// Filters applied to every issue a list reads (the index chosen serves some exactly).
#[derive(Default)]
struct Filter {
    team: Option<String>,
    project: Option<String>,
    assignee: Option<String>,
    states: Option<HashSet<String>>,
    priority: Option<Priority>,
    label: Option<String>,
    cycle: Option<String>,
    parent: Option<String>,
    q: Option<String>,
}

/// Which filter an access path answers exactly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Covered {
    Nothing,
    Team,
    Parent,
    Cycle,
    Assignee,
    Project,
}

impl Filter {
    fn matches(&self, i: &Issue) -> bool {
        let eq = |want: &Option<String>, have: Option<&String>| {
            want.as_ref().is_none_or(|w| have == Some(w))
        };
        eq(&self.team, Some(&i.team_id))
            && eq(&self.project, i.project_id.as_ref())
            && eq(&self.assignee, i.assignee_id.as_ref())
            && eq(&self.cycle, i.cycle_id.as_ref())
            && eq(&self.parent, i.parent_id.as_ref())
            && self.states.as_ref().is_none_or(|s| s.contains(&i.state_id))
            && self.priority.is_none_or(|p| i.priority == p)
            && self.label.as_ref().is_none_or(|l| i.label_ids.contains(l))
            && self
                .q
                .as_ref()
                .is_none_or(|q| i.title.to_lowercase().contains(q.as_str()))
    }

    /// True when the path answers every filter given, so pages need no filtering.
    fn exact_on(&self, covered: Covered) -> bool {
        (self.team.is_none() || covered == Covered::Team)
            && (self.project.is_none() || covered == Covered::Project)
            && (self.assignee.is_none() || covered == Covered::Assignee)
            && (self.cycle.is_none() || covered == Covered::Cycle)
            && (self.parent.is_none() || covered == Covered::Parent)
            && self.states.is_none()
            && self.priority.is_none()
            && self.label.is_none()
            && self.q.is_none()
    }
}

/// Pages through `query`, keeping what `filter` accepts: one query when the path answers
/// every filter, else up to `MAX_SCAN_CALLS` batches. The cursor is the store's position of
/// the last item returned (or scanned, when the budget ran out first).
async fn stream_page(
    ctx: &ServiceContext,
    query: Query,
    filter: &Filter,
    exact: bool,
    limit: u32,
    cursor: Option<String>,
) -> AppResult<Paged<Issue>> {
    if cursor
        .as_deref()
        .is_some_and(|c| c.starts_with(SEEK_PREFIX))
    {
        return Err(AppError::validation("cursor", "invalid or foreign cursor"));
    }
    if exact {
        let mut page = ctx.store.query(&query.limit(limit).cursor(cursor)).await?;
        page.items = resolve(ctx, page.items).await?;
        return Paged::of(page);
    }
    let index = query.index;
    // Each kept issue with the item the query listed it by (where the next page resumes).
    let mut kept: Vec<(Item, Issue)> = Vec::new();
    let mut cursor = cursor;
    for _ in 0..MAX_SCAN_CALLS {
        let page = ctx
            .store
            .query(&query.clone().limit(SCAN_BATCH).cursor(cursor.take()))
            .await?;
        for (entry, record) in records(ctx, page.items).await? {
            let (listed, issue): (Item, Issue) = match entry {
                Some(entry) => (entry, from_item(record)?),
                None => (record.clone(), from_item(record)?),
            };
            if !filter.matches(&issue) {
                continue;
            }
            if kept.len() as u32 == limit {
                // One more match exists: resume after the last one returned.
                let last = &kept.last().expect("limit >= 1").0;
                let next = Position::of(last, index)?.encode();
                return Ok(Paged {
                    items: kept.into_iter().map(|(_, i)| i).collect(),
                    next_cursor: Some(next),
                });
            }
            kept.push((listed, issue));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => {
                return Ok(Paged {
                    items: kept.into_iter().map(|(_, i)| i).collect(),
                    next_cursor: None,
                });
            }
        }
    }
    Ok(Paged {
        items: kept.into_iter().map(|(_, i)| i).collect(),
        next_cursor: cursor,
    })
}

/// Sorts a whole (small) relation set in memory; the cursor is the last sort key returned.
fn sorted_page(
    issues: Vec<Issue>,
    filter: &Filter,
    sort: SortBy,
    descending: bool,
    limit: u32,
    after: Option<&str>,
) -> AppResult<Paged<Issue>> {
    let after = match after {
        None => None,
        Some(c) => {
            let raw = c
                .strip_prefix(SEEK_PREFIX)
                .and_then(|enc| URL_SAFE_NO_PAD.decode(enc).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AppError::validation("cursor", "invalid or foreign cursor"))?;
            Some(raw)
        }
    };
    let mut keyed: Vec<(String, Issue)> = issues
        .into_iter()
        .filter(|i| filter.matches(i))
        .map(|i| (workspace_sort_key(&i, sort), i))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        keyed.reverse();
    }
    if let Some(after) = &after {
        keyed.retain(|(k, _)| if descending { k < after } else { k > after });
    }
    let more = keyed.len() > limit as usize;
    keyed.truncate(limit as usize);
    let next_cursor = if more {
        keyed
            .last()
            .map(|(k, _)| format!("{SEEK_PREFIX}{}", URL_SAFE_NO_PAD.encode(k)))
    } else {
        None
    };
    Ok(Paged {
        items: keyed.into_iter().map(|(_, i)| i).collect(),
        next_cursor,
    })
}

/// What a list request asks for, checked.
struct ListRequest {
    filter: Filter,
    category: Option<StateCategory>,
    sort: SortBy,
    descending: bool,
    limit: u32,
    cursor: Option<String>,
}

impl ListRequest {
    /// Checks the parameters in the order their errors are reported.
    fn parse(p: &ListIssuesParams) -> AppResult<Self> {
        let limit = PageParams {
            limit: p.limit,
            cursor: None,
        }
        .limit()?;
        let sort = SortBy::parse(p.sort.as_deref())?;
        let descending = match p.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(AppError::validation("order", "must be asc or desc")),
        };
        let priority = p
            .priority
            .as_deref()
            .map(|v| Priority::parse("priority", v))
            .transpose()?;
        let category = p
            .state_category
            .as_deref()
            .map(parse_category)
            .transpose()?;
        let q = match p.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
                return Err(AppError::validation(
                    "q",
                    format!("must be at most {MAX_QUERY_CHARS} characters"),
                ));
            }
            q => q.map(str::to_lowercase),
        };
        let filter = Filter {
            team: opt_id_input("team_id", p.team_id.as_deref())?,
            project: opt_id_input("project_id", p.project_id.as_deref())?,
            assignee: opt_id_input("assignee_id", p.assignee_id.as_deref())?,
            states: opt_id_input("state_id", p.state_id.as_deref())?.map(|s| HashSet::from([s])),
            priority,
            label: opt_id_input("label_id", p.label_id.as_deref())?,
            cycle: opt_id_input("cycle_id", p.cycle_id.as_deref())?,
            parent: opt_id_input("parent_id", p.parent_id.as_deref())?,
            q,
        };
        Ok(Self {
            filter,
            category,
            sort,
            descending,
            limit,
            cursor: p.cursor.clone(),
        })
    }
}

pub(super) async fn list(
    ctx: &ServiceContext,
    who: &Principal,
    p: &ListIssuesParams,
) -> AppResult<Paged<Issue>> {
    let mut req = ListRequest::parse(p)?;
    let ws = list_workspace(
        ctx,
        who,
        req.filter.team.as_deref(),
        p.workspace_id.as_deref(),
    )
    .await?;
    if let Some(category) = req.category {
        let ids: HashSet<String> = workspace_states(ctx, &ws)
            .await?
            .into_iter()
            .filter(|s| s.category == category)
            .map(|s| s.id)
            .collect();
        req.filter.states = Some(match req.filter.states.take() {
            Some(given) => given.intersection(&ids).cloned().collect(),
            None => ids,
        });
    }
    if let Some((pk, covered)) = relation(&req.filter, &ws)
        && let Some(page) = relation_page(ctx, &req, pk, covered).await?
    {
        return Ok(page);
    }
    index_page(ctx, &req, &ws).await
}

/// The workspace: the team's (checked in the authorization batch), else the given or
/// current one.
async fn list_workspace(
    ctx: &ServiceContext,
    who: &Principal,
    team: Option<&str>,
    workspace_id: Option<&str>,
) -> AppResult<String> {
    let Some(team) = team else {
        return Ok(ctx
            .access
            .resolve(who, workspace_id, EntityType::Issue.read_action())
            .await?
            .workspace_id);
    };
    let ws = ids::workspace_of(Kind::Team, team).map_err(|_| AppError::not_found("team"))?;
    if let Some(w) = workspace_id
        && ids::parse_workspace_id(w)? != ws
    {
        return Err(AppError::not_found("team"));
    }
    let (_, mut items) = ctx
        .access
        .authorize(
            who,
            &ws,
            EntityType::Issue.read_action(),
            "team",
            &[keys::team(&ws, team)],
        )
        .await?;
    if items.pop().flatten().is_none() {
        return Err(AppError::not_found("team"));
    }
    Ok(ws)
}

/// A relation partition when the list names one (most selective first).
fn relation(filter: &Filter, ws: &str) -> Option<(String, Covered)> {
    if let Some(parent) = &filter.parent {
        Some((parent_partition(ws, parent), Covered::Parent))
    } else if let Some(cycle) = &filter.cycle {
        Some((cycle_partition(ws, cycle), Covered::Cycle))
    } else if let Some(assignee) = &filter.assignee {
        Some((assignee_partition(ws, Some(assignee)), Covered::Assignee))
    } else {
        filter
            .project
            .as_ref()
            .map(|project| (project_partition(ws, Some(project)), Covered::Project))
    }
}

/// A page of a relation partition: streamed by creation, else sorted in memory when the
/// whole set is small. `None` when it is too large to sort in memory: the sort index,
/// filtered while paging, answers instead.
async fn relation_page(
    ctx: &ServiceContext,
    req: &ListRequest,
    pk: String,
    covered: Covered,
) -> AppResult<Option<Paged<Issue>>> {
    if req.sort == SortBy::Created {
        return stream(ctx, req, Query::new(Table::Main, pk), covered)
            .await
            .map(Some);
    }
    let seek = req
        .cursor
        .as_deref()
        .is_none_or(|c| c.starts_with(SEEK_PREFIX));
    if !seek {
        return Ok(None);
    }
    let page = ctx
        .store
        .query(&Query::new(Table::Main, pk).limit(MAX_SORTED_SET))
        .await?;
    if page.next_cursor.is_none() {
        let issues = items_to_issues(resolve(ctx, page.items).await?)?;
        return sorted_page(
            issues,
            &req.filter,
            req.sort,
            req.descending,
            req.limit,
            req.cursor.as_deref(),
        )
        .map(Some);
    }
    if req.cursor.is_some() {
        return Err(AppError::validation("cursor", "invalid or foreign cursor"));
    }
    Ok(None)
}

/// A page of the team's or the workspace's sort index.
async fn index_page(ctx: &ServiceContext, req: &ListRequest, ws: &str) -> AppResult<Paged<Issue>> {
    let (index, pk, covered) = match &req.filter.team {
        Some(team) => (
            Index::Gsi1,
            team_index_partition(ws, team, req.sort),
            Covered::Team,
        ),
        None => (
            Index::Gsi2,
            workspace_index_partition(ws, req.sort),
            Covered::Nothing,
        ),
    };
    stream(ctx, req, Query::new(Table::Main, pk).index(index), covered).await
}

/// Streams `query` in the order asked for.
async fn stream(
    ctx: &ServiceContext,
    req: &ListRequest,
    query: Query,
    covered: Covered,
) -> AppResult<Paged<Issue>> {
    let query = if req.descending {
        query.backward()
    } else {
        query
    };
    let exact = req.filter.exact_on(covered);
    stream_page(
        ctx,
        query,
        &req.filter,
        exact,
        req.limit,
        req.cursor.clone(),
    )
    .await
}
