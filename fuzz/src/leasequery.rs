//! `leasequery`: arbitrary bytes through `server::leasequery::parse`, over UDP and TCP, and for
//! what is accepted, `answer` over a fixed set of leases (addresses and prefixes, relayed and
//! not, one expired). Every answer must be whole messages of the leasequery reply types with
//! the query's transaction id and the server's ID: over UDP exactly one LEASEQUERY-REPLY, over
//! TCP a REPLY, then LEASEQUERY-DATA, then one LEASEQUERY-DONE; and each OPTION_CLIENT_DATA
//! must parse back. A refusal is a LEASEQUERY-REPLY with a status, or a counted discard.

use std::net::Ipv6Addr;

use dhcpv6_common::wire::{msg, opt};
use dhcpv6_proto::leases::{Lease, LeaseKind, LeaseState, RelayRecord};
use dhcpv6_proto::server::leasequery::{answer, not_allowed, parse, Refusal, Transport};
use dhcpv6_proto::wire::{leasequery::ClientData, Duid, Message};

const NOW: u64 = 1_000_000;
const SERVER: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 0xaa];

fn leases() -> Vec<Lease> {
    let relay = |n: u8| RelayRecord {
        link_address: "2001:db8:1::1".parse().unwrap(),
        peer_address: Ipv6Addr::from(0xfe80u128 << 112 | u128::from(n)),
        source: "fe80::2".parse().unwrap(),
        interface_id: Some(vec![b'p', n]),
        remote_id: Some(vec![0, 0, 0x0d, 0xe9, n]),
        subscriber_id: None,
        relay_id: Some(vec![0, 2, 0, 0, 0x0d, 0xe9, n % 2]),
        client_linklayer: Some(vec![0, 1, 2, 0, 0, 0, 0, n]),
    };
    (0..6u8)
        .map(|n| Lease {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n % 3],
            iaid: u32::from(n),
            kind: if n % 2 == 0 { LeaseKind::Address } else { LeaseKind::Prefix },
            addr: if n % 2 == 0 {
                Ipv6Addr::from(0x2001_0db8_0001u128 << 80 | 0x100 | u128::from(n))
            } else {
                Ipv6Addr::from(0x2001_0db8_0100u128 << 80 | u128::from(n) << 72)
            },
            prefix_len: if n % 2 == 0 { 128 } else { 56 },
            iface: "eth1".into(),
            valid_until: if n == 5 { NOW } else { NOW + 3600 },
            preferred_until: NOW,
            state: LeaseState::Bound,
            next_hop: None,
            last_transaction: NOW - u64::from(n),
            relay: (n > 1).then(|| Box::new(relay(n))),
        })
        .collect()
}

pub fn check(data: &[u8]) {
    let server = Duid::new(&SERVER).expect("a valid DUID");
    let _ = not_allowed(data, &server);
    for transport in [Transport::Udp, Transport::Tcp] {
        let q = match parse(data, &server, transport) {
            Ok(q) => q,
            Err(Refusal::Discard(c)) => {
                let _ = c.as_str();
                continue;
            }
            Err(Refusal::Reply(r)) => {
                let m = Message::parse(&r).expect("a refusal is a message");
                assert_eq!(m.msg_type(), msg::LEASEQUERY_REPLY);
                assert!(m.find(opt::STATUS_CODE).is_some(), "a refusal carries its status");
                continue;
            }
        };
        let xid = Message::parse(data).expect("an accepted query is a message").xid();
        let found: Vec<Lease> = leases().into_iter().filter(|l| q.filter.matches(l)).collect();
        let replies = answer(&q, found, NOW, &server);
        let types: Vec<u8> = replies.iter().map(|r| r[0]).collect();
        match transport {
            Transport::Udp => assert_eq!(types, [msg::LEASEQUERY_REPLY], "one reply over UDP"),
            Transport::Tcp => {
                assert!(types.len() >= 2, "{types:?}");
                assert_eq!((types[0], types[types.len() - 1]), (msg::LEASEQUERY_REPLY, msg::LEASEQUERY_DONE));
                assert!(types[1..types.len() - 1].iter().all(|t| *t == msg::LEASEQUERY_DATA), "{types:?}");
            }
        }
        for r in &replies {
            let m = Message::parse(r).expect("every answer is a message");
            assert_eq!(m.xid(), xid, "the query's transaction id");
            if m.msg_type() != msg::LEASEQUERY_DATA {
                assert_eq!(m.server_id().ok().flatten(), Some(&SERVER[..]));
            }
            for o in m.options().filter(|o| o.code == opt::CLIENT_DATA) {
                let d = ClientData::parse(o.data).expect("client data parses back");
                assert!(!d.addresses.is_empty() || !d.prefixes.is_empty(), "a client with no binding reported");
            }
        }
    }
}
