//! Realtime core: connections and subscriptions, fan-out of change records, and the
//! WebSocket command protocol. The Lambda handlers (`realtime/` crate) and the local shim
//! are thin adapters over this.

pub mod broadcaster;
pub mod commands;
pub mod connections;
pub mod faults;
pub mod protocol;
