//! Engine tests: messages in, decoded replies and lease ops out.

use crate::stats::Counter;
use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use dhcpv6_common::wire::{msg, opt, status};

use super::*;
use crate::leases::{Lease, LeaseKind, LeaseOp, LeaseState, LeaseStore, MemoryStore};
use crate::server::relay::LinkSelector;
use crate::server::{ConfiguredOption, ServiceOptions};
use crate::wire::writer::test_option as encode_option;
use crate::wire::{Duid, Message, OptionIter};

const NOW: u64 = 1_700_000_000;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn server_duid() -> Duid {
    Duid::from_mac([2, 0, 0, 0, 0, 0xaa])
}

fn client(n: u32) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1, 0x02];
    d.extend_from_slice(&n.to_be_bytes()[..]);
    d.push(0x77);
    d
}

/// A client message under construction.
struct Msg(Vec<u8>);

impl Msg {
    fn new(t: u8) -> Self {
        Msg(vec![t, 0x12, 0x34, 0x56])
    }
    fn opt(mut self, code: u16, data: &[u8]) -> Self {
        self.0.extend_from_slice(&encode_option(code, data));
        self
    }
    fn cid(self, d: &[u8]) -> Self {
        self.opt(opt::CLIENTID, d)
    }
    fn sid(self) -> Self {
        self.opt(opt::SERVERID, server_duid().as_bytes())
    }
    fn oro(self, codes: &[u16]) -> Self {
        let d: Vec<u8> = codes.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.opt(opt::ORO, &d)
    }
    /// IA_NA with address hints; client-chosen T1/T2 and lifetimes are absurd on purpose.
    fn na(self, iaid: u32, addrs: &[&str]) -> Self {
        let mut d = iaid.to_be_bytes().to_vec();
        d.extend_from_slice(&[0xff; 8]);
        for s in addrs {
            let mut x = a(s).octets().to_vec();
            x.extend_from_slice(&[0xff; 8]);
            d.extend_from_slice(&encode_option(opt::IAADDR, &x));
        }
        self.opt(opt::IA_NA, &d)
    }
    fn pd(self, iaid: u32, prefixes: &[(&str, u8)]) -> Self {
        let mut d = iaid.to_be_bytes().to_vec();
        d.extend_from_slice(&[0xff; 8]);
        for (p, l) in prefixes {
            let mut x = vec![0xff; 8];
            x.push(*l);
            x.extend_from_slice(&a(p).octets());
            d.extend_from_slice(&encode_option(opt::IAPREFIX, &x));
        }
        self.opt(opt::IA_PD, &d)
    }
}

/// A decoded IA from a reply.
#[derive(Debug, Clone, PartialEq)]
struct Ia {
    code: u16,
    iaid: u32,
    t1: u32,
    t2: u32,
    /// (address or prefix, length, preferred, valid)
    leases: Vec<(Ipv6Addr, u8, u32, u32)>,
    status: Option<u16>,
}

#[derive(Debug)]
struct Decoded {
    msg_type: u8,
    status: Option<u16>,
    ias: Vec<Ia>,
    codes: Vec<u16>,
    cid: Option<Vec<u8>>,
    sid: Option<Vec<u8>>,
}

fn status_of(data: &[u8]) -> u16 {
    u16::from_be_bytes([data[0], data[1]])
}

fn decode(b: &[u8]) -> Decoded {
    let m = Message::parse(b).unwrap();
    let mut d = Decoded {
        msg_type: m.msg_type(),
        status: m.find(opt::STATUS_CODE).map(status_of),
        ias: Vec::new(),
        codes: m.options().map(|o| o.code).collect(),
        cid: m.client_id().unwrap().map(<[u8]>::to_vec),
        sid: m.server_id().unwrap().map(<[u8]>::to_vec),
    };
    assert_eq!(m.xid(), [0x12, 0x34, 0x56]);
    for o in m.options().filter(|o| o.code == opt::IA_NA || o.code == opt::IA_PD) {
        let u = |i: usize| u32::from_be_bytes(o.data[i..i + 4].try_into().unwrap());
        let mut ia = Ia { code: o.code, iaid: u(0), t1: u(4), t2: u(8), leases: Vec::new(), status: None };
        for s in OptionIter::new(&o.data[12..]).map(Result::unwrap) {
            let v = |i: usize| u32::from_be_bytes(s.data[i..i + 4].try_into().unwrap());
            match s.code {
                opt::IAADDR => {
                    ia.leases.push((Ipv6Addr::from(<[u8; 16]>::try_from(&s.data[..16]).unwrap()), 128, v(16), v(20)))
                }
                opt::IAPREFIX => ia.leases.push((
                    Ipv6Addr::from(<[u8; 16]>::try_from(&s.data[9..25]).unwrap()),
                    s.data[8],
                    v(0),
                    v(4),
                )),
                opt::STATUS_CODE => ia.status = Some(status_of(s.data)),
                c => panic!("unexpected option {c} in IA"),
            }
        }
        d.ias.push(ia);
    }
    d
}

/// The test link. Every test client sends from `ctx()`'s fe80::2, as if all were one host:
/// the per-MAC limit is off here and has tests of its own.
fn link() -> LinkPools {
    LinkPools {
        na: vec!["2001:db8:1::100-2001:db8:1::1ff".parse().unwrap()],
        pd: vec!["2001:db8:100::/40:56".parse().unwrap()],
        limits: ClientLimits { per_mac: 0, ..ClientLimits::default() },
        ..LinkPools::new("eth1")
    }
}

/// What the context borrows: the server's DUID and the link's options, as the daemon
/// holds them for as long as it serves.
static SERVER_DUID: LazyLock<Duid> = LazyLock::new(server_duid);
static OPTIONS: LazyLock<Vec<ConfiguredOption>> = LazyLock::new(|| {
    ServiceOptions { dns: vec![a("2001:db8::53")], ntp: vec![a("2001:db8::123")], ..Default::default() }
        .encode()
        .unwrap()
});

/// A client on eth1, the test link.
fn ctx() -> ClientContext<'static> {
    ClientContext {
        server_duid: &SERVER_DUID,
        relay: None,
        unicast: false,
        peer: a("fe80::2"),
        arrival: "eth1",
        options: &OPTIONS,
        ignore_user_classes: &[],
    }
}

fn engine(links: Vec<LinkPools>) -> Engine {
    Engine::new(links, Vec::new(), NOW).unwrap()
}

/// Handles a message and, like the daemon, commits its ops to `store` before "sending".
fn run(e: &mut Engine, store: &MemoryStore, m: &Msg, c: &ClientContext, now: u64) -> (Option<Decoded>, Outcome) {
    let mut out = e.handle(&Message::parse(&m.0).unwrap(), c, now);
    if !out.ops.is_empty() {
        store.commit(out.ops.clone()).wait_blocking().unwrap();
    }
    (out.reply.take().map(|r| decode(&r)), out)
}

fn reply(e: &mut Engine, store: &MemoryStore, m: &Msg) -> Decoded {
    run(e, store, m, &ctx(), NOW).0.expect("a reply")
}

fn solicit(n: u32) -> Msg {
    Msg::new(msg::SOLICIT).cid(&client(n))
}

fn request(n: u32) -> Msg {
    Msg::new(msg::REQUEST).cid(&client(n)).sid()
}

fn addr_of(d: &Decoded) -> Ipv6Addr {
    d.ias.iter().find(|i| i.code == opt::IA_NA).unwrap().leases[0].0
}

#[test]
fn advertise_commits_nothing_and_request_gets_the_offered_address() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let (adv, out) = run(&mut e, &store, &solicit(1).na(1, &[]).pd(2, &[]), &ctx(), NOW);
    let adv = adv.unwrap();
    assert!(out.ops.is_empty() && out.routes.is_empty());
    assert_eq!(adv.msg_type, msg::ADVERTISE);
    assert_eq!(adv.cid.as_deref(), Some(&client(1)[..]));
    assert_eq!(adv.sid.as_deref(), Some(server_duid().as_bytes()));
    assert_eq!(adv.status, None);
    assert_eq!(e.lease_count(), 0);

    let rep = reply(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]));
    assert_eq!(rep.msg_type, msg::REPLY);
    assert_eq!(rep.ias, adv.ias, "same address and prefix as offered, no state needed");
    assert_eq!(store.load_all().unwrap().len(), 2);
    assert_eq!(e.lease_count(), 2);
}

#[test]
fn reply_has_configured_lifetimes_and_equal_t1_t2_in_every_ia() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let rep = reply(&mut e, &store, &request(1).na(1, &[]).na(2, &[]).pd(3, &[]).pd(4, &[]));
    assert_eq!(rep.ias.len(), 4);
    let lt = Lifetimes::default();
    for ia in &rep.ias {
        // Client asked for 0xffffffff everywhere; it gets the link's values.
        assert_eq!((ia.t1, ia.t2), (lt.t1, lt.t2));
        assert_eq!(ia.leases.len(), 1);
        assert_eq!((ia.leases[0].2, ia.leases[0].3), (lt.preferred, lt.valid));
        assert_eq!(ia.status, None);
    }
    // Each IA has its own binding.
    let distinct: HashSet<_> = rep.ias.iter().map(|i| i.leases[0].0).collect();
    assert_eq!(distinct.len(), 4);
    let leases = store.load_all().unwrap();
    assert!(leases.iter().all(|l| l.valid_until == NOW + 7200 && l.preferred_until == NOW + 3600));
    // A retransmitted Request gets the same bindings back.
    let again = reply(&mut e, &store, &request(1).na(1, &[]).na(2, &[]).pd(3, &[]).pd(4, &[]));
    assert_eq!(again.ias, rep.ias);
    assert_eq!(e.lease_count(), 4);
}

#[test]
fn options_follow_the_option_request() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let rep = reply(&mut e, &store, &request(1).na(1, &[]));
    assert!(rep.codes.contains(&opt::DNS_SERVERS) && !rep.codes.contains(&opt::NTP_SERVER));
    let rep = reply(&mut e, &store, &request(1).na(1, &[]).oro(&[opt::NTP_SERVER]));
    assert!(rep.codes.contains(&opt::NTP_SERVER));
    assert_eq!(&rep.codes[..2], &[opt::CLIENTID, opt::SERVERID]);
}

#[test]
fn rapid_commit_only_when_both_sides_want_it() {
    let store = MemoryStore::new();
    let mut e = engine(vec![link()]);
    let (adv, out) = run(&mut e, &store, &solicit(1).na(1, &[]).opt(opt::RAPID_COMMIT, &[]), &ctx(), NOW);
    assert_eq!(adv.unwrap().msg_type, msg::ADVERTISE, "server not configured for it");
    assert!(out.ops.is_empty());

    let mut e = engine(vec![LinkPools { rapid_commit: true, ..link() }]);
    let (adv, _) = run(&mut e, &store, &solicit(1).na(1, &[]), &ctx(), NOW);
    assert_eq!(adv.unwrap().msg_type, msg::ADVERTISE, "client did not ask");
    let (rep, out) = run(&mut e, &store, &solicit(1).na(1, &[]).pd(1, &[]).opt(opt::RAPID_COMMIT, &[]), &ctx(), NOW);
    let rep = rep.unwrap();
    assert_eq!(rep.msg_type, msg::REPLY);
    assert!(rep.codes.contains(&opt::RAPID_COMMIT));
    assert_eq!(out.ops.len(), 2);
    assert_eq!(e.lease_count(), 2);
}

