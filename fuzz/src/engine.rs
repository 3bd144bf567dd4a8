//! `engine`: a sequence of client messages from a few DUIDs, built from the fuzz input with
//! `arbitrary`, through `Engine::handle`, committed to a `MemoryStore` as the daemon does
//! (or failed on purpose, then rolled back), with invariants checked after every step:
//!
//! - the discard rules of RFC 9915 section 16 hold: no Client ID, a Server ID on Solicit,
//!   Rebind or Confirm, none (or another server's) on Request, Renew, Release or Decline,
//!   a malformed identifier, a type the engine does not serve: no reply and no lease change;
//! - every grant is durable: after each step the engine's leases are exactly the store's;
//! - no address or prefix is held by two clients (no two leases overlap) and an IA holds
//!   at most one binding of its kind;
//! - a Reply names with a valid lifetime only leases the store now holds for that client
//!   and IA; an Advertise offers nothing someone else holds, and commits nothing;
//! - replies parse, echo the transaction id and Client ID, carry our Server ID, and are
//!   at most 65,535 bytes; lifetimes are the link's.
//!
//! The engine's context is built in one place (`context`), so the change of
//! `ClientContext` from owning to borrowing touches one function.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use arbitrary::Arbitrary;
use dhcpv6_common::wire::{msg, opt, status};
use dhcpv6_proto::leases::{Lease, LeaseKey, LeaseKind, LeaseOp, LeaseState, LeaseStore, MemoryStore};
use dhcpv6_proto::server::relay::LinkSelector;
use dhcpv6_proto::server::stateful::{ClientContext, Engine, Lifetimes, LinkPools, Reservation};
use dhcpv6_proto::server::ConfiguredOption;
use dhcpv6_proto::server::ServiceOptions;
use dhcpv6_proto::wire::{Duid, Message, OptionIter};
use std::sync::LazyLock;

const NOW: u64 = 1_700_000_000;
const CLIENTS: u8 = 4;
const LINK: &str = "eth1";
const PREFERRED: u32 = 300;
const VALID: u32 = 600;
/// A client with a DUID reservation inside the address pool.
const RESERVED_CLIENT: u8 = 3;
const REMOTE_ID: [u8; 5] = [0, 0, 0, 9, 1];

#[derive(Debug, Arbitrary)]
pub struct Script {
    pub steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
pub struct Step {
    client: u8,
    kind: Kind,
    client_id: Identifier,
    server_id: Identifier,
    ias: Vec<Ia>,
    rapid_commit: bool,
    oro: bool,
    /// Relayed, with or without the Remote-ID a reservation matches.
    relayed: Option<bool>,
    unicast: bool,
    commit_fails: bool,
    /// Seconds that pass before the message arrives (modulo an hour).
    wait: u16,
    /// Run `Engine::expire` before the message.
    expire: bool,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Kind {
    Solicit,
    Request,
    Confirm,
    Renew,
    Rebind,
    Release,
    Decline,
    InformationRequest,
    Other(u8),
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Solicit => msg::SOLICIT,
            Kind::Request => msg::REQUEST,
            Kind::Confirm => msg::CONFIRM,
            Kind::Renew => msg::RENEW,
            Kind::Rebind => msg::REBIND,
            Kind::Release => msg::RELEASE,
            Kind::Decline => msg::DECLINE,
            Kind::InformationRequest => msg::INFORMATION_REQUEST,
            Kind::Other(t) => t,
        }
    }
}

/// How a Client or Server Identifier appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
enum Identifier {
    /// The right one (the client's DUID, our DUID).
    Right,
    Absent,
    /// Another valid DUID (another client's, another server's).
    Other,
    Twice,
    /// Two bytes: no DUID is that short.
    Short,
}

#[derive(Debug, Arbitrary)]
struct Ia {
    pd: bool,
    iaid: u8,
    hints: Vec<HintSpec>,
    /// Shorter than the 12-byte IA header: malformed.
    truncated: bool,
}

#[derive(Debug, Arbitrary)]
struct HintSpec {
    slot: u8,
    len: u8,
    off_link: bool,
}

