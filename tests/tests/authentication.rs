//! Every credential rejection through the real pipeline: 401 with the envelope, nothing written.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tollgate_tests::{TEST_ISSUER, TestApp, assert_error};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn assert_rejected(app: &TestApp, authorization: Option<&str>, code: &str) {
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/me", None),
        (
            reqwest::Method::POST,
            "/api/permissions/check",
            Some(r#"{"permissions":["org:read"]}"#.to_owned()),
        ),
    ] {
        let reply = app.request(method, path, authorization, body).await;
        assert_error(&reply, 401, code);
    }
    assert!(
        app.all_items().await.is_empty(),
        "a rejected request wrote to the table"
    );
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn missing_and_malformed_headers() {
    let app = TestApp::start().await;
    assert_rejected(&app, None, "missing_token").await;
    assert_rejected(&app, Some(""), "missing_token").await;
    assert_rejected(&app, Some("Basic dXNlcjpwYXNz"), "invalid_token").await;
    assert_rejected(&app, Some("Bearer"), "invalid_token").await;
    assert_rejected(&app, Some("Bearer not-a-jwt"), "invalid_token").await;
    assert_rejected(&app, Some("Bearer a.b.c"), "invalid_token").await;
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let app = TestApp::start().await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"sub": "mallory", "iss": TEST_ISSUER, "exp": now() + 600}).to_string());
    assert_rejected(
        &app,
        Some(&bearer(&format!("{header}.{claims}."))),
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    let app = TestApp::start().await;
    let jwks = app.issuer.jwks();
    let public = jwks["keys"][0].to_string();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(app.issuer.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "mallory", "iss": TEST_ISSUER, "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_rejected(&app, Some(&bearer(&token)), "invalid_token").await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_beyond_the_leeway() {
    let app = TestApp::start().await;
    let expired = app.sign(json!({"sub": "u", "iss": TEST_ISSUER, "exp": now() - 61 - 5}));
    assert_rejected(&app, Some(&bearer(&expired)), "token_expired").await;
    let early =
        app.sign(json!({"sub": "u", "iss": TEST_ISSUER, "exp": now() + 600, "nbf": now() + 120}));
    assert_rejected(&app, Some(&bearer(&early)), "invalid_token").await;
    // Within the 60 s leeway both are accepted (clock skew between issuer and Lambda).
    let skewed =
        app.sign(json!({"sub": "u", "iss": TEST_ISSUER, "exp": now() - 30, "nbf": now() + 30}));
    assert_eq!(app.get("/api/me", &skewed).await.status, 201);
}

#[tokio::test]
async fn wrong_issuer_audience_and_authorized_party() {
    let app = TestApp::start_with(|config| {
        let jwt = config.jwt.as_mut().unwrap();
        jwt.audience = vec!["https://api.tollgate.test".into()];
        jwt.authorized_parties = vec!["https://app.tollgate.test".into()];
    })
    .await;
    let good = json!({"sub": "u", "iss": TEST_ISSUER, "exp": now() + 600,
        "aud": ["https://api.tollgate.test", "other"], "azp": "https://app.tollgate.test"});
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[key] = value;
        app.sign(claims)
    };
    assert_rejected(
        &app,
        Some(&bearer(&with("iss", json!("https://evil.test/")))),
        "invalid_token",
    )
    .await;
    assert_rejected(
        &app,
        Some(&bearer(&with("aud", json!("https://other.test")))),
        "invalid_token",
    )
    .await;
    assert_rejected(
        &app,
        Some(&bearer(&with("azp", json!("https://evil.test")))),
        "invalid_token",
    )
    .await;
    let mut no_azp = good.clone();
    no_azp.as_object_mut().unwrap().remove("azp");
    assert_rejected(&app, Some(&bearer(&app.sign(no_azp))), "invalid_token").await;
    assert_eq!(app.get("/api/me", &app.sign(good)).await.status, 201);
}

