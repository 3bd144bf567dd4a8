//! How a stateful search (ours in `pg.rs`, perfdhcp's in `stateful.rs`) moves its rate:
//! up while every step passed, down while none did, then halving the interval between
//! the best pass and the lowest failure until it is within 4 %.

/// How a search moves before it has both a pass and a failure.
pub struct Moves {
    /// Factor on the best pass while nothing failed.
    pub up: f64,
    /// Factor on the lowest failure while nothing passed.
    pub down: f64,
    /// Nothing passed and the lowest failure is below this: the search gives up.
    pub floor: f64,
}

/// The best passing and the lowest failing rate so far.
#[derive(Debug, Default)]
pub struct Bracket {
    lo: Option<f64>,
    hi: Option<f64>,
}

impl Bracket {
    /// Notes a step at `rate`; the rate of the next step, `None` when the search is done.
    pub fn next(&mut self, rate: f64, pass: bool, m: &Moves) -> Option<f64> {
        if pass {
            self.lo = Some(self.lo.map_or(rate, |l| l.max(rate)));
        } else {
            self.hi = Some(self.hi.map_or(rate, |h| h.min(rate)));
        }
        match (self.lo, self.hi) {
            (Some(l), None) => Some(l * m.up),
            (None, Some(h)) if h < m.floor => None,
            (None, Some(h)) => Some(h * m.down),
            (Some(l), Some(h)) if h - l <= 0.04 * h => None,
            (Some(l), Some(h)) => Some((l + h) / 2.0),
            // Not after a step was noted.
            (None, None) => None,
        }
    }

    /// The best rate that passed, 0 if none did.
    pub fn best(&self) -> f64 {
        self.lo.unwrap_or(0.0)
    }

    /// Some step passed and none failed.
    pub fn no_fail(&self) -> bool {
        self.lo.is_some() && self.hi.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Factors whose products are exact in binary, so the steps compare exactly.
    const M: Moves = Moves { up: 1.5, down: 0.5, floor: 40.0 };

    #[test]
    fn up_while_passing_down_while_failing_then_halving_to_four_percent() {
        let mut b = Bracket::default();
        assert_eq!(b.next(100.0, true, &M), Some(150.0));
        assert!(b.no_fail());
        assert_eq!(b.next(150.0, false, &M), Some(125.0));
        assert_eq!(b.next(125.0, true, &M), Some(137.5));
        assert_eq!(b.next(137.5, false, &M), Some(131.25));
        assert_eq!(b.next(131.25, true, &M), Some(134.375));
        // 134.375..137.5 is within 4 % of 137.5.
        assert_eq!(b.next(134.375, true, &M), None);
        assert_eq!(b.best(), 134.375);
        assert!(!b.no_fail());
    }

    #[test]
    fn failing_below_the_floor_gives_up_with_nothing() {
        let mut b = Bracket::default();
        assert_eq!(b.next(100.0, false, &M), Some(50.0));
        assert_eq!(b.next(50.0, false, &M), Some(25.0));
        assert_eq!(b.next(25.0, false, &M), None);
        assert_eq!(b.best(), 0.0);
        assert!(!b.no_fail());
    }
}
