//! Layouts of the BPF maps pinned under `/sys/fs/bpf/dhcpv6/`.
//!
//! The daemon writes [`IfaceReply`] (keyed by [`IfaceKey`]) and the flood limits
//! ([`FloodConfig`], [`RelaySource`]) and reads [`Counters`](crate::Counters); the XDP program
//! reads the first and only increments the last. All fields are plain integers and byte
//! arrays so that the layouts are identical on both sides and `bpftool map dump` can print
//! them by name from BTF.

use bytemuck::{Pod, Zeroable};

/// Directory under the bpffs mount where the daemon pins program, link and maps.
pub const PIN_DIR: &str = "dhcpv6";
pub const MAP_IFACE_REPLY: &str = "DHCPV6_IFACES";
pub const MAP_IFACE_SLOT: &str = "DHCPV6_IFACE_SLOT";
pub const MAP_REPLY_SLOTS: &str = "DHCPV6_REPLY_SLOTS";
pub const MAP_COUNTERS: &str = "DHCPV6_COUNTERS";
pub const MAP_SCRATCH: &str = "DHCPV6_SCRATCH";
pub const MAP_CLIENT_MACS: &str = "DHCPV6_CLIENT_MACS";
pub const MAP_FLOOD_CONFIG: &str = "DHCPV6_FLOOD_CFG";
pub const MAP_FLOOD_BUCKETS: &str = "DHCPV6_FLOOD";
pub const MAP_FLOOD_RELAYS: &str = "DHCPV6_RELAYS";
pub const MAP_RELAY_LINKS: &str = "DHCPV6_RELAY_LINKS";
/// What a Renew may be answered with in XDP: [`RenewKey`] -> [`RenewEntry`] (see
/// docs/fast-path.md, "Renew").
pub const MAP_RENEWS: &str = "DHCPV6_RENEWS";
/// Programs the XDP program tail-calls (a BPF_MAP_TYPE_PROG_ARRAY): the Renew path is a
/// program of its own, [`RENEW_PROGRAM_NAME`] at [`PROG_RENEW`], so that the verifier checks
/// it apart from the Information-Request paths (together they pass its 1,000,000-instruction
/// budget).
pub const MAP_PROGS: &str = "DHCPV6_PROGS";
pub const PROG_RENEW: u32 = 0;
pub const RENEW_PROGRAM_NAME: &str = "dhcpv6_renew";
/// Entries of `DHCPV6_RENEWS` (one per bound IA the daemon pre-extended). The map is not
/// preallocated: memory is taken per entry, so the cap costs nothing until used.
pub const MAX_RENEWS: u32 = 262_144;
/// Longest DUID a [`RenewKey`] holds: DUID-LLT, -LL, -UUID and the usual DUID-EN fit; a
/// Renew from a longer one goes up (`pass_renew_duid`).
pub const RENEW_DUID_CAP: usize = 32;
/// Room for one IA option in a [`RenewEntry`]: an IA_NA with one IAADDR is 44 bytes, an IA_PD
/// with one IAPREFIX 45.
pub const RENEW_IA_CAP: usize = 48;
/// Entries of `DHCPV6_RELAY_LINKS`: (interface, Interface-ID) pairs that name a `[[link]]`
/// with options of its own.
pub const MAX_RELAY_LINKS: u32 = 4096;
/// `IfaceKey::outer_vlan` of a link's reply data in `DHCPV6_IFACES` starts here: VLAN IDs
/// are 12 bits, so no frame's key reaches these (the daemon numbers links from it).
pub const RELAY_LINK_KEY_BASE: u16 = 0x1000;
/// Token buckets kept at once (an LRU: the least recently seen sender's goes first, and
/// comes back full).
pub const MAX_FLOOD_BUCKETS: u32 = 65536;
/// Relay sources that get the relay buckets.
pub const MAX_FLOOD_RELAYS: u32 = 1024;
/// Client MACs remembered at once (an LRU: the oldest go first).
pub const MAX_CLIENT_MACS: u32 = 65536;
pub const PROGRAM_NAME: &str = "dhcpv6_xdp";

