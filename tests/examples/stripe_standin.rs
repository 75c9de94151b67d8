//! The Stripe stand-in as a process (infra/scripts/conformance.sh runs it):
//! `cargo run -p tollgate-tests --example stripe_standin`, then a gateway with `STRIPE_API_BASE`
//! set to the printed URL. `tollgate-dev stripe serve` is the same with a fixed port, and
//! `tollgate-dev serve --stripe-standin ADDR` runs it inside the gateway (`make dev`).

#[tokio::main]
async fn main() {
    let standin = tollgate_tests::stripe_standin::StripeStandIn::start().await;
    println!("Stripe stand-in listening on {}", standin.base_url);
    println!(
        "  STRIPE_API_BASE={} STRIPE_SECRET_KEY={}",
        standin.base_url,
        tollgate_tests::stripe_standin::SECRET_KEY
    );
    let _ = tokio::signal::ctrl_c().await;
}
