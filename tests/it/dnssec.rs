//! DNSSEC validation end to end (issue 4): dotstub, told to validate with
//! the private root's trust anchor, in front of an upstream serving the
//! signed hierarchy (`support::signed`) as a resolver would with DO=1 and
//! CD=1. Each case of `signed::CASES` must end in its rcode, AD bit and
//! Extended DNS Error; clients without DO see no DNSSEC records; CD=1 gets
//! the data unchecked; upstream queries ask for DO=1 and CD=1; a DS or
//! DNSKEY fetch that times out fails with No Reachable Authority (and is
//! counted indeterminate); simultaneous queries into a cold zone fetch its
//! keys once, and share a fetch that fails (unless it failed for want of
//! time); a warm key cache asks upstream only the question; no TTL outlives the
//! signatures it rests on.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tempfile::NamedTempFile;

use crate::support::{
    client::{self, Tcp, extended_error},
    dot_upstream::{Responder, Script},
    server::{Harness, Options},
    signed::{CASES, Case, Hierarchy, SHORT_LIFETIME, Verdict},
};

/// 22: No Reachable Authority (RFC 8914 §4.23).
const NO_REACHABLE_AUTHORITY: u16 = 22;

/// `[forward] timeout_ms` of the fetch timeout tests: short, so a fetch
/// that is never answered fails fast.
const SHORT_TIMEOUT: Duration = Duration::from_millis(500);
/// [`SHORT_TIMEOUT`] as the `[forward]` line that sets it.
const SHORT_TIMEOUT_LINE: &str = "timeout_ms = 500";

/// dotstub validating with an anchor file, in front of the hierarchy.
struct Validating {
    rig: Harness,
    /// The trust anchor file, kept until the test ends.
    _anchor: NamedTempFile,
}

impl Validating {
    /// Anchored on the root's DS.
    async fn start() -> Validating {
        Self::with_anchor(&Hierarchy::shared().trust_anchor_text()).await
    }

    async fn with_anchor(text: &str) -> Validating {
        Self::with(Hierarchy::shared().script(), text, "").await
    }

    /// Anchored on the root's DS, in front of an upstream following
    /// `script`, with `forward` as the `[forward]` lines.
    async fn with_script(script: Script, forward: &'static str) -> Validating {
        Self::with(script, &Hierarchy::shared().trust_anchor_text(), forward).await
    }

    async fn with(script: Script, anchor_text: &str, forward: &'static str) -> Validating {
        let mut anchor = NamedTempFile::new().unwrap();
        anchor.write_all(anchor_text.as_bytes()).unwrap();
        let path = anchor.path().display().to_string();
        let dnssec = format!("validate = true\ntrust_anchor_file = {path:?}");
        let options = Options {
            dnssec: Box::leak(dnssec.into_boxed_str()),
            forward,
            ..Options::default()
        };
        let rig = Harness::with(script, options).await;
        Validating {
            rig,
            _anchor: anchor,
        }
    }

    /// Asks over TCP, so RSA-signed answers are never truncated.
    async fn ask(&self, query: &Message) -> Message {
        let mut tcp = Tcp::connect(self.rig.dotstub.addr).await;
        tcp.send(query).await;
        tcp.recv().await
    }

    /// Asks all of `questions` at once, with DO=1; the replies in the same
    /// order.
    async fn ask_together(&self, questions: &[(&str, RecordType)]) -> Vec<Message> {
        let queries: Vec<Message> = questions
            .iter()
            .map(|&(qname, qtype)| query_with_do(qname, qtype))
            .collect();
        join_all(queries.iter().map(|query| self.ask(query))).await
    }

    /// How many times the upstream was asked `qname` (lowercase) `qtype`.
    fn times_asked(&self, qname: &str, qtype: RecordType) -> usize {
        let asked = (qname.to_owned(), qtype);
        let sent = self.upstream_questions(0);
        sent.iter().filter(|&sent| *sent == asked).count()
    }

    /// The questions the upstream received, from the `since`th on, names
    /// lowercase.
    fn upstream_questions(&self, since: usize) -> Vec<(String, RecordType)> {
        let received = self.rig.upstream.received();
        let question = |message: &Message| {
            let question = &message.queries[0];
            let name = question.name().to_lowercase().to_ascii();
            (name, question.query_type())
        };
        received[since..]
            .iter()
            .map(|query| question(query.message.as_ref().unwrap()))
            .collect()
    }

