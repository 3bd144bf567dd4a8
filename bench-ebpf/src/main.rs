//! XDP programs of the benchmark (`cargo xtask bench`); not part of the server.
//!
//! - `bench_gen`: the Information-Request load generator. Run with BPF_PROG_TEST_RUN in
//!   live-frames mode on the generator's veth end: each repetition turns the template into a
//!   distinct request (transaction id, DUID tail) with a correct UDP checksum and sends it
//!   with XDP_TX towards the server's end.
//! - `bench_sink`: on the generator's end, counts and drops what comes back (replies
//!   validated: UDP 547->546, Reply, this run's tag, checksum, options 23 and 24; with the
//!   relayed configuration UDP 547->547, a Relay-Reply whose Relay Message is that Reply), so the
//!   generator's kernel never spends time on them. Everything else goes up (neighbour
//!   discovery).
//! - `bench_macswap`: the physical limit of the set-up: swaps the MACs and sends every frame
//!   back with XDP_TX.
//! - `bench_drop`: counts and drops (the generator's own ceiling).
//! - `bench_pass`: XDP_PASS, so that a userspace server's veth end has a NAPI instance that
//!   can be threaded, like the XDP rows.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, PerCpuArray, ProgramArray},
    helpers::generated::{
        bpf_csum_diff, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use dhcpv6_bench_common::maps::{
    FrameCount, GenConfig, GenState, SinkConfig, SinkCounters, SINK_BUF, SINK_MASK, SINK_MAX_UDP, TEMPLATE_CAP,
};
use dhcpv6_common::{
    csum::{checksum_add, fold},
    wire::{msg, opt, CLIENT_PORT, ETH_P_IPV6, IPPROTO_UDP, SERVER_PORT},
};
use dhcpv6_ebpf_common::{be16, l3, ptr_at, L3};

#[btf_map]
static BENCH_GEN_CFG: Array<GenConfig, 1> = Array::new();

#[btf_map]
static BENCH_GEN_STATE: PerCpuArray<GenState, 1> = PerCpuArray::new();

#[btf_map]
static BENCH_SINK_CFG: Array<SinkConfig, 1> = Array::new();

#[btf_map]
static BENCH_SINK: PerCpuArray<SinkCounters, 1> = PerCpuArray::new();

#[btf_map]
static BENCH_SINK_SCRATCH: PerCpuArray<[u8; SINK_BUF], 1> = PerCpuArray::new();

#[btf_map]
static BENCH_DROP: PerCpuArray<FrameCount, 1> = PerCpuArray::new();

/// Slot 0: the program `bench_restore` hands each restored frame to.
#[btf_map]
static BENCH_TAIL: ProgramArray<1> = ProgramArray::new();

// ---------------------------------------------------------------------------------------
// Generator

/// How long one repetition may wait for its frame's time (iterations of bpf_ktime_get_ns,
/// about 20 ns each): a repetition that is not due is dropped, and a drop returns its page
/// to the page pool under a spin lock that the other CPU takes too (it returns the pages of
/// the answers): tens of millions of drops a second made that lock, a paravirtual one here,
/// stall the server's CPU for milliseconds. Waiting inside the program keeps drops rare.
const SPIN: u32 = 4096;

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let (Some(cfg), Some(st)) = (BENCH_GEN_CFG.get_ptr(0), BENCH_GEN_STATE.get_ptr_mut(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: map values live for the program's run; the state slot is this CPU's.
    let (cfg, st) = unsafe { (&*cfg, &mut *st) };
    let Some(now) = due(cfg, st) else {
        st.idle += 1;
        return xdp_action::XDP_DROP;
    };
    match generate(&ctx, cfg, st) {
        Some(()) => {
            st.sent += 1;
            if st.first_ns == 0 {
                st.first_ns = now;
            }
            st.last_ns = now;
            xdp_action::XDP_TX
        }
        None => {
            st.bad_template += 1;
            xdp_action::XDP_DROP
        }
    }
}

#[inline(always)]
fn ktime() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// When this repetition may send (its time, ns), or None: outside the window, or ahead of
/// the pace for longer than it may wait. The pace is a token bucket of `burst` frames;
/// frames go out in groups of `group`, back to back, like a NIC's interrupt moderation
/// hands them over: evenly spaced single frames would each wake the receiver's NAPI thread,
/// a cost (an IPI and a context switch, a VM exit here) that no coalescing NIC imposes.
#[inline(always)]
fn due(cfg: &GenConfig, st: &mut GenState) -> Option<u64> {
    if st.epoch != cfg.epoch {
        st.epoch = cfg.epoch;
        st.next_ps = cfg.t_start_ns * 1000;
        st.first_ns = 0;
        st.last_ns = 0;
        st.left = 0;
    }
    let mut now = ktime();
    if now >= cfg.t_end_ns {
        return None;
    }
    if st.left > 0 && now >= cfg.t_start_ns {
        st.left -= 1;
        return Some(now);
    }
    let start_ps = cfg.t_start_ns * 1000;
    let target = if st.next_ps > start_ps { st.next_ps } else { start_ps };
    if now * 1000 < target {
        for _ in 0..SPIN {
            now = ktime();
            if now * 1000 >= target {
                break;
            }
        }
        if now * 1000 < target || now >= cfg.t_end_ns {
            return None;
        }
    }
    let interval = cfg.interval_ps;
    if interval == 0 {
        return Some(now);
    }
    let group = u64::from(if cfg.group == 0 { 1 } else { cfg.group });
    // After a stall, catch up at most `burst` frames rather than all that were missed.
    let now_ps = now * 1000;
    let floor = now_ps.saturating_sub(u64::from(cfg.burst) * interval);
    let next = if st.next_ps < floor { floor } else { st.next_ps };
    st.next_ps = next + group * interval;
    st.left = group - 1;
    Some(now)
}

#[inline(always)]
fn generate(ctx: &XdpContext, cfg: &GenConfig, st: &mut GenState) -> Option<()> {
    let len = cfg.len as usize;
    if len < 64 || len > TEMPLATE_CAP || ctx.data_end() - ctx.data() < len {
        return None;
    }
    // The frame may be a page the server already turned into a reply (live-frames mode
    // recycles pages and only resets their bounds): start from the template every time.
    let src = cfg.bytes.as_ptr() as *mut core::ffi::c_void;
    // SAFETY: the helper checks the frame range; 64 <= len <= TEMPLATE_CAP bytes of the map value.
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, src, len as u32) } != 0 {
        return None;
    }
    let seq = st.seq;
    st.seq = seq + 1;
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let tail = (seq as u32 & 0x0fff_ffff) | (cpu << 28);
    let xid = seq as u16;

    let x = ptr_at::<[u8; 2]>(ctx, cfg.xid_off as usize & 0xff)?;
    let t = ptr_at::<[u8; 4]>(ctx, cfg.tail_off as usize & 0xff)?;
    let c = ptr_at::<[u8; 2]>(ctx, cfg.csum_off as usize & 0xff)?;
    // SAFETY: bounds checked by ptr_at. The template has zeros where the variable bytes go
    // and a checksum that is right for those zeros, so adding the new words gives the new one.
    unsafe {
        *x = xid.to_be_bytes();
        *t = tail.to_be_bytes();
        let old = u16::from_be_bytes(*c);
        *c = checksum_add(old, u32::from(xid) + (tail >> 16) + (tail & 0xffff)).to_be_bytes();
    }
    Some(())
}

