//! Queries built byte by byte from RFC 5007 / RFC 5460's formats, answered from leases.

use super::*;
use crate::leases::contract::{address, prefix, relay_record};
use crate::wire::leasequery::parse_client_links;

const NOW: u64 = 1_999_990_100;
const REQUESTOR: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0, 0x99];

fn server() -> Duid {
    Duid::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]).unwrap()
}

/// A LEASEQUERY: header, the requestor's Client ID, `extra` options, then OPTION_LQ_QUERY.
fn query(qtype: u8, link: &str, query_options: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut q = vec![14, 1, 2, 3, 0, 1, 0, 10];
    q.extend_from_slice(REQUESTOR);
    q.extend_from_slice(extra);
    let data = [&[qtype][..], &link.parse::<Ipv6Addr>().unwrap().octets(), query_options].concat();
    q.extend_from_slice(&(44u16).to_be_bytes());
    q.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    q.extend_from_slice(&data);
    q
}

fn option(code: u16, data: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], &u16::try_from(data.len()).unwrap().to_be_bytes(), data].concat()
}

fn iaaddr(a: &str) -> Vec<u8> {
    option(5, &[&a.parse::<Ipv6Addr>().unwrap().octets()[..], &[0; 8]].concat())
}

/// The status code of a reply, and its client data.
fn read(reply: &[u8]) -> (u8, Option<u16>, Vec<ClientData>, Option<Vec<Ipv6Addr>>) {
    let m = Message::parse(reply).unwrap();
    assert_eq!(m.server_id().unwrap(), Some(server().as_bytes()));
    let status = m.find(opt::STATUS_CODE).map(|d| u16::from_be_bytes([d[0], d[1]]));
    let data = m.options().filter(|o| o.code == opt::CLIENT_DATA).map(|o| ClientData::parse(o.data).unwrap()).collect();
    let links = m.find(opt::LQ_CLIENT_LINK).map(|d| parse_client_links(d).unwrap());
    (m.msg_type(), status, data, links)
}

fn ask(pkt: &[u8], transport: Transport, stored: &[Lease]) -> Vec<Vec<u8>> {
    let q = parse(pkt, &server(), transport).unwrap();
    let found: Vec<Lease> = stored.iter().filter(|l| q.filter.matches(l)).cloned().collect();
    answer(&q, found, NOW, &server())
}

#[test]
fn by_address_over_udp_returns_the_binding_with_lifetimes_and_client_id() {
    let leases = [address(1), address(2), prefix(3)];
    let pkt = query(1, "::", &iaaddr(&address(2).addr.to_string()), &[]);
    let replies = ask(&pkt, Transport::Udp, &leases);
    assert_eq!(replies.len(), 1);
    let (t, status, data, _) = read(&replies[0]);
    assert_eq!((t, status, data.len()), (msg::LEASEQUERY_REPLY, None, 1));
    assert_eq!(&replies[0][1..4], &[1, 2, 3], "transaction id echoed");
    assert_eq!(Message::parse(&replies[0]).unwrap().client_id().unwrap(), Some(REQUESTOR));
    let d = &data[0];
    assert_eq!(d.client_id, address(2).duid);
    assert_eq!(d.addresses.len(), 1);
    assert_eq!(d.addresses[0].addr, address(2).addr);
    assert_eq!(u64::from(d.addresses[0].valid), address(2).valid_until - NOW);
    assert_eq!(u64::from(d.addresses[0].preferred), address(2).preferred_until - NOW);
    assert_eq!(u64::from(d.clt_time), NOW - address(2).last_transaction);
    assert!(d.relay_data.is_none(), "not asked for");

    // An address inside a delegated prefix finds the prefix.
    let inside = Ipv6Addr::from(u128::from(prefix(3).addr) | 0x77);
    let (_, _, data, _) = read(&ask(&query(1, "::", &iaaddr(&inside.to_string()), &[]), Transport::Udp, &leases)[0]);
    assert_eq!(data[0].prefixes[0].prefix, prefix(3).addr);
    assert_eq!(data[0].prefixes[0].prefix_len, 56);

    // Nobody holds it: a reply without client data and without a status.
    let (_, status, data, _) =
        read(&ask(&query(1, "::", &iaaddr("2001:db8:ffff::1"), &[]), Transport::Udp, &leases)[0]);
    assert_eq!((status, data.len()), (None, 0));
}

