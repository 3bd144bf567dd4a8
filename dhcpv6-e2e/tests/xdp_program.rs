//! The real XDP object under BPF_PROG_TEST_RUN: a table of crafted frames with the expected
//! action and bytes, and a differential run of random and mutated frames against the model
//! built on the userspace server. Needs root (loading BPF programs).

mod common;
// The Renew path (tests/xdp_program/ holds no test target of its own).
#[path = "xdp_program/renew.rs"]
mod renew;

use std::net::Ipv6Addr;

use common::*;
use dhcpv6::fastpath::{frame::udp_sum, model, model::ModelIface, ModelMaps, Outcome};
use dhcpv6::server::{ConfiguredOption, SendPolicy};
use dhcpv6::wire::{Duid, Message};
use dhcpv6_common::{
    wire::{ETH_P_8021AD, ETH_P_8021Q},
    FloodConfig, FloodLimit, Verdict,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The program's clock (`bpf_ktime_get_ns` is CLOCK_MONOTONIC), for the model's buckets.
fn ktime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a plain syscall writing into `ts`.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `frame` through the program and the model (which keeps its own buckets and MACs)
/// and requires the same outcome.
fn run_both(p: &mut Program, m: &mut ModelMaps, name: &str, frame: &[u8]) -> Outcome {
    let want = m.run(frame, ktime_ns());
    let (got, _) = p.run(frame);
    assert_eq!(got, want, "{name}: program and model disagree\nframe: {frame:02x?}");
    if let Outcome::Tx(reply) | Outcome::TxRelayed(reply) = &got {
        check_reply_checksum(reply);
    }
    got
}

/// The reply data of a VLAN interface: its own MAC, link-local address and DNS server.
fn vlan_iface(n: u8) -> ModelIface {
    let mac = [0x02, 0xd6, 0, 0, n, 0x01];
    let mut svc = service();
    svc.duid = Duid::from_mac(mac);
    svc.options = dhcpv6::server::ServiceOptions {
        dns: vec![Ipv6Addr::new(0x2001, 0xdb8, u16::from(n), 0, 0, 0, 0, 0x53)],
        domains: vec![format!("vlan{n}.example")],
        ..Default::default()
    }
    .encode()
    .unwrap();
    ModelIface::new(mac, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(n)), svc, true)
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Tx(_) => "tx",
        Outcome::TxRelayed(_) => "tx_relayed",
        o => o.counter(),
    }
}

