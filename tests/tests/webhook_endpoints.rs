//! Outbound webhook endpoints through the dev gateway against DynamoDB Local: created with a
//! signing secret shown once and stored only encrypted, listed without it, deleted; every refused
//! body writes nothing; OWNER and ADMIN only, never an API key; tenant isolation; at most ten per
//! organization, also under concurrent creates; audit events in the same transaction.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use serde_json::{Value, json};
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate::store::webhook_endpoints::MAX_WEBHOOK_ENDPOINTS;
use tollgate_tests::{TestApp, assert_error};

const ENCRYPTION_KEY: &str = "7777777777777777777777777777777777777777777777777777777777777777";
const PATH: &str = "/api/webhooks/endpoints";

type Item = HashMap<String, AttributeValue>;

/// A gateway with a key ring; `allow_loopback` as `WEBHOOK_ALLOW_LOOPBACK`.
async fn start_with_loopback(allow_loopback: bool) -> TestApp {
    TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{ENCRYPTION_KEY}"));
        config.encryption_active_key = Some("k1".into());
        config.webhook_allow_loopback = allow_loopback;
    })
    .await
}

async fn start() -> TestApp {
    start_with_loopback(true).await
}

fn key_ring() -> tollgate::crypto::KeyRing {
    tollgate::crypto::KeyRing::from_env_strings(&format!("k1:{ENCRYPTION_KEY}"), "k1").unwrap()
}

/// An owner of a BUSINESS organization (seats for members, API keys): token, user id, org id.
async fn business(app: &TestApp, sub: &str) -> (String, String, String) {
    let (token, user) = app
        .organization_on_plan(sub, Plan::Business, PlanStatus::Active)
        .await;
    (token, user.id, user.organization_id.unwrap())
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or_default()
}

/// The stored endpoint items of `org`.
async fn endpoint_items(app: &TestApp, org: &str) -> Vec<Item> {
    app.raw_items()
        .await
        .into_iter()
        .filter(|item| {
            s(item, "PK") == format!("ORG#{org}") && s(item, "SK").starts_with("WEBHOOK#")
        })
        .collect()
}

/// The stored audit events of `org` of `kind`.
async fn audit_events(app: &TestApp, org: &str, kind: &str) -> Vec<Item> {
    app.raw_items()
        .await
        .into_iter()
        .filter(|item| {
            s(item, "PK") == format!("ORG#{org}")
                && s(item, "SK").starts_with("AUDIT#")
                && s(item, "type") == kind
        })
        .collect()
}

/// The organization item's endpoint counter.
async fn counter(app: &TestApp, org: &str) -> u64 {
    let tenant = tollgate::store::TenantId::from_partition_key(&format!("ORG#{org}")).unwrap();
    app.store
        .get_organization(&tenant)
        .await
        .unwrap()
        .unwrap()
        .webhook_endpoint_count
}

fn body(url: &str, types: &[&str]) -> Value {
    json!({"url": url, "eventTypes": types})
}

