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
