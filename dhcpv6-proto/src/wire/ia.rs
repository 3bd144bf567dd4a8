//! Identity Associations (RFC 9915 sections 21.4, 21.6, 21.21, 21.22): IA_NA holding IA
//! Addresses, IA_PD holding IA Prefixes, each level with an optional Status Code.
//!
//! The IA itself and its addresses or prefixes are parsed strictly: a short one is an error.
//! Status Code sub-options are advisory (a client has no business sending one, and a server
//! reads past it): the first well-formed one is kept, a malformed one is skipped, and so is
//! a malformed option area after an address's or prefix's fixed fields, as this server has
//! always done.

use std::net::Ipv6Addr;

use dhcpv6_common::wire::opt;

use super::{
    options::{addr, be32, Options},
    status::StatusCode,
    OptionIter, RawOption, WireError, Writer,
};

/// Byte ranges of IA_NA and IA_PD data.
pub(crate) mod field {
    use std::ops::{Range, RangeFrom};

    pub const IAID: Range<usize> = 0..4;
    pub const T1: Range<usize> = 4..8;
    pub const T2: Range<usize> = 8..12;
    pub const OPTIONS: RangeFrom<usize> = 12..;
}

/// Byte ranges of IA Address data.
pub(crate) mod address_field {
    use std::ops::{Range, RangeFrom};

    pub const ADDR: Range<usize> = 0..16;
    pub const PREFERRED: Range<usize> = 16..20;
    pub const VALID: Range<usize> = 20..24;
    pub const OPTIONS: RangeFrom<usize> = 24..;
}

/// Byte ranges of IA Prefix data.
pub(crate) mod prefix_field {
    use std::ops::{Range, RangeFrom};

    pub const PREFERRED: Range<usize> = 0..4;
    pub const VALID: Range<usize> = 4..8;
    pub const PREFIX_LEN: usize = 8;
    pub const PREFIX: Range<usize> = 9..25;
    pub const OPTIONS: RangeFrom<usize> = 25..;
}

/// What an IA holds: addresses in an IA_NA, prefixes in an IA_PD.
pub trait IaLease: Sized {
    /// The IA option that holds this kind.
    const IA_CODE: u16;
    /// This option's own code.
    const CODE: u16;
    fn parse(data: &[u8]) -> Result<Self, WireError>;
    fn emit(&self, w: &mut Writer);
}

/// An IA_NA or IA_PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ia<L> {
    pub iaid: u32,
    pub t1: u32,
    pub t2: u32,
    pub leases: Vec<L>,
    pub status: Option<StatusCode>,
}

pub type IaNa = Ia<IaAddress>;
pub type IaPd = Ia<IaPrefix>;

impl<L: IaLease> Ia<L> {
    /// From the option's data. Sub-options other than addresses (prefixes) and Status Code
    /// are skipped.
    pub fn parse(data: &[u8]) -> Result<Self, WireError> {
        let (Some(iaid), Some(t1), Some(t2)) = (be32(data, field::IAID), be32(data, field::T1), be32(data, field::T2))
        else {
            return Err(WireError::BadLength { code: L::IA_CODE, len: data.len() });
        };
        let options = Options::after_header(data, field::OPTIONS.start)?;
        let leases =
            options.iter().filter(|o| o.code == L::CODE).map(|o| L::parse(o.data)).collect::<Result<_, _>>()?;
        Ok(Self { iaid, t1, t2, leases, status: advisory_status(options.iter()) })
    }

