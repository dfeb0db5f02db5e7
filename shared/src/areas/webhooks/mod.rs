//! Outgoing signed webhooks (docs/webhooks.md): records and API types (`model`), the rules
//! and attempts (`service`), secrets and signatures (`signing`), where a webhook may point
//! (`target`), outbound HTTP (`sender`) and the in-process dispatcher of the local shim
//! (`dispatcher`).

pub mod dispatcher;
mod model;
pub mod sender;
mod service;
pub mod signing;
pub mod target;

pub use model::*;
pub use service::*;
