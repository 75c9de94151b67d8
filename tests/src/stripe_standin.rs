//! The local Stripe stand-in the tests talk to: the dev gateway's own
//! (`tollgate_dev::stripe_standin`, which `make dev` runs too), re-exported under its test name.

pub use tollgate_dev::stripe_standin::*;
