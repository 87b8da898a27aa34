//! `tinyhttp-status PORT`: GET /status -> 200 "Alive!", anything else -> 404.
//! The usual tiny_http setup: one `Server`, a few threads pulling requests
//! off it (tiny_http runs its own per-connection threads internally).

use std::sync::Arc;
use std::thread;
use tiny_http::{Header, Method, Response, Server};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: tinyhttp-status PORT");
    let server = Arc::new(Server::http(("127.0.0.1", port)).expect("bind"));
    let content_type = Header::from_bytes("Content-Type", "text/plain").unwrap();

    let workers: Vec<_> = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            let content_type = content_type.clone();
            thread::spawn(move || loop {
                let Ok(request) = server.recv() else { return };
                let response = if *request.method() == Method::Get && request.url() == "/status" {
                    Response::from_string("Alive!").with_header(content_type.clone())
                } else {
                    Response::from_string("Not Found").with_status_code(404)
                };
                let _ = request.respond(response);
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}
