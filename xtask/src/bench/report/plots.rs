//! The report's pictures (SVG, plotters' SVG backend: text as <text> elements, no fonts
//! needed): bound CPEs over time in the boot storms (every server on one chart), and loss
//! against offered rate over the steps of the Information-Request and SARR searches. They
//! are written beside the report, which links them by file name.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::Results;
use crate::bench::stateful::Loader;

/// File names of the plots written (none when the run had no data for one).
#[derive(Debug, Clone, Default)]
pub struct Plots {
    pub storm: Option<String>,
    pub ir_loss: Option<String>,
    pub sarr_loss: Option<String>,
}

pub const STORM_SVG: &str = "bench-storm.svg";
pub const IR_SVG: &str = "bench-ir-loss.svg";
pub const SARR_SVG: &str = "bench-sarr-loss.svg";

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One line of a chart: a label and its (x, y) points in order of x.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes every plot the results have data for into `dir`.
pub fn write_all(dir: &Path, res: &Results) -> Result<Plots> {
    let mut p = Plots::default();
    let storm = storm_series(res);
    if !storm.is_empty() {
        chart(
            &dir.join(STORM_SVG),
            "Boot storm: CPEs bound over time",
            "seconds since the storm began",
            "CPEs bound",
            &storm,
            false,
        )?;
        p.storm = Some(STORM_SVG.into());
    }
    let ir = ir_series(res);
    if !ir.is_empty() {
        chart(
            &dir.join(IR_SVG),
            "Information-Request: loss vs offered rate (search steps)",
            "offered requests/s",
            "loss (%)",
            &ir,
            true,
        )?;
        p.ir_loss = Some(IR_SVG.into());
    }
    let sarr = sarr_series(res);
    if !sarr.is_empty() {
        chart(
            &dir.join(SARR_SVG),
            "SARR: loss vs offered rate (search steps)",
            "offered exchanges/s",
            "loss (%)",
            &sarr,
            true,
        )?;
        p.sarr_loss = Some(SARR_SVG.into());
    }
    Ok(p)
}

/// Each server's first storm run: bound CPEs at each sample.
pub fn storm_series(res: &Results) -> Vec<Series> {
    res.storm
        .iter()
        .filter_map(|(server, r)| {
            let run = r.as_ref().ok()?.runs.first()?;
            let s = &run.storm;
            // Up to the last CPE bound, and a tenth as long again (the storm may run on for
            // its LAN hosts or to the time limit with nothing more to draw).
            let top = s.series_bound.last().copied().unwrap_or(0);
            let reached = s.series_bound.iter().position(|b| *b >= top).unwrap_or(0);
            let keep = (reached + reached / 10 + 2).min(s.series_bound.len());
            let points = s.series_bound[..keep]
                .iter()
                .enumerate()
                .map(|(i, b)| (i as f64 * s.series_step_s, *b as f64))
                .collect();
            Some(Series { label: server.label().to_string(), points })
        })
        .collect()
}

/// Every step of every run of the threaded Information-Request rows, by peer.
pub fn ir_series(res: &Results) -> Vec<Series> {
    res.ir
        .iter()
        .filter_map(|(peer, r)| {
            let row = r.as_ref().ok()?;
            let points =
                sorted(row.runs.iter().flat_map(|run| run.steps.iter().map(|s| (s.offered_pps, 100.0 * s.loss))));
            (!points.is_empty()).then(|| Series { label: peer.label().to_string(), points })
        })
        .collect()
}

/// The SARR rows loaded by the bench's own generator with srv0's NAPI in softirq, by
/// server and mode.
pub fn sarr_series(res: &Results) -> Vec<Series> {
    res.sarr
        .iter()
        .filter(|(_, _, threaded, l, _)| !*threaded && matches!(l, Loader::Ours | Loader::Coalesced))
        .filter_map(|(peer, mode, _, l, r)| {
            let row = r.as_ref().ok()?;
            let points = sorted(row.runs.iter().flat_map(|run| run.steps.iter().map(|s| (s.achieved, 100.0 * s.loss))));
            let how = if *l == Loader::Coalesced { ", cores rows" } else { "" };
            (!points.is_empty()).then(|| Series { label: format!("{} ({mode}{how})", peer.label()), points })
        })
        .collect()
}

