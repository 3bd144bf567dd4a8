//! The real XDP object under BPF_PROG_TEST_RUN: a table of crafted frames with the expected
//! action and bytes, and a differential run of random and mutated frames against the model
//! built on the userspace server. Needs root (loading BPF programs).

mod common;

use common::*;
use dhcpv6::fastpath::{frame::udp_sum, model, Outcome};
use dhcpv6::server::{ConfiguredOption, SendPolicy};
use dhcpv6::wire::Message;
use dhcpv6_common::wire::{ETH_P_8021AD, ETH_P_8021Q};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn expect_same(p: &mut Program, iface: &dhcpv6::fastpath::model::ModelIface, name: &str, frame: &[u8]) -> Outcome {
    let want = model(frame, Some(iface));
    let (got, _) = p.run(frame);
    assert_eq!(got, want, "{name}: program and model disagree\nframe: {frame:02x?}");
    if let Outcome::Tx(reply) = &got {
        check_reply_checksum(reply);
    }
    got
}

/// Verifies a reply's UDP checksum from scratch, independent of both implementations.
fn check_reply_checksum(f: &[u8]) {
    let mut l3 = 14;
    while matches!(u16::from_be_bytes([f[l3 - 2], f[l3 - 1]]), ETH_P_8021Q | ETH_P_8021AD) {
        l3 += 4;
    }
    let src: [u8; 16] = f[l3 + 8..l3 + 24].try_into().unwrap();
    let dst: [u8; 16] = f[l3 + 24..l3 + 40].try_into().unwrap();
    let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) as usize;
    assert_eq!(f.len(), l3 + 40 + plen, "IPv6 payload length matches the frame");
    assert_eq!(usize::from(u16::from_be_bytes([f[l3 + 44], f[l3 + 45]])), plen, "UDP length matches the IPv6 payload");
    assert_eq!(udp_sum(&src.into(), &dst.into(), &f[l3 + 40..]), 0xffff, "UDP checksum verifies");
}

fn plain_cut(n: usize) -> Vec<u8> {
    spec().build(&info_req(&[client_id(14)]))[..n].to_vec()
}

fn info_req(opts: &[Vec<u8>]) -> Vec<u8> {
    message(11, opts)
}

