//! Invitations from the invitee's side, through the dev gateway against DynamoDB Local: only a
//! verified email sees them, nobody joins without accepting, invitations expire and free their
//! seat, a member can leave, and only the right people revoke or resend.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use tollgate::pricing::Plan;
use tollgate::store::{PlanStatus, TenantId, keys};
use tollgate_tests::{TEST_ISSUER, TestApp, assert_error};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A token for `sub` with `email` and exactly the `email_verified` value given (`None`: absent).
fn token_with_verification(
    app: &TestApp,
    sub: &str,
    email: &str,
    verified: Option<Value>,
) -> String {
    let mut claims = json!({
        "sub": sub, "iss": TEST_ISSUER, "iat": now(), "nbf": now(), "exp": now() + 600,
        "email": email, "name": format!("Person {sub}"),
    });
    if let Some(verified) = verified {
        claims["email_verified"] = verified;
    }
    app.sign(claims)
}

async fn invite(app: &TestApp, token: &str, email: &str, role: &str) -> String {
    let reply = app
        .post("/api/users", token, json!({"email": email, "role": role}))
        .await;
    assert_eq!(reply.status, 201, "invite {email}: {}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn accept(app: &TestApp, token: &str, invitation: &str) -> tollgate_tests::Reply {
    app.post(
        &format!("/api/me/invitations/{invitation}/accept"),
        token,
        json!({}),
    )
    .await
}

async fn decline(app: &TestApp, token: &str, invitation: &str) -> tollgate_tests::Reply {
    app.post(
        &format!("/api/me/invitations/{invitation}/decline"),
        token,
        json!({}),
    )
    .await
}

/// Sets the stored expiry of an invitation (and its look-up item) to `expires_at`.
async fn set_expiry(
    app: &TestApp,
    tenant: &TenantId,
    invitation: &str,
    email: &str,
    expires_at: i64,
) {
    for (pk, sk) in [
        keys::invitation(tenant, invitation),
        keys::invitee(email, tenant),
    ] {
        app.store
            .client()
            .update_item()
            .table_name(app.store.table_name())
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .update_expression("SET expiresAt = :e")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":e", AttributeValue::N(expires_at.to_string()))
            .send()
            .await
            .expect("set expiry");
    }
}

async fn counts(app: &TestApp, owner: &str) -> (u64, u64) {
    let org = app.get("/api/organization", owner).await;
    assert_eq!(org.status, 200, "{}", org.body);
    (
        org.body["memberCount"].as_u64().unwrap(),
        org.body["pendingInvitations"].as_u64().unwrap(),
    )
}

fn expires_in(value: &Value) -> i64 {
    let text = value.as_str().expect("expiresAt is a string");
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    at.unix_timestamp() - now()
}

/// Found (high): a token without `email_verified`, or with "False", 0, "no" ..., joined the
/// organization that invited its email. Only `true` and "true" count now.
#[tokio::test]
async fn unverified_email_claims_never_count_for_an_invitation() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|victim", Plan::Business, PlanStatus::Active)
        .await;
    let invitation = invite(&app, &owner, "kim@example.com", "ADMIN").await;

    let unverified: [(&str, Option<Value>); 9] = [
        ("absent", None),
        ("false", Some(json!(false))),
        ("False-string", Some(json!("False"))),
        ("false-string", Some(json!("false"))),
        ("zero", Some(json!(0))),
        ("one", Some(json!(1))),
        ("no", Some(json!("no"))),
        ("TRUE-string", Some(json!("TRUE"))),
        ("null", Some(Value::Null)),
    ];
    for (name, verified) in unverified {
        let token = token_with_verification(
            &app,
            &format!("auth0|kim-{name}"),
            "kim@example.com",
            verified,
        );
        let me = app.get("/api/me", &token).await;
        assert_eq!(me.status, 201, "{name}: {}", me.body);
        assert_eq!(
            me.body["organization"],
            Value::Null,
            "{name} joined: {}",
            me.body
        );
        assert_eq!(me.body["user"]["role"], Value::Null, "{name}");
        assert_eq!(me.body["invitations"], json!([]), "{name} sees invitations");
        let before = app.all_items().await;
        assert_error(
            &accept(&app, &token, &invitation).await,
            404,
            "invitation_not_found",
        );
        assert_error(
            &decline(&app, &token, &invitation).await,
            404,
            "invitation_not_found",
        );
        assert_eq!(app.all_items().await, before, "{name} changed something");
    }
    assert_eq!(counts(&app, &owner).await, (1, 1));

    for (name, verified) in [("bool", json!(true)), ("string", json!("true"))] {
        let token = token_with_verification(
            &app,
            &format!("auth0|kim-ok-{name}"),
            "Kim@Example.com",
            Some(verified),
        );
        let me = app.get("/api/me", &token).await;
        assert_eq!(me.body["organization"], Value::Null, "{name}: {}", me.body);
        let listed = me.body["invitations"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{name}: {}", me.body);
        assert_eq!(listed[0]["id"], invitation.as_str());
    }
    let verified = token_with_verification(
        &app,
        "auth0|kim-ok-string",
        "kim@example.com",
        Some(json!("true")),
    );
    let joined = accept(&app, &verified, &invitation).await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(joined.body["user"]["role"], "ADMIN");
}