/// Version of the meaning of the pinned maps' keys and values. A starting daemon adopts the
/// maps a previous one pinned (keeping counters and reply data) only when this and every
/// `DHCPV6_*` map's type, key size, value size, capacity and flags are the same; otherwise it
/// creates fresh maps and swaps the program over to them. Sizes are checked by themselves:
/// bump this when a field changes meaning, order or type without changing a size.
pub const MAPS_LAYOUT_VERSION: u32 = 4;

/// Interfaces the fast path can serve at once.
pub const MAX_IFACES: u32 = 4096;

/// Entries of `DHCPV6_IFACE_SLOT`: an untagged frame on an interface with a lower ifindex
/// finds its reply data through that array (inlined by the verifier) rather than the hash
/// `DHCPV6_IFACES` (a helper call, through the return thunk on mitigated CPUs).
pub const MAX_SLOT_IFINDEX: u32 = 4096;

/// Slots of `DHCPV6_REPLY_SLOTS` the daemon writes. Slot 0 is never used ([`IfaceSlot::slot`]
/// 0 means "in the hash"), so `REPLY_SLOTS - 1` interfaces' reply data fit at once, fewer
/// while a rewrite waits for its grace period; the rest stay in the hash. At most 256: a slot
/// number is one byte, so that a reader can never see half of a selector's rewrite (see
/// [`IfaceSlot`]).
pub const REPLY_SLOTS: u32 = 128;

/// CPUs that get copy slots in `DHCPV6_REPLY_SLOTS`, past [`REPLY_SLOTS`]: the program copies
/// reply data it finds in the hash into its CPU's (one for the interface, one for a relay
/// link), so that every reply-data pointer the verifier follows points into one map (two maps
/// are two verifier states for the rest of the program, past its instruction limit). On a
/// CPU past these, hash-resident reply data is not used: such frames go up to userspace.
pub const COPY_SLOT_CPUS: u32 = 64;

/// The first copy slot: CPU `c`'s are `COPY_SLOTS_BASE + 2 * c` (interface) and `+ 1` (link).
pub const COPY_SLOTS_BASE: u32 = REPLY_SLOTS;

/// Entries of `DHCPV6_REPLY_SLOTS`: the daemon's slots, then the program's copy slots.
pub const REPLY_SLOTS_ALL: u32 = REPLY_SLOTS + 2 * COPY_SLOT_CPUS;

/// Limits of the fast path. A request outside them is passed to userspace, which answers it
/// (the userspace twin applies the same limits when it models the fast path).
pub mod limits {
    /// Options walked in one Information-Request.
    pub const MAX_OPTIONS: usize = 32;
    /// Option codes read from one Option Request option.
    pub const MAX_ORO_CODES: usize = 64;
    /// Largest UDP datagram (header included) whose checksum the program verifies.
    pub const MAX_REQUEST_UDP_LEN: usize = 512;
    /// Prebuilt option segments per interface (Server Identifier included).
    pub const MAX_SEGMENTS: usize = 16;
    /// Bytes of prebuilt options per interface.
    pub const BLOCK_CAP: usize = 1024;
    /// Size of the block buffer: twice the cap, so that an offset and a length each masked
    /// with `BLOCK_MASK` always stay inside it (a bound the verifier can see).
    pub const BLOCK_BUF: usize = 2048;
    pub const BLOCK_MASK: usize = BLOCK_CAP - 1;
    /// Requestable-only segments must have codes below this (the program keeps the
    /// Option Request as a 128-bit mask).
    pub const ORO_MASK_CODES: u16 = 128;
    /// Options walked in a lightweight relay's Relay-Forward level (Interface-ID, Remote-ID,
    /// Subscriber-ID, Client Link-Layer Address and Relay Message make five).
    pub const MAX_RELAY_OPTIONS: usize = 8;
    /// Longest Interface-ID the program echoes and looks links up by.
    pub const MAX_INTERFACE_ID: usize = 64;
    /// IA_NA and IA_PD options answered in one Renew (a CPE sends one of each).
    pub const MAX_RENEW_IAS: usize = 2;
}

/// [`IfaceReply::flags`]: answer Information-Requests in XDP on this interface. Without it the
/// program only classifies and counts (`--no-fast-path`).
pub const IFACE_FAST_PATH: u16 = 1;

