//! Walking a DHCPv6 option area (RFC 9915 section 21.1): code, length, data.

use super::WireError;

/// Byte ranges of an option (RFC 9915 section 21.1), relative to its first byte.
pub(crate) mod field {
    use std::ops::Range;

    pub const CODE: Range<usize> = 0..2;
    pub const LEN: Range<usize> = 2..4;
    /// Where the data starts, i.e. the header length.
    pub const DATA: usize = 4;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    pub code: u16,
    pub data: &'a [u8],
    /// Offset of the option header within the walked area.
    pub offset: usize,
}

impl RawOption<'_> {
    /// The whole option as it sits on the wire, header included.
    pub fn wire_len(&self) -> usize {
        field::DATA + self.data.len()
    }
}

/// An option area walked once and found sound, so that reading it cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    buf: &'a [u8],
}

impl<'a> Options<'a> {
    /// The option area following a `header_len`-byte header: the one check every DHCPv6
    /// container (message, relay message, IA, address, prefix) needs.
    pub fn after_header(buf: &'a [u8], header_len: usize) -> Result<Self, WireError> {
        let area = buf.get(header_len..).ok_or(WireError::ShortHeader(header_len))?;
        OptionIter::validate(area)?;
        Ok(Self { buf: area })
    }

    /// The options, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = RawOption<'a>> + 'a {
        OptionIter::new(self.buf).filter_map(Result::ok)
    }

    /// Data of the first option with `code`.
    pub fn find(&self, code: u16) -> Option<&'a [u8]> {
        self.iter().find(|o| o.code == code).map(|o| o.data)
    }

    pub fn count(&self, code: u16) -> usize {
        self.iter().filter(|o| o.code == code).count()
    }
}

/// Iterates over options; yields an error (then stops) on a header or length past the end.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> OptionIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0, failed: false }
    }

    /// Every option, or the first structural error.
    pub fn validate(buf: &'a [u8]) -> Result<(), WireError> {
        Self::new(buf).try_for_each(|o| o.map(|_| ()))
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<RawOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let (Some(code), Some(len)) = (be16(rest, field::CODE), be16(rest, field::LEN)) else {
            self.failed = true;
            return Some(Err(WireError::TruncatedOptionHeader(self.pos)));
        };
        let end = field::DATA + usize::from(len);
        let Some(data) = rest.get(field::DATA..end) else {
            self.failed = true;
            return Some(Err(WireError::OptionPastEnd { code, offset: self.pos }));
        };
        let opt = RawOption { code, data, offset: self.pos };
        self.pos += end;
        Some(Ok(opt))
    }
}

/// The big-endian 16-bit field at `range`, if the buffer holds it.
pub(crate) fn be16(buf: &[u8], range: std::ops::Range<usize>) -> Option<u16> {
    buf.get(range)?.try_into().ok().map(u16::from_be_bytes)
}

/// The big-endian 32-bit field at `range`, if the buffer holds it.
pub(crate) fn be32(buf: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    buf.get(range)?.try_into().ok().map(u32::from_be_bytes)
}

/// The IPv6 address at `range`, if the buffer holds it.
pub(crate) fn addr(buf: &[u8], range: std::ops::Range<usize>) -> Option<std::net::Ipv6Addr> {
    <[u8; 16]>::try_from(buf.get(range)?).ok().map(std::net::Ipv6Addr::from)
}

/// The codes listed in an Option Request option; odd lengths are malformed.
pub fn oro_codes(data: &[u8]) -> Result<impl Iterator<Item = u16> + '_, WireError> {
    if !data.len().is_multiple_of(2) {
        return Err(WireError::BadLength { code: dhcpv6_common::wire::opt::ORO, len: data.len() });
    }
    Ok(data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_options_and_stops_at_a_bad_length() {
        let buf = [0, 1, 0, 2, 0xaa, 0xbb, 0, 8, 0, 5, 1];
        let mut it = OptionIter::new(&buf);
        let first = it.next().unwrap().unwrap();
        assert_eq!((first.code, first.data, first.offset), (1, &[0xaa, 0xbb][..], 0));
        assert_eq!(it.next(), Some(Err(WireError::OptionPastEnd { code: 8, offset: 6 })));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn truncated_header_is_an_error() {
        assert_eq!(OptionIter::validate(&[0, 1, 0]), Err(WireError::TruncatedOptionHeader(0)));
        assert_eq!(OptionIter::validate(&[]), Ok(()));
    }

    #[test]
    fn oro_needs_even_length() {
        assert!(oro_codes(&[0, 23, 0]).is_err());
        assert_eq!(oro_codes(&[0, 23, 0, 24]).unwrap().collect::<Vec<_>>(), vec![23, 24]);
    }
}
