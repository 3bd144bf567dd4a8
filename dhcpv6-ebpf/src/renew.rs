//! A direct Renew answered from `DHCPV6_RENEWS` (docs/fast-path.md, "Renew").
//!
//! The daemon keeps, per (interface, DUID, IAID, kind), the IA option its engine would put in
//! the Reply, for leases the store already holds past what that IA says. The program answers
//! only a Renew it can answer completely from those entries and the interface's reply data:
//! identifiers, Elapsed Time, one Option Request, and up to `MAX_RENEW_IAS` IA_NA / IA_PD,
//! each naming exactly its entry's address or prefix. Everything else goes up, counted.
//!
//! Reply layout, as the engine writes it: header, Client Identifier (echoed), Server
//! Identifier (the block's first segment), the entries' IAs in the Renew's order, then the
//! interface's stateful segments the Option Request selects. The first four parts are staged
//! in scratch and stored at once; the segments go out as the Information-Request path sends
//! them (`reply::write_selected`).

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_store_bytes},
    },
    programs::XdpContext,
};
use dhcpv6_common::{
    fold,
    limits::MAX_REQUEST_UDP_LEN,
    limits::{BLOCK_CAP, MAX_OPTIONS, MAX_RENEW_IAS, MAX_SEGMENTS},
    renew_mix,
    wire::{msg, opt, DUID_MAX_LEN, DUID_MIN_LEN, IPPROTO_UDP, SERVER_PORT},
    IfaceKey, IfaceReply, RenewEntry, Scratch, IFACE_LEARN_MACS, RENEW_CHECK_WORD, RENEW_DUID_CAP, RENEW_ENTRY_WORDS,
    RENEW_IA_CAP, RENEW_KEY_WORDS, RENEW_SEAL_INIT, REQ_BUF, REQ_MASK, SEG_REQUESTED_ONLY,
};

use crate::{
    csum, flood,
    frame::{self, addr_words, load, ptr_at, store, Addr, Hdr},
    learn,
    reply::{write_headers, write_selected, EthKept},
    request::{oro_mask, requested},
    scratch::{get, set},
    Verdict, DHCPV6_RENEWS, DHCPV6_SCRATCH,
};

/// Option lengths of the one shape answered: an IA_NA holding one IAADDR and nothing else
/// (IAID, T1, T2, then the 24-byte IAADDR), an IA_PD holding one 25-byte IAPREFIX.
const IA_NA_LEN: usize = 12 + 4 + 24;
const IA_PD_LEN: usize = 12 + 4 + 25;
/// Largest Client Identifier option answered: its DUID fits the map key.
const CID_MAX: usize = 4 + RENEW_DUID_CAP;
/// Largest Server Identifier option (a DUID of 130 bytes).
const SID_MAX: usize = 4 + DUID_MAX_LEN;
const _: () = assert!(MAX_RENEW_IAS.is_power_of_two());
/// What is staged before the segments: header, identifiers, IAs.
const STAGED_MAX: usize = 4 + CID_MAX + SID_MAX + MAX_RENEW_IAS * RENEW_IA_CAP;

#[inline(always)]
fn be16(req: &[u8; REQ_BUF], off: usize) -> u16 {
    let off = off & REQ_MASK;
    u16::from_be_bytes([req[off], req[off + 1]])
}

#[inline(always)]
fn duid_len_ok(len: usize) -> bool {
    (DUID_MIN_LEN..=DUID_MAX_LEN).contains(&len)
}

/// Records the first reason to send the Renew up; the walk goes on, as a later option may
/// still make it malformed (a drop, as userspace's parser would).
#[inline(always)]
fn pass(scratch: &mut Scratch, v: u32) {
    if get(&scratch.renew.pass) == 0 {
        set(&mut scratch.renew.pass, v);
    }
}

// Reasons kept in `RenewFound::pass` (memory, not a Verdict register, for the verifier).
const P_OPTIONS: u32 = 1;
const P_IA: u32 = 2;
const P_LIMITS: u32 = 3;

