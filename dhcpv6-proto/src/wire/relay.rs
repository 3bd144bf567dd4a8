//! Relay messages (RFC 9915 section 9) and the options relays add: Interface-ID (section
//! 21.18), Remote-ID (RFC 4649), Subscriber-ID (RFC 4580), Client Link-Layer Address (RFC
//! 6939), Relay-ID (RFC 5460 section 5.4.1), Relay Message (section 21.10).
//!
//! [`RelayMessage`] is the checked view of one relay message; [`RelayLevel`] is one relay's
//! layer taken apart ([`RelayLevel::parse`]) or to be written ([`RelayLevel::emit`], the one
//! relay emitter, for Relay-Forward and Relay-Reply alike).

use std::net::Ipv6Addr;

use dhcpv6_common::wire::{msg, opt, HOP_COUNT_LIMIT};

use super::{
    options::{addr, be16, be32, Options},
    RawOption, WireError, Writer,
};

/// Byte ranges of the relay message header.
pub(crate) mod field {
    use std::ops::{Range, RangeFrom};

    pub const MSG_TYPE: usize = 0;
    pub const HOP_COUNT: usize = 1;
    pub const LINK_ADDR: Range<usize> = 2..18;
    pub const PEER_ADDR: Range<usize> = 18..34;
    pub const OPTIONS: RangeFrom<usize> = 34..;
}

/// Byte ranges of Remote-ID data (RFC 4649 section 3).
mod remote_id_field {
    use std::ops::{Range, RangeFrom};

    pub const ENTERPRISE: Range<usize> = 0..4;
    pub const ID: RangeFrom<usize> = 4..;
}

/// Byte ranges of Client Link-Layer Address data (RFC 6939 section 4).
mod linklayer_field {
    use std::ops::{Range, RangeFrom};

    pub const HW_TYPE: Range<usize> = 0..2;
    pub const ADDR: RangeFrom<usize> = 2..;
}

/// ARP hardware type of Ethernet, as the client link-layer address option carries it.
pub const LINKLAYER_ETHERNET: u16 = 1;

/// Minimum option lengths of the relay-supplied identifiers.
/// Remote-ID: 4-byte enterprise number and at least one byte of id (RFC 4649 section 3).
const REMOTE_ID_MIN_LEN: usize = remote_id_field::ID.start + 1;
/// Subscriber-ID: at least one byte (RFC 4580 section 3).
const SUBSCRIBER_ID_MIN_LEN: usize = 1;
/// Client link-layer address: 2-byte hardware type and at least one byte (RFC 6939 section 4).
const CLIENT_LINKLAYER_MIN_LEN: usize = linklayer_field::ADDR.start + 1;
/// Relay-ID: a DUID, a 2-byte type and at least one byte (RFC 5460 section 5.4.1).
const RELAY_ID_MIN_LEN: usize = dhcpv6_common::wire::DUID_MIN_LEN;

/// A Relay-Forward or Relay-Reply message.
#[derive(Debug, Clone, Copy)]
pub struct RelayMessage<'a> {
    buf: &'a [u8],
    options: Options<'a>,
}

impl<'a> RelayMessage<'a> {
    pub const HEADER_LEN: usize = field::OPTIONS.start;

    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        Ok(Self { buf, options: Options::after_header(buf, Self::HEADER_LEN)? })
    }

    pub fn msg_type(&self) -> u8 {
        self.buf[field::MSG_TYPE]
    }

    pub fn is_relay_forward(&self) -> bool {
        self.msg_type() == msg::RELAY_FORW
    }

    pub fn hop_count(&self) -> u8 {
        self.buf[field::HOP_COUNT]
    }

    pub fn link_address(&self) -> Ipv6Addr {
        self.address(field::LINK_ADDR)
    }

    pub fn peer_address(&self) -> Ipv6Addr {
        self.address(field::PEER_ADDR)
    }

    pub fn options(&self) -> impl Iterator<Item = RawOption<'a>> + 'a {
        self.options.iter()
    }

    pub fn find(&self, code: u16) -> Option<&'a [u8]> {
        self.options.find(code)
    }

    /// The encapsulated message (Relay Message option).
    pub fn relay_message(&self) -> Result<&'a [u8], WireError> {
        self.find(opt::RELAY_MSG).ok_or(WireError::NoRelayMessage)
    }

    fn address(&self, range: std::ops::Range<usize>) -> Ipv6Addr {
        // `parse` checked the header, so the range is in the buffer.
        addr(self.buf, range).unwrap_or(Ipv6Addr::UNSPECIFIED)
    }
}

