//! `cargo xtask`: build, run, lab, test and bench for dhcpv6d.

mod build;
mod toolchain;
mod util;

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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = util::root();
    match cli.cmd {
        Cmd::Build { debug } => {
            let bin = build::build_all(&root, !debug)?;
            println!("{}", bin.display());
        }
    }
    Ok(())
}
