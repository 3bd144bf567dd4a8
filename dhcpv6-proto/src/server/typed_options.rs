//! Operator-supplied options beyond DNS, domains and timers: raw options (code + bytes) and
//! typed forms of the common ones, each checked when configured (`check`) and encoded
//! byte for byte as its RFC lays it out (`encode`). `ServiceOptions::encode` places them.

use std::net::Ipv6Addr;

use dhcpv6_common::wire::opt;

use crate::wire::{domain, writer::encode_option, WireError};

/// RFC 8910 Captive-Portal option.
pub const CAPTIVE_PORTAL: u16 = 103;
/// RFC 9463 OPTION_V6_DNR.
pub const V6_DNR: u16 = 144;
/// RFC 5908 NTP sub-option: server FQDN.
pub const NTP_SUBOPTION_SRV_FQDN: u16 = 3;
/// RFC 8910 section 2: the URI that says "there is no captive portal here".
pub const CAPPORT_UNRESTRICTED: &str = "urn:ietf:params:capport:unrestricted";

/// Codes a raw option may not carry: the message structure and the identifiers (the server
/// writes those itself), and the options it builds from keys of its own (a raw one would
/// be a second copy).
pub const SERVER_MANAGED: &[u16] = &[
    0,
    opt::CLIENTID,
    opt::SERVERID,
    opt::IA_NA,
    opt::IA_TA,
    opt::IAADDR,
    opt::ORO,
    opt::ELAPSED_TIME,
    opt::RELAY_MSG,
    opt::AUTH,
    opt::UNICAST,
    opt::STATUS_CODE,
    opt::RAPID_COMMIT,
    opt::USER_CLASS,
    opt::INTERFACE_ID,
    opt::RECONF_MSG,
    opt::RECONF_ACCEPT,
    opt::DNS_SERVERS,
    opt::DOMAIN_LIST,
    opt::IA_PD,
    opt::IAPREFIX,
    opt::INFORMATION_REFRESH_TIME,
    opt::SOL_MAX_RT,
    opt::INF_MAX_RT,
];

/// Why a configured option is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionProblem {
    #[error("option code {0} is written by the server itself (or has a key of its own)")]
    ServerManaged(u16),
    #[error("{0:?} is not CODE:HEX")]
    NotCodeHex(String),
    #[error("captive portal URI {0:?} is neither an https URI nor {CAPPORT_UNRESTRICTED}")]
    CaptivePortal(String),
    #[error("DNR service priority 0 is AliasMode in RFC 9460, which DNR has no use for")]
    DnrPriority,
    #[error("DNR without addresses is ADN-only: it takes no alpn, port or dohpath")]
    DnrAdnOnlyWithParams,
    #[error("DNR with addresses needs alpn (RFC 9463: the client needs the protocol)")]
    DnrNoAlpn,
    #[error("DNR alpn {0:?} is not 1 to 255 bytes")]
    DnrAlpn(String),
    #[error("raw option {0} is given twice in one table")]
    DuplicateRaw(u16),
    #[error("user class {0:?} is not 1 to 65535 bytes")]
    UserClass(String),
    #[error("{0}")]
    Wire(#[from] WireError),
}

/// An option given as code and bytes (`--option CODE:HEX`, `[[interface.option]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomOption {
    pub code: u16,
    pub data: Vec<u8>,
    /// Sent in every reply; else only when the client's Option Request names it.
    pub always: bool,
}

impl CustomOption {
    pub fn check(&self) -> Result<(), OptionProblem> {
        if SERVER_MANAGED.contains(&self.code) {
            return Err(OptionProblem::ServerManaged(self.code));
        }
        encode_option(self.code, &self.data)?;
        Ok(())
    }
}

impl std::str::FromStr for CustomOption {
    type Err = OptionProblem;

    /// `CODE:HEX` (`--option`; always sent). The hex may have `:` or `-` between bytes and
    /// may be empty (an option with no data).
    fn from_str(s: &str) -> Result<Self, OptionProblem> {
        let bad = || OptionProblem::NotCodeHex(s.to_owned());
        let (code, hex) = s.split_once(':').ok_or_else(bad)?;
        let code: u16 = code.trim().parse().map_err(|_| bad())?;
        let data = parse_hex(hex).ok_or_else(bad)?;
        let o = CustomOption { code, data, always: true };
        o.check()?;
        Ok(o)
    }
}

