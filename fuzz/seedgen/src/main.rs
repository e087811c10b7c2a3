//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/`
//! and the trust anchors of `dnssec_records` into `fuzz/fixtures/`.
//! Deterministic: a second run writes the same octets.
//!
//! Run from anywhere: `cargo run --release --manifest-path
//! fuzz/seedgen/Cargo.toml --target-dir fuzz/target/seedgen`.

mod signed;
mod traces;

use std::{
    fs,
    path::{Path, PathBuf},
};

use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{
        RData, Record, RecordType,
        rdata::{A, opt::EdnsOption},
    },
};
use signed::{Dress, Hierarchy, name};

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = fuzz.join("..");
    let hierarchy = Hierarchy::build();
    for (file, text) in hierarchy.anchor_files() {
        fs::write(fuzz.join("fixtures").join(file), text).expect("fixture written");
    }
    let seeds = fuzz.join("seeds");
    write_all(&seeds.join("client_query"), client_queries());
    write_all(&seeds.join("upstream_answer"), upstream_answers(&hierarchy));
    write_all(
        &seeds.join("dnssec_records"),
        dnssec_records(&hierarchy, &fuzz),
    );
    write_all(&seeds.join("config_loader"), configs(&repo));
    write_all(&seeds.join("padding_traces"), traces::seeds(&repo));
}

/// Replaces the files of `dir` with `seeds`.
fn write_all(dir: &Path, seeds: Vec<(String, Vec<u8>)>) {
    if dir.exists() {
        fs::remove_dir_all(dir).expect("old seeds removed");
    }
    fs::create_dir_all(dir).expect("seed directory");
    let count = seeds.len();
    for (file, bytes) in seeds {
        fs::write(dir.join(file), bytes).expect("seed written");
    }
    println!("{count:3} seeds in {}", dir.display());
}

fn read(path: PathBuf) -> Vec<u8> {
    fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

//---- client_query ----

/// A query: header with `flags` and the counts, then `body`.
fn query(flags: u16, counts: [u16; 4], body: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x12, 0x34];
    packet.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        packet.extend_from_slice(&count.to_be_bytes());
    }
    packet.extend_from_slice(body);
    packet
}

