//! The lab's client: one stateless DHCPv6 exchange with ISC dhclient (`-6 -S`), whose script
//! only records the environment dhclient hands it, so we can see what it was told.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use testbed::Netns;

use crate::interrupt;

/// What dhclient passes its script once it has been configured. For a stateless exchange
/// (`-S`) ISC dhclient 4.4 says RENEW6; INFORM6 is accepted too.
const REASONS: &[&str] = &["INFORM6", "RENEW6", "BOUND6", "REBIND6", "REBOOT6"];

/// dhclient's files, all under the lab folder (none of the system's defaults is touched).
pub struct Files {
    conf: PathBuf,
    script: PathBuf,
    lease: PathBuf,
    pid: PathBuf,
    /// Where the script appends one record per call.
    pub env: PathBuf,
    pub log: PathBuf,
}

impl Files {
    /// Writes the config and the script; removes what an earlier run left. `tag` keeps the
    /// files of several exchanges apart.
    pub fn create(dir: &Path, tag: &str) -> Result<Files> {
        let f = Files {
            conf: dir.join(format!("dhclient{tag}.conf")),
            script: dir.join(format!("dhclient{tag}-script.sh")),
            lease: dir.join(format!("dhclient6{tag}.leases")),
            pid: dir.join(format!("dhclient6{tag}.pid")),
            env: dir.join(format!("dhclient{tag}-env.txt")),
            log: dir.join(format!("dhclient{tag}.log")),
        };
        for old in [&f.lease, &f.pid, &f.env, &f.log] {
            match fs::remove_file(old) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", old.display()))
                }
                _ => {}
            }
        }
        write(&f.conf, "# Written by `cargo xtask lab`.\nrequest dhcp6.name-servers, dhcp6.domain-search;\n")?;
        write(&f.script, &script(&f.env))?;
        fs::set_permissions(&f.script, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", f.script.display()))?;
        Ok(f)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn script(out: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask lab`: records what dhclient hands its script; changes nothing.\n\
         {{\n\
         \x20 printf 'reason=%s\\n' \"$reason\"\n\
         \x20 printf 'interface=%s\\n' \"$interface\"\n\
         \x20 printf 'new_dhcp6_name_servers=%s\\n' \"$new_dhcp6_name_servers\"\n\
         \x20 printf 'new_dhcp6_domain_search=%s\\n' \"$new_dhcp6_domain_search\"\n\
         \x20 printf 'new_dhcp6_server_id=%s\\n' \"$new_dhcp6_server_id\"\n\
         \x20 printf 'new_ip6_address=%s\\n' \"$new_ip6_address\"\n\
         \x20 printf 'new_ip6_prefix=%s\\n' \"$new_ip6_prefix\"\n\
         \x20 printf '\\n'\n\
         }} >> {}\n\
         exit 0\n",
        sh_quote(&out.to_string_lossy())
    )
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// dhclient's reason for calling its script (RENEW6 for a stateless exchange).
    pub reason: String,
    pub name_servers: Vec<String>,
    pub domain_search: Vec<String>,
    pub server_id: String,
    /// Stateful exchanges: the address (IA_NA) and prefix (IA_PD) it was given.
    pub address: String,
    pub prefix: String,
}

/// How the exchange ended.
pub enum Exchange {
    Configured(Received),
    /// No answer: why (timeout, dhclient's exit status).
    Nothing(String),
}

/// Runs `dhclient -6 -S -1 -v -d` on `iface` in `ns` until its script reports success, dhclient
/// exits, or `timeout` passes; dhclient is stopped (it is our child) before this returns.
/// `mode`: `-S` for stateless, `-N -P` for an address and a prefix.
pub fn request(ns: &Netns, iface: &str, files: &Files, timeout: Duration, mode: &[&str]) -> Result<Exchange> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (conf, lease, pid, script) = (s(&files.conf), s(&files.lease), s(&files.pid), s(&files.script));
    let mut args = vec!["dhclient", "-6"];
    args.extend_from_slice(mode);
    args.extend_from_slice(&["-1", "-v", "-d", "-cf", &conf, "-lf", &lease, "-pf", &pid, "-sf", &script, iface]);
    let proc = ns.spawn(&args, Some(&files.log)).context("starting dhclient")?;
    let deadline = Instant::now() + timeout;
    loop {
        interrupt::check()?;
        // A stateful exchange calls the script once per IA: wait for both.
        let stateful = mode.contains(&"-N") || mode.contains(&"-P");
        if let Some(got) = received(&files.env)? {
            let complete = !stateful
                || ((!mode.contains(&"-N") || !got.address.is_empty())
                    && (!mode.contains(&"-P") || !got.prefix.is_empty()));
            if complete {
                return Ok(Exchange::Configured(got));
            }
        }
        if let Some(status) = proc.wait_timeout(Duration::ZERO) {
            // Its last script call may have landed just before it exited.
            if let Some(got) = received(&files.env)? {
                return Ok(Exchange::Configured(got));
            }
            return Ok(Exchange::Nothing(format!("dhclient gave up ({status})")));
        }
        if Instant::now() >= deadline {
            return Ok(Exchange::Nothing(format!("no answer within {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn received(env: &Path) -> Result<Option<Received>> {
    match fs::read(env) {
        Ok(bytes) => Ok(parse_records(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", env.display())),
    }
}

/// The first complete (blank-line terminated) record with one of [`REASONS`].
fn parse_records(text: &str) -> Option<Received> {
    let complete = &text[..text.rfind("\n\n").map(|i| i + 1)?];
    let mut first: Option<Received> = None;
    for got in complete.split("\n\n").filter_map(|record| {
        let get = |key: &str| record.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or("");
        REASONS.contains(&get("reason")).then(|| Received {
            reason: get("reason").to_owned(),
            name_servers: words(get("new_dhcp6_name_servers"), false),
            domain_search: words(get("new_dhcp6_domain_search"), true),
            server_id: get("new_dhcp6_server_id").to_owned(),
            address: get("new_ip6_address").to_owned(),
            prefix: get("new_ip6_prefix").to_owned(),
        })
    }) {
        // Records of one exchange add up: an address in one, a prefix in the next.
        match first.as_mut() {
            None => first = Some(got),
            Some(f) => {
                if f.address.is_empty() {
                    f.address = got.address;
                }
                if f.prefix.is_empty() {
                    f.prefix = got.prefix;
                }
            }
        }
    }
    first
}

/// Splits a space-separated list; domain names lose quotes and the root's trailing dot.
fn words(s: &str, domains: bool) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            let w = w.trim_matches('"');
            if domains { w.trim_end_matches('.') } else { w }.to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_configured_record() {
        let text = "reason=PREINIT6\ninterface=cli0\nnew_dhcp6_name_servers=\n\n\
                    reason=RENEW6\ninterface=cli0\nnew_dhcp6_name_servers=2001:db8::53 2001:db8::54\n\
                    new_dhcp6_domain_search=\"lab.example.\" isp.example\nnew_dhcp6_server_id=0:3:0:1\n\n";
        let got = parse_records(text).expect("RENEW6 record");
        assert_eq!(got.name_servers, ["2001:db8::53", "2001:db8::54"]);
        assert_eq!(got.domain_search, ["lab.example", "isp.example"]);
        assert_eq!(got.server_id, "0:3:0:1");
    }

    #[test]
    fn ignores_an_incomplete_record() {
        assert_eq!(parse_records("reason=INFORM6\nnew_dhcp6_name_servers=2001:db8::53\n"), None);
        assert_eq!(parse_records("reason=PREINIT6\n\nreason=STOP6\n\n"), None);
        assert_eq!(parse_records(""), None);
    }

    #[test]
    fn script_quotes_its_output_path() {
        assert!(parse_records("reason=INFORM6\nnew_dhcp6_name_servers=2001:db8::53\n\n").is_some());
        let s = script(Path::new("/tmp/it's here/env.txt"));
        assert!(s.contains(r"} >> '/tmp/it'\''s here/env.txt'"), "{s}");
    }
}
