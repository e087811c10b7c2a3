//! Captures (pcap and pcapng): DNS over UDP and TCP port 53, matched into
//! query/response pairs.
//!
//! A query is matched to the first response with the same DNS ID on the
//! same transport and 5-tuple, reversed. TCP streams are followed by
//! sequence number (retransmitted octets are dropped, a gap loses the rest
//! of that stream) and split at the 2-octet length prefixes (RFC 1035
//! §4.2.2). Each message's existing Padding options are taken out
//! (RFC 7830), so the trace holds what the message was before padding.
//!
//! Not handled: IP fragments (counted as skipped), DNS over other ports.

use std::{collections::HashMap, fs::File, net::IpAddr, path::Path};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use foldhash::fast::RandomState;
use pcap_parser::{Linktype, PcapBlockOwned, PcapError, create_reader, pcapng::Block};

use super::{
    LabError, PcapProblem,
    trace::{CaptureStats, Message, Source, Trace, Transaction},
};
use crate::wire::{self, Header, OptRecord, Sections, option_code};

/// The DNS port.
const DNS_PORT: u16 = 53;
/// Capture buffer to start with; grown for larger blocks up to the cap.
const BUFFER: usize = 1 << 16;
/// Largest capture block buffered: far above any real packet (jumbo frames
/// and TSO captures stay below 256 KiB).
const MAX_BUFFER: usize = 1 << 24;
/// Octets kept per TCP direction before the stream is given up: two
/// maximal DNS messages with their prefixes.
const MAX_STREAM_BUFFER: usize = 2 * (2 + wire::MAX_MESSAGE_LEN);

/// Whether `magic`, the first octets of a file, is a pcap or pcapng magic.
pub(super) fn is_capture(magic: &[u8]) -> bool {
    matches!(
        magic,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x0a, 0x0d, 0x0d, 0x0a]
    )
}

/// Reads every block of the capture in `file` and pairs its DNS messages.
pub(super) fn read(path: &Path, file: File) -> Result<Trace, LabError> {
    let mut block = 1;
    let fail = |block, problem| LabError::Pcap {
        path: path.to_owned(),
        block,
        problem,
    };
    let mut reader = create_reader(BUFFER, file).map_err(|error| match error {
        PcapError::ReadError => fail(block, PcapProblem::Truncated),
        PcapError::Incomplete(_) | PcapError::Eof => fail(block, PcapProblem::Truncated),
        _ => fail(block, PcapProblem::Header),
    })?;
    let mut pairing = Pairing::default();
    let mut size = BUFFER;
    loop {
        match reader.next() {
            Ok((offset, data)) => {
                let result = pairing.block(data);
                reader.consume(offset);
                result.map_err(|problem| fail(block, problem))?;
                block += 1;
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.reader_exhausted() {
                    return Err(fail(block, PcapProblem::Truncated));
                }
                reader
                    .refill()
                    .map_err(|_| fail(block, PcapProblem::Truncated))?;
            }
            Err(PcapError::BufferTooSmall) => {
                size *= 2;
                if size > MAX_BUFFER || !reader.grow(size) {
                    return Err(fail(block, PcapProblem::TooLarge(MAX_BUFFER)));
                }
            }
            Err(PcapError::UnexpectedEof) => return Err(fail(block, PcapProblem::Truncated)),
            Err(_) => return Err(fail(block, PcapProblem::Malformed)),
        }
    }
    Ok(pairing.finish())
}

//---- Pairing ----

/// A query's side of a 5-tuple, as seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Flow {
    tcp: bool,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
}

/// One direction of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Direction {
    from: (IpAddr, u16),
    to: (IpAddr, u16),
}

/// A TCP direction being reassembled.
#[derive(Debug, Default)]
struct Stream {
    next_seq: u32,
    buffered: Vec<u8>,
    lost: bool,
}

/// The state of a capture being read: link types, open queries, streams.
#[derive(Debug)]
struct Pairing {
    trace: Trace,
    stats: CaptureStats,
    /// The link type of a pcap file.
    legacy_link: Option<Linktype>,
    /// The link type of each pcapng interface, by interface ID.
    interfaces: Vec<Linktype>,
    queries: HashMap<(Flow, u16), Message, RandomState>,
    streams: HashMap<Direction, Stream, RandomState>,
}

impl Default for Pairing {
    fn default() -> Self {
        Self {
            trace: Trace::new(Source::Capture(CaptureStats::default())),
            stats: CaptureStats::default(),
            legacy_link: None,
            interfaces: Vec::new(),
            queries: HashMap::default(),
            streams: HashMap::default(),
        }
    }
}

