//! Outbound HTTP for deliveries, behind a trait so tests can inject failures and the
//! dispatcher stays free of HTTP details. The real sender is reqwest with no redirects, no
//! proxy, a 10 s timeout and a resolver that drops non-public addresses: the address that
//! passed the check is the one connected to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::target::{TargetPolicy, is_public, parse_url, resolve};

/// One POST to a webhook's URL.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What came of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// The receiver answered (any status; 3xx is not followed).
    Answered { status: u16 },
    /// No answer: refused target, connection error, timeout.
    Failed { error: String },
}

#[async_trait::async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    async fn send(&self, request: Outbound) -> SendResult;
}

/// The reqwest sender.
pub struct HttpSender {
    client: reqwest::Client,
    policy: TargetPolicy,
}

/// Resolves names and keeps only the addresses the policy allows; none left is an error,
/// so a name that resolves to a private address at delivery time (rebinding) never gets a
/// connection.
struct GuardedResolver {
    policy: TargetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addrs = resolve(name.as_str()).await?;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| policy.allow_private || is_public(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{} resolves to no public address", name.as_str()).into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

impl HttpSender {
    pub fn new(policy: TargetPolicy, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .user_agent("Momentum-Webhooks/1")
            .build()
            .expect("webhook HTTP client");
        Self { client, policy }
    }
}

/// The error and its causes, one line (reqwest's top error says little).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

#[async_trait::async_trait]
impl WebhookSender for HttpSender {
    async fn send(&self, request: Outbound) -> SendResult {
        // IP literals never reach the resolver: classify them here (same rules).
        if let Err(e) = parse_url(self.policy, &request.url) {
            return SendResult::Failed { error: e.message };
        }
        let mut builder = self.client.post(&request.url).body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        match builder.send().await {
            Ok(response) => SendResult::Answered {
                status: response.status().as_u16(),
            },
            Err(e) if e.is_timeout() => SendResult::Failed {
                error: "timed out".into(),
            },
            Err(e) => SendResult::Failed {
                error: describe(&e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use reqwest::dns::Resolve;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: false,
    };

    #[tokio::test]
    async fn the_resolver_hands_out_public_addresses_only() {
        let strict = GuardedResolver { policy: STRICT };
        let refused = strict.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err(), "localhost resolves to loopback only");
        let local = GuardedResolver {
            policy: TargetPolicy {
                allow_http: true,
                allow_private: true,
            },
        };
        let addrs: Vec<SocketAddr> = local
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_gets_no_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sender = HttpSender::new(STRICT, Duration::from_secs(10));
        for url in [
            format!("https://localhost:{port}/hook"),
            format!("https://127.0.0.1:{port}/hook"),
            format!("https://[::ffff:127.0.0.1]:{port}/hook"),
        ] {
            let got = sender
                .send(Outbound {
                    url: url.clone(),
                    headers: Vec::new(),
                    body: b"{}".to_vec(),
                })
                .await;
            assert!(matches!(got, SendResult::Failed { .. }), "{url}: {got:?}");
        }
        // Had any attempt connected, its connection would be waiting by now.
        assert!(listener.accept().now_or_never().is_none());
    }
}