#[inline(always)]
fn pass_verdict(p: u32) -> Verdict {
    match p {
        P_OPTIONS => Verdict::PassRenewOptions,
        P_IA => Verdict::PassRenewIa,
        _ => Verdict::PassLimits,
    }
}

/// Walks the Renew in scratch (`udp_len` bytes, the message from offset 8).
#[inline(always)]
fn walk(scratch: &mut Scratch, udp_len: usize) -> Result<(), Verdict> {
    let end = udp_len;
    let mut off = 12usize;
    let r = &mut scratch.renew;
    for field in [&mut r.cid_len, &mut r.sid_len, &mut r.oro_count, &mut r.ias, &mut r.pass] {
        set(field, 0);
    }
    for _ in 0..MAX_OPTIONS {
        if off >= end {
            break;
        }
        if off + 4 > end {
            return Err(Verdict::DropMalformed);
        }
        let code = be16(&scratch.req, off);
        let len = be16(&scratch.req, off + 2) as usize;
        let next = off + 4 + len;
        if next > end {
            return Err(Verdict::DropMalformed);
        }
        match code {
            opt::CLIENTID => {
                if get(&scratch.renew.cid_len) != 0 || !duid_len_ok(len) {
                    return Err(Verdict::DropMalformed);
                }
                set(&mut scratch.renew.cid_off, off as u32);
                set(&mut scratch.renew.cid_len, len as u32 + 4);
            }
            opt::SERVERID => {
                if get(&scratch.renew.sid_len) != 0 || !duid_len_ok(len) {
                    return Err(Verdict::DropMalformed);
                }
                set(&mut scratch.renew.sid_off, off as u32);
                set(&mut scratch.renew.sid_len, len as u32);
            }
            opt::ORO => {
                if len % 2 != 0 {
                    return Err(Verdict::DropMalformed);
                }
                let n = get(&scratch.renew.oro_count);
                set(&mut scratch.renew.oro_count, n + 1);
                set(&mut scratch.renew.oro_off, off as u32);
                set(&mut scratch.renew.oro_len, len as u32);
            }
            opt::ELAPSED_TIME => {}
            opt::IA_NA | opt::IA_PD => {
                let (want, sub, sub_len) =
                    if code == opt::IA_NA { (IA_NA_LEN, opt::IAADDR, 24) } else { (IA_PD_LEN, opt::IAPREFIX, 25) };
                let n = get(&scratch.renew.ias) as usize;
                if n >= MAX_RENEW_IAS
                    || len != want
                    || be16(&scratch.req, off + 16) != sub
                    || be16(&scratch.req, off + 18) as usize != sub_len
                {
                    pass(scratch, P_IA);
                } else {
                    set(&mut scratch.renew.ia_off[n & (MAX_RENEW_IAS - 1)], off as u32);
                    set(&mut scratch.renew.ias, n as u32 + 1);
                }
            }
            opt::IA_TA => pass(scratch, P_IA),
            _ => pass(scratch, P_OPTIONS),
        }
        off = next;
    }
    if off < end || get(&scratch.renew.oro_count) > 1 {
        pass(scratch, P_LIMITS);
    }
    Ok(())
}

/// The Server Identifier names us (its data, `len` bytes at `off + 4`, equals our DUID).
#[inline(always)]
fn server_id_ours(req: &[u8; REQ_BUF], off: usize, len: usize, iface: &IfaceReply) -> bool {
    if len != iface.duid_len as usize {
        return false;
    }
    let start = (off + 4) & REQ_MASK;
    for k in 0..17 {
        let i = k * 8;
        if i >= len {
            break;
        }
        let n = len - i;
        // SAFETY: start < 512 and i < 136 stay inside the 656-byte buffer and the 136-byte DUID.
        let (a, b): (u64, u64) = unsafe { (load(req.as_ptr(), start + i), load(iface.duid.as_ptr(), i)) };
        // Native order: the bytes past the DUID are the high ones.
        let mask = if n >= 8 { u64::MAX } else { (1u64 << (n * 8)) - 1 };
        if (a ^ b) & mask != 0 {
            return false;
        }
    }
    true
}

