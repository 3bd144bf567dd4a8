//! The main table: one [`RowSpec`] a row, in order, each naming where its two figures come
//! from; [`table`] reads them from the results.

use std::fmt::Write as _;

use super::{num, Fig, Results, StormFig};
use crate::bench::peers::Peer::{self, *};
use crate::bench::stateful::Loader::{self, *};
use crate::bench::storm::StormServer::{self, *};

/// What a row claims of dhcpv6d / peer.
pub enum Target {
    None,
    /// ours/peer at least this.
    AtLeast(f64),
    /// ours/peer at most this.
    AtMost(f64),
    /// ours/peer within 1 +- this.
    Within(f64),
}

/// Where a figure comes from.
pub enum Source {
    /// No figure ("-").
    Nothing,
    /// Information-Request, highest rate with <= 0.1 % loss (srv0 NAPI threaded).
    Best(Peer),
    /// The same with srv0's NAPI not threaded.
    BestUnthreaded(Peer),
    /// The better of the two set-ups of a userspace peer (the comparison least favourable to
    /// dhcpv6d); `{setup}` in the row's figure names which.
    BestOfBoth(Peer),
    /// Information-Request flat-out answers/s (the generator ceiling: frames offered/s).
    Flat(Peer),
    FlatUnthreaded(Peer),
    FlatOfBoth(Peer),
    /// Relayed Information-Request (a lightweight relay's Relay-Forwards), highest rate
    /// with <= 0.1 % loss and flat-out replies/s.
    BestRelayed(Peer),
    FlatRelayed(Peer),
    /// test_run ns per frame of a program of `dhcpv6-bench cost`.
    Cost(&'static str),
    /// A stateful search: server, perfdhcp mode, srv0 NAPI threaded, generator.
    Sarr(Peer, &'static str, bool, Loader),
    /// Kea's SARR searched by our generator in turn with perfdhcp.
    CheckOurs,
    Renew(Peer),
    /// Peak RSS (MB) of an Information-Request row's server.
    PeakRss(Peer),
    /// RSS (MB) holding this many leases.
    Rss(Peer, u64),
    /// A boot storm's figure.
    Storm(StormServer, StormFig),
}

/// What the row's note says.
pub enum Note {
    None,
    Text(&'static str),
    /// Which of the two figures are floors (generator-bound, or no step failed).
    Floors,
    /// dhcpv6d's figure is perfdhcp-bound.
    PerfdhcpBound,
    /// The leases each side held.
    LeasesHeld,
    /// Which of the two storm figures the generator bounded.
    StormBound(&'static str),
    /// The text, and whether dhcpv6d's SARR figure reaches the SARR generator's own ceiling
    /// (`Peer::Responder`, address, unthreaded, the `cores` generator): then it is the
    /// generator's figure.
    Ceiling(&'static str),
}

/// A SARR figure at least this share of the generator's ceiling is marked generator-bound.
pub const CEILING_SHARE: f64 = 0.9;

pub struct RowSpec {
    /// `{setup}`: the peer's set-up of a `*OfBoth` source; `{population}`: the renew rows'
    /// population; `{cpes}`: the storm's CPEs.
    pub figure: &'static str,
    pub ours: Source,
    pub peer: Source,
    pub unit: &'static str,
    pub target: Target,
    pub note: Note,
}

const fn row(figure: &'static str, ours: Source, peer: Source, target: Target) -> RowSpec {
    RowSpec { figure, ours, peer, unit: "", target, note: Note::None }
}

const fn noted(figure: &'static str, ours: Source, peer: Source, target: Target, note: Note) -> RowSpec {
    RowSpec { figure, ours, peer, unit: "", target, note }
}

const fn mb(figure: &'static str, ours: Source, peer: Source, target: Target, note: Note) -> RowSpec {
    RowSpec { figure, ours, peer, unit: " MB", target, note }
}

const A: &str = "address-only";
const AP: &str = "address-and-prefix";

pub const ROWS: &[RowSpec] = &[
    row(
        "Information-Request /s at <= 0.1 % loss: XDP fast path vs Kea (Kea with srv0 {setup})",
        Source::Best(FastPath),
        Source::BestOfBoth(Kea),
        Target::AtLeast(15.0),
    ),
    row(
        "Information-Request /s at <= 0.1 % loss: XDP fast path vs dnsmasq (dnsmasq with srv0 {setup})",
        Source::Best(FastPath),
        Source::BestOfBoth(Dnsmasq),
        Target::AtLeast(10.0),
    ),
    row(
        "Information-Request /s at <= 0.1 % loss: XDP fast path vs bare MAC-swap XDP_TX",
        Source::Best(FastPath),
        Source::Best(MacSwap),
        Target::AtLeast(0.9),
    ),
    row(
        "Information-Request flat-out replies/s: XDP fast path vs Kea (Kea with srv0 {setup})",
        Source::Flat(FastPath),
        Source::FlatOfBoth(Kea),
        Target::None,
    ),
    row(
        "Information-Request flat-out replies/s: XDP fast path vs dnsmasq (dnsmasq with srv0 {setup})",
        Source::Flat(FastPath),
        Source::FlatOfBoth(Dnsmasq),
        Target::None,
    ),
    row(
        "Information-Request flat-out replies/s: XDP fast path vs bare MAC-swap XDP_TX",
        Source::Flat(FastPath),
        Source::Flat(MacSwap),
        Target::None,
    ),
    // Userspace against userspace: the same set-up on both sides, both set-ups.
    row(
        "Information-Request /s at <= 0.1 % loss, srv0 NAPI not threaded: userspace path vs dnsmasq",
        Source::BestUnthreaded(Userspace),
        Source::BestUnthreaded(Dnsmasq),
        Target::AtLeast(1.2),
    ),
    row(
        "Information-Request /s at <= 0.1 % loss, srv0 NAPI not threaded: userspace path vs Kea",
        Source::BestUnthreaded(Userspace),
        Source::BestUnthreaded(Kea),
        Target::None,
    ),
    row(
        "Information-Request flat-out replies/s, srv0 NAPI not threaded: userspace path vs dnsmasq",
        Source::FlatUnthreaded(Userspace),
        Source::FlatUnthreaded(Dnsmasq),
        Target::None,
    ),
    row(
        "Information-Request /s at <= 0.1 % loss, srv0 NAPI threaded: userspace path vs dnsmasq",
        Source::Best(Userspace),
        Source::Best(Dnsmasq),
        Target::None,
    ),
    row(
        "Information-Request /s at <= 0.1 % loss, srv0 NAPI threaded: userspace path vs Kea",
        Source::Best(Userspace),
        Source::Best(Kea),
        Target::None,
    ),
    row(
        "Information-Request flat-out replies/s, srv0 NAPI threaded: userspace path vs dnsmasq",
        Source::Flat(Userspace),
        Source::Flat(Dnsmasq),
        Target::None,
    ),
    // Both CPUs against one: what the workers add (the generator shares the second CPU).
    noted(
        "Information-Request /s at <= 0.1 % loss, srv0 NAPI not threaded: userspace path, --workers 2 on both CPUs vs one worker on one",
        Source::BestUnthreaded(UserspaceCores),
        Source::BestUnthreaded(Userspace),
        Target::None,
        Note::Text("the load generator runs on one of the two CPUs"),
    ),
    RowSpec {
        figure: "test_run (live frames) ns per answered frame: dhcpv6d program vs MAC swap",
        ours: Source::Cost("dhcpv6d"),
        peer: Source::Cost("macswap"),
        unit: " ns",
        target: Target::AtMost(4.0),
        note: Note::None,
    },
    RowSpec {
        figure: "test_run (live frames) ns per answered frame: relayed (lightweight relay) vs direct Information-Request",
        ours: Source::Cost("dhcpv6d-relayed"),
        peer: Source::Cost("dhcpv6d"),
        unit: " ns",
        target: Target::None,
        note: Note::None,
    },
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address): dhcpv6d (durable) vs Kea memfile",
        Source::Sarr(Stateful, A, false, Ours),
        Source::Sarr(Kea, A, false, Ours),
        Target::AtLeast(2.0),
        Note::Floors,
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address): dhcpv6d --workers 2 on both CPUs vs one worker on one",
        Source::Sarr(StatefulCores, A, false, Coalesced),
        Source::Sarr(Stateful, A, false, Coalesced),
        Target::AtLeast(1.6),
        Note::Ceiling("the load generator runs on one of the two CPUs"),
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address): dhcpv6d on both CPUs, --workers 2 vs --workers 1",
        Source::Sarr(StatefulCores, A, false, Coalesced),
        Source::Sarr(StatefulCoresOneWorker, A, false, Coalesced),
        Target::None,
        Note::Ceiling("the same CPUs on both sides: what the second worker adds"),
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address): dhcpv6d --workers 2 on both CPUs vs the SARR generator's own ceiling (dhcpv6-bench responder on CPU 1, no reply cost)",
        Source::Sarr(StatefulCores, A, false, Coalesced),
        Source::Sarr(Responder, A, false, Coalesced),
        Target::None,
        Note::Ceiling("the generator on CPU 0 alone; in the dhcpv6d row it shares CPU 0 with a worker"),
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address): dhcpv6d one worker on CPU 1 vs the SARR generator's own ceiling",
        Source::Sarr(Stateful, A, false, Coalesced),
        Source::Sarr(Responder, A, false, Coalesced),
        Target::None,
        Note::Ceiling(""),
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address + prefix): dhcpv6d (durable) vs Kea memfile",
        Source::Sarr(Stateful, AP, false, Ours),
        Source::Sarr(Kea, AP, false, Ours),
        // The Boot-storm issue (item 4) raised it from 2x.
        Target::AtLeast(3.0),
        Note::Floors,
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address, srv0 NAPI threaded as in the XDP rows): dhcpv6d (durable) vs Kea memfile",
        Source::Sarr(Stateful, A, true, Ours),
        Source::Sarr(Kea, A, true, Ours),
        Target::None,
        Note::Floors,
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address + prefix, srv0 NAPI threaded as in the XDP rows): dhcpv6d (durable) vs Kea memfile",
        Source::Sarr(Stateful, AP, true, Ours),
        Source::Sarr(Kea, AP, true, Ours),
        Target::None,
        Note::Floors,
    ),
    noted(
        "SARR exchanges/s at <= 0.1 % loss (address), loaded by perfdhcp: dhcpv6d (durable) vs Kea memfile",
        Source::Sarr(Stateful, A, false, Perfdhcp),
        Source::Sarr(Kea, A, false, Perfdhcp),
        Target::None,
        Note::PerfdhcpBound,
    ),
    noted(
        "Generator check: Kea's SARR exchanges/s at <= 0.1 % loss (address), dhcpv6-bench dhcp vs perfdhcp, searched in turn on one Kea",
        Source::CheckOurs,
        Source::Sarr(Kea, A, false, Perfdhcp),
        Target::Within(0.1),
        Note::Text("both columns are Kea"),
    ),
    noted(
        "Renewals/s at <= 0.1 % loss, population of {population} leases: dhcpv6d (durable) vs Kea memfile",
        Source::Renew(Stateful),
        Source::Renew(Kea),
        // The Boot-storm issue (item 4) raised it from 3x.
        Target::AtLeast(4.0),
        Note::Floors,
    ),
    noted(
        "Renewals/s at <= 0.1 % loss, population of {population} leases, the same traffic: dhcpv6d answering in XDP (--xdp-renew, pre-extended leases) vs dhcpv6d in userspace",
        Source::Renew(StatefulXdpRenew),
        Source::Renew(Stateful),
        Target::AtLeast(5.0),
        Note::Floors,
    ),
    noted(
        "Renewals/s at <= 0.1 % loss, population of {population} leases, the same traffic: dhcpv6d answering in XDP (--xdp-renew) vs Kea memfile",
        Source::Renew(StatefulXdpRenew),
        Source::Renew(Kea),
        Target::AtLeast(20.0),
        Note::Floors,
    ),
    mb(
        "Peak RSS (MB) under Information-Request load: dhcpv6d (fast-path row) vs Kea",
        Source::PeakRss(FastPath),
        Source::PeakRss(Kea),
        Target::None,
        Note::None,
    ),
    mb(
        "Peak RSS (MB) under Information-Request load: dhcpv6d (userspace row) vs dnsmasq",
        Source::PeakRss(Userspace),
        Source::PeakRss(Dnsmasq),
        Target::None,
        Note::None,
    ),
    row(
        "Relayed Information-Request /s at <= 0.1 % loss (lightweight relay): XDP fast path vs Kea",
        Source::BestRelayed(FastPath),
        Source::BestRelayed(Kea),
        Target::AtLeast(10.0),
    ),
    row(
        "Relayed Information-Request /s at <= 0.1 % loss (lightweight relay): XDP fast path vs dhcpv6d userspace",
        Source::BestRelayed(FastPath),
        Source::BestRelayed(Userspace),
        Target::None,
    ),
    row(
        "Relayed Information-Request /s at <= 0.1 % loss (lightweight relay): dhcpv6d userspace vs Kea",
        Source::BestRelayed(Userspace),
        Source::BestRelayed(Kea),
        Target::None,
    ),
    row(
        "Relayed Information-Request flat-out replies/s (lightweight relay): XDP fast path vs Kea",
        Source::FlatRelayed(FastPath),
        Source::FlatRelayed(Kea),
        Target::None,
    ),
    mb(
        "RSS (MB) holding 100,000 leases: dhcpv6d vs Kea",
        Source::Rss(Stateful, 100_000),
        Source::Rss(Kea, 100_000),
        Target::AtMost(1.0),
        Note::LeasesHeld,
    ),
    mb("RSS (MB) holding 1,000,000 leases: dhcpv6d", Source::Rss(Stateful, 1_000_000), Source::Nothing, Target::None, Note::LeasesHeld),
    RowSpec {
        figure: "Boot storm of {cpes} CPEs (address + prefix, half relayed, RFC 9915 timers): time until 100 % bound, dhcpv6d (SQLite, durable) vs Kea memfile",
        ours: Source::Storm(Dhcpv6dSqlite, StormFig::T100),
        peer: Source::Storm(KeaMemfile, StormFig::T100),
        unit: " s",
        // 4x shorter.
        target: Target::AtMost(0.25),
        note: Note::StormBound("lower is better; the target is 4x shorter"),
    },
    RowSpec {
        figure: "Boot storm of {cpes} CPEs: time until 99 % bound, dhcpv6d vs Kea memfile",
        ours: Source::Storm(Dhcpv6dSqlite, StormFig::T99),
        peer: Source::Storm(KeaMemfile, StormFig::T99),
        unit: " s",
        target: Target::None,
        note: Note::StormBound("dhcpv6d's target: within 15 s"),
    },
    RowSpec {
        figure: "Boot storm of {cpes} CPEs: time until 100 % bound, dhcpv6d SQLite with --workers 2 on both CPUs (the generator shares CPU 0) vs Kea memfile",
        ours: Source::Storm(Dhcpv6dSqliteCores, StormFig::T100),
        peer: Source::Storm(KeaMemfile, StormFig::T100),
        unit: " s",
        target: Target::AtMost(0.25),
        note: Note::StormBound("lower is better; the target is 4x shorter"),
    },
    RowSpec {
        figure: "Boot storm of {cpes} CPEs: time until 99 % bound, dhcpv6d SQLite with --workers 2 on both CPUs vs Kea memfile",
        ours: Source::Storm(Dhcpv6dSqliteCores, StormFig::T99),
        peer: Source::Storm(KeaMemfile, StormFig::T99),
        unit: " s",
        target: Target::None,
        note: Note::StormBound("dhcpv6d's target: within 15 s"),
    },
    RowSpec {
        figure: "Boot storm of {cpes} CPEs: time until 100 % bound, dhcpv6d PostgreSQL vs Kea PostgreSQL",
        ours: Source::Storm(Dhcpv6dPostgres, StormFig::T100),
        peer: Source::Storm(KeaPostgres, StormFig::T100),
        unit: " s",
        // 6x shorter.
        target: Target::AtMost(0.167),
        note: Note::StormBound("lower is better; the target is 6x shorter"),
    },
    RowSpec {
        figure: "Boot storm of {cpes} CPEs: time until 99 % bound, dhcpv6d PostgreSQL vs Kea PostgreSQL",
        ours: Source::Storm(Dhcpv6dPostgres, StormFig::T99),
        peer: Source::Storm(KeaPostgres, StormFig::T99),
        unit: " s",
        target: Target::None,
        note: Note::StormBound(""),
    },
    RowSpec {
        figure: "Boot storm of {cpes} CPEs: time until 50 % bound, dhcpv6d vs Kea memfile",
        ours: Source::Storm(Dhcpv6dSqlite, StormFig::T50),
        peer: Source::Storm(KeaMemfile, StormFig::T50),
        unit: " s",
        target: Target::None,
        note: Note::StormBound(""),
    },
    noted(
        "Boot storm of {cpes} CPEs: messages (Solicit + Request, retransmissions included) per CPE, dhcpv6d vs Kea memfile",
        Source::Storm(Dhcpv6dSqlite, StormFig::Msgs),
        Source::Storm(KeaMemfile, StormFig::Msgs),
        Target::None,
        Note::Text("1 Solicit + 1 Request is 2.0"),
    ),
    RowSpec {
        figure: "Boot storm of {cpes} CPEs: server CPU seconds over the storm, dhcpv6d vs Kea memfile",
        ours: Source::Storm(Dhcpv6dSqlite, StormFig::Cpu),
        peer: Source::Storm(KeaMemfile, StormFig::Cpu),
        unit: " s",
        target: Target::None,
        note: Note::None,
    },
    mb(
        "Boot storm of {cpes} CPEs: server peak RSS (MB), dhcpv6d vs Kea memfile",
        Source::Storm(Dhcpv6dSqlite, StormFig::Rss),
        Source::Storm(KeaMemfile, StormFig::Rss),
        Target::None,
        Note::None,
    ),
    noted(
        "Generator ceiling: requests/s offered into an XDP drop on srv0",
        Source::Flat(Drop),
        Source::Nothing,
        Target::None,
        Note::Text("every run prints its own flat-out offered rate too (details below)"),
    ),
];

