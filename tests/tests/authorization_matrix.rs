//! The authorization matrix (see matrix/mod.rs): every served route, every kind of caller.

mod matrix;

use std::collections::BTreeSet;
use std::sync::Arc;

use matrix::{Fixture, all_rows, run_matrix, served_routes};

/// A route without a matrix row (or a row for a route that is not served) fails.
#[test]
fn every_route_has_a_matrix_row() {
    let served = served_routes();
    let covered: BTreeSet<(String, String)> = all_rows()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = served.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes without a matrix row: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "matrix rows for routes not served: {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let fixture = Arc::new(Fixture::new().await);
    run_matrix(fixture, all_rows()).await;
}
