//! Route handlers: plain async functions over the shared state, called by the pipeline.

pub mod billing;
pub mod integrations;
pub mod me;
pub mod organizations;
pub mod permissions;
pub mod team;
pub mod usage;
pub mod webhook;
