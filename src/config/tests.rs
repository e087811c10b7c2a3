//! Configuration files good and bad.

use super::*;
use crate::padding::PaddingPolicy;

const MINIMAL: &str = r#"
[[upstream]]
address = "192.0.2.1"
tls_name = "dot.example"
"#;

fn problems(text: &str) -> Vec<Problem> {
    match Config::from_toml(text, "test.toml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(error) => error.problems().to_vec(),
    }
}

#[test]
fn embedded_default_parses_with_the_documented_values() {
    let config = Config::embedded().unwrap();
    assert_eq!(
        config.listen.addresses,
        [
            "127.0.0.1:5453".parse().unwrap(),
            "[::1]:5453".parse().unwrap()
        ]
    );
    let addresses: Vec<String> = config
        .upstreams
        .iter()
        .map(|u| quoted_list(&u.addresses))
        .collect();
    assert_eq!(
        addresses,
        [
            "9.9.9.9:853 [2620:fe::fe]:853",
            "149.112.112.112:853 [2620:fe::9]:853",
            "1.1.1.1:853 [2606:4700:4700::1111]:853",
            "1.0.0.1:853 [2606:4700:4700::1001]:853"
        ]
    );
    let names: Vec<&str> = config
        .upstreams
        .iter()
        .map(|u| u.tls_name.to_str().into_owned().leak() as &str)
        .collect();
    assert_eq!(
        names,
        [
            "dns.quad9.net",
            "dns.quad9.net",
            "cloudflare-dns.com",
            "cloudflare-dns.com"
        ]
    );
    assert!(
        config
            .upstreams
            .iter()
            .all(|u| u.roots == Roots::BuiltIn && u.spki_pins.is_empty())
    );
    assert_eq!(config.forward.policy, SelectionPolicy::RoundRobin);
    assert_eq!(config.forward.timeout, Duration::from_millis(3000));
    assert_eq!(config.forward.connections_per_upstream.get(), 2);
    assert_eq!(config.padding, PaddingPolicy::default());
    assert_eq!(config.log, LogLevel::Info);
}

#[test]
fn embedded_default_mentions_every_key_at_its_default() {
    // The file is the single source of truth for defaults: every key the
    // effective configuration prints appears in it with the same value,
    // and a file without those keys gets the same values from code.
    let embedded = Config::embedded().unwrap();
    let printed = embedded.to_string();
    for line in printed
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with("label"))
    {
        let key = line.split(" = ").next().unwrap();
        assert!(
            EMBEDDED.contains(&format!("\n{key} = ")),
            "{key} is not documented in config/dotstub.toml"
        );
    }
    let defaults = Config::from_toml(MINIMAL, "minimal").unwrap();
    assert_eq!(defaults.listen, embedded.listen);
    assert_eq!(defaults.forward, embedded.forward);
    assert_eq!(defaults.padding, embedded.padding);
    assert_eq!(defaults.log, embedded.log);
}

#[test]
fn effective_configuration_reads_back_the_same() {
    let config = Config::embedded().unwrap();
    let again = Config::from_toml(&config.to_string(), "printed").unwrap();
    assert_eq!(again.listen, config.listen);
    assert_eq!(again.forward, config.forward);
    assert_eq!(again.upstreams, config.upstreams);
    assert_eq!(again.padding, config.padding);
}

#[test]
fn labels_with_control_characters_print_as_toml_that_loads_back() {
    // Fuzzing finding F3: printed with Rust's escapes, "\u{1b}" did not load.
    let text = format!("{MINIMAL}label = \"esc\\u001bape \\\"quoted\\\" \\\\\"\n");
    let config = Config::from_toml(&text, "label").unwrap();
    assert_eq!(config.upstreams[0].label, "esc\u{1b}ape \"quoted\" \\");
    let again = Config::from_toml(&config.to_string(), "printed").unwrap();
    assert_eq!(again.upstreams, config.upstreams);
}

#[test]
fn upstream_address_defaults_to_port_853_and_label_to_address() {
    let config = Config::from_toml(MINIMAL, "minimal").unwrap();
    assert_eq!(
        config.upstreams[0].addresses,
        ["192.0.2.1:853".parse().unwrap()]
    );
    assert_eq!(config.upstreams[0].label, "192.0.2.1:853");
    let v6 = MINIMAL.replace("192.0.2.1", "2001:db8::1");
    assert_eq!(
        Config::from_toml(&v6, "v6").unwrap().upstreams[0].addresses,
        ["[2001:db8::1]:853".parse().unwrap()]
    );
}

fn quoted_list(addresses: &[std::net::SocketAddr]) -> String {
    let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    listed.join(" ")
}

