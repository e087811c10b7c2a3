//! The padding lab's trace readers (`dotstub padding eval TRACE`): CSV,
//! pcap and pcapng, told apart by content. The only public reader is
//! `Trace::read(path)`, so each input is written to one file per process
//! (in /dev/shm when there is one) and read from there. A trace that reads
//! is then evaluated under one deterministic and one random policy pair,
//! and reported as table and JSON, as the command does.
//!
//! Checked besides "no panic": no trace read is empty (`read` promises an
//! error instead), and the metrics are numbers, not NaN.
//!
//! Captures whose blocks claim more octets than the file holds and more
//! than the reader's first buffer (64 KiB) are skipped: the reader doubles
//! its buffer up to 16 MiB for them before it finds the file truncated,
//! which is what `MAX_BUFFER` allows, and costs 5 ms an input, 40 times
//! the rest. `huge_block` finds them; a few seeds keep the path covered.

#![no_main]

use std::{num::NonZeroU32, path::PathBuf, sync::OnceLock};

use dotstub::padding_lab::{PolicyPair, Settings, Trace, evaluate, json, table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if huge_block(data) {
        return;
    }
    let path = trace_file();
    std::fs::write(path, data).expect("the trace file is writable");
    let Ok(trace) = Trace::read(path) else {
        return;
    };
    assert!(!trace.is_empty(), "read returned an empty trace");
    let _ = trace.source().to_string();
    let settings = Settings {
        limit: 4096,
        runs: NonZeroU32::MIN,
        seed: 7,
    };
    let evaluations: Vec<_> = policies()
        .iter()
        .map(|policy| evaluate(&trace, policy, &settings))
        .collect();
    for evaluation in &evaluations {
        for metric in [evaluation.beta, evaluation.phi, evaluation.entropy_bits] {
            assert!(!metric.is_nan(), "a metric is NaN: {evaluation:?}");
        }
    }
    let _ = (table(&evaluations), json(&evaluations));
});

/// Octets the capture reader buffers at first (`padding_lab::pcap::BUFFER`).
const FIRST_BUFFER: usize = 1 << 16;

/// Whether a pcap record or pcapng block of `data` claims more octets
/// than both the file and the reader's first buffer hold. Walks the
/// blocks as far as their lengths are plausible.
fn huge_block(data: &[u8]) -> bool {
    let too_big = |len: usize| len > data.len().max(FIRST_BUFFER);
    let u32_at = |at: usize, big_endian: bool| {
        let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        let value = match big_endian {
            true => u32::from_be_bytes(bytes),
            false => u32::from_le_bytes(bytes),
        };
        usize::try_from(value).ok()
    };
    match data.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]) => legacy(false, too_big, u32_at),
        Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]) => legacy(true, too_big, u32_at),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => {
            let mut at = 0;
            let mut big_endian = false;
            while at + 12 <= data.len() {
                if data.get(at..at + 4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]) {
                    big_endian = data.get(at + 8..at + 12) == Some(&[0x1a, 0x2b, 0x3c, 0x4d]);
                }
                let Some(len) = u32_at(at + 4, big_endian) else {
                    return false;
                };
                if too_big(len) {
                    return true;
                }
                if len < 12 {
                    return false;
                }
                at += len;
            }
            false
        }
        _ => false,
    }
}

fn legacy(
    big_endian: bool,
    too_big: impl Fn(usize) -> bool,
    u32_at: impl Fn(usize, bool) -> Option<usize>,
) -> bool {
    let mut at = 24;
    while let Some(caplen) = u32_at(at + 8, big_endian) {
        if too_big(caplen.saturating_add(16)) {
            return true;
        }
        at += 16 + caplen;
    }
    false
}

fn trace_file() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("dotstub-fuzz-trace-{}", std::process::id()))
    })
}

fn policies() -> &'static [PolicyPair] {
    static POLICIES: OnceLock<Vec<PolicyPair>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        ["block:128/468", "random-block:128:2/468:1"]
            .iter()
            .map(|text| text.parse().expect("valid policy pairs"))
            .collect()
    })
}