/// Hex bytes, with `:`, `-` or spaces between them or not; empty is no bytes.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let t: String = s.chars().filter(|c| !matches!(c, ':' | '-' | ' ')).collect();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    (0..t.len()).step_by(2).map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// RFC 8910: an https URI, or the URN for "no portal".
pub fn check_captive_portal(uri: &str) -> Result<(), OptionProblem> {
    let printable = !uri.is_empty() && uri.bytes().all(|b| b.is_ascii_graphic());
    let https = uri.len() > "https://".len() && uri.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if printable && (https || uri == CAPPORT_UNRESTRICTED) {
        Ok(())
    } else {
        Err(OptionProblem::CaptivePortal(uri.to_owned()))
    }
}

/// One encrypted DNS resolver (RFC 9463 OPTION_V6_DNR, one option per instance).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnrInstance {
    pub priority: u16,
    /// Authentication domain name.
    pub adn: String,
    /// Empty: ADN-only mode (the client resolves the ADN itself).
    pub addresses: Vec<Ipv6Addr>,
    /// SvcParams (RFC 9460): `alpn` (key 1), `port` (key 3), `dohpath` (key 7, RFC 9461).
    pub alpn: Vec<String>,
    pub port: Option<u16>,
    pub dohpath: Option<String>,
}

const SVC_ALPN: u16 = 1;
const SVC_PORT: u16 = 3;
const SVC_DOHPATH: u16 = 7;

impl DnrInstance {
    pub fn check(&self) -> Result<(), OptionProblem> {
        self.data().map(|_| ())
    }

    /// The option's data (RFC 9463 section 4.1): Service Priority, ADN Length, ADN, then,
    /// unless ADN-only, Addr Length, the addresses and the SvcParams in key order.
    pub fn data(&self) -> Result<Vec<u8>, OptionProblem> {
        if self.priority == 0 {
            return Err(OptionProblem::DnrPriority);
        }
        let mut adn = Vec::new();
        domain::encode(&self.adn, &mut adn)?;
        let mut d = self.priority.to_be_bytes().to_vec();
        d.extend_from_slice(&len16(adn.len(), V6_DNR)?.to_be_bytes());
        d.extend_from_slice(&adn);
        let has_params = !self.alpn.is_empty() || self.port.is_some() || self.dohpath.is_some();
        if self.addresses.is_empty() {
            return if has_params { Err(OptionProblem::DnrAdnOnlyWithParams) } else { Ok(d) };
        }
        if self.alpn.is_empty() {
            return Err(OptionProblem::DnrNoAlpn);
        }
        d.extend_from_slice(&len16(self.addresses.len() * 16, V6_DNR)?.to_be_bytes());
        d.extend(self.addresses.iter().flat_map(|a| a.octets()));
        let mut alpn = Vec::new();
        for id in &self.alpn {
            let n = u8::try_from(id.len()).ok().filter(|n| *n > 0).ok_or_else(|| OptionProblem::DnrAlpn(id.clone()))?;
            alpn.push(n);
            alpn.extend_from_slice(id.as_bytes());
        }
        svc_param(&mut d, SVC_ALPN, &alpn)?;
        if let Some(p) = self.port {
            svc_param(&mut d, SVC_PORT, &p.to_be_bytes())?;
        }
        if let Some(path) = &self.dohpath {
            svc_param(&mut d, SVC_DOHPATH, path.as_bytes())?;
        }
        Ok(d)
    }
}

fn len16(len: usize, code: u16) -> Result<u16, WireError> {
    u16::try_from(len).map_err(|_| WireError::OptionTooLong { code, len })
}

fn svc_param(out: &mut Vec<u8>, key: u16, value: &[u8]) -> Result<(), WireError> {
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&len16(value.len(), V6_DNR)?.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Vendor-specific Information (RFC 9915 section 21.17): an enterprise number and its
/// sub-options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorOption {
    pub enterprise: u32,
    pub suboptions: Vec<(u16, Vec<u8>)>,
    /// Sent in every reply; else only when the Option Request names option 17.
    pub always: bool,
}

impl VendorOption {
    pub fn check(&self) -> Result<(), OptionProblem> {
        encode_option(opt::VENDOR_OPTS, &self.data()?)?;
        Ok(())
    }

    pub fn data(&self) -> Result<Vec<u8>, WireError> {
        let mut d = self.enterprise.to_be_bytes().to_vec();
        for (code, data) in &self.suboptions {
            d.extend_from_slice(&encode_option(*code, data)?);
        }
        Ok(d)
    }
}

