//! Batched UDP I/O for the UDP workers: up to [`BATCH`] datagrams taken
//! with one `recvmmsg` and answered with one `sendmmsg` (Linux), so a busy
//! worker spends two system calls on many queries instead of two on each.
//! All buffers are allocated once, with the worker.
//!
//! A batch is taken either through the worker's event loop (`receive`) or,
//! while the worker is busy with nothing else to run, by blocking its
//! thread in the receive call itself (`receive_waiting`, at most [`WAIT`]):
//! a datagram then wakes the worker directly, without `epoll` in between.
//! So the socket's descriptor blocks, and every call that must not passes
//! `MSG_DONTWAIT`.
//!
//! Elsewhere (the BSDs' `recvmmsg` and `sendmmsg` are loops in their C
//! library, macOS has none), [`fallback`] takes one datagram at a time
//! behind the same interface.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::Arc,
    time::Duration,
};

use nix::sys::socket::{MsgFlags, SockaddrStorage, sendto};
use tokio::io::unix::AsyncFd;

/// Longest a waiting receive blocks the worker's thread: the most its
/// runtime's timers (idle upstream connections) run late, and the longest
/// shutdown waits for it.
pub(super) const WAIT: Duration = Duration::from_millis(50);

/// Receives in a row that block the worker's thread before its socket
/// leaves the event loop: a worker that is busy with cached answers stays
/// so, while one that keeps sending queries upstream (and going back to
/// its event loop for their answers) is not taken out and registered
/// again each time, at two system calls and an allocation.
const WAITS_BEFORE_LEAVING: u32 = 16;

/// A UDP worker's socket. While the worker waits in its event loop, the
/// socket is registered there, for readability only: replies go out with
/// non-blocking sends from the worker's own thread, and registered for
/// writability, every send that frees buffer space would wake the event
/// loop for nothing. Once the worker waits in the receive call instead
/// ([`WAITS_BEFORE_LEAVING`] times in a row), the socket leaves the event
/// loop: every reply sent frees buffer space, and the kernel then visits
/// each entry on the socket's wait queue, a registration too, under the
/// queue's lock (about 0.06 µs a reply here, 4% of a cached answer's CPU).
pub(super) struct Socket {
    udp: Arc<UdpSocket>,
    registered: Option<AsyncFd<Arc<UdpSocket>>>,
    /// Receives that blocked since the event loop last waited for one.
    waits_in_a_row: u32,
}

impl Socket {
    /// Makes `udp` a worker's socket, registered with the current
    /// runtime (so a socket its event loop refuses fails here, at start):
    /// its descriptor blocks, for up to [`WAIT`], on receives that do not
    /// pass `MSG_DONTWAIT`.
    pub(super) fn new(udp: UdpSocket) -> io::Result<Self> {
        udp.set_nonblocking(false)?;
        udp.set_read_timeout(Some(WAIT))?;
        let mut socket = Self {
            udp: Arc::new(udp),
            registered: None,
            waits_in_a_row: 0,
        };
        socket.in_event_loop()?;
        Ok(socket)
    }

    /// The socket itself, for sending and for the tasks that answer later.
    pub(super) fn udp(&self) -> &Arc<UdpSocket> {
        &self.udp
    }

    /// The socket as registered with the current runtime, for readability
    /// only; registered now if it was not.
    fn in_event_loop(&mut self) -> io::Result<&AsyncFd<Arc<UdpSocket>>> {
        self.waits_in_a_row = 0;
        let registered = match self.registered.take() {
            Some(registered) => registered,
            // SAFETY: `AsyncFd` requires that the descriptor stay open and
            // the same for as long as it lives. It holds the `UdpSocket`,
            // which owns the descriptor and closes it only when its last
            // holder drops it; no code here swaps the socket out.
            #[allow(unsafe_code)]
            None => unsafe {
                AsyncFd::register_with_interest(
                    Arc::clone(&self.udp),
                    tokio::io::Interest::READABLE,
                )?
            },
        };
        Ok(self.registered.insert(registered))
    }

    /// The socket, for a receive that blocks; out of the event loop once
    /// the worker has waited so [`WAITS_BEFORE_LEAVING`] times in a row.
    fn for_waiting(&mut self) -> &UdpSocket {
        self.waits_in_a_row = self.waits_in_a_row.saturating_add(1);
        if self.waits_in_a_row >= WAITS_BEFORE_LEAVING
            && let Some(registered) = self.registered.take()
        {
            drop(registered.into_inner());
        }
        &self.udp
    }

