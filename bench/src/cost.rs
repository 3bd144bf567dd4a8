//! `cost`: what one answered frame costs, from BPF_PROG_TEST_RUN in live-frames mode on the
//! server's end (the kernel's own per-repetition average: program, XDP_TX as a redirect
//! back out of the same interface, page recycling). The real dhcpv6d program with reply data
//! for that interface, beside the bare MAC swap and a plain drop (the harness's floor).
//!
//! Live-frames mode recycles pages without restoring their bytes, so after the first round
//! the server's program would see its own Reply: every program is measured behind
//! `bench_restore`, which copies the request back and tail-calls it. That wrapper's cost is
//! in all three figures alike.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp};
use dhcpv6::{
    dataplane::Dataplane,
    fastpath::build_reply_data,
    server::{IfaceService, ServiceOptions},
    wire::Duid,
};

use crate::object;
use crate::signal;
use dhcpv6_bench_common::lines::{self, Line};
use dhcpv6_common::csum::udp_sum;

use crate::template::{information_request, relayed_information_request};

#[derive(Clone)]
pub struct CostArgs {
    pub iface: String,
    /// The server end's MAC and link-local address (the reply comes from them).
    pub mac: [u8; 6],
    pub ll: Ipv6Addr,
    /// The client's (the generator end's).
    pub client_mac: [u8; 6],
    pub client_ip: Ipv6Addr,
    pub dns: Ipv6Addr,
    pub domain: String,
    pub repeat: u32,
    pub runs: usize,
    pub batch: u32,
}

/// Removes the cost run's pin folder however the run ends.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Ok(dir) = std::fs::read_dir(&self.0) {
            for e in dir.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub fn cost(obj: &Path, a: &CostArgs) -> Result<()> {
    let ifindex = object::ifindex(&a.iface)?;
    let template = information_request(a.client_mac, a.client_ip, &[], 0x42);
    let frame = template.bytes.clone();
    let md = object::xdp_md(frame.len(), ifindex);
    // The same request from a lightweight relay on the link (the interface trusts them).
    let relayed_template = relayed_information_request(a.client_mac, a.client_ip, &[], 0x42);
    let relayed_frame = relayed_template.bytes.clone();
    let relayed_md = object::xdp_md(relayed_frame.len(), ifindex);

    // The wrapper that restores the request before each repetition (see bench_restore).
    let mut ebpf = object::load(obj)?;
    object::set_gen_config(&mut ebpf, &template.config())?;
    object::program(&mut ebpf, "bench_restore")?;

    // The server's own program, loaded as the daemon loads it, maps pinned in a folder of
    // this run's.
    let pins = PinDir(PathBuf::from(format!("/sys/fs/bpf/dhcpv6-bench-cost-{}", std::process::id())));
    let mut dp = Dataplane::load(&pins.0, false).context("loading the dhcpv6d XDP program")?;
    let svc = IfaceService {
        duid: Duid::from_mac(a.mac),
        options: ServiceOptions { dns: vec![a.dns], domains: vec![a.domain.clone()], ..Default::default() }
            .encode()
            .context("encoding the options")?,
        ignore_user_classes: Vec::new(),
    };
    let mut data = build_reply_data(a.mac, a.ll, &svc, true, 1).context("building reply data")?;
    data.flags |= dhcpv6_common::IFACE_RELAYED_IR;
    dp.set_iface(ifindex, &data)?;
    check_answer(dp.program()?, &frame, &md, a.ll, a.client_ip)?;
    check_relayed_answer(dp.program()?, &relayed_frame, &relayed_md, a.ll, a.client_ip)?;
    let dhcpv6_fd = dp.program()?.fd()?.try_clone()?;

    let macswap_fd = object::program(&mut ebpf, "bench_macswap")?.fd()?.try_clone()?;
    let drop_fd = object::program(&mut ebpf, "bench_drop")?.fd()?.try_clone()?;

    // Interleaved, one run of each program per round: the host's slow and fast phases
    // (this is a shared VM) fall on all three alike, so their ratio holds even when the
    // absolute figures wander.
    let one = CostArgs { runs: 1, ..a.clone() };
    let (mut ns_dhcpv6, mut ns_swap, mut ns_drop) = (Vec::new(), Vec::new(), Vec::new());
    let mut ns_relayed = Vec::new();
    let c0 = dp.counters()?;
    let dropped0 = object::drop_count(&ebpf)?;
    for _ in 0..a.runs {
        for (fd, out) in [(&dhcpv6_fd, &mut ns_dhcpv6), (&macswap_fd, &mut ns_swap), (&drop_fd, &mut ns_drop)] {
            set_tail(&mut ebpf, fd)?;
            out.extend(measure(object::program(&mut ebpf, "bench_restore")?, &frame, &md, &one)?);
        }
        // The relayed request: bench_restore copies its template back instead.
        set_tail(&mut ebpf, &dhcpv6_fd)?;
        object::set_gen_config(&mut ebpf, &relayed_template.config())?;
        let r = measure(object::program(&mut ebpf, "bench_restore")?, &relayed_frame, &relayed_md, &one);
        object::set_gen_config(&mut ebpf, &template.config())?;
        ns_relayed.extend(r?);
    }
    let c = dp.counters()?;
    let (answered, relayed) = (c.answered - c0.answered, c.tx_relayed_ir - c0.tx_relayed_ir);
    let dropped = object::drop_count(&ebpf)? - dropped0;
    let want = u64::from(a.repeat) * a.runs as u64;
    report("dhcpv6d", &ns_dhcpv6, a, answered);
    report("macswap", &ns_swap, a, 0);
    report("drop", &ns_drop, a, dropped);
    report("dhcpv6d-relayed", &ns_relayed, a, relayed);
    ensure!(answered == want, "dhcpv6d answered {answered} of {want} frames under test_run");
    ensure!(relayed == want, "dhcpv6d answered {relayed} of {want} relayed frames under test_run");
    ensure!(dropped == want, "the drop program saw {dropped} of {want} frames: the tail call did not happen");
    drop(dhcpv6_fd);
    dp.shutdown()?;
    drop(pins);
    Ok(())
}