/// [`IfaceReply::flags`]: remember the source MAC of client messages in `DHCPV6_CLIENT_MACS`,
/// for the relay agent's Client Link-Layer Address option (RFC 6939): userspace gets
/// datagrams from a UDP socket, which does not say who sent the frame. Only frames that pass
/// validation are learned from (see docs/fast-path.md, "Client MACs").
pub const IFACE_LEARN_MACS: u16 = 2;

/// [`IfaceReply::flags`]: the interface ignores some User Classes (`ignore_user_classes`):
/// an Information-Request carrying a User Class option goes up to userspace, which drops
/// the ones that match and answers the rest (`pass_user_class`).
pub const IFACE_USER_CLASS_FILTER: u16 = 4;

/// [`IfaceReply::flags`]: answer lightweight relays' relayed Information-Requests in XDP on
/// this interface. The daemon sets it only when it trusts every relay on the link
/// (`fe80::/10` among the interface's trusted relays) and the program can tell every
/// `[[link]]` with options of its own from the Interface-ID (`DHCPV6_RELAY_LINKS`).
pub const IFACE_RELAYED_IR: u16 = 8;

/// [`IfaceReply::flags`]: some Interface-IDs name a `[[link]]` with options of its own:
/// look them up in `DHCPV6_RELAY_LINKS` (without it the program skips the lookup).
pub const IFACE_RELAY_LINKS: u16 = 16;

/// [`IfaceReply::flags`]: answer Renews in XDP on this interface from `DHCPV6_RENEWS`. The
/// daemon sets it only when the engine answers a client on this interface with exactly the
/// reply data's options (no `[[link]]` options of its own, every stateful option in the
/// block: `reply_data::allow_renew`). Without it a Renew goes up as before (`pass_other_msg`);
/// with it but without `IFACE_FAST_PATH` everything goes up (`pass_fast_path_off`).
pub const IFACE_RENEW: u16 = 32;

/// Key of `DHCPV6_IFACES`: the ingress interface and the frame's VLAN IDs (outermost first,
/// 0 where there is no tag; the 12-bit VID only: priority and DEI bits, and the TPID, are not
/// part of it). An untagged frame, or one tagged with VID 0 (priority only, which the kernel
/// also delivers to the parent), finds `(ifindex, 0, 0)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub outer_vlan: u16,
    pub inner_vlan: u16,
}

impl IfaceKey {
    pub const fn untagged(ifindex: u32) -> Self {
        IfaceKey { ifindex, outer_vlan: 0, inner_vlan: 0 }
    }
}

/// Value of `DHCPV6_IFACE_SLOT` (indexed by ifindex): where the reply data of the
/// interface's untagged frames is. 0: not in the slots, look in `DHCPV6_IFACES`; else the
/// index in `DHCPV6_REPLY_SLOTS`.
///
/// Array values are rewritten in place (the kernel's `bpf_map_update_elem` is a `memcpy`
/// into the live value), so a program can read any mix of an old and a new value. The
/// daemon therefore never rewrites reply data a program may be reading:
/// - new reply data goes into a slot no selector points to and none has pointed to since
///   the last RCU grace period (every program run that could have read the old selector has
///   ended: XDP runs inside an RCU read-side section, and the daemon waits with
///   `dataplane::grace`);
/// - then the selector is rewritten. Slot numbers are below 256, so only its lowest byte
///   ever changes: a reader sees the old or the new number, never a third;
/// - the slot the selector pointed to before is reused only after a later grace period.
///
/// A program reads the selector once and then only the slot it names, which holds one
/// complete version for as long as the program runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IfaceSlot {
    pub slot: u32,
}

impl IfaceSlot {
    /// The key's index in `DHCPV6_IFACE_SLOT` when its reply data may live in a slot:
    /// untagged (the relay links' and VLANs' keys stay in the hash) and a low ifindex.
    pub const fn index(key: &IfaceKey) -> Option<u32> {
        if key.outer_vlan == 0 && key.inner_vlan == 0 && key.ifindex < MAX_SLOT_IFINDEX {
            Some(key.ifindex)
        } else {
            None
        }
    }
}

/// Key of `DHCPV6_RELAY_LINKS`: an Interface-ID as a lightweight relay on `iface` sends it
/// (zero-padded past `iid_len`). The value is the `DHCPV6_IFACES` key of that link's reply
/// data (`outer_vlan` from [`RELAY_LINK_KEY_BASE`]); an entry whose reply data is missing
/// sends the request up (`pass_relay_link`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct RelayLinkKey {
    pub iface: IfaceKey,
    pub iid_len: u32,
    pub iid: [u8; limits::MAX_INTERFACE_ID],
    pub _pad: u32,
}

