//! XDP fast path for DHCPv6 Information-Request.
//!
//! One direction only: the daemon writes per-interface reply data into `DHCPV6_IFACES`; this
//! program reads it, answers what the fast-path contract allows with XDP_TX, drops what
//! RFC 9915 says to discard, passes the rest up, and counts every outcome per CPU.
#![no_std]
#![no_main]

// Header words, checksum folds and the message-type rewrite read multi-byte values in native
// order and assume it is little-endian (bpfel).
#[cfg(target_endian = "big")]
compile_error!("the XDP program assumes a little-endian target (bpfel-unknown-none)");

mod csum;
mod frame;
mod reply;
mod request;
mod scratch;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{HashMap, LruHashMap, PerCpuArray},
    helpers::generated::bpf_xdp_load_bytes,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use dhcpv6_common::{
    limits, ClientMac, Counters, IfaceReply, MacKey, Scratch, IFACE_FAST_PATH, IFACE_LEARN_MACS, MAX_CLIENT_MACS,
    MAX_IFACES,
};

use crate::request::Request;

/// BPF_F_NO_PREALLOC: replaced entries are freed after an RCU grace period, so a program
/// still reading the old reply data never sees it reused mid-read.
const NO_PREALLOC: usize = 1;

#[btf_map]
static DHCPV6_IFACES: HashMap<u32, IfaceReply, { MAX_IFACES as usize }, NO_PREALLOC> = HashMap::new();

#[btf_map]
static DHCPV6_COUNTERS: PerCpuArray<Counters, 1> = PerCpuArray::new();

#[btf_map]
static DHCPV6_CLIENT_MACS: LruHashMap<MacKey, ClientMac, { MAX_CLIENT_MACS as usize }> = LruHashMap::new();

#[btf_map]
static DHCPV6_SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

/// What became of a frame; each maps to one counter and one XDP action.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// Not IPv6 UDP to port 547: not ours to count beyond `frames`.
    NotDhcp,
    Answered,
    PassHeaders,
    PassOtherMsg,
    PassNoIface,
    PassFastPathOff,
    PassAddressing,
    PassLength,
    PassChecksum,
    PassLimits,
    PassNoRoom,
    DropMalformed,
    DropIaPresent,
    DropForeignServerId,
    DropWriteFailed,
}

#[xdp]
pub fn dhcpv6_xdp(ctx: XdpContext) -> u32 {
    let Some(counters) = DHCPV6_COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a per-CPU slot, only touched by this program on this CPU.
    let counters = unsafe { &mut *counters };
    counters.frames += 1;
    let verdict = handle(&ctx, counters);
    count(counters, verdict)
}

#[inline(always)]
fn count(c: &mut Counters, v: Verdict) -> u32 {
    use xdp_action::{XDP_DROP, XDP_PASS, XDP_TX};
    let (field, action) = match v {
        Verdict::NotDhcp => return XDP_PASS,
        Verdict::Answered => (&mut c.answered, XDP_TX),
        Verdict::PassHeaders => (&mut c.pass_headers, XDP_PASS),
        Verdict::PassOtherMsg => (&mut c.pass_other_msg, XDP_PASS),
        Verdict::PassNoIface => (&mut c.pass_no_iface, XDP_PASS),
        Verdict::PassFastPathOff => (&mut c.pass_fast_path_off, XDP_PASS),
        Verdict::PassAddressing => (&mut c.pass_addressing, XDP_PASS),
        Verdict::PassLength => (&mut c.pass_length, XDP_PASS),
        Verdict::PassChecksum => (&mut c.pass_checksum, XDP_PASS),
        Verdict::PassLimits => (&mut c.pass_limits, XDP_PASS),
        Verdict::PassNoRoom => (&mut c.pass_no_room, XDP_PASS),
        Verdict::DropMalformed => (&mut c.drop_malformed, XDP_DROP),
        Verdict::DropIaPresent => (&mut c.drop_ia_present, XDP_DROP),
        Verdict::DropForeignServerId => (&mut c.drop_foreign_server_id, XDP_DROP),
        Verdict::DropWriteFailed => (&mut c.drop_write_failed, XDP_DROP),
    };
    *field += 1;
    action
}

#[inline(always)]
fn handle(ctx: &XdpContext, counters: &mut Counters) -> Verdict {
    let hdr = match frame::classify(ctx) {
        Ok(h) => h,
        Err(v) => return v,
    };
    counters.dhcp += 1;
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(iface) = DHCPV6_IFACES.get_ptr(ifindex) else {
        return Verdict::PassNoIface;
    };
    // SAFETY: map values are valid for the program's run (RCU); the daemon replaces whole
    // entries, never writes into one in place.
    let iface = unsafe { &*iface };
    if iface.flags & IFACE_LEARN_MACS != 0 {
        learn_mac(ctx, &hdr, ifindex);
    }
    if iface.flags & IFACE_FAST_PATH == 0 {
        return Verdict::PassFastPathOff;
    }
    let (src, dst) = match frame::check_addressing(ctx, &hdr, iface) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let udp_len = match frame::check_lengths(ctx, &hdr) {
        Ok(l) => l,
        Err(v) => return v,
    };
    if udp_len < 12 {
        return Verdict::DropMalformed;
    }
    if frame::msg_type(ctx, &hdr) != Some(dhcpv6_common::wire::msg::INFORMATION_REQUEST) {
        return Verdict::PassOtherMsg;
    }
    if udp_len > limits::MAX_REQUEST_UDP_LEN {
        return Verdict::PassLimits;
    }
    let Some(scratch) = DHCPV6_SCRATCH.get_ptr_mut(0) else {
        return Verdict::PassLimits;
    };
    // SAFETY: per-CPU scratch, used only within this run.
    let scratch = unsafe { &mut *scratch };
    // SAFETY: the helper checks the frame range; udp_len <= 512 < the buffer's size.
    let rc =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, hdr.l4 as u32, scratch.req.as_mut_ptr().cast(), (udp_len & 1023) as u32) };
    if rc != 0 {
        return Verdict::PassLength;
    }
    if !csum::udp_valid(&src, &dst, scratch, udp_len) {
        return Verdict::PassChecksum;
    }
    let req: Request = match request::walk(scratch, udp_len, iface) {
        Ok(r) => r,
        Err(v) => return v,
    };
    reply::write(ctx, &hdr, &src, iface, &req, scratch)
}

/// Remembers who sent a DHCPv6 frame, keyed by (ifindex, IPv6 source).
#[inline(always)]
fn learn_mac(ctx: &XdpContext, hdr: &frame::Hdr, ifindex: u32) {
    let (Some(mac), Some(src)) = (frame::ptr_at::<[u8; 6]>(ctx, 6), frame::ptr_at::<[u8; 16]>(ctx, hdr.l3 + 8)) else {
        return;
    };
    // SAFETY: bounds checked by ptr_at.
    let (mac, addr) = unsafe { (*mac, *src) };
    let _ = DHCPV6_CLIENT_MACS.insert(MacKey { ifindex, addr }, ClientMac { mac, _pad: [0; 2] }, 0);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Plain XDP_PASS, for the far end of a veth in tests and the lab: veth delivers XDP_TX
/// frames only to a peer that has an XDP program of its own.
#[xdp]
pub fn dhcpv6_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
