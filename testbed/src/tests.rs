//! Tests of the test bed itself. They need root and FAIL (not skip) without it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::*;

fn setup() {
    require_root().expect("the testbed tests need root (they create network namespaces)");
    ensure_tools(&[
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("ping", "iputils-ping"),
        ("ethtool", "ethtool"),
        ("sysctl", "procps"),
    ])
    .expect("installing the tools the tests need");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn netns_listed(name: &str) -> bool {
    let out = exec::host(&["ip", "netns", "list"]).unwrap();
    out.lines().any(|l| l.split_whitespace().next() == Some(name))
}

fn temp_log(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("testbed-{tag}-{}.log", std::process::id()))
}

#[test]
fn veth_addresses_and_ping() {
    setup();
    let srv = Netns::new("ts").unwrap();
    let cli = Netns::new("tc").unwrap();
    veth_pair(&srv, "srv0", &cli, "cli0").unwrap();
    srv.add_addr("srv0", "fd00:d6::1/64").unwrap();
    cli.add_addr("cli0", "fd00:d6::2/64").unwrap();

    let srv_ll = srv.wait_link_local("srv0", Duration::from_secs(10)).unwrap();
    let cli_ll = cli.wait_link_local("cli0", Duration::from_secs(10)).unwrap();
    assert_ne!(srv_ll, cli_ll);

    cli.run(&["ping", "-6", "-c1", "-W2", &format!("{srv_ll}%cli0")]).unwrap();
    srv.run(&["ping", "-6", "-c1", "-W2", &format!("{cli_ll}%srv0")]).unwrap();
    cli.run(&["ping", "-6", "-c1", "-W2", "fd00:d6::1"]).unwrap();

    let mac = srv.mac("srv0").unwrap();
    assert_ne!(mac, [0; 6]);
    assert_eq!(mac[0] & 1, 0, "unicast MAC");
    assert!(srv.ifindex("srv0").unwrap() > 1);
    assert_eq!(srv.ifindex("lo").unwrap(), 1);

    cli.set_tx_offload("cli0", false).unwrap();
    let k = cli.run(&["ethtool", "-k", "cli0"]).unwrap();
    assert!(k.contains("tx-checksumming: off"), "{k}");

    srv.sysctl("net.ipv6.conf.srv0.forwarding", "1").unwrap();
    assert_eq!(srv.run(&["sysctl", "-n", "net.ipv6.conf.srv0.forwarding"]).unwrap().trim(), "1");
    // The host's own setting is untouched (it is a per-namespace key).
    assert!(Command::new("sysctl")
        .args(["-n", "net.ipv6.conf.srv0.forwarding"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true));

    srv.write_sys_net("srv0", "mtu", "1400").unwrap();
    assert!(srv.run(&["ip", "link", "show", "srv0"]).unwrap().contains("mtu 1400"));

    let err = srv.run(&["ip", "link", "show", "nosuch0"]).unwrap_err();
    assert!(format!("{err:#}").contains("nosuch0"), "{err:#}");
    assert!(veth_pair(&srv, "waytoolonginterface", &cli, "x").is_err());
}

#[test]
fn drop_stops_processes_and_deletes_namespace() {
    setup();
    let ns = Netns::new("td").unwrap();
    let name = ns.name().to_string();
    assert!(netns_listed(&name));

    let log = temp_log("sleep");
    let guarded = ns.spawn(&["sleep", "30"], Some(&log)).unwrap();
    let forgotten = ns.spawn(&["sleep", "30"], None).unwrap();
    let (p1, p2) = (guarded.pid(), forgotten.pid());
    // Without its guard only the namespace can stop this one.
    std::mem::forget(forgotten);
    assert!(alive(p1) && alive(p2));

    // The process really runs in the namespace (nsenter execs, no extra fork;
    // right after spawn it may still be nsenter before its setns).
    let ns_ino = std::fs::metadata(ns.path()).unwrap().ino();
    wait_for(Duration::from_secs(2), || Ok(std::fs::metadata(format!("/proc/{p1}/ns/net"))?.ino() == ns_ino))
        .expect("sleep runs in the namespace");

    let t = Instant::now();
    drop(ns);
    assert!(t.elapsed() < Duration::from_secs(2), "sleep exits on SIGTERM at once");
    assert!(!alive(p1), "pid {p1} still alive after Netns drop");
    assert!(!alive(p2), "pid {p2} still alive after Netns drop");
    assert!(!netns_listed(&name), "namespace {name} still listed");
    assert!(!guarded.is_running());
    let st = guarded.terminate();
    assert_eq!(st.signal(), Some(libc::SIGTERM));
    drop(guarded);
    let _ = std::fs::remove_file(log);
}

#[test]
fn proc_guard() {
    setup();
    let ns = Netns::new("tp").unwrap();

    let log = temp_log("echo");
    let p = ns.spawn(&["sh", "-c", "echo hello; echo oops >&2; exit 3"], Some(&log)).unwrap();
    assert_eq!(p.wait_timeout(Duration::from_secs(5)).unwrap().code(), Some(3));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello\noops\n");
    assert!(p.signal(signal::SIGTERM).is_err(), "no signal to an exited process");
    let _ = std::fs::remove_file(&log);

    let p = ns.spawn(&["sleep", "30"], None).unwrap();
    let pid = p.pid();
    assert!(p.wait_timeout(Duration::from_millis(100)).is_none());
    assert!(p.is_running());
    drop(p);
    assert!(!alive(pid), "Proc drop stops the process");

    // Ignores SIGTERM (inherited through exec): needs the SIGKILL after 2 s.
    let p = ns.spawn(&["sh", "-c", "trap '' TERM; exec sleep 30"], None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(p.terminate().signal(), Some(libc::SIGKILL));
    assert!(t.elapsed() >= TERM_GRACE && t.elapsed() < TERM_GRACE + Duration::from_secs(1));

    let p = ns.spawn(&["sleep", "30"], None).unwrap();
    p.signal(signal::SIGINT).unwrap();
    assert_eq!(p.wait_timeout(Duration::from_secs(2)).unwrap().signal(), Some(libc::SIGINT));
}

#[test]
fn bounded_waits() {
    setup();
    let t = Instant::now();
    let err = run_command(Command::new("sleep").arg("5"), Duration::from_millis(200)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{err:#}");
    assert!(format!("{err:#}").contains("did not finish"));

    let mut n = 0;
    assert!(wait_for(Duration::from_millis(200), || {
        n += 1;
        Ok(false)
    })
    .is_err());
    assert!((3..=6).contains(&n), "polled {n} times");
    assert!(wait_for(Duration::from_secs(1), || anyhow::bail!("boom")).is_err());
    let mut k = 0;
    wait_for(Duration::from_secs(1), || {
        k += 1;
        Ok(k == 3)
    })
    .unwrap();
}

#[test]
fn bpffs_is_mounted() {
    setup();
    ensure_bpffs().unwrap();
    ensure_bpffs().unwrap();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let n = mounts.lines().filter(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf")).count();
    assert!(n >= 1);
}

#[test]
fn cleanup_on_panic() {
    setup();
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        let a = Netns::new("tx").unwrap();
        let b = Netns::new("ty").unwrap();
        veth_pair(&a, "pa0", &b, "pb0").unwrap();
        let p = a.spawn(&["sleep", "30"], None).unwrap();
        tx.send((a.name().to_string(), b.name().to_string(), p.pid())).unwrap();
        panic!("deliberate panic in a test body");
    });
    assert!(r.is_err());
    let (a, b, pid) = rx.recv().unwrap();
    assert!(!alive(pid), "pid {pid} survived the panic");
    assert!(!netns_listed(&a) && !netns_listed(&b), "namespaces survived the panic");
}