/// Found (medium): joining was automatic and the oldest invitation won, so an organization that
/// invited an address first captured the person at their first sign-in. Now `GET /api/me` only
/// lists invitations, and the person accepts the one they want.
#[tokio::test]
async fn nobody_joins_by_signing_in_and_the_invitee_chooses() {
    let app = TestApp::start().await;
    let (squatter, _) = app
        .organization_on_plan("auth0|squatter", Plan::Business, PlanStatus::Active)
        .await;
    let (employer, employer_user) = app
        .organization_on_plan("auth0|employer", Plan::Business, PlanStatus::Active)
        .await;
    let early = invite(&app, &squatter, "lee@example.com", "ADMIN").await;
    let real = invite(&app, &employer, "lee@example.com", "MANAGER").await;

    let lee = app.verified_token("auth0|lee", "lee@example.com", Some("Lee"));
    for _ in 0..2 {
        let me = app.get("/api/me", &lee).await;
        assert!(me.status == 200 || me.status == 201, "{}", me.body);
        assert_eq!(
            me.body["organization"],
            Value::Null,
            "captured: {}",
            me.body
        );
        assert_eq!(me.body["user"]["organizationId"], Value::Null);
        assert_eq!(me.body["permissions"], json!([]));
        let listed = me.body["invitations"].as_array().unwrap();
        assert_eq!(listed.len(), 2, "{}", me.body);
        let mine = listed
            .iter()
            .find(|i| i["id"] == real.as_str())
            .expect("listed");
        assert_eq!(
            mine["organizationId"],
            employer_user.organization_id.clone().unwrap()
        );
        assert_eq!(mine["organizationName"], "Org of auth0|employer");
        assert_eq!(mine["role"], "MANAGER");
        assert_eq!(mine["invitedBy"], "Owner Person");
        let left = expires_in(&mine["expiresAt"]);
        assert!((7 * 86_400 - 120..=7 * 86_400).contains(&left), "{left}");
        assert_eq!(
            mine.as_object().unwrap().len(),
            6,
            "exactly id, organizationId, organizationName, role, invitedBy, expiresAt: {mine}"
        );
    }
    assert_eq!(counts(&app, &squatter).await, (1, 1));

    let joined = accept(&app, &lee, &real).await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(joined.body["user"]["role"], "MANAGER");
    assert_eq!(joined.body["organization"]["name"], "Org of auth0|employer");
    let me = app.get("/api/me", &lee).await;
    assert_eq!(
        me.body["organization"]["id"],
        employer_user.organization_id.clone().unwrap()
    );
    assert_eq!(
        me.body["invitations"],
        json!([]),
        "members see no invitations"
    );
    assert_eq!(counts(&app, &employer).await, (2, 0));

    // The other invitation can still be refused: its seat is freed.
    let declined = decline(&app, &lee, &early).await;
    assert_eq!(declined.status, 200, "{}", declined.body);
    assert_eq!(declined.body, json!({"id": early, "declined": true}));
    assert_eq!(counts(&app, &squatter).await, (1, 0));
    assert_error(
        &decline(&app, &lee, &early).await,
        404,
        "invitation_not_found",
    );
}