/// Copies `n` words from `src + from` to `scratch.out` at `to`.
#[inline(always)]
unsafe fn copy_words<const N: usize>(src: *const u8, from: usize, out: *mut u8, to: usize) {
    for k in 0..N {
        // SAFETY: the caller bounds both ranges.
        unsafe { store::<u64>(out, to + k * 8, load::<u64>(src, from + k * 8)) };
    }
}

/// Fills `scratch.renew_key` for the IA at `off` of a client whose Client Identifier
/// option is at `cid_off` (DUID of `duid_len` bytes).
#[inline(always)]
fn fill_key(scratch: &mut Scratch, key: IfaceKey, off: usize, cid_off: usize, duid_len: usize) {
    let off = off & REQ_MASK;
    let iaid =
        u32::from_be_bytes([scratch.req[off + 4], scratch.req[off + 5], scratch.req[off + 6], scratch.req[off + 7]]);
    let kind = scratch.req[off + 1];
    let src = (cid_off + 4) & REQ_MASK;
    let k = &mut scratch.renew_key;
    k.iface = key;
    k.iaid = iaid;
    k.kind = kind;
    k.duid_len = duid_len as u8;
    k._pad = [0, 0];
    let p = scratch.req.as_ptr();
    let dst = scratch.renew_key.duid.as_mut_ptr();
    for w in 0..RENEW_DUID_CAP / 8 {
        let i = w * 8;
        // SAFETY: src < 512 and i + 8 <= 32 stay inside the 656-byte buffer; the key's DUID
        // has 32 bytes.
        let v: u64 = unsafe { load(p, src + i) };
        // Native order: the bytes past the DUID are the high ones, zero in the key.
        let v = if duid_len >= i + 8 {
            v
        } else if duid_len > i {
            v & ((1u64 << ((duid_len - i) * 8)) - 1)
        } else {
            0
        };
        // SAFETY: i + 8 <= 32.
        unsafe { store::<u64>(dst, i, v) };
    }
}

/// Copies the entry at `e` into scratch, one read per word, and checks its seal on the copy.
#[inline(always)]
fn snapshot(scratch: &mut Scratch, e: *const RenewEntry) -> bool {
    let src = e as *const u64;
    let dst = &raw mut scratch.renew_entry as *mut u64;
    let key = &raw const scratch.renew_key as *const u64;
    let mut h = RENEW_SEAL_INIT;
    for i in 0..RENEW_KEY_WORDS {
        // SAFETY: i < the key's word count; the key is 8-byte aligned in scratch.
        h = renew_mix(h, unsafe { core::ptr::read_volatile(key.add(i)) });
    }
    for i in 0..RENEW_ENTRY_WORDS {
        // SAFETY: i < the entry's word count; map values and scratch are 8-byte aligned.
        let w = unsafe { core::ptr::read_volatile(src.add(i)) };
        // SAFETY: the same word of the entry's copy in scratch.
        unsafe { core::ptr::write_volatile(dst.add(i), w) };
        h = renew_mix(h, if i == RENEW_CHECK_WORD { 0 } else { w });
    }
    h == scratch.renew_entry.check
}

