//! End to end, two boxes on one PostgreSQL database: two dhcpv6d in two namespaces on one
//! bridge, a client namespace on the same bridge, a throwaway PostgreSQL cluster
//! (`testbed::postgres`).
//!
//! ```text
//!   [box A] srv0 --- pa \
//!   [box B] srv0 --- pb  br0 [switch]
//!   [client] cli0 -- pc /
//! ```
//!
//! Both boxes hear every multicast Solicit and both advertise; each client picks one. The
//! test checks per client what it was given (crafted clients, so that each Reply's bindings
//! are known) against the database, runs perfdhcp against both at a modest rate, then kills
//! box A with SIGKILL and has a client bound through A rebind: box B answers with the same
//! address and prefix and routes the prefix through itself.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use common::lab::{daemon_bin, path_str};
use testbed::postgres::PgCluster;
use testbed::{Netns, Proc};

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";
const PD: &str = "2001:db8:100::/40:56";

/// One DHCPv6 client per line of output: Solicit (IA_NA 1, IA_PD 2), take the Advertise of
/// the server the line asks for (else any), Request it, retransmitting up to 5 times (a claim
/// lost to the other box gets no Reply), and print what the Reply gave. Or, with `rebind`,
/// one Rebind naming given bindings, and what its Reply gave and who sent it.
const CLIENT: &str = r#"
import socket, struct, sys, time, os
def show(d): print(' '.join(f'{k}={v}' for k, v in d.items() if v is not None), flush=True)
def opt(c, d): return struct.pack('!HH', c, len(d)) + d
def parse(b):
    opts = {}; i = 4
    while i + 4 <= len(b):
        c, l = struct.unpack('!HH', b[i:i+4]); opts.setdefault(c, []).append(b[i+4:i+4+l]); i += 4 + l
    return b[0], b[1:4], opts
def sub(d):
    out = {}; i = 12
    while i + 4 <= len(d):
        c, l = struct.unpack('!HH', d[i:i+4]); out.setdefault(c, []).append(d[i+4:i+4+l]); i += 4 + l
    return out
def bindings(opts):
    r = {}
    for ia in opts.get(3, []):
        for a in sub(ia).get(5, []):
            pref, valid = struct.unpack('!II', a[16:24])
            if valid > 0: r['addr'] = socket.inet_ntop(socket.AF_INET6, a[:16]); r['addr_preferred'] = pref; r['addr_valid'] = valid
    for ia in opts.get(25, []):
        for p in sub(ia).get(26, []):
            pref, valid = struct.unpack('!II', p[0:8])
            if valid > 0:
                r['prefix'] = socket.inet_ntop(socket.AF_INET6, p[9:25]); r['len'] = p[8]
                r['prefix_preferred'] = pref; r['prefix_valid'] = valid
    return r
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, 25, b'cli0')
s.bind(('::', 546))
idx = socket.if_nametoindex('cli0')
def send(m): s.sendto(m, ('ff02::1:2', 547, 0, idx))
arrived = {}
def recv(xid, until):
    got = []
    while True:
        left = until - time.time()
        if left <= 0: return got
        s.settimeout(left)
        try: d, a = s.recvfrom(65535)
        except socket.timeout: return got
        t, x, o = parse(d)
        if x == xid: got.append((t, o)); arrived.setdefault(xid, time.time())
