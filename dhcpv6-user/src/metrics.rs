//! Prometheus text exposition on `--metrics ADDR`: the XDP counters (read from the pinned map,
//! summed over CPUs), the userspace counters and the lease count. A minimal HTTP/1.0 responder:
//! every request gets the metrics, whatever its path.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::{info, warn};

use crate::{dataplane, stats::UserStats};

/// What the exposition reads from.
#[derive(Clone)]
pub struct Sources {
    pub pin_dir: PathBuf,
    pub user: Arc<UserStats>,
    pub leases: Arc<AtomicU64>,
    /// Pool usage as of the last tick: (link, pool, used, size).
    pub pools: Arc<std::sync::Mutex<Vec<(String, String, u64, u128)>>>,
    /// Whether the lease store writes; `None` without pools (no store).
    pub store_up: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Messages waiting in the userspace receive queue.
    pub queue: Arc<AtomicU64>,
}

pub fn render(s: &Sources) -> String {
    let mut out = String::new();
    out.push_str("# HELP dhcpv6_xdp_frames_total Frames the XDP program handled, by outcome.\n");
    out.push_str("# TYPE dhcpv6_xdp_frames_total counter\n");
    match dataplane::pinned_counters(&s.pin_dir) {
        Ok(c) => {
            for (name, v) in c.fields() {
                let _ = writeln!(out, "dhcpv6_xdp_frames_total{{outcome=\"{name}\"}} {v}");
            }
        }
        Err(e) => warn!(error = %format!("{e:#}"), "metrics: XDP counters unavailable"),
    }
    out.push_str("# HELP dhcpv6_userspace_total Userspace events (received, replied, drops by reason, ...).\n");
    out.push_str("# TYPE dhcpv6_userspace_total counter\n");
    for (name, v) in s.user.snapshot() {
        let _ = writeln!(out, "dhcpv6_userspace_total{{event=\"{name}\"}} {v}");
    }
    out.push_str("# HELP dhcpv6_leases Leases held (addresses and prefixes).\n# TYPE dhcpv6_leases gauge\n");
    let _ = writeln!(out, "dhcpv6_leases {}", s.leases.load(Ordering::Relaxed));
    if let Some(up) = &s.store_up {
        out.push_str(
            "# HELP dhcpv6_store_healthy 1 while the lease store writes, 0 during an outage (no new leases).\n",
        );
        out.push_str("# TYPE dhcpv6_store_healthy gauge\n");
        let _ = writeln!(out, "dhcpv6_store_healthy {}", u8::from(up.load(Ordering::Relaxed)));
    }
    out.push_str(
        "# HELP dhcpv6_userspace_queue Messages waiting for userspace.\n# TYPE dhcpv6_userspace_queue gauge\n",
    );
    let _ = writeln!(out, "dhcpv6_userspace_queue {}", s.queue.load(Ordering::Relaxed));
    out.push_str("# HELP dhcpv6_pool_used Addresses or prefixes in use per pool.\n# TYPE dhcpv6_pool_used gauge\n");
    out.push_str("# HELP dhcpv6_pool_size Addresses or prefixes per pool.\n# TYPE dhcpv6_pool_size gauge\n");
    if let Ok(pools) = s.pools.lock() {
        for (link, pool, used, size) in pools.iter() {
            let _ = writeln!(out, "dhcpv6_pool_used{{link=\"{link}\",pool=\"{pool}\"}} {used}");
            let _ = writeln!(out, "dhcpv6_pool_size{{link=\"{link}\",pool=\"{pool}\"}} {size}");
        }
    }
    out
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the metrics listener on {addr}"))
}

pub async fn serve(listener: TcpListener, sources: Sources) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "metrics on http://{a}/metrics");
    }
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        let sources = sources.clone();
        tokio::spawn(async move {
            // Read (and ignore) the request, bounded in size and time.
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await;
            let body = render(&sources);
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn sources(store_up: Option<bool>) -> Sources {
        Sources {
            pin_dir: PathBuf::from("/nonexistent/dhcpv6-metrics-test"),
            user: Arc::default(),
            leases: Arc::default(),
            pools: Arc::default(),
            store_up: store_up.map(|up| Arc::new(AtomicBool::new(up))),
            queue: Arc::default(),
        }
    }

    #[test]
    fn the_store_gauge_follows_the_flag_and_is_absent_without_a_store() {
        assert!(render(&sources(Some(true))).contains("\ndhcpv6_store_healthy 1\n"));
        let down = render(&sources(Some(false)));
        assert!(down.contains("# TYPE dhcpv6_store_healthy gauge\n"), "{down}");
        assert!(down.contains("\ndhcpv6_store_healthy 0\n"), "{down}");
        assert!(!render(&sources(None)).contains("dhcpv6_store_healthy"));
    }
}