fn server_duid() -> Duid {
    Duid::from_mac([2, 0, 0, 0, 0, 0xaa])
}

fn client_duid(n: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 2, 0, 0, 0, 0x10, n]
}

fn a(s: &str) -> Ipv6Addr {
    s.parse().expect("a fixture address")
}

fn link() -> LinkPools {
    let reserved_duid = Duid::new(&client_duid(RESERVED_CLIENT)).expect("a fixture DUID");
    LinkPools {
        // Small pools, so that a few clients contend for them.
        na: vec!["2001:db8:1::100-2001:db8:1::107".parse().expect("a fixture range")],
        pd: vec!["2001:db8:100::/60:64".parse().expect("a fixture pool")],
        lifetimes: Lifetimes::new(PREFERRED, VALID),
        rapid_commit: true,
        reservations: vec![
            Reservation {
                duid: Some(reserved_duid),
                iaid: None,
                address: Some(a("2001:db8:1::105")),
                prefix: Some((a("2001:db8:100:3::"), 64)),
                remote_id: None,
                subscriber_id: None,
                interface_id: None,
                client_linklayer: None,
            },
            Reservation {
                duid: None,
                iaid: None,
                address: Some(a("2001:db8:1::1:1")),
                prefix: None,
                remote_id: Some(REMOTE_ID.to_vec()),
                subscriber_id: None,
                interface_id: None,
                client_linklayer: None,
            },
        ],
        decline_hold: 900,
        reject_unicast: true,
        ..LinkPools::new(LINK)
    }
}

/// What a context borrows, as the daemon holds it for as long as it serves.
static SERVER_DUID: LazyLock<Duid> = LazyLock::new(server_duid);
static OPTIONS: LazyLock<Vec<ConfiguredOption>> = LazyLock::new(|| {
    ServiceOptions { dns: vec![a("2001:db8::53")], ntp: vec![a("2001:db8::123")], ..Default::default() }
        .encode()
        .expect("fixture options encode")
});

fn context(step: &Step) -> ClientContext<'static> {
    // A relayed client names the test link by Interface-ID; a direct one arrives on it.
    let relay = step.relayed.map(|with_remote_id| LinkSelector {
        interface_id: Some(LINK.as_bytes()),
        remote_id: with_remote_id.then_some(&REMOTE_ID[..]),
        ..LinkSelector::default()
    });
    ClientContext {
        server_duid: &SERVER_DUID,
        unicast: step.unicast && relay.is_none(),
        peer: if relay.is_some() { a("2001:db8:ffff::1") } else { a("fe80::2") },
        relay,
        arrival: LINK,
        options: &OPTIONS,
        ignore_user_classes: &[],
    }
}

