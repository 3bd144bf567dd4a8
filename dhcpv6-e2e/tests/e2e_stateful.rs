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

/// Load tests (perfdhcp, the flood) take a core or two each: one at a time, so that one's
/// flood does not turn into another's drops.
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.metrics().contains("dhcpv6_leases 1"))).unwrap();
    let m = lab.metrics();
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
    start_big_with(lab, &[]);
}

fn start_big_with(lab: &mut Lab, extra: &[&str]) {
    let db = lab.dir.join("leases.db");
    let mut args = vec![
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
        // perfdhcp plays thousands of clients from one host: exactly what the per-MAC limit
        // stops (its own tests are in dhcpv6-proto).
        "--max-leases-per-mac",
        "0",
    ];
    args.extend_from_slice(extra);
    lab.start(&args);
}

/// One sample of the daemon's metrics, by its full series text (`name{labels}`).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
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
    let _heavy = heavy();
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

/// Two workers under load from thousands of clients (perfdhcp, address and prefix): both
/// workers get traffic, each multicast message is handled once (not once per worker), no
/// address or prefix goes to two clients, and every one a Reply names is in the store.
#[test]
fn two_workers_share_the_load_and_give_nothing_twice_or_unstored() {
    let _heavy = heavy();
    testbed::ensure_tools(&[("tshark", "tshark")]).unwrap();
    let mut lab = Lab::new("w2");
    start_big_with(&mut lab, &["--workers", "2", "--metrics", "[::1]:9547"]);
    assert!(lab.log().contains("workers=2"), "{}", lab.log());
    let pcap = lab.dir.join("replies.pcap");
    let cap = lab
        .cli
        .spawn(
            &["tshark", "-q", "-i", "cli0", "-f", "udp dst port 546", "-w", pcap.to_str().unwrap()],
            Some(&lab.dir.join("tshark.log")),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let out = perfdhcp(&lab, 500, 2000);
    std::thread::sleep(Duration::from_millis(500));
    cap.terminate();
    let s = sent(&out);
    assert_eq!(s.len(), 2, "perfdhcp reported both exchanges:\n{out}");

    let m = lab.metrics();
    let per_worker: Vec<u64> =
        (0..2).map(|i| metric(&m, &format!("dhcpv6_worker_received_total{{worker=\"{i}\"}}"))).collect();
    assert!(per_worker.iter().all(|n| *n > 0), "both workers received: {per_worker:?}");
    let received = metric(&m, "dhcpv6_userspace_total{event=\"received\"}")
        + metric(&m, "dhcpv6_userspace_total{event=\"ignored_other_iface\"}");
    assert_eq!(per_worker.iter().sum::<u64>(), received, "each datagram reached one worker");
    let advertised = metric(&m, "dhcpv6_messages_total{type=\"solicit\",outcome=\"replied\"}");
    assert!(advertised <= s[0], "{advertised} Advertises for {} Solicits: a multicast answered twice", s[0]);
    assert_eq!(metric(&m, "dhcpv6_userspace_total{event=\"shed_commit_backlog\"}"), 0);

    // (client MAC, address or prefix) of every Reply.
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
            "-E",
            "separator=;",
            "-e",
            "dhcpv6.duidllt.link_layer_addr",
            "-e",
            "dhcpv6.iaaddr.ip",
            "-e",
            "dhcpv6.iaprefix.pref_addr",
        ])
        .unwrap();
    let mut holder: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut granted = Vec::new();
    for line in fields.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split(';');
        let client = f.next().unwrap_or_default().split(',').next().unwrap_or_default().to_owned();
        assert!(!client.is_empty(), "a Reply without a client DUID-LLT: {line}");
        for lease in f.flat_map(|x| x.split(',')).filter(|x| !x.is_empty()) {
            let first = holder.entry(lease.to_owned()).or_insert_with(|| client.clone());
            assert_eq!(first, &client, "{lease} given to two clients");
            granted.push(lease.to_owned());
        }
    }
    assert!(granted.len() >= 2000, "Replies seen: {} leases\n{out}", granted.len());
    let l = leases(&lab);
    let missing: Vec<&String> = granted.iter().filter(|g| !l.contains(&format!(" {g}"))).collect();
    assert!(
        missing.is_empty(),
        "{} of {} told but not stored: {:?}",
        missing.len(),
        granted.len(),
        &missing[..missing.len().min(10)]
    );
    let decisions =
        ["free", "contended"].map(|l| metric(&m, &format!("dhcpv6_engine_decisions_total{{lock=\"{l}\"}}")));
    assert!(decisions.iter().sum::<u64>() >= s[0], "every Solicit was decided: {decisions:?}");
    eprintln!(
        "workers received {per_worker:?}; {} leases in Replies, all stored, none twice; engine lock free/contended {decisions:?}",
        granted.len()
    );
}