ia_na = lambda body=b'': opt(3, struct.pack('!III', 1, 0, 0) + body)
ia_pd = lambda body=b'': opt(25, struct.pack('!III', 2, 0, 0) + body)
if sys.argv[1] == 'bind':
    first, count, servers = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(',')
    for n in range(first, first + count):
        duid = bytes.fromhex('00030001020000') + n.to_bytes(3, 'big')
        want = servers[n % len(servers)]
        xid = os.urandom(3)
        send(bytes([1]) + xid + opt(1, duid) + opt(8, b'\0\0') + ia_na() + ia_pd())
        ads = [o for t, o in recv(xid, time.time() + 0.5) if t == 2]
        pick = [o for o in ads if o[2][0].hex() == want] or ads
        line = {'duid': duid.hex(), 'advertised_by': len(ads), 'server': None}
        if pick:
            ad = pick[0]
            req = bytes([3]) + os.urandom(3)
            req = req[:1] + req[1:4] + opt(1, duid) + opt(2, ad[2][0]) + opt(8, b'\0\0') + b''.join(opt(3, x) for x in ad[3]) + b''.join(opt(25, x) for x in ad.get(25, []))
            for attempt in range(5):
                send(req)
                got = [o for t, o in recv(req[1:4], time.time() + 1.0) if t == 7]
                if got: break
            if got:
                line.update(bindings(got[0])); line['server'] = got[0][2][0].hex(); line['attempts'] = attempt + 1
        show(line)
elif sys.argv[1] == 'ir':
    xid = os.urandom(3)
    send(bytes([11]) + xid + opt(1, bytes.fromhex('000300010200000000ff')) + opt(8, b'\0\0'))
    for t, o in recv(xid, time.time() + 1.0): show({'type': t, 'server': o[2][0].hex()})
else:
    duid, addr, prefix, plen = bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    na = ia_na(opt(5, socket.inet_pton(socket.AF_INET6, addr) + struct.pack('!II', 0, 0)))
    pd = ia_pd(opt(26, struct.pack('!IIB', 0, 0, plen) + socket.inet_pton(socket.AF_INET6, prefix)))
    xid = os.urandom(3); m = bytes([6]) + xid + opt(1, duid) + opt(8, b'\0\0') + na + pd
    got = []
    for attempt in range(4):
        send(m)
        got = [o for t, o in recv(xid, time.time() + 1.5) if t == 7]
        if got: break
    line = {'replies': len(got), 'at': f'{arrived.get(xid, 0):.3f}'}
    if got: line.update(bindings(got[0])); line['server'] = got[0][2][0].hex()
    show(line)
"#;

/// The bridge, the three hosts, the database and the two daemons; everything goes on Drop.
struct Boxes {
    // Dropped in field order: daemons first, then namespaces, then the database.
    daemons: [Option<Proc>; 2],
    boxes: [Netns; 2],
    cli: Netns,
    _switch: Netns,
    dir: PathBuf,
    pin_dirs: [PathBuf; 2],
    aux_pins: Vec<PathBuf>,
    cluster: PgCluster,
    url: String,
}