/// Looks up each IA's entry and stages its IA option at `scratch.renew.staged` (relative to
/// `a` in `scratch.out`).
#[inline(always)]
fn stage_ias(scratch: &mut Scratch, key: IfaceKey, a: usize) -> Result<(), Verdict> {
    let n = get(&scratch.renew.ias) as usize;
    let cid_off = get(&scratch.renew.cid_off) as usize;
    let duid_len = (get(&scratch.renew.cid_len) as usize).wrapping_sub(4);
    // Two IAs of one kind with one IAID: the engine answers the first only.
    if n == 2 {
        let (x, y) = (get(&scratch.renew.ia_off[0]) as usize, get(&scratch.renew.ia_off[1]) as usize);
        // SAFETY: both offsets below 512: the 8-byte loads (code, length, IAID) stay inside.
        let (x, y): (u64, u64) =
            unsafe { (load(scratch.req.as_ptr(), x & REQ_MASK), load(scratch.req.as_ptr(), y & REQ_MASK)) };
        // Native order: the code (bytes 0, 1) and the IAID (4..8), not the length.
        if (x ^ y) & 0xffff_ffff_0000_ffff == 0 {
            return Err(Verdict::PassRenewIa);
        }
    }
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    for i in 0..MAX_RENEW_IAS {
        if i >= n {
            break;
        }
        let off = get(&scratch.renew.ia_off[i]) as usize & REQ_MASK;
        fill_key(scratch, key, off, cid_off, duid_len);
        let Some(e) = DHCPV6_RENEWS.get_ptr(&scratch.renew_key) else {
            return Err(Verdict::PassRenewNoEntry);
        };
        if !snapshot(scratch, e) {
            return Err(Verdict::PassRenewTorn);
        }
        let e = &scratch.renew_entry;
        if now >= e.answer_until_ns {
            return Err(Verdict::PassRenewExpired);
        }
        // The address or prefix the IA names: IAADDR's starts its data, IAPREFIX's follows
        // the lifetimes and the length.
        let p = scratch.req.as_ptr();
        let is_na = scratch.req[off + 1] == opt::IA_NA as u8;
        let (at, len) = if is_na { (off + 20, 128u8) } else { (off + 29, scratch.req[(off + 28) & REQ_MASK]) };
        // SAFETY: off < 512 and at most 45 bytes on: inside the 656-byte buffer.
        let named: Addr = unsafe { [load(p, at), load(p, at + 8)] };
        if named != addr_words(&e.lease) || len != e.prefix_len {
            return Err(Verdict::PassRenewChanged);
        }
        let ia_len = e.ia_len as usize;
        if !(4..=RENEW_IA_CAP).contains(&ia_len) {
            return Err(Verdict::PassLimits);
        }
        let staged = get(&scratch.renew.staged) as usize & 511;
        let src = scratch.renew_entry.ia.as_ptr();
        let out = scratch.out.as_mut_ptr();
        // SAFETY: the entry's 48 IA bytes; a < 8 and staged < 512 keep the 48-byte store
        // inside the 1040-byte staging buffer.
        unsafe { copy_words::<{ RENEW_IA_CAP / 8 }>(src, 0, out, (a & 7) + staged) };
        set(&mut scratch.renew.staged, (staged + ia_len) as u32);
    }
    Ok(())
}

/// The stateful segments the Option Request selects (bit per segment) and their length.
#[inline(always)]
fn select(iface: &IfaceReply, scratch: &mut Scratch) -> (u32, usize) {
    let nsegs = iface.nsegs as usize;
    let oro = scratch.found.oro_mask;
    let stateful = u32::from(iface.stateful_segs);
    let f = &mut scratch.found;
    set(&mut f.selected, 0);
    set(&mut f.opts_len, 0);
    for i in 1..MAX_SEGMENTS {
        if i >= nsegs {
            break;
        }
        let seg = &iface.segs[i];
        if stateful & (1 << i) != 0 && (seg.flags & SEG_REQUESTED_ONLY == 0 || requested(&oro, seg.code)) {
            let (sel, len) = (get(&f.selected) | 1 << i, get(&f.opts_len) + u32::from(seg.len));
            set(&mut f.selected, sel);
            set(&mut f.opts_len, len);
        }
    }
    (get(&f.selected), get(&f.opts_len) as usize)
}