impl RelayLinkKey {
    /// `None` when the Interface-ID is longer than the program looks up.
    pub fn new(iface: IfaceKey, interface_id: &[u8]) -> Option<Self> {
        if interface_id.len() > limits::MAX_INTERFACE_ID {
            return None;
        }
        let mut k: Self = Zeroable::zeroed();
        k.iface = iface;
        k.iid_len = interface_id.len() as u32;
        k.iid[..interface_id.len()].copy_from_slice(interface_id);
        Some(k)
    }
}

/// The VLAN ID of a tag's TCI.
pub const VLAN_VID_MASK: u16 = 0x0fff;

/// One token bucket's parameters, in the form the program uses (no division at run time):
/// a frame is admitted when the bucket's theoretical arrival time, advanced by `interval_ns`,
/// stays within `burst_ns` of now (GCRA, the "virtual scheduling" token bucket). Zero
/// `interval_ns`: no limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FloodLimit {
    /// Nanoseconds per token: 1e9 / rate.
    pub interval_ns: u64,
    /// The burst, as time: burst * interval_ns.
    pub burst_ns: u64,
}

impl FloodLimit {
    /// `rate` frames per second sustained, `burst` at once; either 0 turns the limit off.
    pub const fn new(rate_per_sec: u32, burst: u32) -> Self {
        if rate_per_sec == 0 || burst == 0 {
            return FloodLimit { interval_ns: 0, burst_ns: 0 };
        }
        let interval_ns = 1_000_000_000 / rate_per_sec as u64;
        // At most 1e9 (rate 1) * 2^32: no overflow in u64.
        let interval_ns = if interval_ns == 0 { 1 } else { interval_ns };
        FloodLimit { interval_ns, burst_ns: interval_ns * burst as u64 }
    }

    pub const fn is_off(&self) -> bool {
        self.interval_ns == 0
    }

    /// The bucket's next theoretical arrival time if a frame arriving `now` (ns) is admitted,
    /// given the current one (`tat`, 0 for a new bucket); `None`: over the limit, and the
    /// bucket stays as it is. Shared by the program and its userspace model.
    #[inline(always)]
    pub const fn admit(&self, tat: u64, now: u64) -> Option<u64> {
        let base = if tat > now { tat } else { now };
        let next = base + self.interval_ns;
        if next - now > self.burst_ns {
            None
        } else {
            Some(next)
        }
    }
}

/// Value of the one-slot `DHCPV6_FLOOD_CFG` array: the token buckets that meter frames the
/// program passes up to userspace (never the ones it answers or drops itself).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FloodConfig {
    /// Per (ingress ifindex, source MAC).
    pub client: FloodLimit,
    /// Per (ingress ifindex, source address) of a source in `DHCPV6_RELAYS`.
    pub relay: FloodLimit,
    /// Entries in `DHCPV6_RELAYS`: the program looks a source up only when there are some.
    pub relays: u32,
    pub _pad: u32,
}

/// [`FloodKey::kind`]: the bucket of a source MAC (in `addr[..6]`).
pub const FLOOD_KEY_MAC: u32 = 0;
/// [`FloodKey::kind`]: the bucket of a configured relay source (its IPv6 address in `addr`).
pub const FLOOD_KEY_RELAY: u32 = 1;

/// Key of `DHCPV6_FLOOD` (an LRU hash shared by all CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FloodKey {
    pub ifindex: u32,
    pub kind: u32,
    pub addr: [u8; 16],
}

/// Value of `DHCPV6_FLOOD`: the bucket's theoretical arrival time (`bpf_ktime_get_ns` clock),
/// updated with compare-and-swap so that CPUs racing on one bucket never admit more than it holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FloodBucket {
    pub tat_ns: u64,
}

/// Key of `DHCPV6_RELAYS`: a relay agent's source address (values are unused, 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct RelaySource {
    pub addr: [u8; 16],
}

/// Key of `DHCPV6_CLIENT_MACS`: where a client's datagram came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MacKey {
    pub ifindex: u32,
    pub addr: [u8; 16],
}

