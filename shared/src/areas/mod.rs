//! The areas of the product, one folder each: records (`model`), rules and commits
//! (`service`), and where they grow, listing (`list`) and storage layout (`layout`). An area
//! imports the kernel and, where a rule spans areas, another area's service; never `http`.

pub mod auth;
pub mod comments;
pub mod cycles;
pub mod invitations;
pub mod issues;
pub mod labels;
pub mod notifications;
pub mod projects;
pub mod push;
pub mod teams;
pub mod tokens;
pub mod webhooks;
pub mod workflows;
pub mod workspaces;
