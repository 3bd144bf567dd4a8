//! The DHCPv6 protocol side of dhcpv6d: everything that decides what to answer and remembers
//! what was given, with no kernel, no eBPF object and no root needed to build or test it.
//!
//! Data flows one way: bytes -> `wire` (parse) -> `server` (decide; the stateful engine in
//! `server::stateful`) -> `leases` (make durable) -> `wire` (encode). `config` turns the
//! operator's file and flags into the validated settings the rest is built from.

pub mod config;
pub mod leases;
pub mod resolv;
pub mod server;
pub mod stats;
pub mod wire;
