//! Where clients reach dotstub: UDP sockets and a TCP listener on each
//! configured address, bound before serving so that bind errors come out
//! at start-up with a clear reason, and so tests can bind port 0.
//!
//! `udp` runs one worker thread per UDP socket (SO_REUSEPORT), each on a
//! single-threaded runtime of its own: the cache-hit path never leaves its
//! thread. `tcp` runs on the main runtime. Both hand each query to the
//! [`Resolver`] and never let one client's query block another's.

mod batch;
mod tcp;
mod udp;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::ListenConfig, metrics::Metrics, resolver::Resolver};

/// Connections a TCP listener queues before accepting them.
const TCP_BACKLOG: i32 = 1024;
/// Attempts to find a port free for both UDP and TCP when port 0 is asked.
const PORT_ZERO_ATTEMPTS: usize = 16;
/// UDP receive buffer asked for: a burst of a few thousand small queries
/// fits before the kernel drops any. The kernel caps it at
/// net.core.rmem_max; it is a limit, not memory taken up front.
const UDP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// Largest UDP reply that crosses every link unfragmented: the IPv6
/// minimum MTU, 1280, less 48 octets of IPv6 and UDP headers (DNS flag
/// day 2020). Over IPv4 (28 octets of headers) it fits with room to spare.
const FITS_EVERY_LINK: u16 = 1232;

/// A transport clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        })
    }
}

/// An address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} over {proto}{}", hint(*address, source))]
pub struct BindError {
    /// The address.
    pub address: SocketAddr,
    /// UDP or TCP.
    pub proto: Proto,
    /// The operating system's reason.
    #[source]
    pub source: io::Error,
}

/// What a user can do about a bind failure.
fn hint(address: SocketAddr, source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::PermissionDenied if address.port() < 1024 => {
            ": ports below 1024 need root or the CAP_NET_BIND_SERVICE capability \
             (for example `setcap cap_net_bind_service=+ep /usr/bin/dotstub`), \
             or use a port above 1023 such as 5453"
        }
        io::ErrorKind::AddrInUse => {
            ": another program already uses this address and port \
             (systemd-resolved, dnsmasq or another resolver?)"
        }
        io::ErrorKind::AddrNotAvailable => ": no network interface has this address",
        _ => "",
    }
}

/// The bound sockets: per configured address, one TCP listener and one
/// UDP socket per UDP worker, all on the same port.
#[derive(Debug)]
pub struct Listeners {
    endpoints: Vec<Endpoint>,
}

#[derive(Debug)]
struct Endpoint {
    /// Bound with SO_REUSEPORT, so the kernel spreads clients over them.
    udp: Vec<std::net::UdpSocket>,
    tcp: TcpListener,
}

impl Listeners {
    /// Binds every address of `config`, with `udp_workers` UDP sockets on
    /// each. Port 0 picks one port free for both UDP and TCP. Call it
    /// inside a tokio runtime: the TCP listeners register with its reactor.
    pub fn bind(config: &ListenConfig, udp_workers: usize) -> Result<Self, BindError> {
        let endpoints = config
            .addresses
            .iter()
            .map(|&address| bind_endpoint(address, udp_workers.max(1), config.max_udp_size))
            .collect::<Result<_, _>>()?;
        Ok(Self { endpoints })
    }

    /// The bound addresses, in configured order (UDP and TCP share each).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.endpoints
            .iter()
            .filter_map(|e| e.tcp.local_addr().ok())
            .collect()
    }

    /// Serves until `context.shutdown` is cancelled: TCP on the current
    /// runtime, each UDP socket on a worker thread of its own. Everything
    /// started is tracked by `tracker`. The [`UdpWorkers`] returned stop
    /// everything when dropped.
    pub(crate) fn serve(self, context: Context, tracker: &TaskTracker) -> io::Result<UdpWorkers> {
        let context = Arc::new(context);
        let mut workers = UdpWorkers {
            shutdown: context.shutdown.clone(),
            sockets: Vec::new(),
        };
        for endpoint in self.endpoints {
            tracker.spawn(tcp::serve(
                endpoint.tcp,
                Arc::clone(&context),
                tracker.clone(),
            ));
            for socket in endpoint.udp {
                let index = workers.sockets.len();
                workers.sockets.push(socket.try_clone()?);
                udp::spawn_worker(index, socket, Arc::clone(&context), tracker)?;
            }
        }
        Ok(workers)
    }
}

