//! Relayed messages, server side (RFC 9915 sections 9, 13.1 and 19.3; Remote-ID RFC 4649,
//! Subscriber-ID RFC 4580, Client Link-Layer Address RFC 6939, lightweight relays RFC 6221).
//!
//! [`unwrap`] peels the Relay-Forward layers off a datagram with a loop, never recursion, so a
//! crafted message nested thousands deep costs at most [`MAX_RELAY_DEPTH`] levels of work and
//! no stack. Each level keeps what the Reply needs ([`RelayLevel`]: header fields and the
//! Interface-ID to echo) and what link selection and reservations need (Remote-ID,
//! Subscriber-ID, client link-layer address). [`wrap`] builds the Relay-Reply layers back from
//! those levels; [`reply_destination`] says where the result goes.

use crate::stats::Counter;
use std::net::{Ipv6Addr, SocketAddrV6};

use dhcpv6_common::wire::{msg, opt, HOP_COUNT_LIMIT, SERVER_PORT};

pub use crate::wire::relay::LINKLAYER_ETHERNET;
pub use crate::wire::RelayLevel;
use crate::wire::{
    relay::{emit_chain, ClientLinkLayer, RemoteId},
    Message, RelayKind, WireError, MAX_MESSAGE_LEN,
};

/// The deepest chain of Relay-Forward messages accepted: HOP_COUNT_LIMIT + 1 = 9 levels.
///
/// Why not 8: hop-count counts the relays that relayed the message *before* this one (RFC 9915
/// section 9.1). The first relay writes 0; a relay discards a received Relay-Forward whose
/// hop-count is >= HOP_COUNT_LIMIT and otherwise writes the received value + 1 (section
/// 19.1.2). So the ninth relay of a chain receives hop-count 7, is allowed to relay it, and
/// sends hop-count 8, which is also the "max hop count in a Relay-forward message" of the
/// section 7.6 table. Compliant relays can thus deliver 9 levels with hop-counts 8..=0
/// (outermost first); a tenth relay must have dropped the message. Hence:
/// - a hop-count field above HOP_COUNT_LIMIT at any level is an error
///   ([`RelayError::HopCountOverLimit`]), whatever the depth;
/// - a tenth nested Relay-Forward is an error ([`RelayError::TooDeep`]), whatever the
///   hop-count fields say (they are not required to be consistent with the depth: some
///   lightweight relays write 0 at every level, so we do not reject on that).
pub const MAX_RELAY_DEPTH: usize = HOP_COUNT_LIMIT as usize + 1;

/// Largest UDP payload of an IPv6 datagram without a jumbogram.
pub const MAX_UDP_PAYLOAD: usize = MAX_MESSAGE_LEN;

/// The message-type classes, shared with the XDP program (which learns client MACs only
/// from client messages).
pub use dhcpv6_common::wire::msg::{is_client_message, is_server_message};

/// A Relay-Forward chain taken apart: owned levels (they outlive the datagram: the Reply is
/// wrapped after the lease store answers) and the client's message, borrowed.
#[derive(Debug, Clone)]
pub struct Relayed<'a> {
    /// Outermost (the relay that sent us the datagram) first, innermost (closest to the
    /// client) last. Never empty when built by [`unwrap`].
    pub levels: Vec<RelayLevel>,
    /// The client's message, bytes as relayed.
    pub inner: &'a [u8],
    message: Message<'a>,
}