    /// Whether the upstream received `qname`/`qtype`, from the `since`th
    /// query on.
    fn asked_upstream(&self, since: usize, qname: &str, qtype: RecordType) -> bool {
        let wanted = (qname.to_owned(), qtype);
        self.upstream_questions(since).contains(&wanted)
    }

    /// Asks and measures how long the reply took.
    async fn ask_timed(&self, query: &Message) -> (Message, Duration) {
        let started = Instant::now();
        let reply = self.ask(query).await;
        (reply, started.elapsed())
    }
}

#[tokio::test]
async fn every_case_ends_in_its_rcode_ad_bit_and_extended_error() {
    let dotstub = Validating::start().await;
    let mut failures = Vec::new();
    for case in CASES {
        let reply = dotstub.ask(&with_do(case)).await;
        failures.extend(mismatch(case, &reply).map(|why| format!("{case}: {why}")));
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn clients_without_do_get_no_dnssec_records_and_no_ad() {
    let dotstub = Validating::start().await;
    for case in CASES.iter().filter(|case| case.verdict == Verdict::Secure) {
        let plain = client::query(case.qname, case.qtype);
        let without_edns = client::query_without_edns(case.qname, case.qtype);
        for query in [plain, without_edns] {
            let reply = dotstub.ask(&query).await;
            assert_eq!(reply.metadata.response_code, case.rcode, "{case}");
            assert!(
                !reply.metadata.authentic_data,
                "{case}: AD without DO or AD in the query"
            );
            let dnssec = reply.all_sections().filter(|r| is_dnssec(r)).count();
            assert_eq!(dnssec, 0, "{case}: DNSSEC records without DO");
        }
    }
}

#[tokio::test]
async fn ad_in_the_query_asks_for_ad_without_do() {
    // RFC 6840 §5.7: a client that sets AD understands it.
    let dotstub = Validating::start().await;
    let mut query = client::query("www.ecdsap256.tld.", RecordType::A);
    query.metadata.authentic_data = true;
    let reply = dotstub.ask(&query).await;
    assert!(reply.metadata.authentic_data);
    assert_eq!(reply.all_sections().filter(|r| is_dnssec(r)).count(), 0);
    let mut query = client::query("www.insecure.tld.", RecordType::A);
    query.metadata.authentic_data = true;
    assert!(!dotstub.ask(&query).await.metadata.authentic_data);
}

#[tokio::test]
async fn checking_disabled_gets_bogus_data_unvalidated() {
    let dotstub = Validating::start().await;
    for case in CASES.iter().filter(|case| case.verdict == Verdict::Bogus) {
        let mut query = with_do(case);
        query.metadata.checking_disabled = true;
        let reply = dotstub.ask(&query).await;
        assert_eq!(reply.metadata.response_code, case.rcode, "{case}");
        assert!(!reply.metadata.authentic_data, "{case}");
        assert_eq!(extended_error(&reply), None, "{case}");
    }
    let corrupt = CASES
        .iter()
        .find(|case| case.qname == "corrupt.bogus.tld.")
        .unwrap();
    let mut query = with_do(corrupt);
    query.metadata.checking_disabled = true;
    assert_eq!(client::a_records(&dotstub.ask(&query).await).len(), 1);
}

#[tokio::test]
async fn bogus_answers_fail_for_clients_without_do_too() {
    let dotstub = Validating::start().await;
    let reply = dotstub
        .ask(&client::query("corrupt.bogus.tld.", RecordType::A))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(reply.answers.is_empty());
}

#[tokio::test]
async fn cached_secure_answers_stay_authenticated() {
    let dotstub = Validating::start().await;
    for qname in ["www.rsasha256.tld.", "nx.nsec3.tld.", "x.w.nsec.tld."] {
        let case = CASES.iter().find(|case| case.qname == qname).unwrap();
        let first = dotstub.ask(&with_do(case)).await;
        let asked = dotstub.rig.upstream.received().len();
        let again = dotstub.ask(&with_do(case)).await;
        assert_eq!(
            dotstub.rig.upstream.received().len(),
            asked,
            "{case}: from the cache"
        );
        assert!(
            first.metadata.authentic_data && again.metadata.authentic_data,
            "{case}"
        );
        assert_eq!(again.metadata.response_code, case.rcode, "{case}");
        assert_eq!(again.answers.len(), first.answers.len(), "{case}");
    }
}

#[tokio::test]
async fn upstream_queries_ask_for_dnssec_records_unchecked() {
    let dotstub = Validating::start().await;
    for qname in ["www.ed25519.tld.", "nx.nsec.tld.", "www.insecure.tld."] {
        dotstub.ask(&client::query(qname, RecordType::A)).await;
    }
    let received = dotstub.rig.upstream.received();
    assert!(received.len() > 3, "the chain of trust was fetched too");
    for query in received {
        let query = query.message.unwrap();
        let edns = query.edns.as_ref().expect("upstream queries carry OPT");
        assert!(edns.flags().dnssec_ok, "DO=1: {:?}", query.queries);
        assert!(
            query.metadata.checking_disabled,
            "CD=1: {:?}",
            query.queries
        );
    }
}

#[tokio::test]
async fn dnskey_trust_anchor_works_like_a_ds_anchor() {
    let anchor = Hierarchy::shared().trust_anchor_dnskey_text();
    let dotstub = Validating::with_anchor(&anchor).await;
    let case = CASES
        .iter()
        .find(|case| case.qname == "www.ecdsap256.tld.")
        .unwrap();
    let reply = dotstub.ask(&with_do(case)).await;
    assert_eq!(mismatch(case, &reply), None);
}

#[tokio::test]
async fn ds_fetch_that_times_out_fails_with_no_reachable_authority() {
    let hierarchy = Hierarchy::shared();
    let script = hierarchy.script_silent_on("ecdsap256.tld.", RecordType::DS);
    let dotstub = Validating::with_script(script, SHORT_TIMEOUT_LINE).await;
    let (reply, took) = dotstub
        .ask_timed(&query_with_do("www.ecdsap256.tld.", RecordType::A))
        .await;
    assert_unreachable(&reply, "ecdsap256.tld", took);
    assert_eq!(dotstub.rig.dotstub.metrics.dnssec.indeterminate.get(), 1);
    let silenced = dotstub.asked_upstream(0, "ecdsap256.tld.", RecordType::DS);
    assert!(silenced, "the DS query was sent and left unanswered");
    // The validator does not remember the failure: once the upstream
    // answers, the DS is asked again and another name of the zone (not in
    // the answer cache) validates.
    dotstub.rig.upstream.set_script(hierarchy.script());
    let before = dotstub.rig.upstream.received().len();
    let again = dotstub
        .ask(&query_with_do("www.ecdsap256.tld.", RecordType::TXT))
        .await;
    assert_eq!(again.metadata.response_code, ResponseCode::NoError);
    assert!(again.metadata.authentic_data, "secure once reachable");
    let asked_again = dotstub.asked_upstream(before, "ecdsap256.tld.", RecordType::DS);
    assert!(asked_again, "the DS is fetched again");
}

#[tokio::test]
async fn dnskey_fetch_that_times_out_fails_with_no_reachable_authority() {
    let hierarchy = Hierarchy::shared();
    let script = hierarchy.script_silent_on("ed25519.tld.", RecordType::DNSKEY);
    let dotstub = Validating::with_script(script, SHORT_TIMEOUT_LINE).await;
    let (reply, took) = dotstub
        .ask_timed(&query_with_do("www.ed25519.tld.", RecordType::A))
        .await;
    assert_unreachable(&reply, "ed25519.tld", took);
    assert_eq!(dotstub.rig.dotstub.metrics.dnssec.indeterminate.get(), 1);
    let silenced = dotstub.asked_upstream(0, "ed25519.tld.", RecordType::DNSKEY);
    assert!(silenced, "the DNSKEY query was sent and left unanswered");
    // A zone whose keys do come is unaffected.
    let other = dotstub
        .ask(&query_with_do("www.ecdsap256.tld.", RecordType::A))
        .await;
    assert!(other.metadata.authentic_data);
}

#[tokio::test]
async fn simultaneous_queries_into_a_cold_zone_fetch_its_keys_once() {
    let dotstub = Validating::start().await;
    let questions = [
        ("www.nsec.tld.", RecordType::A),
        ("www.nsec.tld.", RecordType::TXT),
        ("nx.nsec.tld.", RecordType::A),
        ("x.w.nsec.tld.", RecordType::A),
        ("ent.nsec.tld.", RecordType::A),
        ("ns.nsec.tld.", RecordType::A),
    ];
    let replies = dotstub.ask_together(&questions).await;
    for ((qname, qtype), reply) in questions.iter().zip(&replies) {
        assert!(reply.metadata.authentic_data, "{qname} {qtype}: secure");
    }
    // Every key and DS on the way down was asked for once, by whichever
    // query needed it first; the others waited for it.
    for (qname, qtype) in [
        (".", RecordType::DNSKEY),
        ("tld.", RecordType::DS),
        ("tld.", RecordType::DNSKEY),
        ("nsec.tld.", RecordType::DS),
        ("nsec.tld.", RecordType::DNSKEY),
    ] {
        let asked = dotstub.times_asked(qname, qtype);
        let sent = dotstub.upstream_questions(0);
        assert_eq!(asked, 1, "{qname} {qtype}: asked {asked} times in {sent:?}");
    }
}

/// Queries that wait for the same DS fetch share its failure: one fetch
/// fails, not one per query in turn (each query would still answer in
/// time, but an upstream that fails would be asked again and again).
#[tokio::test]
async fn simultaneous_queries_share_a_failed_key_fetch() {
    let hierarchy = Hierarchy::shared();
    let failing = hierarchy.responder_failing_on("ecdsap256.tld.", RecordType::DS);
    // The failure comes late: meanwhile all the queries reach the DS and
    // wait for it.
    let late = vec![late("ecdsap256.tld.", RecordType::DS, 200)];
    let script = Script::RespondLate(failing, late);
    let dotstub = Validating::with_script(script, "").await;
    let questions = [
        ("www.ecdsap256.tld.", RecordType::A),
        ("www.ecdsap256.tld.", RecordType::TXT),
        ("nx.ecdsap256.tld.", RecordType::A),
        ("ecdsap256.tld.", RecordType::SOA),
    ];
    let replies = dotstub.ask_together(&questions).await;
    for ((qname, qtype), reply) in questions.iter().zip(&replies) {
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::ServFail,
            "{qname} {qtype}"
        );
        let (code, text) = extended_error(reply).expect("an Extended DNS Error");
        assert_eq!(code, NO_REACHABLE_AUTHORITY, "{qname} {qtype}: {text}");
        assert!(text.contains("ecdsap256.tld"), "{qname} {qtype}: {text}");
    }
    let ds_asked = dotstub.times_asked("ecdsap256.tld.", RecordType::DS);
    let sent = dotstub.upstream_questions(0);
    assert_eq!(
        ds_asked, 1,
        "the failing DS asked {ds_asked} times: {sent:?}"
    );
    let counted = dotstub.rig.dotstub.metrics.dnssec.indeterminate.get();
    assert_eq!(counted, questions.len() as u64, "each query counted");
}

/// A fetch that failed because its query ran out of time is not shared:
/// a query that waited behind it, with time to spare, fetches again.
#[tokio::test]
async fn a_fetch_cut_short_by_its_querys_deadline_is_not_shared() {
    let hierarchy = Hierarchy::shared();
    // The first query's answer comes at 450 ms, so it fetches the DS at
    // about 450 ms, which takes 600: past its deadline at 1000. The second
    // query, sent at 800 ms, waits for that fetch; it has until 1800.
    let late = vec![
        late("www.ecdsap256.tld.", RecordType::A, 450),
        late("ecdsap256.tld.", RecordType::DS, 600),
    ];
    let script = Script::RespondLate(hierarchy.responder(), late);
    let dotstub = Validating::with_script(script, "timeout_ms = 1000").await;
    let first = query_with_do("www.ecdsap256.tld.", RecordType::A);
    let second = query_with_do("www.ecdsap256.tld.", RecordType::TXT);
    let (first, second) = tokio::join!(dotstub.ask(&first), async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        dotstub.ask(&second).await
    });
    assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(second.metadata.response_code, ResponseCode::NoError);
    assert!(
        second.metadata.authentic_data,
        "validated after its own fetch"
    );
    let ds_asked = dotstub.times_asked("ecdsap256.tld.", RecordType::DS);
    let sent = dotstub.upstream_questions(0);
    assert_eq!(ds_asked, 2, "the DS asked again: {sent:?}");
}

