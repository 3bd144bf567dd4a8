//! A server namespace and a client namespace joined by a veth pair, with dhcpv6d running on
//! the server end: the set-up of the end-to-end tests. Everything goes on Drop.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use testbed::{Netns, Proc};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn daemon_bin() -> PathBuf {
    std::env::var_os("DHCPV6D_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/dhcpv6d"))
}

pub struct Lab {
    pub srv: Netns,
    pub cli: Netns,
    /// The relay's namespace and process, for relayed set-ups.
    pub rel: Option<Netns>,
    pub relay: Option<Proc>,
    pub daemon: Option<Proc>,
    pub dir: PathBuf,
    pub pin_dir: PathBuf,
    pub aux_pin: PathBuf,
    pub daemon_log: PathBuf,
}

impl Lab {
    /// `fast_path_client`: give the client end an XDP program (veth delivers XDP_TX only to
    /// a peer that has one) and full checksums (so the fast path can verify them).
    pub fn new(tag: &str) -> Lab {
        testbed::require_root().expect("end-to-end tests need root");
        testbed::ensure_bpffs().unwrap();
        testbed::ensure_tools(&[("ip", "iproute2"), ("nsenter", "util-linux"), ("ethtool", "ethtool")]).unwrap();
        let bin = daemon_bin();
        assert!(bin.exists(), "{} missing: run `cargo xtask build` (or `cargo xtask test`)", bin.display());
        let srv = Netns::new(&format!("{tag}s")).unwrap();
        let cli = Netns::new(&format!("{tag}c")).unwrap();
        testbed::veth_pair(&srv, "srv0", &cli, "cli0").unwrap();
        cli.set_tx_offload("cli0", false).unwrap();
        let id = format!("{}-{}-{}", tag, std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("dhcpv6-e2e-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let aux_pin = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-aux-{id}"));
        let out = cli
            .cmd(bin.to_str().unwrap())
            .args(["attach-aux", "--iface", "cli0", "--pin", aux_pin.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "attach-aux: {}", String::from_utf8_lossy(&out.stderr));
        srv.wait_link_local("srv0", Duration::from_secs(10)).unwrap();
        cli.wait_link_local("cli0", Duration::from_secs(10)).unwrap();
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-e2e-{id}"));
        let daemon_log = dir.join("dhcpv6d.log");
        Lab { srv, cli, rel: None, relay: None, daemon: None, dir, pin_dir, aux_pin, daemon_log }
    }

    /// Client -> ISC dhcrelay -> server: cli0 | dn0 [relay] up0 | srv0, with the server at
    /// 2001:db8:1::1 and the client's link 2001:db8:2::/64.
    pub fn relayed(tag: &str) -> Lab {
        Self::relayed_to(tag, "2001:db8:1::1%up0")
    }

    /// As [`Lab::relayed`], with dhcrelay's upstream given as `-u UPSTREAM` (`up0` alone:
    /// multicast to ff05::1:3, All_DHCP_Servers, out of up0).
    pub fn relayed_to(tag: &str, upstream: &str) -> Lab {
        testbed::ensure_tools(&[("dhcrelay", "isc-dhcp-relay")]).unwrap();
        testbed::require_root().expect("end-to-end tests need root");
        testbed::ensure_bpffs().unwrap();
        let (srv, rel, cli, id, dir) = three_hosts(tag);
        let relay_log = dir.join("dhcrelay.log");
        let relay = rel.spawn(&["dhcrelay", "-6", "-d", "-l", "dn0", "-u", upstream], Some(&relay_log)).unwrap();
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-e2e-{id}"));
        let daemon_log = dir.join("dhcpv6d.log");
        let aux_pin = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-aux-{id}"));
        Lab { srv, cli, rel: Some(rel), relay: Some(relay), daemon: None, dir, pin_dir, aux_pin, daemon_log }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Client -> dhcpv6d in relay-agent mode -> a server on srv0 (started by the test):
    /// cli0 | dn0 [dhcpv6d relay] up0 | srv0, addresses as in `relayed`.
    pub fn relay_agent(tag: &str) -> Lab {
        testbed::require_root().expect("end-to-end tests need root");
        testbed::ensure_bpffs().unwrap();
        let (srv, rel, cli, id, dir) = three_hosts(tag);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-e2e-{id}"));
        let daemon_log = dir.join("dhcpv6d.log");
        let aux_pin = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-aux-{id}"));
        Lab { srv, cli, rel: Some(rel), relay: None, daemon: None, dir, pin_dir, aux_pin, daemon_log }
    }

    /// A second dhcpv6d, serving srv0 in the server namespace, for set-ups where the Lab's own
    /// daemon is the relay agent; waits until it serves. Returns it and its log's path.
    pub fn start_upstream_server(&self, args: &[&str]) -> (Proc, PathBuf) {
        let mut cmd = self.srv.cmd(daemon_bin().to_str().unwrap());
        cmd.args(["--iface", "srv0", "--pin-dir"])
            .arg(self.upstream_pin_dir())
            .arg("--state-dir")
            .arg(self.dir.join("srvstate"));
        cmd.args(["--resolv-conf", "/nonexistent"]).args(args).env("RUST_LOG", "info,dhcpv6=debug");
        let log = self.dir.join("server.log");
        let p = self.srv.spawn_command(cmd, Some(&log)).unwrap();
        testbed::wait_for(Duration::from_secs(20), || {
            Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("serving"))
        })
        .unwrap();
        (p, log)
    }

    /// Starts dhcpv6d in the relay namespace with `args` (relay-agent mode).
    pub fn start_relay_agent(&mut self, args: &[&str]) {
        let rel = self.rel.as_ref().expect("a relay namespace");
        let mut cmd = rel.cmd(daemon_bin().to_str().unwrap());
        cmd.arg("--pin-dir").arg(&self.pin_dir).arg("--state-dir").arg(self.state_dir());
        cmd.args(["--resolv-conf", "/nonexistent"]).args(args).env("RUST_LOG", "info,dhcpv6=debug");
        let proc = rel.spawn_command(cmd, Some(&self.daemon_log)).unwrap();
        self.daemon = Some(proc);
        self.wait_log("relaying", Duration::from_secs(20));
    }

    /// Starts ISC Kea (kea-dhcp6) on srv0 with `subnets` (JSON array text) and stateless
    /// options DNS 2001:db8::99 and domain kea.example.
    pub fn start_kea(&mut self, subnets: &str) -> Proc {
        testbed::ensure_tools(&[("kea-dhcp6", "kea-dhcp6-server")]).unwrap();
        let conf = self.dir.join("kea-dhcp6.json");
        let leases = self.dir.join("kea-leases6.csv");
        std::fs::write(
            &conf,
            format!(
                r#"{{"Dhcp6": {{
                    "interfaces-config": {{"interfaces": ["srv0/2001:db8:1::1"]}},
                    "lease-database": {{"type": "memfile", "persist": true, "name": "{}"}},
                    "option-data": [{{"name": "dns-servers", "data": "2001:db8::99"}},
                                    {{"name": "domain-search", "data": "kea.example"}}],
                    "subnet6": {subnets},
                    "server-id": {{"type": "LL", "persist": false}},
                    "loggers": [{{"name": "kea-dhcp6", "output_options": [{{"output": "stdout"}}], "severity": "INFO"}}]
                }}}}"#,
                leases.display()
            ),
        )
        .unwrap();
        let mut cmd = self.srv.cmd("kea-dhcp6");
        cmd.arg("-c").arg(&conf).env("KEA_PIDFILE_DIR", &self.dir).env("KEA_LOCKFILE_DIR", &self.dir);
        let log = self.dir.join("kea.log");
        let p = self.srv.spawn_command(cmd, Some(&log)).unwrap();
        let r = testbed::wait_for(Duration::from_secs(20), || {
            anyhow::ensure!(p.is_running(), "kea-dhcp6 exited");
            Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("DHCP6_STARTED"))
        });
        if let Err(e) = r {
            panic!(
                "kea did not start: {e:#}
{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        p
    }

    /// Stops the daemon (SIGTERM, or SIGKILL with `crash`) and returns its exit status.
    pub fn stop(&mut self, crash: bool) -> Option<std::process::ExitStatus> {
        let p = self.daemon.take()?;
        if crash {
            p.signal(testbed::signal::SIGKILL).unwrap();
            return p.wait_timeout(Duration::from_secs(5));
        }
        Some(p.terminate())
    }

    /// Starts dhcpv6d on srv0 with `args` and waits until it serves.
    pub fn start(&mut self, args: &[&str]) {
        let mut cmd = self.srv.cmd(daemon_bin().to_str().unwrap());
        cmd.args(["--iface", "srv0", "--pin-dir"]).arg(&self.pin_dir).arg("--state-dir").arg(self.state_dir());
        cmd.args(["--resolv-conf", "/nonexistent"]).args(args).env("RUST_LOG", "info,dhcpv6=debug");
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        // A fresh log per start: wait_log must not see the previous run's lines.
        if self.daemon_log.exists() {
            let _ = std::fs::rename(&self.daemon_log, self.dir.join(format!("dhcpv6d-{n}.log")));
        }
        let proc = self.srv.spawn_command(cmd, Some(&self.daemon_log)).unwrap();
        self.daemon = Some(proc);
        self.wait_log("serving", Duration::from_secs(20));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon_log).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let r = testbed::wait_for(timeout, || {
            if let Some(p) = &self.daemon {
                if !p.is_running() {
                    anyhow::bail!("dhcpv6d exited:\n{}", self.log());
                }
            }
            Ok(self.log().contains(needle))
        });
        if let Err(e) = r {
            panic!("waiting for {needle:?} in the daemon log: {e:#}\n{}", self.log());
        }
    }

    /// One stateless exchange by ISC dhclient; returns the variables it handed its script and
    /// its own output.
    pub fn dhclient_stateless(&self) -> (HashMap<String, String>, String) {
        self.dhclient(&["-S"], "cli0")
    }

    /// One exchange by ISC dhclient with `mode` (`-S`, `-N`, `-P`, `-N -P`, `-r`, ...), with a
    /// lease file of its own per interface so that a later call renews or releases.
    pub fn dhclient(&self, mode: &[&str], ifname: &str) -> (HashMap<String, String>, String) {
        testbed::ensure_tools(&[("dhclient", "isc-dhcp-client")]).unwrap();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let env_file = self.dir.join(format!("dhclient-{n}.env"));
        let script = self.dir.join(format!("dhclient-{n}.sh"));
        std::fs::write(&script, format!("#!/bin/sh\nenv | grep -E '^(reason|new_dhcp6|old_dhcp6|new_ip6|old_ip6|new_max_life|new_preferred)' >> {}\n", env_file.display())).unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
        let lease = self.dir.join(format!("dhclient-{ifname}.leases"));
        let pid = self.dir.join(format!("dhclient-{n}.pid"));
        let out = self
            .cli
            .cmd("timeout")
            .args(["30", "dhclient", "-6"])
            .args(mode)
            .args(["-1", "-v", "-lf"])
            .arg(&lease)
            .arg("-pf")
            .arg(&pid)
            .arg("-sf")
            .arg(&script)
            .arg(ifname)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        // Stateful dhclient stays behind as a daemon once bound: it is ours (its PID is in
        // the pid file we gave it), so stop it.
        // The pid file names the parent first and the daemonized child only once it has
        // forked, just after the parent exits: wait for a PID that is alive, not for the file
        // (a stale or half-written PID left dhclients behind after the suite).
        let live_pid = || {
            let p = std::fs::read_to_string(&pid).ok()?.trim().parse::<i32>().ok()?;
            // SAFETY: signal 0 only asks whether the process exists.
            (unsafe { libc::kill(p, 0) } == 0).then_some(p)
        };
        if mode.contains(&"-N") || mode.contains(&"-P") {
            let _ = testbed::wait_for(Duration::from_secs(2), || Ok(live_pid().is_some()));
        }
        if let Some(pid) = live_pid() {
            // SAFETY: plain kill(2) on the PID of the dhclient this call started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = testbed::wait_for(Duration::from_secs(3), || Ok(unsafe { libc::kill(pid, 0) } != 0));
        }
        let env = parse_env(&std::fs::read_to_string(&env_file).unwrap_or_default());
        (env, text)
    }

    /// Counters from `dhcpv6d stats`, XDP ones prefixed `xdp_`, userspace ones `user_`.
    /// The daemon's Prometheus text, scraped from inside the server namespace (the tests
    /// start it with `--metrics [::1]:9547`).
    pub fn metrics(&self) -> String {
        self.srv
            .run(&[
                "python3",
                "-c",
                "import urllib.request;print(urllib.request.urlopen('http://[::1]:9547/',timeout=5).read().decode())",
            ])
            .unwrap()
    }

    pub fn stats(&self) -> HashMap<String, u64> {
        let out = std::process::Command::new(daemon_bin())
            .arg("stats")
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--state-dir")
            .arg(self.state_dir())
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

    /// Sends one DHCPv6 payload from the client namespace to ff02::1:2 (UDP 546 -> 547) and
    /// returns the first reply's bytes, if any comes within `wait`.
    pub fn exchange(&self, payload: &[u8], wait: Duration) -> Option<Vec<u8>> {
        self.exchange_from(546, payload, wait)
    }

    /// As `exchange`, from UDP port `port` (547 for a relay).
    pub fn exchange_from(&self, port: u16, payload: &[u8], wait: Duration) -> Option<Vec<u8>> {
        self.exchange_in(&self.cli, "cli0", ("::", port), "ff02::1:2", payload, wait)
    }

    /// One payload from namespace `ns`, out of `ifname`, from `src` (address, UDP port) to
    /// `dst` port 547; the first reply's bytes, if any comes within `wait`.
    pub fn exchange_in(
        &self,
        ns: &Netns,
        ifname: &str,
        src: (&str, u16),
        dst: &str,
        payload: &[u8],
        wait: Duration,
    ) -> Option<Vec<u8>> {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let (src, port) = src;
        let script = format!(
            "import socket,sys\n\
             s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.setsockopt(socket.SOL_SOCKET,25,b'{ifname}')\n\
             s.bind(('{src}',{port}))\n\
             idx=socket.if_nametoindex('{ifname}')\n\
             s.sendto(bytes.fromhex('{hex}'),('{dst}',547,0,idx))\n\
             s.settimeout({})\n\
             try:\n  d,a=s.recvfrom(65535); print(d.hex())\n\
             except socket.timeout:\n  print('none')\n",
            wait.as_secs_f64()
        );
        let out = ns.cmd("python3").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if text == "none" {
            return None;
        }
        Some((0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect())
    }

    /// Sends `payload` `n` times back to back from cli0's port 546 to ff02::1:2 (no waiting
    /// for answers): one MAC flooding.
    pub fn send_burst(&self, payload: &[u8], n: usize) {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let script = format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.setsockopt(socket.SOL_SOCKET,25,b'cli0')\n\
             s.bind(('::',546))\n\
             idx=socket.if_nametoindex('cli0')\n\
             p=bytes.fromhex('{hex}')\n\
             for _ in range({n}): s.sendto(p,('ff02::1:2',547,0,idx))\n"
        );
        let out = self.cli.cmd("python3").arg("-c").arg(script).output().unwrap();
        assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn signal(&self, sig: i32) {
        self.daemon.as_ref().unwrap().signal(sig).unwrap();
    }

    /// `dhcpv6d detach --pin-dir` for this lab's daemon; asserts it succeeded, returns its output.
    pub fn detach(&self) -> String {
        let out = detach(&self.pin_dir);
        assert!(out.status.success(), "dhcpv6d detach: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The namespaces where this lab's daemons attach (not the client's: it has the pass program).
    fn server_namespaces(&self) -> Vec<&Netns> {
        std::iter::once(&self.srv).chain(self.rel.as_ref()).collect()
    }

    /// The pin folder of `start_upstream_server`'s daemon.
    pub fn upstream_pin_dir(&self) -> PathBuf {
        PathBuf::from(format!("{}-srv", self.pin_dir.display()))
    }
}

fn detach(pin_dir: &Path) -> std::process::Output {
    std::process::Command::new(daemon_bin()).arg("detach").arg("--pin-dir").arg(pin_dir).output().unwrap()
}

/// The id of the XDP program the kernel has on `ifname` in `ns` (`ip -d link show`), if any.
pub fn xdp_prog(ns: &Netns, ifname: &str) -> Option<u32> {
    let out = ns.run(&["ip", "-d", "link", "show", "dev", ifname]).unwrap();
    xdp_prog_ids(&out).first().copied()
}

/// Every `prog/xdp... id N` in `ip -d link show` output.
pub fn xdp_prog_ids(ip_link: &str) -> Vec<u32> {
    ip_link
        .match_indices("prog/xdp")
        .filter_map(|(at, _)| {
            let rest = &ip_link[at..];
            let id = rest.split_whitespace().skip_while(|w| *w != "id").nth(1)?;
            id.parse().ok()
        })
        .collect()
}

/// Whether any interface in `ns` has an XDP program.
pub fn any_xdp(ns: &Netns) -> bool {
    !xdp_prog_ids(&ns.run(&["ip", "-d", "link", "show"]).unwrap()).is_empty()
}

/// Names in a pin folder (empty when it does not exist).
pub fn pins_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if let Some(p) = self.daemon.take() {
            let status = p.terminate();
            if !panicking {
                assert!(status.success(), "dhcpv6d did not stop cleanly: {status:?}\n{}", self.log());
                // A stop is not a removal: the program stays attached through its pinned link,
                // with its maps, for the next daemon to adopt.
                let pins = pins_in(&self.pin_dir);
                assert!(
                    pins.iter().any(|p| p.starts_with("link_")) && pins.iter().any(|p| p == "layout"),
                    "dhcpv6d removed its pins on SIGTERM: {pins:?}"
                );
                assert!(
                    self.server_namespaces().iter().any(|ns| any_xdp(ns)),
                    "dhcpv6d detached XDP on SIGTERM:\n{}",
                    self.log()
                );
            }
        }
        // Whatever the daemons left, `dhcpv6d detach` removes: every pin and every attachment.
        for dir in [self.upstream_pin_dir(), self.pin_dir.clone()] {
            if dir.exists() {
                let out = detach(&dir);
                if !panicking {
                    assert!(out.status.success(), "dhcpv6d detach: {}", String::from_utf8_lossy(&out.stderr));
                    assert!(!dir.exists(), "dhcpv6d detach left {:?}", pins_in(&dir));
                }
            }
        }
        if !panicking {
            for ns in self.server_namespaces() {
                let links = ns.run(&["ip", "-d", "link", "show"]).unwrap();
                assert!(xdp_prog_ids(&links).is_empty(), "XDP still attached after dhcpv6d detach:\n{links}");
            }
        }
        let _ = std::fs::remove_file(&self.aux_pin);
        if self.pin_dir.exists() {
            for e in std::fs::read_dir(&self.pin_dir).into_iter().flatten().flatten() {
                let _ = std::fs::remove_file(e.path());
            }
            let _ = std::fs::remove_dir(&self.pin_dir);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// srv0 | up0 [relay host] dn0 | cli0, with the server at 2001:db8:1::1 and the client's link
/// 2001:db8:2::/64; returns the namespaces, the lab's id and its folder.
fn three_hosts(tag: &str) -> (Netns, Netns, Netns, String, PathBuf) {
    let srv = Netns::new(&format!("{tag}s")).unwrap();
    let rel = Netns::new(&format!("{tag}r")).unwrap();
    let cli = Netns::new(&format!("{tag}c")).unwrap();
    testbed::veth_pair(&srv, "srv0", &rel, "up0").unwrap();
    testbed::veth_pair(&rel, "dn0", &cli, "cli0").unwrap();
    srv.add_addr("srv0", "2001:db8:1::1/64").unwrap();
    rel.add_addr("up0", "2001:db8:1::2/64").unwrap();
    rel.add_addr("dn0", "2001:db8:2::1/64").unwrap();
    for (ns, ifname) in [(&srv, "srv0"), (&rel, "up0"), (&rel, "dn0"), (&cli, "cli0")] {
        ns.wait_link_local(ifname, Duration::from_secs(10)).unwrap();
    }
    let id = format!("{}-{}-{}", tag, std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let dir = std::env::temp_dir().join(format!("dhcpv6-e2e-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    (srv, rel, cli, id, dir)
}
