//! Fault injection at the connection gateway, for tests: `FaultyGateway` makes posts fail
//! transiently (throttled / 5xx, before delivering) by script or with a seeded probability.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::broadcaster::{ConnectionGateway, GatewayError};

/// A gateway decorator whose posts fail transiently before reaching the inner gateway.
pub struct FaultyGateway<G> {
    inner: G,
    rate: Mutex<f64>,
    script: Mutex<VecDeque<bool>>,
    rng: Mutex<StdRng>,
    injected: AtomicU64,
}

impl<G: ConnectionGateway> FaultyGateway<G> {
    pub fn new(inner: G, seed: u64) -> Self {
        Self {
            inner,
            rate: Mutex::new(0.0),
            script: Mutex::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            injected: AtomicU64::new(0),
        }
    }

    pub fn inner(&self) -> &G {
        &self.inner
    }

    /// Each unscripted post fails with this probability.
    pub fn set_rate(&self, probability: f64) {
        *self.rate.lock().unwrap() = probability.clamp(0.0, 1.0);
    }

    /// The next posts fail (`true`) or pass (`false`) in this order.
    pub fn script(&self, fails: impl IntoIterator<Item = bool>) {
        self.script.lock().unwrap().extend(fails);
    }

    /// Posts failed so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn fails(&self) -> bool {
        let scripted = self.script.lock().unwrap().pop_front();
        let fail = scripted.unwrap_or_else(|| {
            let rate = *self.rate.lock().unwrap();
            self.rng.lock().unwrap().gen_bool(rate)
        });
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }
}

#[async_trait]
impl<G: ConnectionGateway> ConnectionGateway for FaultyGateway<G> {
    async fn post(&self, connection_id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        if self.fails() {
            return Err(GatewayError::Retryable("injected throttling".into()));
        }
        self.inner.post(connection_id, data).await
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        self.inner.close(connection_id).await
    }

    async fn exists(&self, connection_id: &str) -> Result<bool, GatewayError> {
        self.inner.exists(connection_id).await
    }
}