#[test]
fn crafted_frames() {
    let iface = model_iface(true);
    let mut p = Program::load(Some(&iface));
    let base = || vec![client_id(14), oro(&[23, 24]), opt(8, &[0, 0])];
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let s = spec();
    cases.push(("plain", s.build(&info_req(&base())), "tx"));
    let mut v1 = spec();
    v1.vlans = vec![(ETH_P_8021Q, 100)];
    cases.push(("one VLAN tag", v1.build(&info_req(&base())), "tx"));
    let mut v2 = spec();
    v2.vlans = vec![(ETH_P_8021AD, 10), (ETH_P_8021Q, 200)];
    cases.push(("two VLAN tags", v2.build(&info_req(&base())), "tx"));
    let mut v3 = spec();
    v3.vlans = vec![(ETH_P_8021AD, 10), (ETH_P_8021Q, 200), (ETH_P_8021Q, 300)];
    cases.push(("three VLAN tags", v3.build(&info_req(&base())), "pass_headers"));
    cases.push(("no client id", s.build(&info_req(&[oro(&[23])])), "tx"));
    cases.push(("130-byte DUID", s.build(&info_req(&[client_id(130), oro(&[23])])), "tx"));
    cases.push(("131-byte DUID", s.build(&info_req(&[client_id(131)])), "drop_malformed"));
    cases.push(("odd DUID length", s.build(&info_req(&[client_id(11), oro(&[56, 23])])), "tx"));
    cases.push(("ORO asks NTP", s.build(&info_req(&[client_id(14), oro(&[56])])), "tx"));
    cases.push(("ORO asks NTP and SNTP", s.build(&info_req(&[client_id(14), oro(&[31, 56, 23])])), "tx"));
    cases.push(("empty ORO", s.build(&info_req(&[client_id(14), oro(&[])])), "tx"));
    cases.push(("odd ORO", s.build(&info_req(&[client_id(14), opt(6, &[0, 23, 0])])), "drop_malformed"));
    cases.push(("two OROs", s.build(&info_req(&[oro(&[23]), oro(&[56])])), "pass_limits"));
    cases.push(("ORO of 65 codes", s.build(&info_req(&[oro(&(1..=65).collect::<Vec<_>>())])), "pass_limits"));
    cases.push(("IA_NA", s.build(&info_req(&[client_id(14), opt(3, &[0; 12])])), "drop_ia_present"));
    cases.push(("IA_PD", s.build(&info_req(&[client_id(14), opt(25, &[0; 12])])), "drop_ia_present"));
    cases.push(("IA_TA", s.build(&info_req(&[opt(4, &[0; 4])])), "drop_ia_present"));
    let ours = opt(2, service().duid.as_bytes());
    cases.push(("our server id", s.build(&info_req(&[client_id(14), ours])), "tx"));
    cases.push((
        "foreign server id",
        s.build(&info_req(&[client_id(14), opt(2, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6])])),
        "drop_foreign_server_id",
    ));
    cases.push((
        "foreign server id, same length",
        s.build(&info_req(&[opt(2, &[0, 3, 0, 1, 2, 0xd6, 0, 0, 0, 2])])),
        "drop_foreign_server_id",
    ));
    let mut trunc = info_req(&base());
    trunc.extend_from_slice(&[0, 8, 0]);
    cases.push(("truncated option header", s.build(&trunc), "drop_malformed"));
    let mut over = info_req(&[client_id(14)]);
    over.extend_from_slice(&[0, 16, 0, 40, 1, 2]);
    cases.push(("option length past the end", s.build(&over), "drop_malformed"));
    cases.push(("33 options", s.build(&info_req(&vec![opt(8, &[0, 0]); 33])), "pass_limits"));
    cases.push(("32 options", s.build(&info_req(&vec![opt(8, &[0, 0]); 32])), "tx"));
    cases.push(("solicit", s.build(&message(1, &base())), "pass_other_msg"));
    let mut relay = vec![12, 0];
    relay.extend_from_slice(&[0; 32]);
    relay.extend_from_slice(&opt(9, &info_req(&base())));
    cases.push(("relay-forward", s.build(&relay), "pass_other_msg"));
    cases.push(("short DHCPv6 header", s.build(&[11, 0]), "drop_malformed"));
    cases.push(("empty UDP payload", s.build(&[]), "drop_malformed"));
    let mut not_ll = spec();
    not_ll.src = "2001:db8::2".parse().unwrap();
    cases.push(("global source", not_ll.build(&info_req(&base())), "pass_addressing"));
    let mut uni = spec();
    uni.dst = server_ll();
    cases.push(("unicast to our link-local", uni.build(&info_req(&base())), "tx"));
    let mut other_dst = spec();
    other_dst.dst = "ff05::1:3".parse().unwrap();
    cases.push(("to ff05::1:3", other_dst.build(&info_req(&base())), "pass_addressing"));
    let mut bad_sum = s.build(&info_req(&base()));
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 0xff;
    cases.push(("bad checksum", bad_sum, "pass_checksum"));
    let mut zero_sum = s.build(&info_req(&base()));
    zero_sum[14 + 40 + 6] = 0;
    zero_sum[14 + 40 + 7] = 0;
    cases.push(("zero checksum", zero_sum, "pass_checksum"));
    let mut hbh = s.build(&info_req(&base()));
    hbh[14 + 6] = 0;
    cases.push(("extension header", hbh, "pass_headers"));
    let mut other_port = spec();
    other_port.dst_port = 546;
    cases.push(("UDP to 546", other_port.build(&info_req(&base())), "not_dhcp"));
    let mut long_ip = s.build(&info_req(&base()));
    long_ip[14 + 5] += 4;
    cases.push(("IPv6 length past the frame", long_ip, "pass_length"));
    let mut padded = s.build(&info_req(&base()));
    padded.extend_from_slice(&[0; 20]);
    cases.push(("Ethernet padding", padded, "tx"));
    cases.push(("runt frame", vec![0x33, 0x33, 0, 1, 0, 2, 2, 0, 0, 0, 0, 2, 0x86, 0xdd], "not_dhcp"));
    cases.push(("IPv6 header cut short", plain_cut(30), "not_dhcp"));
    let plain = s.build(&info_req(&base()));
    cases.push(("headers only", plain[..14 + 40 + 8].to_vec(), "pass_length"));
    cases.push((
        "IPv4",
        {
            let mut f = plain.clone();
            f[12] = 8;
            f[13] = 0;
            f
        },
        "not_dhcp",
    ));
    let big: Vec<Vec<u8>> = (0..10).map(|_| opt(16, &[0; 48])).collect();
    cases.push(("request over 512 bytes", s.build(&info_req(&big)), "pass_limits"));

    for (name, frame, expect) in &cases {
        let got = expect_same(&mut p, &iface, name, frame);
        let kind = match &got {
            Outcome::Tx(_) => "tx",
            Outcome::NotDhcp => "not_dhcp",
            Outcome::Pass(c) | Outcome::Drop(c) => c,
        };
        assert_eq!(kind, *expect, "{name}");
    }

    // The bytes of one answer, field by field.
    let frame = s.build(&info_req(&[client_id(14), oro(&[23, 24])]));
    let (Outcome::Tx(r), _) = p.run(&frame) else { panic!("no answer") };
    assert_eq!(&r[0..6], &CLIENT_MAC);
    assert_eq!(&r[6..12], &SERVER_MAC);
    assert_eq!(&r[22..38], &server_ll().octets());
    assert_eq!(&r[38..54], &client_ll().octets());
    assert_eq!(&r[54..58], &[2, 35, 2, 34], "ports 547 -> 546");
    let m = Message::parse(&r[62..]).unwrap();
    assert_eq!((m.msg_type(), m.xid()), (7, [0x12, 0x34, 0x56]));
    let codes: Vec<u16> = m.options().map(|o| o.code).collect();
    assert_eq!(codes, vec![1, 2, 23, 24, 32, 83], "no NTP/SNTP unless requested");
    assert_eq!(m.client_id().unwrap(), Some(&client_id(14)[4..]));
}

