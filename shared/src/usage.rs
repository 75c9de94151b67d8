//! Usage maths: the pure, storage-free part of usage metering (issue 5).
//!
//! - [`billable_minutes`]: a call's billed minutes, `ceil(seconds / 60)`.
//! - [`validate_call`]: checks one `POST /api/usage/calls` body and names the offending JSON field.
//! - [`Period`], [`calendar_month`], [`subscription_period_containing`], [`next_period`]: the
//!   billing period a call belongs to, half-open `[start, end)` in UTC, Stripe-style anchored.
//! - [`thresholds_crossed`]: which usage alerts (80 % / 100 % of included minutes) one increment fires.
//! - [`summarize`]: the `GET /api/billing/usage` figures, reusing [`crate::pricing`] for money.
//! - [`billing_period_for_late_usage`]: where usage of an already billed period is counted.
//!
//! Everything here is integer maths on its inputs: no clock, no I/O, no floats, no panics. Times
//! outside what [`time`] can represent saturate to its first or last representable instant.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Date, Duration, Month, OffsetDateTime, Time, UtcOffset};

use crate::billing::state::BillingState;
use crate::pricing::{self, Interval, Plan};
use crate::store::is_live;

/// Longest call accepted (24 h); anything longer is a client bug, not a call.
pub const MAX_CALL_SECONDS: u64 = 86_400;

/// How far in the future `endedAt` may lie, to tolerate clock differences between services.
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// Longest accepted call id, in characters.
pub const MAX_CALL_ID_LEN: usize = 128;

/// An anchor whose monthly periods are exactly the UTC calendar months (any first of a month at
/// midnight UTC works): `subscription_period_containing(CALENDAR_MONTH_ANCHOR, Interval::Monthly, t)
/// == calendar_month(t)`, so [`next_period`] also steps calendar months with it.
pub const CALENDAR_MONTH_ANCHOR: OffsetDateTime = datetime!(2000-01-01 0:00 UTC);

/// Billed minutes of a call: `ceil(seconds / 60)`; 0 seconds is 0 minutes (but still one call).
/// Never overflows (`u64::MAX` seconds gives `u64::MAX / 60 + 1`).
pub fn billable_minutes(duration_seconds: u64) -> u64 {
    duration_seconds.div_ceil(60)
}

/// Minutes included in a plan for one period; no plan (no subscription) includes none.
pub fn included_minutes(plan: Option<Plan>) -> u64 {
    plan.map_or(0, |p| u64::from(pricing::definition(p).limits.max_minutes))
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Why a usage event was rejected (400); [`CallValidationError::field`] names the JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CallValidationError {
    #[error("organizationId is required")]
    MissingOrganizationId,
    #[error("callId is required")]
    MissingCallId,
    #[error("callId must be at most {MAX_CALL_ID_LEN} characters")]
    CallIdTooLong,
    #[error("callId must be printable ASCII without spaces")]
    CallIdInvalid,
    #[error("durationSeconds must not be negative")]
    NegativeDuration,
    #[error("durationSeconds must be at most {max}")]
    DurationTooLong { max: u64 },
    #[error("endedAt must be an RFC 3339 date-time")]
    EndedAtUnparseable,
    #[error("endedAt is in the future")]
    EndedInFuture,
    #[error("endedAt must lie between the years 0000 and 9999 in UTC")]
    EndedAtOutOfRange,
    #[error("endedAt is before the oldest billing period still open")]
    EndedBeforeOpenPeriods,
}

impl CallValidationError {
    /// The request body's JSON field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::MissingOrganizationId => "organizationId",
            Self::MissingCallId | Self::CallIdTooLong | Self::CallIdInvalid => "callId",
            Self::NegativeDuration | Self::DurationTooLong { .. } => "durationSeconds",
            Self::EndedAtUnparseable
            | Self::EndedInFuture
            | Self::EndedAtOutOfRange
            | Self::EndedBeforeOpenPeriods => "endedAt",
        }
    }
}

/// A usage event that passed [`validate_call`]; `ended_at` is normalised to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValidCall {
    pub duration_seconds: u64,
    pub minutes: u64,
    pub ended_at: OffsetDateTime,
}

/// Checks one usage event, fields in body order: `organizationId` (non-blank), `callId`
/// (1–[`MAX_CALL_ID_LEN`] printable ASCII characters, no spaces), `durationSeconds`
/// (0..=[`MAX_CALL_SECONDS`]), `endedAt` (RFC 3339, at most [`MAX_FUTURE_SKEW`] after `now`;
/// exactly the skew is accepted; in UTC within the years 0000–9999, so it can be written back as
/// RFC 3339). How far in the past `endedAt` may lie depends on the organization's billing
/// periods: [`check_ended_at_is_open`].
pub fn validate_call(
    organization_id: &str,
    call_id: &str,
    duration_seconds: i64,
    ended_at: &str,
    now: OffsetDateTime,
) -> Result<ValidCall, CallValidationError> {
    if organization_id.trim().is_empty() {
        return Err(CallValidationError::MissingOrganizationId);
    }
    if call_id.is_empty() {
        return Err(CallValidationError::MissingCallId);
    }
    if !call_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CallValidationError::CallIdInvalid);
    }
    // All ASCII from here on, so bytes are characters.
    if call_id.len() > MAX_CALL_ID_LEN {
        return Err(CallValidationError::CallIdTooLong);
    }
    let duration_seconds =
        u64::try_from(duration_seconds).map_err(|_| CallValidationError::NegativeDuration)?;
    if duration_seconds > MAX_CALL_SECONDS {
        return Err(CallValidationError::DurationTooLong {
            max: MAX_CALL_SECONDS,
        });
    }
    let ended_at = OffsetDateTime::parse(ended_at, &Rfc3339)
        .map_err(|_| CallValidationError::EndedAtUnparseable)?;
    // Offset-aware comparison; no addition on `now`, so no overflow near the end of time.
    if ended_at - now > MAX_FUTURE_SKEW {
        return Err(CallValidationError::EndedInFuture);
    }
    // Only a year-0000 value with a positive offset could leave the representable range.
    let ended_at = ended_at
        .checked_to_offset(UtcOffset::UTC)
        .ok_or(CallValidationError::EndedAtOutOfRange)?;
    // `0000-01-01T00:30:00+01:00` is year -1 in UTC, which RFC 3339 cannot write.
    if ended_at.format(&Rfc3339).is_err() {
        return Err(CallValidationError::EndedAtOutOfRange);
    }
    Ok(ValidCall {
        duration_seconds,
        minutes: billable_minutes(duration_seconds),
        ended_at,
    })
}