/// Accepting is one transaction with the seat count: the seat limit holds on accept too, a member
/// of an organization cannot accept another, and an invitation to another address is 404.
#[tokio::test]
async fn accepting_checks_seats_membership_and_the_address() {
    let app = TestApp::start().await;
    let (owner, owner_user) = app
        .organization_on_plan("auth0|acc-owner", Plan::Professional, PlanStatus::Active)
        .await;
    let tenant = owner_user.tenant().unwrap();
    let (other_owner, _) = app
        .organization_on_plan("auth0|acc-other", Plan::Business, PlanStatus::Active)
        .await;
    let to_ann = invite(&app, &owner, "ann@example.com", "VIEWER").await;
    let to_ben = invite(&app, &owner, "ben@example.com", "VIEWER").await;
    let elsewhere = invite(&app, &other_owner, "ann@example.com", "VIEWER").await;

    let ann = app.verified_token("auth0|ann", "ann@example.com", None);
    let ben = app.verified_token("auth0|ben", "ben@example.com", None);
    app.get("/api/me", &ann).await;
    app.get("/api/me", &ben).await;

    // Ben's invitation is not Ann's to accept or decline.
    let before = app.all_items().await;
    assert_error(
        &accept(&app, &ann, &to_ben).await,
        404,
        "invitation_not_found",
    );
    assert_error(
        &decline(&app, &ann, &to_ben).await,
        404,
        "invitation_not_found",
    );
    assert_error(
        &accept(&app, &ann, "inv_missing").await,
        404,
        "invitation_not_found",
    );
    assert_eq!(app.all_items().await, before);

    // The plan shrank to one seat since the invitations were sent: accepting is refused.
    app.store
        .set_organization_plan(&tenant, Some(Plan::Starter), PlanStatus::Active)
        .await
        .unwrap();
    let before = app.all_items().await;
    assert_error(
        &accept(&app, &ann, &to_ann).await,
        409,
        "seat_limit_reached",
    );
    assert_eq!(app.all_items().await, before);
    app.store
        .set_organization_plan(&tenant, Some(Plan::Professional), PlanStatus::Active)
        .await
        .unwrap();
    assert_eq!(accept(&app, &ann, &to_ann).await.status, 200);

    // A member accepts nothing else until they leave.
    let before = app.all_items().await;
    assert_error(
        &accept(&app, &ann, &elsewhere).await,
        409,
        "already_in_organization",
    );
    assert_eq!(app.all_items().await, before);
    assert_eq!(app.delete("/api/me/organization", &ann).await.status, 200);
    assert_eq!(accept(&app, &ann, &elsewhere).await.status, 200);
    assert_eq!(counts(&app, &owner).await, (1, 1));
}

