//! The auth function: routes of `/auth/*`. Handlers parse, call one `AuthService` method and
//! map the result; the rules live in `momentum_shared::areas::auth`.

pub mod notifications;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::auth::Profile;
use momentum_shared::areas::auth::{
    ChangePasswordRequest, LoginRequest, LoginResponse, RefreshRequest, RegisterAccepted,
    RegisterRequest, TokenPair, UpdateProfileRequest,
};
use momentum_shared::areas::push::{DeletedDevice, Device, RegisterDevice};
use momentum_shared::areas::tokens::{ApiToken, CreateApiToken, CreatedApiToken, RevokedApiToken};
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, ClientIp, Json};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The function's routes with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(profile, update_profile))
        .routes(routes!(change_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_devices, register_device))
        .routes(routes!(delete_device))
        .merge(notifications::routes())
}

/// The app a Lambda serves: the routes plus body limit, fallbacks and request context.
pub fn app(state: AppState) -> Router {
    momentum_shared::http::function_app(routes(), state)
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: bool,
}

/// Register an account. The answer is the same whether or not the email was taken.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 202, body = Envelope<RegisterAccepted>), CommonErrors))]
async fn register(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<RegisterAccepted> {
    let accepted = s.auth.register(ip, req).await?;
    Ok(ApiResponse::with_status(StatusCode::ACCEPTED, accepted))
}

/// Log in with email and password: an access token and a refresh token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Envelope<LoginResponse>), CommonErrors))]
async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<LoginResponse> {
    Ok(ApiResponse::ok(s.auth.login(ip, req).await?))
}

/// Rotate a refresh token. A spent token presented again revokes its session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Envelope<TokenPair>), CommonErrors))]
async fn refresh(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<TokenPair> {
    Ok(ApiResponse::ok(s.auth.refresh(ip, req).await?))
}

/// Revoke the caller's session.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Revoked>), CommonErrors))]
async fn logout(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Revoked> {
    s.auth.logout(&who).await?;
    Ok(ApiResponse::ok(Revoked { revoked: true }))
}

/// The caller's profile.
#[utoipa::path(get, path = "/auth/profile", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Profile>), CommonErrors))]
async fn profile(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Profile> {
    Ok(ApiResponse::ok(s.auth.profile(&who).await?))
}

/// Update the caller's profile; absent fields stay, `null` clears.
#[utoipa::path(put, path = "/auth/profile", tag = "auth", security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses((status = 200, body = Envelope<Profile>), CommonErrors))]
async fn update_profile(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<UpdateProfileRequest>,
) -> ApiResult<Profile> {
    Ok(ApiResponse::ok(s.auth.update_profile(&who, req).await?))
}

/// Change the password: every session is revoked, the caller gets a new one.
#[utoipa::path(put, path = "/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 200, body = Envelope<TokenPair>), CommonErrors))]
async fn change_password(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<ChangePasswordRequest>,
) -> ApiResult<TokenPair> {
    Ok(ApiResponse::ok(s.auth.change_password(&who, req).await?))
}

/// Create a personal API token. The token is in this answer only; it is stored hashed.
/// Needs a signed-in session (an API token is refused).
#[utoipa::path(post, path = "/auth/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = CreateApiToken,
    responses((status = 201, body = Envelope<CreatedApiToken>), CommonErrors))]
async fn create_token(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateApiToken>,
) -> ApiResult<CreatedApiToken> {
    let created = s.tokens.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// The caller's API tokens (never their secrets).
#[utoipa::path(get, path = "/auth/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Vec<ApiToken>>), CommonErrors))]
async fn list_tokens(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Vec<ApiToken>> {
    Ok(ApiResponse::ok(s.tokens.list(&who).await?))
}

/// Delete one of the caller's API tokens: the next request with it is refused.
#[utoipa::path(delete, path = "/auth/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = String, Path, description = "token id (32 hex characters)")),
    responses((status = 200, body = Envelope<RevokedApiToken>), CommonErrors))]
async fn revoke_token(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<RevokedApiToken> {
    Ok(ApiResponse::ok(s.tokens.revoke(&who, &id).await?))
}

/// Register a push device of the signed-in session (APNs or FCM). A token belongs to one
/// user at a time: registering it again moves it here. Logging this session out deletes
/// the device. Needs a signed-in session (an API token is refused).
#[utoipa::path(post, path = "/auth/devices", tag = "auth", security(("bearer" = [])),
    request_body = RegisterDevice,
    responses((status = 201, body = Envelope<Device>), CommonErrors))]
async fn register_device(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<RegisterDevice>,
) -> ApiResult<Device> {
    let device = s.devices.register(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, device))
}

/// The caller's push devices.
#[utoipa::path(get, path = "/auth/devices", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Vec<Device>>), CommonErrors))]
async fn list_devices(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Vec<Device>> {
    Ok(ApiResponse::ok(s.devices.list(&who).await?))
}

/// Delete one of the caller's push devices: it gets no more pushes.
#[utoipa::path(delete, path = "/auth/devices/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, description = "device id (32 hex characters)")),
    responses((status = 200, body = Envelope<DeletedDevice>), CommonErrors))]
async fn delete_device(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<DeletedDevice> {
    Ok(ApiResponse::ok(s.devices.delete(&who, &id).await?))
}
