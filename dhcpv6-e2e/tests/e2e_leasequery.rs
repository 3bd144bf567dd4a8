//! End to end, leasequery: a requestor written here from RFC 5007 (UDP) and RFC 5460 (TCP,
//! 2-byte length framing) asks dhcpv6d about a dhclient's lease and about relayed clients
//! (crafted Relay-Forwards with Relay-ID, Remote-ID and a link-address, as a relay sends them).

mod common;

use std::{collections::HashMap, net::Ipv6Addr, time::Duration};

use common::{lab::Lab, opt};
use dhcpv6::server::relay;
use dhcpv6::wire::{leasequery::ClientData, Message};
use testbed::Netns;

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";
const PD: &str = "2001:db8:100::/40:56";
/// The link-address relayed clients are on: inside the address pool's /64.
const LINK: &str = "2001:db8:1::1";
const REQUESTOR_DUID: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0xbe, 0xef];

// Message types, options and status codes as RFC 5007 / RFC 5460 number them.
const LEASEQUERY: u8 = 14;
const LEASEQUERY_REPLY: u8 = 15;
const LEASEQUERY_DONE: u8 = 16;
const LEASEQUERY_DATA: u8 = 17;
const OPTION_LQ_QUERY: u16 = 44;
const OPTION_CLIENT_DATA: u16 = 45;
const OPTION_RELAY_ID: u16 = 53;
const OPTION_REMOTE_ID: u16 = 37;
const STATUS_MALFORMED_QUERY: u16 = 8;
const STATUS_NOT_ALLOWED: u16 = 10;

fn start(lab: &mut Lab, leasequery_from: &str) {
    let db = lab.dir.join("leases.db");
    lab.start(&[
        "--na-pool",
        NA,
        "--pd-pool",
        PD,
        "--rapid-commit",
        "--trusted-relay",
        "fe80::/10",
        "--leasequery-from",
        leasequery_from,
        "--lease-db",
        db.to_str().unwrap(),
    ]);
}

/// A LEASEQUERY (RFC 5007 section 4.1.1): transaction id, the requestor's Client Identifier,
/// OPTION_LQ_QUERY with `query_type`, `link`, and `query_options`.
fn leasequery(xid: u8, query_type: u8, link: Ipv6Addr, query_options: &[u8]) -> Vec<u8> {
    let lq = [&[query_type][..], &link.octets(), query_options].concat();
    [&[LEASEQUERY, 0, 0, xid][..], &opt(1, REQUESTOR_DUID), &opt(OPTION_LQ_QUERY, &lq)].concat()
}

fn by_address(xid: u8, a: Ipv6Addr) -> Vec<u8> {
    leasequery(xid, 1, Ipv6Addr::UNSPECIFIED, &opt(5, &[&a.octets()[..], &[0; 8]].concat()))
}

/// The server's link-local address on srv0, as the requestor on the link reaches it.
fn server_address(ns: &Netns) -> String {
    let out = ns.run(&["ip", "-6", "-o", "addr", "show", "dev", "srv0", "scope", "link"]).unwrap();
    let word = out.split_whitespace().skip_while(|w| *w != "inet6").nth(1).unwrap();
    word.split('/').next().unwrap().to_owned()
}

/// Sends `query` over UDP from cli0 to the server (unicast) and returns the reply, if any.
fn udp(lab: &Lab, query: &[u8]) -> Option<Vec<u8>> {
    let to = server_address(&lab.srv);
    lab.exchange_in(&lab.cli, "cli0", ("::", 40547), &to, query, Duration::from_secs(2))
}

fn tcp(lab: &Lab, queries: &[Vec<u8>]) -> Vec<Vec<u8>> {
    tcp_in(&lab.cli, "cli0", &format!("{}%cli0", server_address(&lab.srv)), queries)
}

/// Connects from cli0 to TCP port 547, sends each query framed (RFC 5460 section 5.1), and
/// reads framed messages until the server closes the connection (the requestor closes its
/// sending half once the queries are out: the server answers each, then sees the end).
fn tcp_in(ns: &Netns, ifname: &str, to: &str, queries: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let hex: Vec<String> = queries.iter().map(|q| q.iter().map(|b| format!("{b:02x}")).collect()).collect();
    let script = format!(
        "import socket,struct\n\
         s=socket.socket(socket.AF_INET6,socket.SOCK_STREAM)\n\
         s.setsockopt(socket.SOL_SOCKET,25,b'{ifname}')\n\
         s.settimeout(5)\n\
         s.connect(('{to}',547))\n\
         qs={hex:?}\n\
         for q in qs:\n  b=bytes.fromhex(q); s.sendall(struct.pack('!H',len(b))+b)\n\
         s.shutdown(socket.SHUT_WR)\n\
         def exact(n):\n  d=b''\n  while len(d)<n:\n    c=s.recv(n-len(d))\n    if not c: return None\n    d+=c\n  return d\n\
         while True:\n  h=exact(2)\n  if h is None: break\n  m=exact(struct.unpack('!H',h)[0])\n  if m is None: break\n  print(m.hex(), flush=True)\n"
    );
    let out = ns.cmd("timeout").arg("20").arg("python3").arg("-c").arg(&script).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| (0..l.len()).step_by(2).map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap()).collect())
        .collect()
}