// ---------------------------------------------------------------------------------------------
// Billing periods
// ---------------------------------------------------------------------------------------------

/// A billing period, half-open `[start, end)`, both in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl Period {
    /// `start <= t < end` (offset-aware, so `t` need not be UTC).
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.start <= t && t < self.end
    }

    /// Stable, lexicographically sortable id of the period: its start as
    /// `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds), e.g. `"2026-11-01T00:00:00Z"`. Sub-seconds
    /// are dropped, which cannot merge two periods of one anchor (they are ≥ 28 days apart).
    /// Sortable for years 0000–9999.
    pub fn key(&self) -> String {
        let s = to_utc(self.start);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            s.year(),
            u8::from(s.month()),
            s.day(),
            s.hour(),
            s.minute(),
            s.second()
        )
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = Period {
            start: self.end,
            end: self.end,
        };
        write!(f, "[{}, {})", self.key(), end.key())
    }
}

/// The UTC calendar month containing `t`: the period of an organization without subscription.
pub fn calendar_month(t: OffsetDateTime) -> Period {
    subscription_period_containing(CALENDAR_MONTH_ANCHOR, Interval::Monthly, t)
}

/// The Stripe-style subscription period containing `t` for a billing cycle anchored at `anchor`.
///
/// Periods start every month (monthly) or every year in the anchor's month (yearly), before and
/// after the anchor alike (so times before the anchor work too), on the anchor's day of month
/// clamped to that month's length, at the anchor's UTC time of day. Clamping always
/// starts from the anchor's own day: Jan 31 → Feb 28/29 → Mar 31 → Apr 30; a Feb 29 yearly
/// anchor gives Feb 28 in common years and Feb 29 again in leap years. The period ends where
/// next period starts. Constant time: the candidate is the period starting in `t`'s own month
/// (or year), corrected by at most one step back; no loop over periods.
pub fn subscription_period_containing(
    anchor: OffsetDateTime,
    interval: Interval,
    t: OffsetDateTime,
) -> Period {
    let anchor = to_utc(anchor);
    let t = to_utc(t);
    let cycle = Cycle::new(anchor, interval);
    // The period starting in t's own month (year), or else the one before it.
    let mut k = cycle.index_of(t);
    if cycle.start(k) > t {
        k -= 1;
    }
    Period {
        start: cycle.start(k),
        end: cycle.start(k + 1),
    }
}

/// The period after `p` for that anchor and interval: the one containing `p.end`, so
/// `next_period(p).start == p.end` whenever `p` is one of the anchor's periods (use
/// [`CALENDAR_MONTH_ANCHOR`] with [`Interval::Monthly`] for calendar months).
pub fn next_period(p: &Period, anchor: OffsetDateTime, interval: Interval) -> Period {
    subscription_period_containing(anchor, interval, p.end)
}

/// Which period a usage event is counted (and billed) in.
///
/// Rule: if the event's own period has already been billed — `event_period.end <= billed_through`,
/// where `billed_through` is the end of the last period whose overage was invoiced — the event
/// is counted in `current` (the open period), so it is carried into the next bill: never dropped,
/// never billed twice. Otherwise (nothing billed yet, or its period not yet billed, including a
/// closed period still waiting for its invoice) it is counted in its own period.
pub fn billing_period_for_late_usage(
    event_period: &Period,
    billed_through: Option<OffsetDateTime>,
    current: &Period,
) -> Period {
    match billed_through {
        Some(billed) if event_period.end <= billed => *current,
        _ => *event_period,
    }
}

/// Refuses a call that ended before `oldest_open`, the oldest billing period still open: the
/// period before the current one. A period's invoice is created when it closes, so the period
/// before the open one may still be waiting for it (its late calls are counted in it, or carried
/// into the current one once it is billed: [`billing_period_for_late_usage`]); every older period
/// has been invoiced, so a call from it could only be counted where it does not belong.
pub fn check_ended_at_is_open(
    ended_at: OffsetDateTime,
    oldest_open: &Period,
) -> Result<(), CallValidationError> {
    if ended_at < oldest_open.start {
        Err(CallValidationError::EndedBeforeOpenPeriods)
    } else {
        Ok(())
    }
}

/// The first instant `time` can represent (`Date::MIN`, midnight, UTC).
const MIN_INSTANT: OffsetDateTime = Date::MIN.midnight().assume_utc();
/// The last instant `time` can represent (`Date::MAX`, `Time::MAX`, UTC).
const MAX_INSTANT: OffsetDateTime = Date::MAX.with_time(Time::MAX).assume_utc();

/// `t` in UTC, saturating when the UTC instant is outside the representable range.
fn to_utc(t: OffsetDateTime) -> OffsetDateTime {
    t.checked_to_offset(UtcOffset::UTC)
        .unwrap_or(if t.year() > 0 {
            MAX_INSTANT
        } else {
            MIN_INSTANT
        })
}

