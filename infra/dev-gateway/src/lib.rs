//! The dev gateway: serves every route of the route table on 127.0.0.1 through the same pipeline
//! and handlers the Lambda functions run, and a local JWT issuer for running without Clerk/Auth0.

pub mod issuer;
pub mod server;