impl Boxes {
    fn new(tag: &str) -> Boxes {
        testbed::require_root().expect("end-to-end tests need root");
        testbed::ensure_bpffs().unwrap();
        testbed::ensure_tools(&[("ip", "iproute2"), ("nsenter", "util-linux"), ("ethtool", "ethtool")]).unwrap();
        let bin = daemon_bin();
        assert!(bin.exists(), "{} missing: run `cargo xtask build`", bin.display());
        let cluster = PgCluster::start().expect("PostgreSQL test cluster");
        let url = cluster.create_database("multibox").unwrap();
        let switch = Netns::new(&format!("{tag}w")).unwrap();
        let boxes = [Netns::new(&format!("{tag}a")).unwrap(), Netns::new(&format!("{tag}b")).unwrap()];
        let cli = Netns::new(&format!("{tag}c")).unwrap();
        switch.run(&["ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]).unwrap();
        testbed::veth_pair(&boxes[0], "srv0", &switch, "pa").unwrap();
        testbed::veth_pair(&boxes[1], "srv0", &switch, "pb").unwrap();
        testbed::veth_pair(&cli, "cli0", &switch, "pc").unwrap();
        for port in ["pa", "pb", "pc"] {
            switch.run(&["ip", "link", "set", port, "master", "br0"]).unwrap();
        }
        switch.run(&["ip", "link", "set", "br0", "up"]).unwrap();
        cli.set_tx_offload("cli0", false).unwrap();
        let dir = std::env::temp_dir().join(format!("dhcpv6-e2e-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // XDP_TX on a veth reaches its peer only if the peer has an XDP program: give the
        // switch ports a pass program, as the single-box lab does the client.
        let mut aux_pins = Vec::new();
        for port in ["pa", "pb"] {
            let pin = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-aux-{tag}-{port}-{}", std::process::id()));
            let out = switch
                .cmd(path_str(&bin))
                .args(["attach-aux", "--iface", port, "--pin", path_str(&pin)])
                .output()
                .unwrap();
            assert!(out.status.success(), "attach-aux: {}", String::from_utf8_lossy(&out.stderr));
            aux_pins.push(pin);
        }
        for ns in &boxes {
            ns.wait_link_local("srv0", Duration::from_secs(10)).unwrap();
        }
        cli.wait_link_local("cli0", Duration::from_secs(10)).unwrap();
        let pin_dirs =
            ["a", "b"].map(|b| PathBuf::from(format!("/sys/fs/bpf/dhcpv6-e2e-{tag}{b}-{}", std::process::id())));
        Boxes { daemons: [None, None], boxes, cli, _switch: switch, dir, pin_dirs, aux_pins, cluster, url }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("dhcpv6d-{}.log", ["a", "b"][i]))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    fn start_with(&mut self, i: usize, extra: &[&str]) {
        let ns = &self.boxes[i];
        let mut cmd = ns.cmd(path_str(&daemon_bin()));
        cmd.args(["--iface", "srv0", "--pin-dir"]).arg(&self.pin_dirs[i]);
        cmd.arg("--state-dir").arg(self.dir.join(format!("state-{i}")));
        cmd.args(["--resolv-conf", "/nonexistent", "--dns", "2001:db8::53", "--na-pool", NA, "--pd-pool", PD]);
        // The test's clients (crafted, perfdhcp) are many CPEs played from one host: no
        // per-MAC bucket in XDP and no per-MAC lease limit, which would stop them by design.
        cmd.args(["--lease-db", &self.url, "--flood-rate", "0", "--max-leases-per-mac", "0"])
            .args(extra)
            .env("RUST_LOG", "info,dhcpv6=debug");
        let log = self.log_path(i);
        self.daemons[i] = Some(ns.spawn_command(cmd, Some(&log)).unwrap());
        let r = testbed::wait_for(Duration::from_secs(20), || {
            if !self.daemons[i].as_ref().is_some_and(|p| p.is_running()) {
                anyhow::bail!("dhcpv6d exited");
            }
            Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("serving"))
        });
        if let Err(e) = r {
            panic!("box {i} did not start: {e:#}\n{}", self.log(i));
        }
    }

    /// The DUID-LL each box answers with (its srv0 MAC), in hex.
    fn duid(&self, i: usize) -> String {
        let mac = self.boxes[i].mac("srv0").unwrap();
        format!("00030001{}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    fn client(&self, args: &[&str]) -> Vec<HashMap<String, String>> {
        let script = self.dir.join("client.py");
        std::fs::write(&script, CLIENT).unwrap();
        let out = self.cli.cmd("timeout").arg("120").arg("python3").arg(&script).args(args).output().unwrap();
        assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                l.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
            })
            .collect()
    }

    /// ISC dhclient -6 -N -P, once (-1), from the client namespace: the address and the
    /// prefix it was given. The dhclient it leaves behind once bound is stopped by its pid.
    fn dhclient(&self) -> (String, String) {
        testbed::ensure_tools(&[("dhclient", "isc-dhcp-client")]).unwrap();
        let env = self.dir.join("dhclient.env");
        let script = self.dir.join("dhclient.sh");
        std::fs::write(&script, format!("#!/bin/sh\nenv | grep -E '^(reason|new_ip6)' >> {}\n", env.display()))
            .unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        let pid = self.dir.join("dhclient.pid");
        let out = self
            .cli
            .cmd("timeout")
            .args(["30", "dhclient", "-6", "-N", "-P", "-1", "-v", "-lf"])
            .arg(self.dir.join("dhclient.leases"))
            .arg("-pf")
            .arg(&pid)
            .arg("-sf")
            .arg(&script)
            .arg("cli0")
            .output()
            .unwrap();
        let _ = testbed::wait_for(Duration::from_secs(2), || Ok(pid.exists()));
        if let Some(pid) = std::fs::read_to_string(&pid).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: plain kill(2) on the PID of the dhclient this call started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let vars: HashMap<String, String> = std::fs::read_to_string(&env)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let get = |k: &str| {
            vars.get(k).cloned().unwrap_or_else(|| {
                panic!("dhclient: no {k}: {vars:?}\n{}{}", String::from_utf8_lossy(&out.stderr), self.logs())
            })
        };
        (get("new_ip6_address"), get("new_ip6_prefix"))
    }

    /// Counters from `dhcpv6d stats` of box `i`.
    fn stats(&self, i: usize) -> HashMap<String, u64> {
        let out = std::process::Command::new(daemon_bin())
            .arg("stats")
            .arg("--pin-dir")
            .arg(&self.pin_dirs[i])
            .arg("--state-dir")
            .arg(self.dir.join(format!("state-{i}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "stats: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    fn psql(&self, sql: &str) -> String {
        self.cluster.psql("multibox", sql).unwrap().trim().to_owned()
    }

    fn logs(&self) -> String {
        let keep = |s: String| s.lines().filter(|l| !l.contains("DEBUG")).collect::<Vec<_>>().join("\n");
        format!("--- box A\n{}\n--- box B\n{}", keep(self.log(0)), keep(self.log(1)))
    }
}

impl Drop for Boxes {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            drop(d.take());
        }
        for p in self.pin_dirs.iter().chain(&self.aux_pins) {
            let _ = std::fs::remove_dir_all(p);
            let _ = std::fs::remove_file(p);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn text(v: &HashMap<String, String>, k: &str) -> Option<String> {
    v.get(k).cloned()
}

#[test]
fn two_boxes_share_the_pools_and_one_answers_the_rebind_of_the_other_ones_client() {
    let mut b = Boxes::new("mb");
    b.start(0);
    b.start(1);
    let (duid_a, duid_b) = (b.duid(0), b.duid(1));
    assert_ne!(duid_a, duid_b, "each box keeps its own DUID by default");

    // A third writer the boxes have not heard of (its rows go in with the change feed's
    // trigger off) holds every fourth address: a box that picks one loses the claim, sends
    // no Reply, learns the holder, and the client's retransmission gets another address.
    b.psql("ALTER TABLE leases DISABLE TRIGGER leases_notify");
    b.psql(
        "INSERT INTO leases (kind, address, prefix_len, duid, iaid, iface, valid_until, preferred_until, state, written_by)
         SELECT 'na', '2001:db8:1::100'::inet + n, 128, '\\x000300010a0a0a0a0a0a', n, 'srv0',
                2000000000, 2000000000, 'bound', 'ghost:1'
         FROM generate_series(0, 255, 4) AS n",
    );
    b.psql("ALTER TABLE leases ENABLE TRIGGER leases_notify");
    let ghosts = b.psql("SELECT count(*) FROM leases WHERE written_by = 'ghost:1'");
    assert_eq!(ghosts, "64");

    // 40 clients, every other one asking for box A's Advertise.
    let servers = format!("{duid_a},{duid_b}");
    let bound = b.client(&["bind", "0", "40", &servers]);
    assert_eq!(bound.len(), 40);
    let mut addrs = HashSet::new();
    let mut prefixes = HashSet::new();
    let mut by_box = [0, 0];
    for c in &bound {
        assert_eq!(text(c, "advertised_by").as_deref(), Some("2"), "both boxes advertise: {c:?}\n{}", b.logs());
        let (Some(addr), Some(prefix), Some(server)) = (text(c, "addr"), text(c, "prefix"), text(c, "server")) else {
            panic!("client not bound: {c:?}\n{}", b.logs());
        };
        assert!(addrs.insert(addr.clone()), "{addr} given twice");
        assert!(prefixes.insert(prefix.clone()), "{prefix} given twice");
        by_box[usize::from(server == duid_b)] += 1;
        // Every binding of a Reply is in the database, for this client.
        let duid = text(c, "duid").unwrap();
        let rows = b.psql(&format!(
            "SELECT kind || ' ' || host(address) || '/' || prefix_len FROM leases WHERE duid = '\\x{duid}' ORDER BY kind"
        ));
        assert_eq!(rows, format!("na {addr}/128\npd {prefix}/56"), "client {duid}");
    }
    assert_eq!(by_box, [20, 20], "each box served its half");
    let retried = bound.iter().filter(|c| text(c, "attempts").is_some_and(|n| n != "1")).count();
    let lost = b.log(0).matches("binding taken by another server").count()
        + b.log(1).matches("binding taken by another server").count();
    assert!(lost > 0 && retried > 0, "some claims ran into the third writer's rows: {lost} lost, {retried} retried");
    assert_eq!(b.psql("SELECT count(*) FROM leases WHERE written_by = 'ghost:1' AND iaid % 4 = 0"), "64", "untouched");

    // ISC dhclient, bound by whichever box's Advertise it took: what it was given is in the
    // database, and was given to no crafted client.
    let (addr, prefix) = b.dhclient();
    assert!(!addrs.contains(&addr), "{addr} given twice");
    let prefix_addr = prefix.split('/').next().unwrap().to_owned();
    assert!(!prefixes.contains(&prefix_addr), "{prefix} given twice");
    let rows = b.psql(&format!(
        "SELECT count(DISTINCT duid) FROM leases WHERE (kind = 'na' AND address = '{addr}') OR (kind = 'pd' AND prefix = '{prefix}')"
    ));
    assert_eq!(rows, "1", "dhclient's address and prefix are stored, for one client\n{}", b.logs());
    let both = b.psql(&format!(
        "SELECT count(*) FROM leases WHERE (kind = 'na' AND address = '{addr}') OR (kind = 'pd' AND prefix = '{prefix}')"
    ));
    assert_eq!(both, "2");

    // perfdhcp against both at a modest rate, for a bounded time.
    testbed::ensure_tools(&[("perfdhcp", "kea-admin")]).unwrap();
    let out = b
        .cli
        .cmd("timeout")
        .args(["60", "perfdhcp", "-6", "-l", "cli0", "-e", "address-and-prefix"])
        .args(["-r", "50", "-n", "200", "-R", "100000", "-p", "10", "-W", "1000000"])
        .output()
        .unwrap();
    let perf = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(perf.contains("sent packets"), "perfdhcp ran:\n{perf}");
    // One row per binding is what the primary key gives; that no binding belongs to two
    // clients the bound clients above showed. Here: no row belongs to a client twice in one
    // IA beyond what it holds (no leaked claims), and every prefix is inside the pool.
    let dup =
        b.psql("SELECT count(*) FROM (SELECT duid, iaid, kind FROM leases GROUP BY 1, 2, 3 HAVING count(*) > 1) d");
    assert_eq!(dup, "0", "an IA with two bindings of one kind:\n{}", b.logs());
    let outside = b.psql("SELECT count(*) FROM leases WHERE kind = 'pd' AND NOT prefix <<= '2001:db8:100::/40'");
    assert_eq!(outside, "0");
    let total: u64 = b.psql("SELECT count(*) FROM leases WHERE written_by <> 'ghost:1'").parse().unwrap();
    assert!(total > 82, "the crafted clients' 80 bindings, dhclient's 2 and perfdhcp's: {total}\n{perf}");

    // Box A dies. A client it bound rebinds (no Server ID): box B answers with the same
    // address and prefix and routes the prefix through itself.
    let victim = bound.iter().find(|c| text(c, "server").as_deref() == Some(&*duid_a)).unwrap();
    let (duid, addr, prefix) =
        (text(victim, "duid").unwrap(), text(victim, "addr").unwrap(), text(victim, "prefix").unwrap());
    let a = b.daemons[0].take().unwrap();
    a.signal(testbed::signal::SIGKILL).unwrap();
    assert!(a.wait_timeout(Duration::from_secs(5)).is_some(), "box A is gone");
    let r = b.client(&["rebind", &duid, &addr, &prefix, "56"]);
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(text(r, "server").as_deref(), Some(&*duid_b), "box B answers: {r:?}\n{}", b.logs());
    assert_eq!(text(r, "addr").as_deref(), Some(&*addr), "{r:?}");
    assert_eq!(text(r, "prefix").as_deref(), Some(&*prefix), "{r:?}");
    let rows = b.psql(&format!("SELECT count(*) FROM leases WHERE duid = '\\x{duid}'"));
    assert_eq!(rows, "2", "still one address and one prefix for the client");
    // Box B took the bindings over by a committed claim (its name is on the rows), and the
    // rows hold them at least as long as its Reply told the client, counted from when the
    // client got it: no box can hand either out again while the client may still use it.
    // Lease times are whole seconds (the decision's second, rounded down), and the Reply
    // leaves after the commit's round trip: hence the 1.5 s.
    let pid_b = b.daemons[1].as_ref().unwrap().pid();
    let at: f64 = text(r, "at").unwrap().parse().unwrap();
    for (kind, what) in [("na", "addr"), ("pd", "prefix")] {
        let row = b.psql(&format!(
            "SELECT written_by || ' ' || valid_until || ' ' || preferred_until FROM leases WHERE duid = '\\x{duid}' AND kind = '{kind}'"
        ));
        let f: Vec<&str> = row.split(' ').collect();
        assert!(f[0].ends_with(&format!(":{pid_b}")), "{kind} taken over by box B (pid {pid_b}): {row}\n{}", b.logs());
        let (valid_until, preferred_until): (f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let valid: f64 = text(r, &format!("{what}_valid")).unwrap().parse().unwrap();
        let preferred: f64 = text(r, &format!("{what}_preferred")).unwrap().parse().unwrap();
        assert!(valid > 0.0 && preferred > 0.0 && preferred <= valid, "{r:?}");
        assert!(at > 0.0, "{r:?}");
        assert!(
            at + valid <= valid_until + 1.5,
            "{kind}: Reply's valid {valid} s at {at} beyond the row's {valid_until}"
        );
        assert!(at + preferred <= preferred_until + 1.5, "{kind}: preferred {preferred} s beyond {preferred_until}");
        // And not cut short: the extension is the link's valid lifetime (7200 s by default).
        assert!(valid_until - at > 7190.0 && valid == 7200.0, "{kind}: {row} / {r:?}");
    }
    let routes = b.boxes[1].run(&["ip", "-6", "route", "show", "proto", "dhcp"]).unwrap();
    assert!(
        routes.contains(&format!("{prefix}/56")) && routes.contains("dev srv0"),
        "box B routes {prefix}/56: {routes:?}\n{}",
        b.logs()
    );
}

/// The database stopped (as a crash: `pg_ctl -m immediate`) and started again while clients
/// bind through both boxes: neither box crashes, no binding a Reply gave is lost (each is in
/// the database afterwards, for its client, and none was given twice), and grants resume
/// once the database is back.
#[test]
fn the_database_stopped_and_started_under_load() {
    let mut b = Boxes::new("mr");
    b.start(0);
    b.start(1);
    let servers = format!("{},{}", b.duid(0), b.duid(1));
    let script = b.dir.join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    // 40 clients one after the other (about 1.5 s each), bounded by timeout(1).
    let mut child = b
        .cli
        .cmd("timeout")
        .arg("150")
        .arg("python3")
        .arg(&script)
        .args(["bind", "100", "40", &servers])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let seen = |lines: &std::sync::Mutex<Vec<String>>| lines.lock().unwrap().len();
    let wait_lines = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen(&lines) < n {
            assert!(std::time::Instant::now() < deadline, "only {} clients done", seen(&lines));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_lines(8);
    b.cluster.stop().unwrap();
    let stopped_at = seen(&lines);
    std::thread::sleep(Duration::from_secs(8));
    b.cluster.start_again().unwrap();
    let restarted_at = seen(&lines);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "the clients ran to the end: {status}");
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 40, "{lines:?}");
    for i in 0..2 {
        assert!(b.daemons[i].as_ref().is_some_and(|p| p.is_running()), "box {i} is still running\n{}", b.logs());
    }

    let parsed: Vec<HashMap<String, String>> = lines
        .iter()
        .map(|l| l.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
        .collect();
    let mut addrs = HashSet::new();
    for c in &parsed {
        let (Some(addr), Some(prefix)) = (text(c, "addr"), text(c, "prefix")) else { continue };
        assert!(addrs.insert(addr.clone()), "{addr} given twice");
        let duid = text(c, "duid").unwrap();
        let rows = b.psql(&format!(
            "SELECT kind || ' ' || host(address) || '/' || prefix_len FROM leases WHERE duid = '\\x{duid}' ORDER BY kind"
        ));
        assert_eq!(
            rows,
            format!("na {addr}/128\npd {prefix}/56"),
            "client {duid}: a Reply's binding is stored\n{}",
            b.logs()
        );
    }
    let bound = |range: &[HashMap<String, String>]| range.iter().filter(|c| text(c, "addr").is_some()).count();
    assert_eq!(bound(&parsed[..stopped_at]), stopped_at, "every client before the stop was bound: {lines:?}");
    assert!(bound(&parsed[restarted_at..]) > 0, "grants resumed after the restart: {lines:?}\n{}", b.logs());
    // A box that found the database gone says so once, and once that it writes again.
    let logs = [b.log(0), b.log(1)];
    let lost = logs.iter().filter(|l| l.contains("lease store cannot write")).count();
    assert!(lost > 0, "the outage was noticed\n{}", b.logs());
    for (i, l) in logs.iter().enumerate() {
        assert_eq!(
            l.matches("lease store cannot write").count(),
            l.matches("lease store writes again").count(),
            "box {i}: every outage ended\n{}",
            b.logs()
        );
    }
}

/// `--load-split`: each box answers the Solicits of its share of DUIDs only (the split
/// function over the boxes whose heartbeat is fresh), and once a box is killed the other
/// answers every Solicit within the stale time.
#[test]
fn load_split_each_box_answers_its_share_and_takes_over_a_silent_ones() {
    let mut b = Boxes::new("ms");
    for i in 0..2 {
        b.start_with(i, &["--load-split", "--heartbeat-stale", "3"]);
    }
    let fresh = || b.psql("SELECT count(*) FROM heartbeats WHERE beat_at > now() - interval '3 s'");
    testbed::wait_for(Duration::from_secs(10), || Ok(fresh() == "2"))
        .unwrap_or_else(|e| panic!("both boxes beat: {e:#}\n{}", b.logs()));
    // A box learns of the other at its next heartbeat (every second here).
    std::thread::sleep(Duration::from_millis(2_500));
    let names: Vec<String> = b.psql("SELECT box FROM heartbeats ORDER BY box").lines().map(str::to_owned).collect();
    let pids = [0, 1].map(|i| b.daemons[i].as_ref().unwrap().pid());
    let duids = [b.duid(0), b.duid(1)];
    let box_of = |name: &str| pids.iter().position(|p| name.ends_with(&format!(":{p}"))).unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    let hex =
        |h: &str| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();

    let servers = format!("{},{}", duids[0], duids[1]);
    let bound = b.client(&["bind", "200", "16", &servers]);
    let mut by_box = [0, 0];
    for c in &bound {
        let duid = hex(&text(c, "duid").unwrap());
        let owner = box_of(dhcpv6_proto::server::split::owner(&duid, &names).unwrap());
        assert_eq!(text(c, "advertised_by").as_deref(), Some("1"), "one box answers: {c:?}\n{}", b.logs());
        assert_eq!(text(c, "server").as_deref(), Some(&*duids[owner]), "the DUID's share: {c:?}");
        assert!(text(c, "addr").is_some(), "bound: {c:?}");
        by_box[owner] += 1;
    }
    assert!(by_box[0] > 0 && by_box[1] > 0, "both boxes have a share: {by_box:?}");
    for i in 0..2 {
        // The counters file is written every few seconds.
        let left = || b.stats(i).get("user_drop_other_share").copied().unwrap_or(0);
        let r = testbed::wait_for(Duration::from_secs(10), || Ok(left() == by_box[1 - i]));
        assert!(r.is_ok(), "box {i} left the other's {} Solicits alone: counted {}", by_box[1 - i], left());
    }

    // Box A dies: within the stale time (3 s) and a heartbeat, box B answers every Solicit.
    let a = b.daemons[0].take().unwrap();
    a.signal(testbed::signal::SIGKILL).unwrap();
    assert!(a.wait_timeout(Duration::from_secs(5)).is_some(), "box A is gone");
    std::thread::sleep(Duration::from_secs(5));
    let after = b.client(&["bind", "300", "8", &servers]);
    for c in &after {
        assert_eq!(text(c, "advertised_by").as_deref(), Some("1"), "{c:?}\n{}", b.logs());
        assert_eq!(text(c, "server").as_deref(), Some(&*duids[1]), "box B took box A's share: {c:?}\n{}", b.logs());
        assert!(text(c, "addr").is_some(), "bound: {c:?}");
    }
    assert!(b.log(1).contains("load split: the boxes alive changed"), "{}", b.logs());
}

/// `--server-duid`: both boxes answer as one server, in the stateful path (Advertise, Reply)
/// and in the XDP fast path's Information-Request replies alike.
#[test]
fn one_server_duid_for_both_boxes() {
    const DUID: &str = "0002000004d2646863707636";
    let mut b = Boxes::new("md");
    b.start_with(0, &["--server-duid", DUID]);
    b.start_with(1, &["--server-duid", "00:02:00:00:04:d2:64:68:63:70:76:36"]);
    let bound = b.client(&["bind", "0", "2", DUID]);
    for c in &bound {
        assert_eq!(text(c, "advertised_by").as_deref(), Some("2"), "{c:?}\n{}", b.logs());
        assert_eq!(text(c, "server").as_deref(), Some(DUID), "{c:?}\n{}", b.logs());
    }
    let replies = b.client(&["ir"]);
    assert_eq!(replies.len(), 2, "both boxes answer the Information-Request: {replies:?}\n{}", b.logs());
    assert!(
        replies.iter().all(|r| text(r, "type").as_deref() == Some("7") && text(r, "server").as_deref() == Some(DUID)),
        "{replies:?}"
    );
    // Answered by the XDP program, not userspace: the fast path carries the configured DUID.
    for i in 0..2 {
        let stats = b.stats(i);
        assert!(stats.get("xdp_answered").is_some_and(|n| *n >= 1), "box {i}: {stats:?}");
    }
}
