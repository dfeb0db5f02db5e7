//! The kernel: rules every area uses and no area owns. It never imports an area.

pub mod topic;
