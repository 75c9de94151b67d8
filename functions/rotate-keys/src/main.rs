//! The `rotate-keys` Lambda (no route): a one-off re-encryption of every integration credential
//! under the active key; `tollgate-dev rotate-keys` runs the same code locally.

fn main() -> Result<(), lambda_http::Error> {
    tollgate::lambda::entry::rotate_keys()
}
