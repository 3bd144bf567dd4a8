//! Turns the request frame into the Reply in place and writes its checksum.
//!
//! Layout after the headers: Client Identifier (echoed, when sent), then the interface's
//! prebuilt segments (Server Identifier first) that the Option Request selects. A relayed
//! request's Reply goes inside a Relay-Reply (RFC 9915 section 19.3): the Relay-Forward's
//! header with the type turned, its Interface-ID echoed, then the Relay Message option.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_store_bytes},
    programs::XdpContext,
};
use dhcpv6_common::{
    fold,
    limits::MAX_INTERFACE_ID,
    limits::{BLOCK_CAP, BLOCK_MASK, MAX_SEGMENTS},
    wire::{msg, opt, IPPROTO_UDP, REPLY_HOP_LIMIT, SERVER_PORT},
    IfaceReply, Scratch, REQ_MASK, SEG_REQUESTED_ONLY,
};

use crate::{
    csum,
    frame::{addr_words, load, ptr_at, store, Addr, Hdr},
    request::{requested, Request},
    scratch::{get, set},
    Verdict,
};

/// What a reply keeps of its request's Ethernet header, read before the frame is resized:
/// the client's MAC (with the two bytes after it, as one word), the Ethertype and VLAN tags
/// as they came (bytes 12..22).
#[derive(Clone, Copy)]
pub(crate) struct EthKept {
    pub client_mac: u64,
    pub tags: u64,
    pub tags_end: u16,
}

