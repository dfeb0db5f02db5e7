//! Realtime core: connections and subscriptions, fan-out of change records, and the
//! WebSocket command protocol. The Lambda handlers (`realtime/` crate) and the local shim
//! are thin adapters over this.
//!
//! "The seed" in these modules is the original Momentum service whose WebSocket commands and
//! message shapes this protocol keeps (defined in docs/architecture.md).

pub mod broadcaster;
pub mod commands;
pub mod connections;
pub mod direct;
#[cfg(any(test, feature = "test-support"))]
pub mod faults;
pub mod inbox;
pub mod presence;
pub mod protocol;
pub mod shards;
