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
    time::Duration,
};

use nix::sys::socket::{MsgFlags, SockaddrStorage, sendto};
use tokio::io::unix::AsyncFd;

/// A UDP worker's socket, registered for readability only: replies go out
/// with non-blocking sends from the worker's own thread. Registered for
/// writability too, every send that frees buffer space would wake the
/// worker's event loop for nothing.
pub(super) type Socket = AsyncFd<UdpSocket>;

/// Longest a waiting receive blocks the worker's thread: the most its
/// runtime's timers (idle upstream connections) run late, and the longest
/// shutdown waits for it.
pub(super) const WAIT: Duration = Duration::from_millis(50);

/// Registers `socket` with the current runtime, for readability only, and
/// makes its descriptor block for up to [`WAIT`] on receives that do not
/// pass `MSG_DONTWAIT`.
pub(super) fn register(socket: UdpSocket) -> io::Result<Socket> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(WAIT))?;
    // SAFETY: `AsyncFd` requires that the descriptor stay open and the same
    // for as long as it lives. It owns the `UdpSocket`, which owns the
    // descriptor and closes it only when dropped, with the `AsyncFd`; no
    // code here swaps the socket out.
    #[allow(unsafe_code)]
    let registered =
        unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) };
    registered.map_err(|error| error.into())
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
    socket: &Socket,
    mut take: impl FnMut(&Socket) -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        let mut ready = socket.readable().await?;
        let closed = ready.ready().is_read_closed();
        match ready.try_io(&mut take) {
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
            let server = register(std).unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let to = server.get_ref().local_addr().unwrap();
            for i in 0..3u8 {
                client.send_to(&[i, i + 1, i + 2], to).await.unwrap();
            }
            client.send_to(&vec![7u8; SLOT + 1], to).await.unwrap();
            let mut seen = 0;
            let mut oversize = 0;
            while seen + oversize < 4 {
                let count = batch.receive(&server).await.unwrap();
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
            client.send_to(&[9, 8], to).await.unwrap();
            assert_eq!(batch.receive_waiting(&server).unwrap(), 1);
            assert_eq!(batch.received.get(0).unwrap(), &[9, 8]);
            let started = std::time::Instant::now();
            let error = batch.receive_waiting(&server).unwrap_err();
            assert!(found_nothing(&error), "{error}");
            assert!(started.elapsed() >= WAIT / 2, "it waited");
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
                    let server = register(std).unwrap();
                    // ENOTCONN for an unconnected socket, yet it is done.
                    let _ =
                        socket2::SockRef::from(server.get_ref()).shutdown(std::net::Shutdown::Read);
                    let mut batch = $batch(crate::wire::udp_reply_bound(1232));
                    let _ = done.send(batch.receive(&server).await.unwrap());
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
