//! The connection gateway on `aws-sdk-apigatewaymanagement`: API Gateway's `@connections`
//! API in the cloud, and the local shim's compatible endpoint on a laptop (same code).

use std::time::Duration;

use async_trait::async_trait;
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
        let local = endpoint.starts_with("http://127.")
            || endpoint.starts_with("http://localhost")
            || endpoint.starts_with("http://[::1]");
        // One attempt per call: the broadcaster retries retryable posts with its own policy
        // and budget, so SDK retries would only multiply attempts.
        let sdk = momentum_shared::aws::load(&momentum_shared::aws::SdkOptions {
            region: None,
            attempt_timeout: Duration::from_secs(3),
            local_credentials: local,
        })
        .await;
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }
}

/// Gone (410) ends the connection; throttling (429, `LimitExceededException`), 5xx and
/// timeouts or dispatch failures are retryable; anything else (403, 413) is permanent.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    err: aws_sdk_apigatewaymanagement::error::SdkError<
        E,
        aws_sdk_apigatewaymanagement::config::http::HttpResponse,
    >,
) -> GatewayError {
    use aws_sdk_apigatewaymanagement::error::SdkError;
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code();
    if code == Some("GoneException") || status == Some(410) {
        return GatewayError::Gone;
    }
    let transport = matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    );
    let throttled = matches!(
        code,
        Some("LimitExceededException" | "TooManyRequestsException" | "ThrottlingException")
    );
    if transport || throttled || status.is_some_and(|s| s == 429 || s >= 500) {
        GatewayError::Retryable(format!("{err:?}"))
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

#[cfg(test)]
mod tests {
    use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
    use aws_sdk_apigatewaymanagement::error::{ErrorMetadata, SdkError};
    use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;

    use super::*;

    fn answered(status: u16, code: Option<&str>) -> GatewayError {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().unwrap(), "{}".into());
        classify(SdkError::service_error(
            PostToConnectionError::generic(meta.build()),
            raw,
        ))
    }

    #[test]
    fn errors_are_gone_retryable_or_permanent() {
        assert!(matches!(
            answered(410, Some("GoneException")),
            GatewayError::Gone
        ));
        assert!(matches!(answered(410, None), GatewayError::Gone));
        for retryable in [
            answered(429, Some("LimitExceededException")),
            answered(400, Some("ThrottlingException")),
            answered(500, None),
            answered(503, None),
        ] {
            assert!(retryable.is_retryable(), "{retryable:?}");
        }
        let timeout = classify::<PostToConnectionError>(SdkError::timeout_error("slow"));
        assert!(timeout.is_retryable());
        for permanent in [
            answered(403, Some("ForbiddenException")),
            answered(413, Some("PayloadTooLargeException")),
        ] {
            assert!(matches!(permanent, GatewayError::Other(_)), "{permanent:?}");
        }
    }
}
