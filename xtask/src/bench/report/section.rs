//! The generated section of docs/benchmarks.md: the snippets of `section.md` filled in with
//! the machine, the table and every row's detail.

use std::time::Duration;

use super::plots::Plots;
use super::template::Snippets;
use super::{first_line, num, Machine, Results, BEGIN, END};
use crate::bench::cost::CostRow;
use crate::bench::ir::{cpu_busy, IrRow};
use crate::bench::peers::Peer;
use crate::bench::stateful::{AfterStep, SarrRow};
use crate::bench::storm::{summary, StormRow};
use crate::bench::Plan;

type Vars<'a> = Vec<(&'a str, String)>;

/// "- server peak RSS: N MB" when it was read.
fn peak_rss(t: &Snippets, kb: Option<u64>) -> String {
    kb.map_or(String::new(), |k| t.fill("peak_rss", &[("mb", num(k as f64 / 1024.0))]))
}

fn ir_row(t: &Snippets, title: &str, r: &Result<IrRow, String>) -> String {
    let row = match r {
        Err(e) => return t.fill("row_failed", &[("title", title.into()), ("error", first_line(e))]),
        Ok(row) => row,
    };
    let runs: String = row
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let f = run.flat.as_ref();
            let g = |v: Option<f64>| v.map_or("?".into(), num);
            let cpu: Vec<String> =
                f.map(|x| cpu_busy(x).map(|(cpu, busy)| format!("{cpu} {busy} %")).collect()).unwrap_or_default();
            let search = run.search.as_ref().map_or(String::new(), |se| {
                let steps: Vec<String> = run
                    .steps
                    .iter()
                    .map(|st| {
                        let mark = if st.pass {
                            "✓".to_string()
                        } else {
                            format!("✗{:.2}%{}", 100.0 * st.loss, crate::bench::ir::server_cpu_shared(st))
                        };
                        format!("{}{mark}", num(st.target_pps))
                    })
                    .collect();
                t.inline(
                    "ir_search",
                    &[
                        ("best", num(se.best_pps)),
                        ("bound", if se.generator_bound { ", generator-bound" } else { "" }.into()),
                        ("steps", steps.join(" ")),
                    ],
                )
            });
            t.fill(
                "ir_run",
                &[
                    ("n", (i + 1).to_string()),
                    ("offered", g(f.map(|x| x.offered_pps))),
                    ("answered", g(f.map(|x| x.replies_pps))),
                    ("invalid", g(f.map(|x| x.invalid as f64))),
                    ("cpu", cpu.join(", ")),
                    ("search", search),
                ],
            )
        })
        .collect();
    let counters = if row.drops.is_empty() {
        String::new()
    } else {
        let d: Vec<String> = row.drops.iter().map(|(k, v)| format!("{k} +{}", num(*v as f64))).collect();
        t.fill("counters", &[("counters", d.join(", "))])
    };
    t.fill(
        "ir_row",
        &[
            ("title", title.into()),
            ("command", row.command.clone()),
            ("secs", format!("{:.0}", row.secs)),
            ("gen_command", row.gen_command.clone()),
            ("napi", row.napi.clone()),
            ("peak_rss", peak_rss(t, row.peak_rss_kb)),
            ("runs", runs),
            ("counters", counters),
        ],
    )
}

fn cost(t: &Snippets, c: &Option<Result<CostRow, String>>) -> String {
    let c = match c {
        Some(Ok(c)) => c,
        Some(Err(e)) => return t.fill("cost_failed", &[("error", first_line(e))]),
        None => return t.fill("not_run", &[]),
    };
    let programs: String = c
        .programs
        .iter()
        .map(|k| {
            t.fill(
                "cost_program",
                &[
                    ("program", k.program.clone()),
                    ("median", num(k.ns_median)),
                    ("min", num(k.ns_min)),
                    ("max", num(k.ns_max)),
                    ("runs", k.runs.to_string()),
                    ("repeat", num(k.repeat as f64)),
                    ("wall", format!("{:.1}", k.wall_ns_median)),
                ],
            )
        })
        .collect();
    t.fill(
        "cost",
        &[
            ("command", c.command.clone()),
            ("secs", format!("{:.0}", c.secs)),
            ("napi", c.napi.clone()),
            ("programs", programs),
        ],
    )
}

