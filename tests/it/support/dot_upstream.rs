//! An in-process DNS-over-TLS upstream (RFC 7858) on loopback: TLS over TCP,
//! each DNS message framed by a 2-octet length (RFC 1035 §4.2.2, RFC 7766).
//! It records everything it reads and misbehaves on cue (`Script`), so tests
//! can assert on what dotstub sent and how it copes with a bad upstream.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use rustls::ServerConfig;
use rustls::server::ServerConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::certs::ServerIdentity;
use super::fixtures;

/// How the upstream treats the queries it reads. Read afresh for every query,
/// so `DotUpstream::set_script` applies from the next query on.
#[derive(Clone, Debug, Default)]
pub enum Script {
    /// Answer every query from `fixtures::answer`, immediately.
    #[default]
    Answer,
    /// Answer each query after this delay (each independently).
    Delay(Duration),
    /// Delay answers whose qname (case-insensitive) equals the string; others
    /// are immediate, so answers come back out of order.
    DelayByName(Vec<(String, Duration)>),
    /// Per connection: hold queries until `batch` have arrived, then answer
    /// that batch in reverse order of arrival.
    Reorder {
        /// Queries per batch.
        batch: usize,
    },
    /// Read and record queries, never answer (the connection stays open).
    Stall,
    /// Per connection: answer the first `answers` queries; the next query makes
    /// the upstream close cleanly (TLS close_notify, TCP FIN) without answering.
    CloseAfter {
        /// Queries answered before the close.
        answers: usize,
    },
    /// Per connection: answer `answers` queries; for the next one write the
    /// length prefix and the first half of the answer, then reset the TCP connection.
    ResetMidAnswer {
        /// Queries answered in full before the reset.
        answers: usize,
    },
    /// Answer every query with a length-prefixed frame of random bytes, shorter
    /// than a DNS header so it can never be taken for a message.
    Garbage,
    /// Per connection: answer `answers` queries; before every later answer
    /// write two stray octets, so the stream falls out of step: what follows
    /// reads as a 4,096-octet frame that never completes, though the
    /// answers themselves are honest.
    OutOfStep {
        /// Queries answered in step.
        answers: usize,
    },
    /// Answer correctly except that the ID is `id ^ 0x5a5a`.
    WrongId,
    /// Accept TCP, then close it at once without a TLS handshake.
    RefuseTls,
    /// Answer each query with what the function returns, immediately
    /// (`signed::Hierarchy::script`, say); when it returns `None`, read and
    /// record the query and never answer it, as `Stall` does.
    Respond(Responder),
    /// As `Respond`, except that answers to the listed questions (qname
    /// case-insensitive, qtype) are sent after their delay, each
    /// independently.
    RespondLate(Responder, Vec<(String, RecordType, Duration)>),
}

/// A function that answers a query, or leaves it unanswered (`None`), for
/// [`Script::Respond`].
#[derive(Clone)]
pub struct Responder(pub Arc<RespondFn>);

/// What a [`Responder`] calls for each query.
pub type RespondFn = dyn Fn(&Message) -> Option<Message> + Send + Sync;

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Responder(..)")
    }
}

/// How the upstream pads its responses (RFC 7830, RFC 8467 §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponsePadding {
    /// As `fixtures::encode_response`: to a multiple of 468 when the query
    /// was padded.
    #[default]
    Fixture,
    /// Never.
    Off,
    /// To a multiple of this many octets when the query was padded.
    Block(usize),
}

/// One DNS message the upstream read.
#[derive(Clone, Debug)]
pub struct ReceivedQuery {
    /// 0-based index of the connection it arrived on, in handshake order.
    pub connection: usize,
    /// The message exactly as received, without the 2-octet length.
    pub bytes: Vec<u8>,
    /// The parsed message, when it parses.
    pub message: Option<Message>,
}

