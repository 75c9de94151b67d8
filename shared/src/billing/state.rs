//! Subscription state transitions: a pure state machine that turns Stripe webhook events, in any
//! arrival order and with any duplicates, into the same stored billing state of an organization.
//!
//! # Inputs
//!
//! The webhook handler reduces each relevant event to one of two inputs (parsing the payload and
//! mapping it to an organization through the customer or subscription id is the handler's job):
//!
//! * a [`SubscriptionSnapshot`] for `customer.subscription.created`, `.updated` and `.deleted`
//!   (and for a subscription fetched from the API after `checkout.session.completed`): everything
//!   the event's subscription object says, plus the event's `id` and `created`;
//! * an [`InvoiceSignal`] for `invoice.payment_failed` ([`InvoiceOutcome::PaymentFailed`]) and
//!   `invoice.paid` / `invoice.payment_succeeded` ([`InvoiceOutcome::PaymentSucceeded`]).
//!
//! [`apply`] and [`apply_invoice`] take the stored state (`None` before the first event) and
//! return [`Transition::Apply`] with the complete new state to store, or [`Transition::Ignore`]
//! with the reason nothing changes.
//!
//! # Ordering
//!
//! Every input has an [`OrderKey`] `(created, rank, event_id)`, compared lexicographically:
//!
//! 1. `created` — the event's `created` (Stripe's event timestamp, Unix seconds); later is newer.
//! 2. `rank` — at the same second, the status later in the lifecycle wins ([`status_rank`]):
//!    `incomplete < trialing < active < past_due < unpaid < paused < incomplete_expired <
//!    canceled < deleted`; so a terminal `canceled` / `customer.subscription.deleted` beats
//!    anything in the same second. An invoice signal ranks as the status it implies (failed as
//!    `past_due`, succeeded as `active`).
//! 3. `event_id` — byte-wise lexicographic, so the order is total: no two distinct events compare
//!    equal (Stripe event ids are unique), and an equal key means the same event delivered again.
//!
//! # The state is a function of the set of events seen
//!
//! * The **snapshot part** (subscription id, customer, price, plan/interval, period, amount,
//!   flags, `snapshot_status`) is the content of the snapshot with the greatest key. An older
//!   snapshot never overwrites a newer one, so a deleted/canceled subscription is never revived by
//!   an older `updated`, and a different subscription id replaces the current one only when its
//!   event is newer (a re-subscribe after a cancellation).
//! * The **invoice part** is the invoice signal with the greatest key, kept only while it is newer
//!   than the snapshot part (a newer snapshot already reflects what the invoice did).
//! * The effective `status` is `snapshot_status`, adjusted by the kept invoice signal when it
//!   belongs to the same subscription: a failed payment turns `active`/`trialing`/`past_due` into
//!   `past_due` (a failed first invoice leaves `incomplete` as it is, as Stripe does; `unpaid`,
//!   `paused` and terminal states stay); a successful payment turns `past_due`/`unpaid`/
//!   `incomplete` into `active` (a `$0` trial invoice leaves `trialing`; terminal states stay).
//!   Before any snapshot has been seen the status is `none`.
//!
//! * The **payment marks** say when the current stretch of failed payments began
//!   ([`BillingState::past_due_since`], what the entitlement grace period counts from). Per
//!   subscription they keep the newest event that says the subscription is not past due (a
//!   snapshot with another status, a successful payment) and every failed-payment event (a failed
//!   invoice, a `past_due` snapshot) newer than it. `past_due_since` is the `created` of the
//!   oldest kept failure of the current subscription while the effective status is `past_due`,
//!   `None` otherwise. An event too old for the snapshot or invoice part still adds its mark: a
//!   first failure delivered after a retry's failure moves `past_due_since` back to it.
//!
//! All three parts are maxima (or pruned sets) over a total order, so folding the events in any
//! order, with any duplicates, ends in the same [`BillingState`] (property-tested below). Keeping only the newest
//! invoice signal means an invoice of another subscription that is newer still can mask it; Stripe
//! also sends `customer.subscription.updated` with the new status, which settles it.
//!
//! `plan`/`interval` come from the price id through configuration (`price_lookup`), so a plan
//! changed in the customer portal is picked up. An unknown price keeps the subscription's status
//! and leaves `plan`/`interval` empty; [`BillingState::unknown_price`] flags it for a log line.
//!
//! Known limit: the state tracks one subscription per organization (checkout refuses a second
//! one). If two live subscriptions ever coexist, the one with the newest event wins, so a late
//! cancellation of one of them shows the organization as canceled; the handler can then fetch the
//! customer's subscriptions from Stripe and apply the live one as a newer snapshot.

use serde::{Deserialize, Serialize};

use crate::pricing::{Interval, Plan};
use crate::store::PlanStatus;

/// Maps Stripe's subscription `status` string to ours; `None` for a status this code does not
/// know (the caller should treat the event as not understood rather than guess).
pub fn map_status(s: &str) -> Option<PlanStatus> {
    Some(match s {
        "trialing" => PlanStatus::Trialing,
        "active" => PlanStatus::Active,
        "past_due" => PlanStatus::PastDue,
        "unpaid" => PlanStatus::Unpaid,
        "incomplete" => PlanStatus::Incomplete,
        "incomplete_expired" => PlanStatus::IncompleteExpired,
        "canceled" => PlanStatus::Canceled,
        "paused" => PlanStatus::Paused,
        _ => return None,
    })
}

/// Rank of a status among events of the same second (see the module documentation): higher wins.
/// `deleted` (a `customer.subscription.deleted` event) outranks everything.
pub fn status_rank(status: PlanStatus, deleted: bool) -> u8 {
    if deleted {
        return 9;
    }
    match status {
        PlanStatus::None => 0,
        PlanStatus::Incomplete => 1,
        PlanStatus::Trialing => 2,
        PlanStatus::Active => 3,
        PlanStatus::PastDue => 4,
        PlanStatus::Unpaid => 5,
        PlanStatus::Paused => 6,
        PlanStatus::IncompleteExpired => 7,
        PlanStatus::Canceled => 8,
    }
}

fn is_terminal(status: PlanStatus) -> bool {
    matches!(status, PlanStatus::Canceled | PlanStatus::IncompleteExpired)
}

