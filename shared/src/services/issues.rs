//! (Filled in by the resource-group work: see docs/conventions.md.)

use crate::services::context::ServiceContext;

pub struct IssueService {
    #[allow(dead_code)]
    ctx: ServiceContext,
}

impl IssueService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}
