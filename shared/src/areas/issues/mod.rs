pub mod references;
mod service;

pub use service::*;