impl<'a> Relayed<'a> {
    /// The client's message, already validated by [`unwrap`].
    pub fn message(&self) -> Message<'a> {
        self.message
    }

    /// The relay closest to the client.
    pub fn innermost(&self) -> Option<&RelayLevel> {
        self.levels.last()
    }

    /// What the server selects the link and reservations by (RFC 9915 section 13.1).
    pub fn link_selector(&self) -> LinkSelector<'_> {
        // The innermost relay that set a link-address names the client's link: a lightweight
        // relay (RFC 6221) next to the client leaves it unspecified and the layer-3 relay
        // above it fills it in.
        let link_address = self.levels.iter().rev().map(|l| l.link_address).find(|a| !a.is_unspecified());
        let inner = self.innermost();
        let field = |f: fn(&RelayLevel) -> &Option<Vec<u8>>| inner.and_then(|l| f(l).as_deref());
        LinkSelector {
            link_address,
            interface_id: field(|l| &l.interface_id),
            remote_id: field(|l| &l.remote_id),
            subscriber_id: field(|l| &l.subscriber_id),
            client_linklayer: field(|l| &l.client_linklayer),
            peer_address: inner.map(|l| l.peer_address),
            // The relay next to the client if it sent one, else the nearest above that did:
            // bulk leasequery asks "what went through this relay".
            relay_id: self.levels.iter().rev().find_map(|l| l.relay_id.as_deref()),
        }
    }
}

/// Link and client identification from a relayed message. The identifiers come from the
/// innermost level only: they describe the client as seen by the relay next to it, and an
/// outer relay's options describe the relay below it, not the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkSelector<'r> {
    /// Link-address of the innermost relay that set one; `None` when every level left it
    /// unspecified (select by Interface-ID, or by the interface the datagram came in on).
    pub link_address: Option<Ipv6Addr>,
    /// Interface-ID of the innermost level.
    pub interface_id: Option<&'r [u8]>,
    pub remote_id: Option<&'r [u8]>,
    pub subscriber_id: Option<&'r [u8]>,
    pub client_linklayer: Option<&'r [u8]>,
    /// Peer-address of the innermost level: the client's address as its relay saw it.
    pub peer_address: Option<Ipv6Addr>,
    /// Relay-ID (RFC 5460) of the innermost level that carried one.
    pub relay_id: Option<&'r [u8]>,
}

impl<'r> LinkSelector<'r> {
    /// Remote-ID split into enterprise number and id.
    pub fn remote_id_parts(&self) -> Option<(u32, &'r [u8])> {
        RemoteId::parse(self.remote_id?).ok().map(|r| (r.enterprise, r.id))
    }

    /// The client's MAC, when the link-layer address is Ethernet.
    pub fn client_mac(&self) -> Option<[u8; 6]> {
        ClientLinkLayer::parse(self.client_linklayer?).ok()?.mac()
    }
}

/// Why a relay message was discarded. `level` counts from 0 at the outermost message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("empty message")]
    Empty,
    #[error("message type {0} where a relay message was expected")]
    NotRelayMessage(u8),
    #[error("relay level {level}: shorter than the 34-byte relay header")]
    ShortHeader { level: usize },
    #[error("relay level {level}: hop-count {hop_count} is over HOP_COUNT_LIMIT")]
    HopCountOverLimit { level: usize, hop_count: u8 },
    #[error("relay messages nested deeper than {MAX_RELAY_DEPTH} levels")]
    TooDeep,
    #[error("relay level {level}: the Relay Message option runs past the end")]
    TruncatedRelayMessage { level: usize },
    #[error("relay level {level}: option {code} at option offset {offset} runs past the end")]
    OptionPastEnd { level: usize, code: u16, offset: usize },
    #[error("relay level {level}: option header at option offset {offset} is truncated")]
    TruncatedOptionHeader { level: usize, offset: usize },
    #[error("relay level {level}: {error}")]
    Malformed { level: usize, error: WireError },
    #[error("relay level {level}: no Relay Message option")]
    NoRelayMessage { level: usize },
    #[error("relay level {level}: more than one Relay Message option")]
    MultipleRelayMessages { level: usize },
    #[error("relay level {level}: option {code} appears more than once")]
    DuplicateOption { level: usize, code: u16 },
    #[error("relay level {level}: option {code} has a bad length {len}")]
    BadOptionLength { level: usize, code: u16, len: usize },
    #[error("relayed message of type {0} is not a client message")]
    NotClientMessage(u8),
    #[error("relayed message of type {0} is not a server message")]
    NotServerMessage(u8),
    #[error("relayed message is malformed: {0}")]
    InnerMalformed(WireError),
    #[error("relay message of {0} bytes does not fit a UDP datagram")]
    TooLarge(usize),
}

