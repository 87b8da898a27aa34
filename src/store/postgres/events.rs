//! A batch's events, written in a handful of round trips whatever its
//! size: the users' advisory locks in one statement, their profiles in one
//! query, their last events in one query, then every event judged in
//! arrival order against what was read plus the batch's earlier events,
//! and the batch's rows inserted in one statement.
//!
//! Round trips are what a PostgreSQL writer spends its time on (on
//! loopback with TLS, each costs more than judging an event), so the reads
//! a judgement needs are made once per user per batch, not once per event.
//! A user whose last events are not their whole history may need two more
//! reads (the last deposits, the running total before the deposit window):
//! those are read for every such user in two more queries, as the user's
//! first event in the batch will ask for them. A later event of the same
//! user in the batch asks for other figures, which it reads from the
//! database, after the user's pending rows are inserted so that it sees
//! them.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::{corrupt, decimal, event_at, total};
use crate::alerts::{Event, Thresholds, TimeUnit, Total};
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
    /// The older figures the user's first event in the batch needs, when
    /// its last events are not its whole history; gone once the batch
    /// stores an event of the user.
    older: Option<Older>,
}

/// A user's history beyond its last events, as committed, for one
/// judgement's needs.
struct Older {
    /// `last_deposits` of them, newest first.
    deposits: Vec<Decimal>,
    last_deposits: u32,
    /// The running total of the last deposit before `since`.
    total_before: Option<Total>,
    since: i64,
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
    read_older(tx, &mut users, events)?;
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
        std::slice::from_ref(&list),
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
                    older: None,
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
        &[list, Param::Text(array(wanted).into())],
    )?;
    for row in &rows {
        let user = users.get_mut(&row.i64(0)?).ok_or_else(|| corrupt("user"))?;
        let event = event_at(row, 1)?;
        let total = total(row, 4)?.ok_or_else(|| corrupt("deposit total"))?;
        user.events.push((event, total));
    }
    Ok(users)
}

/// The older figures of each user whose last events are not its whole
/// history, as its first event in the batch needs them: two queries for
/// all of them, none when there is no such user.
fn read_older(
    tx: &mut Client,
    users: &mut HashMap<i64, User>,
    events: &[&QueuedEvent],
) -> Result<(), PgError> {
    let mut wanted: Vec<(i64, u32, i64)> = Vec::new();
    for queued in events {
        let user = &users[&queued.user_id];
        if wanted.iter().any(|(id, _, _)| *id == queued.user_id) {
            continue;
        }
        let need = user.thresholds.history_need(queued.event.time, queued.unit);
        if user.events.len() >= need.last_events as usize {
            wanted.push((queued.user_id, need.last_deposits, need.deposits_since));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let ids = Param::Text(array(wanted.iter().map(|(id, _, _)| id.to_string())).into());
    let deposits = tx.query(
        "SELECT u.id, d.amount
         FROM unnest($1::bigint[], $2::int[]) WITH ORDINALITY AS u(id, n, ord)
         CROSS JOIN LATERAL (
             SELECT amount, time, seq FROM alert_events
             WHERE user_id = u.id AND kind = 'deposit' ORDER BY time DESC, seq DESC LIMIT u.n
         ) AS d
         ORDER BY u.ord, d.time DESC, d.seq DESC",
        &[
            ids.clone(),
            Param::Text(array(wanted.iter().map(|(_, n, _)| n.to_string())).into()),
        ],
    )?;
    let totals = tx.query(
        "SELECT u.id, t.deposit_total
         FROM unnest($1::bigint[], $2::bigint[]) AS u(id, since)
         CROSS JOIN LATERAL (
             SELECT deposit_total FROM alert_events
             WHERE user_id = u.id AND kind = 'deposit' AND time < u.since
             ORDER BY time DESC, seq DESC LIMIT 1
         ) AS t",
        &[
            ids,
            Param::Text(array(wanted.iter().map(|(_, _, since)| since.to_string())).into()),
        ],
    )?;
    for (id, last_deposits, since) in wanted {
        users.get_mut(&id).ok_or_else(|| corrupt("user"))?.older = Some(Older {
            deposits: Vec::new(),
            last_deposits,
            total_before: None,
            since,
        });
    }
    for row in &deposits {
        older_of(users, row.i64(0)?)?
            .deposits
            .push(decimal(row, 1)?);
    }
    for row in &totals {
        older_of(users, row.i64(0)?)?.total_before = total(row, 1)?;
    }
    Ok(())
}

fn older_of(users: &mut HashMap<i64, User>, id: i64) -> Result<&mut Older, PgError> {
    users
        .get_mut(&id)
        .and_then(|user| user.older.as_mut())
        .ok_or_else(|| corrupt("user"))
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
        older: user.older.as_ref(),
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
            // Only the last ones are ever looked at again; the older
            // figures read for the first event no longer hold.
            user.events.drain(..skip);
            user.events.push((event, deposit_total));
            user.older = None;
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

/// The rest of a user's history: as read for the user's first event in
/// the batch when that is what is asked, else read in the batch's
/// transaction once the user's pending rows are in it.
struct PgHistory<'a> {
    tx: &'a mut Client,
    user_id: i64,
    pending: &'a mut Vec<Row>,
    older: Option<&'a Older>,
}

impl PgHistory<'_> {
    /// Inserts the pending rows when the user has one among them.
    fn settle_user(&mut self) -> Result<(), PgError> {
        if self.pending.iter().any(|row| row.user_id == self.user_id) {
            insert(self.tx, self.pending)?;
        }
        Ok(())
    }
}

impl judge::History for PgHistory<'_> {
    type Error = PgError;

    fn last_deposits(&mut self, n: u32) -> Result<Vec<Decimal>, PgError> {
        if let Some(older) = self.older.filter(|older| older.last_deposits == n) {
            return Ok(older.deposits.clone());
        }
        self.settle_user()?;
        let rows = self
            .tx
            .query(LAST_DEPOSITS, &[self.user_id.into(), i64::from(n).into()])?;
        rows.iter().map(|row| decimal(row, 0)).collect()
    }

    fn total_before(&mut self, since: i64) -> Result<Option<Total>, PgError> {
        if let Some(older) = self.older.filter(|older| older.since == since) {
            return Ok(older.total_before);
        }
        self.settle_user()?;
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
