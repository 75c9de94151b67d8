//! The hello-world Lambda the benchmarks compare every function with (artifact size, init time):
//! `lambda_http` with the workspace's features, one JSON answer, a tracing subscriber like ours.

use lambda_http::{Body, Error, Request, Response, service_fn};

async fn hello(_request: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"message":"hello"}"#))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    lambda_http::run(service_fn(hello)).await
}
