mod codes;
mod layout;
mod model;
mod service;

pub use codes::*;
pub use layout::*;
pub use model::*;
pub use service::*;