/// An OPT record: payload size, extended RCODE, version, DO, options.
fn opt(udp_size: u16, version: u8, dnssec_ok: bool, options: &[u8]) -> Vec<u8> {
    let mut record = vec![0, 0, 41];
    record.extend_from_slice(&udp_size.to_be_bytes());
    record.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
    record.extend_from_slice(&u16::try_from(options.len()).expect("short").to_be_bytes());
    record.extend_from_slice(options);
    record
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn client_queries() -> Vec<(String, Vec<u8>)> {
    const WWW_A: &[u8] = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01";
    const RD: u16 = 0x0100;
    let ecs = b"\x00\x08\x00\x07\x00\x01\x18\x00\xc0\x00\x02";
    let cookie = b"\x00\x0a\x00\x08\x01\x02\x03\x04\x05\x06\x07\x08";
    let mut long_name = Vec::new();
    for _ in 0..3 {
        long_name.push(63);
        long_name.extend_from_slice(&[b'a'; 63]);
    }
    long_name.push(61);
    long_name.extend_from_slice(&[b'b'; 61]);
    long_name.push(0);
    long_name.extend_from_slice(&[0, 16, 0, 1]);
    let a_record = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01";
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("plain-a", query(RD, [1, 0, 0, 0], WWW_A)),
        ("root-ns", query(RD, [1, 0, 0, 0], b"\x00\x00\x02\x00\x01")),
        (
            "mixed-case-aaaa",
            query(
                RD,
                [1, 0, 0, 0],
                b"\x03WwW\x07ExAmPlE\x03CoM\x00\x00\x1c\x00\x01",
            ),
        ),
        (
            "edns-do",
            query(RD, [1, 0, 0, 1], &cat(&[WWW_A, &opt(1232, 0, true, b"")])),
        ),
        (
            "edns-small",
            query(RD, [1, 0, 0, 1], &cat(&[WWW_A, &opt(100, 0, false, b"")])),
        ),
        (
            "edns-ecs-cookie",
            query(
                RD,
                [1, 0, 0, 1],
                &cat(&[WWW_A, &opt(4096, 0, true, &cat(&[ecs, cookie]))]),
            ),
        ),
        (
            "edns-padding",
            query(
                RD,
                [1, 0, 0, 1],
                &cat(&[
                    WWW_A,
                    &opt(1232, 0, false, b"\x00\x0c\x00\x04\x00\x00\x00\x00"),
                ]),
            ),
        ),
        (
            "edns-version-1",
            query(RD, [1, 0, 0, 1], &cat(&[WWW_A, &opt(1232, 1, false, b"")])),
        ),
        (
            "edns-option-overrun",
            query(
                RD,
                [1, 0, 0, 1],
                &cat(&[WWW_A, &opt(1232, 0, false, b"\x00\x0c\x00\x09\x00")]),
            ),
        ),
        (
            "two-opt",
            query(
                RD,
                [1, 0, 0, 2],
                &cat(&[WWW_A, &opt(1232, 0, false, b""), &opt(1232, 0, false, b"")]),
            ),
        ),
        (
            "opt-after-record",
            query(
                RD,
                [1, 0, 0, 2],
                &cat(&[WWW_A, a_record, &opt(1232, 0, true, b"")]),
            ),
        ),
        (
            "answer-in-query",
            query(RD, [1, 1, 0, 0], &cat(&[WWW_A, a_record])),
        ),
        ("cd-ad", query(RD | 0x0030, [1, 0, 0, 0], WWW_A)),
        (
            "axfr",
            query(0, [1, 0, 0, 0], b"\x07example\x03com\x00\x00\xfc\x00\x01"),
        ),
        (
            "ixfr",
            query(0, [1, 0, 0, 0], b"\x07example\x03com\x00\x00\xfb\x00\x01"),
        ),
        (
            "qtype-opt",
            query(RD, [1, 0, 0, 0], b"\x00\x00\x29\x00\x01"),
        ),
        ("notify", query(4 << 11, [1, 0, 0, 0], WWW_A)),
        ("response", query(0x8180, [1, 0, 0, 0], WWW_A)),
        (
            "two-questions",
            query(RD, [2, 0, 0, 0], &cat(&[WWW_A, WWW_A])),
        ),
        ("no-question", query(RD, [0, 0, 0, 0], b"")),
        (
            "compressed-qname",
            query(RD, [1, 0, 0, 0], b"\xc0\x0c\x00\x01\x00\x01"),
        ),
        ("long-name", query(RD, [1, 0, 0, 0], &long_name)),
        (
            "truncated-question",
            query(RD, [1, 0, 0, 0], b"\x03www\x07exam"),
        ),
        (
            "trailing-octets",
            query(RD, [1, 0, 0, 0], &cat(&[WWW_A, b"\xde\xad\xbe\xef"])),
        ),
        (
            "class-chaos",
            query(RD, [1, 0, 0, 0], b"\x07version\x04bind\x00\x00\x10\x00\x03"),
        ),
        (
            "escaped-labels",
            query(RD, [1, 0, 0, 0], b"\x03a.b\x02\\\x07\x00\x00\x01\x00\x01"),
        ),
        ("header-only", query(RD, [0, 0, 0, 0], b"")[..12].to_vec()),
        ("short", vec![0x12, 0x34, 0x01]),
    ];
    seeds
        .into_iter()
        .map(|(name, bytes)| (format!("{name}.bin"), bytes))
        .collect()
}

//---- upstream_answer ----

/// `message` as the upstream's answer to `www.example. A`.
fn for_www(mut message: Message) -> Message {
    message.queries = vec![Query::query(name("www.example."), RecordType::A)];
    message
}

fn frames(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for message in messages {
        stream.extend_from_slice(&u16::try_from(message.len()).expect("short").to_be_bytes());
        stream.extend_from_slice(message);
    }
    stream
}

fn with_options(mut message: Message, rcode_high: u8, options: Vec<EdnsOption>) -> Message {
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true);
    edns.set_max_payload(1232);
    edns.set_rcode_high(rcode_high);
    for option in options {
        edns.options_mut().insert(option);
    }
    message.set_edns(edns);
    message
}

