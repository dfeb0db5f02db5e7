//! What every function's HTTP adapter shares: the response envelope, a JSON body extractor
//! whose failures are 4xx envelopes naming the field, the bearer-token extractor, the
//! request-context middleware (request id, storage-call count) and the fallbacks.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::kernel::access::Principal;
use crate::kernel::input::json::{field_from_message, from_json_value, strict_json};
use crate::state::AppState;
use crate::storage::StorageCallScope;

pub use crate::kernel::input::MAX_BODY_BYTES;

/// HSTS on every response: browsers keep to HTTPS for two years, subdomains included.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000; includeSubDomains";

pub const STORAGE_CALLS_HEADER: &str = "x-storage-calls";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

fn meta() -> Value {
    let request_id = REQUEST_ID.try_with(Clone::clone).ok();
    json!({
        "request_id": request_id,
        "timestamp": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
}

/// A successful response: `{"success": true, "data": ..., "error": null, "meta": {...}}`.
pub struct ApiResponse<T> {
    pub status: StatusCode,
    pub data: T,
}

impl<T> ApiResponse<T> {
    pub fn ok(data: T) -> Self {
        Self {
            status: StatusCode::OK,
            data,
        }
    }

    pub fn with_status(status: StatusCode, data: T) -> Self {
        Self { status, data }
    }
}

/// The success envelope as written: serialised straight from `data`, without building a
/// `serde_json::Value` tree of it first (a page of 50 issues is ~40 KB of JSON).
#[derive(Serialize)]
struct SuccessBody<'a, T> {
    success: bool,
    data: &'a T,
    error: (),
    meta: Value,
}

impl<T: Serialize> IntoResponse for ApiResponse<T> {
    fn into_response(self) -> Response {
        let body = SuccessBody {
            success: true,
            data: &self.data,
            error: (),
            meta: meta(),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// A failed response: `{"success": false, "data": null, "error": ..., "meta": {...}}`, with
/// the status of the error's code. `retry_after` goes to the `Retry-After` header, not the body.
impl IntoResponse for ErrorBody {
    fn into_response(mut self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after.take();
        let body = json!({"success": false, "data": null, "error": self, "meta": meta()});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        ErrorBody::from(self).into_response()
    }
}

pub type ApiResult<T> = Result<ApiResponse<T>, AppError>;

/// A JSON body, strictly parsed: malformed JSON, a missing or unknown field, a wrong type,
/// a non-JSON content type or an oversize body are 4xx envelopes (naming the field where
/// there is one), never a 500.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    "request body must be application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request body exceeds {MAX_BODY_BYTES} bytes"),
                )
            } else {
                AppError::validation("body", "could not read the request body")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(AppError::validation(
                "body",
                "a JSON request body is required",
            ));
        }
        let value = strict_json(&bytes).map_err(|e| e.into_error(""))?;
        // Every request body is an object; serde would otherwise read a struct from an array.
        if !value.is_object() {
            return Err(AppError::validation("body", "must be a JSON object"));
        }
        from_json_value(value).map(Json)
    }
}

/// Query parameters, strictly parsed: a bad value is a 400 naming the parameter.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let raw = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.inner().to_string();
                let field = if path.is_empty() || path == "." {
                    field_from_message(&message).unwrap_or_else(|| "query".into())
                } else {
                    path
                };
                AppError::validation(field, format!("invalid query parameter: {message}"))
            })
    }
}

/// The caller, from `Authorization: Bearer <access token or API token>`. An API token's
/// per-token rate limit is taken here, so every route that accepts a caller counts it; its
/// scopes and restriction are checked where every request is authorized (`Access`).
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| AppError::unauthorized("missing bearer token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AppError::unauthorized("malformed authorization header"))?;
        let who = state.auth.authenticate(token)?;
        if let Some(proof) = &who.token {
            state.limits.check_api_token(&proof.hash).await?;
        }
        Ok(Auth(who))
    }
}

/// The caller's network address, as the network saw it: API Gateway's source IP (HTTP API
/// v2 `requestContext.http.sourceIp`, REST v1 and WebSocket `requestContext.identity.sourceIp`)
/// or, in the shim, the socket peer. Never a client-supplied header such as
/// `X-Forwarded-For`, which any caller can set. `None` when neither is available.
pub struct ClientIp(pub Option<IpAddr>);

