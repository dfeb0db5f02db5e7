//! The connection gateway on `aws-sdk-apigatewaymanagement`: API Gateway's `@connections`
//! API in the cloud, and the local shim's compatible endpoint on a laptop (same code).

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use momentum_shared::realtime::broadcaster::{ConnectionGateway, GatewayError};

#[derive(Clone)]
pub struct ManagementApiGateway {
    client: Client,
}

impl ManagementApiGateway {
    /// `endpoint`: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` in the cloud,
    /// `http://127.0.0.1:8000` for the shim.
    pub async fn new(endpoint: &str) -> Self {
        let region = RegionProviderChain::default_provider().or_else("us-east-1");
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            );
        let local = endpoint.starts_with("http://127.")
            || endpoint.starts_with("http://localhost")
            || endpoint.starts_with("http://[::1]");
        if local && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(
                aws_sdk_apigatewaymanagement::config::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "momentum-local",
                ),
            );
        }
        let sdk = loader.load().await;
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    err: aws_sdk_apigatewaymanagement::error::SdkError<
        E,
        aws_sdk_apigatewaymanagement::config::http::HttpResponse,
    >,
) -> GatewayError {
    let gone = err.code() == Some("GoneException")
        || err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 410);
    if gone {
        GatewayError::Gone
    } else {
        GatewayError::Other(format!("{err:?}"))
    }
}

#[async_trait]
impl ConnectionGateway for ManagementApiGateway {
    async fn post(&self, connection_id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        self.client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        self.client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn exists(&self, connection_id: &str) -> Result<bool, GatewayError> {
        match self
            .client
            .get_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map_err(classify)
        {
            Ok(_) => Ok(true),
            Err(GatewayError::Gone) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
