//! The shipped systemd unit (dist/systemd/dhcpv6d.service) is one systemd accepts, and every
//! flag its ExecStart passes is one the daemon has.

use std::{path::PathBuf, process::Command};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn daemon() -> PathBuf {
    std::env::var_os("DHCPV6D_BIN").map(PathBuf::from).unwrap_or_else(|| repo().join("target/release/dhcpv6d"))
}

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("dist/systemd/dhcpv6d.service")).expect("dist/systemd/dhcpv6d.service")
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let bin = daemon();
    assert!(bin.exists(), "{} is missing: build with `cargo xtask build`", bin.display());
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let text = unit_text().replace("/usr/local/sbin/dhcpv6d ", &format!("{} ", bin.display()));
    let dir = std::env::temp_dir().join(format!("dhcpv6d-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("dhcpv6d.service");
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed: {stderr}");
    // Warnings do not fail verify; they still mean the unit is not what systemd will run.
    let noise: Vec<_> = stderr.lines().filter(|l| l.contains("dhcpv6d.service")).collect();
    assert!(noise.is_empty(), "systemd-analyze verify complained: {noise:?}");
}

#[test]
fn exec_start_flags_exist() {
    let text = unit_text();
    let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
    let help = Command::new(daemon()).arg("--help").output().expect("dhcpv6d --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<_> = exec.split_whitespace().filter(|w| w.starts_with("--")).collect();
    assert!(!flags.is_empty());
    for f in flags {
        assert!(help.contains(&format!("{f} ")), "ExecStart passes {f}, which `dhcpv6d --help` does not list");
    }
}
