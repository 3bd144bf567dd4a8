//! End to end, lease events: ISC dhclient in a namespace against dhcpv6d with a lease script
//! (from the file's `lease_script`), which sees the grant with dhclient's address and DUID and
//! the release of `dhclient -r`; the log line of each; `ctl leases --json` naming the address;
//! a script that never ends does not keep clients from being bound, and its timeouts are
//! counted; a lease script that cannot run is refused at start.

mod common;

use std::{
    collections::HashMap,
    net::Ipv6Addr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use common::lab::{daemon_bin, Lab};
use serde_json::Value;

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";

/// A lease script that writes each event's environment to a file of its own in `dir`.
fn recording_script(dir: &Path) -> PathBuf {
    let events = dir.join("events");
    std::fs::create_dir_all(&events).unwrap();
    script(dir, &format!("env > {}/event-$$.env", events.display()))
}

fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("lease-script.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Every run's environment the recording script wrote.
fn recorded(dir: &Path) -> Vec<HashMap<String, String>> {
    let Ok(entries) = std::fs::read_dir(dir.join("events")) else { return Vec::new() };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .map(|t| t.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
        .collect()
}

/// Waits (bounded) for a recorded event `kind` of `address`, and returns it.
fn wait_event(lab: &Lab, kind: &str, address: &str) -> HashMap<String, String> {
    let find = || {
        recorded(&lab.dir).into_iter().find(|e| {
            e.get("EVENT").map(String::as_str) == Some(kind) && e.get("ADDRESS").map(String::as_str) == Some(address)
        })
    };
    testbed::wait_for(Duration::from_secs(10), || Ok(find().is_some())).unwrap_or_else(|e| {
        panic!("{e}: no {kind} of {address} reached the script: {:?}\n{}", recorded(&lab.dir), lab.log())
    });
    find().unwrap()
}

fn ctl_leases(lab: &Lab) -> Vec<Value> {
    let sock = lab.state_dir().join("control.sock");
    let out = std::process::Command::new(daemon_bin())
        .args(["ctl", "--socket"])
        .arg(&sock)
        .args(["leases", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ctl leases --json: {}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(v)) => v,
        other => panic!("not a JSON array: {other:?}"),
    }
}

/// The DUID in a dhclient lease file (`default-duid "\000\001...";`, bytes as octal escapes
/// or as themselves), in hex.
fn dhclient_duid(lease_file: &str) -> Option<String> {
    let quoted = lease_file.lines().find_map(|l| l.trim().strip_prefix("default-duid \""))?;
    let mut bytes = Vec::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                let next = chars.next()?;
                if next.is_ascii_digit() {
                    let octal: String = [next, chars.next()?, chars.next()?].iter().collect();
                    bytes.push(u8::from_str_radix(&octal, 8).ok()?);
                } else {
                    bytes.push(u8::try_from(next).ok()?);
                }
            }
            c => bytes.push(u8::try_from(c).ok()?),
        }
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// PIDs of the processes whose argv is exactly `argv` (zombies have none, so are not counted).
fn running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// The value of a metric line `name` (with its labels), if exported.
fn metric(m: &str, name: &str) -> Option<u64> {
    m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The file: a lease script (a top-level key, so before the first table) and srv0's pool.
fn config_with(script: &Path) -> String {
    format!(
        "lease_script = {:?}\n[[interface]]\nname = \"srv0\"\nna_pools = [\"{NA}\"]\n",
        script.display().to_string()
    )
}

#[test]
fn the_lease_script_and_the_log_see_the_grant_and_the_release_of_dhclient() {
    let mut lab = Lab::new("lev");
    let script = recording_script(&lab.dir);
    let cfg = lab.dir.join("dhcpv6d.toml");
    std::fs::write(&cfg, config_with(&script)).unwrap();
    let db = lab.dir.join("leases.db");
    lab.start(&["--config", cfg.to_str().unwrap(), "--lease-db", db.to_str().unwrap(), "--metrics", "[::1]:9547"]);

    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let addr: Ipv6Addr = env
        .get("new_ip6_address")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    let addr_s = addr.to_string();
    let grant = wait_event(&lab, "grant", &addr_s);

    // The script's DUID is the one the store holds for the address, which ctl names.
    let leases = ctl_leases(&lab);
    let l = leases
        .iter()
        .find(|l| l["address"] == addr_s.as_str())
        .unwrap_or_else(|| panic!("ctl leases --json does not name {addr}: {leases:?}"));
    let duid = l["duid"].as_str().unwrap();
    assert_eq!(grant.get("DUID").map(String::as_str), Some(duid), "{grant:?}");
    assert_eq!(grant.get("IAID").and_then(|i| i.parse::<u64>().ok()), l["iaid"].as_u64(), "{grant:?}");
    assert_eq!(grant.get("LINK").map(String::as_str), Some("srv0"));
    assert_eq!(grant.get("KIND").map(String::as_str), Some("na"));
    assert_eq!(grant.get("PREFIX").map(String::as_str), Some(""));
    assert_eq!(grant.get("VALID_LIFETIME").map(String::as_str), Some("7200"), "{grant:?}");
    assert_eq!(grant.get("PREFERRED_LIFETIME").map(String::as_str), Some("3600"), "{grant:?}");
    assert!(grant.get("PEER").is_some_and(|p| p.starts_with("fe80::")), "dhclient's link-local: {grant:?}");
    for k in ["REMOTE_ID", "INTERFACE_ID", "SUBSCRIBER_ID", "CLIENT_MAC", "RELAY_LINK_ADDRESS"] {
        assert_eq!(grant.get(k).map(String::as_str), Some(""), "{k}: not relayed, so empty: {grant:?}");
    }
    // dhclient's own DUID, as its lease file keeps it.
    let lease_file = std::fs::read_to_string(lab.dir.join("dhclient-cli0.leases")).unwrap();
    assert_eq!(dhclient_duid(&lease_file).as_deref(), Some(duid), "{lease_file}");

    // The log line: at info under dhcpv6d::lease, with the address and the DUID.
    let log = lab.log();
    let line = log
        .lines()
        .find(|l| l.contains("dhcpv6d::lease") && l.contains("lease grant") && l.contains(&format!("address={addr_s}")))
        .unwrap_or_else(|| panic!("no log line of the grant:\n{log}"));
    assert!(
        line.contains(&format!("duid={duid}")) && line.contains("link=srv0") && line.contains("valid_lifetime=7200"),
        "{line}"
    );

    // `dhclient -r`: a release event, with no lifetime left.
    let (_, out) = lab.dhclient(&["-N", "-r"], "cli0");
    let release = wait_event(&lab, "release", &addr_s);
    assert_eq!(release.get("DUID").map(String::as_str), Some(duid), "{release:?}\n{out}");
    assert_eq!(release.get("VALID_LIFETIME").map(String::as_str), Some("0"));
    assert!(lab.log().lines().any(|l| l.contains("lease release") && l.contains(&format!("address={addr_s}"))));
    assert!(ctl_leases(&lab).iter().all(|l| l["address"] != addr_s.as_str()), "released");

    let m = lab.metrics();
    assert!(metric(&m, "dhcpv6_lease_script_runs_total").is_some_and(|n| n >= 2), "{m}");

    // A reload to a script that cannot run is refused on its line; one to another script
    // sends the next event there.
    let plain = lab.dir.join("plain.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::write(&cfg, config_with(&plain)).unwrap();
    let out = std::process::Command::new(daemon_bin())
        .args(["ctl", "--socket"])
        .arg(lab.state_dir().join("control.sock"))
        .arg("reload")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && said.contains("dhcpv6d.toml:1") && said.contains("not executable"), "{said}");
    let other = lab.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(&cfg, config_with(&recording_script(&other))).unwrap();
    lab.signal(libc::SIGHUP);
    lab.wait_log("configuration reloaded", Duration::from_secs(10));
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let again = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
    testbed::wait_for(Duration::from_secs(10), || {
        Ok(recorded(&other)
            .iter()
            .any(|e| e.get("EVENT").map(String::as_str) == Some("grant") && e.get("ADDRESS") == Some(&again)))
    })
    .unwrap_or_else(|e| panic!("{e}: the reloaded script saw no grant of {again}: {:?}", recorded(&other)));
    for reason in ["spawn", "exit", "timeout"] {
        assert_eq!(metric(&m, &format!("dhcpv6_lease_script_failures_total{{reason=\"{reason}\"}}")), Some(0), "{m}");
    }
    assert_eq!(metric(&m, "dhcpv6_lease_script_dropped_total"), Some(0), "{m}");
}

#[test]
fn a_lease_script_that_never_ends_keeps_no_client_from_being_bound_and_its_timeouts_are_counted() {
    let mut lab = Lab::new("lsl");
    // A sleep of its own, to find it among the machine's processes.
    let secs = (100_000 + std::process::id() % 100_000).to_string();
    let script = script(&lab.dir, &format!("sleep {secs}"));
    let db = lab.dir.join("leases.db");
    lab.start(&[
        "--na-pool",
        NA,
        "--lease-db",
        db.to_str().unwrap(),
        "--lease-script",
        script.to_str().unwrap(),
        "--lease-script-timeout",
        "1",
        "--metrics",
        "[::1]:9547",
    ]);
    // Two clients (a fresh lease file each: a new DUID), both bound while the script hangs.
    let mut got = Vec::new();
    for _ in 0..2 {
        let _ = std::fs::remove_file(lab.dir.join("dhclient-cli0.leases"));
        std::thread::sleep(Duration::from_millis(1100));
        let (env, out) = lab.dhclient(&["-N"], "cli0");
        let a = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", lab.log()));
        got.push(a);
    }
    assert_ne!(got[0], got[1]);
    // Each run is killed at its timeout, counted, and logged (at most once per 10 s).
    testbed::wait_for(Duration::from_secs(15), || {
        Ok(metric(&lab.metrics(), "dhcpv6_lease_script_failures_total{reason=\"timeout\"}").is_some_and(|n| n >= 2))
    })
    .unwrap_or_else(|e| panic!("{e}: {}", lab.metrics()));
    assert!(lab.log().contains("lease script failed"), "{}", lab.log());
    let out = std::process::Command::new(daemon_bin())
        .args(["ctl", "--socket"])
        .arg(lab.state_dir().join("control.sock"))
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert!(stats["lease_script"]["failed_timeout"].as_u64().is_some_and(|n| n >= 2), "{stats}");
    assert_eq!(stats["lease_script"]["dropped"].as_u64(), Some(0), "{stats}");
    assert!(lab.daemon.as_ref().unwrap().is_running());
    // The killed runs left no sleep behind (its process group went with it).
    testbed::wait_for(Duration::from_secs(5), || Ok(running(&["sleep", &secs]).is_empty()))
        .unwrap_or_else(|e| panic!("{e}: left running: {:?}", running(&["sleep", &secs])));
}

#[test]
fn a_lease_script_that_cannot_run_is_refused_at_start() {
    let lab = Lab::new("lsr");
    let plain = lab.dir.join("not-executable.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = lab.dir.join("dhcpv6d.toml");
    std::fs::write(
        &cfg,
        format!("\nlease_script = {:?}\n[[interface]]\nname = \"srv0\"\n", plain.display().to_string()),
    )
    .unwrap();
    for args in [vec!["--config", cfg.to_str().unwrap()], vec!["--lease-script", plain.to_str().unwrap()]] {
        let out = lab
            .srv
            .cmd(daemon_bin().to_str().unwrap())
            .args(["--iface", "srv0", "--pin-dir"])
            .arg(&lab.pin_dir)
            .arg("--state-dir")
            .arg(lab.state_dir())
            .args(["--resolv-conf", "/nonexistent"])
            .args(&args)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: started with a script it cannot run: {said}");
        assert!(said.contains("not executable"), "{args:?}: {said}");
        if args[0] == "--config" {
            assert!(said.contains("dhcpv6d.toml:2"), "file and line: {said}");
        }
    }
}

/// Through dhcpv6d as relay agent (which adds the Interface-ID and the client's MAC, RFC
/// 6939) to dhcpv6d as server: the grant's script environment names what the relay said.
#[test]
fn a_relayed_grant_carries_the_relay_identities_to_the_script() {
    let mut lab = Lab::relay_agent("lrl");
    let script = recording_script(&lab.dir);
    let cfg = lab.dir.join("server.toml");
    std::fs::write(&cfg, "[[link]]\nname = \"dn0\"\nna_pools = [\"2001:db8:77::100-2001:db8:77::1ff\"]\n").unwrap();
    let db = lab.dir.join("leases.db");
    let (server, server_log) = lab.start_upstream_server(&[
        "--config",
        cfg.to_str().unwrap(),
        "--lease-db",
        db.to_str().unwrap(),
        "--trusted-relay",
        "2001:db8:1::2",
        "--lease-script",
        script.to_str().unwrap(),
    ]);
    lab.start_relay_agent(&["--relay-upstream", "up0", "--relay-downstream", "dn0", "--relay-server", "2001:db8:1::1"]);
    let (env, out) = lab.dhclient(&["-N"], "cli0");
    let server_log = || std::fs::read_to_string(&server_log).unwrap_or_default();
    let addr = env.get("new_ip6_address").cloned().unwrap_or_else(|| panic!("no address:\n{out}\n{}", server_log()));
    let grant = testbed::wait_for(Duration::from_secs(10), || {
        Ok(recorded(&lab.dir).iter().any(|e| e.get("ADDRESS") == Some(&addr)))
    })
    .map(|()| recorded(&lab.dir).into_iter().find(|e| e.get("ADDRESS") == Some(&addr)).unwrap())
    .unwrap_or_else(|e| panic!("{e}: no event of {addr}: {:?}\n{}", recorded(&lab.dir), server_log()));
    let mac = lab.cli.mac("cli0").unwrap();
    let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    assert_eq!(grant.get("EVENT").map(String::as_str), Some("grant"), "{grant:?}");
    assert_eq!(grant.get("LINK").map(String::as_str), Some("dn0"), "{grant:?}");
    assert_eq!(grant.get("INTERFACE_ID").map(String::as_str), Some("646e30"), "\"dn0\" in hex: {grant:?}");
    assert_eq!(grant.get("CLIENT_MAC"), Some(&mac), "{grant:?}");
    assert_eq!(grant.get("RELAY_LINK_ADDRESS").map(String::as_str), Some("2001:db8:2::1"), "{grant:?}");
    assert_eq!(grant.get("PEER").map(String::as_str), Some("2001:db8:1::2"), "the relay: {grant:?}");
    let log = server_log();
    let line = log
        .lines()
        .find(|l| l.contains("lease grant") && l.contains(&format!("address={addr}")))
        .unwrap_or_else(|| panic!("no log line of the grant:\n{log}"));
    assert!(line.contains(&format!("client_mac={mac}")) && line.contains("interface_id=646e30"), "{line}");
    assert!(server.terminate().success());
}