/// The anchor's repeating start dates.
struct Cycle {
    interval: Interval,
    /// Anchor month (1–12), used for yearly cycles.
    month: Month,
    /// Anchor day of month, before clamping.
    day: u8,
    time: Time,
}

impl Cycle {
    fn new(anchor: OffsetDateTime, interval: Interval) -> Self {
        Cycle {
            interval,
            month: anchor.month(),
            day: anchor.day(),
            time: anchor.time(),
        }
    }

    /// Months (monthly) or years (yearly) since year 0 of the UTC time `t`.
    fn index_of(&self, t: OffsetDateTime) -> i64 {
        let year = i64::from(t.year());
        match self.interval {
            Interval::Monthly => year * 12 + i64::from(u8::from(t.month())) - 1,
            Interval::Yearly => year,
        }
    }

    /// Start of the cycle with index `index` (see [`Cycle::index_of`]); saturates out of range.
    fn start(&self, index: i64) -> OffsetDateTime {
        let (year, month) = match self.interval {
            Interval::Monthly => (index.div_euclid(12), index.rem_euclid(12) + 1),
            Interval::Yearly => (index, i64::from(u8::from(self.month))),
        };
        let saturated = if index > 0 { MAX_INSTANT } else { MIN_INSTANT };
        let (Ok(year), Some(month)) = (
            i32::try_from(year),
            u8::try_from(month)
                .ok()
                .and_then(|m| Month::try_from(m).ok()),
        ) else {
            return saturated;
        };
        let day = self.day.min(month.length(year));
        Date::from_calendar_date(year, month, day)
            .map_or(saturated, |d| d.with_time(self.time).assume_utc())
    }
}

// ---------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------

/// A usage alert level. Serialized (and used in store keys) as the percentage string: `"80"`,
/// `"100"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Threshold {
    /// Usage reached 80 % of the included minutes (rounded up to a whole minute).
    #[serde(rename = "80")]
    Warning80,
    /// Usage reached all included minutes; further minutes are overage.
    #[serde(rename = "100")]
    Exhausted100,
}

impl Threshold {
    pub const ALL: [Threshold; 2] = [Threshold::Warning80, Threshold::Exhausted100];

