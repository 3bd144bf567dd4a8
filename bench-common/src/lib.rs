//! What the benchmark's three parts share: the XDP programs (`bench-ebpf`), the load
//! generator (`dhcpv6-bench`) and its driver (`cargo xtask bench`).
//!
//! - [`maps`]: the `#[repr(C)]` layouts of the bench programs' maps; `no_std`, so the same
//!   definitions compile for `bpfel-unknown-none` and the host (feature `user`: `aya::Pod`).
//! - `lines` (feature `report`): the typed JSON lines `dhcpv6-bench` prints and xtask reads.
#![cfg_attr(not(feature = "report"), no_std)]

pub mod maps;

#[cfg(feature = "report")]
pub mod lines;

#[cfg(feature = "user")]
mod user {
    use crate::maps::{FrameCount, GenConfig, GenState, SinkConfig, SinkCounters};

    // SAFETY: #[repr(C)], no padding, every bit pattern valid.
    unsafe impl aya::Pod for GenConfig {}
    unsafe impl aya::Pod for GenState {}
    unsafe impl aya::Pod for SinkConfig {}
    unsafe impl aya::Pod for SinkCounters {}
    unsafe impl aya::Pod for FrameCount {}
}
