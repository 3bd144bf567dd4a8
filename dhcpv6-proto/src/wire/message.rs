//! Client/server messages (RFC 9915 section 8): a checked view, [`Message`], and an owned
//! representation, [`Repr`]. `parse` validates the whole option area once, so the accessors
//! that follow cannot fail.

use dhcpv6_common::wire::opt;

use super::{
    ia::{IaNa, IaPd},
    options::Options,
    status::StatusCode,
    RawOption, WireError, Writer,
};

/// Byte ranges of the message header.
pub(crate) mod field {
    use std::ops::{Range, RangeFrom};

    pub const MSG_TYPE: usize = 0;
    pub const XID: Range<usize> = 1..4;
    pub const OPTIONS: RangeFrom<usize> = 4..;
}

/// A client/server message: type, transaction id, options.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    options: Options<'a>,
}

impl<'a> Message<'a> {
    pub const HEADER_LEN: usize = field::OPTIONS.start;

    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        Ok(Self { buf, options: Options::after_header(buf, Self::HEADER_LEN)? })
    }

    pub fn msg_type(&self) -> u8 {
        self.buf[field::MSG_TYPE]
    }

    pub fn xid(&self) -> [u8; 3] {
        let mut x = [0; 3];
        x.copy_from_slice(&self.buf[field::XID]);
        x
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The options, in wire order (already validated).
    pub fn options(&self) -> impl Iterator<Item = RawOption<'a>> + 'a {
        self.options.iter()
    }

    /// Data of the first option with `code`.
    pub fn find(&self, code: u16) -> Option<&'a [u8]> {
        self.options.find(code)
    }

    pub fn count(&self, code: u16) -> usize {
        self.options.count(code)
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

/// One option of a message, typed where this codec knows its structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpOption {
    IaNa(IaNa),
    IaPd(IaPd),
    StatusCode(StatusCode),
    /// Any other option, data as it is.
    Other {
        code: u16,
        data: Vec<u8>,
    },
}

impl DhcpOption {
    pub fn parse(o: RawOption<'_>) -> Result<Self, WireError> {
        Ok(match o.code {
            opt::IA_NA => Self::IaNa(IaNa::parse(o.data)?),
            opt::IA_PD => Self::IaPd(IaPd::parse(o.data)?),
            opt::STATUS_CODE => Self::StatusCode(StatusCode::parse(o.data)?),
            code => Self::Other { code, data: o.data.to_vec() },
        })
    }

    pub fn emit(&self, w: &mut Writer) {
        match self {
            Self::IaNa(ia) => ia.emit(w),
            Self::IaPd(ia) => ia.emit(w),
            Self::StatusCode(s) => s.emit(w),
            Self::Other { code, data } => {
                w.option(*code, data);
            }
        }
    }
}

/// A client/server message, owned: what tools and tests build and compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub msg_type: u8,
    pub xid: [u8; 3],
    pub options: Vec<DhcpOption>,
}

impl Repr {
    pub fn parse(m: &Message<'_>) -> Result<Self, WireError> {
        let options = m.options().map(DhcpOption::parse).collect::<Result<_, _>>()?;
        Ok(Self { msg_type: m.msg_type(), xid: m.xid(), options })
    }

    pub fn emit(&self) -> Result<Vec<u8>, WireError> {
        let mut w = Writer::message(self.msg_type, self.xid);
        self.options.iter().for_each(|o| o.emit(&mut w));
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcpv6_common::wire::msg;

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
    fn repr_of_a_reply_with_an_ia_and_a_status() {
        // Reply, xid 010203; IA_NA iaid 1, T1 3600, T2 5400 with one IAADDR 2001:db8::5
        // (preferred 7200, valid 10800) and a Status Code 0 "ok"; top-level Status Code 0.
        let mut b = vec![msg::REPLY, 1, 2, 3, 0, 3, 0, 48, 0, 0, 0, 1, 0, 0, 0x0e, 0x10, 0, 0, 0x15, 0x18];
        b.extend_from_slice(&[0, 5, 0, 24, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        b.extend_from_slice(&[0, 0, 0x1c, 0x20, 0, 0, 0x2a, 0x30]);
        b.extend_from_slice(&[0, 13, 0, 4, 0, 0, b'o', b'k']);
        b.extend_from_slice(&[0, 13, 0, 2, 0, 0, 0, 99, 0, 1, 7]);
        let r = Repr::parse(&Message::parse(&b).unwrap()).unwrap();
        let ia = crate::wire::IaNa {
            iaid: 1,
            t1: 3600,
            t2: 5400,
            leases: vec![crate::wire::IaAddress {
                addr: "2001:db8::5".parse().unwrap(),
                preferred: 7200,
                valid: 10800,
                status: None,
            }],
            status: Some(StatusCode { code: 0, message: "ok".into() }),
        };
        assert_eq!(
            r.options,
            vec![
                DhcpOption::IaNa(ia),
                DhcpOption::StatusCode(StatusCode { code: 0, message: String::new() }),
                DhcpOption::Other { code: 99, data: vec![7] },
            ]
        );
        assert_eq!(r.emit().unwrap(), b);
    }
}