/// Value of `DHCPV6_CLIENT_MACS` (padded to 8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ClientMac {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// [`Segment::flags`]: include this option only when the client's Option Request names it.
pub const SEG_REQUESTED_ONLY: u16 = 1;

/// One encoded option inside [`IfaceReply::block`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Segment {
    pub code: u16,
    pub flags: u16,
    /// Offset into the block.
    pub off: u16,
    /// Length of the whole option, header included.
    pub len: u16,
    /// One's-complement sum of the option's bytes as 16-bit big-endian words from an even
    /// offset (a trailing odd byte is the high half of a word), not folded beyond 16 bits.
    /// Precomputed so the program only adds it (swapped when the option lands at an odd offset).
    pub csum: u16,
    pub _pad: u16,
}

/// Per-interface reply data: in a slot of `DHCPV6_REPLY_SLOTS` (see [`IfaceSlot`]), or in
/// `DHCPV6_IFACES` by [`IfaceKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct IfaceReply {
    /// The interface's MAC: source of every reply.
    pub mac: [u8; 6],
    pub flags: u16,
    /// The interface's link-local address: source of every reply.
    pub link_local: [u8; 16],
    /// Our DUID, compared with a Server Identifier the client sent.
    pub duid: [u8; 136],
    pub duid_len: u16,
    pub nsegs: u16,
    /// Bumped on every rewrite, so an operator can see the daemon keeping the map in step.
    pub generation: u32,
    /// The reply to a client that asks for none of the requested-only options, precomputed:
    /// the segments sent to everyone lie back to back from the block's start over `base_len`
    /// bytes whose checksum contribution is `base_csum` (as [`Segment::csum`]). 0 when they
    /// do not (the program then selects segment by segment).
    pub base_len: u16,
    pub base_csum: u16,
    /// Segments (bit per segment; never the Server Identifier's, bit 0) that belong in a
    /// stateful Reply (`ConfiguredOption::in_stateful_reply`): a Renew's Reply selects from
    /// these, by the same Option Request rule.
    pub stateful_segs: u16,
    pub _pad: u16,
    /// Codes (below 128) of the requested-only segments, as the program's Option Request mask.
    pub requested_only: [u64; 2],
    pub segs: [Segment; limits::MAX_SEGMENTS],
    /// Encoded options: Server Identifier first, then the configured options in order.
    pub block: [u8; limits::BLOCK_BUF],
}

/// Byte offset of [`IfaceReply::generation`], which a rewrite changes even when nothing else does.
pub const GENERATION_OFFSET: usize = core::mem::offset_of!(IfaceReply, generation);

impl Default for IfaceReply {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

/// [`RenewKey::kind`] of an IA_NA's entry (the option code).
pub const RENEW_KIND_ADDRESS: u8 = 3;
/// [`RenewKey::kind`] of an IA_PD's entry (the option code).
pub const RENEW_KIND_PREFIX: u8 = 25;

/// Key of `DHCPV6_RENEWS`: one IA of one client on one interface (or VLAN), keyed by arrival
/// as `DHCPV6_IFACES` is. The DUID is zero-padded past `duid_len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct RenewKey {
    pub iface: IfaceKey,
    pub iaid: u32,
    /// [`RENEW_KIND_ADDRESS`] or [`RENEW_KIND_PREFIX`].
    pub kind: u8,
    pub duid_len: u8,
    pub _pad: [u8; 2],
    pub duid: [u8; RENEW_DUID_CAP],
}

impl RenewKey {
    /// `None` for a DUID the key cannot hold (longer than [`RENEW_DUID_CAP`], or shorter than
    /// a DUID can be) or a kind that is neither.
    pub fn new(iface: IfaceKey, duid: &[u8], iaid: u32, kind: u8) -> Option<Self> {
        if !(crate::wire::DUID_MIN_LEN..=RENEW_DUID_CAP).contains(&duid.len())
            || !matches!(kind, RENEW_KIND_ADDRESS | RENEW_KIND_PREFIX)
        {
            return None;
        }
        let mut k: Self = Zeroable::zeroed();
        k.iface = iface;
        k.iaid = iaid;
        k.kind = kind;
        k.duid_len = duid.len() as u8;
        k.duid[..duid.len()].copy_from_slice(duid);
        Some(k)
    }
}

