//! Every rule and every boundary case of the issue, without a store; and
//! the bounded judgement against the rules as they read whole histories.

use super::*;

/// The codes for the last event of a whole history, judged as the store
/// judges it: from the bounded view the thresholds ask for, taken here from
/// memory instead of from the store.
fn evaluate(history: &[Event], thresholds: &Thresholds, unit: TimeUnit) -> Vec<u16> {
    let Some(event) = history.last() else {
        return Vec::new();
    };
    let need = thresholds.history_need(event.time, unit);
    let events = &history[history.len().saturating_sub(need.last_events as usize + 1)..];
    let all_deposits = history.iter().rev().filter(|e| e.kind == Kind::Deposit);
    let mut deposits: Vec<Decimal> = all_deposits
        .clone()
        .take(need.last_deposits as usize + 1)
        .map(|e| e.amount)
        .collect();
    deposits.reverse();
    let window_deposits = all_deposits
        .take_while(|e| e.time >= need.deposits_since)
        .fold(Total::ZERO, |total, e| total.plus(Total::of(e.amount)));
    let recent = Recent {
        events,
        deposits: &deposits,
        window_deposits,
    };
    judge(recent, thresholds, unit)
}

/// The rules as they were written over a user's whole history before the
/// history an event reads was bounded: the reference the bounded judgement
/// (here and in the store) must agree with, code for code.
pub(crate) fn full_history_codes(
    history: &[Event],
    thresholds: &Thresholds,
    unit: TimeUnit,
) -> Vec<u16> {
    let Some(event) = history.last() else {
        return Vec::new();
    };
    let deposits = || history.iter().filter(|e| e.kind == Kind::Deposit);
    let consecutive_withdrawals = {
        let n = thresholds.consecutive_withdrawals as usize;
        history.len() >= n
            && history[history.len() - n..]
                .iter()
                .all(|e| e.kind == Kind::Withdraw)
    };
    let deposits_in_window = event.kind == Kind::Deposit && {
        let window = unit.window(thresholds.deposit_window);
        let mut total = Some(Decimal::ZERO);
        for deposit in deposits().rev() {
            if event.time.saturating_sub(deposit.time) > window {
                break;
            }
            total = total.and_then(|sum| sum.checked_add(deposit.amount));
        }
        // Past Decimal's range: far past any threshold.
        total.is_none_or(|total| total > thresholds.window_deposit_total)
    };
    let increasing_deposits = event.kind == Kind::Deposit && {
        let n = thresholds.increasing_deposits as usize;
        let mut last: Vec<Decimal> = deposits().rev().take(n).map(|e| e.amount).collect();
        last.reverse();
        last.len() == n && last.windows(2).all(|pair| pair[0] < pair[1])
    };
    let burst = {
        let n = thresholds.burst_count as usize + 1;
        let len = history.len();
        len >= n
            && event.time.saturating_sub(history[len - n].time)
                <= unit.window(thresholds.burst_window)
    };
    let large_withdrawal =
        event.kind == Kind::Withdraw && event.amount > thresholds.withdrawal_over;
    [
        (30, consecutive_withdrawals),
        (123, deposits_in_window),
        (300, increasing_deposits),
        (500, burst),
        (1100, large_withdrawal),
    ]
    .into_iter()
    .filter_map(|(code, fired)| fired.then_some(code))
    .collect()
}

/// Amounts that sit on the thresholds' edges, tiny ones, and plain ones;
/// the two huge ones last (their sums leave a Decimal's range).
const AMOUNTS: &[&str] = &[
    "0.0001",
    "0.5",
    "1",
    "2",
    "3",
    "49.99",
    "50",
    "50.01",
    "99.99",
    "100",
    "100.01",
    "150",
    "199.99",
    "200",
    "200.01",
    "12345.6789",
    "1000000000000000000000000000",
    "79228162514264337593543950335",
];

fn random_amount(rng: &mut fastrand::Rng) -> Decimal {
    if rng.bool() {
        dec(AMOUNTS[rng.usize(..AMOUNTS.len())])
    } else {
        Decimal::new(rng.i64(1..100_000), rng.u32(0..=4))
    }
}

