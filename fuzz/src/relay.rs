//! `relay`: `relay::unwrap` on arbitrary bytes; what unwraps is wrapped back with the same
//! levels and taken apart again, level by level (`peel`) and, with every Relay-Reply turned
//! back into a Relay-Forward, by `unwrap`: the same levels (the fields a Relay-Reply echoes)
//! and the same inner bytes.

use dhcpv6_common::wire::{msg, HOP_COUNT_LIMIT};
use dhcpv6_proto::server::relay::{self, RelayError, RelayLevel, MAX_RELAY_DEPTH, MAX_UDP_PAYLOAD};
use dhcpv6_proto::wire::Message;

/// What a Relay-Reply carries back of a level: header fields and the Interface-ID only.
fn echoed(l: &RelayLevel) -> RelayLevel {
    RelayLevel { interface_id: l.interface_id.clone(), ..RelayLevel::new(l.hop_count, l.link_address, l.peer_address) }
}

pub fn check(data: &[u8]) {
    let relayed = match relay::unwrap(data) {
        Ok(r) => r,
        Err(e) => {
            // Every refusal is counted somewhere; naming it must not panic either.
            let _ = (e.counter(), e.to_string());
            return;
        }
    };
    let levels = &relayed.levels;
    assert!(!levels.is_empty() && levels.len() <= MAX_RELAY_DEPTH, "1..={MAX_RELAY_DEPTH} levels");
    assert!(levels.iter().all(|l| l.hop_count <= HOP_COUNT_LIMIT), "hop-counts within the limit");
    assert!(relay::is_client_message(relayed.inner[0]), "the inner message is a client's");
    assert_eq!(relayed.message().bytes(), relayed.inner);
    assert!(Message::parse(relayed.inner).is_ok(), "the inner message was validated");
    let _ = relayed.link_selector().remote_id_parts();
    let _ = relayed.link_selector().client_mac();

    let wrapped = match relay::wrap(levels, relayed.inner) {
        Ok(w) => w,
        // Interface-IDs are echoed and may make the reply longer than what came in; only a
        // size past what 16-bit lengths and one datagram hold may be refused.
        Err(RelayError::TooLarge(n)) => {
            assert!(n > usize::from(u16::MAX) || n > MAX_UDP_PAYLOAD, "TooLarge({n}) for a size that fits");
            return;
        }
        Err(e) => panic!("wrap refused levels that unwrap produced: {e}"),
    };
    assert!(wrapped.len() <= MAX_UDP_PAYLOAD, "a wrapped reply fits one UDP datagram");

    // Down the Relay-Reply chain one level at a time, noting where each level starts.
    let mut starts = Vec::with_capacity(levels.len());
    let mut cur: &[u8] = &wrapped;
    for want in levels {
        starts.push(wrapped.len() - cur.len());
        assert_eq!(cur.first(), Some(&msg::RELAY_REPL), "each level of a wrapped reply is a Relay-Reply");
        let (got, inner) = relay::peel(cur).expect("a level wrap wrote peels");
        assert_eq!(got, echoed(want), "peel reads back the level wrap wrote");
        cur = inner;
    }
    assert_eq!(cur, relayed.inner, "the innermost Relay Message carries the message unchanged");

    // The same chain as Relay-Forwards: unwrap must agree with the levels it first read.
    let mut forward = wrapped.clone();
    for at in starts {
        forward[at] = msg::RELAY_FORW;
    }
    let again = relay::unwrap(&forward).expect("the rewrapped chain unwraps");
    let want: Vec<RelayLevel> = levels.iter().map(echoed).collect();
    assert_eq!(again.levels, want, "same levels after wrap and unwrap");
    assert_eq!(again.inner, relayed.inner, "same inner bytes after wrap and unwrap");
}
