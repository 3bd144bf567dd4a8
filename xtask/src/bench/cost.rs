//! The test_run cost per answered frame: `dhcpv6-bench cost` in the server namespace,
//! pinned to the server CPU, runs dhcpv6d's program, the MAC swap and a drop in live-frames
//! mode with srv0 as the ingress; their XDP_TX frames go out to gen0, whose drop program
//! runs on the other CPU (gen0's NAPI threaded for this row) so that the figure is the
//! program's. The three are measured interleaved, one run each per round.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dhcpv6_bench_common::lines::{self, Cost, Line};

use super::ir::say;
use super::peers::{self, path_str};
use super::topo::{mac_str, Topo, GEN_IF, SRV_CPU, SRV_IF};
use super::{Paths, Plan};
use crate::{build, interrupt};

#[derive(Debug, Clone, Default)]
pub struct CostRow {
    pub command: String,
    pub napi: String,
    /// By program: dhcpv6d, macswap, drop, dhcpv6d-relayed (a lightweight relay's request).
    pub programs: Vec<Cost>,
    pub secs: f64,
}

impl CostRow {
    pub fn ns(&self, program: &str) -> Option<(f64, f64, f64)> {
        let k = self.programs.iter().find(|k| k.program == program)?;
        Some((k.ns_median, k.ns_min, k.ns_max))
    }
}

pub fn row(paths: &Paths, plan: &Plan) -> Result<CostRow> {
    let started = Instant::now();
    let dir = paths.dir.join("cost");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let topo = Topo::new()?;
    let mut holder = peers::empty(&dir);
    // The cheapest consumer for the answers, so that gen0's ring overflows as little as
    // possible (the MAC swap sends ~7 M frames/s here).
    peers::hold_on(&topo.gen, GEN_IF, &mut holder, paths, &dir, "drop")?;
    let (napi, _) = topo.thread_napi(false)?;
    let args: Vec<String> = vec![
        "cost".into(),
        "--iface".into(),
        SRV_IF.into(),
        "--mac".into(),
        mac_str(&topo.srv_mac),
        "--ll".into(),
        topo.srv_ll.to_string(),
        "--client-mac".into(),
        mac_str(&topo.gen_mac),
        "--client-ip".into(),
        topo.gen_ll.to_string(),
        "--dns".into(),
        peers::DNS.into(),
        "--domain".into(),
        peers::DOMAIN.into(),
        "--repeat".into(),
        plan.cost_repeat.to_string(),
        "--runs".into(),
        plan.cost_runs.to_string(),
    ];
    let command = format!("taskset -c {SRV_CPU} dhcpv6-bench {}", args.join(" "));
    let log = dir.join("cost.log");
    let mut cmd = topo.srv.cmd("taskset");
    cmd.args(["-c", SRV_CPU, path_str(&paths.bench)?]).args(&args).env(build::BENCH_OBJ_ENV, &paths.obj);
    let p = topo.srv.spawn_command(cmd, Some(&log))?;
    let limit = Duration::from_secs(120);
    loop {
        if let Some(st) = p.wait_timeout(Duration::from_millis(100)) {
            if !st.success() {
                bail!("dhcpv6-bench cost failed ({st}):\n{}", peers::tail(Some(&log), 10));
            }
            break;
        }
        interrupt::check()?;
        if started.elapsed() > limit {
            bail!("dhcpv6-bench cost ran longer than {limit:?}; see {}", log.display());
        }
    }
    let programs: Vec<Cost> = lines::parse(&fs::read_to_string(&log)?)
        .with_context(|| format!("reading {}", log.display()))?
        .into_iter()
        .filter_map(|l| if let Line::Cost(c) = l { Some(c) } else { None })
        .collect();
    if programs.len() != 4 {
        bail!("dhcpv6-bench cost printed {} results, not 4; see {}", programs.len(), log.display());
    }
    for k in &programs {
        say(&format!(
            "  {}: {:.0} ns per frame (median of {}, {:.0}..{:.0})",
            k.program, k.ns_median, k.runs, k.ns_min, k.ns_max,
        ));
    }
    drop(holder);
    Ok(CostRow { command, napi, programs, secs: started.elapsed().as_secs_f64() })
}
