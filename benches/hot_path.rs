//! Micro-benchmarks of the cache-hit path, step by step: parse the query,
//! build the key, find the entry and copy and patch it for the client
//! (`Cache::answer`), and the whole `answer_now`. divan reports nanoseconds and, through its
//! allocation profiler, allocations per call (all must be 0).
//!
//! Run: `cargo bench --bench hot_path`.

// Benchmark set-up may panic on what cannot happen.
#![allow(clippy::unwrap_used)]

use std::{hint::black_box, sync::Arc};

use divan::{AllocProfiler, Bencher};
use dotstub::{
    cache::{Cache, Clock, Hit, KeyBuf},
    config::Config,
    metrics::Metrics,
    resolver::{Immediate, Resolver, Settings},
    upstream::Pool,
    wire::{Answer, Query, Question, Recipient, Transport},
};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query as HickoryQuery},
    rr::{Name, RData, Record, RecordType, rdata::A},
};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const NAME: &str = "www.example.com.";

/// A client query for NAME/A with an OPT record, spelled `spelling`.
fn client_query(spelling: &str) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(HickoryQuery::query(
        Name::from_ascii(spelling).unwrap(),
        RecordType::A,
    ));
    message.set_edns(Edns::new());
    message.to_vec().unwrap()
}

/// An upstream answer for NAME/A with two records.
fn upstream_answer() -> Answer {
    let name = Name::from_ascii(NAME).unwrap();
    let mut message = Message::new(7, MessageType::Response, OpCode::Query);
    message.add_query(HickoryQuery::query(name.clone(), RecordType::A));
    for octet in [1, 2] {
        let record = Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, octet)));
        message.add_answer(record);
    }
    message.set_edns(Edns::new());
    let bytes = message.to_vec().unwrap();
    let question = Question::parse(&bytes, 12).unwrap();
    Answer::from_upstream(&bytes, &question).unwrap().0
}

/// A resolver whose cache holds NAME/A; its upstream is never contacted.
fn warm_resolver() -> Arc<Resolver> {
    let text = "[[upstream]]\naddress = \"127.0.0.1:853\"\ntls_name = \"dot.test\"\n";
    let config = Config::from_toml(text, "bench").unwrap();
    let metrics = Arc::new(Metrics::new(["bench"]));
    let pool = Pool::new(&config, &metrics, false).unwrap();
    let cache = Cache::new(&config.cache, Arc::clone(&metrics.cache));
    let key = KeyBuf::of(&Query::parse(&client_query(NAME)).unwrap());
    cache.insert(&key, &upstream_answer(), 0);
    let settings = Settings::from_config(&config);
    Arc::new(Resolver::new(
        pool,
        Some(cache),
        None,
        settings,
        Clock::system(),
        metrics,
    ))
}

#[divan::bench]
fn parse_query(bencher: Bencher) {
    let packet = client_query("WwW.ExAmple.CoM.");
    bencher.bench(|| Query::parse(black_box(&packet)).is_ok());
}

#[divan::bench]
fn build_key(bencher: Bencher) {
    let packet = client_query("WwW.ExAmple.CoM.");
    let query = Query::parse(&packet).unwrap();
    // In place, as the hit path builds it.
    let mut key = KeyBuf::EMPTY;
    bencher.bench_local(|| {
        key.set(black_box(&query));
        key.as_bytes().len()
    });
}

#[divan::bench]
fn find_copy_and_patch(bencher: Bencher) {
    let resolver = warm_resolver();
    let cache = resolver.cache().unwrap();
    let packet = client_query("WwW.ExAmple.CoM.");
    let query = Query::parse(&packet).unwrap();
    let key = KeyBuf::of(&query);
    let to = Recipient {
        query: &query,
        transport: Transport::Udp,
        udp_size: 1232,
    };
    let mut out = Vec::with_capacity(65_535);
    bencher.bench_local(|| {
        let hit = cache.answer(black_box(&key), &to, 5000, &mut out);
        matches!(hit, Hit::Fresh(_))
    });
}

#[divan::bench]
fn answer_now(bencher: Bencher) {
    let resolver = warm_resolver();
    let packet = client_query("WwW.ExAmple.CoM.");
    let mut out = Vec::with_capacity(65_535);
    bencher.bench_local(|| {
        matches!(
            resolver.answer_now(black_box(&packet), Transport::Udp, 5000, &mut out),
            Immediate::Reply(_)
        )
    });
}
