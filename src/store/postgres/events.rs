//! A batch's events, written in a handful of round trips whatever its
//! size: the users' advisory locks in one statement, their profiles in one
//! query, their last events in one query, then every event judged in
//! arrival order against what was read plus the batch's earlier events,
//! and the batch's rows inserted in one statement.
//!
//! Round trips are what a PostgreSQL writer spends its time on (on
//! loopback with TLS, each costs more than judging an event), so the reads
//! a judgement needs are made once per user per batch, not once per event;
//! the rarer reads past the last events (older deposits, the total before
//! the deposit window) go to the database, after the batch's pending rows
//! are inserted so that they see them.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::{corrupt, decimal, total};
use crate::alerts::{Event, Kind, Thresholds, TimeUnit, Total};
use crate::postgres::{Client, Param, PgError};
use crate::store::Recorded;
use crate::store::batch::{QueuedEvent, codes_to_text, profile_from_text};
use crate::store::judge::{self, Verdict};
use crate::store::tails::Held;

/// The user's last $2 deposits, newest first.
const LAST_DEPOSITS: &str = "SELECT amount FROM alert_events
    WHERE user_id = $1 AND kind = 'deposit' ORDER BY time DESC, seq DESC LIMIT $2";
/// The running total of the user's last deposit before time $2.
const TOTAL_BEFORE_WINDOW: &str = "SELECT deposit_total FROM alert_events
    WHERE user_id = $1 AND kind = 'deposit' AND time < $2
    ORDER BY time DESC, seq DESC LIMIT 1";

/// What the batch knows of one user.
struct User {
    thresholds: Thresholds,
    /// The user's last events with the running deposit total after each,
    /// oldest first: the committed ones read at the start, then the
    /// batch's own.
    events: Vec<(Event, Total)>,
}

/// An event judged and waiting for the batch's insert.
struct Row {
    user_id: i64,
    event: Event,
    codes: String,
    total: Total,
}

