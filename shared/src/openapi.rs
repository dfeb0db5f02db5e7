//! Refinements of the generated OpenAPI document that follow from conventions rather than
//! from one type: every id field and id path parameter gets the exact shape of the id it
//! names, and `If-Match` headers get the grammar `parse_if_match` accepts. Clients (and
//! schemathesis) then know which strings can name something without a round trip; a value
//! of the right shape that names nothing is a 404, one of the wrong shape a 400 or 404.

use serde_json::{Value, json};

use crate::kernel::ids::Kind;

/// The shape of an id of `kind`: its prefix and 43 characters of the ids' base64 alphabet.
pub fn id_pattern(kind: Kind) -> String {
    // 43 characters carry 258 bits of which 256 are used: the last one ends in two zero bits.
    format!("^{}_[-0-9A-Z_a-z]{{42}}[-37BFJNRVZcgkosw]$", kind.prefix())
}

/// `If-Match`: a version, optionally quoted or weak, or `*`.
pub const IF_MATCH_PATTERN: &str = r#"^[ \t]*(\*|(W/)?("[0-9]{1,18}"|[0-9]{1,18}))[ \t]*$"#;

/// Free text (every text field follows `optional_text`): CRLF or any character but the
/// control characters other than tab and newline.
pub const TEXT_PATTERN: &str = r"^(?:[^\x00-\x08\x0B-\x1F\x7F-\x9F]|\r\n)*$";

/// Text that must say something: the same, with at least one character that is not blank.
pub const REQUIRED_TEXT_PATTERN: &str = r"^(?:[^\x00-\x08\x0B-\x1F\x7F-\x9F]|\r\n)*[^\s\x00-\x1F\x7F-\x9F](?:[^\x00-\x08\x0B-\x1F\x7F-\x9F]|\r\n)*$";

/// Text fields by name: names, titles and bodies must not be blank; the rest may be.
fn text_pattern_of(name: &str) -> Option<&'static str> {
    match name {
        "name" | "title" | "body" => Some(REQUIRED_TEXT_PATTERN),
        "description" | "bio" | "display_name" => Some(TEXT_PATTERN),
        _ => None,
    }
}

/// What an id-named field or parameter holds.
enum IdShape {
    Uuid,
    Scoped(Kind),
    /// An API token's (or a push device's) id: 32 lowercase hex characters.
    Token,
}

/// The shape of an API token id.
pub const TOKEN_ID_PATTERN: &str = "^[0-9a-f]{32}$";

/// Fields and query parameters named like this hold ids of one shape, wherever they occur.
fn shape_of_name(name: &str) -> Option<IdShape> {
    use IdShape::*;
    Some(match name {
        "workspace_id" | "user_id" | "to_user_id" | "assignee_id" | "owner_id" | "author_id"
        | "actor_id" => Uuid,
        "team_id" => Scoped(Kind::Team),
        "workflow_id" => Scoped(Kind::Workflow),
        "state_id" | "default_state_id" => Scoped(Kind::State),
        "project_id" => Scoped(Kind::Project),
        "status_id" => Scoped(Kind::ProjectStatus),
        "issue_id" | "parent_id" | "issue_ids" => Scoped(Kind::Issue),
        "cycle_id" => Scoped(Kind::Cycle),
        "label_id" | "label_ids" => Scoped(Kind::Label),
        "token_id" => Token,
        "webhook_id" => Scoped(Kind::Webhook),
        "delivery_id" => Scoped(Kind::WebhookDelivery),
        _ => return None,
    })
}

/// The `{id}` of a path names an entity of the kind of its first segment.
fn shape_of_path_id(path: &str) -> Option<IdShape> {
    let first = path.trim_start_matches('/').split('/').next()?;
    Some(match first {
        "workspaces" => IdShape::Uuid,
        "teams" => IdShape::Scoped(Kind::Team),
        "workflows" => IdShape::Scoped(Kind::Workflow),
        "projects" => IdShape::Scoped(Kind::Project),
        "project-statuses" => IdShape::Scoped(Kind::ProjectStatus),
        "issues" => IdShape::Scoped(Kind::Issue),
        "cycles" => IdShape::Scoped(Kind::Cycle),
        "labels" => IdShape::Scoped(Kind::Label),
        "comments" => IdShape::Scoped(Kind::Comment),
        "invitations" => IdShape::Scoped(Kind::Invitation),
        "auth" if path.starts_with("/auth/tokens/") => IdShape::Token,
        // Push device ids have the same shape as API token ids.
        "auth" if path.starts_with("/auth/devices/") => IdShape::Token,
        "webhooks" => IdShape::Scoped(Kind::Webhook),
        _ => return None,
    })
}

