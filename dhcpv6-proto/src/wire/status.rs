//! The Status Code option (RFC 9915 section 21.13): a 16-bit code and a UTF-8 message.

use dhcpv6_common::wire::opt;

use super::{options::be16, WireError, Writer};

/// Byte ranges of the option's data.
pub(crate) mod field {
    use std::ops::{Range, RangeFrom};

    pub const CODE: Range<usize> = 0..2;
    pub const MESSAGE: RangeFrom<usize> = 2..;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCode {
    pub code: u16,
    /// For people; the RFC asks for UTF-8 and so does this parser.
    pub message: String,
}

impl StatusCode {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// From the option's data.
    pub fn parse(data: &[u8]) -> Result<Self, WireError> {
        let code = be16(data, field::CODE).ok_or(WireError::BadLength { code: opt::STATUS_CODE, len: data.len() })?;
        let message = std::str::from_utf8(&data[field::MESSAGE]).map_err(|_| WireError::StatusNotUtf8)?;
        Ok(Self { code, message: message.to_owned() })
    }

    pub fn emit(&self, w: &mut Writer) {
        emit(w, self.code, &self.message);
    }
}

/// A Status Code option from its parts, for writers that hold no [`StatusCode`].
pub(crate) fn emit(w: &mut Writer, code: u16, message: &str) {
    let o = w.begin(opt::STATUS_CODE);
    w.bytes(&code.to_be_bytes()).bytes(message.as_bytes());
    w.end(o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcpv6_common::wire::status;

    #[test]
    fn literal_bytes() {
        // NoAddrsAvail, "none": option 13, length 6.
        let mut w = Writer::default();
        StatusCode::new(status::NO_ADDRS_AVAIL, "none").emit(&mut w);
        assert_eq!(w.finish().unwrap(), [0, 13, 0, 6, 0, 2, b'n', b'o', b'n', b'e']);
        assert_eq!(StatusCode::parse(&[0, 2, b'n', b'o', b'n', b'e']).unwrap(), StatusCode::new(2, "none"));
        assert_eq!(StatusCode::parse(&[0, 6]).unwrap(), StatusCode::new(status::NO_PREFIX_AVAIL, ""));
    }

    #[test]
    fn short_or_not_utf8_is_an_error() {
        assert_eq!(StatusCode::parse(&[0]), Err(WireError::BadLength { code: opt::STATUS_CODE, len: 1 }));
        assert_eq!(StatusCode::parse(&[0, 0, 0xff, 0xfe]), Err(WireError::StatusNotUtf8));
    }
}
