//! The `org-cleanup` Lambda: its handler is this crate's library.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    org_cleanup::run().await
}
