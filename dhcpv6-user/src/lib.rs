//! dhcpv6d: the control plane and userspace server of an XDP-accelerated DHCPv6 server.
//!
//! Data flows one way: packet -> `wire` (parse) -> `server` (decide) -> `wire` (encode) ->
//! send. `fastpath` turns the same decisions into the XDP program's map data, and models the
//! program frame by frame so tests can hold the two to the same answers.

pub mod control_proto;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod fastpath;
pub mod metrics;
pub mod netlink;
pub mod pins;
pub mod routes;
pub mod socket;
pub mod steer;

// The protocol crate's modules, under the names the daemon and its tests have always used.
pub use dhcpv6_proto::{config, leases, resolv, server, stats, wire};