/// A running DoT upstream on `127.0.0.1`; dropping it aborts its tasks, which
/// closes the listener and every connection.
pub struct DotUpstream {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    acceptor_task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    script: Script,
    keepalive: Option<Duration>,
    /// The OPT record of responses, beyond the fixture's.
    answer_opt: AnswerOpt,
    received: Vec<ReceivedQuery>,
    connections: usize,
    open: usize,
    peak_open: usize,
    resumed: usize,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide its own failure
    // behind a poisoning panic in the server tasks.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DotUpstream {
    /// Binds `127.0.0.1:0` and serves DoT with `identity` (TLS 1.2 and 1.3;
    /// ALPN "dot" offered, not required), following `script`.
    pub async fn start(identity: ServerIdentity, script: Script) -> DotUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback listener");
        Self::serve(listener, identity, script)
    }

    /// Serves DoT on `listener`, already bound (in a network namespace of
    /// a test's own, say), as [`DotUpstream::start`] does.
    pub fn serve(listener: TcpListener, identity: ServerIdentity, script: Script) -> DotUpstream {
        let addr = listener.local_addr().expect("listener address");
        let state = Arc::new(Mutex::new(State {
            script,
            ..State::default()
        }));
        let acceptor = TlsAcceptor::from(Arc::new(server_config(identity)));
        let acceptor_task = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
        DotUpstream {
            addr,
            state,
            acceptor_task,
        }
    }

    /// The address to point dotstub at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the script for queries read after this call.
    pub fn set_script(&self, script: Script) {
        lock(&self.state).script = script;
    }

    /// When `Some`, every response that has an OPT record carries
    /// edns-tcp-keepalive (RFC 7828) with this timeout, in units of 100 ms.
    pub fn set_keepalive(&self, timeout: Option<Duration>) {
        lock(&self.state).keepalive = timeout;
    }

    /// When `Some`, responses advertise this UDP payload size instead of
    /// `fixtures::EDNS_PAYLOAD`.
    pub fn set_udp_size(&self, size: Option<u16>) {
        lock(&self.state).answer_opt.udp_size = size;
    }

    /// How responses to later queries are padded.
    pub fn set_response_padding(&self, padding: ResponsePadding) {
        lock(&self.state).answer_opt.padding = padding;
    }

    /// Every query message read so far, in arrival order.
    pub fn received(&self) -> Vec<ReceivedQuery> {
        lock(&self.state).received.clone()
    }

    /// TLS connections whose handshake completed, since start.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        lock(&self.state).open
    }

    /// Highest number of connections open at the same time.
    pub fn peak_open_connections(&self) -> usize {
        lock(&self.state).peak_open
    }

    /// Handshakes that resumed an earlier TLS session.
    pub fn handshakes_resumed(&self) -> usize {
        lock(&self.state).resumed
    }
}

impl Drop for DotUpstream {
    fn drop(&mut self) {
        // The accept task owns the listener and the JoinSet of connection tasks,
        // so aborting it tears everything down.
        self.acceptor_task.abort();
    }
}

fn server_config(identity: ServerIdentity) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .expect("rig identity is a valid chain and key");
    config.alpn_protocols = vec![b"dot".to_vec()];
    config
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, state: Shared) {
    let mut connections = JoinSet::new();
    while let Ok((tcp, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(serve(tcp, acceptor.clone(), state.clone()));
    }
}

/// Counts a connection as open for as long as it lives, including when aborted.
struct OpenGuard(Shared);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        lock(&self.0).open -= 1;
    }
}

fn register(state: &Shared, tls: &ServerConnection) -> (usize, OpenGuard) {
    let mut guard = lock(state);
    let index = guard.connections;
    guard.connections += 1;
    guard.open += 1;
    guard.peak_open = guard.peak_open.max(guard.open);
    if tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        guard.resumed += 1;
    }
    (index, OpenGuard(state.clone()))
}

/// What a connection's single writer is asked to do next.
enum Out {
    Frame(Vec<u8>),
    Close,
    ResetMidFrame(Vec<u8>),
    /// Two stray octets, then the frame.
    AfterStrayOctets(Vec<u8>),
}

/// How a connection's writer finished.
enum Ending {
    /// Every sender is gone (client EOF, nothing left in flight) or a write failed.
    Done,
    /// close_notify and FIN were sent.
    Closed,
    /// Half an answer was sent; the socket must be reset.
    Reset,
}

type Reader = ReadHalf<TlsStream<TcpStream>>;
type Writer = WriteHalf<TlsStream<TcpStream>>;

async fn serve(tcp: TcpStream, acceptor: TlsAcceptor, state: Shared) {
    if matches!(lock(&state).script, Script::RefuseTls) {
        return;
    }
    // Without this, Nagle holds small answers back until the client's delayed
    // ACK, which adds latency and lets a reset discard a partial answer unsent.
    let _ = tcp.set_nodelay(true);
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let (index, _open) = register(&state, tls.get_ref().1);
    let (mut reader, writer) = tokio::io::split(tls);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut writer_task = JoinSet::new();
    writer_task.spawn(write_loop(writer, rx));
    let mut conn = Connection {
        index,
        state,
        tx: Some(tx),
        handled: 0,
        held: Vec::new(),
        delayed: JoinSet::new(),
    };
    let ended = tokio::select! {
        () = conn.read_queries(&mut reader) => {
            // The client stopped sending: answers in flight are still delivered,
            // and the writer ends once the last sender is dropped.
            conn.tx = None;
            writer_task.join_next().await
        }
        ended = writer_task.join_next() => ended,
    };
    match ended {
        Some(Ok((writer, Ending::Reset))) => {
            let _ = reader.unsplit(writer).get_ref().0.set_zero_linger();
        }
        Some(Ok((_, Ending::Closed))) => drain(&mut reader).await,
        _ => {}
    }
}

