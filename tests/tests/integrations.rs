//! Integrations: credentials stored encrypted under the active key, never returned, rotated by
//! `rotate_keys` (the code behind `tollgate-dev rotate-keys` and the rotate-keys Lambda).

use serde_json::json;
use tollgate::crypto::KeyRing;
use tollgate::pricing::Plan;
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

async fn app_with_keys(keys: String, active: &str) -> TestApp {
    let active = active.to_owned();
    TestApp::start_with(move |config| {
        config.encryption_keys = Some(keys);
        config.encryption_active_key = Some(active);
    })
    .await
}

#[tokio::test]
async fn credentials_are_encrypted_never_returned_and_tenant_bound() {
    let app = app_with_keys(format!("k1:{K1}"), "k1").await;
    let (owner, user) = app
        .organization_on_plan("auth0|int", Plan::Business, PlanStatus::Active)
        .await;
    let secret = "sk_twilio_super_secret_value";
    let created = app
        .post("/api/integrations", &owner, json!({"type": "twilio", "name": "Main line", "credentials": {"accountSid": "AC1", "authToken": secret}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["keyId"], "k1");
    assert!(!created.body.to_string().contains(secret));
    let list = app.get("/api/integrations", &owner).await;
    assert_eq!(list.body["integrations"].as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(secret), "never returned");
    assert!(list.body["integrations"][0].get("credentials").is_none());

    // At rest: the v1 envelope, not the plaintext.
    let items = app.all_items().await;
    let stored = items
        .iter()
        .find(|i| {
            i["SK"]
                .as_s()
                .is_ok_and(|sk| sk.starts_with("INTEGRATION#"))
        })
        .unwrap();
    let ciphertext = stored["credentials"].as_s().unwrap();
    assert!(ciphertext.starts_with("v1:k1:"));
    assert!(!format!("{stored:?}").contains(secret));
    let ring = KeyRing::from_env_strings(&format!("k1:{K1}"), "k1").unwrap();
    let org = user.organization_id.unwrap();
    let plain = ring.decrypt(&org, ciphertext).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&plain).unwrap()["authToken"],
        secret
    );
    assert!(
        ring.decrypt("org_other", ciphertext).is_err(),
        "bound to its organization"
    );

    let id = created.body["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/integrations/{id}"), &owner)
            .await
            .status,
        200
    );
    assert_error(
        &app.delete(&format!("/api/integrations/{id}"), &owner).await,
        404,
        "integration_not_found",
    );
}

#[tokio::test]
async fn bad_input_and_missing_keys_change_nothing() {
    let app = app_with_keys(format!("k1:{K1}"), "k1").await;
    let (owner, _) = app
        .organization_on_plan("auth0|int-bad", Plan::Business, PlanStatus::Active)
        .await;
    let before = app.all_items().await;
    for (body, code) in [
        (
            json!({"type": "Twilio!", "name": "x", "credentials": {"a": 1}}),
            "invalid_type",
        ),
        (
            json!({"type": "twilio", "name": "", "credentials": {"a": 1}}),
            "invalid_name",
        ),
        (
            json!({"type": "twilio", "name": "x", "credentials": {}}),
            "invalid_credentials",
        ),
        (
            json!({"type": "twilio", "name": "x", "credentials": "token"}),
            "invalid_body",
        ),
        (
            json!({"type": "twilio", "name": "x", "credentials": {"a": "b".repeat(9000)}}),
            "invalid_credentials",
        ),
    ] {
        assert_error(
            &app.post("/api/integrations", &owner, body).await,
            400,
            code,
        );
    }
    let (manager, _) = app.add_member(&owner, "auth0|int-manager", "MANAGER").await;
    assert_error(
        &app.get("/api/integrations", &manager).await,
        403,
        "forbidden",
    );
    let before = {
        let _ = before;
        app.all_items().await
    };
    assert_error(
        &app.post(
            "/api/integrations",
            &manager,
            json!({"type": "twilio", "name": "x", "credentials": {"a": 1}}),
        )
        .await,
        403,
        "forbidden",
    );
    assert_eq!(app.all_items().await, before);

    let unconfigured = TestApp::start().await;
    let (owner, _) = unconfigured
        .organization_on_plan("auth0|int-nokey", Plan::Business, PlanStatus::Active)
        .await;
    let reply = unconfigured
        .post(
            "/api/integrations",
            &owner,
            json!({"type": "twilio", "name": "x", "credentials": {"a": 1}}),
        )
        .await;
    assert_error(&reply, 503, "encryption_not_configured");
}