#[test]
fn exhaustion_puts_the_status_inside_the_ia() {
    let small = LinkPools {
        na: vec!["2001:db8:1::100-2001:db8:1::101".parse().unwrap()],
        pd: vec!["2001:db8:100::/55:56".parse().unwrap()],
        ..LinkPools::new("eth1")
    };
    let mut e = engine(vec![small]);
    let store = MemoryStore::new();
    for n in 0..2 {
        let r = reply(&mut e, &store, &request(n).na(1, &[]).pd(1, &[]));
        assert!(r.ias.iter().all(|i| i.status.is_none() && i.leases.len() == 1));
    }
    let r = reply(&mut e, &store, &request(9).na(1, &[]).pd(1, &[]));
    assert_eq!(r.status, None);
    assert_eq!(r.ias[0].status, Some(status::NO_ADDRS_AVAIL));
    assert_eq!(r.ias[1].status, Some(status::NO_PREFIX_AVAIL));
    assert!(r.ias.iter().all(|i| i.leases.is_empty()));
    // Advertise with nothing to give anywhere: the status also goes to the top.
    let adv = reply(&mut e, &store, &solicit(9).na(1, &[]).pd(1, &[]));
    assert_eq!(adv.ias[0].status, Some(status::NO_ADDRS_AVAIL));
    assert_eq!(adv.ias[1].status, Some(status::NO_PREFIX_AVAIL));
    assert_eq!(adv.status, Some(status::NO_ADDRS_AVAIL));
    // Only prefixes asked for: NoPrefixAvail at the top (RFC 3633 clients).
    let adv = reply(&mut e, &store, &solicit(9).pd(1, &[]));
    assert_eq!(adv.status, Some(status::NO_PREFIX_AVAIL));
    // Release one address: an Advertise with the address but no prefix has no top status.
    reply(&mut e, &store, &Msg::new(msg::RELEASE).cid(&client(0)).sid().na(1, &["2001:db8:1::100", "2001:db8:1::101"]));
    let adv = reply(&mut e, &store, &solicit(9).na(1, &[]).pd(1, &[]));
    assert_eq!(adv.status, None);
    assert_eq!(adv.ias[0].status, None);
    assert_eq!(adv.ias[1].status, Some(status::NO_PREFIX_AVAIL));
}

#[test]
fn address_and_prefix_hints() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let r = reply(&mut e, &store, &request(1).na(1, &["2001:db8:1::1aa"]).pd(1, &[("2001:db8:1ff:ff00::", 56)]));
    assert_eq!(r.ias[0].leases[0].0, a("2001:db8:1::1aa"));
    assert_eq!((r.ias[1].leases[0].0, r.ias[1].leases[0].1), (a("2001:db8:1ff:ff00::"), 56));
    // The same hints from someone else: taken, so something else.
    let r = reply(&mut e, &store, &request(2).na(1, &["2001:db8:1::1aa"]).pd(1, &[("2001:db8:1ff:ff00::", 56)]));
    assert_ne!(r.ias[0].leases[0].0, a("2001:db8:1::1aa"));
    assert_ne!(r.ias[1].leases[0].0, a("2001:db8:1ff:ff00::"));
    // On the link but outside the range: not given, but not NotOnLink either.
    let r = reply(&mut e, &store, &request(3).na(1, &["2001:db8:1::9999"]));
    assert_eq!(r.ias[0].status, None);
    assert!(link().na[0].contains(r.ias[0].leases[0].0));
    // Length hints shorter and longer than /56 get the configured /56 (RFC 8168).
    for (n, len) in [(4, 48), (5, 64), (6, 56)] {
        let r = reply(&mut e, &store, &request(n).pd(1, &[("::", len)]));
        assert_eq!(r.ias[0].leases[0].1, 56);
    }
    // A prefix hint without a length is tried at the pool's length.
    let r = reply(&mut e, &store, &request(7).pd(1, &[("2001:db8:1ff:fe00::", 0)]));
    assert_eq!((r.ias[0].leases[0].0, r.ias[0].leases[0].1), (a("2001:db8:1ff:fe00::"), 56));
}

#[test]
fn length_hint_picks_among_pools_of_different_lengths() {
    let l = LinkPools {
        pd: vec![
            "2001:db8:100::/40:56".parse().unwrap(),
            "2001:db8:200::/40:60".parse().unwrap(),
            "2001:db8:300::/40:48".parse().unwrap(),
        ],
        ..link()
    };
    let mut e = engine(vec![l]);
    let store = MemoryStore::new();
    let len_for = |e: &mut Engine, n, hint| reply(e, &store, &request(n).pd(1, &[("::", hint)])).ias[0].leases[0].1;
    assert_eq!(len_for(&mut e, 1, 60), 60);
    assert_eq!(len_for(&mut e, 2, 48), 48);
    assert_eq!(len_for(&mut e, 3, 56), 56);
    assert_eq!(len_for(&mut e, 4, 62), 60, "closest");
    assert_eq!(len_for(&mut e, 5, 52), 48, "equally close: the bigger prefix");
}

#[test]
fn reservations_by_duid_by_duid_and_iaid_and_by_relay_options() {
    let res = vec![
        Reservation {
            duid: Some(Duid::new(&client(1)).unwrap()),
            address: Some(a("2001:db8:1::150")),
            prefix: Some((a("2001:db8:180::"), 56)),
            ..Default::default()
        },
        Reservation {
            duid: Some(Duid::new(&client(2)).unwrap()),
            iaid: Some(7),
            address: Some(a("2001:db8:1::99")),
            ..Default::default()
        },
        Reservation {
            remote_id: Some(vec![0, 0, 0, 9, b'a']),
            prefix: Some((a("2001:db8:9000::"), 48)),
            ..Default::default()
        },
    ];
    let mut e = engine(vec![LinkPools { reservations: res, ..link() }]);
    let store = MemoryStore::new();
    let r = reply(&mut e, &store, &request(1).na(1, &["2001:db8:1::1aa"]).pd(1, &[]));
    assert_eq!(r.ias[0].leases[0].0, a("2001:db8:1::150"), "reservation beats the hint");
    assert_eq!((r.ias[1].leases[0].0, r.ias[1].leases[0].1), (a("2001:db8:180::"), 56));
    // DUID+IAID: only IA 7 gets it (out of the range, but on the link).
    let r = reply(&mut e, &store, &request(2).na(1, &[]).na(7, &[]));
    assert_ne!(r.ias[0].leases[0].0, a("2001:db8:1::99"));
    assert_eq!(r.ias[1].leases[0].0, a("2001:db8:1::99"));
    // Someone else asking for a reserved address by hint does not get it.
    let r = reply(&mut e, &store, &request(3).na(1, &["2001:db8:1::150"]));
    assert_ne!(r.ias[0].leases[0].0, a("2001:db8:1::150"));
    // Relayed client matched by Remote-ID.
    let mut c = ctx();
    c.relay =
        Some(LinkSelector { remote_id: Some(&[0, 0, 0, 9, b'a']), interface_id: Some(b"eth1"), ..Default::default() });
    let (r, out) = run(&mut e, &store, &request(4).pd(1, &[]), &c, NOW);
    let r = r.unwrap();
    assert_eq!((r.ias[0].leases[0].0, r.ias[0].leases[0].1), (a("2001:db8:9000::"), 48));
    assert!(matches!(&out.routes[..], [RouteChange::Add { prefix, len: 48, .. }] if *prefix == a("2001:db8:9000::")));
}

#[test]
fn a_new_reservation_moves_the_client_at_its_next_renew() {
    let store = MemoryStore::new();
    let mut e = engine(vec![link()]);
    let first = addr_of(&reply(&mut e, &store, &request(1).na(1, &[])));
    let res = Reservation {
        duid: Some(Duid::new(&client(1)).unwrap()),
        address: Some(a("2001:db8:1::1ee")),
        ..Default::default()
    };
    let mut e =
        Engine::new(vec![LinkPools { reservations: vec![res], ..link() }], store.load_all().unwrap(), NOW).unwrap();
    let r = reply(&mut e, &store, &Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&first.to_string()]));
    let leases = &r.ias[0].leases;
    assert!(leases.contains(&(first, 128, 0, 0)), "old one withdrawn: {leases:?}");
    assert!(leases.contains(&(a("2001:db8:1::1ee"), 128, 3600, 7200)));
}

#[test]
fn renew_extends_and_reports_unknown_bindings() {
    let mut e = engine(vec![LinkPools { create_on_renew: false, ..link() }]);
    let store = MemoryStore::new();
    let got = addr_of(&reply(&mut e, &store, &request(1).na(1, &[])));
    let later = NOW + 1800;
    let renew = Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&got.to_string(), "2001:db8:1::1ff"]).na(2, &[]);
    let (r, out) = run(&mut e, &store, &renew, &ctx(), later);
    let r = r.unwrap();
    assert_eq!(r.ias[0].leases, vec![(got, 128, 3600, 7200), (a("2001:db8:1::1ff"), 128, 0, 0)]);
    assert_eq!(r.ias[1].status, Some(status::NO_BINDING));
    assert!(r.ias[1].leases.is_empty());
    assert!(matches!(&out.ops[..], [LeaseOp::Upsert(l)] if l.valid_until == later + 7200));
    assert_eq!(store.load_all().unwrap()[0].valid_until, later + 7200);
}

#[test]
fn rebind_extends_unknown_but_appropriate_bindings_and_drops_when_silent() {
    let mut e = engine(vec![LinkPools { create_on_renew: false, ..link() }]);
    let store = MemoryStore::new();
    // State lost: the client rebinds with an address from our pool that is free.
    let rebind =
        Msg::new(msg::REBIND).cid(&client(1)).na(1, &["2001:db8:1::123"]).pd(2, &[("2001:db8:1ff:ff00::", 56)]);
    let (r, out) = run(&mut e, &store, &rebind, &ctx(), NOW);
    let r = r.unwrap();
    assert_eq!(r.ias[0].leases, vec![(a("2001:db8:1::123"), 128, 3600, 7200)]);
    assert_eq!(r.ias[1].leases, vec![(a("2001:db8:1ff:ff00::"), 56, 3600, 7200)]);
    assert_eq!(out.ops.len(), 2);
    // Another client rebinding with the same address, and one with an address from
    // elsewhere: both told to stop using them.
    let other = Msg::new(msg::REBIND).cid(&client(2)).na(1, &["2001:db8:1::123", "2001:db8:99::1"]);
    let r = reply(&mut e, &store, &other);
    assert_eq!(r.ias[0].leases, vec![(a("2001:db8:1::123"), 128, 0, 0), (a("2001:db8:99::1"), 128, 0, 0)]);
    // Nothing named and no binding: nothing to say, dropped.
    let (r, out) = run(&mut e, &store, &Msg::new(msg::REBIND).cid(&client(3)).na(1, &[]), &ctx(), NOW);
    assert!(r.is_none());
    assert_eq!(out.discard, Some(Counter::DropRebindNothingToSay));
    // A known binding is extended like a Renew.
    let r = reply(&mut e, &store, &Msg::new(msg::REBIND).cid(&client(1)).na(1, &["2001:db8:1::123"]));
    assert_eq!(r.ias[0].leases, vec![(a("2001:db8:1::123"), 128, 3600, 7200)]);
}