/// Value of `DHCPV6_RENEWS`: what a Renew for the key's IA is answered with, until when.
///
/// The daemon writes whole entries only (`bpf_map_update_elem`, `bpf_map_delete_elem`). A
/// replaced element of a hash map may be reused by the kernel's allocator at once (kernels
/// since 6.1 free non-preallocated elements into a per-CPU cache, not after an RCU grace
/// period), so a program still reading it could see part of another value: `check` seals
/// key and value together, and the program answers only from a copy whose seal holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct RenewEntry {
    /// CLOCK_BOOTTIME (`bpf_ktime_get_boot_ns`): from then on the Renew goes up
    /// (`pass_renew_expired`).
    pub answer_until_ns: u64,
    /// [`RenewEntry::seal`] of the key and the other fields.
    pub check: u64,
    /// The address, or the prefix, the Renew must name.
    pub lease: [u8; 16],
    /// 128 for an address.
    pub prefix_len: u8,
    pub _pad: u8,
    /// Bytes of `ia` used.
    pub ia_len: u16,
    pub _pad2: u32,
    /// The whole IA_NA or IA_PD option of the Reply (header, IAID, T1, T2, the IAADDR or
    /// IAPREFIX with its lifetimes), as the engine encodes it; zero-padded.
    pub ia: [u8; RENEW_IA_CAP],
}

/// 64-bit words of a [`RenewKey`] and of a [`RenewEntry`].
pub const RENEW_KEY_WORDS: usize = core::mem::size_of::<RenewKey>() / 8;
pub const RENEW_ENTRY_WORDS: usize = core::mem::size_of::<RenewEntry>() / 8;
/// The word of a [`RenewEntry`] that holds `check` (left out of the seal).
pub const RENEW_CHECK_WORD: usize = core::mem::offset_of!(RenewEntry, check) / 8;

const _: () =
    assert!(core::mem::size_of::<RenewKey>().is_multiple_of(8) && core::mem::size_of::<RenewEntry>().is_multiple_of(8));

/// One step of the seal: a multiply-rotate mix of the next word (native order, as both the
/// daemon and the program read the same bytes on the same host).
#[inline(always)]
pub const fn renew_mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31)
}

/// Start of the seal.
pub const RENEW_SEAL_INIT: u64 = 0x6468_6370_7636_7277;

impl RenewEntry {
    /// The seal of `key` and `self` (its `check` word left out): what `check` must hold.
    pub fn seal_of(&self, key: &RenewKey) -> u64 {
        let k: &[u64; RENEW_KEY_WORDS] = bytemuck::cast_ref(key);
        let v: &[u64; RENEW_ENTRY_WORDS] = bytemuck::cast_ref(self);
        let mut h = RENEW_SEAL_INIT;
        for w in k {
            h = renew_mix(h, *w);
        }
        for (i, w) in v.iter().enumerate() {
            h = renew_mix(h, if i == RENEW_CHECK_WORD { 0 } else { *w });
        }
        h
    }

    /// Sets `check` for `key`; the daemon seals every entry before it writes it.
    pub fn seal(&mut self, key: &RenewKey) {
        self.check = self.seal_of(key);
    }

    pub fn is_sealed(&self, key: &RenewKey) -> bool {
        self.check == self.seal_of(key)
    }
}

/// Scratch space for the program (a one-slot per-CPU array), kept off the 512-byte stack.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Scratch {
    /// The request's UDP datagram, copied out of the frame once. The program walks it here
    /// rather than in the frame: indexes masked with `REQ_MASK` are bounds the verifier sees,
    /// where packet-pointer checks in loops get rewritten by the compiler into forms it
    /// rejects. The slack past `MAX_REQUEST_UDP_LEN` lets a masked offset plus an option of
    /// up to 136 bytes stay inside.
    pub req: [u8; REQ_BUF],
    /// What the option walk found, kept in memory rather than registers: the verifier then
    /// sees one state per loop iteration instead of one per combination of findings.
    pub found: WalkFound,
    /// The bytes of the next store into the frame, placed at the frame's alignment.
    pub out: [u8; OUT_BUF],
    /// The `DHCPV6_RELAY_LINKS` key of a relayed request, built here (a lookup key may live in
    /// map memory, and the stack is short).
    pub link_key: RelayLinkKey,
    /// A Renew's walk: kept apart from `found`, which the Information-Request path owns.
    pub renew: RenewFound,
    /// The `DHCPV6_RENEWS` key of the IA being looked up.
    pub renew_key: RenewKey,
    /// A copy of the entry found, read word by word once: the seal is checked on it and the
    /// answer built from it, never from the map value again.
    pub renew_entry: RenewEntry,
}