#[tokio::test]
async fn unknown_kid_and_tampering() {
    let app = TestApp::start().await;
    let stranger = tollgate_dev::issuer::LocalIssuer::generate().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(stranger.kid().to_owned());
    let foreign = jsonwebtoken::encode(
        &header,
        &json!({"sub": "u", "iss": TEST_ISSUER, "exp": now() + 600}),
        &stranger.encoding_key(),
    )
    .unwrap();
    // The JWKS URL is a closed port: the refetch fails and the unknown key is still refused.
    let reply = app.get("/api/me", &foreign).await;
    assert_error(&reply, 401, "invalid_token");
    assert!(app.all_items().await.is_empty());

    // Same kid as the trusted key, signed by another key: the signature check fails.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(app.issuer.kid().to_owned());
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"sub": "u", "iss": TEST_ISSUER, "exp": now() + 600}),
        &stranger.encoding_key(),
    )
    .unwrap();
    assert_rejected(&app, Some(&bearer(&forged)), "invalid_token").await;

    let valid = app.token("victim", None, None);
    let parts: Vec<&str> = valid.split('.').collect();
    let evil_claims = URL_SAFE_NO_PAD
        .encode(json!({"sub": "admin", "iss": TEST_ISSUER, "exp": now() + 600}).to_string());
    let tampered_claims = format!("{}.{}.{}", parts[0], evil_claims, parts[2]);
    assert_rejected(&app, Some(&bearer(&tampered_claims)), "invalid_token").await;

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 0x01;
    let tampered_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_rejected(&app, Some(&bearer(&tampered_signature)), "invalid_token").await;
}

#[tokio::test]
async fn service_keys_are_not_user_tokens() {
    let key = "tgsk_test_0123456789abcdef_0123456789abcdefghijk";
    let app = TestApp::start_with(|config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(key);
    })
    .await;
    // A valid service key on a user route: authenticated, but the wrong kind of principal.
    let reply = app.get("/api/me", key).await;
    assert_error(&reply, 403, "user_token_required");
    // A wrong service key is a failed authentication.
    let reply = app
        .get(
            "/api/me",
            "tgsk_test_wrong_0123456789abcdefghijklmnopqrstuv",
        )
        .await;
    assert_error(&reply, 401, "invalid_token");
    assert!(app.all_items().await.is_empty());
}

/// Configuration as a deployment reads it from its environment.
fn config_from(vars: &[(&str, &str)]) -> Result<tollgate::config::Config, String> {
    let vars: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
    tollgate::config::Config::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned()))
        .map_err(|error| error.to_string())
}

/// Tokens meant for this API: with an issuer, an audience (Auth0) or authorized parties (Clerk)
/// must be configured, so a token the same tenant minted for another API or application is
/// refused instead of signing its bearer in.
#[tokio::test]
async fn token_for_another_api_of_the_same_tenant_is_refused() {
    const API: &str = "https://api.tollgate.test";
    const APP: &str = "https://app.tollgate.test";
    for unset in [
        &[("JWT_ISSUER", TEST_ISSUER)][..],
        &[
            ("JWT_ISSUER", TEST_ISSUER),
            ("JWT_AUDIENCE", ""),
            ("JWT_AUTHORIZED_PARTIES", " "),
        ][..],
    ] {
        let error = config_from(unset).expect_err("an issuer alone must not configure sign-in");
        assert!(
            error.contains("JWT_AUDIENCE") && error.contains("JWT_AUTHORIZED_PARTIES"),
            "{error}"
        );
    }

    // Auth0: the API identifier in JWT_AUDIENCE; Auth0 sends `aud` as an array.
    let auth0 = config_from(&[("JWT_ISSUER", TEST_ISSUER), ("JWT_AUDIENCE", API)])
        .expect("issuer and audience")
        .jwt
        .expect("jwt");
    let app = TestApp::start_with(|config| {
        let jwt = config.jwt.as_mut().unwrap();
        jwt.audience = auth0.audience.clone();
        jwt.authorized_parties = auth0.authorized_parties.clone();
    })
    .await;
    let token = |aud: Option<serde_json::Value>| {
        let mut claims = json!({"sub": "auth0|u", "iss": TEST_ISSUER, "exp": now() + 600});
        if let Some(aud) = aud {
            claims["aud"] = aud;
        }
        app.sign(claims)
    };
    for other in [
        Some(json!([
            "https://other-api.tollgate.test",
            "https://tenant.auth0.com/userinfo"
        ])),
        Some(json!("https://other-api.tollgate.test")),
        None,
    ] {
        assert_rejected(&app, Some(&bearer(&token(other))), "invalid_token").await;
    }
    let mine = token(Some(json!([API, "https://tenant.auth0.com/userinfo"])));
    assert_eq!(app.get("/api/me", &mine).await.status, 201);

    // Clerk: the frontend origins in JWT_AUTHORIZED_PARTIES, matched against `azp`.
    let clerk = config_from(&[("JWT_ISSUER", TEST_ISSUER), ("JWT_AUTHORIZED_PARTIES", APP)])
        .expect("issuer and authorized parties")
        .jwt
        .expect("jwt");
    let app = TestApp::start_with(|config| {
        let jwt = config.jwt.as_mut().unwrap();
        jwt.audience = clerk.audience.clone();
        jwt.authorized_parties = clerk.authorized_parties.clone();
    })
    .await;
    let token = |azp: Option<&str>| {
        let mut claims = json!({"sub": "user_clerk", "iss": TEST_ISSUER, "exp": now() + 600});
        if let Some(azp) = azp {
            claims["azp"] = json!(azp);
        }
        app.sign(claims)
    };
    for other in [Some("https://other-app.tollgate.test"), None] {
        assert_rejected(&app, Some(&bearer(&token(other))), "invalid_token").await;
    }
    assert_eq!(app.get("/api/me", &token(Some(APP))).await.status, 201);
}

