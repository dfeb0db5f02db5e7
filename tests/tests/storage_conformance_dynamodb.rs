//! The storage conformance suite against DynamoDB: moto (always, via scripts/test.sh) and
//! LocalStack through testcontainers where a Docker engine runs.

use std::sync::Arc;

use momentum_shared::storage::Store;
use momentum_tests::{dynamodb_endpoint, dynamodb_store};

async fn moto() -> Option<Arc<dyn Store>> {
    let endpoint = dynamodb_endpoint("dynamodb conformance")?;
    Some(Arc::new(
        dynamodb_store(&endpoint, momentum_tests::test_tables()).await,
    ))
}

mod moto {
    momentum_shared::storage_conformance_tests!(super::moto());
}

fn docker_available() -> bool {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Every conformance case against LocalStack in one container.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn localstack_conformance() {
    use momentum_shared::storage::conformance as c;
    use testcontainers::runners::AsyncRunner;

    if !docker_available() {
        momentum_tests::visible_skip(
            "localstack_conformance",
            "no Docker engine here (the same cases run against moto)",
        );
        return;
    }
    let container = testcontainers_modules::localstack::LocalStack::default()
        .start()
        .await
        .expect("start LocalStack");
    let port = container
        .get_host_port_ipv4(4566)
        .await
        .expect("LocalStack port");
    let store: Arc<dyn Store> = Arc::new(
        dynamodb_store(
            &format!("http://127.0.0.1:{port}"),
            momentum_tests::test_tables(),
        )
        .await,
    );
    c::conditional_put_conflict(store.clone()).await;
    c::transaction_all_or_nothing(store.clone()).await;
    c::pagination_round_trip(store.clone()).await;
    c::gsi_query(store.clone()).await;
    c::concurrent_counter(store.clone()).await;
    c::optimistic_version_conflict(store.clone()).await;
    c::batch_get_and_values(store).await;
}

/// The change log's guarantee (32 writers, failures, crashes, readers) on DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_log_guarantee_under_concurrent_writers_and_crashes() {
    if let Some(store) = moto().await {
        momentum_shared::kernel::changes_guarantee::concurrent_writers_crashes_and_readers(store)
            .await;
    }
}