impl Pairing {
    fn block(&mut self, block: PcapBlockOwned<'_>) -> Result<(), PcapProblem> {
        let (link, data) = match block {
            PcapBlockOwned::LegacyHeader(header) => {
                self.legacy_link = Some(header.network);
                return Ok(());
            }
            PcapBlockOwned::Legacy(packet) => {
                let link = self.legacy_link.ok_or(PcapProblem::Malformed)?;
                (link, packet.data)
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                self.interfaces.clear();
                return Ok(());
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(interface)) => {
                self.interfaces.push(interface.linktype);
                return Ok(());
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(packet)) => {
                let link = usize::try_from(packet.if_id)
                    .ok()
                    .and_then(|id| self.interfaces.get(id).copied())
                    .ok_or(PcapProblem::Malformed)?;
                let len = usize::try_from(packet.caplen).unwrap_or(usize::MAX);
                (link, packet.data.get(..len).unwrap_or(packet.data))
            }
            PcapBlockOwned::NG(Block::SimplePacket(packet)) => {
                let link = self
                    .interfaces
                    .first()
                    .copied()
                    .ok_or(PcapProblem::Malformed)?;
                let len = usize::try_from(packet.origlen).unwrap_or(usize::MAX);
                (link, packet.data.get(..len).unwrap_or(packet.data))
            }
            PcapBlockOwned::NG(_) => return Ok(()),
        };
        self.stats.packets += 1;
        let sliced = match link {
            Linktype::ETHERNET => SlicedPacket::from_ethernet(data),
            Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => SlicedPacket::from_ip(data),
            Linktype::LINUX_SLL => SlicedPacket::from_linux_sll(data),
            // BSD loopback: a 4-octet address family in host order.
            Linktype::NULL | Linktype::LOOP => SlicedPacket::from_ip(data.get(4..).unwrap_or(&[])),
            Linktype(other) => return Err(PcapProblem::LinkType(other)),
        };
        if let Ok(packet) = sliced {
            self.packet(&packet);
        }
        Ok(())
    }

    fn packet(&mut self, packet: &SlicedPacket<'_>) {
        let (source, destination, fragmented) = match &packet.net {
            Some(NetSlice::Ipv4(ip)) => (
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
                ip.is_payload_fragmented(),
            ),
            Some(NetSlice::Ipv6(ip)) => (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
                ip.is_payload_fragmented(),
            ),
            _ => return,
        };
        match &packet.transport {
            Some(TransportSlice::Udp(udp))
                if udp.source_port() == DNS_PORT || udp.destination_port() == DNS_PORT =>
            {
                if fragmented {
                    self.stats.skipped += 1;
                    return;
                }
                let direction = Direction {
                    from: (source, udp.source_port()),
                    to: (destination, udp.destination_port()),
                };
                self.message(direction, false, udp.payload());
            }
            Some(TransportSlice::Tcp(tcp))
                if tcp.source_port() == DNS_PORT || tcp.destination_port() == DNS_PORT =>
            {
                let direction = Direction {
                    from: (source, tcp.source_port()),
                    to: (destination, tcp.destination_port()),
                };
                if tcp.syn() || tcp.rst() {
                    self.streams.remove(&direction);
                    if tcp.syn() {
                        let stream = Stream {
                            next_seq: tcp.sequence_number().wrapping_add(1),
                            ..Stream::default()
                        };
                        self.streams.insert(direction, stream);
                    }
                    return;
                }
                self.segment(direction, tcp.sequence_number(), tcp.payload());
                if tcp.fin() {
                    self.streams.remove(&direction);
                }
            }
            _ => {}
        }
    }

    /// Adds a TCP segment to its stream and takes out every whole message.
    fn segment(&mut self, direction: Direction, seq: u32, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        let stream = self.streams.entry(direction).or_insert_with(|| Stream {
            // A stream whose SYN was not captured: follow it from here.
            next_seq: seq,
            ..Stream::default()
        });
        if stream.lost {
            return;
        }
        // Octets before next_seq were seen already (a retransmission).
        let seen = usize::try_from(stream.next_seq.wrapping_sub(seq)).unwrap_or(usize::MAX);
        let new = if seen <= payload.len() {
            &payload[seen..]
        } else if seq.wrapping_sub(stream.next_seq) < (1 << 31) {
            // A gap: the message boundaries after it are unknown.
            stream.lost = true;
            stream.buffered.clear();
            self.stats.skipped += 1;
            return;
        } else {
            return;
        };
        stream.buffered.extend_from_slice(new);
        stream.next_seq = stream.next_seq.wrapping_add(new.len() as u32);
        let mut messages = Vec::new();
        let mut start = 0;
        while let Some(&[hi, lo]) = stream.buffered.get(start..start + 2) {
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            match stream.buffered.get(start + 2..start + 2 + len) {
                Some(message) => messages.push(message.to_vec()),
                None => break,
            }
            start += 2 + len;
        }
        stream.buffered.drain(..start);
        if stream.buffered.len() > MAX_STREAM_BUFFER {
            stream.lost = true;
            stream.buffered.clear();
        }
        for message in messages {
            self.message(direction, true, &message);
        }
    }