    /// The wire and key name: `"80"` or `"100"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Threshold::Warning80 => "80",
            Threshold::Exhausted100 => "100",
        }
    }

    pub fn percent(self) -> u8 {
        match self {
            Threshold::Warning80 => 80,
            Threshold::Exhausted100 => 100,
        }
    }

    /// The usage (minutes) at which this threshold is reached: `ceil(percent × included / 100)`.
    pub fn boundary(self, included_minutes: u64) -> u64 {
        let scaled = u128::from(included_minutes) * u128::from(self.percent());
        // At most `included_minutes`, so it always fits.
        u64::try_from(scaled.div_ceil(100)).unwrap_or(included_minutes)
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Thresholds whose boundary lies in `(before_minutes, after_minutes]`, in ascending order: the
/// alerts a usage increment from `before` to `after` fires. Nothing when `included_minutes` is 0
/// (no plan) or when usage did not grow. Over any monotone sequence of counters, each threshold
/// is therefore reported at most once per period.
pub fn thresholds_crossed(
    included_minutes: u64,
    before_minutes: u64,
    after_minutes: u64,
) -> Vec<Threshold> {
    if included_minutes == 0 {
        return Vec::new();
    }
    Threshold::ALL
        .into_iter()
        .filter(|t| {
            let b = t.boundary(included_minutes);
            before_minutes < b && b <= after_minutes
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

/// The usage figures of `GET /api/billing/usage`. `overageCost` is in US cents (integer);
/// `overageCostFormatted` is the same amount as `"$1.20"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSummary {
    pub minutes: u64,
    pub calls: u64,
    pub minutes_included: u64,
    pub overage_minutes: u64,
    #[serde(rename = "overageCost")]
    pub overage_cost_cents: u64,
    pub overage_cost_formatted: String,
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub period_end: OffsetDateTime,
}

/// Summary of one period's counters against `included` minutes, priced by [`crate::pricing`].
pub fn summarize(minutes: u64, calls: u64, included: u64, period: &Period) -> UsageSummary {
    let overage_minutes = pricing::overage_minutes(minutes, included);
    let overage_cost_cents = pricing::overage_cost_cents(overage_minutes);
    UsageSummary {
        minutes,
        calls,
        minutes_included: included,
        overage_minutes,
        overage_cost_cents,
        overage_cost_formatted: pricing::format_usd_cents(overage_cost_cents),
        period_start: period.start,
        period_end: period.end,
    }
}

/// The billing period of an organization containing `t`: its subscription's periods while one is
/// live (anchored on the stored period start), otherwise UTC calendar months.
pub fn organization_period(billing: Option<&BillingState>, t: OffsetDateTime) -> Period {
    let anchored = billing
        .filter(|b| is_live(b.status))
        .and_then(|b| Some((b.current_period_start?, b.interval?)))
        .and_then(|(start, interval)| {
            Some((OffsetDateTime::from_unix_timestamp(start).ok()?, interval))
        });
    match anchored {
        Some((anchor, interval)) => subscription_period_containing(anchor, interval, t),
        None => calendar_month(t),
    }
}

/// The oldest billing period still open at `now`: the one before the current period (see
/// [`check_ended_at_is_open`]).
pub fn oldest_open_period(billing: Option<&BillingState>, now: OffsetDateTime) -> Period {
    let current = organization_period(billing, now);
    match current.start.checked_sub(time::Duration::nanoseconds(1)) {
        Some(before) => organization_period(billing, before),
        None => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-11-15 12:00 UTC);

    fn period(start: OffsetDateTime, end: OffsetDateTime) -> Period {
        Period { start, end }
    }

    fn validate(
        org: &str,
        call: &str,
        secs: i64,
        ended: &str,
    ) -> Result<ValidCall, CallValidationError> {
        validate_call(org, call, secs, ended, NOW)
    }

    #[test]
    fn rounding() {
        for (secs, minutes) in [
            (0, 0),
            (1, 1),
            (59, 1),
            (60, 1),
            (61, 2),
            (3599, 60),
            (3600, 60),
            (86_400, 1440),
            (u64::MAX, 307_445_734_561_825_861),
        ] {
            assert_eq!(billable_minutes(secs), minutes, "{secs} s");
        }
        assert_eq!(billable_minutes(u64::MAX), u64::MAX / 60 + 1);
    }

    #[test]
    fn included_minutes_from_plan() {
        assert_eq!(included_minutes(None), 0);
        assert_eq!(included_minutes(Some(Plan::Starter)), 500);
        assert_eq!(included_minutes(Some(Plan::Professional)), 2000);
        assert_eq!(included_minutes(Some(Plan::Business)), 10_000);
    }

    #[test]
    fn valid_call() {
        let call = validate("org-1", "call-1", 61, "2026-11-15T11:00:00Z").unwrap();
        assert_eq!(
            call,
            ValidCall {
                duration_seconds: 61,
                minutes: 2,
                ended_at: datetime!(2026-11-15 11:00 UTC),
            }
        );
        // Zero seconds: zero minutes (still a call).
        assert_eq!(
            validate("o", "c", 0, "2026-11-15T11:00:00Z")
                .unwrap()
                .minutes,
            0
        );
        // Offsets and fractions are kept, normalised to UTC.
        let call = validate("o", "c", 1, "2026-11-15T13:30:00.25+02:00").unwrap();
        assert_eq!(call.ended_at, datetime!(2026-11-15 11:30:00.25 UTC));
        assert_eq!(call.ended_at.offset(), UtcOffset::UTC);
        // Old calls are accepted here; routing them is billing_period_for_late_usage's job.
        assert!(validate("o", "c", 1, "2020-01-01T00:00:00Z").is_ok());
    }

    #[test]
    fn duration_bounds() {
        assert_eq!(
            validate("o", "c", 86_400, "2026-11-15T11:00:00Z").unwrap(),
            ValidCall {
                duration_seconds: 86_400,
                minutes: 1440,
                ended_at: datetime!(2026-11-15 11:00 UTC),
            }
        );
        let too_long = validate("o", "c", 86_401, "2026-11-15T11:00:00Z").unwrap_err();
        assert_eq!(
            too_long,
            CallValidationError::DurationTooLong { max: 86_400 }
        );
        assert_eq!(too_long.field(), "durationSeconds");
        assert_eq!(
            too_long.to_string(),
            "durationSeconds must be at most 86400"
        );
        assert_eq!(
            validate("o", "c", i64::MAX, "2026-11-15T11:00:00Z"),
            Err(CallValidationError::DurationTooLong { max: 86_400 })
        );
        for negative in [-1, i64::MIN] {
            let err = validate("o", "c", negative, "2026-11-15T11:00:00Z").unwrap_err();
            assert_eq!(err, CallValidationError::NegativeDuration);
            assert_eq!(err.field(), "durationSeconds");
        }
    }

    #[test]
    fn ended_at_skew_and_format() {
        // Exactly the skew is accepted, one second more is not.
        assert!(validate("o", "c", 1, "2026-11-15T12:05:00Z").is_ok());
        assert!(validate("o", "c", 1, "2026-11-15T14:05:00+02:00").is_ok());
        let err = validate("o", "c", 1, "2026-11-15T12:05:01Z").unwrap_err();
        assert_eq!(err, CallValidationError::EndedInFuture);
        assert_eq!(err.field(), "endedAt");
        assert_eq!(
            validate("o", "c", 1, "2026-11-15T12:05:00.000000001Z"),
            Err(CallValidationError::EndedInFuture)
        );
        assert_eq!(
            validate("o", "c", 1, "9999-12-31T23:59:59-23:59"),
            Err(CallValidationError::EndedInFuture)
        );
        // Far end of time for `now` must not overflow.
        assert!(validate_call("o", "c", 1, "9999-12-31T23:59:59Z", MAX_INSTANT).is_ok());
        for bad in [
            "",
            "yesterday",
            "2026-11-15",
            "2026-11-15T11:00:00",
            "2026-02-30T11:00:00Z",
            "1763204400",
        ] {
            let err = validate("o", "c", 1, bad).unwrap_err();
            assert_eq!(err, CallValidationError::EndedAtUnparseable, "{bad:?}");
            assert_eq!(err.field(), "endedAt");
        }
    }

    #[test]
    fn ended_at_that_rfc3339_cannot_write_is_refused() {
        // Year -1 in UTC: parsed, but it cannot be written back, so it never becomes "".
        for bad in ["0000-01-01T00:30:00+01:00", "0000-01-01T00:00:00.5+00:01"] {
            let err = validate_call("o", "c", 1, bad, NOW).unwrap_err();
            assert_eq!(err, CallValidationError::EndedAtOutOfRange, "{bad}");
            assert_eq!(err.field(), "endedAt");
        }
        let first = validate("o", "c", 1, "0000-01-01T00:00:00Z").unwrap();
        assert_eq!(
            first.ended_at.format(&Rfc3339).unwrap(),
            "0000-01-01T00:00:00Z"
        );
    }

    #[test]
    fn ended_at_before_the_oldest_open_period_is_refused() {
        let oldest = period(
            datetime!(2026-10-01 0:00 UTC),
            datetime!(2026-11-01 0:00 UTC),
        );
        assert_eq!(
            check_ended_at_is_open(datetime!(2026-10-01 0:00 UTC), &oldest),
            Ok(())
        );
        assert_eq!(
            check_ended_at_is_open(datetime!(2026-11-15 12:00 UTC), &oldest),
            Ok(())
        );
        let err = check_ended_at_is_open(datetime!(2026-09-30 23:59:59.999999999 UTC), &oldest)
            .unwrap_err();
        assert_eq!(err, CallValidationError::EndedBeforeOpenPeriods);
        assert_eq!(err.field(), "endedAt");
        assert!(check_ended_at_is_open(MIN_INSTANT, &oldest).is_err());
    }

    #[test]
    fn ids() {
        for blank in ["", " ", "\t"] {
            let err = validate(blank, "c", 1, "2026-11-15T11:00:00Z").unwrap_err();
            assert_eq!(err, CallValidationError::MissingOrganizationId);
            assert_eq!(err.field(), "organizationId");
        }
        let err = validate("o", "", 1, "2026-11-15T11:00:00Z").unwrap_err();
        assert_eq!(err, CallValidationError::MissingCallId);
        assert_eq!(err.field(), "callId");

        let max = "x".repeat(128);
        assert!(validate("o", &max, 1, "2026-11-15T11:00:00Z").is_ok());
        let err = validate("o", &"x".repeat(129), 1, "2026-11-15T11:00:00Z").unwrap_err();
        assert_eq!(err, CallValidationError::CallIdTooLong);
        assert_eq!(err.field(), "callId");
        assert!(validate("o", "!~call:42/#a", 1, "2026-11-15T11:00:00Z").is_ok());
        for bad in ["a b", " ", "a\tb", "caf\u{e9}", "a\u{7f}", "x\n"] {
            let err = validate("o", bad, 1, "2026-11-15T11:00:00Z").unwrap_err();
            assert_eq!(err, CallValidationError::CallIdInvalid, "{bad:?}");
            assert_eq!(err.field(), "callId");
        }
        // First failing field wins, in body order.
        assert_eq!(
            validate("", "", -1, "nope"),
            Err(CallValidationError::MissingOrganizationId)
        );
        assert_eq!(
            validate("o", "", -1, "nope"),
            Err(CallValidationError::MissingCallId)
        );
        assert_eq!(
            validate("o", "c", -1, "nope"),
            Err(CallValidationError::NegativeDuration)
        );
    }

    #[test]
    fn calendar_months() {
        let cases = [
            (
                datetime!(2026-11-15 12:00 UTC),
                datetime!(2026-11-01 0:00 UTC),
                datetime!(2026-12-01 0:00 UTC),
            ),
            (
                datetime!(2026-12-31 23:59:59.999999999 UTC),
                datetime!(2026-12-01 0:00 UTC),
                datetime!(2027-01-01 0:00 UTC),
            ),
            (
                datetime!(2027-01-01 0:00 UTC),
                datetime!(2027-01-01 0:00 UTC),
                datetime!(2027-02-01 0:00 UTC),
            ),
            (
                datetime!(2028-02-29 12:00 UTC),
                datetime!(2028-02-01 0:00 UTC),
                datetime!(2028-03-01 0:00 UTC),
            ),
            (
                datetime!(2027-02-28 23:59:59 UTC),
                datetime!(2027-02-01 0:00 UTC),
                datetime!(2027-03-01 0:00 UTC),
            ),
            // Offsets count in UTC: Jan 1st 01:00 +02:00 is still December in UTC.
            (
                datetime!(2027-01-01 1:00 +2),
                datetime!(2026-12-01 0:00 UTC),
                datetime!(2027-01-01 0:00 UTC),
            ),
        ];
        for (t, start, end) in cases {
            let p = calendar_month(t);
            assert_eq!(p, period(start, end), "{t}");
            assert!(p.contains(t));
            assert_eq!(p.start.offset(), UtcOffset::UTC);
        }
        let feb28 = calendar_month(datetime!(2028-02-10 0:00 UTC));
        assert_eq!(feb28.end - feb28.start, Duration::days(29));
        let feb27 = calendar_month(datetime!(2027-02-10 0:00 UTC));
        assert_eq!(feb27.end - feb27.start, Duration::days(28));
        let dec = calendar_month(datetime!(2026-12-10 0:00 UTC));
        assert_eq!(
            next_period(&dec, CALENDAR_MONTH_ANCHOR, Interval::Monthly),
            period(
                datetime!(2027-01-01 0:00 UTC),
                datetime!(2027-02-01 0:00 UTC)
            )
        );
        assert_eq!(dec.key(), "2026-12-01T00:00:00Z");
        assert_eq!(
            dec.to_string(),
            "[2026-12-01T00:00:00Z, 2027-01-01T00:00:00Z)"
        );
    }

    #[test]
    fn monthly_from_jan_31_across_a_year() {
        let anchor = datetime!(2026-01-31 09:30 UTC);
        let starts = [
            date!(2026 - 01 - 31),
            date!(2026 - 02 - 28),
            date!(2026 - 03 - 31),
            date!(2026 - 04 - 30),
            date!(2026 - 05 - 31),
            date!(2026 - 06 - 30),
            date!(2026 - 07 - 31),
            date!(2026 - 08 - 31),
            date!(2026 - 09 - 30),
            date!(2026 - 10 - 31),
            date!(2026 - 11 - 30),
            date!(2026 - 12 - 31),
            date!(2027 - 01 - 31),
            date!(2027 - 02 - 28),
        ];
        let at = |d: Date| d.with_time(time::macros::time!(09:30)).assume_utc();
        let mut p = subscription_period_containing(anchor, Interval::Monthly, anchor);
        for pair in starts.windows(2) {
            let expected = period(at(pair[0]), at(pair[1]));
            assert_eq!(p, expected);
            // Every instant of the period maps to it, including the last nanosecond.
            for t in [
                expected.start,
                expected.start + Duration::days(10),
                expected.end - Duration::nanoseconds(1),
            ] {
                assert_eq!(
                    subscription_period_containing(anchor, Interval::Monthly, t),
                    expected
                );
            }
            p = next_period(&p, anchor, Interval::Monthly);
        }
        // Leap year: the same anchor gives Feb 29 in 2028.
        assert_eq!(
            subscription_period_containing(
                anchor,
                Interval::Monthly,
                datetime!(2028-03-15 0:00 UTC)
            ),
            period(
                datetime!(2028-02-29 09:30 UTC),
                datetime!(2028-03-31 09:30 UTC)
            )
        );
        assert_eq!(
            subscription_period_containing(
                anchor,
                Interval::Monthly,
                datetime!(2026-03-31 09:29:59 UTC)
            )
            .key(),
            "2026-02-28T09:30:00Z"
        );
    }

    #[test]
    fn yearly_from_feb_29() {
        let anchor = datetime!(2028-02-29 18:00 UTC);
        let cases = [
            (
                datetime!(2028-06-01 0:00 UTC),
                datetime!(2028-02-29 18:00 UTC),
                datetime!(2029-02-28 18:00 UTC),
            ),
            (
                datetime!(2029-02-28 17:59:59 UTC),
                datetime!(2028-02-29 18:00 UTC),
                datetime!(2029-02-28 18:00 UTC),
            ),
            (
                datetime!(2029-02-28 18:00 UTC),
                datetime!(2029-02-28 18:00 UTC),
                datetime!(2030-02-28 18:00 UTC),
            ),
            (
                datetime!(2031-12-31 0:00 UTC),
                datetime!(2031-02-28 18:00 UTC),
                datetime!(2032-02-29 18:00 UTC),
            ),
            (
                datetime!(2032-02-29 18:00 UTC),
                datetime!(2032-02-29 18:00 UTC),
                datetime!(2033-02-28 18:00 UTC),
            ),
            // Before the anchor: periods extend backwards.
            (
                datetime!(2027-03-01 0:00 UTC),
                datetime!(2027-02-28 18:00 UTC),
                datetime!(2028-02-29 18:00 UTC),
            ),
        ];
        for (t, start, end) in cases {
            assert_eq!(
                subscription_period_containing(anchor, Interval::Yearly, t),
                period(start, end),
                "{t}"
            );
        }
        let p = subscription_period_containing(anchor, Interval::Yearly, anchor);
        let next = next_period(&p, anchor, Interval::Yearly);
        assert_eq!(next.start, datetime!(2029-02-28 18:00 UTC));
        assert_eq!(p.end - p.start, Duration::days(365));
    }

    #[test]
    fn mid_month_anchor_boundaries() {
        let anchor = datetime!(2026-03-15 10:00 UTC);
        // Exactly at a boundary: the new period.
        let at = datetime!(2026-05-15 10:00 UTC);
        let p = subscription_period_containing(anchor, Interval::Monthly, at);
        assert_eq!(p, period(at, datetime!(2026-06-15 10:00 UTC)));
        assert_eq!(p.key(), "2026-05-15T10:00:00Z");
        // One nanosecond earlier: the previous period, which ends (exclusive) at the boundary.
        let before = subscription_period_containing(
            anchor,
            Interval::Monthly,
            at - Duration::nanoseconds(1),
        );
        assert_eq!(before, period(datetime!(2026-04-15 10:00 UTC), at));
        assert!(!before.contains(at));
        assert!(p.contains(at));
        // Same day, earlier time: previous period.
        assert_eq!(
            subscription_period_containing(
                anchor,
                Interval::Monthly,
                datetime!(2026-05-15 09:00 UTC)
            )
            .start,
            datetime!(2026-04-15 10:00 UTC)
        );
        // Non-UTC inputs are compared as instants: 12:00+02:00 is the boundary.
        assert_eq!(
            subscription_period_containing(
                datetime!(2026-03-15 12:00 +2),
                Interval::Monthly,
                datetime!(2026-05-15 10:00 UTC)
            ),
            p
        );
    }

    #[test]
    fn before_the_anchor() {
        let anchor = datetime!(2026-03-15 10:00 UTC);
        assert_eq!(
            subscription_period_containing(
                anchor,
                Interval::Monthly,
                datetime!(2026-03-15 09:59:59 UTC)
            ),
            period(
                datetime!(2026-02-15 10:00 UTC),
                datetime!(2026-03-15 10:00 UTC)
            )
        );
        assert_eq!(
            subscription_period_containing(
                anchor,
                Interval::Monthly,
                datetime!(2023-01-01 0:00 UTC)
            ),
            period(
                datetime!(2022-12-15 10:00 UTC),
                datetime!(2023-01-15 10:00 UTC)
            )
        );
        assert_eq!(
            subscription_period_containing(
                datetime!(2026-01-31 0:00 UTC),
                Interval::Monthly,
                datetime!(2025-03-01 0:00 UTC)
            ),
            period(
                datetime!(2025-02-28 0:00 UTC),
                datetime!(2025-03-31 0:00 UTC)
            )
        );
        assert_eq!(
            subscription_period_containing(
                anchor,
                Interval::Yearly,
                datetime!(2026-03-15 0:00 UTC)
            ),
            period(
                datetime!(2025-03-15 10:00 UTC),
                datetime!(2026-03-15 10:00 UTC)
            )
        );
    }

    #[test]
    fn extreme_dates_do_not_panic() {
        let anchor = datetime!(2026-01-31 0:00 UTC);
        for interval in Interval::ALL {
            for t in [MIN_INSTANT, MAX_INSTANT, datetime!(9999-12-31 23:00 -5)] {
                let p = subscription_period_containing(anchor, interval, t);
                assert!(p.start <= p.end);
                let _ = next_period(&p, anchor, interval);
                let _ = p.key();
            }
            for a in [MIN_INSTANT, MAX_INSTANT] {
                let p = subscription_period_containing(a, interval, NOW);
                assert!(p.contains(NOW));
            }
        }
        let last = calendar_month(datetime!(9999-12-15 0:00 UTC));
        assert_eq!(last.start, datetime!(9999-12-01 0:00 UTC));
        assert_eq!(last.end, MAX_INSTANT);
    }

    #[test]
    fn thresholds() {
        use Threshold::{Exhausted100, Warning80};
        assert_eq!(thresholds_crossed(500, 399, 400), vec![Warning80]);
        assert_eq!(
            thresholds_crossed(500, 399, 500),
            vec![Warning80, Exhausted100]
        );
        assert_eq!(thresholds_crossed(500, 400, 401), vec![]);
        assert_eq!(thresholds_crossed(500, 499, 500), vec![Exhausted100]);
        assert_eq!(thresholds_crossed(500, 500, 501), vec![]);
        assert_eq!(
            thresholds_crossed(500, 0, 10_000),
            vec![Warning80, Exhausted100]
        );
        assert_eq!(thresholds_crossed(500, 450, 450), vec![]);
        assert_eq!(thresholds_crossed(500, 501, 300), vec![]);
        assert_eq!(thresholds_crossed(0, 0, 1), vec![]);
        assert_eq!(thresholds_crossed(0, 0, u64::MAX), vec![]);
        // Included 1: 80 % rounds up to the single minute.
        assert_eq!(thresholds_crossed(1, 0, 1), vec![Warning80, Exhausted100]);
        assert_eq!(thresholds_crossed(1, 1, 2), vec![]);
        // ceil(80 % of 7) = 6.
        assert_eq!(Warning80.boundary(7), 6);
        assert_eq!(thresholds_crossed(7, 5, 6), vec![Warning80]);
        assert_eq!(thresholds_crossed(7, 4, 5), vec![]);
        assert_eq!(Warning80.boundary(u64::MAX), u64::MAX - u64::MAX / 5);
        assert_eq!(Exhausted100.boundary(u64::MAX), u64::MAX);
        assert_eq!(
            thresholds_crossed(u64::MAX, 0, u64::MAX),
            vec![Warning80, Exhausted100]
        );

        assert_eq!(serde_json::to_value(Warning80).unwrap(), json!("80"));
        assert_eq!(serde_json::to_value(Exhausted100).unwrap(), json!("100"));
        assert_eq!(
            serde_json::from_value::<Threshold>(json!("100")).unwrap(),
            Exhausted100
        );
        assert_eq!(Warning80.to_string(), "80");
        assert_eq!(Exhausted100.percent(), 100);
    }

    #[test]
    fn summary_json() {
        let p = period(
            datetime!(2026-11-01 0:00 UTC),
            datetime!(2026-12-01 0:00 UTC),
        );
        assert_eq!(
            serde_json::to_value(summarize(512, 40, 500, &p)).unwrap(),
            json!({
                "minutes": 512,
                "calls": 40,
                "minutesIncluded": 500,
                "overageMinutes": 12,
                "overageCost": 120,
                "overageCostFormatted": "$1.20",
                "periodStart": "2026-11-01T00:00:00Z",
                "periodEnd": "2026-12-01T00:00:00Z"
            })
        );
        assert_eq!(
            serde_json::to_string(&summarize(0, 0, 0, &p)).unwrap(),
            r#"{"minutes":0,"calls":0,"minutesIncluded":0,"overageMinutes":0,"overageCost":0,"overageCostFormatted":"$0.00","periodStart":"2026-11-01T00:00:00Z","periodEnd":"2026-12-01T00:00:00Z"}"#
        );
        let under = summarize(499, 3, 500, &p);
        assert_eq!(under.overage_minutes, 0);
        assert_eq!(under.overage_cost_formatted, "$0.00");
        let none = summarize(30, 2, 0, &p);
        assert_eq!(none.overage_minutes, 30);
        assert_eq!(none.overage_cost_cents, 300);
        let back: UsageSummary =
            serde_json::from_value(serde_json::to_value(&none).unwrap()).unwrap();
        assert_eq!(back, none);
    }

    #[test]
    fn late_usage() {
        let oct = period(
            datetime!(2026-10-01 0:00 UTC),
            datetime!(2026-11-01 0:00 UTC),
        );
        let nov = period(
            datetime!(2026-11-01 0:00 UTC),
            datetime!(2026-12-01 0:00 UTC),
        );
        // Nothing billed yet: counted in its own period.
        assert_eq!(billing_period_for_late_usage(&oct, None, &nov), oct);
        // October not billed yet (billed through September): still October.
        assert_eq!(
            billing_period_for_late_usage(&oct, Some(oct.start), &nov),
            oct
        );
        // October billed: carried into November.
        assert_eq!(
            billing_period_for_late_usage(&oct, Some(oct.end), &nov),
            nov
        );
        assert_eq!(
            billing_period_for_late_usage(&oct, Some(nov.start + Duration::days(1)), &nov),
            nov
        );
        // Current usage is counted in the current period.
        assert_eq!(
            billing_period_for_late_usage(&nov, Some(oct.end), &nov),
            nov
        );
    }

    fn instant(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap_or(MIN_INSTANT)
    }

    fn interval() -> impl Strategy<Value = Interval> {
        prop_oneof![Just(Interval::Monthly), Just(Interval::Yearly)]
    }

    // 2000-01-01 .. 2101-01-01 and a few years either side for times.
    const Y2000: i64 = 946_684_800;
    const Y2101: i64 = 4_133_980_800;
    const YEAR: i64 = 366 * 86_400;

    proptest! {
        #[test]
        fn calls_of_the_current_and_previous_periods_are_open_older_ones_not(
            anchor in Y2000..Y2101,
            now in Y2000..Y2101,
            back in 0i64..(3 * YEAR),
            interval in interval(),
        ) {
            let (anchor, now) = (instant(anchor), instant(now));
            let current = subscription_period_containing(anchor, interval, now);
            let previous =
                subscription_period_containing(anchor, interval, current.start - Duration::nanoseconds(1));
            let ended = now - Duration::seconds(back);
            let open = check_ended_at_is_open(ended, &previous).is_ok();
            prop_assert_eq!(open, previous.contains(ended) || ended >= current.start);
        }

        #[test]
        fn period_invariants(
            anchor in Y2000..Y2101,
            anchor_nanos in 0u32..1_000_000_000,
            t in (Y2000 - 3 * YEAR)..(Y2101 + 3 * YEAR),
            interval in interval(),
        ) {
            let anchor = instant(anchor) + Duration::nanoseconds(i64::from(anchor_nanos));
            let t = instant(t);
            let p = subscription_period_containing(anchor, interval, t);
            prop_assert!(p.contains(t));
            prop_assert!(p.start < p.end);
            let len = (p.end - p.start).whole_days();
            match interval {
                Interval::Monthly => prop_assert!((28..=31).contains(&len), "{}", len),
                Interval::Yearly => prop_assert!((365..=366).contains(&len), "{}", len),
            }
            // Starts on the anchor's clamped day, at the anchor's time of day.
            for s in [p.start, p.end] {
                prop_assert_eq!(s.time(), anchor.time());
                prop_assert_eq!(s.day(), anchor.day().min(s.month().length(s.year())));
                if interval == Interval::Yearly {
                    prop_assert_eq!(s.month(), anchor.month());
                }
            }
            let next = next_period(&p, anchor, interval);
            prop_assert_eq!(next.start, p.end);
            prop_assert!(next.start < next.end);
            // The period is the same whichever of its instants we ask about.
            prop_assert_eq!(subscription_period_containing(anchor, interval, p.start), p);
            prop_assert_eq!(
                subscription_period_containing(anchor, interval, p.end - Duration::nanoseconds(1)),
                p
            );
            // The anchor itself starts a period.
            prop_assert_eq!(subscription_period_containing(anchor, interval, anchor).start, anchor);
            prop_assert!(p.key().len() == 20 && p.key().ends_with('Z'));
        }

        #[test]
        fn consecutive_times_never_overlap(
            anchor in Y2000..Y2101,
            t1 in Y2000..Y2101,
            gap in 0i64..(400 * 86_400),
            interval in interval(),
        ) {
            let anchor = instant(anchor);
            let (t1, t2) = (instant(t1), instant(t1 + gap));
            let p1 = subscription_period_containing(anchor, interval, t1);
            let p2 = subscription_period_containing(anchor, interval, t2);
            prop_assert!(p1 == p2 || p1.end <= p2.start);
            prop_assert_eq!(p1 == p2, p2.contains(t1));
            // Keys sort like starts.
            prop_assert_eq!(p1.key().cmp(&p2.key()), p1.start.cmp(&p2.start));
        }

        #[test]
        fn calendar_month_invariants(t in Y2000..Y2101) {
            let t = instant(t);
            let p = calendar_month(t);
            prop_assert!(p.contains(t));
            prop_assert_eq!(p.start.day(), 1);
            prop_assert_eq!(p.start.time(), Time::MIDNIGHT);
            prop_assert_eq!(p.start.month(), t.month());
            prop_assert_eq!(p.end.day(), 1);
            prop_assert_eq!(p.end.month(), t.month().next());
            prop_assert_eq!(next_period(&p, CALENDAR_MONTH_ANCHOR, Interval::Monthly).start, p.end);
        }

        #[test]
        fn rounding_bounds(s in 1u64..) {
            let m = billable_minutes(s);
            prop_assert!(u128::from(m) * 60 >= u128::from(s));
            prop_assert!(u128::from(m - 1) * 60 < u128::from(s));
        }

        #[test]
        fn thresholds_fire_once_over_any_split(
            included in 0u64..20_000,
            start in 0u64..25_000,
            steps in proptest::collection::vec(0u64..3_000, 0..40),
        ) {
            let mut counts = [0usize; 2];
            let mut before = start;
            for step in &steps {
                let after = before + step;
                for t in thresholds_crossed(included, before, after) {
                    counts[t as usize] += 1;
                }
                before = after;
            }
            let end = before;
            for t in Threshold::ALL {
                prop_assert!(counts[t as usize] <= 1);
                let b = t.boundary(included);
                let expected = included > 0 && start < b && b <= end;
                prop_assert_eq!(counts[t as usize] == 1, expected);
                // One jump from start to end says the same as the steps.
                prop_assert_eq!(
                    thresholds_crossed(included, start, end).contains(&t),
                    expected
                );
            }
        }
    }
}
