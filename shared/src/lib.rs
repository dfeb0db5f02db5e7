//! momentum-shared: domain types and rules, services, the storage port and its adapters,
//! auth (argon2id, JWT), the error envelope and the HTTP adapter helpers.

pub mod auth;
pub mod body_read;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod input;
pub mod openapi;
pub mod ratelimit;
pub mod services;
pub mod state;
pub mod storage;

pub use error::{AppError, AppResult, ErrorCode};

/// Every binary that links this crate (each Lambda, the shim, tests, benchmarks) allocates
/// with mimalloc: profiles of list requests spent ~40% in glibc malloc/free (each page is
/// 50 parsed JSON records), and glibc's per-thread arenas kept argon2's 19 MiB blocks
/// after a burst of logins (hundreds of MiB resident).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use state::AppState;
pub mod realtime;
