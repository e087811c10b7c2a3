//! EDNS(0) padding (RFC 7830, RFC 8467): every upstream query is padded by
//! its upstream's policy (block, maximal, random, random-block), the
//! Padding option last and all zeros, never beyond the size the upstream
//! advertises; `none` is allowed with a warning; the upstream's own answer
//! padding is recognised; no answer to a local client carries padding.

use std::{
    collections::HashSet,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use dotstub::{config::Config, lookup, padding::PaddingPolicy};
use hickory_proto::{
    op::Message,
    rr::{RecordType, rdata::opt::EdnsOption},
};

use crate::support::{
    certs::TestPki,
    client::{self, Tcp, a_records, option_codes},
    dot_upstream::{DotUpstream, ReceivedQuery, ResponsePadding, Script},
    fixtures::PADDING_OPTION,
    server::{Dotstub, Harness, Options, TLS_NAME, config_text, upstream_table},
};

/// Names of many lengths, so the padding lengths differ.
fn names() -> Vec<String> {
    (1..40)
        .step_by(3)
        .map(|n| format!("{}.padding.test.", "x".repeat(n)))
        .collect()
}

/// The Padding option's data, checking it is the last option.
fn padding_of(message: &Message) -> Option<Vec<u8>> {
    let edns = message.edns.as_ref()?;
    let options = edns.options().as_ref();
    let (_, last) = options.last()?;
    let EdnsOption::Unknown(PADDING_OPTION, data) = last else {
        assert!(
            !option_codes(message).contains(&PADDING_OPTION),
            "padding must be the last option"
        );
        return None;
    };
    Some(data.clone())
}

async fn send_all(rig: &Harness) {
    for name in names() {
        let reply = client::udp(rig.dotstub.addr, &client::query(&name, RecordType::A)).await;
        assert_eq!(a_records(&reply).len(), 1);
    }
}

#[tokio::test]
async fn every_upstream_query_is_padded_to_the_block() {
    for (policy, block) in [
        ("", 128),
        ("queries = \"block:64\"", 64),
        ("queries = \"block:468\"", 468),
    ] {
        let rig = Harness::with(
            Script::Answer,
            Options {
                padding: policy,
                ..Options::default()
            },
        )
        .await;
        send_all(&rig).await;
        let received = rig.upstream.received();
        assert_eq!(received.len(), names().len());
        for query in received {
            assert_eq!(
                query.bytes.len() % block,
                0,
                "{policy}: {} octets",
                query.bytes.len()
            );
            let message = query.message.expect("upstream query parses");
            let padding = padding_of(&message).expect("padding option present and last");
            assert!(padding.iter().all(|&b| b == 0), "padding octets are zero");
        }
    }
}

#[tokio::test]
async fn policy_none_sends_no_padding_option() {
    let options = Options {
        padding: "queries = \"none\"",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    send_all(&rig).await;
    let received = rig.upstream.received();
    for query in &received {
        assert!(!option_codes(query.message.as_ref().unwrap()).contains(&PADDING_OPTION));
    }
    // Lengths grow with the names; the first query on each connection also
    // carries edns-tcp-keepalive, 4 octets more, so leave those out.
    let mut first = HashSet::new();
    let lengths: Vec<usize> = received
        .iter()
        .filter(|query| !first.insert(query.connection))
        .map(|query| query.bytes.len())
        .collect();
    assert!(
        lengths.windows(2).all(|w| w[0] < w[1]),
        "unpadded lengths follow the names: {lengths:?}"
    );
}

#[tokio::test]
async fn answers_to_local_clients_are_never_padded() {
    let rig = Harness::start(Script::Answer).await;
    // The first answer comes from upstream, the second from the cache.
    let query = client::query("www.padding.test.", RecordType::A);
    let over_udp = client::udp(rig.dotstub.addr, &query).await;
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    tcp.send(&query).await;
    let over_tcp = tcp.recv().await;
    for reply in [over_udp, over_tcp] {
        assert_eq!(a_records(&reply).len(), 1);
        assert!(
            reply.edns.is_some(),
            "an EDNS client gets an OPT record back"
        );
        assert!(!option_codes(&reply).contains(&PADDING_OPTION));
        assert!(
            reply.to_vec().unwrap().len() < 468,
            "the upstream's 468-octet padding is gone"
        );
    }
    let upstream = rig.dotstub.metrics.upstream(0).unwrap();
    assert_eq!(upstream.padded_answers.get(), 1, "the upstream did pad");
    assert_eq!(rig.dotstub.metrics.cache.hits.get(), 1);
}

/// Checks every query in `received` against `policy`: its length is one of
/// the policy's outcomes for its unpadded length, and at most `limit`.
/// Returns the padded lengths.
fn check_policy(policy: &str, received: &[ReceivedQuery], limit: usize) -> Vec<usize> {
    let parsed: PaddingPolicy = policy.parse().unwrap();
    let mut lengths = Vec::new();
    for query in received {
        let len = query.bytes.len();
        let message = query.message.as_ref().expect("upstream query parses");
        let padding = padding_of(message).expect("padding option present and last");
        assert!(padding.iter().all(|&b| b == 0), "padding octets are zero");
        let unpadded = len - padding.len();
        let spread = parsed.spread(unpadded, limit).unwrap();
        assert!(
            spread.iter().any(|outcome| outcome == len),
            "{policy}: {len} octets is no outcome for {unpadded}"
        );
        assert!(len <= limit, "{policy}: {len} octets beyond {limit}");
        lengths.push(len);
    }
    lengths
}

#[tokio::test]
async fn every_policy_pads_within_its_range_and_the_limit() {
    for (line, policy, random) in [
        ("queries = \"block:64\"", "block:64", false),
        ("queries = \"max:700\"", "max:700", false),
        ("queries = \"max:4096\"", "max:4096", false),
        ("queries = \"random:40\"", "random:40", true),
        ("queries = \"random-block:64:3\"", "random-block:64:3", true),
    ] {
        let options = Options {
            padding: line,
            ..Options::default()
        };
        let rig = Harness::with(Script::Answer, options).await;
        send_all(&rig).await;
        let received = rig.upstream.received();
        assert_eq!(received.len(), names().len());
        let lengths = check_policy(policy, &received, 1232);
        match policy {
            "block:64" => assert!(lengths.iter().all(|len| len % 64 == 0)),
            "max:700" => assert!(lengths.iter().all(|&len| len == 700)),
            "max:4096" => assert!(lengths.iter().all(|&len| len == 1232), "{lengths:?}"),
            _ => {}
        }
        if random {
            assert_draws_vary(line, policy).await;
        }
    }
}

/// The same query, asked 20 times with the cache off, goes upstream with
/// more than one padded length: the draw is random (for `random:40` or
/// `random-block:64:3`, 20 equal draws have a chance below 1e-11).
async fn assert_draws_vary(line: &'static str, policy: &str) {
    let options = Options {
        padding: line,
        cache: "enabled = false",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    let query = client::query("same.padding.test.", RecordType::A);
    for _ in 0..20 {
        assert_eq!(
            a_records(&client::udp(rig.dotstub.addr, &query).await).len(),
            1
        );
    }
    let received = rig.upstream.received();
    assert_eq!(received.len(), 20, "{policy}: every query goes upstream");
    let lengths = check_policy(policy, &received, 1232);
    let distinct: HashSet<usize> = lengths.iter().copied().collect();
    assert!(
        distinct.len() > 1,
        "{policy}: one length for 20 draws: {lengths:?}"
    );
}

#[tokio::test]
async fn queries_stay_within_the_size_the_upstream_advertises() {
    for (advertised, limit) in [(700, 700), (300, 512)] {
        let options = Options {
            padding: "queries = \"max:4096\"",
            ..Options::default()
        };
        let rig = Harness::with(Script::Answer, options).await;
        rig.upstream.set_udp_size(Some(advertised));
        send_all(&rig).await;
        let received = rig.upstream.received();
        // Before the first answer the size is unknown: 1232 is assumed.
        assert_eq!(received[0].bytes.len(), 1232);
        check_policy("max:4096", &received[..1], 1232);
        let later = check_policy("max:4096", &received[1..], limit);
        assert!(later.iter().all(|&len| len == limit), "{later:?}");
    }
}

/// Two upstreams: `own` pads by its own `padding = ...`, `inherits` by
/// `[padding] queries`.
async fn two_upstreams(
    global: &'static str,
    own: &str,
) -> (TestPki, DotUpstream, DotUpstream, String) {
    let pki = TestPki::new();
    let first = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let second = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let tables = upstream_table("own", first.addr(), &pki, &format!("padding = \"{own}\""))
        + &upstream_table("inherits", second.addr(), &pki, "");
    let options = Options {
        padding: global,
        ..Options::default()
    };
    let text = config_text(&options, &tables);
    (pki, first, second, text)
}

#[tokio::test]
async fn an_upstream_policy_overrides_the_global_one() {
    let (_pki, own, inherits, text) = two_upstreams("queries = \"block:468\"", "block:64").await;
    let printed = Config::from_toml(&text, "test").unwrap().to_string();
    assert!(printed.contains("padding = \"block:64\"\n"), "{printed}");
    assert!(
        printed.contains("padding = \"\" # [padding] queries: block:468"),
        "{printed}"
    );
    let dotstub = Dotstub::start(&text);
    for name in names() {
        let reply = client::udp(dotstub.addr, &client::query(&name, RecordType::A)).await;
        assert_eq!(a_records(&reply).len(), 1);
    }
    let (own, inherits) = (own.received(), inherits.received());
    assert!(
        !own.is_empty() && !inherits.is_empty(),
        "round robin uses both"
    );
    let own_lengths = check_policy("block:64", &own, 1232);
    assert!(
        own_lengths.iter().all(|len| len % 468 != 0),
        "{own_lengths:?}"
    );
    check_policy("block:468", &inherits, 1232);
}

/// Log lines written while the test's tracing subscriber is installed.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn padding_none_is_allowed_with_a_warning_naming_the_upstream() {
    let (_pki, _own, _inherits, text) = two_upstreams("", "none").await;
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The tokio test runtime is single-threaded: dotstub's run task logs
    // on this thread, where the subscriber is installed.
    let _guard = tracing::subscriber::set_default(subscriber);
    let dotstub = Dotstub::start(&text);
    let started = async {
        while !log.text().contains("dotstub started") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The warnings follow the start line.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("dotstub starts");
    let text = log.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("query padding is off"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("upstream=own"),
        "{text}"
    );
    drop(dotstub);
}

#[tokio::test]
async fn the_upstreams_answer_padding_block_is_recognised() {
    for (padding, block) in [
        (ResponsePadding::Fixture, Some(468)),
        (ResponsePadding::Block(128), Some(128)),
        (ResponsePadding::Off, None),
    ] {
        let options = Options {
            cache: "enabled = false",
            ..Options::default()
        };
        let rig = Harness::with(Script::Answer, options).await;
        rig.upstream.set_response_padding(padding);
        send_all(&rig).await;
        let upstream = rig.dotstub.metrics.upstream(0).unwrap();
        let padded = if block.is_some() { names().len() } else { 0 };
        assert_eq!(upstream.padded_answers.get(), padded as u64, "{padding:?}");
        assert_eq!(upstream.answer_block(), block, "{padding:?}");
    }
}

#[tokio::test]
async fn dotstub_query_names_the_answer_padding_block() {
    for (padding, expected) in [
        (
            ResponsePadding::Fixture,
            "ANSWER SIZE: 468 octets on the wire, padded by the upstream to a multiple of 468",
        ),
        (ResponsePadding::Off, "on the wire, not padded"),
    ] {
        let pki = TestPki::new();
        let upstream = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
        upstream.set_response_padding(padding);
        let table = upstream_table("rig", upstream.addr(), &pki, "padding = \"random:16\"");
        let config = Config::from_toml(&config_text(&Options::default(), &table), "test").unwrap();
        let report = lookup::lookup(&config, "www.padding.test", "A")
            .await
            .unwrap();
        let printed = report.to_string();
        assert!(printed.contains(expected), "{printed}");
        assert!(printed.contains("QUERY PADDING: random:16"), "{printed}");
    }
}
