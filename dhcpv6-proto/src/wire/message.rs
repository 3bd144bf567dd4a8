//! Checked views over DHCPv6 messages: client/server messages (RFC 9915 section 8) and relay
//! messages (section 9). `parse` validates the whole option area once, so the accessors that
//! follow cannot fail.

use dhcpv6_common::wire::{msg, opt};

use super::{options::OptionIter, RawOption, WireError};

/// A client/server message: type, transaction id, options.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
}

impl<'a> Message<'a> {
    pub const HEADER_LEN: usize = 4;

    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < Self::HEADER_LEN {
            return Err(WireError::ShortHeader(Self::HEADER_LEN));
        }
        OptionIter::validate(&buf[Self::HEADER_LEN..])?;
        Ok(Self { buf })
    }

    pub fn msg_type(&self) -> u8 {
        self.buf[0]
    }

    pub fn xid(&self) -> [u8; 3] {
        [self.buf[1], self.buf[2], self.buf[3]]
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The options, in wire order (already validated).
    pub fn options(&self) -> impl Iterator<Item = RawOption<'a>> + 'a {
        OptionIter::new(&self.buf[Self::HEADER_LEN..]).filter_map(Result::ok)
    }

    /// Data of the first option with `code`.
    pub fn find(&self, code: u16) -> Option<&'a [u8]> {
        self.options().find(|o| o.code == code).map(|o| o.data)
    }

    pub fn count(&self, code: u16) -> usize {
        self.options().filter(|o| o.code == code).count()
    }

    /// The single Client or Server Identifier: `Ok(None)` if absent, an error when repeated
    /// or of a length no DUID has.
    pub fn unique_duid(&self, code: u16) -> Result<Option<&'a [u8]>, WireError> {
        let mut found = None;
        for o in self.options().filter(|o| o.code == code) {
            if found.is_some() {
                return Err(WireError::Duplicate(code));
            }
            if !(dhcpv6_common::wire::DUID_MIN_LEN..=dhcpv6_common::wire::DUID_MAX_LEN).contains(&o.data.len()) {
                return Err(WireError::DuidLength(o.data.len()));
            }
            found = Some(o.data);
        }
        Ok(found)
    }

    pub fn client_id(&self) -> Result<Option<&'a [u8]>, WireError> {
        self.unique_duid(opt::CLIENTID)
    }

    pub fn server_id(&self) -> Result<Option<&'a [u8]>, WireError> {
        self.unique_duid(opt::SERVERID)
    }

    /// Union of the codes in every Option Request option.
    pub fn requested_options(&self) -> Result<Vec<u16>, WireError> {
        let mut codes = Vec::new();
        for o in self.options().filter(|o| o.code == opt::ORO) {
            codes.extend(super::options::oro_codes(o.data)?);
        }
        Ok(codes)
    }

    pub fn has_ia(&self) -> bool {
        self.options().any(|o| matches!(o.code, opt::IA_NA | opt::IA_TA | opt::IA_PD))
    }
}

/// A Relay-Forward or Relay-Reply message.
#[derive(Debug, Clone, Copy)]
pub struct RelayMessage<'a> {
    buf: &'a [u8],
}

impl<'a> RelayMessage<'a> {
    pub const HEADER_LEN: usize = 34;

    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < Self::HEADER_LEN {
            return Err(WireError::ShortHeader(Self::HEADER_LEN));
        }
        OptionIter::validate(&buf[Self::HEADER_LEN..])?;
        Ok(Self { buf })
    }

    pub fn msg_type(&self) -> u8 {
        self.buf[0]
    }

    pub fn is_relay_forward(&self) -> bool {
        self.msg_type() == msg::RELAY_FORW
    }

    pub fn hop_count(&self) -> u8 {
        self.buf[1]
    }

    pub fn link_address(&self) -> std::net::Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[2..18]);
        a.into()
    }

    pub fn peer_address(&self) -> std::net::Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[18..34]);
        a.into()
    }

    pub fn options(&self) -> impl Iterator<Item = RawOption<'a>> + 'a {
        OptionIter::new(&self.buf[Self::HEADER_LEN..]).filter_map(Result::ok)
    }

    pub fn find(&self, code: u16) -> Option<&'a [u8]> {
        self.options().find(|o| o.code == code).map(|o| o.data)
    }

    /// The encapsulated message (Relay Message option).
    pub fn relay_message(&self) -> Result<&'a [u8], WireError> {
        self.find(opt::RELAY_MSG).ok_or(WireError::NoRelayMessage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_request(opts: &[u8]) -> Vec<u8> {
        let mut v = vec![msg::INFORMATION_REQUEST, 1, 2, 3];
        v.extend_from_slice(opts);
        v
    }

    #[test]
    fn header_and_options() {
        let m = info_request(&[0, 1, 0, 3, 0, 3, 9, 0, 6, 0, 2, 0, 23]);
        let m = Message::parse(&m).unwrap();
        assert_eq!(m.msg_type(), msg::INFORMATION_REQUEST);
        assert_eq!(m.xid(), [1, 2, 3]);
        assert_eq!(m.client_id().unwrap(), Some(&[0, 3, 9][..]));
        assert_eq!(m.server_id().unwrap(), None);
        assert_eq!(m.requested_options().unwrap(), vec![23]);
        assert!(!m.has_ia());
    }

    #[test]
    fn short_and_truncated_messages_are_errors() {
        assert_eq!(Message::parse(&[11, 0, 0]).unwrap_err(), WireError::ShortHeader(4));
        let m = info_request(&[0, 1, 0, 10, 0, 3]);
        assert!(matches!(Message::parse(&m), Err(WireError::OptionPastEnd { code: 1, .. })));
    }

    #[test]
    fn duplicate_or_odd_sized_identifiers_are_errors() {
        let m = info_request(&[0, 1, 0, 3, 0, 3, 9, 0, 1, 0, 3, 0, 3, 9]);
        assert_eq!(Message::parse(&m).unwrap().client_id(), Err(WireError::Duplicate(1)));
        let m = info_request(&[0, 2, 0, 2, 0, 3]);
        assert_eq!(Message::parse(&m).unwrap().server_id(), Err(WireError::DuidLength(2)));
    }

    #[test]
    fn relay_header() {
        let mut r = vec![msg::RELAY_FORW, 1];
        r.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        r.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        r.extend_from_slice(&[0, 9, 0, 4, 11, 1, 2, 3]);
        let r = RelayMessage::parse(&r).unwrap();
        assert_eq!(r.hop_count(), 1);
        assert_eq!(r.link_address(), "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(r.peer_address(), "fe80::2".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(r.relay_message().unwrap(), &[11, 1, 2, 3]);
    }
}
