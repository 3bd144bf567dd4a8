//! The Information-Request the generator sends, and what its XDP program does to make each
//! copy distinct (the same steps and the same checksum update, so it can be tested here).

use std::net::Ipv6Addr;

use dhcpv6_bench_common::maps::{GenConfig, TEMPLATE_CAP};
#[cfg(test)]
use dhcpv6_common::csum::udp_sum;
use dhcpv6_common::csum::{checksum_add, udp_checksum};

pub const ALL_SERVERS_MAC: [u8; 6] = [0x33, 0x33, 0, 1, 0, 2];
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// A template frame and where the generator program writes into it.
#[derive(Debug, Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub udp_off: usize,
    /// Transaction id bytes 1 and 2 (byte 0 is the run tag).
    pub xid_off: usize,
    /// The Client Identifier DUID's last four bytes.
    pub tail_off: usize,
    pub csum_off: usize,
}

/// Information-Request from `src` (MAC, link-local) to ff02::1:2 with `vlans` (802.1Q tags,
/// outermost first): Client Identifier (DUID-LLT whose last four bytes vary), Option
/// Request 23 and 24, Elapsed Time. Transaction id `[tag, 0, 0]`, DUID tail zero.
pub fn information_request(src_mac: [u8; 6], src: Ipv6Addr, vlans: &[u16], tag: u8) -> Template {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&ALL_SERVERS_MAC);
    f.extend_from_slice(&src_mac);
    for v in vlans {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    let l3 = f.len();

    let mut dhcp = vec![11, tag, 0, 0];
    // Client Identifier: DUID-LLT (type 1, hardware 1, time, link-layer address); the
    // address's last four bytes are the per-request tail.
    let duid: [u8; 14] = [0, 1, 0, 1, 0x2f, 0x00, 0xbe, 0x6c, 0x02, 0xbe, 0, 0, 0, 0];
    dhcp.extend_from_slice(&1u16.to_be_bytes());
    dhcp.extend_from_slice(&u16::try_from(duid.len()).expect("a 14-byte DUID").to_be_bytes());
    let tail_in_dhcp = dhcp.len() + duid.len() - 4;
    dhcp.extend_from_slice(&duid);
    dhcp.extend_from_slice(&[0, 6, 0, 4, 0, 23, 0, 24]);
    dhcp.extend_from_slice(&[0, 8, 0, 2, 0, 0]);

    let udp_len = 8 + dhcp.len();
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[17, 1]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&ALL_SERVERS.octets());
    f.extend_from_slice(&ip);
    let udp_off = f.len();
    f.extend_from_slice(&546u16.to_be_bytes());
    f.extend_from_slice(&547u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&dhcp);
    let sum = udp_checksum(&src, &ALL_SERVERS, &f[udp_off..]);
    f[udp_off + 6..udp_off + 8].copy_from_slice(&sum.to_be_bytes());
    debug_assert_eq!(l3 + 40, udp_off);
    Template { udp_off, xid_off: udp_off + 10, tail_off: udp_off + 8 + tail_in_dhcp, csum_off: udp_off + 6, bytes: f }
}

impl Template {
    pub fn config(&self) -> GenConfig {
        let mut c = GenConfig::zeroed();
        assert!(self.bytes.len() <= TEMPLATE_CAP);
        c.len = self.bytes.len() as u32;
        c.xid_off = self.xid_off as u32;
        c.tail_off = self.tail_off as u32;
        c.csum_off = self.csum_off as u32;
        c.bytes[..self.bytes.len()].copy_from_slice(&self.bytes);
        c
    }

    /// What the XDP program makes of the template for sequence number `seq` on `cpu`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn apply(&self, seq: u64, cpu: u32) -> Vec<u8> {
        let mut f = self.bytes.clone();
        let tail = (seq as u32 & 0x0fff_ffff) | (cpu << 28);
        let xid = seq as u16;
        f[self.xid_off..self.xid_off + 2].copy_from_slice(&xid.to_be_bytes());
        f[self.tail_off..self.tail_off + 4].copy_from_slice(&tail.to_be_bytes());
        let old = u16::from_be_bytes([f[self.csum_off], f[self.csum_off + 1]]);
        let sum = checksum_add(old, u32::from(xid) + (tail >> 16) + (tail & 0xffff));
        f[self.csum_off..self.csum_off + 2].copy_from_slice(&sum.to_be_bytes());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll() -> Ipv6Addr {
        "fe80::be:1".parse().unwrap()
    }

    fn verify(t: &Template, f: &[u8]) {
        let udp = &f[t.udp_off..];
        assert_eq!(udp_sum(&ll(), &ALL_SERVERS, udp), 0xffff, "checksum of {f:02x?}");
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, udp.len());
    }

    #[test]
    fn template_is_a_valid_information_request() {
        for vlans in [&[][..], &[100][..], &[10, 200][..]] {
            let t = information_request([2, 0xbe, 0, 0, 0, 1], ll(), vlans, 7);
            verify(&t, &t.bytes);
            assert_eq!(t.bytes[t.udp_off + 8], 11);
            assert_eq!(t.bytes[t.udp_off + 9], 7);
            assert_eq!((t.xid_off - t.udp_off) % 2, 0);
            assert_eq!((t.tail_off - t.udp_off) % 2, 0);
            assert_eq!(&t.bytes[t.tail_off..t.tail_off + 4], &[0, 0, 0, 0]);
            // The tail is the last four bytes of the Client Identifier's DUID.
            let cid = t.udp_off + 12;
            assert_eq!(&t.bytes[cid..cid + 4], &[0, 1, 0, 14]);
            assert_eq!(cid + 4 + 14 - 4, t.tail_off);
        }
    }

    #[test]
    fn every_variant_keeps_a_valid_checksum() {
        let t = information_request([2, 0xbe, 0, 0, 0, 1], ll(), &[], 0xa5);
        let seqs = (0..70_000u64).chain([0xffff, 0x1_0000, 0x0fff_ffff, 0x1234_5678_9abc, u64::MAX]);
        for seq in seqs {
            for cpu in [0, 1, 15] {
                verify(&t, &t.apply(seq, cpu));
            }
        }
    }

    #[test]
    fn variants_differ() {
        let t = information_request([2, 0xbe, 0, 0, 0, 1], ll(), &[], 1);
        assert_ne!(t.apply(1, 0), t.apply(2, 0));
        assert_ne!(t.apply(1, 0), t.apply(1, 1));
    }
}
