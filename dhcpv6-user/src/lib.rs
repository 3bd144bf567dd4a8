//! dhcpv6d: the control plane and userspace server of an XDP-accelerated DHCPv6 server.
//!
//! Data flows one way: packet -> `wire` (parse) -> `server` (decide) -> `wire` (encode) ->
//! send. `fastpath` turns the same decisions into the XDP program's map data, and models the
//! program frame by frame so tests can hold the two to the same answers.

pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod fastpath;
pub mod leases;
pub mod metrics;
pub mod netlink;
pub mod resolv;
pub mod routes;
pub mod server;
pub mod socket;
pub mod stateful_service;
pub mod stats;
pub mod wire;
