//! The Stripe baseline the benchmarks compare the Stripe functions with (artifact size, init time):
//! hello-world plus one async-stripe call, with tollgate-stripe's async-stripe crates, features and
//! TLS (rustls on ring, Mozilla's roots compiled in). It retrieves the customer named by the
//! request's `customer` query parameter from `STRIPE_API_BASE` (default Stripe's API) with
//! `STRIPE_SECRET_KEY`, and answers its id, or 502 when Stripe fails; without the parameter it
//! answers hello-world's JSON without a call (the init benchmark's first event).

use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use stripe_core::customer::{RetrieveCustomer, RetrieveCustomerReturned};

async fn hello(client: &stripe::Client, request: Request) -> Result<Response<Body>, Error> {
    let Some(customer) = request
        .query_string_parameters_ref()
        .and_then(|query| query.first("customer"))
        .map(str::to_owned)
    else {
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"message":"hello"}"#))?);
    };
    let (status, body) = match RetrieveCustomer::new(customer).send(client).await {
        Ok(RetrieveCustomerReturned::Customer(customer)) => (
            200,
            format!(
                r#"{{"customer":"{}","deleted":false}}"#,
                customer.id.as_str()
            ),
        ),
        Ok(RetrieveCustomerReturned::DeletedCustomer(customer)) => (
            200,
            format!(
                r#"{{"customer":"{}","deleted":true}}"#,
                customer.id.as_str()
            ),
        ),
        // Nothing of the error is answered or logged.
        Err(_) => (502, r#"{"error":"stripe_error"}"#.to_owned()),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = std::env::var("STRIPE_SECRET_KEY").unwrap_or_default();
    let base = std::env::var("STRIPE_API_BASE")
        .ok()
        .filter(|base| !base.is_empty())
        .map(|base| format!("{}/", base.trim_end_matches('/')));
    let mut builder = stripe::ClientBuilder::new(key);
    if let Some(base) = base {
        builder = builder.url(base);
    }
    let client = builder.build()?;
    let client = &client;
    lambda_http::run(service_fn(move |request| hello(client, request))).await
}
