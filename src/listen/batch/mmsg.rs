//! `recvmmsg` and `sendmmsg` as the system calls themselves, over message
//! headers kept with the batch. Reply `i` goes to the sender of datagram
//! `i`, so the address the kernel wrote on receiving is the one it reads
//! on sending: no address is converted or copied on the hit path. (musl's
//! 64-bit `sendmmsg` would also be a loop of `sendmsg` calls, since its
//! `msghdr` is not the kernel's: that undid the batching in the static
//! build.)

use std::{
    io,
    mem::size_of,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use nix::{
    libc,
    sys::socket::{SockaddrLike, SockaddrStorage},
};

use super::{
    BATCH, Received, Replies, SLOT, Socket, send_retrying, take_when_readable, to_socket_addr,
};

/// A worker's batch: what it received, what it replies, and the message
/// headers the kernel reads and fills, all allocated once.
pub(in crate::listen) struct Batch {
    pub received: Received,
    pub replies: Replies,
    headers: Box<Headers>,
}

/// The kernel's side of a batch. Its pointers are set before each call,
/// to buffers that stay put until the call returns.
struct Headers {
    receive: [libc::mmsghdr; BATCH],
    send: [libc::mmsghdr; BATCH],
    /// One buffer per header: received datagram or reply.
    receive_iovecs: [libc::iovec; BATCH],
    send_iovecs: [libc::iovec; BATCH],
    /// Who sent datagram `i`, as the kernel wrote it, and its length.
    peers: [libc::sockaddr_storage; BATCH],
    peer_lens: [libc::socklen_t; BATCH],
}

impl Headers {
    fn new() -> Box<Self> {
        // SAFETY: every field is plain data (pointers, integers, padding)
        // for which all zeroes is a valid value: null pointers, zero
        // lengths, family AF_UNSPEC. The padding musl puts in its `msghdr`
        // must be zero for the kernel, and stays so.
        #[allow(unsafe_code)]
        Box::new(unsafe { std::mem::zeroed() })
    }
}

/// Calls `recvmmsg` or `sendmmsg` with `count` headers.
fn call(
    number: libc::c_long,
    socket: &UdpSocket,
    headers: &mut [libc::mmsghdr; BATCH],
    count: usize,
    flags: libc::c_int,
) -> io::Result<usize> {
    let count = count.min(BATCH) as libc::c_uint;
    // SAFETY: the first `count` headers (callers set them just before)
    // point at one live iovec each, which points at a buffer of the batch
    // with its length, and at an address buffer with its length; none moves
    // or is touched until the call returns. No control data (null, length
    // 0). The kernel writes the received datagrams and addresses there, and
    // `msg_len`, `msg_namelen` and `msg_flags` of each header. The fifth
    // argument, `recvmmsg`'s timeout, is null (none); `sendmmsg` has four.
    #[allow(unsafe_code)]
    let done = unsafe {
        libc::syscall(
            number,
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count,
            flags as libc::c_uint,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    usize::try_from(done).map_err(|_| io::Error::last_os_error())
}

impl Batch {
    /// A batch whose replies are at most `reply_capacity` octets.
    pub(in crate::listen) fn new(reply_capacity: usize) -> Self {
        Self {
            received: Received::new(),
            replies: Replies::new(reply_capacity),
            headers: Headers::new(),
        }
    }

    /// Waits in the event loop until datagrams arrive, then takes up to
    /// [`BATCH`] of them; 0 once the socket is shut down for reading.
    pub(in crate::listen) async fn receive(&mut self, socket: &mut Socket) -> io::Result<usize> {
        take_when_readable(socket, |socket| self.take(socket, libc::MSG_DONTWAIT)).await
    }

    /// Blocks the thread until a datagram arrives (at most the socket's
    /// receive timeout, then `WouldBlock`), then takes it and what else is
    /// waiting, up to [`BATCH`].
    pub(in crate::listen) fn receive_waiting(&mut self, socket: &mut Socket) -> io::Result<usize> {
        self.take(socket.for_waiting(), libc::MSG_WAITFORONE)
    }

    /// Who sent datagram `i`.
    pub(in crate::listen) fn peer(&self, i: usize) -> Option<SocketAddr> {
        let (address, &len) = (self.headers.peers.get(i)?, self.headers.peer_lens.get(i)?);
        let len = len.min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
        // SAFETY: `address` is a whole `sockaddr_storage`, and `len`, at
        // most its size, is the length the kernel gave for what it wrote.
        #[allow(unsafe_code)]
        let address = unsafe { SockaddrStorage::from_raw((&raw const *address).cast(), Some(len)) };
        address.and_then(to_socket_addr)
    }

    /// One `recvmmsg`: up to [`BATCH`] datagrams.
    fn take(&mut self, socket: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        let Self {
            received, headers, ..
        } = self;
        let Headers {
            receive,
            receive_iovecs,
            peers,
            peer_lens,
            ..
        } = &mut **headers;
        for (i, slot) in received.buffers.chunks_exact_mut(SLOT).enumerate() {
            receive_iovecs[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            let header = &mut receive[i].msg_hdr;
            header.msg_name = (&raw mut peers[i]).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut receive_iovecs[i];
            header.msg_iovlen = 1;
        }
        let count = call(libc::SYS_recvmmsg, socket, receive, BATCH, flags)?;
        for (i, message) in receive.iter().take(count).enumerate() {
            let truncated = message.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            received.lens[i] = if truncated {
                usize::MAX
            } else {
                message.msg_len as usize
            };
            peer_lens[i] = message.msg_hdr.msg_namelen;
        }
        Ok(count)
    }

    /// Sends every reply marked ready, in as few `sendmmsg` calls as the
    /// socket takes, then clears them, sent or not. A reply the kernel
    /// refuses (a firewall, an unreachable peer) is skipped, not the rest;
    /// a send buffer that stays full drops what is left. Returns the last
    /// error.
    pub(in crate::listen) async fn send(&mut self, socket: &Socket) -> io::Result<()> {
        let mut order = [0usize; BATCH];
        let mut count = 0;
        for (i, ready) in self.replies.ready.iter().enumerate() {
            if ready.is_some() {
                order[count] = i;
                count += 1;
            }
        }
        let mut sent = 0;
        let mut failed = None;
        while sent < count {
            let pending = &order[sent..count];
            match send_retrying(|| self.give(socket.udp(), pending)).await {
                Ok(taken) => sent += taken.max(1),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    failed = Some(error);
                    break;
                }
                // `sendmmsg` fails only when its first message does.
                Err(error) => {
                    sent += 1;
                    failed = Some(error);
                }
            }
        }
        self.replies.clear();
        failed.map_or(Ok(()), Err)
    }

    /// One `sendmmsg` of the replies numbered in `pending`, each to the
    /// sender of the datagram it answers; returns how many the kernel took.
    fn give(&mut self, socket: &UdpSocket, pending: &[usize]) -> io::Result<usize> {
        let Self {
            replies, headers, ..
        } = self;
        let Headers {
            send,
            send_iovecs,
            peers,
            peer_lens,
            ..
        } = &mut **headers;
        let mut count = 0;
        for &i in pending.iter().take(BATCH) {
            let Some(len) = replies.ready[i] else {
                continue;
            };
            let reply = replies.buffers[i].get(..len).unwrap_or_default();
            send_iovecs[count] = libc::iovec {
                iov_base: reply.as_ptr().cast_mut().cast(),
                iov_len: reply.len(),
            };
            let header = &mut send[count].msg_hdr;
            header.msg_name = (&raw mut peers[i]).cast();
            header.msg_namelen = peer_lens[i];
            header.msg_iov = &raw mut send_iovecs[count];
            header.msg_iovlen = 1;
            count += 1;
        }
        call(libc::SYS_sendmmsg, socket, send, count, libc::MSG_DONTWAIT)
    }
}
