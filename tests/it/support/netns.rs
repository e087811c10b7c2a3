//! Network namespaces for the fault tests of issue 13: two namespaces joined
//! by veth pairs, the rig upstream reachable on one side, the real dotstub
//! binary on the other, and the faults a network inflicts (a link going
//! down, an address moving, a connection going silent).
//!
//! Everything is made with iproute2 (`ip`, `ss`); nothing on the host's own
//! interfaces or routes is touched. Each [`Namespace`] has a name unique to
//! this process and is deleted when dropped, also when a test panics.
//! Addresses are 10.213.S.1 and 10.213.S.2/24 (and fd00:213::S:1 and
//! fd00:213::S:2/112) for link subnet S, only ever inside these namespaces.
//!
//! Main types: [`Namespace`], [`Link`], [`Silence`] (drops chosen TCP flows
//! on the upstream side), [`upstream_in`] (the rig upstream on a namespace
//! address) and [`Daemon`] (dotstub run with `ip netns exec`).

// Why these tools: this Debian machine has neither nft nor iptables, and
// its kernel has no netem qdisc and no gact (drop) tc action. A policy
// rule with action `blackhole` (iproute2 and Linux 4.17 or later) drops
// what one namespace sends on chosen flows, which needs nothing else.

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::net::{TcpListener, UdpSocket};

use super::{
    certs::ServerIdentity,
    dot_upstream::{DotUpstream, Script},
    process::Process,
};

//---- Namespace ----

/// A network namespace of this test process (`ip netns add`), with its
/// loopback up; deleted on drop.
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates a namespace named after `role`, this process and a counter,
    /// so tests can run in parallel. `Err` says why this machine cannot
    /// (not root, no namespaces); tests print it and skip.
    pub fn create(role: &str) -> Result<Namespace, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if !is_root() {
            return Err("not running as root".to_owned());
        }
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("dotstub-{}-{serial}-{role}", std::process::id());
        run("ip", &["netns", "add", &name]).map_err(|err| format!("ip netns add: {err}"))?;
        let namespace = Namespace { name };
        namespace.ip(&["link", "set", "lo", "up"]);
        Ok(namespace)
    }

    /// Its name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> <args>`; panics with ip's message if it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        if let Err(err) = run("ip", &full) {
            panic!("ip {}: {err}", full.join(" "));
        }
    }

    /// Adds `cidr` (an address with its prefix length) to `dev`.
    pub fn add_address(&self, dev: &str, cidr: &str) {
        self.ip(&["address", "add", cidr, "dev", dev, "nodad"]);
    }

    /// Removes `cidr` from `dev`.
    pub fn del_address(&self, dev: &str, cidr: &str) {
        self.ip(&["address", "del", cidr, "dev", dev]);
    }

    /// Moves `address` from one device to another, each given with the
    /// prefix length it has there, as when a host renumbers onto another
    /// interface. Routes that came with the prefix go with it; the caller
    /// adds what the new place needs.
    pub fn move_address(&self, address: &str, from: (&str, u8), to: (&str, u8)) {
        self.del_address(from.0, &format!("{address}/{}", from.1));
        self.add_address(to.0, &format!("{address}/{}", to.1));
    }

    /// A route to `destination` (address/prefix) out of `dev`.
    pub fn add_route(&self, destination: &str, dev: &str) {
        self.ip(&["route", "add", destination, "dev", dev]);
    }

    /// Takes `dev` administratively up or down.
    pub fn set_link(&self, dev: &str, up: bool) {
        self.ip(&["link", "set", dev, if up { "up" } else { "down" }]);
    }

    /// Runs `f` on a thread of its own that has entered this namespace, so
    /// the sockets `f` opens belong to it. They stay in it when handed back:
    /// a socket keeps the namespace it was created in, whichever thread uses it.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new("/run/netns").join(&self.name);
        let file = File::open(&path).unwrap_or_else(|err| panic!("open {path:?}: {err}"));
        std::thread::scope(|scope| {
            let entered = scope.spawn(move || {
                enter_net(&file).expect("setns into the test namespace");
                f()
            });
            entered.join().expect("namespace thread does not panic")
        })
    }

    /// A UDP socket bound to `addr` in this namespace, for the calling runtime.
    pub fn bind_udp(&self, addr: SocketAddr) -> UdpSocket {
        let socket = self.enter(|| std::net::UdpSocket::bind(addr));
        let socket = socket.unwrap_or_else(|err| panic!("bind UDP {addr} in {}: {err}", self.name));
        socket.set_nonblocking(true).expect("non-blocking socket");
        UdpSocket::from_std(socket).expect("register UDP socket with tokio")
    }

    /// A TCP listener bound to `addr` in this namespace, for the calling runtime.
    pub fn bind_tcp(&self, addr: SocketAddr) -> TcpListener {
        let listener = self.enter(|| std::net::TcpListener::bind(addr));
        let listener =
            listener.unwrap_or_else(|err| panic!("bind TCP {addr} in {}: {err}", self.name));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        TcpListener::from_std(listener).expect("register TCP listener with tokio")
    }

    /// `program` run inside this namespace (`ip netns exec`, which execs it
    /// in place, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Established TCP connections whose local port is `port`.
    pub fn tcp_flows(&self, port: u16) -> Vec<Flow> {
        let filter = format!("sport = :{port}");
        let output = self
            .command("ss")
            .args(["-H", "-t", "-n", "state", "established", &filter])
            .output()
            .expect("run ss");
        assert!(output.status.success(), "ss: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                // Recv-Q Send-Q Local:Port Peer:Port (no State: it is filtered on).
                let mut fields = line.split_whitespace().skip(2);
                let local = fields.next()?.parse().ok()?;
                let peer = fields.next()?.parse().ok()?;
                Some(Flow { local, peer })
            })
            .collect()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(err) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("ip netns del {}: {err}", self.name);
        }
    }
}

