//! Business logic, once, for every adapter (REST functions and WebSocket commands).

pub mod auth;
