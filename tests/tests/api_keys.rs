//! Organization API keys through the dev gateway against DynamoDB Local: created once, listed
//! without the secret, used as the organization with the key's role, revoked at once; tenant
//! isolation, the role ceiling, expiry, the per-key limit, `lastUsedAt` at most once a minute,
//! plan downgrade and upgrade through signed Stripe webhooks, and a missing pepper failing closed.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::stripe_standin::{StripeStandIn, signed_event, subscription_object};
use tollgate_tests::{TEST_API_KEY_PEPPER, TestApp, assert_error};

const ENCRYPTION_KEY: &str = "4444444444444444444444444444444444444444444444444444444444444444";

async fn start() -> TestApp {
    TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{ENCRYPTION_KEY}"));
        config.encryption_active_key = Some("k1".into());
    })
    .await
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// An owner of a BUSINESS organization (active): token and organization id.
async fn business(app: &TestApp, sub: &str) -> (String, String) {
    let (token, user) = app
        .organization_on_plan(sub, Plan::Business, PlanStatus::Active)
        .await;
    (token, user.organization_id.unwrap())
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn create_list_use_and_revoke() {
    let app = start().await;
    let (owner, org) = business(&app, "auth0|keys-owner").await;

    let expires = rfc3339(now() + 86_400);
    let created = app
        .post(
            "/api/api-keys",
            &owner,
            json!({"name": "  CRM   sync ", "role": "VIEWER", "expiresAt": expires}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let key = created.body["key"].as_str().unwrap().to_owned();
    // tg_live_<id>_<64 hex digits>: 256 random bits after the id.
    let secret = key
        .strip_prefix(&format!("tg_live_{id}_"))
        .expect("the key starts with its id");
    assert!(is_lower_hex(secret, 64), "{key}");
    assert!(id.starts_with("ak_") && is_lower_hex(&id[3..], 32), "{id}");
    assert_eq!(created.body["name"], "CRM sync");
    assert_eq!(created.body["role"], "VIEWER");
    assert_eq!(created.body["prefix"], format!("tg_live_{id}"));
    assert_eq!(created.body["expiresAt"], expires);
    assert_eq!(created.body["lastUsedAt"], Value::Null);
    let owner_id = app
        .store
        .get_user("auth0|keys-owner")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert_eq!(created.body["createdBy"], owner_id);
    // A second key is another key.
    let (second_id, second_key) = app.create_api_key(&owner, "Second", "ADMIN").await;
    assert_ne!(second_id, id);
    assert_ne!(second_key, key);

    // Listed with every field but never the key, its secret or its hash.
    let listed = app.get("/api/api-keys", &owner).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let keys = listed.body["apiKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let first = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    let mut fields: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "createdAt",
            "createdBy",
            "expiresAt",
            "id",
            "lastUsedAt",
            "name",
            "prefix",
            "role"
        ]
    );
    let text = listed.body.to_string();
    let second_secret = &second_key[second_key.len() - 64..];
    assert!(
        !text.contains(secret) && !text.contains(second_secret),
        "{text}"
    );

    // Stored: only the HMAC of the key under the pepper, nowhere the key or its secret.
    let items = app.raw_items().await;
    for item in &items {
        let shown = format!("{item:?}");
        assert!(!shown.contains(secret), "the secret is stored: {shown}");
    }
    let lookup = items
        .iter()
        .find(|item| item.get("PK") == Some(&AttributeValue::S(format!("APIKEY#{id}"))))
        .expect("the look-up item");
    let pepper = tollgate::auth::api_key::Pepper::new(TEST_API_KEY_PEPPER).unwrap();
    assert_eq!(
        lookup["keyHash"],
        AttributeValue::S(pepper.digest_hex(&key)),
        "keyed hash, not plain"
    );
    assert_eq!(lookup["organizationId"], AttributeValue::S(org.clone()));

    // Used: the organization, with the key's role, counted per key.
    let used = app.get("/api/organization", &key).await;
    assert_eq!(used.status, 200, "{}", used.body);
    assert_eq!(used.body["id"], org);
    assert_eq!(used.headers["ratelimit-limit"], "1000");
    assert_eq!(used.headers["ratelimit-remaining"], "999");
    assert!(used.headers.contains_key("ratelimit-reset"));
    let listed = app.get("/api/api-keys", &owner).await;
    let first = listed.body["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    let last_used = first["lastUsedAt"].as_str().expect("lastUsedAt recorded");
    let last_used =
        OffsetDateTime::parse(last_used, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
    assert!((now() - last_used).abs() < 30, "{first}");

    // Revoked: the very next request is refused; the other key still works.
    let revoked = app.delete(&format!("/api/api-keys/{id}"), &owner).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body, json!({"id": id, "revoked": true}));
    assert_error(
        &app.get("/api/organization", &key).await,
        401,
        "invalid_token",
    );
    assert_eq!(app.get("/api/organization", &second_key).await.status, 200);
    assert_error(
        &app.delete(&format!("/api/api-keys/{id}"), &owner).await,
        404,
        "api_key_not_found",
    );
    assert_error(
        &app.delete("/api/api-keys/not-a-key-id", &owner).await,
        404,
        "api_key_not_found",
    );
    let listed = app.get("/api/api-keys", &owner).await;
    assert_eq!(listed.body["apiKeys"].as_array().unwrap().len(), 1);
    let named = |item: &std::collections::HashMap<String, AttributeValue>| {
        [&item["PK"], &item["SK"]]
            .iter()
            .any(|key| key.as_s().is_ok_and(|k| k == &format!("APIKEY#{id}")))
    };
    assert!(
        !app.raw_items().await.iter().any(named),
        "both items of the revoked key are gone"
    );
}

#[tokio::test]
async fn unknown_wrong_and_malformed_keys_are_401() {
    let app = start().await;
    let (owner, _) = business(&app, "auth0|keys-401").await;
    let (id, key) = app.create_api_key(&owner, "Real", "VIEWER").await;
    // The right id with another secret, an unknown id, and shapes that are not keys.
    let wrong_secret = format!("tg_live_{id}_{}", "0".repeat(64));
    let unknown_id = format!("tg_live_ak_{}_{}", "1".repeat(32), &key[key.len() - 64..]);
    for credential in [wrong_secret, unknown_id] {
        assert_error(
            &app.get("/api/organization", &credential).await,
            401,
            "invalid_token",
        );
    }
    for malformed in [
        "tg_live_".to_owned(),
        format!("{key}0"),
        key.to_uppercase().replace("TG_LIVE_", "tg_live_"),
        format!("tg_live_{id}"),
        // An extra underscore, a non-hex secret, a very long key, another prefix.
        key.replacen("tg_live_", "tg_live__", 1),
        format!("{}g", &key[..key.len() - 1]),
        format!("{key}{}", "a".repeat(8_000)),
        key.replacen("tg_live_", "tg_test_", 1),
    ] {
        assert_error(
            &app.get("/api/organization", &malformed).await,
            401,
            "invalid_token",
        );
    }
    assert_eq!(app.get("/api/organization", &key).await.status, 200);
}

#[tokio::test]
async fn a_key_of_one_organization_never_reaches_another() {
    let app = start().await;
    let (owner_a, org_a) = business(&app, "auth0|tenant-a").await;
    let (owner_b, org_b) = business(&app, "auth0|tenant-b").await;
    let (_, key_a) = app.create_api_key(&owner_a, "A", "OWNER").await;
    let (key_b_id, key_b) = app.create_api_key(&owner_b, "B", "OWNER").await;
    let integration_b = app
        .post(
            "/api/integrations",
            &owner_b,
            json!({"type": "twilio", "name": "B line", "credentials": {"authToken": "b-secret"}}),
        )
        .await;
    assert_eq!(integration_b.status, 201, "{}", integration_b.body);
    let integration_b = integration_b.body["id"].as_str().unwrap().to_owned();

    // A's key sees A's organization and A's (empty) integrations.
    let seen = app.get("/api/organization", &key_a).await;
    assert_eq!(seen.body["id"], org_a);
    assert_ne!(seen.body["id"], org_b);
    let listed = app.get("/api/integrations", &key_a).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["integrations"], json!([]));
    // B's ids through A's key or A's owner: 404, and B's things are untouched.
    assert_error(
        &app.delete(&format!("/api/integrations/{integration_b}"), &key_a)
            .await,
        404,
        "integration_not_found",
    );
    assert_error(
        &app.delete(&format!("/api/api-keys/{key_b_id}"), &owner_a)
            .await,
        404,
        "api_key_not_found",
    );
    let b_listed = app.get("/api/integrations", &owner_b).await;
    assert_eq!(b_listed.body["integrations"][0]["id"], integration_b);
    assert_eq!(app.get("/api/organization", &key_b).await.body["id"], org_b);
    let b_keys = app.get("/api/api-keys", &owner_b).await;
    assert_eq!(b_keys.body["apiKeys"][0]["id"], key_b_id);
    assert_eq!(
        app.get("/api/api-keys", &owner_a).await.body["apiKeys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn the_role_ceiling_and_who_may_manage_keys() {
    let app = start().await;
    let (owner, _) = business(&app, "auth0|ceiling-owner").await;
    let (admin, _) = app.add_member(&owner, "auth0|ceiling-admin", "ADMIN").await;
    let (manager, _) = app
        .add_member(&owner, "auth0|ceiling-manager", "MANAGER")
        .await;

    // ADMIN: any role but OWNER.
    assert_error(
        &app.post(
            "/api/api-keys",
            &admin,
            json!({"name": "Too high", "role": "OWNER"}),
        )
        .await,
        403,
        "owner_required",
    );
    for role in ["ADMIN", "MANAGER", "OPERATOR", "VIEWER"] {
        app.create_api_key(&admin, role, role).await;
    }
    // OWNER: any role.
    let (_, owner_key) = app.create_api_key(&owner, "Owner key", "OWNER").await;
    // MANAGER and below: no key management at all.
    for (method, path) in [
        (reqwest::Method::GET, "/api/api-keys"),
        (reqwest::Method::POST, "/api/api-keys"),
    ] {
        let body = (method == reqwest::Method::POST)
            .then(|| json!({"name": "x", "role": "VIEWER"}).to_string());
        let reply = app
            .request(method, path, Some(&format!("Bearer {manager}")), body)
            .await;
        assert_error(&reply, 403, "forbidden");
    }
    // Bad input: a clear error, and nothing written.
    let before = app.all_items().await;
    for (body, code) in [
        (json!({"name": "x", "role": "ROOT"}), "invalid_role"),
        (json!({"name": "", "role": "VIEWER"}), "invalid_name"),
        (
            json!({"name": "x", "role": "VIEWER", "expiresAt": rfc3339(now() - 60)}),
            "invalid_expires_at",
        ),
        (
            json!({"name": "x", "role": "VIEWER", "expiresAt": "next week"}),
            "invalid_expires_at",
        ),
        (
            json!({"name": "x", "role": "VIEWER", "scopes": []}),
            "invalid_body",
        ),
    ] {
        assert_error(&app.post("/api/api-keys", &owner, body).await, 400, code);
    }
    assert_eq!(app.all_items().await, before, "refused input wrote nothing");
    // Even an OWNER key manages no key, member or billing.
    for (method, path) in [
        (reqwest::Method::GET, "/api/api-keys"),
        (reqwest::Method::GET, "/api/users"),
        (reqwest::Method::GET, "/api/billing/subscription"),
        (reqwest::Method::GET, "/api/billing/invoices"),
    ] {
        let reply = app
            .request(method, path, Some(&format!("Bearer {owner_key}")), None)
            .await;
        assert_error(&reply, 403, "forbidden");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("API keys cannot use"),
            "{}",
            reply.body
        );
    }
    let minted = app
        .post(
            "/api/api-keys",
            &owner_key,
            json!({"name": "From a key", "role": "VIEWER"}),
        )
        .await;
    assert_error(&minted, 403, "forbidden");
    let invited = app
        .post(
            "/api/users",
            &owner_key,
            json!({"email": "by-key@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_error(&invited, 403, "forbidden");
    // Routes for a person or a service refuse a key clearly.
    assert_error(
        &app.get("/api/me", &owner_key).await,
        403,
        "user_token_required",
    );
    assert_error(
        &app.post("/api/me/invitations/inv_x/accept", &owner_key, json!({}))
            .await,
        403,
        "user_token_required",
    );
    assert_error(
        &app.post(
            "/api/permissions/check",
            &owner_key,
            json!({"permissions": ["org:read"]}),
        )
        .await,
        403,
        "user_token_required",
    );
    assert_error(
        &app.post("/api/usage/calls", &owner_key, json!({})).await,
        403,
        "service_key_required",
    );
}

/// Even an OWNER key cannot delete its organization (which would end every membership at once),
/// nor leave it or decline for a person, nor reach billing: the organization stays as it was.
#[tokio::test]
async fn an_owner_key_cannot_delete_its_organization() {
    let app = start().await;
    let (owner, org) = business(&app, "auth0|key-delete").await;
    let (_, owner_key) = app.create_api_key(&owner, "Owner key", "OWNER").await;
    let refused = app.delete("/api/organization", &owner_key).await;
    assert_error(&refused, 403, "forbidden");
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("org:delete"),
        "{}",
        refused.body
    );
    assert_error(
        &app.delete("/api/me/organization", &owner_key).await,
        403,
        "user_token_required",
    );
    for path in ["/api/billing/subscription", "/api/billing/invoices"] {
        assert_error(&app.get(path, &owner_key).await, 403, "forbidden");
    }
    assert_eq!(
        app.get("/api/organization", &owner_key).await.body["id"],
        org
    );
    assert_eq!(app.get("/api/organization", &owner).await.status, 200);
}

#[tokio::test]
async fn a_key_acts_with_its_role() {
    let app = start().await;
    let (owner, _) = business(&app, "auth0|role-owner").await;
    let (_, viewer_key) = app.create_api_key(&owner, "Viewer", "VIEWER").await;
    let (_, admin_key) = app.create_api_key(&owner, "Admin", "ADMIN").await;
    let rename = json!({"name": "Renamed by key"});
    let before = app.all_items().await;
    assert_error(
        &app.patch("/api/organization", &viewer_key, rename.clone())
            .await,
        403,
        "forbidden",
    );
    assert_eq!(app.all_items().await, before, "a refused key wrote nothing");
    assert_error(
        &app.get("/api/integrations", &viewer_key).await,
        403,
        "forbidden",
    );
    assert_eq!(app.get("/api/billing/usage", &viewer_key).await.status, 200);
    let renamed = app.patch("/api/organization", &admin_key, rename).await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "Renamed by key");
    let created = app
        .post(
            "/api/integrations",
            &admin_key,
            json!({"type": "twilio", "name": "Key line", "credentials": {"authToken": "t"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = start().await;
    let (owner, _) = business(&app, "auth0|expiry-owner").await;
    let created = app
        .post(
            "/api/api-keys",
            &owner,
            json!({"name": "Short", "role": "VIEWER", "expiresAt": rfc3339(now() + 3600)}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let key = created.body["key"].as_str().unwrap();
    assert_eq!(app.get("/api/organization", key).await.status, 200);
    // Time passes: the key's expiry is now one second ago.
    app.store
        .client()
        .update_item()
        .table_name(app.store.table_name())
        .key("PK", AttributeValue::S(format!("APIKEY#{id}")))
        .key("SK", AttributeValue::S("APIKEY".into()))
        .update_expression("SET expiresAt = :past")
        .expression_attribute_values(":past", AttributeValue::N((now() - 1).to_string()))
        .send()
        .await
        .unwrap();
    assert_error(
        &app.get("/api/organization", key).await,
        401,
        "api_key_expired",
    );
    // A key without an expiry keeps working.
    let (_, lasting) = app.create_api_key(&owner, "Lasting", "VIEWER").await;
    assert_eq!(app.get("/api/organization", &lasting).await.status, 200);
}

#[tokio::test]
async fn each_key_has_its_own_configurable_limit() {
    let app = TestApp::start_with(|config| config.rate_limits.api_key.max = 3).await;
    let (owner, _) = business(&app, "auth0|limit-owner").await;
    let (_, first) = app.create_api_key(&owner, "First", "VIEWER").await;
    let (_, second) = app.create_api_key(&owner, "Second", "VIEWER").await;
    for remaining in ["2", "1", "0"] {
        let reply = app.get("/api/organization", &first).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.headers["ratelimit-limit"], "3");
        assert_eq!(reply.headers["ratelimit-remaining"], remaining);
    }
    let limited = app.get("/api/organization", &first).await;
    assert_error(&limited, 429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // Refused routes count too: a limited key gets 429 there as well, not 403.
    assert_error(&app.get("/api/me", &first).await, 429, "rate_limited");
    // Another key of the same organization, and the owner, are not limited by it.
    assert_eq!(app.get("/api/organization", &second).await.status, 200);
    assert_eq!(app.get("/api/organization", &owner).await.status, 200);
}

#[tokio::test]
async fn last_used_is_written_at_most_once_a_minute() {
    let app = start().await;
    let (owner, _) = business(&app, "auth0|touch-owner").await;
    let (id, key) = app.create_api_key(&owner, "Touch", "VIEWER").await;
    app.dynamodb_requests.take();
    // First use: look-up, limit, organization (read once: the handler gets the pipeline's
    // copy), the two lastUsedAt writes.
    assert_eq!(app.get("/api/organization", &key).await.status, 200);
    assert_eq!(
        app.dynamodb_requests.take(),
        [
            "GetItem",
            "UpdateItem",
            "GetItem",
            "UpdateItem",
            "UpdateItem"
        ]
    );
    // Within the minute: no write but the rate limiter's.
    for _ in 0..3 {
        assert_eq!(app.get("/api/organization", &key).await.status, 200);
        assert_eq!(
            app.dynamodb_requests.take(),
            ["GetItem", "UpdateItem", "GetItem"]
        );
    }
    // A minute later (the recorded use moved back), the next use is recorded again.
    let stale = now() - 61;
    app.store
        .client()
        .update_item()
        .table_name(app.store.table_name())
        .key("PK", AttributeValue::S(format!("APIKEY#{id}")))
        .key("SK", AttributeValue::S("APIKEY".into()))
        .update_expression("SET lastUsedAt = :t")
        .expression_attribute_values(":t", AttributeValue::N(stale.to_string()))
        .send()
        .await
        .unwrap();
    app.dynamodb_requests.take();
    assert_eq!(app.get("/api/organization", &key).await.status, 200);
    assert_eq!(
        app.dynamodb_requests
            .take()
            .iter()
            .filter(|op| *op == "UpdateItem")
            .count(),
        3
    );
}

#[tokio::test]
async fn without_a_pepper_keys_fail_closed() {
    let app = TestApp::start().await;
    let (owner, _) = business(&app, "auth0|pepper-owner").await;
    let (_, key) = app.create_api_key(&owner, "Before", "VIEWER").await;
    let unpeppered = TestApp::start_with(|config| config.api_key_pepper = None).await;
    let (owner2, _) = business(&unpeppered, "auth0|no-pepper-owner").await;
    assert_error(
        &unpeppered
            .post(
                "/api/api-keys",
                &owner2,
                json!({"name": "x", "role": "VIEWER"}),
            )
            .await,
        503,
        "api_keys_not_configured",
    );
    // Listing needs no pepper.
    assert_eq!(unpeppered.get("/api/api-keys", &owner2).await.status, 200);
    // A well-formed key (from another deployment) is refused, not accepted.
    assert_error(
        &unpeppered.get("/api/organization", &key).await,
        503,
        "api_keys_not_configured",
    );
    // A different pepper does not verify the key.
    let repeppered = TestApp::start_with(|config| {
        config.api_key_pepper = Some("another-pepper-of-at-least-32-bytes-0000".into())
    })
    .await;
    assert_error(
        &repeppered.get("/api/organization", &key).await,
        401,
        "invalid_token",
    );
    // A pepper too short refuses to start.
    let mut config = tollgate::config::Config::from_lookup(|_| None).unwrap();
    config.api_key_pepper = Some("short".into());
    config.table_name = "unused".into();
    let store = app.store.clone();
    let error = tollgate::pipeline::AppState::new(config, store)
        .err()
        .expect("refused");
    assert!(error.to_string().contains("API_KEY_PEPPER"), "{error}");
    assert!(!error.to_string().contains("short"), "{error}");
}

const WEBHOOK_SECRET: &str = "whsec_api_keys_test";

async fn deliver(app: &TestApp, event_type: &str, id: &str, created: i64, object: Value) {
    let (body, signature) = signed_event(WEBHOOK_SECRET, event_type, id, created, object);
    let reply = app.deliver(&body, Some(&signature)).await;
    assert_eq!(reply.status, 200, "{event_type} {id}: {}", reply.body);
    assert_eq!(reply.body["outcome"], "processed", "{event_type} {id}");
}

#[tokio::test]
async fn plan_downgrade_suspends_keys_and_upgrade_restores_them() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::start_billing(&stripe, WEBHOOK_SECRET).await;
    let (owner, user) = app.owner_with_organization("auth0|plans-owner").await;
    // Without a plan with apiAccess no key can be made.
    assert_error(
        &app.post(
            "/api/api-keys",
            &owner,
            json!({"name": "x", "role": "VIEWER"}),
        )
        .await,
        403,
        "plan_required",
    );
    let checkout = app
        .post(
            "/api/billing/checkout",
            &owner,
            json!({"plan": "BUSINESS", "interval": "monthly"}),
        )
        .await;
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    let customer = app
        .store
        .get_organization(&user.tenant().unwrap())
        .await
        .unwrap()
        .unwrap()
        .stripe_customer_id
        .unwrap();
    let period = (now() - 10 * 86_400, now() + 20 * 86_400);
    let subscription = |status: &str, price: &str| {
        subscription_object("sub_keys_plans", &customer, status, price, period)
    };
    deliver(
        &app,
        "customer.subscription.created",
        "evt_keys_created",
        now() - 300,
        subscription("active", "price_business_monthly"),
    )
    .await;
    let (id, key) = app.create_api_key(&owner, "Sync", "VIEWER").await;
    assert_eq!(app.get("/api/organization", &key).await.status, 200);

    // Downgraded to PROFESSIONAL (no apiAccess): the key is refused with 403, and kept.
    deliver(
        &app,
        "customer.subscription.updated",
        "evt_keys_downgraded",
        now() - 200,
        subscription("active", "price_pro_monthly"),
    )
    .await;
    let before = app.all_items().await;
    assert_error(
        &app.get("/api/organization", &key).await,
        403,
        "plan_required",
    );
    assert_eq!(app.all_items().await, before, "nothing written on 403");
    assert_error(
        &app.post(
            "/api/api-keys",
            &owner,
            json!({"name": "y", "role": "VIEWER"}),
        )
        .await,
        403,
        "plan_required",
    );
    let listed = app.get("/api/api-keys", &owner).await;
    assert_eq!(listed.body["apiKeys"][0]["id"], id, "the key is kept");

    // Back on BUSINESS: the same key works again.
    deliver(
        &app,
        "customer.subscription.updated",
        "evt_keys_upgraded",
        now() - 100,
        subscription("active", "price_business_monthly"),
    )
    .await;
    assert_eq!(app.get("/api/organization", &key).await.status, 200);

    // A lapsed BUSINESS subscription (unpaid) has no apiAccess either.
    deliver(
        &app,
        "customer.subscription.updated",
        "evt_keys_unpaid",
        now() - 50,
        subscription("unpaid", "price_business_monthly"),
    )
    .await;
    assert_error(
        &app.get("/api/organization", &key).await,
        403,
        "plan_required",
    );
}
