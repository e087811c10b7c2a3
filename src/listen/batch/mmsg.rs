//! `recvmmsg`/`sendmmsg` through nix's safe wrappers.

use std::{
    io::{self, IoSlice, IoSliceMut},
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

use super::{BATCH, Received, Replies, SLOT, Socket, send_retrying};

/// A worker's batch: what it received, what it replies, and the message
/// headers the kernel fills, all allocated once.
pub(in crate::listen) struct Batch {
    pub received: Received,
    pub replies: Replies,
    receive_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
}

impl Batch {
    /// A batch whose replies are at most `reply_capacity` octets.
    pub(in crate::listen) fn new(reply_capacity: usize) -> Self {
        Self {
            received: Received::new(),
            replies: Replies::new(reply_capacity),
            receive_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Waits until datagrams arrive, then takes up to [`BATCH`] of them.
    pub(in crate::listen) async fn receive(&mut self, socket: &Socket) -> io::Result<usize> {
        loop {
            let mut ready = socket.readable().await?;
            if let Ok(received) = ready.try_io(|socket| self.take(socket.get_ref())) {
                return received;
            }
        }
    }

    /// One `recvmmsg`: what is waiting, up to [`BATCH`] datagrams.
    fn take(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let Self {
            received,
            receive_headers,
            ..
        } = self;
        let mut slots: [[IoSliceMut<'_>; 1]; BATCH] = {
            let mut chunks = received.buffers.chunks_exact_mut(SLOT);
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())])
        };
        let flags = MsgFlags::MSG_DONTWAIT;
        let results = recvmmsg(
            socket.as_raw_fd(),
            receive_headers,
            slots.iter_mut(),
            flags,
            None,
        )
        .map_err(io::Error::from)?;
        let mut count = 0;
        for (i, message) in results.enumerate() {
            let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
            received.lens[i] = if truncated { usize::MAX } else { message.bytes };
            received.peers[i] = message.address.and_then(to_socket_addr);
            count = i + 1;
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
            match send_retrying(|| self.give(socket.get_ref(), pending)).await {
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

    /// One `sendmmsg` of the replies numbered in `pending`; returns how
    /// many the kernel took.
    fn give(&mut self, socket: &UdpSocket, pending: &[usize]) -> io::Result<usize> {
        let Self {
            replies,
            send_headers,
            ..
        } = self;
        let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|k| {
            let reply = pending.get(k).and_then(|&i| Some((i, replies.ready[i]?)));
            let bytes = reply.map_or(&[][..], |(i, (len, _))| {
                replies.buffers[i].get(..len).unwrap_or_default()
            });
            [IoSlice::new(bytes)]
        });
        let addresses: [Option<SockaddrStorage>; BATCH] = std::array::from_fn(|k| {
            let (_, peer) = replies.ready[*pending.get(k)?]?;
            Some(SockaddrStorage::from(peer))
        });
        let flags = MsgFlags::MSG_DONTWAIT;
        let taken = slices.iter().take(pending.len());
        let results = sendmmsg(
            socket.as_raw_fd(),
            send_headers,
            taken,
            &addresses[..pending.len()],
            [],
            flags,
        )
        .map_err(io::Error::from)?;
        Ok(results.count())
    }
}

fn to_socket_addr(address: SockaddrStorage) -> Option<SocketAddr> {
    address
        .as_sockaddr_in()
        .map(|v4| SocketAddr::from(*v4))
        .or_else(|| address.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
}
