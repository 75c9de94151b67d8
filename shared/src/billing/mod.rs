//! Stripe billing: webhook signatures and the subscription state machine.

pub mod prices;
pub mod signature;
pub mod state;
