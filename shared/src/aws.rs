//! The AWS SDK set-up every client shares (DynamoDB here, API Gateway's `@connections` API
//! in `realtime`): one TLS stack, one attempt per call, the region chain and local
//! credentials.
//!
//! TLS is rustls 0.23 on ring, through the SDK's hyper 1 client: ring is linked anyway (for
//! jsonwebtoken), so the Lambdas carry one crypto library and one TLS stack; the SDK's
//! default features would add aws-lc-rs and the legacy hyper 0.14 + rustls 0.21 client
//! (docs/architecture.md, "AWS SDK, TLS and crypto"). Trusted roots are the system's (Lambda's
//! provided.al2023 CA bundle), read once per process while the first client is built, so at
//! init (strace: the CA files are opened before the first `/next`).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Region used when neither configuration nor the environment names one (local runs).
pub const FALLBACK_REGION: &str = "us-east-1";

/// What differs between the SDK clients of this workspace.
#[derive(Clone, Debug)]
pub struct SdkOptions {
    /// A region named by configuration, tried before the environment's.
    pub region: Option<String>,
    /// Bound of one attempt (and of the whole call: there is one attempt).
    pub attempt_timeout: Duration,
    /// Static dummy credentials when the environment has none: for local endpoints
    /// (LocalStack, moto, the shim), which accept any, so the SDK does not probe the
    /// instance metadata service before failing.
    pub local_credentials: bool,
}

/// The HTTPS client (rustls + ring) for one SDK config. One per config, not per process:
/// pooled connections are bound to the Tokio runtime that opened them, and tests run one
/// runtime each (the root certificates are cached process-wide by the SDK).
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The `SdkConfig` a service client is built from, with the shared settings. No SDK retries:
/// the callers retry with their own policy and budget (`storage::Retrying`, the
/// broadcaster), so SDK retries would only multiply attempts.
pub async fn load(options: &SdkOptions) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(options.attempt_timeout)
                .operation_timeout(options.attempt_timeout)
                .build(),
        );
    // Without a configured region the loader's own chain (environment, profile, instance
    // metadata) runs with the client above: `RegionProviderChain::default_provider()` would
    // build its metadata client without one.
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if options.local_credentials && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "momentum-local",
        ));
    }
    let sdk = loader.load().await;
    if sdk.region().is_some() {
        return sdk;
    }
    sdk.into_builder()
        .region(Region::new(FALLBACK_REGION))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the SDK's default client feature, a config without an HTTP client would fail
    /// every call (and panic in debug builds): the shared loader must always set one.
    #[tokio::test]
    async fn the_loaded_config_has_the_https_client_and_the_configured_region() {
        let sdk = load(&SdkOptions {
            region: Some("eu-west-3".into()),
            attempt_timeout: Duration::from_secs(1),
            local_credentials: true,
        })
        .await;
        assert!(sdk.http_client().is_some());
        assert_eq!(sdk.region().map(Region::as_ref), Some("eu-west-3"));
        assert!(sdk.retry_config().is_some_and(|r| r.max_attempts() == 1));
    }
}