/// A user's history as the store keeps it: times never go back, and often
/// repeat (half the events share the time before them), with steps that
/// land on and beside the windows' edges.
pub(crate) fn random_history(rng: &mut fastrand::Rng, unit: TimeUnit, len: usize) -> Vec<Event> {
    let second = unit.per_second;
    let steps = [
        0,
        0,
        0,
        0,
        0,
        1,
        2,
        second - 1,
        second,
        second + 1,
        3 * second,
        100 * second,
    ];
    let mut time = rng.i64(0..1000);
    (0..len)
        .map(|_| {
            time += steps[rng.usize(..steps.len())];
            let kind = if rng.bool() {
                Kind::Deposit
            } else {
                Kind::Withdraw
            };
            Event {
                kind,
                amount: random_amount(rng),
                time,
            }
        })
        .collect()
}

/// A rating with, or without, each override; counts and windows small, so
/// that every rule fires often.
pub(crate) fn random_profile(rng: &mut fastrand::Rng) -> AlertProfile {
    fn maybe<T>(rng: &mut fastrand::Rng, value: impl FnOnce(&mut fastrand::Rng) -> T) -> Option<T> {
        rng.bool().then(|| value(rng))
    }
    AlertProfile {
        risk: [Risk::Low, Risk::Medium, Risk::High][rng.usize(..3)],
        overrides: Overrides {
            withdrawal_over: maybe(rng, random_amount),
            consecutive_withdrawals: maybe(rng, |rng| rng.u32(1..=4)),
            increasing_deposits: maybe(rng, |rng| rng.u32(2..=4)),
            // Not the huge amounts: a sum that large rounds as a Decimal,
            // and rounding is where the whole-history rules were wrong
            // (`the_window_total_is_exact_where_a_decimal_sum_rounds`).
            window_deposit_total: maybe(rng, |rng| dec(AMOUNTS[rng.usize(..AMOUNTS.len() - 2)])),
            deposit_window: maybe(rng, |rng| rng.u32(0..=3)),
            burst_count: maybe(rng, |rng| rng.u32(1..=5)),
            burst_window: maybe(rng, |rng| rng.u32(0..=3)),
        },
    }
}

const T: i64 = 1_000_000;

fn dec(text: &str) -> Decimal {
    parse_decimal(text).unwrap()
}

fn deposit(amount: &str, time: i64) -> Event {
    Event {
        kind: Kind::Deposit,
        amount: dec(amount),
        time,
    }
}

fn withdraw(amount: &str, time: i64) -> Event {
    Event {
        kind: Kind::Withdraw,
        amount: dec(amount),
        time,
    }
}

fn codes_with(history: &[Event], profile: &AlertProfile) -> Vec<u16> {
    evaluate(history, &profile.thresholds(), TimeUnit::MILLISECONDS)
}

fn codes(history: &[Event]) -> Vec<u16> {
    codes_with(history, &AlertProfile::default())
}

/// Events far apart in time, so that only the rule under test can fire.
fn spaced(events: &[(Kind, &str)]) -> Vec<Event> {
    events
        .iter()
        .enumerate()
        .map(|(i, (kind, amount))| Event {
            kind: *kind,
            amount: dec(amount),
            time: T + i as i64 * 120_000,
        })
        .collect()
}

use Kind::{Deposit as D, Withdraw as W};

#[test]
fn rule_1100_withdrawal_over_100() {
    assert_eq!(codes(&[withdraw("100.01", T)]), [1100]);
    assert_eq!(codes(&[withdraw("99.99", T)]), [] as [u16; 0]);
    assert_eq!(codes(&[withdraw("100", T)]), [] as [u16; 0]);
    assert!(!codes(&[deposit("500", T)]).contains(&1100));
}

#[test]
fn rule_30_three_withdrawals_in_a_row() {
    assert_eq!(codes(&spaced(&[(W, "1"), (W, "1")])), [] as [u16; 0]);
    assert_eq!(codes(&spaced(&[(W, "1"), (W, "1"), (W, "1")])), [30]);
    // And again on each further withdrawal.
    assert_eq!(
        codes(&spaced(&[(W, "1"), (W, "1"), (W, "1"), (W, "1")])),
        [30]
    );
    assert_eq!(
        codes(&spaced(&[(W, "1"), (D, "1"), (W, "1"), (W, "1")])),
        [] as [u16; 0]
    );
}

