//! The bounded search for the highest rate with at most a given loss, shared by `gen` and
//! `dhcp` (docs/benchmarks.md): from the hint, up x1.3 or down x0.7 until the outcome flips,
//! then bisection until passing and failing rates are within `precision`; at most
//! `max_steps` steps.

use anyhow::Result;
use dhcpv6_bench_common::lines::Search;

pub struct Bounds {
    pub hint: f64,
    /// The lowest rate the first step may have.
    pub floor: f64,
    /// The highest rate any step may have.
    pub cap: f64,
    pub max_steps: usize,
    /// Stop when the gap between passing and failing rates is below this fraction.
    pub precision: f64,
}

/// What one step found.
pub struct Outcome {
    pub pass: bool,
    /// Failed only because the generator could not offer the rate (it lost nothing of what
    /// it sent): the figure says more of the generator than of the server.
    pub generator_short: bool,
}

/// Runs `step(rate)` until the highest passing rate is known within `b.precision`.
pub fn search(b: &Bounds, mut step: impl FnMut(f64) -> Result<Outcome>) -> Result<Search> {
    let mut lo: Option<f64> = None;
    let mut hi: Option<f64> = None;
    let mut generator_bound = false;
    let mut r = b.hint.clamp(b.floor, b.cap);
    let mut steps = 0u64;
    for _ in 0..b.max_steps {
        crate::signal::check()?;
        steps += 1;
        let o = step(r)?;
        if o.pass {
            lo = Some(lo.map_or(r, |l: f64| l.max(r)));
        } else {
            generator_bound |= o.generator_short;
            hi = Some(hi.map_or(r, |h: f64| h.min(r)));
        }
        r = match (lo, hi) {
            (Some(l), None) if l >= b.cap => {
                generator_bound = true;
                break;
            }
            (Some(l), None) => (l * 1.3).min(b.cap),
            (None, Some(h)) if h < b.hint / 200.0 => break,
            (None, Some(h)) => h * 0.7,
            (Some(l), Some(h)) => {
                if h - l <= b.precision * h {
                    break;
                }
                (l + h) / 2.0
            }
            (None, None) => unreachable!("every step passes or fails"),
        };
    }
    Ok(Search { best_pps: lo.unwrap_or(0.0), lowest_fail_pps: hi.unwrap_or(0.0), steps, generator_bound })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(hint: f64) -> Bounds {
        Bounds { hint, floor: 100.0, cap: 1e6, max_steps: 20, precision: 0.03 }
    }

    /// A server that answers everything up to `limit`/s.
    fn server(limit: f64, tried: &mut Vec<f64>) -> impl FnMut(f64) -> Result<Outcome> + '_ {
        move |r| {
            tried.push(r);
            Ok(Outcome { pass: r <= limit, generator_short: false })
        }
    }

    #[test]
    fn finds_the_limit_from_below_and_from_above() {
        for hint in [1_000.0, 500_000.0] {
            let mut tried = Vec::new();
            let s = search(&bounds(hint), server(40_000.0, &mut tried)).unwrap();
            assert!(s.best_pps <= 40_000.0 && s.best_pps >= 40_000.0 * 0.97, "{s:?} from {hint}");
            assert!(s.lowest_fail_pps > 40_000.0 && s.lowest_fail_pps - s.best_pps <= 0.03 * s.lowest_fail_pps);
            assert_eq!(s.steps as usize, tried.len());
            assert!(!s.generator_bound);
        }
    }

    #[test]
    fn a_server_faster_than_the_cap_is_generator_bound() {
        let mut tried = Vec::new();
        let s = search(&bounds(500_000.0), server(f64::MAX, &mut tried)).unwrap();
        assert_eq!((s.best_pps, s.lowest_fail_pps, s.generator_bound), (1e6, 0.0, true));
        assert!(tried.iter().all(|r| *r <= 1e6));
    }

    #[test]
    fn steps_are_bounded_and_a_short_generator_is_flagged() {
        let mut n = 0;
        let b = Bounds { max_steps: 3, ..bounds(10_000.0) };
        let s = search(&b, |_| {
            n += 1;
            Ok(Outcome { pass: false, generator_short: true })
        })
        .unwrap();
        assert_eq!((n, s.steps, s.best_pps), (3, 3, 0.0));
        assert!(s.generator_bound);
    }
}