#[test]
fn release_frees_and_reports_no_binding() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let r = reply(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]));
    let (addr, pfx) = (r.ias[0].leases[0].0, r.ias[1].leases[0].0);
    let release = Msg::new(msg::RELEASE)
        .cid(&client(1))
        .sid()
        .na(1, &[&addr.to_string()])
        .pd(2, &[(&pfx.to_string(), 56)])
        .na(5, &[]);
    let (r, out) = run(&mut e, &store, &release, &ctx(), NOW);
    let r = r.unwrap();
    assert_eq!(r.status, Some(status::SUCCESS));
    assert_eq!(r.ias.len(), 1, "only the unknown IA is mentioned");
    assert_eq!((r.ias[0].iaid, r.ias[0].status), (5, Some(status::NO_BINDING)));
    assert!(!r.codes.contains(&opt::DNS_SERVERS));
    assert!(out.routes.contains(&RouteChange::Remove { prefix: pfx, len: 56, link: "eth1".into() }));
    assert_eq!(e.lease_count(), 0);
    assert!(store.load_all().unwrap().is_empty());
}

#[test]
fn decline_holds_the_address_back_until_the_hold_ends() {
    let one = LinkPools { na: vec!["2001:db8:1::100-2001:db8:1::100".parse().unwrap()], decline_hold: 600, ..link() };
    let mut e = engine(vec![one]);
    let store = MemoryStore::new();
    let got = addr_of(&reply(&mut e, &store, &request(1).na(1, &[])));
    let decline = Msg::new(msg::DECLINE).cid(&client(1)).sid().na(1, &[&got.to_string()]).na(4, &[]);
    let r = reply(&mut e, &store, &decline);
    assert_eq!(r.status, Some(status::SUCCESS));
    assert_eq!((r.ias[0].iaid, r.ias[0].status), (4, Some(status::NO_BINDING)));
    let stored = store.load_all().unwrap();
    assert_eq!((stored[0].state, stored[0].valid_until), (LeaseState::Declined, NOW + 600));
    // Held back from everybody, the decliner included.
    for n in [1, 2] {
        assert_eq!(reply(&mut e, &store, &request(n).na(1, &[])).ias[0].status, Some(status::NO_ADDRS_AVAIL));
    }
    let gone = e.expire(NOW + 600);
    assert_eq!(gone.leases.len(), 1);
    assert!(gone.routes.is_empty());
    assert_eq!(addr_of(&reply(&mut e, &store, &request(2).na(1, &[]))), got);
}

#[test]
fn confirm_says_success_or_not_on_link_or_nothing() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let confirm = |addrs: &[&str]| Msg::new(msg::CONFIRM).cid(&client(1)).na(1, addrs);
    // Any address of the link's /64 is on link, in the range or not.
    assert_eq!(reply(&mut e, &store, &confirm(&["2001:db8:1::150", "2001:db8:1::ffff"])).status, Some(status::SUCCESS));
    assert_eq!(
        reply(&mut e, &store, &confirm(&["2001:db8:1::150", "2001:db8:2::1"])).status,
        Some(status::NOT_ON_LINK)
    );
    let (r, out) = run(&mut e, &store, &confirm(&[]), &ctx(), NOW);
    assert!(r.is_none() && out.discard.is_some());
    assert!(out.ops.is_empty());
}

#[test]
fn request_naming_an_address_of_another_link_gets_not_on_link() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let r = reply(&mut e, &store, &request(1).na(1, &["2001:db8:2::5"]).pd(2, &[]));
    assert_eq!(r.ias[0].status, Some(status::NOT_ON_LINK));
    assert!(r.ias[0].leases.is_empty());
    assert_eq!(r.ias[1].status, None, "the IA_PD is served");
}

#[test]
fn server_and_client_identifier_rules() {
    let mut e = engine(vec![link()]);
    let c = ctx();
    let drop = |e: &mut Engine, m: Msg| e.handle(&Message::parse(&m.0).unwrap(), &c, NOW).discard;
    assert_eq!(drop(&mut e, solicit(1).sid().na(1, &[])), Some(Counter::DropUnexpectedServerId));
    assert_eq!(
        drop(&mut e, Msg::new(msg::REBIND).cid(&client(1)).sid().na(1, &["2001:db8:1::100"])),
        Some(Counter::DropUnexpectedServerId)
    );
    assert_eq!(
        drop(&mut e, Msg::new(msg::CONFIRM).cid(&client(1)).sid().na(1, &["2001:db8:1::100"])),
        Some(Counter::DropUnexpectedServerId)
    );
    for t in [msg::REQUEST, msg::RENEW, msg::RELEASE, msg::DECLINE] {
        assert_eq!(drop(&mut e, Msg::new(t).cid(&client(1)).na(1, &[])), Some(Counter::DropMissingServerId));
        let foreign = Msg::new(t).cid(&client(1)).opt(opt::SERVERID, &client(99)).na(1, &[]);
        assert_eq!(drop(&mut e, foreign), Some(Counter::DropForeignServerId));
    }
    assert_eq!(drop(&mut e, Msg::new(msg::SOLICIT).na(1, &[])), Some(Counter::DropNoClientId));
    assert_eq!(drop(&mut e, Msg::new(msg::INFORMATION_REQUEST).cid(&client(1))), Some(Counter::DropUnsupported));
    assert_eq!(drop(&mut e, Msg::new(msg::ADVERTISE).cid(&client(1))), Some(Counter::DropUnsupported));
    assert_eq!(drop(&mut e, solicit(1).opt(opt::IA_NA, &[0, 0, 0, 1, 0, 0])), Some(Counter::DropMalformed));
    assert_eq!(drop(&mut e, solicit(1).cid(&client(2))), Some(Counter::DropMalformed), "two client ids");
    let mut other = ctx();
    other.arrival = "eth9";
    assert_eq!(
        e.handle(&Message::parse(&solicit(1).na(1, &[]).0).unwrap(), &other, NOW).discard,
        Some(Counter::DropUnknownLink)
    );
    assert_eq!(e.lease_count(), 0);
}

/// RFC 9915 section 16: a server that never sent Server Unicast discards what a client
/// unicasts, every type alike (RFC 8415's UseMulticast answer is gone).
#[test]
fn unicast_is_served_unless_the_link_rejects_it() {
    let store = MemoryStore::new();
    let mut c = ctx();
    c.unicast = true;
    let mut e = engine(vec![link()]);
    let (r, _) = run(&mut e, &store, &request(1).na(1, &[]), &c, NOW);
    assert_eq!(r.unwrap().ias[0].status, None);

    let mut e = engine(vec![LinkPools { reject_unicast: true, ..link() }]);
    for m in [request(1).na(1, &[]), solicit(1).na(1, &[])] {
        let (r, out) = run(&mut e, &store, &m, &c, NOW);
        assert!(r.is_none(), "no UseMulticast reply");
        assert_eq!(out.discard, Some(Counter::DropUnicast));
        assert!(out.ops.is_empty());
    }
    assert_eq!(e.lease_count(), 0);
}

#[test]
fn restart_rebuilds_from_stored_leases() {
    let store = MemoryStore::new();
    let mut e = engine(vec![link()]);
    let first = reply(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]));
    let other = reply(&mut e, &store, &request(2).na(1, &[]));
    // A lease that expired while the server was down is not brought back.
    let mut stale = store.load_all().unwrap()[0].clone();
    stale.addr = a("2001:db8:1::1fe");
    stale.duid = client(3);
    stale.valid_until = NOW - 1;
    stale.preferred_until = NOW - 1;
    store.commit(vec![LeaseOp::Upsert(stale)]).wait_blocking().unwrap();

    let mut e = Engine::new(vec![link()], store.load_all().unwrap(), NOW).unwrap();
    assert_eq!(e.lease_count(), 3);
    // Same client, fresh Request after a reboot: same bindings.
    assert_eq!(reply(&mut e, &store, &request(1).na(1, &[]).pd(2, &[])).ias, first.ias);
    // Renew works against the rebuilt state.
    let renew = Msg::new(msg::RENEW).cid(&client(2)).sid().na(1, &[&addr_of(&other).to_string()]);
    assert_eq!(reply(&mut e, &store, &renew).ias[0].leases[0].3, 7200);
    // Taken addresses stay taken for others; the expired one is free again.
    let r = reply(&mut e, &store, &request(4).na(1, &[&addr_of(&first).to_string()]));
    assert_ne!(addr_of(&r), addr_of(&first));
    let r = reply(&mut e, &store, &request(5).na(1, &["2001:db8:1::1fe"]));
    assert_eq!(addr_of(&r), a("2001:db8:1::1fe"));
}

#[test]
fn rollback_after_a_failed_commit_frees_the_address() {
    let one = LinkPools { na: vec!["2001:db8:1::100-2001:db8:1::100".parse().unwrap()], ..link() };
    let mut e = engine(vec![one]);
    let c = ctx();
    let out = e.handle(&Message::parse(&request(1).na(1, &[]).0).unwrap(), &c, NOW);
    assert_eq!(out.ops.len(), 1);
    // The commit failed: the daemon sends nothing and rolls back.
    e.rollback(out.undo);
    assert_eq!(e.lease_count(), 0);
    let store = MemoryStore::new();
    let r = reply(&mut e, &store, &request(2).na(1, &[]));
    assert_eq!(addr_of(&r), a("2001:db8:1::100"));
}

#[test]
fn routes_follow_delegations() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let (r, out) = run(&mut e, &store, &request(1).pd(1, &[]), &ctx(), NOW);
    let (pfx, len, ..) = r.unwrap().ias[0].leases[0];
    assert_eq!(out.routes, vec![RouteChange::Add { prefix: pfx, len, via: a("fe80::2"), link: "eth1".into() }]);
    assert_eq!(e.delegations().count(), 1);
    let gone = e.expire(NOW + 7200);
    assert_eq!(gone.routes, vec![RouteChange::Remove { prefix: pfx, len, link: "eth1".into() }]);
    assert_eq!(gone.ops, vec![LeaseOp::Remove { kind: LeaseKind::Prefix, addr: pfx, prefix_len: len }]);
    assert_eq!(e.lease_count(), 0);
}

#[test]
fn expired_binding_is_not_extended_for_someone_else() {
    let one = LinkPools { na: vec!["2001:db8:1::100-2001:db8:1::100".parse().unwrap()], ..link() };
    let mut e = engine(vec![one]);
    let store = MemoryStore::new();
    reply(&mut e, &store, &request(1).na(1, &[]));
    let later = NOW + 7200;
    let (r, _) = run(&mut e, &store, &request(2).na(1, &[]), &ctx(), later);
    assert_eq!(r.unwrap().ias[0].status, Some(status::NO_ADDRS_AVAIL), "until expire() reclaims it");
    e.expire(later);
    let (r, _) = run(&mut e, &store, &request(2).na(1, &[]), &ctx(), later);
    assert_eq!(r.unwrap().ias[0].leases[0].0, a("2001:db8:1::100"));
}

