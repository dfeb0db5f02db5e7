//! Webhook secrets and signatures.
//!
//! Secrets are derived, never stored: `whsec_` + base64url(HMAC-SHA256(server key,
//! "{webhook_id}:{secret_version}")). A webhook stores only its `secret_version` (and, during
//! a rotation's grace period, when the previous version stops signing), so a leaked table
//! reveals no secret, and a rotation is a version bump.
//!
//! A delivery is signed over `"{timestamp}.{body}"` (the `Momentum-Timestamp` header, unix
//! seconds, then the exact body bytes): `Momentum-Signature: v1=<hex>`; during a grace
//! period one `v1=` entry per valid secret, newest first.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "Momentum-Signature";
pub const TIMESTAMP_HEADER: &str = "Momentum-Timestamp";
pub const WEBHOOK_ID_HEADER: &str = "Momentum-Webhook-Id";
pub const DELIVERY_ID_HEADER: &str = "Momentum-Delivery-Id";
pub const EVENT_HEADER: &str = "Momentum-Event";

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The secret of version `version` of webhook `webhook_id`.
pub fn derive_secret(server_key: &[u8], webhook_id: &str, version: i64) -> String {
    let raw = mac(server_key, &[format!("{webhook_id}:{version}").as_bytes()]);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// Hex HMAC-SHA256 of `"{timestamp}.{body}"` under `secret` (the whole `whsec_...` string is
/// the key, as receivers hold it).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(
        secret.as_bytes(),
        &[timestamp.to_string().as_bytes(), b".", body],
    );
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Momentum-Signature` value: one `v1=` per secret, comma-separated.
pub fn signature_header(secrets: &[String], timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| format!("v1={}", sign(s, timestamp, body)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `header` carries a valid signature of `body` at `timestamp` under `secret`
/// (what a receiver does; used by tests). Constant-time comparison.
pub fn verify(secret: &str, header: &str, timestamp: i64, body: &[u8]) -> bool {
    let expected = sign(secret, timestamp, body);
    header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .any(|got| {
            got.len() == expected.len()
                && got
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_derived_per_webhook_and_version() {
        let key = b"0123456789abcdef0123456789abcdef";
        let a1 = derive_secret(key, "wh_a", 1);
        assert!(a1.starts_with("whsec_"));
        assert_eq!(a1, derive_secret(key, "wh_a", 1), "deterministic");
        assert_ne!(a1, derive_secret(key, "wh_a", 2));
        assert_ne!(a1, derive_secret(key, "wh_b", 1));
        assert_ne!(
            a1,
            derive_secret(b"another key of at least 32 bytes!", "wh_a", 1)
        );
    }

    #[test]
    fn signatures_verify_and_cover_timestamp_and_body() {
        let (new, old) = ("whsec_new".to_owned(), "whsec_old".to_owned());
        let header = signature_header(&[new.clone(), old.clone()], 1700000000, b"{}");
        assert!(verify(&new, &header, 1700000000, b"{}"));
        assert!(verify(&old, &header, 1700000000, b"{}"));
        assert!(!verify("whsec_other", &header, 1700000000, b"{}"));
        assert!(!verify(&new, &header, 1700000001, b"{}"));
        assert!(!verify(&new, &header, 1700000000, b"{ }"));
    }
}
