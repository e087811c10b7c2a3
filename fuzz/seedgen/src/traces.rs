//! Seeds of `padding_traces`: the CSV traces of tests/data, slices of its
//! pcap captures (a few packets each, so the seeds stay small), and
//! captures built here: pcapng with UDP, TCP (split and retransmitted
//! segments) and padded messages; pcaps of the other link types the
//! reader knows (raw IPv4/IPv6, Linux SLL, BSD loopback) and one it does
//! not.

use std::path::Path;

use super::read;

/// Packets per slice of a shared capture.
const SLICE: usize = 6;

pub fn seeds(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let data = repo.join("tests/data");
    let mut seeds = Vec::new();
    for csv in ["tiny.csv", "pcpp_DnsPackets.csv", "pcpp_examples_dns.csv"] {
        seeds.push((csv.to_owned(), read(data.join(csv))));
    }
    for capture in ["pcpp_DnsPackets", "pcpp_examples_dns"] {
        let bytes = read(data.join(format!("{capture}.pcap")));
        let (header, packets) = split_pcap(&bytes);
        for (index, chunk) in packets.chunks(SLICE).take(3).enumerate() {
            let slice = [header, &chunk.concat()].concat();
            seeds.push((format!("{capture}-slice{index}.pcap"), slice));
        }
    }
    seeds.extend(built());
    seeds
}

/// A little-endian pcap's global header and its packet records.
fn split_pcap(bytes: &[u8]) -> (&[u8], Vec<&[u8]>) {
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let (header, mut rest) = bytes.split_at(24);
    let mut packets = Vec::new();
    while rest.len() >= 16 {
        let caplen = u32::from_le_bytes(rest[8..12].try_into().expect("4 octets"));
        let end = 16 + usize::try_from(caplen).expect("fits");
        packets.push(&rest[..end]);
        rest = &rest[end..];
    }
    (header, packets)
}

//---- Packets ----

const CLIENT4: [u8; 4] = [192, 168, 1, 10];
const SERVER4: [u8; 4] = [192, 168, 1, 1];

/// A DNS message: `id`, query or response, a name of `label` octets, and
/// an OPT record with `padding` octets of Padding when given.
fn dns(id: u16, response: bool, label: usize, padding: Option<usize>) -> Vec<u8> {
    let flags: u16 = if response { 0x8180 } else { 0x0100 };
    let mut message = id.to_be_bytes().to_vec();
    message.extend_from_slice(&flags.to_be_bytes());
    let answers = u16::from(response);
    let additional = u16::from(padding.is_some());
    for count in [1, answers, 0, additional] {
        message.extend_from_slice(&count.to_be_bytes());
    }
    message.push(u8::try_from(label).expect("short label"));
    message.extend(std::iter::repeat_n(b'x', label));
    message.extend_from_slice(b"\x03com\x00\x00\x01\x00\x01");
    if response {
        message
            .extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01");
    }
    if let Some(padding) = padding {
        let pad = u16::try_from(padding).expect("short");
        message.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        message.extend_from_slice(&(pad + 4).to_be_bytes());
        message.extend_from_slice(&[0, 12]);
        message.extend_from_slice(&pad.to_be_bytes());
        message.extend(std::iter::repeat_n(0, padding));
    }
    message
}

fn ipv4(protocol: u8, from_client: bool, payload: &[u8]) -> Vec<u8> {
    let (source, destination) = if from_client {
        (CLIENT4, SERVER4)
    } else {
        (SERVER4, CLIENT4)
    };
    let total = u16::try_from(20 + payload.len()).expect("short");
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
    packet.extend_from_slice(&source);
    packet.extend_from_slice(&destination);
    packet.extend_from_slice(payload);
    packet
}

