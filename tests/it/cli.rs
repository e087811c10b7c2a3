//! The real `dotstub` binary, as an operator meets it: `check-config` and
//! the config errors it reports, the `query` subcommand, the daemon's start-up
//! and SIGTERM stop, what its default log level keeps private, SSLKEYLOGFILE,
//! an upstream failing authentication, and a listen address already in use.
//!
//! Each test runs the binary as a child process on loopback, reads its stderr
//! (the listening port comes from the log line, since it binds port 0), and
//! kills it if the test fails early.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use tokio::{net::UdpSocket, time::timeout};

use crate::support::{
    certs::TestPki,
    client::{self, CLIENT_TIMEOUT, a_records},
    dot_upstream::{DotUpstream, Script},
    fixtures::expected_a,
    process::{Finished, MUST_FINISH, Process},
    server::{Options, TLS_NAME, config_text, upstream_table},
    signed::Hierarchy,
};

#[tokio::test]
async fn check_config_prints_the_effective_configuration() {
    let done = finish(dotstub().arg("check-config").arg(shipped_config())).await;
    assert_eq!(done.status.code(), Some(0), "{done}");
    for expected in ["[[upstream]]", "dns.quad9.net", "timeout_ms = 3000"] {
        assert!(done.stdout.contains(expected), "no {expected:?}: {done}");
    }
}

#[tokio::test]
async fn bad_config_is_refused_with_file_key_and_reason() {
    let pki = TestPki::new();
    let bad = write_file(&pki, "bad.toml", "[listen]\nadresses = [\"127.0.0.1:0\"]\n");
    let checked = refused_config(dotstub().arg("check-config").arg(&bad)).await;
    let path = bad.display().to_string();
    for expected in [path.as_str(), ":2:1", "listen.adresses", "unknown field"] {
        assert!(checked.contains(expected), "no {expected:?} in:\n{checked}");
    }
    // The daemon must refuse the file the same way before it starts anything.
    assert_eq!(refused_config(&mut daemon(&bad)).await, checked);

    let pin = "[[upstream]]\naddress = \"127.0.0.1:853\"\ntls_name = \"dot.test\"\n\
               spki_pins = [\"abc\"]\n";
    let pin = write_file(&pki, "pin.toml", pin);
    let stderr = refused_config(dotstub().arg("check-config").arg(&pin)).await;
    assert!(stderr.contains("upstream[0].spki_pins[0]"), "{stderr}");

    let none = write_file(
        &pki,
        "none.toml",
        "[listen]\naddresses = [\"127.0.0.1:0\"]\n",
    );
    let stderr = refused_config(dotstub().arg("check-config").arg(&none)).await;
    assert!(stderr.contains(": upstream: "), "{stderr}");
}

#[tokio::test]
async fn query_subcommand_resolves_through_the_upstream() {
    let rig = Rig::start(TLS_NAME).await;
    let config = rig.config("query.toml", "");
    let mut command = dotstub();
    command.args(["query", "www.example.test", "A", "--config"]);
    let done = finish(command.arg(&config)).await;
    assert_eq!(done.status.code(), Some(0), "{done}");
    let address = expected_a("www.example.test").to_string();
    for expected in [&address, "UPSTREAM: rig", "QUERY PADDING: block:128"] {
        assert!(done.stdout.contains(expected), "no {expected:?}: {done}");
    }
    let received = rig.upstream.received();
    assert_eq!(received.len(), 1, "the upstream saw {received:?}");
    assert_eq!(received[0].bytes.len() % 128, 0, "query sent unpadded");
}

#[tokio::test]
async fn query_subcommand_shows_the_dnssec_verdict() {
    let pki = TestPki::new();
    let upstream = DotUpstream::start(pki.leaf(TLS_NAME), Hierarchy::shared().script()).await;
    let anchor = write_file(&pki, "anchor.txt", &Hierarchy::shared().trust_anchor_text());
    let dnssec = format!(
        "validate = true\ntrust_anchor_file = {:?}",
        anchor.display().to_string()
    );
    let options = Options {
        dnssec: Box::leak(dnssec.into_boxed_str()),
        ..Options::default()
    };
    let table = upstream_table("rig", upstream.addr(), &pki, "");
    let config = write_file(&pki, "dnssec.toml", &config_text(&options, &table));
    let query = |name: &str| {
        let mut command = dotstub();
        command.args(["query", name, "A", "--config"]).arg(&config);
        command
    };
    let secure = finish(&mut query("www.ecdsap256.tld")).await;
    assert_eq!(secure.status.code(), Some(0), "{secure}");
    assert!(secure.stdout.contains("flags: qr rd ra ad;"), "{secure}");
    let bogus = finish(&mut query("expired.bogus.tld")).await;
    assert!(bogus.stdout.contains("status: Server Failure"), "{bogus}");
    let ede = ";; EXTENDED ERROR: 7 (signature expired: expired.bogus.tld.)";
    assert!(bogus.stdout.contains(ede), "{bogus}");
}