async fn write_loop(mut writer: Writer, mut rx: mpsc::UnboundedReceiver<Out>) -> (Writer, Ending) {
    while let Some(out) = rx.recv().await {
        let ending = match out {
            Out::Frame(bytes) => match write_frame(&mut writer, &bytes, bytes.len()).await {
                Ok(()) => continue,
                Err(_) => Ending::Done,
            },
            Out::AfterStrayOctets(bytes) => {
                let stray = writer.write_all(&STRAY_OCTETS).await;
                match stray.is_ok() && write_frame(&mut writer, &bytes, bytes.len()).await.is_ok() {
                    true => continue,
                    false => Ending::Done,
                }
            }
            Out::Close => {
                let _ = writer.shutdown().await;
                Ending::Closed
            }
            Out::ResetMidFrame(bytes) => {
                let _ = write_frame(&mut writer, &bytes, bytes.len() / 2).await;
                // Give the partial answer time to leave: an abortive close
                // discards whatever is still in our send buffer.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ending::Reset
            }
        };
        return (writer, ending);
    }
    (writer, Ending::Done)
}

/// What `Script::OutOfStep` writes before an answer: read as a length
/// prefix, 4,096 octets, far more than the answers that follow.
const STRAY_OCTETS: [u8; 2] = [0x10, 0x00];

/// Writes the length prefix of `message` and its first `send` octets.
async fn write_frame(writer: &mut Writer, message: &[u8], send: usize) -> io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut wire = len.to_be_bytes().to_vec();
    wire.extend_from_slice(&message[..send]);
    writer.write_all(&wire).await?;
    writer.flush().await
}

// Closing a socket with unread input makes the kernel send RST instead of the
// clean FIN that CloseAfter promises, so read and discard until the client
// closes too (bounded, in case it never does).
async fn drain(reader: &mut Reader) {
    let mut sink = [0; 4096];
    let until_eof = async { while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), until_eof).await;
}

/// Per-connection state of the script: what was answered, held or scheduled.
struct Connection {
    index: usize,
    state: Shared,
    /// Taken away when the client stops sending, so the writer can finish.
    tx: Option<mpsc::UnboundedSender<Out>>,
    /// Queries seen by CloseAfter / ResetMidAnswer, which count per connection.
    handled: usize,
    /// Frames held back by `Reorder`.
    held: Vec<Vec<u8>>,
    /// Answers waiting on a timer; dropped (aborted) with the connection.
    delayed: JoinSet<()>,
}

impl Connection {
    async fn read_queries(&mut self, reader: &mut Reader) {
        while let Ok(len) = reader.read_u16().await {
            let mut frame = vec![0; usize::from(len)];
            if reader.read_exact(&mut frame).await.is_err() {
                return;
            }
            self.on_query(frame);
            while self.delayed.try_join_next().is_some() {}
        }
    }

    fn on_query(&mut self, bytes: Vec<u8>) {
        let message = Message::from_vec(&bytes).ok();
        let (script, keepalive, opt) = {
            let mut state = lock(&self.state);
            state.received.push(ReceivedQuery {
                connection: self.index,
                bytes: bytes.clone(),
                message: message.clone(),
            });
            (state.script.clone(), state.keepalive, state.answer_opt)
        };
        let opt = AnswerOpt { keepalive, ..opt };
        if let Some(reply) = reply_to(&script, message.as_ref(), &bytes, opt) {
            self.follow(script, message.as_ref(), reply);
        }
    }

