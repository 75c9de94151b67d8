//! The dev gateway: serves every route of the route table on 127.0.0.1 through the same pipeline
//! and handlers the Lambda functions run, a local JWT issuer for running without Clerk/Auth0, and a
//! local Stripe stand-in with `stripe pay` for billing without a Stripe account.

pub mod issuer;
pub mod local;
pub mod notify;
pub mod server;
pub mod stream;
pub mod stripe_pay;
pub mod stripe_standin;

use tollgate::pipeline::FunctionHandlers;

/// Every HTTP function's handlers: the dev gateway (and the tests through it) serve all routes
/// with the same handlers each Lambda serves its own with.
pub static ALL_FUNCTIONS: [&FunctionHandlers; 13] = [
    &user_load::HANDLERS,
    &permission_check::HANDLERS,
    &organizations::HANDLERS,
    &team::HANDLERS,
    &checkout::HANDLERS,
    &billing_portal::HANDLERS,
    &billing::HANDLERS,
    &stripe_webhook::HANDLERS,
    &usage_tracking::HANDLERS,
    &integrations::HANDLERS,
    &api_keys::HANDLERS,
    &audit::HANDLERS,
    &webhooks::HANDLERS,
];

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate::routes::Function;

    #[test]
    fn every_function_crate_handles_exactly_its_routes() {
        for handlers in ALL_FUNCTIONS {
            let (missing, extra) = handlers.mismatches();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{}: routes without a handler {missing:?}, handlers without a route {extra:?}",
                handlers.function.name()
            );
        }
    }

    #[test]
    fn the_gateway_serves_every_function_once() {
        let served: Vec<Function> = ALL_FUNCTIONS.iter().map(|h| h.function).collect();
        assert_eq!(served, Function::ALL.to_vec());
    }
}
