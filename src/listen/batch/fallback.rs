//! One datagram at a time, where the kernel has no `recvmmsg`.

use std::{
    io::{self, IoSliceMut},
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg};

use super::{
    Received, Replies, SLOT, Socket, send_now, send_retrying, take_when_readable, to_socket_addr,
};

/// A worker's batch, of one datagram.
pub(in crate::listen) struct Batch {
    pub received: Received,
    pub replies: Replies,
    /// Who sent the datagram.
    peer: Option<SocketAddr>,
}

impl Batch {
    /// A batch whose replies are at most `reply_capacity` octets.
    pub(in crate::listen) fn new(reply_capacity: usize) -> Self {
        Self {
            received: Received::new(),
            replies: Replies::new(reply_capacity),
            peer: None,
        }
    }

    /// Waits in the event loop for one datagram; 0 once the socket is shut
    /// down for reading.
    pub(in crate::listen) async fn receive(&mut self, socket: &mut Socket) -> io::Result<usize> {
        take_when_readable(socket, |socket| self.take(socket, MsgFlags::MSG_DONTWAIT)).await
    }

    /// Blocks the thread until a datagram arrives (at most the socket's
    /// receive timeout, then `WouldBlock`), and takes it.
    pub(in crate::listen) fn receive_waiting(&mut self, socket: &mut Socket) -> io::Result<usize> {
        self.take(socket.for_waiting(), MsgFlags::empty())
    }

    /// Who sent the datagram (`i` is 0).
    pub(in crate::listen) fn peer(&self, i: usize) -> Option<SocketAddr> {
        self.peer.filter(|_| i == 0)
    }

    fn take(&mut self, socket: &UdpSocket, flags: MsgFlags) -> io::Result<usize> {
        let received = &mut self.received;
        // One octet more than a slot tells a datagram cut short.
        let mut slot = [IoSliceMut::new(&mut received.buffers[..=SLOT])];
        let fd = socket.as_raw_fd();
        let message = recvmsg::<SockaddrStorage>(fd, &mut slot, None, flags)?;
        let truncated = message.bytes > SLOT || message.flags.contains(MsgFlags::MSG_TRUNC);
        received.lens[0] = if truncated { usize::MAX } else { message.bytes };
        self.peer = message.address.and_then(to_socket_addr);
        Ok(1)
    }

    /// Sends the reply, if any, and clears it, sent or not.
    pub(in crate::listen) async fn send(&mut self, socket: &Socket) -> io::Result<()> {
        let mut sent = Ok(());
        if let (Some((_, reply)), Some(peer)) = (self.replies.to_send().next(), self.peer) {
            sent = send_retrying(|| send_now(socket.udp(), reply, peer))
                .await
                .map(drop);
        }
        self.replies.clear();
        sent
    }
}