#[test]
fn expired_and_declined_leases_are_not_bindings() {
    let mut expired = address(1);
    expired.valid_until = NOW;
    let mut declined = address(2);
    declined.state = LeaseState::Declined;
    for l in [expired, declined] {
        let (_, _, data, _) = read(&ask(&query(1, "::", &iaaddr(&l.addr.to_string()), &[]), Transport::Udp, &[l])[0]);
        assert!(data.is_empty());
    }
}

#[test]
fn by_client_id_returns_all_its_bindings_and_relay_data_when_asked() {
    let leases = [address(4), prefix(4), address(5)];
    let oro = option(6, &47u16.to_be_bytes());
    let pkt = query(2, "::", &[option(1, &address(4).duid), oro].concat(), &[]);
    for transport in [Transport::Udp, Transport::Tcp] {
        let replies = ask(&pkt, transport, &leases);
        let (_, status, data, links) = read(&replies[0]);
        assert_eq!((status, links), (None, None));
        assert_eq!((data[0].addresses.len(), data[0].prefixes.len()), (1, 1));
        let relay = data[0].relay_data.as_ref().expect("asked for in the ORO");
        let rec = relay_record(4);
        assert_eq!(relay.peer_address, rec.peer_address);
        let (level, carried) = RelayLevel::parse(&relay.relay_message).unwrap();
        assert_eq!(
            (level.link_address, level.remote_id, level.relay_id),
            (rec.link_address, rec.remote_id, rec.relay_id)
        );
        assert!(carried.is_empty());
        if transport == Transport::Tcp {
            assert_eq!(replies.len(), 2);
            assert_eq!(replies[1][0], msg::LEASEQUERY_DONE);
        }
    }
    // Limited to a link the client is not on: nothing.
    let pkt = query(2, "2001:db8:9::1", &option(1, &address(4).duid), &[]);
    assert!(read(&ask(&pkt, Transport::Udp, &leases)[0]).2.is_empty());
}

#[test]
fn a_client_on_two_links_is_answered_with_its_links() {
    let mut other = prefix(4);
    other.relay = Some(Box::new(relay_record(5)));
    let leases = [prefix(4), Lease { addr: "2001:db8:8000:9900::".parse().unwrap(), ..other }];
    let pkt = query(2, "::", &option(1, &prefix(4).duid), &[]);
    let (_, _, data, links) = read(&ask(&pkt, Transport::Udp, &leases)[0]);
    assert!(data.is_empty());
    let mut expected = vec![relay_record(4).link_address, relay_record(5).link_address];
    expected.sort();
    assert_eq!(links, Some(expected));
}

#[test]
fn bulk_queries_stream_one_client_per_message_then_done() {
    // Relay 1 (n % 4 == 1) carried prefixes 1, 5, 9.
    let leases: Vec<Lease> = (0..12).map(prefix).collect();
    let rec = relay_record(1);
    for pkt in [
        query(3, "::", &option(53, rec.relay_id.as_ref().unwrap()), &[]),
        query(4, &rec.link_address.to_string(), &[], &[]),
    ] {
        let replies = ask(&pkt, Transport::Tcp, &leases);
        let types: Vec<u8> = replies.iter().map(|r| r[0]).collect();
        assert_eq!(
            types,
            vec![msg::LEASEQUERY_REPLY, msg::LEASEQUERY_DATA, msg::LEASEQUERY_DATA, msg::LEASEQUERY_DONE]
        );
        let mut got: Vec<Ipv6Addr> = replies[..3]
            .iter()
            .map(|r| {
                let m = Message::parse(r).unwrap();
                ClientData::parse(m.find(opt::CLIENT_DATA).unwrap()).unwrap().prefixes[0].prefix
            })
            .collect();
        got.sort();
        let mut expected: Vec<Ipv6Addr> = [1, 5, 9].into_iter().map(|n| prefix(n).addr).collect();
        expected.sort();
        assert_eq!(got, expected);
    }
    let remote = relay_record(9).remote_id.unwrap();
    let replies = ask(&query(5, "::", &option(37, &remote), &[]), Transport::Tcp, &leases);
    assert_eq!(replies.len(), 2);
    assert_eq!(read(&replies[0]).2[0].client_id, prefix(9).duid);
}

