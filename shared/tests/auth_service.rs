//! AuthService rules that need injected time or hashes: rehash on login, token expiry, and
//! the constant work of a login for an unknown account.

use std::sync::Arc;

use argon2::Params;
use momentum_shared::areas::auth::{AuthService, LoginRequest, RefreshRequest, RegisterRequest};
use momentum_shared::auth::PasswordHasher;
use momentum_shared::clock::{ManualClock, SystemClock};
use momentum_shared::config::AppConfig;
use momentum_shared::kernel::keys;
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_shared::storage::{Store, Table};

fn register_req(email: &str) -> RegisterRequest {
    RegisterRequest {
        email: email.into(),
        username: "grace".into(),
        password: "correct horse".into(),
        display_name: Some("Grace".into()),
    }
}

fn login_req(email: &str) -> LoginRequest {
    LoginRequest {
        email: email.into(),
        password: "correct horse".into(),
    }
}

async fn stored_hash(store: &Arc<dyn Store>, auth: &AuthService, email: &str) -> String {
    let user_id = auth.login(None, login_req(email)).await.unwrap().user.id;
    let user = store
        .get(Table::Main, &keys::user(&user_id))
        .await
        .unwrap()
        .unwrap();
    user["password_hash"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn login_upgrades_a_weak_hash() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let config = AppConfig::for_tests().auth;
    let weak = AuthService::with_hasher(
        store.clone(),
        &config,
        Arc::new(SystemClock),
        PasswordHasher::with_params(1, Params::new(4096, 1, 1, None).unwrap()),
    );
    weak.register(None, register_req("grace@example.com"))
        .await
        .unwrap();
    let before = stored_hash(&store, &weak, "grace@example.com").await;
    assert!(before.contains("m=4096,t=1,p=1"), "{before}");

    let policy = AuthService::new(store.clone(), &config, Arc::new(SystemClock));
    policy
        .login(None, login_req("grace@example.com"))
        .await
        .unwrap();
    let after = stored_hash(&store, &policy, "grace@example.com").await;
    assert!(after.contains("$argon2id$v=19$m=19456,t=2,p=1$"), "{after}");
    // Still the same password.
    policy
        .login(None, login_req("grace@example.com"))
        .await
        .unwrap();
}

#[tokio::test]
async fn refresh_tokens_and_sessions_expire() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let clock = ManualClock::starting_now();
    let config = AppConfig::for_tests().auth;
    let auth = AuthService::new(store, &config, Arc::new(clock.clone()));
    auth.register(None, register_req("ttl@example.com"))
        .await
        .unwrap();
    let login = auth
        .login(None, login_req("ttl@example.com"))
        .await
        .unwrap();

    // Within its lifetime the token rotates.
    clock.advance_secs(3600);
    let pair = auth
        .refresh(
            None,
            RefreshRequest {
                refresh_token: login.tokens.refresh_token,
            },
        )
        .await
        .unwrap();
    let who = auth.authenticate(&pair.access_token).unwrap();
    auth.profile(&who).await.unwrap();

    clock.advance_secs(config.refresh_ttl_secs as i64 + 1);
    let err = auth
        .refresh(
            None,
            RefreshRequest {
                refresh_token: pair.refresh_token,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "UNAUTHORIZED");
    assert!(err.message.contains("expired"), "{err}");
    // The session behind still-unexpired access tokens has expired as well.
    assert!(auth.profile(&who).await.is_err());
}

#[tokio::test]
async fn unknown_account_still_pays_a_verification() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let auth = AuthService::new(store, &AppConfig::for_tests().auth, Arc::new(SystemClock));
    let before = auth.hasher().verifications();
    let err = auth
        .login(None, login_req("nobody@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "UNAUTHORIZED");
    assert_eq!(auth.hasher().verifications(), before + 1);
}
