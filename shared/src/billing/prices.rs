//! Stripe price ids per plan and interval, from configuration (`STRIPE_PRICE_<PLAN>_<INTERVAL>`),
//! in both directions: checkout needs the price of a plan, webhooks the plan of a price.

use crate::pricing::{Interval, Plan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    entries: Vec<(Plan, Interval, String)>,
}

/// The seed's names for plans in its default price ids (`price_pro_yearly`).
fn seed_slug(plan: Plan) -> &'static str {
    match plan {
        Plan::Starter => "starter",
        Plan::Professional => "pro",
        Plan::Business => "business",
    }
}

/// The configuration variable naming the price of `plan` billed every `interval`.
pub fn variable_name(plan: Plan, interval: Interval) -> String {
    format!(
        "STRIPE_PRICE_{}_{}",
        plan.as_str(),
        interval.as_str().to_ascii_uppercase()
    )
}

impl PriceTable {
    /// Reads `STRIPE_PRICE_<PLAN>_<INTERVAL>` through `lookup`; unset ones take the seed's ids.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut entries = Vec::new();
        for plan in Plan::ALL {
            for interval in Interval::ALL {
                let id = lookup(&variable_name(plan, interval))
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| format!("price_{}_{}", seed_slug(plan), interval.as_str()));
                entries.push((plan, interval, id));
            }
        }
        Self { entries }
    }

    pub fn price_id(&self, plan: Plan, interval: Interval) -> Option<&str> {
        self.entries
            .iter()
            .find(|(p, i, _)| *p == plan && *i == interval)
            .map(|(_, _, id)| id.as_str())
    }

    /// The plan and interval a configured price id stands for; `None` for a price we don't sell.
    pub fn plan_of(&self, price_id: &str) -> Option<(Plan, Interval)> {
        self.entries
            .iter()
            .find(|(_, _, id)| id == price_id)
            .map(|(plan, interval, _)| (*plan, *interval))
    }
}

/// The most trial days Stripe accepts for `subscription_data.trial_period_days`.
pub const MAX_TRIAL_DAYS: u32 = 730;

/// Trial days per plan, from configuration (`TRIAL_DAYS_<PLAN>`, 0 to [`MAX_TRIAL_DAYS`],
/// default 0: no trial). Checkout sends `subscription_data[trial_period_days]` for a plan with
/// more than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrialDays {
    days: [u32; 3],
}

/// The configuration variable naming the trial days of `plan`.
pub fn trial_days_variable(plan: Plan) -> &'static str {
    match plan {
        Plan::Starter => "TRIAL_DAYS_STARTER",
        Plan::Professional => "TRIAL_DAYS_PROFESSIONAL",
        Plan::Business => "TRIAL_DAYS_BUSINESS",
    }
}

fn plan_index(plan: Plan) -> usize {
    match plan {
        Plan::Starter => 0,
        Plan::Professional => 1,
        Plan::Business => 2,
    }
}

impl TrialDays {
    /// Reads `TRIAL_DAYS_<PLAN>` through `lookup` (unset or empty: 0). Errs with the variable's
    /// name and the reason for a value that is not a whole number from 0 to [`MAX_TRIAL_DAYS`].
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, (&'static str, String)> {
        let mut days = [0; 3];
        for plan in Plan::ALL {
            let name = trial_days_variable(plan);
            let Some(raw) = lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            else {
                continue;
            };
            days[plan_index(plan)] = raw
                .parse::<u32>()
                .ok()
                .filter(|d| *d <= MAX_TRIAL_DAYS)
                .ok_or_else(|| {
                    (
                        name,
                        format!(
                            "expected a whole number of days from 0 to {MAX_TRIAL_DAYS} (got \"{raw}\")"
                        ),
                    )
                })?;
        }
        Ok(Self { days })
    }

    /// The trial of `plan` in days; 0: none.
    pub fn of(&self, plan: Plan) -> u32 {
        self.days[plan_index(plan)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_days_default_to_none_and_bad_values_are_named() {
        let none = TrialDays::from_lookup(|_| None).unwrap();
        for plan in Plan::ALL {
            assert_eq!(none.of(plan), 0);
        }
        let set = TrialDays::from_lookup(|name| match name {
            "TRIAL_DAYS_PROFESSIONAL" => Some(" 14 ".to_owned()),
            "TRIAL_DAYS_BUSINESS" => Some("730".to_owned()),
            "TRIAL_DAYS_STARTER" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(set.of(Plan::Starter), 0);
        assert_eq!(set.of(Plan::Professional), 14);
        assert_eq!(set.of(Plan::Business), 730);
        for bad in ["-1", "731", "7.5", "two weeks"] {
            let (name, reason) = TrialDays::from_lookup(|name| {
                (name == "TRIAL_DAYS_STARTER").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert_eq!(name, "TRIAL_DAYS_STARTER");
            assert!(reason.contains("0 to 730"), "{bad}: {reason}");
        }
    }

    #[test]
    fn defaults_are_the_seeds_ids_and_overrides_win() {
        let table = PriceTable::from_lookup(|name| {
            (name == "STRIPE_PRICE_BUSINESS_YEARLY").then(|| "price_1Real".to_owned())
        });
        assert_eq!(
            table.price_id(Plan::Starter, Interval::Monthly),
            Some("price_starter_monthly")
        );
        assert_eq!(
            table.price_id(Plan::Professional, Interval::Yearly),
            Some("price_pro_yearly")
        );
        assert_eq!(
            table.price_id(Plan::Business, Interval::Yearly),
            Some("price_1Real")
        );
        assert_eq!(
            table.plan_of("price_1Real"),
            Some((Plan::Business, Interval::Yearly))
        );
        assert_eq!(
            table.plan_of("price_pro_monthly"),
            Some((Plan::Professional, Interval::Monthly))
        );
        assert_eq!(
            table.plan_of("price_business_yearly"),
            None,
            "overridden default is not ours"
        );
        assert_eq!(table.plan_of("price_unknown"), None);
    }

    #[test]
    fn every_plan_and_interval_round_trips() {
        let table = PriceTable::from_lookup(|_| None);
        for plan in Plan::ALL {
            for interval in Interval::ALL {
                let id = table.price_id(plan, interval).unwrap();
                assert_eq!(table.plan_of(id), Some((plan, interval)));
            }
        }
        assert_eq!(
            variable_name(Plan::Professional, Interval::Monthly),
            "STRIPE_PRICE_PROFESSIONAL_MONTHLY"
        );
    }
}