/// Narrows a string schema (or an array of strings, or a nullable string) to `shape`.
fn constrain(schema: &mut Value, shape: &IdShape) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if admits(obj.get("type"), "array") {
        if let Some(items) = obj.get_mut("items") {
            constrain(items, shape);
        }
        return;
    }
    if !admits(obj.get("type"), "string") {
        return;
    }
    match shape {
        IdShape::Uuid => {
            obj.insert("format".into(), json!("uuid"));
        }
        IdShape::Scoped(kind) => {
            obj.insert("pattern".into(), json!(id_pattern(*kind)));
        }
        IdShape::Token => {
            obj.insert("pattern".into(), json!(TOKEN_ID_PATTERN));
        }
    }
}

/// Whether a schema's `type` (one name or a list, as OpenAPI 3.1 writes nullable) admits `t`.
fn admits(ty: Option<&Value>, t: &str) -> bool {
    match ty {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(ts)) => ts.iter().any(|x| x == t),
        _ => false,
    }
}

/// Walks every schema (components, bodies, parameters) and constrains id-named and text
/// properties.
fn constrain_properties(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if let Some(shape) = shape_of_name(name) {
                        constrain(prop, &shape);
                    }
                    if let Some(pattern) = text_pattern_of(name)
                        && admits(prop.get("type"), "string")
                        && prop.get("pattern").is_none()
                    {
                        prop["pattern"] = json!(pattern);
                    }
                }
            }
            for (_, v) in map.iter_mut() {
                constrain_properties(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(constrain_properties),
        _ => {}
    }
}

fn constrain_parameters(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, ops) in paths.iter_mut() {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for param in params {
                let name = param["name"].as_str().unwrap_or_default().to_owned();
                let location = param["in"].as_str().unwrap_or_default().to_owned();
                let Some(schema) = param.get_mut("schema") else {
                    continue;
                };
                let shape = match (location.as_str(), name.as_str()) {
                    ("path", "id") => shape_of_path_id(path),
                    ("path" | "query", n) => shape_of_name(n),
                    ("header", "If-Match") => {
                        *schema = json!({"type": "string", "pattern": IF_MATCH_PATTERN});
                        None
                    }
                    _ => None,
                };
                if let Some(shape) = shape {
                    constrain(schema, &shape);
                }
            }
        }
    }
}

/// A required request field of any JSON type (a message to relay) must not be `null`.
fn required_request_values_are_not_null(doc: &mut Value) {
    let mut bodies = Vec::new();
    for ops in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for op in ops.as_object().into_iter().flat_map(|o| o.values()) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            if let Some(name) = schema.as_str().and_then(|r| r.rsplit('/').next()) {
                bodies.push(name.to_owned());
            }
        }
    }
    for name in bodies {
        let schema = &mut doc["components"]["schemas"][&name];
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let Some(props) = schema["properties"].as_object_mut() else {
            continue;
        };
        for (field, prop) in props.iter_mut() {
            let untyped = prop.as_object().is_some_and(|o| {
                !["type", "$ref", "oneOf", "allOf", "anyOf", "enum", "const"]
                    .iter()
                    .any(|k| o.contains_key(*k))
            });
            if untyped && required.contains(field) {
                prop["not"] = json!({"type": "null"});
            }
        }
    }
}

