//! Plans, prices, limits and overage: the seed's `PLANS` and `OVERAGE_PRICING` as typed constants,
//! with money kept in integer cents so no float rounding reaches an invoice.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A plan, interval or feature name that is not one of ours; keeps the input for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingParseError {
    #[error("unknown plan {0:?}")]
    UnknownPlan(String),
    #[error("unknown interval {0:?}")]
    UnknownInterval(String),
    #[error("unknown feature {0:?}")]
    UnknownFeature(String),
}

/// A subscription plan; stored and sent as the seed's upper-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Plan {
    Starter,
    Professional,
    Business,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Starter, Plan::Professional, Plan::Business];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "STARTER",
            Plan::Professional => "PROFESSIONAL",
            Plan::Business => "BUSINESS",
        }
    }
}

impl FromStr for Plan {
    type Err = PricingParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PricingParseError::UnknownPlan(s.to_owned()))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Billing interval; lower-case on the wire like the seed's checkout request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Monthly,
    Yearly,
}

impl Interval {
    pub const ALL: [Interval; 2] = [Interval::Monthly, Interval::Yearly];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Monthly => "monthly",
            Interval::Yearly => "yearly",
        }
    }
}

impl FromStr for Interval {
    type Err = PricingParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| PricingParseError::UnknownInterval(s.to_owned()))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The seed stores "unlimited" as 999 rather than a separate flag; kept so its data reads the same.
pub const UNLIMITED: u32 = 999;

/// A plan's quotas, in the seed's JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanLimits {
    pub max_minutes: u32,
    pub max_phone_numbers: u32,
    pub max_team_members: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Language {
    Ru,
    Uz,
    En,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnalyticsLevel {
    Basic,
    Advanced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupportLevel {
    Email,
    Priority,
    Dedicated,
}

/// A plan's feature flags, in the seed's JSON shape (note the seed's "customAI" spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFeatures {
    pub languages: &'static [Language],
    pub analytics: AnalyticsLevel,
    pub support: SupportLevel,
    pub api_access: bool,
    #[serde(rename = "customAI")]
    pub custom_ai: bool,
}

/// One entry of the seed's `PLANS`; Stripe price ids live in configuration, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDefinition {
    pub plan: Plan,
    pub name: &'static str,
    pub monthly_price_cents: u64,
    pub yearly_price_cents: u64,
    pub limits: PlanLimits,
    pub features: PlanFeatures,
}

static STARTER: PlanDefinition = PlanDefinition {
    plan: Plan::Starter,
    name: "Starter",
    monthly_price_cents: 9_900,
    yearly_price_cents: 100_692,
    limits: PlanLimits {
        max_minutes: 500,
        max_phone_numbers: 1,
        max_team_members: 1,
    },
    features: PlanFeatures {
        languages: &[Language::Ru],
        analytics: AnalyticsLevel::Basic,
        support: SupportLevel::Email,
        api_access: false,
        custom_ai: false,
    },
};

static PROFESSIONAL: PlanDefinition = PlanDefinition {
    plan: Plan::Professional,
    name: "Professional",
    monthly_price_cents: 29_900,
    yearly_price_cents: 305_094,
    limits: PlanLimits {
        max_minutes: 2_000,
        max_phone_numbers: 3,
        max_team_members: 5,
    },
    features: PlanFeatures {
        languages: &[Language::Ru, Language::Uz],
        analytics: AnalyticsLevel::Advanced,
        support: SupportLevel::Priority,
        api_access: false,
        custom_ai: true,
    },
};

static BUSINESS: PlanDefinition = PlanDefinition {
    plan: Plan::Business,
    name: "Business",
    monthly_price_cents: 79_900,
    yearly_price_cents: 815_094,
    limits: PlanLimits {
        max_minutes: 10_000,
        max_phone_numbers: UNLIMITED,
        max_team_members: UNLIMITED,
    },
    features: PlanFeatures {
        languages: &[Language::Ru, Language::Uz, Language::En],
        analytics: AnalyticsLevel::Advanced,
        support: SupportLevel::Dedicated,
        api_access: true,
        custom_ai: true,
    },
};

/// The plan's seed definition; static so callers can hold it without cloning.
pub fn definition(plan: Plan) -> &'static PlanDefinition {
    match plan {
        Plan::Starter => &STARTER,
        Plan::Professional => &PROFESSIONAL,
        Plan::Business => &BUSINESS,
    }
}

