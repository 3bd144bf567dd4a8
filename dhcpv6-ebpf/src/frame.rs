//! Header classification: Ethernet, up to two VLAN tags, IPv6 without extension headers, UDP/547.

use aya_ebpf::{helpers::generated::bpf_xdp_get_buff_len, programs::XdpContext};
use dhcpv6_common::{
    wire::{ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV6, IPPROTO_UDP, SERVER_PORT},
    IfaceReply,
};

use crate::Verdict;

/// Offsets of the IPv6 and UDP headers in the frame.
pub struct Hdr {
    pub l3: usize,
    pub l4: usize,
}

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

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Hop-by-hop, routing, fragment, destination options, AH, ESP, mobility: headers that could
/// hide a UDP datagram the fast path does not walk to.
#[inline(always)]
fn is_ext_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140)
}

#[inline(always)]
pub fn classify(ctx: &XdpContext) -> Result<Hdr, Verdict> {
    let mut ethertype = be16(ctx, 12).ok_or(Verdict::NotDhcp)?;
    let mut l3 = 14;
    if is_vlan(ethertype) {
        ethertype = be16(ctx, 16).ok_or(Verdict::NotDhcp)?;
        l3 = 18;
        if is_vlan(ethertype) {
            ethertype = be16(ctx, 20).ok_or(Verdict::NotDhcp)?;
            l3 = 22;
            if is_vlan(ethertype) {
                return Err(Verdict::PassHeaders);
            }
        }
    }
    if ethertype != ETH_P_IPV6 {
        return Err(Verdict::NotDhcp);
    }
    let version = byte(ctx, l3).ok_or(Verdict::NotDhcp)? >> 4;
    let next = byte(ctx, l3 + 6).ok_or(Verdict::NotDhcp)?;
    if version != 6 {
        return Err(Verdict::NotDhcp);
    }
    if next != IPPROTO_UDP {
        return Err(if is_ext_header(next) { Verdict::PassHeaders } else { Verdict::NotDhcp });
    }
    let l4 = l3 + 40;
    if be16(ctx, l4 + 2).ok_or(Verdict::NotDhcp)? != SERVER_PORT {
        return Err(Verdict::NotDhcp);
    }
    Ok(Hdr { l3, l4 })
}

#[inline(always)]
fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    // Two 64-bit compares: a slice compare could become a memcmp call, which BPF lacks.
    let a0 = u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let a1 = u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    let b0 = u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let b1 = u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    a0 == b0 && a1 == b1
}

/// From a link-local source, to ff02::1:2 or our own link-local address. Returns both.
#[inline(always)]
pub fn check_addressing(ctx: &XdpContext, hdr: &Hdr, iface: &IfaceReply) -> Result<([u8; 16], [u8; 16]), Verdict> {
    let src = ptr_at::<[u8; 16]>(ctx, hdr.l3 + 8).ok_or(Verdict::PassLength)?;
    let dst = ptr_at::<[u8; 16]>(ctx, hdr.l3 + 24).ok_or(Verdict::PassLength)?;
    // SAFETY: bounds checked by ptr_at.
    let (src, dst) = unsafe { (*src, *dst) };
    if src[0] != 0xfe || src[1] & 0xc0 != 0x80 {
        return Err(Verdict::PassAddressing);
    }
    if !eq16(&dst, &ALL_DHCP_RELAY_AGENTS_AND_SERVERS) && !eq16(&dst, &iface.link_local) {
        return Err(Verdict::PassAddressing);
    }
    Ok((src, dst))
}

/// UDP length equal to the IPv6 payload length and inside the frame; returns it.
#[inline(always)]
pub fn check_lengths(ctx: &XdpContext, hdr: &Hdr) -> Result<usize, Verdict> {
    let payload = be16(ctx, hdr.l3 + 4).ok_or(Verdict::PassLength)? as usize;
    let udp_len = be16(ctx, hdr.l4 + 4).ok_or(Verdict::PassLength)? as usize;
    if udp_len != payload || udp_len < 8 {
        return Err(Verdict::PassLength);
    }
    // The frame's length comes from a helper on purpose: were it derived from data_end, the
    // compiler would use this comparison to drop later bounds checks that the verifier needs.
    // SAFETY: plain helper call on our own context.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    if hdr.l4 + udp_len > frame_len {
        return Err(Verdict::PassLength);
    }
    Ok(udp_len)
}

#[inline(always)]
pub fn msg_type(ctx: &XdpContext, hdr: &Hdr) -> Option<u8> {
    byte(ctx, hdr.l4 + 8)
}