#[test]
fn rule_300_three_increasing_deposits_ignoring_withdrawals() {
    assert_eq!(codes(&spaced(&[(D, "1"), (D, "2"), (D, "3")])), [300]);
    assert_eq!(
        codes(&spaced(&[
            (D, "1"),
            (W, "50"),
            (D, "2"),
            (W, "5"),
            (D, "3")
        ])),
        [300]
    );
    assert_eq!(
        codes(&spaced(&[(D, "1"), (D, "2"), (D, "2")])),
        [] as [u16; 0]
    );
    assert_eq!(
        codes(&spaced(&[(D, "3"), (D, "2"), (D, "4")])),
        [] as [u16; 0]
    );
    assert_eq!(codes(&spaced(&[(D, "1"), (D, "2")])), [] as [u16; 0]);
    // Only a deposit fires it.
    assert_eq!(
        codes(&spaced(&[(D, "1"), (D, "2"), (D, "3"), (W, "1")])),
        [] as [u16; 0]
    );
}

#[test]
fn rule_123_deposits_over_200_within_30_seconds() {
    let fires_123 = |events: &[Event]| codes(events).contains(&123);
    // The seed's boundary cases.
    let sum_200 = [
        deposit("10", T),
        deposit("90", T + 1),
        deposit("100", T + 30_000),
    ];
    assert!(!fires_123(&sum_200));
    let sum_201 = [
        deposit("10", T),
        deposit("90", T + 1),
        deposit("101", T + 30_000),
    ];
    assert!(fires_123(&sum_201));
    let withdrawal_between = [
        deposit("10", T),
        withdraw("90", T + 1),
        deposit("101", T + 30_000),
    ];
    assert!(!fires_123(&withdrawal_between));
    let first_outside = [
        deposit("10", T),
        deposit("90", T + 1),
        deposit("101", T + 30_001),
    ];
    assert!(!fires_123(&first_outside));
    // The seed's API test: 100.00 then 101.00 three ms later.
    assert_eq!(
        codes(&[deposit("100.00", T), deposit("101.00", T + 3)]),
        [123]
    );
    // A withdrawal never fires it.
    assert!(!fires_123(&[deposit("300", T), withdraw("1", T + 1)]));
}

#[test]
fn rule_500_more_than_5_events_in_a_minute() {
    let six = |last: i64| -> Vec<Event> {
        let mut events: Vec<Event> = (0..5).map(|i| withdraw("1", T + i).with_kind(i)).collect();
        events.push(deposit("1", T + last));
        events
    };
    assert!(codes(&six(60_000)).contains(&500));
    assert!(!codes(&six(60_001)).contains(&500));
    assert!(
        !codes(&six(60_000)[1..]).contains(&500),
        "five events are not more than five"
    );
}

impl Event {
    /// Alternates kinds so that rules 30 and 300 stay quiet.
    fn with_kind(mut self, i: i64) -> Event {
        self.kind = if i % 2 == 0 {
            Kind::Deposit
        } else {
            Kind::Withdraw
        };
        self.amount = dec("1");
        self
    }
}

#[test]
fn codes_come_in_ascending_order() {
    let history = [
        withdraw("1", T),
        withdraw("1", T + 1),
        withdraw("1", T + 2),
        withdraw("1", T + 3),
        withdraw("1", T + 4),
        withdraw("150", T + 5),
    ];
    assert_eq!(codes(&history), [30, 500, 1100]);
    assert_eq!(codes(&[]), [] as [u16; 0]);
}

#[test]
fn risk_ratings_scale_the_thresholds() {
    let high = Thresholds::for_risk(Risk::High);
    assert_eq!(high.withdrawal_over, dec("50"));
    assert_eq!(high.window_deposit_total, dec("100"));
    assert_eq!(
        (
            high.consecutive_withdrawals,
            high.increasing_deposits,
            high.burst_count
        ),
        (2, 2, 3)
    );
    let low = Thresholds::for_risk(Risk::Low);
    assert_eq!(low.withdrawal_over, dec("200"));
    assert_eq!(low.window_deposit_total, dec("400"));
    assert_eq!(
        (
            low.consecutive_withdrawals,
            low.increasing_deposits,
            low.burst_count
        ),
        (6, 6, 10)
    );
    assert_eq!((low.deposit_window, low.burst_window), (30, 60));
}