/// The total order of events: `(created, rank, event_id)`, compared field by field in that order
/// (the derived `Ord`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderKey {
    /// The event's `created`, Unix seconds.
    pub created: i64,
    /// [`status_rank`] of what the event says.
    pub rank: u8,
    /// The event's `id` (`evt_...`).
    pub event_id: String,
}

/// What one `customer.subscription.*` event says about one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    /// The event's `id` (`evt_...`): the final tiebreak of the ordering.
    pub event_id: String,
    /// The event's `created` (Unix seconds), NOT the subscription's own `created`: the ordering key.
    pub observed_at: i64,
    pub subscription_id: String,
    pub customer_id: String,
    /// Mapped with [`map_status`].
    pub status: PlanStatus,
    /// The (first) subscription item's price id.
    pub price_id: Option<String>,
    pub cancel_at_period_end: bool,
    /// From the subscription item (current API versions), else the subscription (older ones).
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    /// The subscription's `trial_end` (Unix seconds), when it has or had a trial.
    pub trial_end: Option<i64>,
    pub amount_cents: Option<u64>,
    pub currency: Option<String>,
    /// True for `customer.subscription.deleted`; implies a terminal status (`canceled` unless the
    /// snapshot says `incomplete_expired`).
    pub deleted: bool,
}

impl SubscriptionSnapshot {
    pub fn order_key(&self) -> OrderKey {
        OrderKey {
            created: self.observed_at,
            rank: status_rank(self.status, self.deleted),
            event_id: self.event_id.clone(),
        }
    }

    /// The status this snapshot stands for: a deleted subscription is terminal whatever it says.
    fn effective_status(&self) -> PlanStatus {
        if self.deleted && !is_terminal(self.status) {
            PlanStatus::Canceled
        } else {
            self.status
        }
    }
}

/// What an invoice payment event implies for its subscription's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceOutcome {
    /// `invoice.payment_failed`.
    PaymentFailed,
    /// `invoice.paid` or `invoice.payment_succeeded`.
    PaymentSucceeded,
}

/// An invoice payment event, reduced to what the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceSignal {
    /// The event's `id` (`evt_...`).
    pub event_id: String,
    /// The event's `created`, Unix seconds.
    pub created: i64,
    /// `invoice.parent.subscription_details.subscription` (current API versions).
    pub subscription_id: String,
    /// `invoice.customer`.
    pub customer_id: String,
    pub outcome: InvoiceOutcome,
}

impl InvoiceSignal {
    pub fn order_key(&self) -> OrderKey {
        let implied = match self.outcome {
            InvoiceOutcome::PaymentFailed => PlanStatus::PastDue,
            InvoiceOutcome::PaymentSucceeded => PlanStatus::Active,
        };
        OrderKey {
            created: self.created,
            rank: status_rank(implied, false),
            event_id: self.event_id.clone(),
        }
    }
}

/// One payment event of one subscription, kept in [`BillingState::payment_marks`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMark {
    pub subscription_id: String,
    pub key: OrderKey,
    /// True for a failed payment (a failed invoice, a `past_due` snapshot); false for an event
    /// that says the subscription is not past due.
    pub failed: bool,
}

impl PaymentMark {
    fn of_snapshot(event: &SubscriptionSnapshot, key: &OrderKey) -> Self {
        Self {
            subscription_id: event.subscription_id.clone(),
            key: key.clone(),
            failed: event.effective_status() == PlanStatus::PastDue,
        }
    }

    fn of_invoice(signal: &InvoiceSignal) -> Self {
        Self {
            subscription_id: signal.subscription_id.clone(),
            key: signal.order_key(),
            failed: signal.outcome == InvoiceOutcome::PaymentFailed,
        }
    }
}

/// `marks` with `mark` added, pruned: per subscription, the newest non-failed mark and the failed
/// marks newer than it; sorted, without duplicates. The result depends only on the set of marks
/// ever added, not on their order.
fn with_mark(marks: &[PaymentMark], mark: PaymentMark) -> Vec<PaymentMark> {
    let mut all: Vec<PaymentMark> = marks.iter().cloned().chain([mark]).collect();
    all.sort();
    all.dedup();
    let newest_ok = |subscription: &str| {
        all.iter()
            .filter(|m| m.subscription_id == subscription && !m.failed)
            .map(|m| &m.key)
            .max()
            .cloned()
    };
    let boundaries: Vec<(String, Option<OrderKey>)> = all
        .iter()
        .map(|m| (m.subscription_id.clone(), newest_ok(&m.subscription_id)))
        .collect();
    all.iter()
        .zip(boundaries)
        .filter(|(m, (_, boundary))| match boundary {
            None => true,
            Some(b) if m.failed => m.key > *b,
            Some(b) => m.key == *b,
        })
        .map(|(m, _)| m.clone())
        .collect()
}

/// When the current stretch of failed payments of `subscription` began: the oldest kept failure.
fn first_failure(marks: &[PaymentMark], subscription: &str) -> Option<i64> {
    marks
        .iter()
        .filter(|m| m.failed && m.subscription_id == subscription)
        .map(|m| m.key.created)
        .min()
}

/// The stored subscription state of an organization (persisted as camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingState {
    /// The subscription of the newest snapshot (before any snapshot: of the invoice signal).
    pub subscription_id: String,
    pub customer_id: String,
    /// The effective status: what the API shows and what gates features.
    pub status: PlanStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_id: Option<String>,
    pub cancel_at_period_end: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<i64>,
    /// The newest snapshot's `trial_end` (Unix seconds); `None` without a trial, and in items
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_end: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub deleted: bool,
    /// The status the newest snapshot said (before any invoice adjustment); `none` before any.
    pub snapshot_status: PlanStatus,
    /// The key of the newest snapshot applied; `None` while only invoice signals were seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_key: Option<OrderKey>,
    /// The newest invoice signal, kept only while it is newer than `snapshot_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_invoice: Option<InvoiceSignal>,
    /// While `status` is `past_due`: the `created` (Unix seconds) of the first failed payment of
    /// the current stretch; `None` otherwise, and in items written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub past_due_since: Option<i64>,
    /// What `past_due_since` is derived from (see the module documentation); empty in items
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payment_marks: Vec<PaymentMark>,
}

