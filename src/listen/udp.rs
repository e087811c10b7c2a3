//! The UDP front end: one receive loop per socket, one task per query so a
//! slow upstream never holds up the next client.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::Context;
use crate::wire::{MAX_MESSAGE_LEN, Transport};

/// Receives queries on `socket` until shutdown, answering each in its own task.
pub(super) async fn serve(socket: Arc<UdpSocket>, context: Arc<Context>, tracker: TaskTracker) {
    if let Ok(address) = socket.local_addr() {
        info!(%address, "listening on UDP");
    }
    // Allocated once: every datagram is received into the same buffer.
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    loop {
        let received = tokio::select! {
            _ = context.shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "UDP receive failed");
                continue;
            }
        };
        context.metrics.server.udp_queries.inc();
        let Ok(permit) = Arc::clone(&context.queries).try_acquire_owned() else {
            context.metrics.server.dropped_overload.inc();
            continue;
        };
        let packet = buf.get(..len).unwrap_or_default().to_vec();
        let (socket, context) = (Arc::clone(&socket), Arc::clone(&context));
        tracker.spawn(async move {
            answer(&socket, &context, &packet, peer).await;
            drop(permit);
        });
    }
}

async fn answer(socket: &UdpSocket, context: &Context, packet: &[u8], peer: SocketAddr) {
    let mut out = Vec::new();
    if let Some(len) = context
        .resolver
        .reply(packet, Transport::Udp, &mut out)
        .await
        && let Some(reply) = out.get(..len)
        && let Err(error) = socket.send_to(reply, peer).await
    {
        debug!(%peer, %error, "UDP send failed");
    }
}
