//! dhcpv6-bench: the load generators and measurements behind `cargo xtask bench`.
//!
//! Every subcommand runs in the network namespace it is started in (`nsenter --net=...`)
//! and is bounded in time and count. xtask starts them, pins them to CPUs and reads the JSON
//! lines they print (`dhcpv6_bench_common::lines`; docs/benchmarks.md describes the set-up).
//!
//! - `gen`: Information-Request generator and reply sink on the generator's veth end;
//!   flat-out rate, a fixed rate, or a bounded search for the highest rate with at most
//!   a given loss.
//! - `hold`: keeps a bench XDP program (pass, drop, macswap, sink) attached until stopped.
//! - `dhcp`: stateful load (Solicit-Advertise-Request-Reply, Renew of a population) from
//!   an ordinary UDP socket, with per-client state; fixed rates or the same bounded search.
//! - `responder`: a trivial stateful server (answers from the message alone) against which
//!   `dhcp` shows its own ceiling.
//! - `storm`: a boot storm of N CPEs (SARR with RFC 9915's timers, half relayed, a LAN
//!   host's Information-Request each), time to 50/99/100 % bound.
//! - `cost`: ns per answered frame of the dhcpv6d program, the MAC swap and a drop, from
//!   BPF_PROG_TEST_RUN in live-frames mode.

mod cost;
mod gen;
mod hold;
mod object;
mod procstat;
mod qos;
mod search;
mod signal;
mod stateful;
mod storm;
mod template;

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dhcpv6_bench_common::lines::{self, Line};

#[derive(Parser)]
#[command(name = "dhcpv6-bench", about = "Load generators and measurements of `cargo xtask bench`")]
struct Cli {
    /// The bench XDP object (default: $DHCPV6_BENCH_OBJ, else target/ebpf/... beside this binary).
    #[arg(long, global = true, value_name = "PATH")]
    object: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Information-Request load: flat out, then a bounded search (or one fixed rate).
    Gen(GenArgs),
    /// Keep a bench program attached to IF until SIGTERM/SIGINT (or --max-secs).
    Hold {
        #[arg(long)]
        iface: String,
        #[arg(long, value_enum)]
        program: hold::HeldProgram,
        /// The sink's run tag (transaction id byte 0).
        #[arg(long, default_value_t = 0x42)]
        tag: u8,
        #[arg(long, default_value_t = 3600)]
        max_secs: u64,
    },
    /// Stateful load from a UDP socket: Solicit-Advertise-Request-Reply or Renew of a
    /// population, at fixed rates or in a search for the highest rate with <= --max-loss.
    Dhcp(stateful::DhcpArgs),
    /// A trivial stateful server for `dhcp`'s own ceiling: every Solicit, Request and Renew
    /// answered at once from the message alone (no engine, no store).
    Responder(stateful::responder::ResponderArgs),
    /// A boot storm: N CPEs (half behind one relay) binding address + prefix on RFC 9915's
    /// timers, each with a LAN host's Information-Request; bounded by --max-secs.
    Storm(storm::StormArgs),
    /// ns per answered frame (test_run, live frames) of dhcpv6d's program, MAC swap, drop.
    Cost {
        #[arg(long)]
        iface: String,
        #[arg(long, value_parser = parse_mac)]
        mac: [u8; 6],
        #[arg(long)]
        ll: Ipv6Addr,
        #[arg(long, value_parser = parse_mac)]
        client_mac: [u8; 6],
        #[arg(long)]
        client_ip: Ipv6Addr,
        #[arg(long, default_value = "2001:db8::53")]
        dns: Ipv6Addr,
        #[arg(long, default_value = "bench.example")]
        domain: String,
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 64)]
        batch: u32,
    },
}

