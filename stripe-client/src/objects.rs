//! Webhook objects into async-stripe's types, and the facts Tollgate keeps of those types.

use serde_json::Value;
use stripe_shared::{CheckoutSession, Invoice, Subscription};

use crate::{
    CheckoutFacts, InvoiceFacts, ORGANIZATION_METADATA_KEY, ShapeError, SubscriptionFacts,
};

/// Parses a webhook's `data.object` as a subscription of the pinned API version
/// (`stripe_shared::Subscription`).
pub fn parse_subscription(object: &Value) -> Result<SubscriptionFacts, ShapeError> {
    const OBJECT: &str = "subscription";
    let subscription: Subscription = parse_pinned(OBJECT, object).map_err(|mut err| {
        if let Some(hint) = subscription_hint(object) {
            err.detail = hint;
        }
        err
    })?;
    Ok(subscription_facts(&subscription, Some(object)))
}

/// Parses a webhook's `data.object` as an invoice of the pinned API version
/// (`stripe_shared::Invoice`).
pub fn parse_invoice(object: &Value) -> Result<InvoiceFacts, ShapeError> {
    let invoice: Invoice = parse_pinned("invoice", object)?;
    invoice_facts(&invoice, Some(object))
}

/// Parses a webhook's `data.object` as a Checkout Session of the pinned API version
/// (`stripe_shared::CheckoutSession`).
pub fn parse_checkout_session(object: &Value) -> Result<CheckoutFacts, ShapeError> {
    let session: CheckoutSession = parse_pinned("checkout.session", object)?;
    Ok(checkout_facts(&session))
}

/// Deserializes `object` into async-stripe's type `T` (through its deserializer, miniserde),
/// checking its `object` name first.
fn parse_pinned<T: miniserde::Deserialize>(
    name: &'static str,
    object: &Value,
) -> Result<T, ShapeError> {
    let shape = |detail: String| ShapeError {
        object: name,
        detail,
    };
    let Some(fields) = object.as_object() else {
        return Err(shape(format!(
            "expected a JSON object, got {}",
            json_kind(object)
        )));
    };
    match fields.get("object") {
        None => {}
        Some(Value::String(kind)) if kind == name => {}
        Some(Value::String(kind)) => {
            return Err(shape(format!("its \"object\" is {kind:?}, not {name:?}")));
        }
        Some(other) => {
            return Err(shape(format!(
                "its \"object\" is {}, not a string",
                json_kind(other)
            )));
        }
    }
    // miniserde reports no detail (and so never quotes a value of the payload).
    miniserde::json::from_str(&object.to_string()).map_err(|_| {
        shape(
            "a field the pinned type requires is missing or has another type (a payload of \
             another API version?)"
                .to_owned(),
        )
    })
}