/// Stops the listeners when dropped: cancels their shutdown token, then
/// shuts down reading on a second handle to each UDP socket, which wakes
/// a worker blocked in a receive at once (on Linux; elsewhere it sees the
/// token within its wait) and tells one in its event loop that nothing
/// more will come. Replies still go out through the socket.
#[derive(Debug)]
pub(crate) struct UdpWorkers {
    shutdown: CancellationToken,
    sockets: Vec<std::net::UdpSocket>,
}

impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for socket in &self.sockets {
            // An unconnected UDP socket reports ENOTCONN, yet is shut down
            // and its waiters woken.
            let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Read);
        }
    }
}

/// What the serving loops share.
#[derive(Debug)]
pub(crate) struct Context {
    pub resolver: Arc<Resolver>,
    pub metrics: Arc<Metrics>,
    /// Client queries being resolved, across all listeners.
    pub queries: Arc<Semaphore>,
    /// Open TCP client connections.
    pub tcp_connections: Arc<Semaphore>,
    pub tcp_idle_timeout: Duration,
    /// Queries of one TCP client answered or queued at once.
    pub tcp_pipeline_limit: usize,
    pub shutdown: CancellationToken,
}

fn bind_endpoint(
    address: SocketAddr,
    udp_workers: usize,
    max_udp_size: u16,
) -> Result<Endpoint, BindError> {
    // A lone socket does without SO_REUSEPORT, so nothing can join it.
    let shared = udp_workers > 1;
    let bind_udp_group = |address| -> Result<Vec<_>, BindError> {
        (0..udp_workers)
            .map(|_| bind_udp(address, shared, max_udp_size))
            .collect()
    };
    if address.port() != 0 {
        let tcp = bind_tcp(address)?;
        return Ok(Endpoint {
            udp: bind_udp_group(address)?,
            tcp,
        });
    }
    let mut last = None;
    for _ in 0..PORT_ZERO_ATTEMPTS {
        let tcp = bind_tcp(address)?;
        let port = tcp
            .local_addr()
            .map_err(|source| BindError {
                address,
                proto: Proto::Tcp,
                source,
            })?
            .port();
        match bind_udp_group(SocketAddr::new(address.ip(), port)) {
            Ok(udp) => return Ok(Endpoint { udp, tcp }),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or(BindError {
        address,
        proto: Proto::Udp,
        source: io::ErrorKind::AddrInUse.into(),
    }))
}

fn new_socket(address: SocketAddr, proto: Proto) -> io::Result<Socket> {
    let (kind, protocol) = match proto {
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
    };
    let socket = Socket::new(Domain::for_address(address), kind, Some(protocol))?;
    if address.is_ipv6() {
        // [::]:53 must not also take 0.0.0.0:53, which may be listed apart.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_udp(
    address: SocketAddr,
    shared: bool,
    max_udp_size: u16,
) -> Result<std::net::UdpSocket, BindError> {
    let bind = || {
        let socket = new_socket(address, Proto::Udp)?;
        // Best effort: a smaller buffer only means drops under bursts.
        let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
        if address.is_ipv4() && max_udp_size <= FITS_EVERY_LINK {
            forbid_fragmenting(&socket)?;
        }
        // One socket per UDP worker on the same address: the kernel spreads
        // clients over them, and no two workers share a queue. The TCP
        // listener, bound first without it, keeps a second dotstub out.
        socket.set_reuse_port(shared)?;
        socket.bind(&address.into())?;
        Ok(socket.into())
    };
    bind().map_err(|source| BindError {
        address,
        proto: Proto::Udp,
        source,
    })
}

/// Sends this IPv4 socket's datagrams with DF set, as RFC 9715 §3.1
/// recommends for DNS responders: no reply is ever fragmented, so none
/// can be spoofed by a forged fragment, and the kernel skips choosing an
/// IP identification per datagram. Path MTU reports (forgeable ICMP) are
/// ignored. Only for replies that fit every link: a larger one would be
/// refused by the kernel instead of fragmented.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn forbid_fragmenting(socket: &Socket) -> io::Result<()> {
    use nix::libc;

    set_int_option(
        socket,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
    )
}

/// Sets a socket option whose value is a C `int`, for the options nix
/// has no name for.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn set_int_option(
    socket: &impl std::os::fd::AsRawFd,
    level: nix::libc::c_int,
    option: nix::libc::c_int,
    value: nix::libc::c_int,
) -> io::Result<()> {
    use nix::libc;

    // SAFETY: the descriptor is open (borrowed from its owner for the
    // call), and the option value is a c_int that outlives the call, with
    // its size passed.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere replies keep the system's default.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn forbid_fragmenting(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

fn bind_tcp(address: SocketAddr) -> Result<TcpListener, BindError> {
    let bind = || {
        let socket = new_socket(address, Proto::Tcp)?;
        // Restarting must not wait for old connections in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(TCP_BACKLOG)?;
        TcpListener::from_std(socket.into())
    };
    bind().map_err(|source| BindError {
        address,
        proto: Proto::Tcp,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(address: &str, kind: io::ErrorKind) -> String {
        let address = address.parse().unwrap();
        BindError {
            address,
            proto: Proto::Udp,
            source: kind.into(),
        }
        .to_string()
    }

    #[test]
    fn low_port_permission_error_says_what_to_do() {
        let text = message("127.0.0.1:53", io::ErrorKind::PermissionDenied);
        assert!(text.starts_with("cannot listen on 127.0.0.1:53 over UDP: ports below 1024"));
        assert!(text.contains("CAP_NET_BIND_SERVICE") && text.contains("5453"));
        let high = message("127.0.0.1:5453", io::ErrorKind::PermissionDenied);
        assert_eq!(high, "cannot listen on 127.0.0.1:5453 over UDP");
    }

    #[test]
    fn address_in_use_names_the_usual_suspects() {
        let text = message("[::1]:53", io::ErrorKind::AddrInUse);
        assert!(
            text.contains("[::1]:53") && text.contains("systemd-resolved"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn port_zero_binds_udp_and_tcp_on_one_port() {
        let config = ListenConfig {
            addresses: vec![
                "127.0.0.1:0".parse().unwrap(),
                "127.0.0.2:0".parse().unwrap(),
            ],
            max_udp_size: 1232,
            udp_workers: std::num::NonZeroUsize::MIN,
            tcp_idle_timeout: Duration::from_secs(1),
            max_tcp_connections: std::num::NonZeroUsize::MIN,
            max_queries_per_tcp_connection: std::num::NonZeroUsize::MIN,
            max_queries_in_flight: std::num::NonZeroUsize::MIN,
        };
        let listeners = Listeners::bind(&config, 3).unwrap();
        for endpoint in &listeners.endpoints {
            assert_eq!(endpoint.udp.len(), 3);
            for udp in &endpoint.udp {
                assert_eq!(
                    udp.local_addr().unwrap(),
                    endpoint.tcp.local_addr().unwrap()
                );
            }
        }
        assert_eq!(listeners.local_addrs().len(), 2);
    }

    /// The socket's IP_MTU_DISCOVER mode.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[allow(unsafe_code)]
    fn fragmenting_mode(socket: &std::net::UdpSocket) -> nix::libc::c_int {
        use std::os::fd::AsRawFd;

        use nix::libc;

        let mut mode: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an open descriptor, and a c_int buffer with its size.
        let done = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw mut mode).cast(),
                &raw mut len,
            )
        };
        assert_eq!(done, 0, "{}", io::Error::last_os_error());
        mode
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn ipv4_replies_carry_df_while_they_fit_every_link() {
        let address = "127.0.0.1:0".parse().unwrap();
        let small = bind_udp(address, false, 1232).unwrap();
        assert_eq!(fragmenting_mode(&small), nix::libc::IP_PMTUDISC_PROBE);
        // Larger replies may need fragmenting: the kernel's default stays.
        let large = bind_udp(address, false, 4096).unwrap();
        assert_ne!(fragmenting_mode(&large), nix::libc::IP_PMTUDISC_PROBE);
    }
}
