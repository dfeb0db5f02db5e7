//! The text rules every field follows: emails, usernames, bounded free text, URLs.

use crate::error::{AppError, AppResult};
use crate::kernel::limits::*;

/// Validates and normalises an email; returns `(email, email_key)`.
pub fn normalize_email(field: &str, raw: &str) -> AppResult<(String, String)> {
    let email = raw.trim();
    let invalid = || AppError::validation(field, "must be a valid email address");
    if email.is_empty() {
        return Err(AppError::validation(field, "is required"));
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(AppError::validation(
            field,
            format!("must be at most {MAX_EMAIL_CHARS} characters"),
        ));
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2 && labels.iter().all(|l| label_ok(l));
    if !local_ok || !domain_ok {
        return Err(invalid());
    }
    Ok((email.to_owned(), email.to_lowercase()))
}

/// Usernames: 3–32 characters of letters, digits, `_`, `-`, `.`, starting with a letter or
/// digit.
pub fn validate_username(field: &str, raw: &str) -> AppResult<String> {
    let name = raw.trim();
    let n = name.chars().count();
    if !(MIN_USERNAME_CHARS..=MAX_USERNAME_CHARS).contains(&n) {
        return Err(AppError::validation(
            field,
            format!("must be {MIN_USERNAME_CHARS} to {MAX_USERNAME_CHARS} characters"),
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(AppError::validation(
            field,
            "may contain only letters, digits, '_', '-' and '.', and must start with a letter or digit",
        ));
    }
    Ok(name.to_owned())
}

/// At most `max` characters in the text as sent (as the schema's `maxLength` counts them):
/// checked before trimming, so what is stored is never longer.
pub fn at_most_chars(field: &str, raw: &str, max: usize) -> AppResult<()> {
    if raw.chars().count() > max {
        return Err(AppError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Optional free text: CRLF becomes LF, trimmed, bounded; newlines and tabs are kept, other
/// control characters refused; empty means none. The one rule for every text field, which
/// `openapi::TEXT_PATTERN` states for clients.
pub fn optional_text(field: &str, raw: Option<&str>, max: usize) -> AppResult<Option<String>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    at_most_chars(field, raw, max)?;
    let normalized = raw.replace("\r\n", "\n");
    let text = normalized.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(AppError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// Optional https URL (avatars); empty means none.
pub fn optional_url(field: &str, raw: Option<&str>) -> AppResult<Option<String>> {
    let Some(url) = optional_text(field, raw, MAX_URL_CHARS)? else {
        return Ok(None);
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| AppError::validation(field, "must be an https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err(AppError::validation(field, "must be an https:// URL"));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        let (e, k) = normalize_email("email", "  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(
            (e.as_str(), k.as_str()),
            ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com")
        );
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@.com",
            "a..b@c.com",
            "a b@c.com",
            "a@b_c.com",
        ] {
            let err = normalize_email("email", bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("email"), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(normalize_email("email", &long).is_err());
    }

    #[test]
    fn usernames() {
        assert_eq!(validate_username("username", " ada_l ").unwrap(), "ada_l");
        for bad in ["ab", "_ada", "ada lovelace", "ädä", &"a".repeat(33)] {
            assert!(validate_username("username", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_text() {
        assert!(optional_url("avatar_url", Some("http://x.com/a.png")).is_err());
        assert!(optional_url("avatar_url", Some("javascript:alert(1)")).is_err());
        assert_eq!(optional_url("avatar_url", Some("")).unwrap(), None);
        assert!(
            optional_url("avatar_url", Some("https://cdn.example.com/a.png"))
                .unwrap()
                .is_some()
        );
        assert!(optional_text("bio", Some("a\u{0}b"), 10).is_err());
        assert!(optional_text("bio", Some(&"x".repeat(11)), 10).is_err());
    }
}