fn ipv6(protocol: u8, from_client: bool, payload: &[u8]) -> Vec<u8> {
    let client = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let server = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ];
    let (source, destination) = if from_client {
        (client, server)
    } else {
        (server, client)
    };
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&u16::try_from(payload.len()).expect("short").to_be_bytes());
    packet.extend_from_slice(&[protocol, 64]);
    packet.extend_from_slice(&source);
    packet.extend_from_slice(&destination);
    packet.extend_from_slice(payload);
    packet
}

fn udp(from_client: bool, client_port: u16, payload: &[u8]) -> Vec<u8> {
    let (source, destination) = if from_client {
        (client_port, 53)
    } else {
        (53, client_port)
    };
    let mut segment = source.to_be_bytes().to_vec();
    segment.extend_from_slice(&destination.to_be_bytes());
    segment.extend_from_slice(
        &u16::try_from(8 + payload.len())
            .expect("short")
            .to_be_bytes(),
    );
    segment.extend_from_slice(&[0, 0]);
    segment.extend_from_slice(payload);
    segment
}

/// A TCP segment; `flags` as in the header (0x02 SYN, 0x10 ACK, 0x01 FIN).
fn tcp(from_client: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (source, destination): (u16, u16) = if from_client {
        (40000, 53)
    } else {
        (53, 40000)
    };
    let mut segment = source.to_be_bytes().to_vec();
    segment.extend_from_slice(&destination.to_be_bytes());
    segment.extend_from_slice(&seq.to_be_bytes());
    segment.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    segment.extend_from_slice(payload);
    segment
}

fn ethernet(ip: &[u8], ethertype: u16) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(ip);
    frame
}

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for message in messages {
        stream.extend_from_slice(&u16::try_from(message.len()).expect("short").to_be_bytes());
        stream.extend_from_slice(message);
    }
    stream
}

//---- Files ----

fn pcap(linktype: u32, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&65535u32.to_le_bytes());
    file.extend_from_slice(&linktype.to_le_bytes());
    for (index, packet) in packets.iter().enumerate() {
        let len = u32::try_from(packet.len()).expect("short");
        file.extend_from_slice(&u32::try_from(1_000 + index).expect("small").to_le_bytes());
        file.extend_from_slice(&0u32.to_le_bytes());
        file.extend_from_slice(&len.to_le_bytes());
        file.extend_from_slice(&len.to_le_bytes());
        file.extend_from_slice(packet);
    }
    file
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut padded = body.to_vec();
    padded.resize(body.len().div_ceil(4) * 4, 0);
    let len = u32::try_from(12 + padded.len())
        .expect("short")
        .to_le_bytes();
    [&kind.to_le_bytes()[..], &len, &padded, &len].concat()
}

/// A little-endian pcapng: one section, one Ethernet interface, the
/// packets as enhanced packet blocks, the last one as a simple one.
fn pcapng(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut section = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    section.extend_from_slice(&[1, 0, 0, 0]);
    section.extend_from_slice(&(-1i64).to_le_bytes());
    let mut file = block(0x0a0d_0d0a, &section);
    file.extend(block(1, &[1, 0, 0, 0, 0xff, 0xff, 0, 0]));
    let (last, enhanced) = packets.split_last().expect("packets");
    for (index, packet) in enhanced.iter().enumerate() {
        let len = u32::try_from(packet.len()).expect("short").to_le_bytes();
        let stamp = u32::try_from(index).expect("small").to_le_bytes();
        let body = [&[0, 0, 0, 0][..], &[0; 4], &stamp, &len, &len, packet].concat();
        file.extend(block(6, &body));
    }
    let len = u32::try_from(last.len()).expect("short").to_le_bytes();
    file.extend(block(3, &[&len[..], last].concat()));
    file
}

