//! Access tokens: JWT with the algorithm pinned from configuration (never taken from the
//! token header), required exp/iat/iss/aud/sub/typ, and at most 5 s of clock leeway.

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::error::{AppError, AppResult};

pub const ACCESS_TOKEN_TYPE: &str = "access";
pub const LEEWAY_SECS: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// Session id: logout and password changes revoke sessions.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    pub typ: String,
    pub jti: String,
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl TokenIssuer {
    pub fn new(config: &AuthConfig) -> Self {
        let algorithm = config.jwt_algorithm;
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(&config.jwt_secret),
            decoding: DecodingKey::from_secret(&config.jwt_secret),
            header: Header::new(algorithm),
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl_secs: config.access_ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Issues an access token valid from `now` (epoch seconds).
    pub fn issue(&self, user_id: &str, session_id: &str, now: u64) -> AppResult<String> {
        let claims = AccessClaims {
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            iat: now,
            exp: now + self.ttl_secs,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            typ: ACCESS_TOKEN_TYPE.to_owned(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the configured key (tests build hostile tokens with it).
    pub fn sign(&self, claims: &AccessClaims) -> AppResult<String> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|_| AppError::internal("token signing failed"))
    }

    /// Verifies signature, algorithm, time claims, issuer, audience and token type.
    pub fn verify(&self, token: &str) -> AppResult<AccessClaims> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "access token refused");
                AppError::unauthorized("invalid or expired access token")
            })?;
        if data.claims.typ != ACCESS_TOKEN_TYPE || data.claims.sid.is_empty() {
            return Err(AppError::unauthorized("invalid or expired access token"));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConfig;
    use jsonwebtoken::Algorithm;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let issuer = TokenIssuer::new(&AppConfig::for_tests().auth);
        let token = issuer.issue("u1", "s1", now()).unwrap();
        let claims = issuer.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u1", "s1"));

        let mut other = AppConfig::for_tests().auth;
        other.jwt_secret = b"another-secret-another-secret-another".to_vec();
        assert!(
            TokenIssuer::new(&other).verify(&token).is_err(),
            "wrong key"
        );

        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(issuer.verify(&parts.join(".")).is_err(), "tampered payload");
    }

    #[test]
    fn expired_wrong_audience_and_wrong_type_fail() {
        let config = AppConfig::for_tests().auth;
        let issuer = TokenIssuer::new(&config);
        let base = AccessClaims {
            sub: "u".into(),
            sid: "s".into(),
            iat: now() - 100,
            exp: now() + 100,
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            typ: ACCESS_TOKEN_TYPE.into(),
            jti: "j".into(),
        };
        assert!(issuer.verify(&issuer.sign(&base).unwrap()).is_ok());
        let expired = AccessClaims {
            exp: now() - LEEWAY_SECS - 2,
            ..base.clone()
        };
        assert!(issuer.verify(&issuer.sign(&expired).unwrap()).is_err());
        let aud = AccessClaims {
            aud: "elsewhere".into(),
            ..base.clone()
        };
        assert!(issuer.verify(&issuer.sign(&aud).unwrap()).is_err());
        let iss = AccessClaims {
            iss: "mallory".into(),
            ..base.clone()
        };
        assert!(issuer.verify(&issuer.sign(&iss).unwrap()).is_err());
        let typ = AccessClaims {
            typ: "refresh".into(),
            ..base
        };
        assert!(issuer.verify(&issuer.sign(&typ).unwrap()).is_err());
    }

    #[test]
    fn algorithm_is_pinned_by_configuration() {
        let hs256 = AppConfig::for_tests().auth;
        let mut hs512 = hs256.clone();
        hs512.jwt_algorithm = Algorithm::HS512;
        // Same key, other algorithm: refused both ways.
        let t512 = TokenIssuer::new(&hs512).issue("u", "s", now()).unwrap();
        assert!(TokenIssuer::new(&hs512).verify(&t512).is_ok());
        assert!(TokenIssuer::new(&hs256).verify(&t512).is_err());
        let t256 = TokenIssuer::new(&hs256).issue("u", "s", now()).unwrap();
        assert!(TokenIssuer::new(&hs512).verify(&t256).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let issuer = TokenIssuer::new(&AppConfig::for_tests().auth);
        let token = issuer.issue("u1", "s1", now()).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        // {"alg":"none","typ":"JWT"}
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(issuer.verify(&none).is_err());
    }
}