#[test]
fn a_high_risk_user_fires_earlier_and_a_low_risk_one_later() {
    let high = AlertProfile {
        risk: Risk::High,
        ..AlertProfile::default()
    };
    let low = AlertProfile {
        risk: Risk::Low,
        ..AlertProfile::default()
    };
    assert_eq!(codes_with(&[withdraw("50.01", T)], &high), [1100]);
    assert_eq!(codes_with(&[withdraw("150", T)], &low), [] as [u16; 0]);
    assert_eq!(codes_with(&[withdraw("200.01", T)], &low), [1100]);
    assert_eq!(codes_with(&spaced(&[(W, "1"), (W, "1")]), &high), [30]);
    assert_eq!(codes_with(&spaced(&[(D, "1"), (D, "2")]), &high), [300]);
    assert_eq!(
        codes_with(&[deposit("60", T), deposit("41", T + 1)], &high),
        [123]
    );
    assert_eq!(
        codes_with(&[deposit("300", T), deposit("100", T + 1)], &low),
        [] as [u16; 0]
    );
    let four: Vec<Event> = (0..4).map(|i| withdraw("1", T + i).with_kind(i)).collect();
    assert!(codes_with(&four, &high).contains(&500));
    let three_withdrawals = spaced(&[(W, "1"), (W, "1"), (W, "1")]);
    assert_eq!(codes_with(&three_withdrawals, &low), [] as [u16; 0]);
}

#[test]
fn overrides_beat_the_rating() {
    let profile = AlertProfile {
        risk: Risk::High,
        overrides: Overrides {
            withdrawal_over: Some(dec("1000")),
            deposit_window: Some(5),
            burst_count: Some(1),
            burst_window: Some(1),
            ..Overrides::default()
        },
    };
    let thresholds = profile.thresholds();
    assert_eq!(thresholds.withdrawal_over, dec("1000"));
    assert_eq!(thresholds.window_deposit_total, dec("100"), "the rating's");
    assert_eq!(codes_with(&[withdraw("999", T)], &profile), [] as [u16; 0]);
    // Deposits 5.001 s apart fall outside a 5 s window.
    let apart = [deposit("60", T), deposit("60", T + 5_001)];
    assert!(!codes_with(&apart, &profile).contains(&123));
    let close = [deposit("60", T), deposit("60", T + 5_000)];
    assert!(codes_with(&close, &profile).contains(&123));
    // Two events within a second is a burst of more than one.
    assert!(codes_with(&close[..1], &profile).is_empty());
    let pair = [deposit("1", T), withdraw("1", T + 1_000)];
    assert!(codes_with(&pair, &profile).contains(&500));
}

#[test]
fn seconds_as_the_time_unit_scale_the_windows() {
    let medium = Thresholds::for_risk(Risk::Medium);
    let events = [deposit("10", 100), deposit("90", 101), deposit("101", 130)];
    assert!(evaluate(&events, &medium, TimeUnit::SECONDS).contains(&123));
    let late = [deposit("10", 100), deposit("90", 101), deposit("101", 131)];
    assert!(!evaluate(&late, &medium, TimeUnit::SECONDS).contains(&123));
}

#[test]
fn the_history_need_covers_every_rule() {
    let need = Thresholds::for_risk(Risk::Medium).history_need(T, TimeUnit::MILLISECONDS);
    assert_eq!(need.deposits_since, T - 30_000);
    assert_eq!(need.last_events, 6);
    assert_eq!(need.last_deposits, 3);
}

