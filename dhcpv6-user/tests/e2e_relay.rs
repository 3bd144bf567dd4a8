//! End to end through a real relay: ISC dhclient -> ISC dhcrelay -> dhcpv6d, each in its own
//! network namespace. Relayed messages bypass the fast path (XDP passes them) and are answered
//! by userspace inside Relay-Reply.

mod common;

use std::time::Duration;

use common::lab::Lab;

#[test]
fn dhclient_through_dhcrelay_gets_dns() {
    let mut lab = Lab::relayed("rl");
    lab.start(&["--dns", "2001:db8::53", "--domain", "relay.example"]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53"), "{out}\n{}", lab.log());
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("relay.example."), "{out}");
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.stats().get("user_relayed").copied().unwrap_or(0) >= 1)).unwrap();
    let s = lab.stats();
    assert!(s["user_replied"] >= 1, "{s:?}");
    assert!(s["xdp_pass_other_msg"] + s["xdp_pass_addressing"] >= 1, "XDP passed the Relay-Forward up: {s:?}");
}

#[test]
fn dhcpv6d_as_relay_agent_to_kea() {
    let mut lab = Lab::relay_agent("ra");
    let _kea = lab.start_kea(r#"[{"id": 1, "subnet": "2001:db8:2::/64", "pools": [{"pool": "2001:db8:2::100-2001:db8:2::1ff"}]}]"#);
    lab.start_relay_agent(&["--relay-upstream", "up0", "--relay-downstream", "dn0", "--relay-server", "2001:db8:1::1"]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::99"), "{out}\n{}", lab.log());
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("kea.example."), "{out}");
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.stats().get("user_relayed_down").copied().unwrap_or(0) >= 1)).unwrap();
    assert!(lab.stats()["user_relayed_up"] >= 1);
}
