//! End to end, stateful: ISC dhclient (-N addresses, -P prefixes) and dhcpcd against dhcpv6d
//! with pools, through restarts and a crash.

mod common;

use std::{net::Ipv6Addr, time::Duration};

use common::lab::Lab;

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";
const PD: &str = "2001:db8:100::/40:56";

fn start(lab: &mut Lab) {
    let db = lab.dir.join("leases.db");
    lab.start(&[
        "--dns",
        "2001:db8::53",
        "--na-pool",
        NA,
        "--pd-pool",
        PD,
        "--lease-db",
        db.to_str().unwrap(),
        "--metrics",
        "[::1]:9547",
    ]);
}

fn metrics(lab: &Lab) -> String {
    lab.srv
        .run(&[
            "python3",
            "-c",
            "import urllib.request;print(urllib.request.urlopen('http://[::1]:9547/',timeout=5).read().decode())",
        ])
        .unwrap()
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
    testbed::wait_for(Duration::from_secs(3), || Ok(metrics(&lab).contains("dhcpv6_leases 1"))).unwrap();
    let m = metrics(&lab);
    assert!(m.contains("dhcpv6_pool_used{link=\"default\",pool=\"2001:db8:1::100-2001:db8:1::1ff\"} 1"), "{m}");
    assert!(m.contains("dhcpv6_pool_size{link=\"default\",pool=\"2001:db8:1::100-2001:db8:1::1ff\"} 256"), "{m}");

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
    // A machine restart loses the kernel's routes: the daemon puts them back from the
    // store at start, before the client renews (its T1 is far off).
    assert!(lab.stop(false).unwrap().success());
    lab.srv.run(&["ip", "-6", "route", "flush", "proto", "dhcp"]).unwrap();
    assert!(!lab.srv.run(&["ip", "-6", "route", "show", "proto", "dhcp"]).unwrap().contains(&prefix));
    start(&mut lab);
    let routes = lab.srv.run(&["ip", "-6", "route", "show", "proto", "dhcp"]).unwrap();
    assert!(
        routes.contains(&prefix) && routes.contains("dev srv0"),
        "route restored from the store: {routes}\n{}",
        lab.log()
    );
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
    assert!(
        l.contains("na ") && l.contains("pd "),
        "dhcpcd got both an address and a prefix:\n{l}\n{text}\n{}",
        lab.log()
    );
}

fn start_big(lab: &mut Lab) {
    let db = lab.dir.join("leases.db");
    lab.start(&[
        "--na-pool",
        "2001:db8:1::1:0-2001:db8:1::ffff:ffff",
        "--pd-pool",
        PD,
        "--lease-db",
        db.to_str().unwrap(),
        "--no-routes",
        // perfdhcp is one MAC at hundreds of messages a second: a flood to the XDP buckets,
        // which would drop all but ten a second of it.
        "--flood-rate",
        "0",
    ]);
}

