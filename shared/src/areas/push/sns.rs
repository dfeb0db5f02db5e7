//! `MOMENTUM_PUSH=sns`: mobile push through Amazon SNS. One platform application per
//! provider (APNs, FCM; ARNs from configuration, created outside the app with the
//! provider's credentials), one platform endpoint per device token, created at
//! registration and stored on the device. A push is one `Publish` per device with
//! `MessageStructure=json`: `default` plus the provider's key (`APNS`, `APNS_SANDBOX` or
//! `GCM`) holding the payload of `payload.rs`.
//!
//! SNS disables an endpoint when the provider answers that the token is no longer valid
//! (APNs "Unregistered", FCM "UNREGISTERED"); publishing to it then fails with
//! `EndpointDisabled`. That answer (or `NotFound`: deleted elsewhere) makes the device
//! `Delivery::Gone`: the outlet deletes the device and `forget` deletes the endpoint.

use aws_sdk_sns::error::SdkError;
use aws_sdk_sns::operation::publish::PublishError;
use serde_json::json;

use super::PushMessage;
use super::devices::{DeviceRecord, Platform};
use super::payload::{apns_payload, fcm_payload};
use super::provider::{Delivery, PushProvider};
use crate::error::{AppError, AppResult};

/// The platform applications push goes through (`MOMENTUM_PUSH_APNS_ARN`,
/// `MOMENTUM_PUSH_FCM_ARN`, `MOMENTUM_PUSH_APNS_SANDBOX`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnsPlatforms {
    pub apns_arn: Option<String>,
    pub fcm_arn: Option<String>,
    /// The APNs application is the sandbox one (development builds of the app): the
    /// payload goes under `APNS_SANDBOX`.
    pub apns_sandbox: bool,
}

pub struct SnsPush {
    client: aws_sdk_sns::Client,
    platforms: SnsPlatforms,
}

impl SnsPush {
    /// A client with the shared SDK set-up (one TLS stack, one attempt); `endpoint`
    /// overrides AWS's (tests: moto).
    pub async fn connect(
        region: Option<String>,
        endpoint: Option<String>,
        platforms: SnsPlatforms,
    ) -> Self {
        let sdk = crate::aws::load(&crate::aws::SdkOptions {
            region,
            attempt_timeout: std::time::Duration::from_secs(5),
            local_credentials: endpoint.is_some(),
        })
        .await;
        let mut config = aws_sdk_sns::config::Builder::from(&sdk);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self::with_client(aws_sdk_sns::Client::from_conf(config.build()), platforms)
    }

    pub fn with_client(client: aws_sdk_sns::Client, platforms: SnsPlatforms) -> Self {
        Self { client, platforms }
    }

    fn application(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Apns => self.platforms.apns_arn.as_deref(),
            Platform::Fcm => self.platforms.fcm_arn.as_deref(),
        }
    }

    /// The `MessageStructure=json` message for one device.
    fn message(&self, platform: Platform, m: &PushMessage) -> String {
        let (key, payload) = match platform {
            Platform::Apns if self.platforms.apns_sandbox => ("APNS_SANDBOX", apns_payload(m)),
            Platform::Apns => ("APNS", apns_payload(m)),
            Platform::Fcm => ("GCM", fcm_payload(m)),
        };
        json!({"default": m.title, key: payload.to_string()}).to_string()
    }
}

fn sdk_error<E: std::fmt::Debug>(what: &str, e: SdkError<E>) -> AppError {
    tracing::warn!(error = ?e, "SNS {what} failed");
    AppError::unavailable("the push service did not answer; retry")
}

#[async_trait::async_trait]
impl PushProvider for SnsPush {
    async fn endpoint(&self, platform: Platform, token: &str) -> AppResult<Option<String>> {
        let Some(application) = self.application(platform) else {
            return Err(AppError::unprocessable(
                "platform",
                format!("push to {} is not configured", platform.as_str()),
            ));
        };
        // Idempotent: the same token on the same application answers the existing endpoint.
        let created = self
            .client
            .create_platform_endpoint()
            .platform_application_arn(application)
            .token(token)
            .send()
            .await
            .map_err(|e| sdk_error("CreatePlatformEndpoint", e))?;
        let arn = created
            .endpoint_arn()
            .ok_or_else(|| AppError::internal("SNS returned no endpoint ARN"))?
            .to_owned();
        // An existing endpoint may have been disabled by an earlier "unregistered" answer:
        // the app just handed us this token as valid, so it is enabled again (AWS's
        // recommended registration flow).
        let attributes = self
            .client
            .get_endpoint_attributes()
            .endpoint_arn(&arn)
            .send()
            .await
            .map_err(|e| sdk_error("GetEndpointAttributes", e))?;
        let attrs = attributes.attributes();
        let enabled = attrs
            .and_then(|a| a.get("Enabled"))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let same_token = attrs
            .and_then(|a| a.get("Token"))
            .is_some_and(|t| t == token);
        if !enabled || !same_token {
            self.client
                .set_endpoint_attributes()
                .endpoint_arn(&arn)
                .attributes("Token", token)
                .attributes("Enabled", "true")
                .send()
                .await
                .map_err(|e| sdk_error("SetEndpointAttributes", e))?;
        }
        Ok(Some(arn))
    }

    async fn send(&self, device: &DeviceRecord, message: &PushMessage) -> Delivery {
        let Some(endpoint) = &device.endpoint else {
            // Registered while push was off or local: no endpoint to publish to.
            return Delivery::Failed("the device has no SNS endpoint".into());
        };
        let sent = self
            .client
            .publish()
            .target_arn(endpoint)
            .message_structure("json")
            .message(self.message(device.platform, message))
            .send()
            .await;
        match sent {
            Ok(_) => Delivery::Accepted,
            Err(e) => match e.as_service_error() {
                Some(PublishError::EndpointDisabledException(_))
                | Some(PublishError::NotFoundException(_)) => Delivery::Gone,
                _ => Delivery::Failed(format!("{e:?}")),
            },
        }
    }

    async fn forget(&self, device: &DeviceRecord) {
        let Some(endpoint) = &device.endpoint else {
            return;
        };
        if let Err(e) = self
            .client
            .delete_endpoint()
            .endpoint_arn(endpoint)
            .send()
            .await
        {
            tracing::warn!(error = ?e, endpoint = %endpoint, "could not delete an SNS endpoint");
        }
    }
}
