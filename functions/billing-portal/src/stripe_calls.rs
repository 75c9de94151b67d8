//! The billing-portal function's Stripe call, through async-stripe's request builder.

use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use tollgate_stripe::{StripeApi, StripeError, idempotency_key_of};

/// Creates a customer portal session; returns its URL. The caller passes no idempotency key:
/// a fresh one (`tollgate-portal-<uuid>`) keeps the attempts of this one call one session.
pub async fn create_portal_session(
    api: &StripeApi,
    customer_id: &str,
    return_url: &str,
) -> Result<String, StripeError> {
    const OP: &str = "create billing portal session";
    let key = idempotency_key_of(&format!("tollgate-portal-{}", uuid::Uuid::new_v4()))?;
    let create = CreateBillingPortalSession::new()
        .customer(customer_id)
        .return_url(return_url);
    let session = api.send(OP, &create, Some(&key)).await?;
    if session.url.is_empty() {
        return Err(StripeError::UnexpectedShape(format!(
            "{OP}: portal session {} has no url",
            session.id.as_str()
        )));
    }
    Ok(session.url)
}