#[tokio::test]
async fn warm_key_cache_asks_upstream_only_the_question() {
    let dotstub = Validating::start().await;
    let first = dotstub
        .ask(&query_with_do("www.nsec.tld.", RecordType::A))
        .await;
    assert!(
        first.metadata.authentic_data,
        "the zone's keys are now known"
    );
    let others = [
        ("nx.nsec.tld.", RecordType::A),
        ("x.w.nsec.tld.", RecordType::A),
        ("www.nsec.tld.", RecordType::TXT),
        ("ent.nsec.tld.", RecordType::A),
    ];
    for (qname, qtype) in others {
        let before = dotstub.rig.upstream.received().len();
        let reply = dotstub.ask(&query_with_do(qname, qtype)).await;
        assert!(reply.metadata.authentic_data, "{qname} {qtype}: secure");
        let sent = dotstub.upstream_questions(before);
        assert_eq!(
            sent,
            [(qname.to_owned(), qtype)],
            "{qname} {qtype}: only the question goes upstream"
        );
    }
}

#[tokio::test]
async fn secure_answer_ttls_never_outlive_their_signatures() {
    let dotstub = Validating::start().await;
    let failures = ttls_past_signatures(&dotstub, |case| {
        case.rcode == ResponseCode::NoError && case.qtype == RecordType::A
    })
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn secure_denial_ttls_never_outlive_their_signatures() {
    // NXDOMAIN and NODATA rest on NSEC signatures just as data rests on
    // its own: the SOA and NSEC TTLs (the negative cache time) must not
    // outlast them (RFC 4035 §5.3.3; RFC 2308 §5 takes the SOA's TTL).
    let dotstub = Validating::start().await;
    let failures = ttls_past_signatures(&dotstub, |case| {
        case.rcode == ResponseCode::NXDomain || case.qtype == RecordType::TXT
    })
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//---- Helpers ----

/// Every record TTL, in replies to the `short-lived.tld.` cases that
/// `pick` chooses, that is longer than what is left of the signatures:
/// fresh from upstream, again from the cache, and without DO.
async fn ttls_past_signatures(dotstub: &Validating, pick: impl Fn(&Case) -> bool) -> Vec<String> {
    let mut failures = Vec::new();
    let cases = CASES
        .iter()
        .filter(|case| case.qname.ends_with("short-lived.tld.") && pick(case));
    let mut picked = 0;
    for case in cases {
        picked += 1;
        for round in ["upstream", "cache"] {
            let reply = dotstub.ask(&with_do(case)).await;
            if let Some(why) = mismatch(case, &reply) {
                failures.push(format!("{case} ({round}): {why}"));
                continue;
            }
            // dotstub and this test read the clock in whole seconds, maybe
            // either side of a second's boundary: one second of slack.
            let left = signature_time_left(&reply).map_or(SHORT_LIFETIME, |left| left + 1);
            let left = left.min(SHORT_LIFETIME);
            for record in records(&reply).filter(|record| record.ttl > left) {
                failures.push(format!(
                    "{case} ({round}): {} {} TTL {} > {left} s of signature left",
                    record.name,
                    record.record_type(),
                    record.ttl
                ));
            }
        }
        let plain = dotstub.ask(&client::query(case.qname, case.qtype)).await;
        for record in records(&plain).filter(|record| record.ttl > SHORT_LIFETIME) {
            failures.push(format!(
                "{case} (without DO): {} {} TTL {} > {SHORT_LIFETIME}",
                record.name,
                record.record_type(),
                record.ttl
            ));
        }
    }
    assert!(picked >= 2, "only {picked} short-lived cases");
    failures
}

/// A SERVFAIL with EDE 22 naming `culprit`, in time: dotstub replies
/// within `forward.timeout_ms` (a little more for the reply to travel).
fn assert_unreachable(reply: &Message, culprit: &str, took: Duration) {
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(!reply.metadata.authentic_data);
    assert!(reply.answers.is_empty());
    let (code, text) = extended_error(reply).expect("an Extended DNS Error");
    assert_eq!(code, NO_REACHABLE_AUTHORITY, "EDE {code} ({text})");
    assert!(text.contains(culprit), "EDE text {text:?} names {culprit}");
    let slack = Duration::from_millis(300);
    assert!(
        took <= SHORT_TIMEOUT + slack,
        "the reply took {took:?}, the timeout is {SHORT_TIMEOUT:?}"
    );
}

/// An entry of [`Script::RespondLate`]: `qname`/`qtype` answered after
/// `millis`.
fn late(qname: &str, qtype: RecordType, millis: u64) -> (String, RecordType, Duration) {
    (qname.to_owned(), qtype, Duration::from_millis(millis))
}

/// Seconds until the first RRSIG in `reply` expires.
fn signature_time_left(reply: &Message) -> Option<u32> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now = u32::try_from(now.as_secs()).unwrap();
    reply
        .all_sections()
        .filter_map(|record| match &record.data {
            RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) => Some(rrsig),
            _ => None,
        })
        .map(|rrsig: &RRSIG| rrsig.input().sig_expiration.get().saturating_sub(now))
        .min()
}

