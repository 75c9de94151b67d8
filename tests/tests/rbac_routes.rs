//! Every role × every route of the organizations and team functions, through the real handlers:
//! allowed → 2xx, denied → 403 with the envelope and nothing written; and every role of an
//! organization API key × every route of the table.

use serde_json::json;
use tollgate::pricing::Plan;
use tollgate::rbac::{self, Decision, Permission, Role};
use tollgate::store::PlanStatus;
use tollgate_tests::{TestApp, assert_error};

#[tokio::test]
async fn role_by_route_matrix() {
    // A key ring: webhook endpoints store their signing secrets encrypted.
    let app = TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{}", "6".repeat(64)));
        config.encryption_active_key = Some("k1".into());
    })
    .await;
    for role in Role::ALL {
        let prefix = role.as_str().to_lowercase();
        let (owner, owner_user) = app
            .organization_on_plan(
                &format!("auth0|{prefix}-owner"),
                Plan::Business,
                PlanStatus::Active,
            )
            .await;
        // The caller holds `role`; OWNER is tested as a second owner so the first remains.
        let (caller, _) = app
            .add_member(&owner, &format!("auth0|{prefix}-caller"), role.as_str())
            .await;
        let (_, target_id) = app
            .add_member(&owner, &format!("auth0|{prefix}-target"), "VIEWER")
            .await;
        let invitation = app
            .post(
                "/api/users",
                &owner,
                json!({"email": format!("{prefix}-pending@example.com"), "role": "VIEWER"}),
            )
            .await;
        let invitation_id = invitation.body["id"].as_str().unwrap().to_owned();
        let (key_id, _) = app.create_api_key(&owner, "Listed", "VIEWER").await;
        let endpoint = app
            .post(
                "/api/webhooks/endpoints",
                &owner,
                json!({"url": "https://hooks.example.com/listed", "eventTypes": ["member.joined"]}),
            )
            .await;
        assert_eq!(endpoint.status, 201, "{}", endpoint.body);
        let endpoint_id = endpoint.body["id"].as_str().unwrap().to_owned();

        // In an order where each allowed call leaves the next one something to act on.
        let routes: Vec<(
            reqwest::Method,
            String,
            Option<serde_json::Value>,
            Permission,
        )> = vec![
            (
                reqwest::Method::GET,
                "/api/organization".into(),
                None,
                Permission::OrgRead,
            ),
            (
                reqwest::Method::PATCH,
                "/api/organization".into(),
                Some(json!({"name": format!("{prefix} renamed")})),
                Permission::OrgUpdate,
            ),
            (
                reqwest::Method::GET,
                "/api/users".into(),
                None,
                Permission::UsersRead,
            ),
            (
                reqwest::Method::POST,
                "/api/users".into(),
                Some(json!({"email": format!("{prefix}-new@example.com"), "role": "VIEWER"})),
                Permission::UsersCreate,
            ),
            (
                reqwest::Method::PATCH,
                format!("/api/users/{target_id}"),
                Some(json!({"role": "MANAGER"})),
                Permission::UsersUpdate,
            ),
            (
                reqwest::Method::POST,
                format!("/api/users/invitations/{invitation_id}/resend"),
                Some(json!({})),
                Permission::UsersCreate,
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/users/invitations/{invitation_id}"),
                None,
                Permission::UsersDelete,
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/users/{target_id}"),
                None,
                Permission::UsersDelete,
            ),
            (
                reqwest::Method::GET,
                "/api/api-keys".into(),
                None,
                Permission::ApiKeysManage,
            ),
            (
                reqwest::Method::POST,
                "/api/api-keys".into(),
                Some(json!({"name": format!("{prefix} key"), "role": "VIEWER"})),
                Permission::ApiKeysManage,
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/api-keys/{key_id}"),
                None,
                Permission::ApiKeysManage,
            ),
            (
                reqwest::Method::GET,
                "/api/audit".into(),
                None,
                Permission::AuditRead,
            ),
            (
                reqwest::Method::GET,
                "/api/webhooks/endpoints".into(),
                None,
                Permission::WebhooksManage,
            ),
            (
                reqwest::Method::POST,
                "/api/webhooks/endpoints".into(),
                Some(
                    json!({"url": format!("https://{prefix}.hooks.example.com/"), "eventTypes": ["member.left"]}),
                ),
                Permission::WebhooksManage,
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/webhooks/endpoints/{endpoint_id}"),
                None,
                Permission::WebhooksManage,
            ),
            (
                reqwest::Method::DELETE,
                "/api/organization".into(),
                None,
                Permission::OrgDelete,
            ),
        ];
        for (method, path, body, permission) in routes {
            if method == reqwest::Method::DELETE && path == "/api/organization" {
                // A live subscription blocks deletion; a canceled one takes no new members, so
                // the plan is canceled only now.
                app.store
                    .set_organization_plan(
                        &owner_user.tenant().unwrap(),
                        Some(Plan::Business),
                        PlanStatus::Canceled,
                    )
                    .await
                    .unwrap();
            }
            let before = app.all_items().await;
            let reply = app
                .request(
                    method.clone(),
                    &path,
                    Some(&format!("Bearer {caller}")),
                    body.map(|b| b.to_string()),
                )
                .await;
            match rbac::check(role, permission) {
                Decision::Allowed => {
                    assert!(
                        (200..300).contains(&reply.status),
                        "{role} {method} {path}: {}",
                        reply.body
                    )
                }
                _ => {
                    assert_error(&reply, 403, "forbidden");
                    assert_eq!(
                        app.all_items().await,
                        before,
                        "{role} {method} {path} wrote on 403"
                    );
                }
            }
        }
        // Onboarding again is refused for every member, whatever the role.
        let again = app
            .post("/api/organizations", &caller, json!({"name": "Another"}))
            .await;
        if role == Role::Owner {
            // The organization was just deleted by this owner: they may start a new one.
            assert_eq!(again.status, 201, "{}", again.body);
        } else {
            assert_error(&again, 409, "already_in_organization");
        }
    }
}

