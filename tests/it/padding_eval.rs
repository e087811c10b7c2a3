//! `dotstub padding eval`: the worked example of docs/padding.md computed
//! exactly, captures read like the CSVs made from them, pcapng over UDP
//! and TCP paired by 5-tuple and ID, the SVG chart, JSON output, and bad
//! input refused with the file and place named and exit code 2.
//!
//! Traces are in tests/data (see its README); synthetic captures are built
//! here, at test time.

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use dotstub::padding_lab::{
    EvalRequest, Evaluation, Message, PolicyPair, Settings, Source, Trace, Transaction, evaluate,
    run_eval,
};
use etherparse::PacketBuilder;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn eval(trace: &Trace, policy: &str) -> Evaluation {
    evaluate(trace, &policy.parse().unwrap(), &Settings::default())
}

fn dotstub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dotstub"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

//---- The worked example ----

#[test]
fn tiny_trace_gives_the_worked_example_of_the_docs() {
    let trace = Trace::read(&data("tiny.csv")).unwrap();
    assert_eq!(trace.len(), 4);

    let none = eval(&trace, "none");
    assert_eq!((none.beta, none.beta_q, none.beta_r), (1.0, 1.0, 1.0));
    assert_eq!(none.phi, 6.0 / 16.0);
    assert_eq!(none.distinct, 3.0);
    assert_eq!(none.entropy_bits, 1.5);
    assert_eq!(none.unique_share, 0.5);

    let block = eval(&trace, "block:128/468");
    assert_eq!(block.beta_q, 640.0 / 226.0);
    assert_eq!(block.beta_r, 2340.0 / 820.0);
    assert_eq!(block.beta, 2980.0 / 1046.0);
    assert_eq!(block.phi, 10.0 / 16.0);
    assert_eq!(block.distinct, 2.0);
    assert!((block.entropy_bits - (2.0 - 0.75 * 3f64.log2())).abs() < 1e-12);
    assert_eq!(block.unique_share, 0.25);
    assert_eq!(block.query_sizes, [(128, 3.0), (256, 1.0)]);
    assert_eq!(block.response_sizes, [(468, 3.0), (936, 1.0)]);

    let random = eval(&trace, "random-block:128:1/468:1");
    assert_eq!(random.beta_q, 896.0 / 226.0);
    assert_eq!(random.beta_r, 3276.0 / 820.0);
    assert_eq!(random.beta, 4172.0 / 1046.0);
    assert_eq!(random.phi, 11.5 / 16.0);

    let max = eval(&trace, "max:256/1024");
    assert_eq!((max.beta_q, max.beta_r), (1024.0 / 226.0, 4096.0 / 820.0));
    assert_eq!((max.phi, max.distinct, max.entropy_bits), (1.0, 1.0, 0.0));
}

#[test]
fn random_metrics_are_the_means_of_single_draws() {
    let trace = Trace::read(&data("pcpp_DnsPackets.csv")).unwrap();
    let policy: PolicyPair = "random:16/32".parse().unwrap();
    let averaged = evaluate(&trace, &policy, &Settings::default());
    assert_eq!(averaged.runs, 20);
    // Draw k of the 20 is the single draw seeded k.
    let draws: Vec<Evaluation> = (0..20)
        .map(|seed| {
            let single = Settings {
                runs: NonZeroU32::MIN,
                seed,
                ..Settings::default()
            };
            evaluate(&trace, &policy, &single)
        })
        .collect();
    type Metric = fn(&Evaluation) -> f64;
    let metrics: [(&str, Metric); 3] = [
        ("distinct", |e| e.distinct),
        ("entropy_bits", |e| e.entropy_bits),
        ("unique_share", |e| e.unique_share),
    ];
    for (name, metric) in metrics {
        let values: Vec<f64> = draws.iter().map(metric).collect();
        // The draws differ, so a mean over them is not any one of them.
        assert!(
            values.iter().any(|&v| v != values[0]),
            "{name}: every draw gave {}",
            values[0]
        );
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!(
            (metric(&averaged) - mean).abs() < 1e-9,
            "{name}: {} against the mean of the draws {mean}",
            metric(&averaged)
        );
    }
    assert_eq!(
        averaged,
        evaluate(&trace, &policy, &Settings::default()),
        "seeded"
    );
}

