//! The command line on top of the file: `Overrides` is what clap collected (in dhcpv6-user),
//! `merge` lays it over a `ConfigFile` and checks what only the whole can show (an interface
//! both served and relayed, pools of the flags overlapping the file's, nothing to serve).

use std::{net::Ipv6Addr, sync::Arc};

use crate::{
    leases::StoreSpec,
    resolv::HostResolver,
    server::{
        stateful::{check_links, AddrRange, LinkPools, PoolError, PrefixPool},
        trust::{Prefix, TrustedRelays},
        LinkService,
    },
    wire::{domain, Duid},
};

use super::{
    options::{check_lists, check_sol_max_rt, fits_one_option, user_class, OptionLayer},
    script::{check_executable, check_timeout},
    validate::{hex_bytes, server_duid, ConfigFile},
    Config, ConfigError, IfaceConfig, LeaseScript, Reason, RelaySettings, DEFAULT_LINK,
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
    /// `--trusted-relay`: trusted on every served interface and, in relay-agent mode, below
    /// every downstream one, on top of the file's `trusted_relays`.
    pub trusted_relays: Vec<String>,
    /// `--sol-max-rt`: SOL_MAX_RT for every interface, over the file's.
    pub sol_max_rt: Option<u32>,
    /// `--max-leases-per-client`, `--max-leases-per-mac`: over every link's own (file or
    /// flags), 0 for no limit.
    pub max_leases_per_client: Option<u32>,
    pub max_leases_per_mac: Option<u32>,
    /// `--server-duid HEX`: one Server Identifier for every interface, over the file's.
    pub server_duid: Option<String>,
    /// `--option CODE:HEX`: raw options sent always, on every interface and link, over the
    /// file's of the same code.
    pub raw_options: Vec<String>,
    /// `--ignore-user-class TEXT`: over every interface's and link's `ignore_user_classes`.
    pub ignore_user_classes: Vec<String>,
    /// `--lease-script PATH`, `--lease-script-timeout SECS`: over the file's.
    pub lease_script: Option<std::path::PathBuf>,
    pub lease_script_timeout: Option<u32>,
    /// `--leasequery-from PREFIX`: leasequery requestors, on top of the file's `leasequery_from`.
    pub leasequery_from: Vec<String>,
    /// `--lease-db PATH|URL`: over the file's `[store]`.
    pub lease_db: Option<std::ffi::OsString>,
    /// `--load-split`: on, whatever the file's `[store] load_split` says.
    pub load_split: bool,
    /// `--heartbeat-stale SECS`: over the file's `heartbeat_stale`.
    pub heartbeat_stale: Option<u32>,
    /// `--workers N`: userspace receive workers, over the file's `workers`.
    pub workers: Option<u32>,
    /// `--xdp-renew`: Renews answered in XDP, whatever the file's `xdp_renew` says.
    pub xdp_renew: bool,
}

/// The flags, each value checked.
struct Flags {
    /// `--dns`, `--domain`: over every interface's own options.
    options: OptionLayer,
    /// `--na-pool`, `--pd-pool`, `--rapid-commit`.
    link: Option<LinkPools>,
    relay: Option<RelaySettings>,
    server_duid: Option<Duid>,
    trusted_relays: Vec<Prefix>,
    leasequery_from: Vec<Prefix>,
    store: Option<StoreSpec>,
}

impl TryFrom<&Overrides> for Flags {
    type Error = ConfigError;