/// Remote-ID data: the relay vendor's enterprise number and its id for the client's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteId<'a> {
    pub enterprise: u32,
    pub id: &'a [u8],
}

impl<'a> RemoteId<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, WireError> {
        match be32(data, remote_id_field::ENTERPRISE) {
            Some(enterprise) if data.len() >= REMOTE_ID_MIN_LEN => {
                Ok(Self { enterprise, id: &data[remote_id_field::ID] })
            }
            _ => Err(WireError::BadLength { code: opt::REMOTE_ID, len: data.len() }),
        }
    }
}

/// Client Link-Layer Address data: an ARP hardware type and the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLinkLayer<'a> {
    pub hw_type: u16,
    pub addr: &'a [u8],
}

impl<'a> ClientLinkLayer<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, WireError> {
        match be16(data, linklayer_field::HW_TYPE) {
            Some(hw_type) if data.len() >= CLIENT_LINKLAYER_MIN_LEN => {
                Ok(Self { hw_type, addr: &data[linklayer_field::ADDR] })
            }
            _ => Err(WireError::BadLength { code: opt::CLIENT_LINKLAYER_ADDR, len: data.len() }),
        }
    }

    /// The option data for an Ethernet MAC.
    pub fn ethernet(mac: [u8; 6]) -> Vec<u8> {
        let mut v = LINKLAYER_ETHERNET.to_be_bytes().to_vec();
        v.extend_from_slice(&mac);
        v
    }

    /// The MAC, when the hardware type is Ethernet.
    pub fn mac(&self) -> Option<[u8; 6]> {
        (self.hw_type == LINKLAYER_ETHERNET).then(|| self.addr.try_into().ok()).flatten()
    }
}

/// Which way a relay message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// Towards the servers, every option the relay added.
    Forward,
    /// Back towards the client: the header fields of the matching Relay-Forward, and of its
    /// options only the Interface-ID (RFC 9915 section 19.3).
    Reply,
}

impl RelayKind {
    pub fn msg_type(self) -> u8 {
        match self {
            RelayKind::Forward => msg::RELAY_FORW,
            RelayKind::Reply => msg::RELAY_REPL,
        }
    }
}

/// One relay's layer: the header fields the Relay-Reply copies and the options it added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLevel {
    pub hop_count: u8,
    pub link_address: Ipv6Addr,
    pub peer_address: Ipv6Addr,
    /// Interface-ID option data (opaque; may be empty): echoed in the Relay-Reply.
    pub interface_id: Option<Vec<u8>>,
    /// Remote-ID option data, whole: 4-byte enterprise number then the id (RFC 4649).
    pub remote_id: Option<Vec<u8>>,
    /// Subscriber-ID option data (RFC 4580).
    pub subscriber_id: Option<Vec<u8>>,
    /// Client link-layer address option data, whole: 2-byte hardware type then the address
    /// (RFC 6939).
    pub client_linklayer: Option<Vec<u8>>,
    /// Relay-ID option data: the relay's DUID (RFC 5460), what bulk leasequery asks by.
    pub relay_id: Option<Vec<u8>>,
}

impl RelayLevel {
    /// A level with the header fields only, no options.
    pub fn new(hop_count: u8, link_address: Ipv6Addr, peer_address: Ipv6Addr) -> Self {
        Self {
            hop_count,
            link_address,
            peer_address,
            interface_id: None,
            remote_id: None,
            subscriber_id: None,
            client_linklayer: None,
            relay_id: None,
        }
    }

