//! The stateful rows' second table: how far dhcpv6d's own runs spread (max/min, judged against
//! the 1.3x of the Boot-storm issue), the server's socket drops over the row, and the lease
//! writer's time per transaction by step.

use std::fmt::Write as _;

use super::{num, Fig, Results};
use crate::bench::peers::Peer;
use crate::bench::server_view::{show, STORE_STEPS};
use crate::bench::stateful::{Loader, SarrRow};

/// dhcpv6d's runs of one row: their highest over their lowest, at most this.
pub const SPREAD_TARGET: f64 = 1.3;

/// The runs' spread: max/min of their figures, with the verdict for a dhcpv6d row.
fn spread(row: &SarrRow, judged: bool) -> String {
    let Some(f) = Fig::of(&row.runs.iter().map(|r| r.best).collect::<Vec<_>>()) else { return "-".into() };
    if f.n < 2 {
        return "one run".into();
    }
    if f.min <= 0.0 {
        return "a run found no rate".into();
    }
    let s = f.max / f.min;
    if judged {
        format!("{s:.2}x (<= {SPREAD_TARGET}x: {})", if s <= SPREAD_TARGET { "met" } else { "NOT met" })
    } else {
        format!("{s:.2}x")
    }
}

fn line(s: &mut String, title: &str, peer: Peer, r: &Result<SarrRow, String>) {
    let row = match r {
        Ok(row) => row,
        Err(e) => {
            let _ = writeln!(s, "| {title} | {} | failed: {} | | | |", peer.label(), super::first_line(e));
            return;
        }
    };
    let fig = Fig::of(&row.runs.iter().map(|r| r.best).collect::<Vec<_>>()).map_or("-".into(), |f| f.show(""));
    let drops = row.server.rcvbuf_errors.map_or("?".into(), |n| num(n as f64));
    let steps: Vec<String> = STORE_STEPS
        .iter()
        .filter_map(|name| row.server.store_steps.iter().find(|(n, _)| n == name))
        .map(|(n, l)| format!("{n} {}", show(l)))
        .collect();
    let steps = if steps.is_empty() { "-".to_string() } else { steps.join("; ") };
    let _ = writeln!(
        s,
        "| {title} | {} | {} | {fig} | {} | {drops} | {steps} |",
        peer.label(),
        row.runs.len(),
        spread(row, peer.stateful())
    );
}

/// The table, or nothing when no SARR (our generator) or renew row ran.
pub fn table(res: &Results) -> String {
    let mut s = String::new();
    for (p, mode, threaded, l, r) in &res.sarr {
        if *l != Loader::Ours {
            continue;
        }
        let how = if *threaded { ", srv0 NAPI threaded" } else { "" };
        line(&mut s, &format!("SARR {mode}{how}"), *p, r);
    }
    for (p, n, r) in &res.renew {
        line(&mut s, &format!("Renew, population of {}", num(*n as f64)), *p, r);
    }
    if s.is_empty() {
        return s;
    }
    format!(
        "\nStateful rows, run by run: each row's searches (runs), the median and range of their results, \
         their spread (max/min; dhcpv6d's judged against {SPREAD_TARGET}x), the datagrams the server's \
         namespace dropped for a full socket buffer (Udp6RcvbufErrors, over the whole row: the \
         searches' failing steps and a renew row's population included), and dhcpv6d's lease writer \
         per transaction by step (write: the batch's statements; sync: COMMIT, the WAL's fsync; \
         checkpoint: the checkpointer thread, off the commit path): p50 / p99 (bucket bounds) / max.\n\n\
         | row | server | runs | per second, median (min..max) | spread | Udp6RcvbufErrors | \
         store steps: p50 / p99 / max |\n\
         |---|---|---|---|---|---|---|\n{s}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::server_view::{ServerView, StepLatency};
    use crate::bench::stateful::SarrRun;

    fn row(bests: &[f64]) -> SarrRow {
        SarrRow {
            command: String::new(),
            perf_command: String::new(),
            runs: bests.iter().map(|b| SarrRun { best: *b, ..SarrRun::default() }).collect(),
            peak_rss_kb: None,
            population: None,
            server: ServerView {
                rcvbuf_errors: Some(12),
                store_steps: vec![("sync", StepLatency { count: 9, p50: 0.001, p99: 0.025, max: 0.0613 })],
            },
        }
    }

    #[test]
    fn spread_is_judged_for_dhcpv6d_only() {
        assert_eq!(spread(&row(&[100.0, 120.0, 129.0]), true), "1.29x (<= 1.3x: met)");
        assert_eq!(spread(&row(&[100.0, 131.0]), true), "1.31x (<= 1.3x: NOT met)");
        assert_eq!(spread(&row(&[100.0, 131.0]), false), "1.31x");
        assert_eq!(spread(&row(&[100.0]), true), "one run");
        assert_eq!(spread(&row(&[0.0, 100.0]), true), "a run found no rate");
    }

    #[test]
    fn a_row_shows_drops_and_store_steps() {
        let res =
            Results { renew: vec![(Peer::Stateful, 1000, Ok(row(&[100.0, 110.0, 105.0])))], ..Results::default() };
        let t = table(&res);
        assert!(
            t.contains(
                "| Renew, population of 1,000 | dhcpv6d stateful | 3 | 105 (100..110) | 1.10x (<= 1.3x: met) | 12 | \
                 sync <= 1 ms / <= 25 ms / 61.3 ms |"
            ),
            "{t}"
        );
        assert!(table(&Results::default()).is_empty());
    }
}