#[derive(clap::Args)]
struct GenArgs {
    /// The generator's end of the veth pair.
    #[arg(long)]
    iface: String,
    #[arg(long, value_parser = parse_mac)]
    src_mac: [u8; 6],
    /// Source address (the generator end's link-local, so the peer's replies resolve).
    #[arg(long)]
    src_ip: Ipv6Addr,
    /// 802.1Q tag (repeat for two, outermost first).
    #[arg(long = "vlan")]
    vlans: Vec<u16>,
    #[arg(long, value_enum, default_value = "reply")]
    expect: gen::Expect,
    /// Frames per live-frames batch (1..=256).
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// Seconds of flat-out sending measured (0: none).
    #[arg(long, default_value_t = 2.0)]
    flat_secs: f64,
    #[arg(long, default_value_t = 0.3)]
    warmup_secs: f64,
    /// Fixed-rate runs at this rate instead of the search.
    #[arg(long)]
    rate: Option<f64>,
    /// How many fixed-rate runs (--rate).
    #[arg(long, default_value_t = 1)]
    rate_runs: usize,
    /// Steps of the search for the highest rate with at most --max-loss (0: no search).
    #[arg(long, default_value_t = 8)]
    search_steps: usize,
    #[arg(long, default_value_t = 1.0)]
    step_secs: f64,
    /// First rate the search tries (default: the flat-out replies/s).
    #[arg(long)]
    hint_pps: Option<f64>,
    /// Highest rate the search may try.
    #[arg(long, default_value_t = 20_000_000.0)]
    cap_pps: f64,
    #[arg(long, default_value_t = 0.001)]
    max_loss: f64,
    #[arg(long, default_value_t = 0.03)]
    precision: f64,
    /// Fixed rates: send the frames of this many microseconds back to back (like a NIC's
    /// interrupt moderation; 0: evenly spaced single frames).
    #[arg(long, default_value_t = 100.0)]
    coalesce_us: f64,
    /// PID of the server end's NAPI thread (SCHED_FIFO 1 during fixed-rate steps,
    /// SCHED_OTHER while flooding).
    #[arg(long)]
    napi_pid: Option<u32>,
    /// Do not attach the sink (another process holds an XDP program on the interface; the
    /// answers are then not counted here).
    #[arg(long)]
    no_sink: bool,
    /// Wait for late answers after each step.
    #[arg(long, default_value_t = 300)]
    drain_ms: u64,
    /// Send each Information-Request inside a lightweight relay's Relay-Forward (RFC 6221:
    /// from port 547, Interface-ID "bench-port") and count the Relay-Replies.
    #[arg(long)]
    relayed: bool,
    /// Hold a PM QoS request for 0 us CPU wake-up latency (/dev/cpu_dma_latency) while
    /// running: idle CPUs poll instead of halting (see qos.rs).
    #[arg(long)]
    idle_poll: bool,
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<&str> = s.split(':').collect();
    if v.len() != 6 {
        bail!("a MAC is six hex octets separated by ':'");
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(v) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("bad octet {p:?}"))?;
    }
    Ok(m)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhcpv6-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    signal::install()?;
    if let Cmd::Dhcp(a) = cli.cmd {
        // A socket's load: no XDP object needed.
        return stateful::dhcp(a);
    }
    if let Cmd::Storm(a) = cli.cmd {
        return storm::storm(a);
    }
    if let Cmd::Responder(a) = cli.cmd {
        return stateful::responder::respond(a);
    }
    let obj = object::locate(cli.object.as_deref())?;
    match cli.cmd {
        Cmd::Dhcp(_) | Cmd::Storm(_) | Cmd::Responder(_) => unreachable!("handled above"),
        Cmd::Hold { iface, program, tag, max_secs } => hold::hold(&obj, &iface, program, tag, max_secs),
        Cmd::Cost { iface, mac, ll, client_mac, client_ip, dns, domain, repeat, runs, batch } => cost::cost(
            &obj,
            &cost::CostArgs { iface, mac, ll, client_mac, client_ip, dns, domain, repeat, runs, batch },
        ),
        Cmd::Gen(a) => generate(&obj, &a),
    }
}

fn generate(obj: &std::path::Path, a: &GenArgs) -> Result<()> {
    let _idle_poll = if a.idle_poll { Some(qos::hold_zero(std::path::Path::new(qos::CPU_DMA_LATENCY))?) } else { None };
    let setup = gen::GenSetup {
        iface: a.iface.clone(),
        src_mac: a.src_mac,
        src_ip: a.src_ip,
        vlans: a.vlans.clone(),
        expect: a.expect,
        batch: a.batch,
        sink: !a.no_sink,
        coalesce_us: a.coalesce_us,
        napi_pid: a.napi_pid,
        relayed: a.relayed,
    };
    let mut g = gen::Gen::new(obj, setup)?;
    let drain = Duration::from_millis(a.drain_ms);
    let mut hint = a.hint_pps;
    if a.flat_secs > 0.0 {
        let f = g.flat(a.warmup_secs, a.flat_secs, drain)?;
        hint = hint.or(Some(f.replies_pps.max(1000.0)));
        Line::Flat(f).print();
        g.settle(Duration::from_secs(3))?;
    }
    let print_step = |s: &lines::GenStep| Line::GenStep(s.clone()).print();
    if let Some(rate) = a.rate {
        for _ in 0..a.rate_runs.max(1) {
            print_step(&g.step(rate, a.step_secs, drain, a.max_loss)?);
        }
    } else if a.search_steps > 0 && a.expect != gen::Expect::None {
        let p = gen::SearchParams {
            hint_pps: hint.unwrap_or(10_000.0),
            cap_pps: a.cap_pps,
            max_steps: a.search_steps,
            step_secs: a.step_secs,
            drain,
            max_loss: a.max_loss,
            precision: a.precision,
        };
        Line::Search(g.search(&p, print_step)?).print();
    }
    Line::Sink(g.sink()?).print();
    let avg_us = if g.calls == 0 { 0.0 } else { g.call_time.as_secs_f64() * 1e6 / g.calls as f64 };
    Line::Calls(lines::Calls { n: g.calls, avg_us }).print();
    Ok(())
}
