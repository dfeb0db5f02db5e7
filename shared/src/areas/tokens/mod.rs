//! Personal API tokens: created, listed and revoked by their owner (signed in with a
//! session), listed and revoked by the admins of a workspace they act in. Checking a
//! presented token is the kernel's (`kernel/access/token.rs`), in the authorization batch.

mod model;
mod service;

pub use model::*;
pub use service::*;