/// The Renew program's body: the frame classified again (cheap, and the verifier knows
/// nothing of what the caller found), the reply data found again by the key the caller left
/// in scratch; passes go through the sender's flood bucket and may teach a client MAC, as in
/// `handle`.
#[inline(always)]
pub fn serve(ctx: &XdpContext) -> Verdict {
    let Ok(hdr) = frame::classify(ctx) else { return Verdict::PassHeaders };
    let Some(scratch) = DHCPV6_SCRATCH.get_ptr_mut(0) else { return Verdict::PassLimits };
    // SAFETY: per-CPU scratch; the tail call runs on the caller's CPU right after it.
    let scratch = unsafe { &mut *scratch };
    let key = scratch.renew_key.iface;
    let Some(iface) = crate::ifaces::reply_data(key) else { return Verdict::PassNoIface };
    let (src, dst) = match frame::check_addressing(ctx, &hdr) {
        Ok(a) => a,
        Err(v) => return v,
    };
    // The length as the caller found it, found again from the frame: a value read back from
    // scratch would carry no bounds the verifier can see into the fetch below.
    let udp_len = match frame::check_lengths(ctx, &hdr) {
        Ok(l) => l,
        Err(v) => return v,
    };
    // Two comparisons, as the caller makes them: a range check compiles to one comparison
    // of `udp_len - 12`, which bounds a copy but not the value the fetch is given.
    if udp_len < 12 {
        return Verdict::DropMalformed;
    }
    if udp_len > MAX_REQUEST_UDP_LEN {
        return Verdict::PassLimits;
    }
    set(&mut scratch.renew.udp_len, udp_len as u32);
    // The caller left these two to this program (see `renew_tail_call`).
    if !crate::fetch::request(ctx, hdr.l4, udp_len, scratch) {
        return Verdict::PassLength;
    }
    if !csum::udp_valid(&src, &dst, scratch, udp_len) {
        return Verdict::PassChecksum;
    }
    let v = answer(ctx, &hdr, key, &src, iface, scratch, udp_len);
    if !v.passes_up() {
        return v;
    }
    let v = flood::admit(ctx, hdr.l3, v);
    if v.passes_up() && iface.flags & IFACE_LEARN_MACS != 0 {
        learn::client_mac(ctx, &hdr, key.ifindex);
    }
    v
}

