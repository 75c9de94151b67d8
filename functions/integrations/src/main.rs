//! The `integrations` Lambda: its routes are in `tollgate::routes`, its logic in `tollgate::handlers`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tollgate::lambda::run::<tollgate::routes::serve::Integrations>().await
}