fn upstream_answers(hierarchy: &Hierarchy) -> Vec<(String, Vec<u8>)> {
    let dress = Dress::default();
    let www = hierarchy.respond("www.example.", RecordType::A, dress);
    let bytes = |message: &Message| message.to_vec().expect("encodes");
    let www_bytes = bytes(&www);
    let nxdomain = for_www(hierarchy.respond("nope.example.", RecordType::A, dress));
    let nodata = for_www(hierarchy.respond("www.example.", RecordType::AAAA, dress));
    let cname = for_www(hierarchy.respond("alias.example.", RecordType::A, dress));
    let plain = hierarchy.respond(
        "www.example.",
        RecordType::A,
        Dress {
            no_edns: true,
            ..dress
        },
    );
    let mut big = plain.clone();
    for index in 0..80u8 {
        big.add_answer(Record::from_rdata(
            name("www.example."),
            300,
            RData::A(A::new(192, 0, 2, index)),
        ));
    }
    let mut truncated = plain.clone();
    truncated.metadata.truncation = true;
    truncated.answers.clear();
    let mut servfail = plain.clone();
    servfail.metadata.response_code = ResponseCode::ServFail;
    servfail.answers.clear();
    let ede = with_options(
        servfail.clone(),
        0,
        vec![
            EdnsOption::Unknown(15, b"\x00\x06signature does not verify".to_vec()),
            EdnsOption::Unknown(11, vec![0x01, 0x2c]),
            EdnsOption::Unknown(12, vec![0; 40]),
        ],
    );
    let extended = with_options(plain.clone(), 1, vec![]);
    let wrong_question = hierarchy.respond("alias.example.", RecordType::A, dress);
    // OPT in the middle of the additional section: the A after it is dropped.
    let mut opt_middle = bytes(&plain);
    opt_middle[11] = 2;
    opt_middle.extend_from_slice(&opt(1232, 0, true, b"\x00\x0c\x00\x02\x00\x00"));
    opt_middle
        .extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x63");
    let mut trailing = bytes(&plain);
    trailing.extend_from_slice(b"\x00\x00\x00\x00");

    let seeds: Vec<(&str, u8, Vec<u8>)> = vec![
        (
            "signed-udp-plain-client",
            0x00,
            frames(&[www_bytes.clone()]),
        ),
        ("signed-udp-edns-do", 0x43, frames(&[www_bytes.clone()])),
        ("signed-tcp-edns-cd", 0x9d, frames(&[www_bytes.clone()])),
        ("signed-aged", 0x61, frames(&[www_bytes.clone()])),
        ("nxdomain-soa", 0x41, frames(&[bytes(&nxdomain)])),
        ("nodata-soa", 0x43, frames(&[bytes(&nodata)])),
        ("cname-chain", 0x01, frames(&[bytes(&cname)])),
        ("big-udp-truncates", 0x40, frames(&[bytes(&big)])),
        ("big-tcp", 0xd9, frames(&[bytes(&big)])),
        ("tc-bit", 0x41, frames(&[bytes(&truncated)])),
        (
            "servfail-ede-keepalive-padding",
            0x41,
            frames(&[bytes(&ede)]),
        ),
        (
            "extended-rcode-plain-client",
            0x00,
            frames(&[bytes(&extended)]),
        ),
        (
            "extended-rcode-edns-client",
            0x01,
            frames(&[bytes(&extended)]),
        ),
        (
            "wrong-then-right",
            0x41,
            frames(&[bytes(&wrong_question), bytes(&plain)]),
        ),
        ("opt-in-middle", 0x43, frames(&[opt_middle])),
        ("trailing-octets", 0x41, frames(&[trailing])),
        (
            "partial-frame",
            0x41,
            frames(&[bytes(&plain)])[..40].to_vec(),
        ),
        (
            "short-frame",
            0x41,
            frames(&[b"\x51\x51\x81".to_vec(), bytes(&plain)]),
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, control, stream)| (format!("{name}.bin"), cat(&[&[control], &stream])))
        .collect()
}

//---- dnssec_records ----