/// Writes a reply's Ethernet header (to the client's MAC, from ours, tags as they came), its
/// IPv6 header (from the interface's link-local address to `client`) and the first eight UDP
/// bytes (ports, `udp_len`, checksum zero) into the frame, already resized to end `udp_len`
/// bytes past `hdr.l4`. The Information-Request and Renew replies share it.
#[inline(always)]
pub(crate) fn write_headers(
    ctx: &XdpContext,
    hdr: &Hdr,
    iface: &IfaceReply,
    client: &Addr,
    kept: EthKept,
    client_port: u16,
    udp_len: usize,
) -> Result<(), Verdict> {
    let Some(out_eth) = ptr_at::<[u8; 22]>(ctx, 0) else { return Err(Verdict::PassNoRoom) };
    let Some(ip) = ptr_at::<[u8; 40]>(ctx, hdr.l3) else { return Err(Verdict::PassNoRoom) };
    let Some(out_udp) = ptr_at::<[u8; 8]>(ctx, hdr.l4) else { return Err(Verdict::PassNoRoom) };
    let mac = iface.mac;
    let ll = addr_words(&iface.link_local);
    let ulen = (udp_len as u16).to_be_bytes();
    let (sport, cport) = (SERVER_PORT.to_be_bytes(), client_port.to_be_bytes());
    // SAFETY: bounds checked by ptr_at. The Ethernet range may overlap the IPv6 header when
    // there are fewer than two VLAN tags; it is written first and the IPv6 header after.
    unsafe {
        let (o, ip, udp) = (out_eth as *mut u8, ip as *mut u8, out_udp as *mut u8);
        let mac_lo = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, mac[0], mac[1]]);
        store::<u64>(o, 0, (kept.client_mac & 0xffff_ffff_ffff) | mac_lo);
        store::<u32>(o, 8, u32::from_ne_bytes([mac[2], mac[3], mac[4], mac[5]]));
        store::<u64>(o, 12, kept.tags);
        store::<u16>(o, 20, kept.tags_end);
        store::<u64>(ip, 0, u64::from_ne_bytes([0x60, 0, 0, 0, ulen[0], ulen[1], IPPROTO_UDP, REPLY_HOP_LIMIT]));
        store::<u64>(ip, 8, ll[0]);
        store::<u64>(ip, 16, ll[1]);
        store::<u64>(ip, 24, client[0]);
        store::<u64>(ip, 32, client[1]);
        store::<u64>(udp, 0, u64::from_ne_bytes([sport[0], sport[1], cport[0], cport[1], ulen[0], ulen[1], 0, 0]));
    }
    Ok(())
}

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
    let relayed = get(&scratch.found.relayed) != 0;
    // Left over from an earlier frame unless this one is relayed.
    let iid_len = if relayed { get(&scratch.found.iid_len) as usize & 127 } else { 0 };
    if iid_len > MAX_INTERFACE_ID {
        return Verdict::PassLimits;
    }
    // The Relay-Reply's header, Interface-ID option and Relay Message option header.
    let relay_len = if relayed { 34 + 4 + iid_len + 4 } else { 0 };
    let udp_len = 8 + relay_len + 4 + cid_len + opts_len;
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
    // A relay gets its Relay-Reply on port 547 (RFC 9915 section 19.3, RFC 6221), with the
    // client's message header as the Relay Message carried it.
    let (client_port, msg_hdr) = if relayed {
        let at = get(&scratch.found.msg_off) as usize & REQ_MASK;
        // SAFETY: at < 512 keeps the 4-byte load inside the 656-byte buffer.
        (SERVER_PORT, unsafe { load::<u32>(scratch.req.as_ptr(), at) })
    } else {
        (u16::from_be(client_port), msg_hdr)
    };
    // Where the Relay-Reply's first bytes are staged: at the frame offset's alignment.
    let relay_at = (hdr.l4 + 8) % 8;
    let msg_hdr = (msg_hdr & !0xff) | u32::from(msg::REPLY);
    if relayed {
        stage_relay_reply(scratch, relay_at, iid_len, 4 + cid_len + opts_len, msg_hdr);
    }

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

    let kept = EthKept { client_mac, tags, tags_end };
    if let Err(v) = write_headers(ctx, hdr, iface, client, kept, client_port, udp_len) {
        return v;
    }
    let Some(out_udp) = ptr_at::<[u8; 12]>(ctx, hdr.l4) else { return Verdict::PassNoRoom };
    // SAFETY: bounds checked by ptr_at.
    unsafe { store::<u32>(out_udp as *mut u8, 8, msg_hdr) };
    let ll = addr_words(&iface.link_local);

    // From here on the frame holds the reply's headers: a failure can no longer pass it up.

    // Checksum: pseudo header, UDP header, message header, then the parts added below.
    let mut acc = csum::sum_addrs(&ll, client);
    acc += 2 * udp_len as u32 + u32::from(IPPROTO_UDP);
    acc += u32::from(SERVER_PORT) + u32::from(client_port);

    let mut pos = hdr.l4 + 8;
    if relayed {
        // The staged Relay-Reply header, Interface-ID, Relay Message header and the Reply's
        // header: one store, summed from an even offset (the datagram's 8th byte).
        let n = (relay_len + 4) & 255;
        acc += csum::sum_staged::<{ (34 + 4 + MAX_INTERFACE_ID + 8).div_ceil(8) + 1 }>(scratch, relay_at, n);
        let src = scratch.out[relay_at..].as_mut_ptr().cast();
        // SAFETY: the helper checks the frame range; relay_at + n <= 262 lies inside the staging buffer.
        if unsafe { bpf_xdp_store_bytes(ctx.ctx, pos as u32, src, n as u32) } != 0 {
            return Verdict::DropWriteFailed;
        }
        pos += n;
    } else {
        let m = msg_hdr.to_ne_bytes();
        acc += u32::from(u16::from_be_bytes([m[0], m[1]])) + u32::from(u16::from_be_bytes([m[2], m[3]]));
        pos += 4;
    }
    if cid_len > 0 {
        let sum = csum::sum_bytes::<{ CID_MAX.div_ceil(8) }>(scratch, req.cid_off, cid_len);
        // Behind an Interface-ID of odd length the identifier lands at an odd offset.
        acc += csum::at_parity(sum as u16, (pos - hdr.l4) % 2 == 1);
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
    if relayed {
        Verdict::TxRelayedIr
    } else {
        Verdict::Answered
    }
}

