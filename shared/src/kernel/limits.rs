//! Every size limit the API enforces, in one place. Areas and adapters import them from
//! here; the OpenAPI document states them (`maxLength`, `maxItems`, `maximum`) from the same
//! constants, and docs/ quotes them.

// Identity (the seed's user rules).
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MIN_USERNAME_CHARS: usize = 3;
pub const MAX_USERNAME_CHARS: usize = 32;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MAX_BIO_CHARS: usize = 500;
pub const MAX_URL_CHARS: usize = 2048;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
/// A login password longer than this is refused before hashing (argon2 cost is per byte).
pub const MAX_LOGIN_PASSWORD_BYTES: usize = 1024;

// Names and free text of workspaces, teams, workflows, states and cycles.
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MIN_URL_KEY: usize = 3;
pub const MAX_URL_KEY: usize = 48;
/// Team keys: 1-10 ASCII letters or digits, starting with a letter; they prefix issue
/// identifiers (`ENG-42`).
pub const MAX_TEAM_KEY: usize = 10;
pub const MAX_COMMENT_BODY_CHARS: usize = 10_000;

// Issues.
pub const MAX_TITLE_CHARS: usize = 255;
pub const MAX_ISSUE_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_ISSUE_LABELS: usize = 20;
/// How far up the parent chain a parent change looks for a cycle.
pub const MAX_PARENT_DEPTH: usize = 50;
/// Longest id accepted in a body or query (ids are ~48 characters).
pub const MAX_ID_CHARS: usize = 100;
/// Longest `q` (title search) of an issue list.
pub const MAX_QUERY_CHARS: usize = 255;

// Projects and project statuses.
pub const MAX_PROJECT_NAME_CHARS: usize = 100;
pub const MAX_PROJECT_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_PROJECT_KEY_CHARS: usize = 10;
pub const MAX_STATUS_NAME_CHARS: usize = 50;

// Workflows (`MAX_POSITION` also bounds project status positions).
/// Most states one workflow holds.
pub const MAX_STATES: usize = 50;
pub const MAX_POSITION: i64 = 1_000_000;

// Cycles.
/// Issues one `POST /cycles/{id}/issues` may assign (one transaction with their change records).
pub const MAX_CYCLE_ASSIGN: usize = 50;
/// Issues of one cycle that stats and deletes consider.
pub const MAX_CYCLE_ISSUES: usize = 5000;

// Invite codes.
pub const DEFAULT_CODE_HOURS: i64 = 168;
pub const MAX_CODE_HOURS: i64 = 720;
pub const MAX_CODE_USES: i64 = 1000;

// Pages.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
pub const MAX_PAGE_LIMIT: u32 = 100;
pub const MAX_CHANGES_LIMIT: u32 = 1000;

// Requests and messages.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// API Gateway's WebSocket message limit.
pub const MAX_WS_MESSAGE_BYTES: usize = 128 * 1024;
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// `data` of a direct message (`/ws/send`, `/ws/broadcast`), as compact JSON: well inside
/// `MAX_WS_MESSAGE_BYTES` once the server's stamps are added.
pub const MAX_DIRECT_MESSAGE_DATA_BYTES: usize = 32 * 1024;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Responses larger than this are not stored for replay (the key is released instead).
pub const MAX_IDEMPOTENT_BODY: usize = 256 * 1024;

// Labels.

pub const MAX_LABEL_NAME_CHARS: usize = 50;
pub const MAX_LABEL_DESCRIPTION_CHARS: usize = 500;

// Label batches commit in one transaction (all or nothing, never visible in part), so an
// item count is what one transaction holds: `storage::MAX_TRANSACTION_OPS` (100) operations,
// spent per item as below (the change numbers are drawn before the transaction and cost it
// nothing; the write-op builders in `areas/labels/layout.rs`; a unit test there checks these counts).

/// Operations a created label costs: put label, claim its name marker, change record.
pub const LABEL_CREATE_OPS: usize = 3;
/// Operations an updated label costs at most: versioned put, claim the new name marker,
/// delete the old one, change record (a rename; without one it is 2, unchanged 0).
pub const LABEL_UPDATE_OPS: usize = 4;
/// Operations a deleted label costs: delete the label conditioned on its deletion mark (the
/// mark itself is set in an earlier transaction, see `areas/issues/references.rs`, and adds
/// nothing here), delete its name marker, change record.
pub const LABEL_DELETE_OPS: usize = 3;

/// Most labels in one batch create: 100 / 3 = 33.
pub const MAX_LABEL_BATCH_CREATE: usize = MAX_TRANSACTION_OPS / LABEL_CREATE_OPS;
/// Most labels in one batch update, every item possibly a rename: 100 / 4 = 25.
pub const MAX_LABEL_BATCH_UPDATE: usize = MAX_TRANSACTION_OPS / LABEL_UPDATE_OPS;
/// Most labels in one batch delete: 100 / 3 = 33.
pub const MAX_LABEL_BATCH_DELETE: usize = MAX_TRANSACTION_OPS / LABEL_DELETE_OPS;

/// Items in one DynamoDB transaction (a DynamoDB limit, defined with the storage port).
pub use crate::storage::MAX_TRANSACTION_OPS;