/// For the test_run cost: live-frames mode recycles pages with whatever the last program
/// left in them (a Reply, after the server's program), so each repetition first gets the
/// template back, then goes to the program under test (tail call, slot 0 of BENCH_TAIL).
/// The same wrapper is measured around every program, and around a plain drop.
#[xdp]
pub fn bench_restore(ctx: XdpContext) -> u32 {
    let Some(cfg) = BENCH_GEN_CFG.get_ptr(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a map value, valid for the run.
    let cfg = unsafe { &*cfg };
    let len = cfg.len as usize;
    if len < 64 || len > TEMPLATE_CAP || ctx.data_end() - ctx.data() < len {
        return xdp_action::XDP_ABORTED;
    }
    let src = cfg.bytes.as_ptr() as *mut core::ffi::c_void;
    // SAFETY: the helper checks the frame range; 64 <= len <= TEMPLATE_CAP bytes of the map value.
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, src, len as u32) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: a tail call; on failure control comes back here.
    unsafe { BENCH_TAIL.tail_call(&ctx, 0) };
    xdp_action::XDP_ABORTED
}

// ---------------------------------------------------------------------------------------
// Sink

enum Seen {
    /// Not a DHCPv6 frame between the two ports: up to the kernel.
    Other,
    Valid,
    Stale,
    EchoValid,
    EchoStale,
    BadChecksum,
    BadType,
    BadOptions,
    NoDnsDomain,
    TooLong,
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let Some(c) = BENCH_SINK.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's slot.
    let c = unsafe { &mut *c };
    c.frames += 1;
    let field = match sink(&ctx) {
        Seen::Other => {
            c.passed += 1;
            return xdp_action::XDP_PASS;
        }
        Seen::Valid => &mut c.valid,
        Seen::Stale => &mut c.stale,
        Seen::EchoValid => &mut c.echo_valid,
        Seen::EchoStale => &mut c.echo_stale,
        Seen::BadChecksum => &mut c.bad_checksum,
        Seen::BadType => &mut c.bad_type,
        Seen::BadOptions => &mut c.bad_options,
        Seen::NoDnsDomain => &mut c.no_dns_domain,
        Seen::TooLong => &mut c.too_long,
    };
    *field += 1;
    xdp_action::XDP_DROP
}

