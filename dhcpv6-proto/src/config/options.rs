//! The stateless options of a served interface, as layers: the command line over the
//! interface's table over `[defaults]`, then the host's resolv.conf for DNS and domains and
//! the RFC defaults for the timers. A layer says only what it sets; `resolve` fills the rest.
//!
//! A `[[link]]` that sets any of these keys is a layer of its own over `[defaults]` (a link
//! is under no interface), for the relayed clients on it; `ServiceOptions` is what the
//! server encodes. Every list replaces the one below it, except raw options, which are
//! merged by code (a layer's option replaces the one of the same code below it).

use std::net::Ipv6Addr;

use crate::{
    resolv::HostResolver,
    server::{
        typed_options::{self, CustomOption, DnrInstance, OptionProblem, VendorOption},
        ServiceOptions,
    },
    wire::domain,
};

use super::{file, file::Source, ConfigError, Reason};

/// RFC 9915 defaults: IRT_DEFAULT 86400 s, INF_MAX_RT 3600 s.
pub const DEFAULT_IRT: u32 = 86_400;
pub const DEFAULT_INF_MAX_RT: u32 = 3_600;

/// Options one layer sets; `None`: the layer below decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OptionLayer {
    pub dns: Option<Vec<Ipv6Addr>>,
    /// Each one encodes as a domain name (checked when the layer is built).
    pub domains: Option<Vec<String>>,
    pub ntp: Option<Vec<Ipv6Addr>>,
    pub sntp: Option<Vec<Ipv6Addr>>,
    pub information_refresh_time: Option<u32>,
    pub inf_max_rt: Option<u32>,
    /// Checked to lie in 60..=86400 when the layer is built.
    pub sol_max_rt: Option<u32>,
    pub ntp_fqdn: Option<Vec<String>>,
    pub captive_portal: Option<String>,
    pub dnr: Option<Vec<DnrInstance>>,
    pub vendor: Option<Vec<VendorOption>>,
    /// Merged by code with the layer below (see the module doc).
    pub raw: Vec<CustomOption>,
    pub ignore_user_classes: Option<Vec<Vec<u8>>>,
}

/// A User Class to ignore, as bytes: any non-empty text.
pub(crate) fn user_class(text: &str) -> Result<Vec<u8>, OptionProblem> {
    if text.is_empty() || text.len() > usize::from(u16::MAX) {
        return Err(OptionProblem::UserClass(text.to_owned()));
    }
    Ok(text.as_bytes().to_vec())
}

/// A vendor sub-option, `CODE:HEX`.
fn suboption(s: &str) -> Result<(u16, Vec<u8>), OptionProblem> {
    let bad = || OptionProblem::NotCodeHex(s.to_owned());
    let (code, hex) = s.split_once(':').ok_or_else(bad)?;
    Ok((code.trim().parse().map_err(|_| bad())?, typed_options::parse_hex(hex).ok_or_else(bad)?))
}

/// RFC 9915 section 21.24: a client ignores SOL_MAX_RT outside 60..=86400 seconds, so such a
/// value is refused rather than sent for nothing.
pub const SOL_MAX_RT_RANGE: std::ops::RangeInclusive<u32> = 60..=86_400;

/// `Err` names the problem of a SOL_MAX_RT value outside [`SOL_MAX_RT_RANGE`].
pub(crate) fn check_sol_max_rt(v: u32) -> Result<u32, Reason> {
    if SOL_MAX_RT_RANGE.contains(&v) {
        Ok(v)
    } else {
        Err(Reason::Range { what: "sol_max_rt", value: u64::from(v), min: 60, max: 86_400 })
    }
}

/// Largest data of one option: its length field has 16 bits.
const MAX_OPTION_DATA: usize = u16::MAX as usize;
/// An NTP server suboption: its own 4-byte header and the address (RFC 5908).
const NTP_SUBOPTION_LEN: usize = 4 + 16;

