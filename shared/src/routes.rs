//! The route table: one list of every route, read by the function binaries, the dev gateway and
//! the consistency tests against `template.yaml`.

use http::Method;

use crate::rbac::Permission;

/// A deployed Lambda function; its name is the binary name and the `functions/<name>` crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    UserLoad,
    PermissionCheck,
    Organizations,
    Team,
    Checkout,
    BillingPortal,
    Billing,
    StripeWebhook,
    UsageTracking,
    Integrations,
    ApiKeys,
    Audit,
    Webhooks,
}

impl Function {
    pub const ALL: [Function; 13] = [
        Function::UserLoad,
        Function::PermissionCheck,
        Function::Organizations,
        Function::Team,
        Function::Checkout,
        Function::BillingPortal,
        Function::Billing,
        Function::StripeWebhook,
        Function::UsageTracking,
        Function::Integrations,
        Function::ApiKeys,
        Function::Audit,
        Function::Webhooks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::UserLoad => "user-load",
            Function::PermissionCheck => "permission-check",
            Function::Organizations => "organizations",
            Function::Team => "team",
            Function::Checkout => "checkout",
            Function::BillingPortal => "billing-portal",
            Function::Billing => "billing",
            Function::StripeWebhook => "stripe-webhook",
            Function::UsageTracking => "usage-tracking",
            Function::Integrations => "integrations",
            Function::ApiKeys => "api-keys",
            Function::Audit => "audit",
            Function::Webhooks => "webhooks",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any signed-in user (a person's token); the handler decides what they see. Organization
    /// API keys get 403 `user_token_required`.
    SignedIn,
    /// A signed-in user of an organization whose role allows the permission, or an organization
    /// API key whose role allows it and that keys may use (`rbac::check_api_key`).
    Permission(Permission),
    /// As [`Access::Permission`], for any one of the permissions.
    AnyOf(&'static [Permission]),
    /// A back-end service holding a service key (`SERVICE_KEY_HASHES`); user tokens get 403.
    Service,
    /// Stripe, authenticated by the `Stripe-Signature` of the raw body; no user token.
    Stripe,
}

/// Lambda binaries with no route: rotate-keys is invoked directly, org-cleanup by the table's
/// stream, the notifier by the table's stream and its delivery queue.
pub const MAINTENANCE_BINARIES: [&str; 3] = ["rotate-keys", "org-cleanup", "notifier"];

/// What a route does; the pipeline dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    GetMe,
    AcceptInvitation,
    DeclineInvitation,
    LeaveOrganization,
    CheckPermissions,
    CreateOrganization,
    GetOrganization,
    UpdateOrganization,
    DeleteOrganization,
    ListTeam,
    InviteMember,
    ChangeRole,
    RemoveMember,
    RevokeInvitation,
    ResendInvitation,
    Checkout,
    BillingPortal,
    GetSubscription,
    ListInvoices,
    StripeWebhook,
    RecordCall,
    GetUsage,
    ListIntegrations,
    CreateIntegration,
    DeleteIntegration,
    ListApiKeys,
    CreateApiKey,
    RevokeApiKey,
    ListAuditEvents,
    ListWebhookEndpoints,
    CreateWebhookEndpoint,
    DeleteWebhookEndpoint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    /// API Gateway path template, e.g. `/api/users/{id}`.
    pub path: &'static str,
    pub function: Function,
    pub access: Access,
    pub operation: Operation,
}

/// Every route of the API.
pub fn routes() -> &'static [Route] {
    use Access::{AnyOf, Permission as Needs, Service, SignedIn, Stripe};
    use Function::*;
    use Operation::*;
    use Permission::*;
    static ROUTES: std::sync::LazyLock<Vec<Route>> = std::sync::LazyLock::new(|| {
        let route = |method: Method, path, function, access, operation| Route {
            method,
            path,
            function,
            access,
            operation,
        };
        vec![
            route(Method::GET, "/api/me", UserLoad, SignedIn, GetMe),
            route(
                Method::POST,
                "/api/me/invitations/{id}/accept",
                UserLoad,
                SignedIn,
                AcceptInvitation,
            ),
            route(
                Method::POST,
                "/api/me/invitations/{id}/decline",
                UserLoad,
                SignedIn,
                DeclineInvitation,
            ),
            route(
                Method::DELETE,
                "/api/me/organization",
                UserLoad,
                SignedIn,
                LeaveOrganization,
            ),
            route(
                Method::POST,
                "/api/permissions/check",
                PermissionCheck,
                SignedIn,
                CheckPermissions,
            ),
            route(
                Method::POST,
                "/api/organizations",
                Organizations,
                SignedIn,
                CreateOrganization,
            ),
            route(
                Method::GET,
                "/api/organization",
                Organizations,
                Needs(OrgRead),
                GetOrganization,
            ),
            route(
                Method::PATCH,
                "/api/organization",
                Organizations,
                Needs(OrgUpdate),
                UpdateOrganization,
            ),
            route(
                Method::DELETE,
                "/api/organization",
                Organizations,
                Needs(OrgDelete),
                DeleteOrganization,
            ),
            route(Method::GET, "/api/users", Team, Needs(UsersRead), ListTeam),
            route(
                Method::POST,
                "/api/users",
                Team,
                Needs(UsersCreate),
                InviteMember,
            ),
            route(
                Method::PATCH,
                "/api/users/{id}",
                Team,
                Needs(UsersUpdate),
                ChangeRole,
            ),
            route(
                Method::DELETE,
                "/api/users/{id}",
                Team,
                Needs(UsersDelete),
                RemoveMember,
            ),
            route(
                Method::DELETE,
                "/api/users/invitations/{id}",
                Team,
                Needs(UsersDelete),
                RevokeInvitation,
            ),
            route(
                Method::POST,
                "/api/users/invitations/{id}/resend",
                Team,
                Needs(UsersCreate),
                ResendInvitation,
            ),
            route(
                Method::POST,
                "/api/billing/checkout",
                Function::Checkout,
                Needs(BillingUpdate),
                Operation::Checkout,
            ),
            route(
                Method::POST,
                "/api/billing/portal",
                Function::BillingPortal,
                Needs(BillingUpdate),
                Operation::BillingPortal,
            ),
            route(
                Method::GET,
                "/api/billing/subscription",
                Billing,
                Needs(BillingRead),
                GetSubscription,
            ),
            route(
                Method::GET,
                "/api/billing/invoices",
                Billing,
                Needs(BillingRead),
                ListInvoices,
            ),
            route(
                Method::GET,
                "/api/integrations",
                Integrations,
                Needs(IntegrationsRead),
                ListIntegrations,
            ),
            route(
                Method::POST,
                "/api/integrations",
                Integrations,
                Needs(IntegrationsCreate),
                CreateIntegration,
            ),
            route(
                Method::DELETE,
                "/api/integrations/{id}",
                Integrations,
                Needs(IntegrationsDelete),
                DeleteIntegration,
            ),
            route(
                Method::GET,
                "/api/api-keys",
                Function::ApiKeys,
                Needs(ApiKeysManage),
                ListApiKeys,
            ),
            route(
                Method::POST,
                "/api/api-keys",
                Function::ApiKeys,
                Needs(ApiKeysManage),
                CreateApiKey,
            ),
            route(
                Method::DELETE,
                "/api/api-keys/{id}",
                Function::ApiKeys,
                Needs(ApiKeysManage),
                RevokeApiKey,
            ),
            route(
                Method::GET,
                "/api/audit",
                Function::Audit,
                Needs(AuditRead),
                ListAuditEvents,
            ),
            route(
                Method::GET,
                "/api/webhooks/endpoints",
                Function::Webhooks,
                Needs(WebhooksManage),
                ListWebhookEndpoints,
            ),
            route(
                Method::POST,
                "/api/webhooks/endpoints",
                Function::Webhooks,
                Needs(WebhooksManage),
                CreateWebhookEndpoint,
            ),
            route(
                Method::DELETE,
                "/api/webhooks/endpoints/{id}",
                Function::Webhooks,
                Needs(WebhooksManage),
                DeleteWebhookEndpoint,
            ),
            route(
                Method::POST,
                "/api/usage/calls",
                UsageTracking,
                Service,
                RecordCall,
            ),
            route(
                Method::GET,
                "/api/billing/usage",
                UsageTracking,
                AnyOf(&[BillingRead, AnalyticsRead]),
                GetUsage,
            ),
            route(
                Method::POST,
                "/api/webhooks/stripe",
                Function::StripeWebhook,
                Stripe,
                Operation::StripeWebhook,
            ),
        ]
    });
    &ROUTES
}

/// The routes one function serves.
pub fn routes_of(function: Function) -> impl Iterator<Item = &'static Route> {
    routes()
        .iter()
        .filter(move |route| route.function == function)
}

