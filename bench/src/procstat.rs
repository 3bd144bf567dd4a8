//! Per-CPU busy time from /proc/stat (host-wide: /proc/stat is not per network namespace),
//! to show where the time went during a measurement window.

/// Jiffies per CPU: (busy, total), busy being everything but idle and iowait.
pub fn sample() -> Vec<(u64, u64)> {
    cpu_rows(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
        .map(|v| {
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Jiffies per CPU: (user + nice, total). [`busy`] of two such samples is the share of each
/// CPU that went to user-mode work: on the server CPU of an XDP row (whose work is all in
/// the kernel: the NAPI thread, the program, the sink) that is some other task's.
pub fn sample_user() -> Vec<(u64, u64)> {
    user_of(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

fn user_of(stat: &str) -> Vec<(u64, u64)> {
    cpu_rows(stat)
        .map(|v| {
            let total: u64 = v.iter().take(8).sum();
            (v.first().copied().unwrap_or(0) + v.get(1).copied().unwrap_or(0), total)
        })
        .collect()
}

/// The numbers of each `cpuN` line of /proc/stat, in order.
fn cpu_rows(stat: &str) -> impl Iterator<Item = Vec<u64>> + '_ {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect())
}

/// Nanoseconds task `tid` has spent runnable but waiting for a CPU (run_delay, the second
/// field of /proc/TID/schedstat).
pub fn run_delay_ns(tid: u32) -> Option<u64> {
    run_delay_of(&std::fs::read_to_string(format!("/proc/{tid}/schedstat")).ok()?)
}

fn run_delay_of(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
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

/// CPU seconds (user + system) process `pid` used so far, from /proc/PID/stat.
pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &text[text.rfind(')')? + 2..];
    let v: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name.
    let ticks: u64 = v.get(11)?.parse::<u64>().ok()? + v.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// Peak resident memory (VmHWM) of process `pid`, kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_share_per_cpu_from_proc_stat() {
        let a = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 4 1 5 90 0 0 0 0 0 0\ncpu1 0 0 40 60 0 0 0 0 0 0\nintr 5\n";
        let b = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 4 1 5 90 0 0 0 0 0 0\ncpu1 30 10 80 80 0 0 0 0 0 0\nintr 9\n";
        let (ua, ub) = (super::user_of(a), super::user_of(b));
        assert_eq!(ua, vec![(5, 100), (0, 100)]);
        assert_eq!(ub, vec![(5, 100), (40, 200)]);
        // cpu0 did nothing between the samples; cpu1 spent 40 of 100 jiffies in user mode
        // (the 40 of system time are not counted).
        assert_eq!(super::busy(&ua, &ub), vec![0.0, 40.0]);
    }

    #[test]
    fn run_delay_is_the_second_schedstat_field() {
        assert_eq!(super::run_delay_of("9751445795 79157045702 394979\n"), Some(79_157_045_702));
        assert_eq!(super::run_delay_of("12\n"), None);
        assert!(super::run_delay_ns(std::process::id()).is_some());
        assert_eq!(super::run_delay_ns(u32::MAX), None);
    }

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        // Burn a little CPU so the figure is not 0 ticks by chance on a fast start.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(super::proc_cpu_s(pid).is_some());
        assert!(super::peak_rss_kb(pid).is_some_and(|k| k > 0));
        assert_eq!(super::proc_cpu_s(u32::MAX), None);
    }
}