    fn try_from(o: &Overrides) -> Result<Self, ConfigError> {
        // Each name checked, then the list as one option.
        let mut encoded = Vec::new();
        for d in &o.domains {
            domain::encode(d, &mut encoded).map_err(|error| ConfigError::Flag {
                flag: "--domain".into(),
                reason: Reason::Domain { name: d.clone(), error },
            })?;
        }
        fits_one_option("domains", encoded.len(), 1)
            .map_err(|reason| ConfigError::Flag { flag: "--domain".into(), reason })?;
        check_lists(Some(&o.dns), None, None)
            .map_err(|(_, reason)| ConfigError::Flag { flag: "--dns".into(), reason })?;
        check_lists(Some(&o.relay_rewrite_dns), None, None)
            .map_err(|(_, reason)| ConfigError::Flag { flag: "--relay-rewrite-dns".into(), reason })?;
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
            // what arrives by unicast is discarded (RFC 9915 section 16).
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
            trusted_relays: TrustedRelays::default(),
        });
        let server_duid = match &o.server_duid {
            None => None,
            Some(h) => {
                let flag = || format!("--server-duid {h}");
                let bytes = hex_bytes(h).ok_or_else(|| ConfigError::Flag {
                    flag: flag(),
                    reason: Reason::Hex { what: "--server-duid", value: h.clone() },
                })?;
                Some(server_duid(&bytes).map_err(|reason| ConfigError::Flag { flag: flag(), reason })?)
            }
        };
        let trusted_relays =
            prefix_flags(&o.trusted_relays, "--trusted-relay", |value, error| Reason::TrustedRelay { value, error })?;
        let leasequery_from = prefix_flags(&o.leasequery_from, "--leasequery-from", |value, error| {
            Reason::LeasequeryFrom { value, error }
        })?;
        let store =
            match &o.lease_db {
                None => None,
                Some(v) => Some(StoreSpec::parse(v).map_err(|e| ConfigError::Flag {
                    flag: "--lease-db".into(),
                    reason: Reason::Store(e.to_string()),
                })?),
            };
        Ok(Self { options, link, relay, server_duid, trusted_relays, leasequery_from, store })
    }
}

/// The limit flags over one link's limits.
fn over_limits(l: &mut LinkPools, o: &Overrides) {
    l.limits.per_client = o.max_leases_per_client.unwrap_or(l.limits.per_client);
    l.limits.per_mac = o.max_leases_per_mac.unwrap_or(l.limits.per_mac);
}

fn pool_flag(name: &str, value: &str, e: PoolError) -> ConfigError {
    ConfigError::Flag { flag: format!("{name} {value}"), reason: e.into() }
}

