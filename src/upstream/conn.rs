//! One TLS connection to an upstream, with queries pipelined over it and
//! answers matched back by message ID in whatever order they come
//! (RFC 7766 §6.2.1.1, §7).
//!
//! A connection is a spawned task that owns the stream, and a [`Conn`]
//! handle the pool keeps. Submitting a query takes the state lock briefly
//! to pick a random ID unique among the queries in flight, then hands the
//! framed query to the task's writer. The reader delivers each answer to
//! the waiting [`InFlight`] through a oneshot channel.
//
// IDs of queries whose waiter gave up (timeout) stay reserved until their
// answer comes or the connection closes: reusing one early could hand a
// late answer to the wrong question. Any frame whose ID is not reserved is
// a protocol error and closes the connection, so its queries are retried.
//
// A connection that goes silent (lost NAT state, a new WAN address, a
// suspended laptop: the TCP connection looks open and nothing comes back)
// is condemned: when a query's time runs out and no complete message has
// arrived since it was written, the connection takes no new queries, its
// other queries are handed back at once (`Closed`, so the pool re-sends
// them elsewhere) and it closes. The connection task watches this itself,
// against the earliest expiry of the queries written since the last
// message, so it holds whether or not the query's waiter still waits (a
// hedge may have answered it from another upstream).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::{Notify, OwnedSemaphorePermit, mpsc, oneshot},
};
use tokio_util::{
    codec::{FramedRead, LengthDelimitedCodec},
    sync::CancellationToken,
};
use tracing::{Instrument, debug, debug_span, trace};

use super::{UpstreamError, connector::Connector, limit::PaddingLimit};
use crate::{
    metrics::UpstreamCounters,
    padding::PaddingPolicy,
    wire::{self, Answer, Header, UpstreamEdns, UpstreamQuestion},
};

/// Largest batch of queued queries written with one call.
const MAX_WRITE_BATCH: usize = 16 * 1024;

/// The least time a connection is given to show it is alive once a
/// query is written on it: about three round trips of a slow path.
const MIN_SILENCE: Duration = Duration::from_millis(300);

/// What a connection needs to know, shared by all connections of an upstream.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// Close after this long with no query waiting.
    pub idle_timeout: Duration,
    /// Give up a TCP connect plus TLS handshake after this long.
    pub handshake_timeout: Duration,
    /// Padding of every query: the upstream's own policy, or `[padding]`'s.
    pub padding: PaddingPolicy,
    /// The upstream's advertised size, shared by its connections.
    pub limit: Arc<PaddingLimit>,
    /// Queries in flight on one connection (`max_queries_per_connection`).
    pub max_queries: usize,
}

/// An answer from an upstream.
#[derive(Debug)]
pub struct Reply {
    /// The answer, ready to be written for clients.
    pub answer: Answer,
    /// Whether the upstream padded it (RFC 7830, RFC 8467 §4.1).
    pub padded: bool,
    /// Its size on the wire, TCP length prefix excluded.
    pub len: usize,
    /// From writing the query to reading the answer; includes the
    /// handshake for a connection's first query.
    pub rtt: Duration,
}

/// The pool's handle on one connection.
#[derive(Debug)]
pub(super) struct Conn {
    shared: Arc<Shared>,
    frames: mpsc::UnboundedSender<Vec<u8>>,
    /// Ends the connection task: its own token, a child of the pool's.
    retire: CancellationToken,
}

#[derive(Debug)]
struct Shared {
    /// A std mutex: held only to insert or remove an entry, never across `.await`.
    state: Mutex<State>,
    counters: Arc<UpstreamCounters>,
    padding: PaddingPolicy,
    limit: Arc<PaddingLimit>,
    /// Queries given up on, still unanswered, that make the connection stop
    /// taking new ones: an upstream that drops queries silently gets a
    /// fresh connection instead of a growing pile of reserved IDs.
    max_abandoned: usize,
    /// Wakes the reader when a query brings the silence deadline forward.
    rearm: Notify,
}

