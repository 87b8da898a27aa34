//! Evaluation speed of the embedded sales model, without HTTP: one row at
//! a time, and batches of 1000 rows as `POST /api/v1/predict` runs them.
//! Prints figures; asserts nothing (timings belong to the machine).
//!
//! Run by `make bench`, or `cargo bench --bench model_eval`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wren::model::{Input, Model};

const BATCH: usize = 1000;
const RUN_FOR: Duration = Duration::from_secs(2);

fn main() {
    let model = Model::embedded().expect("the embedded model loads");
    let mut rng = fastrand::Rng::with_seed(7);
    let months = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    // Realistic inputs across the training range, encoded once.
    let rows: Vec<Vec<f64>> = (0..BATCH)
        .map(|_| {
            let texts = [
                rng.u32(0..=60).to_string(),
                months[rng.usize(..12)].to_owned(),
                rng.u32(0..=20_000).to_string(),
            ];
            let inputs: Vec<Input> = model
                .features
                .iter()
                .zip(&texts)
                .map(|(feature, text)| feature.parse_text(text).expect("valid input"))
                .collect();
            let mut row = vec![0.0; model.width()];
            model.encode(&inputs, &mut row);
            row
        })
        .collect();

    println!(
        "== model evaluation: {} {} ({}), {} rows of realistic inputs",
        model.name,
        model.version,
        model.kind_name(),
        BATCH
    );
    let per_row = time_per_iteration(|| {
        black_box(model.predict(black_box(&rows[0])));
    });
    println!("  single row: {:.3} µs/row", per_row.as_secs_f64() * 1e6);

    let mut out = Vec::with_capacity(BATCH);
    let per_batch = time_per_iteration(|| {
        out.clear();
        out.extend(rows.iter().map(|row| model.predict(row)));
        black_box(&out);
    });
    println!(
        "  batch of {BATCH}: {:.1} µs/batch, {:.3} µs/row",
        per_batch.as_secs_f64() * 1e6,
        per_batch.as_secs_f64() * 1e6 / BATCH as f64
    );
}

/// Mean time of `f` over a run of about [`RUN_FOR`], after a warm-up.
fn time_per_iteration(mut f: impl FnMut()) -> Duration {
    let warm_up = Instant::now();
    while warm_up.elapsed() < RUN_FOR / 10 {
        f();
    }
    let start = Instant::now();
    let mut iterations = 0u32;
    while start.elapsed() < RUN_FOR {
        for _ in 0..64 {
            f();
        }
        iterations += 64;
    }
    start.elapsed() / iterations
}