#[test]
fn overrides_parse_with_every_problem_named() {
    let object = serde_json::json!({
        "withdrawal_over": "250.50",
        "burst_count": 0,
        "deposit_window": 90000,
        "colour": 1,
        "window_deposit_total": "1e3",
        "burst_window": null
    });
    let mut fields = Vec::new();
    let parsed = Overrides::from_json(object.as_object().unwrap(), &mut |field, _| {
        fields.push(field)
    });
    assert_eq!(parsed, None);
    assert_eq!(
        fields,
        [
            "overrides.burst_count",
            "overrides.colour",
            "overrides.deposit_window",
            "overrides.window_deposit_total"
        ]
    );
    let one = serde_json::json!({"increasing_deposits": 1});
    assert_eq!(
        Overrides::from_json(one.as_object().unwrap(), &mut |_, _| {}),
        None,
        "one deposit cannot increase"
    );
    let good = serde_json::json!({"withdrawal_over": 250.5, "burst_count": 2});
    let overrides = Overrides::from_json(good.as_object().unwrap(), &mut |_, _| {}).unwrap();
    assert_eq!(overrides.withdrawal_over, Some(dec("250.5")));
    assert_eq!(
        Overrides::from_json(overrides.to_json().as_object().unwrap(), &mut |_, _| {}).unwrap(),
        overrides
    );
}

#[test]
fn decimals_are_plain() {
    assert_eq!(parse_decimal("42.00"), Some(dec("42")));
    assert_eq!(parse_decimal("-9"), Some(-dec("9")));
    assert_eq!(parse_decimal(".5"), Some(dec("0.5")));
    let too_fine = format!("0.{}1", "0".repeat(28));
    assert_eq!(parse_decimal(&too_fine), None, "rounding it would give 0");
    assert_eq!(
        decimal_from_json(&serde_json::json!(0.0000001)),
        Some(dec("0.0000001"))
    );
    assert_eq!(decimal_from_json(&serde_json::json!("1e-7")), None);
    for bad in ["", ".", "a", "1e3", "1_000", "1.2.3", " 1", "0x10", "NaN"] {
        assert_eq!(parse_decimal(bad), None, "{bad:?}");
    }
}

#[test]
fn the_bounded_judgement_gives_the_codes_of_the_whole_history() {
    let mut fired = std::collections::BTreeSet::new();
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let unit = if rng.bool() {
            TimeUnit::MILLISECONDS
        } else {
            TimeUnit::SECONDS
        };
        let thresholds = random_profile(&mut rng).thresholds();
        let history = random_history(&mut rng, unit, 150);
        for end in 1..=history.len() {
            let prefix = &history[..end];
            let codes = evaluate(prefix, &thresholds, unit);
            assert_eq!(
                codes,
                full_history_codes(prefix, &thresholds, unit),
                "seed {seed}, event {end}: {thresholds:?}"
            );
            fired.extend(codes);
        }
    }
    let every_code: Vec<u16> = RULES.iter().map(|(code, _)| *code).collect();
    assert_eq!(fired.into_iter().collect::<Vec<_>>(), every_code);
}

#[test]
fn a_flood_of_events_at_one_time_is_judged_as_the_whole_history_judges_it() {
    let mut rng = fastrand::Rng::with_seed(12);
    for profile in [AlertProfile::default(), random_profile(&mut rng)] {
        let thresholds = profile.thresholds();
        let flood: Vec<Event> = (0..2_000)
            .map(|_| Event {
                time: T,
                ..random_history(&mut rng, TimeUnit::MILLISECONDS, 1)[0]
            })
            .collect();
        for end in 1..=flood.len() {
            let prefix = &flood[..end];
            assert_eq!(
                evaluate(prefix, &thresholds, TimeUnit::MILLISECONDS),
                full_history_codes(prefix, &thresholds, TimeUnit::MILLISECONDS),
                "event {end}"
            );
        }
    }
}

/// The one place the bounded judgement differs from the rules as they read
/// whole histories: a Decimal sum rounds past 28 significant digits (so
/// 10^27 + 10^-28 came to 10^27, not over a threshold of 10^27), where
/// the window's total is now exact.
#[test]
fn the_window_total_is_exact_where_a_decimal_sum_rounds() {
    let profile = AlertProfile {
        overrides: Overrides {
            window_deposit_total: Some(dec("1000000000000000000000000000")),
            ..Overrides::default()
        },
        ..AlertProfile::default()
    };
    let history = [
        deposit("1000000000000000000000000000", T),
        deposit("0.0000000000000000000000000001", T + 1),
    ];
    let thresholds = profile.thresholds();
    let unit = TimeUnit::MILLISECONDS;
    assert_eq!(evaluate(&history, &thresholds, unit), [123]);
    assert_eq!(
        full_history_codes(&history, &thresholds, unit),
        [] as [u16; 0]
    );
}