/// Every role of an organization API key × every route of the table (the Stripe webhook, which
/// takes no bearer credential, aside): a route needing a permission answers as for a member with
/// the key's role, minus keys, members and billing (`rbac::check_api_key`); denied → 403 with
/// nothing written; routes for a person or a service refuse a key with their own code.
#[tokio::test]
async fn api_key_role_by_route_matrix() {
    use tollgate::routes::{Access, routes};
    let app = TestApp::start_with(|config| {
        config.encryption_keys = Some(format!("k1:{}", "5".repeat(64)));
        config.encryption_active_key = Some("k1".into());
    })
    .await;
    for role in Role::ALL {
        let prefix = format!("key-{}", role.as_str().to_lowercase());
        let (owner, _) = app
            .organization_on_plan(
                &format!("auth0|{prefix}-owner"),
                Plan::Business,
                PlanStatus::Active,
            )
            .await;
        let (_, target_id) = app
            .add_member(&owner, &format!("auth0|{prefix}-target"), "VIEWER")
            .await;
        let invitation = app
            .post(
                "/api/users",
                &owner,
                json!({"email": format!("{prefix}-pending@example.com"), "role": "VIEWER"}),
            )
            .await;
        let invitation_id = invitation.body["id"].as_str().unwrap().to_owned();
        let integration = app
            .post(
                "/api/integrations",
                &owner,
                json!({"type": "twilio", "name": "Line", "credentials": {"authToken": "t"}}),
            )
            .await;
        let integration_id = integration.body["id"].as_str().unwrap().to_owned();
        let (other_key_id, _) = app.create_api_key(&owner, "Other", "VIEWER").await;
        let (_, key) = app.create_api_key(&owner, "Caller", role.as_str()).await;

        let mut covered = 0;
        for route in routes() {
            if route.access == Access::Stripe {
                continue;
            }
            covered += 1;
            let path = match route.path {
                "/api/users/{id}" => format!("/api/users/{target_id}"),
                "/api/users/invitations/{id}" => format!("/api/users/invitations/{invitation_id}"),
                "/api/users/invitations/{id}/resend" => {
                    format!("/api/users/invitations/{invitation_id}/resend")
                }
                "/api/integrations/{id}" => format!("/api/integrations/{integration_id}"),
                "/api/api-keys/{id}" => format!("/api/api-keys/{other_key_id}"),
                other => other.replace("{id}", "inv_unknown"),
            };
            let body = match (route.method.as_str(), route.path) {
                ("PATCH", "/api/organization") => {
                    Some(json!({"name": format!("{prefix} renamed")}))
                }
                ("POST", "/api/users") => {
                    Some(json!({"email": format!("{prefix}-new@example.com"), "role": "VIEWER"}))
                }
                ("PATCH", "/api/users/{id}") => Some(json!({"role": "MANAGER"})),
                ("POST", "/api/billing/checkout") => {
                    Some(json!({"plan": "BUSINESS", "interval": "monthly"}))
                }
                ("POST", "/api/integrations") => Some(
                    json!({"type": "twilio", "name": "By key", "credentials": {"authToken": "k"}}),
                ),
                ("POST", "/api/api-keys") => Some(json!({"name": "By key", "role": "VIEWER"})),
                ("POST", "/api/organizations") => Some(json!({"name": "By key"})),
                ("POST", "/api/permissions/check") => Some(json!({"permissions": ["org:read"]})),
                ("POST", _) => Some(json!({})),
                _ => None,
            };
            let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
            let what = format!("{role} key {method} {path}");
            let before = app.all_items().await;
            let reply = app
                .request(
                    method,
                    &path,
                    Some(&format!("Bearer {key}")),
                    body.map(|b| b.to_string()),
                )
                .await;
            let required: Vec<Permission> = match route.access {
                Access::Permission(permission) => vec![permission],
                Access::AnyOf(permissions) => permissions.to_vec(),
                Access::SignedIn => {
                    assert_error(&reply, 403, "user_token_required");
                    assert_eq!(app.all_items().await, before, "{what} wrote");
                    continue;
                }
                Access::Service => {
                    assert_error(&reply, 403, "service_key_required");
                    assert_eq!(app.all_items().await, before, "{what} wrote");
                    continue;
                }
                Access::Stripe => unreachable!(),
            };
            let allowed = required
                .iter()
                .any(|p| rbac::check_api_key(role, *p) == Decision::Allowed);
            if !allowed {
                assert_error(&reply, 403, "forbidden");
                assert_eq!(app.all_items().await, before, "{what} wrote on 403");
            } else if route.path == "/api/organization" && route.method == http::Method::DELETE {
                // Reached the handler, which keeps an organization with a live subscription.
                assert_error(&reply, 409, "subscription_active");
            } else {
                assert!((200..300).contains(&reply.status), "{what}: {}", reply.body);
            }
        }
        assert_eq!(covered, routes().len() - 1, "every route but Stripe's");
    }
}