fn dnssec_records(hierarchy: &Hierarchy, fuzz: &Path) -> Vec<(String, Vec<u8>)> {
    let cases: &[(&str, &str, RecordType, &[&str], Dress)] = &[
        (
            "www-a",
            "www.example.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "www-txt",
            "www.example.",
            RecordType::TXT,
            &[],
            Dress::default(),
        ),
        (
            "www-aaaa-nodata",
            "www.example.",
            RecordType::AAAA,
            &[],
            Dress::default(),
        ),
        (
            "nope-nxdomain",
            "nope.example.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "wildcard",
            "host.wild.example.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "wildcard-nodata",
            "host.wild.example.",
            RecordType::MX,
            &[],
            Dress::default(),
        ),
        (
            "ent-nodata",
            "wild.example.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "cname",
            "alias.example.",
            RecordType::A,
            &["www.example."],
            Dress::default(),
        ),
        (
            "dname",
            "www.dn.example.",
            RecordType::A,
            &["www.example."],
            Dress::default(),
        ),
        (
            "apex-dnskey",
            "example.",
            RecordType::DNSKEY,
            &[],
            Dress::default(),
        ),
        (
            "ds-answer",
            "example.",
            RecordType::DS,
            &[],
            Dress::default(),
        ),
        (
            "unsigned-delegation",
            "host.unsigned.example.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "insecure-tld",
            "host.insecure.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "nsec3-a",
            "a.nsec3test.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "nsec3-nodata",
            "a.nsec3test.",
            RecordType::AAAA,
            &[],
            Dress::default(),
        ),
        (
            "nsec3-nxdomain",
            "zz.nsec3test.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "nsec3-ent",
            "c.nsec3test.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "nsec3-wildcard",
            "x.w.nsec3test.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "nsec3-wildcard-nodata",
            "x.w.nsec3test.",
            RecordType::TXT,
            &[],
            Dress::default(),
        ),
        (
            "nsec3-insecure-deleg",
            "host.deleg.nsec3test.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "root-nxdomain",
            "nosuchtld.",
            RecordType::A,
            &[],
            Dress::default(),
        ),
        (
            "bogus-signature",
            "www.example.",
            RecordType::A,
            &[],
            Dress {
                corrupt: true,
                ..Dress::default()
            },
        ),
        (
            "no-edns",
            "mail.example.",
            RecordType::MX,
            &[],
            Dress {
                no_edns: true,
                ..Dress::default()
            },
        ),
    ];
    let mut seeds = Vec::new();
    for (index, (file, qname, qtype, also, dress)) in cases.iter().enumerate() {
        let response = hierarchy.respond(qname, *qtype, *dress);
        let names: Vec<&str> = std::iter::once(*qname)
            .chain(also.iter().copied())
            .collect();
        let mut messages = vec![response.to_vec().expect("encodes")];
        for fetched in hierarchy.fetches(&names) {
            messages.push(fetched.to_vec().expect("encodes"));
        }
        let control = u8::try_from(index % 3).expect("small");
        seeds.push((
            format!("{file}.bin"),
            cat(&[&[control], &frames(&messages)]),
        ));
    }
    // Trust anchor text (control 3).
    let doc_example = "; the example of src/dnssec/anchor.rs\n\
        . 3600 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n\
        example. IN DNSKEY 257 3 13 ( mdsswUyr3DPW132mOi8V9xESWE8jTo0d\n\
        \x20                             xCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ== )\n";
    let mut anchors: Vec<(String, String)> =
        vec![("anchor-doc-example".into(), doc_example.into())];
    for (file, _) in hierarchy.anchor_files() {
        let text = String::from_utf8(read(fuzz.join("fixtures").join(file))).expect("UTF-8");
        anchors.push((format!("anchor-{}", file.trim_end_matches(".txt")), text));
    }
    anchors.push((
        "anchor-unbalanced".into(),
        "example. IN DNSKEY 257 3 13 ( abc\n".into(),
    ));
    anchors.push((
        "anchor-relative-owner".into(),
        "example IN DS 1 13 2 ABCD\n".into(),
    ));
    for (file, text) in anchors {
        seeds.push((format!("{file}.bin"), cat(&[&[3], text.as_bytes()])));
    }
    seeds
}

//---- config_loader ----