impl RelayError {
    /// The counter this discard is counted under.
    pub fn counter(&self) -> Counter {
        match self {
            RelayError::Empty => Counter::DropRelayEmpty,
            RelayError::NotRelayMessage(_) => Counter::DropRelayNotRelayMsg,
            RelayError::ShortHeader { .. } => Counter::DropRelayShortHeader,
            RelayError::HopCountOverLimit { .. } => Counter::DropRelayHopCountOverLimit,
            RelayError::TooDeep => Counter::DropRelayTooDeep,
            RelayError::TruncatedRelayMessage { .. } => Counter::DropRelayTruncatedRelayMsg,
            RelayError::OptionPastEnd { .. } => Counter::DropRelayOptionPastEnd,
            RelayError::TruncatedOptionHeader { .. } => Counter::DropRelayTruncatedOptionHeader,
            RelayError::Malformed { .. } => Counter::DropRelayMalformed,
            RelayError::NoRelayMessage { .. } => Counter::DropRelayNoRelayMsg,
            RelayError::MultipleRelayMessages { .. } => Counter::DropRelayMultipleRelayMsg,
            RelayError::DuplicateOption { .. } => Counter::DropRelayDuplicateOption,
            RelayError::BadOptionLength { .. } => Counter::DropRelayBadOptionLength,
            RelayError::NotClientMessage(_) => Counter::DropRelayInnerNotClientMsg,
            RelayError::NotServerMessage(_) => Counter::DropRelayInnerNotServerMsg,
            RelayError::InnerMalformed(_) => Counter::DropRelayInnerMalformed,
            RelayError::TooLarge(_) => Counter::DropRelayTooLarge,
        }
    }
}

/// Takes a Relay-Forward datagram apart down to the client's message (RFC 9915 section 9).
///
/// Every level must have the 34-byte header, a hop-count of at most HOP_COUNT_LIMIT,
/// structurally valid options, exactly one Relay Message option and well-formed relay
/// identifier options (each at most once); at most [`MAX_RELAY_DEPTH`] levels; the innermost
/// message must be a client message with valid options.
pub fn unwrap(buf: &[u8]) -> Result<Relayed<'_>, RelayError> {
    walk(buf, Direction::Forward)
}

/// The same walk over a Relay-Reply chain down to the server's message: what a chain of
/// relays does one level each. For tests and tools that play the relays.
pub fn unwrap_reply(buf: &[u8]) -> Result<Relayed<'_>, RelayError> {
    walk(buf, Direction::Reply)
}

/// One level of a Relay-Forward or Relay-Reply (the caller checks which): the level and the
/// message it carries, unchecked beyond being inside the Relay Message option.
pub fn peel(buf: &[u8]) -> Result<(RelayLevel, &[u8]), RelayError> {
    parse_level(buf, 0)
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Forward,
    Reply,
}

impl Direction {
    fn relay_type(self) -> u8 {
        match self {
            Direction::Forward => msg::RELAY_FORW,
            Direction::Reply => msg::RELAY_REPL,
        }
    }

    fn check_inner(self, msg_type: u8) -> Result<(), RelayError> {
        match self {
            Direction::Forward if !is_client_message(msg_type) => Err(RelayError::NotClientMessage(msg_type)),
            Direction::Reply if !is_server_message(msg_type) => Err(RelayError::NotServerMessage(msg_type)),
            _ => Ok(()),
        }
    }
}