fn sorted_keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn create_list_and_delete_with_the_secret_shown_once() {
    let app = start().await;
    let (owner, owner_id, org) = business(&app, "auth0|wh-owner").await;

    let created = app
        .post(
            PATH,
            &owner,
            body(
                "https://Hooks.Example.COM/tollgate?src=tg",
                &["member.invited", "api_key.created", "member.invited"],
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        sorted_keys(&created.body),
        [
            "createdAt",
            "createdBy",
            "eventTypes",
            "id",
            "secret",
            "url"
        ]
    );
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(
        tollgate::store::webhook_endpoints::is_webhook_endpoint_id(&id),
        "{id}"
    );
    assert_eq!(
        created.body["url"],
        "https://hooks.example.com/tollgate?src=tg"
    );
    assert_eq!(
        created.body["eventTypes"],
        json!(["member.invited", "api_key.created"])
    );
    assert_eq!(created.body["createdBy"], owner_id);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let encoded = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("standard base64");
    assert_eq!(raw.len(), 32);

    // A second endpoint has its own secret.
    let second = app
        .post(
            PATH,
            &owner,
            body("https://other.example.com/", &["member.left"]),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let second_secret = second.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, secret);

    // Listed oldest first, without any secret, plain or encrypted.
    let listed = app.get(PATH, &owner).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let endpoints = listed.body["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[0]["id"], id.as_str());
    assert_eq!(endpoints[1]["id"], second.body["id"]);
    assert_eq!(
        sorted_keys(&endpoints[0]),
        ["createdAt", "createdBy", "eventTypes", "id", "url"]
    );
    let mut without_secret = created.body.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(endpoints[0], without_secret);
    let text = listed.body.to_string();
    for hidden in [secret.as_str(), encoded, second_secret.as_str(), "v1:k1:"] {
        assert!(!text.contains(hidden), "{hidden} listed: {text}");
    }

    // Stored: only encrypted under the key ring with the organization as associated data.
    for item in app.raw_items().await {
        let shown = format!("{item:?}");
        assert!(!shown.contains(encoded), "the secret is stored: {shown}");
        assert!(!shown.contains(&second_secret[6..]), "stored: {shown}");
    }
    let items = endpoint_items(&app, &org).await;
    assert_eq!(items.len(), 2);
    let item = items
        .iter()
        .find(|item| s(item, "SK") == format!("WEBHOOK#{id}"))
        .expect("the endpoint item");
    let stored = s(item, "signingSecret");
    assert!(stored.starts_with("v1:k1:"), "{stored}");
    assert_eq!(key_ring().decrypt(&org, stored).unwrap(), secret.as_bytes());
    assert!(
        key_ring().decrypt("org_another", stored).is_err(),
        "bound to its organization"
    );
    // The notifier's reads see the same endpoint.
    let tenant = tollgate_tests::tenant_of(&app, "auth0|wh-owner").await;
    let record = app
        .store
        .get_webhook_endpoint(&tenant, &id)
        .await
        .unwrap()
        .expect("read by id");
    assert_eq!(record.signing_secret, stored);
    assert!(record.wants("api_key.created") && !record.wants("member.left"));
    assert_eq!(
        app.store
            .list_webhook_endpoints(&tenant)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(counter(&app, &org).await, 2);

    // Deleted: 204 without a body; gone from the listing and the table; once only.
    let deleted = app.delete(&format!("{PATH}/{id}"), &owner).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(deleted.body, Value::Null);
    assert_eq!(deleted.headers["cache-control"], "no-store");
    let listed = app.get(PATH, &owner).await;
    assert_eq!(listed.body["endpoints"].as_array().unwrap().len(), 1);
    assert!(
        app.store
            .get_webhook_endpoint(&tenant, &id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(endpoint_items(&app, &org).await.len(), 1);
    assert_eq!(counter(&app, &org).await, 1);
    let before = app.all_items().await;
    assert_error(
        &app.delete(&format!("{PATH}/{id}"), &owner).await,
        404,
        "not_found",
    );
    for unknown in [
        "we_0123456789abcdef0123456789abcdef".to_owned(),
        "not-an-endpoint".to_owned(),
        id.replace("we_", "ak_"),
    ] {
        assert_error(
            &app.delete(&format!("{PATH}/{unknown}"), &owner).await,
            404,
            "not_found",
        );
    }
    assert_eq!(app.all_items().await, before, "a 404 writes nothing");
}

#[tokio::test]
async fn audit_events_are_written_with_the_change_and_never_the_secret() {
    let app = start().await;
    let (owner, owner_id, org) = business(&app, "auth0|wh-audit").await;
    let created = app
        .post(
            PATH,
            &owner,
            body(
                "https://hooks.example.com/audit",
                &["member.joined", "webhook_endpoint.deleted"],
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let deleted = app.delete(&format!("{PATH}/{id}"), &owner).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);

    assert_eq!(
        audit_events(&app, &org, "webhook_endpoint.created")
            .await
            .len(),
        1
    );
    assert_eq!(
        audit_events(&app, &org, "webhook_endpoint.deleted")
            .await
            .len(),
        1
    );
    // As the audit log shows them, newest first.
    let log = app.get("/api/audit", &owner).await;
    assert_eq!(log.status, 200, "{}", log.body);
    let events = log.body["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "webhook_endpoint.deleted");
    assert_eq!(
        events[0]["target"],
        json!({"type": "webhook_endpoint", "id": id})
    );
    assert_eq!(events[0]["actor"], json!({"type": "user", "id": owner_id}));
    assert!(events[0].get("after").is_none() && events[0].get("before").is_none());
    assert_eq!(events[1]["type"], "webhook_endpoint.created");
    assert_eq!(
        events[1]["target"],
        json!({"type": "webhook_endpoint", "id": id})
    );
    assert_eq!(
        events[1]["after"],
        json!({"origin": "https://hooks.example.com", "eventTypes": "member.joined,webhook_endpoint.deleted"})
    );
    assert!(events[1].get("before").is_none());
    let text = log.body.to_string();
    assert!(!text.contains(&secret[6..]), "{text}");
    assert!(!text.contains("v1:k1:"), "{text}");
    // And the type filter knows the new types.
    let filtered = app
        .get("/api/audit?type=webhook_endpoint.created", &owner)
        .await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    assert_eq!(filtered.body["events"].as_array().unwrap().len(), 1);
}

/// Attack: a receiver's URL often is its credential (`https://hooks.example.com/in/<token>`,
/// `?token=`). API keys may not see endpoints, yet an ADMIN key reads the audit log, and every
/// endpoint that wants `webhook_endpoint.created` receives that event: neither may learn more of
/// the URL than its origin.
#[tokio::test]
async fn the_audit_event_never_carries_the_urls_path_or_query() {
    let app = start().await;
    let (owner, _, org) = business(&app, "auth0|wh-audit-url").await;
    let created = app
        .post(
            PATH,
            &owner,
            body(
                "https://hooks.example.com:8443/in/T0KEN-PATH?token=T0KEN-QUERY",
                &["member.joined"],
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // The owner still sees the whole URL where endpoints are managed.
    assert_eq!(
        created.body["url"],
        "https://hooks.example.com:8443/in/T0KEN-PATH?token=T0KEN-QUERY"
    );
    let (_, key) = app.create_api_key(&owner, "SIEM", "ADMIN").await;
    assert_error(&app.get(PATH, &key).await, 403, "forbidden");
    let log = app
        .get("/api/audit?type=webhook_endpoint.created", &key)
        .await;
    assert_eq!(log.status, 200, "{}", log.body);
    assert_eq!(
        log.body["events"][0]["after"]["origin"],
        "https://hooks.example.com:8443"
    );
    let stored = format!(
        "{:?}",
        audit_events(&app, &org, "webhook_endpoint.created").await
    );
    for text in [log.body.to_string(), stored] {
        assert!(!text.contains("T0KEN"), "{text}");
    }
}

#[tokio::test]
async fn each_refused_body_writes_nothing() {
    let app = start().await;
    let (owner, _, org) = business(&app, "auth0|wh-refused").await;
    let long = format!("https://hooks.example.com/{}", "a".repeat(2_048));
    let cases: Vec<(Value, u16, &str)> = vec![
        // Not the body.
        (json!({}), 400, "invalid_body"),
        (
            json!({"url": "https://hooks.example.com/"}),
            400,
            "invalid_body",
        ),
        (
            json!({"eventTypes": ["member.joined"]}),
            400,
            "invalid_body",
        ),
        (
            json!({"url": 5, "eventTypes": ["member.joined"]}),
            400,
            "invalid_body",
        ),
        (
            json!({"url": "https://hooks.example.com/", "eventTypes": ["member.joined"], "secret": "whsec_mine"}),
            400,
            "invalid_body",
        ),
        // The URL.
        (body("not a url", &["member.joined"]), 400, "invalid_url"),
        (
            body("hooks.example.com/x", &["member.joined"]),
            400,
            "invalid_url",
        ),
        (body(&long, &["member.joined"]), 400, "invalid_url"),
        (
            body("http://hooks.example.com/", &["member.joined"]),
            400,
            "https_required",
        ),
        (
            body("ftp://hooks.example.com/", &["member.joined"]),
            400,
            "https_required",
        ),
        (
            body("https://user:secret@hooks.example.com/", &["member.joined"]),
            400,
            "url_credentials_not_allowed",
        ),
        (
            body(
                "https://169.254.169.254/latest/meta-data/",
                &["member.joined"],
            ),
            400,
            "url_host_not_allowed",
        ),
        (
            body("https://10.0.0.1/", &["member.joined"]),
            400,
            "url_host_not_allowed",
        ),
        (
            body("https://[fd00::1]/", &["member.joined"]),
            400,
            "url_host_not_allowed",
        ),
        // The event types.
        (
            body("https://hooks.example.com/", &[]),
            400,
            "invalid_event_types",
        ),
        (
            json!({"url": "https://hooks.example.com/", "eventTypes": "member.joined"}),
            400,
            "invalid_event_types",
        ),
        (
            json!({"url": "https://hooks.example.com/", "eventTypes": [1, 2]}),
            400,
            "invalid_event_types",
        ),
        (
            json!({"url": "https://hooks.example.com/", "eventTypes": vec!["member.joined"; tollgate::store::audit::EventType::ALL.len() + 1]}),
            400,
            "invalid_event_types",
        ),
        (
            body(
                "https://hooks.example.com/",
                &["member.joined", "member.teleported"],
            ),
            400,
            "unknown_event_type",
        ),
        (
            body("https://hooks.example.com/", &["*"]),
            400,
            "unknown_event_type",
        ),
    ];
    for (request, status, code) in cases {
        let before = app.all_items().await;
        let reply = app.post(PATH, &owner, request.clone()).await;
        assert_error(&reply, status, code);
        assert_eq!(app.all_items().await, before, "{request} wrote something");
    }
    let unknown = app
        .post(
            PATH,
            &owner,
            body("https://hooks.example.com/", &["member.teleported"]),
        )
        .await;
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap()
            .contains("\"member.teleported\""),
        "{}",
        unknown.body
    );
    let credentials = app
        .post(
            PATH,
            &owner,
            body(
                "https://user:hunter2@hooks.example.com/",
                &["member.joined"],
            ),
        )
        .await;
    assert!(
        !credentials.body.to_string().contains("hunter2"),
        "{}",
        credentials.body
    );
    assert!(endpoint_items(&app, &org).await.is_empty());
    assert_eq!(counter(&app, &org).await, 0);
}

#[tokio::test]
async fn loopback_endpoints_only_when_the_deployment_allows_them() {
    let loopback = [
        "http://127.0.0.1:9000/hook",
        "http://[::1]:9000/",
        "http://localhost:9000/",
    ];
    // Production: refused, and nothing written.
    let production = start_with_loopback(false).await;
    let (owner, _, org) = business(&production, "auth0|wh-prod").await;
    for url in loopback
        .iter()
        .chain(&["https://localhost/", "https://127.0.0.1/"])
    {
        let before = production.all_items().await;
        assert_error(
            &production
                .post(PATH, &owner, body(url, &["member.joined"]))
                .await,
            400,
            "url_host_not_allowed",
        );
        assert_eq!(production.all_items().await, before, "{url}");
    }
    assert!(endpoint_items(&production, &org).await.is_empty());
    // Locally (the dev gateway, the tests): accepted, plain http included.
    let local = start().await;
    let (owner, _, org) = business(&local, "auth0|wh-local").await;
    for url in loopback {
        let created = local
            .post(PATH, &owner, body(url, &["member.joined"]))
            .await;
        assert_eq!(created.status, 201, "{url}: {}", created.body);
    }
    // Still never a public host over plain http, nor a private address.
    assert_error(
        &local
            .post(
                PATH,
                &owner,
                body("http://hooks.example.com/", &["member.joined"]),
            )
            .await,
        400,
        "https_required",
    );
    assert_error(
        &local
            .post(
                PATH,
                &owner,
                body("http://192.168.1.10/", &["member.joined"]),
            )
            .await,
        400,
        "url_host_not_allowed",
    );
    assert_eq!(endpoint_items(&local, &org).await.len(), 3);
}

#[tokio::test]
async fn only_owners_and_admins_manage_endpoints() {
    let app = start().await;
    let (owner, _, org) = business(&app, "auth0|wh-roles").await;
    let existing = app
        .post(
            PATH,
            &owner,
            body("https://hooks.example.com/", &["member.joined"]),
        )
        .await;
    assert_eq!(existing.status, 201, "{}", existing.body);
    let existing_id = existing.body["id"].as_str().unwrap().to_owned();

    for role in ["MANAGER", "OPERATOR", "VIEWER"] {
        let (token, _) = app
            .add_member(&owner, &format!("auth0|wh-{}", role.to_lowercase()), role)
            .await;
        let before = app.all_items().await;
        for reply in [
            app.get(PATH, &token).await,
            app.post(
                PATH,
                &token,
                body("https://hooks.example.com/x", &["member.joined"]),
            )
            .await,
            app.delete(&format!("{PATH}/{existing_id}"), &token).await,
        ] {
            assert_error(&reply, 403, "forbidden");
            assert!(
                reply.body["message"]
                    .as_str()
                    .unwrap()
                    .contains("webhooks:manage"),
                "{}",
                reply.body
            );
        }
        assert_eq!(app.all_items().await, before, "{role} wrote on 403");
    }

    let (admin, admin_id) = app.add_member(&owner, "auth0|wh-admin", "ADMIN").await;
    let created = app
        .post(
            PATH,
            &admin,
            body("https://admin.example.com/", &["member.removed"]),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["createdBy"], admin_id);
    let listed = app.get(PATH, &admin).await;
    assert_eq!(listed.body["endpoints"].as_array().unwrap().len(), 2);
    // An ADMIN deletes any endpoint of the organization, the OWNER's too.
    let deleted = app.delete(&format!("{PATH}/{existing_id}"), &admin).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(counter(&app, &org).await, 1);
}

#[tokio::test]
async fn api_keys_never_manage_endpoints_whatever_their_role() {
    let app = start().await;
    let (owner, _, org) = business(&app, "auth0|wh-keys").await;
    let existing = app
        .post(
            PATH,
            &owner,
            body("https://hooks.example.com/", &["member.joined"]),
        )
        .await;
    assert_eq!(existing.status, 201, "{}", existing.body);
    let existing_id = existing.body["id"].as_str().unwrap().to_owned();
    for role in ["OWNER", "ADMIN", "VIEWER"] {
        let (_, key) = app.create_api_key(&owner, role, role).await;
        // The key works elsewhere.
        assert_eq!(app.get("/api/organization", &key).await.status, 200);
        let before = app.all_items().await;
        for reply in [
            app.get(PATH, &key).await,
            app.post(
                PATH,
                &key,
                body("https://key.example.com/", &["member.joined"]),
            )
            .await,
            app.delete(&format!("{PATH}/{existing_id}"), &key).await,
        ] {
            assert_error(&reply, 403, "forbidden");
        }
        // Only the key's own rate-limit window and last use may change; no domain data.
        let after: Vec<Item> = app
            .all_items()
            .await
            .into_iter()
            .filter(|item| {
                !s(item, "PK").starts_with("APIKEY#") && !s(item, "SK").starts_with("APIKEY#")
            })
            .collect();
        let before: Vec<Item> = before
            .into_iter()
            .filter(|item| {
                !s(item, "PK").starts_with("APIKEY#") && !s(item, "SK").starts_with("APIKEY#")
            })
            .collect();
        assert_eq!(after, before, "a {role} key wrote");
    }
    assert_eq!(endpoint_items(&app, &org).await.len(), 1);
}

#[tokio::test]
async fn another_organization_can_neither_list_nor_delete_an_endpoint() {
    let app = start().await;
    let (owner_a, _, org_a) = business(&app, "auth0|wh-tenant-a").await;
    let (owner_b, _, org_b) = business(&app, "auth0|wh-tenant-b").await;
    let created = app
        .post(
            PATH,
            &owner_a,
            body("https://a.example.com/", &["member.joined"]),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let listed_b = app.get(PATH, &owner_b).await;
    assert_eq!(listed_b.status, 200, "{}", listed_b.body);
    assert_eq!(listed_b.body["endpoints"], json!([]));
    let before = app.all_items().await;
    assert_error(
        &app.delete(&format!("{PATH}/{id}"), &owner_b).await,
        404,
        "not_found",
    );
    assert_eq!(app.all_items().await, before, "B's delete wrote something");
    let tenant_b = tollgate_tests::tenant_of(&app, "auth0|wh-tenant-b").await;
    assert!(
        app.store
            .get_webhook_endpoint(&tenant_b, &id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(counter(&app, &org_b).await, 0);

    let listed_a = app.get(PATH, &owner_a).await;
    assert_eq!(listed_a.body["endpoints"][0]["id"], id.as_str());
    assert_eq!(counter(&app, &org_a).await, 1);
}

#[tokio::test]
async fn at_most_ten_endpoints_even_under_concurrent_creates() {
    let app = start().await;
    let (owner, _, org) = business(&app, "auth0|wh-limit").await;
    let attempts = 15;
    let replies = futures::future::join_all((0..attempts).map(|n| {
        app.post(
            PATH,
            &owner,
            body(&format!("https://hook{n}.example.com/"), &["member.joined"]),
        )
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    for reply in replies.iter().filter(|r| r.status != 201) {
        assert_error(reply, 409, "webhook_endpoint_limit_reached");
    }
    assert_eq!(created as u64, MAX_WEBHOOK_ENDPOINTS);
    assert_eq!(endpoint_items(&app, &org).await.len(), 10);
    assert_eq!(counter(&app, &org).await, 10);
    assert_eq!(
        audit_events(&app, &org, "webhook_endpoint.created")
            .await
            .len(),
        10,
        "one event per endpoint, none for a refused create"
    );
    let listed = app.get(PATH, &owner).await;
    let endpoints = listed.body["endpoints"].as_array().unwrap().clone();
    assert_eq!(endpoints.len(), 10);

    // The eleventh is refused and writes nothing; after a deletion there is room for one.
    let before = app.all_items().await;
    assert_error(
        &app.post(
            PATH,
            &owner,
            body("https://late.example.com/", &["member.left"]),
        )
        .await,
        409,
        "webhook_endpoint_limit_reached",
    );
    assert_eq!(app.all_items().await, before);
    let first = endpoints[0]["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("{PATH}/{first}"), &owner).await.status,
        204
    );
    assert_eq!(counter(&app, &org).await, 9);
    assert_eq!(
        app.post(
            PATH,
            &owner,
            body("https://late.example.com/", &["member.left"])
        )
        .await
        .status,
        201
    );
    assert_eq!(counter(&app, &org).await, 10);

    // Concurrent deletes and creates at the limit keep the counter equal to the endpoints.
    let listed = app.get(PATH, &owner).await;
    let paths: Vec<String> = listed.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .take(4)
        .map(|e| format!("{PATH}/{}", e["id"].as_str().unwrap()))
        .collect();
    let deletes = futures::future::join_all(paths.iter().map(|path| app.delete(path, &owner)));
    let creates = futures::future::join_all((0..6).map(|n| {
        app.post(
            PATH,
            &owner,
            body(&format!("https://again{n}.example.com/"), &["member.left"]),
        )
    }));
    let (deleted, recreated) = tokio::join!(deletes, creates);
    assert!(deleted.iter().all(|r| r.status == 204));
    for reply in recreated.iter().filter(|r| r.status != 201) {
        assert_error(reply, 409, "webhook_endpoint_limit_reached");
    }
    let stored = endpoint_items(&app, &org).await.len() as u64;
    assert!(stored <= MAX_WEBHOOK_ENDPOINTS, "{stored}");
    assert_eq!(counter(&app, &org).await, stored);
}

#[tokio::test]
async fn without_a_key_ring_no_endpoint_can_be_created() {
    // The test app's default configuration has no ENCRYPTION_KEYS.
    let app = TestApp::start().await;
    let (owner, _, org) = business(&app, "auth0|wh-no-ring").await;
    let before = app.all_items().await;
    assert_error(
        &app.post(
            PATH,
            &owner,
            body("https://hooks.example.com/", &["member.joined"]),
        )
        .await,
        503,
        "encryption_not_configured",
    );
    assert_eq!(app.all_items().await, before);
    // Input is still checked first, and listing and deleting work.
    assert_error(
        &app.post(
            PATH,
            &owner,
            body("http://hooks.example.com/", &["member.joined"]),
        )
        .await,
        400,
        "https_required",
    );
    let listed = app.get(PATH, &owner).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["endpoints"], json!([]));
    assert_error(
        &app.delete(
            &format!("{PATH}/we_0123456789abcdef0123456789abcdef"),
            &owner,
        )
        .await,
        404,
        "not_found",
    );
    assert!(endpoint_items(&app, &org).await.is_empty());
}

/// Key rotation moves signing secrets too: after `rotate_keys` under a ring whose active key is
/// new, the stored secret is under the new key, decrypts with the new key alone to the secret the
/// creation showed, and a `key_ring.rotated` event names the endpoint (key ids only). A second run
/// changes nothing.
#[tokio::test]
async fn key_rotation_reencrypts_signing_secrets_under_the_active_key() {
    const NEW_KEY: &str = "8888888888888888888888888888888888888888888888888888888888888888";
    let app = start().await;
    let (owner, _, org) = business(&app, "auth0|wh-rotate").await;
    let created = app
        .post(
            PATH,
            &owner,
            json!({"url": "https://hooks.example.com/rotate", "eventTypes": ["member.joined"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["secret"].as_str().unwrap().to_owned();

    let both = tollgate::crypto::KeyRing::from_env_strings(
        &format!("k1:{ENCRYPTION_KEY},k2:{NEW_KEY}"),
        "k2",
    )
    .unwrap();
    let report = rotate_keys::rotate_keys(&app.store, &both).await.unwrap();
    assert_eq!(
        (report.reencrypted, report.failed.len()),
        (1, 0),
        "{report:?}"
    );
    let items = endpoint_items(&app, &org).await;
    let stored = s(&items[0], "signingSecret");
    assert!(stored.starts_with("v1:k2:"), "{stored}");
    let new_only =
        tollgate::crypto::KeyRing::from_env_strings(&format!("k2:{NEW_KEY}"), "k2").unwrap();
    assert_eq!(new_only.decrypt(&org, stored).unwrap(), secret.as_bytes());

    let rotated = audit_events(&app, &org, "key_ring.rotated").await;
    assert_eq!(rotated.len(), 1);
    let map = |name: &str| -> Item {
        rotated[0]
            .get(name)
            .and_then(|v| v.as_m().ok())
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        (s(&map("target"), "type"), s(&map("target"), "id")),
        ("webhook_endpoint", id.as_str())
    );
    assert_eq!(s(&map("before"), "keyId"), "k1");
    assert_eq!(s(&map("after"), "keyId"), "k2");
    assert!(
        !format!("{:?}", rotated[0]).contains("v1:"),
        "no ciphertext in the event"
    );

    let again = rotate_keys::rotate_keys(&app.store, &both).await.unwrap();
    assert_eq!((again.reencrypted, again.already_current), (0, 1));
    assert_eq!(audit_events(&app, &org, "key_ring.rotated").await.len(), 1);
}
