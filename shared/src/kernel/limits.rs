//! Every size limit the API enforces, in one place (the OpenAPI document states them from here).

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MIN_USERNAME_CHARS: usize = 3;
pub const MAX_USERNAME_CHARS: usize = 32;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MAX_BIO_CHARS: usize = 500;
pub const MAX_URL_CHARS: usize = 2048;

// Labels.

pub const MAX_LABEL_NAME_CHARS: usize = 50;
pub const MAX_LABEL_DESCRIPTION_CHARS: usize = 500;

// Label batches commit in one transaction (all or nothing, never visible in part), so an
// item count is what one transaction holds: `storage::MAX_TRANSACTION_OPS` (100) operations,
// one of which is the change-log sequence counter, the rest spent per item as below (the
// write-op builders in `areas/labels/layout.rs`; a unit test there checks these counts).

/// Operations a created label costs: put label, claim its name marker, change record.
pub const LABEL_CREATE_OPS: usize = 3;
/// Operations an updated label costs at most: versioned put, claim the new name marker,
/// delete the old one, change record (a rename; without one it is 2, unchanged 0).
pub const LABEL_UPDATE_OPS: usize = 4;
/// Operations a deleted label costs: delete the label conditioned on its deletion mark (the
/// mark itself is set in an earlier transaction, see `areas/issues/references.rs`, and adds
/// nothing here), delete its name marker, change record.
pub const LABEL_DELETE_OPS: usize = 3;

/// Most labels in one batch create: (100 - 1) / 3 = 33.
pub const MAX_LABEL_BATCH_CREATE: usize =
    (crate::storage::MAX_TRANSACTION_OPS - 1) / LABEL_CREATE_OPS;
/// Most labels in one batch update, every item possibly a rename: (100 - 1) / 4 = 24.
pub const MAX_LABEL_BATCH_UPDATE: usize =
    (crate::storage::MAX_TRANSACTION_OPS - 1) / LABEL_UPDATE_OPS;
/// Most labels in one batch delete: (100 - 1) / 3 = 33.
pub const MAX_LABEL_BATCH_DELETE: usize =
    (crate::storage::MAX_TRANSACTION_OPS - 1) / LABEL_DELETE_OPS;
