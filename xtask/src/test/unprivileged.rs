//! The protocol crate's tests as a user without privileges: `dhcpv6-proto` must build with
//! stable cargo alone and pass without root, so a contributor (or a packager's build farm) can
//! run them anywhere. Built here as root, run as `nobody` from a folder that user can read
//! (the clone itself may sit below a home directory `nobody` cannot enter).

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::util::cmd_output;

/// `nobody`/`nogroup` on Debian.
const NOBODY: &str = "65534";

pub fn run(root: &Path) -> Result<()> {
    let json = cmd_output(
        Command::new("cargo")
            .args(["test", "-p", "dhcpv6-proto", "--no-run", "--message-format=json"])
            .current_dir(root),
    )
    .context("building the tests of dhcpv6-proto")?;
    let exes = executables(&json);
    if exes.is_empty() {
        bail!("cargo listed no test executable for dhcpv6-proto");
    }
    let dir = std::env::temp_dir().join(format!("dhcpv6-proto-tests-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = (|| -> Result<()> {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
        for exe in &exes {
            let name = Path::new(exe).file_name().context("test executable without a name")?;
            let copy = dir.join(name);
            fs::copy(exe, &copy).with_context(|| format!("copying {exe}"))?;
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
            eprintln!("xtask test: {} as uid {NOBODY}", name.to_string_lossy());
            let status = Command::new("setpriv")
                .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
                .arg(&copy)
                .current_dir(&dir)
                .env("TMPDIR", &dir)
                .env("HOME", &dir)
                .status()
                .context("starting setpriv (util-linux)")?;
            if !status.success() {
                bail!("{} failed as an unprivileged user: {status}", name.to_string_lossy());
            }
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// The `"executable":"..."` fields of cargo's JSON messages (test binaries only; build
/// scripts and libraries have none or null).
fn executables(json: &str) -> Vec<String> {
    const KEY: &str = "\"executable\":\"";
    json.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let start = l.find(KEY)? + KEY.len();
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_test_executables_only() {
        let json = concat!(
            "{\"reason\":\"compiler-artifact\",\"executable\":\"/t/debug/deps/dhcpv6_proto-1\"}\n",
            "{\"reason\":\"compiler-artifact\",\"executable\":null}\n",
            "{\"reason\":\"build-finished\",\"success\":true}\n"
        );
        assert_eq!(super::executables(json), vec!["/t/debug/deps/dhcpv6_proto-1".to_owned()]);
    }
}