/// The answers that came after a step's drain, while the generator waited for the server to
/// go quiet before the next step.
fn after_step(a: AfterStep) -> String {
    let late = num(a.late as f64);
    // One probe is the rule; more say the server dropped or shed the first ones.
    let probes = if a.probes > 1 { format!(", {} probes", a.probes) } else { String::new() };
    if !a.quiet {
        format!(", {late} late, not quiet after {:.1} s{probes}", a.wait_ms / 1000.0)
    } else if a.late > 0 || a.probes > 1 {
        format!(", {late} late, quiet within {:.1} s{probes}", a.wait_ms / 1000.0)
    } else {
        ", 0 late".into()
    }
}

fn stateful_row(t: &Snippets, title: &str, r: &Result<SarrRow, String>) -> String {
    let row = match r {
        Err(e) => return t.fill("row_failed", &[("title", title.into()), ("error", first_line(e))]),
        Ok(row) => row,
    };
    let population = row.population.as_ref().map_or(String::new(), |p| {
        t.fill(
            "population",
            &[
                ("bound", num(p.bound as f64)),
                ("wanted", num(p.wanted as f64)),
                ("secs", format!("{:.3}", p.secs)),
                ("rate", num(p.rate.round())),
                ("timed_out", p.timed_out.to_string()),
                ("passes", p.passes.to_string()),
            ],
        )
    });
    let runs: String = row
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let steps: Vec<String> = run
                .steps
                .iter()
                .map(|st| {
                    let mark =
                        if st.pass { ", ✓".to_string() } else { format!(", ✗ {:.2} % lost", 100.0 * st.loss) };
                    let after = st.after.map_or(String::new(), after_step);
                    format!("{} (got {}/s{mark}{after})", num(st.target), num(st.achieved))
                })
                .collect();
            let floor = if run.bound {
                " (generator-bound)"
            } else if run.no_fail {
                " (no step failed: a floor)"
            } else {
                ""
            };
            t.fill(
                "stateful_run",
                &[
                    ("n", (i + 1).to_string()),
                    ("best", num(run.best)),
                    ("floor", floor.into()),
                    ("steps", steps.join(", ")),
                ],
            )
        })
        .collect();
    t.fill(
        "stateful_row",
        &[
            ("title", title.into()),
            ("command", row.command.clone()),
            ("generator", row.perf_command.clone()),
            ("peak_rss", peak_rss(t, row.peak_rss_kb)),
            ("population", population),
            ("runs", runs),
        ],
    )
}

fn stateful_rows(t: &Snippets, res: &Results) -> String {
    let mut s = String::new();
    if res.sarr.is_empty() && res.renew.is_empty() {
        s += &t.fill("not_run", &[]);
    }
    let sarr = res.sarr.iter().map(|(p, mode, threaded, l, r)| {
        let how = if *threaded { ", srv0 NAPI threaded (SCHED_FIFO)" } else { "" };
        (format!("SARR {mode}{how}, {}: {}", l.name(), p.label()), r)
    });
    let renew =
        res.renew.iter().map(|(p, n, r)| (format!("Renew, population of {}: {}", num(*n as f64), p.label()), r));
    let check = res.check_ours.iter().map(|r| {
        let kea = Peer::Kea.label();
        (
            format!(
                "Generator check: SARR address-only, dhcpv6-bench dhcp, in turn with perfdhcp (above) on one {kea}"
            ),
            r,
        )
    });
    for (title, r) in sarr.chain(renew).chain(check) {
        s += &stateful_row(t, &title, r);
    }
    s
}

fn memory(t: &Snippets, res: &Results) -> String {
    if res.rss.is_empty() {
        return String::new();
    }
    let rows: String = res
        .rss
        .iter()
        .map(|(p, n, r)| match r {
            Ok(row) => t.fill(
                "memory_row",
                &[
                    ("server", p.label().into()),
                    ("asked", num(*n as f64)),
                    ("held", num(row.leases as f64)),
                    ("rss", row.rss_kb.map_or("?".into(), |k| num(k as f64 / 1024.0))),
                    ("peak", row.peak_rss_kb.map_or("?".into(), |k| num(k as f64 / 1024.0))),
                    ("secs", format!("{:.0}", row.secs)),
                ],
            ),
            Err(e) => t.fill(
                "memory_failed",
                &[("server", p.label().into()), ("asked", num(*n as f64)), ("error", first_line(e))],
            ),
        })
        .collect();
    t.fill("memory", &[("rows", rows)])
}

fn plot(t: &Snippets, file: &Option<String>, alt: &str) -> String {
    file.as_ref().map_or(String::new(), |f| t.fill("plot", &[("alt", alt.into()), ("file", f.clone())]))
}