    fn follow(&mut self, script: Script, query: Option<&Message>, reply: Vec<u8>) {
        match script {
            // RefuseTls only concerns new connections; ones already up keep answering.
            Script::Answer | Script::RefuseTls | Script::Respond(_) => self.send(Out::Frame(reply)),
            Script::Delay(delay) => self.send_after(delay, reply),
            Script::RespondLate(_, late) => {
                let delay = delay_for(query, |name, qtype| {
                    late.iter()
                        .find(|(late, late_type, _)| {
                            *late_type == qtype && fixtures::same_name(name, late)
                        })
                        .map(|(_, _, delay)| *delay)
                });
                self.send_after(delay, reply);
            }
            Script::DelayByName(names) => {
                let delay = delay_for(query, |name, _| {
                    names
                        .iter()
                        .find(|(slow, _)| fixtures::same_name(name, slow))
                        .map(|(_, delay)| *delay)
                });
                self.send_after(delay, reply);
            }
            Script::Reorder { batch } => {
                self.held.push(reply);
                if self.held.len() >= batch {
                    for frame in std::mem::take(&mut self.held).into_iter().rev() {
                        self.send(Out::Frame(frame));
                    }
                }
            }
            Script::Stall => {}
            Script::CloseAfter { answers } => self.answer_then(answers, reply, |_| Out::Close),
            Script::ResetMidAnswer { answers } => {
                self.answer_then(answers, reply, Out::ResetMidFrame)
            }
            Script::OutOfStep { answers } => {
                self.answer_then(answers, reply, Out::AfterStrayOctets)
            }
            Script::Garbage => {
                let mut garbage = vec![0; 11];
                rand::fill(&mut garbage[..]);
                self.send(Out::Frame(garbage));
            }
            Script::WrongId => {
                let mut wrong = reply;
                wrong[0] ^= 0x5a;
                wrong[1] ^= 0x5a;
                self.send(Out::Frame(wrong));
            }
        }
    }

    /// Answers while fewer than `answers` queries were counted on this
    /// connection, then turns the reply into the scripted failure.
    fn answer_then(&mut self, answers: usize, reply: Vec<u8>, failure: fn(Vec<u8>) -> Out) {
        self.handled += 1;
        self.send(if self.handled <= answers {
            Out::Frame(reply)
        } else {
            failure(reply)
        });
    }

    fn send(&self, out: Out) {
        if let Some(tx) = &self.tx {
            // Fails only once the connection is over, when nobody wants the answer.
            let _ = tx.send(out);
        }
    }

    fn send_after(&mut self, delay: Duration, reply: Vec<u8>) {
        if delay.is_zero() {
            return self.send(Out::Frame(reply));
        }
        let Some(tx) = self.tx.clone() else {
            return;
        };
        self.delayed.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Out::Frame(reply));
        });
    }
}

/// The delay `find` gives the query's question (its name and type), or
/// none.
fn delay_for(
    query: Option<&Message>,
    find: impl FnOnce(&str, RecordType) -> Option<Duration>,
) -> Duration {
    query
        .and_then(|query| query.queries.first())
        .and_then(|asked| find(&asked.name().to_ascii(), asked.query_type()))
        .unwrap_or_default()
}

/// The wire answer to one received frame, or `None` when nothing can be said.
fn reply_to(
    script: &Script,
    query: Option<&Message>,
    bytes: &[u8],
    opt: AnswerOpt,
) -> Option<Vec<u8>> {
    let formerr = || fixtures::encode_response(fixtures::formerr_for(bytes)?, None, None);
    match query {
        Some(query) => {
            let answer = match script {
                Script::Respond(Responder(respond))
                | Script::RespondLate(Responder(respond), _) => respond(query)?,
                _ => fixtures::answer(query),
            };
            opt.finish(answer, query).or_else(formerr)
        }
        None => formerr(),
    }
}

/// What goes into the OPT record of a response, on top of the answer's own.
#[derive(Clone, Copy, Debug, Default)]
struct AnswerOpt {
    keepalive: Option<Duration>,
    udp_size: Option<u16>,
    padding: ResponsePadding,
}

impl AnswerOpt {
    /// Encodes `answer` to `query` with keepalive, UDP size and padding.
    fn finish(self, mut answer: Message, query: &Message) -> Option<Vec<u8>> {
        if let (Some(size), Some(edns)) = (self.udp_size, answer.edns.as_mut()) {
            edns.set_max_payload(size);
        }
        let block = match self.padding {
            ResponsePadding::Fixture => {
                return fixtures::encode_response(answer, Some(query), self.keepalive);
            }
            ResponsePadding::Off => return fixtures::encode_response(answer, None, self.keepalive),
            ResponsePadding::Block(block) => block,
        };
        let unpadded = fixtures::encode_response(answer, None, self.keepalive)?;
        let query_edns = query.edns.as_ref();
        if query_edns.is_none_or(|edns| edns.option(EdnsCode::Padding).is_none()) {
            return Some(unpadded);
        }
        let mut message = Message::from_vec(&unpadded).ok()?;
        let Some(edns) = message.edns.as_mut() else {
            return Some(unpadded);
        };
        // The option's own 4-octet header counts towards the block too.
        let fill = (block - (unpadded.len() + 4) % block) % block;
        let option = EdnsOption::Unknown(fixtures::PADDING_OPTION, vec![0; fill]);
        edns.options_mut().insert(option);
        message.to_vec().ok()
    }
}
