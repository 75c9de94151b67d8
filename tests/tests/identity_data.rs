//! Identity data that is what it claims: token emails and names, and invited emails, through the
//! real pipeline. Emails match after ASCII lower-casing only; an email claim that is not an
//! address, and a name claim with control or format characters or over 200 characters, are not
//! stored.

use serde_json::{Value, json};
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{TEST_ISSUER, TestApp, assert_error};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A token with `extra` claims merged over a plain one.
fn token(app: &TestApp, sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "iss": TEST_ISSUER, "iat": now(), "exp": now() + 600});
    for (key, value) in extra.as_object().expect("claims object") {
        claims[key] = value.clone();
    }
    app.sign(claims)
}

/// The invitations `GET /api/me` offers the caller (none when the response has no such list).
fn offered_invitations(me: &Value) -> Vec<Value> {
    me["invitations"].as_array().cloned().unwrap_or_default()
}

/// Every string attribute of every item in the table.
async fn stored_strings(app: &TestApp) -> Vec<String> {
    app.all_items()
        .await
        .into_iter()
        .flat_map(|item| item.into_values())
        .filter_map(|value| value.as_s().ok().cloned())
        .collect()
}

#[tokio::test]
async fn kelvin_sign_email_does_not_match_an_invitation_for_k() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|kelvin-owner", Plan::Professional, PlanStatus::Active)
        .await;
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "kim@example.com", "role": "ADMIN"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);

    // Another account whose verified address is spelled with the Kelvin sign (U+212A), which
    // full Unicode lower-casing turns into `k`.
    let impostor = token(
        &app,
        "auth0|kelvin",
        json!({"email": "\u{212A}im@example.com", "email_verified": true}),
    );
    let me = app.get("/api/me", &impostor).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["organization"], Value::Null, "{}", me.body);
    assert_eq!(me.body["user"]["role"], Value::Null, "{}", me.body);
    assert!(offered_invitations(&me.body).is_empty(), "{}", me.body);
    assert_eq!(me.body["user"]["email"], "\u{212A}im@example.com");

    // Invited the other way round, the Kelvin-sign address stays its own address.
    let invited = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "\u{212A}IM@Example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    let team = app.get("/api/users", &owner).await;
    let mut emails: Vec<&str> = team.body["invitations"]
        .as_array()
        .expect("invitations")
        .iter()
        .filter_map(|i| i["email"].as_str())
        .collect();
    emails.sort_unstable();
    assert_eq!(emails, ["kim@example.com", "\u{212A}im@example.com"]);
}

#[tokio::test]
async fn invited_email_that_is_not_an_address_is_400_invalid_email() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|inviter", Plan::Professional, PlanStatus::Active)
        .await;
    let before = app.all_items().await;
    for email in [
        "kim@example",
        "kim @example.com",
        "kim\u{202E}@example.com",
        "kim@exa\u{200B}mple.com",
        "\u{FEFF}kim@example.com",
        "Kim <kim@example.com>",
        "kim@example..com",
    ] {
        let reply = app
            .post(
                "/api/users",
                &owner,
                json!({"email": email, "role": "VIEWER"}),
            )
            .await;
        assert_error(&reply, 400, "invalid_email");
    }
    assert_eq!(app.all_items().await, before);
}

#[tokio::test]
async fn name_claim_with_bidi_or_zero_width_characters_is_not_stored() {
    let app = TestApp::start().await;
    let hidden = [
        '\u{202E}', '\u{202D}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200F}', '\u{FEFF}',
    ];
    for (index, c) in hidden.iter().enumerate() {
        let me = app
            .get(
                "/api/me",
                &token(
                    &app,
                    &format!("auth0|hidden-{index}"),
                    json!({"name": format!("Ann{c} Lee")}),
                ),
            )
            .await;
        assert_eq!(me.status, 201, "{}", me.body);
        assert_eq!(
            me.body["user"]["name"],
            Value::Null,
            "U+{:04X}",
            u32::from(*c)
        );
    }
    // A bad `name` falls back to clean first and last names; a bad part is left out.
    let me = app
        .get(
            "/api/me",
            &token(
                &app,
                "auth0|fallback",
                json!({"name": "\u{2067}nimdA", "given_name": "Ann", "family_name": "Lee"}),
            ),
        )
        .await;
    assert_eq!(me.body["user"]["name"], "Ann Lee");
    let me = app
        .get(
            "/api/me",
            &token(
                &app,
                "user_clerk_part",
                json!({"first_name": "Bo\u{200D}", "last_name": "Kim"}),
            ),
        )
        .await;
    assert_eq!(me.body["user"]["name"], "Kim");

    let strings = stored_strings(&app).await;
    for c in hidden.iter().chain(&['\u{2067}', '\u{200D}']) {
        assert!(
            !strings.iter().any(|s| s.contains(*c)),
            "U+{:04X} was stored",
            u32::from(*c)
        );
    }
}

