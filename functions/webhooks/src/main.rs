//! The `webhooks` Lambda: its handlers are this crate's library.

fn main() -> Result<(), lambda_http::Error> {
    tollgate::lambda::serve(&webhooks::HANDLERS)
}
