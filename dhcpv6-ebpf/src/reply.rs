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
    frame::{addr_words, load, ptr_at, store, Addr, Hdr},
    request::{requested, Request},
    scratch::{get, set},
    Verdict,
};

/// Largest Client Identifier option: 4 bytes of header and a 130-byte DUID.
const CID_MAX: usize = 134;

#[inline(always)]
pub fn write(
    ctx: &XdpContext,
    hdr: &Hdr,
    client: &Addr,
    iface: &IfaceReply,
    req: &Request,
    scratch: &mut Scratch,
) -> Verdict {
    // Which prebuilt segments go out, and how long the options are. The usual request asks
    // for none of the requested-only options: its reply is the precomputed base run.
    let oro = scratch.found.oro_mask;
    let base = iface.base_len != 0 && (oro[0] & iface.requested_only[0]) | (oro[1] & iface.requested_only[1]) == 0;
    let (selected, opts_len) = if base { (0, iface.base_len as usize) } else { select(iface, scratch) };
    if opts_len > BLOCK_CAP {
        return Verdict::PassLimits;
    }
    let cid_len = req.cid_len;
    if cid_len > CID_MAX {
        return Verdict::PassLimits;
    }
    let udp_len = 8 + 4 + cid_len + opts_len;
    let new_len = hdr.l4 + udp_len;
    // Through black_box for the reason in `frame::check_lengths`: with no resize (delta 0)
    // the compiler could otherwise tie the frame length to `new_len` and drop the bounds
    // checks below that the verifier needs.
    let old_len = core::hint::black_box(ctx.data_end() - ctx.data());
    let delta = new_len as i32 - old_len as i32;

    // What the reply keeps of the request, saved before the frame is resized: the whole
    // frame is written afresh afterwards, so it may grow at either end. Word loads: the
    // client's MAC (with the two bytes after it), the Ethertype and VLAN tags (bytes 12..22),
    // the client's port and the message header (type and transaction id).
    let Some(eth) = ptr_at::<[u8; 22]>(ctx, 0) else { return Verdict::PassLength };
    let Some(udp) = ptr_at::<[u8; 12]>(ctx, hdr.l4) else { return Verdict::PassLength };
    // SAFETY: bounds checked by ptr_at.
    let (client_mac, tags, tags_end, client_port, msg_hdr) = unsafe {
        let (eth, udp) = (eth as *const u8, udp as *const u8);
        (load::<u64>(eth, 6), load::<u64>(eth, 12), load::<u16>(eth, 20), load::<u16>(udp, 0), load::<u32>(udp, 8))
    };
    let client_port = u16::from_be(client_port);

    // Tailroom first; a frame handed over from the stack (veth) often has none, while XDP
    // keeps 256 bytes of headroom. Grown at the tail, the request's bytes stay where they were.
    // SAFETY: plain helper calls on our own context.
    let in_place = delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } == 0;
    if !in_place && !(delta > 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } == 0) {
        // Rare and worth an operator's look (generic XDP on a driver without room).
        aya_log_ebpf::warn!(
            ctx,
            "dhcpv6: cannot grow frame by {} bytes on ifindex {}; passed to userspace",
            delta,
            ctx.ingress_ifindex() as u32
        );
        return Verdict::PassNoRoom;
    }

    let Some(out_eth) = ptr_at::<[u8; 22]>(ctx, 0) else { return Verdict::PassNoRoom };
    let Some(ip) = ptr_at::<[u8; 40]>(ctx, hdr.l3) else { return Verdict::PassNoRoom };
    let Some(out_udp) = ptr_at::<[u8; 12]>(ctx, hdr.l4) else { return Verdict::PassNoRoom };
    let mac = iface.mac;
    let ll = addr_words(&iface.link_local);
    let ulen = (udp_len as u16).to_be_bytes();
    let (sport, cport) = (SERVER_PORT.to_be_bytes(), client_port.to_be_bytes());
    // The message header as it was, with the type turned into Reply (native order: byte 0 low).
    let msg_hdr = (msg_hdr & !0xff) | u32::from(msg::REPLY);
    // SAFETY: bounds checked by ptr_at. The Ethernet range may overlap the IPv6 header when
    // there are fewer than two VLAN tags; it is written first and the IPv6 header after.
    unsafe {
        let (o, ip, udp) = (out_eth as *mut u8, ip as *mut u8, out_udp as *mut u8);
        // To the client's MAC (six bytes), from ours; then Ethertype and tags as they came.
        let mac_lo = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, mac[0], mac[1]]);
        store::<u64>(o, 0, (client_mac & 0xffff_ffff_ffff) | mac_lo);
        store::<u32>(o, 8, u32::from_ne_bytes([mac[2], mac[3], mac[4], mac[5]]));
        store::<u64>(o, 12, tags);
        store::<u16>(o, 20, tags_end);
        store::<u64>(ip, 0, u64::from_ne_bytes([0x60, 0, 0, 0, ulen[0], ulen[1], IPPROTO_UDP, REPLY_HOP_LIMIT]));
        store::<u64>(ip, 8, ll[0]);
        store::<u64>(ip, 16, ll[1]);
        store::<u64>(ip, 24, client[0]);
        store::<u64>(ip, 32, client[1]);
        store::<u64>(udp, 0, u64::from_ne_bytes([sport[0], sport[1], cport[0], cport[1], ulen[0], ulen[1], 0, 0]));
        store::<u32>(udp, 8, msg_hdr);
    }

    // From here on the frame holds the reply's headers: a failure can no longer pass it up.

    // Checksum: pseudo header, UDP header, message header, then the parts added below.
    let mut acc = csum::sum_addrs(&ll, client);
    acc += 2 * udp_len as u32 + u32::from(IPPROTO_UDP);
    acc += u32::from(SERVER_PORT) + u32::from(client_port);
    let m = msg_hdr.to_ne_bytes();
    acc += u32::from(u16::from_be_bytes([m[0], m[1]])) + u32::from(u16::from_be_bytes([m[2], m[3]]));

    let mut pos = hdr.l4 + 12;
    if cid_len > 0 {
        acc += csum::sum_bytes::<{ CID_MAX.div_ceil(8) }>(scratch, req.cid_off, cid_len);
        // Most clients send the Client Identifier first: unless the frame grew at the head,
        // it already sits where the reply echoes it.
        if !(in_place && req.cid_off == 12) {
            // The masked offset plus CID_MAX stays inside the scratch buffer, as the verifier needs.
            let src = scratch.req[req.cid_off & REQ_MASK..].as_mut_ptr().cast();
            // SAFETY: the helper checks the frame range; the source range lies inside scratch.
            if unsafe { bpf_xdp_store_bytes(ctx.ctx, pos as u32, src, cid_len as u32) } != 0 {
                return Verdict::DropWriteFailed;
            }
        }
        pos += cid_len;
    }

    if base {
        acc += csum::at_parity(iface.base_csum, (pos - hdr.l4) % 2 == 1);
        if !store_block(ctx, iface, scratch, pos, 0, opts_len) {
            return Verdict::DropWriteFailed;
        }
    } else {
        match write_selected(ctx, iface, scratch, selected, pos - hdr.l4, pos) {
            Some(sum) => acc += sum,
            None => return Verdict::DropWriteFailed,
        }
    }

    let sum = !(fold(acc) as u16);
    let sum = if sum == 0 { 0xffff } else { sum };
    let Some(udp) = ptr_at::<[u8; 8]>(ctx, hdr.l4) else { return Verdict::DropWriteFailed };
    let sum = sum.to_be_bytes();
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*udp)[6] = sum[0];
        (*udp)[7] = sum[1];
    }
    Verdict::Answered
}