fn set_tail(ebpf: &mut aya::Ebpf, fd: &aya::programs::ProgramFd) -> Result<()> {
    let map = ebpf.map_mut("BENCH_TAIL").context("no BENCH_TAIL map")?;
    aya::maps::ProgramArray::try_from(map)?.set(0, fd, 0).context("putting the program into BENCH_TAIL")?;
    Ok(())
}

/// One plain run (repeat 1, output kept): the program must answer with a correct checksum.
fn check_answer(prog: &mut Xdp, frame: &[u8], md: &[u8], ll: Ipv6Addr, client: Ipv6Addr) -> Result<()> {
    let (action, out) = run_once(prog, frame, md).context("test_run of one frame")?;
    if action != 3 {
        bail!("dhcpv6d's program returned XDP action {action} for the Information-Request, not XDP_TX (3)");
    }
    ensure!(out.len() > 62 && out[62] == 7, "the answer is not a Reply");
    ensure!(udp_sum(&ll, &client, &out[54..]) == 0xffff, "the Reply's UDP checksum is wrong");
    Ok(())
}

/// One plain run of the relayed request: a Relay-Reply to port 547 carrying a Reply.
fn check_relayed_answer(prog: &mut Xdp, frame: &[u8], md: &[u8], ll: Ipv6Addr, client: Ipv6Addr) -> Result<()> {
    let (action, out) = run_once(prog, frame, md).context("test_run of one relayed frame")?;
    if action != 3 {
        bail!("dhcpv6d's program returned XDP action {action} for the relayed Information-Request, not XDP_TX");
    }
    ensure!(out.len() > 62 && out[62] == 13 && out[56..58] == [2, 35], "the answer is not a Relay-Reply to 547");
    ensure!(udp_sum(&ll, &client, &out[54..]) == 0xffff, "the Relay-Reply's UDP checksum is wrong");
    Ok(())
}

/// One plain run of `frame` (repeat 1): the XDP action and the frame as the program left it.
fn run_once(prog: &mut Xdp, frame: &[u8], md: &[u8]) -> Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; 4096];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(md),
        ..Default::default()
    })?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out))
}

/// `runs` live-frames runs of `repeat` frames; the kernel's ns per frame of each.
fn measure(prog: &mut Xdp, frame: &[u8], md: &[u8], a: &CostArgs) -> Result<Vec<(f64, f64)>> {
    let mut v = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        signal::check()?;
        let t = std::time::Instant::now();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(md),
                repeat: a.repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(a.batch),
                ..Default::default()
            })
            .with_context(|| format!("live-frames test_run on {}", a.iface))?;
        let wall = t.elapsed().as_nanos() as f64 / f64::from(a.repeat);
        // The kernel's own figure (whole ns per repetition), and the call's wall clock per
        // frame (set-up of the run included) as a cross-check.
        v.push((r.duration.as_nanos() as f64, wall));
    }
    Ok(v)
}

fn report(label: &str, ns: &[(f64, f64)], a: &CostArgs, answered: u64) {
    let mut k: Vec<f64> = ns.iter().map(|x| x.0).collect();
    let mut w: Vec<f64> = ns.iter().map(|x| x.1).collect();
    k.sort_by(f64::total_cmp);
    w.sort_by(f64::total_cmp);
    Line::Cost(lines::Cost {
        program: label.to_string(),
        ns_median: k[k.len() / 2],
        ns_min: k[0],
        ns_max: k[k.len() - 1],
        wall_ns_median: w[w.len() / 2],
        runs: a.runs as u64,
        repeat: u64::from(a.repeat),
        batch: a.batch,
        answered,
        all: ns.iter().map(|x| x.0).collect(),
    })
    .print();
}