    /// Whether the socket is registered with the event loop.
    #[cfg(test)]
    fn is_registered(&self) -> bool {
        self.registered.is_some()
    }
}

/// Sends one datagram without blocking (the descriptor blocks).
pub(super) fn send_now(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) -> io::Result<usize> {
    let to = SockaddrStorage::from(peer);
    sendto(socket.as_raw_fd(), reply, &to, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
}

/// Waits in the event loop until `take` finds datagrams and returns what
/// it took, or 0 once the socket is shut down for reading: nothing more
/// arrives then, and the socket stays readable, so waiting again would
/// spin without ever yielding.
async fn take_when_readable(
    socket: &mut Socket,
    mut take: impl FnMut(&UdpSocket) -> io::Result<usize>,
) -> io::Result<usize> {
    let registered = match socket.in_event_loop() {
        Ok(registered) => registered,
        // Refused on coming back (no epoll watch left, say): look for
        // datagrams every WAIT rather than spin.
        Err(refused) => {
            tokio::time::sleep(WAIT).await;
            return take(&socket.udp).or(Err(refused));
        }
    };
    loop {
        let mut ready = registered.readable().await?;
        let closed = ready.ready().is_read_closed();
        match ready.try_io(|registered| take(registered.get_ref())) {
            Ok(taken) => return taken,
            Err(_would_block) if closed => return Ok(0),
            Err(_would_block) => {}
        }
    }
}

/// Whether a receive found nothing (a waiting one: within [`WAIT`]).
pub(super) fn found_nothing(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

fn to_socket_addr(address: SockaddrStorage) -> Option<SocketAddr> {
    address
        .as_sockaddr_in()
        .map(|v4| SocketAddr::from(*v4))
        .or_else(|| address.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
}

/// Tries of a send that would block before its reply is dropped, like a
/// datagram lost on the way.
const SEND_TRIES: usize = 8;

/// Runs `send` until it does not block, yielding to the worker's other
/// tasks between tries.
pub(super) async fn send_retrying<T>(mut send: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..SEND_TRIES {
        match send() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                tokio::task::yield_now().await
            }
            done => return done,
        }
    }
    Err(io::ErrorKind::WouldBlock.into())
}

/// Datagrams taken and answered together.
pub(super) const BATCH: usize = 32;
/// Room for one received query; a longer datagram is dropped (no client
/// sends a 4 KiB question).
pub(super) const SLOT: usize = 4096;

/// Datagrams received in one batch. Who sent each, the batch keeps in
/// its own form (`Batch::peer`): its reply goes back there.
pub(super) struct Received {
    buffers: Box<[u8]>,
    /// Length of each datagram; `usize::MAX` for one cut short.
    lens: [usize; BATCH],
}

impl Received {
    pub(super) fn new() -> Self {
        Self {
            buffers: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            lens: [0; BATCH],
        }
    }

    /// Datagram `i`; `None` for one too long for its slot.
    pub(super) fn get(&self, i: usize) -> Option<&[u8]> {
        let len = *self.lens.get(i)?;
        (len <= SLOT).then_some(())?;
        self.buffers.get(i * SLOT..i * SLOT + len)
    }
}

/// Replies to a batch, written in place and sent together, each to the
/// sender of the datagram it answers.
pub(super) struct Replies {
    /// One buffer per datagram, each with room for the longest UDP reply.
    buffers: Vec<Vec<u8>>,
    /// Length of each reply to send.
    ready: [Option<usize>; BATCH],
}

impl Replies {
    /// Buffers of `capacity` octets: the longest reply they will hold.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            buffers: (0..BATCH).map(|_| Vec::with_capacity(capacity)).collect(),
            ready: [None; BATCH],
        }
    }

    /// The buffer to write reply `i` into.
    pub(super) fn buffer(&mut self, i: usize) -> Option<&mut Vec<u8>> {
        self.buffers.get_mut(i)
    }

    /// Marks reply `i`, `len` octets long, to be sent.
    pub(super) fn set(&mut self, i: usize, len: usize) {
        if let Some(slot) = self.ready.get_mut(i) {
            *slot = Some(len);
        }
    }

    /// Each reply marked to be sent, by number.
    fn to_send(&self) -> impl Iterator<Item = (usize, &[u8])> {
        let marked = self.ready.iter().zip(&self.buffers).enumerate();
        marked.filter_map(|(i, (len, buffer))| Some((i, buffer.get(..(*len)?)?)))
    }

    fn clear(&mut self) {
        self.ready = [None; BATCH];
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod mmsg;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) use mmsg::Batch;