fn configs(repo: &Path) -> Vec<(String, Vec<u8>)> {
    const MINIMAL: &str = "[[upstream]]\naddress = \"192.0.2.1\"\ntls_name = \"dot.example\"\n";
    let mut seeds = vec![
        (
            "dotstub.toml".to_owned(),
            read(repo.join("config/dotstub.toml")),
        ),
        ("minimal.toml".to_owned(), MINIMAL.as_bytes().to_vec()),
    ];
    let texts = [
        ("ipv6-upstream", "[[upstream]]\naddress = \"[2001:db8::1]:8853\"\ntls_name = \"192.0.2.7\"\nlabel = \"v6\"\n".to_owned()),
        ("unknown-key", "[listen]\nadresses = [\"127.0.0.1:53\"]\n".to_owned()),
        ("wrong-types", format!("{MINIMAL}[forward]\ntimeout_ms = \"soon\"\n[[upstream]]\naddress = \"192.0.2.2\"\ntls_name = 7\n")),
        ("inline-tables", format!("cache = {{ max_bytes = \"big\" }}\n{MINIMAL}")),
        ("many-problems", "[listen]\naddresses = [\"127.0.0.1\", \"[::1]:5453\"]\n[forward]\nconnections_per_upstream = 0\n\
            [[upstream]]\naddress = \"dns.quad9.net:853\"\ntls_name = \"dns.quad9.net\"\n\
            [[upstream]]\naddress = \"9.9.9.9\"\ntls_name = \"not a name\"\nspki_pins = [\"abc\"]\n\
            ca_file = \"/tmp/dotstub-fuzz/missing\"\n[padding]\nqueries = \"block:0\"\n".to_owned()),
        ("limits", format!("[listen]\nmax_queries_in_flight = 9223372036854775807\nmax_udp_size = 100\nudp_workers = 0\n\
            [forward]\ntimeout_ms = 0\nmax_queries_per_connection = 65536\nidle_timeout_ms = 18446744073709551615\n{MINIMAL}")),
        ("cache-small", format!("[cache]\nmax_bytes = 65536\nmin_ttl = 500\nmax_ttl = 100\nserve_stale = false\n{MINIMAL}")),
        ("duplicate-labels", format!("{MINIMAL}label = \"a\"\n{MINIMAL}label = \"a\"\n")),
        ("padding-policies", format!("[padding]\nqueries = \"random-block:128:2\"\n{MINIMAL}padding = \"max:1500\"\n\
            {MINIMAL}label = \"b\"\npadding = \"\"\n{MINIMAL}label = \"c\"\npadding = \"none\"\n\
            {MINIMAL}label = \"d\"\npadding = \"random:64\"\n{MINIMAL}label = \"e\"\npadding = \"block:468\"\n")),
        ("spki-pin", format!("{MINIMAL}spki_pins = [\"sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\", \"YmFk\"]\n")),
        ("anchor-file", format!("[dnssec]\nvalidate = true\ntrust_anchor_file = \"/tmp/dotstub-fuzz/anchors.txt\"\nkey_cache_names = 16\n{MINIMAL}")),
        ("bad-anchor-file", format!("[dnssec]\ntrust_anchor_file = \"/tmp/dotstub-fuzz/bad-anchors.txt\"\n{MINIMAL}")),
        ("missing-anchor-file", format!("[dnssec]\ntrust_anchor_file = \"/tmp/dotstub-fuzz/missing\"\n{MINIMAL}")),
        ("ca-file", format!("{MINIMAL}ca_file = \"/tmp/dotstub-fuzz/ca.pem\"\n")),
        ("bad-ca-file", format!("{MINIMAL}ca_file = \"/tmp/dotstub-fuzz/bad-ca.pem\"\n")),
        ("log-levels", format!("[log]\nlevel = \"loud\"\n{MINIMAL}")),
        ("dnssec-off-log-debug", format!("[dnssec]\nvalidate = false\n[log]\nlevel = \"debug\"\n[forward]\npolicy = \"ordered\"\ntls13_only = true\n{MINIMAL}")),
        ("label-escapes", format!("{MINIMAL}label = \"tab\\there \\\"quoted\\\" \\u00e9\"\n")),
        ("no-upstream", "[listen]\naddresses = [\"127.0.0.1:5453\"]\n".to_owned()),
        ("not-toml", "[listen\naddresses = \n".to_owned()),
    ];
    for (file, text) in texts {
        seeds.push((format!("{file}.toml"), text.into_bytes()));
    }
    seeds
}
