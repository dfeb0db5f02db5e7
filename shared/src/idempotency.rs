//! `Idempotency-Key` on POST requests: the same key with the same request answers the stored
//! response without doing the work again; the same key with a different request is 422.
//!
//! A key is claimed (a conditional put) before the handler runs, so two concurrent requests
//! with one key cannot both create a resource: the second sees the claim and gets 409 until
//! the first finishes, then the replay. Failed requests release the key so a client may
//! retry. Keys are scoped per user and kept 24 hours.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{AppError, ErrorCode};
use crate::kernel::input::MAX_BODY_BYTES;
use crate::state::AppState;
use crate::storage::{Condition, Item, Key, Table, WriteOp};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const TTL_SECS: u64 = 24 * 3600;
use crate::kernel::limits::MAX_IDEMPOTENCY_KEY_LEN as MAX_KEY_LEN;
/// Responses larger than this are not stored (the key is released instead).
use crate::kernel::limits::MAX_IDEMPOTENT_BODY as MAX_STORED_BODY;

fn record_key(user_id: &str, key: &str) -> Key {
    Key::new(format!("IDEMP#{user_id}#{key}"), "IDEMP")
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The middleware: only POSTs that carry the header and a valid bearer token take part.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw_key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match valid_key(raw_key) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    // Unauthenticated requests are answered by the handler (401, or public routes).
    let Some(user_id) = bearer_user(&state, &req) else {
        return next.run(req).await;
    };

    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body exceeds {MAX_BODY_BYTES} bytes"),
            )
            .into_response();
        }
    };
    let print = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let rkey = record_key(&user_id, &key);
    let now = state.ctx.clock.epoch_secs();

    let mut claim = record(&rkey, &print, "pending");
    claim.insert("ttl".into(), (now + TTL_SECS).into());
    match state
        .store
        .transact(vec![WriteOp::put_new(Table::Main, claim)])
        .await
    {
        Ok(()) => {}
        Err(e) if e.condition_failed_at(0) => {
            return answer_existing(&state, &rkey, &print, now).await;
        }
        Err(e) => return AppError::from(e).into_response(),
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (rparts, rbody) = response.into_parts();
    let body = to_bytes(rbody, usize::MAX).await.unwrap_or_default();
    let write = settle(rkey, &print, rparts.status, &body, now);
    if let Err(e) = state.store.transact(vec![write]).await {
        tracing::warn!(error = %e, "could not record the idempotent response");
    }
    Response::from_parts(rparts, Body::from(body))
}

/// The header's key: 1..=MAX_KEY_LEN visible ASCII characters.
fn valid_key(raw: &HeaderValue) -> Result<String, AppError> {
    match raw.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(k.to_owned())
        }
        _ => Err(AppError::validation(
            "Idempotency-Key",
            format!("must be 1-{MAX_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// Whose keys these are: the user of a valid JWT; for an API token, the user and the token's
/// hash. A token is only parsed here (it is verified where the request is authorized), so
/// its keys are its own: a forged token naming someone's user id never meets their records.
fn bearer_user(state: &AppState, req: &Request) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .and_then(|t| state.auth.authenticate(t.trim()).ok())
        .map(|p| match p.token {
            Some(proof) => format!("{}#{}", p.user_id, proof.hash),
            None => p.user_id,
        })
}

/// The key's record in `state` (`pending` while the handler runs, then `done`).
fn record(rkey: &Key, print: &str, state: &str) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), rkey.pk.clone().into());
    item.insert("sk".into(), rkey.sk.clone().into());
    item.insert("entity".into(), "idempotency".into());
    item.insert("fingerprint".into(), print.into());
    item.insert("state".into(), state.into());
    item
}

/// After the handler: a success small enough is stored for replays; anything else releases
/// the key (if this request still holds it) so the client may retry.
fn settle(rkey: Key, print: &str, status: StatusCode, body: &[u8], now: u64) -> WriteOp {
    if status.is_success() && body.len() <= MAX_STORED_BODY {
        let mut done = record(&rkey, print, "done");
        done.insert("status".into(), status.as_u16().into());
        done.insert(
            "body".into(),
            String::from_utf8_lossy(body).into_owned().into(),
        );
        done.insert("ttl".into(), (now + TTL_SECS).into());
        WriteOp::put(Table::Main, done)
    } else {
        WriteOp::Delete {
            table: Table::Main,
            key: rkey,
            condition: Some(Condition::AttrEquals("state".into(), json!("pending"))),
        }
    }
}

async fn answer_existing(state: &AppState, rkey: &Key, print: &str, now: u64) -> Response {
    let existing = match state.store.get(Table::Main, rkey).await {
        Ok(Some(item)) => item,
        Ok(None) => {
            return AppError::conflict("a request with this Idempotency-Key just finished; retry")
                .into_response();
        }
        Err(e) => return AppError::from(e).into_response(),
    };
    let expired = existing
        .get("ttl")
        .and_then(Value::as_u64)
        .is_some_and(|t| t <= now);
    if existing.get("fingerprint").and_then(Value::as_str) != Some(print) && !expired {
        return AppError::new(
            ErrorCode::UnprocessableEntity,
            "this Idempotency-Key was used with a different request",
        )
        .into_response();
    }
    match existing.get("state").and_then(Value::as_str) {
        Some("done") => {
            let status = existing
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| StatusCode::from_u16(s as u16).ok())
                .unwrap_or(StatusCode::OK);
            let body = existing
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            response
        }
        _ => {
            AppError::conflict("a request with this Idempotency-Key is in progress; retry shortly")
                .into_response()
        }
    }
}
