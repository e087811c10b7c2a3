//! The UDP front end: one receive loop per socket. Cached answers and
//! error replies are written and sent inline, with buffers allocated once;
//! a query that needs upstream gets its own task, so a slow upstream never
//! holds up the next client.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::Context;
use crate::{
    cache::Entry,
    resolver::Immediate,
    wire::{MAX_MESSAGE_LEN, Transport},
};

/// Receives queries on `socket` until shutdown.
pub(super) async fn serve(socket: Arc<UdpSocket>, context: Arc<Context>, tracker: TaskTracker) {
    if let Ok(address) = socket.local_addr() {
        info!(%address, "listening on UDP");
    }
    // Allocated once: every datagram is received into the same buffer and
    // every immediate reply written into the same one.
    let mut received = vec![0u8; MAX_MESSAGE_LEN];
    let mut reply = Vec::with_capacity(MAX_MESSAGE_LEN);
    loop {
        let (len, peer) = tokio::select! {
            _ = context.shutdown.cancelled() => break,
            result = socket.recv_from(&mut received) => match result {
                Ok(received) => received,
                Err(error) => {
                    debug!(%error, "UDP receive failed");
                    continue;
                }
            },
        };
        context.metrics.server.udp_queries.inc();
        let packet = received.get(..len).unwrap_or_default();
        let now = context.resolver.now();
        match context
            .resolver
            .answer_now(packet, Transport::Udp, now, &mut reply)
        {
            Immediate::Reply(len) => {
                send(&socket, reply.get(..len).unwrap_or_default(), peer).await
            }
            Immediate::Drop => {}
            Immediate::Forward(stale) => forward(&socket, &context, &tracker, packet, peer, stale),
        }
    }
}

/// Answers a query that needs upstream in a task of its own, within the
/// `max_queries_in_flight` bound.
fn forward(
    socket: &Arc<UdpSocket>,
    context: &Arc<Context>,
    tracker: &TaskTracker,
    packet: &[u8],
    peer: SocketAddr,
    stale: Option<Arc<Entry>>,
) {
    let Ok(permit) = Arc::clone(&context.queries).try_acquire_owned() else {
        context.metrics.server.dropped_overload.inc();
        return;
    };
    let packet = packet.to_vec();
    let (socket, context) = (Arc::clone(socket), Arc::clone(context));
    tracker.spawn(async move {
        let mut out = Vec::new();
        let resolver = &context.resolver;
        if let Some(len) = resolver
            .answer_later(&packet, Transport::Udp, stale, &mut out)
            .await
        {
            send(&socket, out.get(..len).unwrap_or_default(), peer).await;
        }
        drop(permit);
    });
}

async fn send(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(error) = socket.send_to(reply, peer).await {
        debug!(%peer, %error, "UDP send failed");
    }
}