#[test]
fn bad_queries_are_refused_or_dropped() {
    let s = server();
    let status_of = |pkt: &[u8], t: Transport| match parse(pkt, &s, t) {
        Err(Refusal::Reply(r)) => read(&r).1,
        other => panic!("{other:?}"),
    };
    // Bulk types over UDP, an unknown type.
    assert_eq!(
        status_of(&query(3, "::", &option(53, &[0, 2, 1, 2]), &[]), Transport::Udp),
        Some(status::UNKNOWN_QUERY_TYPE)
    );
    assert_eq!(status_of(&query(9, "::", &[], &[]), Transport::Tcp), Some(status::UNKNOWN_QUERY_TYPE));
    // Missing or broken query options.
    assert_eq!(status_of(&query(1, "::", &[], &[]), Transport::Udp), Some(status::MALFORMED_QUERY));
    assert_eq!(status_of(&query(2, "::", &option(1, &[0]), &[]), Transport::Udp), Some(status::MALFORMED_QUERY));
    assert_eq!(status_of(&query(4, "::", &[], &[]), Transport::Tcp), Some(status::MALFORMED_QUERY));
    assert_eq!(status_of(&query(1, "::", &[0, 5, 0, 30, 1], &[]), Transport::Udp), Some(status::MALFORMED_QUERY));
    let mut short = query(1, "::", &[], &[]);
    short.truncate(short.len() - 1);
    let len = short.len();
    short[len - 18..len - 16].copy_from_slice(&[0, 16]);
    assert_eq!(status_of(&short, Transport::Udp), Some(status::MALFORMED_QUERY));
    let no_query: Vec<u8> = query(1, "::", &[], &[])[..18].to_vec();
    assert_eq!(status_of(&no_query, Transport::Udp), Some(status::MALFORMED_QUERY));

    // Another server's ID, no requestor ID, not a LEASEQUERY, garbage: dropped.
    let other = query(1, "::", &iaaddr("2001:db8::1"), &option(2, &[0, 3, 0, 1, 9, 9, 9, 9, 9, 9]));
    assert_eq!(parse(&other, &s, Transport::Udp), Err(Refusal::Discard(Counter::DropUnexpectedServerId)));
    let ours = query(1, "::", &iaaddr("2001:db8::1"), &option(2, s.as_bytes()));
    assert!(parse(&ours, &s, Transport::Udp).is_ok());
    let anonymous = [&[14, 1, 2, 3][..], &query(1, "::", &iaaddr("2001:db8::1"), &[])[18..]].concat();
    assert_eq!(parse(&anonymous, &s, Transport::Udp), Err(Refusal::Discard(Counter::DropLeasequeryMalformed)));
    for junk in [&[][..], &[14], &[14, 0, 0], &[1, 0, 0, 0], &[14, 0, 0, 0, 0, 1, 0, 9]] {
        assert!(matches!(parse(junk, &s, Transport::Tcp), Err(Refusal::Discard(_))), "{junk:?}");
    }
    let refused = not_allowed(&ours, &s).unwrap();
    assert_eq!(read(&refused).1, Some(status::NOT_ALLOWED));
    assert_eq!(not_allowed(&anonymous, &s), None);
}

/// Every prefix of every query built from random bytes: refused or dropped, never a panic.
#[test]
fn truncated_and_random_queries_never_panic() {
    let full = query(2, "::", &[option(1, &address(1).duid), option(6, &[0, 47])].concat(), &[]);
    for n in 0..full.len() {
        let _ = parse(&full[..n], &server(), Transport::Tcp);
    }
    let mut x: u32 = 0x1234_5678;
    for _ in 0..2_000 {
        let mut pkt = full.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = usize::try_from(x).unwrap() % pkt.len();
            pkt[i] = (x >> 8) as u8;
        }
        if let Ok(q) = parse(&pkt, &server(), Transport::Tcp) {
            let _ = answer(&q, vec![address(1), prefix(1)], NOW, &server());
        }
    }
}
