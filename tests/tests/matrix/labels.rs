//! Matrix rows of labels (one per route; see matrix/mod.rs).

use super::Row;

pub fn rows() -> Vec<Row> {
    vec![]
}