fn option(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    let len = u16::try_from(data.len()).expect("fixture options are short");
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

fn identifier(out: &mut Vec<u8>, code: u16, how: Identifier, right: &[u8], other: &[u8]) {
    match how {
        Identifier::Right => option(out, code, right),
        Identifier::Absent => {}
        Identifier::Other => option(out, code, other),
        Identifier::Twice => {
            option(out, code, right);
            option(out, code, right);
        }
        Identifier::Short => option(out, code, &right[..2]),
    }
}

fn hint_addr(kind: LeaseKind, h: &HintSpec) -> (Ipv6Addr, u8) {
    let base = match (kind, h.off_link) {
        (LeaseKind::Address, false) => 0x2001_0db8_0001_0000_0000_0000_0000_0100_u128,
        (LeaseKind::Address, true) => 0x2001_0db8_0099_0000_0000_0000_0000_0100_u128,
        (LeaseKind::Prefix, false) => 0x2001_0db8_0100_0000_0000_0000_0000_0000_u128,
        (LeaseKind::Prefix, true) => 0x2001_0db8_9900_0000_0000_0000_0000_0000_u128,
    };
    match kind {
        // A few past the pool's end, still on the link.
        LeaseKind::Address => (Ipv6Addr::from(base + u128::from(h.slot % 12)), 128),
        // Slots of the /60:64 pool and some beyond; lengths 64, 0 (no length), 60, or any.
        LeaseKind::Prefix => {
            let len = match h.len % 4 {
                0 => 64,
                1 => 0,
                2 => 60,
                _ => h.len,
            };
            let addr = if h.slot % 7 == 6 { 0 } else { base + (u128::from(h.slot % 20) << 64) };
            (Ipv6Addr::from(addr), len)
        }
    }
}

/// The message bytes of a step.
fn build(step: &Step, n: u8) -> Vec<u8> {
    let mut m = vec![step.kind.code(), 0x12, 0x34, n];
    // `Other` for the Client ID is just another sender: `check` picks `n` for it.
    identifier(&mut m, opt::CLIENTID, step.client_id, &client_duid(n), &client_duid(n));
    let foreign = Duid::from_mac([2, 0, 0, 0, 0, 0xbb]);
    identifier(&mut m, opt::SERVERID, step.server_id, server_duid().as_bytes(), foreign.as_bytes());
    if step.rapid_commit {
        option(&mut m, opt::RAPID_COMMIT, &[]);
    }
    if step.oro {
        option(&mut m, opt::ORO, &[0, 23, 0, 56]);
    }
    for ia in step.ias.iter().take(4) {
        let kind = if ia.pd { LeaseKind::Prefix } else { LeaseKind::Address };
        let mut d = u32::from(ia.iaid % 3).to_be_bytes().to_vec();
        // T1, T2 and lifetimes a client proposes are ignored by the server: make them absurd.
        d.extend_from_slice(&[0xff; 8]);
        for h in ia.hints.iter().take(3) {
            let (addr, len) = hint_addr(kind, h);
            let mut x = Vec::new();
            match kind {
                LeaseKind::Address => {
                    x.extend_from_slice(&addr.octets());
                    x.extend_from_slice(&[0xff; 8]);
                    option(&mut d, opt::IAADDR, &x);
                }
                LeaseKind::Prefix => {
                    x.extend_from_slice(&[0xff; 8]);
                    x.push(len);
                    x.extend_from_slice(&addr.octets());
                    option(&mut d, opt::IAPREFIX, &x);
                }
            }
        }
        if ia.truncated {
            d.truncate(7);
        }
        option(&mut m, if ia.pd { opt::IA_PD } else { opt::IA_NA }, &d);
    }
    m
}

/// Why RFC 9915 section 16 (and the engine's scope) says this message gets nothing.
fn must_discard(step: &Step, ctx: &ClientContext) -> Option<&'static str> {
    let t = step.kind.code();
    let forbids_sid = matches!(t, msg::SOLICIT | msg::REBIND | msg::CONFIRM);
    let needs_sid = matches!(t, msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE);
    if !forbids_sid && !needs_sid {
        return Some("a type the stateful engine does not serve");
    }
    if matches!(step.client_id, Identifier::Twice | Identifier::Short)
        || matches!(step.server_id, Identifier::Twice | Identifier::Short)
    {
        return Some("a repeated or malformed identifier");
    }
    if step.ias.iter().take(4).any(|ia| ia.truncated) {
        return Some("a malformed IA");
    }
    let over_128 = |ia: &Ia| ia.pd && ia.hints.iter().take(3).any(|h| hint_addr(LeaseKind::Prefix, h).1 > 128);
    if step.ias.iter().take(4).any(over_128) {
        return Some("a prefix length over 128");
    }
    if step.client_id == Identifier::Absent {
        return Some("no Client Identifier");
    }
    if forbids_sid && step.server_id != Identifier::Absent {
        return Some("a Server Identifier where none is allowed");
    }
    if needs_sid && step.server_id == Identifier::Absent {
        return Some("no Server Identifier");
    }
    if needs_sid && step.server_id == Identifier::Other {
        return Some("another server's Server Identifier");
    }
    if ctx.unicast {
        // RFC 9915 section 16: we never send Server Unicast, so a client message sent to a
        // unicast address is discarded, whatever its type.
        return Some("a client message sent to a unicast address");
    }
    None
}

