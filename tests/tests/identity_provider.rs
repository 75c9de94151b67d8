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

// ---- profiles fetched from the provider (tokens without an email) ----

use tollgate::store::NewUser;
use tollgate_tests::assert_error;
use tollgate_tests::identity_standin::{CLERK_TEST_SECRET_KEY, IdentityStandIn};

const FRONTEND: &str = "https://app.tollgate.test";

/// A gateway that fetches Clerk profiles from `standin` with `key`.
async fn clerk_app(standin: &IdentityStandIn, key: &str) -> TestApp {
    let base = standin.base_url.clone();
    let key = key.to_owned();
    TestApp::start_with(move |config| {
        config.clerk_secret_key = Some(key);
        config.clerk_api_base = base;
        // No `azp` allow-list here: the harness's owners sign in with tokens that carry none.
    })
    .await
}

/// A Clerk v2 session token as Clerk issues it by default: no email, no name.
fn clerk_session_token(app: &TestApp, user_id: &str) -> String {
    app.sign(json!({
        "sub": user_id, "sid": "sess_2abc", "azp": FRONTEND, "iss": TEST_ISSUER,
        "iat": now(), "nbf": now() - 5, "exp": now() + 60, "v": 2, "fva": [0, -1],
    }))
}

/// A gateway whose tokens are Auth0 access tokens for `API`, with `/userinfo` at `standin`.
async fn auth0_app(standin: &IdentityStandIn) -> TestApp {
    let userinfo = format!("{}/userinfo", standin.base_url);
    TestApp::start_with(move |config| {
        let jwt = config.jwt.as_mut().expect("jwt");
        jwt.audience = vec![API.to_owned()];
        jwt.userinfo_url = userinfo;
    })
    .await
}

/// An Auth0 access token as Auth0 issues it for an API by default: no email.
fn auth0_access_token(app: &TestApp, standin: &IdentityStandIn, sub: &str) -> String {
    app.sign(json!({
        "sub": sub, "iss": TEST_ISSUER, "iat": now(), "exp": now() + 600,
        "aud": [API, format!("{}/userinfo", standin.base_url)],
        "azp": "spa-client-id", "scope": "openid profile email",
    }))
}

fn listed(me: &tollgate_tests::Reply) -> Vec<String> {
    me.body["invitations"]
        .as_array()
        .expect("invitations")
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

async fn accept(app: &TestApp, token: &str, invitation: &str) -> tollgate_tests::Reply {
    app.post(
        &format!("/api/me/invitations/{invitation}/accept"),
        token,
        json!({}),
    )
    .await
}

#[tokio::test]
async fn clerk_session_token_without_email_gets_the_primary_email_once_and_invitations_work() {
    let standin = IdentityStandIn::start().await;
    let app = clerk_app(&standin, CLERK_TEST_SECRET_KEY).await;
    let (owner, _) = app
        .organization_on_plan("user_2owner", Plan::Business, PlanStatus::Active)
        .await;
    let invitation = invite(&app, &owner, "kim@example.com").await;
    standin.add_clerk_user(
        "user_2kim",
        "Kim@Example.com",
        "verified",
        Some("Kim"),
        None,
    );
    let token = clerk_session_token(&app, "user_2kim");

    let me = app.get("/api/me", &token).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["email"], "Kim@Example.com");
    assert_eq!(me.body["user"]["name"], "Kim", "never \"Kim null\"");
    assert_eq!(listed(&me), vec![invitation.clone()]);
    assert_eq!(standin.hits(), 1);
    let stored = app.store.get_user("user_2kim").await.unwrap().unwrap();
    assert_eq!(stored.email_verified, Some(true));
    assert!(stored.profile_read_at.is_some());

    // Later requests use the stored profile: no second fetch.
    let again = app.get("/api/me", &token).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(listed(&again), vec![invitation.clone()]);
    let accepted = accept(&app, &token, &invitation).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body["user"]["role"], "ADMIN");
    assert_eq!(app.get("/api/me", &token).await.status, 200);
    assert_eq!(standin.hits(), 1, "the profile is read once");
}