fn sorted(v: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = v.filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// A line chart of `series`; `points`: mark each point too (the search steps).
/// The legend goes where the lines are not: lower right for the storm (lines rise from the
/// left), upper left for loss (it rises on the right).
pub fn chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], points: bool) -> Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let max = |f: fn(&(f64, f64)) -> f64| series.iter().flat_map(|s| s.points.iter().map(f)).fold(0.0, f64::max);
    let x_max = (max(|p| p.0) * 1.05).max(1.0);
    let y_max = (max(|p| p.1) * 1.05).max(1.0);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        c.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if points {
            c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|x| e(&x))?;
        }
    }
    c.configure_series_labels()
        .position(if points { SeriesLabelPosition::UpperLeft } else { SeriesLabelPosition::LowerRight })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// 1500 -> "1.5k", 2000000 -> "2M", small values as they are.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plot_the_results_have_data_for_is_written_and_named() {
        use crate::bench::ir::{IrRow, IrRun};
        use crate::bench::peers::Peer;
        use crate::bench::stateful::{PerfStep, SarrRow, SarrRun};
        use crate::bench::storm::{StormRow, StormRun};
        use dhcpv6_bench_common::lines::{GenStep, Storm};

        let dir = std::env::temp_dir().join(format!("xtask-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let none = write_all(&dir, &Results::default()).unwrap();
        assert!(none.storm.is_none() && none.ir_loss.is_none() && none.sarr_loss.is_none());

        let step = |r: f64, loss: f64| GenStep { target_pps: r, offered_pps: r, loss, ..GenStep::default() };
        let ir = IrRow {
            runs: vec![IrRun { steps: vec![step(2e6, 0.2), step(1e6, 0.0), step(1.5e6, 0.01)], ..IrRun::default() }],
            ..IrRow::default()
        };
        let sarr = SarrRow {
            command: String::new(),
            perf_command: String::new(),
            runs: vec![SarrRun {
                steps: vec![PerfStep { target: 9000.0, achieved: 8990.0, loss: 0.02, ..PerfStep::default() }],
                ..SarrRun::default()
            }],
            peak_rss_kb: None,
            population: None,
            server: Default::default(),
        };
        let storm =
            Storm { cpes: 4, series_step_s: 0.5, series_bound: vec![0, 1, 3, 4, 4, 4, 4, 4, 4, 4], ..Storm::default() };
        let res = Results {
            ir: vec![(Peer::FastPath, Ok(ir))],
            sarr: vec![(Peer::Stateful, "address-only", false, Loader::Ours, Ok(sarr))],
            storm: vec![(
                crate::bench::storm::StormServer::KeaMemfile,
                Ok(StormRow {
                    command: String::new(),
                    gen_command: String::new(),
                    napi: String::new(),
                    runs: vec![StormRun { storm, leases_bound: 8, leases_stored: 8 }],
                    cut_short: None,
                }),
            )],
            ..Results::default()
        };
        let p = write_all(&dir, &res).unwrap();
        assert_eq!(
            (p.storm.as_deref(), p.ir_loss.as_deref(), p.sarr_loss.as_deref()),
            (Some(STORM_SVG), Some(IR_SVG), Some(SARR_SVG))
        );
        for f in [STORM_SVG, IR_SVG, SARR_SVG] {
            assert!(std::fs::read_to_string(dir.join(f)).unwrap().contains("<polyline"), "{f}");
        }
        // The steps in order of rate; the storm's line stops soon after the last CPE bound.
        assert_eq!(ir_series(&res)[0].points, vec![(1e6, 0.0), (1.5e6, 1.0), (2e6, 20.0)]);
        assert_eq!(storm_series(&res)[0].points.len(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_chart_is_an_svg_with_its_labels_and_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.svg");
        let s = vec![
            Series { label: "dhcpv6d stateful".into(), points: vec![(0.0, 0.0), (1.0, 500.0), (2.0, 1000.0)] },
            Series { label: "Kea".into(), points: vec![(0.0, 0.0), (3.0, 400.0), (6.0, 1000.0)] },
        ];
        chart(&path, "Boot storm", "seconds", "CPEs bound", &s, true).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in ["Boot storm", "seconds", "CPEs bound", "dhcpv6d stateful", "Kea"] {
            assert!(svg.contains(&format!(">{text}<")) || svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 2, "two lines");
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(2_000_000.0), "2M");
        assert_eq!(short(12.0), "12");
    }
}