/// The settings the daemon runs with: `file` (or an empty one) under the command line, with
/// DNS servers and domains nobody configured taken from the host.
pub(crate) fn merge(file: ConfigFile, overrides: &Overrides, host: &HostResolver) -> Result<Config, ConfigError> {
    let flags = Flags::try_from(overrides)?;
    let server_duid = flags.server_duid.clone().or_else(|| file.server_duid.clone());
    let mut ifaces: Vec<IfaceConfig> = file
        .interfaces
        .iter()
        .map(|i| {
            let mut trusted_relays = i.trusted_relays.clone();
            trusted_relays.extend(flags.trusted_relays.iter().copied());
            IfaceConfig {
                name: i.name.clone(),
                service: flags.options.over(&i.options).resolve(host),
                server_duid: server_duid.clone(),
                trusted_relays,
            }
        })
        .collect();
    for name in &overrides.ifaces {
        if !ifaces.iter().any(|i| &i.name == name) {
            let service = flags.options.over(&file.defaults).resolve(host);
            let trusted_relays = TrustedRelays::new(flags.trusted_relays.iter().copied());
            ifaces.push(IfaceConfig { name: name.clone(), service, server_duid: server_duid.clone(), trusted_relays });
        }
    }
    let mut links = file.links.clone();
    for l in &mut links {
        over_limits(l, overrides);
    }
    if let Some(mut l) = flags.link {
        over_limits(&mut l, overrides);
        links.push(l);
        // The file's links passed on their own: what fails now involves the flags' link.
        check_links(&links).map_err(|r| match r.at.iter().any(|at| at.link == file.links.len()) {
            true => ConfigError::Flag { flag: "--na-pool/--pd-pool".into(), reason: r.error.into() },
            false => file.refused(r),
        })?;
    }
    let lease_script = lease_script(&file, overrides)?;
    let mut relay = flags.relay.or(file.relay);
    if let Some(r) = relay.as_mut() {
        r.trusted_relays.extend(flags.trusted_relays.iter().copied());
    }
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
    let mut leasequery_from = file.leasequery_from.clone();
    leasequery_from.extend(flags.leasequery_from.iter().copied());
    let store = flags
        .store
        .or(file.store)
        .unwrap_or_else(|| StoreSpec::Sqlite(std::path::PathBuf::from(super::DEFAULT_LEASE_DB)));
    let stale_secs = match overrides.heartbeat_stale {
        Some(v) => super::validate::heartbeat_stale(v)
            .map_err(|reason| ConfigError::Flag { flag: "--heartbeat-stale".into(), reason })?,
        None => file.heartbeat_stale.unwrap_or(super::DEFAULT_HEARTBEAT_STALE),
    };
    let split_line = file.load_split.filter(|(on, _)| *on).map(|(_, line)| line);
    let load_split = (overrides.load_split || split_line.is_some()).then_some(super::LoadSplit { stale_secs });
    if load_split.is_some() && !matches!(store, StoreSpec::Postgres(_)) {
        // Alone on its store, a box would answer half its clients and nobody the rest.
        return Err(match (overrides.load_split, split_line) {
            (false, Some(line)) => {
                ConfigError::Invalid { path: file.path.clone(), line, reason: Reason::SplitWithoutSharedStore }
            }
            _ => ConfigError::Flag { flag: "--load-split".into(), reason: Reason::SplitWithoutSharedStore },
        });
    }
    let workers = match overrides.workers {
        Some(w) => {
            Some(super::check_workers(w).map_err(|reason| ConfigError::Flag { flag: "--workers".into(), reason })?)
        }
        None => file.workers,
    };
    let renew_line = file.xdp_renew.filter(|(on, _)| *on).map(|(_, line)| line);
    let xdp_renew = (overrides.xdp_renew || renew_line.is_some())
        .then(|| super::XdpRenew { window: file.xdp_renew_window.unwrap_or(super::DEFAULT_XDP_RENEW_WINDOW) });
    if xdp_renew.is_some() && matches!(store, StoreSpec::Postgres(_)) {
        return Err(match (overrides.xdp_renew, renew_line) {
            (false, Some(line)) => {
                ConfigError::Invalid { path: file.path.clone(), line, reason: Reason::XdpRenewSharedStore }
            }
            _ => ConfigError::Flag { flag: "--xdp-renew".into(), reason: Reason::XdpRenewSharedStore },
        });
    }
    Ok(Config { ifaces, relay, links, lease_script, leasequery_from, store, load_split, workers, xdp_renew })
}

/// The flags' script and timeout over the file's, the flags' checked here (the file's were
/// checked with the file).
fn lease_script(file: &ConfigFile, o: &Overrides) -> Result<Option<LeaseScript>, ConfigError> {
    let flag = |flag: &str, reason| ConfigError::Flag { flag: flag.into(), reason };
    if let Some(p) = &o.lease_script {
        check_executable(p).map_err(|r| flag("--lease-script", r))?;
    }
    let timeout = match o.lease_script_timeout {
        Some(secs) => Some(check_timeout(secs).map_err(|r| flag("--lease-script-timeout", r))?),
        None => file.lease_script_timeout,
    };
    let default = std::time::Duration::from_secs(u64::from(super::DEFAULT_LEASE_SCRIPT_TIMEOUT));
    Ok(o.lease_script
        .clone()
        .or_else(|| file.lease_script.clone())
        .map(|path| LeaseScript { path, timeout: timeout.unwrap_or(default) }))
}

/// A repeatable address-or-prefix flag, each value checked; a refusal names the flag.
fn prefix_flags(
    values: &[String],
    flag: &str,
    reason: impl Fn(String, crate::server::trust::PrefixError) -> Reason,
) -> Result<Vec<Prefix>, ConfigError> {
    values
        .iter()
        .map(|t| {
            t.parse::<Prefix>()
                .map_err(|error| ConfigError::Flag { flag: flag.into(), reason: reason(t.clone(), error) })
        })
        .collect()
}
