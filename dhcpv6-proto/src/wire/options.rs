//! Walking a DHCPv6 option area (RFC 9915 section 21.1): code, length, data.

use super::WireError;

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
        4 + self.data.len()
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
        if rest.len() < 4 {
            self.failed = true;
            return Some(Err(WireError::TruncatedOptionHeader(self.pos)));
        }
        let code = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let Some(data) = rest.get(4..4 + len) else {
            self.failed = true;
            return Some(Err(WireError::OptionPastEnd { code, offset: self.pos }));
        };
        let opt = RawOption { code, data, offset: self.pos };
        self.pos += 4 + len;
        Some(Ok(opt))
    }
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