#[test]
fn an_upstream_takes_a_list_of_addresses_and_the_label_of_the_first() {
    let listed = MINIMAL.replace(
        "address = \"192.0.2.1\"",
        "addresses = [\"192.0.2.1\", \"[2001:db8::1]:8853\"]",
    );
    let config = Config::from_toml(&listed, "listed").unwrap();
    assert_eq!(
        quoted_list(&config.upstreams[0].addresses),
        "192.0.2.1:853 [2001:db8::1]:8853"
    );
    assert_eq!(config.upstreams[0].label, "192.0.2.1:853");
}

#[test]
fn an_upstream_needs_address_or_addresses_but_not_both() {
    let both = MINIMAL.replace(
        "address = \"192.0.2.1\"",
        "address = \"192.0.2.1\"\naddresses = [\"192.0.2.2\"]",
    );
    let found = problems(&both);
    assert_eq!(found[0].key, "upstream[0].addresses");
    assert!(
        found[0].message.contains("found both"),
        "{}",
        found[0].message
    );
    let neither = MINIMAL.replace("address = \"192.0.2.1\"\n", "");
    assert_eq!(problems(&neither)[0].key, "upstream[0].address");
    let empty = MINIMAL.replace("address = \"192.0.2.1\"", "addresses = []");
    assert_eq!(problems(&empty)[0].key, "upstream[0].address");
    let bad = MINIMAL.replace(
        "address = \"192.0.2.1\"",
        "addresses = [\"192.0.2.1\", \"dns.quad9.net\"]",
    );
    let found = problems(&bad);
    assert_eq!(found[0].key, "upstream[0].addresses[1]");
    assert!(found[0].message.contains("dns.quad9.net"));
}

#[test]
fn unknown_key_is_named_with_its_position() {
    let text = "[listen]\nadresses = [\"127.0.0.1:53\"]\n";
    let found = problems(text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, "listen.adresses");
    assert_eq!(found[0].position, Some((2, 1)));
    assert!(
        found[0].message.contains("unknown field `adresses`"),
        "{}",
        found[0].message
    );
}

#[test]
fn wrong_type_is_named() {
    let text = format!("{MINIMAL}\n[forward]\ntimeout_ms = \"soon\"\n");
    let found = problems(&text);
    assert_eq!(found[0].key, "forward.timeout_ms");
    assert_eq!(found[0].position, Some((7, 14)));
}

#[test]
fn errors_inside_arrays_and_inline_tables_name_the_whole_path() {
    let second = format!("{MINIMAL}[[upstream]]\naddress = \"192.0.2.2\"\ntls_name = 7\n");
    let found = problems(&second);
    assert_eq!(
        (found[0].key.as_str(), found[0].position),
        ("upstream[1].tls_name", Some((7, 12)))
    );
    let inline = format!("cache = {{ max_bytes = \"big\" }}\n{MINIMAL}");
    assert_eq!(problems(&inline)[0].key, "cache.max_bytes");
    let listed = "[listen]\naddresses = [\"127.0.0.1:53\", 53]\n";
    assert_eq!(problems(listed)[0].key, "listen.addresses[1]");
    // A missing key is the table's problem.
    let missing = "[[upstream]]\naddress = \"192.0.2.1\"\n";
    let found = problems(missing);
    assert_eq!(found[0].key, "upstream[0]");
    assert!(
        found[0].message.contains("missing field `tls_name`"),
        "{}",
        found[0].message
    );
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let text = r#"
[listen]
addresses = ["127.0.0.1", "[::1]:5453"]

[forward]
connections_per_upstream = 0

[[upstream]]
address = "dns.quad9.net:853"
tls_name = "dns.quad9.net"

[[upstream]]
address = "9.9.9.9"
tls_name = "not a name"
spki_pins = ["abc"]
ca_file = "/nonexistent/ca.pem"

[padding]
queries = "block:0"
"#;
    let found = problems(text);
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "listen.addresses[0]",
        "forward.connections_per_upstream",
        "upstream[0].address",
        "upstream[1].tls_name",
        "upstream[1].spki_pins[0]",
        "upstream[1].ca_file",
        "padding.queries",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let pin = found
        .iter()
        .find(|p| p.key == "upstream[1].spki_pins[0]")
        .unwrap();
    assert_eq!(pin.position, Some((15, 14)));
    assert!(pin.message.contains("base64"));
    let ca = found
        .iter()
        .find(|p| p.key == "upstream[1].ca_file")
        .unwrap();
    assert!(ca.message.contains("/nonexistent/ca.pem"));
}