/// Found (medium): a member could not leave. `DELETE /api/me/organization` leaves (the last OWNER
/// stays) and afterwards the person belongs nowhere.
#[tokio::test]
async fn a_member_leaves_and_the_last_owner_stays() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|lv-owner", Plan::Business, PlanStatus::Active)
        .await;
    let (member, _) = app.add_member(&owner, "auth0|lv-member", "ADMIN").await;
    assert_eq!(counts(&app, &owner).await, (2, 0));

    let left = app.delete("/api/me/organization", &member).await;
    assert_eq!(left.status, 200, "{}", left.body);
    assert_eq!(left.body["left"], true);
    let me = app.get("/api/me", &member).await;
    assert_eq!(me.body["organization"], Value::Null);
    assert_eq!(me.body["user"]["role"], Value::Null);
    assert_error(
        &app.get("/api/organization", &member).await,
        400,
        "organization_required",
    );
    assert_error(
        &app.delete("/api/me/organization", &member).await,
        400,
        "organization_required",
    );
    assert_eq!(counts(&app, &owner).await, (1, 0));

    // The last owner stays; with a second owner, either may leave.
    let before = app.all_items().await;
    assert_error(
        &app.delete("/api/me/organization", &owner).await,
        409,
        "last_owner",
    );
    assert_eq!(app.all_items().await, before);
    let (second, _) = app.add_member(&owner, "auth0|lv-owner2", "OWNER").await;
    assert_eq!(app.delete("/api/me/organization", &owner).await.status, 200);
    assert_error(
        &app.delete("/api/me/organization", &second).await,
        409,
        "last_owner",
    );
    assert_eq!(
        app.get("/api/organization", &second).await.body["memberCount"],
        1
    );
    // Who left can start their own organization.
    let created = app
        .post("/api/organizations", &owner, json!({"name": "Fresh Start"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// Found (medium): invitations never expired. They expire after `INVITATION_TTL_DAYS` (7 by
/// default): an expired one is not listed, cannot be accepted (410) and its seat is given back
/// before the organization's next invitation takes one.
#[tokio::test]
async fn expired_invitations_free_their_seat_and_cannot_be_accepted() {
    let app = TestApp::start().await;
    let (owner, user) = app
        .organization_on_plan("auth0|exp-owner", Plan::Professional, PlanStatus::Active)
        .await;
    let tenant = user.tenant().unwrap();
    let mut invitations = Vec::new();
    for i in 0..4 {
        invitations.push(invite(&app, &owner, &format!("e{i}@example.com"), "VIEWER").await);
    }
    let listed = app.get("/api/users", &owner).await;
    for invitation in listed.body["invitations"].as_array().unwrap() {
        let left = expires_in(&invitation["expiresAt"]);
        assert!(
            (7 * 86_400 - 120..=7 * 86_400).contains(&left),
            "{invitation}"
        );
    }
    assert_error(
        &app.post(
            "/api/users",
            &owner,
            json!({"email": "e4@example.com", "role": "VIEWER"}),
        )
        .await,
        409,
        "seat_limit_reached",
    );

    set_expiry(&app, &tenant, &invitations[0], "e0@example.com", now() - 1).await;
    let e0 = app.verified_token("auth0|e0", "e0@example.com", None);
    let me = app.get("/api/me", &e0).await;
    assert_eq!(
        me.body["invitations"],
        json!([]),
        "expired ones are not listed"
    );
    let before = app.all_items().await;
    assert_error(
        &accept(&app, &e0, &invitations[0]).await,
        410,
        "invitation_expired",
    );
    assert_eq!(app.all_items().await, before);

    // Its seat is free: the fifth invitation fits, and the expired one is gone.
    let fifth = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "e4@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(fifth.status, 201, "{}", fifth.body);
    assert_eq!(counts(&app, &owner).await, (1, 4));
    assert_error(
        &accept(&app, &e0, &invitations[0]).await,
        404,
        "invitation_not_found",
    );
    let ids: Vec<Value> = app.get("/api/users", &owner).await.body["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].clone())
        .collect();
    assert!(!ids.contains(&json!(invitations[0])), "{ids:?}");
}

#[tokio::test]
async fn invitation_ttl_days_sets_the_expiry() {
    let app = TestApp::start_with(|config| config.invitation_ttl_days = 2).await;
    let (owner, _) = app
        .organization_on_plan("auth0|ttl-owner", Plan::Business, PlanStatus::Active)
        .await;
    let reply = app
        .post(
            "/api/users",
            &owner,
            json!({"email": "t@example.com", "role": "VIEWER"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let left = expires_in(&reply.body["expiresAt"]);
    assert!((2 * 86_400 - 120..=2 * 86_400).contains(&left), "{left}");
}

/// `POST /api/users/invitations/{id}/resend` renews an invitation, an expired one included.
#[tokio::test]
async fn resend_renews_an_invitation() {
    let app = TestApp::start().await;
    let (owner, user) = app
        .organization_on_plan("auth0|rs-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = user.tenant().unwrap();
    let invitation = invite(&app, &owner, "rae@example.com", "MANAGER").await;
    set_expiry(&app, &tenant, &invitation, "rae@example.com", now() - 60).await;
    let rae = app.verified_token("auth0|rae", "rae@example.com", None);
    assert_eq!(
        app.get("/api/me", &rae).await.body["invitations"],
        json!([])
    );
    assert_error(
        &accept(&app, &rae, &invitation).await,
        410,
        "invitation_expired",
    );

    let resent = app
        .post(
            &format!("/api/users/invitations/{invitation}/resend"),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    assert_eq!(resent.body["id"], invitation.as_str());
    let left = expires_in(&resent.body["expiresAt"]);
    assert!((7 * 86_400 - 120..=7 * 86_400).contains(&left), "{left}");
    assert_eq!(
        app.get("/api/me", &rae).await.body["invitations"][0]["id"],
        invitation.as_str()
    );
    assert_eq!(accept(&app, &rae, &invitation).await.status, 200);
    assert_error(
        &app.post(
            &format!("/api/users/invitations/{invitation}/resend"),
            &owner,
            json!({}),
        )
        .await,
        404,
        "invitation_not_found",
    );
}

/// Only an OWNER revokes or resends an OWNER invitation.
#[tokio::test]
async fn only_an_owner_revokes_or_resends_an_owner_invitation() {
    let app = TestApp::start().await;
    let (owner, _) = app
        .organization_on_plan("auth0|oo-owner", Plan::Business, PlanStatus::Active)
        .await;
    let (admin, _) = app.add_member(&owner, "auth0|oo-admin", "ADMIN").await;
    let for_owner = invite(&app, &owner, "boss@example.com", "OWNER").await;
    let for_viewer = invite(&app, &owner, "vic@example.com", "VIEWER").await;

    let before = app.all_items().await;
    assert_error(
        &app.delete(&format!("/api/users/invitations/{for_owner}"), &admin)
            .await,
        403,
        "owner_required",
    );
    assert_error(
        &app.post(
            &format!("/api/users/invitations/{for_owner}/resend"),
            &admin,
            json!({}),
        )
        .await,
        403,
        "owner_required",
    );
    assert_eq!(app.all_items().await, before);

    assert_eq!(
        app.post(
            &format!("/api/users/invitations/{for_viewer}/resend"),
            &admin,
            json!({})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.delete(&format!("/api/users/invitations/{for_viewer}"), &admin)
            .await
            .status,
        200
    );
    assert_eq!(
        app.post(
            &format!("/api/users/invitations/{for_owner}/resend"),
            &owner,
            json!({})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.delete(&format!("/api/users/invitations/{for_owner}"), &owner)
            .await
            .status,
        200
    );
    assert_eq!(counts(&app, &owner).await, (2, 0));
}

/// An invitation is written only if the inviter still holds the role the request was allowed on:
/// an ADMIN demoted between the request's role check and its write invites nobody. The demotion is
/// placed exactly there: the membership item already says VIEWER while the user record the request
/// read still says ADMIN.
#[tokio::test]
async fn an_invitation_needs_the_inviters_role_when_it_is_written() {
    let app = TestApp::start().await;
    let (owner, user) = app
        .organization_on_plan("auth0|ir-owner", Plan::Business, PlanStatus::Active)
        .await;
    let tenant = user.tenant().unwrap();
    let (admin, admin_id) = app.add_member(&owner, "auth0|ir-admin", "ADMIN").await;
    let (pk, sk) = keys::member(&tenant, &admin_id);
    app.store
        .client()
        .update_item()
        .table_name(app.store.table_name())
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .update_expression("SET #r = :r")
        .expression_attribute_names("#r", "role")
        .expression_attribute_values(":r", AttributeValue::S("VIEWER".into()))
        .send()
        .await
        .unwrap();
    let before = app.all_items().await;
    let reply = app
        .post(
            "/api/users",
            &admin,
            json!({"email": "late@example.com", "role": "ADMIN"}),
        )
        .await;
    assert_error(&reply, 409, "concurrent_update");
    assert_eq!(app.all_items().await, before, "no invitation was written");

    // Demotions racing invitations: an invitation that is written was made by an ADMIN.
    for round in 0..5 {
        let (racer, racer_id) = app
            .add_member(&owner, &format!("auth0|ir-racer{round}"), "ADMIN")
            .await;
        let racer_path = format!("/api/users/{racer_id}");
        let (invited, demoted) = tokio::join!(
            app.post(
                "/api/users",
                &racer,
                json!({"email": format!("r{round}@example.com"), "role": "VIEWER"})
            ),
            app.patch(&racer_path, &owner, json!({"role": "VIEWER"})),
        );
        assert_eq!(demoted.status, 200, "{}", demoted.body);
        assert!(
            [201, 403, 409].contains(&invited.status),
            "{}",
            invited.body
        );
    }
}

/// Found (medium): a removed member was captured again at their next `/api/me` by any pending
/// invitation. They now belong nowhere until they accept one.
#[tokio::test]
async fn a_removed_member_belongs_nowhere_until_they_accept() {
    let app = TestApp::start().await;
    let (first, _) = app
        .organization_on_plan("auth0|rm-first", Plan::Business, PlanStatus::Active)
        .await;
    let (second, second_user) = app
        .organization_on_plan("auth0|rm-second", Plan::Business, PlanStatus::Active)
        .await;
    let (bob, bob_id) = app.add_member(&first, "auth0|rm-bob", "MANAGER").await;
    let email = "auth0-rm-bob@example.com";
    let pending = invite(&app, &second, email, "VIEWER").await;
    assert_eq!(
        app.delete(&format!("/api/users/{bob_id}"), &first)
            .await
            .status,
        200
    );
    let again = invite(&app, &first, email, "ADMIN").await;

    for _ in 0..2 {
        let me = app.get("/api/me", &bob).await;
        assert_eq!(
            me.body["organization"],
            Value::Null,
            "re-captured: {}",
            me.body
        );
        assert_eq!(me.body["user"]["organizationId"], Value::Null);
        assert_eq!(
            me.body["invitations"].as_array().unwrap().len(),
            2,
            "{}",
            me.body
        );
    }
    assert_error(
        &app.get("/api/users", &bob).await,
        400,
        "organization_required",
    );
    let joined = accept(&app, &bob, &pending).await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(
        joined.body["user"]["organizationId"],
        second_user.organization_id.clone().unwrap()
    );
    assert_error(
        &accept(&app, &bob, &again).await,
        409,
        "already_in_organization",
    );
}

/// Found in review (low): an organization's deletion marks it deleted, then detaches its members
/// one by one; a run cut short (a timeout, throttling) leaves a user who still names the deleted
/// organization. `GET /api/me` showed them no organization and their invitations, but accepting
/// said "leave it first", leaving said `organization_required` and creating one said
/// `already_in_organization`: stuck for good. Leaving now detaches them.
#[tokio::test]
async fn a_user_left_in_a_deleted_organization_can_leave_it_and_accept() {
    let app = TestApp::start().await;
    let (inviter, _) = app
        .organization_on_plan("auth0|gone-inviter", Plan::Business, PlanStatus::Active)
        .await;
    let (stranded, user) = app.owner_with_organization("auth0|gone-owner").await;
    let tenant = user.tenant().expect("tenant");
    let deleted = app.delete("/api/organization", &stranded).await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    // Before the deletion job reaches them, the user record still names the deleted organization.
    app.store
        .client()
        .update_item()
        .table_name(app.store.table_name())
        .key("PK", AttributeValue::S(keys::user("auth0|gone-owner").0))
        .key("SK", AttributeValue::S(keys::user("auth0|gone-owner").1))
        .update_expression("SET organizationId = :org, #role = :role")
        .expression_attribute_names("#role", "role")
        .expression_attribute_values(":org", AttributeValue::S(tenant.as_str().to_owned()))
        .expression_attribute_values(":role", AttributeValue::S("OWNER".to_owned()))
        .send()
        .await
        .expect("strand the user");
    let pending = invite(&app, &inviter, "auth0-gone-owner@example.com", "VIEWER").await;
    let stranded = app.verified_token("auth0|gone-owner", "auth0-gone-owner@example.com", None);
    let me = app.get("/api/me", &stranded).await;
    assert_eq!(me.body["organization"], Value::Null, "{}", me.body);
    assert_eq!(me.body["invitations"].as_array().unwrap().len(), 1);

    let left = app.delete("/api/me/organization", &stranded).await;
    assert_eq!(left.status, 200, "{}", left.body);
    assert_eq!(left.body["left"], true);
    assert_error(
        &app.delete("/api/me/organization", &stranded).await,
        400,
        "organization_required",
    );
    let joined = accept(&app, &stranded, &pending).await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(
        app.get("/api/organization", &inviter).await.body["memberCount"],
        2
    );
}
