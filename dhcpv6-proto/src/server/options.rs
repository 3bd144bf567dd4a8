//! The configuration options a server hands out, encoded once per interface. The same bytes
//! feed the userspace replies and the XDP program's prebuilt block, so the two cannot drift.

use std::net::Ipv6Addr;

use dhcpv6_common::wire::opt;

use super::typed_options::{self, CustomOption, DnrInstance, VendorOption};
use crate::wire::{domain, writer::encode_option, WireError};

/// When an option goes into a Reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPolicy {
    Always,
    /// Only when the client's Option Request names it (RFC 9915 section 18.3: a server
    /// should not send options the client did not ask for, beyond the usual ones).
    WhenRequested,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredOption {
    pub code: u16,
    pub policy: SendPolicy,
    /// The whole option, header included.
    pub encoded: Vec<u8>,
}

impl ConfiguredOption {
    pub fn selected(&self, requested: &[u16]) -> bool {
        self.policy == SendPolicy::Always || requested.contains(&self.code)
    }

    /// Whether it belongs in a Reply to Information-Request (both paths, XDP and userspace,
    /// ask this): everything but SOL_MAX_RT, which only tunes Solicit retransmission.
    pub fn in_information_reply(&self) -> bool {
        self.code != opt::SOL_MAX_RT
    }

    /// Whether it belongs in an Advertise or a Reply to a stateful message: everything but
    /// the Information Refresh Time, which RFC 9915 section 21.23 allows only in Replies to
    /// Information-Request (stateful clients have T1, T2 and lifetimes instead).
    pub fn in_stateful_reply(&self) -> bool {
        self.code != opt::INFORMATION_REFRESH_TIME
    }
}

/// What one interface (or relayed link) hands out to stateless clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceOptions {
    pub dns: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
    pub ntp: Vec<Ipv6Addr>,
    pub sntp: Vec<Ipv6Addr>,
    /// Information Refresh Time (option 32), seconds.
    pub information_refresh_time: Option<u32>,
    /// INF_MAX_RT (option 83), seconds.
    pub inf_max_rt: Option<u32>,
    /// SOL_MAX_RT (option 82), seconds: sent in every Advertise and Reply to a stateful
    /// message, so that CPEs retrying Solicits after an outage back off to it (odhcpd does
    /// the same); never in a Reply to Information-Request, where it means nothing.
    pub sol_max_rt: Option<u32>,
    /// NTP servers by name: FQDN sub-options (RFC 5908) in the NTP option, after the
    /// addresses.
    pub ntp_fqdn: Vec<String>,
    /// Captive-Portal URI (option 103, RFC 8910), sent when requested.
    pub captive_portal: Option<String>,
    /// Encrypted DNS resolvers (option 144, RFC 9463), one option each, sent when requested.
    pub dnr: Vec<DnrInstance>,
    /// Vendor-specific Information (option 17), one option per enterprise number.
    pub vendor: Vec<VendorOption>,
    /// Raw options, last on the wire, in configuration order.
    pub raw: Vec<CustomOption>,
    /// User Class data (option 15 items) whose clients get no answer; not an option.
    pub ignore_user_classes: Vec<Vec<u8>>,
}

fn policy(always: bool) -> SendPolicy {
    if always {
        SendPolicy::Always
    } else {
        SendPolicy::WhenRequested
    }
}

/// RFC 5908 NTP suboption: server address.
const NTP_SUBOPTION_SRV_ADDR: u16 = 1;

