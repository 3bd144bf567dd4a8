//! End to end through a real relay: ISC dhclient -> ISC dhcrelay -> dhcpv6d, each in its own
//! network namespace. Relayed messages bypass the fast path (XDP passes them) and are answered
//! by userspace inside Relay-Reply.

mod common;

use std::time::Duration;

use common::lab::Lab;

/// dhcrelay's source towards the server (up0's address in `Lab::relayed`), and our relay
/// agent's in `Lab::relay_agent`: the relay the server trusts.
const DHCRELAY: &str = "2001:db8:1::2";
const RELAY_AGENT: &str = "2001:db8:1::2";

#[test]
fn dhclient_through_dhcrelay_gets_dns() {
    let mut lab = Lab::relayed("rl");
    lab.start(&["--dns", "2001:db8::53", "--domain", "relay.example", "--trusted-relay", DHCRELAY]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53"), "{out}\n{}", lab.log());
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("relay.example."), "{out}");
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.stats().get("user_relayed").copied().unwrap_or(0) >= 1))
        .unwrap();
    let s = lab.stats();
    assert!(s["user_replied"] >= 1, "{s:?}");
    assert!(s["xdp_pass_other_msg"] + s["xdp_pass_addressing"] >= 1, "XDP passed the Relay-Forward up: {s:?}");
}

/// A relay that multicasts to All_DHCP_Servers (ff05::1:3, dhcrelay's default upstream) is
/// heard: the daemon joins that group on the interfaces it serves.
#[test]
fn dhcrelay_multicasting_to_all_dhcp_servers_is_heard() {
    let mut lab = Lab::relayed_to("rm", "up0");
    lab.start(&["--dns", "2001:db8::53", "--domain", "relay.example", "--trusted-relay", DHCRELAY]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53"), "{out}\n{}", lab.log());
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.stats().get("user_relayed").copied().unwrap_or(0) >= 1))
        .unwrap();
}

#[test]
fn dhcpv6d_as_relay_agent_to_kea() {
    let mut lab = Lab::relay_agent("ra");
    let _kea = lab.start_kea(
        r#"[{"id": 1, "subnet": "2001:db8:2::/64", "pools": [{"pool": "2001:db8:2::100-2001:db8:2::1ff"}]}]"#,
    );
    lab.start_relay_agent(&["--relay-upstream", "up0", "--relay-downstream", "dn0", "--relay-server", "2001:db8:1::1"]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::99"), "{out}\n{}", lab.log());
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("kea.example."), "{out}");
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.stats().get("user_relayed_down").copied().unwrap_or(0) >= 1))
        .unwrap();
    assert!(lab.stats()["user_relayed_up"] >= 1);
}

