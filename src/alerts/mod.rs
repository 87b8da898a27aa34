//! Transaction alerts: the rules of the "Practice Flask" seed, as pure
//! functions over one user's history and that user's thresholds.
//!
//! Each event is stored first; then every rule in [`RULES`] looks at the
//! history that ends with it. Adding a rule is one function and one table
//! entry (and, if it needs more history, a term in
//! [`Thresholds::history_need`]). Amounts are exact decimals, never floats.

mod profile;

pub use profile::{AlertProfile, HistoryNeed, Overrides, Risk, Thresholds};

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

/// What a rule sees: the user's history, oldest first, ending with the event
/// being judged, and the thresholds in force.
pub struct Context<'a> {
    history: &'a [Event],
    thresholds: &'a Thresholds,
    unit: TimeUnit,
}

impl Context<'_> {
    fn event(&self) -> &Event {
        // `evaluate` never builds a context over an empty history.
        self.history
            .last()
            .expect("the history ends with the event")
    }

    fn deposits(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.history.iter().filter(|e| e.kind == Kind::Deposit)
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

/// The codes that fire for the last event of `history` (oldest first), in
/// ascending order. `history` must hold at least what
/// [`Thresholds::history_need`] asked for.
pub fn evaluate(history: &[Event], thresholds: &Thresholds, unit: TimeUnit) -> Vec<u16> {
    if history.is_empty() {
        return Vec::new();
    }
    let context = Context {
        history,
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
    let n = c.thresholds.consecutive_withdrawals as usize;
    c.history.len() >= n
        && c.history[c.history.len() - n..]
            .iter()
            .all(|e| e.kind == Kind::Withdraw)
}

/// 300: a deposit, and the last `increasing_deposits` deposits (withdrawals
/// between them ignored) strictly increase.
fn increasing_deposits(c: &Context<'_>) -> bool {
    let n = c.thresholds.increasing_deposits as usize;
    if c.event().kind != Kind::Deposit {
        return false;
    }
    let mut last: Vec<Decimal> = c.deposits().rev().take(n).map(|e| e.amount).collect();
    last.reverse();
    last.len() == n && last.windows(2).all(|pair| pair[0] < pair[1])
}

/// 123: a deposit, and the deposits within `deposit_window` of it (bounds
/// included, this one too) total more than `window_deposit_total`.
fn deposits_in_window(c: &Context<'_>) -> bool {
    let event = c.event();
    if event.kind != Kind::Deposit {
        return false;
    }
    let window = c.unit.window(c.thresholds.deposit_window);
    let mut total = Decimal::ZERO;
    for deposit in c.deposits().rev() {
        if event.time.saturating_sub(deposit.time) > window {
            break;
        }
        match total.checked_add(deposit.amount) {
            Some(sum) => total = sum,
            // Past Decimal's range: far past any threshold.
            None => return true,
        }
    }
    total > c.thresholds.window_deposit_total
}

/// 500: more than `burst_count` events within `burst_window`: the
/// (burst_count + 1)th most recent event is at most that far back.
fn burst(c: &Context<'_>) -> bool {
    let n = c.thresholds.burst_count as usize + 1;
    let len = c.history.len();
    len >= n
        && c.event().time.saturating_sub(c.history[len - n].time)
            <= c.unit.window(c.thresholds.burst_window)
}

#[cfg(test)]
mod tests;
