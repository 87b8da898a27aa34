//! Request handlers, one module per API family. Each handler is a pure
//! function `fn(&App, &mut Request) -> Result<Response, ApiError>`; who may
//! call it is declared beside it in the route table and enforced by
//! `session`. A handler whose answer waits on work it hands off (the
//! commit of an event or a sign-up) returns a stand-in and sends the
//! answer later (`Response::later`), holding no thread meanwhile.

pub mod accounts;
pub mod alerts;
pub mod basics;
pub mod docs;
mod errors;
pub mod files;
pub mod keys;
pub mod openapi;
pub mod operator;
pub mod predict;
pub mod rate;
pub mod session;
#[cfg(feature = "test-routes")]
pub mod testing;

/// The answer `response` stands for, waited for when it comes later
/// ([`Response::later`]): for calling a handler outside the engine.
#[cfg(test)]
pub(crate) fn answer_of(response: crate::http::Response) -> crate::http::Response {
    use crate::http::ApiError;
    let mut response = response;
    let Some(later) = response.take_later() else {
        return response;
    };
    let (sender, answer) = std::sync::mpsc::sync_channel(1);
    let lost = || ApiError::new(500, "the reply was dropped unsent").into_response();
    later.attach(lost, move |answer| sender.send(answer).unwrap());
    answer.recv().unwrap()
}