    /// One DNS message: remembered if a query, paired if a response.
    fn message(&mut self, direction: Direction, tcp: bool, bytes: &[u8]) {
        let Some((header, message)) = unpadded(bytes, &mut self.stats.padded) else {
            self.stats.skipped += 1;
            return;
        };
        self.stats.messages += 1;
        let is_response = header.has(wire::flag::QR);
        let flow = match is_response {
            false => Flow {
                tcp,
                client: direction.from,
                server: direction.to,
            },
            true => Flow {
                tcp,
                client: direction.to,
                server: direction.from,
            },
        };
        let key = (flow, header.id());
        match is_response {
            false => {
                if self.queries.insert(key, message).is_some() {
                    // A repeated query replaces the one still waiting.
                    self.stats.unanswered += 1;
                }
            }
            true => match self.queries.remove(&key) {
                Some(query) => self.trace.add(Transaction {
                    query,
                    response: message,
                }),
                None => self.stats.unmatched += 1,
            },
        }
    }

    fn finish(mut self) -> Trace {
        self.stats.unanswered += self.queries.len() as u64;
        self.trace.set_source(Source::Capture(self.stats));
        self.trace
    }
}

/// The message's header and its size without Padding options, or `None`
/// when it is not a readable DNS message. Counts padded messages.
fn unpadded(bytes: &[u8], padded: &mut u64) -> Option<(Header, Message)> {
    let header = Header::parse(bytes).ok()?;
    let sections = Sections::locate(bytes, &header).ok()?;
    // Two OPT records make it malformed (RFC 6891 §6.1.1), as everywhere.
    let opt = wire::find_opt(bytes, sections.additional, header.arcount()).ok()?;
    let has_opt = opt.is_some();
    let mut padding = 0;
    if let Some((record, _)) = opt {
        padding = OptRecord::from_span(bytes, &record)
            .ok()?
            .options()
            .filter(|(code, _)| *code == option_code::PADDING)
            .map(|(_, data)| Message::OPTION_HEADER_LEN + data.len())
            .sum::<usize>();
    }
    if padding > 0 {
        *padded += 1;
    }
    let len = u16::try_from(bytes.len().checked_sub(padding)?).ok()?;
    Some((header, Message { len, has_opt }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.` with an OPT record holding `padding` octets of
    /// Padding (none: no option at all).
    fn query(padding: Option<usize>) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        let options = match padding {
            Some(len) => {
                let mut option = vec![0, 12, 0, len as u8];
                option.resize(4 + len, 0);
                option
            }
            None => Vec::new(),
        };
        bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&(options.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&options);
        bytes
    }

    #[test]
    fn existing_padding_is_taken_out_with_its_option_header() {
        let mut padded = 0;
        let plain = query(None);
        let (_, message) = unpadded(&plain, &mut padded).unwrap();
        assert_eq!(usize::from(message.len), plain.len());
        assert!(message.has_opt);
        let with_padding = query(Some(100));
        assert_eq!(with_padding.len(), plain.len() + 104);
        let (header, message) = unpadded(&with_padding, &mut padded).unwrap();
        assert_eq!(usize::from(message.len), plain.len());
        assert_eq!(header.id(), 0x1234);
        assert_eq!(padded, 1);
    }

    #[test]
    fn garbage_is_not_a_message() {
        let mut padded = 0;
        assert!(unpadded(&[0; 5], &mut padded).is_none());
        let mut cut = query(Some(10));
        cut.truncate(cut.len() - 3);
        assert!(unpadded(&cut, &mut padded).is_none());
    }

    #[test]
    fn capture_magic_numbers_are_recognised() {
        assert!(is_capture(&[0xd4, 0xc3, 0xb2, 0xa1]));
        assert!(is_capture(&[0x0a, 0x0d, 0x0d, 0x0a]));
        assert!(!is_capture(b"qsiz"));
        assert!(!is_capture(&[0xd4]));
    }
}
