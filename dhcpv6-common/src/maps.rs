//! Layouts of the BPF maps pinned under `/sys/fs/bpf/dhcpv6/`.
//!
//! The daemon writes [`IfaceReply`] (keyed by ifindex) and reads [`Counters`]; the XDP program
//! reads the first and only increments the second. All fields are plain integers and byte
//! arrays so that the layouts are identical on both sides and `bpftool map dump` can print
//! them by name from BTF.

use bytemuck::{Pod, Zeroable};

/// Directory under the bpffs mount where the daemon pins program, link and maps.
pub const PIN_DIR: &str = "dhcpv6";
pub const MAP_IFACE_REPLY: &str = "DHCPV6_IFACES";
pub const MAP_COUNTERS: &str = "DHCPV6_COUNTERS";
pub const MAP_SCRATCH: &str = "DHCPV6_SCRATCH";
pub const MAP_CLIENT_MACS: &str = "DHCPV6_CLIENT_MACS";
/// Client MACs remembered at once (an LRU: the oldest go first).
pub const MAX_CLIENT_MACS: u32 = 65536;
pub const PROGRAM_NAME: &str = "dhcpv6_xdp";

/// Version of the meaning of the pinned maps' keys and values. A starting daemon adopts the
/// maps a previous one pinned (keeping counters and reply data) only when this and every
/// `DHCPV6_*` map's type, key size, value size, capacity and flags are the same; otherwise it
/// creates fresh maps and swaps the program over to them. Sizes are checked by themselves:
/// bump this when a field changes meaning, order or type without changing a size.
pub const MAPS_LAYOUT_VERSION: u32 = 1;

/// Interfaces the fast path can serve at once.
pub const MAX_IFACES: u32 = 4096;

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
}

/// [`IfaceReply::flags`]: answer Information-Requests in XDP on this interface. Without it the
/// program only classifies and counts (`--no-fast-path`).
pub const IFACE_FAST_PATH: u16 = 1;

/// [`IfaceReply::flags`]: remember the source MAC of every DHCPv6 frame in
/// `DHCPV6_CLIENT_MACS`, for the relay agent's Client Link-Layer Address option (RFC 6939):
/// userspace gets datagrams from a UDP socket, which does not say who sent the frame.
pub const IFACE_LEARN_MACS: u16 = 2;

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

/// Per-interface reply data, keyed by ifindex (`u32`).
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
    pub _pad: u32,
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

/// What the program did with each frame, one field per outcome (per CPU; userspace sums).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Counters {
    /// Every frame the program ran on.
    pub frames: u64,
    /// IPv6 UDP datagrams to port 547 (on an Ethernet with up to two VLAN tags).
    pub dhcp: u64,
    /// Information-Requests answered with XDP_TX.
    pub answered: u64,
    /// Not Information-Request (Solicit, Relay-Forward, ...): for userspace.
    pub pass_other_msg: u64,
    /// No reply data for the ingress interface.
    pub pass_no_iface: u64,
    /// The interface has reply data but the fast path is off (`--no-fast-path`).
    pub pass_fast_path_off: u64,
    /// IPv6 extension headers, or more than two VLAN tags.
    pub pass_headers: u64,
    /// Source not link-local, or destination neither ff02::1:2 nor our link-local address.
    pub pass_addressing: u64,
    /// IPv6 and UDP lengths disagree, or the frame is shorter than they say: the kernel judges.
    pub pass_length: u64,
    /// UDP checksum not verified (wrong, or left to offload): the kernel judges.
    pub pass_checksum: u64,
    /// Over a fast-path limit (options, ORO codes, request size, reply size).
    pub pass_limits: u64,
    /// The frame could not grow to the reply's size (`bpf_xdp_adjust_tail` refused).
    pub pass_no_room: u64,
    /// Malformed DHCPv6: an option past the end, a bad DUID length, a short header.
    pub drop_malformed: u64,
    /// IA_NA, IA_TA or IA_PD in an Information-Request (RFC 9915 section 16.12).
    pub drop_ia_present: u64,
    /// A Server Identifier that is not ours (RFC 9915 section 16.12).
    pub drop_foreign_server_id: u64,
    /// A helper failed after the headers were rewritten: the frame is neither the request
    /// nor a reply, so it is dropped (the client retransmits). Not seen in practice.
    pub drop_write_failed: u64,
}

impl Counters {
    /// Field names and values in declaration order, for metrics and `dhcpv6d stats`.
    pub fn fields(&self) -> [(&'static str, u64); 16] {
        [
            ("frames", self.frames),
            ("dhcp", self.dhcp),
            ("answered", self.answered),
            ("pass_other_msg", self.pass_other_msg),
            ("pass_no_iface", self.pass_no_iface),
            ("pass_fast_path_off", self.pass_fast_path_off),
            ("pass_headers", self.pass_headers),
            ("pass_addressing", self.pass_addressing),
            ("pass_length", self.pass_length),
            ("pass_checksum", self.pass_checksum),
            ("pass_limits", self.pass_limits),
            ("pass_no_room", self.pass_no_room),
            ("drop_malformed", self.drop_malformed),
            ("drop_ia_present", self.drop_ia_present),
            ("drop_foreign_server_id", self.drop_foreign_server_id),
            ("drop_write_failed", self.drop_write_failed),
        ]
    }

    pub fn add(&mut self, o: &Counters) {
        let a: &mut [u64; 16] = bytemuck::cast_mut(self);
        let b: &[u64; 16] = bytemuck::cast_ref(o);
        for (x, y) in a.iter_mut().zip(b) {
            *x = x.wrapping_add(*y);
        }
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
    pub _pad: u32,
}

/// Staging for option bytes on their way into the frame: the copy helper is fast only when
/// source and destination share their alignment, which a map value cannot offer for every
/// client's Client Identifier length.
pub const OUT_BUF: usize = 1040;

pub const REQ_MASK: usize = 511;
pub const REQ_BUF: usize = 512 + 144;

#[cfg(feature = "user")]
mod user {
    // SAFETY: all three are #[repr(C)] and Pod (no padding, any bit pattern valid).
    unsafe impl aya::Pod for super::IfaceReply {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Segment {}
    unsafe impl aya::Pod for super::MacKey {}
    unsafe impl aya::Pod for super::ClientMac {}
}
