//! A plain DNS client for the tests: queries built with hickory, sent to
//! dotstub over UDP or TCP on loopback.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType, rdata::opt::EdnsOption},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// How long a test client waits for one reply before failing the test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A query for `name`/`qtype` with RD=1 and an OPT record (payload 1232).
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = query_without_edns(name, qtype);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message
}

/// A query for `name`/`qtype` with RD=1 and no OPT record.
pub fn query_without_edns(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("test name is valid"),
        qtype,
    ));
    message
}

/// Encodes `message`, keeping the question's letter case as written.
pub fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().expect("test message encodes")
}

/// Sends `message` over UDP and returns the reply.
pub async fn udp(server: SocketAddr, message: &Message) -> Message {
    let reply = udp_bytes(server, &encode(message), CLIENT_TIMEOUT)
        .await
        .expect("dotstub answers over UDP");
    Message::from_vec(&reply).expect("reply parses")
}

/// Sends raw `bytes` over UDP; `None` when nothing comes back within `wait`.
pub async fn udp_bytes(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind client socket");
    socket.send_to(bytes, server).await.expect("send query");
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Asks `name`/A over UDP in a task of its own, for tests that send more
/// queries meanwhile; the reply, parsed, or `None` after `wait`.
pub fn ask_in_background(
    server: SocketAddr,
    name: &str,
    wait: Duration,
) -> tokio::task::JoinHandle<Option<Message>> {
    let bytes = encode(&query(name, RecordType::A));
    tokio::spawn(async move {
        let reply = udp_bytes(server, &bytes, wait).await?;
        Some(Message::from_vec(&reply).expect("reply parses"))
    })
}

/// A TCP connection to dotstub, RFC 1035 §4.2.2 framing.
pub struct Tcp {
    stream: TcpStream,
    /// Framed messages queued by [`Tcp::buffer`].
    pending: Vec<u8>,
}

impl Tcp {
    /// Connects.
    pub async fn connect(server: SocketAddr) -> Tcp {
        Tcp {
            stream: TcpStream::connect(server)
                .await
                .expect("connect to dotstub over TCP"),
            pending: Vec::new(),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &Message) {
        self.send_bytes(&encode(message)).await;
    }

    /// Sends raw bytes as one framed message.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(bytes);
        self.stream
            .write_all(&frame)
            .await
            .expect("write to dotstub");
    }

    /// Queues raw octets, already framed, to go out with the next flush.
    pub fn buffer(&mut self, frame: &[u8]) {
        self.pending.extend_from_slice(frame);
    }

    /// Writes what [`Tcp::buffer`] queued, in one go.
    pub async fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.stream
            .write_all(&pending)
            .await
            .expect("write to dotstub");
    }

    /// Reads one framed reply; `None` when the connection closed.
    pub async fn recv_bytes(&mut self) -> Option<Vec<u8>> {
        let read = async {
            let len = self.stream.read_u16().await.ok()?;
            let mut buf = vec![0u8; usize::from(len)];
            self.stream.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        tokio::time::timeout(CLIENT_TIMEOUT, read)
            .await
            .expect("dotstub replies or closes in time")
    }

    /// Reads one reply.
    pub async fn recv(&mut self) -> Message {
        let bytes = self.recv_bytes().await.expect("dotstub answers over TCP");
        Message::from_vec(&bytes).expect("reply parses")
    }
}

/// The addresses of the A records in the answer section.
pub fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The EDNS option codes of a message's OPT record, in order.
pub fn option_codes(message: &Message) -> Vec<u16> {
    message
        .edns
        .as_ref()
        .map(|edns| {
            edns.options()
                .as_ref()
                .iter()
                .map(|(code, _)| u16::from(*code))
                .collect()
        })
        .unwrap_or_default()
}

/// EDNS option code of Extended DNS Errors (RFC 8914).
const EXTENDED_ERROR: u16 = 15;

/// The reply's Extended DNS Error: INFO-CODE and EXTRA-TEXT, if it has one.
pub fn extended_error(reply: &Message) -> Option<(u16, String)> {
    let options = reply.edns.as_ref()?.options().as_ref();
    options.iter().find_map(|(_, option)| match option {
        EdnsOption::Unknown(EXTENDED_ERROR, data) if data.len() >= 2 => {
            let code = u16::from_be_bytes([data[0], data[1]]);
            Some((code, String::from_utf8_lossy(&data[2..]).into_owned()))
        }
        _ => None,
    })
}

/// Waits until `condition` holds, for at most the client timeout.
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(CLIENT_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}"));
}
