//! Round trips of the typed codec over generated messages: parse -> emit -> parse gives the
//! same representation, and emitting is byte-stable. Client messages with IAs and Status
//! Codes, alone and inside chains of up to nine relays, both ways; and arbitrary bytes, which
//! must never panic and, once they parse, must round-trip too.

use std::net::Ipv6Addr;

use dhcpv6_common::wire::{msg, opt, HOP_COUNT_LIMIT};
use dhcpv6_proto::server::relay::{self, MAX_RELAY_DEPTH};
use dhcpv6_proto::wire::{
    relay::emit_chain, DhcpOption, IaAddress, IaNa, IaPd, IaPrefix, Message, RelayKind, RelayLevel, Repr, StatusCode,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn status() -> impl Strategy<Value = StatusCode> {
    // Any UTF-8, not only ASCII: the message is text for people in any language.
    (any::<u16>(), vec(any::<char>(), 0..12))
        .prop_map(|(code, m)| StatusCode::new(code, m.into_iter().collect::<String>()))
}

fn ia_address() -> impl Strategy<Value = IaAddress> {
    (addr(), any::<u32>(), any::<u32>(), proptest::option::of(status()))
        .prop_map(|(addr, preferred, valid, status)| IaAddress { addr, preferred, valid, status })
}

fn ia_prefix() -> impl Strategy<Value = IaPrefix> {
    (any::<u32>(), any::<u32>(), 0u8..=128, addr(), proptest::option::of(status())).prop_map(
        |(preferred, valid, prefix_len, prefix, status)| IaPrefix { preferred, valid, prefix_len, prefix, status },
    )
}

fn ia_na() -> impl Strategy<Value = IaNa> {
    (any::<u32>(), any::<u32>(), any::<u32>(), vec(ia_address(), 0..4), proptest::option::of(status()))
        .prop_map(|(iaid, t1, t2, leases, status)| IaNa { iaid, t1, t2, leases, status })
}

fn ia_pd() -> impl Strategy<Value = IaPd> {
    (any::<u32>(), any::<u32>(), any::<u32>(), vec(ia_prefix(), 0..4), proptest::option::of(status()))
        .prop_map(|(iaid, t1, t2, leases, status)| IaPd { iaid, t1, t2, leases, status })
}

fn option() -> impl Strategy<Value = DhcpOption> {
    let typed = [opt::IA_NA, opt::IA_PD, opt::STATUS_CODE];
    prop_oneof![
        ia_na().prop_map(DhcpOption::IaNa),
        ia_pd().prop_map(DhcpOption::IaPd),
        status().prop_map(DhcpOption::StatusCode),
        (any::<u16>().prop_filter("typed codes parse as typed", move |c| !typed.contains(c)), vec(any::<u8>(), 0..40))
            .prop_map(|(code, data)| DhcpOption::Other { code, data }),
    ]
}

fn message(types: &'static [u8]) -> impl Strategy<Value = Repr> {
    (proptest::sample::select(types), any::<[u8; 3]>(), vec(option(), 0..6)).prop_map(|(msg_type, xid, options)| Repr {
        msg_type,
        xid,
        options,
    })
}

const CLIENT_TYPES: &[u8] = &[
    msg::SOLICIT,
    msg::REQUEST,
    msg::CONFIRM,
    msg::RENEW,
    msg::REBIND,
    msg::RELEASE,
    msg::DECLINE,
    msg::INFORMATION_REQUEST,
];
const SERVER_TYPES: &[u8] = &[msg::ADVERTISE, msg::REPLY, msg::RECONFIGURE];

fn level() -> impl Strategy<Value = RelayLevel> {
    (
        (0..=HOP_COUNT_LIMIT, addr(), addr()),
        proptest::option::of(vec(any::<u8>(), 0..10)),
        proptest::option::of(vec(any::<u8>(), 5..12)),
        proptest::option::of(vec(any::<u8>(), 1..8)),
        proptest::option::of(vec(any::<u8>(), 3..10)),
    )
        .prop_map(|((hop_count, link, peer), interface_id, remote_id, subscriber_id, client_linklayer)| {
            RelayLevel {
                interface_id,
                remote_id,
                subscriber_id,
                client_linklayer,
                // Relay-ID: proptest's tuple is full; the unit tests cover it.
                ..RelayLevel::new(hop_count, link, peer)
            }
        })
}

/// Emits, parses back, and checks the representation and the bytes.
fn round_trip(repr: &Repr) -> Result<Vec<u8>, TestCaseError> {
    let bytes = repr.emit().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = Repr::parse(&Message::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, repr);
    prop_assert_eq!(back.emit().ok(), Some(bytes.clone()), "emit is byte-stable");
    Ok(bytes)
}

proptest! {
    #[test]
    fn client_messages_round_trip(repr in message(CLIENT_TYPES)) {
        round_trip(&repr)?;
    }

    #[test]
    fn relay_forward_chains_round_trip(repr in message(CLIENT_TYPES), levels in vec(level(), 1..=MAX_RELAY_DEPTH)) {
        let inner = round_trip(&repr)?;
        let fwd = emit_chain(&levels, RelayKind::Forward, &inner).unwrap();
        let relayed = relay::unwrap(&fwd).unwrap();
        prop_assert_eq!(&relayed.levels, &levels);
        prop_assert_eq!(relayed.inner, &inner[..]);
        prop_assert_eq!(&Repr::parse(&relayed.message()).unwrap(), &repr);
        prop_assert_eq!(emit_chain(&relayed.levels, RelayKind::Forward, relayed.inner).unwrap(), fwd);
    }

    #[test]
    fn relay_reply_chains_round_trip(repr in message(SERVER_TYPES), levels in vec(level(), 1..=MAX_RELAY_DEPTH)) {
        let inner = round_trip(&repr)?;
        let reply = relay::wrap(&levels, &inner).unwrap();
        let back = relay::unwrap_reply(&reply).unwrap();
        // A Relay-Reply echoes the header fields and the Interface-ID, nothing else.
        let echoed: Vec<RelayLevel> = levels
            .iter()
            .map(|l| RelayLevel { interface_id: l.interface_id.clone(), ..RelayLevel::new(l.hop_count, l.link_address, l.peer_address) })
            .collect();
        prop_assert_eq!(&back.levels, &echoed);
        prop_assert_eq!(back.inner, &inner[..]);
        prop_assert_eq!(&Repr::parse(&back.message()).unwrap(), &repr);
        prop_assert_eq!(relay::wrap(&back.levels, back.inner).unwrap(), reply);
    }

    /// Arbitrary bytes: no panic, and whatever parses is a fixed point after one emit.
    #[test]
    fn arbitrary_bytes_parse_without_panic_and_reparse_the_same(bytes in vec(any::<u8>(), 0..160)) {
        if let Ok(m) = Message::parse(&bytes) {
            if let Ok(repr) = Repr::parse(&m) {
                round_trip(&repr)?;
            }
        }
        let _ = relay::unwrap(&bytes);
        let _ = relay::unwrap_reply(&bytes);
        let _ = RelayLevel::parse(&bytes);
    }
}