#[tokio::test]
async fn clerk_unverified_primary_email_is_stored_but_never_counts() {
    let standin = IdentityStandIn::start().await;
    let app = clerk_app(&standin, CLERK_TEST_SECRET_KEY).await;
    let (owner, _) = app
        .organization_on_plan("user_2owner", Plan::Business, PlanStatus::Active)
        .await;
    let invitation = invite(&app, &owner, "lee@example.com").await;
    standin.add_clerk_user(
        "user_2lee",
        "lee@example.com",
        "unverified",
        Some("Lee"),
        Some("Ho"),
    );
    let token = clerk_session_token(&app, "user_2lee");
    let me = app.get("/api/me", &token).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["email"], "lee@example.com");
    assert_eq!(me.body["user"]["name"], "Lee Ho");
    assert_eq!(me.body["invitations"], json!([]));
    let stored = app.store.get_user("user_2lee").await.unwrap().unwrap();
    assert_eq!(stored.email_verified, Some(false));
    let refused = accept(&app, &token, &invitation).await;
    assert_error(&refused, 404, "invitation_not_found");
}

#[tokio::test]
async fn auth0_access_token_without_email_reads_userinfo_once_and_invitations_work() {
    let standin = IdentityStandIn::start().await;
    let app = auth0_app(&standin).await;
    let owner = app.sign(json!({
        "sub": "auth0|owner", "iss": TEST_ISSUER, "iat": now(), "exp": now() + 600, "aud": API,
        "email": "owner@example.com", "email_verified": true,
    }));
    assert_eq!(app.get("/api/me", &owner).await.status, 201);
    let user = app.store.get_user("auth0|owner").await.unwrap().unwrap();
    app.store
        .create_organization(&user, "Owner Org", None, None)
        .await
        .expect("organization");
    app.store
        .set_organization_plan(
            &tollgate_tests::tenant_of(&app, "auth0|owner").await,
            Some(Plan::Business),
            PlanStatus::Active,
        )
        .await
        .expect("plan");
    let invitation = invite(&app, &owner, "bo@example.com").await;
    assert_eq!(standin.hits(), 0, "a token with an email fetches nothing");

    standin.add_userinfo(
        "auth0|bo",
        json!({"sub": "auth0|bo", "email": "bo@example.com", "email_verified": true,
               "given_name": "Bo", "family_name": "Kim", "nickname": "bo"}),
    );
    let token = auth0_access_token(&app, &standin, "auth0|bo");
    let me = app.get("/api/me", &token).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["email"], "bo@example.com");
    assert_eq!(me.body["user"]["name"], "Bo Kim");
    assert_eq!(listed(&me), vec![invitation.clone()]);
    assert_eq!(app.get("/api/me", &token).await.status, 200);
    let accepted = accept(&app, &token, &invitation).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(standin.hits(), 1, "userinfo is read once");

    // userinfo's email_verified: false never counts.
    standin.add_userinfo(
        "auth0|eve",
        json!({"sub": "auth0|eve", "email": "bo@example.com", "email_verified": false}),
    );
    let eve = auth0_access_token(&app, &standin, "auth0|eve");
    let me = app.get("/api/me", &eve).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["invitations"], json!([]));
}

#[tokio::test]
async fn auth0_token_whose_audience_lacks_userinfo_is_not_sent_there() {
    let standin = IdentityStandIn::start().await;
    let app = auth0_app(&standin).await;
    let token = app.sign(json!({
        "sub": "auth0|api-only", "iss": TEST_ISSUER, "iat": now(), "exp": now() + 600,
        "aud": API, "azp": "spa-client-id", "scope": "read:things",
    }));
    let me = app.get("/api/me", &token).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["email"], Value::Null);
    assert_eq!(standin.hits(), 0);
}

