//! UDP checksum: verify a request, and build a reply's from parts.

use aya_ebpf::helpers::generated::bpf_csum_diff;
use dhcpv6_common::{fold, limits::MAX_REQUEST_UDP_LEN, wire::IPPROTO_UDP, REQ_BUF, REQ_MASK};

use crate::frame::Addr;

/// One's-complement sum of `len4` bytes of `buf` from `off` (`len4` a multiple of 4, at most
/// 512), as big-endian words. One helper call instead of a loop the verifier would unroll.
#[inline(always)]
fn sum_words(buf: &mut [u8; REQ_BUF], off: usize, len4: usize) -> Option<u32> {
    let off = off & REQ_MASK;
    let len4 = len4 & 0x3fc;
    if len4 == 0 {
        return Some(0);
    }
    if len4 > 512 {
        return None;
    }
    let to = buf[off..].as_mut_ptr().cast();
    // SAFETY: off < 512 and len4 <= 512 stay inside the 656-byte buffer... which the verifier
    // checks again.
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, to, len4 as u32, 0) };
    if r < 0 {
        return None;
    }
    // csum_diff adds native-endian (little-endian) words; folded and swapped it is the
    // big-endian sum the checksum needs.
    Some(u32::from((fold(r as u32) as u16).swap_bytes()))
}

/// Sum of `len` (< 512) bytes of `buf` from `off`, as big-endian words from an even offset:
/// whole 32-bit words through the helper, the last 0 to 3 bytes by hand.
#[inline(always)]
pub fn sum_range(buf: &mut [u8; REQ_BUF], off: usize, len: usize) -> Option<u32> {
    let len4 = len & !3;
    let mut acc = sum_words(buf, off, len4)?;
    let t = (off & REQ_MASK) + (len4 & 0x1fc);
    let rest = len & 3;
    if rest >= 1 {
        let b1 = if rest >= 2 { buf[t + 1] } else { 0 };
        acc += u32::from(u16::from_be_bytes([buf[t], b1]));
    }
    if rest == 3 {
        acc += u32::from(buf[t + 2]) << 8;
    }
    Some(acc)
}

/// Sum of the `len` (at most 136) bytes of `buf` from `off`, as big-endian 16-bit words from
/// the first byte, by 64-bit loads: for the Client Identifier, short enough that a few loads
/// cost less than a helper call.
#[inline(always)]
pub fn sum_short(buf: &[u8; REQ_BUF], off: usize, len: usize) -> u32 {
    let off = off & REQ_MASK;
    let mut s = 0u64;
    for k in 0..17 {
        let i = k * 8;
        if i >= len {
            break;
        }
        // SAFETY: off < 512 and i <= 128, so the eight bytes lie inside the 656-byte buffer.
        let w: u64 = unsafe { core::ptr::read_unaligned(buf.as_ptr().add(off + i).cast()) };
        let n = len - i;
        // Native order: the bytes past the end are the high ones.
        let w = if n >= 8 { w } else { w & ((1u64 << (n * 8)) - 1) };
        s += (w & 0xffff_ffff) + (w >> 32);
    }
    fold_native(s)
}

/// Folds a sum of native-endian (little-endian) 32-bit halves into the big-endian 16-bit sum:
/// one's-complement sums commute with byte order up to one final swap.
#[inline(always)]
fn fold_native(mut s: u64) -> u32 {
    // At most 34 halves stay below 2^38; four folds bring that to 16 bits.
    for _ in 0..4 {
        s = (s & 0xffff) + (s >> 16);
    }
    u32::from((s as u16).swap_bytes())
}

/// True when the request's UDP checksum (over the datagram copied into `req`) is complete
/// and right. Anything else (wrong, zero, or a partial sum left for offload by a local
/// sender) is not ours to judge: the kernel is.
#[inline(always)]
pub fn udp_valid(src: &Addr, dst: &Addr, req: &mut [u8; REQ_BUF], udp_len: usize) -> bool {
    if udp_len > MAX_REQUEST_UDP_LEN || (req[6] == 0 && req[7] == 0) {
        return false;
    }
    let Some(body) = sum_range(req, 0, udp_len) else { return false };
    let acc = sum_addrs(src, dst) + udp_len as u32 + u32::from(IPPROTO_UDP) + body;
    fold(acc) == 0xffff
}

/// Sum of two addresses as big-endian 16-bit words, from their native-endian 64-bit words.
#[inline(always)]
pub fn sum_addrs(a: &Addr, b: &Addr) -> u32 {
    let mut s = 0u64;
    for w in [a[0], a[1], b[0], b[1]] {
        s += (w & 0xffff_ffff) + (w >> 32);
    }
    fold_native(s)
}

/// A 16-bit one's-complement sum placed at an odd offset contributes byte-swapped.
#[inline(always)]
pub fn at_parity(sum: u16, odd: bool) -> u32 {
    u32::from(if odd { sum.swap_bytes() } else { sum })
}
