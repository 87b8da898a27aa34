//! wren's response type: what a handler returns. The engine adds the framing
//! headers (`Content-Length` or `Transfer-Encoding`, `Connection`, `Date`,
//! `Server`, `X-Request-Id`) when it writes it, so handlers never set those.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// The headers a new response has room for before its list regrows: the
/// few a handler sets (a content type, an `ETag`, caching) and the ones
/// layers around it add (the rate limit's two), since a regrowth copies
/// the list on every such answer. Not a limit: more still fit.
const RESPONSE_HEADER_ROOM: usize = 8;

/// A response body: nothing, bytes in memory, or a stream read while writing
/// (a file, an object from S3) so that large bodies never sit in memory.
pub enum ResponseBody {
    Empty,
    /// Borrowed for constant bodies, so they cost no allocation.
    Bytes(Cow<'static, [u8]>),
    Stream {
        reader: Box<dyn Read + Send>,
        /// Known length, sent as `Content-Length`; `None` streams chunked.
        len: Option<u64>,
    },
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            ResponseBody::Stream { len, .. } => write!(f, "Stream(len: {len:?})"),
        }
    }
}

#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    body: ResponseBody,
    /// A line for the server's log about this response (why it failed),
    /// never sent: an error on a `5xx`, a warning on anything else.
    log_note: Option<String>,
    /// Set on a stand-in for an answer given later ([`Response::later`]).
    later: Option<Box<Later>>,
}

impl Response {
    /// A response with no body yet.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::with_capacity(RESPONSE_HEADER_ROOM),
            body: ResponseBody::Empty,
            log_note: None,
            later: None,
        }
    }

    /// A stand-in for an answer given later, from any thread, through the
    /// [`Reply`]: the handler returns the stand-in, its worker goes on with
    /// other connections, and the connection is answered when the reply
    /// is sent. For an answer that waits on something other than the CPU
    /// (an event's group commit), so that the wait holds no thread. Headers
    /// added to the stand-in (by layers around the handler) are added to
    /// the answer; its status reads `0` until then (see
    /// [`Response::when_answered`]).
    pub fn later() -> (Response, Reply) {
        let meeting = Arc::new(Meeting(Mutex::new(Rendezvous::Waiting)));
        let mut stand_in = Response::new(0);
        stand_in.later = Some(Box::new(Later {
            meeting: Arc::clone(&meeting),
            headers: Vec::new(),
            on_answer: Vec::new(),
        }));
        (stand_in, Reply(Some(meeting)))
    }

    /// Whether this is a stand-in for an answer given later.
    pub fn is_later(&self) -> bool {
        self.later.is_some()
    }

    /// Runs `look` on the answer: this response, now, or the answer given
    /// later for a stand-in, once it is in (on the thread that gives it).
    pub fn when_answered(mut self, look: impl FnOnce(&Response) + Send + 'static) -> Self {
        match &mut self.later {
            Some(later) => later.on_answer.push(Box::new(look)),
            None => look(&self),
        }
        self
    }

    /// The answer this response stands for, waited for when it comes later:
    /// for tests that call a handler outside the engine.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn answered(mut self) -> Response {
        let Some(later) = self.take_later() else {
            return self;
        };
        let (sender, answer) = std::sync::mpsc::sync_channel(1);
        let lost = || Response::text(500, "the reply was dropped unsent");
        later.attach(lost, move |answer| {
            let _ = sender.send(answer);
        });
        answer.recv().expect("attach calls back once")
    }

    /// The engine's end of a stand-in, with the headers added to it.
    pub(crate) fn take_later(&mut self) -> Option<Box<Later>> {
        let mut later = self.later.take()?;
        later.headers = std::mem::take(&mut self.headers);
        Some(later)
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, text: impl Into<Cow<'static, str>>) -> Self {
        let body = match text.into() {
            Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
            Cow::Owned(text) => Cow::Owned(text.into_bytes()),
        };
        Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body)
    }

    /// `application/json`, serialized from `value`.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        // Serializing wren's own response types into memory cannot fail: they
        // hold no maps with non-string keys and no failing Serialize impls.
        let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(bytes)
    }

    /// A body streamed from `reader`; `len` is sent as `Content-Length` when
    /// known, otherwise the body goes out chunked.
    pub fn stream(status: u16, reader: Box<dyn Read + Send>, len: Option<u64>) -> Self {
        Response {
            status,
            headers: Vec::with_capacity(RESPONSE_HEADER_ROOM),
            body: ResponseBody::Stream { reader, len },
            log_note: None,
            later: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_body(mut self, bytes: impl Into<Cow<'static, [u8]>>) -> Self {
        self.body = ResponseBody::Bytes(bytes.into());
        self
    }

    pub fn with_log_note(mut self, note: String) -> Self {
        self.log_note = Some(note);
        self
    }

    pub(crate) fn take_log_note(&mut self) -> Option<String> {
        self.log_note.take()
    }

    /// The status; `0` on a stand-in for a later answer.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header named `name`, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    pub fn headers(&self) -> &[(&'static str, Cow<'static, str>)] {
        &self.headers
    }

    /// The body when it is held in memory (for tests and small bodies).
    pub fn body_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            ResponseBody::Empty => Some(&[]),
            ResponseBody::Bytes(bytes) => Some(bytes.as_ref()),
            ResponseBody::Stream { .. } => None,
        }
    }

    pub(crate) fn into_parts(self) -> (u16, Vec<(&'static str, Cow<'static, str>)>, ResponseBody) {
        (self.status, self.headers, self.body)
    }
}