/// An integration's name is display text like an organization's: a bidi override that makes
/// "evil\u{202e}gnp.exe" show as "evilexe.png", control characters, or a name of nothing but
/// invisible characters are refused and store nothing.
#[tokio::test]
async fn integration_names_with_control_or_invisible_characters_are_refused() {
    let app = app_with_keys(format!("k1:{K1}"), "k1").await;
    let (owner, _) = app
        .organization_on_plan("auth0|int-names", Plan::Business, PlanStatus::Active)
        .await;
    let before = app.all_items().await;
    for name in [
        "evil\u{202e}gnp.exe",
        "nul\u{0}byte",
        "bell\u{7}",
        "\u{200b}",
        "Main\u{2066} line",
        "\u{3164}",
    ] {
        let reply = app
            .post(
                "/api/integrations",
                &owner,
                json!({"type": "twilio", "name": name, "credentials": {"authToken": "x"}}),
            )
            .await;
        assert_error(&reply, 400, "invalid_name");
    }
    assert_eq!(app.all_items().await, before, "nothing stored");
    assert_eq!(
        app.get("/api/integrations", &owner).await.body["integrations"],
        json!([])
    );
    // Plain text, emoji and other scripts stay welcome; whitespace runs are collapsed.
    let created = app
        .post(
            "/api/integrations",
            &owner,
            json!({"type": "twilio", "name": "  Линия  📞  main ", "credentials": {"authToken": "x"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["name"], "Линия 📞 main");
}

#[tokio::test]
async fn rotation_reencrypts_under_the_active_key_and_is_safe_to_run_twice() {
    let app = app_with_keys(format!("k1:{K1}"), "k1").await;
    let (owner, user) = app
        .organization_on_plan("auth0|rot", Plan::Business, PlanStatus::Active)
        .await;
    for i in 0..3 {
        let reply = app
            .post("/api/integrations", &owner, json!({"type": "crm", "name": format!("CRM {i}"), "credentials": {"token": format!("t{i}")}}))
            .await;
        assert_eq!(reply.status, 201);
    }
    let ring = KeyRing::from_env_strings(&format!("k1:{K1},k2:{K2}"), "k2").unwrap();
    let first = rotate_keys::rotate_keys(&app.store, &ring).await.unwrap();
    assert_eq!(
        (first.scanned, first.reencrypted, first.already_current),
        (3, 3, 0)
    );
    assert!(first.failed.is_empty());
    let second = rotate_keys::rotate_keys(&app.store, &ring).await.unwrap();
    assert_eq!(
        (second.scanned, second.reencrypted, second.already_current),
        (3, 0, 3)
    );

    let org = user.organization_id.unwrap();
    let k2_only = KeyRing::from_env_strings(&format!("k2:{K2}"), "k2").unwrap();
    for item in app.all_items().await.iter().filter(|i| {
        i["SK"]
            .as_s()
            .is_ok_and(|sk| sk.starts_with("INTEGRATION#"))
    }) {
        let ciphertext = item["credentials"].as_s().unwrap();
        assert!(ciphertext.starts_with("v1:k2:"));
        assert!(
            k2_only.decrypt(&org, ciphertext).is_ok(),
            "readable without the old key"
        );
    }
    let list = app.get("/api/integrations", &owner).await;
    assert!(
        list.body["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["keyId"] == "k2")
    );
}
