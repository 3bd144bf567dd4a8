//! `cargo xtask lab`: the daemon and a real client on one machine, no spare NIC needed.
//!
//! Two network namespaces joined by a veth pair: `dhcpv6d` serves on `srv0`, ISC dhclient asks
//! for stateless configuration on `cli0`. Everything the run creates (namespaces, processes,
//! pins) is owned by a guard, so it is removed on success, on failure and on Ctrl-C.

mod client;
mod pins;
mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use testbed::{run_command, Netns, Proc};

use crate::{build, interrupt};
use client::Exchange;
use pins::Pins;
use report::Outcome;

/// Programs the lab runs, with the Debian packages that ship them.
pub const TOOLS: &[(&str, &str)] =
    &[("dhclient", "isc-dhcp-client"), ("ip", "iproute2"), ("ethtool", "ethtool"), ("nsenter", "util-linux")];

pub const DNS: &str = "2001:db8::53";
pub const DOMAIN: &str = "lab.example";
pub const NA_POOL: &str = "2001:db8:1::100-2001:db8:1::1ff";
pub const PD_POOL: &str = "2001:db8:100::/40:56";
const SERVER_IF: &str = "srv0";
const CLIENT_IF: &str = "cli0";

const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
const LINK_LOCAL_TIMEOUT: Duration = Duration::from_secs(10);
const SERVING_TIMEOUT: Duration = Duration::from_secs(20);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
const STATS_SETTLE: Duration = Duration::from_millis(1500);

#[derive(Debug, Default, Clone)]
pub struct LabOptions {
    /// Start the daemon with --no-fast-path (userspace answers everything).
    pub no_fast_path: bool,
    /// Keep the lab up this long after the exchange, for a look around.
    pub keep_going_secs: u64,
    /// Use this daemon binary instead of building target/release/dhcpv6d.
    pub bin: Option<PathBuf>,
}

/// Builds (release), then runs the lab.
pub fn lab(root: &Path, opts: &LabOptions) -> Result<()> {
    interrupt::install()?;
    require_root()?;
    let bin = match &opts.bin {
        Some(bin) => fs::canonicalize(bin).with_context(|| format!("no daemon at {}", bin.display()))?,
        None => build::build_all(root, true)?,
    };
    run_lab(root, &bin, opts)
}

/// Runs the lab with an already built daemon. Succeeds only if the client was configured
/// with [`DNS`] and [`DOMAIN`].
pub fn run_lab(root: &Path, bin: &Path, opts: &LabOptions) -> Result<()> {
    interrupt::install()?;
    require_root()?;
    testbed::ensure_tools(TOOLS)?;
    testbed::ensure_bpffs()?;
    let dir = root.join("target/lab");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pins = Pins::claim(std::process::id())?;

    let result = exchange(&dir, bin, opts, &pins);
    // The namespaces and processes are gone by now; the pins go next.
    say("torn down: namespaces and processes");
    let pins_removed = pins.remove();
    drop(pins);
    match &pins_removed {
        Ok(()) => say("torn down: pins"),
        Err(e) => eprintln!("lab: warning: {e:#}"),
    }

    let outcome = result.context(if interrupt::interrupted() {
        "lab interrupted (everything it set up has been removed)"
    } else {
        "lab failed before the client got an answer"
    })?;
    let ok = outcome.print(&dir, opts);
    if !ok {
        bail!("lab failed: the client was not configured with DNS {DNS} and domain {DOMAIN}");
    }
    Ok(())
}

fn require_root() -> Result<()> {
    testbed::require_root()
        .context("`cargo xtask lab` creates network namespaces and a veth pair and attaches XDP programs")
}

fn say(msg: &str) {
    eprintln!("lab: {msg}");
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("path {} is not UTF-8", p.display()))
}

