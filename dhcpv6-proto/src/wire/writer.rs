//! Building DHCPv6 messages: a header, then options appended in order, nested ones through
//! `begin`/`end` so the length is patched once the contents are known.
//!
//! Every length is checked where it is written: an option whose data would not fit its 16-bit
//! length field, or a message larger than a UDP datagram, is an error that [`Writer::finish`]
//! returns. The first error is kept and later writes go on harmlessly, so that a builder can
//! chain calls and learn of the failure once, at the end; nothing is ever truncated.

use std::net::Ipv6Addr;

use super::{options::field, relay, WireError};

/// The largest DHCPv6 message: a UDP payload within an IPv6 datagram without a jumbogram.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize - 8;

/// A message (from [`Writer::message`] or [`Writer::relay`]) or, from `default()`, a block of
/// options to be carried by something else, which checks the whole when it is written.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    error: Option<WireError>,
    is_message: bool,
}

/// An open container option; its length is written by [`Writer::end`].
#[must_use]
pub struct Open {
    at: usize,
    code: u16,
}

impl Writer {
    /// A client/server message header (RFC 9915 section 8).
    pub fn message(msg_type: u8, xid: [u8; 3]) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.push(msg_type);
        buf.extend_from_slice(&xid);
        Self { buf, error: None, is_message: true }
    }

    /// A relay message header (RFC 9915 section 9).
    pub fn relay(msg_type: u8, hop_count: u8, link: Ipv6Addr, peer: Ipv6Addr) -> Self {
        let mut buf = vec![0; relay::field::OPTIONS.start];
        buf[relay::field::MSG_TYPE] = msg_type;
        buf[relay::field::HOP_COUNT] = hop_count;
        buf[relay::field::LINK_ADDR].copy_from_slice(&link.octets());
        buf[relay::field::PEER_ADDR].copy_from_slice(&peer.octets());
        buf.reserve(512);
        Self { buf, error: None, is_message: true }
    }

    pub fn option(&mut self, code: u16, data: &[u8]) -> &mut Self {
        let Some(len) = self.checked_len(code, data.len()) else {
            return self;
        };
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    /// Appends an option already encoded with its header (its length was checked when it
    /// was encoded).
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(encoded);
        self
    }

    pub fn begin(&mut self, code: u16) -> Open {
        let at = self.buf.len();
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        Open { at, code }
    }

    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    pub fn end(&mut self, open: Open) {
        let data_len = self.buf.len() - open.at - field::DATA;
        if let Some(len) = self.checked_len(open.code, data_len) {
            self.buf[open.at + field::LEN.start..open.at + field::LEN.end].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// A Status Code option (RFC 9915 section 21.13).
    pub fn status(&mut self, code: u16, message: &str) -> &mut Self {
        super::status::emit(self, code, message);
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes, or the first length that did not fit.
    pub fn finish(self) -> Result<Vec<u8>, WireError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.is_message && self.buf.len() > MAX_MESSAGE_LEN {
            return Err(WireError::MessageTooLong { len: self.buf.len() });
        }
        Ok(self.buf)
    }

    /// The 16-bit length of option `code`, or `None` after recording why it does not fit.
    fn checked_len(&mut self, code: u16, len: usize) -> Option<u16> {
        match u16::try_from(len) {
            Ok(l) => Some(l),
            Err(_) => {
                self.error.get_or_insert(WireError::OptionTooLong { code, len });
                None
            }
        }
    }
}

/// One option, header included.
pub fn encode_option(code: u16, data: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut w = Writer::default();
    w.option(code, data);
    w.finish()
}

/// [`encode_option`] for test data, which is small: a length error is a broken test.
#[cfg(test)]
pub(crate) fn test_option(code: u16, data: &[u8]) -> Vec<u8> {
    encode_option(code, data).expect("test option fits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_lengths_are_patched() {
        let mut w = Writer::message(7, [1, 2, 3]);
        let ia = w.begin(3);
        w.bytes(&[0; 12]);
        w.status(0, "ok");
        w.end(ia);
        let b = w.finish().unwrap();
        assert_eq!(&b[..4], &[7, 1, 2, 3]);
        assert_eq!(&b[4..8], &[0, 3, 0, 12 + 4 + 2 + 2]);
        assert_eq!(&b[20..24], &[0, 13, 0, 4]);
    }

    #[test]
    fn relay_header_layout() {
        let link: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let peer: Ipv6Addr = "fe80::2".parse().unwrap();
        let b = Writer::relay(12, 3, link, peer).finish().unwrap();
        let mut expected = vec![12, 3];
        expected.extend_from_slice(&link.octets());
        expected.extend_from_slice(&peer.octets());
        assert_eq!(b, expected);
    }

    #[test]
    fn the_largest_length_is_written_one_more_is_an_error() {
        let max = vec![0xaa; usize::from(u16::MAX)];
        let o = encode_option(23, &max).unwrap();
        assert_eq!(&o[..4], &[0, 23, 0xff, 0xff]);
        assert_eq!(o.len(), 4 + 65_535);
        let over = vec![0xaa; 65_536];
        assert_eq!(encode_option(23, &over), Err(WireError::OptionTooLong { code: 23, len: 65_536 }));
    }

    #[test]
    fn an_overlong_container_is_an_error_not_a_wrapped_length() {
        let mut w = Writer::message(7, [1, 2, 3]);
        let ia = w.begin(25);
        w.bytes(&[0; 40_000]).bytes(&[0; 30_000]);
        w.end(ia);
        // Later writes do not hide the first failure.
        w.option(2, &[0; 10]);
        assert_eq!(w.finish(), Err(WireError::OptionTooLong { code: 25, len: 70_000 }));
    }

    #[test]
    fn a_message_larger_than_a_datagram_is_an_error() {
        let mut w = Writer::message(7, [1, 2, 3]);
        w.option(17, &[0; 40_000]).option(17, &[0; 40_000]);
        assert_eq!(w.finish(), Err(WireError::MessageTooLong { len: 4 + 2 * 40_004 }));
        let mut w = Writer::message(7, [1, 2, 3]);
        w.option(17, &vec![0; MAX_MESSAGE_LEN - 8]);
        assert_eq!(w.finish().map(|b| b.len()), Ok(MAX_MESSAGE_LEN));
    }
}
