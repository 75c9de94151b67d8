//! `docs/openapi.yaml` describes the API the code serves: the same (method, path) set as the route
//! table, every operation able to answer with the error envelope, and the envelope itself exactly
//! `{"error": string, "message": string}`. `infra/scripts/conformance.sh` checks the responses
//! themselves against the document (schemathesis against the dev gateway).

use std::collections::BTreeSet;

use serde_norway::Value;
use tollgate::routes::{Access, routes};

const ERROR_SCHEMA: &str = "#/components/schemas/Error";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
    serde_norway::from_str(&text).expect("docs/openapi.yaml parses as YAML")
}

/// Follows a local `$ref` (`#/a/b/c`) to the value it names; other values are returned as they are.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    let mut value = value;
    for _ in 0..16 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let pointer = reference
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("only local references are used: {reference}"));
        value = pointer.split('/').fold(document, |node, segment| {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            node.get(segment.as_str())
                .unwrap_or_else(|| panic!("dangling reference {reference}"))
        });
    }
    panic!("reference cycle at {value:?}")
}

/// Every operation: (METHOD, path, operation object).
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let paths = document["paths"].as_mapping().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path is a string");
        let item = item.as_mapping().expect("path item");
        for (key, operation) in item {
            let key = key.as_str().expect("path item key");
            if METHODS.contains(&key) {
                operations.push((key.to_uppercase(), path.to_owned(), operation));
            }
        }
    }
    operations
}

fn references_error_envelope(document: &Value, response: &Value) -> bool {
    let response = resolve(document, response);
    response["content"]["application/json"]["schema"]["$ref"].as_str() == Some(ERROR_SCHEMA)
}

