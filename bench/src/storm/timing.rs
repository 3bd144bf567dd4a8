//! RFC 9915's retransmission timers (section 15) and constants (section 7.6), and the
//! generator's random numbers: a small xorshift, seeded per run, so that a storm is
//! reproducible from its seed and costs no system calls.

pub const NS: u64 = 1_000_000_000;

/// Solicit: first transmission delayed up to SOL_MAX_DELAY, then SOL_TIMEOUT, doubling up
/// to SOL_MAX_RT (or the server's option 82).
pub const SOL_MAX_DELAY_NS: u64 = NS;
pub const SOL_TIMEOUT_NS: u64 = NS;
pub const SOL_MAX_RT_S: u32 = 3600;
pub const REQ_TIMEOUT_NS: u64 = NS;
pub const REQ_MAX_RT_NS: u64 = 30 * NS;
/// Transmissions of one Request before the client gives up (and, here, solicits again).
pub const REQ_MAX_RC: u8 = 10;
pub const INF_MAX_DELAY_NS: u64 = NS;
pub const INF_TIMEOUT_NS: u64 = NS;
pub const INF_MAX_RT_S: u32 = 3600;

/// Option 82/83 bounds (RFC 9915 sections 21.24 and 21.25): values outside are ignored.
pub fn valid_max_rt(secs: u32) -> bool {
    (60..=86_400).contains(&secs)
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero: xorshift would stay there.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, max_ns).
    pub fn below(&mut self, max_ns: u64) -> u64 {
        (self.unit() * max_ns as f64) as u64
    }

    /// RAND of section 15: uniform in [-0.1, 0.1].
    fn rand(&mut self) -> f64 {
        self.unit() * 0.2 - 0.1
    }
}

/// The first RT of an exchange: IRT + RAND*IRT; for the first Solicit RAND is strictly
/// positive (section 15: "RT for the first message transmission is based on IRT ... if the
/// message is a Solicit, RAND MUST be strictly greater than 0").
pub fn first_rt(irt_ns: u64, solicit: bool, rng: &mut Rng) -> u64 {
    let r = if solicit { rng.unit() * 0.1 + f64::EPSILON } else { rng.rand() };
    (irt_ns as f64 * (1.0 + r)) as u64
}

/// RT after `rt_ns`: 2*RTprev + RAND*RTprev, and MRT + RAND*MRT once past MRT (0: no MRT).
pub fn next_rt(rt_ns: u64, mrt_ns: u64, rng: &mut Rng) -> u64 {
    let rt = rt_ns as f64 * (2.0 + rng.rand());
    if mrt_ns > 0 && rt > mrt_ns as f64 {
        (mrt_ns as f64 * (1.0 + rng.rand())) as u64
    } else {
        rt as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_solicit_rt_is_strictly_above_irt_and_within_ten_percent() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let rt = first_rt(SOL_TIMEOUT_NS, true, &mut r);
            assert!(rt > SOL_TIMEOUT_NS && rt <= SOL_TIMEOUT_NS * 11 / 10 + 1, "{rt}");
            let rt = first_rt(REQ_TIMEOUT_NS, false, &mut r);
            assert!((900_000_000..=1_100_000_000).contains(&rt), "{rt}");
        }
    }

    #[test]
    fn backoff_doubles_then_stays_around_mrt() {
        let mut r = Rng::new(1);
        let mut rt = first_rt(REQ_TIMEOUT_NS, false, &mut r);
        let mut seen = Vec::new();
        for _ in 0..10 {
            rt = next_rt(rt, REQ_MAX_RT_NS, &mut r);
            seen.push(rt);
        }
        // 1, ~2, ~4, ~8, ~16, then ~30 (27..33) for good.
        assert!((1_700_000_000..=2_400_000_000).contains(&seen[0]), "{seen:?}");
        assert!((13 * NS..=20 * NS).contains(&seen[3]), "{seen:?}");
        for &s in &seen[5..] {
            assert!((27 * NS..=33 * NS).contains(&s), "{seen:?}");
        }
    }

    #[test]
    fn delays_are_spread_over_their_window() {
        let mut r = Rng::new(3);
        let v: Vec<u64> = (0..10_000).map(|_| r.below(SOL_MAX_DELAY_NS)).collect();
        assert!(v.iter().all(|&d| d < SOL_MAX_DELAY_NS));
        let early = v.iter().filter(|&&d| d < SOL_MAX_DELAY_NS / 2).count();
        assert!((4_500..=5_500).contains(&early), "{early}");
        assert!(valid_max_rt(60) && valid_max_rt(86_400) && !valid_max_rt(59) && !valid_max_rt(86_401));
    }
}