/// The option data a list of `count` entries of `each` bytes makes, if one option holds it.
pub(crate) fn fits_one_option(option: &'static str, count: usize, each: usize) -> Result<(), Reason> {
    let bytes = count.saturating_mul(each);
    if bytes > MAX_OPTION_DATA {
        return Err(Reason::OptionTooLong { option, bytes });
    }
    Ok(())
}

/// The address lists of a layer, each within one option: DNS (RFC 3646), NTP (RFC 5908),
/// SNTP (RFC 4075). `line` names where a refused list is.
pub(crate) fn check_lists(
    dns: Option<&[Ipv6Addr]>,
    ntp: Option<&[Ipv6Addr]>,
    sntp: Option<&[Ipv6Addr]>,
) -> Result<(), (usize, Reason)> {
    let lists = [("dns servers", dns, 16), ("ntp servers", ntp, NTP_SUBOPTION_LEN), ("sntp servers", sntp, 16)];
    for (i, (option, list, each)) in lists.into_iter().enumerate() {
        fits_one_option(option, list.map_or(0, <[Ipv6Addr]>::len), each).map_err(|r| (i, r))?;
    }
    Ok(())
}

impl OptionLayer {
    /// A table of the file, its domains checked on their lines, every list within one
    /// option (a longer one would be truncated on the wire).
    pub fn from_file(o: &file::Options, src: &Source<'_>) -> Result<Self, ConfigError> {
        let domains = match &o.domains {
            None => None,
            Some(list) => {
                let mut encoded = Vec::new();
                for d in list {
                    domain::encode(d.get_ref(), &mut encoded).map_err(|error| {
                        src.invalid(d.span().start, Reason::Domain { name: d.get_ref().clone(), error })
                    })?;
                    // Refused at the name that makes the list too long.
                    fits_one_option("domains", encoded.len(), 1).map_err(|r| src.invalid(d.span().start, r))?;
                }
                Some(list.iter().map(|d| d.get_ref().clone()).collect())
            }
        };
        let lists = [&o.dns, &o.ntp, &o.sntp];
        let [dns, ntp, sntp] = lists.map(|l| l.as_ref().map(|s| s.get_ref().as_slice()));
        check_lists(dns, ntp, sntp).map_err(|(i, r)| {
            let at = lists[i].as_ref().map_or(0, |s| s.span().start);
            src.invalid(at, r)
        })?;
        let owned = |l: &Option<toml::Spanned<Vec<Ipv6Addr>>>| l.as_ref().map(|s| s.get_ref().clone());
        let at = |offset: usize| move |p: OptionProblem| src.invalid(offset, Reason::Option(p));
        let ntp_fqdn = o
            .ntp_fqdn
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|d| {
                        domain::encode(d.get_ref(), &mut Vec::new()).map(|()| d.get_ref().clone()).map_err(|error| {
                            src.invalid(d.span().start, Reason::Domain { name: d.get_ref().clone(), error })
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let captive_portal = o
            .captive_portal
            .as_ref()
            .map(|u| {
                typed_options::check_captive_portal(u.get_ref())
                    .map(|()| u.get_ref().clone())
                    .map_err(at(u.span().start))
            })
            .transpose()?;
        let dnr = o
            .dnr
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|d| {
                        let i = DnrInstance {
                            priority: d.priority.unwrap_or(1),
                            adn: d.adn.get_ref().clone(),
                            addresses: d.addresses.clone(),
                            alpn: d.alpn.clone(),
                            port: d.port,
                            dohpath: d.dohpath.clone(),
                        };
                        i.check().map(|()| i).map_err(at(d.adn.span().start))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let vendor = o
            .vendor
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|v| {
                        let suboptions = v
                            .suboptions
                            .iter()
                            .map(|s| suboption(s.get_ref()).map_err(at(s.span().start)))
                            .collect::<Result<Vec<_>, _>>()?;
                        let vo = VendorOption {
                            enterprise: *v.enterprise.get_ref(),
                            suboptions,
                            always: v.always.unwrap_or(false),
                        };
                        vo.check().map(|()| vo).map_err(at(v.enterprise.span().start))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let mut raw: Vec<CustomOption> = Vec::new();
        for r in o.option.iter().flatten() {
            let bad_hex = || OptionProblem::NotCodeHex(format!("{}:{}", r.code.get_ref(), r.hex.get_ref()));
            let data = typed_options::parse_hex(r.hex.get_ref()).ok_or_else(bad_hex).map_err(at(r.hex.span().start))?;
            let c = CustomOption { code: *r.code.get_ref(), data, always: r.always.unwrap_or(true) };
            c.check().map_err(at(r.code.span().start))?;
            if raw.iter().any(|x| x.code == c.code) {
                return Err(src.invalid(r.code.span().start, Reason::Option(OptionProblem::DuplicateRaw(c.code))));
            }
            raw.push(c);
        }
        let ignore_user_classes = o
            .ignore_user_classes
            .as_ref()
            .map(|list| list.iter().map(|c| user_class(c.get_ref()).map_err(at(c.span().start))).collect())
            .transpose()?;
        Ok(Self {
            ntp_fqdn,
            captive_portal,
            dnr,
            vendor,
            raw,
            ignore_user_classes,
            dns: owned(&o.dns),
            domains,
            ntp: owned(&o.ntp),
            sntp: owned(&o.sntp),
            information_refresh_time: o.information_refresh_time,
            inf_max_rt: o.inf_max_rt,
            sol_max_rt: match &o.sol_max_rt {
                None => None,
                Some(v) => Some(check_sol_max_rt(*v.get_ref()).map_err(|r| src.invalid(v.span().start, r))?),
            },
        })
    }

    /// This layer, with what it leaves open taken from `under`.
    pub fn over(&self, under: &Self) -> Self {
        fn pick<T: Clone>(top: &Option<T>, under: &Option<T>) -> Option<T> {
            top.as_ref().or(under.as_ref()).cloned()
        }
        Self {
            dns: pick(&self.dns, &under.dns),
            domains: pick(&self.domains, &under.domains),
            ntp: pick(&self.ntp, &under.ntp),
            sntp: pick(&self.sntp, &under.sntp),
            information_refresh_time: pick(&self.information_refresh_time, &under.information_refresh_time),
            inf_max_rt: pick(&self.inf_max_rt, &under.inf_max_rt),
            sol_max_rt: pick(&self.sol_max_rt, &under.sol_max_rt),
            ntp_fqdn: pick(&self.ntp_fqdn, &under.ntp_fqdn),
            captive_portal: pick(&self.captive_portal, &under.captive_portal),
            dnr: pick(&self.dnr, &under.dnr),
            vendor: pick(&self.vendor, &under.vendor),
            raw: under
                .raw
                .iter()
                .filter(|u| !self.raw.iter().any(|t| t.code == u.code))
                .chain(&self.raw)
                .cloned()
                .collect(),
            ignore_user_classes: pick(&self.ignore_user_classes, &under.ignore_user_classes),
        }
    }

    /// The options to serve. DNS may still be empty: the daemon then announces the
    /// interface's link-local address, as odhcpd does.
    pub fn resolve(&self, host: &HostResolver) -> ServiceOptions {
        ServiceOptions {
            dns: self.dns.clone().unwrap_or_else(|| host.dns.clone()),
            domains: self.domains.clone().unwrap_or_else(|| host.domains.clone()),
            ntp: self.ntp.clone().unwrap_or_default(),
            sntp: self.sntp.clone().unwrap_or_default(),
            information_refresh_time: Some(self.information_refresh_time.unwrap_or(DEFAULT_IRT)),
            inf_max_rt: Some(self.inf_max_rt.unwrap_or(DEFAULT_INF_MAX_RT)),
            sol_max_rt: self.sol_max_rt,
            ntp_fqdn: self.ntp_fqdn.clone().unwrap_or_default(),
            captive_portal: self.captive_portal.clone(),
            dnr: self.dnr.clone().unwrap_or_default(),
            vendor: self.vendor.clone().unwrap_or_default(),
            raw: self.raw.clone(),
            ignore_user_classes: self.ignore_user_classes.clone().unwrap_or_default(),
        }
    }
}