#[tokio::test]
async fn sigterm_stops_the_daemon_with_exit_0() {
    let rig = Rig::start(TLS_NAME).await;
    let mut dotstub = Process::spawn(&mut daemon(&rig.config("run.toml", "")));
    let addr = dotstub.listening_addr().await;
    let query = client::query("www.example.test.", RecordType::A);
    let reply = client::udp(addr, &query).await;
    assert_eq!(a_records(&reply), [expected_a("www.example.test")]);
    let done = dotstub.terminate().await;
    assert!(done.status.success(), "{done}");
    assert!(done.stderr.contains("dotstub stopped"), "{done}");
}

#[tokio::test]
async fn default_log_level_names_no_client_and_no_query() {
    let rig = Rig::start(TLS_NAME).await;
    let secret = "secret-name.example.test";
    let (stderr, client_port) = one_query(daemon(&rig.config("info.toml", "")), secret).await;
    assert!(!stderr.contains("secret-name"), "{stderr}");
    assert!(
        !stderr.contains(&format!("127.0.0.1:{client_port}")),
        "{stderr}"
    );

    // Same run at debug: the name must show up, or the check above proves nothing.
    let debug = rig.config("debug.toml", "[log]\nlevel = \"debug\"\n");
    let (stderr, _) = one_query(daemon(&debug), secret).await;
    assert!(stderr.contains("secret-name"), "{stderr}");
}

#[tokio::test]
async fn sslkeylogfile_writes_secrets_and_warns() {
    let rig = Rig::start(TLS_NAME).await;
    let config = rig.config("keylog.toml", "");
    let key_log = rig.pki.dir().join("keys.log");
    let mut command = daemon(&config);
    command.env("SSLKEYLOGFILE", &key_log);
    let (stderr, _) = one_query(command, "www.example.test").await;
    let secrets = std::fs::read_to_string(&key_log).expect("dotstub wrote SSLKEYLOGFILE");
    // CLIENT_RANDOM for TLS 1.2, CLIENT_*_TRAFFIC_SECRET for TLS 1.3.
    assert!(
        secrets.lines().any(|line| line.starts_with("CLIENT_")),
        "no client secret in the key log:\n{secrets}"
    );
    let warned = |stderr: &str| {
        stderr
            .lines()
            .any(|line| line.contains("WARN") && line.contains("SSLKEYLOGFILE"))
    };
    assert!(warned(&stderr), "no warning:\n{stderr}");

    let mut command = daemon(&config);
    command.env_remove("SSLKEYLOGFILE");
    let (stderr, _) = one_query(command, "www.example.test").await;
    assert!(!warned(&stderr), "warned without the variable:\n{stderr}");
}