#[tokio::test]
async fn provider_failures_answer_503_and_write_nothing() {
    let standin = IdentityStandIn::start().await;
    standin.add_clerk_user(
        "user_2kim",
        "kim@example.com",
        "verified",
        Some("Kim"),
        None,
    );

    // Clerk down, then a wrong secret key (401), then a user Clerk does not know (404).
    let app = clerk_app(&standin, CLERK_TEST_SECRET_KEY).await;
    standin.set_down(true);
    let before = app.all_items().await;
    let down = app
        .get("/api/me", &clerk_session_token(&app, "user_2kim"))
        .await;
    assert_error(&down, 503, "identity_provider_unavailable");
    let unknown = app
        .get("/api/me", &clerk_session_token(&app, "user_2ghost"))
        .await;
    assert_error(&unknown, 503, "identity_provider_unavailable");
    standin.set_down(false);
    let unknown = app
        .get("/api/me", &clerk_session_token(&app, "user_2ghost"))
        .await;
    assert_error(&unknown, 503, "identity_provider_unavailable");
    assert_eq!(app.all_items().await, before, "nothing written");
    // Back up: the sign-in works and stores the profile.
    let me = app
        .get("/api/me", &clerk_session_token(&app, "user_2kim"))
        .await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["email"], "kim@example.com");

    let bad_key = clerk_app(&standin, "sk_test_wrong").await;
    let before = bad_key.all_items().await;
    let refused = bad_key
        .get("/api/me", &clerk_session_token(&bad_key, "user_2kim"))
        .await;
    assert_error(&refused, 503, "identity_provider_unavailable");
    assert_eq!(bad_key.all_items().await, before, "nothing written");

    // Auth0's /userinfo down.
    let auth0 = auth0_app(&standin).await;
    standin.add_userinfo(
        "auth0|bo",
        json!({"sub": "auth0|bo", "email": "bo@example.com", "email_verified": true}),
    );
    standin.set_down(true);
    let before = auth0.all_items().await;
    let token = auth0_access_token(&auth0, &standin, "auth0|bo");
    assert_error(
        &auth0.get("/api/me", &token).await,
        503,
        "identity_provider_unavailable",
    );
    assert_eq!(auth0.all_items().await, before, "nothing written");
    standin.set_down(false);
    assert_eq!(auth0.get("/api/me", &token).await.status, 201);
}

/// A user stored without an email (signed in before profiles were fetched) gets theirs when
/// their invitations are looked up, once.
#[tokio::test]
async fn a_user_stored_without_an_email_gets_the_profile_on_the_invitation_check() {
    let standin = IdentityStandIn::start().await;
    let app = clerk_app(&standin, CLERK_TEST_SECRET_KEY).await;
    app.store
        .get_or_create_user(NewUser {
            subject: "user_2old".to_owned(),
            email: None,
            name: None,
            email_verified: None,
            profile_read_at: None,
        })
        .await
        .expect("user");
    standin.add_clerk_user(
        "user_2old",
        "old@example.com",
        "verified",
        Some("Old"),
        Some("Timer"),
    );
    let token = clerk_session_token(&app, "user_2old");
    let me = app.get("/api/me", &token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user"]["email"], "old@example.com");
    assert_eq!(me.body["user"]["name"], "Old Timer");
    assert_eq!(app.get("/api/me", &token).await.status, 200);
    assert_eq!(standin.hits(), 1);
}

/// A profile answer for another user than the token's (OIDC Core 5.3.2: the UserInfo `sub` must
/// match; Clerk's user object `id` must be the one asked for) is never used: 503, nothing
/// written, so nobody gets another person's verified email and their invitations.
#[tokio::test]
async fn a_profile_for_another_subject_is_refused() {
    let standin = IdentityStandIn::start().await;
    // Auth0: `/userinfo` answers for someone else.
    let auth0 = auth0_app(&standin).await;
    standin.add_userinfo(
        "auth0|mallory",
        json!({"sub": "auth0|victim", "email": "victim@example.com", "email_verified": true}),
    );
    let before = auth0.all_items().await;
    let token = auth0_access_token(&auth0, &standin, "auth0|mallory");
    assert_error(
        &auth0.get("/api/me", &token).await,
        503,
        "identity_provider_unavailable",
    );
    assert_eq!(auth0.all_items().await, before, "nothing written");
    // A `/userinfo` answer without a `sub` is refused too.
    standin.add_userinfo(
        "auth0|nosub",
        json!({"email": "victim@example.com", "email_verified": true}),
    );
    let token = auth0_access_token(&auth0, &standin, "auth0|nosub");
    assert_error(
        &auth0.get("/api/me", &token).await,
        503,
        "identity_provider_unavailable",
    );

    // Clerk: the user object returned is not the one asked for.
    standin.add_clerk_user(
        "user_2victim",
        "victim@example.com",
        "verified",
        Some("Vic"),
        None,
    );
    standin.alias_clerk_user("user_2mallory", "user_2victim");
    let clerk = clerk_app(&standin, CLERK_TEST_SECRET_KEY).await;
    let before = clerk.all_items().await;
    assert_error(
        &clerk
            .get("/api/me", &clerk_session_token(&clerk, "user_2mallory"))
            .await,
        503,
        "identity_provider_unavailable",
    );
    assert_eq!(clerk.all_items().await, before, "nothing written");
}
