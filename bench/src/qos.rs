//! A PM QoS request for no CPU wake-up latency (`/dev/cpu_dma_latency` = 0), held while the
//! file stays open (the kernel drops it when the process ends, however it ends). With it the
//! cpuidle governor picks the polling state on an idle CPU instead of halting it: in a VM a
//! halted vCPU is descheduled by the host, and the next wake-up of the server end's NAPI
//! thread waits for the host to run it again; srv0's 256-frame ring does not outlast a long
//! wait (950 us at 270,000 frames/s). Burns the idle CPUs' time while held.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

pub const CPU_DMA_LATENCY: &str = "/dev/cpu_dma_latency";

/// The request; dropping it ends it.
pub struct LatencyHold {
    _file: File,
}

/// Requests a wake-up latency of 0 us through `path` (the PM QoS device, or a file in tests).
pub fn hold_zero(path: &Path) -> Result<LatencyHold> {
    let mut file = OpenOptions::new().write(true).open(path).with_context(|| format!("opening {}", path.display()))?;
    // The device takes the latency as a binary s32 in microseconds.
    file.write_all(&0i32.to_ne_bytes()).with_context(|| format!("writing to {}", path.display()))?;
    Ok(LatencyHold { _file: file })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_request_is_a_binary_zero_s32() {
        let path = std::env::temp_dir().join(format!("dhcpv6-bench-qos-{}", std::process::id()));
        std::fs::write(&path, b"xxxxxxxx").unwrap();
        let hold = super::hold_zero(&path).unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[..4], &0i32.to_ne_bytes());
        drop(hold);
        std::fs::remove_file(&path).unwrap();
        assert!(super::hold_zero(&path).is_err(), "a missing device is an error, not a silent no-op");
    }
}
