//! `hold`: keeps one of the bench programs attached to an interface until SIGTERM/SIGINT
//! (or `max_secs`), then prints its counters. The link is a bpf_link owned by this
//! process, so it is detached however the process ends.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use dhcpv6_bench_common::lines::{self, Line};

use crate::object;
use crate::signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeldProgram {
    Pass,
    Drop,
    Macswap,
    Sink,
}

impl HeldProgram {
    fn name(self) -> &'static str {
        match self {
            HeldProgram::Pass => "bench_pass",
            HeldProgram::Drop => "bench_drop",
            HeldProgram::Macswap => "bench_macswap",
            HeldProgram::Sink => "bench_sink",
        }
    }
}

pub fn hold(obj: &Path, iface: &str, prog: HeldProgram, tag: u8, max_secs: u64) -> Result<()> {
    let mut ebpf = object::load(obj)?;
    if prog == HeldProgram::Sink {
        object::set_sink_tag(&mut ebpf, tag, false)?;
    }
    let link = object::attach(&mut ebpf, prog.name(), iface)?;
    let ifindex = object::ifindex(iface)?;
    Line::Attached(lines::Attached { program: prog.name().into(), iface: iface.into(), ifindex }).print();
    let end = Instant::now() + Duration::from_secs(max_secs);
    while !signal::stopped() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    match prog {
        HeldProgram::Drop => Line::Dropped(lines::Dropped { frames: object::drop_count(&ebpf)? }).print(),
        HeldProgram::Sink => Line::Sink(object::sink_counters(&ebpf)?).print(),
        _ => {}
    }
    drop(link);
    let why = if signal::stopped() { signal::describe() } else { format!("{max_secs} s elapsed") };
    Line::Detached(lines::Detached { program: prog.name().into(), iface: iface.into(), why }).print();
    Ok(())
}