#[tokio::test]
async fn name_claim_of_12_kb_is_not_stored() {
    let app = TestApp::start().await;
    let huge = "A".repeat(12_000);
    let long = token(&app, "auth0|long-name", json!({"name": huge}));
    // Within the verifier's 16 KiB token limit: the claim itself is what is refused.
    assert!(long.len() < 16 * 1024, "token of {} bytes", long.len());
    let me = app.get("/api/me", &long).await;
    assert_eq!(me.status, 201, "{}", me.body);
    assert_eq!(me.body["user"]["name"], Value::Null);
    assert!(stored_strings(&app).await.iter().all(|s| s.len() < 1024));

    // The cap is 200 characters, in any script.
    let longest = "я".repeat(200);
    let me = app
        .get(
            "/api/me",
            &token(&app, "auth0|longest", json!({"name": longest})),
        )
        .await;
    assert_eq!(me.body["user"]["name"], longest.as_str());
    let me = app
        .get(
            "/api/me",
            &token(&app, "auth0|too-long", json!({"name": "я".repeat(201)})),
        )
        .await;
    assert_eq!(me.body["user"]["name"], Value::Null);
}

#[tokio::test]
async fn email_claim_that_is_not_an_address_is_not_stored() {
    let app = TestApp::start().await;
    let long = format!("{}@example.com", "a".repeat(250));
    let bad = [
        "not an address",
        "ann@localhost",
        "<img src=x onerror=alert(1)>@example.com",
        "ann\u{202E}@example.com",
        "ann@exam\u{200B}ple.com",
        "Ann Lee <ann@example.com>",
        long.as_str(),
    ];
    for (index, email) in bad.iter().enumerate() {
        let me = app
            .get(
                "/api/me",
                &token(
                    &app,
                    &format!("auth0|bad-email-{index}"),
                    json!({"email": email, "email_verified": true}),
                ),
            )
            .await;
        assert_eq!(me.status, 201, "{}", me.body);
        assert_eq!(me.body["user"]["email"], Value::Null, "{email:?}");
    }
    let strings = stored_strings(&app).await;
    for email in bad {
        assert!(!strings.iter().any(|s| s == email), "{email:?} was stored");
    }
    // An address is kept as the provider spelled it (matching folds ASCII case only).
    let me = app
        .get(
            "/api/me",
            &token(
                &app,
                "auth0|good-email",
                json!({"email": " Ann@Example.com ", "email_verified": true}),
            ),
        )
        .await;
    assert_eq!(me.body["user"]["email"], "Ann@Example.com");
}

/// Found in review (low): characters that are neither control nor format characters but render as
/// nothing or as a blank cell (Hangul fillers, the combining grapheme joiner, the blank Braille
/// pattern, ...) made an organization name, a person's name or an invited address look blank or
/// like another. They are refused like format characters.
#[tokio::test]
async fn blank_rendering_characters_are_refused_in_names_and_addresses() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|blank-owner", Plan::Professional, PlanStatus::Active)
        .await;
    let blanks = [
        '\u{3164}', '\u{FFA0}', '\u{115F}', '\u{1160}', '\u{034F}', '\u{2800}', '\u{17B4}',
        '\u{180B}',
    ];
    for (index, c) in blanks.iter().enumerate() {
        let code = format!("U+{:04X}", u32::from(*c));
        let renamed = app
            .patch(
                "/api/organization",
                &owner,
                json!({"name": format!("{c}{c}")}),
            )
            .await;
        assert_error(&renamed, 400, "invalid_name");
        let renamed = app
            .patch(
                "/api/organization",
                &owner,
                json!({"name": format!("Ac{c}me")}),
            )
            .await;
        assert_eq!(renamed.status, 400, "{code}: {}", renamed.body);
        let invited = app
            .post(
                "/api/users",
                &owner,
                json!({"email": format!("b{c}ll@example.com"), "role": "VIEWER"}),
            )
            .await;
        assert_error(&invited, 400, "invalid_email");
        let billing = app
            .patch(
                "/api/organization",
                &owner,
                json!({"billingEmail": format!("b{c}ll@example.com")}),
            )
            .await;
        assert_eq!(billing.status, 400, "{code}: {}", billing.body);
        let me = app
            .get(
                "/api/me",
                &token(
                    &app,
                    &format!("auth0|blank-{index}"),
                    json!({"name": format!("{c}"), "given_name": format!("Ann{c}")}),
                ),
            )
            .await;
        assert_eq!(me.status, 201, "{}", me.body);
        assert_eq!(me.body["user"]["name"], Value::Null, "{code}");
    }
    // An emoji's variation selector is not one of them.
    let renamed = app
        .patch(
            "/api/organization",
            &owner,
            json!({"name": "Acme \u{2764}\u{FE0F}"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let strings = stored_strings(&app).await;
    for c in blanks {
        assert!(
            !strings.iter().any(|s| s.contains(c)),
            "U+{:04X} was stored",
            u32::from(c)
        );
    }
}
