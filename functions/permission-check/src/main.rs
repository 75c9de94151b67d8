//! The `permission-check` Lambda: its routes are in `tollgate::routes`, its logic in `tollgate::handlers`.

fn main() -> Result<(), lambda_http::Error> {
    tollgate::lambda::entry::permission_check()
}
