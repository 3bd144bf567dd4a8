//! The set-up every row shares: a generator namespace and a server namespace joined by the
//! veth pair gen0 <-> srv0, full checksums on both ends, no DAD (addresses usable at once),
//! and, once the server end has an XDP program, its NAPI threaded and pinned to CPU 1.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use testbed::{run_command, Netns};

pub const GEN_IF: &str = "gen0";
pub const SRV_IF: &str = "srv0";
/// A global address on srv0 for the peers that want one for their subnet (Kea, dnsmasq).
pub const SRV_ADDR: &str = "2001:db8:1::1/64";
/// CPUs: the generator (and perfdhcp) on one, the server side on the other.
pub const GEN_CPU: &str = "0";
pub const SRV_CPU: &str = "1";
/// The CPUs of the rows that give dhcpv6d every core (`--workers` one per CPU): on this
/// 2-CPU machine the generator's CPU too, so those rows measure both sharing the box.
pub const ALL_CPUS: &str = "0-1";
/// The workers of those rows (one per CPU of `ALL_CPUS`).
pub const ALL_CPUS_WORKERS: &str = "2";

pub struct Topo {
    // Declared (and dropped) generator first: nothing in it outlives its namespace.
    pub gen: Netns,
    pub srv: Netns,
    pub gen_mac: [u8; 6],
    pub gen_ll: Ipv6Addr,
    pub srv_mac: [u8; 6],
    pub srv_ll: Ipv6Addr,
}

impl Topo {
    pub fn new() -> Result<Topo> {
        let srv = Netns::new("bs").context("creating the server namespace")?;
        let gen = Netns::new("bg").context("creating the generator namespace")?;
        for ns in [&srv, &gen] {
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        }
        testbed::veth_pair(&srv, SRV_IF, &gen, GEN_IF)?;
        srv.set_tx_offload(SRV_IF, false)?;
        gen.set_tx_offload(GEN_IF, false)?;
        srv.add_addr(SRV_IF, SRV_ADDR)?;
        let srv_ll = srv.wait_link_local(SRV_IF, Duration::from_secs(10))?;
        let gen_ll = gen.wait_link_local(GEN_IF, Duration::from_secs(10))?;
        // The server side knows the generator's address without neighbour discovery.
        let gen_mac = gen.mac(GEN_IF)?;
        let srv_mac = srv.mac(SRV_IF)?;
        srv.run(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            &gen_ll.to_string(),
            "lladdr",
            &mac_str(&gen_mac),
            "dev",
            SRV_IF,
            "nud",
            "permanent",
        ])?;
        Ok(Topo { gen, srv, gen_mac, gen_ll, srv_mac, srv_ll })
    }

    /// Threads the server end's NAPI (its receive work, and the XDP program, leave the
    /// sending CPU) and pins the new kernel thread to the server CPU. Call after an XDP
    /// program is attached to srv0 (veth has NAPI only then). Returns what was done and the
    /// thread's PID when it was found.
    pub fn thread_napi(&self, server_side: bool) -> Result<(String, Option<u32>)> {
        let (ns, ifname, cpu) = if server_side { (&self.srv, SRV_IF, SRV_CPU) } else { (&self.gen, GEN_IF, GEN_CPU) };
        let before = napi_threads(ifname);
        ns.write_sys_net(ifname, "threaded", "1")?;
        let after = napi_threads(ifname);
        let new: Vec<u32> = after.difference(&before).copied().collect();
        match new.as_slice() {
            [pid] => {
                run_command(Command::new("taskset").args(["-p", "-c", cpu, &pid.to_string()]), Duration::from_secs(10))
                    .with_context(|| format!("pinning the NAPI thread of {ifname} (pid {pid}) to CPU {cpu}"))?;
                Ok((format!("{ifname} NAPI threaded, thread {pid} pinned to CPU {cpu}"), Some(*pid)))
            }
            _ => Ok((
                format!(
                    "{ifname} NAPI threaded; its thread not pinned ({} new napi/{ifname}-* threads seen)",
                    new.len()
                ),
                None,
            )),
        }
    }
}

/// PIDs of the kernel threads named `napi/IFNAME-N` (in any namespace: the name is all
/// that tells them apart, hence the before/after difference above).
fn napi_threads(ifname: &str) -> BTreeSet<u32> {
    let prefix = format!("napi/{ifname}-");
    let Ok(dir) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        comm.trim().starts_with(&prefix).then_some(pid)
    })
    .collect()
}

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
