//! momentum-shared: domain types and rules, services, the storage port and its adapters,
//! auth (argon2id, JWT), the error envelope and the HTTP adapter helpers.

pub mod areas;
pub mod auth;
pub mod aws;
pub mod body_read;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod kernel;
pub mod openapi;
pub mod ratelimit;
pub mod state;
pub mod storage;

pub use error::{AppError, AppResult, ErrorCode};

pub use state::AppState;
pub mod realtime;
