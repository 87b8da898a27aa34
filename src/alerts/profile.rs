//! Per-user thresholds: a risk rating scales the defaults, explicit
//! overrides beat the rating.

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::TimeUnit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Risk {
    Low,
    #[default]
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }

    pub fn parse(text: &str) -> Option<Risk> {
        match text {
            "low" => Some(Risk::Low),
            "medium" => Some(Risk::Medium),
            "high" => Some(Risk::High),
            _ => None,
        }
    }
}

/// The thresholds in force for one user. Windows are in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    /// 1100 fires for a withdrawal over this amount.
    pub withdrawal_over: Decimal,
    /// 30 fires when this many events in a row are withdrawals.
    pub consecutive_withdrawals: u32,
    /// 300 fires when this many deposits in a row strictly increase.
    pub increasing_deposits: u32,
    /// 123 fires when deposits within `deposit_window` total more than this.
    pub window_deposit_total: Decimal,
    pub deposit_window: u32,
    /// 500 fires for more than this many events within `burst_window`.
    pub burst_count: u32,
    pub burst_window: u32,
}

/// The largest count threshold: it bounds the history one event loads.
pub const MAX_COUNT: u32 = 1000;
/// The longest window, in seconds (a day). Windows do not bound the history
/// an event reads (the counts do): a window's deposits are read as one total.
pub const MAX_WINDOW_SECONDS: u32 = 86_400;

/// How much history the rules need to judge an event at a given time: the
/// user's last `last_events` events, the last `last_deposits` deposits, and
/// the total of the deposits at or after `deposits_since`. The counts are
/// at most `MAX_COUNT` + 1 and the total is one number, so judging an
/// event reads a bounded history, however many events the window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryNeed {
    pub deposits_since: i64,
    pub last_events: u32,
    pub last_deposits: u32,
}

impl Thresholds {
    /// The seed's thresholds, scaled by the rating: `high` halves amounts
    /// and turns counts n into n/2+1; `low` doubles both.
    pub fn for_risk(risk: Risk) -> Thresholds {
        let medium = Thresholds {
            withdrawal_over: Decimal::from(100),
            consecutive_withdrawals: 3,
            increasing_deposits: 3,
            window_deposit_total: Decimal::from(200),
            deposit_window: 30,
            burst_count: 5,
            burst_window: 60,
        };
        let scale_amount = |amount: Decimal| match risk {
            Risk::Low => amount * Decimal::TWO,
            Risk::Medium => amount,
            Risk::High => amount / Decimal::TWO,
        };
        let scale_count = |n: u32| match risk {
            Risk::Low => n * 2,
            Risk::Medium => n,
            Risk::High => n / 2 + 1,
        };
        Thresholds {
            withdrawal_over: scale_amount(medium.withdrawal_over),
            consecutive_withdrawals: scale_count(medium.consecutive_withdrawals),
            increasing_deposits: scale_count(medium.increasing_deposits),
            window_deposit_total: scale_amount(medium.window_deposit_total),
            burst_count: scale_count(medium.burst_count),
            ..medium
        }
    }

    /// Rule 30 reads the last `consecutive_withdrawals` events, 500 the last
    /// `burst_count + 1` (whose times it compares), 300 the last
    /// `increasing_deposits` deposits, and 123 the deposits within
    /// `deposit_window`, as one total.
    pub fn history_need(&self, time: i64, unit: TimeUnit) -> HistoryNeed {
        HistoryNeed {
            deposits_since: time.saturating_sub(unit.window(self.deposit_window)),
            last_events: self.consecutive_withdrawals.max(self.burst_count + 1),
            last_deposits: self.increasing_deposits,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "withdrawal_over": self.withdrawal_over.to_string(),
            "consecutive_withdrawals": self.consecutive_withdrawals,
            "increasing_deposits": self.increasing_deposits,
            "window_deposit_total": self.window_deposit_total.to_string(),
            "deposit_window": self.deposit_window,
            "burst_count": self.burst_count,
            "burst_window": self.burst_window,
        })
    }
}

/// Explicit per-user values; each one set replaces the rating's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub withdrawal_over: Option<Decimal>,
    pub consecutive_withdrawals: Option<u32>,
    pub increasing_deposits: Option<u32>,
    pub window_deposit_total: Option<Decimal>,
    pub deposit_window: Option<u32>,
    pub burst_count: Option<u32>,
    pub burst_window: Option<u32>,
}