fn built() -> Vec<(String, Vec<u8>)> {
    let eth4 = |ip: Vec<u8>| ethernet(&ip, 0x0800);
    let udp_pair = |id: u16, port: u16, padding: Option<usize>| {
        vec![
            eth4(ipv4(
                17,
                true,
                &udp(true, port, &dns(id, false, 5, padding)),
            )),
            eth4(ipv4(
                17,
                false,
                &udp(false, port, &dns(id, true, 5, padding.map(|p| p + 100))),
            )),
        ]
    };
    // TCP: SYN, a query split over two segments, one retransmitted, the
    // answer and a second one framed together, FIN.
    let query = framed(&[dns(7, false, 9, Some(20)), dns(8, false, 3, None)]);
    let answer = framed(&[dns(7, true, 9, Some(60)), dns(8, true, 3, None)]);
    let (head, tail) = query.split_at(10);
    let head_len = u32::try_from(head.len()).expect("short");
    let tcp_packets = vec![
        eth4(ipv4(6, true, &tcp(true, 100, 0x02, b""))),
        eth4(ipv4(6, false, &tcp(false, 500, 0x12, b""))),
        eth4(ipv4(6, true, &tcp(true, 101, 0x18, head))),
        eth4(ipv4(6, true, &tcp(true, 101, 0x18, head))),
        eth4(ipv4(6, true, &tcp(true, 101 + head_len, 0x18, tail))),
        eth4(ipv4(6, false, &tcp(false, 501, 0x18, &answer))),
        eth4(ipv4(6, true, &tcp(true, 200, 0x11, b""))),
    ];
    let mut mixed = udp_pair(1, 5000, None);
    mixed.extend(udp_pair(1, 5001, Some(40)));
    mixed.extend(tcp_packets.clone());
    let v6_pair = vec![
        ipv6(17, true, &udp(true, 6000, &dns(9, false, 12, None))),
        ipv6(17, false, &udp(false, 6000, &dns(9, true, 12, None))),
    ];
    let raw4 = vec![
        ipv4(17, true, &udp(true, 7000, &dns(3, false, 4, None))),
        ipv4(17, false, &udp(false, 7000, &dns(3, true, 4, Some(8)))),
    ];
    let sll = |ip: &Vec<u8>| {
        let mut frame = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(ip);
        frame
    };
    let loopback = |ip: &Vec<u8>| [&2u32.to_le_bytes()[..], ip].concat();
    let mut fragment = ipv4(17, true, &udp(true, 7001, &dns(4, false, 4, None)));
    fragment[6] = 0x20; // more fragments
    let unanswered = vec![eth4(ipv4(
        17,
        true,
        &udp(true, 7002, &dns(5, false, 4, None)),
    ))];
    vec![
        ("mixed.pcapng".to_owned(), pcapng(&mixed)),
        ("tcp.pcap".to_owned(), pcap(1, &tcp_packets)),
        (
            "udp-padded.pcap".to_owned(),
            pcap(1, &udp_pair(2, 5002, Some(100))),
        ),
        ("ipv6-raw.pcap".to_owned(), pcap(101, &v6_pair)),
        ("ipv4-raw.pcap".to_owned(), pcap(228, &raw4)),
        (
            "linux-sll.pcap".to_owned(),
            pcap(113, &raw4.iter().map(sll).collect::<Vec<_>>()),
        ),
        (
            "bsd-loopback.pcap".to_owned(),
            pcap(0, &raw4.iter().map(loopback).collect::<Vec<_>>()),
        ),
        ("fragment.pcap".to_owned(), pcap(228, &[fragment])),
        ("unanswered.pcap".to_owned(), pcap(1, &unanswered)),
        ("unknown-linktype.pcap".to_owned(), pcap(147, &raw4)),
        (
            "truncated.pcap".to_owned(),
            pcap(1, &udp_pair(6, 5003, None))[..60].to_vec(),
        ),
        (
            "csv-with-opt.csv".to_owned(),
            b"qsize, rsize, qopt, ropt\r\n40,120,1,1\n\n33,100,0,0\n".to_vec(),
        ),
        (
            "csv-bad-line.csv".to_owned(),
            b"qsize,rsize\n40,abc\n".to_vec(),
        ),
    ]
}