/// Set-up, one exchange, stats. The guards declared here (namespaces, daemon) are dropped, in
/// reverse order, when it returns: the daemon is stopped before its namespace is deleted.
fn exchange(dir: &Path, bin: &Path, opts: &LabOptions, pins: &Pins) -> Result<Outcome> {
    let bin_s = path_str(bin)?;
    say(&format!("creating namespaces and the veth pair {SERVER_IF} <-> {CLIENT_IF}"));
    let server = Netns::new("srv").context("creating the server namespace")?;
    let client = Netns::new("cli").context("creating the client namespace")?;
    testbed::veth_pair(&server, SERVER_IF, &client, CLIENT_IF)?;
    say(&format!("namespaces: {} (server), {} (client)", server.name(), client.name()));
    // Full checksums on the client's frames, so the fast path can verify them.
    client.set_tx_offload(CLIENT_IF, false)?;
    interrupt::check()?;

    // XDP_TX towards a veth peer only works if the peer has an XDP program attached.
    say(&format!("attaching an XDP_PASS program to {CLIENT_IF} (dhcpv6d attach-aux)"));
    let mut attach = client.cmd(bin_s);
    attach.args(["attach-aux", "--iface", CLIENT_IF, "--program", "pass", "--pin"]).arg(&pins.aux);
    run_command(&mut attach, HELPER_TIMEOUT).with_context(|| format!("attaching the pass program to {CLIENT_IF}"))?;
    if !pins.aux.exists() {
        bail!("dhcpv6d attach-aux succeeded but did not pin its link at {}", pins.aux.display());
    }
    interrupt::check()?;

    say("waiting for link-local addresses");
    let srv_ll = server.wait_link_local(SERVER_IF, LINK_LOCAL_TIMEOUT)?;
    let cli_ll = client.wait_link_local(CLIENT_IF, LINK_LOCAL_TIMEOUT)?;
    say(&format!("{SERVER_IF} is {srv_ll}, {CLIENT_IF} is {cli_ll}"));
    interrupt::check()?;

    let daemon_log = dir.join("dhcpv6d.log");
    let pin_dir = path_str(&pins.daemon_dir)?;
    // Its own state folder, so the lab never touches a real daemon's (default /run/dhcpv6d).
    let state_dir = dir.join("state");
    let state = path_str(&state_dir)?;
    let lease_db_path = dir.join("leases.db");
    let _ = std::fs::remove_file(&lease_db_path);
    let lease_db = path_str(&lease_db_path)?;
    let mut args = vec![
        bin_s,
        "--iface",
        SERVER_IF,
        "--dns",
        DNS,
        "--domain",
        DOMAIN,
        "--pin-dir",
        pin_dir,
        "--state-dir",
        state,
        "--na-pool",
        NA_POOL,
        "--pd-pool",
        PD_POOL,
        "--lease-db",
        lease_db,
        "--no-routes",
        // The lab's load comes from one MAC: a flood to the flood buckets.
        "--flood-rate",
        "0",
    ];
    if opts.no_fast_path {
        args.push("--no-fast-path");
    }
    say(&format!("starting {} (log: {})", args.join(" "), daemon_log.display()));
    let (prog, rest) = args.split_first().context("empty command")?;
    let mut cmd = server.cmd(prog);
    // Plain log lines in the file (tracing-subscriber honours NO_COLOR).
    cmd.args(rest).env("NO_COLOR", "1");
    let daemon = server.spawn_command(cmd, Some(&daemon_log))?;
    wait_serving(&daemon, &daemon_log)?;

    say(&format!("asking from {CLIENT_IF}: dhclient -6 -S (stateless Information-Request)"));
    let files = client::Files::create(dir, "")?;
    let exchange = client::request(&client, CLIENT_IF, &files, CLIENT_TIMEOUT, &["-S"])?;
    say(&format!("asking from {CLIENT_IF}: dhclient -6 -N -P (an address and a delegated prefix)"));
    let stateful_files = client::Files::create(dir, "-stateful")?;
    let stateful = client::request(&client, CLIENT_IF, &stateful_files, CLIENT_TIMEOUT, &["-N", "-P"])?;
    // The daemon rewrites its userspace counters once a second.
    interrupt::sleep(STATS_SETTLE)?;
    let stats = stats(bin, &pins.daemon_dir, &state_dir);
    if let Exchange::Nothing(why) = &exchange {
        say(&format!("the client got nothing: {why}"));
        diagnostics(&server, &client, &daemon_log, &files.log);
    }

    if opts.keep_going_secs > 0 {
        keep_going(opts.keep_going_secs, &server, &client, bin, &pins.daemon_dir, &state_dir);
    }

    say("stopping dhcpv6d (SIGTERM); its XDP program stays attached for the next daemon");
    let daemon_exit = daemon.terminate();
    let pins_kept = pins.daemon_dir.exists();
    say("removing the program and its pins: dhcpv6d detach");
    let mut detach = Command::new(bin);
    detach.arg("detach").arg("--pin-dir").arg(&pins.daemon_dir);
    let detached = match run_command(&mut detach, HELPER_TIMEOUT) {
        Ok(_) => !pins.daemon_dir.exists(),
        Err(e) => {
            say(&format!("dhcpv6d detach failed: {e:#}"));
            false
        }
    };
    Ok(Outcome {
        exchange,
        stateful,
        stats,
        daemon_exit,
        pins_kept,
        detached,
        daemon_log,
        client_log: files.log,
        client_env: files.env,
    })
}

