//! The benchmark's XDP object (`dhcpv6-bench-ebpf`, built by `cargo xtask build`), its maps
//! as host types, and attaching its programs.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, PerCpuArray},
    programs::{links::FdLink, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};

use dhcpv6_bench_common::maps::{FrameCount, GenConfig, GenState, SinkConfig, SinkCounters};

pub const ENV_OBJECT: &str = "DHCPV6_BENCH_OBJ";

/// `--object`, else `$DHCPV6_BENCH_OBJ`, else where `cargo xtask build` puts it relative to
/// this binary (target/{release,debug}/ -> target/ebpf/...).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(ENV_OBJECT) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let target = exe.parent().and_then(Path::parent).context("binary outside a target folder")?;
    Ok(target.join("ebpf/bpfel-unknown-none/release/dhcpv6-bench-ebpf"))
}

pub fn load(path: &Path) -> Result<Ebpf> {
    EbpfLoader::new()
        .load_file(path)
        .with_context(|| format!("loading {} (built by `cargo xtask build`)", path.display()))
}

pub fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let prog: &mut Xdp =
        ebpf.program_mut(name).ok_or_else(|| anyhow!("program {name} missing from the bench object"))?.try_into()?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("the verifier rejected {name}"))?;
    }
    Ok(prog)
}

/// Attaches `name` to `ifname` in driver mode; the link goes when the returned fd drops
/// (also when the process dies).
pub fn attach(ebpf: &mut Ebpf, name: &str, ifname: &str) -> Result<FdLink> {
    let prog = program(ebpf, name)?;
    let id =
        prog.attach(ifname, XdpMode::Driver).with_context(|| format!("attaching {name} to {ifname} (driver mode)"))?;
    prog.take_link(id)?.try_into().map_err(|_| anyhow!("the kernel attached {name} to {ifname} without a bpf_link"))
}

pub fn sink_counters(ebpf: &Ebpf) -> Result<SinkCounters> {
    let map = ebpf.map("BENCH_SINK").context("no BENCH_SINK map")?;
    let arr = PerCpuArray::<_, SinkCounters>::try_from(map)?;
    let mut total = SinkCounters::default();
    for c in arr.get(&0, 0)?.iter() {
        total.add(c);
    }
    Ok(total)
}

pub fn gen_state(ebpf: &Ebpf) -> Result<GenState> {
    let map = ebpf.map("BENCH_GEN_STATE").context("no BENCH_GEN_STATE map")?;
    let arr = PerCpuArray::<_, GenState>::try_from(map)?;
    let mut total = GenState::default();
    for s in arr.get(&0, 0)?.iter() {
        total.sent += s.sent;
        total.bad_template += s.bad_template;
        total.seq = total.seq.max(s.seq);
        total.idle += s.idle;
        if s.first_ns != 0 && (total.first_ns == 0 || s.first_ns < total.first_ns) {
            total.first_ns = s.first_ns;
        }
        total.last_ns = total.last_ns.max(s.last_ns);
    }
    Ok(total)
}

pub fn drop_count(ebpf: &Ebpf) -> Result<u64> {
    let map = ebpf.map("BENCH_DROP").context("no BENCH_DROP map")?;
    let arr = PerCpuArray::<_, FrameCount>::try_from(map)?;
    Ok(arr.get(&0, 0)?.iter().map(|c| c.frames).sum())
}

pub fn set_gen_config(ebpf: &mut Ebpf, cfg: &GenConfig) -> Result<()> {
    let map = ebpf.map_mut("BENCH_GEN_CFG").context("no BENCH_GEN_CFG map")?;
    Array::<_, GenConfig>::try_from(map)?.set(0, cfg, 0)?;
    Ok(())
}

pub fn set_sink_tag(ebpf: &mut Ebpf, tag: u8, relayed: bool) -> Result<()> {
    let map = ebpf.map_mut("BENCH_SINK_CFG").context("no BENCH_SINK_CFG map")?;
    let cfg = SinkConfig { tag: u32::from(tag), relayed: u32::from(relayed) };
    Array::<_, SinkConfig>::try_from(map)?.set(0, cfg, 0)?;
    Ok(())
}

pub fn ifindex(ifname: &str) -> Result<u32> {
    let c = std::ffi::CString::new(ifname)?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("no interface {ifname} here"));
    }
    Ok(i)
}

/// The `xdp_md` BPF_PROG_TEST_RUN takes as context: the frame arrives on `ifindex`.
pub fn xdp_md(frame_len: usize, ifindex: u32) -> [u8; 24] {
    let mut md = [0u8; 24];
    md[4..8].copy_from_slice(&(frame_len as u32).to_ne_bytes());
    md[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    md
}

/// `ethtool -S IF` as (name, value) pairs (run in the caller's network namespace).
pub fn ethtool_stats(ifname: &str) -> Result<Vec<(String, u64)>> {
    let out = std::process::Command::new("ethtool").args(["-S", ifname]).output().context("running ethtool -S")?;
    anyhow::ensure!(out.status.success(), "ethtool -S {ifname}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect())
}

pub fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}