/// The segments a request selects (bit per segment) and their total length, tallied in
/// scratch memory so the verifier sees one state per step, not one per combination.
#[inline(always)]
fn select(iface: &IfaceReply, scratch: &mut Scratch) -> (u32, usize) {
    let nsegs = iface.nsegs as usize;
    let oro = scratch.found.oro_mask;
    let f = &mut scratch.found;
    set(&mut f.selected, 0);
    set(&mut f.opts_len, 0);
    for i in 0..MAX_SEGMENTS {
        if i >= nsegs {
            break;
        }
        let seg = &iface.segs[i];
        if seg.flags & SEG_REQUESTED_ONLY == 0 || requested(&oro, seg.code) {
            let (sel, len) = (get(&f.selected) | 1 << i, get(&f.opts_len) + u32::from(seg.len));
            set(&mut f.selected, sel);
            set(&mut f.opts_len, len);
        }
    }
    (get(&f.selected), get(&f.opts_len) as usize)
}

/// Writes the selected segments from frame position `pos` (`at` bytes into the datagram);
/// returns their checksum contribution. Segments that follow each other in the block go
/// out in one store.
#[inline(always)]
fn write_selected(
    ctx: &XdpContext,
    iface: &IfaceReply,
    scratch: &mut Scratch,
    selected: u32,
    mut at: usize,
    mut pos: usize,
) -> Option<u32> {
    let nsegs = iface.nsegs as usize;
    let mut acc = 0u32;
    set(&mut scratch.found.run_len, 0);
    for i in 0..MAX_SEGMENTS {
        if i >= nsegs {
            break;
        }
        if selected & (1 << i) == 0 {
            continue;
        }
        let seg = &iface.segs[i];
        acc += csum::at_parity(seg.csum, at % 2 == 1);
        let (run_off, run_len) = (get(&scratch.found.run_off), get(&scratch.found.run_len));
        if run_len != 0 && run_off + run_len != u32::from(seg.off) {
            if !store_block(
                ctx,
                iface,
                scratch,
                get(&scratch.found.run_pos) as usize,
                run_off as usize,
                run_len as usize,
            ) {
                return None;
            }
            set(&mut scratch.found.run_len, 0);
        }
        if get(&scratch.found.run_len) == 0 {
            set(&mut scratch.found.run_off, u32::from(seg.off));
            set(&mut scratch.found.run_pos, pos as u32);
        }
        let run_len = get(&scratch.found.run_len) + u32::from(seg.len);
        set(&mut scratch.found.run_len, run_len);
        pos += seg.len as usize;
        at += seg.len as usize;
    }
    let run_len = get(&scratch.found.run_len);
    if run_len != 0
        && !store_block(
            ctx,
            iface,
            scratch,
            get(&scratch.found.run_pos) as usize,
            get(&scratch.found.run_off) as usize,
            run_len as usize,
        )
    {
        return None;
    }
    Some(acc)
}

