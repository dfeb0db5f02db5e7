//! Projects and project statuses (see docs/data-model.md, "Projects and comments").
//!
//! Project statuses are workspace structure (admins manage them); projects are work (members
//! create and change them). A project's key is unique per workspace through a marker item
//! claimed in the same transaction as the project.

mod input;
mod layout;
mod list;
mod model;
mod service;

pub use input::{
    MAX_POSITION, MAX_PROJECT_DESCRIPTION_CHARS, MAX_PROJECT_KEY_CHARS, MAX_PROJECT_NAME_CHARS,
    MAX_STATUS_NAME_CHARS, validate_date, validate_project_key,
};
pub use layout::{plan_project_statuses, project_key_marker};
pub use list::FILTER_WINDOW;
pub use model::{
    CreateProject, CreateProjectStatus, DEFAULT_PROJECT_STATUSES, Priority, Project, ProjectFilter,
    ProjectStatus, ProjectStatusCategory, ProjectView, StatusListParams, UpdateProject,
    UpdateProjectStatus, default_project_statuses, non_null,
};
pub use service::ProjectService;