/// Links from each create (`POST /things`) to the operations on what it created
/// (`/things/{id}`, `/things/{id}/...` without further parameters), so stateful testing
/// follows real ids: the envelope carries the new record as `data`.
fn link_creations(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object() else {
        return;
    };
    let mut links: Vec<(String, String, Value)> = Vec::new();
    for (collection, ops) in paths {
        let Some(post) = ops.get("post") else {
            continue;
        };
        let Some(status) = ["201", "200"]
            .into_iter()
            .find(|s| post["responses"].get(*s).is_some())
        else {
            continue;
        };
        let mut these = serde_json::Map::new();
        let item = format!("{collection}/{{id}}");
        for (path, item_ops) in paths {
            // Accepting or declining an invitation is the invitee's act, not its creator's.
            let invitee_only = path.ends_with("/accept") || path.ends_with("/decline");
            let under = path == &item
                || (path.starts_with(&format!("{item}/")) && path.matches('{').count() == 1);
            if invitee_only {
                continue;
            }
            if !under {
                continue;
            }
            for method in item_ops.as_object().into_iter().flat_map(|o| o.keys()) {
                let pointer = format!(
                    "#/paths/{}/{method}",
                    path.replace('~', "~0").replace('/', "~1")
                );
                let name = format!("{method} {path}");
                these.insert(
                    name,
                    json!({"operationRef": pointer, "parameters": {"id": "$response.body#/data/id"}}),
                );
            }
        }
        if !these.is_empty() {
            links.push((collection.clone(), status.to_owned(), Value::Object(these)));
        }
    }
    for (collection, status, these) in links {
        doc["paths"][&collection]["post"]["responses"][&status]["links"] = these;
    }
}

/// Applies the conventions above to a serialised document.
pub fn refine(doc: &mut Value) {
    constrain_parameters(doc);
    constrain_properties(doc);
    required_request_values_are_not_null(doc);
    link_creations(doc);
}

/// The served document: the generated one, serialised and refined.
pub fn document(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut value = serde_json::to_value(doc).expect("an OpenAPI document serialises");
    refine(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_match_their_pattern() {
        let ws = uuid::Uuid::new_v4().to_string();
        for kind in [Kind::Issue, Kind::Team, Kind::State, Kind::Label] {
            let id = crate::kernel::ids::new_id(kind, &ws);
            let re = id_pattern(kind);
            assert!(re.starts_with(&format!("^{}_", kind.prefix())), "{re}");
            let rest = &id[kind.prefix().len() + 1..];
            assert_eq!(rest.len(), 43, "{id}");
            assert!(
                rest.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
            let last = rest.chars().last().unwrap();
            assert!(
                "-37BFJNRVZcgkosw".contains(last),
                "{id}: canonical last character"
            );
        }
    }

    #[test]
    fn refines_properties_and_parameters() {
        let mut doc = json!({
            "paths": {"/issues/{id}": {"put": {"parameters": [
                {"name": "id", "in": "path", "schema": {"type": "string"}},
                {"name": "If-Match", "in": "header", "schema": {"type": ["string", "null"]}}
            ]}}},
            "components": {"schemas": {"CreateIssue": {"properties": {
                "team_id": {"type": "string"},
                "assignee_id": {"type": ["string", "null"]},
                "label_ids": {"type": ["array", "null"], "items": {"type": "string"}},
                "title": {"type": "string"},
                "color": {"type": "string"}
            }}}}
        });
        refine(&mut doc);
        let params = &doc["paths"]["/issues/{id}"]["put"]["parameters"];
        assert_eq!(
            params[0]["schema"]["pattern"],
            json!(id_pattern(Kind::Issue))
        );
        assert_eq!(params[1]["schema"]["pattern"], json!(IF_MATCH_PATTERN));
        let props = &doc["components"]["schemas"]["CreateIssue"]["properties"];
        assert_eq!(props["team_id"]["pattern"], json!(id_pattern(Kind::Team)));
        assert_eq!(props["assignee_id"]["format"], json!("uuid"));
        assert_eq!(
            props["label_ids"]["items"]["pattern"],
            json!(id_pattern(Kind::Label))
        );
        assert_eq!(props["title"]["pattern"], json!(REQUIRED_TEXT_PATTERN));
        assert!(props["color"].get("pattern").is_none());
    }

    #[test]
    fn creations_link_to_their_item_operations() {
        let mut doc = json!({"paths": {
            "/things": {"post": {"responses": {"201": {}}}},
            "/things/{id}": {"get": {}, "delete": {}},
            "/things/{id}/parts": {"get": {}},
            "/things/{id}/accept": {"post": {}},
            "/things/{id}/parts/{part_id}": {"get": {}}
        }});
        refine(&mut doc);
        let links = doc["paths"]["/things"]["post"]["responses"]["201"]["links"]
            .as_object()
            .unwrap();
        let mut names: Vec<&str> = links.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "delete /things/{id}",
                "get /things/{id}",
                "get /things/{id}/parts"
            ]
        );
        assert_eq!(
            links["get /things/{id}"],
            json!({"operationRef": "#/paths/~1things~1{id}/get",
                   "parameters": {"id": "$response.body#/data/id"}})
        );
    }
}
