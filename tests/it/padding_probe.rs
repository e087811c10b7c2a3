//! `dotstub padding probe` against the in-process upstream: the sizes it
//! reports are those the upstream received, the TLS record sizes are those
//! sizes plus a constant record overhead, and it recognises the upstream's
//! answer padding.

use std::{process::Command, time::Duration};

use dotstub::{
    config::Config,
    padding_probe::{ProbeOptions, ProbeReport, probe},
};

use crate::support::{
    certs::TestPki,
    dot_upstream::{DotUpstream, ReceivedQuery, Script},
    server::{Options, TLS_NAME, config_text, upstream_table},
};

/// Not a performance bound: how long a hung probe may hold up the suite.
const MUST_FINISH: Duration = Duration::from_secs(30);

const NAMES: &str = "# a few lengths\na.test\nexample.test\nwww.example.test\n\
                     a-much-longer-label.example.test\nx.y.z.example.test\n";

const POLICIES: [&str; 3] = ["block:128", "random:40", "none"];

struct Rig {
    pki: TestPki,
    upstream: DotUpstream,
    config: String,
}

impl Rig {
    async fn start() -> Rig {
        let pki = TestPki::new();
        let upstream = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
        let table = upstream_table("rig", upstream.addr(), &pki, "");
        let config = config_text(&Options::default(), &table);
        Rig {
            pki,
            upstream,
            config,
        }
    }

    async fn probe(&self) -> ProbeReport {
        let config = Config::from_toml(&self.config, "test").unwrap();
        let policies = POLICIES.iter().map(|p| p.parse().unwrap()).collect();
        let options = ProbeOptions::new(policies, Some(NAMES), "A").unwrap();
        tokio::time::timeout(MUST_FINISH, probe(&config, &options))
            .await
            .expect("the probe finishes")
            .unwrap()
    }
}

/// What the upstream received, without each connection's first query (the
/// probe's unmeasured warm-up).
fn measured(received: &[ReceivedQuery]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .filter(|query| !seen.insert(query.connection))
        .map(|query| query.bytes.len())
        .collect()
}

#[tokio::test]
async fn probe_reports_the_sizes_the_upstream_received() {
    let rig = Rig::start().await;
    // Learnt from the warm-up answer's OPT record, not the 1232 assumed before.
    rig.upstream.set_udp_size(Some(700));
    let report = rig.probe().await;
    let names = NAMES.lines().filter(|l| !l.starts_with('#')).count();
    let [upstream] = &report.upstreams[..] else {
        panic!("one upstream configured: {report:?}");
    };
    assert_eq!(upstream.limit, 700);
    let rows = &upstream.rows;
    assert_eq!(rows.len(), POLICIES.len());
    for (row, policy) in rows.iter().zip(POLICIES) {
        assert_eq!(row.policy.to_string(), policy);
        assert_eq!((row.samples.len(), row.failures), (names, 0), "{policy}");
        // Quantiles are of the samples' round trips: the whole range ends
        // at the slowest, and the median is a real, positive one.
        let slowest = row.samples.iter().map(|s| s.rtt).max();
        assert_eq!(row.rtt_quantile(1.0), slowest, "{policy}");
        let median = row.rtt_quantile(0.5).expect("a median");
        assert!(median > Duration::ZERO && Some(median) <= slowest);
    }
    // Sent one at a time: name i under policy i first, then the others.
    let mut sent = Vec::new();
    for index in 0..names {
        for turn in 0..POLICIES.len() {
            let row = &rows[(index + turn) % POLICIES.len()];
            sent.push(row.samples[index].query_len);
        }
    }
    assert_eq!(sent, measured(&rig.upstream.received()));
    // Each message travels in one TLS record: its length prefix, the
    // message, and the same record overhead (header, AEAD tag, ...) each time.
    let overhead = |records: u64, len: usize| records - (len as u64 + 2);
    let first = &rows[0].samples[0];
    let expected = overhead(first.query_records.octets, first.query_len);
    assert!((17..=40).contains(&expected), "record overhead {expected}");
    for sample in rows.iter().flat_map(|row| &row.samples) {
        assert_eq!(sample.query_records.count, 1);
        assert_eq!(sample.response_records.count, 1);
        assert_eq!(
            overhead(sample.query_records.octets, sample.query_len),
            expected
        );
        let response = overhead(sample.response_records.octets, sample.response_len);
        assert_eq!(response, expected);
    }
    let [block, random, none] = &rows[..] else {
        unreachable!()
    };
    assert!(block.samples.iter().all(|s| s.query_len % 128 == 0));
    assert_eq!(block.distinct_query_sizes(), 1);
    assert!(none.distinct_query_sizes() > 1);
    // The same names with a Padding option (4 octets) and 0 to 40 octets
    // in it, drawn anew for each.
    let added: Vec<usize> = (0..names)
        .map(|i| random.samples[i].query_len - none.samples[i].query_len)
        .collect();
    assert!(added.iter().all(|n| (4..=44).contains(n)), "{added:?}");
    let draws: std::collections::HashSet<usize> = added.iter().copied().collect();
    assert!(
        draws.len() > 1,
        "the same padding for every name: {added:?}"
    );
    // The upstream pads its answers to 468 when the query was padded.
    for row in [block, random] {
        assert_eq!(row.padded_responses(), names);
        assert_eq!(row.response_block(), Some(468));
    }
    assert_eq!((none.padded_responses(), none.response_block()), (0, None));
}

#[tokio::test]
async fn probe_subcommand_prints_a_row_per_upstream_and_policy() {
    let rig = Rig::start().await;
    let config = rig.pki.dir().join("probe.toml");
    let names = rig.pki.dir().join("names.txt");
    std::fs::write(&config, &rig.config).unwrap();
    std::fs::write(&names, NAMES).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dotstub"));
    command.env_remove("SSLKEYLOGFILE");
    command.args([
        "padding",
        "probe",
        "--policy",
        "block:128",
        "--policy",
        "none",
    ]);
    command
        .arg("--names")
        .arg(&names)
        .arg("--config")
        .arg(&config);
    // The upstream runs on this test's runtime: wait off its thread.
    let output = tokio::time::timeout(
        MUST_FINISH,
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("the probe finishes")
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rig ")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(
        rows[0].contains("block:128") && rows[0].contains(" 468 "),
        "{stdout}"
    );
    assert!(
        rows[1].contains("none") && rows[1].contains("0/5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rig: queries padded to at most 1232 octets"),
        "{stdout}"
    );
}
