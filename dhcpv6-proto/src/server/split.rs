//! Load split for boxes that share one lease database on one link, in RFC 3074's scheme:
//! every client DUID falls in one of 256 buckets, the buckets are dealt round the boxes that
//! are alive in the order of their names, and a box answers the Solicits of its own buckets
//! only (Request, Renew, Rebind, Release and Decline are answered as without the split: by
//! the box the client chose, or any box for a Rebind). A box whose heartbeat went stale
//! leaves the list, so the others take its buckets over.
//!
//! The bucket is FNV-1a of the DUID folded to a byte, not RFC 3074's Pearson table: the boxes
//! only need to agree with each other, and they run the same code.

/// RFC 3074's hash bucket count.
pub const BUCKETS: u16 = 256;

/// The DUID's bucket, 0..=255.
pub fn bucket(duid: &[u8]) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in duid {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // Every bit of the hash in the byte: DUIDs often differ in their last bytes only.
    let folded = h ^ (h >> 16);
    (folded ^ (folded >> 8)) as u8
}

/// The box (of `live`, sorted and without repeats) whose share `duid` is in; `None` if no
/// box is alive.
pub fn owner<'a>(duid: &[u8], live: &'a [String]) -> Option<&'a str> {
    if live.is_empty() {
        return None;
    }
    let i = usize::from(bucket(duid)) % live.len();
    Some(&live[i])
}

/// One box's view: its name and the boxes alive (itself included), from the last heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    me: String,
    live: Vec<String>,
}

impl Split {
    /// Before the first heartbeat: a box alone, answering everything.
    pub fn new(me: impl Into<String>) -> Self {
        let me = me.into();
        Split { live: vec![me.clone()], me }
    }

    /// The boxes whose heartbeat is fresh. This box is always in its own list: it is alive,
    /// whatever the database last saw (its heartbeat may be on its way).
    pub fn set_live(&mut self, mut live: Vec<String>) {
        live.push(self.me.clone());
        live.sort();
        live.dedup();
        self.live = live;
    }

    pub fn live(&self) -> &[String] {
        &self.live
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether this box answers a Solicit from `duid`.
    pub fn serves(&self, duid: &[u8]) -> bool {
        owner(duid, &self.live).is_none_or(|o| o == self.me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duid(n: u32) -> Vec<u8> {
        let mut d = vec![0, 3, 0, 1, 2, 0];
        d.extend_from_slice(&n.to_be_bytes());
        d
    }

    fn boxes(names: &[&str]) -> Vec<Split> {
        let all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        names
            .iter()
            .map(|n| {
                let mut s = Split::new(*n);
                s.set_live(all.clone());
                s
            })
            .collect()
    }

    #[test]
    fn every_duid_is_answered_by_exactly_one_live_box() {
        for names in [&["a:1"][..], &["a:1", "b:2"], &["host-b:77", "host-a:12", "host-c:5"]] {
            let b = boxes(names);
            for n in 0..5_000 {
                let d = duid(n);
                let answering = b.iter().filter(|s| s.serves(&d)).count();
                assert_eq!(answering, 1, "{names:?}: DUID {n}");
            }
        }
    }

    #[test]
    fn the_shares_are_about_even_and_the_same_on_every_box() {
        let b = boxes(&["b:2", "a:1"]);
        assert_eq!(b[0].live(), b[1].live(), "both boxes order the list the same");
        assert_eq!(b[0].live(), ["a:1".to_string(), "b:2".to_string()]);
        let n = 20_000;
        let first = (0..n).filter(|&i| b[1].serves(&duid(i))).count();
        // 50 % within 3 %: sequential DUIDs (one vendor's CPEs) spread as random ones do.
        assert!((n as f64 * 0.47..n as f64 * 0.53).contains(&(first as f64)), "{first} of {n}");
        let buckets: std::collections::HashSet<u8> = (0..n).map(|i| bucket(&duid(i))).collect();
        assert_eq!(buckets.len(), usize::from(BUCKETS), "every bucket is used");
    }

    #[test]
    fn a_box_whose_peer_went_stale_answers_everything() {
        let mut a = Split::new("a:1");
        a.set_live(vec!["a:1".into(), "b:2".into()]);
        let mine = (0..1000).filter(|&i| a.serves(&duid(i))).count();
        assert!(mine > 400 && mine < 600, "{mine}");
        // b's heartbeat is stale: the database lists a alone.
        a.set_live(vec!["a:1".into()]);
        assert!((0..1000).all(|i| a.serves(&duid(i))));
        // The database does not list a yet (its first heartbeat is on its way): a is alive.
        let mut c = Split::new("c:3");
        c.set_live(vec![]);
        assert_eq!(c.live(), ["c:3".to_string()]);
        assert!((0..100).all(|i| c.serves(&duid(i))));
        // b back: the shares are dealt again.
        a.set_live(vec!["b:2".into(), "a:1".into()]);
        assert_eq!((0..1000).filter(|&i| a.serves(&duid(i))).count(), mine);
    }
}
