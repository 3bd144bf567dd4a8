//! Interfaces and addresses: veth pairs between namespaces and queries about
//! an interface inside a namespace.
//!
//! Everything goes through `ip`/`ethtool`/`sysctl` run inside the namespace:
//! this process's /sys shows the host namespace's interfaces, not these.

use std::net::Ipv6Addr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::exec;
use crate::netns::Netns;
use crate::wait::wait_for;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ':']) || name.contains(char::is_whitespace) {
        bail!("bad interface name {name:?}: 1 to 15 characters, no '/', ':' or spaces");
    }
    Ok(())
}

/// Creates a veth pair with end `a_if` in `a` and `b_if` in `b`, both up.
///
/// The ends are created directly inside their namespaces, so the names only
/// need to be unique within each namespace, not on the host.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    check_ifname(a_if)?;
    check_ifname(b_if)?;
    exec::host(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .with_context(|| format!("creating veth {}:{a_if} <-> {}:{b_if}", a.name(), b.name()))?;
    a.run(&["ip", "link", "set", a_if, "up"])?;
    b.run(&["ip", "link", "set", b_if, "up"])?;
    Ok(())
}

impl Netns {
    /// Adds `cidr` (e.g. "fd00:d6::1/64") to `ifname` with `nodad`, so it is
    /// usable at once instead of after duplicate address detection.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        self.run(&["ip", "addr", "add", cidr, "dev", ifname, "nodad"])?;
        Ok(())
    }

    /// Waits until `ifname` has a usable (not tentative, DAD not failed)
    /// fe80:: address and returns it. The kernel assigns it once the link has
    /// carrier; DAD then takes about a second.
    pub fn wait_link_local(&self, ifname: &str, timeout: Duration) -> Result<Ipv6Addr> {
        let mut found = None;
        wait_for(timeout, || {
            found = self.link_local(ifname)?;
            Ok(found.is_some())
        })
        .with_context(|| format!("no usable link-local address on {ifname} in {}", self.name()))?;
        Ok(found.expect("set when wait_for succeeds"))
    }

    fn link_local(&self, ifname: &str) -> Result<Option<Ipv6Addr>> {
        let out = self.run(&["ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link"])?;
        for line in out.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.iter().any(|w| *w == "tentative" || *w == "dadfailed") {
                continue;
            }
            let Some(i) = words.iter().position(|w| *w == "inet6") else {
                continue;
            };
            let Some(addr) = words.get(i + 1).and_then(|a| a.split('/').next()) else {
                continue;
            };
            if let Ok(ip) = addr.parse::<Ipv6Addr>() {
                if ip.segments()[0] & 0xffc0 == 0xfe80 {
                    return Ok(Some(ip));
                }
            }
        }
        Ok(None)
    }

    /// MAC address of `ifname`.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let out = self.link_show(ifname)?;
        let text = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .with_context(|| format!("{ifname} in {} has no link/ether address", self.name()))?;
        parse_mac(text).with_context(|| format!("bad MAC {text:?} of {ifname}"))
    }

    /// Interface index of `ifname` (as seen inside this namespace).
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let out = self.link_show(ifname)?;
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("cannot read the ifindex of {ifname} from {out:?}"))
    }

    fn link_show(&self, ifname: &str) -> Result<String> {
        self.run(&["ip", "-o", "link", "show", "dev", ifname])
    }

    /// `ethtool -K IF tx on|off`. veth hands frames over with partial
    /// checksums while tx offload is on; turn it off on the sending side when
    /// a receiver checks UDP checksums.
    pub fn set_tx_offload(&self, ifname: &str, on: bool) -> Result<()> {
        self.run(&["ethtool", "-K", ifname, "tx", if on { "on" } else { "off" }])?;
        Ok(())
    }

    /// `sysctl -w key=value` inside the namespace (net.* keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Writes `value` to `/sys/class/net/IFNAME/ATTR` as seen from inside the
    /// namespace (e.g. `threaded` = "1"). sysfs shows the namespace of whoever
    /// mounted it, so this one case uses `ip netns exec`, which mounts a fresh
    /// /sys for the namespace; the write itself is not affected by that.
    pub fn write_sys_net(&self, ifname: &str, attr: &str, value: &str) -> Result<()> {
        check_ifname(ifname)?;
        if attr.is_empty() || attr.contains('/') || attr.contains("..") {
            bail!("bad sysfs attribute {attr:?}");
        }
        let path = format!("/sys/class/net/{ifname}/{attr}");
        exec::run_command(
            std::process::Command::new("ip").args([
                "netns",
                "exec",
                self.name(),
                "sh",
                "-c",
                "printf '%s' \"$1\" > \"$2\"",
                "sh",
                value,
                &path,
            ]),
            exec::DEFAULT_RUN_TIMEOUT,
        )
        .with_context(|| format!("writing {value:?} to {path} in {}", self.name()))?;
        Ok(())
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("expected 6 octets");
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16)?;
    }
    Ok(mac)
}
