//! End to end, stateful: ISC dhclient (-N addresses, -P prefixes) and dhcpcd against dhcpv6d
//! with pools, through restarts and a crash.

mod common;

use std::{net::Ipv6Addr, time::Duration};

use common::lab::Lab;

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";
const PD: &str = "2001:db8:100::/40:56";

fn start(lab: &mut Lab) {
    let db = lab.dir.join("leases.db");
    lab.start(&["--dns", "2001:db8::53", "--na-pool", NA, "--pd-pool", PD, "--lease-db", db.to_str().unwrap()]);
}

fn leases(lab: &Lab) -> String {
    let out = std::process::Command::new(common::lab::daemon_bin())
        .arg("leases")
        .arg("--lease-db")
        .arg(lab.dir.join("leases.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "dhcpv6d leases: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_pool(a: &str) -> bool {
    let a: Ipv6Addr = a.parse().unwrap();
    let (s, e): (Ipv6Addr, Ipv6Addr) = ("2001:db8:1::100".parse().unwrap(), "2001:db8:1::1ff".parse().unwrap());
    (u128::from(s)..=u128::from(e)).contains(&u128::from(a))
}

#[test]
fn dhclient_gets_an_address_keeps_it_across_renew_and_restart_and_releases_it() {
    let mut lab = Lab::new("na");
    start(&mut lab);
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    assert!(in_pool(&addr), "{addr} in {NA}");
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53"));
    assert!(leases(&lab).contains(&addr), "the lease is in the store:\n{}", leases(&lab));

    // Again with the same lease file: dhclient asks for the same binding and gets it.
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    assert_eq!(env.get("new_ip6_address"), Some(&addr), "same address on renewal\n{out}");

    // A restart keeps every lease: the same client gets the same address back.
    assert!(lab.stop(false).unwrap().success());
    start(&mut lab);
    let (env, _) = lab.dhclient(&["-N"], "cli0");
    assert_eq!(env.get("new_ip6_address"), Some(&addr), "same address after a restart");

    // Release frees it.
    let (_, out) = lab.dhclient(&["-N", "-r"], "cli0");
    testbed::wait_for(Duration::from_secs(5), || Ok(!leases(&lab).contains(&addr)))
        .unwrap_or_else(|e| panic!("{e}: release did not free {addr}\n{out}\n{}", leases(&lab)));
}

#[test]
fn dhclient_gets_a_delegated_prefix_and_a_route_to_it() {
    let mut lab = Lab::new("pd");
    start(&mut lab);
    let (env, out) = lab.dhclient(&["-P"], "cli0");
    let prefix = env.get("new_ip6_prefix").cloned().unwrap_or_else(|| panic!("no prefix:\n{out}\n{}", lab.log()));
    assert!(prefix.ends_with("/56"), "{prefix} has the delegated length");
    assert!(prefix.starts_with("2001:db8:1"), "{prefix} from {PD}");
    let routes = lab.srv.run(&["ip", "-6", "route", "show", "proto", "dhcp"]).unwrap();
    assert!(routes.contains(&prefix), "a route to {prefix}: {routes:?}\n{}", lab.log());
    assert!(routes.contains("dev srv0"), "{routes}");
    // The route stays across a restart (the kernel keeps it; reconciliation keeps what is
    // still delegated) and goes with the release.
    assert!(lab.stop(false).unwrap().success());
    start(&mut lab);
    let routes = lab.srv.run(&["ip", "-6", "route", "show", "proto", "dhcp"]).unwrap();
    assert!(routes.contains(&prefix), "{routes}");
    let (_, _) = lab.dhclient(&["-P", "-r"], "cli0");
    testbed::wait_for(Duration::from_secs(5), || {
        Ok(!lab.srv.run(&["ip", "-6", "route", "show", "proto", "dhcp"])?.contains(&prefix))
    })
    .unwrap();
}

#[test]
fn dhcpcd_gets_an_address_and_a_prefix() {
    testbed::ensure_tools(&[("dhcpcd", "dhcpcd-base")]).unwrap();
    let mut lab = Lab::new("dcs");
    start(&mut lab);
    let conf = lab.dir.join("dhcpcd.conf");
    std::fs::write(&conf, "ipv6only\nnoipv6rs\nia_na 1\nia_pd 2 -\noption domain_name_servers\n").unwrap();
    let out = lab
        .cli
        .cmd("timeout")
        .args(["30", "dhcpcd", "-6", "-1", "-T", "-f", conf.to_str().unwrap(), "cli0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let l = leases(&lab);
    assert!(l.contains("na ") && l.contains("pd "), "dhcpcd got both an address and a prefix:\n{l}\n{text}\n{}", lab.log());
}
