//! The test suite's Stripe stand-in as a process, for trying billing locally without a Stripe
//! account: `cargo run -p tollgate-tests --example stripe_standin`, then run `make dev` with
//! `STRIPE_API_BASE` set to the printed URL and any `STRIPE_SECRET_KEY`.

#[tokio::main]
async fn main() {
    let standin = tollgate_tests::stripe_standin::StripeStandIn::start().await;
    println!("Stripe stand-in listening on {}", standin.base_url);
    println!(
        "  STRIPE_API_BASE={} STRIPE_SECRET_KEY=sk_test_local",
        standin.base_url
    );
    let _ = tokio::signal::ctrl_c().await;
}