/// Whether this process runs with effective uid 0 (from /proc, since std
/// has no geteuid).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Runs a command to completion; `Err` carries its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Moves the calling thread into the network namespace `file` refers to.
fn enter_net(file: &File) -> std::io::Result<()> {
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

//---- Link ----

/// One end of a [`Link`].
#[derive(Clone, Debug)]
pub struct End {
    /// The veth device, in its namespace.
    pub dev: String,
    /// Its IPv4 address (the /24 of the link's subnet).
    pub v4: Ipv4Addr,
    /// Its IPv6 address (a /112 of fd00:213::/64), when the link has IPv6.
    pub v6: Option<Ipv6Addr>,
}

/// A veth pair between two namespaces, both ends up and addressed:
/// 10.213.S.1 on `a`'s side, 10.213.S.2 on `b`'s.
pub struct Link {
    /// The end in the first namespace.
    pub a: End,
    /// The end in the second namespace.
    pub b: End,
}

impl Link {
    /// Joins `a` and `b` on subnet `subnet` (1..=254; one per link between
    /// the same two namespaces), IPv4 only.
    pub fn new(a: &Namespace, b: &Namespace, subnet: u8) -> Link {
        Self::create(a, b, subnet, false)
    }

    /// As [`Link::new`], with IPv6 addresses too (no duplicate address
    /// detection, so they are usable at once).
    pub fn dual_stack(a: &Namespace, b: &Namespace, subnet: u8) -> Link {
        Self::create(a, b, subnet, true)
    }

    fn create(a: &Namespace, b: &Namespace, subnet: u8, ipv6: bool) -> Link {
        let end = |host: u8, side: &str| End {
            dev: format!("veth{subnet}{side}"),
            v4: Ipv4Addr::new(10, 213, subnet, host),
            v6: ipv6.then(|| Ipv6Addr::new(0xfd00, 0x213, 0, 0, 0, 0, subnet.into(), host.into())),
        };
        let link = Link {
            a: end(1, "a"),
            b: end(2, "b"),
        };
        let (dev_a, dev_b) = (link.a.dev.as_str(), link.b.dev.as_str());
        a.ip(&[
            "link",
            "add",
            dev_a,
            "type",
            "veth",
            "peer",
            "name",
            dev_b,
            "netns",
            b.name(),
        ]);
        for (namespace, end) in [(a, &link.a), (b, &link.b)] {
            namespace.add_address(&end.dev, &format!("{}/24", end.v4));
            if let Some(v6) = end.v6 {
                namespace.add_address(&end.dev, &format!("{v6}/112"));
            }
            namespace.set_link(&end.dev, true);
        }
        link
    }
}

//---- Silence ----

/// One TCP connection as a namespace sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// This side's address and port.
    pub local: SocketAddr,
    /// The other side's.
    pub peer: SocketAddr,
}

