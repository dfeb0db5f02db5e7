//! (Filled in by the resource-group work: see docs/conventions.md.)

use crate::services::context::ServiceContext;

pub struct LabelService {
    #[allow(dead_code)]
    ctx: ServiceContext,
}

impl LabelService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}
