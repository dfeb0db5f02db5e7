mod service;

pub use service::*;