impl BillingState {
    /// The subscription has a price id that configuration does not know: `plan`/`interval` are
    /// empty. Worth a warning log (with the price id, which is not secret).
    pub fn unknown_price(&self) -> bool {
        self.price_id.is_some() && self.plan.is_none()
    }

    /// The newest key this state was built from (snapshot or invoice signal).
    pub fn latest_key(&self) -> Option<OrderKey> {
        let invoice = self.last_invoice.as_ref().map(InvoiceSignal::order_key);
        match (self.snapshot_key.clone(), invoice) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when `key` is an event already reflected in this state.
    fn has_seen(&self, key: &OrderKey) -> bool {
        self.snapshot_key.as_ref() == Some(key)
            || self
                .last_invoice
                .as_ref()
                .map(InvoiceSignal::order_key)
                .as_ref()
                == Some(key)
    }

    fn from_snapshot(
        event: &SubscriptionSnapshot,
        key: OrderKey,
        price_lookup: &dyn Fn(&str) -> Option<(Plan, Interval)>,
    ) -> Self {
        let (plan, interval) = event.price_id.as_deref().and_then(price_lookup).unzip();
        let status = event.effective_status();
        Self {
            subscription_id: event.subscription_id.clone(),
            customer_id: event.customer_id.clone(),
            status,
            plan,
            interval,
            price_id: event.price_id.clone(),
            cancel_at_period_end: event.cancel_at_period_end,
            current_period_start: event.current_period_start,
            current_period_end: event.current_period_end,
            trial_end: event.trial_end,
            amount_cents: event.amount_cents,
            currency: event.currency.clone(),
            deleted: event.deleted,
            snapshot_status: status,
            snapshot_key: Some(key),
            last_invoice: None,
            past_due_since: None,
            payment_marks: Vec::new(),
        }
    }

    fn from_invoice_only(signal: &InvoiceSignal) -> Self {
        Self {
            subscription_id: signal.subscription_id.clone(),
            customer_id: signal.customer_id.clone(),
            status: PlanStatus::None,
            plan: None,
            interval: None,
            price_id: None,
            cancel_at_period_end: false,
            current_period_start: None,
            current_period_end: None,
            trial_end: None,
            amount_cents: None,
            currency: None,
            deleted: false,
            snapshot_status: PlanStatus::None,
            snapshot_key: None,
            last_invoice: Some(signal.clone()),
            past_due_since: None,
            payment_marks: Vec::new(),
        }
    }

    /// This state with `marks` in place of its payment marks; `None` when they are the same.
    fn with_marks(&self, marks: Vec<PaymentMark>) -> Option<Self> {
        if marks == self.payment_marks {
            return None;
        }
        let mut next = self.clone();
        next.payment_marks = marks;
        next.recompute_status();
        Some(next)
    }

    /// Re-derives `status` from `snapshot_status` and the kept invoice signal.
    fn recompute_status(&mut self) {
        self.status = match (&self.snapshot_key, &self.last_invoice) {
            (None, _) => PlanStatus::None,
            (Some(_), Some(invoice)) if invoice.subscription_id == self.subscription_id => {
                invoice_effect(self.snapshot_status, invoice.outcome)
            }
            (Some(_), _) => self.snapshot_status,
        };
        // A newer invoice of another subscription can hide the payment that ended a stretch (the
        // known limit above): the status then still says past_due, counted from that snapshot.
        self.past_due_since = if self.status == PlanStatus::PastDue {
            first_failure(&self.payment_marks, &self.subscription_id)
                .or(self.snapshot_key.as_ref().map(|k| k.created))
        } else {
            None
        };
    }
}

fn invoice_effect(status: PlanStatus, outcome: InvoiceOutcome) -> PlanStatus {
    match (outcome, status) {
        (
            InvoiceOutcome::PaymentFailed,
            PlanStatus::Active | PlanStatus::Trialing | PlanStatus::PastDue,
        ) => PlanStatus::PastDue,
        (
            InvoiceOutcome::PaymentSucceeded,
            PlanStatus::PastDue | PlanStatus::Unpaid | PlanStatus::Incomplete,
        ) => PlanStatus::Active,
        (_, unchanged) => unchanged,
    }
}

/// Why an event leaves the state as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// The same event (same ordering key) is already reflected in the state: a redelivery.
    Duplicate,
    /// The state already reflects a newer event: an older snapshot, or an invoice signal older
    /// than the newest snapshot or than the invoice signal already kept.
    Stale,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::Duplicate => "duplicate",
            IgnoreReason::Stale => "stale",
        }
    }
}

/// The outcome of applying one event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a one-off return value, never stored in bulk; unboxed is simpler to match on"
)]
pub enum Transition {
    /// Store this state (it replaces the previous one entirely).
    Apply(BillingState),
    /// Leave the stored state as it is.
    Ignore(IgnoreReason),
}

/// Applies a subscription snapshot to the organization's stored state (`None` before the first
/// event). See the module documentation for the rules.
pub fn apply(
    current: Option<&BillingState>,
    event: &SubscriptionSnapshot,
    price_lookup: &dyn Fn(&str) -> Option<(Plan, Interval)>,
) -> Transition {
    let key = event.order_key();
    let marks = with_mark(
        current.map_or(&[], |c| c.payment_marks.as_slice()),
        PaymentMark::of_snapshot(event, &key),
    );
    let mut carried_invoice = None;
    if let Some(current) = current {
        if current.has_seen(&key) {
            return Transition::Ignore(IgnoreReason::Duplicate);
        }
        if let Some(snapshot_key) = &current.snapshot_key
            && key < *snapshot_key
        {
            return stale_unless_marked(current, marks);
        }
        carried_invoice = current.last_invoice.clone();
    }
    let mut next = BillingState::from_snapshot(event, key.clone(), price_lookup);
    next.last_invoice = carried_invoice.filter(|invoice| invoice.order_key() > key);
    next.payment_marks = marks;
    next.recompute_status();
    Transition::Apply(next)
}

/// An event too old for the snapshot and invoice parts: applied only when its payment mark
/// changes the marks (an earlier failure, say).
fn stale_unless_marked(current: &BillingState, marks: Vec<PaymentMark>) -> Transition {
    current
        .with_marks(marks)
        .map_or(Transition::Ignore(IgnoreReason::Stale), Transition::Apply)
}

