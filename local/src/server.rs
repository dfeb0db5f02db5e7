//! The shim's HTTP server: hyper's HTTP/1.1 connections (with upgrades, for the WebSocket
//! emulation) with a header read timeout, and the connection side of graceful shutdown.
//!
//! `axum::serve` has no read timeouts: a client that never finished its headers held its
//! connection forever. Here every connection gets hyper's `header_read_timeout` (which also
//! bounds an idle keep-alive connection); the body deadline is a middleware
//! (`momentum_shared::body_read`), so a late body gets a 408 envelope.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The HTTP connections accepted until shutdown.
pub(crate) struct Connections {
    /// Set to true to tell every connection to finish its request in flight and close.
    stop: watch::Sender<bool>,
    /// Each connection task holds a receiver: `closed()` resolves when all have ended.
    live: watch::Sender<()>,
}

impl Connections {
    /// Tells every connection to close once its request in flight (if any) is answered;
    /// idle keep-alive connections close at once.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves when every connection has ended (upgraded WebSocket connections end here as
    /// soon as they are handed to their socket task).
    pub(crate) async fn closed(&self) {
        self.live.closed().await;
    }
}

/// Accepts connections and serves `app` on them until `shutdown` resolves; then stops
/// accepting (the listener is closed when this returns) and hands back the connections.
pub(crate) async fn accept_until(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> Connections {
    let (stop, _) = watch::channel(false);
    let (live, _) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    app.clone(),
                    header_read_timeout,
                    stop.subscribe(),
                    live.subscribe(),
                ));
            }
            // A connection that failed before it was accepted concerns only its client.
            Err(e) if is_connection_error(&e) => {}
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    Connections { stop, live }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _live: watch::Receiver<()>,
) {
    // The peer address, as `Router::into_make_service_with_connect_info` would give it
    // (client IP for rate limits, the loopback check of `/@connections`).
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut conn = pin!(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Header read timeouts land here: the connection is closed.
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            _ = stop.wait_for(|&s| s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
