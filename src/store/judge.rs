//! Judging an event from what a store holds of its user's history: the
//! part every backend shares. A backend reads the user's profile and last
//! events (the SQLite writer from its tails when it can); [`verdict`]
//! decides what else the thresholds need, asks the backend's [`History`]
//! for only that, and runs the rules.
//!
//! What is read is bounded by the thresholds ([`alerts::HistoryNeed`]):
//! the last events, the last deposits, and the running total before the
//! deposit window, at most `last_events + last_deposits + 1` rows however
//! long the user's history is. The last two are not read when the last
//! events already hold them (a short history, or enough deposits among
//! them): most events then cost one read of history, not three.

use rust_decimal::Decimal;

use super::tails::Held;
use crate::alerts::{self, Event, HistoryNeed, Kind, Recent, Thresholds, TimeUnit, Total};

/// What a judgement comes to.
pub enum Verdict {
    /// The user already has an event at a later time.
    OutOfOrder { latest: i64 },
    /// The codes, the user's running deposit total with this event, and how
    /// many stored rows of history the judgement used (read, or held by the
    /// SQLite writer's tails).
    Codes {
        codes: Vec<u16>,
        deposit_total: Total,
        history_rows: usize,
    },
}

/// The reads of a user's history a judgement may need beyond the last
/// events, each along an index over exactly the rows it returns.
pub trait History {
    type Error;
    /// The amounts of the user's last `n` deposits, newest first.
    fn last_deposits(&mut self, n: u32) -> Result<Vec<Decimal>, Self::Error>;
    /// The running deposit total of the user's last deposit before time
    /// `since`.
    fn total_before(&mut self, since: i64) -> Result<Option<Total>, Self::Error>;
}

/// Judges `event` under `thresholds`, which need `need` of the history;
/// `held` is the user's last `need.last_events` events (fewer: the whole
/// history), oldest first, with their running deposit totals.
pub fn verdict<H: History>(
    thresholds: &Thresholds,
    need: &HistoryNeed,
    held: Held,
    event: &Event,
    unit: TimeUnit,
    history: &mut H,
) -> Result<Verdict, H::Error> {
    let Held { mut events, totals } = held;
    let latest_total = totals.last().copied();
    // Stored order is time order, so the newest row has the latest time.
    if let Some(last) = events.last()
        && event.time < last.time
    {
        return Ok(Verdict::OutOfOrder { latest: last.time });
    }
    // Fewer rows than asked for: the user's whole history, which holds
    // whatever the reads below would find.
    let whole_history = events.len() < need.last_events as usize;
    let last_deposits = need.last_deposits as usize;
    let deposits_held = events.iter().filter(|e| e.kind == Kind::Deposit).count();
    let (mut deposits, deposit_rows) = if whole_history || deposits_held >= last_deposits {
        let held = events.iter().filter(|e| e.kind == Kind::Deposit);
        let last = held.skip(deposits_held.saturating_sub(last_deposits));
        (last.map(|e| e.amount).collect::<Vec<Decimal>>(), 0)
    } else {
        let mut deposits = history.last_deposits(need.last_deposits)?;
        deposits.reverse();
        let rows = deposits.len();
        (deposits, rows)
    };
    // The running total as it stood before the window: the total of the
    // last deposit earlier than it, which is the running total of the last
    // event earlier than it, when one was read.
    let before = events.iter().rposition(|e| e.time < need.deposits_since);
    let (before_window, window_rows) = match before {
        Some(at) => (Some(totals[at]), 0),
        None if whole_history => (None, 0),
        None => {
            let total = history.total_before(need.deposits_since)?;
            (total, usize::from(total.is_some()))
        }
    };
    let history_rows = events.len() + deposit_rows + window_rows;
    let mut deposit_total = latest_total.unwrap_or(Total::ZERO);
    events.push(*event);
    if event.kind == Kind::Deposit {
        deposit_total = deposit_total.plus(Total::of(event.amount));
        deposits.push(event.amount);
    }
    let recent = Recent {
        events: &events,
        deposits: &deposits,
        window_deposits: deposit_total.minus(before_window.unwrap_or(Total::ZERO)),
    };
    let codes = alerts::judge(recent, thresholds, unit);
    Ok(Verdict::Codes {
        codes,
        deposit_total,
        history_rows,
    })
}
