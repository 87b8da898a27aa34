//! Cost of routing and handling one request without sockets: what wren
//! itself spends between a parsed head and a response, per route. The
//! socket-level figures in `make bench` add the kernel's share to this.
//! Prints figures; asserts nothing (timings belong to the machine).
//!
//! Run by `make bench`, or `cargo bench --bench dispatch`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wren::http::Request;
use wren::{App, Config};

const RUN_FOR: Duration = Duration::from_secs(2);

fn main() {
    let data_dir = std::env::temp_dir().join(format!("wren-bench-dispatch-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("the temp dir is writable");
    let dir = data_dir.to_str().expect("the temp dir is UTF-8");
    let config = Config::parse("wren", &["--data-dir", dir], |_| None).expect("defaults parse");
    let app = App::open(config).expect("the app opens");
    let router = wren::routes::table(&app);

    println!("== dispatch (router + handler, no sockets)");
    for (label, target) in [
        ("GET /status", "/status"),
        ("GET /predict/123/december/4", "/predict/123/december/4"),
    ] {
        let per_request = time_per_iteration(|| {
            let mut request = Request::new("GET", black_box(target));
            black_box(router.dispatch(&app, &mut request));
        });
        println!(
            "  {label}: {:.3} µs/request",
            per_request.as_secs_f64() * 1e6
        );
    }
    drop(app);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Mean time of `f` over a run of about [`RUN_FOR`], after a warm-up.
fn time_per_iteration(mut f: impl FnMut()) -> Duration {
    let warm_up = Instant::now();
    while warm_up.elapsed() < RUN_FOR / 10 {
        f();
    }
    // Reading the clock costs about as much as a /status dispatch, so it
    // is read once per round of calls.
    const ROUND: u32 = 256;
    let start = Instant::now();
    let mut iterations = 0u32;
    while start.elapsed() < RUN_FOR {
        for _ in 0..ROUND {
            f();
        }
        iterations += ROUND;
    }
    start.elapsed() / iterations
}
