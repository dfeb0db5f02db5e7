//! The JSON input rules every request body and WebSocket command follows: strict JSON (a key
//! named twice in one object is refused), integral floats read as integers, and serde errors
//! turned into 400s naming the field by its path (`labels[1].color`). `http.rs` (bodies) and
//! `realtime` (commands) both parse through here, so the two name fields alike.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::AppError;

/// The first backticked name in a serde message: the field of "missing field `x`".
pub(crate) fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// Turns a serde error at `path` into a validation error naming the field.
fn body_error(path: &str, err: &serde_json::Error) -> AppError {
    use serde_json::error::Category;
    let message = err.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            AppError::validation("body", format!("malformed JSON: {message}"))
        }
        Category::Data => {
            // A path starting with an index means the body itself is an array.
            let at_root = path.is_empty() || path == "." || path.starts_with('[');
            // serde's path ends at the unknown field itself, but at the parent of a missing
            // one, whose name only the message carries.
            let missing = message
                .starts_with("missing field")
                .then(|| field_from_message(&message))
                .flatten();
            let field = match (missing, at_root) {
                (Some(name), true) => name,
                (Some(name), false) => format!("{path}.{name}"),
                (None, false) => path.to_owned(),
                (None, true) => "body".to_owned(),
            };
            AppError::validation(field, message)
        }
    }
}

/// JSON has one number type: `3.0` is the integer 3 (as JSON Schema says), so an integral
/// float is accepted wherever an integer is expected. Integer-valued fields deserialise from
/// the rewritten value; float-valued fields accept integers anyway.
fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Parses a JSON value (a WebSocket command's `data`) with the same strictness and field
/// naming as request bodies.
pub fn from_json_value<T: DeserializeOwned>(mut value: Value) -> Result<T, AppError> {
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        body_error(&path, e.inner())
    })
}

/// Why JSON text was refused by [`strict_json`].
#[derive(Debug)]
pub enum StrictJsonError {
    /// An object named a key twice; the key's path (`bio`, `labels[0].name`).
    DuplicateKey(String),
    Invalid(serde_json::Error),
}

impl StrictJsonError {
    /// The 400 a request gets, naming a duplicate key by its path with `prefix` stripped
    /// (a WebSocket command names the fields of its `data` as REST names body fields).
    pub fn into_error(self, prefix: &str) -> AppError {
        match self {
            StrictJsonError::DuplicateKey(path) => {
                let field = path.strip_prefix(prefix).unwrap_or(&path).to_owned();
                AppError::validation(
                    field,
                    "appears more than once in its object; send each key once",
                )
            }
            StrictJsonError::Invalid(e) => body_error("", &e),
        }
    }
}

/// Parses JSON text, refusing an object with a duplicate key at any depth. serde_json keeps
/// the last of two equal keys, so `{"bio": 5, "bio": "ok"}` would pass validation on a value
/// nobody checked; and another parser (a proxy, a WAF, the client's logs) may keep the first.
/// It builds the value in the same single pass serde_json's own would, plus one map lookup
/// per key.
pub fn strict_json(text: &[u8]) -> Result<Value, StrictJsonError> {
    use serde::de::DeserializeSeed;
    let duplicate = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = CheckedValue {
        path: JsonPath::Root,
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(StrictJsonError::DuplicateKey(path)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Invalid(e)),
    }
}

/// Where a value sits in the document, rendered only when a duplicate is found.
#[derive(Clone, Copy)]
enum JsonPath<'a> {
    Root,
    Key(&'a JsonPath<'a>, &'a str),
    Index(&'a JsonPath<'a>, usize),
}

impl JsonPath<'_> {
    /// The path as `serde_path_to_error` writes it, so every 400 names fields alike.
    fn render(&self, out: &mut String) {
        match self {
            JsonPath::Root => {}
            JsonPath::Key(parent, key) => {
                parent.render(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            JsonPath::Index(parent, i) => {
                parent.render(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

/// A `serde_json::Value` built while checking each object's keys; the first duplicate's path
/// goes to `duplicate` (the error type of a generic deserializer cannot carry it).
struct CheckedValue<'a> {
    path: JsonPath<'a>,
    duplicate: &'a std::cell::RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for CheckedValue<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CheckedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(CheckedValue {
            path: JsonPath::Index(&self.path, items.len()),
            duplicate: self.duplicate,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(CheckedValue {
                path: JsonPath::Key(&self.path, &key),
                duplicate: self.duplicate,
            })?;
            match object.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    let mut path = String::new();
                    JsonPath::Key(&self.path, slot.key()).render(&mut path);
                    *self.duplicate.borrow_mut() = Some(path);
                    return Err(A::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        nested: Option<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn parse(body: &str) -> AppError {
        let mut de = serde_json::Deserializer::from_str(body);
        let e = serde_path_to_error::deserialize::<_, Body>(&mut de).unwrap_err();
        body_error(&e.path().to_string(), e.inner())
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(parse("{}").field.as_deref(), Some("email"));
        assert_eq!(
            parse(r#"{"email":"a","admin":true}"#).field.as_deref(),
            Some("admin")
        );
        assert_eq!(parse(r#"{"email":5}"#).field.as_deref(), Some("email"));
        assert_eq!(
            parse(r#"{"email":"a","nested":{"count":-1}}"#)
                .field
                .as_deref(),
            Some("nested.count")
        );
        let syntax = parse(r#"{"email": "#);
        assert_eq!(syntax.field.as_deref(), Some("body"));
        assert!(syntax.message.starts_with("malformed JSON"));
    }

    #[test]
    fn duplicate_keys_are_refused_by_path() {
        let dup = |text: &str| match strict_json(text.as_bytes()) {
            Err(StrictJsonError::DuplicateKey(path)) => path,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(dup(r#"{"bio":5,"bio":"ok"}"#), "bio");
        assert_eq!(dup(r#"{"a":{"b":1,"c":{"d":1,"d":2}}}"#), "a.c.d");
        assert_eq!(
            dup(r#"{"labels":[{"id":"x"},{"id":"y","id":"y"}]}"#),
            "labels[1].id"
        );
        assert_eq!(dup(r#"[{"k":1,"k":1}]"#), "[0].k");
        // Equal keys in different objects, and escapes that spell another key, are fine.
        let ok = r#"{"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":2}],"k\u0031":1,"k1x":2}"#;
        assert_eq!(
            strict_json(ok.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(ok).unwrap()
        );
        // An escape that spells the same key is the same key.
        assert_eq!(dup(r#"{"bio":1,"b\u0069o":2}"#), "bio");
    }

    #[test]
    fn strict_json_reads_what_serde_json_reads() {
        for text in [
            r#"{"n":-1,"u":18446744073709551615,"f":1.5,"e":1e3,"s":"\u00e9\n","t":true,"z":null,"a":[],"o":{}}"#,
            "[1,[2,[3]]]",
            "\"x\"",
            " 7 ",
        ] {
            assert_eq!(
                strict_json(text.as_bytes()).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
        for bad in [r#"{"a":1"#, r#"{"a":1} x"#, "", r#"{"a":01}"#] {
            let e = strict_json(bad.as_bytes()).unwrap_err().into_error("");
            assert_eq!(e.field.as_deref(), Some("body"), "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(
            strict_json(deep.as_bytes()).is_err(),
            "serde_json's depth limit holds"
        );
    }
}
