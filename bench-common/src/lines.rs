//! The output of `dhcpv6-bench`: one JSON object a line on stdout, tagged by `kind`.
//! `dhcpv6-bench` writes them with [`Line::print`]; xtask reads its log with [`parse`], which
//! skips what is not JSON (diagnostics on stderr share the log) but refuses a JSON line it
//! cannot read, so a change on one side that the other does not follow fails loudly.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde::{Deserialize, Serialize};

use crate::maps::SinkCounters;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    /// `hold`: the program is attached (the driver waits for this line).
    Attached(Attached),
    /// `hold`: the drop program's count when it was stopped.
    Dropped(Dropped),
    /// `hold`: the sink's counters when it was stopped; `gen`: the sink's over the run.
    Sink(SinkCounters),
    /// `hold`: the program is detached.
    Detached(Detached),
    /// `gen`: the flat-out window.
    Flat(Flat),
    /// `gen`: one fixed-rate step.
    GenStep(GenStep),
    /// `gen` and `dhcp`: a search's result.
    Search(Search),
    /// `gen`: the BPF_PROG_TEST_RUN calls the run made.
    Calls(Calls),
    /// `cost`: one program's ns per frame.
    Cost(Cost),
    /// `dhcp --exchange renew`: how the population was obtained.
    Population(Population),
    /// `dhcp`: one fixed-rate step.
    DhcpStep(DhcpStep),
    /// `dhcp`: invalid answers over the run, by reason.
    Invalid(Invalid),
    /// `dhcp`: totals over the run.
    Totals(Totals),
    /// `storm`: progress, about once a second (bound so far).
    StormTick(StormTick),
    /// `storm`: the storm's result (boxed: it carries the bound-over-time series).
    Storm(Box<Storm>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attached {
    pub program: String,
    pub iface: String,
    pub ifindex: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub frames: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detached {
    pub program: String,
    pub iface: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Flat {
    pub secs: f64,
    pub sent: u64,
    pub offered_pps: f64,
    pub replies: u64,
    pub replies_pps: f64,
    pub invalid: u64,
    pub stale: u64,
    pub xmit_errors: u64,
    /// Busy percentage of each CPU (by number) during the window.
    pub cpu_busy: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenStep {
    pub target_pps: f64,
    pub offered_pps: f64,
    pub secs: f64,
    pub sent: u64,
    pub replies: u64,
    pub loss: f64,
    pub invalid: u64,
    pub stale: u64,
    pub xmit_errors: u64,
    pub pass: bool,
    /// User-mode share of each CPU (by number) during the window, percent: on the server
    /// CPU of an XDP row, other tasks' work, which delays the server's NAPI thread (not
    /// part of the measurement's judgement; to tell a disturbed step from the server).
    #[serde(default)]
    pub cpu_user: Vec<f64>,
    /// How long the server end's NAPI thread (`--napi-pid`) waited runnable for a CPU over
    /// the window, ms (its schedstat run_delay).
    #[serde(default)]
    pub napi_wait_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub best_pps: f64,
    /// Lowest rate that failed; 0 when none did (the best is then a floor).
    pub lowest_fail_pps: f64,
    pub steps: u64,
    /// The highest passing rate was the cap or the generator's limit, not the server's.
    pub generator_bound: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calls {
    pub n: u64,
    pub avg_us: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub program: String,
    pub ns_median: f64,
    pub ns_min: f64,
    pub ns_max: f64,
    /// The call's wall clock per frame (set-up included), the cross-check.
    pub wall_ns_median: f64,
    pub runs: u64,
    pub repeat: u64,
    pub batch: u32,
    pub answered: u64,
    /// Every run's ns per frame, in order.
    pub all: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Population {
    pub wanted: u64,
    pub bound: u64,
    pub passes: u64,
    pub timed_out: u64,
    pub secs: f64,
    pub rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DhcpStep {
    pub target_pps: f64,
    pub offered_pps: f64,
    pub secs: f64,
    pub sent: u64,
    pub advertised: u64,
    pub requested: u64,
    pub replies: u64,
    pub loss: f64,
    pub sa_loss: f64,
    pub rr_loss: f64,
    pub lat_med_us: u32,
    pub lat_p99_us: u32,
    pub invalid: u64,
    pub stale: u64,
    pub refused: u64,
    pub gen_rcvbuf_errors: u64,
    /// The generator did not offer the rate, or lost messages itself.
    pub short: bool,
    pub pass: bool,
    pub cpu_busy: Vec<f64>,
    /// Datagrams that came after the step's drain, while the generator waited for the server
    /// to go quiet before the next step (lost for this step, which counted them so).
    pub late: u64,
    /// Probes (Solicits of a client of the wait's own) that wait sent: it ends only once one
    /// is answered, behind whatever the server still had queued.
    pub probes: u64,
    /// How long that wait was.
    pub quiet_wait_ms: f64,
    /// False: the wait reached its bound with answers still coming.
    pub quiet: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invalid {
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub received: u64,
    pub stale: u64,
    pub invalid: u64,
    pub refused: u64,
    pub seed: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StormTick {
    pub secs: f64,
    pub bound: u64,
    pub informed: u64,
}

/// A boot storm: `cpes` CPEs starting within SOL_MAX_DELAY, half behind one relay, each
/// with one LAN host asking Information-Request once its CPE is bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Storm {
    pub cpes: u64,
    pub relayed: u64,
    /// How long the storm ran (to the last Reply, or to the time limit).
    pub secs: f64,
    pub timed_out: bool,
    pub bound: u64,
    pub informed: u64,
    /// Seconds from the storm's start until 50 %, 99 %, 100 % of the CPEs were bound.
    pub t50_s: Option<f64>,
    pub t99_s: Option<f64>,
    pub t100_s: Option<f64>,
    /// The same for the LAN hosts' Information-Requests.
    pub inf_t100_s: Option<f64>,
    pub solicits: u64,
    pub requests: u64,
    pub inf_requests: u64,
    pub retransmissions: u64,
    /// Messages (Solicit + Request, retransmissions included) per CPE: mean and most.
    pub msgs_per_cpe: f64,
    pub msgs_per_cpe_max: u64,
    pub request_failures: u64,
    pub never_bound: u64,
    pub inf_unanswered: u64,
    pub stale: u64,
    pub invalid: u64,
    pub reasons: BTreeMap<String, u64>,
    pub bad_relay: u64,
    /// The generator's own losses: messages its sockets refused, answers its buffers dropped.
    pub refused: u64,
    pub gen_rcvbuf_errors: u64,
    /// The generator's CPU time over the storm's wall time (1.0: one whole core).
    pub gen_cpu_share: f64,
    /// The generator was the limit (>= 95 % of its core, timers 100 ms late at p99, or it
    /// lost messages itself).
    pub generator_bound: bool,
    /// How late the generator's timers fired (ms after their due time): its own ceiling
    /// shows as lateness.
    pub late_p99_ms: f64,
    pub late_max_ms: f64,
    /// Busy percentage of each CPU over the storm (host-wide: the server's and the
    /// kernel's work included).
    pub cpu_busy: Vec<f64>,
    pub server_cpu_s: Option<f64>,
    pub server_peak_rss_kb: Option<u64>,
    /// The server's SOL_MAX_RT, when it sent one.
    pub sol_max_rt: Option<u32>,
    /// Bound CPEs and answered LAN hosts every `series_step_s`, from the start.
    pub series_step_s: f64,
    pub series_bound: Vec<u64>,
    pub series_informed: Vec<u64>,
}

impl Line {
    /// Writes the line to stdout and flushes it (the driver reads the log while we run).
    pub fn print(&self) {
        // Serializing these plain structs cannot fail.
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// A JSON line that did not read as a [`Line`].
#[derive(Debug)]
pub struct BadLine {
    pub number: usize,
    pub text: String,
    pub error: serde_json::Error,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} of dhcpv6-bench's output is not one it prints ({}): {}", self.number, self.error, self.text)
    }
}

impl std::error::Error for BadLine {}

/// The lines of `text` that are JSON objects, in order; other lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Line>, BadLine> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with('{'))
        .map(|(i, l)| serde_json::from_str(l).map_err(|error| BadLine { number: i + 1, text: l.to_string(), error }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_other_text_is_skipped() {
        let flat = Line::Flat(Flat { secs: 0.3, sent: 10, cpu_busy: vec![97.0, 41.5], ..Flat::default() });
        let sink = Line::Sink(SinkCounters { frames: 3, valid: 2, passed: 1, ..SinkCounters::default() });
        let search = Line::Search(Search { best_pps: 1000.0, lowest_fail_pps: 0.0, steps: 2, generator_bound: true });
        let text = [&flat, &sink, &search].iter().map(|l| serde_json::to_string(l).unwrap()).collect::<Vec<_>>();
        let log = format!("starting\n{}\n{}\nwarning: x\n{}\n", text[0], text[1], text[2]);
        assert_eq!(parse(&log).unwrap(), vec![flat, sink, search]);
        assert!(text[0].starts_with(r#"{"kind":"flat","#), "{}", text[0]);
    }

    #[test]
    fn a_gen_step_keeps_the_server_cpu_figures_and_older_lines_still_read() {
        let st = GenStep {
            sent: 100,
            replies: 99,
            cpu_user: vec![3.0, 45.0],
            napi_wait_ms: Some(12.5),
            ..GenStep::default()
        };
        let line = Line::GenStep(st.clone());
        assert_eq!(parse(&serde_json::to_string(&line).unwrap()).unwrap(), vec![line]);
        let old = r#"{"kind":"gen_step","target_pps":270000.0,"offered_pps":269000.0,"secs":1.0,"sent":269000,"replies":268112,"loss":0.0033,"invalid":0,"stale":0,"xmit_errors":888,"pass":false}"#;
        let Line::GenStep(o) = &parse(old).unwrap()[0] else { panic!("not a gen_step") };
        assert_eq!((o.xmit_errors, o.cpu_user.len(), o.napi_wait_ms), (888, 0, None));
    }

    #[test]
    fn a_json_line_of_another_shape_is_refused() {
        let e = parse("ok\n{\"kind\":\"flat\",\"secs\":1}\n").unwrap_err();
        assert_eq!(e.number, 2);
        assert!(parse("{\"kind\":\"nonsense\"}").is_err());
    }
}