/// Applies an invoice payment event (`invoice.payment_failed`, `invoice.paid`,
/// `invoice.payment_succeeded`) to the organization's stored state (`None` before the first
/// event). A signal is kept when it is newer than everything the state reflects; it changes the
/// effective status only as described in the module documentation. An older signal only adds its
/// payment mark.
pub fn apply_invoice(current: Option<&BillingState>, signal: &InvoiceSignal) -> Transition {
    let mark = PaymentMark::of_invoice(signal);
    let Some(current) = current else {
        let mut next = BillingState::from_invoice_only(signal);
        next.payment_marks = with_mark(&[], mark);
        return Transition::Apply(next);
    };
    let key = signal.order_key();
    if current.has_seen(&key) {
        return Transition::Ignore(IgnoreReason::Duplicate);
    }
    let marks = with_mark(&current.payment_marks, mark);
    let older_than_snapshot = current.snapshot_key.as_ref().is_some_and(|k| key < *k);
    let older_than_invoice = current
        .last_invoice
        .as_ref()
        .is_some_and(|kept| key < kept.order_key());
    if older_than_snapshot || older_than_invoice {
        return stale_unless_marked(current, marks);
    }
    if current.snapshot_key.is_none() {
        let mut next = BillingState::from_invoice_only(signal);
        next.payment_marks = marks;
        return Transition::Apply(next);
    }
    let mut next = current.clone();
    next.last_invoice = Some(signal.clone());
    next.payment_marks = marks;
    next.recompute_status();
    Transition::Apply(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUB_A: &str = "sub_1MowQVLkdIwHu7ixeRlqHVzs";
    const SUB_B: &str = "sub_1NewSubscriptionAfterCancel";
    const CUS: &str = "cus_NffrFeUfNV2Hib";

    fn lookup(price: &str) -> Option<(Plan, Interval)> {
        match price {
            "price_starter_monthly" => Some((Plan::Starter, Interval::Monthly)),
            "price_pro_monthly" => Some((Plan::Professional, Interval::Monthly)),
            "price_pro_yearly" => Some((Plan::Professional, Interval::Yearly)),
            "price_business_monthly" => Some((Plan::Business, Interval::Monthly)),
            _ => None,
        }
    }

    fn snap(event_id: &str, at: i64, sub: &str, status: PlanStatus) -> SubscriptionSnapshot {
        SubscriptionSnapshot {
            event_id: event_id.to_owned(),
            observed_at: at,
            subscription_id: sub.to_owned(),
            customer_id: CUS.to_owned(),
            status,
            price_id: Some("price_starter_monthly".to_owned()),
            cancel_at_period_end: false,
            current_period_start: Some(1_000),
            current_period_end: Some(1_000 + 30 * 86_400),
            trial_end: None,
            amount_cents: Some(2_900),
            currency: Some("usd".to_owned()),
            deleted: false,
        }
    }

    fn with_price(mut s: SubscriptionSnapshot, price: &str, cents: u64) -> SubscriptionSnapshot {
        s.price_id = Some(price.to_owned());
        s.amount_cents = Some(cents);
        s
    }

    fn deleted(mut s: SubscriptionSnapshot) -> SubscriptionSnapshot {
        s.deleted = true;
        s.status = PlanStatus::Canceled;
        s
    }

    fn invoice(event_id: &str, at: i64, sub: &str, outcome: InvoiceOutcome) -> InvoiceSignal {
        InvoiceSignal {
            event_id: event_id.to_owned(),
            created: at,
            subscription_id: sub.to_owned(),
            customer_id: CUS.to_owned(),
            outcome,
        }
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Sub(SubscriptionSnapshot),
        Inv(InvoiceSignal),
    }

    fn step(state: Option<BillingState>, event: &Ev) -> Option<BillingState> {
        let transition = match event {
            Ev::Sub(s) => apply(state.as_ref(), s, &lookup),
            Ev::Inv(i) => apply_invoice(state.as_ref(), i),
        };
        match transition {
            Transition::Apply(next) => Some(next),
            Transition::Ignore(_) => state,
        }
    }

    fn fold<'a>(events: impl IntoIterator<Item = &'a Ev>) -> Option<BillingState> {
        events.into_iter().fold(None, step)
    }

    fn applied(t: Transition) -> BillingState {
        match t {
            Transition::Apply(s) => s,
            Transition::Ignore(reason) => panic!("expected Apply, got Ignore({reason:?})"),
        }
    }

    /// checkout → created (incomplete) → active + invoice.paid in the same second → plan change →
    /// payment failed (invoice first, then the subscription update) → recovered → deleted.
    fn lifecycle() -> Vec<Ev> {
        use InvoiceOutcome::*;
        use PlanStatus as P;
        vec![
            Ev::Sub(snap("evt_01_created", 100, SUB_A, P::Incomplete)),
            Ev::Sub(snap("evt_02_updated", 101, SUB_A, P::Active)),
            Ev::Inv(invoice("evt_03_paid", 101, SUB_A, PaymentSucceeded)),
            Ev::Sub(with_price(
                snap("evt_04_plan", 5_000, SUB_A, P::Active),
                "price_pro_monthly",
                9_900,
            )),
            Ev::Inv(invoice("evt_05_failed", 9_000, SUB_A, PaymentFailed)),
            Ev::Sub(with_price(
                snap("evt_06_past_due", 9_001, SUB_A, P::PastDue),
                "price_pro_monthly",
                9_900,
            )),
            Ev::Inv(invoice("evt_07_paid", 12_000, SUB_A, PaymentSucceeded)),
            Ev::Sub(with_price(
                snap("evt_08_active", 12_000, SUB_A, P::Active),
                "price_pro_monthly",
                9_900,
            )),
            Ev::Sub(deleted(with_price(
                snap("evt_09_deleted", 20_000, SUB_A, P::Active),
                "price_pro_monthly",
                9_900,
            ))),
        ]
    }

    #[test]
    fn map_status_covers_stripe_statuses() {
        let cases = [
            ("trialing", PlanStatus::Trialing),
            ("active", PlanStatus::Active),
            ("past_due", PlanStatus::PastDue),
            ("unpaid", PlanStatus::Unpaid),
            ("incomplete", PlanStatus::Incomplete),
            ("incomplete_expired", PlanStatus::IncompleteExpired),
            ("canceled", PlanStatus::Canceled),
            ("paused", PlanStatus::Paused),
        ];
        for (s, status) in cases {
            assert_eq!(map_status(s), Some(status), "{s}");
        }
        for s in ["", "none", "cancelled", "Active", "ended", " active"] {
            assert_eq!(map_status(s), None, "{s:?}");
        }
    }

    #[test]
    fn realistic_lifecycle_in_order() {
        let events = lifecycle();
        let mut state = None;
        let mut statuses = Vec::new();
        for e in &events {
            state = step(state, e);
            let s = state.as_ref().map(|s| (s.status, s.plan));
            statuses.push(s);
        }
        use PlanStatus as P;
        let starter = Some(Plan::Starter);
        let pro = Some(Plan::Professional);
        assert_eq!(
            statuses,
            vec![
                Some((P::Incomplete, starter)),
                Some((P::Active, starter)),
                Some((P::Active, starter)), // invoice.paid while active: no change
                Some((P::Active, pro)),     // plan changed in the portal
                Some((P::PastDue, pro)),    // invoice.payment_failed
                Some((P::PastDue, pro)),    // subscription.updated past_due agrees
                Some((P::Active, pro)),     // invoice.paid recovers
                Some((P::Active, pro)),
                Some((P::Canceled, pro)),
            ]
        );
        let last = state.unwrap_or_else(|| panic!("state"));
        assert!(last.deleted);
        assert_eq!(last.subscription_id, SUB_A);
        assert_eq!(last.interval, Some(Interval::Monthly));
        assert_eq!(last.price_id.as_deref(), Some("price_pro_monthly"));
        assert_eq!(last.amount_cents, Some(9_900));
        assert_eq!(last.last_invoice, None);
        assert_eq!(
            last.snapshot_key,
            Some(OrderKey {
                created: 20_000,
                rank: 9,
                event_id: "evt_09_deleted".to_owned()
            })
        );
    }

    #[test]
    fn older_snapshot_ignored() {
        let active = applied(apply(
            None,
            &snap("evt_b", 200, SUB_A, PlanStatus::Active),
            &lookup,
        ));
        assert_eq!(
            apply(
                Some(&active),
                &snap("evt_a", 100, SUB_A, PlanStatus::PastDue),
                &lookup
            ),
            Transition::Ignore(IgnoreReason::Stale)
        );
        assert_eq!(
            apply(
                Some(&active),
                &snap("evt_b", 200, SUB_A, PlanStatus::Active),
                &lookup
            ),
            Transition::Ignore(IgnoreReason::Duplicate)
        );
    }

    #[test]
    fn deleted_not_revived_by_older_update() {
        let gone = applied(apply(
            None,
            &deleted(snap("evt_del", 300, SUB_A, PlanStatus::Active)),
            &lookup,
        ));
        assert_eq!(gone.status, PlanStatus::Canceled);
        for (id, at) in [("evt_upd", 250), ("evt_zzz", 300), ("evt_000", 300)] {
            assert_eq!(
                apply(
                    Some(&gone),
                    &snap(id, at, SUB_A, PlanStatus::Active),
                    &lookup
                ),
                Transition::Ignore(IgnoreReason::Stale),
                "{id} at {at}"
            );
        }
        // A late paid invoice of the canceled subscription is recorded but changes nothing.
        let after = applied(apply_invoice(
            Some(&gone),
            &invoice("evt_inv", 301, SUB_A, InvoiceOutcome::PaymentSucceeded),
        ));
        assert_eq!(after.status, PlanStatus::Canceled);
    }

    #[test]
    fn resubscribe_after_cancel() {
        let canceled = fold(&[Ev::Sub(deleted(snap(
            "evt_del",
            1_000,
            SUB_A,
            PlanStatus::Canceled,
        )))]);
        let resub = step(
            canceled,
            &Ev::Sub(with_price(
                snap("evt_new", 2_000, SUB_B, PlanStatus::Active),
                "price_business_monthly",
                29_900,
            )),
        )
        .unwrap_or_else(|| panic!("state"));
        assert_eq!(resub.subscription_id, SUB_B);
        assert_eq!(resub.status, PlanStatus::Active);
        assert_eq!(resub.plan, Some(Plan::Business));
        assert!(!resub.deleted);
        // Late events of the old subscription do not take over.
        assert_eq!(
            apply(
                Some(&resub),
                &snap("evt_old_upd", 900, SUB_A, PlanStatus::Active),
                &lookup
            ),
            Transition::Ignore(IgnoreReason::Stale)
        );
        assert_eq!(
            apply(
                Some(&resub),
                &deleted(snap("evt_del", 1_000, SUB_A, PlanStatus::Canceled)),
                &lookup
            ),
            Transition::Ignore(IgnoreReason::Stale)
        );
        // An invoice of the old subscription, even a newer one, does not touch the new one's status.
        let s = applied(apply_invoice(
            Some(&resub),
            &invoice("evt_old_inv", 2_500, SUB_A, InvoiceOutcome::PaymentFailed),
        ));
        assert_eq!(s.status, PlanStatus::Active);
        assert_eq!(s.subscription_id, SUB_B);
    }

    #[test]
    fn unknown_price_keeps_status_and_flags() {
        let s = applied(apply(
            None,
            &with_price(
                snap("evt_x", 10, SUB_A, PlanStatus::Active),
                "price_legacy_2019",
                500,
            ),
            &lookup,
        ));
        assert_eq!(s.status, PlanStatus::Active);
        assert_eq!(s.plan, None);
        assert_eq!(s.interval, None);
        assert_eq!(s.price_id.as_deref(), Some("price_legacy_2019"));
        assert!(s.unknown_price());

        let mut no_price = snap("evt_y", 11, SUB_A, PlanStatus::Active);
        no_price.price_id = None;
        let s = applied(apply(Some(&s), &no_price, &lookup));
        assert_eq!(s.plan, None);
        assert!(!s.unknown_price());

        let known = applied(apply(
            Some(&s),
            &with_price(
                snap("evt_z", 12, SUB_A, PlanStatus::Active),
                "price_pro_yearly",
                99_000,
            ),
            &lookup,
        ));
        assert_eq!(known.plan, Some(Plan::Professional));
        assert_eq!(known.interval, Some(Interval::Yearly));
        assert!(!known.unknown_price());
    }

    #[test]
    fn tie_at_same_second_terminal_wins() {
        let update = Ev::Sub(snap("evt_zzzz", 500, SUB_A, PlanStatus::Active));
        let delete = Ev::Sub(deleted(snap("evt_aaaa", 500, SUB_A, PlanStatus::Canceled)));
        let cancel = Ev::Sub(snap("evt_0000", 500, SUB_A, PlanStatus::Canceled));
        let a = fold([&update, &delete, &cancel]);
        let b = fold([&cancel, &delete, &update]);
        let c = fold([&delete, &update, &cancel]);
        assert_eq!(a, b);
        assert_eq!(a, c);
        let s = a.unwrap_or_else(|| panic!("state"));
        assert!(s.deleted);
        assert_eq!(s.status, PlanStatus::Canceled);
    }

    #[test]
    fn tie_at_same_second_lifecycle_rank_then_event_id() {
        // created (incomplete) and updated (active) in the same second: active wins either way.
        let created = Ev::Sub(snap("evt_zz", 100, SUB_A, PlanStatus::Incomplete));
        let updated = Ev::Sub(snap("evt_aa", 100, SUB_A, PlanStatus::Active));
        for order in [[&created, &updated], [&updated, &created]] {
            let s = fold(order).unwrap_or_else(|| panic!("state"));
            assert_eq!(s.status, PlanStatus::Active);
        }
        // Same second, same rank: the greater event id wins either way.
        let one = Ev::Sub(with_price(
            snap("evt_a1", 100, SUB_A, PlanStatus::Active),
            "price_pro_monthly",
            9_900,
        ));
        let two = Ev::Sub(with_price(
            snap("evt_a2", 100, SUB_A, PlanStatus::Active),
            "price_business_monthly",
            29_900,
        ));
        for order in [[&one, &two], [&two, &one]] {
            let s = fold(order).unwrap_or_else(|| panic!("state"));
            assert_eq!(s.plan, Some(Plan::Business));
        }
    }

    #[test]
    fn payment_failed_and_succeeded() {
        use InvoiceOutcome::*;
        let active = applied(apply(
            None,
            &snap("evt_1", 100, SUB_A, PlanStatus::Active),
            &lookup,
        ));
        let failed = applied(apply_invoice(
            Some(&active),
            &invoice("evt_2", 200, SUB_A, PaymentFailed),
        ));
        assert_eq!(failed.status, PlanStatus::PastDue);
        assert_eq!(failed.snapshot_status, PlanStatus::Active);
        // Redelivery; an older invoice; an invoice older than the snapshot.
        assert_eq!(
            apply_invoice(Some(&failed), &invoice("evt_2", 200, SUB_A, PaymentFailed)),
            Transition::Ignore(IgnoreReason::Duplicate)
        );
        // An older success changes no status, but it is recorded: the stretch of failures began
        // after it (a failure older still would not count).
        let older_success = applied(apply_invoice(
            Some(&failed),
            &invoice("evt_0", 150, SUB_A, PaymentSucceeded),
        ));
        assert_eq!(older_success.status, PlanStatus::PastDue);
        assert_eq!(older_success.last_invoice, failed.last_invoice);
        assert_eq!(older_success.past_due_since, Some(200));
        assert_eq!(
            apply_invoice(
                Some(&older_success),
                &invoice("evt_00", 120, SUB_A, PaymentFailed)
            ),
            Transition::Ignore(IgnoreReason::Stale)
        );
        assert_eq!(
            apply_invoice(Some(&active), &invoice("evt_0", 50, SUB_A, PaymentFailed)),
            Transition::Ignore(IgnoreReason::Stale)
        );
        let paid = applied(apply_invoice(
            Some(&failed),
            &invoice("evt_3", 300, SUB_A, PaymentSucceeded),
        ));
        assert_eq!(paid.status, PlanStatus::Active);
        // A newer snapshot supersedes the invoice signal.
        let unpaid = applied(apply(
            Some(&paid),
            &snap("evt_4", 400, SUB_A, PlanStatus::Unpaid),
            &lookup,
        ));
        assert_eq!(unpaid.status, PlanStatus::Unpaid);
        assert_eq!(unpaid.last_invoice, None);
        // Failure while unpaid stays unpaid; success recovers.
        let still = applied(apply_invoice(
            Some(&unpaid),
            &invoice("evt_5", 500, SUB_A, PaymentFailed),
        ));
        assert_eq!(still.status, PlanStatus::Unpaid);
        let recovered = applied(apply_invoice(
            Some(&still),
            &invoice("evt_6", 600, SUB_A, PaymentSucceeded),
        ));
        assert_eq!(recovered.status, PlanStatus::Active);
    }

    #[test]
    fn invoice_effects_follow_stripe() {
        use InvoiceOutcome::*;
        use PlanStatus as P;
        // A failed first invoice leaves incomplete; a $0 trial invoice leaves trialing.
        for (status, outcome, expected) in [
            (P::Incomplete, PaymentFailed, P::Incomplete),
            (P::Incomplete, PaymentSucceeded, P::Active),
            (P::Trialing, PaymentSucceeded, P::Trialing),
            (P::Trialing, PaymentFailed, P::PastDue),
            (P::Active, PaymentSucceeded, P::Active),
            (P::PastDue, PaymentFailed, P::PastDue),
            (P::Paused, PaymentFailed, P::Paused),
            (P::Canceled, PaymentSucceeded, P::Canceled),
            (P::IncompleteExpired, PaymentSucceeded, P::IncompleteExpired),
        ] {
            let base = applied(apply(None, &snap("evt_1", 100, SUB_A, status), &lookup));
            let next = applied(apply_invoice(
                Some(&base),
                &invoice("evt_2", 200, SUB_A, outcome),
            ));
            assert_eq!(next.status, expected, "{status:?} + {outcome:?}");
        }
    }

    #[test]
    fn invoice_before_any_snapshot_is_kept() {
        use InvoiceOutcome::*;
        let only = applied(apply_invoice(
            None,
            &invoice("evt_f", 200, SUB_A, PaymentFailed),
        ));
        assert_eq!(only.status, PlanStatus::None);
        assert_eq!(only.subscription_id, SUB_A);
        assert_eq!(only.snapshot_key, None);
        // The subscription event that arrives later is older: the failure still applies.
        let s = applied(apply(
            Some(&only),
            &snap("evt_c", 100, SUB_A, PlanStatus::Active),
            &lookup,
        ));
        assert_eq!(s.status, PlanStatus::PastDue);
        // Same result in order.
        let in_order = fold(&[
            Ev::Sub(snap("evt_c", 100, SUB_A, PlanStatus::Active)),
            Ev::Inv(invoice("evt_f", 200, SUB_A, PaymentFailed)),
        ]);
        assert_eq!(in_order, Some(s));
    }

    #[test]
    fn state_round_trips_as_camel_case_json() {
        let state = fold(&lifecycle()[..5]).unwrap_or_else(|| panic!("state"));
        let json = serde_json::to_value(&state).unwrap_or_default();
        for field in [
            "subscriptionId",
            "customerId",
            "status",
            "plan",
            "interval",
            "priceId",
            "cancelAtPeriodEnd",
            "currentPeriodStart",
            "currentPeriodEnd",
            "amountCents",
            "currency",
            "deleted",
            "snapshotStatus",
            "snapshotKey",
            "lastInvoice",
        ] {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        assert_eq!(json["status"], "past_due");
        assert_eq!(json["plan"], "PROFESSIONAL");
        assert_eq!(json["interval"], "monthly");
        assert_eq!(json["snapshotKey"]["eventId"], "evt_04_plan");
        assert_eq!(json["lastInvoice"]["outcome"], "payment_failed");
        let back: BillingState =
            serde_json::from_value(json).unwrap_or_else(|e| panic!("deserialize: {e}"));
        assert_eq!(back, state);
    }

    #[test]
    fn past_due_since_is_the_first_failure_and_clears_on_recovery() {
        use InvoiceOutcome::*;
        let active = Ev::Sub(snap("evt_1", 100, SUB_A, PlanStatus::Active));
        let first = Ev::Inv(invoice("evt_2", 1_000, SUB_A, PaymentFailed));
        let update = Ev::Sub(snap("evt_3", 1_001, SUB_A, PlanStatus::PastDue));
        let retry = Ev::Inv(invoice("evt_4", 90_000, SUB_A, PaymentFailed));
        for order in [
            [&active, &first, &update, &retry],
            [&retry, &update, &first, &active],
            [&update, &retry, &active, &first],
        ] {
            let s = fold(order).unwrap_or_else(|| panic!("state"));
            assert_eq!(s.status, PlanStatus::PastDue);
            assert_eq!(s.past_due_since, Some(1_000), "{order:?}");
        }
        // The first failure delivered after the retry's is applied although it is stale.
        let late = fold([&active, &retry]).unwrap_or_else(|| panic!("state"));
        assert_eq!(late.past_due_since, Some(90_000));
        let Ev::Inv(first_signal) = &first else {
            panic!("invoice")
        };
        let s = applied(apply_invoice(Some(&late), first_signal));
        assert_eq!(s.past_due_since, Some(1_000));
        assert_eq!(s.last_invoice.as_ref().map(|i| i.created), Some(90_000));
        // A successful payment ends the stretch; the next failure starts a new one.
        let paid = Ev::Inv(invoice("evt_5", 100_000, SUB_A, PaymentSucceeded));
        let again = Ev::Inv(invoice("evt_6", 200_000, SUB_A, PaymentFailed));
        let recovered =
            fold([&active, &first, &update, &retry, &paid]).unwrap_or_else(|| panic!("state"));
        assert_eq!(recovered.status, PlanStatus::Active);
        assert_eq!(recovered.past_due_since, None);
        let s = fold([&again, &paid, &retry, &first, &update, &active])
            .unwrap_or_else(|| panic!("state"));
        assert_eq!(s.status, PlanStatus::PastDue);
        assert_eq!(s.past_due_since, Some(200_000));
        // Unpaid after the retries: no longer past due, so no grace start.
        let unpaid = Ev::Sub(snap("evt_7", 95_000, SUB_A, PlanStatus::Unpaid));
        let s = fold([&active, &first, &unpaid, &retry]).unwrap_or_else(|| panic!("state"));
        assert_eq!(s.status, PlanStatus::Unpaid);
        assert_eq!(s.past_due_since, None);
    }

    #[test]
    fn the_newest_snapshots_trial_end_is_kept_and_old_items_read_without_one() {
        let mut trialing = snap("evt_t1", 1_000, SUB_A, PlanStatus::Trialing);
        trialing.trial_end = Some(1_000 + 14 * 86_400);
        let s = applied(apply(None, &trialing, &lookup));
        assert_eq!(s.status, PlanStatus::Trialing);
        assert_eq!(s.trial_end, Some(1_000 + 14 * 86_400));
        // An invoice keeps it; the converted subscription still names when its trial ended.
        let s = applied(apply_invoice(
            Some(&s),
            &invoice("evt_t2", 1_001, SUB_A, InvoiceOutcome::PaymentSucceeded),
        ));
        assert_eq!(s.trial_end, Some(1_000 + 14 * 86_400));
        let mut active = snap("evt_t3", 1_000 + 14 * 86_400, SUB_A, PlanStatus::Active);
        active.trial_end = trialing.trial_end;
        let s = applied(apply(Some(&s), &active, &lookup));
        assert_eq!(
            (s.status, s.trial_end),
            (PlanStatus::Active, Some(1_000 + 14 * 86_400))
        );
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["trialEnd"], 1_000 + 14 * 86_400);
        // Items written before trial_end was recorded read as without a trial.
        let mut json = json;
        if let Some(object) = json.as_object_mut() {
            object.remove("trialEnd");
        }
        let old: BillingState =
            serde_json::from_value(json).unwrap_or_else(|e| panic!("deserialize: {e}"));
        assert_eq!(old.trial_end, None);
        assert_eq!(old.status, PlanStatus::Active);
    }

    #[test]
    fn items_written_before_payment_marks_still_read() {
        let state = fold(&lifecycle()[..5]).unwrap_or_else(|| panic!("state"));
        let mut json = serde_json::to_value(&state).unwrap_or_default();
        if let Some(object) = json.as_object_mut() {
            object.remove("pastDueSince");
            object.remove("paymentMarks");
        }
        let old: BillingState =
            serde_json::from_value(json).unwrap_or_else(|e| panic!("deserialize: {e}"));
        assert_eq!(old.status, PlanStatus::PastDue);
        assert_eq!(old.past_due_since, None);
        assert!(old.payment_marks.is_empty());
        // The next failure of the stretch starts recording it.
        let next = applied(apply_invoice(
            Some(&old),
            &invoice("evt_06_retry", 9_500, SUB_A, InvoiceOutcome::PaymentFailed),
        ));
        assert_eq!(next.past_due_since, Some(9_500));
    }

    /// Folds `events` in the order given by `order` (indices, possibly repeated).
    fn fold_indices(events: &[Ev], order: &[usize]) -> Option<BillingState> {
        fold(order.iter().filter_map(|&i| events.get(i)))
    }

    /// All indices of `n` events once each, plus `extra` duplicates, shuffled.
    fn shuffled_with_duplicates(n: usize) -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0..n, 0..=n).prop_flat_map(move |extra| {
            let all: Vec<usize> = (0..n).chain(extra).collect();
            Just(all).prop_shuffle()
        })
    }

    /// The lifecycle plus a re-subscribe with a same-second tie and invoices of both subscriptions.
    fn extended_history() -> Vec<Ev> {
        use InvoiceOutcome::*;
        let mut events = lifecycle();
        events.extend([
            Ev::Inv(invoice("evt_10_final", 20_000, SUB_A, PaymentSucceeded)),
            Ev::Sub(snap(
                "evt_11_b_created",
                30_000,
                SUB_B,
                PlanStatus::Incomplete,
            )),
            Ev::Sub(with_price(
                snap("evt_12_b_active", 30_000, SUB_B, PlanStatus::Active),
                "price_business_monthly",
                29_900,
            )),
            Ev::Inv(invoice("evt_13_b_paid", 30_000, SUB_B, PaymentSucceeded)),
            Ev::Inv(invoice("evt_14_b_failed", 40_000, SUB_B, PaymentFailed)),
        ]);
        events
    }

    #[test]
    fn extended_history_final_state() {
        let s = fold(&extended_history()).unwrap_or_else(|| panic!("state"));
        assert_eq!(s.subscription_id, SUB_B);
        assert_eq!(s.plan, Some(Plan::Business));
        assert_eq!(s.snapshot_status, PlanStatus::Active);
        assert_eq!(s.status, PlanStatus::PastDue);
    }

    fn arb_status() -> impl Strategy<Value = PlanStatus> {
        prop_oneof![
            Just(PlanStatus::Incomplete),
            Just(PlanStatus::Trialing),
            Just(PlanStatus::Active),
            Just(PlanStatus::PastDue),
            Just(PlanStatus::Unpaid),
            Just(PlanStatus::Paused),
            Just(PlanStatus::IncompleteExpired),
            Just(PlanStatus::Canceled),
        ]
    }

    /// One random event; `i` makes the event id unique (as Stripe's are). Few seconds and two
    /// subscriptions, so ties and subscription switches are frequent.
    fn arb_event(i: usize) -> impl Strategy<Value = Ev> {
        let sub = prop_oneof![Just(SUB_A), Just(SUB_B)];
        let price = prop_oneof![
            Just(Some("price_starter_monthly")),
            Just(Some("price_pro_yearly")),
            Just(Some("price_unknown")),
            Just(None),
        ];
        let snapshot = (
            0i64..6,
            sub.clone(),
            arb_status(),
            price,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(at, sub, status, price, del, cape)| {
                let mut s = snap(&format!("evt_{i:03}"), at, sub, status);
                s.price_id = price.map(str::to_owned);
                s.deleted = del;
                s.cancel_at_period_end = cape;
                Ev::Sub(s)
            });
        let outcome = prop_oneof![
            Just(InvoiceOutcome::PaymentFailed),
            Just(InvoiceOutcome::PaymentSucceeded)
        ];
        let inv = (0i64..6, sub, outcome).prop_map(move |(at, sub, outcome)| {
            Ev::Inv(invoice(&format!("evt_{i:03}"), at, sub, outcome))
        });
        prop_oneof![3 => snapshot, 2 => inv]
    }

    fn arb_events() -> impl Strategy<Value = Vec<Ev>> {
        (1usize..12).prop_flat_map(|n| (0..n).map(arb_event).collect::<Vec<_>>())
    }

    proptest! {
        #[test]
        fn any_order_and_duplicates_of_history_give_same_state(
            order in shuffled_with_duplicates(extended_history().len())
        ) {
            let events = extended_history();
            let in_order = fold(&events);
            prop_assert_eq!(fold_indices(&events, &order), in_order);
        }

        #[test]
        fn any_order_and_duplicates_of_random_events_give_same_state(
            (events, order) in arb_events().prop_flat_map(|events| {
                let n = events.len();
                (Just(events), shuffled_with_duplicates(n))
            })
        ) {
            let in_order = fold(&events);
            prop_assert_eq!(fold_indices(&events, &order), in_order);
        }

        #[test]
        fn past_due_since_is_set_exactly_while_past_due_and_is_a_failure_of_the_subscription(
            events in arb_events()
        ) {
            if let Some(s) = fold(&events) {
                prop_assert_eq!(s.past_due_since.is_some(), s.status == PlanStatus::PastDue);
                if let Some(since) = s.past_due_since {
                    let failed_at = events.iter().any(|e| match e {
                        Ev::Inv(i) => i.created == since
                            && i.outcome == InvoiceOutcome::PaymentFailed
                            && i.subscription_id == s.subscription_id,
                        Ev::Sub(x) => x.observed_at == since
                            && x.effective_status() == PlanStatus::PastDue
                            && x.subscription_id == s.subscription_id,
                    });
                    prop_assert!(failed_at, "{since} is no failure of {}", s.subscription_id);
                }
            }
        }
    }
}
