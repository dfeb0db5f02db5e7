//! The auth function: routes of `/auth/*`. Handlers parse, call one `AuthService` method and
//! map the result; the rules live in `momentum_shared::services::auth`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use momentum_shared::AppState;
use momentum_shared::domain::user::Profile;
use momentum_shared::http::{ApiResponse, ApiResult, Auth, Json};
use momentum_shared::services::auth::{
    ChangePasswordRequest, LoginRequest, LoginResponse, RefreshRequest, RegisterAccepted,
    RegisterRequest, TokenPair, UpdateProfileRequest,
};
use serde_json::{Value, json};

/// The function's routes (without fallbacks: `serve_routes` adds them once per app).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/profile", get(profile).put(update_profile))
        .route("/auth/password", put(change_password))
        .with_state(state)
}

/// The app a Lambda serves: the routes plus body limit, fallbacks and request context.
pub fn app(state: AppState) -> Router {
    let expose = state.config.expose_storage_calls;
    momentum_shared::http::serve_routes(router(state), expose)
}

async fn register(
    State(s): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<RegisterAccepted> {
    let accepted = s.auth.register(req).await?;
    Ok(ApiResponse::with_status(StatusCode::ACCEPTED, accepted))
}

async fn login(
    State(s): State<AppState>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<LoginResponse> {
    Ok(ApiResponse::ok(s.auth.login(req).await?))
}

async fn refresh(
    State(s): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<TokenPair> {
    Ok(ApiResponse::ok(s.auth.refresh(req).await?))
}

async fn logout(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Value> {
    s.auth.logout(&who).await?;
    Ok(ApiResponse::ok(json!({"revoked": true})))
}

async fn profile(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Profile> {
    Ok(ApiResponse::ok(s.auth.profile(&who).await?))
}

async fn update_profile(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<UpdateProfileRequest>,
) -> ApiResult<Profile> {
    Ok(ApiResponse::ok(s.auth.update_profile(&who, req).await?))
}

async fn change_password(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<ChangePasswordRequest>,
) -> ApiResult<TokenPair> {
    Ok(ApiResponse::ok(s.auth.change_password(&who, req).await?))
}
