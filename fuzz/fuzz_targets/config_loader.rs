//! The configuration loader, as `dotstub check-config FILE` runs it:
//! `Config::load` is `read_to_string` then [`Config::from_toml`], which is
//! what is fuzzed, on any UTF-8 text. A config that loads is printed as
//! check-config prints it; an error is printed as `main` prints it.
//!
//! Checked besides "no panic": what check-config prints ("the
//! configuration in effect", as TOML) loads again into the same
//! configuration.
//!
//! This check found F3 (labels printed with Rust's `{:?}` escapes, which
//! are not TOML), README.md "Findings"; its input is in
//! fuzz/regressions/config_loader/.
//!
//! `dnssec.trust_anchor_file` and `upstream[].ca_file` name files that
//! validation reads. Only the fixture files below (and a missing one) are
//! allowed, so the fuzzer cannot make it read `/dev/zero` or a FIFO;
//! inputs naming any other file are skipped.

#![no_main]

use std::{fs, path::Path, sync::OnceLock};

use dotstub::{ErrorChain, config::Config};
use libfuzzer_sys::fuzz_target;

/// Where the fixture files are written; seeds name them by these paths.
const FIXTURES: &str = "/tmp/dotstub-fuzz";

const FILES: [(&str, &str); 4] = [
    ("anchors.txt", include_str!("../fixtures/anchors.txt")),
    (
        "bad-anchors.txt",
        include_str!("../fixtures/bad-anchors.txt"),
    ),
    ("ca.pem", include_str!("../fixtures/ca.pem")),
    ("bad-ca.pem", include_str!("../fixtures/bad-ca.pem")),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    fixtures();
    if !reads_only_fixtures(text) {
        return;
    }
    match Config::from_toml(text, "fuzz.toml") {
        Ok(config) => round_trip(&config),
        Err(error) => {
            let _ = ErrorChain(&error).to_string();
            for problem in error.problems() {
                let _ = (&problem.key, problem.position, &problem.message);
            }
        }
    }
});

/// check-config's output loads back into the configuration it shows.
fn round_trip(config: &Config) {
    let printed = config.to_string();
    let again = match Config::from_toml(&printed, "printed") {
        Ok(again) => again,
        Err(error) => panic!(
            "check-config output does not load: {}\n---\n{printed}",
            ErrorChain(&error)
        ),
    };
    assert_eq!(config.listen, again.listen, "[listen] changed:\n{printed}");
    assert_eq!(
        config.forward, again.forward,
        "[forward] changed:\n{printed}"
    );
    assert_eq!(
        config.upstreams, again.upstreams,
        "[[upstream]] changed:\n{printed}"
    );
    assert_eq!(config.cache, again.cache, "[cache] changed:\n{printed}");
    assert_eq!(
        config.padding, again.padding,
        "[padding] changed:\n{printed}"
    );
    assert_eq!(config.dnssec, again.dnssec, "[dnssec] changed:\n{printed}");
    assert_eq!(config.log, again.log, "[log] changed:\n{printed}");
}

/// Writes the fixture files once per process.
fn fixtures() {
    static WRITTEN: OnceLock<()> = OnceLock::new();
    WRITTEN.get_or_init(|| {
        fs::create_dir_all(FIXTURES).expect("fixture directory");
        for (name, contents) in FILES {
            let path = Path::new(FIXTURES).join(name);
            let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
            fs::write(&temporary, contents).expect("fixture file");
            fs::rename(&temporary, &path).expect("fixture file");
        }
    });
}

/// Whether every file the config names is a fixture (or `missing`).
/// Text that is not TOML fails before any file is read.
fn reads_only_fixtures(text: &str) -> bool {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return true;
    };
    let allowed = |value: Option<&toml::Value>| match value {
        Some(toml::Value::String(path)) => {
            path.is_empty()
                || path
                    .strip_prefix(FIXTURES)
                    .and_then(|name| name.strip_prefix('/'))
                    .is_some_and(|name| {
                        name == "missing" || FILES.iter().any(|(file, _)| *file == name)
                    })
        }
        // Not a string: refused by the schema before anything is read.
        _ => true,
    };
    let dnssec = table.get("dnssec").and_then(toml::Value::as_table);
    let anchors_ok = allowed(dnssec.and_then(|dnssec| dnssec.get("trust_anchor_file")));
    let upstreams = table.get("upstream").and_then(toml::Value::as_array);
    let cas_ok = upstreams.is_none_or(|list| {
        list.iter()
            .filter_map(toml::Value::as_table)
            .all(|upstream| allowed(upstream.get("ca_file")))
    });
    anchors_ok && cas_ok
}
