//! The TCP front end (RFC 7766): a capped number of client connections,
//! each read as a stream of length-prefixed queries that are answered
//! concurrently and written back in whatever order they finish.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
    sync::{OwnedSemaphorePermit, mpsc},
};
use tokio_util::{
    codec::{FramedRead, LengthDelimitedCodec},
    task::TaskTracker,
};
use tracing::{debug, info};

use super::Context;
use crate::wire::{MAX_MESSAGE_LEN, Transport};

/// Pause after a failed accept (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Answers queued for one connection's writer.
const REPLY_QUEUE: usize = 64;

/// Accepts client connections on `listener` until shutdown.
pub(super) async fn serve(listener: TcpListener, context: Arc<Context>, tracker: TaskTracker) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "listening on TCP");
    }
    loop {
        let accepted = tokio::select! {
            _ = context.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                debug!(%error, "TCP accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&context.tcp_connections).try_acquire_owned() else {
            context.metrics.server.tcp_refused.inc();
            continue;
        };
        context.metrics.server.tcp_accepted.inc();
        tracker.spawn(connection(
            stream,
            Arc::clone(&context),
            tracker.clone(),
            permit,
        ));
    }
}

/// Serves one client connection: reads queries until the client closes,
/// goes idle or shutdown comes, then waits for the answers still owed.
async fn connection(
    stream: TcpStream,
    context: Arc<Context>,
    tracker: TaskTracker,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (replies, queue) = mpsc::channel(REPLY_QUEUE);
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(MAX_MESSAGE_LEN)
        .new_codec();
    let mut frames = FramedRead::new(reader, codec);
    let outstanding = Arc::new(AtomicUsize::new(0));
    let read_loop = async {
        loop {
            let next = tokio::select! {
                _ = context.shutdown.cancelled() => break,
                next = tokio::time::timeout(context.tcp_idle_timeout, frames.next()) => next,
            };
            let frame = match next {
                Err(_idle) if outstanding.load(Ordering::Acquire) == 0 => {
                    context.metrics.server.tcp_idle_closed.inc();
                    break;
                }
                Err(_idle) => continue,
                Ok(None | Some(Err(_))) => break,
                Ok(Some(Ok(frame))) => frame,
            };
            context.metrics.server.tcp_queries.inc();
            // Waiting here stops reading: back-pressure on a client that
            // sends faster than its queries are answered.
            let Ok(permit) = Arc::clone(&context.queries).acquire_owned().await else {
                break;
            };
            outstanding.fetch_add(1, Ordering::AcqRel);
            let task = Task {
                context: Arc::clone(&context),
                replies: replies.clone(),
                outstanding: Arc::clone(&outstanding),
                _permit: permit,
            };
            tracker.spawn(task.run(frame.freeze()));
        }
        drop(replies);
    };
    tokio::join!(read_loop, write_replies(writer, queue));
}

/// One query read from a connection, answered in its own task.
struct Task {
    context: Arc<Context>,
    replies: mpsc::Sender<Vec<u8>>,
    outstanding: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl Task {
    async fn run(self, packet: impl AsRef<[u8]>) {
        let mut out = vec![0u8; 2];
        let mut reply = Vec::new();
        if let Some(len) = self
            .context
            .resolver
            .reply(packet.as_ref(), Transport::Tcp, &mut reply)
            .await
            && let (Ok(prefix), Some(reply)) = (u16::try_from(len), reply.get(..len))
        {
            out.copy_from_slice(&prefix.to_be_bytes());
            out.extend_from_slice(reply);
            let _ = self.replies.send(out).await;
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes answers as they come; ends when every sender is gone.
async fn write_replies(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(reply) = queue.recv().await {
        if writer.write_all(&reply).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
