//! The kernel: rules every area uses and no area owns. It never imports an area.

pub mod access;
pub mod changes;
#[cfg(any(test, feature = "test-support"))]
pub mod changes_guarantee;
pub mod context;
pub mod ids;
pub mod input;
pub mod keys;
pub mod limits;
pub mod paging;
pub mod record;
pub mod topic;