#[test]
fn kill_9_loses_no_lease_a_client_was_told_it_has() {
    let _heavy = heavy();
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

/// The lease store's files, gone: the server forgets every lease.
fn forget_leases(lab: &Lab) {
    for f in ["leases.db", "leases.db-wal", "leases.db-shm"] {
        let _ = std::fs::remove_file(lab.dir.join(f));
    }
}

/// A CPE switched from addresses to prefix delegation keeps its lease file: `dhclient -P`
/// then Rebinds with an empty IA_PD, which used to be dropped on every retransmission (no
/// prefix until the old lease ran out). And the other way round: `-N` after `-P`.
#[test]
fn dhclient_n_then_p_and_p_then_n_with_one_lease_file() {
    let mut lab = Lab::new("np");
    start(&mut lab);
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    let (env, out) = lab.dhclient(&["-P"], "cli0");
    let prefix = env
        .get("new_ip6_prefix")
        .cloned()
        .unwrap_or_else(|| panic!("-P after -N got no prefix:\n{out}\n{}", lab.log()));
    assert!(prefix.ends_with("/56") && prefix.starts_with("2001:db8:1"), "{prefix} from {PD}");
    let l = leases(&lab);
    assert!(l.contains(&addr) && l.contains(prefix.trim_end_matches("/56")), "both in the store:\n{l}");
    drop(lab);

    let mut lab = Lab::new("pn");
    start(&mut lab);
    let (env, out) = lab.dhclient(&["-P"], "cli0");
    let prefix = env.get("new_ip6_prefix").cloned().unwrap_or_else(|| panic!("no prefix:\n{out}\n{}", lab.log()));
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr = env
        .get("new_ip6_address")
        .cloned()
        .unwrap_or_else(|| panic!("-N after -P got no address:\n{out}\n{}", lab.log()));
    assert!(in_pool(&addr), "{addr} in {NA}");
    let l = leases(&lab);
    assert!(l.contains(&addr) && l.contains(prefix.trim_end_matches("/56")), "both in the store:\n{l}");
}

/// The server lost its lease database (deleted between runs, daemon restarted). A client
/// that Rebinds for its prefix, and one that Renews its address at T1, are bound again at
/// once, with what they had, instead of after their leases run out.
#[test]
fn a_client_whose_lease_the_server_forgot_is_bound_again_at_its_renew_or_rebind() {
    let mut lab = Lab::new("fgt");
    let cfg = lab.dir.join("dhcpv6d.toml");
    let db = lab.dir.join("leases.db");
    // Short lifetimes, so the client renews within the test: T1 8 s, T2 13 s.
    std::fs::write(
        &cfg,
        format!(
            "[[interface]]\nname = \"srv0\"\nna_pools = [\"{NA}\"]\npd_pools = [\"{PD}\"]\n\
             preferred_lifetime = 16\nvalid_lifetime = 600\n"
        ),
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap(), "--lease-db", db.to_str().unwrap(), "--no-routes"];
    lab.start(&args);

    // Prefix: dhclient -P with a lease file Rebinds at start.
    let (env, out) = lab.dhclient(&["-P"], "cli0");
    let prefix = env.get("new_ip6_prefix").cloned().unwrap_or_else(|| panic!("no prefix:\n{out}\n{}", lab.log()));
    assert!(lab.stop(false).unwrap().success());
    forget_leases(&lab);
    lab.start(&args);
    assert!(!leases(&lab).contains(prefix.trim_end_matches("/56")), "forgotten");
    let (env, out) = lab.dhclient(&["-P"], "cli0");
    assert_eq!(env.get("new_ip6_prefix"), Some(&prefix), "the same prefix back\n{out}\n{}", lab.log());
    assert!(leases(&lab).contains(prefix.trim_end_matches("/56")), "{}", leases(&lab));

    // Address: dhclient -N Confirms at start (the server keeps no binding for a Confirm), then
    // Renews at T1 for a binding the server does not have.
    let lease_file = lab.dir.join("dhclient-na.leases");
    let script = lab.dir.join("noop.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let dhclient = |lab: &Lab, n: u32| {
        let (lf, pf, sf) = (lease_file.clone(), lab.dir.join(format!("dhclient-na-{n}.pid")), script.clone());
        let args = ["timeout", "40", "dhclient", "-6", "-N", "-d", "-v", "-lf", common::lab::path_str(&lf)];
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-pf", common::lab::path_str(&pf), "-sf", common::lab::path_str(&sf), "cli0"]);
        lab.cli.spawn(&all, Some(&lab.dir.join(format!("dhclient-na-{n}.log")))).unwrap()
    };
    let first = dhclient(&lab, 1);
    let mut addr = String::new();
    testbed::wait_for(Duration::from_secs(20), || {
        let l = leases(&lab);
        let found = l.lines().find(|x| x.starts_with("na ")).and_then(|x| x.split_whitespace().nth(1));
        addr = found.unwrap_or_default().to_owned();
        Ok(!addr.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}: no address\n{}", lab.log()));
    first.terminate();
    assert!(lab.stop(false).unwrap().success());
    forget_leases(&lab);
    lab.start(&args);
    let again = dhclient(&lab, 2);
    // Confirm at once, the Renew at T1 (8 s): well before the lease's valid lifetime (600 s).
    let bound = testbed::wait_for(Duration::from_secs(25), || Ok(leases(&lab).contains(&format!(" {addr}"))));
    let log = std::fs::read_to_string(lab.dir.join("dhclient-na-2.log")).unwrap_or_default();
    again.terminate();
    bound.unwrap_or_else(|e| panic!("{e}: {addr} not bound again\n{log}\n{}\n{}", leases(&lab), lab.log()));
    // By the Renew itself: without a binding made from it, the Reply says NoBinding and the
    // client starts over with a Solicit.
    assert!(log.contains("Forming Renew") || log.contains("Forming Rebind"), "it renewed:\n{log}");
    assert!(!log.contains("Forming Solicit"), "bound by its Renew, not by starting over:\n{log}");
}

/// Solicits and Requests with 10,000 DUIDs from one source address, as fast as one process
/// sends them, for at most `secs` seconds and `max` datagrams; prints how many it sent.
const FLOOD: &str = r#"
import socket, struct, sys, time
sid, iface, src, secs, most = bytes.fromhex(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
ifindex = socket.if_nametoindex(iface)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((src, 0, 0, ifindex))
dst = ("ff02::1:2", 547, 0, ifindex)
def opt(code, data):
    return struct.pack("!HH", code, len(data)) + data
n, start = 0, time.time()
while n < most and (n % 1000 or time.time() - start < secs):
    duid = bytes.fromhex("00030001aa") + (n // 2 % 10000).to_bytes(5, "big")
    request = n % 2 == 1
    m = bytes([3 if request else 1]) + (n % 0xffffff).to_bytes(3, "big") + opt(1, duid)
    if request:
        m += opt(2, sid)
    m += opt(3, struct.pack("!III", 1, 0, 0))
    try:
        s.sendto(m, dst)
    except BlockingIOError:
        pass
    n += 1
print(n)
"#;

/// The issue's flood: another host on the link sends Solicits and Requests with 10,000
/// DUIDs as fast as it can. A well-behaved dhclient is still bound, and the flooding host
/// holds no more than the per-MAC limit (it used to hold 954 leases, and dhclient was not
/// bound after 12 s).
#[test]
fn a_flood_of_duids_from_one_host_does_not_starve_the_link() {
    let _heavy = heavy();
    let mut lab = Lab::new("fld");
    start(&mut lab);
    // Our DUID-LL, from srv0's MAC (`ip -br link`: name, state, MAC).
    let link = lab.srv.run(&["ip", "-br", "link", "show", "srv0"]).unwrap();
    let mac = link.split_whitespace().nth(2).unwrap_or_else(|| panic!("no MAC in {link:?}"));
    let server_duid = format!("00030001{}", mac.replace(':', ""));
    // Two hosts on the client's link: dhclient on a bridge over cli0, and the flooder in a
    // namespace of its own behind another port of that bridge.
    for cmd in [
        &["ip", "link", "add", "br0", "type", "bridge"][..],
        &["ip", "link", "set", "cli0", "master", "br0"],
        &["ip", "link", "set", "br0", "up"],
    ] {
        lab.cli.run(cmd).unwrap();
    }
    let host = testbed::Netns::new("fldh").unwrap();
    testbed::veth_pair(&lab.cli, "fla", &host, "flb").unwrap();
    lab.cli.run(&["ip", "link", "set", "fla", "master", "br0"]).unwrap();
    lab.cli.wait_link_local("br0", Duration::from_secs(10)).unwrap();
    let src = host.wait_link_local("flb", Duration::from_secs(10)).unwrap().to_string();
    let script = lab.dir.join("flood.py");
    std::fs::write(&script, FLOOD).unwrap();
    let flood_log = lab.dir.join("flood.log");
    let flood = host
        .spawn(
            &["/usr/bin/python3", common::lab::path_str(&script), &server_duid, "flb", &src, "15", "3000000"],
            Some(&flood_log),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let t = std::time::Instant::now();
    let (env, out) = lab.dhclient(&["-N"], "br0");
    let took = t.elapsed();
    let flooding = flood.is_running();
    flood.terminate();
    let stats = lab.stats();
    let shown = ["xdp_dhcp", "user_received", "user_replied", "user_shed_oldest", "user_limit_leases_per_mac"]
        .map(|k| format!("{k} {}", stats.get(k).copied().unwrap_or(0)));
    eprintln!("dhclient bound in {took:?} under the flood; {shown:?}");
    let addr =
        env.get("new_ip6_address").unwrap_or_else(|| panic!("dhclient not bound under the flood:\n{out}\n{shown:?}"));
    assert!(in_pool(addr));
    assert!(flooding, "the flood lasted while dhclient was being served");
    let l = leases(&lab);
    let flooder =
        l.lines().filter(|x| x.split_whitespace().nth(2).is_some_and(|d| d.starts_with("00030001aa"))).count();
    assert!(flooder <= 8, "the flooding host holds {flooder} leases:\n{l}");
    assert!(stats.get("user_limit_leases_per_mac").copied().unwrap_or(0) > 0, "{shown:?}");
}

/// Sends `payload` from cli0's port 546 to ff02::1:2 at each of `at_secs` (from the first),
/// then listens until `listen_secs`; returns every answer's bytes.
fn send_at_and_collect(lab: &Lab, payload: &[u8], at_secs: &[f64], listen_secs: f64) -> Vec<Vec<u8>> {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let at: Vec<String> = at_secs.iter().map(f64::to_string).collect();
    let script = format!(
        "import socket,time\n\
         s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.setsockopt(socket.SOL_SOCKET,25,b'cli0')\n\
         s.bind(('::',546))\n\
         idx=socket.if_nametoindex('cli0')\n\
         p=bytes.fromhex('{hex}')\n\
         t0=time.monotonic()\n\
         sends=[{}]\n\
         while time.monotonic()-t0<{listen_secs}:\n\
         \x20 now=time.monotonic()-t0\n\
         \x20 while sends and sends[0]<=now:\n\
         \x20   s.sendto(p,('ff02::1:2',547,0,idx)); sends.pop(0)\n\
         \x20 wait=min([x-now for x in sends]+[{listen_secs}-now])\n\
         \x20 s.settimeout(max(wait,0.001))\n\
         \x20 try:\n\
         \x20   d,a=s.recvfrom(65535); print(d.hex())\n\
         \x20 except socket.timeout:\n\
         \x20   pass\n",
        at.join(",")
    );
    let out = lab.cli.cmd("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| (0..l.len()).step_by(2).map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap()).collect())
        .collect()
}

/// A storm's Request waits longer than REQ_TIMEOUT for its commit and its client
/// retransmits it (same transaction ID, RFC 9915 section 15). Here the commit is held up by
/// an operator's sqlite3 holding the database's write lock for 3 s; the client sends its
/// Request and two copies meanwhile. The copies are dropped on arrival (counted): one Reply,
/// one commit (the lease granted once, never renewed by a second decision of the copy).
#[test]
fn a_request_retransmitted_during_a_slow_commit_gets_one_reply_and_one_commit() {
    use dhcpv6_common::wire::{msg, opt as code};
    use std::io::BufRead;
    let mut lab = Lab::new("dup");
    start(&mut lab);
    let duid = [0u8, 3, 0, 1, 0x02, 0x5f, 0, 0, 0, 9];
    let ia_na = common::opt(code::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut solicit = vec![msg::SOLICIT, 0, 0, 1];
    solicit.extend(common::opt(code::CLIENTID, &duid));
    solicit.extend(&ia_na);
    let adv = lab.exchange(&solicit, Duration::from_secs(3)).unwrap_or_else(|| panic!("no Advertise\n{}", lab.log()));
    let adv = dhcpv6::wire::Message::parse(&adv).unwrap();
    let server_id = adv.server_id().unwrap().unwrap().to_vec();
    let mut request = vec![msg::REQUEST, 0x5f, 0x5f, 0x01];
    request.extend(common::opt(code::CLIENTID, &duid));
    request.extend(common::opt(code::SERVERID, &server_id));
    request.extend(&ia_na);

    let db = lab.dir.join("leases.db");
    let mut holder = std::process::Command::new("sqlite3")
        .arg(&db)
        .args(["BEGIN IMMEDIATE;", ".shell echo locked", ".shell sleep 3", "ROLLBACK;"])
        // sqlite3 buffers its own output into a pipe; the shell's echo is written at once.
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sqlite3");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked", "sqlite3 holds the write lock");
    let answers = send_at_and_collect(&lab, &request, &[0.0, 1.0, 2.0], 6.0);
    assert!(holder.wait().unwrap().success());

    let replies: Vec<&Vec<u8>> = answers.iter().filter(|a| a.first() == Some(&msg::REPLY)).collect();
    assert_eq!(replies.len(), 1, "one Reply for the Request and its two copies\n{}", lab.log());
    let m = metrics_after(&lab);
    assert_eq!(metric(&m, "dhcpv6_duplicates_in_flight_total{type=\"request\"}"), 2, "{m}");
    assert_eq!(metric(&m, "dhcpv6_messages_total{type=\"request\",outcome=\"replied\"}"), 1);
    assert_eq!(metric(&m, "dhcpv6_lease_events_total{event=\"granted\"}"), 1);
    assert_eq!(metric(&m, "dhcpv6_lease_events_total{event=\"renewed\"}"), 0, "the copies were not committed again");
    assert_eq!(lab.stats().get("user_duplicate_in_flight_request"), Some(&2), "dhcpv6d stats shows it too");
    let told = dhcpv6::wire::Message::parse(replies[0]).unwrap();
    let ia = dhcpv6::wire::IaNa::parse(told.find(code::IA_NA).unwrap()).unwrap();
    let addr = ia.leases.first().expect("an address").addr;
    assert!(leases(&lab).contains(&addr.to_string()), "{addr} stored:\n{}", leases(&lab));

    // The Reply is out: the same transaction again (its Reply lost, say) is served again.
    let again = send_at_and_collect(&lab, &request, &[0.0], 2.0);
    assert_eq!(again.iter().filter(|a| a.first() == Some(&msg::REPLY)).count(), 1);
}

/// The metrics once the stats file (written every second) has caught up too.
fn metrics_after(lab: &Lab) -> String {
    std::thread::sleep(Duration::from_millis(1500));
    lab.metrics()
}