fn expect_same(p: &mut Program, iface: &dhcpv6::fastpath::model::ModelIface, name: &str, frame: &[u8]) -> Outcome {
    let want = model(frame, Some(iface));
    let (got, _) = p.run(frame);
    assert_eq!(got, want, "{name}: program and model disagree\nframe: {frame:02x?}");
    if let Outcome::Tx(reply) | Outcome::TxRelayed(reply) = &got {
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
    // No reply data for these VLANs: not the parent's to answer (see `vlan_frames`).
    let mut v1 = spec();
    v1.vlans = vec![(ETH_P_8021Q, 100)];
    cases.push(("one VLAN tag", v1.build(&info_req(&base())), "pass_vlan"));
    let mut v2 = spec();
    v2.vlans = vec![(ETH_P_8021AD, 10), (ETH_P_8021Q, 200)];
    cases.push(("two VLAN tags", v2.build(&info_req(&base())), "pass_vlan"));
    let mut prio = spec();
    prio.vlans = vec![(ETH_P_8021Q, 0xe000)];
    cases.push(("priority tag (VLAN 0)", prio.build(&info_req(&base())), "tx"));
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
    // The interface does not trust lightweight relays (`relayed_ir` off): userspace decides.
    cases.push(("relay-forward", s.build(&relay), "pass_relay_untrusted"));
    cases.push(("short DHCPv6 header", s.build(&[11, 0]), "drop_malformed"));
    cases.push(("empty UDP payload", s.build(&[]), "drop_malformed"));
    let mut not_ll = spec();
    not_ll.src = "2001:db8::2".parse().unwrap();
    cases.push(("global source", not_ll.build(&info_req(&base())), "pass_addressing"));
    let mut uni = spec();
    uni.dst = server_ll();
    // RFC 9915 section 16: discarded (userspace counts drop_unicast), never answered here.
    cases.push(("unicast to our link-local", uni.build(&info_req(&base())), "pass_addressing"));
    let mut other_dst = spec();
    other_dst.dst = "ff05::1:3".parse().unwrap();
    cases.push(("to ff05::1:3", other_dst.build(&info_req(&base())), "pass_addressing"));
    // A leasequery (RFC 5007) comes unicast from a requestor anywhere: up to userspace, whose
    // leasequery_from decides; sent to the multicast group from the link, up as another type.
    let lq = message(14, &[client_id(14), opt(44, &[&[1u8][..], &[0; 16]].concat())]);
    let mut lq_uni = spec();
    lq_uni.src = "2001:db8:ff::9".parse().unwrap();
    lq_uni.dst = server_ll();
    cases.push(("leasequery unicast", lq_uni.build(&lq), "pass_addressing"));
    cases.push(("leasequery to ff02::1:2", s.build(&lq), "pass_other_msg"));
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
        assert_eq!(kind(&got), *expect, "{name}");
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
    assert_eq!(p.run(&frame).0, Outcome::Pass(Verdict::PassFastPathOff));
    let mut p = Program::load(None);
    assert_eq!(p.run(&frame).0, Outcome::Pass(Verdict::PassNoIface));
    assert_eq!(model(&frame, None), Outcome::Pass(Verdict::PassNoIface));
    let mut tagged = spec();
    tagged.vlans = vec![(ETH_P_8021Q, 100)];
    let frame = tagged.build(&info_req(&[client_id(14)]));
    assert_eq!(p.run(&frame).0, Outcome::Pass(Verdict::PassVlan));
    assert_eq!(model(&frame, None), Outcome::Pass(Verdict::PassVlan));
}

/// The parent interface and two VLANs below it with reply data of their own (VLAN 100, and
/// 200 inside S-VLAN 10), as the daemon writes them for VLAN interfaces it serves.
fn vlan_maps() -> ModelMaps {
    let mut m = ModelMaps::single(Some(&model_iface(true)));
    m.ifaces.insert((100, 0), vlan_iface(100));
    m.ifaces.insert((10, 200), vlan_iface(200));
    m
}

#[test]
fn vlan_frames_are_answered_only_from_their_vlans_reply_data() {
    let mut m = vlan_maps();
    let mut p = Program::load_maps(&m);
    let req = info_req(&[client_id(14), oro(&[23, 24])]);
    let dns_of = |r: &[u8], l4: usize| -> Vec<u8> {
        let msg = Message::parse(&r[l4 + 8..]).unwrap();
        msg.options().find(|o| o.code == 23).map(|o| o.data.to_vec()).expect("DNS option")
    };

    // VLAN 100 (with any priority bits): VLAN 100's MAC, address and DNS server; the tag stays.
    let mut s = spec();
    s.vlans = vec![(ETH_P_8021Q, 0x2000 | 100)];
    let Outcome::Tx(r) = run_both(&mut p, &mut m, "VLAN 100", &s.build(&req)) else { panic!("VLAN 100 not answered") };
    let v = vlan_iface(100);
    assert_eq!(&r[6..12], &v.mac, "from the VLAN interface's MAC");
    assert_eq!(&r[12..18], &[0x81, 0x00, 0x20, 100, 0x86, 0xdd], "tag kept as it came");
    assert_eq!(&r[18 + 8..18 + 24], &v.link_local.octets(), "from the VLAN interface's address");
    assert_eq!(dns_of(&r, 18 + 40), Ipv6Addr::new(0x2001, 0xdb8, 100, 0, 0, 0, 0, 0x53).octets());

    // S-VLAN 10 / C-VLAN 200: both tags kept, VLAN 200's data.
    s.vlans = vec![(ETH_P_8021AD, 10), (ETH_P_8021Q, 200)];
    let Outcome::Tx(r) = run_both(&mut p, &mut m, "QinQ 10/200", &s.build(&req)) else { panic!("QinQ not answered") };
    assert_eq!(&r[6..12], &vlan_iface(200).mac);
    assert_eq!(&r[12..22], &[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 200, 0x86, 0xdd]);
    assert_eq!(dns_of(&r, 22 + 40), Ipv6Addr::new(0x2001, 0xdb8, 200, 0, 0, 0, 0, 0x53).octets());

    // VLAN 200 alone, VLAN 10 alone, VLAN 101: no reply data for that pair, passed and counted.
    for (name, vlans) in [
        ("C-VLAN 200 untagged by S-VLAN", vec![(ETH_P_8021Q, 200)]),
        ("S-VLAN 10 alone", vec![(ETH_P_8021AD, 10)]),
        ("VLAN 101", vec![(ETH_P_8021Q, 101)]),
    ] {
        s.vlans = vlans;
        assert_eq!(run_both(&mut p, &mut m, name, &s.build(&req)), Outcome::Pass(Verdict::PassVlan), "{name}");
    }

    // Untagged: the parent's own data, as before.
    let Outcome::Tx(r) = run_both(&mut p, &mut m, "untagged", &spec().build(&req)) else { panic!("not answered") };
    assert_eq!(&r[6..12], &SERVER_MAC);
    let parent_dns: Vec<u8> = service().options[0].encoded[4..].to_vec();
    assert_eq!(dns_of(&r, 14 + 40), parent_dns);
}

const RELAY: &str = "2001:db8:ffff::1";

/// Buckets small enough to empty in a test: 5 frames per MAC, 8 per relay source, one token
/// a second (the test takes far less than a second between its first and last frame).
fn flood_maps(learn_macs: bool, fast_path: bool) -> ModelMaps {
    let mut iface = model_iface(fast_path);
    iface.learn_macs = learn_macs;
    let mut m = ModelMaps::single(Some(&iface));
    m.flood = FloodConfig { client: FloodLimit::new(1, 5), relay: FloodLimit::new(1, 8), ..Default::default() };
    m.relays.insert(RELAY.parse().unwrap());
    m
}

#[test]
fn a_flood_from_one_mac_is_dropped_past_its_burst_and_others_still_get_through() {
    let mut m = flood_maps(false, true);
    let mut p = Program::load_maps(&m);
    let solicit = message(1, &[client_id(14)]);
    let ir = info_req(&[client_id(14), oro(&[23])]);
    let flooder = spec();
    for i in 0..5 {
        let o = run_both(&mut p, &mut m, &format!("solicit {i}"), &flooder.build(&solicit));
        assert_eq!(o, Outcome::Pass(Verdict::PassOtherMsg), "solicit {i} within the burst");
    }
    for i in 5..20 {
        let o = run_both(&mut p, &mut m, &format!("solicit {i}"), &flooder.build(&solicit));
        assert_eq!(o, Outcome::Drop(Verdict::DropFlood), "solicit {i} past the burst");
    }
    // Answered in XDP, so never metered: the flooder's own Information-Requests still are.
    assert_eq!(kind(&run_both(&mut p, &mut m, "flooder's IR", &flooder.build(&ir))), "tx");
    // Another MAC on the same interface: its bucket is its own.
    let mut other = spec();
    other.src_mac = [0x02, 0xc1, 0, 0, 0, 0x99];
    other.src = "fe80::c1ff:fe00:99".parse().unwrap();
    assert_eq!(
        run_both(&mut p, &mut m, "other's solicit", &other.build(&solicit)),
        Outcome::Pass(Verdict::PassOtherMsg)
    );
    assert_eq!(kind(&run_both(&mut p, &mut m, "other's IR", &other.build(&ir))), "tx");
    // Frames passed for their headers are not metered: an MLD report or ESP may be anything
    // but DHCPv6.
    let mut hbh = flooder.build(&ir);
    hbh[14 + 6] = 0;
    assert_eq!(run_both(&mut p, &mut m, "flooder's extension header", &hbh), Outcome::Pass(Verdict::PassHeaders));

    // A configured relay source behind the flooder's MAC (a router): a bucket of its own.
    let mut relay = spec();
    relay.src = RELAY.parse().unwrap();
    relay.dst = "2001:db8::547".parse().unwrap();
    let mut fwd = vec![12, 0];
    fwd.extend_from_slice(&[0; 32]);
    fwd.extend_from_slice(&opt(9, &solicit));
    for i in 0..8 {
        let o = run_both(&mut p, &mut m, &format!("relay-forward {i}"), &relay.build(&fwd));
        assert_eq!(o, Outcome::Pass(Verdict::PassAddressing), "relay-forward {i} within the relay burst");
    }
    let o = run_both(&mut p, &mut m, "relay-forward 8", &relay.build(&fwd));
    assert_eq!(o, Outcome::Drop(Verdict::DropFloodRelay), "past the relay burst");
    // Another, unconfigured global source from that MAC shares the MAC's (empty) bucket.
    relay.src = "2001:db8:ffff::2".parse().unwrap();
    assert_eq!(run_both(&mut p, &mut m, "unconfigured relay", &relay.build(&fwd)), Outcome::Drop(Verdict::DropFlood));
}

#[test]
fn client_macs_are_learned_only_from_valid_client_messages_that_pass_the_bucket() {
    // A relay agent's downstream interface: no fast path, MAC learning on.
    let mut m = flood_maps(true, false);
    let mut p = Program::load_maps(&m);
    let solicit = message(1, &[client_id(14)]);
    let learned = |p: &mut Program, addr: &str| p.dp().client_mac(1, addr.parse().unwrap());
    let from = |mac: u8, src: &str| {
        let mut s = spec();
        s.src_mac = [0x02, 0xc1, 0, 0, 0, mac];
        s.src = src.parse().unwrap();
        s
    };

    let ok = from(0x10, "fe80::10");
    assert_eq!(run_both(&mut p, &mut m, "valid", &ok.build(&solicit)), Outcome::Pass(Verdict::PassFastPathOff));
    assert_eq!(learned(&mut p, "fe80::10"), Some([0x02, 0xc1, 0, 0, 0, 0x10]), "a valid Solicit is learned");

    let mut cases: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    cases.push(("global source", "2001:db8::11", from(0x11, "2001:db8::11").build(&solicit)));
    let mut long = from(0x12, "fe80::12").build(&solicit);
    long[14 + 5] += 4;
    cases.push(("IPv6 length past the frame", "fe80::12", long));
    let mut udp_short = from(0x13, "fe80::13").build(&solicit);
    udp_short[14 + 40 + 5] -= 2;
    cases.push(("UDP and IPv6 lengths disagree", "fe80::13", udp_short));
    cases.push(("short DHCPv6 header", "fe80::14", from(0x14, "fe80::14").build(&[1, 0])));
    let mut fwd = vec![12, 0];
    fwd.extend_from_slice(&[0; 32]);
    fwd.extend_from_slice(&opt(9, &solicit));
    cases.push(("relay-forward from below", "fe80::15", from(0x15, "fe80::15").build(&fwd)));
    cases.push(("advertise (a server message)", "fe80::16", from(0x16, "fe80::16").build(&message(2, &[]))));
    for (name, addr, frame) in &cases {
        run_both(&mut p, &mut m, name, frame);
        assert_eq!(learned(&mut p, addr), None, "{name}: not learned");
    }

    // The spoofer's MAC floods: past its burst, its frames teach nothing, even valid ones
    // claiming the address of a client already learned.
    let spoof = |src: &str| from(0x66, src);
    for i in 0..5 {
        run_both(&mut p, &mut m, "spoofer within burst", &spoof(&format!("fe80::66:{i}")).build(&solicit));
    }
    let o = run_both(&mut p, &mut m, "spoofer past burst", &spoof("fe80::10").build(&solicit));
    assert_eq!(o, Outcome::Drop(Verdict::DropFlood));
    assert_eq!(learned(&mut p, "fe80::10"), Some([0x02, 0xc1, 0, 0, 0, 0x10]), "the victim's entry stands");

    // The model learned exactly what the program did.
    for (addr, mac) in &m.macs {
        assert_eq!(p.dp().client_mac(1, *addr), Some(*mac), "{addr}");
    }
    assert_eq!(m.macs.len(), 1 + 5, "the valid client and the spoofer's five admitted frames");
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
        let len = u16::try_from(f.len() - l4).unwrap_or(u16::MAX);
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
            .map(|_| *[23, 24, 31, 56, 32, 83, 82, 64, 100, 200, 17, 103].get(rng.random_range(0..12)).unwrap())
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
    // VLANs with reply data of their own (see `vlan_maps`) and without; random priority bits.
    let prio = rng.random_range(0..8u16) << 13;
    if rng.random_bool(0.2) {
        let vid = if rng.random_bool(0.5) { 100 } else { rng.random_range(0..4095) };
        s.vlans.push((ETH_P_8021Q, prio | vid));
    } else if rng.random_bool(0.05) {
        let (outer, inner) = if rng.random_bool(0.5) { (10, 200) } else { (rng.random_range(1..4095), 200) };
        s.vlans = vec![(ETH_P_8021AD, outer), (ETH_P_8021Q, prio | inner)];
    }
    if rng.random_bool(0.1) {
        s.dst = server_ll();
    }
    s.src_port = if rng.random_bool(0.9) { 546 } else { rng.random() };
    let mut m = message(11, &opts);
    m[1] = rng.random();
    if rng.random_bool(0.3) {
        if rng.random_bool(0.1) {
            m[0] = *[1, 12, 5].get(rng.random_range(0..3)).unwrap();
        }
        s.src_port = 547;
        return s.build(&random_relay_forward(rng, &m));
    }
    s.build(&m)
}

/// A lightweight relay's Relay-Forward around `inner`, mostly well shaped: the relay options
/// in any order, Interface-IDs that name links (with and without reply data) or not, of
/// lengths around the program's limit; now and then a hop-count, link-address or
/// peer-address that is not an LDRA's.
fn random_relay_forward(rng: &mut StdRng, inner: &[u8]) -> Vec<u8> {
    let hop = if rng.random_bool(0.95) { 0 } else { rng.random_range(1..10) };
    let link = if rng.random_bool(0.95) { Ipv6Addr::UNSPECIFIED } else { "2001:db8:7::1".parse().unwrap() };
    let peer = if rng.random_bool(0.95) { client_ll() } else { "2001:db8::9".parse().unwrap() };
    let mut opts = Vec::new();
    if rng.random_bool(0.95) {
        let iid: Vec<u8> = match rng.random_range(0..6) {
            0 => LINK_WITH_OPTIONS.to_vec(),
            1 => LINK_WITHOUT_DATA.to_vec(),
            2 => (0..rng.random_range(60..70)).map(|_| rng.random()).collect(),
            _ => format!("port{}", rng.random_range(0..1000)).into_bytes(),
        };
        opts.push(opt(18, &iid));
    }
    if rng.random_bool(0.5) {
        opts.push(opt(37, &[0, 0, 0x0d, 0xe9, b'o', b'n', b't', rng.random()]));
    }
    if rng.random_bool(0.3) {
        opts.push(opt(38, &vec![b's'; rng.random_range(1..20)]));
    }
    if rng.random_bool(0.3) {
        opts.push(opt(79, &[0, 1, 2, 0xc1, 0, 0, 0, 2]));
    }
    opts.push(opt(9, inner));
    if rng.random_bool(0.3) {
        let n = opts.len();
        for i in (1..n).rev() {
            opts.swap(i, rng.random_range(0..=i));
        }
    }
    relay_forward(hop, link, peer, &opts)
}

/// Interface-IDs of the relayed tests' `[[link]]`s: one with options of its own, one whose
/// reply data the program lacks.
const LINK_WITH_OPTIONS: &[u8] = b"vlan7";
const LINK_WITHOUT_DATA: &[u8] = b"vlan8";

fn link_service() -> dhcpv6::server::LinkService {
    let options = dhcpv6::server::ServiceOptions {
        dns: vec!["2001:db8:7::53".parse().unwrap()],
        domains: vec!["vlan7.example".into()],
        ..Default::default()
    }
    .encode()
    .unwrap();
    dhcpv6::server::LinkService { options, ignore_user_classes: Vec::new() }
}

/// `iface` trusting lightweight relays, with the two links.
fn relaying(mut iface: ModelIface) -> ModelIface {
    iface.relayed_ir = true;
    iface.links = vec![(LINK_WITH_OPTIONS.to_vec(), Some(link_service())), (LINK_WITHOUT_DATA.to_vec(), None)];
    iface
}

/// A Relay-Forward: the header, then `opts` as given (the Relay Message among them).
fn relay_forward(hop: u8, link: Ipv6Addr, peer: Ipv6Addr, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![12, hop];
    m.extend_from_slice(&link.octets());
    m.extend_from_slice(&peer.octets());
    for o in opts {
        m.extend_from_slice(o);
    }
    m
}

/// An LDRA's Relay-Forward: Interface-ID `iid`, the `extra` relay options, the Relay Message.
fn ldra(iid: &[u8], extra: &[Vec<u8>], inner: &[u8]) -> Vec<u8> {
    let mut opts = vec![opt(18, iid)];
    opts.extend_from_slice(extra);
    opts.push(opt(9, inner));
    relay_forward(0, Ipv6Addr::UNSPECIFIED, client_ll(), &opts)
}

/// From the LDRA: it keeps the client's addresses and sends from port 547.
fn ldra_spec() -> dhcpv6::fastpath::frame::FrameSpec {
    let mut s = spec();
    s.src_port = 547;
    s
}

#[test]
fn crafted_relayed_frames() {
    let iface = relaying(model_iface(true));
    let mut p = Program::load(Some(&iface));
    let ir = || info_req(&[client_id(14), oro(&[23, 24]), opt(8, &[0, 0])]);
    let remote = opt(37, &[0, 0, 0x0d, 0xe9, b'o', b'n', b't']);
    let sub = opt(38, b"sub-42");
    let cll = opt(79, &[0, 1, 2, 0xc1, 0, 0, 0, 2]);
    let s = ldra_spec();
    let ll = client_ll();
    let un = Ipv6Addr::UNSPECIFIED;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    cases.push(("LDRA", s.build(&ldra(b"port7", &[], &ir())), "tx_relayed"));
    cases.push((
        "LDRA with Remote-ID, Subscriber-ID, link-layer address",
        s.build(&ldra(b"port7", &[remote.clone(), sub.clone(), cll.clone()], &ir())),
        "tx_relayed",
    ));
    cases.push((
        "Interface-ID after the Relay Message",
        s.build(&relay_forward(0, un, ll, &[remote.clone(), opt(9, &ir()), opt(18, b"port7")])),
        "tx_relayed",
    ));
    cases.push(("odd-length Interface-ID", s.build(&ldra(b"port17", &[], &ir())), "tx_relayed"));
    cases.push(("empty Interface-ID", s.build(&ldra(b"", &[], &ir())), "tx_relayed"));
    cases.push(("64-byte Interface-ID", s.build(&ldra(&[b'x'; 64], &[], &ir())), "tx_relayed"));
    cases.push(("65-byte Interface-ID", s.build(&ldra(&[b'x'; 65], &[], &ir())), "pass_limits"));
    cases.push(("no client id", s.build(&ldra(b"port7", &[], &info_req(&[oro(&[23])]))), "tx_relayed"));
    cases.push(("130-byte DUID", s.build(&ldra(b"port7", &[], &info_req(&[client_id(130)]))), "tx_relayed"));
    cases.push(("ORO asks NTP", s.build(&ldra(b"port7", &[], &info_req(&[client_id(14), oro(&[56])]))), "tx_relayed"));
    cases.push(("Interface-ID names a link with options", s.build(&ldra(LINK_WITH_OPTIONS, &[], &ir())), "tx_relayed"));
    cases.push((
        "Interface-ID names a link without reply data",
        s.build(&ldra(LINK_WITHOUT_DATA, &[], &ir())),
        "pass_relay_link",
    ));
    let ours = opt(2, service().duid.as_bytes());
    cases.push(("our server id", s.build(&ldra(b"port7", &[], &info_req(&[client_id(14), ours]))), "tx_relayed"));
    cases.push((
        "foreign server id",
        s.build(&ldra(b"port7", &[], &info_req(&[client_id(14), opt(2, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6])]))),
        "drop_foreign_server_id",
    ));
    cases.push((
        "inner IR with IA_NA",
        s.build(&ldra(b"port7", &[], &info_req(&[client_id(14), opt(3, &[0; 12])]))),
        "drop_ia_present",
    ));
    cases.push(("inner Solicit", s.build(&ldra(b"port7", &[], &message(1, &[client_id(14)]))), "pass_relay_inner"));
    cases.push(("inner Reply", s.build(&ldra(b"port7", &[], &message(7, &[client_id(14)]))), "pass_relay_inner"));
    cases.push((
        "nested Relay-Forward",
        s.build(&ldra(b"port7", &[], &ldra(b"port8", &[], &ir()))),
        "pass_relay_shape",
    ));
    let mut trunc = ir();
    trunc.extend_from_slice(&[0, 8, 0]);
    cases.push(("inner truncated option header", s.build(&ldra(b"port7", &[], &trunc)), "drop_malformed"));
    let mut past = info_req(&[client_id(14)]);
    past.extend_from_slice(&[0, 16, 0, 40, 1, 2]);
    cases.push(("inner option length past its end", s.build(&ldra(b"port7", &[], &past)), "drop_malformed"));
    cases.push(("inner shorter than a header", s.build(&ldra(b"port7", &[], &[11, 1, 2])), "drop_relay_malformed"));
    cases.push(("empty Relay Message", s.build(&ldra(b"port7", &[], &[])), "drop_relay_malformed"));
    cases.push((
        "hop-count 1",
        s.build(&relay_forward(1, un, ll, &[opt(18, b"port7"), opt(9, &ir())])),
        "pass_relay_shape",
    ));
    cases.push((
        "link-address set",
        s.build(&relay_forward(0, "2001:db8:7::1".parse().unwrap(), ll, &[opt(18, b"port7"), opt(9, &ir())])),
        "pass_relay_shape",
    ));
    cases.push((
        "global peer-address",
        s.build(&relay_forward(0, un, "2001:db8::9".parse().unwrap(), &[opt(18, b"port7"), opt(9, &ir())])),
        "pass_relay_shape",
    ));
    cases.push((
        "no Interface-ID",
        s.build(&relay_forward(0, un, ll, &[remote.clone(), opt(9, &ir())])),
        "pass_relay_shape",
    ));
    cases.push((
        "two Interface-IDs",
        s.build(&relay_forward(0, un, ll, &[opt(18, b"a"), opt(18, b"b"), opt(9, &ir())])),
        "drop_relay_malformed",
    ));
    cases.push((
        "two Relay Messages",
        s.build(&relay_forward(0, un, ll, &[opt(18, b"a"), opt(9, &ir()), opt(9, &ir())])),
        "drop_relay_malformed",
    ));
    cases.push((
        "two Remote-IDs",
        s.build(&ldra(b"port7", &[remote.clone(), remote.clone()], &ir())),
        "drop_relay_malformed",
    ));
    cases.push(("short Remote-ID", s.build(&ldra(b"port7", &[opt(37, &[0, 0, 0, 9])], &ir())), "drop_relay_malformed"));
    cases.push(("empty Subscriber-ID", s.build(&ldra(b"port7", &[opt(38, &[])], &ir())), "drop_relay_malformed"));
    cases.push((
        "short link-layer address",
        s.build(&ldra(b"port7", &[opt(79, &[0, 1])], &ir())),
        "drop_relay_malformed",
    ));
    cases.push((
        "no Relay Message",
        s.build(&relay_forward(0, un, ll, &[opt(18, b"port7"), remote.clone()])),
        "drop_relay_malformed",
    ));
    let full = ldra(b"port7", &[], &ir());
    cases.push(("relay header cut short", s.build(&full[..20]), "drop_relay_malformed"));
    cases.push(("relay header only", s.build(&full[..34]), "drop_relay_malformed"));
    cases.push(("Relay Message past the end", s.build(&full[..full.len() - 3]), "drop_relay_malformed"));
    let mut tail = full.clone();
    tail.extend_from_slice(&[0, 37]);
    cases.push(("truncated relay option header", s.build(&tail), "drop_relay_malformed"));
    let mut over = full.clone();
    over.extend_from_slice(&[0, 38, 0, 200, b'x']);
    cases.push(("relay option length past the end", s.build(&over), "drop_relay_malformed"));
    cases.push(("9 relay options", s.build(&ldra(b"port7", &vec![opt(99, &[1]); 7], &ir())), "pass_limits"));
    cases.push(("8 relay options", s.build(&ldra(b"port7", &vec![opt(99, &[1]); 6], &ir())), "tx_relayed"));
    let mut global = ldra_spec();
    global.src = "2001:db8:ffff::1".parse().unwrap();
    global.dst = "2001:db8::547".parse().unwrap();
    cases.push(("from a global relay", global.build(&ldra(b"port7", &[], &ir())), "pass_addressing"));
    let mut bad_sum = s.build(&ldra(b"port7", &[], &ir()));
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 0xff;
    cases.push(("bad checksum", bad_sum, "pass_checksum"));
    let big: Vec<Vec<u8>> = (0..9).map(|_| opt(16, &[0; 48])).collect();
    cases.push(("over 512 bytes", s.build(&ldra(b"port7", &[], &info_req(&big))), "pass_limits"));
    for (name, frame, expect) in &cases {
        let got = expect_same(&mut p, &iface, name, frame);
        assert_eq!(kind(&got), *expect, "{name}");
    }

    // One answer, field by field: to the relay (the client's addresses kept by the LDRA) on
    // port 547, the Relay-Forward's header and Interface-ID echoed, the Reply inside.
    let frame = s.build(&ldra(b"port17", &[remote.clone(), sub.clone()], &ir()));
    let (Outcome::TxRelayed(r), _) = p.run(&frame) else { panic!("no answer") };
    assert_eq!(&r[0..6], &CLIENT_MAC);
    assert_eq!(&r[6..12], &SERVER_MAC);
    assert_eq!(&r[22..38], &server_ll().octets());
    assert_eq!(&r[38..54], &client_ll().octets());
    assert_eq!(&r[54..58], &[2, 35, 2, 35], "ports 547 -> 547");
    let relay = dhcpv6::wire::RelayMessage::parse(&r[62..]).unwrap();
    assert_eq!(relay.msg_type(), 13);
    assert_eq!((relay.hop_count(), relay.link_address(), relay.peer_address()), (0, un, client_ll()));
    assert_eq!(relay.find(18), Some(&b"port17"[..]), "Interface-ID echoed");
    assert_eq!(relay.find(37), None, "Remote-ID not echoed");
    let m = Message::parse(relay.relay_message().unwrap()).unwrap();
    assert_eq!((m.msg_type(), m.xid()), (7, [0x12, 0x34, 0x56]));
    let codes: Vec<u16> = m.options().map(|o| o.code).collect();
    assert_eq!(codes, vec![1, 2, 23, 24, 32, 83]);
    // The link's own options when the Interface-ID names it.
    let (Outcome::TxRelayed(r), _) = p.run(&s.build(&ldra(LINK_WITH_OPTIONS, &[], &ir()))) else { panic!() };
    let relay = dhcpv6::wire::RelayMessage::parse(&r[62..]).unwrap();
    let m = Message::parse(relay.relay_message().unwrap()).unwrap();
    let dns = m.options().find(|o| o.code == 23).map(|o| o.data.to_vec());
    assert_eq!(dns, Some("2001:db8:7::53".parse::<Ipv6Addr>().unwrap().octets().to_vec()));

    // Without `relayed_ir` (the daemon does not trust every relay on the link): up.
    let plain = model_iface(true);
    let mut p = Program::load(Some(&plain));
    let o = expect_same(&mut p, &plain, "untrusted", &s.build(&ldra(b"port7", &[], &ir())));
    assert_eq!(o, Outcome::Pass(Verdict::PassRelayUntrusted));
}

