//! Tollgate's shared library: everything the Lambda functions, the dev gateway and the tests share.
//!
//! A function binary builds an [`pipeline::AppState`] once per cold start and hands every request
//! to [`pipeline::handle`]; the dev gateway and the tests call the same function.

pub mod auth;
pub mod aws;
pub mod billing;
pub mod config;
pub mod crypto;
pub mod handlers;
pub mod http;
pub mod lambda;
pub mod maintenance;
pub mod pipeline;
pub mod pricing;
pub mod ratelimit;
pub mod rbac;
pub mod routes;
pub mod secrets;
pub mod store;
pub mod team;
pub mod telemetry;
pub mod text;
pub mod trust;
pub mod usage;
