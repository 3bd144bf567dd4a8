//! The servers on srv0, each pinned to the server CPU: dhcpv6d (fast path, userspace,
//! stateful), Kea, dnsmasq, and the bench's own XDP programs (MAC swap, drop, pass).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use testbed::{Netns, Proc};

use super::topo::{Topo, ALL_CPUS, ALL_CPUS_WORKERS, SRV_CPU, SRV_IF};
use super::Paths;
use crate::{build, interrupt};

pub const DNS: &str = "2001:db8::53";
/// The Interface-ID of `dhcpv6-bench gen --relayed`'s Relay-Forwards (`template::RELAYED_INTERFACE_ID`).
pub const RELAYED_INTERFACE_ID: &str = "bench-port";
pub const DOMAIN: &str = "bench.example";
/// Stateful pools, the same for dhcpv6d and Kea.
pub const NA_POOL: (&str, &str) = ("2001:db8:1::1:0", "2001:db8:1::ffff:ffff");
pub const PD_POOL: (&str, u8, u8) = ("2001:db8:8000::", 33, 56);
/// The storm's relayed link: the relay's link-address, its Interface-ID (dhcpv6d's
/// `[[link]]` name) and the link's pools (Kea selects its subnet by the link-address).
pub const RELAY_LINK: &str = "2001:db8:2::1";
pub const RELAY_SUBNET: &str = "2001:db8:2::/64";
pub const RELAY_IFID: &str = "storm-relay";
pub const RELAY_NA_POOL: (&str, &str) = ("2001:db8:2::1:0", "2001:db8:2::ffff:ffff");
pub const RELAY_PD_POOL: (&str, u8, u8) = ("2001:db8:4000::", 34, 56);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The bench's drop program: the generator's own ceiling.
    Drop,
    /// The bench's MAC swap + XDP_TX: the physical limit.
    MacSwap,
    /// dhcpv6d, Information-Request answered in XDP.
    FastPath,
    /// dhcpv6d --no-fast-path.
    Userspace,
    /// dhcpv6d with pools (stateful, every lease durable before its Reply).
    Stateful,
    /// `Userspace` and `Stateful` with every CPU (`ALL_CPUS`) and a worker on each: against
    /// the one-CPU, one-worker rows above, what the workers add.
    UserspaceCores,
    StatefulCores,
    /// `StatefulCores` with one worker: the same CPUs, so against it what the second worker
    /// adds apart from the second CPU's share of the generator's time.
    StatefulCoresOneWorker,
    /// `Stateful` with `--xdp-renew`: Renews of pre-extended leases answered in XDP.
    StatefulXdpRenew,
    Kea,
    Dnsmasq,
    /// `dhcpv6-bench responder`: a stateful server with no reply cost (no engine, no store),
    /// against which the SARR generator shows its own ceiling.
    Responder,
}

impl Peer {
    pub fn label(self) -> &'static str {
        match self {
            Peer::Drop => "generator ceiling (srv0 drops in XDP)",
            Peer::MacSwap => "bare MAC-swap XDP_TX",
            Peer::FastPath => "dhcpv6d XDP fast path",
            Peer::Userspace => "dhcpv6d userspace (--no-fast-path)",
            Peer::Stateful => "dhcpv6d stateful",
            Peer::UserspaceCores => "dhcpv6d userspace (--no-fast-path), --workers 2 on CPUs 0-1",
            Peer::StatefulCores => "dhcpv6d stateful, --workers 2 on CPUs 0-1",
            Peer::StatefulCoresOneWorker => "dhcpv6d stateful, --workers 1 on CPUs 0-1",
            Peer::StatefulXdpRenew => "dhcpv6d stateful --xdp-renew (Renew in XDP)",
            Peer::Kea => "Kea (kea-dhcp6, 1 thread)",
            Peer::Dnsmasq => "dnsmasq",
            Peer::Responder => "SARR generator ceiling (dhcpv6-bench responder, no reply cost)",
        }
    }

    pub fn userspace(self) -> bool {
        matches!(
            self,
            Peer::Userspace
                | Peer::Stateful
                | Peer::UserspaceCores
                | Peer::StatefulCores
                | Peer::StatefulCoresOneWorker
                | Peer::StatefulXdpRenew
                | Peer::Kea
                | Peer::Dnsmasq
                | Peer::Responder
        )
    }

    /// dhcpv6d with pools.
    pub fn stateful(self) -> bool {
        matches!(self, Peer::Stateful | Peer::StatefulCores | Peer::StatefulCoresOneWorker | Peer::StatefulXdpRenew)
    }

    /// dhcpv6d on every CPU, a worker on each.
    pub fn all_cores(self) -> bool {
        matches!(self, Peer::UserspaceCores | Peer::StatefulCores | Peer::StatefulCoresOneWorker)
    }

    /// The `--workers` of a dhcpv6d row: one per CPU it is given, but for the one-worker
    /// control row.
    fn workers(self) -> &'static str {
        if self.all_cores() && self != Peer::StatefulCoresOneWorker {
            ALL_CPUS_WORKERS
        } else {
            "1"
        }
    }
}

