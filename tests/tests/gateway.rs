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
