//! The Renew path under BPF_PROG_TEST_RUN: crafted frames for every outcome, against the
//! twin (`fastpath::renew`); a differential run against the stateful engine, whose Reply
//! an answered Renew must equal byte for byte; VLAN-tagged Renews; and entries rewritten by
//! another thread while the program reads them.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcpv6::fastpath::{model::ModelIface, ModelMaps, Outcome};
use dhcpv6::leases::{Lease, LeaseKind, LeaseState, NextHop};
use dhcpv6::server::stateful::{fast_renew, ClientContext, Engine, Lifetimes, LinkPools};
use dhcpv6::server::{IfaceService, ServiceOptions};
use dhcpv6::wire::{Duid, Message};
use dhcpv6_common::{
    wire::{msg, opt, ETH_P_8021Q},
    IfaceKey, RenewEntry, RenewKey, MAP_RENEWS,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{check_reply_checksum, common::*, kind};

/// Unix seconds the engine decides at; the leases run far past it.
const NOW: u64 = 1_700_000_000;
const LINK: &str = "eth0";
const CLIENTS: u32 = 6;

/// The program's clock for entry deadlines (`bpf_ktime_get_boot_ns` is CLOCK_BOOTTIME).
fn boot_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a plain syscall writing into `ts`.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The link's options: always-sent DNS, domains, refresh time (Information-Request only) and
/// INF_MAX_RT; NTP and SNTP on request. No SOL_MAX_RT: the block does not carry it, and an
/// interface with it keeps Renews in userspace (`allow_renew`).
fn renew_service() -> IfaceService {
    let options = ServiceOptions {
        dns: vec!["2001:db8::53".parse().unwrap(), "2001:db8::54".parse().unwrap()],
        domains: vec!["example.net".into()],
        ntp: vec!["2001:db8::123".parse().unwrap()],
        sntp: vec!["2001:db8::124".parse().unwrap()],
        information_refresh_time: Some(3600),
        inf_max_rt: Some(900),
        ..Default::default()
    }
    .encode()
    .unwrap();
    IfaceService { duid: Duid::from_mac(SERVER_MAC), options, ignore_user_classes: Vec::new() }
}

fn renew_iface() -> ModelIface {
    ModelIface { renew: true, ..ModelIface::new(SERVER_MAC, server_ll(), renew_service(), true) }
}

fn link() -> LinkPools {
    LinkPools {
        na: vec!["2001:db8:1::100-2001:db8:1::1ff".parse().unwrap()],
        pd: vec!["2001:db8:100::/40:56".parse().unwrap()],
        lifetimes: Lifetimes { preferred: 3600, valid: 7200, t1: 1800, t2: 2880 },
        ..LinkPools::new(LINK)
    }
}

fn duid(k: u32) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1, 0x02, 0xc1];
    d.extend_from_slice(&k.to_be_bytes());
    d
}

fn na_addr(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from("2001:db8:1::100".parse::<Ipv6Addr>().unwrap()) + u128::from(k))
}

fn pd_prefix(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from("2001:db8:100::".parse::<Ipv6Addr>().unwrap()) + (u128::from(k) << 72))
}

fn lease(k: u32, kind: LeaseKind) -> Lease {
    let (iaid, addr, prefix_len) = match kind {
        LeaseKind::Address => (1, na_addr(k), 128),
        LeaseKind::Prefix => (2, pd_prefix(k), 56),
    };
    Lease {
        duid: duid(k),
        iaid,
        kind,
        addr,
        prefix_len,
        iface: LINK.into(),
        valid_until: NOW + 100_000,
        preferred_until: NOW + 50_000,
        state: LeaseState::Bound,
        next_hop: (kind == LeaseKind::Prefix).then(|| Box::new(NextHop { via: client_ll(), dev: LINK.into() })),
        last_transaction: NOW - 10,
        relay: None,
    }
}

fn leases() -> Vec<Lease> {
    (0..CLIENTS).flat_map(|k| [lease(k, LeaseKind::Address), lease(k, LeaseKind::Prefix)]).collect()
}

