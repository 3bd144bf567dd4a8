//! XDP fast path for DHCPv6 Information-Request (direct or from a lightweight relay) and
//! Renew (from `DHCPV6_RENEWS`).
//!
//! One direction only: the daemon writes per-interface (and per-VLAN) reply data (found by
//! `ifaces::reply_data`) and the flood limits into `DHCPV6_FLOOD_CFG`; this program reads them,
//! answers what the fast-path contract allows with XDP_TX, drops what RFC 9915 says to
//! discard, passes the rest up within each sender's token bucket, and counts every outcome
//! per CPU (the outcomes are one list: `dhcpv6_common::outcomes`).
#![no_std]
#![no_main]
// Compare-and-swap on the flood buckets: the BPF target does not offer it through
// core::sync::atomic, though the kernel has BPF_CMPXCHG.
#![feature(core_intrinsics)]
#![allow(internal_features)]

// Header words, checksum folds and the message-type rewrite read multi-byte values in native
// order and assume it is little-endian (bpfel).
#[cfg(target_endian = "big")]
compile_error!("the XDP program assumes a little-endian target (bpfel-unknown-none)");

mod csum;
mod fetch;
mod flood;
mod frame;
mod ifaces;
mod learn;
mod relay;
mod renew;
mod reply;
mod request;
mod scratch;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
pub use dhcpv6_common::Verdict;
use dhcpv6_common::{
    limits, wire::msg, ClientMac, Counters, FloodBucket, FloodConfig, FloodKey, IfaceKey, IfaceReply, MacKey,
    RelayLinkKey, RelaySource, RenewEntry, RenewKey, Scratch, IFACE_FAST_PATH, IFACE_LEARN_MACS, IFACE_RELAYED_IR,
    IFACE_RENEW, MAX_CLIENT_MACS, MAX_FLOOD_BUCKETS, MAX_FLOOD_RELAYS, MAX_RELAY_LINKS, MAX_RENEWS,
};

use crate::{frame::Hdr, request::Request};

/// BPF_F_NO_PREALLOC: a replaced entry is freed after an RCU grace period, so a program
/// still reading it never sees it reused mid-read.
const NO_PREALLOC: usize = 1;

#[btf_map]
static DHCPV6_COUNTERS: PerCpuArray<Counters, 1> = PerCpuArray::new();

#[btf_map]
static DHCPV6_CLIENT_MACS: LruHashMap<MacKey, ClientMac, { MAX_CLIENT_MACS as usize }> = LruHashMap::new();

#[btf_map]
static DHCPV6_SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

#[btf_map]
static DHCPV6_FLOOD_CFG: Array<FloodConfig, 1> = Array::new();

#[btf_map]
static DHCPV6_FLOOD: LruHashMap<FloodKey, FloodBucket, { MAX_FLOOD_BUCKETS as usize }> = LruHashMap::new();

#[btf_map]
static DHCPV6_RELAYS: HashMap<RelaySource, u32, { MAX_FLOOD_RELAYS as usize }> = HashMap::new();

#[btf_map]
static DHCPV6_RELAY_LINKS: HashMap<RelayLinkKey, IfaceKey, { MAX_RELAY_LINKS as usize }, NO_PREALLOC> = HashMap::new();

/// What a Renew may be answered with: written whole by the daemon (see `renew`; entries are
/// sealed, as a replaced element may be reused at once).
#[btf_map]
static DHCPV6_RENEWS: HashMap<RenewKey, RenewEntry, { MAX_RENEWS as usize }, NO_PREALLOC> = HashMap::new();

/// The Renew program (`dhcpv6_renew`), tail-called: verified apart from this one.
#[btf_map]
static DHCPV6_PROGS: ProgramArray<1> = ProgramArray::new();

#[xdp]
pub fn dhcpv6_xdp(ctx: XdpContext) -> u32 {
    let Some(counters) = DHCPV6_COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a per-CPU slot, only touched by this program on this CPU.
    let counters = unsafe { &mut *counters };
    counters.frames += 1;
    let verdict = handle(&ctx, counters);
    if let Some(field) = counters.slot(verdict) {
        *field += 1;
    }
    verdict.action()
}

/// Classifies, finds the reply data, serves; a frame on its way up to userspace goes through
/// its sender's flood bucket first, and only one that passes it may teach us a client MAC.
#[inline(always)]
fn handle(ctx: &XdpContext, counters: &mut Counters) -> Verdict {
    let hdr = match frame::classify(ctx) {
        Ok(h) => h,
        // Not DHCPv6, or maybe (extension headers, a third tag): not metered either way.
        Err(v) => return v,
    };
    counters.dhcp += 1;
    let ifindex = ctx.ingress_ifindex() as u32;
    // A tagged frame is served only from reply data written for its VLAN: the parent's
    // options are not the VLAN interface's.
    let Some(iface) = ifaces::reply_data(hdr.key(ifindex)) else {
        let v = if hdr.tagged() { Verdict::PassVlan } else { Verdict::PassNoIface };
        return flood::admit(ctx, hdr.l3, v);
    };
    let v = serve(ctx, &hdr, hdr.key(ifindex), iface);
    if !v.passes_up() {
        return v;
    }
    let v = flood::admit(ctx, hdr.l3, v);
    if v.passes_up() && iface.flags & IFACE_LEARN_MACS != 0 {
        learn::client_mac(ctx, &hdr, ifindex);
    }
    v
}