/// Path parameters captured by a template match, in template order.
pub type PathParams = Vec<(&'static str, String)>;

/// The outcome of looking a request up in a set of routes.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'a> {
    Found(&'a Route, PathParams),
    /// The path exists but not for this method (405 with `Allow`).
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Finds the route for `method` and `path` among `candidates`.
pub fn match_route<'a>(
    candidates: impl IntoIterator<Item = &'a Route>,
    method: &Method,
    path: &str,
) -> RouteMatch<'a> {
    let mut allowed = Vec::new();
    for route in candidates {
        if let Some(params) = match_template(route.path, path) {
            if route.method == *method {
                return RouteMatch::Found(route, params);
            }
            allowed.push(route.method.clone());
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::MethodNotAllowed(allowed)
    }
}

/// Longest id a path may carry.
pub const MAX_ID_LEN: usize = 128;

/// 1 to [`MAX_ID_LEN`] characters of `A-Z a-z 0-9 _ -`.
pub fn is_plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Matches a concrete path against a template; `{name}` captures one non-empty segment.
/// A trailing slash is tolerated, as API Gateway does not add or strip one itself.
fn match_template(template: &'static str, path: &str) -> Option<PathParams> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let mut template_segments = template.split('/');
    let mut path_segments = path.split('/');
    let mut params = Vec::new();
    loop {
        match (template_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(expected), Some(actual)) => {
                if let Some(name) = expected.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    // Ids are ours (`usr_…`, `inv_…`, `int_…`): anything else cannot exist, and
                    // must not reach DynamoDB (keys over 1 KiB are a ValidationException there).
                    if !is_plausible_id(actual) {
                        return None;
                    }
                    params.push((name, actual.to_owned()));
                } else if expected != actual {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_unique_and_under_api() {
        let mut seen = std::collections::HashSet::new();
        for route in routes() {
            assert!(route.path.starts_with("/api/"), "{}", route.path);
            assert!(
                seen.insert((route.method.clone(), route.path)),
                "duplicate {route:?}"
            );
        }
    }

    #[test]
    fn every_function_serves_at_least_one_route() {
        for function in Function::ALL {
            assert!(routes_of(function).next().is_some(), "{function:?}");
        }
    }

    #[test]
    fn templates_capture_segments() {
        assert_eq!(
            match_template("/api/users/{id}", "/api/users/u1"),
            Some(vec![("id", "u1".to_owned())])
        );
        assert_eq!(match_template("/api/users/{id}", "/api/users/"), None);
        assert_eq!(
            match_template(
                "/api/users/{id}",
                &format!("/api/users/{}", "a".repeat(129))
            ),
            None
        );
        assert!(
            match_template(
                "/api/users/{id}",
                &format!("/api/users/{}", "a".repeat(128))
            )
            .is_some()
        );
        assert_eq!(match_template("/api/users/{id}", "/api/users/a%20b"), None);
        assert_eq!(match_template("/api/users/{id}", "/api/users/u1/x"), None);
        assert_eq!(match_template("/api/me", "/api/me/"), Some(vec![]));
        assert_eq!(match_template("/api/me", "/api/mee"), None);
    }

    #[test]
    fn matching_distinguishes_not_found_and_wrong_method() {
        let all = routes();
        assert!(
            matches!(match_route(all, &Method::GET, "/api/me"), RouteMatch::Found(r, _) if r.operation == Operation::GetMe)
        );
        assert_eq!(
            match_route(all, &Method::DELETE, "/api/me"),
            RouteMatch::MethodNotAllowed(vec![Method::GET])
        );
        assert_eq!(
            match_route(all, &Method::GET, "/api/nothing"),
            RouteMatch::NotFound
        );
        // A function only answers its own routes.
        assert_eq!(
            match_route(
                routes_of(Function::PermissionCheck),
                &Method::GET,
                "/api/me"
            ),
            RouteMatch::NotFound
        );
    }
}