/// The entries the daemon would put for `leases` arriving on `iface`, answering until `until`.
fn entries(iface: IfaceKey, leases: &[Lease], until: u64) -> HashMap<RenewKey, RenewEntry> {
    leases.iter().map(|l| fast_renew::entry(iface, l, &link().lifetimes, until).unwrap()).collect()
}

fn maps_with(vlan: (u16, u16), renews: HashMap<RenewKey, RenewEntry>) -> ModelMaps {
    let mut m = ModelMaps::default();
    m.ifaces.insert(vlan, renew_iface());
    m.renews = renews;
    m.boot_ns = boot_ns();
    m
}

fn ia_na(iaid: u32, addr: Ipv6Addr) -> Vec<u8> {
    let mut d = iaid.to_be_bytes().to_vec();
    d.extend_from_slice(&[0, 0, 0x07, 0x08, 0, 0, 0x0b, 0x40]);
    let mut a = addr.octets().to_vec();
    a.extend_from_slice(&[0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20]);
    d.extend_from_slice(&opt(opt::IAADDR, &a));
    opt(opt::IA_NA, &d)
}

fn ia_pd(iaid: u32, prefix: Ipv6Addr, len: u8) -> Vec<u8> {
    let mut d = iaid.to_be_bytes().to_vec();
    d.extend_from_slice(&[0; 8]);
    let mut p = vec![0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20, len];
    p.extend_from_slice(&prefix.octets());
    d.extend_from_slice(&opt(opt::IAPREFIX, &p));
    opt(opt::IA_PD, &d)
}

fn sid() -> Vec<u8> {
    opt(opt::SERVERID, Duid::from_mac(SERVER_MAC).as_bytes())
}

fn cid(k: u32) -> Vec<u8> {
    opt(opt::CLIENTID, &duid(k))
}

fn renew(opts: &[Vec<u8>]) -> Vec<u8> {
    message(msg::RENEW, opts)
}

/// Client `k`'s usual Renew: both IAs, its identifiers, an Option Request and Elapsed Time.
fn usual(k: u32) -> Vec<Vec<u8>> {
    vec![
        cid(k),
        sid(),
        oro(&[23, 24]),
        opt(opt::ELAPSED_TIME, &[0, 0]),
        ia_na(1, na_addr(k)),
        ia_pd(2, pd_prefix(k), 56),
    ]
}

/// The engine's Reply to `renew` (a DHCPv6 message) from the client's link-local address on
/// the link, with `leases` held: a fresh engine per message, so no decision leaks into the next.
fn engine_reply(leases: &[Lease], renew: &[u8]) -> Option<Vec<u8>> {
    let mut engine = Engine::new(vec![link()], leases.iter().cloned(), NOW).unwrap();
    let svc = renew_service();
    let ctx = ClientContext {
        server_duid: &svc.duid,
        relay: None,
        unicast: false,
        peer: client_ll(),
        arrival: LINK,
        options: &svc.options,
        ignore_user_classes: &svc.ignore_user_classes,
    };
    let m = Message::parse(renew).ok()?;
    engine.handle(&m, &ctx, NOW).reply
}

/// The program and the twin on `frame`; an answer also equals the engine's Reply.
fn check(p: &mut Program, m: &mut ModelMaps, leases: &[Lease], name: &str, frame: &[u8], l4: usize) -> Outcome {
    let got = super::run_both(p, m, name, frame);
    if let Outcome::TxRenew(reply) = &got {
        check_reply_checksum(reply);
        let want = engine_reply(leases, &frame[l4 + 8..]).unwrap_or_else(|| panic!("{name}: the engine drops it"));
        assert_eq!(&reply[l4 + 8..], &want[..], "{name}: the program's Reply is not the engine's");
    }
    got
}