/// Two relays in a chain, both directions through our code: ISC dhclient -> ISC dhcrelay ->
/// dhcpv6d (relay agent: forwards a Relay-Forward one hop further) -> dhcpv6d (server:
/// unwraps two levels, answers, wraps two levels).
#[test]
fn two_relays_in_a_chain() {
    use testbed::Netns;
    testbed::ensure_tools(&[("dhcrelay", "isc-dhcp-relay")]).unwrap();
    // srv0 | b1 [our relay] b0 | a1 [dhcrelay] a0 | cli0, plus the Lab's own server namespace.
    let mut lab = Lab::relay_agent("ch");
    let r1 = Netns::new("chr1").unwrap();
    let cli2 = Netns::new("chc2").unwrap();
    testbed::veth_pair(lab.rel.as_ref().unwrap(), "b0", &r1, "a1").unwrap();
    testbed::veth_pair(&r1, "a0", &cli2, "cli0").unwrap();
    lab.rel.as_ref().unwrap().add_addr("b0", "2001:db8:3::1/64").unwrap();
    r1.add_addr("a1", "2001:db8:3::2/64").unwrap();
    r1.add_addr("a0", "2001:db8:4::1/64").unwrap();
    for (ns, i) in [(&r1, "a0"), (&r1, "a1"), (&cli2, "cli0")] {
        ns.wait_link_local(i, Duration::from_secs(10)).unwrap();
    }
    let _dhcrelay = r1
        .spawn(&["dhcrelay", "-6", "-d", "-l", "a0", "-u", "2001:db8:3::1%a1"], Some(&lab.dir.join("dhcrelay.log")))
        .unwrap();
    // Our server on srv0 (the Lab's server namespace), our relay in the middle.
    let (server, server_log) = lab.start_upstream_server(&[
        "--dns",
        "2001:db8::5353",
        "--domain",
        "chain.example",
        "--trusted-relay",
        RELAY_AGENT,
    ]);
    // dhcrelay's address on b0's link: the relay below ours, trusted by ours.
    lab.start_relay_agent(&[
        "--relay-upstream",
        "up0",
        "--relay-downstream",
        "b0",
        "--relay-server",
        "2001:db8:1::1",
        "--trusted-relay",
        "2001:db8:3::2",
    ]);
    // The client behind dhcrelay: reuse the Lab's dhclient runner by swapping namespaces.
    let real_cli = std::mem::replace(&mut lab.cli, cli2);
    let (env, out) = lab.dhclient_stateless();
    let cli2 = std::mem::replace(&mut lab.cli, real_cli);
    assert_eq!(
        env.get("new_dhcp6_name_servers").map(String::as_str),
        Some("2001:db8::5353"),
        "{out}\nrelay:\n{}\nserver:\n{}",
        lab.log(),
        std::fs::read_to_string(&server_log).unwrap_or_default()
    );
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("chain.example."));
    let status = server.terminate();
    assert!(status.success(), "server stopped cleanly");
    drop((cli2, r1));
}

/// A lightweight relay's Relay-Forward (RFC 6221: link-address ::, Interface-ID) crafted by
/// hand: the Relay-Reply comes back to port 547 with the Interface-ID echoed and the
/// peer-address copied; nesting past the hop limit is dropped and counted.
#[test]
fn crafted_relay_forward_is_answered_and_bombs_are_dropped() {
    use common::{client_id, message, oro};
    use dhcpv6::server::relay;
    let mut lab = Lab::new("cf");
    // The client end plays a lightweight relay on the link: RFC 6221's trusted interface.
    lab.start(&["--dns", "2001:db8::53", "--trusted-relay", "fe80::/10"]);
    let inner = message(11, &[client_id(14), oro(&[23])]);
    let peer: std::net::Ipv6Addr = "fe80::1234".parse().unwrap();
    let mut level = relay::RelayLevel::new(0, std::net::Ipv6Addr::UNSPECIFIED, peer);
    level.interface_id = Some(b"port-7".to_vec());
    let fwd = dhcpv6::wire::relay::emit_chain(&[level], dhcpv6::wire::RelayKind::Forward, &inner).unwrap();
    let reply = lab.exchange_from(547, &fwd, Duration::from_secs(3)).expect("a Relay-Reply");
    let r = relay::unwrap_reply(&reply).unwrap();
    assert_eq!(r.levels.len(), 1);
    assert_eq!(r.levels[0].peer_address, peer, "peer-address copied");
    assert_eq!(r.levels[0].interface_id.as_deref(), Some(&b"port-7"[..]), "Interface-ID echoed");
    let m = r.message();
    assert_eq!(m.msg_type(), 7);
    assert_eq!(m.find(23), Some(&"2001:db8::53".parse::<std::net::Ipv6Addr>().unwrap().octets()[..]));

    // Ten levels of Relay-Forward: one past what nine relays can produce.
    let mut bomb = inner.clone();
    for _ in 0..10 {
        let mut w = dhcpv6::wire::Writer::relay(12, 0, std::net::Ipv6Addr::UNSPECIFIED, peer);
        w.option(9, &bomb);
        bomb = w.finish().unwrap();
    }
    assert_eq!(lab.exchange_from(547, &bomb, Duration::from_secs(2)), None);
    testbed::wait_for(Duration::from_secs(3), || {
        Ok(lab.stats().iter().any(|(k, v)| k.starts_with("user_drop_relay") && *v >= 1))
    })
    .unwrap();
}