impl Overrides {
    fn apply(&self, mut t: Thresholds) -> Thresholds {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { t.$field = v; } )* };
        }
        take!(
            withdrawal_over,
            consecutive_withdrawals,
            increasing_deposits,
            window_deposit_total,
            deposit_window,
            burst_count,
            burst_window
        );
        t
    }

    /// Parses an `overrides` object; `null` for a field leaves it unset.
    /// Every problem is given to `report` as (field, problem), not just the
    /// first; `None` when there was any.
    pub fn from_json(
        object: &Map<String, Value>,
        report: &mut dyn FnMut(String, String),
    ) -> Option<Overrides> {
        let mut overrides = Overrides::default();
        let mut valid = true;
        for (name, value) in object {
            if value.is_null() {
                continue;
            }
            let result = match name.as_str() {
                "withdrawal_over" => amount(value).map(|v| overrides.withdrawal_over = Some(v)),
                "window_deposit_total" => {
                    amount(value).map(|v| overrides.window_deposit_total = Some(v))
                }
                "consecutive_withdrawals" => {
                    count(value).map(|v| overrides.consecutive_withdrawals = Some(v))
                }
                "increasing_deposits" => {
                    increasing(value).map(|v| overrides.increasing_deposits = Some(v))
                }
                "burst_count" => count(value).map(|v| overrides.burst_count = Some(v)),
                "deposit_window" => window(value).map(|v| overrides.deposit_window = Some(v)),
                "burst_window" => window(value).map(|v| overrides.burst_window = Some(v)),
                _ => Err(NOT_A_THRESHOLD.to_owned()),
            };
            if let Err(problem) = result {
                valid = false;
                let field = format!("overrides.{}", crate::text::excerpt(name, 64));
                report(field, problem);
            }
        }
        valid.then_some(overrides)
    }

    /// The set fields only, as `from_json` reads them.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                object.insert(name.to_owned(), value);
            }
        };
        put(
            "withdrawal_over",
            self.withdrawal_over.map(|v| json!(v.to_string())),
        );
        put(
            "consecutive_withdrawals",
            self.consecutive_withdrawals.map(|v| json!(v)),
        );
        put(
            "increasing_deposits",
            self.increasing_deposits.map(|v| json!(v)),
        );
        put(
            "window_deposit_total",
            self.window_deposit_total.map(|v| json!(v.to_string())),
        );
        put("deposit_window", self.deposit_window.map(|v| json!(v)));
        put("burst_count", self.burst_count.map(|v| json!(v)));
        put("burst_window", self.burst_window.map(|v| json!(v)));
        Value::Object(object)
    }
}

/// What an unknown override name is told.
const NOT_A_THRESHOLD: &str = "is not a threshold; the thresholds are withdrawal_over, \
    consecutive_withdrawals, increasing_deposits, window_deposit_total, deposit_window, \
    burst_count, burst_window";

/// A user's stored profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertProfile {
    pub risk: Risk,
    pub overrides: Overrides,
}

impl AlertProfile {
    pub fn thresholds(&self) -> Thresholds {
        self.overrides.apply(Thresholds::for_risk(self.risk))
    }
}

/// An amount: a decimal string or a JSON number, at least 0.
fn amount(value: &Value) -> Result<Decimal, String> {
    match super::decimal_from_json(value) {
        None => Err("must be a decimal number".to_owned()),
        Some(v) if v.is_sign_negative() && !v.is_zero() => {
            Err("must be greater than or equal to 0".to_owned())
        }
        Some(v) => Ok(v.normalize()),
    }
}

/// Rule 300 compares neighbours, so it needs at least two deposits; one
/// would make it fire on every deposit.
fn increasing(value: &Value) -> Result<u32, String> {
    count(value)?;
    value
        .as_u64()
        .filter(|n| *n >= 2)
        .map(|n| n as u32)
        .ok_or_else(|| format!("must be a whole number from 2 to {MAX_COUNT}"))
}

fn count(value: &Value) -> Result<u32, String> {
    value
        .as_u64()
        .filter(|n| (1..=u64::from(MAX_COUNT)).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| format!("must be a whole number from 1 to {MAX_COUNT}"))
}

fn window(value: &Value) -> Result<u32, String> {
    value
        .as_u64()
        .filter(|n| *n <= u64::from(MAX_WINDOW_SECONDS))
        .map(|n| n as u32)
        .ok_or_else(|| format!("must be a whole number of seconds from 0 to {MAX_WINDOW_SECONDS}"))
}