/// The records of the answer and authority sections.
fn records(reply: &Message) -> impl Iterator<Item = &Record> {
    reply.answers.iter().chain(&reply.authorities)
}

/// The case's query with DO=1.
fn with_do(case: &Case) -> Message {
    query_with_do(case.qname, case.qtype)
}

/// A query for `qname`/`qtype` with DO=1.
fn query_with_do(qname: &str, qtype: RecordType) -> Message {
    let mut query = client::query(qname, qtype);
    query.edns.as_mut().unwrap().set_dnssec_ok(true);
    query
}

/// What in `reply` differs from what `case` expects, if anything.
fn mismatch(case: &Case, reply: &Message) -> Option<String> {
    let rcode = reply.metadata.response_code;
    let found = extended_error(reply);
    let expected = case.validated_rcode();
    if rcode != expected {
        return Some(format!(
            "rcode {rcode} (EDE {found:?}), expected {expected}"
        ));
    }
    let secure = case.verdict == Verdict::Secure;
    if reply.metadata.authentic_data != secure {
        return Some(format!(
            "AD={}, expected {}",
            reply.metadata.authentic_data, secure
        ));
    }
    let expected = case.ede.map(|ede| ede.code);
    if found.as_ref().map(|(code, _)| *code) != expected {
        return Some(format!("EDE {found:?}, expected {expected:?}"));
    }
    let (Some(ede), Some((_, text))) = (case.ede, found) else {
        return None;
    };
    let culprit = ede.culprit.trim_end_matches('.');
    let named = text.to_ascii_lowercase().contains(culprit);
    (!named).then(|| format!("EDE text {text:?} does not name {culprit}"))
}