    pub fn emit(&self, w: &mut Writer) {
        let fixed = [self.iaid.to_be_bytes(), self.t1.to_be_bytes(), self.t2.to_be_bytes()];
        emit_container(w, L::IA_CODE, &fixed.concat(), &self.status, |w| self.leases.iter().for_each(|l| l.emit(w)));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaAddress {
    pub addr: Ipv6Addr,
    pub preferred: u32,
    pub valid: u32,
    pub status: Option<StatusCode>,
}

impl IaLease for IaAddress {
    const IA_CODE: u16 = opt::IA_NA;
    const CODE: u16 = opt::IAADDR;

    fn parse(data: &[u8]) -> Result<Self, WireError> {
        use address_field as f;
        let (Some(addr), Some(preferred), Some(valid)) =
            (addr(data, f::ADDR), be32(data, f::PREFERRED), be32(data, f::VALID))
        else {
            return Err(WireError::BadLength { code: Self::CODE, len: data.len() });
        };
        Ok(Self { addr, preferred, valid, status: lenient_status(&data[f::OPTIONS]) })
    }

    fn emit(&self, w: &mut Writer) {
        let fixed = [&self.addr.octets()[..], &self.preferred.to_be_bytes(), &self.valid.to_be_bytes()];
        emit_container(w, Self::CODE, &fixed.concat(), &self.status, |_| {});
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaPrefix {
    pub preferred: u32,
    pub valid: u32,
    /// 0 to 128 (0 with a prefix: a hint without a length, RFC 8168).
    pub prefix_len: u8,
    pub prefix: Ipv6Addr,
    pub status: Option<StatusCode>,
}

impl IaLease for IaPrefix {
    const IA_CODE: u16 = opt::IA_PD;
    const CODE: u16 = opt::IAPREFIX;

    fn parse(data: &[u8]) -> Result<Self, WireError> {
        use prefix_field as f;
        let (Some(preferred), Some(valid), Some(&prefix_len), Some(prefix)) =
            (be32(data, f::PREFERRED), be32(data, f::VALID), data.get(f::PREFIX_LEN), addr(data, f::PREFIX))
        else {
            return Err(WireError::BadLength { code: Self::CODE, len: data.len() });
        };
        if prefix_len > 128 {
            return Err(WireError::PrefixLength(prefix_len));
        }
        Ok(Self { preferred, valid, prefix_len, prefix, status: lenient_status(&data[f::OPTIONS]) })
    }

    fn emit(&self, w: &mut Writer) {
        let fixed =
            [&self.preferred.to_be_bytes()[..], &self.valid.to_be_bytes(), &[self.prefix_len], &self.prefix.octets()];
        emit_container(w, Self::CODE, &fixed.concat(), &self.status, |_| {});
    }
}

/// The shape every option of this module has: fixed fields, sub-options, then the Status
/// Code if there is one.
fn emit_container(
    w: &mut Writer,
    code: u16,
    fixed: &[u8],
    status: &Option<StatusCode>,
    sub_options: impl FnOnce(&mut Writer),
) {
    let o = w.begin(code);
    w.bytes(fixed);
    sub_options(w);
    if let Some(s) = status {
        s.emit(w);
    }
    w.end(o);
}

/// The first well-formed Status Code among `options`.
fn advisory_status<'a>(mut options: impl Iterator<Item = RawOption<'a>>) -> Option<StatusCode> {
    options.find_map(|o| (o.code == opt::STATUS_CODE).then(|| StatusCode::parse(o.data).ok()).flatten())
}

/// [`advisory_status`] over an option area not validated beforehand: it stops at the first
/// structural error.
fn lenient_status(area: &[u8]) -> Option<StatusCode> {
    advisory_status(OptionIter::new(area).map_while(Result::ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcpv6_common::wire::status;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn bytes(emit: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        emit(&mut w);
        w.finish().unwrap()
    }

    /// IA_NA (RFC 9915 section 21.4) with one IA Address (section 21.6).
    const IA_NA: &[u8] = &[
        0, 3, 0, 40, // IA_NA, 40 bytes
        0xde, 0xad, 0xbe, 0xef, 0, 0, 0x0e, 0x10, 0, 0, 0x15, 0x18, // IAID, T1 3600, T2 5400
        0, 5, 0, 24, // IAADDR, 24 bytes
        0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42, // 2001:db8::42
        0, 0, 0x1c, 0x20, 0, 0, 0x2a, 0x30, // preferred 7200, valid 10800
    ];

    /// IA_PD (RFC 9915 section 21.21) with one IA Prefix (section 21.22) and a Status Code.
    const IA_PD: &[u8] = &[
        0, 25, 0, 51, // IA_PD, 51 bytes
        0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, // IAID 7, T1 0, T2 0
        0, 26, 0, 25, // IAPREFIX, 25 bytes
        0, 0, 0, 0, 0, 0, 0, 0, 56, // lifetimes 0, length 56
        0x20, 1, 0x0d, 0xb8, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 2001:db8:1:ff00::
        0, 13, 0, 6, 0, 6, b'n', b'o', b'n', b'e', // NoPrefixAvail "none"
    ];

    #[test]
    fn ia_na_literal_bytes() {
        let ia = IaNa::parse(&IA_NA[4..]).unwrap();
        let expected = IaNa {
            iaid: 0xdeadbeef,
            t1: 3600,
            t2: 5400,
            leases: vec![IaAddress { addr: ip("2001:db8::42"), preferred: 7200, valid: 10800, status: None }],
            status: None,
        };
        assert_eq!(ia, expected);
        assert_eq!(bytes(|w| ia.emit(w)), IA_NA);
    }

    #[test]
    fn ia_pd_literal_bytes() {
        let ia = IaPd::parse(&IA_PD[4..]).unwrap();
        let prefix = IaPrefix { preferred: 0, valid: 0, prefix_len: 56, prefix: ip("2001:db8:1:ff00::"), status: None };
        let expected = IaPd {
            iaid: 7,
            t1: 0,
            t2: 0,
            leases: vec![prefix],
            status: Some(StatusCode::new(status::NO_PREFIX_AVAIL, "none")),
        };
        assert_eq!(ia, expected);
        assert_eq!(bytes(|w| ia.emit(w)), IA_PD);
    }

    #[test]
    fn short_fields_are_errors() {
        assert_eq!(IaNa::parse(&[0; 11]), Err(WireError::BadLength { code: opt::IA_NA, len: 11 }));
        assert_eq!(IaPd::parse(&[0; 3]), Err(WireError::BadLength { code: opt::IA_PD, len: 3 }));
        let mut short_addr = vec![0; 12];
        short_addr.extend_from_slice(&[0, 5, 0, 23]);
        short_addr.extend_from_slice(&[0; 23]);
        assert_eq!(IaNa::parse(&short_addr), Err(WireError::BadLength { code: opt::IAADDR, len: 23 }));
        assert_eq!(IaPrefix::parse(&[0; 24]), Err(WireError::BadLength { code: opt::IAPREFIX, len: 24 }));
        let mut long_len = [0; 25];
        long_len[prefix_field::PREFIX_LEN] = 129;
        assert_eq!(IaPrefix::parse(&long_len), Err(WireError::PrefixLength(129)));
        // A sub-option running past the IA is a structural error.
        let mut past = vec![0; 12];
        past.extend_from_slice(&[0, 5, 0, 30, 1]);
        assert!(matches!(IaNa::parse(&past), Err(WireError::OptionPastEnd { code: 5, .. })));
    }

    #[test]
    fn malformed_status_sub_options_are_skipped() {
        // An IA Address with a one-byte Status Code, then a cut-off option header.
        let mut a = IA_NA[8 + 12..].to_vec();
        a.extend_from_slice(&[0, 13, 0, 1, 0, 0, 9]);
        let parsed = IaAddress::parse(&a).unwrap();
        assert_eq!(parsed.status, None);
        let mut ia = IA_NA[4..16].to_vec();
        ia.extend_from_slice(&[0, 13, 0, 1, 0, 0, 13, 0, 2, 0, 3]);
        assert_eq!(IaNa::parse(&ia).unwrap().status, Some(StatusCode::new(status::NO_BINDING, "")));
    }

    #[test]
    fn an_address_with_its_own_status() {
        let a = IaAddress {
            addr: ip("2001:db8::1"),
            preferred: 0,
            valid: 0,
            status: Some(StatusCode::new(status::NOT_ON_LINK, "moved")),
        };
        let b = bytes(|w| a.emit(w));
        assert_eq!(&b[..4], &[0, 5, 0, 24 + 4 + 2 + 5]);
        assert_eq!(IaAddress::parse(&b[4..]).unwrap(), a);
    }
}