/// A precise reason for the one known incompatibility of subscriptions: periods on the items
/// (2025-03-31.basil and later) versus at the top level (earlier versions).
pub(crate) fn subscription_hint(object: &Value) -> Option<String> {
    let items = object.pointer("/items/data")?.as_array()?;
    let lacking = items.iter().position(|item| {
        item.get("current_period_start").is_none() || item.get("current_period_end").is_none()
    })?;
    let top_level = object.get("current_period_start").is_some();
    Some(format!(
        "items.data[{lacking}] has no current_period_start/end{}",
        if top_level {
            " (they are at the top level: a payload of an API version before 2025-03-31.basil)"
        } else {
            ""
        }
    ))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The id an expandable reference names, in the raw JSON of an older API version: the id itself,
/// or an expanded object's `id`.
fn raw_reference(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Object(object) => object.get("id")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `metadata.organizationId`, when set and not empty.
fn organization_of(metadata: Option<&std::collections::HashMap<String, String>>) -> Option<String> {
    metadata
        .and_then(|metadata| metadata.get(ORGANIZATION_METADATA_KEY))
        .filter(|id| !id.is_empty())
        .cloned()
}

/// The facts of a subscription. `raw` (a webhook's JSON) gives the top-level period of an older
/// API version, which async-stripe's type no longer has.
pub fn subscription_facts(subscription: &Subscription, raw: Option<&Value>) -> SubscriptionFacts {
    let item = subscription.items.data.first();
    // Older API versions: the period is at the top level (only reachable for a subscription
    // without items, since every item must carry its own period).
    let top_level = |field: &str| raw.and_then(|raw| raw.get(field)).and_then(Value::as_i64);
    let (current_period_start, current_period_end) = match item {
        Some(item) => (
            Some(item.current_period_start),
            Some(item.current_period_end),
        ),
        None => (
            top_level("current_period_start"),
            top_level("current_period_end"),
        ),
    };
    let price = item.map(|item| &item.price);
    let amount_cents = item.and_then(|item| {
        let unit = u64::try_from(item.price.unit_amount?).ok()?;
        unit.checked_mul(item.quantity.unwrap_or(1))
    });
    SubscriptionFacts {
        id: subscription.id.as_str().to_owned(),
        customer_id: subscription.customer.id().as_str().to_owned(),
        status: subscription.status.as_str().to_owned(),
        price_id: price.map(|price| price.id.as_str().to_owned()),
        cancel_at_period_end: subscription.cancel_at_period_end,
        current_period_start,
        current_period_end,
        trial_end: subscription.trial_end,
        amount_cents,
        currency: Some(
            price
                .map(|price| price.currency.to_string())
                .unwrap_or_else(|| subscription.currency.to_string()),
        ),
        interval: price
            .and_then(|price| price.recurring.as_ref())
            .map(|recurring| recurring.interval.as_str().to_owned()),
        organization_id: organization_of(Some(&subscription.metadata)),
        created: subscription.created,
    }
}

/// The facts of an invoice: a [`ShapeError`] when it lacks one Tollgate cannot do without (an id:
/// a preview; a customer) or has a negative amount. `raw` (a webhook's JSON) gives the top-level
/// `subscription` of an older API version, which async-stripe's type no longer has.
pub fn invoice_facts(invoice: &Invoice, raw: Option<&Value>) -> Result<InvoiceFacts, ShapeError> {
    let shape = |detail: &str| ShapeError {
        object: "invoice",
        detail: detail.to_owned(),
    };
    let id = invoice
        .id
        .as_ref()
        .ok_or_else(|| shape("it has no id (a preview invoice?)"))?;
    let customer = invoice
        .customer
        .as_ref()
        .ok_or_else(|| shape("it has no customer"))?;
    let amount = |value: i64, field: &str| {
        u64::try_from(value).map_err(|_| shape(&format!("{field} is negative")))
    };
    let subscription_id = invoice
        .parent
        .as_ref()
        .and_then(|parent| parent.subscription_details.as_ref())
        .map(|details| details.subscription.id().as_str().to_owned())
        .or_else(|| {
            raw.and_then(|raw| raw.get("subscription"))
                .and_then(raw_reference)
        });
    Ok(InvoiceFacts {
        id: id.as_str().to_owned(),
        number: invoice.number.clone(),
        customer_id: customer.id().as_str().to_owned(),
        subscription_id,
        amount_due: amount(invoice.amount_due, "amount_due")?,
        amount_paid: amount(invoice.amount_paid, "amount_paid")?,
        currency: invoice.currency.to_string(),
        status: invoice
            .status
            .as_ref()
            .map(|status| status.as_str().to_owned()),
        hosted_invoice_url: invoice.hosted_invoice_url.clone(),
        invoice_pdf: invoice.invoice_pdf.clone(),
        period_start: Some(invoice.period_start),
        period_end: Some(invoice.period_end),
        paid_at: invoice.status_transitions.paid_at,
        created: invoice.created,
        billing_reason: invoice
            .billing_reason
            .as_ref()
            .map(|reason| reason.as_str().to_owned()),
    })
}

/// The facts of a Checkout Session.
pub fn checkout_facts(session: &CheckoutSession) -> CheckoutFacts {
    let client_reference_id = session
        .client_reference_id
        .clone()
        .filter(|id| !id.is_empty());
    let organization_id =
        organization_of(session.metadata.as_ref()).or_else(|| client_reference_id.clone());
    CheckoutFacts {
        id: session.id.as_str().to_owned(),
        customer_id: session
            .customer
            .as_ref()
            .map(|customer| customer.id().as_str().to_owned()),
        subscription_id: session
            .subscription
            .as_ref()
            .map(|subscription| subscription.id().as_str().to_owned()),
        client_reference_id,
        mode: session.mode.as_str().to_owned(),
        status: session
            .status
            .as_ref()
            .map(|status| status.as_str().to_owned()),
        payment_status: session.payment_status.as_str().to_owned(),
        organization_id,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn garbage_is_a_shape_error() {
        let err = parse_subscription(&json!("nope")).unwrap_err();
        assert_eq!(err.object, "subscription");
        assert_eq!(err.detail, "expected a JSON object, got a string");
        let err = parse_invoice(&json!({"object": "subscription"})).unwrap_err();
        assert!(err.detail.contains("\"subscription\""), "{err}");
        let err = parse_checkout_session(&json!({"id": "cs_1"})).unwrap_err();
        assert!(err.to_string().contains("checkout.session"), "{err}");
        assert!(err.to_string().contains("2026-09-30.endive"), "{err}");
        let err = parse_invoice(&json!({"object": 7})).unwrap_err();
        assert!(err.detail.contains("a number"), "{err}");
    }

    #[test]
    fn a_shape_error_never_quotes_the_payload() {
        let err = parse_invoice(&json!({
            "object": "invoice",
            "id": "in_1",
            "customer_email": "someone@example.com",
            "amount_due": "4242 4242 4242 4242",
        }))
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("example.com"), "{text}");
        assert!(!text.contains("4242"), "{text}");
    }

    #[test]
    fn raw_references_are_ids_or_expanded_objects() {
        assert_eq!(raw_reference(&json!("sub_1")).as_deref(), Some("sub_1"));
        assert_eq!(
            raw_reference(&json!({"id": "sub_2", "object": "subscription"})).as_deref(),
            Some("sub_2")
        );
        assert_eq!(raw_reference(&json!(null)), None);
        assert_eq!(raw_reference(&json!({"object": "subscription"})), None);
    }

    #[test]
    fn the_subscription_hint_names_the_item_and_the_version() {
        let hint = subscription_hint(&json!({
            "current_period_start": 1, "current_period_end": 2,
            "items": {"data": [{"current_period_start": 1, "current_period_end": 2}, {}]},
        }))
        .unwrap();
        assert!(
            hint.starts_with("items.data[1] has no current_period_start/end"),
            "{hint}"
        );
        assert!(hint.contains("2025-03-31.basil"), "{hint}");
        assert_eq!(
            subscription_hint(
                &json!({"items": {"data": [{"current_period_start": 1, "current_period_end": 2}]}})
            ),
            None
        );
    }
}