impl ServiceOptions {
    /// Encoded options in the order they go on the wire.
    /// Errors when an option would not fit its 16-bit length (e.g. 4,096 DNS servers, 16
    /// bytes each): refused here, at configuration time, rather than sent truncated.
    pub fn encode(&self) -> Result<Vec<ConfiguredOption>, WireError> {
        let mut out = Vec::new();
        let mut push = |code, policy, data: Vec<u8>| -> Result<(), WireError> {
            out.push(ConfiguredOption { code, policy, encoded: encode_option(code, &data)? });
            Ok(())
        };
        if !self.dns.is_empty() {
            push(opt::DNS_SERVERS, SendPolicy::Always, self.dns.iter().flat_map(|a| a.octets()).collect())?;
        }
        if !self.domains.is_empty() {
            let mut data = Vec::new();
            for d in &self.domains {
                domain::encode(d, &mut data)?;
            }
            push(opt::DOMAIN_LIST, SendPolicy::Always, data)?;
        }
        if let Some(irt) = self.information_refresh_time {
            push(opt::INFORMATION_REFRESH_TIME, SendPolicy::Always, irt.to_be_bytes().to_vec())?;
        }
        if let Some(rt) = self.inf_max_rt {
            push(opt::INF_MAX_RT, SendPolicy::Always, rt.to_be_bytes().to_vec())?;
        }
        if let Some(rt) = self.sol_max_rt {
            push(opt::SOL_MAX_RT, SendPolicy::Always, rt.to_be_bytes().to_vec())?;
        }
        if !self.ntp.is_empty() || !self.ntp_fqdn.is_empty() {
            let mut data = Vec::new();
            for a in &self.ntp {
                data.extend_from_slice(&encode_option(NTP_SUBOPTION_SRV_ADDR, &a.octets())?);
            }
            for name in &self.ntp_fqdn {
                data.extend_from_slice(&typed_options::ntp_fqdn_suboption(name)?);
            }
            push(opt::NTP_SERVER, SendPolicy::WhenRequested, data)?;
        }
        if !self.sntp.is_empty() {
            push(opt::SNTP_SERVERS, SendPolicy::WhenRequested, self.sntp.iter().flat_map(|a| a.octets()).collect())?;
        }
        if let Some(uri) = &self.captive_portal {
            push(typed_options::CAPTIVE_PORTAL, SendPolicy::WhenRequested, uri.as_bytes().to_vec())?;
        }
        for d in &self.dnr {
            // Checked when configured: what is left to fail here is the wire's own limits.
            let data = d.data().map_err(|p| match p {
                typed_options::OptionProblem::Wire(e) => e,
                _ => WireError::BadLength { code: typed_options::V6_DNR, len: 0 },
            })?;
            push(typed_options::V6_DNR, SendPolicy::WhenRequested, data)?;
        }
        for v in &self.vendor {
            push(opt::VENDOR_OPTS, policy(v.always), v.data()?)?;
        }
        for r in &self.raw {
            push(r.code, policy(r.always), r.data.clone())?;
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// DNS, a domain, NTP and both timers: the options the unit tests of the server share.
    pub(crate) fn sample() -> ServiceOptions {
        ServiceOptions {
            dns: vec!["2001:db8::53".parse().unwrap()],
            domains: vec!["example.net".into()],
            ntp: vec!["2001:db8::123".parse().unwrap()],
            information_refresh_time: Some(3600),
            inf_max_rt: Some(600),
            ..Default::default()
        }
    }

    #[test]
    fn encodes_in_order_with_policies() {
        let o = sample().encode().unwrap();
        let codes: Vec<_> = o.iter().map(|o| (o.code, o.policy)).collect();
        assert_eq!(
            codes,
            vec![
                (23, SendPolicy::Always),
                (24, SendPolicy::Always),
                (32, SendPolicy::Always),
                (83, SendPolicy::Always),
                (56, SendPolicy::WhenRequested)
            ]
        );
        assert_eq!(&o[0].encoded[..4], &[0, 23, 0, 16]);
        assert_eq!(o[2].encoded, vec![0, 32, 0, 4, 0, 0, 0x0e, 0x10]);
        assert_eq!(&o[4].encoded[..8], &[0, 56, 0, 20, 0, 1, 0, 16]);
    }

    #[test]
    fn options_longer_than_a_16_bit_length_are_refused_not_truncated() {
        let many = |n: u16| -> Vec<std::net::Ipv6Addr> {
            (0..n).map(|i| std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)).collect()
        };
        // 4,095 servers fill 65,520 bytes: the largest list that fits.
        let fits = ServiceOptions { dns: many(4_095), ..Default::default() }.encode().unwrap();
        assert_eq!(&fits[0].encoded[..4], &[0, 23, 0xff, 0xf0]);
        assert_eq!(fits[0].encoded.len(), 4 + 65_520);
        // 4,096 would be 65,536 bytes, which `as u16` used to write as length 0.
        let e = ServiceOptions { dns: many(4_096), ..Default::default() }.encode().unwrap_err();
        assert_eq!(e, WireError::OptionTooLong { code: opt::DNS_SERVERS, len: 65_536 });
        assert_eq!(e.to_string(), "option 23 of 65536 bytes does not fit a 16-bit length (at most 65,535)");
        let e = ServiceOptions { sntp: many(4_096), ..Default::default() }.encode().unwrap_err();
        assert_eq!(e, WireError::OptionTooLong { code: opt::SNTP_SERVERS, len: 65_536 });
        // NTP: 20 bytes per server, so 3,277 is one too many.
        let e = ServiceOptions { ntp: many(3_277), ..Default::default() }.encode().unwrap_err();
        assert_eq!(e, WireError::OptionTooLong { code: opt::NTP_SERVER, len: 65_540 });
    }
}
