//! Transaction alerts: the rules of the "Practice Flask" seed, as pure
//! functions over one user's recent history and that user's thresholds.
//!
//! Every rule in [`RULES`] judges an event from a [`Recent`] view of the
//! history that ends with it: the last events, the last deposits, and the
//! exact total of the deposits within the deposit window. The thresholds
//! fix how much that is ([`Thresholds::history_need`]), so judging an event
//! costs the same however long the user's history is, and however many of
//! its events share one time. Adding a rule is one function and one table
//! entry (and, if it needs more history, a term in `history_need` and, for
//! a new kind of history, a field of `Recent`). Amounts are exact decimals,
//! never floats, and sums of them exact [`Total`]s.

mod profile;
mod total;

pub use profile::{
    AlertProfile, HistoryNeed, MAX_COUNT, MAX_WINDOW_SECONDS, Overrides, Risk, Thresholds,
};
pub use total::Total;

use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deposit,
    Withdraw,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deposit => "deposit",
            Kind::Withdraw => "withdraw",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        if text.eq_ignore_ascii_case("deposit") {
            Some(Kind::Deposit)
        } else if text.eq_ignore_ascii_case("withdraw") {
            Some(Kind::Withdraw)
        } else {
            None
        }
    }
}

/// Parses a plain decimal (`42`, `42.00`, `-9`, `.5`), the only form
/// amounts take: no exponents, no digit separators, at most 28 digits.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !(whole.is_empty() && fraction.is_empty())
        && whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit());
    // More fractional digits than a Decimal holds would be rounded away.
    if !plain || fraction.len() > MAX_SCALE {
        return None;
    }
    text.parse::<Decimal>().ok()
}

/// The most fractional digits an amount may have (`Decimal`'s scale).
const MAX_SCALE: usize = 28;

/// An amount given as a JSON string (a plain decimal) or number (whose
/// text may have an exponent: `1e-7`).
pub fn decimal_from_json(value: &serde_json::Value) -> Option<Decimal> {
    match value {
        serde_json::Value::String(text) => parse_decimal(text),
        serde_json::Value::Number(number) => {
            let text = number.to_string();
            if text.contains(['e', 'E']) {
                Decimal::from_scientific(&text)
                    .ok()
                    .filter(|d| d.scale() as usize <= MAX_SCALE)
            } else {
                parse_decimal(&text)
            }
        }
        _ => None,
    }
}

/// One deposit or withdrawal. `time` is in the server's event time unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub amount: Decimal,
    pub time: i64,
}

/// How many event-time units make a second (`--event-time-unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeUnit {
    pub per_second: i64,
}

impl TimeUnit {
    pub const MILLISECONDS: TimeUnit = TimeUnit { per_second: 1000 };
    pub const SECONDS: TimeUnit = TimeUnit { per_second: 1 };

    fn window(self, seconds: u32) -> i64 {
        i64::from(seconds) * self.per_second
    }
}

/// What the rules read of one user's history: a view whose size the
/// thresholds fix, however long the history is. The store fills it with
/// what [`Thresholds::history_need`] asks for; nothing else of the history
/// is read.
#[derive(Debug, Clone, Copy)]
pub struct Recent<'a> {
    /// The user's last events, oldest first, ending with the event judged.
    pub events: &'a [Event],
    /// The amounts of the user's last deposits, oldest first (ending with
    /// the event judged, when it is a deposit).
    pub deposits: &'a [Decimal],
    /// The exact sum of the deposits at or after
    /// [`HistoryNeed::deposits_since`] (the event judged included, when it
    /// is a deposit): the deposits within `deposit_window` of it.
    pub window_deposits: Total,
}

/// What a rule sees: the recent history and the thresholds in force.
pub struct Context<'a> {
    recent: Recent<'a>,
    thresholds: &'a Thresholds,
    unit: TimeUnit,
}

impl Context<'_> {
    fn event(&self) -> &Event {
        // `judge` never builds a context over an empty history.
        self.recent
            .events
            .last()
            .expect("the history ends with the event")
    }

    /// The last `n` events, or `None` when the user has fewer.
    fn last_events(&self, n: usize) -> Option<&[Event]> {
        let events = self.recent.events;
        events.len().checked_sub(n).map(|start| &events[start..])
    }
}

type Rule = fn(&Context<'_>) -> bool;

/// Every rule, by alert code, in ascending order of code.
pub const RULES: &[(u16, Rule)] = &[
    (30, consecutive_withdrawals),
    (123, deposits_in_window),
    (300, increasing_deposits),
    (500, burst),
    (1100, large_withdrawal),
];

/// The codes that fire for the last event of `recent`, in ascending order.
/// `recent` must hold what [`Thresholds::history_need`] asked for.
pub fn judge(recent: Recent<'_>, thresholds: &Thresholds, unit: TimeUnit) -> Vec<u16> {
    if recent.events.is_empty() {
        return Vec::new();
    }
    let context = Context {
        recent,
        thresholds,
        unit,
    };
    RULES
        .iter()
        .filter(|(_, rule)| rule(&context))
        .map(|(code, _)| *code)
        .collect()
}

/// 1100: a withdrawal over `withdrawal_over`.
fn large_withdrawal(c: &Context<'_>) -> bool {
    let event = c.event();
    event.kind == Kind::Withdraw && event.amount > c.thresholds.withdrawal_over
}

/// 30: the last `consecutive_withdrawals` events are all withdrawals.
fn consecutive_withdrawals(c: &Context<'_>) -> bool {
    c.last_events(c.thresholds.consecutive_withdrawals as usize)
        .is_some_and(|last| last.iter().all(|e| e.kind == Kind::Withdraw))
}

/// 300: a deposit, and the last `increasing_deposits` deposits (withdrawals
/// between them ignored) strictly increase.
fn increasing_deposits(c: &Context<'_>) -> bool {
    let n = c.thresholds.increasing_deposits as usize;
    let deposits = c.recent.deposits;
    c.event().kind == Kind::Deposit
        && deposits.len() >= n
        && deposits[deposits.len() - n..]
            .windows(2)
            .all(|pair| pair[0] < pair[1])
}

/// 123: a deposit, and the deposits within `deposit_window` of it (bounds
/// included, this one too) total more than `window_deposit_total`.
fn deposits_in_window(c: &Context<'_>) -> bool {
    c.event().kind == Kind::Deposit
        && c.recent.window_deposits > Total::of(c.thresholds.window_deposit_total)
}

/// 500: more than `burst_count` events within `burst_window`: the
/// (burst_count + 1)th most recent event is at most that far back.
fn burst(c: &Context<'_>) -> bool {
    let n = c.thresholds.burst_count as usize + 1;
    c.last_events(n).is_some_and(|last| {
        c.event().time.saturating_sub(last[0].time) <= c.unit.window(c.thresholds.burst_window)
    })
}

#[cfg(test)]
pub(crate) mod tests;