/// The batch's events, in the transaction `tx`, which holds nothing yet:
/// their outcomes in order.
pub(super) fn write(tx: &mut Client, events: &[&QueuedEvent]) -> Result<Vec<Recorded>, PgError> {
    let mut ids: Vec<i64> = events.iter().map(|queued| queued.user_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = Param::Text(array(ids.iter().map(i64::to_string)).into());
    // An aggregate over the array in its order: the locks are taken one
    // after the other, lowest user first, so two instances' batches never
    // wait on each other in a circle.
    tx.query(
        "SELECT count(pg_advisory_xact_lock(u)) FROM unnest($1::bigint[]) AS u",
        std::slice::from_ref(&list),
    )?;
    let mut users = read_users(tx, &ids, list)?;
    let mut pending = Vec::with_capacity(events.len());
    let mut outcomes = Vec::with_capacity(events.len());
    for queued in events {
        let user = users
            .get_mut(&queued.user_id)
            .expect("every user of the batch was read");
        outcomes.push(judge_one(tx, user, queued, &mut pending)?);
    }
    insert(tx, &mut pending)?;
    Ok(outcomes)
}

/// Each user's thresholds and last events (as many as its thresholds
/// need).
fn read_users(
    tx: &mut Client,
    ids: &[i64],
    list: Param<'_>,
) -> Result<HashMap<i64, User>, PgError> {
    let mut thresholds: HashMap<i64, Thresholds> = HashMap::with_capacity(ids.len());
    let profiles = tx.query(
        "SELECT user_id, risk, overrides FROM alert_profiles WHERE user_id = ANY($1::bigint[])",
        &[list],
    )?;
    for row in &profiles {
        let profile =
            profile_from_text(row.str(1)?, row.str(2)?).ok_or_else(|| corrupt("profile"))?;
        thresholds.insert(row.i64(0)?, profile.thresholds());
    }
    let mut users: HashMap<i64, User> = ids
        .iter()
        .map(|&id| {
            let thresholds = thresholds
                .remove(&id)
                .unwrap_or_else(|| crate::alerts::AlertProfile::default().thresholds());
            (
                id,
                User {
                    thresholds,
                    events: Vec::new(),
                },
            )
        })
        .collect();
    // How many of its last events each user's thresholds look at (the
    // same for every event of the user: it does not depend on the time).
    let wanted = ids.iter().map(|id| {
        users[id]
            .thresholds
            .history_need(0, TimeUnit::MILLISECONDS)
            .last_events
            .to_string()
    });
    let rows = tx.query(
        "SELECT u.id, e.kind, e.amount, e.time, e.deposit_total
         FROM unnest($1::bigint[], $2::int[]) AS u(id, n)
         CROSS JOIN LATERAL (
             SELECT seq, kind, amount, time, deposit_total FROM alert_events
             WHERE user_id = u.id ORDER BY seq DESC LIMIT u.n
         ) AS e
         ORDER BY u.id, e.seq",
        &[
            Param::Text(array(ids.iter().map(i64::to_string)).into()),
            Param::Text(array(wanted).into()),
        ],
    )?;
    for row in &rows {
        let user = users.get_mut(&row.i64(0)?).ok_or_else(|| corrupt("user"))?;
        let event = Event {
            kind: Kind::parse(row.str(1)?).ok_or_else(|| corrupt("kind"))?,
            amount: decimal(row, 2)?,
            time: row.i64(3)?,
        };
        let total = total(row, 4)?.ok_or_else(|| corrupt("deposit total"))?;
        user.events.push((event, total));
    }
    Ok(users)
}

/// Judges one event against what the batch knows of its user; a stored
/// one joins the pending rows and the user's events.
fn judge_one(
    tx: &mut Client,
    user: &mut User,
    queued: &QueuedEvent,
    pending: &mut Vec<Row>,
) -> Result<Recorded, PgError> {
    let &QueuedEvent {
        user_id,
        event,
        unit,
    } = queued;
    let need = user.thresholds.history_need(event.time, unit);
    let skip = user.events.len().saturating_sub(need.last_events as usize);
    let held = Held {
        events: user.events[skip..]
            .iter()
            .map(|(event, _)| *event)
            .collect(),
        totals: user.events[skip..]
            .iter()
            .map(|(_, total)| *total)
            .collect(),
    };
    let mut history = PgHistory {
        tx,
        user_id,
        pending,
    };
    match judge::verdict(&user.thresholds, &need, held, &event, unit, &mut history)? {
        Verdict::OutOfOrder { latest } => Ok(Recorded::OutOfOrder { latest }),
        Verdict::Codes {
            codes,
            deposit_total,
            history_rows,
        } => {
            pending.push(Row {
                user_id,
                event,
                codes: codes_to_text(&codes),
                total: deposit_total,
            });
            // Only the last ones are ever looked at again.
            user.events.drain(..skip);
            user.events.push((event, deposit_total));
            Ok(Recorded::Stored {
                codes,
                history_rows,
            })
        }
    }
}

/// Inserts the pending rows, in the order they were judged (their `seq`
/// follows it), in one statement.
fn insert(tx: &mut Client, pending: &mut Vec<Row>) -> Result<(), PgError> {
    if pending.is_empty() {
        return Ok(());
    }
    let column = |field: fn(&Row) -> String| Param::Text(array(pending.iter().map(field)).into());
    tx.execute(
        "INSERT INTO alert_events (user_id, kind, amount, time, alert_codes, deposit_total)
         SELECT user_id, kind, amount, time, codes, total
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bytea[])
              WITH ORDINALITY AS r(user_id, kind, amount, time, codes, total, ord)
         ORDER BY ord",
        &[
            column(|row| row.user_id.to_string()),
            column(|row| row.event.kind.as_str().to_owned()),
            column(|row| row.event.amount.to_string()),
            column(|row| row.event.time.to_string()),
            column(|row| row.codes.clone()),
            column(|row| format!("\\x{}", crate::hex::encode(&row.total.to_bytes()))),
        ],
    )?;
    pending.clear();
    Ok(())
}

/// A PostgreSQL array literal of `items`, each quoted (so a comma, a
/// brace or an empty string is an element like any other).
fn array(items: impl Iterator<Item = String>) -> String {
    let mut literal = String::from("{");
    for (n, item) in items.enumerate() {
        if n > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

/// The rest of a user's history, read in the batch's transaction once the
/// batch's pending rows are in it.
struct PgHistory<'a> {
    tx: &'a mut Client,
    user_id: i64,
    pending: &'a mut Vec<Row>,
}

impl judge::History for PgHistory<'_> {
    type Error = PgError;

    fn last_deposits(&mut self, n: u32) -> Result<Vec<Decimal>, PgError> {
        insert(self.tx, self.pending)?;
        let rows = self
            .tx
            .query(LAST_DEPOSITS, &[self.user_id.into(), i64::from(n).into()])?;
        rows.iter().map(|row| decimal(row, 0)).collect()
    }

    fn total_before(&mut self, since: i64) -> Result<Option<Total>, PgError> {
        insert(self.tx, self.pending)?;
        let rows = self
            .tx
            .query(TOTAL_BEFORE_WINDOW, &[self.user_id.into(), since.into()])?;
        match rows.first() {
            Some(row) => total(row, 0),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::array;

    #[test]
    fn array_elements_are_quoted_and_escaped() {
        let items = ["1", "", "30,500", r#"a"b\c"#].map(String::from);
        assert_eq!(array(items.into_iter()), r#"{"1","","30,500","a\"b\\c"}"#);
        assert_eq!(array(std::iter::empty()), "{}");
    }
}
