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

use crate::error::{AppError, ErrorCode};
use crate::services::auth::Principal;
use crate::state::AppState;
use crate::storage::StorageCallScope;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        let body = json!({"success": false, "data": null, "error": error, "meta": meta()});
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
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

pub type ApiResult<T> = Result<ApiResponse<T>, AppError>;

/// A JSON body, strictly parsed: malformed JSON, a missing or unknown field, a wrong type,
/// a non-JSON content type or an oversize body are 4xx envelopes (naming the field where
/// there is one), never a 500.
pub struct Json<T>(pub T);

fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// Turns a serde error at `path` into a validation error naming the field.
fn body_error(path: &str, err: &serde_json::Error) -> AppError {
    use serde_json::error::Category;
    let message = err.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            AppError::validation("body", format!("malformed JSON: {message}"))
        }
        Category::Data => {
            // A path starting with an index means the body itself is an array.
            let at_root = path.is_empty() || path == "." || path.starts_with('[');
            // serde's path ends at the unknown field itself, but at the parent of a missing
            // one, whose name only the message carries.
            let missing = message
                .starts_with("missing field")
                .then(|| field_from_message(&message))
                .flatten();
            let field = match (missing, at_root) {
                (Some(name), true) => name,
                (Some(name), false) => format!("{path}.{name}"),
                (None, false) => path.to_owned(),
                (None, true) => "body".to_owned(),
            };
            AppError::validation(field, message)
        }
    }
}

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
        let mut value = strict_json(&bytes).map_err(|e| e.into_error(""))?;
        // Every request body is an object; serde would otherwise read a struct from an array.
        if !value.is_object() {
            return Err(AppError::validation("body", "must be a JSON object"));
        }
        integral_floats_as_integers(&mut value);
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