#[test]
fn pool_usage_counts_reservations_and_leases() {
    let res = Reservation {
        duid: Some(Duid::new(&client(1)).unwrap()),
        address: Some(a("2001:db8:1::150")),
        ..Default::default()
    };
    let mut e = engine(vec![LinkPools { reservations: vec![res], ..link() }]);
    let store = MemoryStore::new();
    reply(&mut e, &store, &request(2).na(1, &[]).pd(1, &[]));
    let u = e.pool_usage();
    assert_eq!((u[0].used, u[0].size), (2, 256));
    assert_eq!((u[1].used, u[1].size), (1, 65536));
    assert_eq!(u[1].pool, "2001:db8:100::/40:56");
}

/// 100,000 clients fill a pool of exactly 100,000 addresses, each with one Request; the
/// next one gets NoAddrsAvail. No timing assertion: the point is that it completes, which
/// it would not in reasonable time with a scan of the pool per request.
#[test]
fn hundred_thousand_allocations() {
    const N: u32 = 100_000;
    let big = LinkPools {
        na: vec![AddrRange::new(
            a("2001:db8:1::1:0"),
            Ipv6Addr::from(u128::from(a("2001:db8:1::1:0")) + u128::from(N) - 1),
        )
        .unwrap()],
        pd: vec!["2001:db8:1000::/36:56".parse().unwrap()],
        limits: link().limits,
        ..LinkPools::new("eth1")
    };
    let mut e = engine(vec![big]);
    let c = ctx();
    let mut seen = HashSet::with_capacity(N as usize);
    let mut prefixes = HashSet::with_capacity(N as usize);
    for n in 0..N {
        let out = e.handle(&Message::parse(&request(n).na(1, &[]).pd(2, &[]).0).unwrap(), &c, NOW);
        assert_eq!(out.ops.len(), 2);
        for op in out.ops {
            let LeaseOp::Upsert(l) = op else { panic!("upsert expected") };
            assert!(match l.kind {
                LeaseKind::Address => seen.insert(l.addr),
                LeaseKind::Prefix => prefixes.insert(l.addr),
            });
        }
    }
    assert_eq!(seen.len(), N as usize);
    assert_eq!(e.lease_count(), 2 * N as usize);
    let last = decode(&e.handle(&Message::parse(&request(N).na(1, &[]).0).unwrap(), &c, NOW).reply.unwrap());
    assert_eq!(last.ias[0].status, Some(status::NO_ADDRS_AVAIL));
    // And a restart over 200,000 leases rebuilds the same picture.
    let leases: Vec<Lease> = e.leases().cloned().collect();
    let e2 = Engine::new(e.links().to_vec(), leases, NOW).unwrap();
    assert_eq!(e2.pool_usage(), e.pool_usage());
}

#[test]
fn relay_link_lookup_matches_the_linear_helper() {
    let links: Vec<LinkPools> = (0..1000u128)
        .map(|i| {
            let base = u128::from(a("2001:db8::")) | (i << 64);
            let r = |lo: u128, hi: u128| AddrRange::new(Ipv6Addr::from(base | lo), Ipv6Addr::from(base | hi)).unwrap();
            // Two ranges in one /64 of the same link.
            LinkPools { na: vec![r(0x100, 0x1ff), r(0x1000, 0x1fff)], ..LinkPools::new(format!("vlan{i}")) }
        })
        .collect();
    let e = engine(links.clone());
    for probe in ["2001:db8:0:3e7::5", "2001:db8:0:0:ffff::1", "2001:db8:0:3e8::1", "2001:db8::", "::", "2001:db9::1"] {
        let p = a(probe);
        assert_eq!(e.link_for_relay(p).map(|l| &l.link), link_for_relay(&links, p).map(|l| &l.link), "{probe}");
    }
    assert_eq!(e.link_for_relay(a("2001:db8:0:3e7::5")).map(|l| l.link.as_str()), Some("vlan999"));
}

/// A Renew for one IA of a DUID that holds 50,000 must look at that IA's lease, not at all
/// of the client's (a scan per IA cost 300 ms per Renew at this size). Counted in leases
/// the index handed out, so the test does not depend on the machine's speed.
#[test]
fn a_renew_looks_only_at_the_ia_it_names() {
    const IAS: u32 = 50_000;
    let big = LinkPools { na: vec!["2001:db8:1::1-2001:db8:1::ffff".parse().unwrap()], ..link() };
    let addr = |n: u32| Ipv6Addr::from(u128::from(a("2001:db8:1::1")) + u128::from(n));
    let leases = (0..IAS).map(|n| Lease {
        duid: client(1),
        iaid: n,
        kind: LeaseKind::Address,
        addr: addr(n),
        prefix_len: 128,
        iface: "eth1".into(),
        valid_until: NOW + 7200,
        preferred_until: NOW + 3600,
        state: LeaseState::Bound,
        next_hop: None,
        last_transaction: 0,
        relay: None,
    });
    let mut e = Engine::new(vec![big], leases, NOW).unwrap();
    assert_eq!(e.lease_count(), IAS as usize);
    let store = MemoryStore::new();
    let renew = Msg::new(msg::RENEW).cid(&client(1)).sid().na(31_337, &[&addr(31_337).to_string()]);
    let before = super::index::visited();
    let r = reply(&mut e, &store, &renew);
    let looked_at = super::index::visited() - before;
    assert_eq!(r.ias[0].leases, vec![(addr(31_337), 128, 3600, 7200)]);
    assert!(looked_at <= 8, "one Renew looked at {looked_at} leases");
}

#[test]
fn a_reply_too_long_for_a_datagram_is_dropped_and_its_lease_undone() {
    // Two configured options of 40,000 bytes each: each fits its length field, together
    // they do not fit a datagram.
    let big = |code| crate::server::ConfiguredOption {
        code,
        policy: crate::server::SendPolicy::Always,
        encoded: encode_option(code, &[0; 40_000]),
    };
    let options = vec![big(opt::VENDOR_OPTS), big(opt::VENDOR_OPTS)];
    let huge = ClientContext { options: &options, ..ctx() };
    let one = LinkPools { na: vec!["2001:db8:1::100-2001:db8:1::100".parse().unwrap()], ..link() };
    let mut e = engine(vec![one]);
    let out = e.handle(&Message::parse(&request(1).na(1, &[]).0).unwrap(), &huge, NOW);
    assert_eq!((out.reply, out.discard), (None, Some(Counter::DropReplyTooLong)));
    assert!(out.ops.is_empty());
    // The only address was not kept for a client that was never told of it.
    assert_eq!(e.lease_count(), 0);
    let store = MemoryStore::new();
    assert_eq!(addr_of(&reply(&mut e, &store, &request(2).na(1, &[]))), a("2001:db8:1::100"));
}

#[test]
fn an_operator_release_frees_the_lease_and_its_route_and_rolls_back() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let (_, out) = run(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]), &ctx(), NOW);
    let events: Vec<_> = out.undo.lease_events().collect();
    assert_eq!(events, vec![crate::stats::LeaseEvent::Granted; 2]);
    let leases: Vec<Lease> = e.leases().cloned().collect();
    let na = leases.iter().find(|l| l.kind == LeaseKind::Address).unwrap().clone();
    let pd = leases.iter().find(|l| l.kind == LeaseKind::Prefix).unwrap().clone();

    // A failed commit puts it back.
    let (released, out) = e.release_lease(&na.key()).unwrap();
    assert_eq!(released, na);
    assert_eq!(out.ops, vec![LeaseOp::remove(na.key())]);
    assert!(out.routes.is_empty() && out.reply.is_none() && out.discard.is_none());
    assert_eq!(e.lease_count(), 1);
    e.rollback(out.undo);
    assert_eq!(e.lease_count(), 2);

    let (_, out) = e.release_lease(&pd.key()).unwrap();
    assert_eq!(out.ops, vec![LeaseOp::remove(pd.key())]);
    assert_eq!(out.routes, vec![RouteChange::Remove { prefix: pd.addr, len: pd.prefix_len, link: pd.iface.clone() }]);
    assert_eq!(out.undo.lease_events().collect::<Vec<_>>(), vec![crate::stats::LeaseEvent::Released]);
    assert!(e.release_lease(&pd.key()).is_none(), "nothing holds it any more");

    // Freed: another client's Request can be given the prefix again.
    store.commit(out.ops).wait_blocking().unwrap();
    let rep = reply(&mut e, &store, &request(2).pd(7, &[(&pd.addr.to_string(), pd.prefix_len)]));
    let got = rep.ias.iter().find(|i| i.code == opt::IA_PD).unwrap();
    assert_eq!(got.leases[0].0, pd.addr, "{rep:?}");
}

/// SOL_MAX_RT goes into every Advertise and Reply (to damp Solicit retries after an
/// outage); the Information Refresh Time never does (RFC 9915 section 21.23).
#[test]
fn advertise_and_reply_carry_sol_max_rt_and_never_the_refresh_time() {
    static TIMERS: LazyLock<Vec<ConfiguredOption>> = LazyLock::new(|| {
        ServiceOptions {
            dns: vec![a("2001:db8::53")],
            information_refresh_time: Some(3600),
            inf_max_rt: Some(900),
            sol_max_rt: Some(1200),
            ..Default::default()
        }
        .encode()
        .unwrap()
    });
    let c = ClientContext { options: &TIMERS, ..ctx() };
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let oro = [opt::INFORMATION_REFRESH_TIME, opt::SOL_MAX_RT, opt::DNS_SERVERS];
    for m in [solicit(1).na(1, &[]).oro(&oro), request(1).na(1, &[]).oro(&oro)] {
        let mut out = e.handle(&Message::parse(&m.0).unwrap(), &c, NOW);
        if !out.ops.is_empty() {
            store.commit(out.ops.clone()).wait_blocking().unwrap();
        }
        let reply = out.reply.take().expect("an answer");
        let m = Message::parse(&reply).unwrap();
        let codes: Vec<u16> = m.options().map(|o| o.code).collect();
        assert!(codes.contains(&opt::SOL_MAX_RT), "type {}: {codes:?}", m.msg_type());
        assert!(!codes.contains(&opt::INFORMATION_REFRESH_TIME), "type {}: {codes:?}", m.msg_type());
        let sol = m.options().find(|o| o.code == opt::SOL_MAX_RT).unwrap();
        assert_eq!(sol.data, &1200u32.to_be_bytes()[..]);
    }
}

