//! Header classification: Ethernet, up to two VLAN tags, IPv6 without extension headers, UDP/547.

use aya_ebpf::programs::XdpContext;
use dhcpv6_common::{
    wire::{is_ipv6_ext_header, ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ETH_P_IPV6, IPPROTO_UDP, SERVER_PORT},
    IfaceKey, Verdict, VLAN_VID_MASK,
};

/// Offsets of the IPv6 and UDP headers in the frame, and its VLAN IDs (0: no tag).
pub struct Hdr {
    pub l3: usize,
    pub l4: usize,
    pub outer_vlan: u16,
    pub inner_vlan: u16,
}

impl Hdr {
    /// The reply data this frame is answered from: its interface's, or its VLAN's.
    #[inline(always)]
    pub fn key(&self, ifindex: u32) -> IfaceKey {
        IfaceKey { ifindex, outer_vlan: self.outer_vlan, inner_vlan: self.inner_vlan }
    }

    #[inline(always)]
    pub fn tagged(&self) -> bool {
        self.l3 != 14
    }
}

// The bounds-checked reads are the ones every XDP program of this project uses.
use dhcpv6_ebpf_common::is_vlan;
pub use dhcpv6_ebpf_common::{be16, byte, ptr_at};

#[inline(always)]
pub fn classify(ctx: &XdpContext) -> Result<Hdr, Verdict> {
    let mut ethertype = be16(ctx, 12).ok_or(Verdict::NotDhcp)?;
    let mut l3 = 14;
    let (mut outer_vlan, mut inner_vlan) = (0, 0);
    if is_vlan(ethertype) {
        outer_vlan = be16(ctx, 14).ok_or(Verdict::NotDhcp)? & VLAN_VID_MASK;
        ethertype = be16(ctx, 16).ok_or(Verdict::NotDhcp)?;
        l3 = 18;
        if is_vlan(ethertype) {
            inner_vlan = be16(ctx, 18).ok_or(Verdict::NotDhcp)? & VLAN_VID_MASK;
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
        return Err(if is_ipv6_ext_header(next) { Verdict::PassHeaders } else { Verdict::NotDhcp });
    }
    let l4 = l3 + 40;
    if be16(ctx, l4 + 2).ok_or(Verdict::NotDhcp)? != SERVER_PORT {
        return Err(Verdict::NotDhcp);
    }
    Ok(Hdr { l3, l4, outer_vlan, inner_vlan })
}

/// fe80::/10.
#[inline(always)]
pub fn link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// An IPv6 address as two native-endian words: compared, copied and summed two loads at a
/// time instead of sixteen (the build allows misaligned access; see .cargo/config.toml).
pub type Addr = [u64; 2];

/// Reads the unaligned `T` at `p + off`; the caller has bounds-checked the range.
#[inline(always)]
pub unsafe fn load<T: Copy>(p: *const u8, off: usize) -> T {
    // SAFETY: the caller's bounds check covers `off..off + size_of::<T>()`.
    unsafe { core::ptr::read_unaligned(p.add(off).cast()) }
}

/// Writes the unaligned `v` at `p + off`; the caller has bounds-checked the range.
#[inline(always)]
pub unsafe fn store<T: Copy>(p: *mut u8, off: usize, v: T) {
    // SAFETY: as in `load`.
    unsafe { core::ptr::write_unaligned(p.add(off).cast(), v) }
}

#[inline(always)]
pub const fn addr_words(a: &[u8; 16]) -> Addr {
    [
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    ]
}

const ALL_DHCP: Addr = addr_words(&ALL_DHCP_RELAY_AGENTS_AND_SERVERS);

/// From a link-local source, to ff02::1:2. Returns both. A request unicast to us goes up:
/// RFC 9915 section 16 has a server that never sent Server Unicast discard it, and userspace
/// counts that (`drop_unicast`).
#[inline(always)]
pub fn check_addressing(ctx: &XdpContext, hdr: &Hdr) -> Result<(Addr, Addr), Verdict> {
    let ip = ptr_at::<[u8; 40]>(ctx, hdr.l3).ok_or(Verdict::PassLength)? as *const u8;
    // SAFETY: the 40-byte IPv6 header is bounds checked by ptr_at.
    let (src, dst): (Addr, Addr) = unsafe { ([load(ip, 8), load(ip, 16)], [load(ip, 24), load(ip, 32)]) };
    // fe80::/10, tested on the first two bytes of the first word (native order: low bytes).
    let first = (src[0] as u16).to_ne_bytes();
    if first[0] != 0xfe || first[1] & 0xc0 != 0x80 {
        return Err(Verdict::PassAddressing);
    }
    if dst != ALL_DHCP {
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
    // The frame's length goes through black_box on purpose: were the compiler to see it
    // derived from data_end, it would use this comparison to drop later bounds checks that
    // the verifier needs. (The program is not loaded for multi-buffer frames, so the linear
    // part is the whole frame.)
    let frame_len = core::hint::black_box(ctx.data_end() - ctx.data());
    if hdr.l4 + udp_len > frame_len {
        return Err(Verdict::PassLength);
    }
    Ok(udp_len)
}

#[inline(always)]
pub fn msg_type(ctx: &XdpContext, hdr: &Hdr) -> Option<u8> {
    byte(ctx, hdr.l4 + 8)
}