//---- Captures ----

/// (qsize, rsize) multiset of a trace.
fn sizes(trace: &Trace) -> BTreeMap<(u16, u16), u64> {
    let mut sizes = BTreeMap::new();
    for (pair, count) in trace.pairs() {
        *sizes
            .entry((pair.query.len, pair.response.len))
            .or_default() += count;
    }
    sizes
}

fn with_opt(trace: &Trace) -> (u64, u64) {
    trace.pairs().fold((0, 0), |(q, r), (pair, count)| {
        (
            q + u64::from(pair.query.has_opt) * count,
            r + u64::from(pair.response.has_opt) * count,
        )
    })
}

#[test]
fn shared_captures_hold_the_size_pairs_of_their_csvs() {
    // The CSVs have no OPT columns, and rightly: no port-53 message in the
    // captures has one (the OPT records in pcpp_DnsPackets.pcap are on mDNS,
    // port 5353, which the reader leaves out). Each capture has 4 queries
    // that were never answered.
    for (name, pairs) in [("pcpp_DnsPackets", 212), ("pcpp_examples_dns", 193)] {
        let csv = Trace::read(&data(&format!("{name}.csv"))).unwrap();
        let pcap = Trace::read(&data(&format!("{name}.pcap"))).unwrap();
        assert_eq!((csv.len(), pcap.len()), (pairs, pairs), "{name}");
        assert_eq!(sizes(&csv), sizes(&pcap), "{name}");
        assert_eq!(with_opt(&csv), (0, 0), "{name}");
        assert_eq!(with_opt(&pcap), (0, 0), "{name}");
        let Source::Capture(stats) = pcap.source() else {
            panic!("{name}: not read as a capture");
        };
        assert_eq!((stats.unanswered, stats.unmatched), (4, 0), "{name}");
        assert_eq!((stats.skipped, stats.padded), (0, 0), "{name}");
        for policy in ["none", "block:128/468", "random:64/256"] {
            assert_eq!(eval(&csv, policy), eval(&pcap, policy), "{name} {policy}");
        }
    }
}

/// A DNS query (or response) for TXT of a name of one `label_len`-octet
/// label; with `padding`, an OPT record holding a Padding option of that
/// many octets.
fn dns(id: u16, response: bool, label_len: usize, padding: Option<usize>) -> Vec<u8> {
    let flags: u16 = if response { 0x8180 } else { 0x0100 };
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(&flags.to_be_bytes());
    let arcount = u16::from(padding.is_some());
    bytes.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, arcount as u8]);
    bytes.push(label_len as u8);
    bytes.extend(std::iter::repeat_n(b'a', label_len));
    bytes.extend_from_slice(&[0, 0, 16, 0, 1]);
    if let Some(len) = padding {
        bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&(4 + len as u16).to_be_bytes());
        bytes.extend_from_slice(&[0, 12]);
        bytes.extend_from_slice(&(len as u16).to_be_bytes());
        bytes.extend(std::iter::repeat_n(0, len));
    }
    bytes
}

const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [198, 51, 100, 53];

fn udp(from_client: bool, client_port: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = match from_client {
        true => (CLIENT, SERVER, client_port, 53),
        false => (SERVER, CLIENT, 53, client_port),
    };
    let builder = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut packet = Vec::new();
    builder.write(&mut packet, payload).unwrap();
    packet
}

fn tcp(from_client: bool, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = match from_client {
        true => (CLIENT, SERVER, 50_000, 53),
        false => (SERVER, CLIENT, 53, 50_000),
    };
    let builder = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 65_000);
    let builder = if syn { builder.syn() } else { builder.ack(1) };
    let mut packet = Vec::new();
    builder.write(&mut packet, payload).unwrap();
    packet
}

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for message in messages {
        stream.extend_from_slice(&(message.len() as u16).to_be_bytes());
        stream.extend_from_slice(message);
    }
    stream
}

