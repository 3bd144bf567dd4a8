//! The command line on top of the file: `Overrides` is what clap collected (in dhcpv6-user),
//! `merge` lays it over a `ConfigFile` and checks what only the whole can show (an interface
//! both served and relayed, pools of the flags overlapping the file's, nothing to serve).

use std::{net::Ipv6Addr, sync::Arc};

use crate::{
    resolv::HostResolver,
    server::{
        stateful::{check_links, AddrRange, LinkPools, PoolError, PrefixPool},
        LinkService,
    },
};

use super::{
    options::{check_domain, check_sol_max_rt, user_class, OptionLayer},
    validate::ConfigFile,
    Config, ConfigError, IfaceConfig, Reason, RelaySettings, DEFAULT_LINK,
};

/// Flags that shape the service, from the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub ifaces: Vec<String>,
    pub dns: Vec<Ipv6Addr>,
    pub domains: Vec<String>,
    /// Relay-agent mode from flags: replaces the file's `[relay]` when `relay_upstream` is set.
    pub relay_upstream: Option<String>,
    pub relay_downstream: Vec<String>,
    pub relay_servers: Vec<Ipv6Addr>,
    pub relay_rewrite_dns: Vec<Ipv6Addr>,
    pub na_pools: Vec<String>,
    pub pd_pools: Vec<String>,
    pub rapid_commit: bool,
    /// `--sol-max-rt`: SOL_MAX_RT for every interface, over the file's.
    pub sol_max_rt: Option<u32>,
    /// `--option CODE:HEX`: raw options sent always, on every interface and link, over the
    /// file's of the same code.
    pub raw_options: Vec<String>,
    /// `--ignore-user-class TEXT`: over every interface's and link's `ignore_user_classes`.
    pub ignore_user_classes: Vec<String>,
}

/// The flags, each value checked.
struct Flags {
    /// `--dns`, `--domain`: over every interface's own options.
    options: OptionLayer,
    /// `--na-pool`, `--pd-pool`, `--rapid-commit`.
    link: Option<LinkPools>,
    relay: Option<RelaySettings>,
}

impl TryFrom<&Overrides> for Flags {
    type Error = ConfigError;

    fn try_from(o: &Overrides) -> Result<Self, ConfigError> {
        for d in &o.domains {
            check_domain(d).map_err(|error| ConfigError::Flag {
                flag: "--domain".into(),
                reason: Reason::Domain { name: d.clone(), error },
            })?;
        }
        let options = OptionLayer {
            dns: (!o.dns.is_empty()).then(|| o.dns.clone()),
            domains: (!o.domains.is_empty()).then(|| o.domains.clone()),
            sol_max_rt: match o.sol_max_rt {
                None => None,
                Some(v) => Some(
                    check_sol_max_rt(v).map_err(|reason| ConfigError::Flag { flag: "--sol-max-rt".into(), reason })?,
                ),
            },
            raw: o
                .raw_options
                .iter()
                .map(|s| {
                    s.parse()
                        .map_err(|p| ConfigError::Flag { flag: format!("--option {s}"), reason: Reason::Option(p) })
                })
                .collect::<Result<_, _>>()?,
            ignore_user_classes: match o.ignore_user_classes.is_empty() {
                true => None,
                false => Some(
                    o.ignore_user_classes
                        .iter()
                        .map(|c| {
                            user_class(c).map_err(|p| ConfigError::Flag {
                                flag: "--ignore-user-class".into(),
                                reason: Reason::Option(p),
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
            },
            ..Default::default()
        };
        let link = if o.na_pools.is_empty() && o.pd_pools.is_empty() {
            None
        } else {
            let mut l = LinkPools::new(DEFAULT_LINK);
            // Clients unicast nothing to a server that never sent them a Server Unicast option:
            // what arrives by unicast gets UseMulticast (Request, Renew, Release, Decline) or is
            // dropped (Solicit, Rebind, Confirm).
            l.reject_unicast = true;
            for p in &o.na_pools {
                l.na.push(p.parse::<AddrRange>().map_err(|e| pool_flag("--na-pool", p, e))?);
            }
            for p in &o.pd_pools {
                l.pd.push(p.parse::<PrefixPool>().map_err(|e| pool_flag("--pd-pool", p, e))?);
            }
            l.rapid_commit = o.rapid_commit;
            Some(l)
        };
        let relay = o.relay_upstream.as_ref().map(|up| RelaySettings {
            upstream: up.clone(),
            downstream: o.relay_downstream.clone(),
            servers: o.relay_servers.clone(),
            rewrite_dns: (!o.relay_rewrite_dns.is_empty()).then(|| o.relay_rewrite_dns.clone()),
        });
        Ok(Self { options, link, relay })
    }
}

fn pool_flag(name: &str, value: &str, e: PoolError) -> ConfigError {
    ConfigError::Flag { flag: format!("{name} {value}"), reason: e.into() }
}

/// The settings the daemon runs with: `file` (or an empty one) under the command line, with
/// DNS servers and domains nobody configured taken from the host.
pub(crate) fn merge(file: ConfigFile, overrides: &Overrides, host: &HostResolver) -> Result<Config, ConfigError> {
    let flags = Flags::try_from(overrides)?;
    let mut ifaces: Vec<IfaceConfig> = file
        .interfaces
        .iter()
        .map(|i| IfaceConfig { name: i.name.clone(), service: flags.options.over(&i.options).resolve(host) })
        .collect();
    for name in &overrides.ifaces {
        if !ifaces.iter().any(|i| &i.name == name) {
            let service = flags.options.over(&file.defaults).resolve(host);
            ifaces.push(IfaceConfig { name: name.clone(), service });
        }
    }
    let mut links = file.links.clone();
    if let Some(l) = flags.link {
        links.push(l);
        // The file's links passed on their own: what fails now involves the flags' link.
        check_links(&links).map_err(|r| match r.at.iter().any(|at| at.link == file.links.len()) {
            true => ConfigError::Flag { flag: "--na-pool/--pd-pool".into(), reason: r.error.into() },
            false => file.refused(r),
        })?;
    }
    let relay = flags.relay.or(file.relay);
    if let Some(r) = &relay {
        if r.downstream.is_empty() {
            return Err(ConfigError::NoDownstream);
        }
        if let Some(both) = r.downstream.iter().find(|d| ifaces.iter().any(|i| &i.name == *d) || **d == r.upstream) {
            return Err(ConfigError::ServeAndRelay(both.clone()));
        }
    }
    if ifaces.is_empty() && relay.is_none() {
        return Err(ConfigError::NothingToServe);
    }
    for i in &ifaces {
        i.service.encode().map_err(|source| ConfigError::Options { iface: i.name.clone(), source })?;
    }
    for (name, layer) in &file.link_options {
        let service = flags.options.over(layer).resolve(host);
        let options = service.encode().map_err(|source| ConfigError::LinkOptions { link: name.clone(), source })?;
        let own = LinkService { options, ignore_user_classes: service.ignore_user_classes };
        if let Some(l) = links.iter_mut().find(|l| &l.link == name) {
            l.service = Some(Arc::new(own));
        }
    }
    Ok(Config { ifaces, relay, links })
}
