//! Profiles as the identity providers really issue tokens (issue 20): namespaced claim names
//! (Auth0 Actions), and profiles fetched from the provider when the token carries no email.

use serde_json::{Value, json};
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{TEST_ISSUER, TestApp};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

const API: &str = "https://api.tollgate.test";

async fn invite(app: &TestApp, token: &str, email: &str) -> String {
    let reply = app
        .post(
            "/api/users",
            token,
            json!({"email": email, "role": "ADMIN"}),
        )
        .await;
    assert_eq!(reply.status, 201, "invite {email}: {}", reply.body);
    reply.body["id"].as_str().expect("invitation id").to_owned()
}

/// An Auth0 access token whose Action added namespaced claims: with `JWT_CLAIM_*` naming them,
/// the user gets the email, name and verification, and the invitation to that email works.
#[tokio::test]
async fn auth0_namespaced_claims_give_the_user_an_email_and_invitations_work() {
    let app = TestApp::start_with(|config| {
        let jwt = config.jwt.as_mut().expect("jwt");
        jwt.claim_email = "https://example.com/email".to_owned();
        jwt.claim_email_verified = "https://example.com/email_verified".to_owned();
        jwt.claim_name = "https://example.com/name".to_owned();
    })
    .await;
    let (owner, _) = app
        .organization_on_plan("auth0|owner", Plan::Business, PlanStatus::Active)
        .await;
    let invitation = invite(&app, &owner, "kim@example.com").await;

    let token = app.sign(json!({
        "sub": "auth0|kim", "iss": TEST_ISSUER, "iat": now(), "exp": now() + 600,
        "aud": [API, format!("{TEST_ISSUER}userinfo")],
        "azp": "spa-client-id", "scope": "openid profile email",
        "https://example.com/email": "Kim@Example.com",
        "https://example.com/email_verified": true,
        "https://example.com/name": "Kim Park",
    }));
    let me = app.get("/api/me", &token).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["email"], "Kim@Example.com");
    assert_eq!(me.body["user"]["name"], "Kim Park");
    let listed: Vec<&str> = me.body["invitations"]
        .as_array()
        .expect("invitations")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(listed, vec![invitation.as_str()], "{}", me.body);
    let accepted = app
        .post(
            &format!("/api/me/invitations/{invitation}/accept"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body["user"]["role"], "ADMIN");

    // The plain `email` claim is not the configured one: it does not count.
    let plain = app.verified_token("auth0|plain", "kim@example.com", Some("Plain"));
    let me = app.get("/api/me", &plain).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["email"], Value::Null);
    assert_eq!(me.body["invitations"], json!([]));
}
