//! The `notifier` Lambda: its handler is this crate's library.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    notifier::run().await
}