/// A figure read from the results, with what the row's text and note need to know of it.
struct Value {
    fig: Result<Fig, String>,
    /// Generator-bound, or no step failed: the figure is a floor.
    floor: bool,
    /// Of a `*OfBoth` source: which set-up the figure is from.
    setup: &'static str,
    /// Of an `Rss` source: the leases held.
    leases: Option<u64>,
}

impl Value {
    fn of(fig: Result<Fig, String>) -> Value {
        Value { fig, floor: false, setup: "", leases: None }
    }
}

/// A userspace peer's better figure of its two set-ups (srv0's receive work on the
/// generator's CPU, or threaded onto the server's CPU), and which one it was.
fn better(unthreaded: Result<Fig, String>, threaded: Result<Fig, String>) -> Value {
    let (fig, setup) = match (unthreaded, threaded) {
        (Ok(x), Ok(y)) if y.med > x.med => (Ok(y), "NAPI threaded"),
        (Ok(x), _) => (Ok(x), "NAPI not threaded"),
        (Err(_), Ok(y)) => (Ok(y), "NAPI threaded"),
        (Err(e), Err(_)) => (Err(e), ""),
    };
    Value { setup, ..Value::of(fig) }
}

fn read(res: &Results, s: &Source) -> Value {
    let search = |r: Result<(Fig, bool), String>| match r {
        Ok((f, floor)) => Value { floor, ..Value::of(Ok(f)) },
        Err(e) => Value::of(Err(e)),
    };
    match *s {
        Source::Nothing => Value::of(Err("-".into())),
        Source::Best(p) => Value::of(res.best(p)),
        Source::BestUnthreaded(p) => Value::of(res.best_u(p)),
        Source::BestOfBoth(p) => better(res.best_u(p), res.best(p)),
        Source::Flat(p) => Value::of(res.flat(p)),
        Source::FlatUnthreaded(p) => Value::of(res.flat_u(p)),
        Source::FlatOfBoth(p) => better(res.flat_u(p), res.flat(p)),
        Source::BestRelayed(p) => Value::of(res.best_r(p)),
        Source::FlatRelayed(p) => Value::of(res.flat_r(p)),
        Source::Cost(program) => Value::of(res.cost(program)),
        Source::Sarr(p, mode, threaded, l) => search(res.sarr(p, mode, threaded, l)),
        Source::CheckOurs => search(res.check_ours.as_ref().map_or(Err("not run".into()), Results::search_fig)),
        Source::Renew(p) => search(res.renew(p)),
        Source::PeakRss(p) => Value::of(res.peak_rss(p)),
        Source::Storm(p, f) => search(res.storm(p, f)),
        Source::Rss(p, n) => match res.rss(p, n) {
            Ok((f, held)) => Value { leases: Some(held), ..Value::of(Ok(f)) },
            Err(e) => Value::of(Err(e)),
        },
    }
}