/// A relayed client on a link with options of its own gets those (and its User Class
/// filter); a direct client gets its interface's, filtered by the interface's classes.
#[test]
fn a_relayed_link_with_its_own_options_answers_with_them() {
    use crate::server::LinkService;
    let own = ServiceOptions {
        dns: vec![a("2001:db8:7::53")],
        raw: vec![crate::server::typed_options::CustomOption { code: 100, data: vec![7], always: true }],
        ..Default::default()
    };
    let service = LinkService { options: own.encode().unwrap(), ignore_user_classes: vec![b"iptv".to_vec()] };
    let olt = LinkPools {
        na: vec!["2001:db8:7::100-2001:db8:7::1ff".parse().unwrap()],
        service: Some(std::sync::Arc::new(service)),
        ..LinkPools::new("olt-7")
    };
    let mut e = engine(vec![link(), olt]);
    let store = MemoryStore::new();
    let relayed = ClientContext {
        relay: Some(LinkSelector { interface_id: Some(b"olt-7"), ..Default::default() }),
        peer: a("2001:db8:7::1"),
        ..ctx()
    };
    let m = request(1).na(1, &[]);
    let out = e.handle(&Message::parse(&m.0).unwrap(), &relayed, NOW);
    store.commit(out.ops.clone()).wait_blocking().unwrap();
    let r = Message::parse(out.reply.as_deref().unwrap()).unwrap().find(opt::DNS_SERVERS).map(<[u8]>::to_vec);
    assert_eq!(r, Some(a("2001:db8:7::53").octets().to_vec()), "the link's DNS, not eth1's");
    let reply = reply_of(&mut e, &store, &request(2).na(1, &[]), &relayed);
    assert!(reply.codes.contains(&100), "{:?}", reply.codes);
    assert!(e.link_service("eth1", relayed.relay.as_ref()).is_some());
    assert!(e.link_service("eth1", None).is_none());
    // eth1 (direct): its own options, no raw 100.
    let direct = reply_of(&mut e, &store, &request(3).na(1, &[]), &ctx());
    assert!(direct.codes.contains(&opt::DNS_SERVERS) && !direct.codes.contains(&100));
    // The User Class filter of the link drops the relayed client; eth1 has none.
    let iptv = [0, 4, b'i', b'p', b't', b'v'];
    let out = run(&mut e, &store, &request(4).na(1, &[]).opt(opt::USER_CLASS, &iptv), &relayed, NOW).1;
    assert_eq!((out.reply.is_none(), out.discard), (true, Some(Counter::DropUserClass)));
    assert!(out.ops.is_empty());
    assert!(run(&mut e, &store, &request(4).na(1, &[]).opt(opt::USER_CLASS, &iptv), &ctx(), NOW).0.is_some());
    let classes = [b"iptv".to_vec()];
    let filtered = ClientContext { ignore_user_classes: &classes, ..ctx() };
    let out = run(&mut e, &store, &solicit(5).na(1, &[]).opt(opt::USER_CLASS, &iptv), &filtered, NOW).1;
    assert_eq!(out.discard, Some(Counter::DropUserClass));
}

fn reply_of(e: &mut Engine, store: &MemoryStore, m: &Msg, c: &ClientContext) -> Decoded {
    run(e, store, m, c, NOW).0.expect("a reply")
}

/// Handles a message as while the store cannot write.
fn run_store_down(e: &mut Engine, m: &Msg, now: u64) -> (Option<Decoded>, Outcome) {
    let mut out = e.handle_store_down(&Message::parse(&m.0).unwrap(), &ctx(), now);
    assert!(out.ops.is_empty(), "nothing to write while the store is down");
    (out.reply.take().map(|r| decode(&r)), out)
}

#[test]
fn with_the_store_down_solicit_and_request_are_refused_and_nothing_is_bound() {
    let rapid = LinkPools { rapid_commit: true, ..link() };
    let mut e = engine(vec![rapid]);
    let (adv, _) = run_store_down(&mut e, &solicit(1).na(1, &[]).pd(2, &[]).opt(opt::RAPID_COMMIT, &[]), NOW);
    let adv = adv.expect("an Advertise");
    assert_eq!(adv.msg_type, msg::ADVERTISE, "no Rapid Commit Reply while nothing can be stored");
    assert_eq!(adv.status, Some(status::NO_ADDRS_AVAIL));
    assert!(adv.ias.iter().all(|ia| ia.leases.is_empty()), "nothing offered: {:?}", adv.ias);
    assert_eq!(
        adv.ias.iter().map(|ia| ia.status).collect::<Vec<_>>(),
        [Some(status::NO_ADDRS_AVAIL), Some(status::NO_PREFIX_AVAIL)]
    );

    let (rep, _) = run_store_down(&mut e, &request(1).na(1, &[]).pd(2, &[]), NOW);
    let rep = rep.expect("a Reply");
    assert_eq!(rep.msg_type, msg::REPLY);
    assert!(rep.ias.iter().all(|ia| ia.leases.is_empty()), "{:?}", rep.ias);
    assert_eq!(
        rep.ias.iter().map(|ia| ia.status).collect::<Vec<_>>(),
        [Some(status::NO_ADDRS_AVAIL), Some(status::NO_PREFIX_AVAIL)]
    );
    assert_eq!(e.lease_count(), 0);
    // Prefix-only clients (RFC 3633) find NoPrefixAvail at the top.
    let (adv, _) = run_store_down(&mut e, &solicit(2).pd(2, &[]), NOW);
    assert_eq!(adv.unwrap().status, Some(status::NO_PREFIX_AVAIL));
    // The identifier rules still hold.
    let (r, out) = run_store_down(&mut e, &Msg::new(msg::REQUEST).cid(&client(1)).na(1, &[]), NOW);
    assert!(r.is_none());
    assert_eq!(out.discard, Some(Counter::DropMissingServerId));
}

#[test]
fn with_the_store_down_a_renew_or_release_that_needs_a_write_is_dropped_and_changes_nothing() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let got = addr_of(&reply(&mut e, &store, &request(1).na(1, &[])));
    let stored = store.load_all().unwrap();
    let later = NOW + 1800;
    for m in [
        Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&got.to_string()]),
        Msg::new(msg::REBIND).cid(&client(1)).na(1, &[&got.to_string()]),
        Msg::new(msg::RELEASE).cid(&client(1)).sid().na(1, &[&got.to_string()]),
        Msg::new(msg::DECLINE).cid(&client(1)).sid().na(1, &[&got.to_string()]),
        // A Rebind naming a free address of ours would bind it: not now.
        Msg::new(msg::REBIND).cid(&client(2)).na(1, &["2001:db8:1::1ab"]),
    ] {
        let (r, out) = run_store_down(&mut e, &m, later);
        assert!(r.is_none(), "no reply naming a lifetime the store does not have");
        assert_eq!(out.discard, Some(Counter::DropStoreDown));
    }
    // The engine holds what the store holds, unchanged.
    assert_eq!(e.leases().cloned().collect::<Vec<_>>(), stored);
    // Nothing to write (an IA we know nothing of): answered.
    let (r, _) = run_store_down(&mut e, &Msg::new(msg::RENEW).cid(&client(3)).sid().na(7, &[]), later);
    assert_eq!(r.unwrap().ias[0].status, Some(status::NO_BINDING));
    // Back up: the same Renew extends as usual.
    let r = reply(&mut e, &store, &Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&got.to_string()]));
    assert_eq!(r.ias[0].leases, vec![(got, 128, 3600, 7200)]);
}

/// Leases `duid` holds on the engine's links, bound or declined.
fn held(e: &Engine, duid: &[u8], state: LeaseState) -> usize {
    e.leases().filter(|l| l.duid == duid && l.state == state).count()
}

/// A Request with IA_NAs `first..first + 16`, each asking for a new address.
fn sixteen_new_ias(n: u32, first: u32) -> Msg {
    (first..first + 16).fold(request(n), |m, iaid| m.na(iaid, &[]))
}

/// Finding 2: one DUID sending Requests of 16 new IAIDs, again and again, bound without end
/// (954 leases for one flooding MAC). It stops at the link's limit; what it holds stays
/// renewable, and other clients are served.
#[test]
fn new_iaids_from_one_duid_stop_at_the_limit() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let limit = link().limits.per_client as usize;
    let mut refused = 0;
    for round in 0..10 {
        let (r, out) = run(&mut e, &store, &sixteen_new_ias(1, round * 16), &ctx(), NOW);
        let r = r.unwrap();
        for ia in &r.ias {
            match ia.status {
                None => assert_eq!(ia.leases.len(), 1),
                Some(s) => {
                    assert_eq!(s, status::NO_ADDRS_AVAIL, "past the limit, inside the IA");
                    assert!(ia.leases.is_empty());
                    refused += 1;
                }
            }
        }
        assert_eq!(out.events.iter().filter(|c| **c == Counter::LimitLeasesPerClient).count(), out.events.len());
        assert_eq!(out.events.len(), r.ias.iter().filter(|i| i.status.is_some()).count(), "one counter per refused IA");
    }
    assert_eq!(held(&e, &client(1), LeaseState::Bound), limit, "the DUID holds its limit, no more");
    assert_eq!(refused, 160 - limit);
    assert_eq!(store.load_all().unwrap().len(), limit);

    // A Solicit counts its own offers: of 16 new IAs of a fresh DUID, `limit` are offered.
    let mut solicit = solicit(2);
    for iaid in 0..16 {
        solicit = solicit.na(iaid, &[]);
    }
    let (r, out) = run(&mut e, &store, &solicit, &ctx(), NOW);
    let offered = r.unwrap().ias.iter().filter(|i| !i.leases.is_empty()).count();
    assert_eq!((offered, out.events.len()), (limit, 16 - limit));

    // Held leases are renewed. A Renew adding a new IA past the limit gets NoBinding (what
    // a Renew for a binding we cannot make gets: the client then Requests it and is told
    // NoAddrsAvail), and the limit is counted.
    let mine: Vec<Lease> = e.leases().filter(|l| l.duid == client(1)).cloned().collect();
    let renew = mine
        .iter()
        .fold(Msg::new(msg::RENEW).cid(&client(1)).sid(), |m, l| m.na(l.iaid, &[&l.addr.to_string()]))
        .na(999, &[]);
    let (r, out) = run(&mut e, &store, &renew, &ctx(), NOW + 100);
    let r = r.unwrap();
    for (ia, l) in r.ias.iter().zip(&mine) {
        assert_eq!(ia.leases, vec![(l.addr, 128, 3600, 7200)], "IA {} renewed", l.iaid);
    }
    assert_eq!(r.ias.last().unwrap().status, Some(status::NO_BINDING));
    assert_eq!(out.events, vec![Counter::LimitLeasesPerClient]);
    // Another client on the link is not affected.
    assert!(reply(&mut e, &store, &request(3).na(1, &[]).pd(2, &[])).ias.iter().all(|i| i.status.is_none()));

    // Once its leases expire, the counts follow: the DUID may bind again.
    e.expire(NOW + 100 + 7200);
    assert_eq!(held(&e, &client(1), LeaseState::Bound), 0);
    let r = reply(&mut e, &store, &sixteen_new_ias(1, 5000));
    assert_eq!(r.ias.iter().filter(|i| i.status.is_none()).count(), limit);
}

