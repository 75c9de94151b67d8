//! Gateway-level behaviour shared by every route: unknown routes, wrong methods, headers.

use tollgate_tests::{TestApp, assert_error};

#[tokio::test]
async fn unknown_route_and_wrong_method_get_envelopes() {
    let app = TestApp::start().await;
    let token = app.token("auth0|g", None, None);
    let reply = app.get("/api/nothing-here", &token).await;
    assert_error(&reply, 404, "route_not_found");

    let reply = app
        .request(
            reqwest::Method::DELETE,
            "/api/me",
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    assert_error(&reply, 405, "method_not_allowed");
    assert_eq!(reply.headers["allow"], "GET");
    assert!(app.all_items().await.is_empty());
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_no_store() {
    let app = TestApp::start().await;
    let reply = app
        .request(reqwest::Method::GET, "/api/me", None, None)
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["content-type"], "application/json");
    assert!(!reply.headers["x-request-id"].is_empty());
}

#[tokio::test]
async fn cors_allows_the_configured_frontend_only() {
    let app = TestApp::start().await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/me", app.base_url))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );

    let foreign = app
        .http
        .get(format!("{}/api/me", app.base_url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn implausible_ids_are_not_found_before_reaching_the_store() {
    let app = TestApp::start().await;
    let (token, _) = app
        .organization_on_plan(
            "auth0|longid",
            tollgate::pricing::Plan::Business,
            tollgate::store::PlanStatus::Active,
        )
        .await;
    let long = "a".repeat(1100);
    for path in [
        format!("/api/users/{long}"),
        format!("/api/users/invitations/{long}"),
        format!("/api/integrations/{long}"),
        "/api/users/usr%20x".to_owned(),
    ] {
        let reply = app.delete(&path, &token).await;
        assert_error(&reply, 404, "route_not_found");
    }
}

#[tokio::test]
async fn query_parameters_are_percent_decoded_as_api_gateway_does() {
    let app = TestApp::start().await;
    let (token, _) = app.owner_with_organization("auth0|decode").await;
    let reply = app.get("/api/users?limit=%35", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn the_dev_gateway_serves_its_openapi_document() {
    let app = TestApp::start().await;
    let response = app
        .http
        .get(format!("{}/api/openapi.yaml", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("openapi: 3.1")
            || text.contains("\nopenapi: 3.1")
            || text.contains("openapi: \"3.1"),
        "{}",
        &text[..80.min(text.len())]
    );
    assert_eq!(text, include_str!("../../docs/openapi.yaml"));
}

/// Every route answers each method it does not have with 405 `method_not_allowed` and an `Allow`
/// header naming the ones it has, before any credential is looked at: the service route, the
/// webhook and the user routes alike, with nothing counted or written.
#[tokio::test]
async fn every_route_refuses_the_methods_it_does_not_allow() {
    let app = TestApp::start().await;
    let mut allowed: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for route in tollgate::routes::routes() {
        allowed
            .entry(route.path.replace("{id}", "x_1"))
            .or_default()
            .push(route.method.as_str());
    }
    for (path, methods) in &allowed {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if methods.contains(&method) {
                continue;
            }
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let reply = app
                .request(method.clone(), path, None, Some("{}".into()))
                .await;
            assert_error(&reply, 405, "method_not_allowed");
            let mut allow: Vec<&str> = reply.headers["allow"]
                .to_str()
                .unwrap()
                .split(", ")
                .collect();
            allow.sort_unstable();
            let mut expected = methods.clone();
            expected.sort_unstable();
            assert_eq!(allow, expected, "{method} {path}");
        }
    }
    assert!(
        app.raw_items().await.is_empty(),
        "nothing counted or written"
    );
}

/// A JSON body that names a field twice (`{"organizationId": A, "organizationId": B}`: which one
/// counts depends on the parser) or names a field the route does not take is refused with 400
/// `invalid_body` on every route that takes a body, before anything is read or written.
#[tokio::test]
async fn duplicate_or_unknown_fields_in_any_body_are_refused_and_change_nothing() {
    let key = "tgsk_test_dup_fields_0123456789abcdef_0123456789abcd";
    let app = TestApp::start_with(|config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(key);
        // Checkout builds its Stripe client first; nothing may reach it (the port is closed).
        config.stripe_secret_key = Some("sk_test_never_called".into());
        config.stripe_api_base = "http://127.0.0.1:9".into();
        config.encryption_keys = Some(format!("k1:{}", "1".repeat(64)));
        config.encryption_active_key = Some("k1".into());
    })
    .await;
    let (owner, user) = app
        .organization_on_plan(
            "auth0|dup-owner",
            tollgate::pricing::Plan::Business,
            tollgate::store::PlanStatus::Active,
        )
        .await;
    let (_, other) = app.owner_with_organization("auth0|dup-other").await;
    let newcomer = app.token("auth0|dup-new", Some("new@example.com"), None);
    assert_eq!(app.get("/api/me", &newcomer).await.status, 201);
    let (a, b) = (
        user.organization_id.clone().unwrap(),
        other.organization_id.clone().unwrap(),
    );
    let before = app.all_items().await;
    let member = format!("/api/users/{}", user.id);
    let call = |extra: &str| {
        format!(
            r#"{{"organizationId":"{a}","callId":"c1","durationSeconds":60,"endedAt":"2026-01-01T00:00:00Z"{extra}}}"#
        )
    };
    let cases: Vec<(reqwest::Method, &str, &str, String)> = vec![
        (
            reqwest::Method::POST,
            "/api/usage/calls",
            key,
            call(&format!(r#","organizationId":"{b}""#)),
        ),
        (
            reqwest::Method::POST,
            "/api/usage/calls",
            key,
            call(r#","callId":"c2""#),
        ),
        (
            reqwest::Method::POST,
            "/api/organizations",
            &newcomer,
            r#"{"name":"Aaa","name":"Bbb"}"#.into(),
        ),
        (
            reqwest::Method::PATCH,
            "/api/organization",
            &owner,
            r#"{"name":"Aaa","name":"Bbb"}"#.into(),
        ),
        (
            reqwest::Method::POST,
            "/api/users",
            &owner,
            r#"{"email":"x@example.com","role":"VIEWER","role":"OWNER"}"#.into(),
        ),
        (
            reqwest::Method::PATCH,
            &member,
            &owner,
            r#"{"role":"OWNER","role":"VIEWER"}"#.into(),
        ),
        (
            reqwest::Method::POST,
            "/api/permissions/check",
            &owner,
            r#"{"permissions":["org:read"],"permissions":["billing:update"]}"#.into(),
        ),
        (
            reqwest::Method::POST,
            "/api/integrations",
            &owner,
            r#"{"type":"a","type":"b","name":"n","credentials":{"k":"v"}}"#.into(),
        ),
        (
            reqwest::Method::POST,
            "/api/billing/checkout",
            &owner,
            r#"{"plan":"STARTER","plan":"BUSINESS","interval":"monthly"}"#.into(),
        ),
    ];
    for (method, path, credential, body) in cases {
        let reply = app
            .request(
                method.clone(),
                path,
                Some(&format!("Bearer {credential}")),
                Some(body.clone()),
            )
            .await;
        assert_error(&reply, 400, "invalid_body");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("duplicate field"),
            "{method} {path} {body}: {}",
            reply.body
        );
    }
    let unknown = format!(r#","organizationId":"{b}""#);
    let cases: Vec<(reqwest::Method, &str, &str, String)> = vec![
        (
            reqwest::Method::POST,
            "/api/usage/calls",
            key,
            call(r#","tenant":"x""#),
        ),
        (
            reqwest::Method::POST,
            "/api/organizations",
            &newcomer,
            format!(r#"{{"name":"Aaa"{unknown}}}"#),
        ),
        (
            reqwest::Method::PATCH,
            "/api/organization",
            &owner,
            format!(r#"{{"name":"Aaa"{unknown}}}"#),
        ),
        (
            reqwest::Method::POST,
            "/api/users",
            &owner,
            format!(r#"{{"email":"x@example.com","role":"VIEWER"{unknown}}}"#),
        ),
        (
            reqwest::Method::PATCH,
            &member,
            &owner,
            format!(r#"{{"role":"OWNER"{unknown}}}"#),
        ),
        (
            reqwest::Method::POST,
            "/api/permissions/check",
            &owner,
            format!(r#"{{"permissions":["org:read"]{unknown}}}"#),
        ),
        (
            reqwest::Method::POST,
            "/api/integrations",
            &owner,
            format!(r#"{{"type":"a","name":"n","credentials":{{"k":"v"}}{unknown}}}"#),
        ),
        (
            reqwest::Method::POST,
            "/api/billing/checkout",
            &owner,
            format!(r#"{{"plan":"STARTER","interval":"monthly","customer":"cus_other"{unknown}}}"#),
        ),
    ];
    for (method, path, credential, body) in cases {
        let reply = app
            .request(
                method.clone(),
                path,
                Some(&format!("Bearer {credential}")),
                Some(body.clone()),
            )
            .await;
        assert_error(&reply, 400, "invalid_body");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{method} {path} {body}: {}",
            reply.body
        );
    }
    assert_eq!(app.all_items().await, before, "nothing written");
}