#[test]
fn crafted_renews() {
    let leases = leases();
    let mut renews = entries(IfaceKey::untagged(1), &leases, u64::MAX);
    // Client 4's entries ran out; client 5's address entry is torn (its seal does not hold).
    for l in leases.iter().filter(|l| l.duid == duid(4)) {
        let (k, e) = fast_renew::entry(IfaceKey::untagged(1), l, &link().lifetimes, 1).unwrap();
        renews.insert(k, e);
    }
    let torn_key = fast_renew::key(IfaceKey::untagged(1), &duid(5), 1, LeaseKind::Address).unwrap();
    renews.get_mut(&torn_key).unwrap().ia[10] ^= 1;
    let mut m = maps_with((0, 0), renews.clone());
    let torn = renews.remove(&torn_key).unwrap();
    let mut p = Program::load_maps(&ModelMaps { renews, ..m.clone() });
    p.dp().put_renew_unsealed(&torn_key, &torn).unwrap();

    let s = spec();
    let r = |o: &[Vec<u8>]| s.build(&renew(o));
    let without = |k: u32, code: u16| {
        usual(k).into_iter().filter(|o| u16::from_be_bytes([o[0], o[1]]) != code).collect::<Vec<_>>()
    };
    let with = |k: u32, extra: Vec<u8>| {
        let mut o = usual(k);
        o.push(extra);
        o
    };
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("usual", r(&usual(0)), "tx_renew"),
        ("address only", r(&without(1, opt::IA_PD)), "tx_renew"),
        ("prefix only", r(&without(2, opt::IA_NA)), "tx_renew"),
        ("prefix first", r(&[cid(3), sid(), ia_pd(2, pd_prefix(3), 56), ia_na(1, na_addr(3))]), "tx_renew"),
        ("no ORO", r(&without(0, opt::ORO)), "tx_renew"),
        ("ORO asks NTP and SNTP", r(&[cid(1), sid(), oro(&[56, 31, 23]), ia_na(1, na_addr(1))]), "tx_renew"),
        ("ORO asks the refresh time", r(&[cid(1), sid(), oro(&[32, 82]), ia_na(1, na_addr(1))]), "tx_renew"),
        ("rapid commit", r(&with(0, opt(opt::RAPID_COMMIT, &[]))), "pass_renew_options"),
        ("reconfigure accept", r(&with(0, opt(opt::RECONF_ACCEPT, &[]))), "pass_renew_options"),
        ("user class", r(&with(0, opt(opt::USER_CLASS, &[0, 4, b'i', b'p', b't', b'v']))), "pass_renew_options"),
        ("vendor class", r(&with(0, opt(opt::VENDOR_CLASS, &[0, 0, 0, 9, 0, 1, 7]))), "pass_renew_options"),
        ("unknown option", r(&with(0, opt(999, &[1, 2]))), "pass_renew_options"),
        ("no server id", r(&without(0, opt::SERVERID)), "pass_renew_options"),
        ("no client id", r(&without(0, opt::CLIENTID)), "pass_renew_options"),
        ("no IA", r(&[cid(0), sid(), oro(&[23])]), "pass_renew_ia"),
        ("IA_TA", r(&with(0, opt(opt::IA_TA, &[0, 0, 0, 3]))), "pass_renew_ia"),
        ("three IAs", r(&with(0, ia_na(7, na_addr(0)))), "pass_renew_ia"),
        (
            "IA_NA naming nothing",
            r(&[cid(0), sid(), opt(opt::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])]),
            "pass_renew_ia",
        ),
        ("repeated IAID", r(&[cid(0), sid(), ia_na(1, na_addr(0)), ia_na(1, na_addr(0))]), "pass_renew_ia"),
        ("33-byte DUID", r(&[opt(opt::CLIENTID, &[7; 33]), sid(), ia_na(1, na_addr(0))]), "pass_renew_duid"),
        ("unknown IAID", r(&[cid(0), sid(), ia_na(9, na_addr(0))]), "pass_renew_no_entry"),
        ("unknown client", r(&[cid(77), sid(), ia_na(1, na_addr(0))]), "pass_renew_no_entry"),
        ("other address", r(&[cid(0), sid(), ia_na(1, na_addr(1))]), "pass_renew_changed"),
        ("other prefix length", r(&[cid(0), sid(), ia_pd(2, pd_prefix(0), 48)]), "pass_renew_changed"),
        ("entry past its deadline", r(&usual(4)), "pass_renew_expired"),
        ("torn entry", r(&usual(5)), "pass_renew_torn"),
        ("second server id", r(&with(0, opt(opt::SERVERID, &[0, 3, 0, 1, 2, 0xd6, 0, 0, 0, 9]))), "drop_malformed"),
        ("odd ORO", r(&[cid(0), sid(), opt(opt::ORO, &[0, 23, 0]), ia_na(1, na_addr(0))]), "drop_malformed"),
        ("two OROs", r(&with(0, oro(&[56]))), "pass_limits"),
        (
            "ORO of 65 codes",
            r(&[cid(0), sid(), oro(&(1..=65).collect::<Vec<_>>()), ia_na(1, na_addr(0))]),
            "pass_limits",
        ),
        ("rebind", s.build(&message(msg::REBIND, &usual(0))), "pass_other_msg"),
    ];
    // A foreign Server ID replaces ours (a second one is malformed).
    let foreign: Vec<Vec<u8>> = usual(0)
        .into_iter()
        .map(|o| if o == sid() { opt(opt::SERVERID, &[0, 3, 0, 1, 2, 0xd6, 0, 0, 0, 9]) } else { o })
        .collect();
    cases.push(("foreign server id only", r(&foreign), "drop_foreign_server_id"));
    let mut past = renew(&usual(0));
    past.extend_from_slice(&[0, 8, 0, 9, 0]);
    cases.push(("option past the end", s.build(&past), "drop_malformed"));
    cases.push(("34 options", r(&[usual(0), vec![opt(opt::ELAPSED_TIME, &[0, 0]); 28]].concat()), "pass_limits"));
    cases.push(("over 512 bytes", r(&with(0, opt(opt::ELAPSED_TIME, &[0; 460]))), "pass_limits"));
    let mut bad_sum = r(&usual(0));
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 0xff;
    cases.push(("bad checksum", bad_sum, "pass_checksum"));
    let mut global = spec();
    global.src = "2001:db8::2".parse().unwrap();
    cases.push(("global source", global.build(&renew(&usual(0))), "pass_addressing"));

    let mut seen = std::collections::BTreeSet::new();
    for (name, frame, expect) in &cases {
        let got = check(&mut p, &mut m, &leases, name, frame, 54);
        assert_eq!(kind(&got), *expect, "{name}");
        seen.insert(*expect);
    }
    assert!(seen.len() >= 14, "every outcome covered: {seen:?}");

    // One answer, field by field: the engine's lifetimes, the stateful options.
    let (Outcome::TxRenew(answer), _) = p.run(&s.build(&renew(&usual(0)))) else { panic!("no answer") };
    assert_eq!((&answer[0..6], &answer[6..12]), (&CLIENT_MAC[..], &SERVER_MAC[..]));
    let reply = Message::parse(&answer[62..]).unwrap();
    assert_eq!((reply.msg_type(), reply.xid()), (msg::REPLY, [0x12, 0x34, 0x56]));
    let codes: Vec<u16> = reply.options().map(|o| o.code).collect();
    assert_eq!(codes, vec![1, 2, 3, 25, 23, 24, 83], "no refresh time in a stateful Reply, no NTP unless asked");
    let na = dhcpv6::wire::IaNa::parse(reply.find(opt::IA_NA).unwrap()).unwrap();
    assert_eq!((na.iaid, na.t1, na.t2), (1, 1800, 2880));
    assert_eq!((na.leases[0].addr, na.leases[0].preferred, na.leases[0].valid), (na_addr(0), 3600, 7200));

    // Without IFACE_RENEW a Renew goes up as it always did.
    let plain = ModelIface::new(SERVER_MAC, server_ll(), renew_service(), true);
    let mut off = ModelMaps::single(Some(&plain));
    off.renews = entries(IfaceKey::untagged(1), &leases, u64::MAX);
    let mut q = Program::load_maps(&off);
    let got = check(&mut q, &mut off, &leases, "renew off", &r(&usual(0)), 54);
    assert_eq!(kind(&got), "pass_other_msg");
}