/// Records only DO=1 brings (RFC 4035 §3.2.1); DS and DNSKEY are data.
fn is_dnssec(record: &Record) -> bool {
    matches!(
        record.record_type(),
        RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3
    )
}

/// The hierarchy's answers with records a lying upstream slipped in: an
/// unsigned A record of another name in the answer section, an unsigned NS
/// in the authority section and its glue in the additional section.
fn with_forged_extras(query: &Message) -> Option<Message> {
    let mut reply = Hierarchy::shared().answer(query);
    let name = |text: &str| Name::from_ascii(text).unwrap();
    let forged_a = RData::A(A(Ipv4Addr::new(192, 0, 2, 66)));
    let forged_ns = RData::NS(NS(name("ns.forged.example.")));
    reply.answers.push(Record::from_rdata(
        name("forged.example."),
        300,
        forged_a.clone(),
    ));
    reply
        .authorities
        .push(Record::from_rdata(name("ecdsap256.tld."), 300, forged_ns));
    reply.additionals.push(Record::from_rdata(
        name("ns.forged.example."),
        300,
        forged_a,
    ));
    Some(reply)
}

#[tokio::test]
async fn secure_answers_carry_only_the_records_validated() {
    let script = Script::Respond(Responder(Arc::new(with_forged_extras)));
    let dotstub = Validating::with_script(script, "").await;
    let reply = dotstub
        .ask(&query_with_do("www.ecdsap256.tld.", RecordType::A))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authentic_data, "secure answer without AD");
    let names: Vec<String> = [&reply.answers, &reply.authorities, &reply.additionals]
        .into_iter()
        .flatten()
        .map(|record| format!("{} {}", record.name, record.record_type()))
        .collect();
    assert_eq!(
        names,
        ["www.ecdsap256.tld. A", "www.ecdsap256.tld. RRSIG"],
        "unvalidated records passed on under AD=1"
    );
    // An insecure answer is passed on as it came: nothing vouches for it.
    let insecure = dotstub
        .ask(&query_with_do("www.insecure.tld.", RecordType::A))
        .await;
    assert!(!insecure.metadata.authentic_data);
    assert_eq!(insecure.additionals.len(), 1, "{insecure:?}");
}