/// The per-MAC limit: many DUIDs from one host (the flood of the issue: 10,000 DUIDs from
/// one MAC) bind at most `per_mac` leases; another host on the link is still served, and so
/// are relayed clients told apart by their Client Link-Layer Address.
#[test]
fn many_duids_from_one_mac_stop_at_the_limit() {
    let mut e = engine(vec![LinkPools { limits: ClientLimits::default(), ..link() }]);
    let store = MemoryStore::new();
    let flooder = ClientContext { peer: a("fe80::200:ff:fe00:1"), ..ctx() };
    let mut granted = 0;
    let mut limited = 0;
    for n in 0..100 {
        let (r, out) = run(&mut e, &store, &request(n).na(1, &[]), &flooder, NOW);
        match r.unwrap().ias[0].status {
            None => granted += 1,
            Some(s) => {
                assert_eq!(s, status::NO_ADDRS_AVAIL);
                assert_eq!(out.events, vec![Counter::LimitLeasesPerMac]);
                limited += 1;
            }
        }
    }
    assert_eq!((granted, limited), (8, 92));
    // The same MAC behind a global EUI-64 address is the same host.
    let global = ClientContext { peer: a("2001:db8:1::200:ff:fe00:1"), ..ctx() };
    assert_eq!(
        run(&mut e, &store, &request(500).na(1, &[]), &global, NOW).0.unwrap().ias[0].status,
        Some(status::NO_ADDRS_AVAIL)
    );
    let neighbour = ClientContext { peer: a("fe80::200:ff:fe00:2"), ..ctx() };
    let (r, _) = run(&mut e, &store, &request(1000).na(1, &[]).pd(2, &[]), &neighbour, NOW);
    assert!(r.unwrap().ias.iter().all(|i| i.status.is_none() && i.leases.len() == 1));

    // Relayed: by the relay's Client Link-Layer Address, not by the relay's address.
    let mac = |m: u8| vec![0, 1, 2, 0, 0, 0, 1, m];
    let (one, two) = (mac(1), mac(2));
    let relayed = |cll: &'static [u8]| ClientContext {
        peer: a("2001:db8:1::1"),
        relay: Some(LinkSelector { interface_id: Some(b"eth1"), client_linklayer: Some(cll), ..Default::default() }),
        ..ctx()
    };
    let (one, two): (&'static [u8], &'static [u8]) = (one.leak(), two.leak());
    let mut got = [0, 0];
    for n in 0..20 {
        for (i, cll) in [one, two].into_iter().enumerate() {
            let (r, _) = run(&mut e, &store, &request(2000 + 2 * n + i as u32).na(1, &[]), &relayed(cll), NOW);
            got[i] += usize::from(r.unwrap().ias[0].status.is_none());
        }
    }
    assert_eq!(got, [8, 8], "each relayed MAC up to the limit");
}

/// Finding 3: Request then Decline, repeated, emptied a pool (each declined address held a
/// day). Declines held per client and per link are capped; past the cap the address is
/// freed, so the pool keeps addresses for everybody else.
#[test]
fn request_and_decline_repeated_does_not_empty_the_pool() {
    let eight = LinkPools { na: vec!["2001:db8:1::100-2001:db8:1::107".parse().unwrap()], ..link() };
    let mut e = engine(vec![eight.clone()]);
    let store = MemoryStore::new();
    let mut limited = 0;
    for iaid in 0..50 {
        let r = reply(&mut e, &store, &request(1).na(iaid, &[]));
        let Some(&(got, ..)) = r.ias[0].leases.first() else { panic!("round {iaid}: no address: {r:?}") };
        let decline = Msg::new(msg::DECLINE).cid(&client(1)).sid().na(iaid, &[&got.to_string()]);
        let (r, out) = run(&mut e, &store, &decline, &ctx(), NOW);
        assert_eq!(r.unwrap().status, Some(status::SUCCESS));
        limited += out.events.iter().filter(|c| **c == Counter::LimitDeclined).count();
    }
    let cap = eight.limits.declined_per_client as usize;
    assert_eq!(held(&e, &client(1), LeaseState::Declined), cap);
    assert_eq!(limited, 50 - cap);
    let stored = store.load_all().unwrap();
    assert_eq!(stored.iter().filter(|l| l.state == LeaseState::Declined).count(), cap, "the store agrees");
    // Another client still gets an address.
    assert_eq!(reply(&mut e, &store, &request(2).na(1, &[])).ias[0].status, None);

    // Many DUIDs declining once each: the link holds at most its cap.
    let capped = LinkPools { limits: ClientLimits { declined_per_link: 3, ..eight.limits }, ..eight };
    let mut e = engine(vec![capped]);
    for n in 10..30 {
        let r = reply(&mut e, &store, &request(n).na(1, &[]));
        let got = addr_of(&r);
        reply(&mut e, &store, &Msg::new(msg::DECLINE).cid(&client(n)).sid().na(1, &[&got.to_string()]));
    }
    assert_eq!(e.leases().filter(|l| l.state == LeaseState::Declined).count(), 3);
    assert_eq!(reply(&mut e, &store, &request(99).na(1, &[])).ias[0].status, None, "five addresses left");
}

/// The stuck `dhclient -P`: a lease file with an IA_NA lease (a CPE switched to prefix
/// delegation) makes it Rebind with an empty IA_PD, which was dropped on every
/// retransmission. The IA_PD is bound; the old address, from another link, is zeroed.
#[test]
fn rebind_with_an_empty_ia_pd_gets_a_prefix() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let rebind = Msg::new(msg::REBIND).cid(&client(1)).pd(7, &[]);
    let (r, out) = run(&mut e, &store, &rebind, &ctx(), NOW);
    let r = r.expect("a Reply, not silence");
    assert_eq!(r.ias.len(), 1);
    let (p, len, preferred, valid) = r.ias[0].leases[0];
    assert_eq!((len, preferred, valid), (56, 3600, 7200));
    assert!(matches!(&out.routes[..], [RouteChange::Add { prefix, len: 56, .. }] if *prefix == p));
    assert_eq!(held(&e, &client(1), LeaseState::Bound), 1);

    let rebind = Msg::new(msg::REBIND).cid(&client(2)).na(1, &["2001:db8:99::5"]).pd(7, &[]);
    let r = reply(&mut e, &store, &rebind);
    assert_eq!(r.ias[0].leases.len(), 2, "a new address, and the old one zeroed: {:?}", r.ias[0]);
    assert!(link().na[0].contains(r.ias[0].leases[0].0) && r.ias[0].leases[0].3 == 7200);
    assert_eq!(r.ias[0].leases[1], (a("2001:db8:99::5"), 128, 0, 0));
    assert_eq!(r.ias[1].leases[0].3, 7200);
}

/// A client whose lease we forgot (the lease database is gone) renews: it gets the same
/// address if it is free, another one if not, and the one it named is zeroed.
#[test]
fn renew_for_a_forgotten_ia_na_gets_the_same_address_if_free() {
    let store = MemoryStore::new();
    let mut e = engine(vec![link()]);
    let got = addr_of(&reply(&mut e, &store, &request(1).na(1, &[]).pd(2, &[])));
    let mut forgetful = engine(vec![link()]);
    let renew = Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&got.to_string()]).pd(2, &[]);
    let (r, out) = run(&mut forgetful, &store, &renew, &ctx(), NOW + 1800);
    let r = r.unwrap();
    assert_eq!(r.ias[0].leases, vec![(got, 128, 3600, 7200)]);
    assert_eq!(r.ias[1].leases.len(), 1);
    assert_eq!(out.ops.len(), 2, "both bound and stored");

    // Forgotten again, and meanwhile someone else took the address: another one.
    let mut forgetful = engine(vec![link()]);
    reply(&mut forgetful, &store, &request(2).na(1, &[&got.to_string()]));
    let renew = Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&got.to_string()]);
    let r = reply(&mut forgetful, &store, &renew);
    let leases = &r.ias[0].leases;
    assert_eq!(leases.len(), 2);
    assert!(leases[0].0 != got && leases[0].3 == 7200 && link().na[0].contains(leases[0].0));
    assert_eq!(leases[1], (got, 128, 0, 0));

    // With the link set not to create bindings: NoBinding, as before.
    let mut strict = engine(vec![LinkPools { create_on_renew: false, ..link() }]);
    let r = reply(&mut strict, &store, &renew);
    assert_eq!(r.ias[0].status, Some(status::NO_BINDING));
}

/// What the limits count follows rollbacks: an undone Request gives its place back.
#[test]
fn limits_count_what_a_rollback_left() {
    let one = LinkPools { limits: ClientLimits { per_client: 1, ..link().limits }, ..link() };
    let mut e = engine(vec![one]);
    let out = e.handle(&Message::parse(&request(1).na(1, &[]).0).unwrap(), &ctx(), NOW);
    assert_eq!(out.ops.len(), 1);
    e.rollback(out.undo);
    let store = MemoryStore::new();
    let r = reply(&mut e, &store, &request(1).na(2, &[]));
    assert_eq!(r.ias[0].status, None, "the rolled-back lease does not count");
    let r = reply(&mut e, &store, &request(1).na(3, &[]));
    assert_eq!(r.ias[0].status, Some(status::NO_ADDRS_AVAIL));
}

/// A reload (SIGHUP) keeps what the engine knows of its clients: the per-MAC count survives,
/// although the store has no column for it.
#[test]
fn a_reload_keeps_the_per_mac_counts() {
    let links = vec![LinkPools { limits: ClientLimits::default(), ..link() }];
    let mut e = engine(links.clone());
    let store = MemoryStore::new();
    let host = ClientContext { peer: a("fe80::200:ff:fe00:1"), ..ctx() };
    for n in 0..8 {
        assert_eq!(run(&mut e, &store, &request(n).na(1, &[]), &host, NOW).0.unwrap().ias[0].status, None);
    }
    e.reconfigure(links, NOW).unwrap();
    assert_eq!(e.lease_count(), 8);
    let (r, out) = run(&mut e, &store, &request(100).na(1, &[]), &host, NOW);
    assert_eq!(r.unwrap().ias[0].status, Some(status::NO_ADDRS_AVAIL));
    assert_eq!(out.events, vec![Counter::LimitLeasesPerMac]);
    // A refused configuration changes nothing.
    let bad = vec![link(), link()];
    assert!(e.reconfigure(bad, NOW).is_err());
    assert_eq!(e.lease_count(), 8);
    assert_eq!(run(&mut e, &store, &request(101).na(1, &[]), &host, NOW).1.events, vec![Counter::LimitLeasesPerMac]);
}