#[test]
fn limits_outside_their_range_are_refused() {
    let text = format!(
        "[listen]\nmax_queries_in_flight = 9223372036854775807\n[forward]\ntimeout_ms = 0\n\
         max_queries_per_connection = 65536\nidle_timeout_ms = 18446744073709551615\n{MINIMAL}"
    );
    let found = problems(&text);
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "listen.max_queries_in_flight",
            "forward.timeout_ms",
            "forward.idle_timeout_ms",
            "forward.max_queries_per_connection"
        ]
    );
    assert!(
        found[0].message.contains("from 1 to 65536"),
        "{}",
        found[0].message
    );
}

#[test]
fn cache_smaller_than_its_pages_is_refused() {
    let found = problems(&format!("[cache]\nmax_bytes = 65536\n{MINIMAL}"));
    assert_eq!(found[0].key, "cache.max_bytes");
    assert!(
        found[0].message.contains("at least 262144"),
        "{}",
        found[0].message
    );
}

#[test]
fn no_upstream_is_refused() {
    let found = problems("[listen]\naddresses = [\"127.0.0.1:5453\"]\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, "upstream");
}

#[test]
fn duplicate_labels_are_refused() {
    let text = format!("{MINIMAL}label = \"a\"\n{MINIMAL}label = \"a\"\n");
    assert_eq!(problems(&text)[0].key, "upstream[1].label");
}

#[test]
fn ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let text = format!("{MINIMAL}ca_file = {:?}\n", path.display().to_string());
    let found = problems(&text);
    assert_eq!(found[0].key, "upstream[0].ca_file");
    assert!(
        found[0].message.contains("found none"),
        "{}",
        found[0].message
    );
}

#[test]
fn malformed_trust_anchor_file_is_refused_with_its_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anchors.txt");
    let anchors = "; test anchors\n. IN DS 20326 8 2 ZZZZ\n";
    std::fs::write(&path, anchors).unwrap();
    let file = path.display().to_string();
    let text = format!("[dnssec]\ntrust_anchor_file = {file:?}\n{MINIMAL}");
    let found = problems(&text);
    assert_eq!(found[0].key, "dnssec.trust_anchor_file");
    assert_eq!(found[0].position.map(|(line, _)| line), Some(2));
    let message = &found[0].message;
    let expected = format!("{file} line 2: DS digest is not hexadecimal");
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn trust_anchor_file_replaces_the_root_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anchors.txt");
    std::fs::write(&path, "example. 3600 IN DS 1 13 2 ABCD\n").unwrap();
    let file = path.display().to_string();
    let text = format!("[dnssec]\ntrust_anchor_file = {file:?}\n{MINIMAL}");
    let config = Config::from_toml(&text, "test.toml").unwrap();
    let example = hickory_proto::rr::Name::from_ascii("www.example.").unwrap();
    let outside = hickory_proto::rr::Name::from_ascii("www.example.org.").unwrap();
    assert!(config.dnssec.anchors.closest(&example).is_some());
    assert!(config.dnssec.anchors.closest(&outside).is_none());
    assert!(config.dnssec.validate);
}

#[test]
fn error_message_names_file_key_and_position() {
    let error = Config::from_toml("[log]\nlevel = \"loud\"\n", "dotstub.toml").unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("dotstub.toml:2:9: log.level: unknown variant `loud`"),
        "{message}"
    );
}

#[test]
fn unreadable_file_is_a_read_error() {
    let error = Config::load(Path::new("/nonexistent/dotstub.toml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/dotstub.toml"));
}

#[test]
fn upstream_padding_overrides_the_global_policy_and_is_checked() {
    let text = format!(
        "[padding]\nqueries = \"random-block:128:2\"\n{MINIMAL}padding = \"max:1500\"\n\
         {MINIMAL}label = \"b\"\npadding = \"\"\n{MINIMAL}label = \"c\"\npadding = \"none\"\n"
    );
    let config = Config::from_toml(&text, "test.toml").unwrap();
    let policies: Vec<String> = config
        .upstreams
        .iter()
        .map(|u| u.padding.to_string())
        .collect();
    assert_eq!(policies, ["max:1500", "random-block:128:2", "none"]);
    let again = Config::from_toml(&config.to_string(), "printed").unwrap();
    assert_eq!(again.upstreams, config.upstreams);
    let found = problems(&format!("{MINIMAL}padding = \"block:0\"\n"));
    assert_eq!(found[0].key, "upstream[0].padding");
    assert_eq!(found[0].position, Some((5, 11)));
    assert!(found[0].message.contains("block:N"), "{}", found[0].message);
}