#[test]
fn vlan_tagged_renews() {
    let leases = leases();
    let vlan = IfaceKey { ifindex: 1, outer_vlan: 100, inner_vlan: 0 };
    let mut m = maps_with((100, 0), entries(vlan, &leases, u64::MAX));
    let mut p = Program::load_maps(&m);
    let mut tagged = spec();
    tagged.vlans = vec![(ETH_P_8021Q, 100)];
    let got = check(&mut p, &mut m, &leases, "VLAN 100", &tagged.build(&renew(&usual(0))), 58);
    let Outcome::TxRenew(r) = &got else { panic!("VLAN 100 not answered: {got:?}") };
    assert_eq!(&r[12..18], &[0x81, 0x00, 0, 100, 0x86, 0xdd], "the tag goes back as it came");
    let mut other = spec();
    other.vlans = vec![(ETH_P_8021Q, 200)];
    assert_eq!(kind(&check(&mut p, &mut m, &leases, "VLAN 200", &other.build(&renew(&usual(0))), 58)), "pass_vlan");
    assert_eq!(
        kind(&check(&mut p, &mut m, &leases, "untagged", &spec().build(&renew(&usual(0))), 54)),
        "pass_no_iface"
    );

    // Entries are per arrival: the untagged interface's do not answer its VLAN's Renews.
    let mut both = maps_with((0, 0), entries(IfaceKey::untagged(1), &leases, u64::MAX));
    both.ifaces.insert((100, 0), renew_iface());
    let mut q = Program::load_maps(&both);
    let got = check(&mut q, &mut both, &leases, "VLAN 100, untagged entries", &tagged.build(&renew(&usual(0))), 58);
    assert_eq!(kind(&got), "pass_renew_no_entry");
}

