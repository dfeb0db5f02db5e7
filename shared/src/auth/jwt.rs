//! Access tokens: JWT with the algorithm pinned from configuration (never taken from the
//! token header), required exp/iat/iss/aud/sub/typ, `nbf` honoured when present, `iat` not
//! in the future, and at most 5 s of clock leeway.

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
    /// Not before: never set by this issuer, honoured when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
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
        // Time claims are checked by `verify_at` against the caller's clock (the services'
        // injected one), not by the library against the system clock.
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = false;
        validation.validate_nbf = false;
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
            nbf: None,
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the configured key (tests build hostile tokens with it).
    pub fn sign(&self, claims: &AccessClaims) -> AppResult<String> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|_| AppError::internal("token signing failed"))
    }

    /// Verifies signature, algorithm, time claims (against the system clock), issuer,
    /// audience and token type.
    pub fn verify(&self, token: &str) -> AppResult<AccessClaims> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// `verify` at `now` (epoch seconds): refused when expired (`exp`), not yet valid
    /// (`nbf`) or issued in the future (`iat`: our issuer stamps it with its own clock), each
    /// with `LEEWAY_SECS` of tolerance.
    pub fn verify_at(&self, token: &str, now: u64) -> AppResult<AccessClaims> {
        let refused = || AppError::unauthorized("invalid or expired access token");
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "access token refused");
                refused()
            })?
            .claims;
        if claims.typ != ACCESS_TOKEN_TYPE || claims.sid.is_empty() {
            return Err(refused());
        }
        let expired = claims.exp.saturating_add(LEEWAY_SECS) < now;
        let immature = claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS));
        let from_the_future = claims.iat > now.saturating_add(LEEWAY_SECS);
        if expired || immature || from_the_future {
            tracing::debug!(expired, immature, from_the_future, "access token refused");
            return Err(refused());
        }
        Ok(claims)
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
            nbf: None,
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

    #[test]
    fn time_claims_are_checked_at_the_given_time_with_leeway() {
        let issuer = TokenIssuer::new(&AppConfig::for_tests().auth);
        let t = 1_000_000;
        let token = issuer.issue("u", "s", t).unwrap(); // exp = t + 900
        assert!(issuer.verify_at(&token, t).is_ok());
        assert!(issuer.verify_at(&token, t + 900 + LEEWAY_SECS).is_ok());
        assert!(
            issuer.verify_at(&token, t + 900 + LEEWAY_SECS + 1).is_err(),
            "expired"
        );
        assert!(issuer.verify_at(&token, t - LEEWAY_SECS).is_ok());
        assert!(
            issuer.verify_at(&token, t - LEEWAY_SECS - 1).is_err(),
            "iat ahead"
        );
        let mut claims = issuer.verify_at(&token, t).unwrap();
        claims.nbf = Some(t + 60);
        let later = issuer.sign(&claims).unwrap();
        assert!(issuer.verify_at(&later, t).is_err(), "nbf ahead");
        assert!(issuer.verify_at(&later, t + 60).is_ok());
    }

    /// A token with arbitrary claims and header, signed with `secret` (or not at all).
    fn forge(header: &Header, claims: &serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn b64(v: &serde_json::Value) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Every way a hostile or stale token can differ from a good one is refused.
    #[test]
    fn negative_table() {
        let config = AppConfig::for_tests().auth;
        let issuer = TokenIssuer::new(&config);
        let secret = config.jwt_secret.clone();
        let t = now();
        let good = serde_json::json!({
            "sub": "u", "sid": "s", "iat": t - 10, "exp": t + 600,
            "iss": config.issuer, "aud": config.audience, "typ": "access", "jti": "j",
        });
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        let hs256 = Header::new(Algorithm::HS256);
        assert!(
            issuer.verify(&forge(&hs256, &good, &secret)).is_ok(),
            "the baseline is valid"
        );
        let valid = forge(&hs256, &good, &secret);
        let valid_parts: Vec<&str> = valid.split('.').collect();
        let tampered_payload = {
            let mut c = good.clone();
            c["sub"] = "admin".into();
            format!("{}.{}.{}", valid_parts[0], b64(&c), valid_parts[2])
        };
        let rs256_header = format!(
            "{}.{}.{}",
            b64(&serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            valid_parts[1],
            valid_parts[2]
        );
        let none_header = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            valid_parts[1]
        );
        let none_with_sig = format!(
            "{}.{}.{}",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            valid_parts[1],
            valid_parts[2]
        );
        let cases: Vec<(&str, String)> = vec![
            ("alg none, empty signature", none_header),
            ("alg none, original signature", none_with_sig),
            (
                "HS512 token to an HS256 verifier",
                forge(&Header::new(Algorithm::HS512), &good, &secret),
            ),
            (
                "HS384 token to an HS256 verifier",
                forge(&Header::new(Algorithm::HS384), &good, &secret),
            ),
            ("RS256 header over an HS256 signature", rs256_header),
            (
                "wrong key",
                forge(&hs256, &good, b"another-secret-another-secret-another"),
            ),
            ("tampered payload", tampered_payload),
            (
                "signature stripped",
                format!("{}.{}.", valid_parts[0], valid_parts[1]),
            ),
            (
                "expired",
                forge(&hs256, &with("exp", (t - LEEWAY_SECS - 5).into()), &secret),
            ),
            (
                "not yet valid (nbf)",
                forge(&hs256, &with("nbf", (t + 3600).into()), &secret),
            ),
            (
                "issued in the future (iat)",
                forge(&hs256, &with("iat", (t + 3600).into()), &secret),
            ),
            (
                "wrong issuer",
                forge(&hs256, &with("iss", "mallory".into()), &secret),
            ),
            (
                "wrong audience",
                forge(&hs256, &with("aud", "elsewhere".into()), &secret),
            ),
            (
                "refresh type",
                forge(&hs256, &with("typ", "refresh".into()), &secret),
            ),
            ("no exp", forge(&hs256, &without("exp"), &secret)),
            ("no iat", forge(&hs256, &without("iat"), &secret)),
            ("no aud", forge(&hs256, &without("aud"), &secret)),
            ("no sid", forge(&hs256, &without("sid"), &secret)),
            ("empty sid", forge(&hs256, &with("sid", "".into()), &secret)),
            ("opaque refresh token", crate::auth::new_refresh_token()),
            ("garbage", "not.a.jwt".into()),
            ("empty", String::new()),
        ];
        for (name, token) in cases {
            let result = issuer.verify(&token);
            assert!(result.is_err(), "{name}: accepted {result:?}");
            assert_eq!(
                result.unwrap_err().code,
                crate::error::ErrorCode::Unauthorized,
                "{name}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Flipping bits anywhere in a valid token never yields other claims: verification
        /// fails, or (a flip in insignificant base64 bits) gives back exactly the original.
        #[test]
        fn flipped_bytes_never_verify_as_other_claims(
            index in 0usize..4096,
            mask in 1u8..=255,
        ) {
            let issuer = TokenIssuer::new(&AppConfig::for_tests().auth);
            let token = issuer.issue("user-1", "session-1", now()).unwrap();
            let original = issuer.verify(&token).unwrap();
            let mut bytes = token.into_bytes();
            let i = index % bytes.len();
            bytes[i] ^= mask;
            if let Ok(claims) = String::from_utf8(bytes)
                .map_err(|_| ())
                .and_then(|mutated| issuer.verify(&mutated).map_err(|_| ()))
            {
                proptest::prop_assert_eq!(claims, original);
            }
        }
    }
}
