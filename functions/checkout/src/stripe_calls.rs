//! The checkout function's Stripe calls, through async-stripe's request builders.

use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;
use stripe_shared::CheckoutSessionMode;
use tollgate_stripe::{StripeApi, StripeError, idempotency_key_of, organization_metadata};

/// A subscription checkout for one organization's Stripe customer and one price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutRequest<'a> {
    pub customer_id: &'a str,
    pub price_id: &'a str,
    pub organization_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    /// The plan's trial in days; 0: no trial (the field is not sent).
    pub trial_days: u32,
    /// Sends `allow_promotion_codes=true`; false: the field is not sent.
    pub allow_promotion_codes: bool,
}

/// A created Checkout Session: where to send the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckoutSessionCreated {
    pub id: String,
    pub url: String,
}

/// Creates the Stripe customer of an organization (`metadata[organizationId]`); returns its
/// id (`cus_...`). The idempotency key makes a retried creation return the same customer.
pub async fn create_customer(
    api: &StripeApi,
    organization_id: &str,
    name: &str,
    email: Option<&str>,
    idempotency_key: &str,
) -> Result<String, StripeError> {
    const OP: &str = "create customer";
    let key = idempotency_key_of(idempotency_key)?;
    let mut request = CreateCustomer::new()
        .name(name)
        .metadata(organization_metadata(organization_id));
    if let Some(email) = email {
        request = request.email(email);
    }
    let customer = api.send(OP, &request, Some(&key)).await?;
    Ok(customer.id.as_str().to_owned())
}

/// Creates a subscription-mode Checkout Session. Sends exactly `mode=subscription`,
/// `customer`, `client_reference_id=<organization>`, `line_items[0][price]`,
/// `line_items[0][quantity]=1`, `subscription_data[metadata][organizationId]`, `success_url`
/// and `cancel_url`; plus `subscription_data[trial_period_days]` when `trial_days` is more than 0
/// and `allow_promotion_codes=true` when promotion codes are allowed.
pub async fn create_checkout_session(
    api: &StripeApi,
    request: &CheckoutRequest<'_>,
    idempotency_key: &str,
) -> Result<CheckoutSessionCreated, StripeError> {
    const OP: &str = "create checkout session";
    let key = idempotency_key_of(idempotency_key)?;
    let line_item = CreateCheckoutSessionLineItems {
        price: Some(request.price_id.to_owned()),
        quantity: Some(1),
        ..CreateCheckoutSessionLineItems::new()
    };
    let subscription_data = CreateCheckoutSessionSubscriptionData {
        metadata: Some(organization_metadata(request.organization_id)),
        trial_period_days: (request.trial_days > 0).then_some(request.trial_days),
        ..CreateCheckoutSessionSubscriptionData::new()
    };
    let mut create = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Subscription)
        .customer(request.customer_id)
        .client_reference_id(request.organization_id)
        .line_items(vec![line_item])
        .subscription_data(subscription_data)
        .success_url(request.success_url)
        .cancel_url(request.cancel_url);
    if request.allow_promotion_codes {
        create = create.allow_promotion_codes(true);
    }
    let session = api.send(OP, &create, Some(&key)).await?;
    match session.url {
        Some(url) if !url.is_empty() => Ok(CheckoutSessionCreated {
            id: session.id.as_str().to_owned(),
            url,
        }),
        _ => Err(StripeError::UnexpectedShape(format!(
            "{OP}: checkout session {} has no url",
            session.id.as_str()
        ))),
    }
}
