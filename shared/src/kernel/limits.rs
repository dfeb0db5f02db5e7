//! Every size limit the API enforces, in one place (the OpenAPI document states them from here).

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MIN_USERNAME_CHARS: usize = 3;
pub const MAX_USERNAME_CHARS: usize = 32;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
pub const MAX_BIO_CHARS: usize = 500;
pub const MAX_URL_CHARS: usize = 2048;