/// Random Renews around the leases held, a third of them with bytes changed: the program and
/// the twin agree on every one, and every answer is the engine's Reply.
#[test]
fn differential_renews_against_the_engine() {
    let leases = leases();
    let mut renews = entries(IfaceKey::untagged(1), &leases, u64::MAX);
    // Client 0 holds an address whose entry the daemon has not put yet.
    renews.remove(&fast_renew::key(IfaceKey::untagged(1), &duid(0), 1, LeaseKind::Address).unwrap());
    let mut m = maps_with((0, 0), renews);
    let mut p = Program::load_maps(&m);
    let seed = std::env::var("DHCPV6_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let mut rng = StdRng::seed_from_u64(seed);
    let codes = [23u16, 24, 31, 56, 32, 83, 82, 7, 64];
    let mut tally: HashMap<&'static str, usize> = HashMap::new();
    let start = Instant::now();
    for i in 0..1500 {
        let k = rng.random_range(0..CLIENTS + 1);
        let mut o = Vec::new();
        if rng.random_bool(0.97) {
            o.push(cid(k));
        }
        match rng.random_range(0..20) {
            0 => {}
            1 => o.push(opt(opt::SERVERID, &[0, 3, 0, 1, 9, 9, 9, 9, 9, 9])),
            _ => o.push(sid()),
        }
        if rng.random_bool(0.7) {
            let n = rng.random_range(0..5);
            o.push(oro(&(0..n).map(|_| codes[rng.random_range(0..codes.len())]).collect::<Vec<_>>()));
        }
        if rng.random_bool(0.5) {
            o.push(opt(opt::ELAPSED_TIME, &rng.random::<u16>().to_be_bytes()));
        }
        let addr = if rng.random_bool(0.9) { na_addr(k) } else { na_addr(k + 1) };
        let pfx_len = if rng.random_bool(0.95) { 56 } else { 60 };
        let mut ias = Vec::new();
        if rng.random_bool(0.8) {
            ias.push(ia_na(if rng.random_bool(0.95) { 1 } else { 3 }, addr));
        }
        if rng.random_bool(0.7) {
            ias.push(ia_pd(2, pd_prefix(k), pfx_len));
        }
        if rng.random_bool(0.3) {
            ias.reverse();
        }
        o.extend(ias);
        if rng.random_bool(0.05) {
            o.push(opt(opt::RAPID_COMMIT, &[]));
        }
        // Options in any order: the engine's Reply keeps the IAs in the Renew's order.
        if rng.random_bool(0.3) {
            let n = o.len();
            o.swap(rng.random_range(0..n), rng.random_range(0..n));
        }
        let mut payload = renew(&o);
        // A third of them with bytes changed (a length, a code, an address, the type): the
        // walk's limits and drops must still be the twin's.
        if rng.random_bool(0.33) {
            for _ in 0..rng.random_range(1..3) {
                let at = rng.random_range(0..payload.len());
                payload[at] = if rng.random_bool(0.5) { rng.random() } else { payload[at] ^ 1 };
            }
        }
        let frame = spec().build(&payload);
        let got = check(&mut p, &mut m, &leases, &format!("renew {i}"), &frame, 54);
        *tally.entry(got.counter()).or_default() += 1;
    }
    println!("{tally:?} in {:?}", start.elapsed());
    assert!(tally.get("tx_renew").copied().unwrap_or(0) >= 400, "enough answers to compare: {tally:?}");
    for c in ["pass_renew_no_entry", "pass_renew_changed", "pass_renew_options", "drop_foreign_server_id"] {
        assert!(tally.contains_key(c), "{c} among {tally:?}");
    }
}

/// A writer replaces one entry between two valid values as fast as it can while the program
/// answers the same Renew: every answer is one of the two full answers (or, when the program
/// caught an element the kernel was reusing, the Renew goes up as torn).
#[test]
fn entries_replaced_while_the_program_reads_them() {
    let leases = leases();
    let l = lease(1, LeaseKind::Address);
    let key = IfaceKey::untagged(1);
    let slow = Lifetimes { preferred: 3600, valid: 7200, t1: 1800, t2: 2880 };
    let fast = Lifetimes { preferred: 600, valid: 1200, t1: 300, t2: 480 };
    let (k, a) = fast_renew::entry(key, &l, &slow, u64::MAX).unwrap();
    let (_, b) = fast_renew::entry(key, &l, &fast, u64::MAX).unwrap();
    assert_ne!(a.ia, b.ia);
    let frame = spec().build(&renew(&[cid(1), sid(), oro(&[23]), ia_na(1, l.addr)]));
    // The two full answers, from the twin.
    let answer = |e: RenewEntry| {
        let mut m = maps_with((0, 0), HashMap::from([(k, e)]));
        match m.run(&frame, 0) {
            Outcome::TxRenew(r) => r,
            o => panic!("the twin does not answer: {o:?}"),
        }
    };
    let (ra, rb) = (answer(a), answer(b));
    assert_ne!(ra, rb);
    let mut p = Program::load_maps(&maps_with((0, 0), HashMap::from([(k, a)])));
    let path = p.dp().pin_dir().join(MAP_RENEWS);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let data = aya::maps::MapData::from_pin(&path).expect("open the pinned renew map");
            let mut map = aya::maps::HashMap::<_, RenewKey, RenewEntry>::try_from(aya::maps::Map::HashMap(data))
                .expect("a hash map");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                map.insert(k, if writes % 2 == 0 { b } else { a }, 0).expect("replace the entry");
                writes += 1;
            }
            writes
        })
    };
    let (mut seen_a, mut seen_b, mut torn) = (0, 0, 0);
    for _ in 0..4000 {
        match p.run(&frame).0 {
            Outcome::TxRenew(r) if r == ra => seen_a += 1,
            Outcome::TxRenew(r) if r == rb => seen_b += 1,
            Outcome::Pass(v) if v.name() == "pass_renew_torn" => torn += 1,
            o => panic!("an answer that is neither full answer: {o:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    println!("answers: {seen_a} A, {seen_b} B, {torn} torn; {writes} writes");
    assert!(writes > 1000, "the writer kept replacing: {writes}");
    assert!(seen_a > 0 && seen_b > 0, "both values were read: {seen_a} A, {seen_b} B");
    let _ = leases;
}