#[tokio::test]
async fn an_unsigned_rrset_beside_a_validated_one_of_the_same_name_is_dropped() {
    // Fuzzing finding F4: a copy in the authority section of the validated
    // answer's owner and type, with forged data, was passed on under AD=1.
    let script = Script::Respond(Responder(Arc::new(|query: &Message| {
        let mut reply = Hierarchy::shared().answer(query);
        let forged = RData::A(A(Ipv4Addr::new(6, 6, 6, 6)));
        let owner = Name::from_ascii("www.ecdsap256.tld.").unwrap();
        reply
            .authorities
            .push(Record::from_rdata(owner, 300, forged));
        Some(reply)
    })));
    let dotstub = Validating::with_script(script, "").await;
    let reply = dotstub
        .ask(&query_with_do("www.ecdsap256.tld.", RecordType::A))
        .await;
    assert!(reply.metadata.authentic_data, "secure answer without AD");
    assert!(reply.authorities.is_empty(), "{:?}", reply.authorities);
    assert_eq!(reply.answers.len(), 2, "the A record and its RRSIG");
}

#[tokio::test]
async fn a_ttl_stretched_past_the_original_ttl_is_cut_back() {
    // Fuzzing finding F5: RFC 4035 §5.3.3 caps a validated RRset's TTL at
    // its RRSIG's Original TTL, which a lying upstream cannot change.
    let script = Script::Respond(Responder(Arc::new(|query: &Message| {
        let mut reply = Hierarchy::shared().answer(query);
        for record in &mut reply.answers {
            record.ttl = 604_800;
        }
        Some(reply)
    })));
    let dotstub = Validating::with_script(script, "").await;
    let reply = dotstub
        .ask(&query_with_do("www.ecdsap256.tld.", RecordType::A))
        .await;
    assert!(
        reply.metadata.authentic_data,
        "still secure: TTLs are not signed"
    );
    let original = reply
        .answers
        .iter()
        .find_map(|record| match &record.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().original_ttl),
            _ => None,
        })
        .expect("the answer's RRSIG");
    for record in &reply.answers {
        assert!(record.ttl <= original, "{record:?} above {original}");
    }
}

