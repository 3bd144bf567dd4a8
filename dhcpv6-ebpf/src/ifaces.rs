//! The reply data a frame is answered from: one lookup for every path of the program.
//!
//! An untagged frame on an interface with a low ifindex finds it through two array
//! lookups, which the verifier inlines (a selector by ifindex, then the slot it names);
//! every other key (VLANs, relay links, a high ifindex, a full slot array) through the hash
//! `DHCPV6_IFACES`, a helper call, and a copy into this CPU's copy slot of the same array:
//! the verifier then sees every reply-data pointer as one map's (see `COPY_SLOT_CPUS`). Why
//! a slot is never seen half rewritten: `IfaceSlot`.

use aya_ebpf::{
    btf_maps::{Array, HashMap},
    helpers::bpf_get_smp_processor_id,
    macros::btf_map,
};
use dhcpv6_common::{
    IfaceKey, IfaceReply, IfaceSlot, COPY_SLOTS_BASE, COPY_SLOT_CPUS, MAX_IFACES, MAX_SLOT_IFINDEX, REPLY_SLOTS_ALL,
};

/// BPF_F_NO_PREALLOC: replaced entries are freed after an RCU grace period, so a program
/// still reading (copying) the old reply data never sees it reused mid-read.
const NO_PREALLOC: usize = 1;

#[btf_map]
static DHCPV6_IFACES: HashMap<IfaceKey, IfaceReply, { MAX_IFACES as usize }, NO_PREALLOC> = HashMap::new();

#[btf_map]
static DHCPV6_IFACE_SLOT: Array<IfaceSlot, { MAX_SLOT_IFINDEX as usize }> = Array::new();

#[btf_map]
static DHCPV6_REPLY_SLOTS: Array<IfaceReply, { REPLY_SLOTS_ALL as usize }> = Array::new();

/// Which of a CPU's two copy slots a hash-resident entry goes into.
#[derive(Clone, Copy)]
pub enum CopySlot {
    /// The frame's interface (or VLAN): `reply_data`.
    Iface = 0,
    /// A relay link's, looked up while the interface's is still in use.
    Link = 1,
}

/// The reply data for frames with `key` (valid until the program returns), as every path of
/// the program finds it.
#[inline(always)]
pub fn reply_data(key: IfaceKey) -> Option<&'static IfaceReply> {
    lookup(key, CopySlot::Iface)
}

/// `reply_data` for a relay link's key, which must not overwrite the interface's copy.
#[inline(always)]
pub fn link_reply_data(key: IfaceKey) -> Option<&'static IfaceReply> {
    lookup(key, CopySlot::Link)
}

#[inline(always)]
fn lookup(key: IfaceKey, copy: CopySlot) -> Option<&'static IfaceReply> {
    if let Some(index) = IfaceSlot::index(&key) {
        if let Some(sel) = DHCPV6_IFACE_SLOT.get_ptr(index) {
            // Read once: the slot named now is the one read throughout.
            // SAFETY: a map value, valid for this run.
            let slot = unsafe { core::ptr::read_volatile(&(*sel).slot) };
            if slot != 0 {
                // SAFETY: the daemon never writes a slot a running program may have been
                // pointed to (see `IfaceSlot`), and map values outlive the program's run.
                return DHCPV6_REPLY_SLOTS.get_ptr(slot).map(|p| unsafe { &*p });
            }
        }
    }
    let src = DHCPV6_IFACES.get_ptr(key)?;
    // SAFETY: a plain helper; the program does not migrate while it runs.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if cpu >= COPY_SLOT_CPUS {
        return None;
    }
    let dst = DHCPV6_REPLY_SLOTS.get_ptr_mut(COPY_SLOTS_BASE + 2 * cpu + copy as u32)?;
    // Word by word, volatile so that it stays a loop (a 2.4 KB memcpy would be unrolled).
    // SAFETY: both are map values of one IfaceReply (a multiple of 8 bytes); the hash entry
    // is replaced whole and freed only after a grace period, so it does not change while
    // copied; the copy slot is this CPU's alone while the program runs (XDP runs with
    // bottom halves off; the same holds for the per-CPU scratch).
    unsafe {
        let (s, d) = (src as *const u64, dst as *mut u64);
        for i in 0..core::mem::size_of::<IfaceReply>() / 8 {
            core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i)));
        }
        Some(&*dst)
    }
}