/// An address or prefix a reply names, with the IA it is in.
#[derive(Debug)]
struct Named {
    kind: LeaseKind,
    iaid: u32,
    key: LeaseKey,
    preferred: u32,
    valid: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn named(reply: &Message<'_>) -> Vec<Named> {
    let mut out = Vec::new();
    for o in reply.options() {
        let (kind, sub) = match o.code {
            opt::IA_NA => (LeaseKind::Address, opt::IAADDR),
            opt::IA_PD => (LeaseKind::Prefix, opt::IAPREFIX),
            _ => continue,
        };
        assert!(o.data.len() >= 12, "an IA in a reply has its header");
        let (iaid, t1, t2) = (be32(o.data, 0), be32(o.data, 4), be32(o.data, 8));
        assert!(t1 <= t2, "T1 {t1} after T2 {t2}");
        for s in OptionIter::new(&o.data[12..]) {
            let s = s.expect("a reply's IA options are well formed");
            if s.code != sub {
                assert_eq!(s.code, opt::STATUS_CODE, "only addresses, prefixes and status in an IA");
                continue;
            }
            let (addr, len, preferred, valid) = match kind {
                LeaseKind::Address => {
                    assert!(s.data.len() >= 24);
                    let addr: [u8; 16] = s.data[..16].try_into().expect("16 bytes");
                    (Ipv6Addr::from(addr), 128, be32(s.data, 16), be32(s.data, 20))
                }
                LeaseKind::Prefix => {
                    assert!(s.data.len() >= 25);
                    let addr: [u8; 16] = s.data[9..25].try_into().expect("16 bytes");
                    (Ipv6Addr::from(addr), s.data[8], be32(s.data, 0), be32(s.data, 4))
                }
            };
            assert!(preferred <= valid, "preferred {preferred} over valid {valid}");
            let key = LeaseKey { kind, addr, prefix_len: len };
            out.push(Named { kind, iaid, key, preferred, valid });
        }
    }
    out
}

fn span(k: &LeaseKey) -> (u128, u128) {
    let a = u128::from(k.addr);
    let host = if k.prefix_len >= 128 { 0 } else { u128::MAX >> k.prefix_len };
    (a & !host, a | host)
}

fn sorted(mut v: Vec<Lease>) -> Vec<Lease> {
    v.sort_by_key(Lease::key);
    v
}

/// What holds across the whole population after every step.
fn check_population(engine: &Engine, store: &MemoryStore, now: u64) {
    let held = sorted(store.load_all().expect("the memory store loads"));
    let memory = sorted(engine.leases().cloned().collect());
    assert_eq!(memory, held, "the engine's leases are exactly the durable ones");
    let mut per_ia: HashMap<(&[u8], u32, LeaseKind), usize> = HashMap::new();
    for (i, l) in held.iter().enumerate() {
        assert!(l.validate().is_ok(), "a stored lease is valid: {l:?}");
        assert_eq!(l.iface, LINK);
        assert!(l.valid_until <= now + u64::from(VALID.max(900)), "lease beyond the longest lifetime: {l:?}");
        if l.state == LeaseState::Bound {
            *per_ia.entry((&l.duid, l.iaid, l.kind)).or_default() += 1;
        }
        let (s, e) = span(&l.key());
        for other in &held[i + 1..] {
            let (os, oe) = span(&other.key());
            assert!(
                l.kind != other.kind || e < os || oe < s,
                "held twice: {} {}/{} and {} {}/{}",
                l.kind,
                l.addr,
                l.prefix_len,
                other.kind,
                other.addr,
                other.prefix_len
            );
        }
    }
    for ((duid, iaid, kind), n) in per_ia {
        assert!(n <= 1, "client {duid:02x?} IA {iaid} holds {n} {kind} bindings");
    }
}

fn check_reply(step: &Step, n: u8, request: &[u8], reply: &[u8], committed: bool, store: &MemoryStore) {
    assert!(reply.len() <= usize::from(u16::MAX), "a reply of {} bytes", reply.len());
    let m = Message::parse(reply).expect("a reply parses");
    let t = step.kind.code();
    let want = if t == msg::SOLICIT && m.find(opt::RAPID_COMMIT).is_none() { msg::ADVERTISE } else { msg::REPLY };
    assert_eq!(m.msg_type(), want, "answer type to message type {t}");
    assert_eq!(m.xid(), [request[1], request[2], request[3]], "transaction id echoed");
    let cid = client_duid(n);
    assert_eq!(m.client_id(), Ok(Some(&cid[..])), "Client ID echoed");
    assert_eq!(m.server_id(), Ok(Some(server_duid().as_bytes())), "our Server ID");
    if m.find(opt::STATUS_CODE)
        .is_some_and(|s| s.len() >= 2 && u16::from_be_bytes([s[0], s[1]]) == status::USE_MULTICAST)
    {
        assert!(named(&m).is_empty(), "UseMulticast names nothing");
    }
    if !committed {
        return;
    }
    let held: HashMap<LeaseKey, Lease> =
        store.load_all().expect("the memory store loads").into_iter().map(|l| (l.key(), l)).collect();
    for x in named(&m).iter().filter(|x| x.valid > 0) {
        assert_eq!((x.preferred, x.valid), (PREFERRED, VALID), "the link's lifetimes");
        let holder = held.get(&x.key);
        match want {
            msg::REPLY => assert!(
                holder.is_some_and(|l| l.duid == cid
                    && l.iaid == x.iaid
                    && l.kind == x.kind
                    && l.state == LeaseState::Bound),
                "Reply names {:?} that the store does not hold for client {n} IA {}: {holder:?}",
                x.key,
                x.iaid
            ),
            _ => assert!(
                holder.is_none_or(|l| l.duid == cid && l.state == LeaseState::Bound),
                "Advertise offers {:?}, held by another: {holder:?}",
                x.key
            ),
        }
    }
}

/// Runs a script against a fresh engine and store, checking after every step.
pub fn check(script: &Script) {
    let mut engine = Engine::new(vec![link()], Vec::new(), NOW).expect("the fixture link is valid");
    let store = MemoryStore::new();
    let mut now = NOW;
    for step in script.steps.iter().take(64) {
        now += u64::from(step.wait % 3600);
        if step.expire {
            let ex = engine.expire(now);
            assert!(ex.leases.iter().all(|l| l.is_expired(now)), "expire frees only expired leases");
            store.commit(ex.ops).wait_blocking().expect("removing expired leases commits");
        }
        let n = (step.client % CLIENTS + u8::from(step.client_id == Identifier::Other)) % CLIENTS;
        let request = build(step, n);
        let parsed = Message::parse(&request).expect("the builder writes well-formed options");
        let ctx = context(step);
        let out = engine.handle(&parsed, &ctx, now);
        if let Some(why) = must_discard(step, &ctx) {
            assert!(out.reply.is_none(), "replied to a message with {why}");
            assert!(out.ops.is_empty() && out.routes.is_empty(), "changed leases for a message with {why}");
            assert!(out.discard.is_some(), "a discard is counted ({why})");
        } else if matches!(step.kind, Kind::Solicit | Kind::Request | Kind::Renew | Kind::Release | Kind::Decline) {
            assert!(
                out.reply.is_some(),
                "no answer to a valid message of type {}: {:?}",
                step.kind.code(),
                out.discard
            );
        }
        let t = step.kind.code();
        let rapid = t == msg::SOLICIT && step.rapid_commit;
        if matches!(t, msg::CONFIRM) || (t == msg::SOLICIT && !rapid) || ctx.unicast {
            assert!(out.ops.is_empty(), "offers, Confirm and discarded unicast commit nothing");
        }
        let cid = client_duid(n);
        for op in &out.ops {
            if let LeaseOp::Upsert(l) = op {
                assert_eq!(l.duid, cid, "an upsert for another client than the sender");
            }
        }
        let committed = if out.ops.is_empty() {
            true
        } else if step.commit_fails {
            engine.rollback(out.undo);
            false
        } else {
            store.commit(out.ops).wait_blocking().expect("the engine's ops are valid for the store");
            true
        };
        if let Some(reply) = &out.reply {
            check_reply(step, n, &request, reply, committed, &store);
        }
        check_population(&engine, &store, now);
    }
}
