//! Lambda entry point of the auth function.

use momentum_shared::AppState;
use momentum_shared::config::{AppConfig, Env, Mode};

/// mimalloc, set here in the binary (a library never sets the allocator): with glibc malloc,
/// list requests spent ~40 % of their CPU in malloc/free and per-thread arenas kept argon2's
/// 19 MiB blocks after a burst of logins (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = AppConfig::from_env(&Env::process(), Mode::Production)?;
    let state = AppState::from_config(config).await?;
    lambda_http::run(auth::app(state)).await
}