/// The address `ClientIp` extracts, from a request's extensions.
pub fn client_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    use lambda_http::request::RequestContext;
    let from_gateway = match extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.as_deref(),
        Some(RequestContext::WebSocket(ctx)) => ctx.identity.source_ip.as_deref(),
        _ => None,
    };
    if let Some(ip) = from_gateway.and_then(|s| s.trim().parse().ok()) {
        return Some(ip);
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

/// Request id, storage-call count and an access log line for each request.
async fn request_context(
    axum::extract::State(expose_calls): axum::extract::State<bool>,
    req: Request,
    next: Next,
) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let run = crate::storage::RequestDeadline::begin(next.run(req));
    let (mut response, calls) =
        StorageCallScope::run(REQUEST_ID.scope(request_id.clone(), run)).await;
    let elapsed: Duration = started.elapsed();
    tracing::info!(
        %method, %path, status = response.status().as_u16(), storage_calls = calls,
        elapsed_us = elapsed.as_micros() as u64, request_id = %request_id, "request"
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    if expose_calls {
        headers.insert(
            HeaderName::from_static(STORAGE_CALLS_HEADER),
            HeaderValue::from(calls),
        );
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
    );
    response
}

/// Request headers a browser may send cross-origin (the template's HTTP API CORS lists the
/// same; a test compares them).
pub const CORS_ALLOW_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    REQUEST_ID_HEADER,
];

/// Response headers a cross-origin script may read.
pub const CORS_EXPOSE_HEADERS: [&str; 3] = [
    REQUEST_ID_HEADER,
    "retry-after",
    crate::idempotency::REPLAYED_HEADER,
];

/// CORS from the configured allowlist: a listed origin gets the CORS headers (and preflights
/// an answer), any other origin gets none, so browsers refuse it.
pub fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(CORS_ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers(CORS_EXPOSE_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(600))
}