/// What a Renew's option walk found (offsets into `Scratch::req`).
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct RenewFound {
    pub cid_off: u32,
    pub cid_len: u32,
    pub sid_off: u32,
    pub sid_len: u32,
    pub oro_off: u32,
    pub oro_len: u32,
    pub oro_count: u32,
    /// IAs found, and each one's option offset (header included) in the datagram.
    pub ias: u32,
    pub ia_off: [u32; limits::MAX_RENEW_IAS],
    /// Set when the walk met something that sends the Renew up; the counter is `pass`.
    pub pass: u32,
    /// Length of the Reply staged in `Scratch::out` so far (header, identifiers, IAs).
    pub staged: u32,
    /// The Reply's checksum sum before its segments (kept in memory for the verifier).
    pub acc: u32,
    /// The datagram's length, handed from the XDP program to the Renew program it
    /// tail-calls (with the arrival's key in `Scratch::renew_key.iface`).
    pub udp_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct WalkFound {
    /// Option codes below 128 named in the Option Request option.
    pub oro_mask: [u64; 2],
    pub cid_off: u32,
    pub cid_len: u32,
    pub sid_off: u32,
    pub sid_len: u32,
    pub oro_off: u32,
    pub oro_len: u32,
    pub oro_count: u32,
    pub ia: u32,
    /// Set when an option breaks the rules (repeated or badly sized identifier, odd ORO).
    pub malformed: u32,
    /// Reply segments selected (bit per segment) and their total length.
    pub selected: u32,
    pub opts_len: u32,
    /// The run of selected segments that lie back to back in the block, not yet written:
    /// its block offset, length and place in the frame (one store per run, not per segment).
    pub run_off: u32,
    pub run_len: u32,
    pub run_pos: u32,
    /// Length of the range a word loop (sum or copy) covers, kept in memory so that the
    /// loop's exits do not narrow the range of the caller's length in the verifier's eyes
    /// (one state per exit instead of one per exit and caller state).
    pub loop_len: u32,
    /// A User Class option (15) was seen.
    pub user_class: u32,
    /// The client message walked: from its header (`msg_off`) to `msg_end`, in `req`.
    pub msg_off: u32,
    pub msg_end: u32,
    /// 1 when the message came inside a lightweight relay's Relay-Forward.
    pub relayed: u32,
    /// The Relay-Forward's Interface-ID option (header included) and relay options seen
    /// (bit per option kind, to find repeats).
    pub iid_off: u32,
    pub iid_len: u32,
    pub relay_seen: u32,
    pub rmsg_off: u32,
    pub rmsg_len: u32,
}

/// Staging for option bytes on their way into the frame: the copy helper is fast only when
/// source and destination share their alignment, which a map value cannot offer for every
/// client's Client Identifier length.
pub const OUT_BUF: usize = 1040;

pub const REQ_MASK: usize = 511;
pub const REQ_BUF: usize = 512 + 144;

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are #[repr(C)] and Pod (no padding, any bit pattern valid).
    unsafe impl aya::Pod for super::IfaceReply {}
    unsafe impl aya::Pod for super::IfaceKey {}
    unsafe impl aya::Pod for super::IfaceSlot {}
    unsafe impl aya::Pod for crate::Counters {}
    unsafe impl aya::Pod for super::FloodConfig {}
    unsafe impl aya::Pod for super::FloodKey {}
    unsafe impl aya::Pod for super::FloodBucket {}
    unsafe impl aya::Pod for super::RelaySource {}
    unsafe impl aya::Pod for super::RelayLinkKey {}
    unsafe impl aya::Pod for super::Segment {}
    unsafe impl aya::Pod for super::MacKey {}
    unsafe impl aya::Pod for super::ClientMac {}
    unsafe impl aya::Pod for super::RenewKey {}
    unsafe impl aya::Pod for super::RenewEntry {}
}
