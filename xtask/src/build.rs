//! Builds the XDP object (nightly, bpfel-unknown-none) and the daemon that embeds it.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{toolchain, util::run};

/// Where the daemon's build script looks for the object (see dhcpv6-user/build.rs).
pub fn ebpf_object(root: &Path) -> PathBuf {
    root.join("target/ebpf/bpfel-unknown-none/release/dhcpv6-ebpf")
}

/// The benchmark's XDP programs (`bench-ebpf`), built after the server's program by
/// [`build_ebpf`]. `dhcpv6-bench` finds it through [`BENCH_OBJ_ENV`].
pub fn bench_ebpf_object(root: &Path) -> PathBuf {
    root.join("target/ebpf/bpfel-unknown-none/release/dhcpv6-bench-ebpf")
}

/// The variable through which `dhcpv6-bench` is told where [`bench_ebpf_object`] is.
pub const BENCH_OBJ_ENV: &str = "DHCPV6_BENCH_OBJ";

/// The eBPF workspaces, each built the same way into `target/ebpf`, and what each produces.
fn ebpf_workspaces(root: &Path) -> [(&'static str, PathBuf); 2] {
    [("dhcpv6-ebpf", ebpf_object(root)), ("bench-ebpf", bench_ebpf_object(root))]
}

pub fn build_ebpf(root: &Path) -> Result<PathBuf> {
    let tools = toolchain::ensure(root)?;
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools.bin.clone()];
    paths.extend(env::split_paths(&path));
    let path = env::join_paths(paths)?;
    for (dir, object) in ebpf_workspaces(root) {
        run(Command::new("cargo")
            .arg(format!("+{}", toolchain::NIGHTLY))
            .args(["build", "--release", "--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .arg("--target-dir")
            .arg(root.join("target/ebpf"))
            .current_dir(root.join(dir))
            .env("PATH", &path)
            // The stable toolchain's variables must not leak into the nightly build.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_TARGET_DIR"))
        .with_context(|| format!("building the XDP programs of {dir}"))?;
        if !object.exists() {
            anyhow::bail!("the eBPF build of {dir} did not produce {}", object.display());
        }
    }
    Ok(ebpf_object(root))
}

/// Builds `target/release/dhcpv6-bench` (load generators and measurements; it embeds the
/// server's XDP object like the daemon does, for the test_run cost). Call after [`build_ebpf`].
pub fn build_bench(root: &Path) -> Result<PathBuf> {
    run(Command::new("cargo")
        .args(["build", "--release", "--package", "dhcpv6-bench", "--bins"])
        .current_dir(root)
        .env("DHCPV6_EBPF_OBJ", ebpf_object(root)))
    .context("building dhcpv6-bench")?;
    Ok(root.join("target/release/dhcpv6-bench"))
}

/// Builds everything; returns the path of the daemon binary.
pub fn build_all(root: &Path, release: bool) -> Result<PathBuf> {
    let obj = build_ebpf(root)?;
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--package", "dhcpv6-user", "--bins"]).current_dir(root);
    cmd.env("DHCPV6_EBPF_OBJ", &obj);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd).context("building dhcpv6d")?;
    Ok(root.join(if release { "target/release/dhcpv6d" } else { "target/debug/dhcpv6d" }))
}