/// Where a later answer is sent ([`Response::later`]). Dropped unsent (its
/// sender failed), it still ends the wait: the engine answers `500`, so no
/// client waits forever.
pub struct Reply(Option<Arc<Meeting>>);

impl Reply {
    pub fn send(mut self, answer: Response) {
        if let Some(meeting) = self.0.take() {
            meeting.answer(Some(answer));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(meeting) = self.0.take() {
            meeting.answer(None);
        }
    }
}

/// The engine's end of a later answer: what the layers around the handler
/// added to the stand-in, to apply to the answer once it is in.
pub(crate) struct Later {
    meeting: Arc<Meeting>,
    headers: Vec<(&'static str, Cow<'static, str>)>,
    on_answer: Vec<Looker>,
}

/// What looks at a later answer once it is in ([`Response::when_answered`]).
type Looker = Box<dyn FnOnce(&Response) + Send>;

impl fmt::Debug for Later {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Later")
    }
}

impl Later {
    /// Has `resume` called with the answer, the stand-in's headers added,
    /// once it is in: at once if it already is, else on the thread that
    /// sends it. `lost` makes the answer when there is none (the reply was
    /// dropped unsent, or a stand-in was sent).
    pub fn attach(self, lost: fn() -> Response, resume: impl FnOnce(Response) + Send + 'static) {
        let Later {
            meeting,
            headers,
            on_answer,
        } = self;
        meeting.attach(Box::new(move |answer: Option<Response>| {
            let mut answer = answer
                .filter(|answer| answer.later.is_none())
                .unwrap_or_else(lost);
            answer.headers.extend(headers);
            for look in on_answer {
                look(&answer);
            }
            resume(answer);
        }));
    }
}

/// Where the answer and the engine's resumption meet, whichever comes
/// first.
struct Meeting(Mutex<Rendezvous>);

/// What has come of a later answer; `None` is a reply dropped unsent.
enum Rendezvous {
    Waiting,
    Answered(Option<Response>),
    Attached(Box<dyn FnOnce(Option<Response>) + Send>),
    Over,
}

/// One side of a [`Meeting`], arriving.
enum Arrival {
    Answer(Option<Response>),
    Resume(Box<dyn FnOnce(Option<Response>) + Send>),
}

impl Meeting {
    fn answer(&self, answer: Option<Response>) {
        self.arrive(Arrival::Answer(answer));
    }

    fn attach(&self, resume: Box<dyn FnOnce(Option<Response>) + Send>) {
        self.arrive(Arrival::Resume(resume));
    }

    /// Waits for the other side, or, when it is there, resumes with the
    /// answer (outside the lock); each side counts once.
    fn arrive(&self, arrival: Arrival) {
        let mut rendezvous = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match (
            std::mem::replace(&mut *rendezvous, Rendezvous::Over),
            arrival,
        ) {
            (Rendezvous::Waiting, Arrival::Answer(answer)) => {
                *rendezvous = Rendezvous::Answered(answer);
            }
            (Rendezvous::Waiting, Arrival::Resume(resume)) => {
                *rendezvous = Rendezvous::Attached(resume);
            }
            (Rendezvous::Attached(resume), Arrival::Answer(answer))
            | (Rendezvous::Answered(answer), Arrival::Resume(resume)) => {
                drop(rendezvous);
                resume(answer);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_answer_gets_the_stand_ins_headers_and_lookers() {
        let (stand_in, reply) = Response::later();
        assert!(stand_in.is_later());
        let (seen, status) = std::sync::mpsc::channel();
        let stand_in = stand_in
            .with_header("RateLimit", "r=1")
            .when_answered(move |answer| seen.send(answer.status()).unwrap());
        assert!(status.try_recv().is_err(), "looked at before the answer");
        let sender = std::thread::spawn(move || {
            reply.send(Response::text(409, "late").with_header("X-Own", "1"))
        });
        let answer = stand_in.answered();
        sender.join().unwrap();
        assert_eq!(answer.status(), 409);
        assert_eq!(answer.header("x-own"), Some("1"));
        assert_eq!(answer.header("ratelimit"), Some("r=1"));
        assert_eq!(answer.body_bytes(), Some(&b"late"[..]));
        assert_eq!(status.recv().unwrap(), 409);
    }

    #[test]
    fn an_answer_sent_before_anyone_waits_is_kept() {
        let (stand_in, reply) = Response::later();
        reply.send(Response::new(204));
        assert_eq!(stand_in.answered().status(), 204);
    }

    #[test]
    fn a_reply_dropped_unsent_answers_500() {
        let (stand_in, reply) = Response::later();
        drop(reply);
        let answer = stand_in.answered();
        assert_eq!(answer.status(), 500);
        assert!(!answer.is_later());
    }

    #[test]
    fn a_ready_response_is_looked_at_at_once() {
        let (seen, status) = std::sync::mpsc::channel();
        let response = Response::new(201).when_answered(move |r| seen.send(r.status()).unwrap());
        assert_eq!(status.try_recv(), Ok(201));
        assert_eq!(response.answered().status(), 201);
    }
}