/// List price for one billing period, in US cents.
pub fn price_cents(plan: Plan, interval: Interval) -> u64 {
    let def = definition(plan);
    match interval {
        Interval::Monthly => def.monthly_price_cents,
        Interval::Yearly => def.yearly_price_cents,
    }
}

/// The seed's `OVERAGE_PRICING`: $0.10 per minute beyond the plan's included minutes.
pub const OVERAGE_CENTS_PER_MINUTE: u64 = 10;

/// Minutes beyond the included ones; saturating so under-use is zero, never a wrap-around.
pub fn overage_minutes(used_minutes: u64, included_minutes: u64) -> u64 {
    used_minutes.saturating_sub(included_minutes)
}

/// Overage charge in cents; saturating so absurd counters cap instead of wrapping to a small bill.
pub fn overage_cost_cents(overage_minutes: u64) -> u64 {
    overage_minutes.saturating_mul(OVERAGE_CENTS_PER_MINUTE)
}

/// "$1234.50": exact integer formatting, deliberately without thousands separators so the
/// string is unambiguous across locales and trivially parseable.
pub fn format_usd_cents(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// A plan capability gated in the API; names match the seed's feature keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Feature {
    #[serde(rename = "apiAccess")]
    ApiAccess,
    #[serde(rename = "customAI")]
    CustomAi,
    #[serde(rename = "advancedAnalytics")]
    AdvancedAnalytics,
}

impl Feature {
    pub const ALL: [Feature; 3] = [
        Feature::ApiAccess,
        Feature::CustomAi,
        Feature::AdvancedAnalytics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Feature::ApiAccess => "apiAccess",
            Feature::CustomAi => "customAI",
            Feature::AdvancedAnalytics => "advancedAnalytics",
        }
    }
}