fn note(n: &Note, ours: &Value, peer: &Value, res: &Results) -> String {
    match n {
        Note::Ceiling(text) => {
            let ceiling = res.sarr_best(Responder, A, false, Coalesced);
            let bound = match (&ours.fig, ceiling) {
                (Ok(f), Some(c)) if f.med >= CEILING_SHARE * c => Some(format!(
                    "dhcpv6d figure generator-bound: {:.0} % of the generator's own ceiling ({}/s)",
                    100.0 * f.med / c,
                    num(c)
                )),
                _ => None,
            };
            [text.to_string()].into_iter().filter(|t| !t.is_empty()).chain(bound).collect::<Vec<_>>().join("; ")
        }
        Note::None => String::new(),
        Note::Text(t) => (*t).to_string(),
        Note::Floors => [(ours, "dhcpv6d"), (peer, "Kea")]
            .into_iter()
            .filter(|(v, _)| v.fig.is_ok() && v.floor)
            .map(|(_, who)| format!("{who} figure is a floor: generator-bound, or no step failed"))
            .collect::<Vec<_>>()
            .join("; "),
        Note::StormBound(text) => {
            let bound = [(ours, "dhcpv6d"), (peer, "Kea")]
                .into_iter()
                .filter(|(v, _)| v.fig.is_ok() && v.floor)
                .map(|(_, who)| format!("{who} storm generator-bound"));
            [text.to_string()].into_iter().filter(|t| !t.is_empty()).chain(bound).collect::<Vec<_>>().join("; ")
        }
        Note::PerfdhcpBound if ours.fig.is_ok() && ours.floor => "dhcpv6d figure is perfdhcp-bound (a floor)".into(),
        Note::PerfdhcpBound => String::new(),
        Note::LeasesHeld => match (ours.leases, peer.leases, peer.fig.as_ref().map_err(String::as_str)) {
            (Some(a), Some(b), _) => format!("leases held: dhcpv6d {}, Kea {}", num(a as f64), num(b as f64)),
            // A row of dhcpv6d alone.
            (Some(a), None, Err("-")) => format!("leases held: {}", num(a as f64)),
            _ => String::new(),
        },
    }
}

