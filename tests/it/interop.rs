//! Interop against a real DNS-over-TLS server: unbound, started on
//! 127.0.0.1:8853 by `.ci/interop-unbound.sh` (run by `.ci/run`) with a
//! throwaway CA, `pad-responses: yes` and a local zone `interop.test.`.
//! Ignored by default; `.ci/run` runs them with `--ignored interop`.

use std::{env, net::Ipv4Addr};

use futures_util::future::join_all;
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

use crate::support::{
    client::{self, Tcp, a_records, option_codes},
    fixtures::PADDING_OPTION,
    server::{Dotstub, Options, config_text},
};

/// Where `.ci/interop-unbound.sh` said unbound is.
struct Unbound {
    addr: String,
    name: String,
    ca: String,
}

impl Unbound {
    fn from_env() -> Unbound {
        let var = |name: &str| {
            env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the interop tests through .ci/run")
            })
        };
        Unbound {
            addr: var("DOTSTUB_INTEROP_UNBOUND_ADDR"),
            name: var("DOTSTUB_INTEROP_UNBOUND_NAME"),
            ca: var("DOTSTUB_INTEROP_UNBOUND_CA"),
        }
    }

    /// An `[[upstream]]` table for unbound, expecting `tls_name`.
    fn table(&self, tls_name: &str) -> String {
        let (addr, ca) = (&self.addr, &self.ca);
        format!(
            "[[upstream]]\nlabel = \"unbound\"\naddress = \"{addr}\"\n\
             tls_name = \"{tls_name}\"\nca_file = {ca:?}\n"
        )
    }

    fn dotstub(&self, options: &Options) -> Dotstub {
        Dotstub::start(&config_text(options, &self.table(&self.name)))
    }
}

#[tokio::test]
#[ignore = "needs unbound from .ci/run"]
async fn interop_answers_through_unbound() {
    let dotstub = Unbound::from_env().dotstub(&Options::default());
    let a = client::udp(
        dotstub.addr,
        &client::query("www.interop.test.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&a), [Ipv4Addr::new(192, 0, 2, 10)]);
    let mut tcp = Tcp::connect(dotstub.addr).await;
    tcp.send(&client::query("txt.interop.test.", RecordType::TXT))
        .await;
    let txt = tcp.recv().await;
    let RData::TXT(text) = &txt.answers[0].data else {
        panic!("TXT expected: {txt:?}")
    };
    assert_eq!(text.to_string(), "dotstub interop");
    let refused = client::udp(dotstub.addr, &client::query("example.com.", RecordType::A)).await;
    assert_eq!(
        refused.metadata.response_code,
        ResponseCode::Refused,
        "unbound's own answer comes through"
    );
}

#[tokio::test]
#[ignore = "needs unbound from .ci/run"]
async fn interop_pipelines_many_queries_over_few_connections() {
    let options = Options {
        forward: "connections_per_upstream = 2",
        ..Options::default()
    };
    let dotstub = Unbound::from_env().dotstub(&options);
    join_all((0..200u8).map(|i| {
        let addr = dotstub.addr;
        async move {
            let name = format!("n{i}.interop.test.");
            let reply = client::udp(addr, &client::query(&name, RecordType::A)).await;
            assert_eq!(
                a_records(&reply),
                [Ipv4Addr::new(198, 51, 100, i)],
                "{name}"
            );
        }
    }))
    .await;
    let upstream = dotstub.metrics.upstream(0).unwrap();
    assert_eq!(upstream.answers.get(), 200);
    assert!(
        upstream.connections.get() <= 2,
        "{} connections",
        upstream.connections.get()
    );
}

#[tokio::test]
#[ignore = "needs unbound from .ci/run"]
async fn interop_queries_are_padded_and_answers_to_clients_are_not() {
    // unbound pads a response only when the query was padded
    // (pad-responses, RFC 8467 §4.1), so padded answers prove padded queries.
    let dotstub = Unbound::from_env().dotstub(&Options::default());
    for name in [
        "www.interop.test.",
        "n7.interop.test.",
        "n123.interop.test.",
    ] {
        let reply = client::udp(dotstub.addr, &client::query(name, RecordType::A)).await;
        assert!(!option_codes(&reply).contains(&PADDING_OPTION), "{name}");
        assert!(reply.to_vec().unwrap().len() < 468);
    }
    assert_eq!(dotstub.metrics.upstream(0).unwrap().padded_answers.get(), 3);
}

#[tokio::test]
#[ignore = "needs unbound from .ci/run"]
async fn interop_big_answer_truncates_over_udp_and_is_whole_over_tcp() {
    let dotstub = Unbound::from_env().dotstub(&Options::default());
    let query = client::query_without_edns("big.interop.test.", RecordType::TXT);
    let over_udp = client::udp(dotstub.addr, &query).await;
    assert!(over_udp.metadata.truncation);
    let mut tcp = Tcp::connect(dotstub.addr).await;
    tcp.send(&query).await;
    assert_eq!(tcp.recv().await.answers.len(), 20);
}

#[tokio::test]
#[ignore = "needs unbound from .ci/run"]
async fn interop_wrong_name_is_refused() {
    let unbound = Unbound::from_env();
    let dotstub = Dotstub::start(&config_text(
        &Options::default(),
        &unbound.table("not-unbound.test"),
    ));
    let reply = client::udp(
        dotstub.addr,
        &client::query("www.interop.test.", RecordType::A),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let upstream = dotstub.metrics.upstream(0).unwrap();
    assert_eq!(
        (upstream.tls_failures.get(), upstream.queries.get()),
        (1, 0)
    );
}

#[test]
#[ignore = "needs unbound from .ci/run"]
fn interop_query_subcommand_checks_a_setup() {
    let unbound = Unbound::from_env();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dotstub.toml");
    std::fs::write(
        &config,
        config_text(&Options::default(), &unbound.table(&unbound.name)),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dotstub"))
        .args(["query", "www.interop.test", "AAAA", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2001:db8::10"), "{stdout}");
    assert!(stdout.contains("UPSTREAM: unbound"), "{stdout}");
    assert!(stdout.contains("padded by the upstream"), "{stdout}");
}
