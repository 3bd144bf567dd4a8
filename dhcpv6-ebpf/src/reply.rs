//! Turns the request frame into the Reply in place and writes its checksum.
//!
//! Layout after the headers: Client Identifier (echoed, when sent), then the interface's
//! prebuilt segments (Server Identifier first) that the Option Request selects.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_store_bytes},
    programs::XdpContext,
};
use dhcpv6_common::{
    fold,
    limits::{BLOCK_CAP, BLOCK_MASK, MAX_SEGMENTS},
    wire::{msg, IPPROTO_UDP, REPLY_HOP_LIMIT, SERVER_PORT},
    IfaceReply, Scratch, REQ_MASK, SEG_REQUESTED_ONLY,
};

use crate::{
    csum,
    frame::{ptr_at, Hdr},
    request::{requested, Request},
    Verdict,
};

/// Largest Client Identifier option: 4 bytes of header and a 130-byte DUID.
const CID_MAX: usize = 134;

#[inline(always)]
pub fn write(
    ctx: &XdpContext,
    hdr: &Hdr,
    client: &[u8; 16],
    iface: &IfaceReply,
    req: &Request,
    scratch: &mut Scratch,
) -> Verdict {
    // Which prebuilt segments go out, and how long the options are (tallied in scratch
    // memory so the verifier sees one state per step, not one per combination).
    let nsegs = iface.nsegs as usize;
    let oro = scratch.found.oro_mask;
    let f = &mut scratch.found;
    // SAFETY: fields of per-CPU scratch.
    unsafe {
        core::ptr::write_volatile(&mut f.selected, 0);
        core::ptr::write_volatile(&mut f.opts_len, 0);
    }
    for i in 0..MAX_SEGMENTS {
        if i >= nsegs {
            break;
        }
        let seg = &iface.segs[i];
        if seg.flags & SEG_REQUESTED_ONLY == 0 || requested(&oro, seg.code) {
            // SAFETY: as above.
            unsafe {
                core::ptr::write_volatile(&mut f.selected, core::ptr::read_volatile(&f.selected) | 1 << i);
                core::ptr::write_volatile(&mut f.opts_len, core::ptr::read_volatile(&f.opts_len) + u32::from(seg.len));
            }
        }
    }
    // SAFETY: as above.
    let (selected, opts_len) =
        unsafe { (core::ptr::read_volatile(&f.selected), core::ptr::read_volatile(&f.opts_len) as usize) };
    if opts_len > BLOCK_CAP {
        return Verdict::PassLimits;
    }
    let cid_len = req.cid_len;
    if cid_len > CID_MAX {
        return Verdict::PassLimits;
    }
    let udp_len = 8 + 4 + cid_len + opts_len;
    let new_len = hdr.l4 + udp_len;
    let old_len = ctx.data_end() - ctx.data();
    let delta = new_len as i32 - old_len as i32;

    // What the reply keeps of the request, saved before the frame is resized: the whole
    // frame is written afresh afterwards, so it may grow at either end.
    let Some(eth) = ptr_at::<[u8; 22]>(ctx, 0) else { return Verdict::PassLength };
    let Some(udp) = ptr_at::<[u8; 12]>(ctx, hdr.l4) else { return Verdict::PassLength };
    // SAFETY: bounds checked by ptr_at.
    let (eth, udp) = unsafe { (*eth, *udp) };
    let client_port = u16::from_be_bytes([udp[0], udp[1]]);
    let xid = [udp[9], udp[10], udp[11]];

    if delta != 0 {
        // Tailroom first; a frame handed over from the stack (veth) often has none, while
        // XDP keeps 256 bytes of headroom.
        // SAFETY: plain helper calls on our own context.
        let grown = unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } == 0
            || (delta > 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } == 0);
        if !grown {
            // Rare and worth an operator's look (generic XDP on a driver without room).
            aya_log_ebpf::warn!(ctx, "dhcpv6: cannot grow frame by {} bytes on ifindex {}; passed to userspace", delta, ctx.ingress_ifindex() as u32);
            return Verdict::PassNoRoom;
        }
    }

    let Some(out_eth) = ptr_at::<[u8; 22]>(ctx, 0) else { return Verdict::PassNoRoom };
    let Some(ip) = ptr_at::<[u8; 40]>(ctx, hdr.l3) else { return Verdict::PassNoRoom };
    let Some(out_udp) = ptr_at::<[u8; 12]>(ctx, hdr.l4) else { return Verdict::PassNoRoom };
    // SAFETY: bounds checked by ptr_at. The Ethernet range may overlap the IPv6 header when
    // there are fewer than two VLAN tags; it is written first and the IPv6 header after.
    unsafe {
        let o = &mut *out_eth;
        let mut i = 0;
        while i < 6 {
            o[i] = eth[6 + i];
            o[6 + i] = iface.mac[i];
            i += 1;
        }
        // Ethertype and VLAN tags as they came (the bytes past them are rewritten below).
        let mut i = 12;
        while i < 22 {
            o[i] = eth[i];
            i += 1;
        }
    }
    // SAFETY: as above.
    let (ip, udp) = unsafe { (&mut *ip, &mut *out_udp) };
    let mut i = 0;
    while i < 16 {
        ip[24 + i] = client[i];
        ip[8 + i] = iface.link_local[i];
        i += 1;
    }
    ip[0] = 0x60;
    ip[1] = 0;
    ip[2] = 0;
    ip[3] = 0;
    let ulen = (udp_len as u16).to_be_bytes();
    ip[4] = ulen[0];
    ip[5] = ulen[1];
    ip[6] = IPPROTO_UDP;
    ip[7] = REPLY_HOP_LIMIT;
    let sport = SERVER_PORT.to_be_bytes();
    let cport = client_port.to_be_bytes();
    udp[0] = sport[0];
    udp[1] = sport[1];
    udp[2] = cport[0];
    udp[3] = cport[1];
    udp[4] = ulen[0];
    udp[5] = ulen[1];
    udp[6] = 0;
    udp[7] = 0;
    udp[8] = msg::REPLY;
    udp[9] = xid[0];
    udp[10] = xid[1];
    udp[11] = xid[2];

    // Checksum: pseudo header, UDP header, message header, then the parts added below.
    let mut acc = csum::sum16(&iface.link_local) + csum::sum16(client);
    acc += 2 * udp_len as u32 + u32::from(IPPROTO_UDP);
    acc += u32::from(SERVER_PORT) + u32::from(client_port);
    acc += u32::from(u16::from_be_bytes([udp[8], udp[9]])) + u32::from(u16::from_be_bytes([udp[10], udp[11]]));

    let mut pos = hdr.l4 + 12;
    if cid_len > 0 {
        let Some(sum) = csum::sum_range(&mut scratch.req, req.cid_off, cid_len) else {
            return Verdict::PassLimits;
        };
        acc += sum;
        // The masked offset plus CID_MAX stays inside the scratch buffer, as the verifier needs.
        let src = scratch.req[req.cid_off & REQ_MASK..].as_mut_ptr().cast();
        // SAFETY: the helper checks the frame range; the source range lies inside scratch.
        if unsafe { bpf_xdp_store_bytes(ctx.ctx, pos as u32, src, cid_len as u32) } != 0 {
            return Verdict::PassNoRoom;
        }
        pos += cid_len;
    }

    for i in 0..MAX_SEGMENTS {
        if i >= nsegs {
            break;
        }
        if selected & (1 << i) == 0 {
            continue;
        }
        let seg = &iface.segs[i];
        let len = seg.len as usize;
        acc += csum::at_parity(seg.csum, (pos - hdr.l4) % 2 == 1);
        if !store_block(ctx, iface, pos, seg.off as usize, len) {
            return Verdict::PassNoRoom;
        }
        pos += len;
    }

    let sum = !(fold(acc) as u16);
    let sum = if sum == 0 { 0xffff } else { sum };
    let Some(udp) = ptr_at::<[u8; 8]>(ctx, hdr.l4) else { return Verdict::PassNoRoom };
    let sum = sum.to_be_bytes();
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*udp)[6] = sum[0];
        (*udp)[7] = sum[1];
    }
    Verdict::Answered
}

/// Copies `len` bytes of the block from `off` into the frame at `pos`.
#[inline(always)]
fn store_block(ctx: &XdpContext, iface: &IfaceReply, pos: usize, off: usize, len: usize) -> bool {
    let off = off & BLOCK_MASK;
    if len == 0 || len > BLOCK_CAP {
        return false;
    }
    // The masks give the verifier off < 1024 and len <= 1024 inside a 2048-byte buffer.
    let src = iface.block[off..].as_ptr() as *mut core::ffi::c_void;
    // SAFETY: the helper checks the frame range; the source range lies inside the block.
    unsafe { bpf_xdp_store_bytes(ctx.ctx, pos as u32, src, len as u32) == 0 }
}