/// A running peer: its processes (stopped on drop, in reverse order) and what to clean.
pub struct Running {
    /// The server process whose memory is reported (none for the bench programs).
    pub server_pid: Option<u32>,
    pub command: String,
    pub log: PathBuf,
    procs: Vec<Proc>,
    pins: Option<PathBuf>,
    /// dhcpv6d with `--xdp-renew`: a renew row waits for its entries before measuring.
    pub xdp_renew: bool,
}

impl Running {
    /// Peak resident memory of the server (VmHWM), in kB.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let pid = self.server_pid?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    /// Current resident memory (VmRSS), kB.
    pub fn rss_kb(&self) -> Option<u64> {
        let pid = self.server_pid?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn check_running(&self) -> Result<()> {
        for p in &self.procs {
            if !p.is_running() {
                bail!("`{}` exited; last lines of its log:\n{}", p.command_line(), tail(p.log(), 15));
            }
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        while let Some(p) = self.procs.pop() {
            p.terminate();
        }
        if let Some(dir) = &self.pins {
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    let _ = fs::remove_file(e.path());
                }
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Stateful options for dhcpv6d and Kea rows.
#[derive(Debug, Clone, Default)]
pub struct Stateful {
    pub on: bool,
    /// Also serve the relayed link (`RELAY_*`) for Relay-Forwards from this relay address.
    pub relay_from: Option<std::net::Ipv6Addr>,
    /// The leases on PostgreSQL instead (dhcpv6d's SQLite file, Kea's memfile).
    pub postgres: Option<PgDb>,
}

/// A database on the bench's PostgreSQL server (a Unix socket, reachable from every
/// namespace) that a stateful dhcpv6d or Kea keeps its leases in.
#[derive(Debug, Clone)]
pub struct PgDb {
    pub socket_dir: PathBuf,
    pub port: u16,
    pub name: String,
}

impl PgDb {
    /// libpq's URL form, as `--lease-db` takes it.
    pub fn url(&self) -> String {
        format!("postgresql:///{}?host={}&port={}&user=postgres", self.name, self.socket_dir.display(), self.port)
    }
}

/// A stateful dhcpv6d or Kea keeps its leases in `stateful.postgres` when given (dhcpv6d:
/// `--lease-db URL`; Kea: lease-database type postgresql), else in a file of `dir`.
pub fn start(topo: &Topo, peer: Peer, paths: &Paths, dir: &Path, stateful: Stateful) -> Result<Running> {
    start_with(topo, peer, paths, dir, stateful, false)
}

/// A stateless peer for load from a lightweight relay on the link (`dhcpv6-bench gen
/// --relayed`): dhcpv6d trusts `fe80::/10`, Kea selects a subnet by the relay's Interface-ID.
pub fn start_relayed(topo: &Topo, peer: Peer, paths: &Paths, dir: &Path) -> Result<Running> {
    start_with(topo, peer, paths, dir, Stateful::default(), true)
}

fn start_with(
    topo: &Topo,
    peer: Peer,
    paths: &Paths,
    dir: &Path,
    stateful: Stateful,
    relayed: bool,
) -> Result<Running> {
    fs::create_dir_all(dir)?;
    let mut run = Running {
        server_pid: None,
        command: String::new(),
        log: dir.join("server.log"),
        procs: Vec::new(),
        pins: None,
        xdp_renew: peer == Peer::StatefulXdpRenew,
    };
    match peer {
        Peer::Drop => hold(topo, &mut run, paths, dir, "drop")?,
        Peer::MacSwap => hold(topo, &mut run, paths, dir, "macswap")?,
        Peer::FastPath
        | Peer::Userspace
        | Peer::Stateful
        | Peer::UserspaceCores
        | Peer::StatefulCores
        | Peer::StatefulCoresOneWorker
        | Peer::StatefulXdpRenew => dhcpv6d(topo, &mut run, paths, dir, peer, stateful, relayed)?,
        Peer::Kea => {
            hold(topo, &mut run, paths, dir, "pass")?;
            kea(topo, &mut run, dir, stateful, relayed)?;
        }
        Peer::Dnsmasq => {
            hold(topo, &mut run, paths, dir, "pass")?;
            dnsmasq(topo, &mut run, dir)?;
        }
        Peer::Responder => {
            // An XDP program on srv0 as dhcpv6d has (veth's receive path is then the same).
            hold(topo, &mut run, paths, dir, "pass")?;
            responder(topo, &mut run, paths)?;
        }
    }
    Ok(run)
}

/// A bench XDP program held on srv0 by `dhcpv6-bench hold`.
fn hold(topo: &Topo, run: &mut Running, paths: &Paths, dir: &Path, program: &str) -> Result<()> {
    hold_on(&topo.srv, SRV_IF, run, paths, dir, program)
}

pub fn hold_on(ns: &Netns, ifname: &str, run: &mut Running, paths: &Paths, dir: &Path, program: &str) -> Result<()> {
    let log = dir.join(format!("hold-{program}-{ifname}.log"));
    let mut cmd = ns.cmd(path_str(&paths.bench)?);
    cmd.args(["hold", "--iface", ifname, "--program", program, "--max-secs", "3600"])
        .env(build::BENCH_OBJ_ENV, &paths.obj);
    let p = ns.spawn_command(cmd, Some(&log))?;
    wait_log(&p, &log, "attached", Duration::from_secs(20))?;
    if run.command.is_empty() {
        run.command = format!("dhcpv6-bench hold --iface {ifname} --program {program}");
    }
    run.procs.push(p);
    Ok(())
}

/// Used by the cost row: a Running that holds only what is pushed into it.
pub fn empty(dir: &Path) -> Running {
    Running {
        server_pid: None,
        command: String::new(),
        log: dir.join("server.log"),
        procs: Vec::new(),
        pins: None,
        xdp_renew: false,
    }
}

fn pinned(ns: &Netns, program: &str, args: &[String]) -> Command {
    pinned_to(ns, SRV_CPU, program, args)
}

fn pinned_to(ns: &Netns, cpus: &str, program: &str, args: &[String]) -> Command {
    let mut c = ns.cmd("taskset");
    c.args(["-c", cpus, program]).args(args);
    c
}

fn dhcpv6d(
    topo: &Topo,
    run: &mut Running,
    paths: &Paths,
    dir: &Path,
    peer: Peer,
    st: Stateful,
    relayed: bool,
) -> Result<()> {
    let pins = PathBuf::from(format!("/sys/fs/bpf/dhcpv6-bench-{}-{}", std::process::id(), unique()));
    run.pins = Some(pins.clone());
    let mut args: Vec<String> = ["--iface", SRV_IF, "--dns", DNS, "--domain", DOMAIN, "--resolv-conf", "/nonexistent"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "--pin-dir".into(),
        path_str(&pins)?.into(),
        "--state-dir".into(),
        path_str(&dir.join("state"))?.into(),
        // The load generator is one MAC sending as fast as the server answers: a flood by
        // the flood buckets' definition. The benchmark measures the server, not the buckets.
        "--flood-rate".into(),
        "0".into(),
    ]);
    if matches!(peer, Peer::Userspace | Peer::UserspaceCores) {
        args.push("--no-fast-path".into());
    }
    if relayed {
        args.extend(["--trusted-relay".into(), "fe80::/10".into()]);
    }
    if peer == Peer::StatefulXdpRenew {
        args.push("--xdp-renew".into());
    }
    // One worker where the server has one CPU (as the default would pick from the affinity),
    // one per CPU where it has them all.
    let cpus = if peer.all_cores() { ALL_CPUS } else { SRV_CPU };
    args.extend(["--workers".into(), peer.workers().into()]);
    if peer.stateful() || st.on {
        let lease_db = match &st.postgres {
            Some(db) => db.url(),
            None => {
                for f in ["leases.db", "leases.db-wal", "leases.db-shm"] {
                    let _ = fs::remove_file(dir.join(f));
                }
                path_str(&dir.join("leases.db"))?.to_string()
            }
        };
        args.extend([
            "--na-pool".into(),
            format!("{}-{}", NA_POOL.0, NA_POOL.1),
            "--pd-pool".into(),
            format!("{}/{}:{}", PD_POOL.0, PD_POOL.1, PD_POOL.2),
            "--lease-db".into(),
            lease_db,
            "--no-routes".into(),
            // The load generator plays many clients from one host, which the per-MAC limit
            // (default 8) exists to stop.
            "--max-leases-per-mac".into(),
            "0".into(),
            // Read by the stateful rows at their start and end (`server_view`): the lease
            // writer's step timings. Nothing reads it meanwhile.
            "--metrics".into(),
            super::server_view::METRICS_ADDR.into(),
        ]);
    }
    if let Some(relay) = st.relay_from {
        let conf = dir.join("relayed-link.toml");
        fs::write(
            &conf,
            format!(
                "[[link]]\nname = \"{RELAY_IFID}\"\nna_pools = [\"{}-{}\"]\npd_pools = [\"{}/{}:{}\"]\n",
                RELAY_NA_POOL.0, RELAY_NA_POOL.1, RELAY_PD_POOL.0, RELAY_PD_POOL.1, RELAY_PD_POOL.2
            ),
        )?;
        args.extend(["--config".into(), path_str(&conf)?.into(), "--trusted-relay".into(), relay.to_string()]);
    }
    let bin = path_str(&paths.daemon)?;
    let mut cmd = pinned_to(&topo.srv, cpus, bin, &args);
    cmd.env("NO_COLOR", "1").env("RUST_LOG", "warn,dhcpv6::daemon=info");
    run.command = format!("taskset -c {cpus} dhcpv6d {}", args.join(" "));
    let p = topo.srv.spawn_command(cmd, Some(&run.log))?;
    run.server_pid = Some(p.pid());
    wait_log(&p, &run.log, "serving", Duration::from_secs(30))?;
    run.procs.push(p);
    Ok(())
}

fn responder(topo: &Topo, run: &mut Running, paths: &Paths) -> Result<()> {
    let args: Vec<String> = ["responder", "--iface", SRV_IF, "--max-secs", "3600"].map(String::from).to_vec();
    let cmd = pinned(&topo.srv, path_str(&paths.bench)?, &args);
    run.command = format!("taskset -c {SRV_CPU} dhcpv6-bench {}", args.join(" "));
    let p = topo.srv.spawn_command(cmd, Some(&run.log))?;
    run.server_pid = Some(p.pid());
    wait_log(&p, &run.log, "listening", Duration::from_secs(20))?;
    run.procs.push(p);
    Ok(())
}

fn kea(topo: &Topo, run: &mut Running, dir: &Path, st: Stateful, relayed: bool) -> Result<()> {
    let conf = dir.join("kea-dhcp6.json");
    let leases = dir.join("kea-leases6.csv");
    for f in fs::read_dir(dir)?.flatten() {
        if f.file_name().to_string_lossy().starts_with("kea-leases6") {
            let _ = fs::remove_file(f.path());
        }
    }
    let pools = if st.on {
        format!(
            r#", "pools": [{{"pool": "{}-{}"}}], "pd-pools": [{{"prefix": "{}", "prefix-len": {}, "delegated-len": {}}}]"#,
            NA_POOL.0, NA_POOL.1, PD_POOL.0, PD_POOL.1, PD_POOL.2
        )
    } else {
        String::new()
    };
    // A lightweight relay's Relay-Forward has link-address ::, so Kea finds the subnet by
    // the relay's Interface-ID (the bench generator's template).
    let mut relayed = if relayed {
        format!(r#", {{"subnet": "2001:db8:2::/64", "interface-id": "{RELAYED_INTERFACE_ID}"}}"#)
    } else {
        String::new()
    };
    // The storm's relayed link: its own subnet, no interface; Kea picks it by the relay's link-address.
    if st.relay_from.is_some() {
        relayed.push_str(&format!(
            r#", {{"subnet": "{RELAY_SUBNET}", "pools": [{{"pool": "{}-{}"}}], "pd-pools": [{{"prefix": "{}", "prefix-len": {}, "delegated-len": {}}}]}}"#,
            RELAY_NA_POOL.0, RELAY_NA_POOL.1, RELAY_PD_POOL.0, RELAY_PD_POOL.1, RELAY_PD_POOL.2
        ));
    }
    // PostgreSQL: Kea writes each lease in its own statement, committed before the answer.
    let (lease_database, what) = match &st.postgres {
        Some(db) => (
            format!(
                r#"{{"type": "postgresql", "name": "{}", "host": "{}", "port": {}, "user": "postgres", "password": ""}}"#,
                db.name,
                db.socket_dir.display(),
                db.port
            ),
            format!("PostgreSQL database {}", db.name),
        ),
        None => (
            format!(r#"{{"type": "memfile", "persist": true, "name": "{}", "lfc-interval": 0}}"#, leases.display()),
            "memfile, persist".to_string(),
        ),
    };
    fs::write(
        &conf,
        format!(
            r#"{{"Dhcp6": {{
  "interfaces-config": {{"interfaces": ["{SRV_IF}"]}},
  "multi-threading": {{"enable-multi-threading": false}},
  "lease-database": {lease_database},
  "option-data": [{{"name": "dns-servers", "data": "{DNS}"}}, {{"name": "domain-search", "data": "{DOMAIN}"}}],
  "subnet6": [{{"subnet": "2001:db8:1::/64", "interface": "{SRV_IF}"{pools}}}{relayed}],
  "server-id": {{"type": "LL", "persist": false}},
  "loggers": [{{"name": "kea-dhcp6", "output_options": [{{"output": "stdout"}}], "severity": "WARN"}}]
}}}}
"#
        ),
    )?;
    let args = vec!["-c".to_string(), path_str(&conf)?.to_string()];
    let mut cmd = pinned(&topo.srv, "kea-dhcp6", &args);
    cmd.env("KEA_PIDFILE_DIR", dir).env("KEA_LOCKFILE_DIR", dir);
    run.command = format!("taskset -c {SRV_CPU} kea-dhcp6 -c {} ({what}, 1 thread, log WARN)", conf.display());
    let p = topo.srv.spawn_command(cmd, Some(&run.log))?;
    run.server_pid = Some(p.pid());
    wait_udp_547(&topo.srv, &p, &run.log)?;
    run.procs.push(p);
    Ok(())
}

fn dnsmasq(topo: &Topo, run: &mut Running, dir: &Path) -> Result<()> {
    let args: Vec<String> = vec![
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--port=0".into(),
        format!("--interface={SRV_IF}"),
        "--bind-interfaces".into(),
        "--dhcp-range=::,static".into(),
        format!("--dhcp-option=option6:dns-server,[{DNS}]"),
        format!("--dhcp-option=option6:domain-search,{DOMAIN}"),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
        "--quiet-dhcp6".into(),
        "--log-facility=-".into(),
    ];
    let mut cmd = pinned(&topo.srv, "dnsmasq", &args);
    cmd.env("LC_ALL", "C");
    run.command = format!("taskset -c {SRV_CPU} dnsmasq {}", args.join(" "));
    let p = topo.srv.spawn_command(cmd, Some(&run.log))?;
    run.server_pid = Some(p.pid());
    wait_udp_547(&topo.srv, &p, &run.log)?;
    run.procs.push(p);
    Ok(())
}

fn wait_log(p: &Proc, log: &Path, needle: &str, timeout: Duration) -> Result<()> {
    testbed::wait_for(timeout, || {
        interrupt::check()?;
        if fs::read_to_string(log).unwrap_or_default().contains(needle) {
            return Ok(true);
        }
        if !p.is_running() {
            bail!("`{}` exited before it was ready", p.command_line());
        }
        Ok(false)
    })
    .with_context(|| format!("waiting for `{needle}` in {}:\n{}", log.display(), tail(Some(log), 15)))
}

/// Until something listens on UDP 547 in the server namespace.
fn wait_udp_547(ns: &Netns, p: &Proc, log: &Path) -> Result<()> {
    testbed::wait_for(Duration::from_secs(20), || {
        interrupt::check()?;
        if !p.is_running() {
            bail!("`{}` exited before it was ready", p.command_line());
        }
        Ok(ns.run(&["ss", "-H", "-uln", "sport = :547"]).map(|o| !o.trim().is_empty()).unwrap_or(false))
    })
    .with_context(|| {
        format!("waiting for a socket on UDP 547; last lines of {}:\n{}", log.display(), tail(Some(log), 15))
    })
}

pub fn tail(log: Option<&Path>, n: usize) -> String {
    let text = log.and_then(|l| fs::read_to_string(l).ok()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How many leases the store at `lease_db` (a file or a URL) holds, as `dhcpv6d leases`
/// counts them (its last line on stderr: `N leases`).
pub fn dhcpv6d_leases(paths: &Paths, lease_db: &str) -> Result<u64> {
    let out = Command::new(&paths.daemon)
        .args(["leases", "--lease-db", lease_db])
        .stdout(std::process::Stdio::null())
        .output()
        .context("dhcpv6d leases")?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .rev()
        .find_map(|l| l.strip_suffix(" leases").and_then(|n| n.trim().parse().ok()))
        .with_context(|| format!("dhcpv6d leases said: {err}"))
}

pub fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("path {} is not UTF-8", p.display()))
}

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
