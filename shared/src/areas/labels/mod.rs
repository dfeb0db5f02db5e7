//! Labels: records and API types (`model`), their keys and writes (`layout`), single-label
//! operations (`service`) and batches (`batch`).

mod batch;
#[cfg(test)]
mod batch_tests;
mod layout;
mod model;
mod service;

pub use layout::label_name_key;
pub use model::*;
pub use service::*;
