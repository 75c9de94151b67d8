//! `GET /api/me` through the dev gateway against DynamoDB Local.

use aws_sdk_dynamodb::types::AttributeValue;
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

#[tokio::test]
async fn first_sign_in_creates_the_user_and_later_ones_return_it() {
    let app = TestApp::start().await;
    let token = app.token(
        "auth0|alice",
        Some("alice@example.com"),
        Some("Alice Smith"),
    );

    let first = app.get("/api/me", &token).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let user = &first.body["user"];
    assert!(user["id"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["name"], "Alice Smith");
    assert_eq!(user["role"], serde_json::Value::Null);
    assert_eq!(user["organizationId"], serde_json::Value::Null);
    assert_eq!(first.body["organization"], serde_json::Value::Null);
    assert_eq!(first.body["permissions"], serde_json::json!([]));
    assert_eq!(first.body["features"], serde_json::Value::Null);
    assert_eq!(first.headers["cache-control"], "no-store");
    assert!(first.headers.contains_key("x-request-id"));

    let second = app.get("/api/me", &token).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["user"]["id"], user["id"]);
}

#[tokio::test]
async fn missing_names_never_become_null_null() {
    let app = TestApp::start().await;
    let bare = app.token("clerk_user_1", None, None);
    let reply = app.get("/api/me", &bare).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["user"]["name"], serde_json::Value::Null);
    assert_eq!(reply.body["user"]["email"], serde_json::Value::Null);

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let parts = app.sign(serde_json::json!({
        "sub": "clerk_user_2", "iss": tollgate_tests::TEST_ISSUER, "exp": now + 60,
        "given_name": "Dilnoza", "family_name": null,
    }));
    let reply = app.get("/api/me", &parts).await;
    assert_eq!(reply.body["user"]["name"], "Dilnoza");
}

#[tokio::test]
async fn concurrent_first_sign_ins_create_exactly_one_user() {
    let app = TestApp::start().await;
    let token = app.token("auth0|racer", Some("racer@example.com"), None);
    let replies = futures::future::join_all((0..24).map(|_| app.get("/api/me", &token))).await;

    let created = replies.iter().filter(|r| r.status == 201).count();
    assert!(
        replies.iter().all(|r| r.status == 200 || r.status == 201),
        "all succeed"
    );
    assert_eq!(created, 1, "exactly one request created the user");
    let ids: std::collections::HashSet<_> = replies
        .iter()
        .map(|r| r.body["user"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every request sees the same user");

    let users = app
        .all_items()
        .await
        .into_iter()
        .filter(|item| item.get("entity") == Some(&AttributeValue::S("USER".into())))
        .count();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn a_member_sees_organization_permissions_and_plan_entitlements() {
    let app = TestApp::start().await;
    let (token, user) = app.owner_with_organization("auth0|owner").await;

    let reply = app.get("/api/me", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user"]["role"], "OWNER");
    assert_eq!(
        reply.body["organization"]["id"],
        user.organization_id.clone().unwrap()
    );
    assert_eq!(reply.body["organization"]["plan"], serde_json::Value::Null);
    assert_eq!(reply.body["organization"]["planStatus"], "none");
    let permissions = reply.body["permissions"].as_array().unwrap();
    assert_eq!(permissions.len(), 21);
    assert!(permissions.contains(&"audit:read".into()));
    assert!(permissions.contains(&"webhooks:manage".into()));
    assert!(permissions.contains(&"billing:update".into()));
    assert!(permissions.contains(&"apikeys:manage".into()));
    assert_eq!(reply.body["limits"], serde_json::Value::Null);

    let tenant = user.tenant().unwrap();
    app.store
        .set_organization_plan(&tenant, Some(Plan::Professional), PlanStatus::Active)
        .await
        .unwrap();
    let reply = app.get("/api/me", &token).await;
    assert_eq!(reply.body["organization"]["plan"], "PROFESSIONAL");
    assert_eq!(
        reply.body["limits"],
        serde_json::json!({"maxMinutes": 2000, "maxPhoneNumbers": 3, "maxTeamMembers": 5})
    );
    assert_eq!(reply.body["features"]["customAI"], true);
    assert_eq!(reply.body["features"]["apiAccess"], false);
    assert_eq!(
        reply.body["features"]["languages"],
        serde_json::json!(["RU", "UZ"])
    );

    app.set_role("auth0|owner", "OPERATOR").await;
    let reply = app.get("/api/me", &token).await;
    assert_eq!(
        reply.body["permissions"],
        serde_json::json!(["calls:read:own", "calls:update:own"])
    );
}

#[tokio::test]
async fn dynamodb_down_answers_503_not_a_hang_or_panic() {
    let app = TestApp::start_with(|config| {
        // A closed port on loopback: connection refused at once.
        config.dynamodb_endpoint = Some("http://127.0.0.1:9".to_owned());
    })
    .await;
    let reply = app.get("/api/me", &app.token("auth0|x", None, None)).await;
    assert_error(&reply, 503, "store_unavailable");
}
