//! `recvmmsg` and `sendmmsg` as the system calls themselves, over message
//! headers kept with the batch. Reply `i` goes to the sender of datagram
//! `i`, so the address the kernel wrote on receiving is the one it reads
//! on sending: no address is converted or copied on the hit path. (musl's
//! 64-bit `sendmmsg` would also be a loop of `sendmsg` calls, since its
//! `msghdr` is not the kernel's: that undid the batching in the static
//! build.)
//!
//! Replies of one length to one peer (a client that keeps many queries
//! in flight from one socket) go out as one message the kernel cuts into
//! datagrams (`UDP_SEGMENT`, Linux 4.18): the route, the firewall hooks
//! and loopback's delivery are then passed once for the lot instead of
//! once for each, which on loopback costs a third as much a reply at 8
//! and about two thirds at 2. The client receives separate datagrams, as
//! before; only their order among themselves may differ.

use std::{
    io,
    mem::size_of,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use nix::{
    libc,
    sys::socket::{SockaddrLike, SockaddrStorage, getsockopt, sockopt::UdpGsoSegment},
};
use tracing::debug;

use super::{
    BATCH, Received, Replies, SLOT, Socket, send_now, send_retrying, take_when_readable,
    to_socket_addr,
};

/// Longest reply sent as a segment of a larger message: the longest UDP
/// payload every IPv6 path carries whole (1280-octet MTU), so a segment
/// fits any interface's MTU, and a message of [`BATCH`] segments stays
/// under the 64 KiB of one.
const SEGMENT_MAX: usize = 1232;
// Kernels before 6.2 cut a message into at most 64 datagrams, and an IPv4
// message carries at most 65,507 octets.
const _: () = assert!(BATCH <= 64 && BATCH * SEGMENT_MAX <= 65_507);

/// A worker's batch: what it received, what it replies, and the message
/// headers the kernel reads and fills, all allocated once.
pub(in crate::listen) struct Batch {
    pub received: Received,
    pub replies: Replies,
    headers: Box<Headers>,
    /// Whether replies to one peer may share a message: unknown until the
    /// first send asks the kernel; off for good once the kernel refuses a
    /// shared message, then takes its first reply alone.
    segmenting: Option<bool>,
}

/// The kernel's side of a batch. Its pointers are set before each call,
/// to buffers that stay put until the call returns.
struct Headers {
    receive: [libc::mmsghdr; BATCH],
    send: [libc::mmsghdr; BATCH],
    /// One buffer per received datagram.
    receive_iovecs: [libc::iovec; BATCH],
    /// One buffer per reply, in the order of the messages that send them.
    send_iovecs: [libc::iovec; BATCH],
    /// Which reply each of `send_iovecs` is.
    send_order: [usize; BATCH],
    /// Where each message's replies start in `send_iovecs`.
    message_starts: [usize; BATCH],
    /// Segment size of each message that holds more than one reply.
    controls: [Segments; BATCH],
    /// Who sent datagram `i`, as the kernel wrote it, and its length.
    peers: [libc::sockaddr_storage; BATCH],
    peer_lens: [libc::socklen_t; BATCH],
}

/// A message as `Headers::lay_out` plans it: the reply that opened it
/// (whose peer it goes to), the length of each of its replies, and how
/// many it holds.
#[derive(Clone, Copy, Default)]
struct Plan {
    first: usize,
    reply_len: usize,
    count: usize,
}

/// The control message that has the kernel cut a message's data into
/// datagrams of `size` octets, as `CMSG_DATA` finds it.
#[repr(C, align(8))]
struct Segments {
    header: libc::cmsghdr,
    size: u16,
}

// SAFETY (all three): `CMSG_SPACE` and `CMSG_LEN` are arithmetic on their
// argument, no memory is read.
#[allow(unsafe_code)]
const SEGMENTS_SPACE: usize = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
#[allow(unsafe_code)]
const SEGMENTS_LEN: usize = unsafe { libc::CMSG_LEN(size_of::<u16>() as u32) } as usize;
// `size` is where `CMSG_DATA` looks (right after the aligned header, at
// `CMSG_LEN(0)`), and the whole control message fits.
#[allow(unsafe_code)]
const _: () =
    assert!(std::mem::offset_of!(Segments, size) == unsafe { libc::CMSG_LEN(0) } as usize);
const _: () = assert!(size_of::<Segments>() >= SEGMENTS_SPACE);

impl Headers {
    fn new() -> Box<Self> {
        // SAFETY: every field is plain data (pointers, integers, padding)
        // for which all zeroes is a valid value: null pointers, zero
        // lengths, family AF_UNSPEC. The padding musl puts in its `msghdr`
        // and `cmsghdr` must be zero for the kernel, and stays so.
        #[allow(unsafe_code)]
        let mut headers: Box<Self> = Box::new(unsafe { std::mem::zeroed() });
        for control in &mut headers.controls {
            control.header.cmsg_len = SEGMENTS_LEN as _;
            control.header.cmsg_level = libc::SOL_UDP;
            control.header.cmsg_type = libc::UDP_SEGMENT;
        }
        headers
    }

    /// Peer `i`'s address as the kernel wrote it.
    fn peer_octets(&self, i: usize) -> &[u8] {
        let len = (self.peer_lens[i] as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: a `sockaddr_storage` is plain data, every octet of it
        // initialised (zeroed with the headers, then written by the
        // kernel); `len` is at most its size.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts((&raw const self.peers[i]).cast::<u8>(), len)
        }
    }

    /// Sets up one message for each ready reply, or, when `segmenting`,
    /// for each set of ready replies of one length (at most
    /// [`SEGMENT_MAX`]) to one peer. Returns how many messages.
    fn lay_out(&mut self, replies: &Replies, segmenting: bool) -> usize {
        let mut plans = [Plan::default(); BATCH];
        let mut message_of = [0usize; BATCH];
        let mut messages = 0;
        for (i, reply) in replies.to_send() {
            let reply_len = reply.len();
            let joins = if segmenting && (1..=SEGMENT_MAX).contains(&reply_len) {
                plans[..messages].iter().position(|plan| {
                    plan.reply_len == reply_len
                        && self.peer_octets(plan.first) == self.peer_octets(i)
                })
            } else {
                None
            };
            let message = joins.unwrap_or_else(|| {
                plans[messages] = Plan {
                    first: i,
                    reply_len,
                    count: 0,
                };
                messages += 1;
                messages - 1
            });
            message_of[i] = message;
            plans[message].count += 1;
        }
        // Each message's replies take consecutive iovecs.
        let mut start = 0;
        for (message_start, plan) in self.message_starts.iter_mut().zip(&plans[..messages]) {
            *message_start = start;
            start += plan.count;
        }
        let mut next = self.message_starts;
        for (i, reply) in replies.to_send() {
            let at = &mut next[message_of[i]];
            self.send_iovecs[*at] = libc::iovec {
                iov_base: reply.as_ptr().cast_mut().cast(),
                iov_len: reply.len(),
            };
            self.send_order[*at] = i;
            *at += 1;
        }
        for (message, plan) in plans[..messages].iter().enumerate() {
            let header = &mut self.send[message].msg_hdr;
            header.msg_name = (&raw mut self.peers[plan.first]).cast();
            header.msg_namelen = self.peer_lens[plan.first];
            header.msg_iov =
                (self.send_iovecs.as_mut_ptr()).wrapping_add(self.message_starts[message]);
            header.msg_iovlen = plan.count as _;
            let control = &mut self.controls[message];
            if plan.count > 1 {
                control.size = plan.reply_len as u16;
                header.msg_control = (&raw mut *control).cast();
                header.msg_controllen = SEGMENTS_SPACE as _;
            } else {
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
            }
        }
        messages
    }

    /// Whether `message` holds more than one reply.
    fn is_segmented(&self, message: usize) -> bool {
        self.send[message].msg_hdr.msg_iovlen > 1
    }

    /// The first reply of `message`.
    fn first_reply(&self, message: usize) -> usize {
        self.send_order[self.message_starts[message]]
    }

    /// The replies sent by the messages before `message`.
    fn sent_before(&self, message: usize) -> &[usize] {
        &self.send_order[..self.message_starts[message]]
    }
}

/// Whether the kernel cuts messages into datagrams for `socket`: it knows
/// the `UDP_SEGMENT` option (Linux 4.18 on). An older kernel would ignore
/// the control message and send one long datagram.
fn can_segment(socket: &UdpSocket) -> bool {
    getsockopt(socket, UdpGsoSegment).is_ok()
}

/// Whether a message of several replies may have failed for being cut
/// up: EINVAL (a segment longer than the device's MTU, UDP checksums off)
/// or EIO (a route through IPsec, a device without checksum offload).
/// EINVAL may be the peer's too (port 0, say), so `Batch::send` makes
/// sure before it stops cutting messages up.
fn cannot_cut_up(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINVAL | libc::EIO))
}