/// One relay (one source address and port) sending unicast, as dhcrelay does: the kernel's
/// SO_REUSEPORT hash of the 4-tuple would put all of it on one worker; the daemon's group
/// program spreads it by the relayed client's peer-address, exactly as `steer::worker_of`
/// says, and every Relay-Forward is answered once.
#[test]
fn one_relay_unicasting_is_spread_over_the_workers_by_peer_address() {
    use common::{client_id, message, oro};
    use dhcpv6::server::relay;
    let mut lab = Lab::new("rw2");
    lab.start(&["--dns", "2001:db8::53", "--trusted-relay", "fe80::/10", "--workers", "2", "--metrics", "[::1]:9547"]);
    let server = lab.srv.wait_link_local("srv0", Duration::from_secs(10)).unwrap();
    let to = format!("{server}%cli0");
    let inner = message(11, &[client_id(14), oro(&[23])]);
    let mut expected = [0u64; 2];
    for i in 1u16..=16 {
        let peer = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0x200, 0xff, 0xfe00, i);
        let level = relay::RelayLevel::new(0, std::net::Ipv6Addr::UNSPECIFIED, peer);
        let fwd = dhcpv6::wire::relay::emit_chain(&[level], dhcpv6::wire::RelayKind::Forward, &inner).unwrap();
        expected[dhcpv6::steer::worker_of(&fwd, 2) as usize] += 1;
        let reply = lab.exchange_in(&lab.cli, "cli0", ("::", 547), &to, &fwd, Duration::from_secs(3));
        let reply = reply.unwrap_or_else(|| panic!("no Relay-Reply for peer {peer}\n{}", lab.log()));
        assert_eq!(relay::unwrap_reply(&reply).unwrap().levels[0].peer_address, peer);
    }
    assert!(expected.iter().all(|n| *n > 0), "the peers fall on both workers: {expected:?}");
    let m = lab.metrics();
    let got: Vec<u64> = (0..2)
        .map(|i| {
            let series = format!("dhcpv6_worker_received_total{{worker=\"{i}\"}} ");
            m.lines().find_map(|l| l.strip_prefix(&series)?.trim().parse().ok()).unwrap_or_else(|| panic!("{m}"))
        })
        .collect();
    assert_eq!(got, expected, "each worker got the Relay-Forwards its key names");
}

