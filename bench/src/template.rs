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
    build(src_mac, src, vlans, tag, false)
}

/// Interface-ID of the relayed template (even length: the client's message stays at an even
/// offset, as the generator's checksum update needs).
pub const RELAYED_INTERFACE_ID: &[u8] = b"bench-port";

/// The same Information-Request as a lightweight relay (RFC 6221) sends it: from `src`
/// (the relay keeps the client's addresses) port 547, in a Relay-Forward with hop-count 0,
/// link-address ::, peer-address `src`, Interface-ID [`RELAYED_INTERFACE_ID`].
pub fn relayed_information_request(src_mac: [u8; 6], src: Ipv6Addr, vlans: &[u16], tag: u8) -> Template {
    build(src_mac, src, vlans, tag, true)
}

fn build(src_mac: [u8; 6], src: Ipv6Addr, vlans: &[u16], tag: u8, relayed: bool) -> Template {
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
    // Where the client's message starts in the UDP payload.
    let mut at = 0;
    if relayed {
        let mut relay = vec![12, 0];
        relay.extend_from_slice(&[0; 16]);
        relay.extend_from_slice(&src.octets());
        for (code, data) in [(18u16, RELAYED_INTERFACE_ID), (9, &dhcp[..])] {
            relay.extend_from_slice(&code.to_be_bytes());
            relay.extend_from_slice(&u16::try_from(data.len()).expect("a short option").to_be_bytes());
            relay.extend_from_slice(data);
        }
        at = relay.len() - dhcp.len();
        dhcp = relay;
    }
    let tail_in_dhcp = at + tail_in_dhcp;

    // The template is built here from fixed parts (about 100 bytes): a length that did not
    // fit would be this function's bug, not input.
    let udp_len = u16::try_from(8 + dhcp.len()).expect("a template of fixed parts fits the UDP length");
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[17, 1]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&ALL_SERVERS.octets());
    f.extend_from_slice(&ip);
    let udp_off = f.len();
    f.extend_from_slice(&(if relayed { 547u16 } else { 546 }).to_be_bytes());
    f.extend_from_slice(&547u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&dhcp);
    let sum = udp_checksum(&src, &ALL_SERVERS, &f[udp_off..]);
    f[udp_off + 6..udp_off + 8].copy_from_slice(&sum.to_be_bytes());
    debug_assert_eq!(l3 + 40, udp_off);
    Template {
        udp_off,
        xid_off: udp_off + 8 + at + 2,
        tail_off: udp_off + 8 + tail_in_dhcp,
        csum_off: udp_off + 6,
        bytes: f,
    }
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
    fn the_relayed_template_wraps_the_same_request_for_a_lightweight_relay() {
        for vlans in [&[][..], &[100][..]] {
            let t = relayed_information_request([2, 0xbe, 0, 0, 0, 1], ll(), vlans, 7);
            let plain = information_request([2, 0xbe, 0, 0, 0, 1], ll(), vlans, 7);
            verify(&t, &t.bytes);
            let udp = &t.bytes[t.udp_off..];
            assert_eq!(&udp[0..4], &[2, 35, 2, 35], "547 -> 547");
            let relay = dhcpv6::wire::RelayMessage::parse(&udp[8..]).unwrap();
            assert_eq!((relay.msg_type(), relay.hop_count(), relay.peer_address()), (12, 0, ll()));
            assert!(relay.link_address().is_unspecified());
            assert_eq!(relay.find(18), Some(RELAYED_INTERFACE_ID));
            assert_eq!(relay.relay_message().unwrap(), &plain.bytes[plain.udp_off + 8..], "the same request inside");
            assert_eq!((t.xid_off - t.udp_off) % 2, 0);
            assert_eq!((t.tail_off - t.udp_off) % 2, 0);
            assert_eq!(t.tail_off - t.xid_off, plain.tail_off - plain.xid_off);
            for seq in [1u64, 0xffff, 0x1234_5678] {
                let f = t.apply(seq, 1);
                verify(&t, &f);
                let inner = dhcpv6::wire::RelayMessage::parse(&f[t.udp_off + 8..]).unwrap().relay_message().unwrap();
                assert_eq!(inner, &plain.apply(seq, 1)[plain.udp_off + 8..]);
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