/// The caller, from `Authorization: Bearer <access token>`.
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
        state.auth.authenticate(token).map(Auth)
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

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        nested: Option<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn parse(body: &str) -> AppError {
        let mut de = serde_json::Deserializer::from_str(body);
        let e = serde_path_to_error::deserialize::<_, Body>(&mut de).unwrap_err();
        body_error(&e.path().to_string(), e.inner())
    }

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

    #[test]
    fn errors_name_the_field() {
        assert_eq!(parse("{}").field.as_deref(), Some("email"));
        assert_eq!(
            parse(r#"{"email":"a","admin":true}"#).field.as_deref(),
            Some("admin")
        );
        assert_eq!(parse(r#"{"email":5}"#).field.as_deref(), Some("email"));
        assert_eq!(
            parse(r#"{"email":"a","nested":{"count":-1}}"#)
                .field
                .as_deref(),
            Some("nested.count")
        );
        let syntax = parse(r#"{"email": "#);
        assert_eq!(syntax.field.as_deref(), Some("body"));
        assert!(syntax.message.starts_with("malformed JSON"));
    }

    #[test]
    fn duplicate_keys_are_refused_by_path() {
        let dup = |text: &str| match strict_json(text.as_bytes()) {
            Err(StrictJsonError::DuplicateKey(path)) => path,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(dup(r#"{"bio":5,"bio":"ok"}"#), "bio");
        assert_eq!(dup(r#"{"a":{"b":1,"c":{"d":1,"d":2}}}"#), "a.c.d");
        assert_eq!(
            dup(r#"{"labels":[{"id":"x"},{"id":"y","id":"y"}]}"#),
            "labels[1].id"
        );
        assert_eq!(dup(r#"[{"k":1,"k":1}]"#), "[0].k");
        // Equal keys in different objects, and escapes that spell another key, are fine.
        let ok = r#"{"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":2}],"k\u0031":1,"k1x":2}"#;
        assert_eq!(
            strict_json(ok.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(ok).unwrap()
        );
        // An escape that spells the same key is the same key.
        assert_eq!(dup(r#"{"bio":1,"b\u0069o":2}"#), "bio");
    }

    #[test]
    fn strict_json_reads_what_serde_json_reads() {
        for text in [
            r#"{"n":-1,"u":18446744073709551615,"f":1.5,"e":1e3,"s":"\u00e9\n","t":true,"z":null,"a":[],"o":{}}"#,
            "[1,[2,[3]]]",
            "\"x\"",
            " 7 ",
        ] {
            assert_eq!(
                strict_json(text.as_bytes()).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
        for bad in [r#"{"a":1"#, r#"{"a":1} x"#, "", r#"{"a":01}"#] {
            let e = strict_json(bad.as_bytes()).unwrap_err().into_error("");
            assert_eq!(e.field.as_deref(), Some("body"), "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            strict_json(deep.as_bytes()).is_err(),
            "serde_json's depth limit holds"
        );
    }
}

/// OpenAPI description of the response envelope (the shape `ApiResponse` and `AppError`
/// produce).
pub mod schema {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    use utoipa::{IntoResponses, Modify, ToSchema};

    #[derive(ToSchema)]
    pub struct Meta {
        pub request_id: Option<String>,
        pub timestamp: String,
    }

    #[derive(ToSchema)]
    pub struct ErrorBody {
        /// Stable machine-readable code, e.g. `VALIDATION_ERROR`.
        pub code: String,
        pub message: String,
        /// The offending input field, for validation errors.
        pub field: Option<String>,
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

    /// Adds the bearer scheme used by `security(("bearer" = []))`.
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

/// JSON has one number type: `3.0` is the integer 3 (as JSON Schema says), so an integral
/// float is accepted wherever an integer is expected. Integer-valued fields deserialise from
/// the rewritten value; float-valued fields accept integers anyway.
fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Parses a JSON value (a WebSocket command's `data`) with the same strictness and field
/// naming as request bodies.
pub fn from_json_value<T: DeserializeOwned>(mut value: Value) -> Result<T, AppError> {
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        body_error(&path, e.inner())
    })
}

/// Why JSON text was refused by [`strict_json`].
#[derive(Debug)]
pub enum StrictJsonError {
    /// An object named a key twice; the key's path (`bio`, `labels[0].name`).
    DuplicateKey(String),
    Invalid(serde_json::Error),
}

impl StrictJsonError {
    /// The 400 a request gets, naming a duplicate key by its path with `prefix` stripped
    /// (a WebSocket command names the fields of its `data` as REST names body fields).
    pub fn into_error(self, prefix: &str) -> AppError {
        match self {
            StrictJsonError::DuplicateKey(path) => {
                let field = path.strip_prefix(prefix).unwrap_or(&path).to_owned();
                AppError::validation(
                    field,
                    "appears more than once in its object; send each key once",
                )
            }
            StrictJsonError::Invalid(e) => body_error("", &e),
        }
    }
}

/// Parses JSON text, refusing an object with a duplicate key at any depth. serde_json keeps
/// the last of two equal keys, so `{"bio": 5, "bio": "ok"}` would pass validation on a value
/// nobody checked; and another parser (a proxy, a WAF, the client's logs) may keep the first.
/// It builds the value in the same single pass serde_json's own would, plus one map lookup
/// per key.
pub fn strict_json(text: &[u8]) -> Result<Value, StrictJsonError> {
    use serde::de::DeserializeSeed;
    let duplicate = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = CheckedValue {
        path: JsonPath::Root,
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(StrictJsonError::DuplicateKey(path)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Invalid(e)),
    }
}

/// Where a value sits in the document, rendered only when a duplicate is found.
#[derive(Clone, Copy)]
enum JsonPath<'a> {
    Root,
    Key(&'a JsonPath<'a>, &'a str),
    Index(&'a JsonPath<'a>, usize),
}

impl JsonPath<'_> {
    /// The path as `serde_path_to_error` writes it, so every 400 names fields alike.
    fn render(&self, out: &mut String) {
        match self {
            JsonPath::Root => {}
            JsonPath::Key(parent, key) => {
                parent.render(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            JsonPath::Index(parent, i) => {
                parent.render(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

/// A `serde_json::Value` built while checking each object's keys; the first duplicate's path
/// goes to `duplicate` (the error type of a generic deserializer cannot carry it).
struct CheckedValue<'a> {
    path: JsonPath<'a>,
    duplicate: &'a std::cell::RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for CheckedValue<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CheckedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(CheckedValue {
            path: JsonPath::Index(&self.path, items.len()),
            duplicate: self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(CheckedValue {
                path: JsonPath::Key(&self.path, &key),
                duplicate: self.duplicate,
            })?;
            match object.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    let mut path = String::new();
                    JsonPath::Key(&self.path, slot.key()).render(&mut path);
                    *self.duplicate.borrow_mut() = Some(path);
                    return Err(A::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(object))
    }
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
        crate::services::context::parse_if_match(raw).map(IfMatch)
    }
}