#[inline(always)]
fn sink(ctx: &XdpContext) -> Seen {
    // Read first: loaded between the header reads, LLVM made code the verifier refused (a
    // register read on a path that never set it).
    let (tag, relayed) = match BENCH_SINK_CFG.get_ptr(0) {
        // SAFETY: a map value, valid for the run.
        Some(cfg) => unsafe {
            (core::ptr::read_volatile(&(*cfg).tag) as u8, core::ptr::read_volatile(&(*cfg).relayed) != 0)
        },
        None => (0, false),
    };
    let Ok(L3 { ethertype: ETH_P_IPV6, off: l3 }) = l3(ctx) else { return Seen::Other };
    let Some(ip) = ptr_at::<[u8; 40]>(ctx, l3) else { return Seen::Other };
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    if ip[6] != IPPROTO_UDP {
        return Seen::Other;
    }
    let l4 = l3 + 40;
    let (Some(sport), Some(dport), Some(udp_len)) = (be16(ctx, l4), be16(ctx, l4 + 2), be16(ctx, l4 + 4)) else {
        return Seen::Other;
    };
    // A lightweight relay's traffic runs 547 -> 547 both ways: the type tells them apart.
    let ports_ok = if relayed {
        sport == SERVER_PORT && dport == SERVER_PORT
    } else {
        (sport == SERVER_PORT && dport == CLIENT_PORT) || (sport == CLIENT_PORT && dport == SERVER_PORT)
    };
    if !ports_ok {
        return Seen::Other;
    }
    let echo = core::hint::black_box(sport == CLIENT_PORT);
    let udp_len = udp_len as usize;
    if udp_len > SINK_MAX_UDP {
        return Seen::TooLong;
    }
    if udp_len < 12 {
        return Seen::BadOptions;
    }
    let Some(buf) = BENCH_SINK_SCRATCH.get_ptr_mut(0) else { return Seen::Other };
    // SAFETY: this CPU's scratch, used only within this run.
    let buf = unsafe { &mut *buf };
    // SAFETY: the helper checks the frame range; 12 <= udp_len <= 1024 < SINK_BUF.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, l4 as u32, buf.as_mut_ptr().cast(), udp_len as u32) } != 0 {
        return Seen::BadOptions;
    }

    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    let Some(body) = sum_buf(buf, udp_len) else { return Seen::BadOptions };
    let acc = sum16(&src) + sum16(&dst) + udp_len as u32 + u32::from(IPPROTO_UDP) + body;
    if fold(acc) != 0xffff {
        return Seen::BadChecksum;
    }

    // The client's message: the datagram's, or the one the relay message carries.
    let (mut m, mut end, mut echo) = (8usize, udp_len, echo);
    if relayed {
        match relay_message(buf, udp_len) {
            Some((at, to)) => {
                m = at;
                end = to;
            }
            None => return Seen::BadOptions,
        }
        echo = buf[8] == msg::RELAY_FORW;
    }
    let m = m & SINK_MASK;
    let ours = buf[m + 1] == tag;
    if echo {
        if buf[m] != msg::INFORMATION_REQUEST {
            return Seen::BadType;
        }
        return if ours { Seen::EchoValid } else { Seen::EchoStale };
    }
    if buf[m] != msg::REPLY || (relayed && buf[8] != msg::RELAY_REPL) {
        return Seen::BadType;
    }
    if !ours {
        return Seen::Stale;
    }
    // Options 23 (DNS servers) and 24 (domain search list) present.
    let udp_len = end;
    let mut off = m + 4;
    let mut found = 0u32;
    for _ in 0..32 {
        if off >= udp_len {
            break;
        }
        if off + 4 > udp_len {
            return Seen::BadOptions;
        }
        let i = off & SINK_MASK;
        let code = u16::from_be_bytes([buf[i], buf[i + 1]]);
        let len = u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize;
        if code == opt::DNS_SERVERS {
            found |= 1;
        } else if code == opt::DOMAIN_LIST {
            found |= 2;
        }
        off += 4 + len;
    }
    if off > udp_len && found != 3 {
        return Seen::BadOptions;
    }
    if found != 3 {
        return Seen::NoDnsDomain;
    }
    Seen::Valid
}