/// Stages the Relay-Reply's first bytes in `scratch.out` from `a` (below 8): the
/// Relay-Forward's header with the type turned (hop-count, link-address, peer-address
/// copied), the Interface-ID option as it came, the Relay Message option's header for a
/// `reply_len`-byte Reply, and the Reply's header `msg_hdr`.
#[inline(always)]
fn stage_relay_reply(scratch: &mut Scratch, a: usize, iid_len: usize, reply_len: usize, msg_hdr: u32) {
    let a = a & 7;
    let iid_len = iid_len & 127;
    let iid_src = (get(&scratch.found.iid_off) as usize + 4) & REQ_MASK;
    let (p, o) = (scratch.req.as_ptr(), scratch.out.as_mut_ptr());
    let ilen = (iid_len as u16).to_be_bytes();
    let rlen = (reply_len as u16).to_be_bytes();
    let iid = opt::INTERFACE_ID.to_be_bytes();
    let rmsg = opt::RELAY_MSG.to_be_bytes();
    // SAFETY: the loads stay inside the 656-byte request buffer (from below 512, at most 64
    // bytes on); the stores inside the 1040-byte staging buffer (a < 8, at most 180 bytes on).
    // Bytes stored past each part are overwritten by the next one or never sent.
    unsafe {
        for k in 0..5 {
            store::<u64>(o, a + k * 8, load::<u64>(p, 8 + k * 8));
        }
        store::<u8>(o, a, msg::RELAY_REPL);
        store::<u32>(o, a + 34, u32::from_ne_bytes([iid[0], iid[1], ilen[0], ilen[1]]));
        for k in 0..MAX_INTERFACE_ID / 8 {
            store::<u64>(o, a + 38 + k * 8, load::<u64>(p, iid_src + k * 8));
        }
        let at = a + 38 + iid_len;
        store::<u32>(o, at, u32::from_ne_bytes([rmsg[0], rmsg[1], rlen[0], rlen[1]]));
        store::<u32>(o, at + 4, msg_hdr);
    }
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
pub(crate) fn write_selected(
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

/// Longest run stored into the frame with direct stores rather than the helper.
const SHORT_STORE: usize = 128;

/// Stores `n` (`8 * W <= n <= 16 * W`) bytes of the block from `off` into the frame at
/// `pos`: `W` words at the start and `W` words ending at the end (the overlap gets the same
/// bytes twice), each range behind one bounds check. No helper call, no staging: the CPU's
/// unaligned stores do not care how the frame and the block line up.
#[inline(always)]
fn store_chunks<const W: usize>(ctx: &XdpContext, src: *const u8, off: usize, pos: usize, n: usize) -> bool {
    // Through black_box, as in `fetch::chunks`.
    let tail = core::hint::black_box(n - 8 * W) & (SHORT_STORE - 1);
    let Some(head) = ptr_at::<[u64; W]>(ctx, pos) else { return false };
    let Some(end) = ptr_at::<[u64; W]>(ctx, pos + tail) else { return false };
    // SAFETY: both frame ranges bounds checked by ptr_at; off < 1024 and tail < 128 keep
    // the loads inside the 2048-byte block.
    unsafe {
        let (head, end) = (head as *mut u8, end as *mut u8);
        for k in 0..W {
            store::<u64>(head, k * 8, load::<u64>(src, off + k * 8));
        }
        for k in 0..W {
            store::<u64>(end, k * 8, load::<u64>(src, off + tail + k * 8));
        }
    }
    true
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
    // The size class on a copy read back from memory, as in `fetch::request`.
    set(&mut scratch.found.loop_len, len as u32);
    let n = get(&scratch.found.loop_len) as usize;
    let src = iface.block.as_ptr();
    // Frames here are far shorter than 4 KiB; the mask is the bound the verifier needs (a
    // packet offset it cannot bound above 64 KiB gets no range from a bounds check).
    let in_frame = pos < 4096;
    let pos_m = pos & 4095;
    if !in_frame {
        // Never on a real frame; the helper path below handles it all the same.
    } else if n > 64 && n <= SHORT_STORE {
        return store_chunks::<8>(ctx, src, off, pos_m, n);
    } else if n > 32 && n <= 64 {
        return store_chunks::<4>(ctx, src, off, pos_m, n);
    } else if n > 16 && n <= 32 {
        return store_chunks::<2>(ctx, src, off, pos_m, n);
    } else if n >= 8 && n <= 16 {
        return store_chunks::<1>(ctx, src, off, pos_m, n);
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
