//! Map layouts shared by the benchmark's XDP programs (`bench-ebpf`) and the load generator
//! (`dhcpv6-bench`).
//!
//! Plain `#[repr(C)]` data without padding, so it compiles for both `bpfel-unknown-none`
//! (no_std) and the host; the host side implements `aya::Pod` for it (feature `user`).

/// Largest template frame the generator program copies into each frame.
pub const TEMPLATE_CAP: usize = 256;

/// Per-CPU scratch of the sink: a reply's UDP datagram is copied here to be walked and summed.
pub const SINK_BUF: usize = 2048;
/// Mask that keeps an index inside the first 1024 bytes of the scratch (the slack after it
/// lets a masked offset plus a few bytes stay inside the buffer, as the verifier needs).
pub const SINK_MASK: usize = 1023;
/// Longest UDP datagram the sink validates; longer replies count as `too_long`.
pub const SINK_MAX_UDP: usize = 1024;

/// How the generator program (`bench_gen`) turns the template into one distinct request:
/// it copies `bytes[..len]` over the frame, writes the transaction id's last two bytes at
/// `xid_off` and a 32-bit sequence number at `tail_off` (the DUID's last four bytes), and
/// fixes the UDP checksum at `csum_off` incrementally. The template is built with zeros in
/// those six bytes and a checksum that is right for them.
///
/// Pacing is done here, per frame, not by the caller: a BPF_PROG_TEST_RUN call costs tens of
/// milliseconds of set-up and teardown, so the caller makes one long call per window and the
/// program sends only inside `[t_start_ns, t_end_ns)` (CLOCK_MONOTONIC, as
/// `bpf_ktime_get_ns`), on average one frame every `interval_ps` picoseconds (0: flat out),
/// `group` frames back to back every `group` intervals, catching up at most `burst` frames
/// after a stall. Repetitions that do not send are dropped (cheap).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GenConfig {
    pub t_start_ns: u64,
    pub t_end_ns: u64,
    pub interval_ps: u64,
    /// Changes with every window, so the per-CPU pacing state restarts.
    pub epoch: u64,
    pub burst: u32,
    pub len: u32,
    pub xid_off: u32,
    pub tail_off: u32,
    pub csum_off: u32,
    /// Frames sent back to back per interval group (interrupt coalescing, see `bench_gen`).
    pub group: u32,
    pub bytes: [u8; TEMPLATE_CAP],
}

impl GenConfig {
    pub const fn zeroed() -> Self {
        GenConfig {
            t_start_ns: 0,
            t_end_ns: 0,
            interval_ps: 0,
            epoch: 0,
            burst: 0,
            len: 0,
            xid_off: 0,
            tail_off: 0,
            csum_off: 0,
            group: 0,
            bytes: [0; TEMPLATE_CAP],
        }
    }
}

/// Per-CPU state of the generator program.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GenState {
    /// Sequence number of the next request (continues across windows).
    pub seq: u64,
    /// Frames the program handed to XDP_TX.
    pub sent: u64,
    /// Repetitions outside the window or ahead of the pace (dropped).
    pub idle: u64,
    /// Runs that found no usable template (a frame shorter than it): XDP_DROP.
    pub bad_template: u64,
    /// The pace: when the next frame is due (ps), for window `epoch`.
    pub next_ps: u64,
    pub epoch: u64,
    /// First and last send of window `epoch` (ns).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Frames still to send in the current group.
    pub left: u64,
}

/// What the sink accepts as this run's: the transaction id's first byte; with `relayed`,
/// Relay-Replies (UDP 547->547) whose Relay Message carries the Reply (a lightweight relay's
/// traffic, `dhcpv6-bench gen --relayed`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SinkConfig {
    pub tag: u32,
    pub relayed: u32,
}

/// The sink's per-CPU counters. Every UDP 547->546 frame lands in exactly one of `valid`,
/// `stale`, `bad_*`, `no_dns_domain`, `too_long`; every 546->547 Information-Request
/// (a MAC-swapped echo) in `echo_valid`, `echo_stale` or `bad_*`. Anything else is
/// `passed` to the kernel (neighbour discovery and the like).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq)]
#[cfg_attr(feature = "report", derive(serde::Serialize, serde::Deserialize))]
pub struct SinkCounters {
    pub frames: u64,
    /// Reply (7) with this run's tag, a correct UDP checksum and options 23 and 24.
    pub valid: u64,
    /// Reply with another tag (a late answer to an earlier run).
    pub stale: u64,
    /// Echoed Information-Request with this run's tag and a correct checksum.
    pub echo_valid: u64,
    pub echo_stale: u64,
    pub bad_checksum: u64,
    /// UDP 547->546 but not a Reply.
    pub bad_type: u64,
    /// Options run past the datagram, or more than the walk's bound.
    pub bad_options: u64,
    /// A Reply without option 23 or option 24.
    pub no_dns_domain: u64,
    pub too_long: u64,
    pub passed: u64,
}

impl SinkCounters {
    pub fn add(&mut self, o: &SinkCounters) {
        let a = self.fields_mut();
        let b = o.fields();
        for (x, (_, y)) in a.into_iter().zip(b) {
            *x += y;
        }
    }

    pub fn fields(&self) -> [(&'static str, u64); 11] {
        [
            ("frames", self.frames),
            ("valid", self.valid),
            ("stale", self.stale),
            ("echo_valid", self.echo_valid),
            ("echo_stale", self.echo_stale),
            ("bad_checksum", self.bad_checksum),
            ("bad_type", self.bad_type),
            ("bad_options", self.bad_options),
            ("no_dns_domain", self.no_dns_domain),
            ("too_long", self.too_long),
            ("passed", self.passed),
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; 11] {
        [
            &mut self.frames,
            &mut self.valid,
            &mut self.stale,
            &mut self.echo_valid,
            &mut self.echo_stale,
            &mut self.bad_checksum,
            &mut self.bad_type,
            &mut self.bad_options,
            &mut self.no_dns_domain,
            &mut self.too_long,
            &mut self.passed,
        ]
    }

    /// Frames that were replies or echoes but failed a check.
    pub fn invalid(&self) -> u64 {
        self.bad_checksum + self.bad_type + self.bad_options + self.no_dns_domain + self.too_long
    }
}

/// Per-CPU counter of the drop and pass programs.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct FrameCount {
    pub frames: u64,
}
