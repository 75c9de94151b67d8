//! Tollgate's shared library: what the Lambda functions share (the request pipeline, auth, RBAC,
//! pricing, usage maths, the webhook state machine, the store, crypto, secrets, config and
//! telemetry). Each function's handlers live in its own crate under `functions/`.
//!
//! A function binary builds a [`pipeline::AppState`] once per cold start and hands every request,
//! with its crate's [`pipeline::FunctionHandlers`], to [`pipeline::handle`]; the dev gateway and
//! the tests call the same function with every crate's handlers.

pub mod auth;
pub mod aws;
pub mod billing;
pub mod config;
pub mod crypto;
pub mod entitlements;
pub mod http;
pub mod lambda;
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
pub mod webhook_url;