#[tokio::test]
async fn a_denials_ttls_stretched_past_the_original_ttl_are_cut_back() {
    // Fuzzing finding F6: F5 for the NSEC records of a denial.
    let script = Script::Respond(Responder(Arc::new(|query: &Message| {
        let mut reply = Hierarchy::shared().answer(query);
        for record in &mut reply.authorities {
            record.ttl = 604_800;
        }
        Some(reply)
    })));
    let dotstub = Validating::with_script(script, "").await;
    let reply = dotstub
        .ask(&query_with_do("nope.ecdsap256.tld.", RecordType::A))
        .await;
    assert!(reply.metadata.authentic_data, "a secure denial: {reply:?}");
    let original = |covered: RecordType| {
        reply
            .authorities
            .iter()
            .find_map(|record| match &record.data {
                RData::DNSSEC(DNSSECRData::RRSIG(sig)) if sig.input().type_covered == covered => {
                    Some(sig.input().original_ttl)
                }
                _ => None,
            })
    };
    let proofs = reply
        .authorities
        .iter()
        .filter(|record| record.record_type() != RecordType::RRSIG);
    let mut seen = 0;
    for record in proofs {
        let original = original(record.record_type()).expect("a covering RRSIG");
        assert!(record.ttl <= original, "{record:?} above {original}");
        seen += 1;
    }
    assert!(seen > 0, "the denial carries its proofs");
}

#[tokio::test]
async fn a_cname_that_does_not_follow_from_its_dname_is_bogus() {
    let script = Script::Respond(Responder(Arc::new(|query: &Message| {
        let mut reply = Hierarchy::shared().answer(query);
        for record in &mut reply.answers {
            if record.record_type() == RecordType::CNAME {
                record.data = RData::CNAME(CNAME(Name::from_ascii("www.insecure.tld.").unwrap()));
            }
        }
        Some(reply)
    })));
    let dotstub = Validating::with_script(script, "").await;
    let reply = dotstub
        .ask(&query_with_do("www.dname.ecdsap256.tld.", RecordType::A))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let (code, text) = extended_error(&reply).expect("an Extended DNS Error");
    assert_eq!(code, 6, "{text}");
    assert!(text.contains("www.dname.ecdsap256.tld"), "{text}");
    assert!(text.contains("does not follow from the DNAME"), "{text}");
}