#[test]
fn no_fast_path_and_unknown_interface_pass() {
    let iface = model_iface(false);
    let mut p = Program::load(Some(&iface));
    let frame = spec().build(&info_req(&[client_id(14)]));
    assert_eq!(p.run(&frame).0, Outcome::Pass("pass_fast_path_off"));
    let mut p = Program::load(None);
    assert_eq!(p.run(&frame).0, Outcome::Pass("pass_no_iface"));
    assert_eq!(model(&frame, None), Outcome::Pass("pass_no_iface"));
}

/// Frames near valid requests, then broken in one of many ways; half get their lengths and
/// checksum repaired afterwards so the breakage reaches the DHCPv6 parser.
fn mutate(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    let l3 = 14;
    let l4 = l3 + 40;
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..8) {
            0 => {
                let i = rng.random_range(l4 + 8..f.len().max(l4 + 9));
                if i < f.len() {
                    f[i] = rng.random();
                }
            }
            1 => {
                let n = rng.random_range(l4 + 8..=f.len().max(l4 + 8));
                f.truncate(n);
            }
            2 => {
                let extra: Vec<u8> = (0..rng.random_range(1..40)).map(|_| rng.random()).collect();
                f.extend_from_slice(&extra);
            }
            3 => {
                // An option length field somewhere in the DHCPv6 part.
                let i = rng.random_range(l4 + 12..f.len().max(l4 + 13));
                if i + 1 < f.len() {
                    f[i] = 0;
                    f[i + 1] = rng.random_range(0..200);
                }
            }
            4 => {
                let code: u16 = *[1, 2, 3, 4, 6, 25, 8, 16, 9].get(rng.random_range(0..9)).unwrap();
                let len = rng.random_range(0..140);
                f.extend_from_slice(&opt(code, &vec![rng.random(); len]));
            }
            5 => {
                let i = rng.random_range(0..l4 + 8);
                f[i] = rng.random();
            }
            6 if f.len() > l4 + 8 => f[l4 + 8] = *[11, 11, 11, 1, 12, 0, 255].get(rng.random_range(0..7)).unwrap(),
            6 => {}
            _ => {
                let i = rng.random_range(l3 + 8..l3 + 40);
                f[i] ^= 1 << rng.random_range(0..8);
            }
        }
    }
    if rng.random_bool(0.6) && f.len() >= l4 + 8 {
        let len = (f.len() - l4) as u16;
        f[l3 + 4..l3 + 6].copy_from_slice(&len.to_be_bytes());
        f[l4 + 4..l4 + 6].copy_from_slice(&len.to_be_bytes());
        f[l4 + 6] = 0;
        f[l4 + 7] = 0;
        let src: [u8; 16] = f[l3 + 8..l3 + 24].try_into().unwrap();
        let dst: [u8; 16] = f[l3 + 24..l3 + 40].try_into().unwrap();
        let c = dhcpv6::fastpath::frame::udp_checksum(&src.into(), &dst.into(), &f[l4..]);
        f[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    }
    f
}