fn ratio_cells(target: &Target, ours: &Result<Fig, String>, peer: &Result<Fig, String>) -> (String, String) {
    let (Ok(o), Ok(p)) = (ours, peer) else {
        let t = match target {
            Target::None => "".into(),
            Target::AtLeast(x) => format!(">= {x}x: not measured"),
            Target::AtMost(x) => format!("<= {x}x: not measured"),
            Target::Within(x) => format!("within {:.0} %: not measured", x * 100.0),
        };
        return ("-".into(), t);
    };
    if p.med == 0.0 {
        return ("-".into(), "peer figure is 0".into());
    }
    let r = o.med / p.med;
    let t = match target {
        Target::None => String::new(),
        Target::AtLeast(x) => format!(">= {x}x: {}", if r >= *x { "met" } else { "NOT met" }),
        Target::AtMost(x) => format!("<= {x}x: {}", if r <= *x { "met" } else { "NOT met" }),
        Target::Within(x) => {
            format!("within {:.0} %: {}", x * 100.0, if (r - 1.0).abs() <= *x { "met" } else { "NOT met" })
        }
    };
    (format!("{r:.2}x"), t)
}

fn cell(f: &Result<Fig, String>, unit: &str) -> String {
    match f {
        Ok(f) => f.show(unit),
        Err(e) => e.clone(),
    }
}

