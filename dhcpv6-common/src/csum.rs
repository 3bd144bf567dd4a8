//! The Internet checksum (RFC 1071) as the fast path, the daemon, the benchmark and the tests
//! compute it: one definition, so that a frame one of them builds is one the others accept.
//!
//! [`fold`] and [`checksum_add`] are cheap enough for the XDP programs; the others walk
//! whole byte slices and are for the host.

use core::net::Ipv6Addr;

use crate::wire::IPPROTO_UDP;

/// Fold a 32-bit one's-complement accumulator into 16 bits.
pub const fn fold(mut acc: u32) -> u32 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc
}

/// One's-complement sum of `bytes` as big-endian 16-bit words from an even offset, folded
/// to 16 bits. Shared so the daemon precomputes segment sums exactly as the program adds them.
pub fn csum_add_bytes(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i + 1 < bytes.len() {
        acc += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    if i < bytes.len() {
        acc += u32::from(bytes[i]) << 8;
    }
    fold(acc)
}

/// The checksum field after 16-bit words that were zero when `old` was computed take new
/// values whose plain sum is `added` (RFC 1624, eqn. 3, with m = 0). Zero is written as
/// 0xffff, as UDP requires.
#[inline(always)]
pub const fn checksum_add(old: u16, added: u32) -> u16 {
    let sum = !(fold((!old) as u32 + added) as u16);
    if sum == 0 {
        0xffff
    } else {
        sum
    }
}

/// Sum of `bytes` (big-endian words, a trailing odd byte as the high half) added to `acc`;
/// 64 bits, so any slice fits before the fold.
fn sum_words(mut acc: u64, bytes: &[u8]) -> u64 {
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 };
        acc += u64::from(w);
    }
    acc
}

/// Full UDP-over-IPv6 checksum of `udp` (header included, its checksum field as given),
/// pseudo header included. Returns the one's-complement sum folded to 16 bits: 0xffff when
/// `udp` carries a right checksum.
pub fn udp_sum(src: &Ipv6Addr, dst: &Ipv6Addr, udp: &[u8]) -> u16 {
    let mut acc = sum_words(0, &src.octets());
    acc = sum_words(acc, &dst.octets());
    acc += udp.len() as u64 + u64::from(IPPROTO_UDP);
    acc = sum_words(acc, udp);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to write into a datagram whose checksum field is zero.
pub fn udp_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, udp: &[u8]) -> u16 {
    let c = !udp_sum(src, dst, udp);
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xbe, 1);
    const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

    /// A UDP datagram 546 -> 547 of `payload`, its checksum field zero.
    fn datagram(payload: &[u8], out: &mut [u8; 64]) -> usize {
        let n = 8 + payload.len();
        out[..2].copy_from_slice(&546u16.to_be_bytes());
        out[2..4].copy_from_slice(&547u16.to_be_bytes());
        out[4..6].copy_from_slice(&(n as u16).to_be_bytes());
        out[6..8].copy_from_slice(&[0, 0]);
        out[8..n].copy_from_slice(payload);
        n
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(csum_add_bytes(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn a_written_checksum_verifies() {
        for payload in [&[11u8, 1, 2, 3][..], &[11, 1, 2, 3, 0, 8, 0, 2, 0][..], &[][..]] {
            let mut buf = [0u8; 64];
            let n = datagram(payload, &mut buf);
            let c = udp_checksum(&SRC, &DST, &buf[..n]);
            assert_ne!(c, 0);
            buf[6..8].copy_from_slice(&c.to_be_bytes());
            assert_eq!(udp_sum(&SRC, &DST, &buf[..n]), 0xffff, "payload {payload:02x?}");
            buf[n - 1] ^= 1;
            assert_ne!(udp_sum(&SRC, &DST, &buf[..n]), 0xffff, "a flipped bit is seen");
        }
    }

    #[test]
    fn the_incremental_update_matches_a_full_sum() {
        let mut buf = [0u8; 64];
        let n = datagram(&[11, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 9], &mut buf);
        let c = udp_checksum(&SRC, &DST, &buf[..n]);
        for (a, b) in [(0u16, 0u16), (1, 0xffff), (0xffff, 0xffff), (0x1234, 0xfedc), (0x8000, 0x7fff)] {
            let mut f = buf;
            f[6..8].copy_from_slice(&c.to_be_bytes());
            f[10..12].copy_from_slice(&a.to_be_bytes());
            f[16..18].copy_from_slice(&b.to_be_bytes());
            let updated = checksum_add(c, u32::from(a) + u32::from(b));
            f[6..8].copy_from_slice(&updated.to_be_bytes());
            assert_eq!(udp_sum(&SRC, &DST, &f[..n]), 0xffff, "words {a:04x} {b:04x}");
        }
    }
}
