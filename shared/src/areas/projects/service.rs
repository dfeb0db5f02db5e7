//! The project service: project statuses (workspace structure, managed by admins) and
//! projects (work, changed by members).

use super::input::{
    MAX_POSITION, MAX_PROJECT_DESCRIPTION_CHARS, MAX_PROJECT_NAME_CHARS, MAX_STATUS_NAME_CHARS,
    Named, ProjectPatch, key_taken, validate_date, validate_position, validate_project_key,
    validate_status_id, validate_user_id,
};
use super::layout::{
    delete_op, plan_project_statuses, project_change, project_key_marker, projects_query,
    reference_guards, status_change, statuses_query,
};
use super::list;
use super::model::{
    CreateProject, CreateProjectStatus, Project, ProjectFilter, ProjectStatus, ProjectView,
    UpdateProject, UpdateProjectStatus, sort_statuses,
};
use crate::areas::issues::references;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, EntityType, Principal, Scope};
use crate::kernel::changes::{ChangeKind, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, claim, color, expected_version, found, put_new, put_versioned,
    required_text, retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged, query_all};
use crate::kernel::record::from_item;
use crate::storage::{Condition, Item, Key, Table};

pub struct ProjectService {
    ctx: ServiceContext,
}

impl ProjectService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    // ----- project statuses --------------------------------------------------------------

    async fn all_statuses(&self, ws: &str) -> AppResult<Vec<ProjectStatus>> {
        let items = query_all(self.ctx.store.as_ref(), statuses_query(ws)).await?;
        let mut out = items
            .into_iter()
            .map(from_item)
            .collect::<AppResult<Vec<ProjectStatus>>>()?;
        sort_statuses(&mut out);
        Ok(out)
    }

    /// A workspace's project statuses, by position.
    pub async fn list_statuses(
        &self,
        who: &Principal,
        workspace_id: Option<&str>,
    ) -> AppResult<Vec<ProjectStatus>> {
        let scope = self
            .ctx
            .access
            .resolve(who, workspace_id, EntityType::ProjectStatus.read_action())
            .await?;
        self.all_statuses(&scope.workspace_id).await
    }

    pub async fn create_status(
        &self,
        who: &Principal,
        req: CreateProjectStatus,
    ) -> AppResult<ProjectStatus> {
        let name = required_text("name", &req.name, MAX_STATUS_NAME_CHARS)?;
        let color = color("color", &req.color)?;
        let position = req.position.map(validate_position).transpose()?;
        let scope = self
            .ctx
            .access
            .resolve(who, req.workspace_id.as_deref(), Action::Manage)
            .await?;
        let ws = scope.workspace_id;
        let position = match position {
            Some(p) => p,
            None => self
                .all_statuses(&ws)
                .await?
                .iter()
                .map(|s| s.position + 1)
                .max()
                .unwrap_or(0)
                .min(MAX_POSITION),
        };
        let now = self.ctx.now();
        let status = ProjectStatus {
            id: ids::new_id(Kind::ProjectStatus, &ws),
            workspace_id: ws.clone(),
            name,
            category: req.category,
            color,
            position,
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(plan_project_statuses(
                    Plan::new(()),
                    std::slice::from_ref(&status),
                ))
            })
            .await?;
        Ok(status)
    }

    async fn authorize_status(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
    ) -> AppResult<(Scope, ProjectStatus)> {
        let ws = ids::workspace_of(Kind::ProjectStatus, id)?;
        let (scope, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                action,
                Kind::ProjectStatus.noun(),
                &[keys::project_status(&ws, id)],
            )
            .await?;
        let status = found(got.pop().flatten(), Kind::ProjectStatus.noun())?;
        Ok((scope, status))
    }

    pub async fn get_status(&self, who: &Principal, id: &str) -> AppResult<ProjectStatus> {
        Ok(self
            .authorize_status(who, id, EntityType::ProjectStatus.read_action())
            .await?
            .1)
    }

    pub async fn update_status(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateProjectStatus,
        if_match: Option<i64>,
    ) -> AppResult<ProjectStatus> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || {
            self.update_status_once(who, id, &req, expected)
        })
        .await
    }

    async fn update_status_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateProjectStatus,
        expected: Option<i64>,
    ) -> AppResult<ProjectStatus> {
        let name = req
            .name
            .as_deref()
            .map(|n| required_text("name", n, MAX_STATUS_NAME_CHARS))
            .transpose()?;
        let new_color = req
            .color
            .as_deref()
            .map(|c| color("color", c))
            .transpose()?;
        let position = req.position.map(validate_position).transpose()?;
        let (scope, current) = self.authorize_status(who, id, Action::Manage).await?;
        check_version(expected, current.version)?;
        let mut next = current.clone();
        if let Some(name) = name {
            next.name = name;
        }
        if let Some(category) = req.category {
            next.category = category;
        }
        if let Some(c) = new_color {
            next.color = c;
        }
        if let Some(p) = position {
            next.position = p;
        }
        if next == current {
            return Ok(current);
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        let ws = scope.workspace_id;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        put_versioned(
                            &keys::project_status(&ws, id),
                            "project_status",
                            &next,
                            current.version,
                        ),
                        version_conflict(),
                    )
                    .change(status_change(ChangeKind::Updated, &next)))
            })
            .await?;
        Ok(next)
    }

    /// Deletes a status no project uses (409 otherwise: move those projects first).
    pub async fn delete_status(
        &self,
        who: &Principal,
        id: &str,
        if_match: Option<i64>,
    ) -> AppResult<()> {
        retry_unversioned(if_match, || self.delete_status_once(who, id, if_match)).await
    }

    async fn delete_status_once(
        &self,
        who: &Principal,
        id: &str,
        if_match: Option<i64>,
    ) -> AppResult<()> {
        let (scope, current) = self.authorize_status(who, id, Action::Manage).await?;
        check_version(if_match, current.version)?;
        let ws = scope.workspace_id;
        let used = self
            .count_projects(&ws, |p| p.status_id.as_deref() == Some(id))
            .await?;
        if used > 0 {
            return Err(AppError::conflict(format!(
                "this status is used by {used} project(s); move them to another status first"
            )));
        }
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        delete_op(
                            keys::project_status(&ws, id),
                            Some(Condition::VersionEquals(current.version)),
                        ),
                        version_conflict(),
                    )
                    .change(status_change(ChangeKind::Deleted, &current)))
            })
            .await?;
        Ok(())
    }

    async fn count_projects(&self, ws: &str, pred: impl Fn(&Project) -> bool) -> AppResult<usize> {
        let mut n = 0;
        for item in query_all(self.ctx.store.as_ref(), projects_query(ws)).await? {
            if pred(&from_item::<Project>(item)?) {
                n += 1;
            }
        }
        Ok(n)
    }

    // ----- projects ----------------------------------------------------------------------

    /// A workspace's projects, filtered, in id order. Unfiltered pages are full; a filtered
    /// request examines up to `FILTER_WINDOW` projects (one Query), so its page may be short
    /// while `next_cursor` is present.
    pub async fn list(
        &self,
        who: &Principal,
        filter: &ProjectFilter,
        page: &PageParams,
    ) -> AppResult<Paged<Project>> {
        list::list(&self.ctx, who, filter, page).await
    }

    pub async fn create(&self, who: &Principal, req: CreateProject) -> AppResult<ProjectView> {
        let name = required_text("name", &req.name, MAX_PROJECT_NAME_CHARS)?;
        let project_key = validate_project_key("project_key", &req.project_key)?;
        let description = optional_text(
            "description",
            req.description.as_deref(),
            MAX_PROJECT_DESCRIPTION_CHARS,
        )?;
        let target_date = req
            .target_date
            .as_deref()
            .map(|d| validate_date("target_date", d))
            .transpose()?;
        let owner_id = match req.owner_id.as_deref() {
            Some(o) => validate_user_id("owner_id", o)?,
            None => who.user_id.clone(),
        };
        let ws = self
            .ctx
            .access
            .target_workspace(who, req.workspace_id.as_deref())
            .await?;
        let status_id = req
            .status_id
            .as_deref()
            .map(|s| validate_status_id("status_id", s, &ws))
            .transpose()?;

        let named = Named::new(&who.user_id, Some(owner_id.clone()), status_id.clone());
        let (_, got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Contribute, "workspace", &named.keys(&ws))
            .await?;
        let status: Option<ProjectStatus> = named.check(got)?.map(from_item).transpose()?;

        let now = self.ctx.now();
        let project = Project {
            id: ids::new_id(Kind::Project, &ws),
            workspace_id: ws.clone(),
            name,
            project_key,
            description,
            owner_id: Some(owner_id),
            priority: req.priority,
            target_date,
            status_id,
            created_by: who.user_id.clone(),
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        self.commit_create(&who.user_id, &project).await?;
        Ok(ProjectView {
            status_category: status.map(|s| s.category),
            project,
        })
    }

    async fn commit_create(&self, actor: &str, project: &Project) -> AppResult<()> {
        let ws = &project.workspace_id;
        let id = &project.id;
        self.ctx
            .changes
            .commit(ws, actor, &[], |_| {
                let plan = Plan::new(())
                    .op(put_new(&keys::project(ws, id), "project", project))
                    .guarded(
                        claim(project_key_marker(ws, &project.project_key), id),
                        key_taken(),
                    );
                Ok(reference_guards(plan, ws, project, None)
                    .change(project_change(ChangeKind::Created, project)))
            })
            .await?;
        Ok(())
    }

    /// The view of a project; reads its status when `status` was not read along.
    async fn view(&self, project: Project, status: Option<Item>) -> AppResult<ProjectView> {
        let status: Option<ProjectStatus> = match (status, &project.status_id) {
            (Some(item), _) => Some(from_item(item)?),
            (None, Some(s)) => self
                .ctx
                .store
                .get(Table::Main, &keys::project_status(&project.workspace_id, s))
                .await?
                .map(from_item)
                .transpose()?,
            (None, None) => None,
        };
        Ok(ProjectView {
            status_category: status
                .filter(|s| project.status_id.as_deref() == Some(s.id.as_str()))
                .map(|s| s.category),
            project,
        })
    }

    async fn authorize_project(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
        extra: &[Key],
    ) -> AppResult<(Scope, Project, Vec<Option<Item>>)> {
        let got = self
            .ctx
            .access
            .load(who, Kind::Project, id, keys::project, action, extra)
            .await?;
        Ok((got.scope, got.record, got.extra))
    }

    /// One project with its status's category (1 call, 2 with a status).
    pub async fn get(&self, who: &Principal, id: &str) -> AppResult<ProjectView> {
        let (_, project, _) = self
            .authorize_project(who, id, EntityType::Project.read_action(), &[])
            .await?;
        self.view(project, None).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateProject,
        if_match: Option<i64>,
    ) -> AppResult<ProjectView> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateProject,
        expected: Option<i64>,
    ) -> AppResult<ProjectView> {
        let ws = ids::workspace_of(Kind::Project, id)?;
        let patch = ProjectPatch::parse(req, &ws)?;

        // Read the named owner's membership and the named status with the project.
        let named = Named::new(
            &who.user_id,
            patch.owner_id.clone().flatten(),
            patch.status_id.clone().flatten(),
        );
        let (_, current, got) = self
            .authorize_project(who, id, Action::Contribute, &named.keys(&ws))
            .await?;
        let status_item = named.check(got)?;
        check_version(expected, current.version)?;

        let mut next = patch.apply(&current);
        if next == current {
            return self.view(current, status_item).await;
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        self.commit_update(&who.user_id, &ws, &current, &next)
            .await?;
        self.view(next, status_item).await
    }

    async fn commit_update(
        &self,
        actor: &str,
        ws: &str,
        current: &Project,
        next: &Project,
    ) -> AppResult<()> {
        let id = current.id.as_str();
        self.ctx
            .changes
            .commit(ws, actor, &[], |_| {
                let mut plan = Plan::new(()).guarded(
                    put_versioned(&keys::project(ws, id), "project", next, current.version),
                    version_conflict(),
                );
                if next.project_key != current.project_key {
                    plan = plan
                        .guarded(
                            claim(project_key_marker(ws, &next.project_key), id),
                            key_taken(),
                        )
                        .op(delete_op(
                            project_key_marker(ws, &current.project_key),
                            None,
                        ));
                }
                Ok(reference_guards(plan, ws, next, Some(current))
                    .change(project_change(ChangeKind::Updated, next)))
            })
            .await?;
        Ok(())
    }

    /// Deletes a project after clearing `project_id` on its issues
    /// (`areas::issues::references`: a repeat of an interrupted delete continues it).
    pub async fn delete(&self, who: &Principal, id: &str, if_match: Option<i64>) -> AppResult<()> {
        let (scope, mut current, _) = self
            .authorize_project(who, id, Action::Contribute, &[])
            .await?;
        check_version(if_match, current.version)?;
        let ws = scope.workspace_id;
        let key = keys::project(&ws, id);
        let changed = references::changed_while_deleting("project");
        for round in 0.. {
            let marks = references::mark(&self.ctx, std::slice::from_ref(&key), |_| {
                AppError::not_found(Kind::Project.noun())
            })
            .await?;
            let done = async {
                references::detach_project(&self.ctx, &ws, &who.user_id, id).await?;
                self.ctx
                    .changes
                    .commit(&ws, &who.user_id, &[], |_| {
                        Ok(Plan::new(())
                            .guarded(marks[0].delete_op(), changed.clone())
                            .op(delete_op(
                                project_key_marker(&ws, &current.project_key),
                                None,
                            ))
                            .change(project_change(ChangeKind::Deleted, &current)))
                    })
                    .await
            }
            .await;
            match references::settle(&self.ctx, &marks, done).await {
                // Edited while its issues were detached (a whole-record write drops the mark):
                // a stated version no longer matches; without one, again at the latest.
                Err(e) if e == changed && if_match.is_some() => return Err(version_conflict()),
                Err(e) if e == changed && round < 2 => {
                    let fresh = self.ctx.store.get(Table::Main, &key).await?;
                    current = found(fresh, Kind::Project.noun())?;
                }
                other => return other.map(|_| ()),
            }
        }
        unreachable!("the loop returns")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn if_match() {
        assert_eq!(crate::kernel::context::parse_if_match(None).unwrap(), None);
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("\"3\"")).unwrap(),
            Some(3)
        );
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("W/\"4\"")).unwrap(),
            Some(4)
        );
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("5")).unwrap(),
            Some(5)
        );
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("*")).unwrap(),
            None
        );
        assert!(crate::kernel::context::parse_if_match(Some("abc")).is_err());
        assert!(crate::kernel::context::expected_version(Some(1), Some(2)).is_err());
        assert_eq!(
            crate::kernel::context::expected_version(None, Some(2)).unwrap(),
            Some(2)
        );
    }
}