/// Copies `len` bytes of the block from `off` into the frame at `pos`, through scratch: the
/// helper's copy is several times slower when source and destination are not aligned alike
/// (measured: ~80 ns of ~500 per answer here), and where the options land depends on the
/// client's Client Identifier. A word loop puts them at the frame's alignment first.
#[inline(always)]
fn store_block(
    ctx: &XdpContext,
    iface: &IfaceReply,
    scratch: &mut Scratch,
    pos: usize,
    off: usize,
    len: usize,
) -> bool {
    let off = off & BLOCK_MASK;
    if len == 0 || len > BLOCK_CAP {
        return false;
    }
    // The frame's alignment as its offset's: drivers (and veth) start frames on an 8-byte
    // boundary, and the verifier allows no arithmetic on the pointer itself.
    let a = pos % 8;
    set(&mut scratch.found.loop_len, len as u32);
    let n = get(&scratch.found.loop_len) as usize;
    let (src, out) = (iface.block.as_ptr(), scratch.out.as_mut_ptr());
    for k in 0..BLOCK_CAP / 8 {
        let i = k * 8;
        if i >= n {
            break;
        }
        // SAFETY: off < 1024 and i <= 1016 keep the load inside the 2048-byte block; a < 8
        // keeps the store inside the 1040-byte staging buffer. Bytes past `len` are copied
        // too but never stored into the frame.
        unsafe { store::<u64>(out, a + i, load::<u64>(src, off + i)) };
    }
    let dst = scratch.out[a..].as_mut_ptr() as *mut core::ffi::c_void;
    // SAFETY: the helper checks the frame range; a + len <= 1031 lies inside the staging buffer.
    unsafe { bpf_xdp_store_bytes(ctx.ctx, pos as u32, dst, len as u32) == 0 }
}