#[test]
fn document_is_openapi_3_1() {
    let document = document();
    let version = document["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "{version}");
}

#[test]
fn document_routes_equal_the_route_table() {
    let document = document();
    let documented: BTreeSet<(String, String)> = operations(&document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = routes()
        .iter()
        .map(|route| (route.method.as_str().to_owned(), route.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}; \
         documented but not in the route table: {not_served:?}"
    );
}

#[test]
fn every_operation_declares_a_4xx_with_the_error_envelope() {
    let document = document();
    let mut missing = Vec::new();
    for (method, path, operation) in operations(&document) {
        let responses = operation["responses"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"));
        let has_envelope = responses.iter().any(|(status, response)| {
            let status = match status {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("{method} {path}: status key {other:?}"),
            };
            status.starts_with('4') && references_error_envelope(&document, response)
        });
        if !has_envelope {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "operations without a 4xx error-envelope response: {missing:?}"
    );
}

#[test]
fn every_error_response_uses_the_envelope() {
    let document = document();
    for (method, path, operation) in operations(&document) {
        let responses = operation["responses"].as_mapping().expect("responses");
        for (status, response) in responses {
            let status = match status {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("{method} {path}: status key {other:?}"),
            };
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    references_error_envelope(&document, response),
                    "{method} {path} {status} does not use {ERROR_SCHEMA}"
                );
            }
        }
    }
}

#[test]
fn the_error_envelope_is_exactly_error_and_message() {
    let document = document();
    let envelope = &document["components"]["schemas"]["Error"];
    assert_eq!(envelope["type"].as_str(), Some("object"));
    assert_eq!(envelope["additionalProperties"].as_bool(), Some(false));
    let properties: BTreeSet<&str> = envelope["properties"]
        .as_mapping()
        .expect("Error.properties")
        .iter()
        .map(|(name, schema)| {
            assert_eq!(schema["type"].as_str(), Some("string"), "{name:?}");
            name.as_str().expect("property name")
        })
        .collect();
    assert_eq!(properties, BTreeSet::from(["error", "message"]));
    let required: BTreeSet<&str> = envelope["required"]
        .as_sequence()
        .expect("Error.required")
        .iter()
        .map(|name| name.as_str().expect("required name"))
        .collect();
    assert_eq!(required, BTreeSet::from(["error", "message"]));
}

/// Request bodies reject unknown fields, so every documented JSON request body object says so
/// (the Stripe event, which Stripe shapes, is the one open body).
#[test]
fn request_bodies_reject_unknown_fields() {
    let document = document();
    for (method, path, operation) in operations(&document) {
        let Some(body) = operation.get("requestBody") else {
            continue;
        };
        let body = resolve(&document, body);
        let schema = resolve(&document, &body["content"]["application/json"]["schema"]);
        if path == "/api/webhooks/stripe" {
            continue;
        }
        assert_eq!(
            schema["additionalProperties"].as_bool(),
            Some(false),
            "{method} {path}: request body must set additionalProperties: false"
        );
    }
}

/// Bearer security everywhere except the Stripe webhook, which is authenticated by signature; the
/// service route uses the service-key scheme; the routes an organization API key may call (a
/// permission keys may use, `rbac::key_may_use`) list the `apiKey` scheme too, and no other does.
#[test]
fn security_follows_the_route_table() {
    let document = document();
    let schemes = document["components"]["securitySchemes"]
        .as_mapping()
        .expect("securitySchemes");
    for (_, scheme) in schemes {
        assert_eq!(scheme["type"].as_str(), Some("http"));
        assert_eq!(scheme["scheme"].as_str(), Some("bearer"));
    }
    let global = &document["security"];
    for (method, path, operation) in operations(&document) {
        let Some(route) = routes()
            .iter()
            .find(|r| r.method.as_str() == method && r.path == path)
        else {
            continue; // reported by document_routes_equal_the_route_table
        };
        let security = operation.get("security").unwrap_or(global);
        let names: BTreeSet<&str> = security
            .as_sequence()
            .expect("security is a list")
            .iter()
            .flat_map(|requirement| requirement.as_mapping().expect("requirement").keys())
            .map(|name| name.as_str().expect("scheme name"))
            .collect();
        let expected: BTreeSet<&str> = match route.access {
            Access::Stripe => BTreeSet::new(),
            Access::Service => BTreeSet::from(["serviceKey"]),
            Access::Permission(permission) if tollgate::rbac::key_may_use(permission) => {
                BTreeSet::from(["userToken", "apiKey"])
            }
            Access::AnyOf(permissions)
                if permissions.iter().any(|p| tollgate::rbac::key_may_use(*p)) =>
            {
                BTreeSet::from(["userToken", "apiKey"])
            }
            _ => BTreeSet::from(["userToken"]),
        };
        assert_eq!(names, expected, "{method} {path}");
        if route.access == Access::Stripe {
            let parameters = operation["parameters"].as_sequence().expect("parameters");
            assert!(
                parameters.iter().any(|p| {
                    let p = resolve(&document, p);
                    p["in"].as_str() == Some("header")
                        && p["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case("stripe-signature"))
                }),
                "{method} {path} documents the Stripe-Signature header"
            );
        }
    }
}

/// The `Permission` schema (what `GET /api/me` lists and the permission check takes) is every
/// permission of the role table, in both scopes.
#[test]
fn the_permission_schema_lists_every_permission() {
    let document = document();
    let listed: BTreeSet<String> = document["components"]["schemas"]["Permission"]["enum"]
        .as_sequence()
        .expect("Permission.enum")
        .iter()
        .map(|p| p.as_str().expect("a string").to_owned())
        .collect();
    let expected: BTreeSet<String> = tollgate::rbac::Permission::ALL
        .iter()
        .flat_map(|p| [p.as_str().to_owned(), format!("{}:own", p.as_str())])
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn the_webhook_delivery_is_described_as_the_notifier_sends_it() {
    let document = document();
    let post = &document["webhooks"]["auditEvent"]["post"];
    let headers: Vec<&str> = post["parameters"]
        .as_sequence()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"].as_str() == Some("header"))
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(headers, notifier::signature::HEADERS);
    let schema = resolve(
        &document,
        &post["requestBody"]["content"]["application/json"]["schema"],
    );
    let described: std::collections::BTreeSet<&str> = schema["properties"]
        .as_mapping()
        .expect("properties")
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    let event: tollgate::store::audit::AuditEvent = serde_json::from_value(serde_json::json!({
        "id": "evt_019ad6f1c2a87b3e9d1f0a4c5b6e7d8f",
        "type": "organization.updated",
        "occurredAt": "2026-12-01T00:00:00Z",
        "actor": {"type": "user", "id": "usr_1"},
        "organizationId": "org_1",
        "target": {"type": "organization", "id": "org_1"}
    }))
    .expect("event");
    let sent = serde_json::to_value(notifier::Payload::of(&event)).expect("payload");
    let sent: std::collections::BTreeSet<&str> = sent
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(described, sent);
}