/// Two servers sharing a store: what one grants, the other learns (`Engine::learn`), so it
/// offers it to nobody else and answers the client's Rebind with the same bindings (and a
/// route to the prefix through itself) when the first one is gone.
#[test]
fn a_learned_binding_is_not_offered_and_its_rebind_is_answered_with_it() {
    use crate::leases::ForeignChange;
    let small = || LinkPools {
        na: vec!["2001:db8:1::100-2001:db8:1::101".parse().unwrap()],
        pd: vec!["2001:db8:100::/55:56".parse().unwrap()],
        ..LinkPools::new("eth1")
    };
    let (mut box_a, mut box_b) = (engine(vec![small()]), engine(vec![small()]));
    let store = MemoryStore::new();
    let (r, out) = run(&mut box_a, &store, &request(1).na(1, &[]).pd(2, &[]), &ctx(), NOW);
    let r = r.unwrap();
    let (addr, pfx) = (r.ias[0].leases[0].0, r.ias[1].leases[0].0);
    for op in out.ops {
        let LeaseOp::Upsert(lease) = op else { panic!("a grant upserts") };
        box_b.learn(ForeignChange::Upsert(lease), NOW);
    }
    assert_eq!(box_b.lease_count(), 2);

    // Client 2 at box B gets the other address and prefix, whatever its seed picks first.
    let r = reply(&mut box_b, &store, &request(2).na(1, &[]).pd(2, &[]));
    assert_ne!(r.ias[0].leases[0].0, addr);
    assert_ne!(r.ias[1].leases[0].0, pfx);
    // The pools are full now: client 3 gets NoAddrsAvail rather than a binding of client 1.
    let r = reply(&mut box_b, &store, &request(3).na(1, &[]));
    assert_eq!(r.ias[0].status, Some(status::NO_ADDRS_AVAIL));

    // Box A is gone; client 1 rebinds (no Server ID) and box B extends the same bindings,
    // routing the prefix through itself.
    let rebind = Msg::new(msg::REBIND).cid(&client(1)).na(1, &[]).pd(2, &[]);
    let (r, out) = run(&mut box_b, &store, &rebind, &ctx(), NOW + 100);
    let r = r.unwrap();
    assert_eq!(r.ias[0].leases, vec![(addr, 128, 3600, 7200)]);
    assert_eq!(r.ias[1].leases, vec![(pfx, 56, 3600, 7200)]);
    assert!(
        out.routes.iter().any(
            |c| matches!(c, RouteChange::Add { prefix, len: 56, via, .. } if *prefix == pfx && *via == a("fe80::2"))
        ),
        "{:?}",
        out.routes
    );

    // A deletion box A made of the old row does not take away what box B extended since;
    // one of the current row does.
    let key = crate::leases::LeaseKey { kind: LeaseKind::Address, addr, prefix_len: 128 };
    box_b.learn(ForeignChange::Remove { key, valid_until: NOW + 7200 }, NOW + 100);
    assert!(box_b.leases().any(|l| l.addr == addr), "extended here since");
    box_b.learn(ForeignChange::Remove { key, valid_until: NOW + 100 + 7200 }, NOW + 100);
    assert!(!box_b.leases().any(|l| l.addr == addr));
    // An expired binding is not learned.
    let mut old = store.load_all().unwrap().into_iter().find(|l| l.addr == addr).unwrap();
    old.valid_until = NOW;
    old.preferred_until = NOW;
    box_b.learn(ForeignChange::Upsert(old), NOW + 100);
    assert!(!box_b.leases().any(|l| l.addr == addr));
}

/// The lease events of one message, handled and committed at `now` (as the daemon derives
/// them once the commit is durable).
fn events_of(e: &mut Engine, store: &MemoryStore, m: &Msg, c: &ClientContext, now: u64) -> Vec<LeaseEvent> {
    let (_, out) = run(e, store, m, c, now);
    let t = Message::parse(&m.0).unwrap().msg_type();
    out.undo.into_events(t, &Requester::new(c.peer, c.relay.as_ref()), now)
}

/// (kind, address, (preferred, valid)) of each event.
fn kinds(ev: &[LeaseEvent]) -> Vec<(EventKind, Ipv6Addr, (u64, u64))> {
    ev.iter().map(|e| (e.kind, e.lease.addr, e.lifetimes())).collect()
}

#[test]
fn lease_events_say_grant_renew_rebind_release_decline_expire_and_reclaim() {
    let mut e = engine(vec![LinkPools { decline_hold: 600, ..link() }]);
    let store = MemoryStore::new();
    let granted = events_of(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]), &ctx(), NOW);
    assert_eq!(granted.len(), 2);
    let (na, pd) = (granted[0].lease.clone(), granted[1].lease.clone());
    assert_eq!((na.kind, pd.kind), (LeaseKind::Address, LeaseKind::Prefix));
    assert_eq!(kinds(&granted), [(EventKind::Grant, na.addr, (3600, 7200)), (EventKind::Grant, pd.addr, (3600, 7200))]);
    for ev in &granted {
        assert_eq!(
            (ev.origin, ev.at, &ev.lease.duid[..], ev.lease.iface.as_str()),
            (Origin::Client, NOW, &client(1)[..], "eth1")
        );
        assert_eq!(ev.requester, Requester { peer: Some(a("fe80::2")), relay: None });
    }
    assert_eq!((granted[0].lease.iaid, granted[1].lease.iaid), (1, 2));

    // The same Request again: a renew of both.
    let again = events_of(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]), &ctx(), NOW);
    assert_eq!(kinds(&again).iter().map(|k| k.0).collect::<Vec<_>>(), [EventKind::Renew; 2]);

    // Renew later: renew, with the lifetimes the Reply gives from then on.
    let later = NOW + 1800;
    let renew = Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&na.addr.to_string()]);
    assert_eq!(kinds(&events_of(&mut e, &store, &renew, &ctx(), later)), [(EventKind::Renew, na.addr, (3600, 7200))]);
    let rebind = Msg::new(msg::REBIND).cid(&client(1)).na(1, &[&na.addr.to_string()]);
    let ev = events_of(&mut e, &store, &rebind, &ctx(), later + 10);
    assert_eq!(kinds(&ev), [(EventKind::Rebind, na.addr, (3600, 7200))]);
    assert_eq!(ev[0].lease.valid_until, later + 10 + 7200);

    // Release of the prefix: the lease as it was, no lifetimes left.
    let release = Msg::new(msg::RELEASE).cid(&client(1)).sid().pd(2, &[(&pd.addr.to_string(), pd.prefix_len)]);
    let ev = events_of(&mut e, &store, &release, &ctx(), later);
    assert_eq!(kinds(&ev), [(EventKind::Release, pd.addr, (0, 0))]);
    assert_eq!((ev[0].lease.iaid, ev[0].lease.prefix_len), (2, pd.prefix_len));

    // Decline of the address: held back; the sweep reclaims it once the hold is over.
    let decline = Msg::new(msg::DECLINE).cid(&client(1)).sid().na(1, &[&na.addr.to_string()]);
    let ev = events_of(&mut e, &store, &decline, &ctx(), later);
    assert_eq!(kinds(&ev), [(EventKind::Decline, na.addr, (0, 0))]);
    assert_eq!(ev[0].lease.state, LeaseState::Declined);
    let swept = e.expire(later + 600);
    let ev = swept.events(later + 600);
    assert_eq!(kinds(&ev), [(EventKind::Reclaim, na.addr, (0, 0))]);
    assert_eq!((ev[0].origin, &ev[0].requester), (Origin::Server, &Requester::default()));

    // A bound lease whose valid lifetime ran out: expire.
    let g = events_of(&mut e, &store, &request(2).na(1, &[]), &ctx(), NOW);
    let ev = e.expire(NOW + 7200).events(NOW + 7200);
    assert_eq!(kinds(&ev), [(EventKind::Expire, g[0].lease.addr, (0, 0))]);
    assert_eq!(ev[0].lease.duid, client(2));
}

#[test]
fn lease_events_of_a_renew_that_binds_anew_or_moves_the_client() {
    // create_on_renew: a Renew for an IA the server lost is a grant.
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let renew = Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &["2001:db8:1::123"]);
    assert_eq!(
        kinds(&events_of(&mut e, &store, &renew, &ctx(), NOW)),
        [(EventKind::Grant, a("2001:db8:1::123"), (3600, 7200))]
    );

    // A reservation added since: the old lease is reclaimed, the reserved one granted.
    let res = Reservation {
        duid: Some(Duid::new(&client(1)).unwrap()),
        address: Some(a("2001:db8:1::1ee")),
        ..Default::default()
    };
    let mut e =
        Engine::new(vec![LinkPools { reservations: vec![res], ..link() }], store.load_all().unwrap(), NOW).unwrap();
    let mut ev = kinds(&events_of(&mut e, &store, &renew, &ctx(), NOW));
    ev.sort_by_key(|k| k.1);
    assert_eq!(
        ev,
        [(EventKind::Reclaim, a("2001:db8:1::123"), (0, 0)), (EventKind::Grant, a("2001:db8:1::1ee"), (3600, 7200))]
    );
}

#[test]
fn lease_events_of_a_relayed_client_carry_the_relay_identities() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let cll = [0, 1, 0x02, 0, 0, 0, 0, 0x42];
    let mut c = ctx();
    c.peer = a("2001:db8:1::2");
    c.relay = Some(LinkSelector {
        link_address: Some(a("2001:db8:1::1")),
        interface_id: Some(b"port7"),
        remote_id: Some(&[0, 0, 0, 9, b'r']),
        subscriber_id: Some(b"sub-1"),
        client_linklayer: Some(&cll),
        peer_address: None,
        relay_id: None,
    });
    let ev = events_of(&mut e, &store, &request(1).na(1, &[]), &c, NOW);
    assert_eq!(ev.len(), 1);
    let want = RelayIds {
        link_address: Some(a("2001:db8:1::1")),
        interface_id: Some(b"port7".to_vec()),
        remote_id: Some(vec![0, 0, 0, 9, b'r']),
        subscriber_id: Some(b"sub-1".to_vec()),
        client_mac: Some([0x02, 0, 0, 0, 0, 0x42]),
    };
    assert_eq!(ev[0].requester, Requester { peer: Some(a("2001:db8:1::2")), relay: Some(want) });

    // Nothing changed (an Advertise), nothing to tell; a failed decision has no events either.
    let (_, out) = run(&mut e, &store, &solicit(3).na(1, &[]), &c, NOW);
    assert!(out.undo.into_events(msg::SOLICIT, &Requester::default(), NOW).is_empty());
}

#[test]
fn an_operator_release_is_a_release_by_the_operator() {
    let mut e = engine(vec![link()]);
    let store = MemoryStore::new();
    let g = events_of(&mut e, &store, &request(1).na(1, &[]), &ctx(), NOW);
    let (lease, _) = e.release_lease(&g[0].lease.key()).unwrap();
    let ev = LeaseEvent::operator_release(lease, NOW + 5);
    assert_eq!(
        (ev.kind, ev.origin, ev.lifetimes(), ev.lease.addr),
        (EventKind::Release, Origin::Operator, (0, 0), g[0].lease.addr)
    );
}