/// The loop behind [`unwrap`]: one level per turn, so depth costs iterations, not stack.
fn walk(buf: &[u8], dir: Direction) -> Result<Relayed<'_>, RelayError> {
    let mut levels = Vec::new();
    let mut cur = buf;
    loop {
        let Some(&msg_type) = cur.first() else {
            return Err(if levels.is_empty() {
                RelayError::Empty
            } else {
                RelayError::InnerMalformed(WireError::ShortHeader(Message::HEADER_LEN))
            });
        };
        if msg_type != dir.relay_type() {
            if levels.is_empty() {
                return Err(RelayError::NotRelayMessage(msg_type));
            }
            dir.check_inner(msg_type)?;
            let message = Message::parse(cur).map_err(RelayError::InnerMalformed)?;
            return Ok(Relayed { levels, inner: cur, message });
        }
        // Checked before parsing the level, so a deep chain stops here without more work.
        if levels.len() == MAX_RELAY_DEPTH {
            return Err(RelayError::TooDeep);
        }
        let (level, inner) = parse_level(cur, levels.len())?;
        levels.push(level);
        cur = inner;
    }
}

/// One level, its wire errors named with the level they occurred at.
fn parse_level(buf: &[u8], level: usize) -> Result<(RelayLevel, &[u8]), RelayError> {
    RelayLevel::parse(buf).map_err(|e| level_error(e, level))
}

/// Named so that the counters tell a cut-off Relay Message (typically a datagram truncated
/// on the way) from other bad lengths.
fn level_error(e: WireError, level: usize) -> RelayError {
    match e {
        WireError::ShortHeader(_) => RelayError::ShortHeader { level },
        WireError::OptionPastEnd { code: opt::RELAY_MSG, .. } => RelayError::TruncatedRelayMessage { level },
        WireError::OptionPastEnd { code, offset } => RelayError::OptionPastEnd { level, code, offset },
        WireError::TruncatedOptionHeader(offset) => RelayError::TruncatedOptionHeader { level, offset },
        WireError::HopCountOverLimit(hop_count) => RelayError::HopCountOverLimit { level, hop_count },
        WireError::NoRelayMessage => RelayError::NoRelayMessage { level },
        WireError::Duplicate(opt::RELAY_MSG) => RelayError::MultipleRelayMessages { level },
        WireError::Duplicate(code) => RelayError::DuplicateOption { level, code },
        WireError::BadLength { code, len } => RelayError::BadOptionLength { level, code, len },
        error => RelayError::Malformed { level, error },
    }
}

/// Builds the Relay-Reply chain around `reply` (RFC 9915 section 19.3): one Relay-Reply per
/// level, outermost first, hop-count, link-address and peer-address copied from the matching
/// Relay-Forward, the Interface-ID echoed where the relay sent one. Other relay options
/// (Remote-ID, Subscriber-ID, link-layer address) are not echoed. With no levels the reply is
/// returned as is.
///
/// Errors with [`RelayError::TooLarge`] when a Relay Message option or the whole datagram
/// would not fit (lengths are 16 bits; a UDP payload is at most [`MAX_UDP_PAYLOAD`]).
pub fn wrap(levels: &[RelayLevel], reply: &[u8]) -> Result<Vec<u8>, RelayError> {
    emit_chain(levels, RelayKind::Reply, reply).map_err(too_large)
}

/// What an emitter's length error means for a relay message.
pub(crate) fn too_large(e: WireError) -> RelayError {
    match e {
        WireError::OptionTooLong { len, .. } | WireError::MessageTooLong { len } => RelayError::TooLarge(len),
        error => RelayError::Malformed { level: 0, error },
    }
}