#[derive(Debug)]
struct State {
    /// False once the connection closes or stops taking queries.
    open: bool,
    /// The first query on a connection carries edns-tcp-keepalive.
    sent_any: bool,
    pending: HashMap<u16, Pending>,
    /// Entries of `pending` whose waiter still waits.
    live: usize,
    /// Answers delivered on this connection.
    answered: u64,
    /// Tells entries apart when an ID is reused.
    next_serial: u64,
    /// The earliest expiry among the queries written since the last
    /// complete message arrived: passed with nothing read, the connection
    /// is condemned. `None` while every query written has seen a message
    /// arrive after it.
    silence_deadline: Option<Instant>,
    /// When the last complete message arrived.
    last_message_at: Option<Instant>,
    /// Set when it closed for silence.
    condemned: bool,
    /// Whether the upstream owes a failure for this connection's silence
    /// (it never answered), and whether it was counted.
    blame: Blame,
    /// Whether the handshake is done: until then nothing is written, and
    /// no silence is counted.
    connected: bool,
}

/// A connection that never answered is the upstream's failure, counted
/// once: by the waiter whose query timed out, or else by the pool when it
/// next finds the connection condemned (a hedge had answered the query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    /// Nothing to count (yet).
    None,
    /// Condemned without ever answering, not yet counted.
    Owed,
    /// Counted.
    Counted,
}

#[derive(Debug)]
struct Pending {
    serial: u64,
    /// The question as asked: the answer must repeat it.
    question: Box<[u8]>,
    /// `None` once the waiter has given up.
    reply: Option<oneshot::Sender<Result<Reply, UpstreamError>>>,
    /// When it was written (queued, until the handshake is done).
    sent_at: Instant,
    /// When its waiter's time runs out.
    expires: Instant,
}

impl Conn {
    /// Starts a connection task; queries may be submitted at once and are
    /// written when the handshake has succeeded.
    pub(super) fn open(
        connector: Arc<Connector>,
        settings: Settings,
        counters: Arc<UpstreamCounters>,
        shutdown: CancellationToken,
    ) -> Self {
        let state = State {
            open: true,
            sent_any: false,
            pending: HashMap::new(),
            live: 0,
            answered: 0,
            next_serial: 0,
            silence_deadline: None,
            last_message_at: None,
            condemned: false,
            blame: Blame::None,
            connected: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            counters,
            padding: settings.padding,
            limit: Arc::clone(&settings.limit),
            max_abandoned: settings.max_queries,
            rearm: Notify::new(),
        });
        // Unbounded, yet bounded: every frame queued belongs to a query
        // holding one of the upstream's in-flight permits.
        let (frames, queue) = mpsc::unbounded_channel();
        let span = debug_span!("upstream_connection", upstream = %connector.label);
        let task = run(
            connector,
            settings,
            Arc::clone(&shared),
            queue,
            shutdown.clone(),
        );
        tokio::spawn(task.instrument(span));
        Self {
            shared,
            frames,
            retire: shutdown,
        }
    }

    /// Closes it now: its queries in flight get `Closed` (or `ClosedEarly`)
    /// and are re-sent by the pool on a fresh connection.
    pub(super) fn retire(&self) {
        self.retire.cancel();
    }

    /// Whether it still takes queries.
    pub(super) fn is_open(&self) -> bool {
        self.shared.lock().open
    }

    /// Whether it was condemned for silence without ever answering, and
    /// nobody has blamed the upstream for it yet: the upstream's fault,
    /// not the path's. (One that went silent after answering is what a
    /// lost NAT entry or a new address leaves behind; a fresh connection
    /// is the cure, and the upstream is not blamed.) True once at most.
    pub(super) fn take_blame(&self) -> bool {
        let mut state = self.shared.lock();
        let owed = state.blame == Blame::Owed;
        if owed {
            state.blame = Blame::Counted;
        }
        owed
    }

    /// Queries written or queued and not yet answered or abandoned.
    pub(super) fn load(&self) -> usize {
        self.shared.lock().live
    }

    /// Sends `question`, whose answer is due by `expires`. `permit`, one of
    /// the upstream's in-flight slots, stays with the returned [`InFlight`]
    /// until it has its answer or gives up.
    pub(super) fn send(
        &self,
        question: &UpstreamQuestion<'_>,
        expires: Instant,
        permit: OwnedSemaphorePermit,
    ) -> Result<InFlight, UpstreamError> {
        let (tx, rx) = oneshot::channel();
        let (id, serial) = self.shared.submit(question, expires, tx, &self.frames)?;
        Ok(InFlight {
            rx,
            id,
            serial,
            shared: Arc::clone(&self.shared),
            done: false,
            _permit: permit,
        })
    }
}

