//! Writes the hand-made seeds of each target's corpus: small valid inputs the fuzzer mutates
//! from. Run from the repository root after changing them, then minimise (docs/fuzzing.md):
//!
//!     cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds

use std::fs;
use std::path::Path;

use dhcpv6_common::wire::{msg, opt};

fn option(code: u16, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("seed options are short");
    [&code.to_be_bytes()[..], &len.to_be_bytes(), data].concat()
}

fn message(t: u8, opts: &[Vec<u8>]) -> Vec<u8> {
    [vec![t, 0x12, 0x34, 0x56], opts.concat()].concat()
}

fn relay_forw(hops: u8, link: [u8; 16], opts: &[Vec<u8>], inner: &[u8]) -> Vec<u8> {
    let peer = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    [vec![msg::RELAY_FORW, hops], link.to_vec(), peer.to_vec(), opts.concat(), option(opt::RELAY_MSG, inner)].concat()
}

const DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const SERVER: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 0xaa];
const ADDR: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const LINK: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn ia_na(iaid: u32, with_addr: bool) -> Vec<u8> {
    let mut d = iaid.to_be_bytes().to_vec();
    d.extend_from_slice(&[0; 8]);
    if with_addr {
        d.extend(option(opt::IAADDR, &[&ADDR[..], &[0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20]].concat()));
    }
    option(opt::IA_NA, &d)
}

fn ia_pd(iaid: u32) -> Vec<u8> {
    let mut d = iaid.to_be_bytes().to_vec();
    d.extend_from_slice(&[0; 8]);
    let mut p = vec![0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20, 56];
    p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    d.extend(option(opt::IAPREFIX, &p));
    option(opt::IA_PD, &d)
}

fn solicit() -> Vec<u8> {
    message(
        msg::SOLICIT,
        &[
            option(opt::CLIENTID, &DUID),
            option(opt::ELAPSED_TIME, &[0, 0]),
            option(opt::ORO, &[0, 23, 0, 24]),
            option(opt::RAPID_COMMIT, &[]),
            ia_na(1, false),
            ia_pd(2),
        ],
    )
}

fn codec() -> Vec<(&'static str, Vec<u8>)> {
    let info = message(msg::INFORMATION_REQUEST, &[option(opt::CLIENTID, &DUID), option(opt::ORO, &[0, 23])]);
    let request =
        message(msg::REQUEST, &[option(opt::CLIENTID, &DUID), option(opt::SERVERID, &SERVER), ia_na(1, true)]);
    let mut ia = 1u32.to_be_bytes().to_vec();
    ia.extend_from_slice(&[0; 8]);
    ia.extend(option(opt::STATUS_CODE, &[0, 2, b'n', b'o']));
    let reply = message(
        msg::REPLY,
        &[
            option(opt::CLIENTID, &DUID),
            option(opt::SERVERID, &SERVER),
            option(opt::IA_NA, &ia),
            option(opt::DNS_SERVERS, &ADDR),
        ],
    );
    let relayed = relay_forw(0, LINK, &[option(opt::INTERFACE_ID, b"eth7")], &solicit());
    vec![
        ("information-request", info),
        ("solicit", solicit()),
        ("request", request),
        ("reply", reply),
        ("relay-forward", relayed),
    ]
}

fn relay() -> Vec<(&'static str, Vec<u8>)> {
    let ids = [
        option(opt::INTERFACE_ID, b"port-1/7"),
        option(opt::REMOTE_ID, &[0, 0, 0, 9, 1, 2]),
        option(opt::SUBSCRIBER_ID, b"line-1"),
        option(opt::CLIENT_LINKLAYER_ADDR, &[0, 1, 2, 0, 0, 0, 0, 7]),
    ];
    let one = relay_forw(0, LINK, &ids, &solicit());
    let two = relay_forw(1, LINK, &[option(opt::INTERFACE_ID, b"up")], &relay_forw(0, [0; 16], &ids[..1], &solicit()));
    let info = relay_forw(0, LINK, &[], &message(msg::INFORMATION_REQUEST, &[option(opt::CLIENTID, &DUID)]));
    vec![("one-level", one), ("two-levels-ldra", two), ("information-request", info)]
}

fn config() -> Vec<(&'static str, Vec<u8>)> {
    let example = fs::read("dhcpv6-proto/src/config/example.toml").expect("run from the repository root");
    let small = b"[defaults]\ndns = [\"2001:db8::53\"]\n\n[[interface]]\nname = \"eth1\"\nna_pools = [\"2001:db8:1::100-2001:db8:1::1ff\"]\n".to_vec();
    let link = b"[[link]]\nname = \"olt-1\"\npd_pools = [\"2001:db8:100::/40:56\"]\nvalid_lifetime = 600\npreferred_lifetime = 300\n\n[[link.reservation]]\nduid = \"00:03:00:01:02:00:00:00:00:01\"\nprefix = \"2001:db8:100:100::/56\"\n".to_vec();
    vec![("example", example), ("small", small), ("link", link)]
}

fn engine() -> Vec<(&'static str, Vec<u8>)> {
    // `arbitrary` reads any bytes as a script; these give a few steps of varied kinds.
    let ramp: Vec<u8> = (0..=255u8).collect();
    let steps: Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    vec![("ramp", ramp), ("steps", steps), ("zeros", vec![0; 64])]
}

fn leasequery() -> Vec<(&'static str, Vec<u8>)> {
    let query = |t: u8, link: [u8; 16], opts: &[Vec<u8>]| {
        let lq = [&[t][..], &link, &opts.concat()].concat();
        message(14, &[option(opt::CLIENTID, &DUID), option(44, &lq)])
    };
    let iaaddr = option(opt::IAADDR, &[&ADDR[..], &[0; 8]].concat());
    let client = option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
    let oro = option(opt::ORO, &[0, 47]);
    vec![
        ("by-address", query(1, [0; 16], &[iaaddr])),
        ("by-client-id", query(2, [0; 16], &[client, oro])),
        ("by-relay-id", query(3, [0; 16], &[option(53, &[0, 2, 0, 0, 0x0d, 0xe9, 1])])),
        ("by-link-address", query(4, LINK, &[])),
        ("by-remote-id", query(5, [0; 16], &[option(opt::REMOTE_ID, &[0, 0, 0x0d, 0xe9, 3])])),
        ("our-server-id", [query(1, [0; 16], &[]), option(opt::SERVERID, &SERVER)].concat()),
    ]
}

fn main() {
    let root = Path::new("fuzz/corpus");
    for (target, seeds) in [
        ("codec_roundtrip", codec()),
        ("relay", relay()),
        ("config", config()),
        ("engine", engine()),
        ("leasequery", leasequery()),
    ] {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("creating the corpus folder");
        for (name, bytes) in seeds {
            let path = dir.join(format!("seed-{name}"));
            fs::write(&path, bytes).expect("writing a seed");
            println!("{}", path.display());
        }
    }
}
