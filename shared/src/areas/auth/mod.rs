mod model;
mod service;

pub use model::*;
pub use service::*;