impl FromStr for Feature {
    type Err = PricingParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Feature::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| PricingParseError::UnknownFeature(s.to_owned()))
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Read from the plan definition so the gate and the advertised features cannot disagree.
pub fn plan_has_feature(plan: Plan, feature: Feature) -> bool {
    let features = &definition(plan).features;
    match feature {
        Feature::ApiAccess => features.api_access,
        Feature::CustomAi => features.custom_ai,
        Feature::AdvancedAnalytics => features.analytics == AnalyticsLevel::Advanced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn plan_and_interval_names() {
        for (plan, name) in Plan::ALL
            .into_iter()
            .zip(["STARTER", "PROFESSIONAL", "BUSINESS"])
        {
            assert_eq!(plan.as_str(), name);
            assert_eq!(plan.to_string(), name);
            assert_eq!(name.parse::<Plan>(), Ok(plan));
            assert_eq!(serde_json::to_value(plan).unwrap(), json!(name));
            assert_eq!(serde_json::from_value::<Plan>(json!(name)).unwrap(), plan);
        }
        for (interval, name) in Interval::ALL.into_iter().zip(["monthly", "yearly"]) {
            assert_eq!(interval.as_str(), name);
            assert_eq!(interval.to_string(), name);
            assert_eq!(name.parse::<Interval>(), Ok(interval));
            assert_eq!(serde_json::to_value(interval).unwrap(), json!(name));
            assert_eq!(
                serde_json::from_value::<Interval>(json!(name)).unwrap(),
                interval
            );
        }
        for bad in ["", "starter", "Starter", " STARTER", "PRO", "ENTERPRISE"] {
            assert_eq!(
                bad.parse::<Plan>(),
                Err(PricingParseError::UnknownPlan(bad.to_owned()))
            );
        }
        for bad in ["", "Monthly", "MONTHLY", "annual", "yearly "] {
            assert_eq!(
                bad.parse::<Interval>(),
                Err(PricingParseError::UnknownInterval(bad.to_owned()))
            );
        }
        assert_eq!(
            "ENTERPRISE".parse::<Plan>().unwrap_err().to_string(),
            r#"unknown plan "ENTERPRISE""#
        );
        assert_eq!(
            "weekly".parse::<Interval>().unwrap_err().to_string(),
            r#"unknown interval "weekly""#
        );
    }

    #[test]
    fn starter_values() {
        let d = definition(Plan::Starter);
        assert_eq!(d.plan, Plan::Starter);
        assert_eq!(d.name, "Starter");
        assert_eq!(d.monthly_price_cents, 9900);
        assert_eq!(d.yearly_price_cents, 100692);
        assert_eq!(price_cents(Plan::Starter, Interval::Monthly), 9900);
        assert_eq!(price_cents(Plan::Starter, Interval::Yearly), 100692);
        assert_eq!(d.limits.max_minutes, 500);
        assert_eq!(d.limits.max_phone_numbers, 1);
        assert_eq!(d.limits.max_team_members, 1);
        assert_eq!(d.features.languages, &[Language::Ru]);
        assert_eq!(d.features.analytics, AnalyticsLevel::Basic);
        assert_eq!(d.features.support, SupportLevel::Email);
        assert!(!d.features.api_access);
        assert!(!d.features.custom_ai);
    }

    #[test]
    fn professional_values() {
        let d = definition(Plan::Professional);
        assert_eq!(d.plan, Plan::Professional);
        assert_eq!(d.name, "Professional");
        assert_eq!(d.monthly_price_cents, 29900);
        assert_eq!(d.yearly_price_cents, 305094);
        assert_eq!(price_cents(Plan::Professional, Interval::Monthly), 29900);
        assert_eq!(price_cents(Plan::Professional, Interval::Yearly), 305094);
        assert_eq!(d.limits.max_minutes, 2000);
        assert_eq!(d.limits.max_phone_numbers, 3);
        assert_eq!(d.limits.max_team_members, 5);
        assert_eq!(d.features.languages, &[Language::Ru, Language::Uz]);
        assert_eq!(d.features.analytics, AnalyticsLevel::Advanced);
        assert_eq!(d.features.support, SupportLevel::Priority);
        assert!(!d.features.api_access);
        assert!(d.features.custom_ai);
    }

    #[test]
    fn business_values() {
        let d = definition(Plan::Business);
        assert_eq!(d.plan, Plan::Business);
        assert_eq!(d.name, "Business");
        assert_eq!(d.monthly_price_cents, 79900);
        assert_eq!(d.yearly_price_cents, 815094);
        assert_eq!(price_cents(Plan::Business, Interval::Monthly), 79900);
        assert_eq!(price_cents(Plan::Business, Interval::Yearly), 815094);
        assert_eq!(d.limits.max_minutes, 10000);
        assert_eq!(d.limits.max_phone_numbers, 999);
        assert_eq!(d.limits.max_team_members, 999);
        assert_eq!(UNLIMITED, 999);
        assert_eq!(
            d.features.languages,
            &[Language::Ru, Language::Uz, Language::En]
        );
        assert_eq!(d.features.analytics, AnalyticsLevel::Advanced);
        assert_eq!(d.features.support, SupportLevel::Dedicated);
        assert!(d.features.api_access);
        assert!(d.features.custom_ai);
    }

    #[test]
    fn json_shape() {
        assert_eq!(
            serde_json::to_value(definition(Plan::Starter)).unwrap(),
            json!({
                "plan": "STARTER",
                "name": "Starter",
                "monthlyPriceCents": 9900,
                "yearlyPriceCents": 100692,
                "limits": {"maxMinutes": 500, "maxPhoneNumbers": 1, "maxTeamMembers": 1},
                "features": {
                    "languages": ["RU"],
                    "analytics": "basic",
                    "support": "email",
                    "apiAccess": false,
                    "customAI": false
                }
            })
        );
        let business = definition(Plan::Business);
        assert_eq!(
            serde_json::to_value(business.limits).unwrap(),
            json!({"maxMinutes": 10000, "maxPhoneNumbers": 999, "maxTeamMembers": 999})
        );
        assert_eq!(
            serde_json::to_value(business.features).unwrap(),
            json!({
                "languages": ["RU", "UZ", "EN"],
                "analytics": "advanced",
                "support": "dedicated",
                "apiAccess": true,
                "customAI": true
            })
        );
        assert_eq!(
            serde_json::to_value(definition(Plan::Professional).features).unwrap(),
            json!({
                "languages": ["RU", "UZ"],
                "analytics": "advanced",
                "support": "priority",
                "apiAccess": false,
                "customAI": true
            })
        );
        let limits: PlanLimits = serde_json::from_value(
            json!({"maxMinutes": 2000, "maxPhoneNumbers": 3, "maxTeamMembers": 5}),
        )
        .unwrap();
        assert_eq!(limits, definition(Plan::Professional).limits);
    }

    #[test]
    fn overage_maths() {
        assert_eq!(OVERAGE_CENTS_PER_MINUTE, 10);
        assert_eq!(overage_minutes(0, 0), 0);
        assert_eq!(overage_minutes(0, 500), 0);
        assert_eq!(overage_minutes(499, 500), 0);
        assert_eq!(overage_minutes(500, 500), 0);
        assert_eq!(overage_minutes(501, 500), 1);
        assert_eq!(overage_minutes(750, 500), 250);
        assert_eq!(overage_minutes(u64::MAX, 0), u64::MAX);
        assert_eq!(overage_minutes(0, u64::MAX), 0);
        assert_eq!(overage_cost_cents(0), 0);
        assert_eq!(overage_cost_cents(1), 10);
        assert_eq!(overage_cost_cents(250), 2500);
        assert_eq!(overage_cost_cents(u64::MAX / 10), u64::MAX / 10 * 10);
        assert_eq!(overage_cost_cents(u64::MAX / 10 + 1), u64::MAX);
        assert_eq!(overage_cost_cents(u64::MAX), u64::MAX);
        assert_eq!(format_usd_cents(overage_cost_cents(250)), "$25.00");
    }

    #[test]
    fn format_usd_exact() {
        assert_eq!(format_usd_cents(0), "$0.00");
        assert_eq!(format_usd_cents(5), "$0.05");
        assert_eq!(format_usd_cents(10), "$0.10");
        assert_eq!(format_usd_cents(120), "$1.20");
        assert_eq!(format_usd_cents(9900), "$99.00");
        assert_eq!(format_usd_cents(100692), "$1006.92");
        assert_eq!(format_usd_cents(123450), "$1234.50");
        assert_eq!(format_usd_cents(u64::MAX), "$184467440737095516.15");
    }

    #[test]
    fn feature_names() {
        for (feature, name) in
            Feature::ALL
                .into_iter()
                .zip(["apiAccess", "customAI", "advancedAnalytics"])
        {
            assert_eq!(feature.as_str(), name);
            assert_eq!(feature.to_string(), name);
            assert_eq!(name.parse::<Feature>(), Ok(feature));
            assert_eq!(serde_json::to_value(feature).unwrap(), json!(name));
            assert_eq!(
                serde_json::from_value::<Feature>(json!(name)).unwrap(),
                feature
            );
        }
        for bad in ["", "customAi", "api_access", "ApiAccess", "sso"] {
            assert_eq!(
                bad.parse::<Feature>(),
                Err(PricingParseError::UnknownFeature(bad.to_owned()))
            );
        }
        assert_eq!(
            "sso".parse::<Feature>().unwrap_err().to_string(),
            r#"unknown feature "sso""#
        );
    }

    #[test]
    fn feature_plan_matrix() {
        // Columns: STARTER, PROFESSIONAL, BUSINESS.
        let matrix = [
            (Feature::ApiAccess, [false, false, true]),
            (Feature::CustomAi, [false, true, true]),
            (Feature::AdvancedAnalytics, [false, true, true]),
        ];
        for (feature, row) in matrix {
            for (plan, expected) in Plan::ALL.into_iter().zip(row) {
                assert_eq!(
                    plan_has_feature(plan, feature),
                    expected,
                    "{plan} {feature}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn formatted_usd_parses_back(cents in any::<u64>()) {
            let s = format_usd_cents(cents);
            let body = s.strip_prefix('$').unwrap();
            let (dollars, frac) = body.split_once('.').unwrap();
            prop_assert_eq!(frac.len(), 2);
            prop_assert!(!dollars.is_empty());
            prop_assert!(dollars == "0" || !dollars.starts_with('0'));
            let back = u128::from(dollars.parse::<u64>().unwrap()) * 100
                + u128::from(frac.parse::<u8>().unwrap());
            prop_assert_eq!(back, u128::from(cents));
        }

        #[test]
        fn overage_never_exceeds_use(used in any::<u64>(), included in any::<u64>()) {
            let over = overage_minutes(used, included);
            prop_assert!(over <= used);
            prop_assert_eq!(over == 0, used <= included);
            prop_assert_eq!(
                u128::from(overage_cost_cents(over)),
                (u128::from(over) * 10).min(u128::from(u64::MAX))
            );
        }
    }
}
