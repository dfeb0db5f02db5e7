//! Business logic, once, for every adapter (REST functions and WebSocket commands).

pub mod access;
pub mod auth;
pub mod changes;
pub mod comments;
pub mod context;
pub mod cycles;
pub mod invitations;
pub mod issues;
pub mod labels;
pub mod pagination;
pub mod projects;
pub mod references;
pub mod teams;
pub mod workflows;
pub mod workspaces;