fn wait_serving(daemon: &Proc, log: &Path) -> Result<()> {
    let waited = testbed::wait_for(SERVING_TIMEOUT, || {
        interrupt::check()?;
        if log_text(log).contains("serving") {
            return Ok(true);
        }
        if let Some(st) = daemon.wait_timeout(Duration::ZERO) {
            bail!("dhcpv6d exited ({st}) before it was serving");
        }
        Ok(false)
    });
    waited.with_context(|| {
        format!(
            "waiting for dhcpv6d to log `serving`; last lines of {}:\n{}",
            log.display(),
            report::tail(&log_text(log), 20)
        )
    })
}

fn log_text(path: &Path) -> String {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// `dhcpv6d stats`: the XDP program's counters, read from the pinned map.
fn stats(bin: &Path, pin_dir: &Path, state_dir: &Path) -> Result<String> {
    let mut cmd = Command::new(bin);
    cmd.arg("stats").arg("--pin-dir").arg(pin_dir).arg("--state-dir").arg(state_dir);
    run_command(&mut cmd, HELPER_TIMEOUT).context("dhcpv6d stats")
}

/// What the veths' XDP counters say, and the logs' last lines: why a client got nothing.
fn diagnostics(server: &Netns, client: &Netns, daemon_log: &Path, client_log: &Path) {
    for (ns, ifname) in [(server, SERVER_IF), (client, CLIENT_IF)] {
        match ns.run(&["ethtool", "-S", ifname]) {
            Ok(out) => {
                let xdp: Vec<&str> = out.lines().filter(|l| l.contains("xdp")).map(str::trim).collect();
                eprintln!("lab: ethtool -S {ifname} (xdp): {}", xdp.join(", "));
            }
            Err(e) => eprintln!("lab: ethtool -S {ifname}: {e:#}"),
        }
    }
    for (what, log) in [("dhcpv6d", daemon_log), ("dhclient", client_log)] {
        eprintln!("lab: last lines of the {what} log ({}):\n{}", log.display(), report::tail(&log_text(log), 15));
    }
}

fn keep_going(secs: u64, server: &Netns, client: &Netns, bin: &Path, pin_dir: &Path, state_dir: &Path) {
    let srv = server.path().display();
    let cli = client.path().display();
    eprintln!(
        "lab: staying up for {secs} s (Ctrl-C ends it early and tears down). Try:\n\
         \x20 {bin} stats --pin-dir {pins} --state-dir {state}\n\
         \x20 bpftool map dump pinned {pins}/DHCPV6_COUNTERS\n\
         \x20 nsenter --net={srv} bpftool net show\n\
         \x20 nsenter --net={srv} ethtool -S {SERVER_IF}\n\
         \x20 nsenter --net={cli} tshark -ni {CLIENT_IF} -f 'udp port 546 or udp port 547'",
        bin = bin.display(),
        pins = pin_dir.display(),
        state = state_dir.display(),
    );
    if interrupt::sleep(Duration::from_secs(secs)).is_err() {
        say("Ctrl-C: ending the lab");
    }
}
