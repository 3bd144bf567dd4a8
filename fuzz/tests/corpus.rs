//! Replays every kept input of every target through its check, without libFuzzer, so that a
//! reproducer written into `corpus/<target>/` stays a test (`cargo +nightly test` here; the
//! short fuzz run of `cargo xtask test` replays them too, as libFuzzer runs the corpus first).

use std::fs;
use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).expect("reading a corpus file");
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{} has no inputs", dir.display());
    out
}

#[test]
fn codec_roundtrip_corpus() {
    for (path, data) in inputs("codec_roundtrip") {
        eprintln!("{}", path.display());
        dhcpv6_fuzz::codec::check(&data);
    }
}

#[test]
fn relay_corpus() {
    for (path, data) in inputs("relay") {
        eprintln!("{}", path.display());
        dhcpv6_fuzz::relay::check(&data);
    }
}

#[test]
fn config_corpus() {
    for (path, data) in inputs("config") {
        eprintln!("{}", path.display());
        // libFuzzer's `&str` targets skip inputs that are not UTF-8; so does this.
        if let Ok(text) = std::str::from_utf8(&data) {
            dhcpv6_fuzz::config::check(text);
        }
    }
}

#[test]
fn leasequery_corpus() {
    for (path, data) in inputs("leasequery") {
        eprintln!("{}", path.display());
        dhcpv6_fuzz::leasequery::check(&data);
    }
}

#[test]
fn engine_corpus() {
    for (path, data) in inputs("engine") {
        eprintln!("{}", path.display());
        let u = arbitrary::Unstructured::new(&data);
        if let Ok(script) = <dhcpv6_fuzz::engine::Script as arbitrary::Arbitrary>::arbitrary_take_rest(u) {
            dhcpv6_fuzz::engine::check(&script);
        }
    }
}

/// The seeds are valid inputs, so each reaches the deep end of its check.
#[test]
fn seeds_are_accepted() {
    for (path, data) in inputs("relay").into_iter().filter(|(p, _)| p.to_string_lossy().contains("seed-")) {
        assert!(dhcpv6_proto::server::relay::unwrap(&data).is_ok(), "{} unwraps", path.display());
    }
    for (path, data) in inputs("config").into_iter().filter(|(p, _)| p.to_string_lossy().contains("seed-")) {
        let text = String::from_utf8(data).expect("UTF-8 seed");
        assert!(dhcpv6_proto::config::from_str(&text, "seed.toml").is_ok(), "{} is accepted", path.display());
    }
    for (path, data) in inputs("codec_roundtrip").into_iter().filter(|(p, _)| p.to_string_lossy().contains("seed-")) {
        let parsed = match data[0] {
            12 | 13 => dhcpv6_proto::wire::RelayMessage::parse(&data).map(|_| ()),
            _ => dhcpv6_proto::wire::Message::parse(&data).map(|_| ()),
        };
        assert!(parsed.is_ok(), "{} parses", path.display());
    }
}
