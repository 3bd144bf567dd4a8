//! Frame access for XDP programs, written for the verifier: every read is a bounds check
//! against `data_end` that the verifier can see, and the Ethernet walk is bounded.
//!
//! Used by the server's program (`dhcpv6-ebpf`) and the benchmark's (`bench-ebpf`).
#![no_std]

use aya_ebpf::programs::XdpContext;
use dhcpv6_common::wire::{ETH_P_8021AD, ETH_P_8021Q};

/// A bounds-checked pointer to `T` at `off`; the check is the one the verifier needs to see.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// The big-endian 16-bit word at `off`.
#[inline(always)]
pub fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, off)?;
    // SAFETY: bounds checked by ptr_at; byte arrays have no alignment needs.
    Some(u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
pub fn byte(ctx: &XdpContext, off: usize) -> Option<u8> {
    let p = ptr_at::<u8>(ctx, off)?;
    // SAFETY: bounds checked by ptr_at.
    Some(unsafe { *p })
}

/// 802.1Q or 802.1ad.
#[inline(always)]
pub fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// What follows the Ethernet header and its VLAN tags.
pub struct L3 {
    pub ethertype: u16,
    /// Offset of the network header in the frame.
    pub off: usize,
}

/// Why [`l3`] found no network header.
pub enum NoL3 {
    /// The frame ends inside the Ethernet header or a tag.
    Short,
    /// A third VLAN tag: deeper than a fast path walks.
    TooManyTags,
}

/// Walks the Ethernet header and up to two VLAN tags (outer 802.1ad or 802.1Q, inner 802.1Q).
#[inline(always)]
pub fn l3(ctx: &XdpContext) -> Result<L3, NoL3> {
    let mut ethertype = be16(ctx, 12).ok_or(NoL3::Short)?;
    let mut off = 14;
    if is_vlan(ethertype) {
        ethertype = be16(ctx, 16).ok_or(NoL3::Short)?;
        off = 18;
        if is_vlan(ethertype) {
            ethertype = be16(ctx, 20).ok_or(NoL3::Short)?;
            off = 22;
            if is_vlan(ethertype) {
                return Err(NoL3::TooManyTags);
            }
        }
    }
    Ok(L3 { ethertype, off })
}

/// What every XDP object needs once: a panic handler (the verifier proves no panic is
/// reachable, but `no_std` binaries must name one) and the license the kernel checks for
/// GPL-only helpers. Invoke at the crate root of the program's binary.
#[macro_export]
macro_rules! xdp_object {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
