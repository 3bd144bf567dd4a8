//! What the XDP program does with a frame: one list, from which the program's [`Verdict`],
//! the XDP action of each, the per-CPU [`Counters`] and the counter names (`dhcpv6d stats`,
//! metrics, the userspace model of the program) are all generated. A new outcome is one line
//! here; nothing else can forget it.

use bytemuck::{Pod, Zeroable};

/// `enum xdp_action` of `linux/bpf.h`: what the program returns.
pub mod xdp_action {
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
}

macro_rules! outcomes {
    ($($(#[$doc:meta])* $variant:ident => $field:ident, $action:ident;)+) => {
        /// What became of a frame; each counted outcome has one field in [`Counters`] and one
        /// XDP action.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Verdict {
            /// Not IPv6 UDP to port 547: passed, and not counted beyond `frames`.
            NotDhcp,
            $($(#[$doc])* $variant,)+
        }

        impl Verdict {
            /// Every outcome that has a counter, in the counters' order.
            pub const COUNTED: &'static [Verdict] = &[$(Verdict::$variant,)+];

            /// The XDP action the program returns for it.
            #[inline(always)]
            pub const fn action(self) -> u32 {
                match self {
                    Verdict::NotDhcp => xdp_action::PASS,
                    $(Verdict::$variant => xdp_action::$action,)+
                }
            }

            /// Its counter's name (`not_dhcp` has none; the name is for tests and logs).
            pub const fn name(self) -> &'static str {
                match self {
                    Verdict::NotDhcp => "not_dhcp",
                    $(Verdict::$variant => stringify!($field),)+
                }
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
            $($(#[$doc])* pub $field: u64,)+
        }

        impl Counters {
            /// Number of fields.
            pub const LEN: usize = 2 + [$(stringify!($field)),+].len();

            /// The field that counts `v` (none for [`Verdict::NotDhcp`]).
            #[inline(always)]
            pub fn slot(&mut self, v: Verdict) -> Option<&mut u64> {
                match v {
                    Verdict::NotDhcp => None,
                    $(Verdict::$variant => Some(&mut self.$field),)+
                }
            }

            pub fn get(&self, v: Verdict) -> u64 {
                match v {
                    Verdict::NotDhcp => 0,
                    $(Verdict::$variant => self.$field,)+
                }
            }

            /// Field names and values in declaration order, for metrics and `dhcpv6d stats`.
            pub fn fields(&self) -> [(&'static str, u64); Self::LEN] {
                [("frames", self.frames), ("dhcp", self.dhcp), $((stringify!($field), self.$field),)+]
            }
        }
    };
}

outcomes! {
    /// Information-Requests answered with XDP_TX.
    Answered => answered, TX;
    /// Not Information-Request (Solicit, Relay-Forward, ...), or a Renew on an interface
    /// without `IFACE_RENEW` (or with no Renew program loaded): for userspace.
    PassOtherMsg => pass_other_msg, PASS;
    /// No reply data for the ingress interface (untagged frames).
    PassNoIface => pass_no_iface, PASS;
    /// The interface has reply data but the fast path is off (`--no-fast-path`, or a relay
    /// agent's downstream interface, where the program only learns client MACs).
    PassFastPathOff => pass_fast_path_off, PASS;
    /// IPv6 extension headers, or more than two VLAN tags.
    PassHeaders => pass_headers, PASS;
    /// Source not link-local, or destination neither ff02::1:2 nor our link-local address.
    PassAddressing => pass_addressing, PASS;
    /// IPv6 and UDP lengths disagree, or the frame is shorter than they say: the kernel judges.
    PassLength => pass_length, PASS;
    /// UDP checksum not verified (wrong, or left to offload): the kernel judges.
    PassChecksum => pass_checksum, PASS;
    /// Over a fast-path limit (options, ORO codes, request size, reply size).
    PassLimits => pass_limits, PASS;
    /// The frame could not grow to the reply's size (`bpf_xdp_adjust_tail` refused).
    PassNoRoom => pass_no_room, PASS;
    /// Malformed DHCPv6: an option past the end, a bad DUID length, a short header.
    DropMalformed => drop_malformed, DROP;
    /// IA_NA, IA_TA or IA_PD in an Information-Request (RFC 9915 section 16.12).
    DropIaPresent => drop_ia_present, DROP;
    /// A Server Identifier that is not ours (RFC 9915 section 16.12), in an
    /// Information-Request or a Renew (section 16.6, as userspace drops it).
    DropForeignServerId => drop_foreign_server_id, DROP;
    /// A helper failed after the headers were rewritten: the frame is neither the request
    /// nor a reply, so it is dropped (the client retransmits). Not seen in practice.
    DropWriteFailed => drop_write_failed, DROP;
    /// A VLAN-tagged frame with no reply data for its (ifindex, VLAN): the kernel hands it to
    /// the VLAN interface, whose own configuration answers it (never the parent's).
    PassVlan => pass_vlan, PASS;
    /// Would have been passed up, but its source MAC's token bucket on this interface is empty.
    DropFlood => drop_flood, DROP;
    /// Would have been passed up, but the bucket of its configured relay source is empty.
    DropFloodRelay => drop_flood_relay, DROP;
    /// An Information-Request with a User Class option on an interface that ignores some
    /// classes: userspace matches them (and counts its drops as `drop_user_class`).
    PassUserClass => pass_user_class, PASS;
    /// A lightweight relay's Relay-Forward carrying an Information-Request, answered with
    /// XDP_TX (the Relay-Reply, to the relay's address and port 547).
    TxRelayedIr => tx_relayed_ir, TX;
    /// A Relay-Forward on an interface whose reply data does not say the daemon trusts every
    /// lightweight relay on the link (`--trusted-relay fe80::/10`): userspace decides.
    PassRelayUntrusted => pass_relay_untrusted, PASS;
    /// A Relay-Forward not shaped as one lightweight relay's level (hop-count not 0,
    /// link-address set, peer-address not link-local, no Interface-ID, a nested relay).
    PassRelayShape => pass_relay_shape, PASS;
    /// A Relay-Forward carrying a client message other than Information-Request.
    PassRelayInner => pass_relay_inner, PASS;
    /// The Interface-ID names a `[[link]]` with options of its own that the program has no
    /// reply data for.
    PassRelayLink => pass_relay_link, PASS;
    /// A Relay-Forward whose relay level is malformed as RFC 9915 section 9 reads it (an
    /// option past the end, a repeated or badly sized relay option, no Relay Message, a
    /// relayed message shorter than its header): discarded, as userspace discards it.
    DropRelayMalformed => drop_relay_malformed, DROP;
    /// Renews answered with XDP_TX from `DHCPV6_RENEWS` (docs/fast-path.md, "Renew").
    TxRenew => tx_renew, TX;
    /// A Renew with an option the program does not answer (Rapid Commit, Reconfigure Accept,
    /// User or Vendor Class, Vendor-specific Information, Authentication, any unknown one),
    /// or without a Client or Server Identifier: userspace decides.
    PassRenewOptions => pass_renew_options, PASS;
    /// A Renew whose IAs the program does not answer: none, an IA_TA, more than
    /// `MAX_RENEW_IAS`, an IA not holding exactly one IAADDR / IAPREFIX and nothing else,
    /// an IAID repeated within its kind.
    PassRenewIa => pass_renew_ia, PASS;
    /// A Renew from a DUID longer than `RENEW_DUID_CAP` (the map key's).
    PassRenewDuid => pass_renew_duid, PASS;
    /// A Renew for an IA with no entry in `DHCPV6_RENEWS`.
    PassRenewNoEntry => pass_renew_no_entry, PASS;
    /// A Renew naming an address or prefix other than its IA's entry.
    PassRenewChanged => pass_renew_changed, PASS;
    /// A Renew for an IA whose entry is past its `answer_until_ns`.
    PassRenewExpired => pass_renew_expired, PASS;
    /// An entry read while the daemon replaced it (its seal did not hold): userspace answers.
    PassRenewTorn => pass_renew_torn, PASS;
}

impl Verdict {
    /// DHCPv6 frames (or frames that may be) this verdict hands to the kernel and userspace.
    #[inline(always)]
    pub const fn passes_up(self) -> bool {
        !matches!(self, Verdict::NotDhcp) && self.action() == xdp_action::PASS
    }

    /// Passed up and known to be UDP/547, so metered by the flood buckets. `pass_headers` is
    /// not: behind an extension header or a third tag may be anything (MLD reports carry a
    /// hop-by-hop header, IPsec is ESP), and a DHCPv6 bucket must not throttle it.
    #[inline(always)]
    pub const fn metered(self) -> bool {
        self.passes_up() && !matches!(self, Verdict::PassHeaders)
    }
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        let a: &mut [u64; Self::LEN] = bytemuck::cast_mut(self);
        let b: &[u64; Self::LEN] = bytemuck::cast_ref(o);
        for (x, y) in a.iter_mut().zip(b) {
            *x = x.wrapping_add(*y);
        }
    }
}