fn storm_row(t: &Snippets, title: &str, r: &Result<StormRow, String>) -> String {
    let row = match r {
        Err(e) => return t.fill("row_failed", &[("title", title.into()), ("error", first_line(e))]),
        Ok(row) => row,
    };
    let runs: String = row
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let s = &run.storm;
            let n = |v: u64| num(v as f64);
            t.fill(
                "storm_run",
                &[
                    ("n", (i + 1).to_string()),
                    ("summary", summary(run)),
                    ("solicits", n(s.solicits)),
                    ("requests", n(s.requests)),
                    ("infs", n(s.inf_requests)),
                    ("retrans", n(s.retransmissions)),
                    ("req_failures", n(s.request_failures)),
                    ("informed", n(s.informed)),
                    ("cpes", n(s.cpes)),
                    ("inf_t100", s.inf_t100_s.map_or(String::new(), |x| format!(", all within {x:.2} s"))),
                    ("never_bound", n(s.never_bound)),
                    ("stale", n(s.stale)),
                    ("invalid", n(s.invalid)),
                    ("cpu", s.server_cpu_s.map_or("?".into(), |x| format!("{x:.1}"))),
                    ("rss", s.server_peak_rss_kb.map_or("?".into(), |k| num(k as f64 / 1024.0))),
                    ("gen_cpu", format!("{:.0}", 100.0 * s.gen_cpu_share)),
                    ("late_p99", format!("{:.0}", s.late_p99_ms)),
                    ("late_max", format!("{:.0}", s.late_max_ms)),
                    (
                        "cpu_busy",
                        s.cpu_busy
                            .iter()
                            .enumerate()
                            .map(|(i, b)| format!("cpu{i} {b:.0} %"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    ("gen_lost", n(s.refused + s.gen_rcvbuf_errors)),
                    ("sol_max_rt", s.sol_max_rt.map_or(String::new(), |x| format!("; the server's SOL_MAX_RT {x} s"))),
                ],
            )
        })
        .collect();
    t.fill(
        "storm_row",
        &[
            ("title", title.into()),
            ("command", row.command.clone()),
            ("gen_command", row.gen_command.clone()),
            ("napi", row.napi.clone()),
            ("runs", runs),
            (
                "cut_short",
                row.cut_short.as_ref().map_or(String::new(), |w| t.fill("storm_cut_short", &[("why", w.clone())])),
            ),
        ],
    )
}

fn storm(t: &Snippets, res: &Results, plots: &Plots) -> String {
    if res.storm.is_empty() {
        return String::new();
    }
    let rows: String = res.storm.iter().map(|(s, r)| storm_row(t, &format!("Boot storm: {}", s.label()), r)).collect();
    t.fill("storm", &[("plot", plot(t, &plots.storm, "CPEs bound over time during the boot storm")), ("rows", rows)])
}

/// The generated section of docs/benchmarks.md, between its markers.
pub fn section(m: &Machine, plan: &Plan, res: &Results, table: &str, took: Duration, plots: &Plots) -> String {
    let t = Snippets::load();
    let ir_rows: String = res
        .ir
        .iter()
        .map(|(p, r)| (p.label().to_string(), r))
        .chain(res.ir_unthreaded.iter().map(|(p, r)| (format!("{} — srv0 NAPI not threaded", p.label()), r)))
        .chain(res.ir_relayed.iter().map(|(p, r)| (format!("{} — relayed (lightweight relay)", p.label()), r)))
        .map(|(title, r)| ir_row(&t, &title, r))
        .collect();
    let vars: Vars = vec![
        ("quick_flag", if plan.quick { " --quick" } else { "" }.into()),
        ("date", m.date.clone()),
        ("quick_note", if plan.quick { t.fill("quick_note", &[]) } else { String::new() }),
        ("nproc", m.nproc.clone()),
        ("cpu", m.cpu.clone()),
        ("kernel", m.kernel.clone()),
        ("mem", m.mem.clone()),
        ("virt", m.virt.clone()),
        ("versions", m.versions.join("; ")),
        ("load_before", m.load_before.clone()),
        ("load_after", m.load_after.clone()),
        ("took", format!("{:.0}", took.as_secs_f64())),
        ("runs", runs_per_row(plan)),
        ("table", table.into()),
        ("storm", storm(&t, res, plots)),
        ("ir_plot", plot(&t, &plots.ir_loss, "Information-Request loss against offered rate, every search step")),
        ("ir_rows", ir_rows),
        ("sarr_plot", plot(&t, &plots.sarr_loss, "SARR loss against offered rate, every search step")),
        ("cost", cost(&t, &res.cost)),
        ("stateful_rows", stateful_rows(&t, res)),
        ("memory", memory(&t, res)),
    ];
    format!("{BEGIN}\n\n{}\n{END}\n", t.fill("section", &vars))
}

/// "3", or "3 (5 for the SARR rows with srv0's NAPI not threaded and the renew rows)".
fn runs_per_row(plan: &Plan) -> String {
    if plan.stateful_runs == plan.runs {
        plan.runs.to_string()
    } else {
        format!(
            "{} ({} for the SARR rows with srv0's NAPI not threaded and the renew rows)",
            plan.runs, plan.stateful_runs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::rows::{self, table};
    use crate::bench::BenchOptions;

    fn machine() -> Machine {
        Machine {
            date: "2026-12-01 07:00 UTC".into(),
            nproc: "2".into(),
            cpu: "CPU".into(),
            kernel: "Linux 6.18".into(),
            mem: "23 GiB".into(),
            virt: "no hypervisor flag".into(),
            load_before: "0.1".into(),
            load_after: "0.2".into(),
            versions: vec!["Kea 2.2.0".into(), "dnsmasq 2.90".into()],
        }
    }

    #[test]
    fn a_step_shows_the_answers_after_its_drain() {
        let a = |late, wait_ms, probes, quiet| after_step(AfterStep { late, wait_ms, probes, quiet });
        assert_eq!(a(0, 250.0, 1, true), ", 0 late");
        assert_eq!(a(12_345, 1_480.0, 1, true), ", 12,345 late, quiet within 1.5 s");
        assert_eq!(a(0, 1_020.0, 4, true), ", 0 late, quiet within 1.0 s, 4 probes");
        assert_eq!(a(40_000, 5_000.0, 20, false), ", 40,000 late, not quiet after 5.0 s, 20 probes");
    }

    #[test]
    fn a_storm_row_cut_short_says_why() {
        use crate::bench::storm::StormRun;
        use dhcpv6_bench_common::lines::Storm;
        let t = Snippets::load();
        let storm = Storm { cpes: 10, bound: 10, secs: 575.0, t100_s: Some(575.0), ..Storm::default() };
        let mut row = StormRow {
            command: "kea".into(),
            gen_command: "gen".into(),
            napi: "napi".into(),
            runs: vec![StormRun { storm, leases_bound: 20, leases_stored: 20 }],
            cut_short: None,
        };
        let plain = storm_row(&t, "Boot storm: Kea PostgreSQL", &Ok(row.clone()));
        row.cut_short = Some("1 run: the first took 575 s (a storm longer than 300 s runs once)".into());
        let cut = storm_row(&t, "Boot storm: Kea PostgreSQL", &Ok(row));
        assert!(plain.contains("- run 1: 10 of 10 bound") && !plain.contains("1 run:"), "{plain}");
        assert_eq!(
            cut.replace("- 1 run: the first took 575 s (a storm longer than 300 s runs once)\n", ""),
            plain,
            "the reason, a line of its own after the runs"
        );
    }

    #[test]
    fn a_run_of_nothing_still_has_every_heading_in_order() {
        let o = BenchOptions {
            quick: true,
            runs: None,
            no_stateful: false,
            out: None,
            only: vec!["cost".into()],
            storm_servers: Vec::new(),
        };
        let plan = Plan::new(&o);
        let res = Results { cost: Some(Err("boom\nmore".into())), ..Results::default() };
        let t = table(&res);
        let s = section(&machine(), &plan, &res, &t, Duration::from_secs(3), &Plots::default());
        let expected = format!(
            "{BEGIN}\n\n## Results of `cargo xtask bench --quick` (2026-12-01 07:00 UTC)\n\n\
             **A --quick run: it proves the harness, its figures are not measurements.**\n\n\
             Machine: 2 CPUs (CPU), Linux 6.18, 23 GiB RAM, no hypervisor flag.\n\
             Peers: Kea 2.2.0; dnsmasq 2.90.\n\
             Load average before: `0.1`, after: `0.2`. Measured in 3 s, 1 runs per row.\n\n\
             {t}\n### Information-Request rows in detail\n\n\
             ### test_run cost per answered frame\n\nFailed: `boom`\n\n\
             ### Stateful rows in detail\n\nNot run.\n\n{END}\n"
        );
        assert_eq!(s, expected);
        assert!(
            t.contains("| test_run (live frames) ns per answered frame: dhcpv6d program vs MAC swap | failed: boom |")
        );
        assert_eq!(
            t.lines().filter(|l| l.starts_with("| ")).count(),
            1 + rows::ROWS.len(),
            "header and one line a row"
        );
    }
}
