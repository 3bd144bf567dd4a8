//! Bootstraps the pieces the eBPF build needs on a fresh machine, inside `target/tools`, so a
//! second build finds them in place: the nightly's `rust-src`, and a `bpf-linker` linked
//! against the nightly's own libLLVM (Debian has no LLVM of the same major version).

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::{cmd_output, run};

pub const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

pub struct Tools {
    /// Folder to put first on PATH for the eBPF build.
    pub bin: PathBuf,
}

pub fn ensure(root: &Path) -> Result<Tools> {
    let tools = root.join("target/tools");
    ensure_nightly()?;
    ensure_rust_src()?;
    let bin = tools.join("bin");
    let linker = bin.join("bpf-linker");
    if !linker.exists() || !linker_starts(&linker) {
        build_bpf_linker(&tools)?;
    }
    Ok(Tools { bin })
}

fn ensure_nightly() -> Result<()> {
    let list = cmd_output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the XDP program (https://rustup.rs)")?;
    if !list.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "the eBPF build needs a nightly Rust toolchain and none is installed.\n\
             Install one with: rustup toolchain install nightly --component rust-src"
        );
    }
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let installed =
        cmd_output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", NIGHTLY]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for the nightly toolchain (needed for -Z build-std)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
        .context("could not install rust-src: run `rustup component add rust-src --toolchain nightly`")
}

fn linker_starts(linker: &Path) -> bool {
    Command::new(linker).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// The nightly's libLLVM, found by glob rather than by a hard-coded version.
fn nightly_libllvm() -> Result<PathBuf> {
    let sysroot = cmd_output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    for entry in fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("libLLVM.so.") && name.ends_with("-nightly") {
            return Ok(path);
        }
    }
    bail!(
        "no libLLVM.so.*-nightly in {}: the nightly toolchain ships without its LLVM library, \
         so bpf-linker cannot be built against it. Reinstall the nightly with rustup.",
        lib.display()
    )
}

fn llvm_major(lib: &Path) -> Result<String> {
    let name = lib.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let ver = name.trim_start_matches("libLLVM.so.");
    ver.split('.')
        .next()
        .map(str::to_owned)
        .filter(|m| m.chars().all(|c| c.is_ascii_digit()))
        .with_context(|| format!("cannot read an LLVM version from {name}"))
}

fn build_bpf_linker(tools: &Path) -> Result<()> {
    let libllvm = nightly_libllvm()?;
    let major = llvm_major(&libllvm)?;
    let prefix = tools.join("llvm");
    let libdir = prefix.join("lib");
    fs::create_dir_all(&libdir)?;
    // bpf-linker's build looks for libLLVM.so; the binary then NEEDs the soname, and its
    // RUNPATH points here, so both names must resolve from this folder.
    for name in ["libLLVM.so".to_owned(), libllvm.file_name().unwrap_or_default().to_string_lossy().into_owned()] {
        let link = libdir.join(name);
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (once; about a minute)", libllvm.display());
    run(Command::new("cargo")
        .arg(format!("+{NIGHTLY}"))
        .args(["install", "--locked", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", &format!("llvm-{major}")])
        .arg("--root")
        .arg(tools)
        .env("LLVM_PREFIX", &prefix)
        .env("RUSTUP_TOOLCHAIN", NIGHTLY))
    .context(
        "building bpf-linker failed; it needs network access to crates.io and a nightly \
         toolchain whose libLLVM matches an llvm-N feature of bpf-linker",
    )
}