fn status(m: &Message<'_>) -> Option<u16> {
    m.find(13).map(|d| u16::from_be_bytes([d[0], d[1]]))
}

fn client_data(reply: &[u8]) -> Vec<ClientData> {
    let m = Message::parse(reply).unwrap();
    m.options().filter(|o| o.code == OPTION_CLIENT_DATA).map(|o| ClientData::parse(o.data).unwrap()).collect()
}

/// The DUID `dhcpv6d leases` lists for `addr`.
fn stored_duid(lab: &Lab, addr: &str) -> Vec<u8> {
    let out = std::process::Command::new(common::lab::daemon_bin())
        .args(["leases", "--lease-db"])
        .arg(lab.dir.join("leases.db"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.split_whitespace().nth(1) == Some(addr)).unwrap_or_else(|| panic!("{text}"));
    let hex = line.split_whitespace().nth(2).unwrap();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// A relayed client's Solicit with Rapid Commit, IA_NA and IA_PD, through a relay that sent
/// `relay_id` and `remote_id`: the Reply binds both.
fn relayed_solicit(lab: &Lab, n: u8, relay_id: &[u8], remote_id: &[u8]) -> Vec<u8> {
    let duid = [0, 3, 0, 1, 2, 0, 0, 0, 0x77, n];
    let ia = |code: u16| opt(code, &[0, 0, 0, n, 0, 0, 0, 0, 0, 0, 0, 0]);
    let solicit = [&[1, 0, 0, n][..], &opt(1, &duid), &opt(14, &[]), &opt(8, &[0, 0]), &ia(3), &ia(25)].concat();
    let mut level = relay::RelayLevel::new(0, LINK.parse().unwrap(), format!("fe80::77:{n}").parse().unwrap());
    level.relay_id = Some(relay_id.to_vec());
    level.remote_id = Some(remote_id.to_vec());
    level.interface_id = Some(format!("port-{n}").into_bytes());
    let fwd = dhcpv6::wire::relay::emit_chain(&[level], dhcpv6::wire::RelayKind::Forward, &solicit).unwrap();
    let reply = lab.exchange_from(547, &fwd, Duration::from_secs(3)).expect("a Relay-Reply");
    let r = relay::unwrap_reply(&reply).unwrap();
    assert_eq!(r.message().msg_type(), 7, "a Reply (rapid commit)\n{}", lab.log());
    duid.to_vec()
}

fn stats(lab: &Lab) -> HashMap<String, u64> {
    lab.stats()
}

#[test]
fn leasequery_by_address_udp_by_client_id_tcp_and_bulk_for_relayed_clients() {
    let mut lab = Lab::new("lq");
    // The requestor is on the link: any link-local source may ask.
    start(&mut lab, "fe80::/10");
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    let a: Ipv6Addr = addr.parse().unwrap();
    let duid = stored_duid(&lab, &addr);

    // By address over UDP: the client's data, from the store.
    let reply = udp(&lab, &by_address(1, a)).unwrap_or_else(|| panic!("no LEASEQUERY-REPLY\n{}", lab.log()));
    let m = Message::parse(&reply).unwrap();
    assert_eq!((m.msg_type(), m.xid(), status(&m)), (LEASEQUERY_REPLY, [0, 0, 1], None));
    assert_eq!(m.client_id().unwrap(), Some(REQUESTOR_DUID), "the requestor's own ID echoed");
    assert!(m.server_id().unwrap().is_some());
    let data = client_data(&reply);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].client_id, duid, "the client's DUID");
    assert_eq!(data[0].addresses.len(), 1);
    let ia = &data[0].addresses[0];
    assert_eq!(ia.addr, a);
    assert!(ia.valid > 0 && ia.valid <= 7200 && ia.preferred <= ia.valid, "{ia:?}");
    assert!(data[0].clt_time < 60, "last heard just now: {}", data[0].clt_time);

    // By client ID over TCP: the same binding, then LEASEQUERY-DONE.
    let msgs = tcp(&lab, &[leasequery(2, 2, Ipv6Addr::UNSPECIFIED, &opt(1, &duid))]);
    let types: Vec<u8> = msgs.iter().map(|m| m[0]).collect();
    assert_eq!(types, vec![LEASEQUERY_REPLY, LEASEQUERY_DONE], "{msgs:?}\n{}", lab.log());
    let data = client_data(&msgs[0]);
    assert_eq!((data[0].client_id.as_slice(), data[0].addresses[0].addr), (duid.as_slice(), a));

    // Relayed clients: 1 and 2 behind relay A, 3 behind relay B, all on LINK.
    let (relay_a, relay_b) = ([0, 2, 0, 0, 0x0d, 0xe9, b'A'], [0, 2, 0, 0, 0x0d, 0xe9, b'B']);
    let remote = |n: u8| [&3561u32.to_be_bytes()[..], format!("olt-1/{n}").as_bytes()].concat();
    let c1 = relayed_solicit(&lab, 1, &relay_a, &remote(1));
    let c2 = relayed_solicit(&lab, 2, &relay_a, &remote(2));
    let c3 = relayed_solicit(&lab, 3, &relay_b, &remote(3));
    let clients_of = |msgs: &[Vec<u8>]| -> Vec<Vec<u8>> {
        let types: Vec<u8> = msgs.iter().map(|m| m[0]).collect();
        assert_eq!(types.first(), Some(&LEASEQUERY_REPLY), "{types:?}");
        assert_eq!(types.last(), Some(&LEASEQUERY_DONE), "{types:?}");
        assert!(types[1..types.len() - 1].iter().all(|t| *t == LEASEQUERY_DATA), "{types:?}");
        let mut ids: Vec<Vec<u8>> = msgs[..msgs.len() - 1]
            .iter()
            .flat_map(|m| client_data(m))
            .inspect(|d| assert_eq!((d.addresses.len(), d.prefixes.len()), (1, 1), "{d:?}"))
            .map(|d| d.client_id)
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    // Three queries on one connection, each answered in full.
    let msgs = tcp(
        &lab,
        &[
            leasequery(3, 3, Ipv6Addr::UNSPECIFIED, &opt(OPTION_RELAY_ID, &relay_a)),
            leasequery(4, 5, Ipv6Addr::UNSPECIFIED, &opt(OPTION_REMOTE_ID, &remote(3))),
            leasequery(5, 4, LINK.parse().unwrap(), &[]),
        ],
    );
    let split: Vec<Vec<Vec<u8>>> =
        [3u8, 4, 5].iter().map(|x| msgs.iter().filter(|m| m[3] == *x).cloned().collect()).collect();
    assert_eq!(clients_of(&split[0]), sorted(vec![c1.clone(), c2.clone()]), "by relay ID");
    assert_eq!(clients_of(&split[1]), vec![c3.clone()], "by remote ID");
    assert_eq!(clients_of(&split[2]), sorted(vec![c1, c2, c3]), "by link address");

    // Malformed: a query by address without the address is answered MalformedQuery; bytes
    // that are no message are dropped; the daemon goes on answering.
    let reply = udp(&lab, &leasequery(6, 1, Ipv6Addr::UNSPECIFIED, &[])).expect("MalformedQuery");
    assert_eq!(status(&Message::parse(&reply).unwrap()), Some(STATUS_MALFORMED_QUERY));
    assert_eq!(udp(&lab, &[LEASEQUERY, 0, 0]), None);
    assert_eq!(udp(&lab, &[LEASEQUERY, 0, 0, 7, 0, 44, 0, 200, 1]), None);
    let msgs = tcp(&lab, &[vec![LEASEQUERY, 1], leasequery(8, 9, Ipv6Addr::UNSPECIFIED, &[])]);
    assert_eq!(msgs.len(), 1, "the garbage frame dropped, the unknown type refused: {msgs:?}");
    assert_eq!(status(&Message::parse(&msgs[0]).unwrap()), Some(7), "UnknownQueryType");
    // Another server's ID: discarded.
    let other = [&by_address(9, a)[..], &opt(2, &[0, 3, 0, 1, 9, 9, 9, 9, 9, 9])].concat();
    assert_eq!(udp(&lab, &other), None);
    assert!(udp(&lab, &by_address(10, a)).is_some(), "still answering\n{}", lab.log());
    let at_least = |name: &str, n: u64| stats(&lab).get(name).copied().unwrap_or(0) >= n;
    testbed::wait_for(Duration::from_secs(3), || {
        Ok(at_least("user_leasequery_answered", 6)
            && at_least("user_leasequery_refused", 2)
            && at_least("user_drop_leasequery_malformed", 2)
            && at_least("user_drop_unexpected_server_id", 1))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", stats(&lab)));
    assert!(lab.daemon.as_ref().unwrap().is_running(), "{}", lab.log());
}

#[test]
fn a_requestor_outside_leasequery_from_is_refused() {
    let mut lab = Lab::new("lqn");
    start(&mut lab, "2001:db8:ffff::/48");
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let a: Ipv6Addr = env.get("new_ip6_address").unwrap_or_else(|| panic!("no address:\n{out}")).parse().unwrap();
    // UDP: dropped and counted, no reply (a reply to a spoofed source would be reflection).
    assert_eq!(udp(&lab, &by_address(1, a)), None);
    testbed::wait_for(Duration::from_secs(3), || {
        Ok(stats(&lab).get("user_drop_leasequery_not_allowed").copied().unwrap_or(0) >= 1)
    })
    .unwrap();
    // TCP: NotAllowed, then the connection is closed.
    let msgs = tcp(&lab, &[by_address(2, a), by_address(3, a)]);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = Message::parse(&msgs[0]).unwrap();
    assert_eq!((m.msg_type(), status(&m)), (LEASEQUERY_REPLY, Some(STATUS_NOT_ALLOWED)));
    assert!(client_data(&msgs[0]).is_empty());
}

/// The set-up of an access network: clients behind ISC dhcrelay, the relay (2001:db8:1::2) as
/// the requestor, asking the server's global address (2001:db8:1::1) after its clients got
/// leases: by address over UDP (answered from the address it asked), and in bulk over TCP by
/// the link-address dhcrelay puts in its Relay-Forwards (its downstream address).
#[test]
fn the_relay_asks_about_its_clients_by_address_and_by_link() {
    let mut lab = Lab::relayed("lqr");
    let db = lab.dir.join("leases.db");
    lab.start(&[
        "--trusted-relay",
        "2001:db8:1::2",
        "--leasequery-from",
        "2001:db8:1::2",
        "--na-pool",
        "2001:db8:2::100-2001:db8:2::1ff",
        "--pd-pool",
        "2001:db8:200::/40:56",
        "--lease-db",
        db.to_str().unwrap(),
    ]);
    let (env, out) = lab.dhclient(&["-N", "-P"], "cli0");
    let addr = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    let prefix = env.get("new_ip6_prefix").cloned().unwrap_or_else(|| panic!("no prefix:\n{out}"));
    let a: Ipv6Addr = addr.parse().unwrap();
    let duid = stored_duid(&lab, &addr);
    let rel = lab.rel.as_ref().unwrap();

    let reply = lab
        .exchange_in(rel, "up0", ("2001:db8:1::2", 40547), "2001:db8:1::1", &by_address(1, a), Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no LEASEQUERY-REPLY\n{}", lab.log()));
    let data = client_data(&reply);
    assert_eq!(data.len(), 1, "{reply:02x?}");
    assert_eq!((data[0].client_id.as_slice(), data[0].addresses[0].addr), (duid.as_slice(), a));
    assert_eq!(data[0].prefixes.len(), 0, "by address: the binding holding it");

    // By link address: the client's address and prefix, one OPTION_CLIENT_DATA; the relay data
    // it asked for names its downstream link and the client's link-local address.
    let oro = opt(6, &47u16.to_be_bytes());
    let msgs = tcp_in(rel, "up0", "2001:db8:1::1", &[leasequery(2, 4, "2001:db8:2::1".parse().unwrap(), &oro)]);
    let types: Vec<u8> = msgs.iter().map(|m| m[0]).collect();
    assert_eq!(types, vec![LEASEQUERY_REPLY, LEASEQUERY_DONE], "{msgs:02x?}\n{}", lab.log());
    let data = client_data(&msgs[0]);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].client_id, duid);
    assert_eq!(data[0].addresses.iter().map(|i| i.addr).collect::<Vec<_>>(), vec![a]);
    let p = &data[0].prefixes;
    assert_eq!(p.len(), 1);
    assert_eq!(format!("{}/{}", p[0].prefix, p[0].prefix_len), prefix);
    let relay_data = data[0].relay_data.as_ref().expect("asked for in the ORO");
    assert!(relay_data.peer_address.is_unicast_link_local(), "{relay_data:?}");
    let (level, _) = relay::RelayLevel::parse(&relay_data.relay_message).unwrap();
    assert_eq!(level.link_address, "2001:db8:2::1".parse::<Ipv6Addr>().unwrap());
    // Another link: nothing, and DONE.
    let msgs = tcp_in(rel, "up0", "2001:db8:1::1", &[leasequery(3, 4, "2001:db8:9::1".parse().unwrap(), &[])]);
    assert_eq!(msgs.iter().map(|m| m[0]).collect::<Vec<_>>(), vec![LEASEQUERY_REPLY, LEASEQUERY_DONE]);
    assert!(client_data(&msgs[0]).is_empty());
}
