//! `config`: `config::from_str` on arbitrary UTF-8 must refuse or accept, never panic. A
//! refusal names a line of the text; an accepted file gives the same result twice, merges
//! with a served interface into a `Config` whose links pass `check_links` again and build an
//! engine, and whose options (and the relay's DNS rewrite) fit their 16-bit length fields.

use std::net::Ipv6Addr;

use dhcpv6_proto::config::{self, ConfigError, Overrides};
use dhcpv6_proto::resolv::HostResolver;
use dhcpv6_proto::server::stateful::{check_links, Engine};
use dhcpv6_proto::wire::OptionIter;

const NOW: u64 = 1_700_000_000;

fn check_line(text: &str, e: &ConfigError) {
    if let ConfigError::Invalid { line, .. } = e {
        let lines = text.bytes().filter(|b| *b == b'\n').count() + 1;
        assert!((1..=lines).contains(line), "refusal at line {line} of a {lines}-line text: {e}");
    }
    let _ = e.to_string();
}

pub fn check(text: &str) {
    let file = match config::from_str(text, "fuzz.toml") {
        Ok(f) => f,
        Err(e) => return check_line(text, &e),
    };
    let again = config::from_str(text, "fuzz.toml").expect("the same text is accepted twice");
    assert_eq!(file, again, "parsing is deterministic");

    let host = HostResolver { dns: vec![Ipv6Addr::LOCALHOST], domains: vec!["host.example".into()] };
    let flags = Overrides { ifaces: vec!["fuzz0".into()], ..Overrides::default() };
    // What only the whole can refuse (an interface both served and relayed) may still fail.
    let cfg = match file.merge(&flags, &host) {
        Ok(c) => c,
        Err(e) => return check_line(text, &e),
    };
    if let Err(r) = check_links(cfg.links()) {
        panic!("accepted links fail check_links: {r:?}");
    }
    if let Err(e) = Engine::new(cfg.links().to_vec(), Vec::new(), NOW) {
        panic!("accepted links do not build an engine: {e}");
    }
    if let Some(dns) = cfg.relay().and_then(|r| r.rewrite_dns()) {
        assert!(dns.len() * 16 <= usize::from(u16::MAX), "{} rewrite DNS servers do not fit one option", dns.len());
    }
    for iface in cfg.ifaces() {
        let encoded = iface
            .service()
            .encode()
            .unwrap_or_else(|e| panic!("{}: accepted options fail to encode: {e}", iface.name()));
        for o in encoded {
            let one: Vec<_> = OptionIter::new(&o.encoded).collect();
            assert!(
                matches!(one.as_slice(), [Ok(r)] if r.code == o.code && r.wire_len() == o.encoded.len()),
                "{}: option {} of {} bytes does not say its own length",
                iface.name(),
                o.code,
                o.encoded.len()
            );
        }
    }
}