/// The NTP Server option's sub-option for a server FQDN (RFC 5908 section 4: uncompressed).
pub fn ntp_fqdn_suboption(name: &str) -> Result<Vec<u8>, WireError> {
    let mut d = Vec::new();
    domain::encode(name, &mut d)?;
    encode_option(NTP_SUBOPTION_SRV_FQDN, &d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_hex_parses_and_refuses() {
        let o: CustomOption = "100:0a:0b-0c".parse().unwrap();
        assert_eq!(o, CustomOption { code: 100, data: vec![10, 11, 12], always: true });
        assert_eq!("200:".parse::<CustomOption>().unwrap().data, Vec::<u8>::new());
        assert_eq!("100:0g".parse::<CustomOption>(), Err(OptionProblem::NotCodeHex("100:0g".into())));
        assert_eq!("100:abc".parse::<CustomOption>(), Err(OptionProblem::NotCodeHex("100:abc".into())));
        assert_eq!("70000:00".parse::<CustomOption>(), Err(OptionProblem::NotCodeHex("70000:00".into())));
        assert_eq!("0a0b".parse::<CustomOption>(), Err(OptionProblem::NotCodeHex("0a0b".into())));
        assert_eq!("2:0001".parse::<CustomOption>(), Err(OptionProblem::ServerManaged(2)));
        assert_eq!("23:00".parse::<CustomOption>(), Err(OptionProblem::ServerManaged(23)));
    }

    #[test]
    fn captive_portal_is_https_or_the_urn() {
        assert!(check_captive_portal("https://portal.example/api").is_ok());
        assert!(check_captive_portal(CAPPORT_UNRESTRICTED).is_ok());
        for bad in ["http://portal.example/", "https://", "", "https://a b", "portal.example"] {
            assert!(check_captive_portal(bad).is_err(), "{bad}");
        }
    }

    /// RFC 9463 section 4.1, field by field.
    #[test]
    fn dnr_encodes_as_rfc_9463_lays_it_out() {
        let d = DnrInstance {
            priority: 1,
            adn: "dns.example".into(),
            addresses: vec!["2001:db8::1".parse().unwrap()],
            alpn: vec!["dot".into(), "h2".into()],
            port: Some(853),
            dohpath: Some("/q{?dns}".into()),
        };
        let mut want = vec![0, 1, 0, 13, 3, b'd', b'n', b's', 7];
        want.extend_from_slice(b"example");
        want.push(0);
        want.extend_from_slice(&[0, 16]);
        want.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        want.extend_from_slice(&[0, 1, 0, 7, 3, b'd', b'o', b't', 2, b'h', b'2']);
        want.extend_from_slice(&[0, 3, 0, 2, 0x03, 0x55]);
        want.extend_from_slice(&[0, 7, 0, 8]);
        want.extend_from_slice(b"/q{?dns}");
        assert_eq!(d.data().unwrap(), want);
    }

    #[test]
    fn dnr_adn_only_has_priority_and_name_alone() {
        let d = DnrInstance { priority: 7, adn: "r.example".into(), ..Default::default() };
        let mut want = vec![0, 7, 0, 11, 1, b'r', 7];
        want.extend_from_slice(b"example");
        want.push(0);
        assert_eq!(d.data().unwrap(), want);
        let with_port = DnrInstance { port: Some(853), ..d.clone() };
        assert_eq!(with_port.check(), Err(OptionProblem::DnrAdnOnlyWithParams));
        assert_eq!(DnrInstance { priority: 0, ..d.clone() }.check(), Err(OptionProblem::DnrPriority));
        let no_alpn = DnrInstance { addresses: vec![Ipv6Addr::LOCALHOST], ..d.clone() };
        assert_eq!(no_alpn.check(), Err(OptionProblem::DnrNoAlpn));
        let empty_alpn = DnrInstance { alpn: vec![String::new()], ..no_alpn };
        assert_eq!(empty_alpn.check(), Err(OptionProblem::DnrAlpn(String::new())));
        assert!(matches!(DnrInstance { adn: "a..b".into(), ..d }.check(), Err(OptionProblem::Wire(_))));
    }

    #[test]
    fn vendor_option_is_enterprise_then_suboptions() {
        let v = VendorOption { enterprise: 4491, suboptions: vec![(1, vec![0xaa]), (32, vec![])], always: false };
        assert_eq!(v.data().unwrap(), vec![0, 0, 0x11, 0x8b, 0, 1, 0, 1, 0xaa, 0, 32, 0, 0]);
        let huge = VendorOption { suboptions: vec![(1, vec![0; 65_531])], ..v };
        assert!(huge.check().is_err());
    }

    #[test]
    fn ntp_fqdn_suboption_is_type_3_uncompressed() {
        let mut want = vec![0, 3, 0, 17, 3, b'n', b't', b'p', 7];
        want.extend_from_slice(b"example");
        want.extend_from_slice(&[3, b'n', b'e', b't', 0]);
        assert_eq!(ntp_fqdn_suboption("ntp.example.net").unwrap(), want);
    }
}
