//! Per-CPU busy time from /proc/stat (host-wide: /proc/stat is not per network namespace),
//! to show where the time went during a measurement window.

/// Jiffies per CPU: (busy, total), busy being everything but idle and iowait.
pub fn sample() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Busy percentage of each CPU between two samples, by CPU number.
pub fn busy(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let total = y.1.saturating_sub(x.1).max(1) as f64;
            100.0 * y.0.saturating_sub(x.0) as f64 / total
        })
        .collect()
}
