//! The dev gateway: serves every route of the route table on 127.0.0.1 through the same pipeline
//! and handlers the Lambda functions run, a local JWT issuer for running without Clerk/Auth0, and a
//! local Stripe stand-in with `stripe pay` for billing without a Stripe account.

pub mod issuer;
pub mod local;
pub mod server;
pub mod stripe_pay;
pub mod stripe_standin;