    /// One relay message (either kind; the caller checks which) taken apart: the level and
    /// the message it carries, unchecked beyond being inside the Relay Message option.
    ///
    /// The header must be whole, the hop-count at most HOP_COUNT_LIMIT, the options
    /// structurally valid, the Relay Message present once, and each identifier of a length
    /// its RFC allows and present at most once (a second copy would leave us guessing which
    /// one the relay meant).
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let r = RelayMessage::parse(buf)?;
        if r.hop_count() > HOP_COUNT_LIMIT {
            return Err(WireError::HopCountOverLimit(r.hop_count()));
        }
        let mut level = Self::new(r.hop_count(), r.link_address(), r.peer_address());
        let mut relay_msg = None;
        for o in r.options() {
            let (slot, min_len) = match o.code {
                opt::RELAY_MSG => {
                    if relay_msg.replace(o.data).is_some() {
                        return Err(WireError::Duplicate(opt::RELAY_MSG));
                    }
                    continue;
                }
                opt::INTERFACE_ID => (&mut level.interface_id, 0),
                opt::REMOTE_ID => (&mut level.remote_id, REMOTE_ID_MIN_LEN),
                opt::SUBSCRIBER_ID => (&mut level.subscriber_id, SUBSCRIBER_ID_MIN_LEN),
                opt::CLIENT_LINKLAYER_ADDR => (&mut level.client_linklayer, CLIENT_LINKLAYER_MIN_LEN),
                opt::RELAY_ID => (&mut level.relay_id, RELAY_ID_MIN_LEN),
                _ => continue,
            };
            if o.data.len() < min_len {
                return Err(WireError::BadLength { code: o.code, len: o.data.len() });
            }
            if slot.replace(o.data.to_vec()).is_some() {
                return Err(WireError::Duplicate(o.code));
            }
        }
        let carried = relay_msg.ok_or(WireError::NoRelayMessage)?;
        Ok((level, carried))
    }

    /// This level as a relay message of `kind` around `carried`: the header, the options
    /// `kind` carries (in the order Interface-ID, Remote-ID, Subscriber-ID, Client Link-Layer
    /// Address, Relay-ID), then the Relay Message option. Errors when a length does not fit its field
    /// or the result does not fit a datagram.
    pub fn emit(&self, kind: RelayKind, carried: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut w = Writer::relay(kind.msg_type(), self.hop_count, self.link_address, self.peer_address);
        let all = [
            (opt::INTERFACE_ID, &self.interface_id),
            (opt::REMOTE_ID, &self.remote_id),
            (opt::SUBSCRIBER_ID, &self.subscriber_id),
            (opt::CLIENT_LINKLAYER_ADDR, &self.client_linklayer),
            (opt::RELAY_ID, &self.relay_id),
        ];
        let sent = match kind {
            RelayKind::Forward => &all[..],
            RelayKind::Reply => &all[..1],
        };
        for (code, data) in sent {
            if let Some(d) = data {
                w.option(*code, d);
            }
        }
        w.option(opt::RELAY_MSG, carried);
        w.finish()
    }
}

