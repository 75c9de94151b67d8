//! The stripe-webhook function's Stripe calls, through async-stripe's request builders: objects
//! retrieved again in the pinned version, and the overage invoice item.

use std::collections::HashMap;
use std::str::FromStr;

use stripe_billing::invoice::RetrieveInvoice;
use stripe_billing::invoice_item::CreateInvoiceItem;
use stripe_billing::subscription::RetrieveSubscription;
use stripe_checkout::checkout_session::RetrieveCheckoutSession;
use stripe_types::Currency;
use tollgate_stripe::{
    CheckoutFacts, InvoiceFacts, StripeApi, StripeError, SubscriptionFacts, check_id,
    checkout_facts, idempotency_key_of, invoice_facts, subscription_facts,
};

/// Retrieves a subscription (in the pinned API version).
pub async fn retrieve_subscription(
    api: &StripeApi,
    id: &str,
) -> Result<SubscriptionFacts, StripeError> {
    const OP: &str = "retrieve subscription";
    check_id(OP, id)?;
    let subscription = api.send(OP, &RetrieveSubscription::new(id), None).await?;
    Ok(subscription_facts(&subscription, None))
}

/// Retrieves an invoice (in the pinned API version).
pub async fn retrieve_invoice(api: &StripeApi, id: &str) -> Result<InvoiceFacts, StripeError> {
    const OP: &str = "retrieve invoice";
    check_id(OP, id)?;
    let invoice = api.send(OP, &RetrieveInvoice::new(id), None).await?;
    invoice_facts(&invoice, None)
        .map_err(|err| StripeError::UnexpectedShape(format!("{OP}: {err}")))
}

/// Retrieves a Checkout Session (in the pinned API version).
pub async fn retrieve_checkout_session(
    api: &StripeApi,
    id: &str,
) -> Result<CheckoutFacts, StripeError> {
    const OP: &str = "retrieve checkout session";
    check_id(OP, id)?;
    let session = api
        .send(OP, &RetrieveCheckoutSession::new(id), None)
        .await?;
    Ok(checkout_facts(&session))
}

/// Adds an invoice item of `amount_cents` in `currency` (ISO code, lower case) to the draft
/// invoice `invoice_id` of `customer_id` (overage billing); returns its id (`ii_...`).
#[allow(clippy::too_many_arguments)] // one call site, every argument a distinct Stripe field
pub async fn create_invoice_item(
    api: &StripeApi,
    customer_id: &str,
    invoice_id: &str,
    amount_cents: u64,
    currency: &str,
    description: &str,
    metadata: &[(&str, &str)],
    idempotency_key: &str,
) -> Result<String, StripeError> {
    const OP: &str = "create invoice item";
    let Ok(amount) = i64::try_from(amount_cents) else {
        return Err(StripeError::Rejected {
            status: 400,
            code: Some("amount_too_large".to_owned()),
            message: format!("{OP}: amount {amount_cents} does not fit Stripe's integer"),
        });
    };
    let key = idempotency_key_of(idempotency_key)?;
    // Infallible: a code async-stripe does not list is sent as given.
    let Ok(currency) = Currency::from_str(&currency.trim().to_ascii_lowercase());
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let create = CreateInvoiceItem::new()
        .customer(customer_id)
        .invoice(invoice_id)
        .amount(amount)
        .currency(currency)
        .description(description)
        .metadata(metadata);
    let item = api.send(OP, &create, Some(&key)).await?;
    Ok(item.id.as_str().to_owned())
}
