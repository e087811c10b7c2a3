//! One measuring connection to an upstream, for `dotstub padding probe`
//! ([`crate::padding_probe`]): queries go one at a time, padded by a given
//! policy, and each exchange reports the DNS sizes, the TLS records that
//! carried them and the round-trip time.
//!
//! Not the pool's connection: no pipelining, no retries, no health. What it
//! shares with the pool is what decides the bytes on the wire: the same
//! authenticated handshake ([`Connector`]), the same query encoding and the
//! same per-upstream size limit.
//
// TLS records are counted by a wrapper under rustls (`Counted`) that parses
// the 5-octet record headers (RFC 8446 §5.1, RFC 5246 §6.2) of everything
// that crosses the TCP stream, so a record's size is what an observer of
// the TCP stream sees, header and AEAD expansion included.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;

use super::{SetupError, UpstreamError, conn::encode, connector::Connector, limit::PaddingLimit};
use crate::{
    config::{ForwardConfig, UpstreamConfig},
    padding::PaddingPolicy,
    wire::{Answer, Header, UpstreamQuestion},
};

/// TLS records seen in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Records {
    /// Complete records.
    pub count: u64,
    /// Their octets, 5-octet headers included.
    pub octets: u64,
}

impl Records {
    fn since(self, earlier: Self) -> Self {
        Self {
            count: self.count - earlier.count,
            octets: self.octets - earlier.octets,
        }
    }
}

/// What one query and its answer looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The query, in octets (TCP length prefix excluded).
    pub query_len: usize,
    /// The TLS records that carried the query (and its length prefix).
    pub query_records: Records,
    /// The answer, in octets (TCP length prefix excluded).
    pub response_len: usize,
    /// The TLS records read until the answer was complete.
    pub response_records: Records,
    /// Whether the answer carried a Padding option.
    pub response_padded: bool,
    /// From the first octet written to the last octet of the answer read.
    pub rtt: Duration,
}

/// Opens measuring connections to one upstream.
#[derive(Debug)]
pub struct ProbeTarget {
    connector: Arc<Connector>,
    /// Learned from every answer on every connection to this upstream.
    limit: Arc<PaddingLimit>,
    timeout: Duration,
}

impl ProbeTarget {
    /// Prepares TLS for `upstream`; each exchange gets `forward.timeout`.
    pub fn new(upstream: &UpstreamConfig, forward: &ForwardConfig) -> Result<Self, SetupError> {
        Ok(Self {
            connector: Arc::new(Connector::new(upstream, forward, false)?),
            limit: Arc::default(),
            timeout: forward.timeout,
        })
    }

    /// The largest padded query: the upstream's advertised size once it
    /// has answered.
    pub fn limit(&self) -> usize {
        self.limit.get()
    }

    /// Connects and completes an authenticated handshake.
    pub async fn connect(&self) -> Result<ProbeConn, UpstreamError> {
        let connecting = self.connector.connect_over(Counted::new);
        let (stream, _) = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        Ok(ProbeConn {
            stream,
            sent_any: false,
            limit: Arc::clone(&self.limit),
            timeout: self.timeout,
        })
    }
}

/// A measuring connection: one query at a time.
#[derive(Debug)]
pub struct ProbeConn {
    stream: TlsStream<Counted<TcpStream>>,
    /// The first query carries edns-tcp-keepalive, as on a pool connection.
    sent_any: bool,
    limit: Arc<PaddingLimit>,
    timeout: Duration,
}

impl ProbeConn {
    /// Sends `question` padded by `policy` and waits for its answer.
    pub async fn exchange(
        &mut self,
        question: &UpstreamQuestion<'_>,
        policy: &PaddingPolicy,
    ) -> Result<Sample, UpstreamError> {
        let id = rand::random::<u16>();
        let frame = encode(question, id, !self.sent_any, policy, self.limit.get());
        self.sent_any = true;
        let (written, read) = self.stream.get_ref().0.records();
        let started = Instant::now();
        let response = tokio::time::timeout(self.timeout, self.write_and_read(&frame))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|_| UpstreamError::Closed)?;
        let rtt = started.elapsed();
        let (written_now, read_now) = self.stream.get_ref().0.records();
        let answers_id = Header::parse(&response).is_ok_and(|header| header.id() == id);
        let (_, edns) = Answer::from_upstream(&response, &question.question)
            .ok()
            .filter(|_| answers_id)
            .ok_or(UpstreamError::Protocol)?;
        self.limit.learn(edns.udp_size);
        Ok(Sample {
            query_len: frame.len() - 2,
            query_records: written_now.since(written),
            response_len: response.len(),
            response_records: read_now.since(read),
            response_padded: edns.padded,
            rtt,
        })
    }

    async fn write_and_read(&mut self, frame: &[u8]) -> io::Result<Vec<u8>> {
        self.stream.write_all(frame).await?;
        self.stream.flush().await?;
        let len = self.stream.read_u16().await?;
        let mut response = vec![0; usize::from(len)];
        self.stream.read_exact(&mut response).await?;
        Ok(response)
    }
}

//---- Counting TLS records ----

/// A stream that counts the TLS records crossing it, each way.
#[derive(Debug)]
struct Counted<S> {
    inner: S,
    written: RecordParser,
    read: RecordParser,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            written: RecordParser::default(),
            read: RecordParser::default(),
        }
    }

    /// Complete records written and read so far.
    fn records(&self) -> (Records, Records) {
        (self.written.done, self.read.done)
    }
}

/// Finds record boundaries in a byte stream from the length in each
/// record header.
#[derive(Debug, Default)]
struct RecordParser {
    header: [u8; RECORD_HEADER_LEN],
    /// Octets of `header` filled; the body follows once it is full.
    have: usize,
    /// Octets of the current record's body still to come.
    body_left: usize,
    done: Records,
}

/// Content type (1), version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;

impl RecordParser {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.have < RECORD_HEADER_LEN {
                let take = (RECORD_HEADER_LEN - self.have).min(bytes.len());
                self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                self.have += take;
                bytes = &bytes[take..];
                if self.have == RECORD_HEADER_LEN {
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                }
            } else {
                let take = self.body_left.min(bytes.len());
                self.body_left -= take;
                bytes = &bytes[take..];
            }
            if self.have == RECORD_HEADER_LEN && self.body_left == 0 {
                let len = RECORD_HEADER_LEN
                    + usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.done.count += 1;
                self.done.octets += len as u64;
                self.have = 0;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.read.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            this.written.feed(&data[..n.min(data.len())]);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_however_the_stream_is_cut() {
        // Two records: 3 and 0 octets of body.
        let stream = [23, 3, 3, 0, 3, 1, 2, 3, 21, 3, 3, 0, 0];
        for cut in 1..stream.len() {
            let mut parser = RecordParser::default();
            for chunk in stream.chunks(cut) {
                parser.feed(chunk);
            }
            assert_eq!(
                parser.done,
                Records {
                    count: 2,
                    octets: 13
                },
                "cut every {cut}"
            );
        }
        let mut parser = RecordParser::default();
        parser.feed(&stream[..7]);
        assert_eq!(parser.done.count, 0, "a record counts once complete");
    }
}
