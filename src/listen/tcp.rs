//! The TCP front end (RFC 7766): a capped number of client connections,
//! each read as a stream of length-prefixed queries that are answered
//! concurrently and written back in whatever order they finish.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::{
    io::AsyncWriteExt,
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_util::{
    codec::{FramedRead, LengthDelimitedCodec},
    sync::CancellationToken,
    task::TaskTracker,
};
use tracing::{debug, info};

use super::Context;
use crate::wire::{MAX_MESSAGE_LEN, Transport};

/// Pause after a failed accept (out of file descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

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
/// goes idle, stops reading its answers, or shutdown comes; then waits for
/// the answers still owed.
async fn connection(
    stream: TcpStream,
    context: Arc<Context>,
    tracker: TaskTracker,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (replies, queue) = mpsc::channel(context.tcp_pipeline_limit);
    // Cancelled by shutdown, or by the writer when the client stops reading.
    let closing = context.shutdown.child_token();
    let read_loop = read_queries(reader, &context, &tracker, replies, &closing);
    let write_loop = write_replies(writer, queue, context.tcp_idle_timeout, &closing);
    tokio::join!(read_loop, write_loop);
}

/// Reads framed queries and answers each in its own task. At most
/// `tcp_pipeline_limit` of one client's queries are answered or queued at
/// once; past that, reading pauses, which pushes back on the client.
async fn read_queries(
    reader: OwnedReadHalf,
    context: &Arc<Context>,
    tracker: &TaskTracker,
    replies: mpsc::Sender<Vec<u8>>,
    closing: &CancellationToken,
) {
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(MAX_MESSAGE_LEN)
        .new_codec();
    let mut frames = FramedRead::new(reader, codec);
    let pipeline = Arc::new(Semaphore::new(context.tcp_pipeline_limit));
    loop {
        let next = tokio::select! {
            _ = closing.cancelled() => break,
            next = tokio::time::timeout(context.tcp_idle_timeout, frames.next()) => next,
        };
        let frame = match next {
            Err(_idle) if pipeline.available_permits() == context.tcp_pipeline_limit => {
                context.metrics.server.tcp_idle_closed.inc();
                break;
            }
            Err(_idle) => continue,
            Ok(None | Some(Err(_))) => break,
            Ok(Some(Ok(frame))) => frame,
        };
        context.metrics.server.tcp_queries.inc();
        let permits = tokio::select! {
            _ = closing.cancelled() => break,
            permits = acquire(&pipeline, &context.queries) => permits,
        };
        let Some((pipelined, query)) = permits else {
            break;
        };
        let task = Task {
            context: Arc::clone(context),
            replies: replies.clone(),
            _pipelined: pipelined,
        };
        tracker.spawn(task.run(frame.freeze(), query));
    }
}

/// A slot in this connection's pipeline, then one of the global query slots.
async fn acquire(
    pipeline: &Arc<Semaphore>,
    queries: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let pipelined = Arc::clone(pipeline).acquire_owned().await.ok()?;
    let query = Arc::clone(queries).acquire_owned().await.ok()?;
    Some((pipelined, query))
}

/// One query read from a connection, answered in its own task.
struct Task {
    context: Arc<Context>,
    replies: mpsc::Sender<Vec<u8>>,
    /// Held until the answer is queued for the writer.
    _pipelined: OwnedSemaphorePermit,
}

impl Task {
    /// Answers `packet`. The global query slot goes back as soon as the
    /// answer is built: a client slow to read its answers holds only its
    /// own pipeline slots, never other clients' capacity.
    async fn run(self, packet: impl AsRef<[u8]>, query: OwnedSemaphorePermit) {
        let mut reply = Vec::new();
        let len = self
            .context
            .resolver
            .reply(packet.as_ref(), Transport::Tcp, &mut reply)
            .await;
        drop(query);
        if let Some(len) = len
            && let (Ok(prefix), Some(reply)) = (u16::try_from(len), reply.get(..len))
        {
            let mut frame = Vec::with_capacity(2 + len);
            frame.extend_from_slice(&prefix.to_be_bytes());
            frame.extend_from_slice(reply);
            let _ = self.replies.send(frame).await;
        }
    }
}

/// Writes answers as they come; ends when every sender is gone, or closes
/// the connection when the client does not take an answer within the idle
/// timeout.
async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
    closing: &CancellationToken,
) {
    while let Some(reply) = queue.recv().await {
        let written = tokio::time::timeout(write_timeout, writer.write_all(&reply)).await;
        if !matches!(written, Ok(Ok(()))) {
            closing.cancel();
            return;
        }
    }
    let _ = writer.shutdown().await;
}
