//! Lambda entry point of the comments function.

use momentum_shared::AppState;
use momentum_shared::config::{AppConfig, Env, Mode};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = AppConfig::from_env(&Env::process(), Mode::Production)?;
    let state = AppState::from_config(config).await?;
    lambda_http::run(comments::app(state)).await
}