/// What leasequery answers from: a relayed grant keeps what the relays said and when, a
/// renewal on the link drops the record, and a lease on the link never had one.
#[test]
fn leases_keep_their_relay_identities_and_last_transaction() {
    let store = MemoryStore::new();
    let mut e = engine(vec![link()]);
    let mut c = ctx();
    c.peer = a("2001:db8:1::2");
    c.relay = Some(LinkSelector {
        link_address: Some(a("2001:db8:1::1")),
        interface_id: Some(b"port-1"),
        remote_id: Some(&[0, 0, 0x0d, 0xe9, b'l']),
        subscriber_id: Some(b"sub"),
        client_linklayer: Some(&[0, 1, 2, 0, 0, 0, 0, 7]),
        peer_address: Some(a("fe80::7")),
        relay_id: Some(&[0, 2, 0, 0, 0x0d, 0xe9, b'r']),
    });
    run(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]), &c, NOW).0.unwrap();
    let stored = store.load_all().unwrap();
    assert_eq!(stored.len(), 2);
    for l in &stored {
        assert_eq!(l.last_transaction, NOW);
        let r = l.relay.as_deref().expect("relayed");
        assert_eq!((r.link_address, r.peer_address, r.source), (a("2001:db8:1::1"), a("fe80::7"), a("2001:db8:1::2")));
        assert_eq!(r.interface_id.as_deref(), Some(&b"port-1"[..]));
        assert_eq!(r.remote_id.as_deref(), Some(&[0, 0, 0x0d, 0xe9, b'l'][..]));
        assert_eq!(r.subscriber_id.as_deref(), Some(&b"sub"[..]));
        assert_eq!(r.relay_id.as_deref(), Some(&[0, 2, 0, 0, 0x0d, 0xe9, b'r'][..]));
        assert_eq!(r.client_linklayer.as_deref(), Some(&[0, 1, 2, 0, 0, 0, 0, 7][..]));
    }
    let addr = stored.iter().find(|l| l.kind == LeaseKind::Address).unwrap().addr;
    let renew = Msg::new(msg::RENEW).cid(&client(1)).sid().na(1, &[&addr.to_string()]);
    run(&mut e, &store, &renew, &ctx(), NOW + 100).0.unwrap();
    let renewed = store.load_all().unwrap().into_iter().find(|l| l.addr == addr).unwrap();
    assert_eq!((renewed.last_transaction, renewed.relay), (NOW + 100, None));
}

/// Events no message caused (an operator's release, expiry) carry what the store kept of the
/// lease's relays, so an expire line names the same Interface-ID and Remote-ID as the grant.
#[test]
fn server_and_operator_events_carry_the_stored_relay_identities() {
    let store = MemoryStore::new();
    let mut e = engine(vec![link()]);
    let mut c = ctx();
    c.peer = a("2001:db8:1::2");
    c.relay = Some(LinkSelector {
        link_address: Some(a("2001:db8:1::1")),
        interface_id: Some(b"port-9"),
        remote_id: Some(&[0, 0, 0x0d, 0xe9, b'x']),
        subscriber_id: None,
        client_linklayer: Some(&[0, 1, 2, 0, 0, 0, 0, 9]),
        peer_address: Some(a("fe80::9")),
        relay_id: None,
    });
    let g = events_of(&mut e, &store, &request(1).na(1, &[]), &c, NOW);
    let stored = store.load_all().unwrap().into_iter().find(|l| l.addr == g[0].lease.addr).unwrap();
    let want = Requester {
        peer: Some(a("fe80::9")),
        relay: Some(RelayIds {
            link_address: Some(a("2001:db8:1::1")),
            interface_id: Some(b"port-9".to_vec()),
            remote_id: Some(vec![0, 0, 0x0d, 0xe9, b'x']),
            subscriber_id: None,
            client_mac: Some([2, 0, 0, 0, 0, 9]),
        }),
    };
    assert_eq!(LeaseEvent::ended(stored.clone(), NOW + 9000).requester, want);
    assert_eq!(LeaseEvent::operator_release(stored, NOW + 5).requester, want);
}

mod pre_extension {
    use super::*;

    const WINDOW: u32 = 3600;
    const MARGIN: u32 = 10;

    fn policy(fast: &dyn Fn(&str) -> bool) -> PreExtendPolicy<'_> {
        PreExtendPolicy { window: WINDOW, margin: MARGIN, fast_link: fast }
    }

    fn all_keys(e: &Engine) -> Vec<crate::leases::LeaseKey> {
        let mut k = e.direct_bound_keys();
        k.sort();
        k
    }

    /// A batch extends every bound direct lease to cover a Reply sent at the window's end,
    /// in one set of ops, and memory holds what it will commit.
    #[test]
    fn a_batch_covers_the_window_and_memory_holds_it() {
        let mut e = engine(vec![link()]);
        let store = MemoryStore::new();
        reply(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]));
        let fast = |l: &str| l == "eth1";
        let keys = all_keys(&e);
        assert_eq!(keys.len(), 2);
        let out = e.pre_extend(&keys, &policy(&fast), NOW + 5);
        assert_eq!(out.ops.len(), 2, "one upsert per lease, in one commit");
        let lt = Lifetimes::default();
        for r in &out.renewable {
            assert_eq!(r.answer_until, NOW + u64::from(WINDOW));
            assert_eq!(r.lifetimes, lt);
            assert_eq!(r.lease.valid_until, NOW + u64::from(WINDOW) + u64::from(lt.valid) + u64::from(MARGIN));
            assert!(r.lease.preferred_until <= r.lease.valid_until);
            assert!(r.extended);
            assert!(e.holds(&r.lease));
            assert_eq!(r.lease.last_transaction, NOW, "a batch is no client transaction");
        }
        store.commit(out.ops).wait_blocking().unwrap();
        // A second batch finds them long enough: rewritten as they are, not moved.
        let again = e.pre_extend(&keys, &policy(&fast), NOW + 6);
        assert!(again.renewable.iter().all(|r| !r.extended));
        assert_eq!(
            again.renewable.iter().map(|r| &r.lease).collect::<Vec<_>>(),
            out.renewable.iter().map(|r| &r.lease).collect::<Vec<_>>()
        );
    }

    /// A failed batch commit leaves memory as it was.
    #[test]
    fn rollback_undoes_a_batch() {
        let mut e = engine(vec![link()]);
        let store = MemoryStore::new();
        reply(&mut e, &store, &request(1).na(1, &[]));
        let before: Vec<Lease> = e.leases().cloned().collect();
        let fast = |_: &str| true;
        let out = e.pre_extend(&all_keys(&e), &policy(&fast), NOW);
        assert_eq!(out.renewable.len(), 1);
        e.rollback(out.undo);
        assert_eq!(e.leases().cloned().collect::<Vec<_>>(), before);
        assert!(!e.holds(&out.renewable[0].lease));
    }

    /// What XDP must not answer is left out: links it does not serve, windows nearly over,
    /// leases of no client transaction, declined leases, relayed clients.
    #[test]
    fn leases_xdp_cannot_answer_are_skipped() {
        let mut e = engine(vec![link()]);
        let store = MemoryStore::new();
        reply(&mut e, &store, &request(1).na(1, &[]));
        let keys = all_keys(&e);
        let none = |_: &str| false;
        assert!(e.pre_extend(&keys, &policy(&none), NOW).renewable.is_empty(), "not a fast-path link");
        let fast = |_: &str| true;
        let late = NOW + u64::from(WINDOW) - u64::from(MARGIN);
        assert!(e.pre_extend(&keys, &policy(&fast), late).renewable.is_empty(), "window over");

        // A relayed client's lease, and one without a known transaction.
        let relayed = LinkSelector { interface_id: Some(b"eth1"), ..Default::default() };
        let rctx = ClientContext { relay: Some(relayed), ..ctx() };
        run(&mut e, &store, &request(2).na(1, &[]), &rctx, NOW);
        let mut old = e.leases().find(|l| l.duid == client(1)).unwrap().clone();
        old.last_transaction = 0;
        let mut e =
            Engine::new(vec![link()], e.leases().filter(|&l| l.duid != client(1)).cloned().chain([old]), NOW).unwrap();
        assert_eq!(e.lease_count(), 2);
        assert_eq!(e.direct_bound_keys().len(), 1, "the relayed lease is no candidate at all");
        assert!(e.pre_extend(&all_keys(&e), &policy(&fast), NOW).renewable.is_empty());
        let all: Vec<_> = e.leases().map(Lease::key).collect();
        assert!(e.pre_extend(&all, &policy(&fast), NOW).renewable.is_empty());
    }

    /// A lease whose client has a reservation elsewhere would move at its next Renew: no entry.
    #[test]
    fn a_lease_the_next_renew_would_move_is_skipped() {
        let mut e = engine(vec![link()]);
        let store = MemoryStore::new();
        reply(&mut e, &store, &request(1).na(1, &[]));
        let held = e.leases().next().unwrap().addr;
        let other = if held == a("2001:db8:1::1f0") { a("2001:db8:1::1f1") } else { a("2001:db8:1::1f0") };
        let mut l = link();
        l.reservations = vec![Reservation {
            duid: Some(Duid::new(&client(1)).unwrap()),
            address: Some(other),
            ..Default::default()
        }];
        e.reconfigure(vec![l], NOW).unwrap();
        let fast = |_: &str| true;
        assert!(e.pre_extend(&all_keys(&e), &policy(&fast), NOW).renewable.is_empty());
    }
}

/// The XDP Renew path answers with `fast_renew::entry`'s IA bytes: they must be, byte for
/// byte, the IAs of the engine's own Reply to a Renew of the leases the store holds, and in
/// the Renew's order.
#[test]
fn fast_renew_entries_hold_the_engines_renew_ias() {
    let lt = Lifetimes { preferred: 3000, valid: 6000, t1: 1500, t2: 2400 };
    let mut e = engine(vec![LinkPools { lifetimes: lt, ..link() }]);
    let store = MemoryStore::new();
    reply(&mut e, &store, &request(1).na(1, &[]).pd(2, &[]));
    let stored = store.load_all().unwrap();
    assert_eq!(stored.len(), 2);
    let na = stored.iter().find(|l| l.kind == LeaseKind::Address).unwrap();
    let pd = stored.iter().find(|l| l.kind == LeaseKind::Prefix).unwrap();
    // Prefix first: the Reply keeps the Renew's order.
    let renew = Msg::new(msg::RENEW)
        .cid(&client(1))
        .sid()
        .pd(2, &[(&pd.addr.to_string(), pd.prefix_len)])
        .na(1, &[&na.addr.to_string()]);
    let out = e.handle(&Message::parse(&renew.0).unwrap(), &ctx(), NOW + 1500);
    let bytes = out.reply.unwrap();
    let m = Message::parse(&bytes).unwrap();
    let ias: Vec<Vec<u8>> = m
        .options()
        .filter(|o| o.code == opt::IA_NA || o.code == opt::IA_PD)
        .map(|o| encode_option(o.code, o.data))
        .collect();
    assert_eq!(ias, vec![fast_renew::ia_option(pd, &lt), fast_renew::ia_option(na, &lt)]);
    let iface = dhcpv6_common::IfaceKey::untagged(3);
    for l in [na, pd] {
        let (k, entry) = fast_renew::entry(iface, l, &lt, 1).unwrap();
        assert_eq!(&entry.ia[..usize::from(entry.ia_len)], &fast_renew::ia_option(l, &lt)[..]);
        assert_eq!((entry.lease, entry.prefix_len), (l.addr.octets(), l.prefix_len));
        assert_eq!(k, fast_renew::key(iface, &client(1), l.iaid, l.kind).unwrap());
    }
}