#[tokio::test]
async fn upstream_auth_failure_is_logged_once() {
    let rig = Rig::start("other.test").await;
    let mut dotstub = Process::spawn(&mut daemon(&rig.config("auth.toml", "")));
    let addr = dotstub.listening_addr().await;
    for i in 0..3 {
        let name = format!("q{i}.example.test.");
        let reply = client::udp(addr, &client::query(&name, RecordType::A)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
    let done = dotstub.terminate().await;
    let failures: Vec<&str> = done
        .stderr
        .lines()
        .filter(|line| line.contains("upstream failed"))
        .collect();
    assert_eq!(failures.len(), 1, "{done}");
    assert!(failures[0].contains("not valid for name"), "{done}");
    assert!(rig.upstream.received().is_empty(), "a query reached it");
}

#[tokio::test]
async fn busy_address_is_refused_with_a_clear_reason() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let listen = busy.local_addr().expect("its address").to_string();
    // Any valid configuration will do: binding fails before an upstream is used.
    let done = finish(daemon(&shipped_config()).args(["--listen", &listen])).await;
    assert_eq!(done.status.code(), Some(1), "{done}");
    let reason = format!("cannot listen on {listen}");
    assert!(done.stderr.contains(&reason), "{done}");
    assert!(done.stderr.contains("already uses"), "{done}");
}

/// A PKI and one rig upstream presenting a certificate for `cert_name`.
#[tokio::test]
async fn cache_memory_stays_within_max_bytes() {
    // 4 MiB of cache, and far more distinct names than fit: the resident
    // memory the daemon gains while filling it stays within max_bytes + 10%.
    const MAX_BYTES: u64 = 4 << 20;
    let rig = Rig::start(TLS_NAME).await;
    let options = Options {
        listen: "udp_workers = 1",
        cache: "max_bytes = 4194304",
        ..Options::default()
    };
    let table = upstream_table("rig", rig.upstream.addr(), &rig.pki, "");
    let config = write_file(&rig.pki, "memory.toml", &config_text(&options, &table));
    let mut daemon = Process::spawn(&mut self::daemon(&config));
    let addr = daemon.listening_addr().await;
    ask_distinct(addr, 0..2_000).await;
    let baseline = daemon.resident_bytes();
    ask_distinct(addr, 2_000..40_000).await;
    let growth = daemon.resident_bytes().saturating_sub(baseline);
    assert!(
        growth <= MAX_BYTES * 11 / 10,
        "grew {growth} octets for a {MAX_BYTES}-octet cache"
    );
    assert!(
        growth >= MAX_BYTES / 2,
        "grew only {growth} octets: the cache was not filled"
    );
    assert!(daemon.terminate().await.status.success());
}

/// Asks `n<i>.memory.test A` for each `i`, 32 clients at a time, and checks
/// every answer.
async fn ask_distinct(addr: SocketAddr, names: std::ops::Range<usize>) {
    let clients = 32;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let names = names.clone().skip(client).step_by(clients);
            tokio::spawn(async move {
                for i in names {
                    let name = format!("n{i}.memory.test.");
                    let reply = client::udp(addr, &client::query(&name, RecordType::A)).await;
                    assert_eq!(a_records(&reply), [expected_a(&name)]);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
}

struct Rig {
    pki: TestPki,
    upstream: DotUpstream,
}

impl Rig {
    async fn start(cert_name: &str) -> Rig {
        let pki = TestPki::new();
        let upstream = DotUpstream::start(pki.leaf(cert_name), Script::Answer).await;
        Rig { pki, upstream }
    }

    /// Writes a config for this upstream (listening on 127.0.0.1:0), with
    /// `extra` tables appended, and returns its path.
    fn config(&self, file: &str, extra: &str) -> PathBuf {
        let table = upstream_table("rig", self.upstream.addr(), &self.pki, "");
        let text = config_text(&Options::default(), &table) + extra;
        write_file(&self.pki, file, &text)
    }
}

/// The shipped configuration (also the embedded default).
fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dotstub.toml")
}

fn write_file(pki: &TestPki, name: &str, text: &str) -> PathBuf {
    let path = pki.dir().join(name);
    std::fs::write(&path, text).expect("write test config");
    path
}

/// The binary, with no key log unless a test asks for one (the developer's
/// own SSLKEYLOGFILE must not leak into the assertions).
fn dotstub() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dotstub"));
    command.env_remove("SSLKEYLOGFILE");
    command
}

fn daemon(config: &Path) -> Command {
    let mut command = dotstub();
    command.arg("--config").arg(config);
    command
}

/// Runs a command that is expected to exit on its own.
async fn finish(command: &mut Command) -> Finished {
    Process::spawn(command).finish(MUST_FINISH).await
}

/// Runs a command that must refuse its configuration; returns its stderr.
async fn refused_config(command: &mut Command) -> String {
    let done = finish(command).await;
    assert_eq!(done.status.code(), Some(2), "{done}");
    done.stderr
}

/// Starts `command` as a daemon, resolves `name`/A from a UDP socket of our
/// own, stops it with SIGTERM; returns its stderr and the client's port.
async fn one_query(mut command: Command, name: &str) -> (String, u16) {
    let mut daemon = Process::spawn(&mut command);
    let addr = daemon.listening_addr().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let client_port = socket.local_addr().expect("client address").port();
    let query = client::query(name, RecordType::A);
    socket
        .send_to(&client::encode(&query), addr)
        .await
        .expect("send query");
    let mut buf = vec![0; 65_535];
    let len = timeout(CLIENT_TIMEOUT, socket.recv(&mut buf))
        .await
        .expect("dotstub answers")
        .expect("receive answer");
    let reply = Message::from_vec(&buf[..len]).expect("reply parses");
    assert_eq!(a_records(&reply), [expected_a(name)]);
    let done = daemon.terminate().await;
    assert!(done.status.success(), "{done}");
    (done.stderr, client_port)
}