/// Where the Relay-Reply goes: back to the relay that sent the Relay-Forward, i.e. the source
/// address of the datagram that carried it (`src`, keeping its scope id for a link-local
/// relay), UDP port 547, the port relay agents listen on (RFC 9915 sections 7.2 and 19.3),
/// lightweight relays included (RFC 6221: an LDRA listens on 547 on its network side). Not
/// the source port, which a relay may have picked freely (answering it is RFC 8357's opt-in
/// Relay Source Port option, not supported here). The levels cannot name this address: the
/// outermost peer-address is the node *below* the outermost relay.
pub fn reply_destination(src: SocketAddrV6) -> SocketAddrV6 {
    SocketAddrV6::new(*src.ip(), SERVER_PORT, 0, src.scope_id())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::wire::writer::test_option as encode_option;
    use crate::wire::RelayMessage;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const SOLICIT: &[u8] = &[msg::SOLICIT, 0xab, 0xcd, 0xef, 0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9];
    const REPLY: &[u8] = &[msg::REPLY, 0xab, 0xcd, 0xef, 0, 2, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1];

    /// Relay-Forward layers around `inner`, every option each level has.
    fn forward(levels: &[RelayLevel], inner: &[u8]) -> Vec<u8> {
        emit_chain(levels, RelayKind::Forward, inner).unwrap()
    }

    /// A chain of `n` levels with realistic hop-counts (n-1 outermost down to 0).
    fn chain(n: usize) -> Vec<RelayLevel> {
        (0..n)
            .map(|i| {
                let mut l =
                    RelayLevel::new((n - 1 - i) as u8, ip(&format!("2001:db8:{i}::1")), ip(&format!("fe80::{i}")));
                l.interface_id = Some(format!("if{i}").into_bytes());
                l
            })
            .collect()
    }

    fn ldra_and_l3() -> Vec<RelayLevel> {
        let mut l3 = RelayLevel::new(1, ip("2001:db8:100::1"), ip("fe80::a"));
        l3.interface_id = Some(b"vlan100".to_vec());
        l3.remote_id = Some(vec![0, 0, 0x0d, 0xe9, b'b', b'n', b'g']);
        let mut ldra = RelayLevel::new(0, Ipv6Addr::UNSPECIFIED, ip("fe80::c"));
        ldra.interface_id = Some(b"port7".to_vec());
        ldra.remote_id = Some(vec![0, 0, 0x0d, 0xe9, b'o', b'n', b't']);
        ldra.subscriber_id = Some(b"sub-42".to_vec());
        ldra.client_linklayer = Some(vec![0, 1, 2, 0, 0, 0, 0, 9]);
        vec![l3, ldra]
    }

    #[test]
    fn single_relay() {
        let mut l = RelayLevel::new(0, ip("2001:db8::1"), ip("fe80::2"));
        l.interface_id = Some(b"eth1".to_vec());
        let buf = forward(std::slice::from_ref(&l), SOLICIT);
        let r = unwrap(&buf).unwrap();
        assert_eq!(r.levels, vec![l]);
        assert_eq!(r.inner, SOLICIT);
        assert_eq!(r.message().msg_type(), msg::SOLICIT);
        assert_eq!(r.message().xid(), [0xab, 0xcd, 0xef]);
    }

    #[test]
    fn nesting_at_the_limit_is_accepted_one_past_is_not() {
        let at = chain(MAX_RELAY_DEPTH);
        assert_eq!(at[0].hop_count, HOP_COUNT_LIMIT);
        let buf = forward(&at, SOLICIT);
        let r = unwrap(&buf).unwrap();
        assert_eq!(r.levels, at);
        assert_eq!(r.inner, SOLICIT);

        // One more level with the hop-counts a relay chain would write: the outermost says 9.
        let past = chain(MAX_RELAY_DEPTH + 1);
        assert_eq!(
            unwrap(&forward(&past, SOLICIT)).unwrap_err(),
            RelayError::HopCountOverLimit { level: 0, hop_count: HOP_COUNT_LIMIT + 1 }
        );
        // ...and with hop-counts that stay in range: the depth alone rejects it.
        let mut past = past;
        past.iter_mut().for_each(|l| l.hop_count = l.hop_count.min(HOP_COUNT_LIMIT));
        assert_eq!(unwrap(&forward(&past, SOLICIT)).unwrap_err(), RelayError::TooDeep);
    }

    #[test]
    fn hop_count_field_over_the_limit() {
        let mut levels = chain(2);
        levels[1].hop_count = HOP_COUNT_LIMIT + 1;
        let e = unwrap(&forward(&levels, SOLICIT)).unwrap_err();
        assert_eq!(e, RelayError::HopCountOverLimit { level: 1, hop_count: 9 });
        assert_eq!(e.counter(), Counter::DropRelayHopCountOverLimit);
        levels[1].hop_count = 255;
        assert!(matches!(unwrap(&forward(&levels, SOLICIT)), Err(RelayError::HopCountOverLimit { .. })));
    }

    #[test]
    fn truncated_relay_message_option() {
        let buf = forward(&chain(1), SOLICIT);
        let cut = &buf[..buf.len() - 3];
        let e = unwrap(cut).unwrap_err();
        assert_eq!(e, RelayError::TruncatedRelayMessage { level: 0 });
        assert_eq!(e.counter(), Counter::DropRelayTruncatedRelayMsg);
        // Cut inside the second level: the outer Relay Message length is now wrong too, so the
        // outer level is the one that fails.
        let buf = forward(&chain(2), SOLICIT);
        assert_eq!(unwrap(&buf[..buf.len() - 1]).unwrap_err(), RelayError::TruncatedRelayMessage { level: 0 });
    }

    #[test]
    fn length_past_the_end() {
        let mut buf = forward(&chain(1), SOLICIT);
        // A trailing Subscriber-ID claiming 200 bytes.
        buf.extend_from_slice(&[0, 38, 0, 200, b'x']);
        let e = unwrap(&buf).unwrap_err();
        assert!(matches!(e, RelayError::OptionPastEnd { level: 0, code: 38, .. }), "{e:?}");
        assert_eq!(e.counter(), Counter::DropRelayOptionPastEnd);
        // A truncated option header after the Relay Message.
        let mut buf = forward(&chain(1), SOLICIT);
        buf.extend_from_slice(&[0, 18]);
        assert!(matches!(unwrap(&buf), Err(RelayError::TruncatedOptionHeader { level: 0, .. })));
        // An option past the end of the inner relay level's own area, lengths outside consistent.
        let mut inner = forward(&chain(1), SOLICIT);
        inner.extend_from_slice(&[0, 37, 0, 50]);
        let buf = forward(&[RelayLevel::new(1, ip("2001:db8::1"), ip("fe80::1"))], &inner);
        assert!(matches!(unwrap(&buf), Err(RelayError::OptionPastEnd { level: 1, code: 37, .. })));
    }

    #[test]
    fn short_header_and_missing_or_repeated_relay_message() {
        let buf = forward(&chain(1), SOLICIT);
        assert_eq!(unwrap(&buf[..33]).unwrap_err(), RelayError::ShortHeader { level: 0 });
        assert_eq!(unwrap(&[]).unwrap_err(), RelayError::Empty);
        let header_only = &buf[..34];
        assert_eq!(unwrap(header_only).unwrap_err(), RelayError::NoRelayMessage { level: 0 });
        let mut twice = buf.clone();
        twice.extend_from_slice(&encode_option(opt::RELAY_MSG, SOLICIT));
        assert_eq!(unwrap(&twice).unwrap_err(), RelayError::MultipleRelayMessages { level: 0 });
    }

    #[test]
    fn inner_must_be_a_valid_client_message() {
        let one = chain(1);
        assert_eq!(unwrap(&forward(&one, REPLY)).unwrap_err(), RelayError::NotClientMessage(msg::REPLY));
        let relay_reply_inside = forward(&one, &[msg::RELAY_REPL; 40]);
        assert_eq!(unwrap(&relay_reply_inside).unwrap_err(), RelayError::NotClientMessage(msg::RELAY_REPL));
        assert!(matches!(unwrap(&forward(&one, &[])), Err(RelayError::InnerMalformed(_))));
        assert!(matches!(unwrap(&forward(&one, &[msg::SOLICIT, 1])), Err(RelayError::InnerMalformed(_))));
        let bad_opts = [msg::SOLICIT, 1, 2, 3, 0, 1, 0, 9];
        let e = unwrap(&forward(&one, &bad_opts)).unwrap_err();
        assert!(matches!(e, RelayError::InnerMalformed(WireError::OptionPastEnd { .. })));
        assert_eq!(e.counter(), Counter::DropRelayInnerMalformed);
        // The outer message must itself be a Relay-Forward.
        assert_eq!(unwrap(SOLICIT).unwrap_err(), RelayError::NotRelayMessage(msg::SOLICIT));
    }

    #[test]
    fn identifier_options_are_checked() {
        let mut l = chain(1);
        l[0].remote_id = Some(vec![0, 0, 0, 9]);
        assert_eq!(
            unwrap(&forward(&l, SOLICIT)).unwrap_err(),
            RelayError::BadOptionLength { level: 0, code: opt::REMOTE_ID, len: 4 }
        );
        let mut buf = forward(&chain(1), SOLICIT);
        buf.extend_from_slice(&encode_option(opt::INTERFACE_ID, b"again"));
        assert_eq!(unwrap(&buf).unwrap_err(), RelayError::DuplicateOption { level: 0, code: opt::INTERFACE_ID });
    }

    /// Nesting built iteratively, front to back (each level a bare header plus a Relay
    /// Message option announcing everything after it). A real datagram holds at most ~1,700
    /// such levels; beyond that the 16-bit lengths saturate and the message is inconsistent,
    /// which is also fine: all that matters is a fast error.
    fn bomb(depth: usize) -> Vec<u8> {
        let mut m = Vec::with_capacity(depth * 38 + SOLICIT.len());
        for k in 0..depth {
            let carried = SOLICIT.len() + 38 * (depth - 1 - k);
            m.extend_from_slice(&[msg::RELAY_FORW, 0]);
            m.extend_from_slice(&[0; 32]);
            m.extend_from_slice(&opt::RELAY_MSG.to_be_bytes());
            m.extend_from_slice(&u16::try_from(carried).unwrap_or(u16::MAX).to_be_bytes());
        }
        m.extend_from_slice(SOLICIT);
        m
    }

    #[test]
    fn recursion_bomb_fails_fast() {
        let fits = bomb((MAX_UDP_PAYLOAD - SOLICIT.len()) / 38);
        assert!(fits.len() <= MAX_UDP_PAYLOAD);
        let huge = bomb(10_000);
        let t = Instant::now();
        assert_eq!(unwrap(&fits).unwrap_err(), RelayError::TooDeep);
        assert!(unwrap(&huge).is_err());
        // Generous bound: the walk stops after MAX_RELAY_DEPTH levels either way.
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn link_selector_prefers_innermost_set_link_address_and_innermost_identifiers() {
        let levels = ldra_and_l3();
        let buf = forward(&levels, SOLICIT);
        let r = unwrap(&buf).unwrap();
        let s = r.link_selector();
        // The LDRA left link-address unspecified: the layer-3 relay's address names the link.
        assert_eq!(s.link_address, Some(ip("2001:db8:100::1")));
        assert_eq!(s.interface_id, Some(&b"port7"[..]));
        assert_eq!(s.remote_id_parts(), Some((3561, &b"ont"[..])));
        assert_eq!(s.subscriber_id, Some(&b"sub-42"[..]));
        assert_eq!(s.client_mac(), Some([2, 0, 0, 0, 0, 9]));

        let mut only_ldra = levels[1].clone();
        only_ldra.client_linklayer = Some(vec![0, 6, 1, 2, 3]);
        let buf = forward(&[only_ldra], SOLICIT);
        let r = unwrap(&buf).unwrap();
        let s = r.link_selector();
        assert_eq!(s.link_address, None);
        assert_eq!(s.client_mac(), None, "not Ethernet");
    }

    /// What a lease keeps for leasequery: the client's address as the innermost relay saw it,
    /// and the Relay-ID of the innermost level that sent one (an LDRA usually has none; the
    /// layer-3 relay above it does).
    #[test]
    fn link_selector_carries_peer_address_and_nearest_relay_id() {
        let mut levels = ldra_and_l3();
        levels[0].relay_id = Some(vec![0, 2, 0, 0, 0x0d, 0xe9, b'b']);
        let buf = forward(&levels, SOLICIT);
        let r = unwrap(&buf).unwrap();
        let s = r.link_selector();
        assert_eq!(s.peer_address, Some(ip("fe80::c")));
        assert_eq!(s.relay_id, Some(&[0, 2, 0, 0, 0x0d, 0xe9, b'b'][..]));
        levels[1].relay_id = Some(vec![0, 2, 0, 0, 0x0d, 0xe9, b'l']);
        let buf = forward(&levels, SOLICIT);
        assert_eq!(unwrap(&buf).unwrap().link_selector().relay_id, Some(&[0, 2, 0, 0, 0x0d, 0xe9, b'l'][..]));
    }

    #[test]
    fn wrap_copies_headers_and_echoes_interface_id_at_each_level() {
        let mut levels = chain(3);
        levels[1].interface_id = None;
        levels[2].remote_id = Some(vec![0, 0, 0, 9, 1]);
        let out = wrap(&levels, REPLY).unwrap();
        let mut cur = &out[..];
        for l in &levels {
            let r = RelayMessage::parse(cur).unwrap();
            assert_eq!(r.msg_type(), msg::RELAY_REPL);
            assert_eq!(
                (r.hop_count(), r.link_address(), r.peer_address()),
                (l.hop_count, l.link_address, l.peer_address)
            );
            assert_eq!(r.find(opt::INTERFACE_ID), l.interface_id.as_deref());
            assert_eq!(r.find(opt::REMOTE_ID), None, "only the Interface-ID is echoed");
            cur = r.relay_message().unwrap();
        }
        assert_eq!(cur, REPLY);
        assert_eq!(wrap(&[], REPLY).unwrap(), REPLY);
    }

    #[test]
    fn wrap_refuses_what_does_not_fit_a_datagram() {
        let big = vec![msg::REPLY; u16::MAX as usize - 20];
        assert!(matches!(wrap(&chain(1), &big), Err(RelayError::TooLarge(_))));
        let mut l = chain(1);
        l[0].interface_id = Some(vec![0; 70_000]);
        assert!(matches!(wrap(&l, REPLY), Err(RelayError::TooLarge(_))));
    }

    #[test]
    fn unwrap_of_wrap_round_trips() {
        for levels in [chain(1), chain(MAX_RELAY_DEPTH), ldra_and_l3()] {
            let buf = forward(&levels, SOLICIT);
            let relayed = unwrap(&buf).unwrap();
            assert_eq!(relayed.levels, levels);
            let out = wrap(&relayed.levels, REPLY).unwrap();
            let back = unwrap_reply(&out).unwrap();
            assert_eq!(back.inner, REPLY);
            // The Reply side carries the header fields and the Interface-ID, nothing else.
            let expected: Vec<_> = levels
                .iter()
                .map(|l| RelayLevel {
                    interface_id: l.interface_id.clone(),
                    ..RelayLevel::new(l.hop_count, l.link_address, l.peer_address)
                })
                .collect();
            assert_eq!(back.levels, expected);
        }
    }

    #[test]
    fn reply_goes_to_the_relay_source_address_on_port_547() {
        let src = SocketAddrV6::new(ip("fe80::1"), 40000, 7, 3);
        assert_eq!(reply_destination(src), SocketAddrV6::new(ip("fe80::1"), 547, 0, 3));
    }

    #[test]
    fn every_error_has_a_counter() {
        let errors = [
            RelayError::Empty,
            RelayError::TooDeep,
            RelayError::NoRelayMessage { level: 0 },
            RelayError::TooLarge(1),
            RelayError::NotServerMessage(1),
        ];
        for e in errors {
            assert!(e.counter().as_str().starts_with("drop_relay_"));
        }
    }
}