/// Calls `recvmmsg` or `sendmmsg` with `headers`.
fn call(
    number: libc::c_long,
    socket: &UdpSocket,
    headers: &mut [libc::mmsghdr],
    flags: libc::c_int,
) -> io::Result<usize> {
    let count = headers.len().min(BATCH) as libc::c_uint;
    // SAFETY: the headers (callers set them just before) point at live
    // iovecs, which point at buffers of the batch with their lengths, at an
    // address buffer with its length, and at no control data or at one
    // `Segments` with its length; none moves or is touched until the call
    // returns. The kernel writes the received datagrams and addresses
    // there, and `msg_len`, `msg_namelen` and `msg_flags` of each header.
    // The fifth argument, `recvmmsg`'s timeout, is null (none); `sendmmsg`
    // has four.
    #[allow(unsafe_code)]
    let done = unsafe {
        libc::syscall(
            number,
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count,
            flags as libc::c_uint,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    usize::try_from(done).map_err(|_| io::Error::last_os_error())
}

impl Batch {
    /// A batch whose replies are at most `reply_capacity` octets.
    pub(in crate::listen) fn new(reply_capacity: usize) -> Self {
        Self {
            received: Received::new(),
            replies: Replies::new(reply_capacity),
            headers: Headers::new(),
            segmenting: None,
        }
    }

    /// Waits in the event loop until datagrams arrive, then takes up to
    /// [`BATCH`] of them; 0 once the socket is shut down for reading.
    pub(in crate::listen) async fn receive(&mut self, socket: &mut Socket) -> io::Result<usize> {
        take_when_readable(socket, |socket| self.take(socket, libc::MSG_DONTWAIT)).await
    }

    /// Blocks the thread until a datagram arrives (at most the socket's
    /// receive timeout, then `WouldBlock`), then takes it and what else is
    /// waiting, up to [`BATCH`].
    pub(in crate::listen) fn receive_waiting(&mut self, socket: &mut Socket) -> io::Result<usize> {
        self.take(socket.for_waiting(), libc::MSG_WAITFORONE)
    }

    /// Who sent datagram `i`.
    pub(in crate::listen) fn peer(&self, i: usize) -> Option<SocketAddr> {
        let (address, &len) = (self.headers.peers.get(i)?, self.headers.peer_lens.get(i)?);
        let len = len.min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
        // SAFETY: `address` is a whole `sockaddr_storage`, and `len`, at
        // most its size, is the length the kernel gave for what it wrote.
        #[allow(unsafe_code)]
        let address = unsafe { SockaddrStorage::from_raw((&raw const *address).cast(), Some(len)) };
        address.and_then(to_socket_addr)
    }

    /// One `recvmmsg`: up to [`BATCH`] datagrams.
    fn take(&mut self, socket: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        let Self {
            received, headers, ..
        } = self;
        let Headers {
            receive,
            receive_iovecs,
            peers,
            peer_lens,
            ..
        } = &mut **headers;
        for (i, slot) in received.buffers.chunks_exact_mut(SLOT).enumerate() {
            receive_iovecs[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            let header = &mut receive[i].msg_hdr;
            header.msg_name = (&raw mut peers[i]).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut receive_iovecs[i];
            header.msg_iovlen = 1;
        }
        let count = call(libc::SYS_recvmmsg, socket, receive, flags)?;
        for (i, message) in receive.iter().take(count).enumerate() {
            let truncated = message.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            received.lens[i] = if truncated {
                usize::MAX
            } else {
                message.msg_len as usize
            };
            peer_lens[i] = message.msg_hdr.msg_namelen;
        }
        Ok(count)
    }

    /// Sends every reply marked ready, in as few `sendmmsg` calls as the
    /// socket takes, then clears them, sent or not. A message the kernel
    /// refuses (a firewall, an unreachable peer) is skipped, not the rest;
    /// when it may not cut a message of several replies into datagrams,
    /// that message and the rest go again one reply a message, and so do
    /// all of this worker's replies from then on if that is what it was.
    /// A send buffer that stays full drops what is left. Returns the last
    /// error.
    pub(in crate::listen) async fn send(&mut self, socket: &Socket) -> io::Result<()> {
        let segmenting = *self
            .segmenting
            .get_or_insert_with(|| can_segment(socket.udp()));
        let mut failed = None;
        let mut messages = self.headers.lay_out(&self.replies, segmenting);
        let mut sent = 0;
        while sent < messages {
            let pending = &mut self.headers.send[sent..messages];
            match send_retrying(|| {
                call(
                    libc::SYS_sendmmsg,
                    socket.udp(),
                    pending,
                    libc::MSG_DONTWAIT,
                )
            })
            .await
            {
                Ok(taken) => sent += taken.max(1),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    failed = Some(error);
                    break;
                }
                // `sendmmsg` fails only when its first message does. The
                // rest of the batch goes one reply a message; if the first
                // reply of the refused message is then taken alone, being
                // cut up was the cause, and this worker stops asking for it.
                Err(error) if self.headers.is_segmented(sent) && cannot_cut_up(&error) => {
                    for &i in self.headers.sent_before(sent) {
                        self.replies.ready[i] = None;
                    }
                    let first = self.headers.first_reply(sent);
                    if self.sent_alone(socket.udp(), first) {
                        debug!(%error, "UDP segmentation refused: one reply a message from now on");
                        self.segmenting = Some(false);
                        self.replies.ready[first] = None;
                    }
                    messages = self.headers.lay_out(&self.replies, false);
                    sent = 0;
                }
                Err(error) => {
                    sent += 1;
                    failed = Some(error);
                }
            }
        }
        self.replies.clear();
        failed.map_or(Ok(()), Err)
    }

    /// Sends reply `i` alone, without blocking; whether the kernel took it.
    fn sent_alone(&self, socket: &UdpSocket, i: usize) -> bool {
        let reply = self.replies.to_send().find(|&(j, _)| j == i);
        match (reply, self.peer(i)) {
            (Some((_, reply)), Some(peer)) => send_now(socket, reply, peer).is_ok(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A server on `loopback` (port 0) and two clients; client `c` sends
    /// the datagrams of `queries[c]`, all before the server takes them,
    /// and the batch echoes each with a marker. Returns the server, the
    /// batch holding the replies ready to send, and the clients.
    async fn replies_ready(
        loopback: &str,
        queries: [&[&[u8]]; 2],
    ) -> (Socket, Batch, [tokio::net::UdpSocket; 2]) {
        let mut server = Socket::new(UdpSocket::bind(loopback).unwrap()).unwrap();
        let to = server.udp().local_addr().unwrap();
        let clients = [
            tokio::net::UdpSocket::bind(loopback).await.unwrap(),
            tokio::net::UdpSocket::bind(loopback).await.unwrap(),
        ];
        for (client, queries) in clients.iter().zip(queries) {
            for query in queries {
                client.send_to(query, to).await.unwrap();
            }
        }
        let total = queries.iter().map(|queries| queries.len()).sum();
        let mut batch = Batch::new(crate::wire::udp_reply_bound(1232));
        let mut count = 0;
        while count < total {
            count = batch.receive(&mut server).await.unwrap();
            assert!(
                count == total || count == 0,
                "queued datagrams come in one batch"
            );
        }
        for i in 0..count {
            let query = batch.received.get(i).unwrap().to_vec();
            let out = batch.replies.buffer(i).unwrap();
            out.clear();
            out.extend_from_slice(&query);
            out.push(0xee);
            batch.replies.set(i, query.len() + 1);
        }
        (server, batch, clients)
    }

    /// The replies `replies_ready` makes for `queries`, sorted per client.
    fn echoed(queries: [&[&[u8]]; 2]) -> [Vec<Vec<u8>>; 2] {
        queries.map(|queries| {
            let mut replies: Vec<_> = queries.iter().map(|q| [*q, &[0xee]].concat()).collect();
            replies.sort();
            replies
        })
    }

    /// Checks that each client received its `expected` replies (in any
    /// order), each once, and nothing more.
    async fn assert_received(clients: &[tokio::net::UdpSocket; 2], expected: [Vec<Vec<u8>>; 2]) {
        for (c, (client, expected)) in clients.iter().zip(expected).enumerate() {
            let mut buf = [0u8; 64];
            let mut seen = Vec::new();
            for _ in 0..expected.len() {
                let wait = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf));
                let len = wait.await.unwrap().unwrap();
                seen.push(buf[..len].to_vec());
            }
            let more = tokio::time::timeout(Duration::from_millis(100), client.recv(&mut buf));
            assert!(
                more.await.is_err(),
                "client {c}: no datagram beyond the replies"
            );
            seen.sort();
            assert_eq!(seen, expected, "client {c}");
        }
    }

    /// Per client, two 2-octet queries and a longer one.
    const TWO_AND_ONE: [&[&[u8]]; 2] = [
        &[&[0, 0], &[0, 1], &[0, 2, 0]],
        &[&[1, 0], &[1, 1], &[1, 2, 0]],
    ];

    /// The replies to [`TWO_AND_ONE`] on `loopback`: laid out as four
    /// messages (per client, its two 3-octet replies together, its
    /// longer one apart), and received as six datagrams.
    async fn share_messages_on(loopback: &str) {
        let (server, mut batch, clients) = replies_ready(loopback, TWO_AND_ONE).await;
        assert!(can_segment(server.udp()), "Linux 4.18 or later");
        assert_eq!(batch.headers.lay_out(&batch.replies, true), 4);
        let segments: Vec<_> = batch.headers.send[..4]
            .iter()
            .map(|message| message.msg_hdr.msg_iovlen)
            .collect();
        assert_eq!(segments, [2, 1, 2, 1]);
        assert_eq!(batch.headers.lay_out(&batch.replies, false), 6);
        batch.send(&server).await.unwrap();
        assert_eq!(batch.segmenting, Some(true));
        assert_received(&clients, echoed(TWO_AND_ONE)).await;
    }

    #[tokio::test]
    async fn replies_of_one_length_to_one_peer_share_a_message() {
        share_messages_on("127.0.0.1:0").await;
    }

    #[tokio::test]
    async fn replies_to_an_ipv6_peer_share_a_message_too() {
        share_messages_on("[::1]:0").await;
    }

    /// A whole batch to one peer goes as one message of [`BATCH`]
    /// segments, each received as its own datagram.
    #[tokio::test]
    async fn a_whole_batch_to_one_peer_is_one_message() {
        let queries: Vec<[u8; 2]> = (0..BATCH as u8).map(|q| [0, q]).collect();
        let queries: Vec<&[u8]> = queries.iter().map(|q| &q[..]).collect();
        let all = [&queries[..], &[]];
        let (server, mut batch, clients) = replies_ready("127.0.0.1:0", all).await;
        assert_eq!(batch.headers.lay_out(&batch.replies, true), 1);
        batch.send(&server).await.unwrap();
        assert_eq!(batch.segmenting, Some(true));
        assert_received(&clients, echoed(all)).await;
    }

    /// A client that takes coalesced datagrams (`UDP_GRO`) receives a
    /// shared message whole: the proof that `send` shared it.
    #[tokio::test]
    async fn a_shared_message_leaves_as_one_packet() {
        const TWO: [&[&[u8]]; 2] = [&[&[0, 0], &[0, 1]], &[]];
        let (server, mut batch, [client, _]) = replies_ready("127.0.0.1:0", TWO).await;
        nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::UdpGroSegment, &true)
            .unwrap();
        batch.send(&server).await.unwrap();
        let mut buf = [0u8; 64];
        let wait = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf));
        let len = wait.await.unwrap().unwrap();
        assert_eq!(&buf[..len], &[0, 0, 0xee, 0, 1, 0xee]);
    }

    /// Turns UDP checksums off for `socket` (SO_NO_CHECK): Linux then
    /// refuses to cut a message into datagrams (EINVAL), as it does on
    /// routes through IPsec or devices without checksum offload (EIO),
    /// and still sends a reply alone.
    fn checksums_off(socket: &UdpSocket) {
        crate::listen::set_int_option(socket, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
    }

    #[tokio::test]
    async fn replies_the_kernel_will_not_cut_up_go_one_by_one() {
        let (server, mut batch, clients) = replies_ready("127.0.0.1:0", TWO_AND_ONE).await;
        checksums_off(server.udp());
        batch.send(&server).await.unwrap();
        assert_eq!(batch.segmenting, Some(false), "given up");
        assert_received(&clients, echoed(TWO_AND_ONE)).await;
    }

    /// The first message (one reply) is sent, the second (two) refused:
    /// the first reply is not sent again, the other two go one by one.
    #[tokio::test]
    async fn replies_sent_before_a_refused_message_go_once() {
        const ONE_THEN_TWO: [&[&[u8]]; 2] = [&[&[0, 0]], &[&[1, 0], &[1, 1]]];
        let (server, mut batch, clients) = replies_ready("127.0.0.1:0", ONE_THEN_TWO).await;
        assert_eq!(batch.headers.lay_out(&batch.replies, true), 2);
        checksums_off(server.udp());
        batch.send(&server).await.unwrap();
        assert_eq!(batch.segmenting, Some(false));
        assert_received(&clients, echoed(ONE_THEN_TWO)).await;
    }

    /// Replies to port 0 are refused with EINVAL whether they share a
    /// message or not: that does not stop this worker cutting messages up.
    #[tokio::test]
    async fn a_peer_that_cannot_be_answered_leaves_segmenting_on() {
        let (server, mut batch, clients) = replies_ready("127.0.0.1:0", TWO_AND_ONE).await;
        for peer in &mut batch.headers.peers[3..6] {
            // SAFETY: the kernel wrote an IPv4 address here (the server is
            // on 127.0.0.1), which a `sockaddr_storage` has room and
            // alignment for.
            #[allow(unsafe_code)]
            let peer = unsafe { &mut *(&raw mut *peer).cast::<libc::sockaddr_in>() };
            peer.sin_port = 0;
        }
        let error = batch.send(&server).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(batch.segmenting, Some(true), "still on");
        assert_received(&clients, [echoed(TWO_AND_ONE)[0].clone(), Vec::new()]).await;
    }
}