/// Where a relay message's (from offset 8 of the datagram) Relay Message option carries its
/// message: (start, end), within the first 8 options.
#[inline(always)]
fn relay_message(buf: &[u8; SINK_BUF], udp_len: usize) -> Option<(usize, usize)> {
    let mut off = 8 + 34;
    for _ in 0..8 {
        if off + 4 > udp_len {
            return None;
        }
        let i = off & SINK_MASK;
        let code = u16::from_be_bytes([buf[i], buf[i + 1]]);
        let len = u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize;
        if off + 4 + len > udp_len {
            return None;
        }
        if code == opt::RELAY_MSG && len >= 4 {
            return Some((off + 4, off + 4 + len));
        }
        off += 4 + len;
    }
    None
}

#[inline(always)]
fn sum16(b: &[u8; 16]) -> u32 {
    let mut acc = 0u32;
    let mut i = 0;
    while i < 16 {
        acc += u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    acc
}

/// Big-endian one's-complement sum of the first `len` (<= 1024) bytes of the scratch:
/// whole words through `bpf_csum_diff` (at most 512 bytes a call), the last 0-3 bytes by hand.
#[inline(always)]
fn sum_buf(buf: &mut [u8; SINK_BUF], len: usize) -> Option<u32> {
    let len4 = len & 0x7fc;
    let first = if len4 > 512 { 512 } else { len4 };
    let mut acc = csum_words(buf, 0, first)?;
    let second = len4 - first;
    if second > 0 {
        acc += csum_words(buf, 512, second)?;
    }
    let t = len4 & SINK_MASK;
    let rest = len & 3;
    if rest >= 1 {
        let b1 = if rest >= 2 { buf[t + 1] } else { 0 };
        acc += u32::from(u16::from_be_bytes([buf[t], b1]));
    }
    if rest == 3 {
        acc += u32::from(buf[t + 2]) << 8;
    }
    Some(acc)
}

#[inline(always)]
fn csum_words(buf: &mut [u8; SINK_BUF], off: usize, n: usize) -> Option<u32> {
    let off = off & 512;
    let n = n & 0x3fc;
    if n == 0 {
        return Some(0);
    }
    if n > 512 {
        return None;
    }
    let to = buf[off..].as_mut_ptr().cast();
    // SAFETY: off <= 512 and n <= 512 stay inside the 2048-byte scratch (checked again by
    // the verifier).
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, to, n as u32, 0) };
    if r < 0 {
        return None;
    }
    // csum_diff adds native-endian (little-endian) words: folded and swapped it is the
    // big-endian sum.
    Some(u32::from((fold(r as u32) as u16).swap_bytes()))
}

// ---------------------------------------------------------------------------------------
// Peers of the set-up

/// The physical limit: every frame goes back where it came from, MACs swapped.
#[xdp]
pub fn bench_macswap(ctx: XdpContext) -> u32 {
    let Some(eth) = ptr_at::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        let e = &mut *eth;
        let mut i = 0;
        while i < 6 {
            let t = e[i];
            e[i] = e[6 + i];
            e[6 + i] = t;
            i += 1;
        }
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    if let Some(c) = BENCH_DROP.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe { (*c).frames += 1 };
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

dhcpv6_ebpf_common::xdp_object!();
