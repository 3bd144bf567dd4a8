//! The request's UDP datagram into scratch, where the walk and the checksum read it.
//!
//! Short datagrams (most Information-Requests: 50-120 bytes) are copied with direct packet
//! loads instead of `bpf_xdp_load_bytes`: two fixed-size chunks, one from the datagram's
//! start and one ending at its end (overlapping), each behind one bounds check the verifier
//! sees. No loop: in a loop, LLVM turns packet bounds checks into `data_end - k` forms the
//! verifier rejects. Longer datagrams still go through the helper.

use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};
use dhcpv6_common::Scratch;

use crate::{
    frame::{load, ptr_at, store},
    scratch::{get, set},
};

/// Longest datagram copied without the helper.
const SHORT: usize = 128;

/// Copies the `udp_len` bytes from `l4` into `scratch.req`; false when the frame is shorter.
#[inline(always)]
pub fn request(ctx: &XdpContext, l4: usize, udp_len: usize, scratch: &mut Scratch) -> bool {
    // The size class is chosen on a copy read back from memory: branching on `udp_len`
    // itself would leave one verifier state per class for the rest of the program.
    set(&mut scratch.found.loop_len, udp_len as u32);
    let n = get(&scratch.found.loop_len) as usize;
    let dst = scratch.req.as_mut_ptr();
    if n > SHORT {
        // The length the verifier has bounded (12..=512), not the copy read back (any u32).
        // SAFETY: the helper checks the frame range; udp_len <= 512 < the buffer's size.
        return unsafe { bpf_xdp_load_bytes(ctx.ctx, l4 as u32, dst.cast(), (udp_len & 1023) as u32) } == 0;
    }
    if n > 64 {
        chunks::<8>(ctx, l4, n, dst)
    } else if n > 32 {
        chunks::<4>(ctx, l4, n, dst)
    } else if n > 16 {
        chunks::<2>(ctx, l4, n, dst)
    } else if n >= 8 {
        chunks::<1>(ctx, l4, n, dst)
    } else {
        false
    }
}

/// `W` words from the datagram's start and `W` words ending at its end (`8 * W <= n <= 16 *
/// W`): together all of it.
#[inline(always)]
fn chunks<const W: usize>(ctx: &XdpContext, l4: usize, n: usize, dst: *mut u8) -> bool {
    // Through black_box: seen as `n - 8W`, the compiler folds it into the bounds check
    // below and the verifier loses the check's pointer.
    let tail = core::hint::black_box(n - 8 * W) & (SHORT - 1);
    let Some(head) = ptr_at::<[u64; W]>(ctx, l4) else { return false };
    let Some(end) = ptr_at::<[u64; W]>(ctx, l4 + tail) else { return false };
    // SAFETY: both ranges bounds checked by ptr_at; the stores end before byte 2 * SHORT of
    // the 656-byte buffer (tail < SHORT).
    unsafe {
        let (head, end) = (head as *const u8, end as *const u8);
        for k in 0..W {
            store::<u64>(dst, k * 8, load::<u64>(head, k * 8));
        }
        for k in 0..W {
            store::<u64>(dst, tail + k * 8, load::<u64>(end, k * 8));
        }
    }
    true
}