/// The value of a CloudFormation rule expression (`!Ref`, `!Equals`, `!Not`, `!Or`, `!And`,
/// strings) for the given parameter values.
fn rule_value(node: &serde_norway::Value, parameters: &dyn Fn(&str) -> String) -> RuleValue {
    use serde_norway::Value as Yaml;
    match node {
        Yaml::String(text) => RuleValue::Text(text.clone()),
        Yaml::Bool(value) => RuleValue::Bool(*value),
        Yaml::Tagged(tagged) => {
            let args: Vec<RuleValue> = match &tagged.value {
                Yaml::Sequence(items) => items.iter().map(|i| rule_value(i, parameters)).collect(),
                other => vec![rule_value(other, parameters)],
            };
            let bool_of = |value: &RuleValue| match value {
                RuleValue::Bool(b) => *b,
                RuleValue::Text(t) => panic!("a condition where a boolean belongs: {t}"),
            };
            match &tagged.tag {
                tag if *tag == "Ref" => match &args[..] {
                    [RuleValue::Text(name)] => RuleValue::Text(parameters(name)),
                    other => panic!("!Ref of {other:?}"),
                },
                tag if *tag == "Equals" => RuleValue::Bool(args[0] == args[1]),
                tag if *tag == "Not" => RuleValue::Bool(!bool_of(&args[0])),
                tag if *tag == "Or" => RuleValue::Bool(args.iter().any(bool_of)),
                tag if *tag == "And" => RuleValue::Bool(args.iter().all(bool_of)),
                tag => panic!("a rule function this test does not evaluate: {tag}"),
            }
        }
        other => panic!("a rule expression this test does not evaluate: {other:?}"),
    }
}

#[derive(Debug, PartialEq)]
enum RuleValue {
    Text(String),
    Bool(bool),
}