/// Our relay agent to our server: the Relay-Forward carries the client's MAC (RFC 6939),
/// learnt by the XDP program on the downstream interface, and the Interface-ID.
#[test]
fn relay_agent_adds_client_link_layer_address() {
    let mut lab = Lab::relay_agent("ll");
    let (server, server_log) = lab.start_upstream_server(&["--dns", "2001:db8::53", "--trusted-relay", RELAY_AGENT]);
    lab.start_relay_agent(&["--relay-upstream", "up0", "--relay-downstream", "dn0", "--relay-server", "2001:db8:1::1"]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53"), "{out}\n{}", lab.log());
    let mac = lab.cli.mac("cli0").unwrap();
    let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let log = std::fs::read_to_string(&server_log).unwrap_or_default();
    let line =
        log.lines().find(|l| l.contains("relayed message")).unwrap_or_else(|| panic!("no relayed message:\n{log}"));
    assert!(line.contains(&format!("client_mac={mac}")), "the client's MAC {mac} reached the server: {line}");
    assert!(line.contains("interface_id=Some(\"dn0\")"), "{line}");
    assert!(line.contains("2001:db8:2::1"), "link-address of the downstream interface: {line}");
    assert!(server.terminate().success());
}

#[test]
fn relay_agent_rewrites_dns_in_relayed_replies() {
    let mut lab = Lab::relay_agent("rw");
    let _kea = lab.start_kea(r#"[{"id": 1, "subnet": "2001:db8:2::/64"}]"#);
    lab.start_relay_agent(&[
        "--relay-upstream",
        "up0",
        "--relay-downstream",
        "dn0",
        "--relay-server",
        "2001:db8:1::1",
        "--relay-rewrite-dns",
        "2001:db8::77",
    ]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::77"), "{out}\n{}", lab.log());
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("kea.example."), "the rest untouched");
}

/// IA_NA and IA_PD through ISC dhcrelay: the relay's link-address (2001:db8:2::1) selects the
/// pool whose /64 holds it.
#[test]
fn addresses_and_prefixes_through_dhcrelay() {
    let mut lab = Lab::relayed("rs");
    let db = lab.dir.join("leases.db");
    lab.start(&[
        "--dns",
        "2001:db8::53",
        "--trusted-relay",
        DHCRELAY,
        "--na-pool",
        "2001:db8:2::100-2001:db8:2::1ff",
        "--pd-pool",
        "2001:db8:200::/40:56",
        "--lease-db",
        db.to_str().unwrap(),
    ]);
    let (env, out) = lab.dhclient(&["-N", "-P"], "cli0");
    let addr = env.get("new_ip6_address").unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    assert!(addr.starts_with("2001:db8:2::1"), "{addr}");
    let prefix = env.get("new_ip6_prefix").unwrap_or_else(|| panic!("no prefix:\n{out}"));
    assert!(prefix.ends_with("/56") && prefix.starts_with("2001:db8:2"), "{prefix}");
    // The route to a relayed client's prefix goes via the relay.
    let routes = lab.srv.run(&["ip", "-6", "route", "show", "proto", "dhcp"]).unwrap();
    assert!(routes.contains(prefix.as_str()) && routes.contains("via 2001:db8:1::2"), "{routes}");
}

/// Interface-ID based link selection: the [[link]] named like the relay's Interface-ID
/// serves the client even though no pool holds the relay's link-address.
#[test]
fn interface_id_selects_the_link() {
    let mut lab = Lab::relay_agent("ii");
    let cfg = lab.dir.join("server.toml");
    std::fs::write(&cfg, "[defaults]\ndns = [\"2001:db8::53\"]\n[[link]]\nname = \"dn0\"\nna_pools = [\"2001:db8:77::100-2001:db8:77::1ff\"]\n").unwrap();
    let db = lab.dir.join("leases.db");
    let (server, server_log) = lab.start_upstream_server(&[
        "--config",
        cfg.to_str().unwrap(),
        "--lease-db",
        db.to_str().unwrap(),
        "--trusted-relay",
        RELAY_AGENT,
    ]);
    lab.start_relay_agent(&["--relay-upstream", "up0", "--relay-downstream", "dn0", "--relay-server", "2001:db8:1::1"]);
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr = env.get("new_ip6_address").unwrap_or_else(|| {
        panic!("no address:\n{out}\n{}\n{}", lab.log(), std::fs::read_to_string(&server_log).unwrap_or_default())
    });
    assert!(addr.starts_with("2001:db8:77::1"), "{addr} from the link named by the Interface-ID");
    assert!(server.terminate().success());
}

/// A `[[link]]` with options of its own: a stateless client behind the relay on that link
/// (chosen by the relay's link-address) gets the link's DNS and domains, not the served
/// interface's.
#[test]
fn a_relayed_link_with_its_own_options_answers_with_them() {
    let mut lab = Lab::relayed("lo");
    let cfg = lab.dir.join("server.toml");
    std::fs::write(
        &cfg,
        "[defaults]\ndns = [\"2001:db8::53\"]\ndomains = [\"defaults.example\"]\n\
         [[interface]]\nname = \"srv0\"\ndns = [\"2001:db8:1::53\"]\ndomains = [\"srv0.example\"]\n\
         [[link]]\nname = \"client-link\"\nna_pools = [\"2001:db8:2::100-2001:db8:2::1ff\"]\n\
         dns = [\"2001:db8:2::53\"]\n\
         [[link.option]]\ncode = 100\nhex = \"0a0b0c\"\n",
    )
    .unwrap();
    let db = lab.dir.join("leases.db");
    // dhcrelay's Relay-Forward is served only from a trusted relay (`server::trust`).
    lab.start(&["--config", cfg.to_str().unwrap(), "--lease-db", db.to_str().unwrap(), "--trusted-relay", DHCRELAY]);
    let (env, out) = lab.dhclient_stateless();
    let log = lab.log();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8:2::53"), "{out}\n{log}");
    assert_eq!(
        env.get("new_dhcp6_domain_search").map(String::as_str),
        Some("defaults.example."),
        "the link is over [defaults], not over srv0: {out}"
    );
    // A stateful client on the same link: its address from the link's pool, its options the
    // link's.
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr = env.get("new_ip6_address").unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    assert!(addr.starts_with("2001:db8:2::1"), "{addr}");
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8:2::53"), "{out}");
}

/// Finding 1: a host on the server's link sends its own Relay-Forward (made-up Interface-ID
/// and Remote-ID): dropped unanswered and counted, and the first one logged naming the flag,
/// while dhcrelay's traffic (trusted by `--trusted-relay`) is served.
#[test]
fn untrusted_relay_forward_is_dropped_while_dhcrelay_is_served() {
    use common::{client_id, message, oro};
    use dhcpv6::server::relay;
    let mut lab = Lab::relayed("ut");
    lab.start(&["--dns", "2001:db8::53", "--trusted-relay", DHCRELAY]);
    let inner = message(11, &[client_id(14), oro(&[23])]);
    let mut level = relay::RelayLevel::new(0, "2001:db8:2::1".parse().unwrap(), "fe80::1234".parse().unwrap());
    level.interface_id = Some(b"someone-elses-port".to_vec());
    level.remote_id = Some(vec![0, 0, 0, 9, 1, 2]);
    let fwd = dhcpv6::wire::relay::emit_chain(&[level], dhcpv6::wire::RelayKind::Forward, &inner).unwrap();
    let rel = lab.rel.as_ref().unwrap();
    // From up0's link-local address (to ff02::1:2) and by unicast to the server: both
    // untrusted (only 2001:db8:1::2 is). Port 0: dhcrelay holds 547 in that namespace.
    let ll = lab.exchange_in(rel, "up0", ("::", 0), "ff02::1:2", &fwd, Duration::from_secs(2));
    assert_eq!(ll, None, "no answer to a forged Relay-Forward\n{}", lab.log());
    // Another prefix, and removed after: dhcrelay must keep sourcing from 2001:db8:1::2.
    let spoof = ["2001:db8:66::1/128", "dev", "up0"];
    rel.run(&[&["ip", "-6", "addr", "add"][..], &spoof, &["nodad"]].concat()).unwrap();
    let global = lab.exchange_in(rel, "up0", ("2001:db8:66::1", 0), "2001:db8:1::1", &fwd, Duration::from_secs(2));
    rel.run(&[&["ip", "-6", "addr", "del"][..], &spoof].concat()).unwrap();
    assert_eq!(global, None, "no answer to a forged Relay-Forward from a global address");
    testbed::wait_for(Duration::from_secs(3), || {
        Ok(lab.stats().get("user_drop_untrusted_relay").copied().unwrap_or(0) >= 2)
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", lab.stats()));
    let log = lab.log();
    assert_eq!(log.matches("--trusted-relay").count(), 1, "logged once, naming the flag:\n{log}");
    assert_eq!(lab.stats()["user_relayed"], 0, "nothing was taken apart");

    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53"), "{out}\n{}", lab.log());
    // Userspace counters reach their file once a second.
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.stats().get("user_replied").copied().unwrap_or(0) >= 1))
        .unwrap();
    let s = lab.stats();
    assert!(s["user_relayed"] >= 1 && s["user_replied"] >= 1, "dhcrelay served: {s:?}");
    assert_eq!(s["user_drop_untrusted_relay"], 2, "{s:?}");
}

/// Findings 1 and 4, relay-agent side: a Relay-Reply naming a peer across the Internet, one
/// carrying an unknown type, and one from a host that is not the configured server are not
/// sent on (no reflector from port 547); a client's own Relay-Forward is not passed up. Each
/// is counted under its own name.
#[test]
fn relay_agent_trusts_only_its_server_and_its_link() {
    use common::{client_id, message, oro};
    use dhcpv6::{
        server::relay::RelayLevel,
        wire::{relay::emit_chain, RelayKind},
    };
    let mut lab = Lab::relay_agent("rt");
    lab.start_relay_agent(&["--relay-upstream", "up0", "--relay-downstream", "dn0", "--relay-server", "2001:db8:1::1"]);
    let relay_reply = |kind: RelayKind, peer: &str, inner: &[u8]| {
        let mut l = RelayLevel::new(0, "2001:db8:2::1".parse().unwrap(), peer.parse().unwrap());
        l.interface_id = Some(b"dn0".to_vec());
        emit_chain(&[l], kind, inner).unwrap()
    };
    let reply = message(7, &[client_id(14)]);
    // Binding the server's address needs it past DAD; a /128 of another prefix plays an
    // impostor on the upstream link.
    lab.srv.run(&["ip", "-6", "addr", "add", "2001:db8:66::1/128", "dev", "srv0", "nodad"]).unwrap();
    testbed::wait_for(Duration::from_secs(10), || {
        Ok(lab.srv.run(&["ip", "-6", "addr", "show", "dev", "srv0", "tentative"])?.trim().is_empty())
    })
    .unwrap();
    let wait = Duration::from_secs(1);
    let from_server = ("2001:db8:1::1", 0);
    let victim = relay_reply(RelayKind::Reply, "2001:db8:99::1", &reply);
    assert_eq!(lab.exchange_in(&lab.srv, "srv0", from_server, "2001:db8:1::2", &victim, wait), None);
    let unknown = relay_reply(RelayKind::Reply, "fe80::9", &[200, 1, 2, 3, 0xff]);
    assert_eq!(lab.exchange_in(&lab.srv, "srv0", from_server, "2001:db8:1::2", &unknown, wait), None);
    let good = relay_reply(RelayKind::Reply, "fe80::9", &reply);
    let impostor = ("2001:db8:66::1", 0);
    assert_eq!(lab.exchange_in(&lab.srv, "srv0", impostor, "2001:db8:1::2", &good, wait), None);
    let forged = relay_reply(RelayKind::Forward, "fe80::9", &message(11, &[client_id(14), oro(&[23])]));
    assert_eq!(lab.exchange_in(&lab.cli, "cli0", ("::", 0), "ff02::1:2", &forged, wait), None);
    let names = [
        "user_drop_agent_peer_off_link",
        "user_drop_agent_unknown_type",
        "user_drop_agent_unexpected_server",
        "user_drop_agent_untrusted_relay",
    ];
    testbed::wait_for(Duration::from_secs(3), || {
        let s = lab.stats();
        Ok(names.iter().all(|n| s.get(*n).copied().unwrap_or(0) >= 1))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}\n{}", lab.stats(), lab.log()));
    let s = lab.stats();
    for n in names {
        assert_eq!(s[n], 1, "{n}: {s:?}");
    }
    assert_eq!((s["user_relayed_down"], s["user_relayed_up"]), (0, 0), "{s:?}");
    assert_eq!(lab.log().matches("--trusted-relay").count(), 1, "the forged Relay-Forward logged once");
}