/// Frames the upstream query: 2-octet length, then the message, padded by
/// `padding` (randomness from the OS) to at most `limit` octets.
pub(super) fn encode(
    question: &UpstreamQuestion<'_>,
    id: u16,
    keepalive: bool,
    padding: &PaddingPolicy,
    limit: usize,
) -> Vec<u8> {
    // Header, question, OPT (11), keepalive and padding option headers (8),
    // then at most the policy's largest padding, which never passes `limit`.
    let padding_room = padding.max_padding().min(limit);
    let capacity = wire::HEADER_LEN + question.question.as_bytes().len() + 19 + padding_room;
    let mut frame = vec![0u8; 2 + capacity];
    let len = wire::write_upstream_query(
        question,
        id,
        keepalive,
        |len| padding.padding_from_os(len, limit),
        &mut frame[2..],
    )
    .expect("the frame is sized for the largest query the policy can make");
    let prefix =
        u16::try_from(len).expect("padding blocks are at most 16 KiB, so a query fits 16 bits");
    frame[..2].copy_from_slice(&prefix.to_be_bytes());
    frame.truncate(2 + len);
    frame
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only plain data behind.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Picks a fresh random ID, records the query under it and queues its
    /// frame, all under the lock: frames are queued in the order IDs are
    /// given, so the first frame written carries edns-tcp-keepalive.
    fn submit(
        &self,
        question: &UpstreamQuestion<'_>,
        expires: Instant,
        reply: oneshot::Sender<Result<Reply, UpstreamError>>,
        frames: &mpsc::UnboundedSender<Vec<u8>>,
    ) -> Result<(u16, u64), UpstreamError> {
        let mut state = self.lock();
        if !state.open {
            return Err(UpstreamError::Closed);
        }
        // At most 2 × max_queries IDs are ever taken (live plus abandoned),
        // far below 65,536, so this ends quickly.
        let id = loop {
            let id = rand::random::<u16>();
            if !state.pending.contains_key(&id) {
                break id;
            }
        };
        let limit = self.limit.get();
        let frame = encode(question, id, !state.sent_any, &self.padding, limit);
        frames.send(frame).map_err(|_| UpstreamError::Closed)?;
        state.sent_any = true;
        state.next_serial += 1;
        let serial = state.next_serial;
        let pending = Pending {
            serial,
            question: question.question.as_bytes().into(),
            reply: Some(reply),
            sent_at: Instant::now(),
            expires,
        };
        state.pending.insert(id, pending);
        state.live += 1;
        // The reader is woken only when its deadline moves closer.
        if state.connected && state.arm_silence(expires, Instant::now()) {
            self.rearm.notify_one();
        }
        Ok((id, serial))
    }

    /// Hands an answer frame to its waiter. Returns the server's
    /// keepalive timeout, or an error when the frame answers nothing sent.
    fn deliver(&self, frame: &[u8]) -> Result<UpstreamEdns, UpstreamError> {
        let id = Header::parse(frame)
            .map_err(|_| UpstreamError::Protocol)?
            .id();
        let pending = {
            let mut state = self.lock();
            let pending = state.pending.remove(&id).ok_or(UpstreamError::Protocol)?;
            // A message came: every query written so far has heard from
            // the upstream since.
            state.silence_deadline = None;
            state.last_message_at = Some(Instant::now());
            if pending.reply.is_some() {
                state.live -= 1;
            }
            state.answered += 1;
            pending
        };
        let question =
            wire::Question::parse(&pending.question, 0).map_err(|_| UpstreamError::Protocol)?;
        let result = Answer::from_upstream(frame, &question);
        let counters = &self.counters;
        let Some(reply) = pending.reply else {
            return result
                .map(|(_, edns)| edns)
                .map_err(|_| UpstreamError::Protocol);
        };
        match result {
            Ok((answer, edns)) => {
                counters.answers.inc();
                if edns.padded {
                    counters.record_padded_answer(frame.len());
                }
                let rtt = pending.sent_at.elapsed();
                let _ = reply.send(Ok(Reply {
                    answer,
                    padded: edns.padded,
                    len: frame.len(),
                    rtt,
                }));
                Ok(edns)
            }
            Err(_) => {
                let _ = reply.send(Err(UpstreamError::Protocol));
                Err(UpstreamError::Protocol)
            }
        }
    }

    /// Stops taking queries, for a server that asked to close (RFC 7828
    /// §3.3.2); the answers still in flight are read first.
    fn stop_taking_queries(&self) {
        self.lock().open = false;
    }

    /// When the connection is condemned unless a message comes first.
    fn silence_deadline(&self) -> Option<Instant> {
        self.lock().silence_deadline
    }

    /// The handshake is done at `now`: the queries queued meanwhile are
    /// written from now on, and their silence counts from now.
    fn connected(&self, now: Instant) {
        let mut state = self.lock();
        state.connected = true;
        let mut earliest = None::<Instant>;
        for pending in state.pending.values_mut() {
            pending.sent_at = pending.sent_at.max(now);
            earliest = Some(earliest.map_or(pending.expires, |e| e.min(pending.expires)));
        }
        if let Some(expires) = earliest {
            state.arm_silence(expires, now);
        }
    }

    /// Whether it takes no queries and none is waiting.
    fn is_drained(&self) -> bool {
        let state = self.lock();
        !state.open && state.live == 0
    }

    /// Stops taking queries when none is waiting; true when it did.
    fn close_if_idle(&self) -> bool {
        let mut state = self.lock();
        if state.live == 0 {
            state.open = false;
        }
        !state.open
    }

    /// Closes for good: every waiter gets `error`, or `Closed` when the
    /// connection was condemned for silence (the queries are not at fault,
    /// and go elsewhere), or `ClosedEarly` when it closed without ever
    /// answering.
    fn close(&self, error: &UpstreamError) {
        let (drained, error): (Vec<Pending>, UpstreamError) = {
            let mut state = self.lock();
            state.open = false;
            state.live = 0;
            if matches!(error, UpstreamError::Silent) {
                state.condemned = true;
                if state.answered == 0 && state.blame == Blame::None {
                    state.blame = Blame::Owed;
                }
            }
            let error = match error {
                UpstreamError::Closed | UpstreamError::Silent if state.answered == 0 => {
                    UpstreamError::ClosedEarly
                }
                UpstreamError::Silent => UpstreamError::Closed,
                other => other.clone(),
            };
            (
                state.pending.drain().map(|(_, pending)| pending).collect(),
                error,
            )
        };
        for pending in drained {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

impl State {
    /// Brings the silence deadline forward to `expires`, a query's expiry,
    /// but never closer than [`MIN_SILENCE`] after `now`: a query written
    /// with almost no time left says nothing of the connection. True when
    /// the deadline moved.
    fn arm_silence(&mut self, expires: Instant, now: Instant) -> bool {
        let expires = expires.max(now + MIN_SILENCE);
        let closer = self
            .silence_deadline
            .is_none_or(|deadline| expires < deadline);
        if closer {
            self.silence_deadline = Some(expires);
        }
        closer
    }
}

//---- InFlight ----

/// A query written (or queued) on a connection, waiting for its answer.
/// Dropping it gives up: the in-flight slot is returned at once, and the ID
/// stays reserved until the answer comes or the connection closes.
#[derive(Debug)]
pub(super) struct InFlight {
    rx: oneshot::Receiver<Result<Reply, UpstreamError>>,
    id: u16,
    serial: u64,
    shared: Arc<Shared>,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    /// Waits for the answer.
    pub(super) async fn reply(&mut self) -> Result<Reply, UpstreamError> {
        let result = (&mut self.rx).await;
        self.done = true;
        result.unwrap_or(Err(UpstreamError::Closed))
    }

    /// What its running out of time means: [`UpstreamError::Silent`] when
    /// the connection had answered before and nothing at all came after
    /// this query was written (the connection died; it is condemned, and
    /// the upstream not blamed), otherwise [`UpstreamError::Timeout`].
    pub(super) fn timed_out(&self) -> UpstreamError {
        let mut state = self.shared.lock();
        let sent_at = match state.pending.get(&self.id) {
            Some(pending) if pending.serial == self.serial => pending.sent_at,
            // Condemned as this query's time ran out: its entry went with it.
            _ if state.condemned && state.answered > 0 => return UpstreamError::Silent,
            _ => {
                state.blame = Blame::Counted;
                return UpstreamError::Timeout;
            }
        };
        let heard_since = state.last_message_at.is_some_and(|at| at >= sent_at);
        if state.answered > 0 && !heard_since {
            UpstreamError::Silent
        } else {
            // The caller blames the upstream for it: the connection must
            // not be counted again when it is condemned.
            if state.answered == 0 {
                state.blame = Blame::Counted;
            }
            UpstreamError::Timeout
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.shared.lock();
        let abandoned = match state.pending.get_mut(&self.id) {
            Some(pending) if pending.serial == self.serial => pending.reply.take().is_some(),
            _ => false,
        };
        if abandoned {
            state.live -= 1;
            if state.pending.len() - state.live >= self.shared.max_abandoned {
                state.open = false;
            }
        }
    }
}

//---- The connection task ----

async fn run(
    connector: Arc<Connector>,
    settings: Settings,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedReceiver<Vec<u8>>,
    shutdown: CancellationToken,
) {
    let counters = &shared.counters;
    let connected = tokio::select! {
        _ = shutdown.cancelled() => Err(UpstreamError::Closed),
        result = tokio::time::timeout(settings.handshake_timeout, connector.connect()) => {
            result.unwrap_or(Err(UpstreamError::Timeout))
        }
    };
    let stream = match connected {
        Ok((stream, resumed)) => {
            shared.connected(Instant::now());
            shared.rearm.notify_one();
            counters.connections.inc();
            if resumed {
                counters.resumed.inc();
            }
            stream
        }
        Err(error) => {
            match &error {
                UpstreamError::Connect(_) => counters.connect_failures.inc(),
                UpstreamError::Tls(_) => counters.tls_failures.inc(),
                _ => {}
            }
            shared.close(&error);
            return;
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    let error = tokio::select! {
        _ = shutdown.cancelled() => UpstreamError::Closed,
        () = write_queued(writer, queue, counters) => UpstreamError::Closed,
        error = read_answers(reader, &shared, settings.idle_timeout) => error,
    };
    if matches!(error, UpstreamError::Protocol) {
        counters.protocol_errors.inc();
    }
    debug!(error = %error, "upstream connection closed");
    shared.close(&error);
}

/// Writes queued queries, as many per call as have queued up. Returns
/// when a write fails; when the pool drops the handle it keeps waiting so
/// answers still in flight are read.
async fn write_queued(
    mut writer: impl AsyncWrite + Unpin,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    counters: &UpstreamCounters,
) {
    let mut batch = Vec::new();
    while let Some(frame) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        // One turn of the runtime lets the queries of the same batch of
        // datagrams queue behind this one: one TLS record, one write.
        tokio::task::yield_now().await;
        let mut frames = 1;
        while batch.len() < MAX_WRITE_BATCH {
            match queue.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
            frames += 1;
        }
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        counters.queries.add(frames);
    }
    std::future::pending::<()>().await;
}

/// Reads answers until the connection ends, and says why it ended.
async fn read_answers(
    reader: impl tokio::io::AsyncRead + Unpin,
    shared: &Shared,
    configured_idle: Duration,
) -> UpstreamError {
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(wire::MAX_MESSAGE_LEN)
        .new_codec();
    let mut frames = FramedRead::new(reader, codec);
    let mut idle = configured_idle;
    let mut idle_at = Instant::now() + idle;
    loop {
        let silence = shared.silence_deadline();
        let wake = silence.map_or(idle_at, |deadline| deadline.min(idle_at));
        // Biased: an answer already read must win over a silence timer
        // that fired late, or a working connection would be condemned.
        let frame = tokio::select! {
            biased;
            next = frames.next() => match next {
                Some(Ok(frame)) => frame,
                None | Some(Err(_)) => return UpstreamError::Closed,
            },
            () = shared.rearm.notified() => continue,
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if silence.is_some_and(|deadline| deadline <= now) {
                    shared.counters.condemned.inc();
                    return UpstreamError::Silent;
                }
                if idle_at <= now {
                    if shared.close_if_idle() {
                        return UpstreamError::Closed;
                    }
                    idle_at = now + idle;
                }
                continue;
            }
        };
        let edns = match shared.deliver(&frame) {
            Ok(edns) => edns,
            Err(error) => return error,
        };
        shared.limit.learn(edns.udp_size);
        match edns.keepalive {
            // RFC 7828 §3.3.2: 0 asks the client to close once its answers are in.
            Some(0) => shared.stop_taking_queries(),
            // Otherwise the server's timeout, in units of 100 ms, wins when shorter.
            Some(timeout) => {
                idle = configured_idle.min(Duration::from_millis(u64::from(timeout) * 100));
                trace!(
                    timeout_ms = idle.as_millis(),
                    "upstream announced keepalive"
                );
            }
            None => {}
        }
        idle_at = Instant::now() + idle;
        if shared.is_drained() {
            return UpstreamError::Closed;
        }
    }
}
