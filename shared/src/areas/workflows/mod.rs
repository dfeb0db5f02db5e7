mod model;
mod service;
mod states;

pub use model::*;
pub use service::*;
