//! The UDP front end: one worker thread per socket, each running a
//! single-threaded runtime of its own. Datagrams come in batches
//! (`batch`); cached answers and error replies are written in place and
//! sent back in one batch, with buffers allocated once. A query that needs
//! upstream becomes a task on the same runtime, resolved over the worker's
//! own lane of upstream connections, so a miss, its connection and its
//! answer stay on one thread: no hand-off wakes another.
//!
//! A worker that is busy (its last receive found datagrams) and has
//! nothing else to run (no miss or refresh in flight) waits for the next
//! batch blocked in the receive call rather than in its event loop: the
//! kernel then wakes it straight from the arriving datagram, which saves
//! `epoll` and two system calls each time the queue runs dry: about a
//! tenth of a hit's CPU at 10,000 queries a second, nothing measurable at
//! saturation. A worker that keeps waiting so takes its socket out of the
//! event loop (`batch::Socket`), which makes each reply cheaper to send.
//! After `batch::WAIT` without a datagram, or as soon as a miss is in
//! flight, it goes back to the event loop; at shutdown
//! (`UdpWorkers`) the socket is shut down for reading, which wakes it.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    sync::Arc,
};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

use super::{
    Context,
    batch::{Batch, Socket, found_nothing, send_now, send_retrying},
};
use crate::{
    resolver::{Immediate, Unserved},
    upstream,
    wire::{Transport, udp_reply_bound},
};

/// Yield to the worker's runtime every this many datagrams, so its miss
/// tasks and their connections run while queries keep arriving.
const YIELD_EVERY: usize = 64;

/// Starts worker `index`: a thread serving `socket` until shutdown. The
/// thread counts as a task of `tracker` until it has sent every answer owed.
pub(super) fn spawn_worker(
    index: usize,
    socket: UdpSocket,
    context: Arc<Context>,
    tracker: &TaskTracker,
) -> io::Result<()> {
    let running = tracker.token();
    std::thread::Builder::new()
        .name(format!("dotstub-udp-{index}"))
        .spawn(move || {
            let _running = running;
            upstream::use_lane(index);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => return error!(%err, "cannot start a UDP worker's runtime"),
            };
            runtime.block_on(async move {
                match Socket::new(socket) {
                    Ok(socket) => serve(socket, context).await,
                    Err(err) => error!(%err, "cannot set up a UDP socket"),
                }
            });
        })?;
    Ok(())
}

/// Receives queries on `socket` until shutdown, then waits for the answers
/// still owed, which go out through this socket.
async fn serve(mut socket: Socket, context: Arc<Context>) {
    if let Ok(address) = socket.udp().local_addr() {
        info!(%address, "listening on UDP");
    }
    let misses = TaskTracker::new();
    // The loop owns its runtime, so tokio's cooperative budget would only
    // add work and make it yield at random; it yields on a schedule instead.
    tokio::task::unconstrained(receive(&mut socket, &context, &misses)).await;
    misses.close();
    misses.wait().await;
}

async fn receive(socket: &mut Socket, context: &Arc<Context>, misses: &TaskTracker) {
    // Allocated once: every batch is received into and answered from the
    // same buffers.
    let mut batch = Batch::new(udp_reply_bound(context.resolver.settings().max_udp_size));
    let mut since_yield = 0;
    let mut busy = false;
    loop {
        let idle_runtime = misses.is_empty() && context.resolver.background().is_empty();
        let received = if busy && idle_runtime {
            match batch.receive_waiting(socket) {
                Err(error) if found_nothing(&error) => {
                    busy = false;
                    continue;
                }
                received => received,
            }
        } else {
            tokio::select! {
                _ = context.shutdown.cancelled() => break,
                received = batch.receive(socket) => received,
            }
        };
        if context.shutdown.is_cancelled() {
            break;
        }
        let count = match received {
            // Shut down for reading (see `UdpWorkers`): nothing more comes.
            Ok(0) => break,
            Ok(count) => count,
            Err(error) => {
                debug!(%error, "UDP receive failed");
                continue;
            }
        };
        busy = true;
        context.metrics.server.udp_queries.add(count as u64);
        let now = context.resolver.now();
        for i in 0..count {
            let (Some(packet), Some(out)) = (batch.received.get(i), batch.replies.buffer(i)) else {
                context.metrics.server.dropped_oversize.inc();
                continue;
            };
            match context
                .resolver
                .answer_now(packet, Transport::Udp, now, out)
            {
                Immediate::Reply(len) => batch.replies.set(i, len),
                Immediate::Drop => {}
                Immediate::Forward(stale) => {
                    // At the bound, an answer at once rather than silence:
                    // the client learns now instead of after its timeout.
                    let Ok(permit) = Arc::clone(&context.queries).try_acquire_owned() else {
                        let overloaded = Unserved::Overloaded;
                        if let Some(len) =
                            context.resolver.servfail_unserved(packet, overloaded, out)
                        {
                            batch.replies.set(i, len);
                        }
                        continue;
                    };
                    let Some(peer) = batch.peer(i) else {
                        continue;
                    };
                    let query = Miss {
                        socket: Arc::clone(socket.udp()),
                        context: Arc::clone(context),
                        peer,
                        stale,
                    };
                    query.spawn(packet, permit, misses);
                }
            }
        }
        if let Err(error) = batch.send(socket).await {
            debug!(%error, "UDP send failed");
        }
        since_yield += count;
        if since_yield >= YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// A query that needs upstream, answered in a task on the worker's runtime,
/// holding one of the `max_queries_in_flight` slots.
struct Miss {
    socket: Arc<UdpSocket>,
    context: Arc<Context>,
    peer: SocketAddr,
    /// Whether the cache holds an expired answer to fall back on.
    stale: bool,
}

impl Miss {
    fn spawn(self, packet: &[u8], permit: OwnedSemaphorePermit, tracker: &TaskTracker) {
        let packet = packet.to_vec();
        tracker.spawn(async move {
            let mut out = Vec::new();
            let resolver = &self.context.resolver;
            // Boxed, so the task stays small: the resolution's state
            // (over a kilobyte) is then written once, not moved with the
            // task as it is spawned, polled and completed.
            let answered =
                Box::pin(resolver.answer_later(&packet, Transport::Udp, self.stale, &mut out))
                    .await;
            if let Some(reply) = answered.and_then(|len| out.get(..len)) {
                let sent = send_retrying(|| send_now(&self.socket, reply, self.peer)).await;
                if let Err(error) = sent {
                    debug!(peer = %self.peer, %error, "UDP send failed");
                }
            }
            drop(permit);
        });
    }
}