/// A VLAN with reply data of its own that trusts lightweight relays answers tagged
/// Relay-Forwards from its data, tags kept; one that does not passes them.
#[test]
fn relayed_vlan_frames() {
    let mut m = vlan_maps();
    let v100 = relaying(vlan_iface(100));
    m.ifaces.insert((100, 0), v100.clone());
    let mut p = Program::load_maps(&m);
    let inner = info_req(&[client_id(14), oro(&[23])]);
    let mut s = ldra_spec();
    s.vlans = vec![(ETH_P_8021Q, 100)];
    let Outcome::TxRelayed(r) = run_both(&mut p, &mut m, "VLAN 100", &s.build(&ldra(b"port7", &[], &inner))) else {
        panic!("VLAN 100 relayed not answered")
    };
    assert_eq!(&r[6..12], &v100.mac);
    assert_eq!(&r[12..18], &[0x81, 0x00, 0, 100, 0x86, 0xdd]);
    let o = run_both(&mut p, &mut m, "VLAN 100 link", &s.build(&ldra(LINK_WITH_OPTIONS, &[], &inner)));
    assert_eq!(kind(&o), "tx_relayed");
    s.vlans = vec![(ETH_P_8021AD, 10), (ETH_P_8021Q, 200)];
    let o = run_both(&mut p, &mut m, "QinQ 10/200", &s.build(&ldra(b"port7", &[], &inner)));
    assert_eq!(o, Outcome::Pass(Verdict::PassRelayUntrusted));
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

/// `iface` untagged, and the VLANs of `vlan_maps` with their own reply data; no flood limits
/// (the buckets' clock is not the model's to replay; `a_flood_from_one_mac...` covers them).
fn differential(iface: &ModelIface, count: usize) -> std::collections::BTreeMap<String, usize> {
    let seed: u64 = std::env::var("DHCPV6_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_d6);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut maps = vlan_maps();
    maps.ifaces.insert((0, 0), relaying(iface.clone()));
    // VLAN 100 trusts lightweight relays too (its tagged Relay-Forwards are answered), 10/200 not.
    let v100 = maps.ifaces[&(100, 0)].clone();
    maps.ifaces.insert((100, 0), relaying(v100));
    let mut p = Program::load_maps(&maps);
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..count {
        let base = random_request(&mut rng);
        let frame = if rng.random_bool(0.3) { base } else { mutate(&mut rng, &base) };
        let want = maps.run(&frame, 0);
        let (got, _) = p.run(&frame);
        assert_eq!(got, want, "frame {i} (seed {seed}): program and model disagree\nframe: {frame:02x?}");
        let key = match &got {
            Outcome::TxRelayed(r) => {
                check_reply_checksum(r);
                if matches!(u16::from_be_bytes([r[12], r[13]]), ETH_P_8021Q | ETH_P_8021AD) {
                    "tx_relayed_vlan"
                } else {
                    "tx_relayed"
                }
            }
            Outcome::Tx(r) => {
                check_reply_checksum(r);
                // Answers to tagged frames (from their VLAN's data) tallied apart.
                if matches!(u16::from_be_bytes([r[12], r[13]]), ETH_P_8021Q | ETH_P_8021AD) {
                    "tx_vlan"
                } else {
                    "tx"
                }
            }
            o => o.counter(),
        };
        *tally.entry(key.to_owned()).or_default() += 1;
    }
    eprintln!("{count} frames, seed {seed}: {tally:?}");
    // The run must exercise answers, drops and passes, or it proves little.
    for k in ["tx", "tx_vlan", "pass_vlan", "drop_malformed", "pass_checksum", "pass_other_msg", "drop_ia_present"] {
        assert!(tally.get(k).copied().unwrap_or(0) > 100, "too few {k} outcomes: {tally:?}");
    }
    // Relayed frames too: answered (tagged and not), passed for their shape, dropped.
    let want = count / 1000;
    for k in ["tx_relayed", "tx_relayed_vlan", "pass_relay_shape", "drop_relay_malformed", "pass_relay_link"] {
        assert!(tally.get(k).copied().unwrap_or(0) > want, "too few {k} outcomes: {tally:?}");
    }
    tally
}

/// The options an operator adds: raw ones (sent always, and on request with a code above
/// 64), vendor-specific, captive portal, NTP by name, as `ServiceOptions` encodes them.
fn operator_options() -> Vec<ConfiguredOption> {
    use dhcpv6::server::typed_options::{CustomOption, VendorOption};
    dhcpv6::server::ServiceOptions {
        dns: vec!["2001:db8::53".parse().unwrap()],
        ntp_fqdn: vec!["ntp.example".into()],
        captive_portal: Some("https://portal.example/api".into()),
        vendor: vec![VendorOption { enterprise: 4491, suboptions: vec![(1, vec![0xaa, 0xbb, 0xcc])], always: false }],
        raw: vec![
            CustomOption { code: 100, data: vec![1, 2, 3], always: false },
            CustomOption { code: 250, data: vec![9; 7], always: true },
        ],
        ..Default::default()
    }
    .encode()
    .unwrap()
}

#[test]
fn differential_with_raw_and_typed_options() {
    let mut iface = model_iface(true);
    iface.svc.options = operator_options();
    let count: usize = std::env::var("DHCPV6_FUZZ_FRAMES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    differential(&iface, count / 2);
    // The raw option sent always is in every answer, those on request only when asked.
    let mut p = Program::load(Some(&iface));
    let plain = expect_same(&mut p, &iface, "raw, no ORO", &spec().build(&info_req(&[client_id(14)])));
    let asked =
        expect_same(&mut p, &iface, "raw, ORO", &spec().build(&info_req(&[client_id(14), oro(&[100, 17, 103])])));
    let codes = |o: &Outcome| match o {
        Outcome::Tx(f) => Message::parse(&f[62..]).unwrap().options().map(|o| o.code).collect::<Vec<_>>(),
        o => panic!("no answer: {o:?}"),
    };
    assert_eq!(codes(&plain), vec![1, 2, 23, 250]);
    assert_eq!(codes(&asked), vec![1, 2, 23, 103, 17, 100, 250]);
}

/// With a User Class filter every Information-Request carrying a User Class goes up
/// (`pass_user_class`), whatever its class; without one it is answered as before.
#[test]
fn differential_with_the_user_class_filter() {
    let mut iface = model_iface(true);
    iface.svc.ignore_user_classes = vec![b"iptv".to_vec()];
    let count: usize = std::env::var("DHCPV6_FUZZ_FRAMES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let tally = differential(&iface, count / 2);
    assert!(tally.get("pass_user_class").copied().unwrap_or(0) > 100, "{tally:?}");
    let mut p = Program::load(Some(&iface));
    let iptv = spec().build(&info_req(&[client_id(14), opt(15, &[0, 4, b'i', b'p', b't', b'v'])]));
    assert_eq!(expect_same(&mut p, &iface, "iptv", &iptv), Outcome::Pass(Verdict::PassUserClass));
    let vod = spec().build(&info_req(&[opt(15, &[0, 3, b'v', b'o', b'd']), client_id(14)]));
    assert_eq!(expect_same(&mut p, &iface, "vod", &vod), Outcome::Pass(Verdict::PassUserClass));
    let none = spec().build(&info_req(&[client_id(14)]));
    assert!(matches!(expect_same(&mut p, &iface, "no class", &none), Outcome::Tx(_)));
    // Malformed after the User Class: still dropped in XDP.
    let mut broken = info_req(&[opt(15, &[0, 4, b'i', b'p', b't', b'v']), client_id(14)]);
    broken.extend_from_slice(&[0, 8, 0]);
    let broken = spec().build(&broken);
    assert_eq!(expect_same(&mut p, &iface, "broken", &broken), Outcome::Drop(Verdict::DropMalformed));
    let unfiltered = model_iface(true);
    let mut p = Program::load(Some(&unfiltered));
    assert!(matches!(expect_same(&mut p, &unfiltered, "iptv, no filter", &iptv), Outcome::Tx(_)));
}

/// How much of the verifier's budget (1,000,000 instructions processed) the program takes:
/// printed, so that a change that brings it near the limit is seen before it is hit.
#[test]
fn verifier_budget() {
    let mut p = Program::load(None);
    let n = p.dp().program().unwrap().info().unwrap().verified_instruction_count();
    let r = p.dp().renew_program().unwrap().info().unwrap().verified_instruction_count();
    println!("verified instructions: {n:?} (dhcpv6_xdp), {r:?} (dhcpv6_renew)");
    assert!(n.is_some_and(|n| n < 1_000_000) && r.is_some_and(|r| r < 1_000_000));
}

/// Every datagram length around the request copy's size classes (8-byte chunks up to 16
/// bytes, 16, 32, 64 up to 128, the helper past it), each with bytes that differ per
/// position: program and model agree, and answers carry the request's bytes back.
#[test]
fn every_request_length_around_the_copy_classes_is_answered_as_the_model_says() {
    let iface = model_iface(true);
    let mut p = Program::load(Some(&iface));
    let mut answered = 0;
    for udp_len in 12..=200usize {
        let mut opts = vec![];
        // A Client Identifier whose bytes differ per position, then filler up to the length.
        if udp_len >= 12 + 4 + 3 {
            let n = (udp_len - 16).min(130);
            let mut duid = vec![0, 4];
            duid.extend((0..n - 2).map(|i| (i * 7 + udp_len) as u8));
            opts.push(opt(1, &duid));
        }
        let used: usize = 12 + opts.iter().map(Vec::len).sum::<usize>();
        if udp_len >= used + 4 {
            opts.push(opt(99, &vec![0x5a; udp_len - used - 4]));
        } else if udp_len > used {
            // Too short for an option header: malformed, dropped by both.
            opts.push(vec![0; udp_len - used]);
        }
        let frame = spec().build(&info_req(&opts));
        assert_eq!(frame.len(), 14 + 40 + udp_len, "datagram of {udp_len} bytes");
        if let Outcome::Tx(_) = expect_same(&mut p, &iface, &format!("UDP length {udp_len}"), &frame) {
            answered += 1;
        }
    }
    assert!(answered > 150, "only {answered} of the lengths answered");
}
