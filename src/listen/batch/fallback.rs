//! One datagram at a time, where the kernel has no `recvmmsg`.

use std::io;

use tokio::net::UdpSocket;

use super::{Received, Replies, SLOT};

/// A worker's batch, of one datagram.
pub(in crate::listen) struct Batch {
    pub received: Received,
    pub replies: Replies,
}

impl Batch {
    pub(in crate::listen) fn new() -> Self {
        Self {
            received: Received::new(),
            replies: Replies::new(),
        }
    }

    /// Waits for one datagram.
    pub(in crate::listen) async fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let received = &mut self.received;
        // One octet more than a slot tells a datagram cut short.
        let (len, peer) = socket.recv_from(&mut received.buffers[..=SLOT]).await?;
        received.lens[0] = if len > SLOT { usize::MAX } else { len };
        received.peers[0] = Some(peer);
        Ok(1)
    }

    /// Sends the reply, if any.
    pub(in crate::listen) async fn send(&mut self, socket: &UdpSocket) -> io::Result<()> {
        if let Some((len, peer)) = self.replies.ready[0] {
            socket
                .send_to(self.replies.buffers[0].get(..len).unwrap_or_default(), peer)
                .await?;
        }
        self.replies.clear();
        Ok(())
    }
}