/// `levels` (outermost first) as nested relay messages of `kind` around `inner`; with no
/// levels, `inner` as it is.
pub fn emit_chain(levels: &[RelayLevel], kind: RelayKind, inner: &[u8]) -> Result<Vec<u8>, WireError> {
    // From the inside out: each level carries everything below it. Nine levels of at most a
    // datagram each make the copies cheap.
    let mut m = inner.to_vec();
    for level in levels.iter().rev() {
        m = level.emit(kind, &m)?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A Relay-Forward (RFC 9915 section 9.1): hop-count 1, link-address 2001:db8::1,
    /// peer-address fe80::2, Interface-ID "eth1", Relay Message carrying an
    /// Information-Request with no options.
    const FORWARD: &[u8] = &[
        12, 1, // Relay-Forw, hop-count
        0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // link-address
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // peer-address
        0, 18, 0, 4, b'e', b't', b'h', b'1', // Interface-ID
        0, 9, 0, 4, 11, 1, 2, 3, // Relay Message
    ];

    #[test]
    fn relay_header() {
        let r = RelayMessage::parse(FORWARD).unwrap();
        assert!(r.is_relay_forward());
        assert_eq!(r.hop_count(), 1);
        assert_eq!(r.link_address(), ip("2001:db8::1"));
        assert_eq!(r.peer_address(), ip("fe80::2"));
        assert_eq!(r.relay_message().unwrap(), &[11, 1, 2, 3]);
        assert_eq!(RelayMessage::parse(&FORWARD[..33]).unwrap_err(), WireError::ShortHeader(34));
    }

    #[test]
    fn level_literal_bytes_both_ways() {
        let (level, carried) = RelayLevel::parse(FORWARD).unwrap();
        let mut expected = RelayLevel::new(1, ip("2001:db8::1"), ip("fe80::2"));
        expected.interface_id = Some(b"eth1".to_vec());
        assert_eq!(level, expected);
        assert_eq!(carried, &[11, 1, 2, 3]);
        assert_eq!(level.emit(RelayKind::Forward, carried).unwrap(), FORWARD);
        let mut reply = FORWARD.to_vec();
        reply[field::MSG_TYPE] = msg::RELAY_REPL;
        assert_eq!(level.emit(RelayKind::Reply, carried).unwrap(), reply);
    }

    #[test]
    fn a_reply_echoes_only_the_interface_id() {
        let mut level = RelayLevel::new(0, Ipv6Addr::UNSPECIFIED, ip("fe80::c"));
        level.interface_id = Some(b"port7".to_vec());
        level.remote_id = Some(vec![0, 0, 0x0d, 0xe9, b'o']);
        level.subscriber_id = Some(b"s".to_vec());
        level.client_linklayer = Some(ClientLinkLayer::ethernet([2, 0, 0, 0, 0, 9]));
        let fwd = level.emit(RelayKind::Forward, &[11, 0, 0, 1]).unwrap();
        assert_eq!(RelayLevel::parse(&fwd).unwrap(), (level.clone(), &[11, 0, 0, 1][..]));
        let codes: Vec<u16> = RelayMessage::parse(&fwd).unwrap().options().map(|o| o.code).collect();
        assert_eq!(codes, [18, 37, 38, 79, 9]);
        let rep = level.emit(RelayKind::Reply, &[7, 0, 0, 1]).unwrap();
        let codes: Vec<u16> = RelayMessage::parse(&rep).unwrap().options().map(|o| o.code).collect();
        assert_eq!(codes, [18, 9]);
    }

    /// Relay-ID (RFC 5460 section 5.4.1): option 53, a DUID; sent towards servers only, at most
    /// once per level, at least a DUID's three bytes.
    #[test]
    fn relay_id_literal_bytes_and_limits() {
        let mut fwd = FORWARD.to_vec();
        fwd.extend_from_slice(&[0, 53, 0, 7, 0, 2, 0, 0, 0x0d, 0xe9, b'r']);
        let (level, _) = RelayLevel::parse(&fwd).unwrap();
        assert_eq!(level.relay_id.as_deref(), Some(&[0, 2, 0, 0, 0x0d, 0xe9, b'r'][..]));
        let again = level.emit(RelayKind::Forward, &[11, 1, 2, 3]).unwrap();
        let codes: Vec<u16> = RelayMessage::parse(&again).unwrap().options().map(|o| o.code).collect();
        assert_eq!(codes, [18, 53, 9]);
        assert_eq!(RelayLevel::parse(&again).unwrap().0, level);
        let rep = level.emit(RelayKind::Reply, &[7, 1, 2, 3]).unwrap();
        assert!(RelayMessage::parse(&rep).unwrap().find(opt::RELAY_ID).is_none(), "not echoed");
        let mut short = FORWARD.to_vec();
        short.extend_from_slice(&[0, 53, 0, 2, 0, 2]);
        assert_eq!(RelayLevel::parse(&short).unwrap_err(), WireError::BadLength { code: opt::RELAY_ID, len: 2 });
        let mut twice = fwd.clone();
        twice.extend_from_slice(&[0, 53, 0, 3, 0, 2, 9]);
        assert_eq!(RelayLevel::parse(&twice).unwrap_err(), WireError::Duplicate(opt::RELAY_ID));
    }

    #[test]
    fn level_errors() {
        let mut over = FORWARD.to_vec();
        over[field::HOP_COUNT] = HOP_COUNT_LIMIT + 1;
        assert_eq!(RelayLevel::parse(&over).unwrap_err(), WireError::HopCountOverLimit(9));
        assert_eq!(RelayLevel::parse(&FORWARD[..42]).unwrap_err(), WireError::NoRelayMessage);
        let mut twice = FORWARD.to_vec();
        twice.extend_from_slice(&[0, 9, 0, 0]);
        assert_eq!(RelayLevel::parse(&twice).unwrap_err(), WireError::Duplicate(opt::RELAY_MSG));
        let mut iid = FORWARD.to_vec();
        iid.extend_from_slice(&[0, 18, 0, 0]);
        assert_eq!(RelayLevel::parse(&iid).unwrap_err(), WireError::Duplicate(opt::INTERFACE_ID));
        let mut short = FORWARD.to_vec();
        short.extend_from_slice(&[0, 37, 0, 4, 0, 0, 0, 9]);
        assert_eq!(RelayLevel::parse(&short).unwrap_err(), WireError::BadLength { code: opt::REMOTE_ID, len: 4 });
    }

    #[test]
    fn identifiers() {
        let r = RemoteId::parse(&[0, 0, 0x0d, 0xe9, b'o', b'n', b't']).unwrap();
        assert_eq!((r.enterprise, r.id), (3561, &b"ont"[..]));
        assert!(RemoteId::parse(&[0, 0, 0, 9]).is_err());
        let ll = ClientLinkLayer::parse(&[0, 1, 2, 0, 0, 0, 0, 9]).unwrap();
        assert_eq!(ll.mac(), Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(ClientLinkLayer::parse(&[0, 6, 1, 2, 3]).unwrap().mac(), None, "not Ethernet");
        assert!(ClientLinkLayer::parse(&[0, 1]).is_err());
    }

    #[test]
    fn lengths_that_do_not_fit_are_errors() {
        let mut level = RelayLevel::new(0, Ipv6Addr::UNSPECIFIED, ip("fe80::1"));
        assert!(matches!(
            level.emit(RelayKind::Forward, &vec![0; 65_536]),
            Err(WireError::OptionTooLong { code: opt::RELAY_MSG, .. })
        ));
        assert!(matches!(level.emit(RelayKind::Reply, &vec![0; 65_500]), Err(WireError::MessageTooLong { .. })));
        level.interface_id = Some(vec![0; 70_000]);
        assert!(matches!(
            level.emit(RelayKind::Reply, &[]),
            Err(WireError::OptionTooLong { code: opt::INTERFACE_ID, len: 70_000 })
        ));
    }

    #[test]
    fn a_chain_nests_outermost_first() {
        let outer = RelayLevel::new(1, ip("2001:db8::1"), ip("fe80::a"));
        let inner = RelayLevel::new(0, Ipv6Addr::UNSPECIFIED, ip("fe80::b"));
        let m = emit_chain(&[outer.clone(), inner.clone()], RelayKind::Forward, &[11, 0, 0, 1]).unwrap();
        let (l0, rest) = RelayLevel::parse(&m).unwrap();
        let (l1, client) = RelayLevel::parse(rest).unwrap();
        assert_eq!((l0, l1, client), (outer, inner, &[11, 0, 0, 1][..]));
        assert_eq!(emit_chain(&[], RelayKind::Reply, &[7, 0, 0, 1]).unwrap(), [7, 0, 0, 1]);
    }
}
