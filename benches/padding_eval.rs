//! The padding evaluator on a million transactions: reading the CSV, one
//! deterministic and one random policy pair, and the whole default grid.
//! Issue 5 asks for seconds, not minutes: nothing may be quadratic in the
//! number of transactions.
//!
//! Run: `cargo bench --bench padding_eval`.

// Benchmark set-up may panic on what cannot happen.
#![allow(clippy::unwrap_used)]

use std::{fmt::Write, path::PathBuf, sync::LazyLock};

use divan::Bencher;
use dotstub::padding_lab::{PolicyPair, Settings, Trace, default_grid, evaluate};

fn main() {
    divan::main();
}

const TRANSACTIONS: u64 = 1_000_000;

/// A CSV of a million transactions in a temporary folder that lives as
/// long as the process: sizes spread like real traffic (queries 17 to 100
/// octets, responses up to about 1,500), a few with OPT records.
static CSV: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("million.csv");
    let mut text = String::from("qsize,rsize,qopt,ropt\n");
    // A fixed linear congruential generator: the same trace every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    for _ in 0..TRANSACTIONS {
        let opt = u64::from(next() % 8 == 0);
        let qsize = 17 + next() % 60 + next() % 24 + 11 * opt;
        let rsize = qsize + 16 + (next() % 40) * (next() % 36);
        let _ = writeln!(text, "{qsize},{rsize},{opt},{opt}");
    }
    std::fs::write(&path, text).unwrap();
    (dir, path)
});

static TRACE: LazyLock<Trace> = LazyLock::new(|| Trace::read(&CSV.1).unwrap());

#[divan::bench(sample_count = 3)]
fn read_csv(bencher: Bencher) {
    let path = &CSV.1;
    bencher.bench(|| Trace::read(path).unwrap().len());
}

#[divan::bench(sample_count = 3, args = ["block:128/468", "random-block:128:2/468:1"])]
fn one_policy(bencher: Bencher, policy: &str) {
    let trace = &*TRACE;
    let policy: PolicyPair = policy.parse().unwrap();
    bencher.bench(|| evaluate(trace, &policy, &Settings::default()).phi);
}

#[divan::bench(sample_count = 1)]
fn default_grid_of_21(bencher: Bencher) {
    let trace = &*TRACE;
    let grid = default_grid();
    bencher.bench(|| {
        grid.iter()
            .map(|policy| evaluate(trace, policy, &Settings::default()).phi)
            .sum::<f64>()
    });
}
