//! End to end, the control socket: `dhcpv6d ctl` against a daemon serving ISC dhclient in
//! namespaces (leases, release, reload refused, config-check, stats), and the metrics it adds.

mod common;

use std::{
    net::Ipv6Addr,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    process::Output,
    time::Duration,
};

use common::lab::{daemon_bin, Lab};
use serde_json::Value;

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";
const PD: &str = "2001:db8:100::/40:56";

fn config(na: &str) -> String {
    format!("[[interface]]\nname = \"srv0\"\nna_pools = [\"{na}\"]\npd_pools = [\"{PD}\"]\n")
}

fn ctl(sock: &Path, args: &[&str]) -> Output {
    std::process::Command::new(daemon_bin()).arg("ctl").arg("--socket").arg(sock).args(args).output().unwrap()
}

/// Runs `ctl`, asserts it succeeded, returns its stdout.
fn ctl_ok(sock: &Path, args: &[&str]) -> String {
    let out = ctl(sock, args);
    assert!(out.status.success(), "dhcpv6d ctl {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn leases_json(sock: &Path, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["leases", "--json"];
    args.extend_from_slice(filters);
    let out = ctl_ok(sock, &args);
    match serde_json::from_str(&out) {
        Ok(Value::Array(v)) => v,
        other => panic!("ctl leases --json is not a JSON array: {other:?}\n{out}"),
    }
}

fn store_leases(lab: &Lab) -> String {
    let out = std::process::Command::new(daemon_bin())
        .arg("leases")
        .arg("--lease-db")
        .arg(lab.dir.join("leases.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "dhcpv6d leases: {}", text(&out.stderr));
    text(&out.stdout)
}

fn routes(lab: &Lab) -> String {
    lab.srv.run(&["ip", "-6", "route", "show", "proto", "dhcp"]).unwrap()
}

fn in_pool(a: Ipv6Addr) -> bool {
    let (s, e): (Ipv6Addr, Ipv6Addr) = ("2001:db8:1::100".parse().unwrap(), "2001:db8:1::1ff".parse().unwrap());
    (u128::from(s)..=u128::from(e)).contains(&u128::from(a))
}

#[test]
fn ctl_lists_releases_and_refuses_a_bad_reload_while_the_daemon_serves() {
    let mut lab = Lab::new("ctl");
    let cfg = lab.dir.join("dhcpv6d.toml");
    std::fs::write(&cfg, config(NA)).unwrap();
    let db = lab.dir.join("leases.db");
    lab.start(&["--config", cfg.to_str().unwrap(), "--lease-db", db.to_str().unwrap(), "--metrics", "[::1]:9547"]);
    // The default place: in the state folder.
    let sock = lab.state_dir().join("control.sock");
    let m = std::fs::symlink_metadata(&sock).unwrap_or_else(|e| panic!("{}: {e}\n{}", sock.display(), lab.log()));
    assert!(m.file_type().is_socket());
    assert_eq!(m.permissions().mode() & 0o777, 0o600, "the control socket is root's only");

    let status = ctl_ok(&sock, &["status"]);
    assert!(status.contains("srv0") && status.contains("XDP attached") && status.contains("leases: 0"), "{status}");

    // An address: `ctl leases --json` names it, with what an operator asks for.
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr: Ipv6Addr = env
        .get("new_ip6_address")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    assert!(in_pool(addr), "{addr} in {NA}");
    let all = leases_json(&sock, &[]);
    let l = all
        .iter()
        .find(|l| l["address"] == addr.to_string())
        .unwrap_or_else(|| panic!("ctl leases --json does not name {addr}: {all:?}"));
    assert_eq!(l["kind"], "na");
    assert_eq!(l["link"], "srv0");
    assert_eq!(l["state"], "bound");
    assert!(l["iaid"].is_u64());
    assert!(l["valid_left"].as_u64().is_some_and(|v| v > 0 && v <= 7200), "{l}");
    assert!(l["preferred_left"].as_u64().is_some_and(|p| p > 0 && p <= l["valid_left"].as_u64().unwrap()), "{l}");
    let duid = l["duid"].as_str().unwrap().to_owned();
    assert!(duid.len() >= 8 && duid.bytes().all(|b| b.is_ascii_hexdigit()), "{duid}");
    // Filters.
    let addr_s = addr.to_string();
    assert_eq!(leases_json(&sock, &["--address", &addr_s]).len(), 1);
    assert_eq!(leases_json(&sock, &["--duid", &duid, "--link", "srv0"]).len(), 1);
    assert!(leases_json(&sock, &["--link", "elsewhere"]).is_empty());
    assert!(leases_json(&sock, &["--address", "2001:db8:ffff::1"]).is_empty());
    let table = ctl_ok(&sock, &["leases"]);
    assert!(table.contains(&addr_s) && table.contains(&duid), "{table}");

    // A prefix, and its route: asked with a fresh lease file (with the address's, dhclient
    // would Rebind that binding instead of asking for a prefix).
    let lease_file = lab.dir.join("dhclient-cli0.leases");
    std::fs::remove_file(&lease_file).unwrap();
    let (env, out) = lab.dhclient(&["-P"], "cli0");
    let prefix = env.get("new_ip6_prefix").cloned().unwrap_or_else(|| panic!("no prefix:\n{out}\n{}", lab.log()));
    assert!(routes(&lab).contains(&prefix), "a route to {prefix}: {}", routes(&lab));
    let inside = prefix.split('/').next().unwrap().replace("::", "::1");
    let by_addr = leases_json(&sock, &["--address", &inside]);
    assert_eq!(by_addr.len(), 1, "--address finds the prefix that holds it: {by_addr:?}");
    assert_eq!(by_addr[0]["prefix"], prefix.as_str());
    assert!(by_addr[0]["route"].as_str().is_some_and(|r| r.contains("dev srv0")), "{by_addr:?}");

    // A broken file: `ctl reload` exits non-zero with file, line and reason ...
    std::fs::write(&cfg, config("2001:db8:1::1ff-2001:db8:1::100")).unwrap();
    let out = ctl(&sock, &["reload"]);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(!out.status.success(), "a bad reload is refused: {said}");
    assert!(said.contains("dhcpv6d.toml:3") && said.contains("start is after end"), "{said}");
    // ... and `ctl config-check` says the same, without applying anything.
    let out = ctl(&sock, &["config-check", cfg.to_str().unwrap()]);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(!out.status.success() && said.contains("dhcpv6d.toml:3") && said.contains("start is after end"), "{said}");
    let good = lab.dir.join("good.toml");
    std::fs::write(&good, config(NA)).unwrap();
    assert!(ctl_ok(&sock, &["config-check", good.to_str().unwrap()]).contains("ok"));

    // The daemon still serves, from the configuration in force: a second client (a fresh
    // lease file: dhclient makes a new DUID-LLT, a second on) gets an address of the old pool.
    std::fs::remove_file(&lease_file).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let second: Ipv6Addr = env
        .get("new_ip6_address")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address after the refused reload:\n{out}\n{}", lab.log()));
    assert!(in_pool(second), "{second} in the pool in force");
    let na: Vec<Value> = leases_json(&sock, &[]).into_iter().filter(|l| l["kind"] == "na").collect();
    assert_eq!(na.len(), 2, "two clients, two addresses: {na:?}");
    assert_ne!(na[0]["duid"], na[1]["duid"]);
    assert!(lab.daemon.as_ref().unwrap().is_running());

    // `ctl release` frees the address (store and memory) and the prefix with its route.
    let said = ctl_ok(&sock, &["release", &addr_s]);
    assert!(said.contains(&addr_s), "{said}");
    assert!(leases_json(&sock, &["--address", &addr_s]).is_empty(), "released: {:?}", leases_json(&sock, &[]));
    assert!(!store_leases(&lab).contains(&addr_s), "gone from the store:\n{}", store_leases(&lab));
    assert!(leases_json(&sock, &["--address", &second.to_string()]).len() == 1, "the other client keeps its own");
    ctl_ok(&sock, &["release", &prefix]);
    testbed::wait_for(Duration::from_secs(5), || Ok(!routes(&lab).contains(&prefix)))
        .unwrap_or_else(|e| panic!("{e}: the route to {prefix} stayed: {}", routes(&lab)));
    assert!(!store_leases(&lab).contains(&prefix), "{}", store_leases(&lab));
    let out = ctl(&sock, &["release", &addr_s]);
    assert!(!out.status.success() && text(&out.stderr).contains("no lease holds"), "{}", text(&out.stderr));
    let status = ctl_ok(&sock, &["status"]);
    assert!(status.contains("leases: 1"), "{status}");

    // The counters: messages by type and outcome, lease events, commit latency.
    let stats: Value = serde_json::from_str(&ctl_ok(&sock, &["stats", "--json"])).unwrap();
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v} in {stats}"));
    assert!(n(&stats["messages"]["solicit"]["replied"]) >= 2, "{stats}");
    assert!(n(&stats["messages"]["request"]["replied"]) >= 3, "{stats}");
    assert_eq!(n(&stats["lease_events"]["operator_released"]), 2, "{stats}");
    assert!(n(&stats["lease_events"]["granted"]) >= 3, "{stats}");
    assert!(n(&stats["commit_latency"]["count"]) >= 5, "3 grants and 2 releases: {stats}");
    assert!(n(&stats["xdp"]["frames"]) > 0, "{stats}");
    let m = lab.metrics();
    assert!(m.contains("dhcpv6_messages_total{type=\"request\",outcome=\"replied\"}"), "{m}");
    assert!(m.contains("dhcpv6_lease_events_total{event=\"operator_released\"} 2"), "{m}");
    let count: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("dhcpv6_store_commit_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(count >= 5, "{m}");

    // The socket goes with the daemon.
    assert!(lab.stop(false).unwrap().success());
    assert!(!sock.exists(), "{} left behind", sock.display());
    let out = ctl(&sock, &["status"]);
    assert!(!out.status.success() && text(&out.stderr).contains("cannot reach dhcpv6d"), "{}", text(&out.stderr));
}
