//! Flood isolation: a token bucket per (ingress ifindex, source MAC), and per (ingress ifindex,
//! source address) for configured relay sources, for every UDP/547 frame the program would
//! pass up to userspace (`Verdict::metered`). Answers given in XDP and drops are not metered:
//! they cost userspace nothing.
//!
//! A bucket is one 64-bit theoretical arrival time (GCRA, see `FloodLimit::admit`), moved by
//! compare-and-swap: CPUs racing on one bucket (one MAC's frames spread over queues) each see
//! the other's update and never admit more than the bucket holds. Two exceptions, both bounded
//! and documented in docs/fast-path.md: CPUs that create the same new bucket at once each
//! admit their frame, and a bucket evicted from the LRU comes back full.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use core::intrinsics::{atomic_cxchg, AtomicOrdering};
use dhcpv6_common::{FloodBucket, FloodKey, RelaySource, Verdict, FLOOD_KEY_MAC, FLOOD_KEY_RELAY};

use crate::{frame::ptr_at, DHCPV6_FLOOD, DHCPV6_FLOOD_CFG, DHCPV6_RELAYS};

/// BPF_NOEXIST: create the bucket only if no other CPU just did.
const NOEXIST: u64 = 1;

/// Compare-and-swap attempts before a frame counts as over the limit: each failure means
/// another CPU took a token from the same bucket in between, which only a flood does.
const CAS_TRIES: usize = 4;

/// `v` if the sender's bucket has a token for it (or metering is off), else the flood drop.
/// `l3`: the IPv6 header's offset (a relay source is recognised by its address).
#[inline(always)]
pub fn admit(ctx: &XdpContext, l3: usize, v: Verdict) -> Verdict {
    if !v.metered() {
        return v;
    }
    let Some(cfg) = DHCPV6_FLOOD_CFG.get(0) else { return v };
    let ifindex = ctx.ingress_ifindex() as u32;
    let relay = if cfg.relays != 0 { relay_source(ctx, l3) } else { None };
    let (key, limit, over) = match relay {
        Some(addr) => (FloodKey { ifindex, kind: FLOOD_KEY_RELAY, addr }, &cfg.relay, Verdict::DropFloodRelay),
        None => {
            let Some(mac) = ptr_at::<[u8; 6]>(ctx, 6) else { return v };
            // SAFETY: bounds checked by ptr_at.
            let m = unsafe { *mac };
            let addr = [m[0], m[1], m[2], m[3], m[4], m[5], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            (FloodKey { ifindex, kind: FLOOD_KEY_MAC, addr }, &cfg.client, Verdict::DropFlood)
        }
    };
    if limit.is_off() {
        return v;
    }
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(bucket) = DHCPV6_FLOOD.get_ptr_mut(key) else {
        return match limit.admit(0, now) {
            Some(tat) => {
                let _ = DHCPV6_FLOOD.insert(key, FloodBucket { tat_ns: tat }, NOEXIST);
                v
            }
            None => over,
        };
    };
    // SAFETY: a value of the LRU map, valid for this run; only touched atomically here.
    let tat = unsafe { &raw mut (*bucket).tat_ns };
    for _ in 0..CAS_TRIES {
        // SAFETY: as above; a torn read is impossible for an aligned 64-bit load.
        let old = unsafe { core::ptr::read_volatile(tat) };
        let Some(new) = limit.admit(old, now) else { return over };
        // SAFETY: as above; BPF_CMPXCHG on a map value.
        let (_, swapped) =
            unsafe { atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(tat, old, new) };
        if swapped {
            return v;
        }
    }
    over
}

/// The frame's IPv6 source when it is a configured relay source.
#[inline(always)]
fn relay_source(ctx: &XdpContext, l3: usize) -> Option<[u8; 16]> {
    let src = ptr_at::<[u8; 16]>(ctx, l3 + 8)?;
    // SAFETY: bounds checked by ptr_at.
    let addr = unsafe { *src };
    DHCPV6_RELAYS.get_ptr(RelaySource { addr }).map(|_| addr)
}