/// Drops everything a namespace sends on chosen TCP flows, the connections
/// staying open at both ends: to the peer they go silent, as behind a NAT
/// that forgot them. New connections are not affected. Lifted on drop.
pub struct Silence<'a> {
    namespace: &'a Namespace,
    rules: Vec<Vec<String>>,
}

impl<'a> Silence<'a> {
    /// Silences `flows`, each seen from `namespace` (its local side is the
    /// one that stops sending).
    pub fn flows(namespace: &'a Namespace, flows: &[Flow]) -> Silence<'a> {
        let mut silence = Silence {
            namespace,
            rules: Vec::new(),
        };
        for flow in flows {
            let family = if flow.local.is_ipv4() { "-4" } else { "-6" };
            let rule: Vec<String> = [
                family,
                "rule",
                "add",
                "ipproto",
                "tcp",
                "from",
                &flow.local.ip().to_string(),
                "to",
                &flow.peer.ip().to_string(),
                "sport",
                &flow.local.port().to_string(),
                "dport",
                &flow.peer.port().to_string(),
                "blackhole",
            ]
            .map(str::to_owned)
            .into();
            namespace.ip(&rule.iter().map(String::as_str).collect::<Vec<_>>());
            silence.rules.push(rule);
        }
        silence
    }

    /// Lets the flows' traffic through again.
    pub fn lift(self) {}
}

impl Drop for Silence<'_> {
    fn drop(&mut self) {
        for rule in &mut self.rules {
            rule[2] = "del".to_owned();
            let mut full = vec!["-n", self.namespace.name()];
            full.extend(rule.iter().map(String::as_str));
            if let Err(err) = run("ip", &full) {
                eprintln!("ip {}: {err}", full.join(" "));
            }
        }
    }
}

//---- NsUpstream ----

/// The rig upstream serving DoT at `addr` inside `namespace`, on a
/// listener bound there: dotstub reaches it only through the namespaces'
/// links, where the faults are made.
pub fn upstream_in(
    namespace: &Namespace,
    addr: SocketAddr,
    identity: ServerIdentity,
    script: Script,
) -> DotUpstream {
    DotUpstream::serve(namespace.bind_tcp(addr), identity, script)
}

//---- Daemon ----

/// The real dotstub binary, run in a namespace; killed when dropped.
pub struct Daemon {
    /// Where it listens for UDP and TCP, in its namespace.
    pub addr: SocketAddr,
    process: Process,
}

impl Daemon {
    /// Starts `dotstub --config <config>` in `namespace` and waits for its
    /// UDP listening address (it binds port 0, so the log is where it shows).
    pub async fn start(namespace: &Namespace, config: &Path) -> Daemon {
        let mut command = namespace.command(env!("CARGO_BIN_EXE_dotstub"));
        command
            .arg("--config")
            .arg(config)
            .env_remove("SSLKEYLOGFILE");
        let mut process = Process::spawn(&mut command);
        let addr = process.listening_addr().await;
        Daemon { addr, process }
    }

    /// Everything dotstub wrote to stderr so far.
    pub fn log(&mut self) -> String {
        self.process.log()
    }
}