/// The template refuses (CloudFormation `Rules`) a stack with JwtIssuer but neither JwtAudience
/// nor JwtAuthorizedParties, and its descriptions say which one each provider needs.
#[test]
fn the_template_requires_an_audience_or_authorized_parties_with_an_issuer() {
    let template = tollgate_tests::runtime_api::template();
    let rules = template["Rules"].as_mapping().expect("template Rules");
    let deployable = |issuer: &str, audience: &str, parties: &str| {
        let parameters = |name: &str| match name {
            "JwtIssuer" => issuer.to_owned(),
            "JwtAudience" => audience.to_owned(),
            "JwtAuthorizedParties" => parties.to_owned(),
            other => template["Parameters"][other]["Default"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        rules.values().all(|rule| {
            let applies = rule
                .get("RuleCondition")
                .is_none_or(|c| rule_value(c, &parameters) == RuleValue::Bool(true));
            !applies
                || rule["Assertions"]
                    .as_sequence()
                    .expect("Assertions")
                    .iter()
                    .all(|a| rule_value(&a["Assert"], &parameters) == RuleValue::Bool(true))
        })
    };
    assert!(!deployable("https://tenant.auth0.com/", "", ""));
    assert!(deployable(
        "https://tenant.auth0.com/",
        "https://api.example.com",
        ""
    ));
    assert!(deployable(
        "https://x.clerk.accounts.dev",
        "",
        "https://app.example.com"
    ));
    assert!(deployable("", "", ""));
    let description = |name: &str| {
        template["Parameters"][name]["Description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(description("JwtAudience").contains("Auth0: your API identifier"));
    assert!(description("JwtAuthorizedParties").contains("Clerk: your frontend origins"));
}

/// A service key is `tgsk_` and at least 256 random bits; anything else is refused before it is
/// hashed, even when the digest of exactly that string is configured.
#[tokio::test]
async fn unprefixed_or_short_service_keys_are_refused_even_when_configured() {
    let unprefixed = "svc_live_4f1c2a9be07d43c1a7d0b5e2c9f81a364f1c2a9be07d43c1a7d0b5e2c9f81a36";
    let short = "tgsk_dev_local_only";
    let valid = "tgsk_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let hashes = [unprefixed, short, valid]
        .map(tollgate::auth::service_key::ServiceKeys::hash_hex)
        .join(",");
    let app = TestApp::start_with(move |config| config.service_key_hashes = hashes).await;
    let call = serde_json::json!({
        "organizationId": "org_00000000000000000000000000",
        "callId": "c1",
        "durationSeconds": 1,
        "endedAt": "2026-01-01T00:00:00Z",
    });
    for key in [unprefixed, short] {
        let reply = app.post("/api/usage/calls", key, call.clone()).await;
        assert_error(&reply, 401, "invalid_token");
        assert!(
            reply.body["message"].as_str().unwrap().contains("tgsk_"),
            "{}",
            reply.body
        );
    }
    // The well-formed key is accepted (the organization does not exist: 404, not 401).
    let reply = app.post("/api/usage/calls", valid, call).await;
    assert_error(&reply, 404, "organization_not_found");
}

/// A token signed by the trusted key over exactly `header` and `claims` (raw JSON text, so that
/// duplicate names and odd types reach the verifier as written).
fn signed_raw(app: &TestApp, header: &str, claims: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &app.issuer.encoding_key(),
        jsonwebtoken::Algorithm::ES256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

/// Claims of a type the verifier does not expect, signed by the trusted key: refused, never read
/// leniently into a user (`sub` as an array naming another user, `iss` as an array holding the
/// issuer, `exp` as a string, negative or beyond any clock, `nbf` as a string, `aud` as a number,
/// a claim given twice).
#[tokio::test]
async fn odd_claim_types_signed_by_the_trusted_key_are_refused() {
    let app = TestApp::start_with(|config| {
        config.jwt.as_mut().unwrap().audience = vec!["https://api.tollgate.test".into()];
    })
    .await;
    let exp = now() + 600;
    let aud = "https://api.tollgate.test";
    let victim =
        app.sign(json!({"sub": "auth0|victim", "iss": TEST_ISSUER, "aud": aud, "exp": exp}));
    assert_eq!(app.get("/api/me", &victim).await.status, 201);
    let before = app.all_items().await;
    let header = format!(
        r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#,
        app.issuer.kid()
    );
    for claims in [
        json!({"sub": ["auth0|victim"], "iss": TEST_ISSUER, "aud": aud, "exp": exp}),
        json!({"sub": 42, "iss": TEST_ISSUER, "aud": aud, "exp": exp}),
        json!({"sub": "", "iss": TEST_ISSUER, "aud": aud, "exp": exp}),
        json!({"sub": null, "iss": TEST_ISSUER, "aud": aud, "exp": exp}),
        json!({"sub": "auth0|m", "iss": [TEST_ISSUER], "aud": aud, "exp": exp}),
        json!({"sub": "auth0|m", "iss": TEST_ISSUER, "aud": aud, "exp": exp.to_string()}),
        json!({"sub": "auth0|m", "iss": TEST_ISSUER, "aud": aud, "exp": -1}),
        json!({"sub": "auth0|m", "iss": TEST_ISSUER, "aud": aud, "exp": 1e30}),
        json!({"sub": "auth0|m", "iss": TEST_ISSUER, "aud": aud, "exp": exp, "nbf": "0"}),
        json!({"sub": "auth0|m", "iss": TEST_ISSUER, "aud": 7, "exp": exp}),
        json!({"sub": "auth0|m", "iss": TEST_ISSUER, "aud": [aud, 7], "exp": exp}),
    ] {
        let token = signed_raw(&app, &header, &claims.to_string());
        let reply = app.get("/api/me", &token).await;
        assert_error(&reply, 401, "invalid_token");
    }
    for duplicated in [
        format!(
            r#"{{"sub":"auth0|m","sub":"auth0|victim","iss":"{TEST_ISSUER}","aud":"{aud}","exp":{exp}}}"#
        ),
        format!(
            r#"{{"sub":"auth0|m","iss":"https://evil.test/","iss":"{TEST_ISSUER}","aud":"{aud}","exp":{exp}}}"#
        ),
        format!(r#"{{"sub":"auth0|m","iss":"{TEST_ISSUER}","aud":"{aud}","exp":1,"exp":{exp}}}"#),
    ] {
        let token = signed_raw(&app, &header, &duplicated);
        assert_error(&app.get("/api/me", &token).await, 401, "invalid_token");
    }
    assert_eq!(app.all_items().await, before, "nothing written");
    // The same claims, well formed, are accepted: the refusals are the odd types.
    let good = json!({"sub": "auth0|m", "iss": TEST_ISSUER, "aud": [aud, "other"], "exp": exp});
    let token = signed_raw(&app, &header, &good.to_string());
    let reply = app.get("/api/me", &token).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// Headers the verifier must not honour, each signed by the trusted key: a `crit` extension it
/// does not understand, an algorithm other than the key's (ES384, RS256, HS256, none), a `kid`
/// that is not a string, absent, or not in the JWKS.
#[tokio::test]
async fn odd_headers_signed_by_the_trusted_key_are_refused() {
    let app = TestApp::start().await;
    let kid = app.issuer.kid().to_owned();
    let claims = json!({"sub": "auth0|m", "iss": TEST_ISSUER, "exp": now() + 600}).to_string();
    for header in [
        json!({"alg": "ES256", "typ": "JWT", "kid": kid, "crit": ["exp"]}),
        json!({"alg": "ES256", "typ": "JWT", "kid": kid, "crit": ["b64"], "b64": false}),
        json!({"alg": "ES384", "typ": "JWT", "kid": kid}),
        json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
        json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
        json!({"alg": "none", "typ": "JWT", "kid": kid}),
        json!({"alg": "ES256", "typ": "JWT", "kid": 5}),
        json!({"alg": "ES256", "typ": "JWT"}),
        json!({"alg": "ES256", "typ": "JWT", "kid": ""}),
        json!({"alg": "ES256", "typ": "JWT", "kid": "not-in-the-jwks"}),
        json!({"alg": ["ES256"], "typ": "JWT", "kid": kid}),
    ] {
        let token = signed_raw(&app, &header.to_string(), &claims);
        assert_rejected(&app, Some(&bearer(&token)), "invalid_token").await;
    }
    let fine = json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string();
    assert_eq!(
        app.get("/api/me", &signed_raw(&app, &fine, &claims))
            .await
            .status,
        201
    );
}

/// A valid service key on every route for signed-in users is 403 `user_token_required`, and a
/// valid user token on the service route is 403 `service_key_required`; nothing is written.
#[tokio::test]
async fn credentials_of_the_wrong_kind_are_refused_on_every_route() {
    let key = "tgsk_test_kind_0123456789abcdef_0123456789abcdefghij";
    let app = TestApp::start_with(|config| {
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(key);
    })
    .await;
    let (owner, _) = app.owner_with_organization("auth0|kind-owner").await;
    let before = app.all_items().await;
    for route in tollgate::routes::routes() {
        let path = route.path.replace("{id}", "usr_00000000000000000000000000");
        let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        let (credential, code) = match route.access {
            tollgate::routes::Access::Stripe => continue,
            tollgate::routes::Access::Service => (owner.as_str(), "service_key_required"),
            _ => (key, "user_token_required"),
        };
        let reply = app
            .request(method, &path, Some(&bearer(credential)), Some("{}".into()))
            .await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (403, Some(code)),
            "{} {path}: {}",
            route.method,
            reply.body
        );
    }
    assert_eq!(app.all_items().await, before, "nothing written");
}
