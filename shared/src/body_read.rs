//! Reads a request body whole, within a deadline, before anything else looks at it
//! (idempotency, extractors). A client that does not finish its body in time gets 408
//! `REQUEST_TIMEOUT` and the connection is closed, so a slow or stalled sender never holds a
//! request open. Behind API Gateway the body arrives whole and this reads it at once.

use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;

use crate::error::{AppError, ErrorCode};
use crate::kernel::input::MAX_BODY_BYTES;

/// The middleware; its state is the deadline (`AppConfig::timeouts.body_read`).
///
/// Reads at most `MAX_BODY_BYTES + 1` bytes: a longer body is passed on cut there, so the
/// layers inside answer 413 as they would have, without this one reading the rest.
pub async fn read_body_within(
    State(deadline): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let expected = body.size_hint().exact().unwrap_or(0) as usize;
    let mut buf = BytesMut::with_capacity(expected.min(MAX_BODY_BYTES + 1));
    let mut stream = body.into_data_stream();
    let read = tokio::time::timeout(deadline, async {
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
            if buf.len() > MAX_BODY_BYTES {
                break;
            }
        }
        Ok::<(), axum::Error>(())
    })
    .await;
    let error = match read {
        Ok(Ok(())) => {
            return next
                .run(Request::from_parts(parts, Body::from(buf.freeze())))
                .await;
        }
        Ok(Err(_)) => AppError::validation("body", "could not read the request body"),
        Err(_) => AppError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        ),
    };
    // The rest of the body may still be on its way: this connection cannot serve another
    // request, so it is closed after the answer.
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
