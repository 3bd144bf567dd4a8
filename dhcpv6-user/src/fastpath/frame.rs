//! Ethernet/IPv6/UDP framing for DHCPv6 in userspace: building request frames (tests, load
//! generators) and the checksum (`dhcpv6_common::csum`), computed from scratch over the whole
//! datagram.

use std::net::Ipv6Addr;

use dhcpv6_common::wire::{ETH_P_IPV6, IPPROTO_UDP};

// The one checksum of the project (the program's twin must compute what the program does).
pub use dhcpv6_common::csum::{udp_checksum, udp_sum};

/// A frame to describe: Ethernet with optional VLAN tags, IPv6, UDP, payload.
#[derive(Debug, Clone)]
pub struct FrameSpec {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// (TPID, TCI) pairs, outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub hop_limit: u8,
}

/// A payload the 16-bit IPv6 payload length and UDP length cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a UDP payload of {0} bytes does not fit the 16-bit UDP length")]
pub struct PayloadTooLong(pub usize);

impl FrameSpec {
    /// The frame for `payload`, for tests and load generators whose payloads are their own:
    /// one that does not fit is the caller's bug, and stops it (see `try_build`).
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        self.try_build(payload).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_build(&self, payload: &[u8]) -> Result<Vec<u8>, PayloadTooLong> {
        let udp_len = 8usize
            .checked_add(payload.len())
            .and_then(|n| u16::try_from(n).ok())
            .ok_or(PayloadTooLong(payload.len()))?;
        let mut f = Vec::with_capacity(70 + payload.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.push(IPPROTO_UDP);
        f.push(self.hop_limit);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        let l4 = f.len();
        f.extend_from_slice(&self.src_port.to_be_bytes());
        f.extend_from_slice(&self.dst_port.to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        let c = udp_checksum(&self.src, &self.dst, &f[l4..]);
        f[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
        Ok(f)
    }
}

/// Offsets found in a frame: the IPv6 header (`l3`) and the UDP header (`l4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub l3: usize,
    pub l4: usize,
}

pub fn be16(f: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]))
}

pub fn addr(f: &[u8], off: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = f.get(off..off + 16)?.try_into().ok()?;
    Some(b.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FrameSpec {
        FrameSpec {
            dst_mac: [0; 6],
            src_mac: [0; 6],
            vlans: Vec::new(),
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
            src_port: 546,
            dst_port: 547,
            hop_limit: 1,
        }
    }

    #[test]
    fn a_payload_past_the_16_bit_length_is_refused_not_truncated() {
        let largest = vec![0u8; 65_535 - 8];
        let f = spec().try_build(&largest).unwrap();
        assert_eq!(be16(&f, 14 + 4), Some(65_535), "IPv6 payload length");
        assert_eq!(spec().try_build(&vec![0u8; 65_535 - 7]), Err(PayloadTooLong(65_528)));
    }
}
