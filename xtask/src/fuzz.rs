//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (their own workspace, nightly),
//! each for a bounded time over its kept corpus, and `--target xdp`: the XDP program's
//! differential test (BPF_PROG_TEST_RUN against the userspace twin) with many frames.
//!
//! New inputs a run finds go to `target/fuzz/corpus/<target>/`, never into the repository's
//! `fuzz/corpus/<target>/` (read as a second corpus), so a run leaves the work tree clean;
//! docs/fuzzing.md says how to keep the interesting ones. A crash, leak, timeout or
//! out-of-memory input fails the run with the path libFuzzer wrote it to.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::build;
use crate::toolchain::NIGHTLY;
use crate::util::{cmd_output, run};

/// The cargo-fuzz targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: &[&str] = &["codec_roundtrip", "relay", "engine", "config", "leasequery"];
/// The differential test of the XDP program, run by `--target xdp`.
pub const XDP: &str = "xdp";
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Seconds per target in `cargo xtask test`: five targets stay around two minutes with the build.
pub const QUICK_SECS: u64 = 15;
/// Frames of `--target xdp` when `--frames` is not given.
pub const XDP_FRAMES: u64 = 1_000_000;
/// One input taking longer than this is a hang, reported like a crash.
const INPUT_TIMEOUT_SECS: u64 = 10;

pub struct FuzzOptions {
    /// One target (or `xdp`); `None`: every cargo-fuzz target.
    pub target: Option<String>,
    pub secs: u64,
    pub frames: u64,
}

pub fn fuzz(root: &Path, opts: &FuzzOptions) -> Result<()> {
    match opts.target.as_deref() {
        Some(XDP) => xdp(root, opts.frames),
        Some(t) if !TARGETS.contains(&t) => {
            bail!("unknown fuzz target {t:?}: the targets are {}, and {XDP}", TARGETS.join(", "))
        }
        Some(t) => run_targets(root, &[t], opts.secs),
        None => run_targets(root, TARGETS, opts.secs),
    }
}

/// Every target for `secs` seconds each; reports all that fail, not just the first.
pub fn run_targets(root: &Path, targets: &[&str], secs: u64) -> Result<()> {
    let cargo_fuzz = ensure_cargo_fuzz(root)?;
    build_targets(root, &cargo_fuzz)?;
    let mut failed = Vec::new();
    for t in targets {
        crate::interrupt::check()?;
        if let Err(e) = run_target(root, &cargo_fuzz, t, secs) {
            eprintln!("error: {e:#}");
            failed.push(format!("{e:#}"));
        }
    }
    if !failed.is_empty() {
        bail!("{} fuzz target(s) failed:\n  {}", failed.len(), failed.join("\n  "));
    }
    Ok(())
}

/// `cargo-fuzz` in `target/tools/bin`, installed there with the nightly when missing.
fn ensure_cargo_fuzz(root: &Path) -> Result<PathBuf> {
    let tools = root.join("target/tools");
    let bin = tools.join("bin/cargo-fuzz");
    let works = |b: &Path| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success());
    if !works(&bin) {
        eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {} (once)", tools.display());
        run(Command::new("cargo")
            .arg(format!("+{NIGHTLY}"))
            .args(["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION])
            .arg("--root")
            .arg(&tools)
            .env("RUSTUP_TOOLCHAIN", NIGHTLY))
        .context("installing cargo-fuzz failed; it needs crates.io and the nightly toolchain")?;
    }
    Ok(bin)
}

/// `cargo fuzz` with the nightly, from `fuzz/`. Debug assertions on: the engine's
/// `debug_assert`s and integer overflow checks are part of what the targets check.
fn cargo_fuzz(root: &Path, bin: &Path, sub: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("fuzz").arg(sub).current_dir(root.join("fuzz")).env("RUSTUP_TOOLCHAIN", NIGHTLY);
    cmd
}

fn build_targets(root: &Path, bin: &Path) -> Result<()> {
    eprintln!("xtask: building the fuzz targets (nightly, sanitizer; minutes the first time)");
    run(cargo_fuzz(root, bin, "build").arg("--debug-assertions")).context("building the fuzz targets failed")
}

fn run_target(root: &Path, bin: &Path, target: &str, secs: u64) -> Result<()> {
    let kept = root.join("fuzz/corpus").join(target);
    let found = root.join("target/fuzz/corpus").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    for d in [&found, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let before = listing(&artifacts)?;
    eprintln!("\nxtask: fuzzing {target} for {secs} s over {}", kept.display());
    let started = Instant::now();
    let status = cargo_fuzz(root, bin, "run")
        .arg("--debug-assertions")
        .arg(target)
        .arg(&found)
        .arg(&kept)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting cargo fuzz run {target}"))?;
    let new: Vec<PathBuf> = listing(&artifacts)?
        .difference(&before)
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("slow-unit-")))
        .cloned()
        .collect();
    if let Some(input) = new.first() {
        bail!(
            "fuzz target {target} failed on {} (replay: cd fuzz && cargo +nightly fuzz run --debug-assertions {target} {})",
            input.display(),
            input.display()
        );
    }
    if !status.success() {
        bail!("fuzz target {target} failed ({status}) without writing an input; see its output above");
    }
    eprintln!("xtask: {target}: no failure in {:.0?}", started.elapsed());
    Ok(())
}

fn listing(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    entries.map(|e| Ok(e?.path())).collect()
}

/// The XDP program's differential tests with `frames` random and mutated frames (split
/// between the two reply layouts the tests have), timed. Needs root.
fn xdp(root: &Path, frames: u64) -> Result<()> {
    testbed::require_root().context("the XDP program runs under BPF_PROG_TEST_RUN, which needs root")?;
    let obj = build::build_ebpf(root)?;
    let started = Instant::now();
    // The first test runs `frames`, the second half as many: the total is 1.5 x frames.
    run(Command::new("cargo")
        .args(["test", "-p", "dhcpv6-e2e", "--test", "xdp_program", "differential"])
        .args(["--", "--nocapture", "--test-threads=1"])
        .current_dir(root)
        .env("DHCPV6_EBPF_OBJ", &obj)
        .env("DHCPV6_FUZZ_FRAMES", frames.to_string())
        .stdin(Stdio::null()))
    .context("the XDP differential test failed: the frame and seed are in its message above")?;
    let kernel = cmd_output(Command::new("uname").arg("-r")).unwrap_or_default();
    eprintln!(
        "\nxtask: {} frames through the XDP program and its twin in {:.1?} (build included; kernel {})",
        frames + frames / 2,
        started.elapsed(),
        kernel.trim()
    );
    Ok(())
}
