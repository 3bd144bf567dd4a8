//! UDP checksum: verify a request, and build a reply's from parts.

use aya_ebpf::programs::XdpContext;
use dhcpv6_common::{fold, limits::MAX_REQUEST_UDP_LEN, wire::IPPROTO_UDP};

use crate::frame::{be16, byte, Hdr};

/// Sum of the 32 address bytes of the IPv6 header at `l3` (source and destination).
#[inline(always)]
fn sum_addresses(ctx: &XdpContext, l3: usize) -> Option<u32> {
    let mut acc = 0u32;
    let mut i = 0;
    while i < 32 {
        acc += u32::from(be16(ctx, l3 + 8 + i)?);
        i += 2;
    }
    Some(acc)
}

/// True when the request's UDP checksum is complete and right. Anything else (wrong, zero,
/// or a partial sum left for offload by a local sender) is not ours to judge: the kernel is.
#[inline(always)]
pub fn udp_valid(ctx: &XdpContext, hdr: &Hdr, udp_len: usize) -> bool {
    match be16(ctx, hdr.l4 + 6) {
        Some(0) | None => return false,
        Some(_) => {}
    }
    let Some(mut acc) = sum_addresses(ctx, hdr.l3) else {
        return false;
    };
    acc += udp_len as u32 + u32::from(IPPROTO_UDP);
    for i in 0..MAX_REQUEST_UDP_LEN / 2 {
        let off = i * 2;
        if off >= udp_len {
            break;
        }
        let word = if off + 1 < udp_len {
            match be16(ctx, hdr.l4 + off) {
                Some(w) => u32::from(w),
                None => return false,
            }
        } else {
            match byte(ctx, hdr.l4 + off) {
                Some(b) => u32::from(b) << 8,
                None => return false,
            }
        };
        acc += word;
    }
    fold(acc) == 0xffff
}

/// Sum of `bytes[..len]` as big-endian words from an even offset (`len` at most 134).
#[inline(always)]
pub fn sum_client_id(bytes: &[u8; 136], len: usize) -> u32 {
    let mut acc = 0u32;
    for i in 0..67 {
        let j = i * 2;
        if j >= len {
            break;
        }
        let lo = if j + 1 < len { bytes[j + 1] } else { 0 };
        acc += u32::from(u16::from_be_bytes([bytes[j], lo]));
    }
    acc
}

#[inline(always)]
pub fn sum16(bytes: &[u8; 16]) -> u32 {
    let mut acc = 0u32;
    let mut i = 0;
    while i < 16 {
        acc += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    acc
}

/// A 16-bit one's-complement sum placed at an odd offset contributes byte-swapped.
#[inline(always)]
pub fn at_parity(sum: u16, odd: bool) -> u32 {
    u32::from(if odd { sum.swap_bytes() } else { sum })
}
