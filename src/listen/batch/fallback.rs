//! One datagram at a time, where the kernel has no `recvmmsg`.

use std::io;

use super::{Received, Replies, SLOT, Socket, send_retrying};

/// A worker's batch, of one datagram.
pub(in crate::listen) struct Batch {
    pub received: Received,
    pub replies: Replies,
}

impl Batch {
    /// A batch whose replies are at most `reply_capacity` octets.
    pub(in crate::listen) fn new(reply_capacity: usize) -> Self {
        Self {
            received: Received::new(),
            replies: Replies::new(reply_capacity),
        }
    }

    /// Waits for one datagram.
    pub(in crate::listen) async fn receive(&mut self, socket: &Socket) -> io::Result<usize> {
        let received = &mut self.received;
        loop {
            let mut ready = socket.readable().await?;
            // One octet more than a slot tells a datagram cut short.
            let taken =
                ready.try_io(|socket| socket.get_ref().recv_from(&mut received.buffers[..=SLOT]));
            if let Ok(taken) = taken {
                let (len, peer) = taken?;
                received.lens[0] = if len > SLOT { usize::MAX } else { len };
                received.peers[0] = Some(peer);
                return Ok(1);
            }
        }
    }

    /// Sends the reply, if any, and clears it, sent or not.
    pub(in crate::listen) async fn send(&mut self, socket: &Socket) -> io::Result<()> {
        let mut sent = Ok(());
        if let Some((len, peer)) = self.replies.ready[0] {
            let reply = self.replies.buffers[0].get(..len).unwrap_or_default();
            sent = send_retrying(|| socket.get_ref().send_to(reply, peer))
                .await
                .map(drop);
        }
        self.replies.clear();
        sent
    }
}
