//! Batched UDP I/O for the UDP workers: up to [`BATCH`] datagrams taken
//! with one `recvmmsg` and answered with one `sendmmsg` (Linux), so a busy
//! worker spends two system calls on many queries instead of two on each.
//! All buffers are allocated once, with the worker.
//!
//! Where the kernel has no `recvmmsg`, [`fallback`] takes one datagram at
//! a time behind the same interface.

use std::{io, net::SocketAddr};

use tokio::io::unix::AsyncFd;

/// A UDP worker's socket, registered for readability only: replies go out
/// with non-blocking sends from the worker's own thread. Registered for
/// writability too, every send that frees buffer space would wake the
/// worker's event loop for nothing.
pub(super) type Socket = AsyncFd<std::net::UdpSocket>;

/// Registers `socket` with the current runtime, for readability only.
pub(super) fn register(socket: std::net::UdpSocket) -> io::Result<Socket> {
    // SAFETY: `AsyncFd` requires that the descriptor stay open and the same
    // for as long as it lives. It owns the `UdpSocket`, which owns the
    // descriptor and closes it only when dropped, with the `AsyncFd`; no
    // code here swaps the socket out.
    #[allow(unsafe_code)]
    let registered =
        unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) };
    registered.map_err(|error| error.into())
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

/// Datagrams received in one batch.
pub(super) struct Received {
    buffers: Box<[u8]>,
    /// Length of each datagram; `usize::MAX` for one cut short.
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
}

impl Received {
    pub(super) fn new() -> Self {
        Self {
            buffers: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            lens: [0; BATCH],
            peers: [None; BATCH],
        }
    }

    /// Datagram `i` and who sent it; `None` for one too long for its slot.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let len = *self.lens.get(i)?;
        let packet = self.buffers.get(i * SLOT..i * SLOT + len.min(SLOT))?;
        (len <= SLOT).then_some(())?;
        Some((packet, (*self.peers.get(i)?)?))
    }
}

/// Replies to a batch, written in place and sent together.
pub(super) struct Replies {
    /// One buffer per datagram, each with room for the longest UDP reply.
    buffers: Vec<Vec<u8>>,
    /// Length and destination of each reply to send.
    ready: [Option<(usize, SocketAddr)>; BATCH],
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

    /// Marks reply `i`, `len` octets long, for `peer`.
    pub(super) fn set(&mut self, i: usize, len: usize, peer: SocketAddr) {
        if let Some(slot) = self.ready.get_mut(i) {
            *slot = Some((len, peer));
        }
    }

    fn clear(&mut self) {
        self.ready = [None; BATCH];
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
mod mmsg;
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(super) use mmsg::Batch;

// Built everywhere so its tests run on Linux too; used where the kernel
// has no recvmmsg.
#[cfg_attr(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    allow(dead_code)
)]
mod fallback;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
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
            std.set_nonblocking(true).unwrap();
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
                    match (batch.received.get(i), batch.replies.buffer(i)) {
                        (Some((packet, peer)), Some(out)) => {
                            assert_eq!(peer, client.local_addr().unwrap());
                            out.clear();
                            out.extend(packet.iter().rev());
                            batch.replies.set(i, packet.len(), peer);
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
        }};
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    #[tokio::test]
    async fn mmsg_batch_receives_and_answers() {
        round_trip!(mmsg::Batch::new);
    }

    #[tokio::test]
    async fn one_at_a_time_batch_receives_and_answers() {
        round_trip!(fallback::Batch::new);
    }
}