/// The fast path proper: answers an Information-Request within its contract, sent directly
/// or by a trusted lightweight relay, drops what RFC 9915 discards, and says why it passes
/// anything else.
#[inline(always)]
fn serve(ctx: &XdpContext, hdr: &Hdr, key: IfaceKey, iface: &IfaceReply) -> Verdict {
    if iface.flags & IFACE_FAST_PATH == 0 {
        return Verdict::PassFastPathOff;
    }
    let (src, dst) = match frame::check_addressing(ctx, hdr) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let udp_len = match frame::check_lengths(ctx, hdr) {
        Ok(l) => l,
        Err(v) => return v,
    };
    if udp_len < 12 {
        return Verdict::DropMalformed;
    }
    let relayed = match frame::msg_type(ctx, hdr) {
        Some(msg::INFORMATION_REQUEST) => false,
        Some(msg::RELAY_FORW) if iface.flags & IFACE_RELAYED_IR == 0 => return Verdict::PassRelayUntrusted,
        Some(msg::RELAY_FORW) => true,
        Some(msg::RENEW) if iface.flags & IFACE_RENEW != 0 => return renew_tail_call(ctx, key, udp_len),
        _ => return Verdict::PassOtherMsg,
    };
    if udp_len > limits::MAX_REQUEST_UDP_LEN {
        return Verdict::PassLimits;
    }
    let Some(scratch) = DHCPV6_SCRATCH.get_ptr_mut(0) else {
        return Verdict::PassLimits;
    };
    // SAFETY: per-CPU scratch, used only within this run.
    let scratch = unsafe { &mut *scratch };
    if !fetch::request(ctx, hdr.l4, udp_len, scratch) {
        return Verdict::PassLength;
    }
    if !csum::udp_valid(&src, &dst, scratch, udp_len) {
        return Verdict::PassChecksum;
    }
    let iface = if relayed {
        if let Err(v) = relay::walk(scratch, udp_len) {
            return v;
        }
        match relay::link(scratch, key, iface) {
            Ok(i) => i,
            Err(v) => return v,
        }
    } else {
        scratch::set(&mut scratch.found.msg_off, 8);
        scratch::set(&mut scratch.found.msg_end, udp_len as u32);
        iface
    };
    scratch::set(&mut scratch.found.relayed, u32::from(relayed));
    let req: Request = match request::walk(scratch, iface) {
        Ok(r) => r,
        Err(v) => return v,
    };
    reply::write(ctx, hdr, &src, iface, &req, scratch)
}

/// Hands a Renew to the Renew program before the datagram is fetched and its checksum
/// checked: the Renew program does both (in the same order as here, so the outcomes are the
/// same), which keeps a third kind of message from doubling the states the verifier walks
/// through the fetch and checksum code of this program.
#[inline(always)]
fn renew_tail_call(ctx: &XdpContext, key: IfaceKey, udp_len: usize) -> Verdict {
    if udp_len > limits::MAX_REQUEST_UDP_LEN {
        return Verdict::PassLimits;
    }
    let Some(scratch) = DHCPV6_SCRATCH.get_ptr_mut(0) else {
        return Verdict::PassLimits;
    };
    // SAFETY: per-CPU scratch, used only within this run and the tail call that follows.
    let scratch = unsafe { &mut *scratch };
    scratch.renew_key.iface = key;
    // SAFETY: a tail call into a program of the same type; it does not return on success.
    unsafe { DHCPV6_PROGS.tail_call(ctx, dhcpv6_common::PROG_RENEW) };
    // No Renew program in the map (a loader that did not put it there): as without IFACE_RENEW.
    Verdict::PassOtherMsg
}

/// The Renew path (`renew::serve`), tail-called by `dhcpv6_xdp` for a Renew on an interface
/// with `IFACE_RENEW` whose addressing and lengths it checked (the datagram is fetched and
/// its checksum verified here); `frames` and `dhcp` are counted already, the outcome is
/// counted here.
#[xdp]
pub fn dhcpv6_renew(ctx: XdpContext) -> u32 {
    let Some(counters) = DHCPV6_COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: as in `dhcpv6_xdp`.
    let counters = unsafe { &mut *counters };
    let verdict = renew::serve(&ctx);
    if let Some(field) = counters.slot(verdict) {
        *field += 1;
    }
    verdict.action()
}

dhcpv6_ebpf_common::xdp_object!();

/// Plain XDP_PASS, for the far end of a veth in tests and the lab: veth delivers XDP_TX
/// frames only to a peer that has an XDP program of its own.
#[xdp]
pub fn dhcpv6_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