// Built everywhere so its tests run on Linux too; used where the kernel
// has no recvmmsg.
#[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
mod fallback;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) use fallback::Batch;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::*;

    /// Sends three datagrams and an oversize one to a batch, which echoes
    /// each reversed: the same check for both implementations.
    macro_rules! round_trip {
        ($batch:expr) => {{
            let mut batch = $batch(crate::wire::udp_reply_bound(1232));
            let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut server = Socket::new(std).unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let to = server.udp().local_addr().unwrap();
            for i in 0..3u8 {
                client.send_to(&[i, i + 1, i + 2], to).await.unwrap();
            }
            client.send_to(&vec![7u8; SLOT + 1], to).await.unwrap();
            let mut seen = 0;
            let mut oversize = 0;
            while seen + oversize < 4 {
                let count = batch.receive(&mut server).await.unwrap();
                for i in 0..count {
                    assert_eq!(batch.peer(i), Some(client.local_addr().unwrap()));
                    match (batch.received.get(i), batch.replies.buffer(i)) {
                        (Some(packet), Some(out)) => {
                            out.clear();
                            out.extend(packet.iter().rev());
                            batch.replies.set(i, packet.len());
                            seen += 1;
                        }
                        _ => oversize += 1,
                    }
                }
                batch.send(&server).await.unwrap();
            }
            assert_eq!(
                (seen, oversize),
                (3, 1),
                "the oversize datagram is reported"
            );
            let mut buf = [0u8; 16];
            for i in 0..3u8 {
                let wait = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf));
                let len = wait.await.unwrap().unwrap();
                assert_eq!(&buf[..len], &[i + 2, i + 1, i]);
            }
            // Waiting on the thread: what arrives, then nothing after WAIT.
            // The socket leaves the event loop after so many waits.
            for i in 0..WAITS_BEFORE_LEAVING as u8 {
                assert!(server.is_registered(), "registered during wait {i}");
                client.send_to(&[9, i], to).await.unwrap();
                assert_eq!(batch.receive_waiting(&mut server).unwrap(), 1);
                assert_eq!(batch.received.get(0).unwrap(), &[9, i]);
            }
            assert!(!server.is_registered(), "out of the event loop");
            let started = std::time::Instant::now();
            let error = batch.receive_waiting(&mut server).unwrap_err();
            assert!(found_nothing(&error), "{error}");
            assert!(started.elapsed() >= WAIT / 2, "it waited");
            // Back in the event loop, which hears of the next datagram.
            client.send_to(&[6], to).await.unwrap();
            let wait = tokio::time::timeout(Duration::from_secs(5), batch.receive(&mut server));
            assert_eq!(wait.await.unwrap().unwrap(), 1);
            assert_eq!(batch.received.get(0).unwrap(), &[6]);
            assert!(server.is_registered());
        }};
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn mmsg_batch_receives_and_answers() {
        round_trip!(mmsg::Batch::new);
    }

    #[tokio::test]
    async fn one_at_a_time_batch_receives_and_answers() {
        round_trip!(fallback::Batch::new);
    }

    /// A socket shut down for reading stays readable: a receive must
    /// report it (0), not wait again, which would spin without yielding.
    /// On a thread of its own, so a spin fails the test instead of
    /// hanging it.
    macro_rules! shut_down_for_reading {
        ($batch:expr) => {{
            let (done, result) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    let mut server = Socket::new(std).unwrap();
                    // ENOTCONN for an unconnected socket, yet it is done.
                    let _ = socket2::SockRef::from(server.udp().as_ref())
                        .shutdown(std::net::Shutdown::Read);
                    let mut batch = $batch(crate::wire::udp_reply_bound(1232));
                    let _ = done.send(batch.receive(&mut server).await.unwrap());
                });
            });
            let received = result.recv_timeout(Duration::from_secs(5));
            assert_eq!(received, Ok(0), "the receive returned, with nothing");
        }};
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn mmsg_batch_reports_a_socket_shut_down_for_reading() {
        shut_down_for_reading!(mmsg::Batch::new);
    }

    #[test]
    fn one_at_a_time_batch_reports_a_socket_shut_down_for_reading() {
        shut_down_for_reading!(fallback::Batch::new);
    }
}
