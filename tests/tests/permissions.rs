//! `POST /api/permissions/check` through the real handler: every role × every permission, plan
//! entitlements, own-scope resolution, and 400s that change nothing.

use serde_json::json;
use tollgate::pricing::{Feature, Plan};
use tollgate::rbac::{self, Permission, Role};
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

#[tokio::test]
async fn every_role_gets_the_role_tables_decision_for_every_permission() {
    let app = TestApp::start().await;
    let (token, _) = app.owner_with_organization("auth0|matrix").await;
    let all: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
    for role in Role::ALL {
        app.set_role("auth0|matrix", role.as_str()).await;
        let reply = app
            .post(
                "/api/permissions/check",
                &token,
                json!({"permissions": all}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let results = reply.body["results"].as_array().unwrap();
        assert_eq!(results.len(), Permission::ALL.len());
        for (permission, result) in Permission::ALL.iter().zip(results) {
            assert_eq!(result["permission"], permission.as_str());
            let expected = serde_json::to_value(rbac::check(role, *permission)).unwrap();
            assert_eq!(result["decision"], expected, "{role} {permission}");
        }
        // Only OWNER holds all 18 permissions unscoped.
        assert_eq!(reply.body["allowed"], role == Role::Owner, "{role}");
    }
}

#[tokio::test]
async fn owner_holds_every_permission_and_operator_only_its_own_calls() {
    let app = TestApp::start().await;
    let (token, user) = app.owner_with_organization("auth0|own").await;
    let reply = app
        .post(
            "/api/permissions/check",
            &token,
            json!({"permissions": ["billing:update", "users:delete"]}),
        )
        .await;
    assert_eq!(reply.body["allowed"], true);
    assert_eq!(reply.body["missing"], json!([]));

    app.set_role("auth0|own", "OPERATOR").await;
    let mine = app
        .post(
            "/api/permissions/check",
            &token,
            json!({"permissions": ["calls:read"], "resourceOwnerId": user.id}),
        )
        .await;
    assert_eq!(mine.body["results"][0]["decision"], "allowed");
    let theirs = app
        .post(
            "/api/permissions/check",
            &token,
            json!({"permissions": ["calls:read"], "resourceOwnerId": "usr_other"}),
        )
        .await;
    assert_eq!(theirs.body["results"][0]["decision"], "denied");
    assert_eq!(theirs.body["missing"], json!(["calls:read"]));
    let unresolved = app
        .post(
            "/api/permissions/check",
            &token,
            json!({"permissions": ["calls:read"]}),
        )
        .await;
    assert_eq!(
        unresolved.body["results"][0]["decision"],
        "allowed_own_only"
    );
}

#[tokio::test]
async fn plan_entitlements_are_checked_like_permissions() {
    let app = TestApp::start().await;
    let (token, user) = app.owner_with_organization("auth0|plan").await;
    let ask = json!({"permissions": ["org:read"], "features": ["apiAccess", "customAI", "advancedAnalytics"]});

    let no_plan = app
        .post("/api/permissions/check", &token, ask.clone())
        .await;
    assert_eq!(no_plan.body["allowed"], false);
    assert_eq!(
        no_plan.body["missing"],
        json!(["apiAccess", "customAI", "advancedAnalytics"])
    );

    for plan in Plan::ALL {
        app.store
            .set_organization_plan(&user.tenant().unwrap(), Some(plan), PlanStatus::Active)
            .await
            .unwrap();
        let reply = app
            .post("/api/permissions/check", &token, ask.clone())
            .await;
        for (i, feature) in Feature::ALL.iter().enumerate() {
            assert_eq!(reply.body["features"][i]["feature"], feature.as_str());
            assert_eq!(
                reply.body["features"][i]["enabled"],
                tollgate::pricing::plan_has_feature(plan, *feature),
                "{plan} {feature}"
            );
        }
    }
}

#[tokio::test]
async fn a_user_without_an_organization_is_denied_everything() {
    let app = TestApp::start().await;
    let token = app.token("auth0|loner", None, None);
    assert_eq!(app.get("/api/me", &token).await.status, 201);
    let reply = app
        .post(
            "/api/permissions/check",
            &token,
            json!({"permissions": ["org:read"], "features": ["apiAccess"]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["results"][0]["decision"], "denied");
    assert_eq!(reply.body["allowed"], false);
}

#[tokio::test]
async fn bad_input_is_a_400_envelope_and_changes_nothing() {
    let app = TestApp::start().await;
    let (token, _) = app.owner_with_organization("auth0|bad").await;
    let before = app.all_items().await.len();
    let cases = [
        (r#"{"permissions":["users:fly"]}"#, "unknown_permission"),
        (
            r#"{"permissions":["calls:read:all"]}"#,
            "unknown_permission",
        ),
        (
            r#"{"permissions":["org:read"],"features":["teleport"]}"#,
            "unknown_feature",
        ),
        (r#"{"permissions":[]}"#, "invalid_body"),
        (r#"{"permisions":["org:read"]}"#, "invalid_body"),
        (r#"{"permissions":"org:read"}"#, "invalid_body"),
        (r#"not json"#, "invalid_body"),
        ("", "invalid_body"),
    ];
    for (body, code) in cases {
        let reply = app
            .request(
                reqwest::Method::POST,
                "/api/permissions/check",
                Some(&format!("Bearer {token}")),
                Some(body.to_owned()),
            )
            .await;
        assert_error(&reply, 400, code);
    }
    let huge = json!({"permissions": ["org:read"], "resourceOwnerId": "x".repeat(70_000)});
    let reply = app.post("/api/permissions/check", &token, huge).await;
    assert_error(&reply, 413, "payload_too_large");
    assert_eq!(app.all_items().await.len(), before);
}

#[tokio::test]
async fn a_signed_in_user_who_never_loaded_their_profile_is_told_how() {
    let app = TestApp::start().await;
    let token = app.token("auth0|new", None, None);
    let reply = app
        .post(
            "/api/permissions/check",
            &token,
            json!({"permissions": ["org:read"]}),
        )
        .await;
    assert_error(&reply, 403, "user_not_found");
    assert!(app.all_items().await.is_empty());
}