/// A pcapng file (little-endian, one Ethernet interface) of `packets`.
fn pcapng(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut file = Vec::new();
    let block = |file: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        file.extend_from_slice(&kind.to_le_bytes());
        file.extend_from_slice(&len.to_le_bytes());
        file.extend_from_slice(body);
        file.extend_from_slice(&len.to_le_bytes());
    };
    let mut section = 0x1a2b_3c4d_u32.to_le_bytes().to_vec();
    section.extend_from_slice(&[1, 0, 0, 0]);
    section.extend_from_slice(&(-1_i64).to_le_bytes());
    block(&mut file, 0x0a0d_0d0a, &section);
    let mut interface = 1_u16.to_le_bytes().to_vec();
    interface.extend_from_slice(&[0, 0]);
    interface.extend_from_slice(&65_535_u32.to_le_bytes());
    block(&mut file, 1, &interface);
    for packet in packets {
        let mut body = Vec::new();
        for field in [0, 0, 0, packet.len() as u32, packet.len() as u32] {
            body.extend_from_slice(&field.to_le_bytes());
        }
        body.extend_from_slice(packet);
        body.resize(body.len().next_multiple_of(4), 0);
        block(&mut file, 6, &body);
    }
    file
}

fn message(bytes: &[u8], padding: usize, has_opt: bool) -> Message {
    Message {
        len: (bytes.len() - padding) as u16,
        has_opt,
    }
}

#[test]
fn pcapng_pairs_udp_and_tcp_by_five_tuple_and_id_and_strips_padding() {
    let dir = tempfile::tempdir().unwrap();
    let (q1, r1) = (dns(1, false, 10, None), dns(1, true, 10, Some(100)));
    let (q2, r2) = (dns(1, false, 20, None), dns(1, true, 20, None));
    let (q7, r7) = (dns(7, false, 5, Some(0)), dns(7, true, 5, Some(50)));
    let (q8, r8) = (dns(8, false, 30, None), dns(8, true, 30, None));
    let queries = framed(&[q7.clone(), q8.clone()]);
    let (first, second) = queries.split_at(q7.len() + 5);
    let responses = framed(&[r8.clone(), r7.clone()]);
    let packets = [
        // Same ID on two client ports, answered in reverse order.
        udp(true, 40_000, &q1),
        udp(true, 40_001, &q2),
        udp(false, 40_001, &r2),
        udp(false, 40_000, &r1),
        // Unanswered, and an answer to nothing.
        udp(true, 40_002, &dns(5, false, 8, None)),
        udp(false, 40_003, &dns(9, true, 8, None)),
        // Not DNS: garbage on port 53.
        udp(true, 40_004, &[1, 2, 3]),
        // TCP: two queries split across segments, one retransmitted.
        tcp(true, 999, true, &[]),
        tcp(false, 4_999, true, &[]),
        tcp(true, 1_000, false, first),
        tcp(true, 1_000, false, first),
        tcp(true, 1_000 + first.len() as u32, false, second),
        tcp(false, 5_000, false, &responses),
    ];
    let path = dir.path().join("mixed.pcapng");
    std::fs::write(&path, pcapng(&packets)).unwrap();
    let trace = Trace::read(&path).unwrap();
    let mut expected = vec![
        (message(&q1, 0, false), message(&r1, 104, true)),
        (message(&q2, 0, false), message(&r2, 0, false)),
        (message(&q7, 4, true), message(&r7, 54, true)),
        (message(&q8, 0, false), message(&r8, 0, false)),
    ];
    expected.sort();
    let mut found: Vec<_> = trace
        .pairs()
        .map(|(Transaction { query, response }, count)| {
            assert_eq!(count, 1);
            (query, response)
        })
        .collect();
    found.sort();
    assert_eq!(found, expected);
    let Source::Capture(stats) = trace.source() else {
        panic!("not read as a capture");
    };
    assert_eq!((stats.unanswered, stats.unmatched), (1, 1));
    assert_eq!((stats.skipped, stats.padded), (1, 3));
}

//---- Output ----

