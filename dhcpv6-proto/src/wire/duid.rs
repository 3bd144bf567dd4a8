//! DHCP Unique Identifiers (RFC 9915 section 11).

use std::fmt;

use dhcpv6_common::wire::{DUID_LL, DUID_MAX_LEN, DUID_MIN_LEN, HWTYPE_ETHERNET};

use super::WireError;

/// A DUID of valid length (3 to 130 bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duid(Vec<u8>);

impl Duid {
    pub fn new(bytes: &[u8]) -> Result<Self, WireError> {
        if !(DUID_MIN_LEN..=DUID_MAX_LEN).contains(&bytes.len()) {
            return Err(WireError::DuidLength(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// DUID-LL from an Ethernet MAC: stable for as long as the interface keeps its address,
    /// with no state file to lose (odhcpd does the same).
    pub fn from_mac(mac: [u8; 6]) -> Self {
        let mut v = Vec::with_capacity(10);
        v.extend_from_slice(&DUID_LL.to_be_bytes());
        v.extend_from_slice(&HWTYPE_ETHERNET.to_be_bytes());
        v.extend_from_slice(&mac);
        Self(v)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Result<Self, WireError> {
        let s: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        if !s.len().is_multiple_of(2) {
            return Err(WireError::DuidLength(s.len() / 2));
        }
        let bytes: Option<Vec<u8>> =
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect();
        Self::new(&bytes.ok_or(WireError::DuidLength(0))?)
    }
}

impl fmt::Debug for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duid({})", self.to_hex())
    }
}

impl fmt::Display for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duid_ll_layout() {
        let d = Duid::from_mac([2, 0, 0, 0, 0, 1]);
        assert_eq!(d.as_bytes(), &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(Duid::from_hex(&d.to_hex()).unwrap(), d);
    }

    #[test]
    fn length_limits() {
        assert!(Duid::new(&[0, 1]).is_err());
        assert!(Duid::new(&[0; 3]).is_ok());
        assert!(Duid::new(&[0; 130]).is_ok());
        assert!(Duid::new(&[0; 131]).is_err());
    }
}
