//! UDP checksum: verify a request, and build a reply's from parts.

use dhcpv6_common::{fold, limits::MAX_REQUEST_UDP_LEN, wire::IPPROTO_UDP, Scratch, REQ_MASK};

use crate::{
    frame::Addr,
    scratch::{get, set},
};

/// Sum of the `len` (at most `8 * WORDS`) bytes of `buf` from `off`, as big-endian 16-bit
/// words from the first byte, by 64-bit loads. A loop of loads costs less here than a
/// `bpf_csum_diff` call: helper calls, and the return thunks of the kernel's speculation
/// mitigations behind them, are most of what the program costs.
#[inline(always)]
pub fn sum_bytes<const WORDS: usize>(scratch: &mut Scratch, off: usize, len: usize) -> u32 {
    let off = off & REQ_MASK;
    set(&mut scratch.found.loop_len, len as u32);
    let len = get(&scratch.found.loop_len) as usize;
    let buf = &scratch.req;
    let mut s = 0u64;
    for k in 0..WORDS {
        let i = k * 8;
        if i >= len {
            break;
        }
        // SAFETY: off < 512 and i + 8 <= 8 * WORDS; the callers keep off + 8 * WORDS inside the
        // 656-byte buffer (a request from offset 0, or an option of at most 136 bytes).
        let w: u64 = unsafe { core::ptr::read_unaligned(buf.as_ptr().add(off + i).cast()) };
        let n = len - i;
        // Native order: the bytes past the end are the high ones.
        let w = if n >= 8 { w } else { w & ((1u64 << (n * 8)) - 1) };
        s += (w & 0xffff_ffff) + (w >> 32);
    }
    fold_native(s)
}

/// As [`sum_bytes`], over the staging buffer from `off` (below 8).
#[inline(always)]
pub fn sum_staged<const WORDS: usize>(scratch: &mut Scratch, off: usize, len: usize) -> u32 {
    let off = off & 7;
    set(&mut scratch.found.loop_len, len as u32);
    let len = get(&scratch.found.loop_len) as usize;
    let buf = &scratch.out;
    let mut s = 0u64;
    for k in 0..WORDS {
        let i = k * 8;
        if i >= len {
            break;
        }
        // SAFETY: off < 8 and i + 8 <= 8 * WORDS, well inside the 1040-byte buffer.
        let w: u64 = unsafe { core::ptr::read_unaligned(buf.as_ptr().add(off + i).cast()) };
        let n = len - i;
        let w = if n >= 8 { w } else { w & ((1u64 << (n * 8)) - 1) };
        s += (w & 0xffff_ffff) + (w >> 32);
    }
    fold_native(s)
}

/// Folds a sum of native-endian (little-endian) 32-bit halves into the big-endian 16-bit sum:
/// one's-complement sums commute with byte order up to one final swap.
#[inline(always)]
fn fold_native(mut s: u64) -> u32 {
    // At most 132 halves stay below 2^40; four folds bring that to 16 bits.
    for _ in 0..4 {
        s = (s & 0xffff) + (s >> 16);
    }
    u32::from((s as u16).swap_bytes())
}

/// True when the request's UDP checksum (over the datagram copied into `req`) is complete
/// and right. Anything else (wrong, zero, or a partial sum left for offload by a local
/// sender) is not ours to judge: the kernel is.
#[inline(always)]
pub fn udp_valid(src: &Addr, dst: &Addr, scratch: &mut Scratch, udp_len: usize) -> bool {
    if udp_len > MAX_REQUEST_UDP_LEN || (scratch.req[6] == 0 && scratch.req[7] == 0) {
        return false;
    }
    let body = sum_bytes::<{ MAX_REQUEST_UDP_LEN / 8 }>(scratch, 0, udp_len);
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