#[test]
fn plot_is_valid_svg_with_one_point_per_policy() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("lab.svg");
    let policies: Vec<PolicyPair> = ["none", "block:128/468", "block:64/256", "max:1500/4096"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let request = EvalRequest {
        trace: data("pcpp_examples_dns.pcap"),
        policies: policies.clone(),
        settings: Settings::default(),
        json: false,
        plot: Some(plot.clone()),
    };
    run_eval(&request, &mut Vec::new()).unwrap();
    let text = std::fs::read_to_string(&plot).unwrap();
    let svg = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(svg.root_element().tag_name().name(), "svg");
    let circles = svg
        .descendants()
        .filter(|node| node.tag_name().name() == "circle")
        .count();
    assert_eq!(circles, policies.len());
    assert!(
        text.contains("block:128/468"),
        "front policies are labelled"
    );
}

#[test]
fn json_lists_one_object_per_policy_with_the_documented_keys() {
    let trace = data("tiny.csv");
    let output = dotstub(&[
        "padding",
        "eval",
        trace.to_str().unwrap(),
        "--json",
        "--policy",
        "none",
        "--policy",
        "block:128/block:468",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let objects = json.as_array().unwrap();
    assert_eq!(objects.len(), 2);
    let block = objects[1].as_object().unwrap();
    let keys: Vec<&str> = block.keys().map(String::as_str).collect();
    for key in [
        "policy",
        "n",
        "beta",
        "beta_q",
        "beta_r",
        "phi",
        "distinct",
        "entropy_bits",
        "unique_share",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(block["policy"], "block:128/468");
    assert_eq!(block["n"], 4);
    assert_eq!(block["phi"], 0.625);
}

#[test]
fn default_grid_prints_an_aligned_table() {
    let trace = data("pcpp_DnsPackets.csv");
    let output = dotstub(&["padding", "eval", trace.to_str().unwrap(), "--runs", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<&str> = table.lines().filter(|l| !l.starts_with('(')).collect();
    assert_eq!(rows.len(), 1 + 21, "{table}");
    // Right-aligned numbers: every row ends where the heading ends.
    for row in &rows[1..] {
        assert_eq!(row.len(), rows[0].len(), "{row}");
    }
    assert!(table.contains("block:128/468 "));
}

//---- Bad input ----

fn refused(args: &[&str]) -> String {
    let output = dotstub(args);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn malformed_csv_line_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "qsize,rsize\n30,90\n30,ninety\n").unwrap();
    let text = refused(&["padding", "eval", path.to_str().unwrap()]);
    let place = format!("{}:3: rsize", path.display());
    assert!(text.contains(&place), "{text}");
}

#[test]
fn truncated_or_garbled_capture_is_refused_with_file_and_block() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(data("pcpp_examples_dns.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 30]).unwrap();
    let text = refused(&["padding", "eval", cut.to_str().unwrap()]);
    assert!(text.contains(&cut.display().to_string()), "{text}");
    assert!(
        text.contains("block") && text.contains("ends in the middle"),
        "{text}"
    );

    let garbled = dir.path().join("garbled.pcapng");
    let mut bytes = vec![0x0a, 0x0d, 0x0d, 0x0a];
    bytes.extend_from_slice(&[0xff; 60]);
    std::fs::write(&garbled, bytes).unwrap();
    let text = refused(&["padding", "eval", garbled.to_str().unwrap()]);
    assert!(text.contains(&garbled.display().to_string()), "{text}");
}

#[test]
fn missing_file_empty_trace_and_bad_policy_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.csv");
    let text = refused(&["padding", "eval", missing.to_str().unwrap()]);
    assert!(
        text.contains("cannot read") && text.contains("missing.csv"),
        "{text}"
    );

    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "qsize,rsize\n").unwrap();
    let text = refused(&["padding", "eval", empty.to_str().unwrap()]);
    assert!(text.contains("no complete query/response pair"), "{text}");

    let trace = data("tiny.csv");
    let text = refused(&[
        "padding",
        "eval",
        trace.to_str().unwrap(),
        "--policy",
        "block:0",
    ]);
    assert!(text.contains("QUERY[/RESPONSE]"), "{text}");
}
