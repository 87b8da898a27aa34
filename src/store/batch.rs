//! What both stores' writers take and answer: events and sign-ups queue
//! for one writer thread per store ([`crate::group_commit`]), which writes
//! each batch in one transaction; and the text forms both keep in their
//! columns.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Account, EventDone, Recorded, StoreError, StoreResult};
use crate::alerts::{AlertProfile, Event, Overrides, Risk, TimeUnit};
use crate::group_commit::GroupCommit;

/// Queues an event for a store's writer ([`super::Store::record_event`]):
/// `done` hears its outcome once the commit that holds it is durable.
pub fn queue_event(
    commits: &GroupCommit<Write, Written>,
    user_id: i64,
    event: &Event,
    unit: TimeUnit,
    done: EventDone,
) {
    let queued = QueuedEvent {
        user_id,
        event: *event,
        unit,
    };
    commits.submit(Write::Event(queued), move |written| {
        done(written.of_event())
    });
}

/// A write queued for the writer: batches hold both kinds, in arrival
/// order.
pub enum Write {
    Event(QueuedEvent),
    /// A sign-up ([`Store::create_account`]).
    Account(Account),
}

/// What the writer answers a [`Write`] with: an outcome of its own kind.
pub enum Written {
    Event(StoreResult<Recorded>),
    Account(StoreResult<()>),
    /// The writing of the write's batch panicked: nothing of it was stored
    /// (the transaction rolled back as the panic unwound through it).
    Lost,
}

impl Write {
    /// The outcome of this write when its batch failed with `err`.
    pub fn failed(&self, err: StoreError) -> Written {
        match self {
            Write::Event(_) => Written::Event(Err(err)),
            Write::Account(_) => Written::Account(Err(err)),
        }
    }
}

impl Written {
    /// An event's outcome.
    pub fn of_event(self) -> StoreResult<Recorded> {
        match self {
            Written::Event(outcome) => outcome,
            // The writer answers each write in its kind; another kind is
            // as good as lost.
            Written::Lost | Written::Account(_) => Err(lost("event")),
        }
    }

    /// An account's outcome.
    pub fn of_account(self) -> StoreResult<()> {
        match self {
            Written::Account(outcome) => outcome,
            Written::Lost | Written::Event(_) => Err(lost("account")),
        }
    }
}

/// The error of a `what` whose batch was lost.
fn lost(what: &str) -> StoreError {
    StoreError::Backend(format!(
        "the batch holding this {what} failed to be written"
    ))
}

/// An event queued for the writer.
pub struct QueuedEvent {
    pub user_id: i64,
    pub event: Event,
    pub unit: TimeUnit,
}

/// Seconds since the epoch, as the stores' time columns hold them.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An event's alert codes as stored: comma-separated.
pub fn codes_to_text(codes: &[u16]) -> String {
    codes
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Codes as [`codes_to_text`] wrote them; `None` for anything else.
pub fn codes_from_text(text: &str) -> Option<Vec<u16>> {
    text.split(',')
        .filter(|c| !c.is_empty())
        .map(|c| c.parse().ok())
        .collect()
}

/// A stored profile: its risk level and its overrides as JSON; `None`
/// for what wren did not write.
pub fn profile_from_text(risk: &str, overrides: &str) -> Option<AlertProfile> {
    let overrides: serde_json::Value = serde_json::from_str(overrides).ok()?;
    Some(AlertProfile {
        risk: Risk::parse(risk)?,
        overrides: overrides
            .as_object()
            .and_then(|o| Overrides::from_json(o, &mut |_, _| {}))?,
    })
}
