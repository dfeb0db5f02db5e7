//! argon2id password hashing off the async workers: every hash or verify runs on the
//! blocking pool behind a semaphore, so a burst of logins queues there instead of stalling
//! other requests, and memory stays bounded (each computation holds ~19 MiB).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

/// Policy: argon2id, m = 19456 KiB, t = 2, p = 1 (OWASP's first recommendation).
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

pub use crate::kernel::limits::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

/// The outcome of checking a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verification {
    pub valid: bool,
    /// The stored hash is weaker than the policy (or not argon2id): rehash on success.
    pub needs_rehash: bool,
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    params: Params,
    /// Verifications run (including those for unknown accounts): a test hook and a metric.
    verifications: Arc<AtomicU64>,
}

fn policy_params() -> Params {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 params")
}

/// A real hash of a random password, verified against when the account does not exist so
/// that an unknown email costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, policy_params())
            .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
            .expect("hash")
            .to_string()
    })
}

/// Checks the password policy (length in characters).
pub fn validate_password(field: &str, password: &str) -> AppResult<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(AppError::validation(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(AppError::validation(
            field,
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Self {
        Self::with_params(concurrency, policy_params())
    }

    /// A hasher with other parameters: only for tests that need legacy (weak) hashes.
    pub fn with_params(concurrency: usize, params: Params) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            params,
            verifications: Arc::default(),
        }
    }

    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn off_workers<T, F>(&self, f: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AppError::internal("hasher closed"))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| AppError::internal("password hashing failed"))
    }

    pub async fn hash(&self, password: String) -> AppResult<String> {
        let params = self.params.clone();
        self.off_workers(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| AppError::internal("password hashing failed"))
        })
        .await?
    }

    pub async fn verify(&self, password: String, stored: String) -> AppResult<Verification> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.off_workers(move || verify_blocking(&password, &stored))
            .await
    }

    /// Spends the time of a verification without an account (see `dummy_hash`).
    pub async fn verify_nobody(&self, password: String) -> AppResult<()> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.off_workers(move || {
            verify_blocking(&password, dummy_hash());
        })
        .await
    }
}

fn verify_blocking(password: &str, stored: &str) -> Verification {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verification {
            valid: false,
            needs_rehash: true,
        };
    };
    let valid = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    let needs_rehash = parsed.algorithm != Algorithm::Argon2id.ident()
        || match Params::try_from(&parsed) {
            Ok(p) => p.m_cost() < MEMORY_KIB || p.t_cost() < ITERATIONS || p.p_cost() < PARALLELISM,
            Err(_) => true,
        };
    Verification {
        valid,
        needs_rehash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_with_policy_and_verifies() {
        let h = PasswordHasher::new(2);
        let stored = h.hash("correct horse".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        let ok = h
            .verify("correct horse".into(), stored.clone())
            .await
            .unwrap();
        assert_eq!(
            ok,
            Verification {
                valid: true,
                needs_rehash: false
            }
        );
        let bad = h.verify("wrong horse".into(), stored).await.unwrap();
        assert!(!bad.valid);
    }

    #[tokio::test]
    async fn weak_hash_needs_rehash() {
        let weak = PasswordHasher::with_params(1, Params::new(1024, 1, 1, None).unwrap());
        let stored = weak.hash("password1".into()).await.unwrap();
        let v = PasswordHasher::new(1)
            .verify("password1".into(), stored)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verification {
                valid: true,
                needs_rehash: true
            }
        );
    }

    #[test]
    fn password_length_policy() {
        assert!(validate_password("password", "1234567").is_err());
        assert!(validate_password("password", "12345678").is_ok());
        assert!(validate_password("password", &"x".repeat(128)).is_ok());
        let err = validate_password("password", &"x".repeat(129)).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("password"));
    }
}
