//! `cargo xtask`: build, run, lab, test, fuzz and bench for dhcpv6d.

mod bench;
mod build;
mod fuzz;
mod interrupt;
mod lab;
mod run;
mod test;
mod toolchain;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run, test and benchmark dhcpv6d")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bootstrap the eBPF toolchain pieces, build the XDP object and target/release/dhcpv6d.
    Build {
        /// Debug build of the daemon (the XDP object is always optimised).
        #[arg(long)]
        debug: bool,
    },
    /// Build, then run dhcpv6d in the foreground on real interfaces (needs root).
    ///
    /// Example: cargo xtask run --iface eth1 -- --dns 2001:db8::53 --domain example.net
    Run {
        /// Interface to serve (repeat for more).
        #[arg(long = "iface", value_name = "IF", required = true)]
        ifaces: Vec<String>,
        /// Allow eth0, which is the uplink on this project's machines.
        #[arg(long)]
        i_know: bool,
        /// Further arguments for dhcpv6d (after `--`).
        #[arg(last = true, value_name = "DAEMON_ARGS")]
        args: Vec<String>,
    },
    /// Try the server without a spare NIC: dhcpv6d and dhclient in two network namespaces
    /// joined by a veth pair (needs root). Exits 0 only if the client got DNS and domain.
    Lab {
        /// Run the daemon with --no-fast-path (userspace answers everything).
        #[arg(long)]
        no_fast_path: bool,
        /// Keep the lab up this many seconds after the exchange, to look around.
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_going_secs: u64,
        /// Use this dhcpv6d binary instead of building one (e.g. a debug build).
        #[arg(long, value_name = "PATH", hide = true)]
        bin: Option<PathBuf>,
    },
    /// dhcpv6d beside Kea and dnsmasq on the same traffic (needs root; installs Kea,
    /// dnsmasq and perfdhcp as needed). Writes docs/benchmarks.md.
    Bench {
        /// Prove every row works end to end in under two minutes (figures not meaningful;
        /// report in target/bench/benchmarks-quick.md).
        #[arg(long)]
        quick: bool,
        /// Runs per row (default 3; --quick 1).
        #[arg(long, value_name = "N")]
        runs: Option<usize>,
        /// Skip the stateful (perfdhcp) and lease-population rows.
        #[arg(long)]
        no_stateful: bool,
        /// Write the report here instead.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only these groups of rows, comma-separated: ir, cost, relayed, sarr, check
        /// (perfdhcp), renew, rss, pg, cores, storm. The table says "not run" for the others.
        #[arg(long, value_name = "GROUPS", value_delimiter = ',')]
        only: Vec<String>,
        /// Only these storm servers, comma-separated: kea-memfile, dhcpv6d-sqlite,
        /// dhcpv6d-sqlite-2w, kea-pg, dhcpv6d-pg (default: all). A 100,000-CPE comparison of
        /// dhcpv6d with Kea memfile takes minutes instead of the twelve of every server.
        #[arg(long, value_name = "SERVERS", value_delimiter = ',')]
        storm_servers: Vec<String>,
    },
    /// Fuzz: every cargo-fuzz target in fuzz/ for --secs each (nightly; installs cargo-fuzz
    /// into target/tools), or `--target xdp`: the XDP program against its userspace twin on
    /// --frames random and mutated frames (needs root). See docs/fuzzing.md.
    Fuzz {
        /// One of codec_roundtrip, relay, engine, config, or xdp (default: all but xdp).
        #[arg(long, value_name = "T")]
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, value_name = "N", default_value_t = 300)]
        secs: u64,
        /// Frames for `--target xdp` (the second layout's test runs half as many more).
        #[arg(long, value_name = "N", default_value_t = fuzz::XDP_FRAMES)]
        frames: u64,
    },
    /// The whole test suite, as CI runs it (needs root; installs the Debian packages it needs).
    Test {
        /// Skip the final lab run.
        #[arg(long)]
        quick: bool,
        /// Stop `cargo test` if it runs longer than this.
        #[arg(long, value_name = "MINUTES", default_value_t = 45)]
        timeout_mins: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, without the backtrace RUST_BACKTRACE would add.
            eprintln!("\nerror: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let root = util::root();
    match cli.cmd {
        Cmd::Build { debug } => {
            let bin = build::build_all(&root, !debug)?;
            println!("{}", bin.display());
        }
        Cmd::Run { ifaces, i_know, args } => {
            run::run(&root, &run::RunOptions { ifaces, i_know, args })?;
        }
        Cmd::Lab { no_fast_path, keep_going_secs, bin } => {
            lab::lab(&root, &lab::LabOptions { no_fast_path, keep_going_secs, bin })?;
        }
        Cmd::Bench { quick, runs, no_stateful, out, only, storm_servers } => {
            bench::bench(&root, &bench::BenchOptions { quick, runs, no_stateful, out, only, storm_servers })?;
        }
        Cmd::Fuzz { target, secs, frames } => {
            interrupt::install()?;
            fuzz::fuzz(&root, &fuzz::FuzzOptions { target, secs, frames })?;
        }
        Cmd::Test { quick, timeout_mins } => {
            let timeout = Duration::from_secs(timeout_mins.saturating_mul(60));
            test::test(&root, &test::TestOptions { quick, timeout })?;
        }
    }
    Ok(())
}
