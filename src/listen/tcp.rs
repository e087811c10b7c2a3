//! The TCP front end (RFC 7766): a capped number of client connections,
//! each read as a stream of length-prefixed queries that are answered
//! concurrently and written back in whatever order they finish.

use std::{sync::Arc, time::Duration};

use futures_util::{FutureExt, StreamExt};
use tokio::{
    io::AsyncWriteExt,
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_util::{
    bytes::BytesMut,
    codec::{FramedRead, LengthDelimitedCodec},
    sync::CancellationToken,
    task::TaskTracker,
};
use tracing::{debug, info};

use super::Context;
use crate::{
    resolver::Unserved,
    wire::{MAX_MESSAGE_LEN, Transport},
};

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
/// once; past that, reading pauses, which pushes back on the client. At
/// shutdown, every query the client had already sent is answered (from
/// the cache, or SERVFAIL) before the connection closes.
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
    let mut unanswered = None;
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
        let pipelined = tokio::select! {
            _ = closing.cancelled() => {
                unanswered = Some(frame);
                break;
            }
            pipelined = Arc::clone(&pipeline).acquire_owned() => pipelined,
        };
        let Ok(pipelined) = pipelined else {
            break;
        };
        let task = Task {
            context: Arc::clone(context),
            replies: replies.clone(),
            _pipelined: pipelined,
        };
        // At the global bound, an answer at once rather than a wait.
        let query = Arc::clone(&context.queries).try_acquire_owned().ok();
        tracker.spawn(task.run(frame.freeze(), query));
    }
    if context.shutdown.is_cancelled() {
        answer_sent_before_shutdown(&mut frames, unanswered, context, &replies).await;
    }
}

/// Answers, without asking upstream, the query that was waiting for a
/// pipeline slot and every query already received from the client: it
/// sent them before the shutdown signal, and gets an answer for each
/// rather than a reset.
async fn answer_sent_before_shutdown(
    frames: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    unanswered: Option<BytesMut>,
    context: &Context,
    replies: &mpsc::Sender<Vec<u8>>,
) {
    let mut next = unanswered;
    loop {
        let Some(frame) = next.take().or_else(|| match frames.next().now_or_never() {
            Some(Some(Ok(frame))) => Some(frame),
            _ => None,
        }) else {
            return;
        };
        let mut reply = Vec::new();
        let resolver = &context.resolver;
        let shutting_down = Unserved::ShuttingDown;
        let len =
            resolver.answer_now_or_servfail(&frame, Transport::Tcp, shutting_down, &mut reply);
        if let Some(framed) = len.and_then(|len| framed(&reply, len))
            && replies.send(framed).await.is_err()
        {
            return;
        }
    }
}

/// One query read from a connection, answered in its own task.
struct Task {
    context: Arc<Context>,
    replies: mpsc::Sender<Vec<u8>>,
    /// Held until the answer is queued for the writer.
    _pipelined: OwnedSemaphorePermit,
}

impl Task {
    /// Answers `packet`, holding `query`, one of the global query slots;
    /// without one (all taken), answers what needs no upstream and
    /// SERVFAIL for the rest. The slot goes back as soon as the answer is
    /// built: a client slow to read its answers holds only its own
    /// pipeline slots, never other clients' capacity.
    async fn run(self, packet: impl AsRef<[u8]>, query: Option<OwnedSemaphorePermit>) {
        let mut reply = Vec::new();
        let (resolver, packet) = (&self.context.resolver, packet.as_ref());
        let len = match &query {
            Some(_) => resolver.reply(packet, Transport::Tcp, &mut reply).await,
            None => {
                let overloaded = Unserved::Overloaded;
                resolver.answer_now_or_servfail(packet, Transport::Tcp, overloaded, &mut reply)
            }
        };
        drop(query);
        if let Some(frame) = len.and_then(|len| framed(&reply, len)) {
            let _ = self.replies.send(frame).await;
        }
    }
}

/// The first `len` octets of `reply` behind their 2-octet length.
fn framed(reply: &[u8], len: usize) -> Option<Vec<u8>> {
    let prefix = u16::try_from(len).ok()?;
    let reply = reply.get(..len)?;
    let mut frame = Vec::with_capacity(2 + len);
    frame.extend_from_slice(&prefix.to_be_bytes());
    frame.extend_from_slice(reply);
    Some(frame)
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
