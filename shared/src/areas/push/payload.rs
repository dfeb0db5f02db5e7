//! The provider payloads built from a `PushMessage`: APNs (`aps.alert{title,body}`,
//! `aps.badge`, the app's data beside `aps`) and FCM (HTTP v1 message, as SNS takes it under
//! `GCM`: `fcmV1Message`). Both providers refuse payloads over 4096 bytes, so the body (then
//! the data, then the title) is shortened until the serialised payload fits.

use serde_json::{Value, json};

use super::PushMessage;

/// Largest payload APNs accepts for a regular notification, and FCM's data limit.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

const ELLIPSIS: char = '\u{2026}';

fn apns(m: &PushMessage, title: &str, body: &str, data: &Value) -> Value {
    json!({
        "aps": {
            "alert": {"title": title, "body": body},
            "badge": m.badge,
            "sound": "default",
            "thread-id": m.workspace_id,
        },
        "notification_id": m.notification_id,
        "workspace_id": m.workspace_id,
        "data": data,
    })
}

fn fcm(m: &PushMessage, title: &str, body: &str, data: &Value) -> Value {
    // FCM data values are strings only: the app's data travels as one JSON string.
    json!({
        "fcmV1Message": {
            "message": {
                "notification": {"title": title, "body": body},
                "data": {
                    "notification_id": m.notification_id,
                    "workspace_id": m.workspace_id,
                    "badge": m.badge.to_string(),
                    "data": data.to_string(),
                },
                "android": {"notification": {"notification_count": m.badge}},
            }
        }
    })
}

/// `s` cut to at most `chars` characters, with an ellipsis when cut.
fn cut(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(chars.saturating_sub(1)).collect();
    out.push(ELLIPSIS);
    out
}

/// The payload `build` makes of `m`, shortened to fit `MAX_PAYLOAD_BYTES`: the longest body
/// that fits (binary search over its characters); if even an empty body does not, the data
/// is dropped, then the title is shortened the same way.
fn fitted(m: &PushMessage, build: fn(&PushMessage, &str, &str, &Value) -> Value) -> Value {
    let fits = |v: &Value| v.to_string().len() <= MAX_PAYLOAD_BYTES;
    let whole = build(m, &m.title, &m.body, &m.data);
    if fits(&whole) {
        return whole;
    }
    let longest = |title: &str, data: &Value| -> Option<Value> {
        let (mut lo, mut hi) = (0usize, m.body.chars().count());
        if !fits(&build(m, title, "", data)) {
            return None;
        }
        // Invariant: a body of `lo` characters fits, one of `hi + 1` does not.
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(&build(m, title, &cut(&m.body, mid), data)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(build(m, title, &cut(&m.body, lo), data))
    };
    if let Some(v) = longest(&m.title, &m.data) {
        return v;
    }
    let no_data = json!({});
    if let Some(v) = longest(&m.title, &no_data) {
        return v;
    }
    let (mut lo, mut hi) = (0usize, m.title.chars().count());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&build(m, &cut(&m.title, mid), "", &no_data)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    build(m, &cut(&m.title, lo), "", &no_data)
}

/// The APNs payload (`aps` + data), at most `MAX_PAYLOAD_BYTES` serialised.
pub fn apns_payload(m: &PushMessage) -> Value {
    fitted(m, apns)
}

/// The FCM payload (`fcmV1Message`), at most `MAX_PAYLOAD_BYTES` serialised.
pub fn fcm_payload(m: &PushMessage) -> Value {
    fitted(m, fcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(title: &str, body: &str, data: Value) -> PushMessage {
        PushMessage {
            user_id: "u".into(),
            workspace_id: "w".into(),
            notification_id: "n1".into(),
            title: title.into(),
            body: body.into(),
            badge: 7,
            data,
        }
    }

    #[test]
    fn a_small_message_is_sent_whole_with_the_badge() {
        let m = message(
            "Ana assigned you MOM-12",
            "Fix login",
            json!({"issue_id": "i1"}),
        );
        let a = apns_payload(&m);
        assert_eq!(a["aps"]["alert"]["title"], "Ana assigned you MOM-12");
        assert_eq!(a["aps"]["alert"]["body"], "Fix login");
        assert_eq!(a["aps"]["badge"], 7);
        assert_eq!(a["data"]["issue_id"], "i1");
        let f = fcm_payload(&m);
        let msg = &f["fcmV1Message"]["message"];
        assert_eq!(msg["notification"]["body"], "Fix login");
        assert_eq!(msg["data"]["badge"], "7");
        assert_eq!(msg["data"]["data"], r#"{"issue_id":"i1"}"#);
        assert_eq!(msg["android"]["notification"]["notification_count"], 7);
    }

    #[test]
    fn a_long_body_is_cut_to_fit_4096_bytes_on_both_providers() {
        // Multi-byte characters (serde_json writes them raw: 2 and 3 bytes), so a cut by
        // bytes would split one.
        let body = "é€".repeat(3000);
        let m = message("title", &body, json!({"issue_id": "i1"}));
        for p in [apns_payload(&m), fcm_payload(&m)] {
            let len = p.to_string().len();
            assert!(len <= MAX_PAYLOAD_BYTES, "{len} bytes");
            // Not cut more than needed: within a few characters of the limit.
            assert!(len > MAX_PAYLOAD_BYTES - 16, "{len} bytes");
        }
        let a = apns_payload(&m);
        let cut_body = a["aps"]["alert"]["body"].as_str().unwrap();
        assert!(cut_body.ends_with(ELLIPSIS));
        assert!(body.starts_with(cut_body.trim_end_matches(ELLIPSIS)));
        assert_eq!(
            a["data"]["issue_id"], "i1",
            "the data is kept while the body can give"
        );
    }

    #[test]
    fn oversized_data_is_dropped_and_then_the_title_cut() {
        let m = message(&"t".repeat(5000), "body", json!({"blob": "x".repeat(5000)}));
        for p in [apns_payload(&m), fcm_payload(&m)] {
            assert!(p.to_string().len() <= MAX_PAYLOAD_BYTES);
        }
        let a = apns_payload(&m);
        assert_eq!(a["data"], json!({}));
        assert_eq!(a["aps"]["badge"], 7);
        assert!(a["aps"]["alert"]["title"].as_str().unwrap().len() > 3000);
    }
}