async fn not_found(method: Method, uri: Uri) -> AppError {
    AppError::new(
        ErrorCode::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Wraps the routes of one function (or, in the shim, of all of them) into the served app:
/// body limit, JSON 404/405 fallbacks, the body read whole within its deadline (408 past it),
/// CORS, request context (and its security headers, which therefore also reach preflight
/// answers and every error).
pub fn serve_routes(routes: Router, state: &AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::idempotency,
        ))
        .layer(middleware::from_fn_with_state(
            state.config.timeouts.body_read,
            crate::body_read::read_body_within,
        ))
        .layer(cors_layer(&state.config.cors_origins))
        .layer(middleware::from_fn_with_state(
            state.config.expose_storage_calls,
            request_context,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_comes_from_the_gateway_or_the_socket_never_from_headers() {
        use lambda_http::aws_lambda_events::apigw::{
            ApiGatewayProxyRequestContext, ApiGatewayV2httpRequestContext,
            ApiGatewayWebsocketProxyRequestContext,
        };
        use lambda_http::request::RequestContext;

        let ip = |ext: http::Extensions| client_ip(&ext);
        let mut v2 = ApiGatewayV2httpRequestContext::default();
        v2.http.source_ip = Some("203.0.113.7".into());
        let mut v1 = ApiGatewayProxyRequestContext::default();
        v1.identity.source_ip = Some("198.51.100.1".into());
        let mut wsc = ApiGatewayWebsocketProxyRequestContext::default();
        wsc.identity.source_ip = Some("2001:db8::1".into());
        let peer: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        let cases: Vec<(RequestContext, &str)> = vec![
            (RequestContext::ApiGatewayV2(v2), "203.0.113.7"),
            (RequestContext::ApiGatewayV1(v1), "198.51.100.1"),
            (RequestContext::WebSocket(wsc), "2001:db8::1"),
        ];
        for (ctx, want) in cases {
            let mut ext = http::Extensions::new();
            ext.insert(ctx);
            // The gateway's address wins over a socket peer (the Lambda runtime's).
            ext.insert(ConnectInfo(peer));
            assert_eq!(ip(ext), Some(want.parse().unwrap()));
        }
        let mut ext = http::Extensions::new();
        ext.insert(ConnectInfo(peer));
        assert_eq!(ip(ext), Some(peer.ip()));
        let mapped: SocketAddr = "[::ffff:192.0.2.10]:1".parse().unwrap();
        let mut ext = http::Extensions::new();
        ext.insert(ConnectInfo(mapped));
        assert_eq!(ip(ext), Some("192.0.2.10".parse().unwrap()));
        assert_eq!(ip(http::Extensions::new()), None);

        // Headers are never consulted.
        let (mut parts, ()) = http::Request::builder()
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-real-ip", "10.0.0.2")
            .header("forwarded", "for=10.0.0.3")
            .body(())
            .unwrap()
            .into_parts();
        let ClientIp(found) =
            futures::executor::block_on(ClientIp::from_request_parts(&mut parts, &())).unwrap();
        assert_eq!(found, None);
    }
}

/// OpenAPI description of the response envelope (the shape `ApiResponse` and `AppError`
/// produce).
pub mod schema {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    use utoipa::{IntoResponses, Modify, ToSchema};

    pub use crate::error::ErrorBody;

    #[derive(ToSchema)]
    pub struct Meta {
        pub request_id: Option<String>,
        pub timestamp: String,
    }

    /// A successful response.
    #[derive(ToSchema)]
    pub struct Envelope<T> {
        pub success: bool,
        pub data: T,
        #[schema(value_type = Option<Object>)]
        pub error: Option<()>,
        pub meta: Meta,
    }

    /// A failed response.
    #[derive(ToSchema)]
    pub struct ErrorEnvelope {
        pub success: bool,
        #[schema(value_type = Option<Object>)]
        pub data: Option<()>,
        pub error: ErrorBody,
        pub meta: Meta,
    }

    /// The errors any endpoint may answer with.
    #[derive(IntoResponses)]
    #[allow(dead_code)]
    pub enum CommonErrors {
        /// Invalid input; `error.field` names it.
        #[response(status = 400)]
        Validation(ErrorEnvelope),
        /// Missing, invalid or revoked credentials.
        #[response(status = 401)]
        Unauthorized(ErrorEnvelope),
        /// The caller's role does not allow this.
        #[response(status = 403)]
        Forbidden(ErrorEnvelope),
        /// No such resource visible to the caller.
        #[response(status = 404)]
        NotFound(ErrorEnvelope),
        /// Conflicts with the current state (taken key, concurrent change).
        #[response(status = 409)]
        Conflict(ErrorEnvelope),
        /// Well-formed, but breaks a rule between fields; `error.field` names one.
        #[response(status = 422)]
        Unprocessable(ErrorEnvelope),
        /// Body over 1 MiB.
        #[response(status = 413)]
        PayloadTooLarge(ErrorEnvelope),
        /// Body not JSON.
        #[response(status = 415)]
        UnsupportedMediaType(ErrorEnvelope),
        /// Too many requests (rate limit); see `Retry-After`.
        #[response(status = 429)]
        RateLimited(ErrorEnvelope),
        /// Storage temporarily unavailable; see `Retry-After`.
        #[response(status = 503)]
        Unavailable(ErrorEnvelope),
    }

    /// Adds the two bearer schemes: `bearer` (a session's JWT access token, every route)
    /// and `api_token` (a personal API token `mtm_pat_...`, listed by the routes that accept
    /// one: every route outside `/auth/*`).
    pub struct BearerAuth;

    impl Modify for BearerAuth {
        fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
            let components = openapi.components.get_or_insert_with(Default::default);
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
            components.add_security_scheme(
                "api_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("mtm_pat_...")
                        .description(Some(
                            "Personal API token (POST /auth/tokens): `read` and/or `write` \
                             scope, optionally restricted to one workspace",
                        ))
                        .build(),
                ),
            );
        }
    }
}

/// The app one function serves: its OpenAPI-described routes with state, body limit,
/// fallbacks and request context (the same wrapping the shim applies to all routes).
pub fn function_app(
    routes: utoipa_axum::router::OpenApiRouter<AppState>,
    state: AppState,
) -> Router {
    let (router, _) = routes.split_for_parts();
    serve_routes(router.with_state(state.clone()), &state)
}

/// The version an `If-Match` header expects (`3`, `"3"`, `W/"3"`; `*` or absent: any).
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let raw = match parts.headers.get(header::IF_MATCH) {
            None => None,
            // Not `to_str`: header values may carry tabs around the tag.
            Some(v) => Some(std::str::from_utf8(v.as_bytes()).map_err(|_| {
                AppError::validation("If-Match", "must be the record's version, e.g. \"3\"")
            })?),
        };
        crate::kernel::context::parse_if_match(raw).map(IfMatch)
    }
}
