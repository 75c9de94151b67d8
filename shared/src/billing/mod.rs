//! Stripe billing: webhook signatures and the subscription state machine.

pub mod signature;
pub mod state;