/// Runs perfdhcp -6 in the client namespace; returns its output.
fn perfdhcp(lab: &Lab, rate: u32, exchanges: u32) -> String {
    testbed::ensure_tools(&[("perfdhcp", "kea-admin")]).unwrap();
    let out = lab
        .cli
        .cmd("timeout")
        .args(["60", "perfdhcp", "-6", "-l", "cli0", "-e", "address-and-prefix"])
        // -W: wait 1 s after the last packet, or the last exchange counts as a drop.
        .args(["-r", &rate.to_string(), "-n", &exchanges.to_string(), "-R", "100000", "-p", "30", "-W", "1000000"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// perfdhcp's "drops:" figures, one per exchange type (SA, RR).
fn drops(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("drops: "))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect()
}

fn sent(out: &str) -> Vec<u64> {
    out.lines().filter_map(|l| l.trim().strip_prefix("sent packets: ")).filter_map(|v| v.trim().parse().ok()).collect()
}

#[test]
fn perfdhcp_address_and_prefix_at_a_fixed_rate_without_drops() {
    let mut lab = Lab::new("pf");
    start_big(&mut lab);
    let out = perfdhcp(&lab, 500, 2000);
    let d = drops(&out);
    let s = sent(&out);
    assert_eq!(d.len(), 2, "perfdhcp reported both exchanges:\n{out}");
    assert!(s.iter().all(|n| *n >= 2000), "perfdhcp sent its exchanges: {s:?}\n{out}");
    assert!(
        d.iter().all(|n| *n == 0),
        "no drops: {d:?}\n{out}\n{:?}\n{}",
        lab.stats(),
        lab.log().lines().filter(|l| !l.contains("DEBUG")).collect::<Vec<_>>().join("\n")
    );
    let l = leases(&lab);
    assert!(l.lines().filter(|x| x.starts_with("na ")).count() >= 2000, "{} leases", l.lines().count());
}

#[test]
fn kill_9_loses_no_lease_a_client_was_told_it_has() {
    testbed::ensure_tools(&[("tshark", "tshark")]).unwrap();
    let mut lab = Lab::new("k9");
    start_big(&mut lab);
    let pcap = lab.dir.join("replies.pcap");
    let cap = lab
        .cli
        .spawn(
            &["tshark", "-q", "-i", "cli0", "-f", "udp dst port 546", "-w", pcap.to_str().unwrap()],
            Some(&lab.dir.join("tshark.log")),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // perfdhcp in the background; the daemon dies under it.
    let perf = lab
        .cli
        .spawn(
            &[
                "timeout",
                "30",
                "perfdhcp",
                "-6",
                "-l",
                "cli0",
                "-e",
                "address-and-prefix",
                "-r",
                "1000",
                "-n",
                "20000",
                "-R",
                "100000",
            ],
            Some(&lab.dir.join("perfdhcp.log")),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    lab.stop(true).expect("daemon killed");
    std::thread::sleep(Duration::from_millis(500));
    perf.terminate();
    cap.terminate();
    let fields = lab
        .cli
        .run(&[
            "tshark",
            "-r",
            pcap.to_str().unwrap(),
            "-Y",
            "dhcpv6.msgtype == 7",
            "-T",
            "fields",
            "-e",
            "dhcpv6.iaaddr.ip",
            "-e",
            "dhcpv6.iaprefix.pref_addr",
        ])
        .unwrap();
    let granted: Vec<String> =
        fields.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    assert!(granted.len() > 100, "the clients saw Replies before the crash: {}", granted.len());
    // Restart on the same store: every address and prefix a client saw in a Reply is there.
    start_big(&mut lab);
    let l = leases(&lab);
    let missing: Vec<&String> = granted.iter().filter(|g| !l.contains(&format!(" {g}"))).collect();
    assert!(
        missing.is_empty(),
        "{} of {} granted leases lost after kill -9: {:?}",
        missing.len(),
        granted.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!("{} leases granted before kill -9, all in the store after the restart", granted.len());
}

#[test]
fn sighup_reloads_pools_and_keeps_leases() {
    let mut lab = Lab::new("hpl");
    let cfg = lab.dir.join("dhcpv6d.toml");
    let db = lab.dir.join("leases.db");
    let pool = |range: &str| format!("[[interface]]\nname = \"srv0\"\nna_pools = [\"{range}\"]\n");
    std::fs::write(&cfg, pool(NA)).unwrap();
    lab.start(&["--config", cfg.to_str().unwrap(), "--lease-db", db.to_str().unwrap()]);
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let old = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    assert!(in_pool(&old), "{old} in {NA}");

    // The operator renumbers the link (another /64, so that the old address is no longer on
    // link) and sends SIGHUP: no restart.
    let moved: (Ipv6Addr, Ipv6Addr) = ("2001:db8:2::100".parse().unwrap(), "2001:db8:2::1ff".parse().unwrap());
    std::fs::write(&cfg, pool(&format!("{}-{}", moved.0, moved.1))).unwrap();
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("pools and reservations reloaded", Duration::from_secs(5));
    // The old lease is still held (a client was told it has it) ...
    assert!(leases(&lab).contains(&old), "{}", leases(&lab));
    // ... and the same client, coming back, is moved to the new range.
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let new: Ipv6Addr = env
        .get("new_ip6_address")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address after the reload:\n{out}\n{}", lab.log()));
    assert!((u128::from(moved.0)..=u128::from(moved.1)).contains(&u128::from(new)), "{new} in the new range\n{out}");

    // A backwards range is refused with file, line and reason; the pools in force stay.
    std::fs::write(&cfg, pool("2001:db8:2::1ff-2001:db8:2::100")).unwrap();
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("configuration refused", Duration::from_secs(5));
    let log = lab.log();
    assert!(log.contains("dhcpv6d.toml:3") && log.contains("start is after end"), "{log}");
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let kept: Ipv6Addr = env.get("new_ip6_address").and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{out}"));
    assert!(
        (u128::from(moved.0)..=u128::from(moved.1)).contains(&u128::from(kept)),
        "{kept}: the new range still serves"
    );

    // Pools overlapping another link's are refused when the file is read, on the line of the
    // pool written last (line 6, the [[link]]'s), and the pools in force stay.
    let overlapping = "[[link]]\nname = \"olt-1\"\nna_pools = [\"2001:db8:2::180-2001:db8:2::2ff\"]\n";
    std::fs::write(&cfg, pool(&format!("{}-{}", moved.0, moved.1)) + overlapping).unwrap();
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("address ranges overlap", Duration::from_secs(5));
    let log = lab.log();
    assert!(log.contains("dhcpv6d.toml:6: address ranges overlap"), "{log}");
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let kept: Ipv6Addr = env.get("new_ip6_address").and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{out}"));
    assert!(
        (u128::from(moved.0)..=u128::from(moved.1)).contains(&u128::from(kept)),
        "{kept}: the new range still serves"
    );
}
