//! `cargo xtask test`: the whole suite, as CI runs it (`.ci/run`).
//!
//! Steps, each named when it fails: root check, Debian packages (PostgreSQL's server among
//! them, for the lease-store tests), bpffs, build (XDP object and release daemon), the protocol
//! crate's tests as user `nobody`, `cargo test --workspace`, a short run of every fuzz target
//! (`fuzz::QUICK_SECS` each), then the lab as a last end-to-end smoke test, then `bench
//! --quick` (every benchmark row once; it proves the harness, not speed).

mod group;
mod sweep;
mod unprivileged;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{bench, build, fuzz, interrupt, lab};

/// Programs the tests use, with the Debian packages that ship them (scapy is optional).
const TOOLS: &[(&str, &str)] = &[
    ("dhclient", "isc-dhcp-client"),
    ("dhcpcd", "dhcpcd-base"),
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("nsenter", "util-linux"),
    ("tshark", "tshark"),
    ("kea-dhcp6", "kea-dhcp6-server"),
    ("perfdhcp", "kea-admin"),
    ("dhcrelay", "isc-dhcp-relay"),
    ("bpftool", "bpftool"),
    ("ping", "iputils-ping"),
    ("systemd-analyze", "systemd"),
];

pub struct TestOptions {
    /// Skip the final lab run.
    pub quick: bool,
    pub timeout: Duration,
}

pub fn test(root: &Path, opts: &TestOptions) -> Result<()> {
    interrupt::install()?;
    let started = Instant::now();
    step("check root", || {
        testbed::require_root().context("the tests create network namespaces and load XDP programs")
    })?;
    step("install the tools the tests use (apt-get)", || testbed::ensure_tools(TOOLS))?;
    // Not a TOOLS entry: the server binaries live in /usr/lib/postgresql/N/bin, off PATH.
    step("install PostgreSQL for the lease-store tests (apt-get postgresql)", testbed::postgres::ensure_installed)?;
    step("mount bpffs", testbed::ensure_bpffs)?;
    let bin = step("build (cargo xtask build)", || build::build_all(root, true))?;

    // These two are independent: run both, so one CI run reports everything that fails.
    let mut failed = Vec::new();
    let proto = "dhcpv6-proto's tests as an unprivileged user";
    if let Err(e) = step(proto, || unprivileged::run(root)) {
        interrupt::check()?;
        eprintln!("error: {e:#}");
        failed.push(proto);
    }
    let tests = "cargo test --workspace";
    if let Err(e) = step(tests, || cargo_test(root, &bin, opts.timeout)) {
        interrupt::check()?;
        eprintln!("error: {e:#}");
        failed.push(tests);
    }
    let fuzzing = &format!("fuzz targets, {} s each (cargo xtask fuzz --secs {0})", fuzz::QUICK_SECS);
    if let Err(e) = step(fuzzing, || fuzz::run_targets(root, fuzz::TARGETS, fuzz::QUICK_SECS)) {
        interrupt::check()?;
        eprintln!("error: {e:#}");
        failed.push(fuzzing);
    }
    let smoke = "lab (end-to-end smoke: dhclient against dhcpv6d)";
    if opts.quick {
        eprintln!("\nxtask test: --quick: skipping the lab");
    } else if let Err(e) = step(smoke, || lab::run_lab(root, &bin, &lab::LabOptions::default())) {
        interrupt::check()?;
        eprintln!("error: {e:#}");
        failed.push(smoke);
    }
    let bench_step = "bench --quick (every benchmark row end to end)";
    if opts.quick {
        eprintln!("xtask test: --quick: skipping `bench --quick`");
    } else if let Err(e) = step(bench_step, || {
        bench::bench(
            root,
            &bench::BenchOptions {
                quick: true,
                runs: None,
                no_stateful: false,
                out: None,
                only: Vec::new(),
                storm_servers: Vec::new(),
            },
        )
    }) {
        interrupt::check()?;
        eprintln!("error: {e:#}");
        failed.push(bench_step);
    }
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join("; "));
    }
    eprintln!("\nxtask test: all steps passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Runs one step, announcing it, and names it in the error when it fails.
fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    interrupt::check()?;
    eprintln!("\n==> xtask test: {name}");
    match f() {
        Ok(v) => Ok(v),
        Err(e) => {
            eprintln!("\nxtask test: FAILED at step `{name}`");
            Err(e.context(format!("step `{name}` failed")))
        }
    }
}

fn cargo_test(root: &Path, bin: &Path, timeout: Duration) -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .current_dir(root)
        .env("DHCPV6_EBPF_OBJ", build::ebpf_object(root))
        .env("DHCPV6D_BIN", bin)
        // Output is streamed as is; nothing reads the terminal (it is not its foreground group).
        .stdin(Stdio::null());
    match group::run(&mut cmd, timeout)? {
        group::Ended::Exited(status) if status.success() => Ok(()),
        group::Ended::Exited(status) => {
            bail!("cargo test failed ({status}); the failing tests are listed above")
        }
        group::Ended::Stopped { why, pids } => {
            sweep::leftovers(&pids);
            bail!("cargo test was stopped: {why}")
        }
    }
}