fn random_request(rng: &mut StdRng) -> Vec<u8> {
    let mut opts = Vec::new();
    if rng.random_bool(0.8) {
        opts.push(client_id(rng.random_range(3..=130)));
    }
    if rng.random_bool(0.7) {
        let codes: Vec<u16> = (0..rng.random_range(0..8))
            .map(|_| *[23, 24, 31, 56, 32, 83, 82, 64, 100, 200].get(rng.random_range(0..10)).unwrap())
            .collect();
        opts.push(oro(&codes));
    }
    if rng.random_bool(0.5) {
        opts.push(opt(8, &[0, rng.random()]));
    }
    if rng.random_bool(0.1) {
        opts.push(opt(2, service().duid.as_bytes()));
    }
    if rng.random_bool(0.2) {
        // An option the server ignores, of any length: the Client Identifier after it may
        // sit at an odd offset.
        let data: Vec<u8> = (0..rng.random_range(0..12)).map(|_| rng.random()).collect();
        opts.push(opt(15, &data));
    }
    if rng.random_bool(0.3) {
        // Clients order their options as they like; the Client Identifier is not always first.
        let n = opts.len();
        for i in (1..n).rev() {
            opts.swap(i, rng.random_range(0..=i));
        }
    }
    let mut s = spec();
    if rng.random_bool(0.2) {
        s.vlans.push((ETH_P_8021Q, rng.random_range(1..4095)));
    } else if rng.random_bool(0.05) {
        s.vlans = vec![(ETH_P_8021AD, rng.random_range(1..4095)), (ETH_P_8021Q, rng.random_range(1..4095))];
    }
    if rng.random_bool(0.1) {
        s.dst = server_ll();
    }
    s.src_port = if rng.random_bool(0.9) { 546 } else { rng.random() };
    let mut m = message(11, &opts);
    m[1] = rng.random();
    s.build(&m)
}

#[test]
fn differential_random_and_mutated_frames() {
    let count: usize = std::env::var("DHCPV6_FUZZ_FRAMES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    differential(&model_iface(true), count);
}

/// Another reply layout: odd-length options (parity changes inside a run), a requested-only
/// option between two sent to everyone (no base run: segment by segment) and one with a
/// code above 64 (the upper half of the Option Request mask).
#[test]
fn differential_with_odd_options_and_no_base_run() {
    let options = vec![
        configured(23, SendPolicy::Always, &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53]),
        configured(100, SendPolicy::WhenRequested, &[1, 2, 3, 4, 5]),
        configured(24, SendPolicy::Always, &[3, b'i', b's', b'p', 0, 7, 9]),
        configured(
            56,
            SendPolicy::WhenRequested,
            &[0, 1, 0, 16, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x23],
        ),
        configured(32, SendPolicy::Always, &[0, 0, 0x0e, 0x10]),
    ];
    let mut iface = model_iface(true);
    iface.svc.options = options;
    let count: usize = std::env::var("DHCPV6_FUZZ_FRAMES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    differential(&iface, count / 2);
}

fn configured(code: u16, policy: SendPolicy, data: &[u8]) -> ConfiguredOption {
    ConfiguredOption { code, policy, encoded: opt(code, data) }
}

fn differential(iface: &dhcpv6::fastpath::model::ModelIface, count: usize) {
    let seed: u64 = std::env::var("DHCPV6_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_d6);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut p = Program::load(Some(iface));
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..count {
        let base = random_request(&mut rng);
        let frame = if rng.random_bool(0.3) { base } else { mutate(&mut rng, &base) };
        let want = model(&frame, Some(iface));
        let (got, _) = p.run(&frame);
        assert_eq!(got, want, "frame {i} (seed {seed}): program and model disagree\nframe: {frame:02x?}");
        let key = match &got {
            Outcome::Tx(r) => {
                check_reply_checksum(r);
                "tx".to_owned()
            }
            Outcome::NotDhcp => "not_dhcp".to_owned(),
            Outcome::Pass(c) | Outcome::Drop(c) => (*c).to_owned(),
        };
        *tally.entry(key).or_default() += 1;
    }
    eprintln!("{count} frames, seed {seed}: {tally:?}");
    // The run must exercise answers, drops and passes, or it proves little.
    for k in ["tx", "drop_malformed", "pass_checksum", "pass_other_msg", "drop_ia_present"] {
        assert!(tally.get(k).copied().unwrap_or(0) > 100, "too few {k} outcomes: {tally:?}");
    }
}