/// Answers the Renew in scratch (`udp_len` bytes, checksum verified by `serve`) from `client` on the
/// interface (or VLAN) `key` with reply data `iface`, or says why not.
#[inline(always)]
pub fn answer(
    ctx: &XdpContext,
    hdr: &Hdr,
    key: IfaceKey,
    client: &Addr,
    iface: &IfaceReply,
    scratch: &mut Scratch,
    udp_len: usize,
) -> Verdict {
    if let Err(v) = walk(scratch, udp_len) {
        return v;
    }
    // RFC 9915 section 16.6: a Renew naming another server is discarded, as userspace does.
    let sid_len = get(&scratch.renew.sid_len) as usize;
    if sid_len != 0 && !server_id_ours(&scratch.req, get(&scratch.renew.sid_off) as usize, sid_len, iface) {
        return Verdict::DropForeignServerId;
    }
    let p = get(&scratch.renew.pass);
    if p != 0 {
        return pass_verdict(p);
    }
    let cid_len = get(&scratch.renew.cid_len) as usize;
    if cid_len == 0 || sid_len == 0 {
        return Verdict::PassRenewOptions;
    }
    if get(&scratch.renew.ias) == 0 {
        return Verdict::PassRenewIa;
    }
    if cid_len > CID_MAX {
        return Verdict::PassRenewDuid;
    }
    // SAFETY: plain fields of per-CPU scratch (see `request::walk`).
    unsafe {
        core::ptr::write_volatile(&mut scratch.found.oro_mask[0], 0);
        core::ptr::write_volatile(&mut scratch.found.oro_mask[1], 0);
    }
    if get(&scratch.renew.oro_count) != 0 {
        let (oro_off, oro_len) = (get(&scratch.renew.oro_off) as usize, get(&scratch.renew.oro_len) as usize);
        if let Err(v) = oro_mask(scratch, oro_off, oro_len) {
            return v;
        }
    }
    let sid_seg = &iface.segs[0];
    let sid_opt = sid_seg.len as usize;
    if sid_seg.code != opt::SERVERID || sid_seg.off != 0 || sid_opt > SID_MAX || sid_opt < 4 {
        return Verdict::PassLimits;
    }

    // Stage header, Client Identifier and Server Identifier at the frame's alignment.
    let a = (hdr.l4 + 8) % 8;
    let cid_off = get(&scratch.renew.cid_off) as usize & REQ_MASK;
    {
        let (p, o) = (scratch.req.as_ptr(), scratch.out.as_mut_ptr());
        // SAFETY: loads inside the 656-byte request buffer (from below 512, 40 bytes on) and
        // the 2048-byte block (136 bytes); stores inside the 1040-byte staging buffer (a < 8,
        // at most 4 + 40 + 136 bytes on). Bytes past each part are overwritten by the next
        // or never sent.
        unsafe {
            let msg_hdr = (load::<u32>(p, 8) & !0xff) | u32::from(msg::REPLY);
            store::<u32>(o, a, msg_hdr);
            copy_words::<{ CID_MAX.div_ceil(8) }>(p, cid_off, o, a + 4);
            copy_words::<{ SID_MAX.div_ceil(8) }>(iface.block.as_ptr(), 0, o, a + 4 + (cid_len & 63));
        }
    }
    set(&mut scratch.renew.staged, (4 + cid_len + sid_opt) as u32);
    if let Err(v) = stage_ias(scratch, key, a) {
        return v;
    }
    let staged = get(&scratch.renew.staged) as usize;
    if staged > STAGED_MAX {
        return Verdict::PassLimits;
    }
    let (selected, opts_len) = select(iface, scratch);
    if opts_len > BLOCK_CAP {
        return Verdict::PassLimits;
    }
    let udp_len = 8 + staged + opts_len;
    let new_len = hdr.l4 + udp_len;
    // Through black_box for the reason in `frame::check_lengths`.
    let old_len = core::hint::black_box(ctx.data_end() - ctx.data());
    let delta = new_len as i32 - old_len as i32;

    // What the reply keeps of the request's headers, read before the frame is resized.
    let Some(eth) = ptr_at::<[u8; 22]>(ctx, 0) else { return Verdict::PassLength };
    let Some(udp) = ptr_at::<[u8; 8]>(ctx, hdr.l4) else { return Verdict::PassLength };
    // SAFETY: bounds checked by ptr_at.
    let (client_mac, tags, tags_end, client_port) = unsafe {
        let (eth, udp) = (eth as *const u8, udp as *const u8);
        (load::<u64>(eth, 6), load::<u64>(eth, 12), load::<u16>(eth, 20), load::<u16>(udp, 0))
    };
    let client_port = u16::from_be(client_port);

    // SAFETY: plain helper calls on our own context.
    let in_place = delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } == 0;
    if !in_place && !(delta > 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } == 0) {
        return Verdict::PassNoRoom;
    }

    // The headers, as the Information-Request reply writes them.
    let kept = EthKept { client_mac, tags, tags_end };
    if let Err(v) = write_headers(ctx, hdr, iface, client, kept, client_port, udp_len) {
        return v;
    }
    let ll = addr_words(&iface.link_local);

    // From here on the frame holds the reply's headers: a failure can no longer pass it up.
    let mut acc = csum::sum_addrs(&ll, client);
    acc += 2 * udp_len as u32 + u32::from(IPPROTO_UDP);
    acc += u32::from(SERVER_PORT) + u32::from(client_port);
    // The staged part starts the message, at an even offset of the datagram.
    acc += csum::sum_staged::<{ STAGED_MAX.div_ceil(8) }>(scratch, a, staged);
    let pos = hdr.l4 + 8;
    let src = scratch.out[a..].as_mut_ptr().cast();
    // At least the header, which the verifier must see: 1 to 512 bytes.
    let n = (staged.wrapping_sub(1) & 511) + 1;
    // SAFETY: the helper checks the frame range; a + n <= 7 + 512 lies inside the staging buffer.
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, pos as u32, src, n as u32) } != 0 {
        return Verdict::DropWriteFailed;
    }
    if selected != 0 {
        // Through memory, the sum so far and the staged length: whatever path led here, the
        // segments' loop (the costliest part to verify) then starts from one verifier state.
        set(&mut scratch.renew.acc, fold(acc));
        let staged = get(&scratch.renew.staged) as usize;
        match write_selected(ctx, iface, scratch, selected, 8 + staged, pos + staged) {
            Some(sum) => acc = get(&scratch.renew.acc) + sum,
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
    Verdict::TxRenew
}
