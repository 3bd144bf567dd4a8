//! Data shared by the XDP program (`dhcpv6-ebpf`) and the daemon (`dhcpv6d`).
//!
//! `no_std` and allocation-free: wire constants, the `#[repr(C)]` layouts of the BPF map
//! keys and values, and the Internet checksum. Both sides compile these exact definitions, so
//! a layout change can never leave one side reading the other's bytes wrongly.
#![no_std]

pub mod csum;
pub mod maps;
pub mod outcomes;
pub mod wire;

pub use csum::{csum_add_bytes, fold};
pub use maps::*;
pub use outcomes::{Counters, Verdict};
