//! The local listeners: UDP and TCP answers, RFC 7766 pipelining with
//! out-of-order answers, the TCP connection cap and idle timeout.

use std::{collections::HashSet, time::Duration};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use tokio::io::AsyncWriteExt;

use crate::support::{
    client::{self, Tcp, a_records},
    dot_upstream::Script,
    fixtures::{BIG_NAME, expected_a},
    server::{Harness, Options},
};

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let rig = Harness::start(Script::Answer).await;
    let reply = client::udp(
        rig.dotstub.addr,
        &client::query("www.example.test.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&reply), [expected_a("www.example.test")]);
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    let query = client::query("mail.example.test.", RecordType::A);
    tcp.send(&query).await;
    let reply = tcp.recv().await;
    assert_eq!(reply.metadata.id, query.metadata.id);
    assert_eq!(a_records(&reply), [expected_a("mail.example.test")]);
}

#[tokio::test]
async fn tcp_pipelined_queries_are_answered_out_of_order() {
    let slow = ("slow.example.test".to_owned(), Duration::from_millis(400));
    let rig = Harness::start(Script::DelayByName(vec![slow])).await;
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    let first = client::query("slow.example.test.", RecordType::A);
    let second = client::query("fast.example.test.", RecordType::A);
    tcp.send(&first).await;
    tcp.send(&second).await;
    let (a, b) = (tcp.recv().await, tcp.recv().await);
    assert_eq!(
        a.metadata.id, second.metadata.id,
        "the fast answer overtakes the slow one"
    );
    assert_eq!(a_records(&a), [expected_a("fast.example.test")]);
    assert_eq!(b.metadata.id, first.metadata.id);
    assert_eq!(a_records(&b), [expected_a("slow.example.test")]);
}

#[tokio::test]
async fn tcp_connections_beyond_the_cap_are_refused_and_counted() {
    let options = Options {
        listen: "max_tcp_connections = 2",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    let mut open = Vec::new();
    for name in ["one.example.test.", "two.example.test."] {
        let mut tcp = Tcp::connect(rig.dotstub.addr).await;
        tcp.send(&client::query(name, RecordType::A)).await;
        assert_eq!(a_records(&tcp.recv().await).len(), 1);
        open.push(tcp);
    }
    let mut third = Tcp::connect(rig.dotstub.addr).await;
    third
        .send(&client::query("three.example.test.", RecordType::A))
        .await;
    assert_eq!(
        third.recv_bytes().await,
        None,
        "the third connection is closed unanswered"
    );
    assert_eq!(rig.dotstub.metrics.server.tcp_refused.get(), 1);
    drop(open);
    // A slot frees when a client leaves.
    let mut later = Tcp::connect(rig.dotstub.addr).await;
    later
        .send(&client::query("four.example.test.", RecordType::A))
        .await;
    let reply = tokio::time::timeout(client::CLIENT_TIMEOUT, async {
        loop {
            if let Some(reply) = later.recv_bytes().await {
                return reply;
            }
            // The slot may not be free yet: the server notices the close first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            later = Tcp::connect(rig.dotstub.addr).await;
            later
                .send(&client::query("four.example.test.", RecordType::A))
                .await;
        }
    })
    .await
    .expect("a freed slot takes a new client");
    assert!(!reply.is_empty());
}

#[tokio::test]
async fn idle_tcp_connection_is_closed_and_counted() {
    let options = Options {
        listen: "tcp_idle_timeout_ms = 200",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    tcp.send(&client::query("www.example.test.", RecordType::A))
        .await;
    assert_eq!(a_records(&tcp.recv().await).len(), 1);
    assert_eq!(
        tcp.recv_bytes().await,
        None,
        "dotstub closes the idle connection"
    );
    assert_eq!(rig.dotstub.metrics.server.tcp_idle_closed.get(), 1);
}

#[tokio::test]
async fn slow_answer_keeps_an_idle_tcp_connection_open() {
    // The idle timer must not cut a connection that still owes an answer.
    let options = Options {
        listen: "tcp_idle_timeout_ms = 100",
        ..Options::default()
    };
    let rig = Harness::with(Script::Delay(Duration::from_millis(400)), options).await;
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    tcp.send(&client::query("late.example.test.", RecordType::A))
        .await;
    assert_eq!(
        a_records(&tcp.recv().await),
        [expected_a("late.example.test")]
    );
}

#[tokio::test]
async fn shutdown_answers_queries_in_flight_then_stops_listening() {
    let rig = Harness::start(Script::Delay(Duration::from_millis(300))).await;
    let addr = rig.dotstub.addr;
    let query = client::query("inflight.example.test.", RecordType::A);
    let in_flight = tokio::spawn(async move { client::udp(addr, &query).await });
    // Let the query reach the upstream before shutting down.
    while rig.upstream.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.dotstub.stop().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(a_records(&reply), [expected_a("inflight.example.test")]);
    let late = client::encode(&client::query("late.example.test.", RecordType::A));
    assert_eq!(
        client::udp_bytes(addr, &late, Duration::from_millis(300)).await,
        None
    );
}

#[tokio::test]
async fn shutdown_during_a_stall_answers_every_pipelined_query() {
    // Regression (issue 13): a TCP client that had pipelined 200 queries
    // got 59 answers, then a reset.
    let options = Options {
        forward: "timeout_ms = 1000",
        cache: "enabled = false",
        ..Options::default()
    };
    let rig = Harness::with(Script::Stall, options).await;
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    let ids: HashSet<u16> = (0..200u16)
        .map(|i| {
            let mut query = client::query(&format!("q{i}.stall.test."), RecordType::A);
            query.metadata.id = i;
            query
        })
        .map(|query| (query.metadata.id, client::encode(&query)))
        .map(|(id, bytes)| {
            let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&bytes);
            (id, frame)
        })
        .map(|(id, frame)| {
            tcp.buffer(&frame);
            id
        })
        .collect();
    tcp.flush().await;
    client::eventually("dotstub read the first pipelined queries", || {
        rig.dotstub.metrics.server.tcp_queries.get() >= 64
    })
    .await;
    let stopped = tokio::spawn(rig.dotstub.stop());
    let mut answered = HashSet::new();
    while let Some(bytes) = tcp.recv_bytes().await {
        let reply = Message::from_vec(&bytes).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        answered.insert(reply.metadata.id);
    }
    assert_eq!(
        answered, ids,
        "every query sent before the signal is answered"
    );
    stopped.await.unwrap();
}

#[tokio::test]
async fn at_max_queries_in_flight_new_queries_get_servfail_at_once() {
    let options = Options {
        listen: "max_queries_in_flight = 2",
        forward: "timeout_ms = 2000",
        ..Options::default()
    };
    let rig = Harness::with(Script::Stall, options).await;
    let addr = rig.dotstub.addr;
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            client::ask_in_background(addr, &format!("w{i}.busy.test."), Duration::from_secs(3))
        })
        .collect();
    client::eventually("both slots are taken", || {
        rig.upstream.received().len() == 2
    })
    .await;
    for i in 0..3 {
        let bytes = client::encode(&client::query(&format!("o{i}.busy.test."), RecordType::A));
        // Far sooner than the 2 s the queries in flight wait.
        let reply = client::udp_bytes(addr, &bytes, Duration::from_millis(500))
            .await
            .expect("an answer, not silence");
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        let (code, text) = client::extended_error(&reply).expect("an Extended DNS Error");
        assert_eq!(
            (code, text.as_str()),
            (0, "resolver overloaded: too many queries in flight")
        );
    }
    // Over TCP too.
    let mut tcp = Tcp::connect(addr).await;
    tcp.send(&client::query("tcp.busy.test.", RecordType::A))
        .await;
    assert_eq!(
        tcp.recv().await.metadata.response_code,
        ResponseCode::ServFail
    );
    assert_eq!(rig.dotstub.metrics.server.overloaded.get(), 4);
    for query in waiting {
        let reply = query.await.unwrap().expect("a reply");
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
}

#[tokio::test]
async fn client_that_never_reads_cannot_starve_others() {
    let options = Options {
        listen: "max_queries_in_flight = 8\nmax_queries_per_tcp_connection = 4\ntcp_idle_timeout_ms = 500",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    // A client with a tiny receive window asks for big answers and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut greedy = socket.connect(rig.dotstub.addr).await.unwrap();
    let query = client::encode(&client::query(BIG_NAME, RecordType::TXT));
    let mut frame = (query.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&query);
    for _ in 0..200 {
        if tokio::time::timeout(Duration::from_millis(50), greedy.write_all(&frame))
            .await
            .is_err()
        {
            break; // dotstub stopped reading: the pipeline limit pushes back
        }
    }
    for i in 0..20 {
        let name = format!("other{i}.example.test.");
        let reply = client::udp(rig.dotstub.addr, &client::query(&name, RecordType::A)).await;
        assert_eq!(a_records(&reply), [expected_a(&name)]);
    }
    assert_eq!(rig.dotstub.metrics.server.overloaded.get(), 0);
    drop(greedy);
}

#[test]
fn udp_workers_stop_when_the_servers_runtime_goes_away() {
    // The UDP workers run on threads of their own. A server dropped
    // mid-run (its runtime shut down, no clean stop) must still stop them
    // and free the port, or a later server on that port would share it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, upstream) = runtime.block_on(async {
        let rig = Harness::start(Script::Answer).await;
        let reply = client::udp(
            rig.dotstub.addr,
            &client::query("w.example.test.", RecordType::A),
        )
        .await;
        assert_eq!(a_records(&reply).len(), 1);
        (rig.dotstub.addr, rig)
    });
    drop(runtime);
    drop(upstream);
    let freed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::net::UdpSocket::bind(addr).is_ok()
    });
    assert!(freed, "the UDP port of a dropped server is released");
}
