//! What the API accepts as input, whichever way it arrives (an HTTP request, a WebSocket
//! command): size limits and the JSON rules. Below `http`, `idempotency`, `body_read` and
//! `realtime`, which all read input through it; it imports none of them.

pub mod json;
pub mod text;

/// Largest accepted request body.
pub use crate::kernel::limits::MAX_BODY_BYTES;
