mod layout;
mod model;
mod service;

pub use layout::*;
pub use model::*;
pub use service::*;
