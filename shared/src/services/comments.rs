//! (Filled in by the resource-group work: see docs/conventions.md.)

use crate::services::context::ServiceContext;

pub struct CommentService {
    #[allow(dead_code)]
    ctx: ServiceContext,
}

impl CommentService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}