/// The main table, as Markdown.
pub fn table(res: &Results) -> String {
    let population = res.renew.first().map_or(100_000, |(_, n, _)| *n);
    let cpes = res
        .storm
        .iter()
        .find_map(|(_, r)| r.as_ref().ok().and_then(|r| r.runs.first()).map(|x| x.storm.cpes))
        .unwrap_or(100_000);
    let mut s = String::from("| figure | dhcpv6d | peer | dhcpv6d / peer | target |\n|---|---|---|---|---|\n");
    for spec in ROWS {
        let (ours, peer) = (read(res, &spec.ours), read(res, &spec.peer));
        let figure = spec
            .figure
            .replace("{setup}", peer.setup)
            .replace("{population}", &num(population as f64))
            .replace("{cpes}", &num(cpes as f64));
        let (ratio, target) = ratio_cells(&spec.target, &ours.fig, &peer.fig);
        let note = note(&spec.note, &ours, &peer, res);
        let note = if note.is_empty() { String::new() } else { format!(" ({note})") };
        let _ = writeln!(
            s,
            "| {figure}{note} | {} | {} | {ratio} | {target} |",
            cell(&ours.fig, spec.unit),
            cell(&peer.fig, spec.unit)
        );
    }
    s.push_str("\nFigures: median of the runs, (min..max) over runs.\n");
    s.push_str(&super::stateful_table::table(res));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stateful::{SarrRow, SarrRun};

    fn searched(best: f64) -> Result<crate::bench::stateful::SarrRow, String> {
        Ok(SarrRow {
            command: String::new(),
            perf_command: String::new(),
            runs: vec![SarrRun { best, ..SarrRun::default() }],
            peak_rss_kb: None,
            population: None,
            server: Default::default(),
        })
    }

    /// The cores rows read this group's own searches, and a figure within 10 % of the
    /// generator's ceiling says it is the generator's.
    #[test]
    fn a_cores_figure_near_the_generator_ceiling_is_marked_generator_bound() {
        let res = |ceiling: f64| Results {
            sarr: vec![
                // The sarr group's row (the old generator) must not be taken for the cores one.
                (Stateful, A, false, Ours, searched(10_000.0)),
                (Stateful, A, false, Coalesced, searched(30_000.0)),
                (StatefulCores, A, false, Coalesced, searched(36_000.0)),
                (Responder, A, false, Coalesced, searched(ceiling)),
            ],
            ..Results::default()
        };
        let line = |t: &str| -> String {
            t.lines()
                .find(|l| l.starts_with("| SARR") && l.contains("vs one worker on one"))
                .expect("the cores row")
                .to_string()
        };
        let near = table(&res(38_000.0));
        let cores = line(&near);
        assert!(cores.contains("generator-bound: 95 % of the generator's own ceiling (38,000/s)"), "{cores}");
        assert!(cores.contains("| 36,000 | 30,000 | 1.20x | >= 1.6x: NOT met |"), "{cores}");
        let far = table(&res(60_000.0));
        assert!(!line(&far).contains("generator-bound"), "{far}");
        let ceiling = far.lines().find(|l| l.contains("vs the SARR generator's own ceiling")).expect("ceiling row");
        assert!(ceiling.contains("| 36,000 | 60,000 | 0.60x |"), "{ceiling}");
    }
}
