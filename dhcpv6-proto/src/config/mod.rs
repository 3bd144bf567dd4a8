//! Configuration: a TOML file as the operator writes it (serde structs that reject unknown
//! keys), merged with command-line flags into validated settings the daemon uses.
//!
//! ```toml
//! [defaults]                 # for every interface
//! dns = ["2001:db8::53"]
//! domains = ["isp.example"]
//! information_refresh_time = 86400
//! inf_max_rt = 3600
//! ntp = ["2001:db8::123"]    # sent when requested
//!
//! [[interface]]
//! name = "eth1"
//! dns = ["2001:db8:1::53"]   # overrides the default for this interface
//! ```

use std::{
    net::Ipv6Addr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use thiserror::Error;

use crate::{
    resolv,
    server::{
        stateful::{AddrRange, Lifetimes, LinkPools, PrefixPool, Reservation},
        ServiceOptions,
    },
    wire::{domain, Duid},
};

/// RFC 9915 defaults: IRT_DEFAULT 86400 s, INF_MAX_RT 3600 s.
pub const DEFAULT_IRT: u32 = 86_400;
pub const DEFAULT_INF_MAX_RT: u32 = 3_600;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Invalid { path: PathBuf, line: usize, reason: String },
    #[error("{0}")]
    Flag(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    defaults: FileOptions,
    #[serde(default)]
    interface: Vec<FileInterface>,
    /// Links reached through relays, with pools of their own.
    #[serde(default)]
    link: Vec<FileLink>,
    relay: Option<FileRelay>,
}

/// Stateful settings of an interface or a relayed link (gathered from either).
#[derive(Debug, Default)]
struct FilePools {
    na_pools: Vec<toml::Spanned<String>>,
    pd_pools: Vec<toml::Spanned<String>>,
    preferred_lifetime: Option<u32>,
    valid_lifetime: Option<u32>,
    t1: Option<u32>,
    t2: Option<u32>,
    rapid_commit: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReservation {
    duid: Option<toml::Spanned<String>>,
    iaid: Option<u32>,
    address: Option<Ipv6Addr>,
    prefix: Option<toml::Spanned<String>>,
    /// Relay-supplied identifiers, as hex (Remote-ID: enterprise number + id).
    remote_id: Option<toml::Spanned<String>>,
    subscriber_id: Option<toml::Spanned<String>>,
    interface_id: Option<String>,
    client_mac: Option<toml::Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLink {
    name: toml::Spanned<String>,
    #[serde(default)]
    na_pools: Vec<toml::Spanned<String>>,
    #[serde(default)]
    pd_pools: Vec<toml::Spanned<String>>,
    preferred_lifetime: Option<u32>,
    valid_lifetime: Option<u32>,
    t1: Option<u32>,
    t2: Option<u32>,
    rapid_commit: Option<bool>,
    #[serde(default)]
    reservation: Vec<FileReservation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRelay {
    upstream: String,
    downstream: Vec<String>,
    #[serde(default)]
    servers: Vec<Ipv6Addr>,
    rewrite_dns: Option<Vec<Ipv6Addr>>,
}

/// Relay-agent mode (as odhcpd's): client messages on `downstream` interfaces go to `servers`
/// (or ff05::1:3) through `upstream`, wrapped in Relay-Forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    pub upstream: String,
    pub downstream: Vec<String>,
    pub servers: Vec<Ipv6Addr>,
    pub rewrite_dns: Option<Vec<Ipv6Addr>>,
}

/// Everything the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub ifaces: Vec<IfaceConfig>,
    pub relay: Option<RelaySettings>,
    /// Stateful pools per link: served interfaces by name, relayed links by `[[link]]` name,
    /// and `DEFAULT_LINK` for the command line's pools.
    pub links: Vec<LinkPools>,
}

/// The link of `--na-pool`/`--pd-pool`: every served interface, and relayed clients whose
/// relay link-address lies in the pools' prefixes.
pub const DEFAULT_LINK: &str = "default";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    dns: Option<Vec<Ipv6Addr>>,
    domains: Option<Vec<toml::Spanned<String>>>,
    ntp: Option<Vec<Ipv6Addr>>,
    sntp: Option<Vec<Ipv6Addr>>,
    information_refresh_time: Option<u32>,
    inf_max_rt: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileInterface {
    // A spanned field rather than a spanned table, and no `flatten`: both make serde buffer
    // the table, and errors inside it would lose their own line.
    name: toml::Spanned<String>,
    dns: Option<Vec<Ipv6Addr>>,
    domains: Option<Vec<toml::Spanned<String>>>,
    ntp: Option<Vec<Ipv6Addr>>,
    sntp: Option<Vec<Ipv6Addr>>,
    information_refresh_time: Option<u32>,
    inf_max_rt: Option<u32>,
    na_pools: Option<Vec<toml::Spanned<String>>>,
    pd_pools: Option<Vec<toml::Spanned<String>>>,
    preferred_lifetime: Option<u32>,
    valid_lifetime: Option<u32>,
    t1: Option<u32>,
    t2: Option<u32>,
    rapid_commit: Option<bool>,
    #[serde(default)]
    reservation: Vec<FileReservation>,
}

/// One served interface: its name and what it hands out (DNS may still be empty here: the
/// daemon then falls back to the interface's link-local address, as odhcpd does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceConfig {
    pub name: String,
    pub service: ServiceOptions,
}

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
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Reads and validates the whole configuration. `resolv_conf`: where host defaults come from.
pub fn load(file: Option<&Path>, flags: &Overrides, resolv_conf: &Path) -> Result<Config, ConfigError> {
    let (parsed, text, path) = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source })?;
            let parsed: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                path: p.into(),
                line: e.span().map(|s| line_of(&text, s.start)).unwrap_or(1),
                reason: e.message().to_owned(),
            })?;
            (parsed, text, p.to_path_buf())
        }
        None => (FileConfig::default(), String::new(), PathBuf::from("<command line>")),
    };
    let invalid = |offset: usize, reason: String| ConfigError::Invalid {
        path: path.clone(),
        line: line_of(&text, offset),
        reason,
    };

    let host = resolv::read(resolv_conf);
    let base = |o: &FileOptions| -> Result<ServiceOptions, ConfigError> {
        let mut s = ServiceOptions {
            dns: o.dns.clone().unwrap_or_else(|| host.dns.clone()),
            domains: match &o.domains {
                Some(d) => d.iter().map(|d| d.get_ref().clone()).collect(),
                None => host.domains.clone(),
            },
            ntp: o.ntp.clone().unwrap_or_default(),
            sntp: o.sntp.clone().unwrap_or_default(),
            information_refresh_time: Some(o.information_refresh_time.unwrap_or(DEFAULT_IRT)),
            inf_max_rt: Some(o.inf_max_rt.unwrap_or(DEFAULT_INF_MAX_RT)),
        };
        for d in o.domains.iter().flatten() {
            domain::encode(d.get_ref(), &mut Vec::new())
                .map_err(|e| invalid(d.span().start, format!("domain {:?}: {e}", d.get_ref())))?;
        }
        if !flags.dns.is_empty() {
            s.dns = flags.dns.clone();
        }
        if !flags.domains.is_empty() {
            s.domains = flags.domains.clone();
        }
        Ok(s)
    };
    for d in &flags.domains {
        domain::encode(d, &mut Vec::new()).map_err(|e| ConfigError::Flag(format!("--domain {d:?}: {e}")))?;
    }

    let mut out: Vec<IfaceConfig> = Vec::new();
    for fi in &parsed.interface {
        let (name, at) = (fi.name.get_ref(), fi.name.span().start);
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            return Err(invalid(at, format!("interface name {name:?} is not a Linux interface name")));
        }
        if out.iter().any(|i| &i.name == name) {
            return Err(invalid(at, format!("interface {name:?} is configured twice")));
        }
        let mut merged = parsed.defaults.clone();
        let o = fi;
        merged.dns = o.dns.clone().or(merged.dns);
        merged.domains = o.domains.clone().or(merged.domains);
        merged.ntp = o.ntp.clone().or(merged.ntp);
        merged.sntp = o.sntp.clone().or(merged.sntp);
        merged.information_refresh_time = o.information_refresh_time.or(merged.information_refresh_time);
        merged.inf_max_rt = o.inf_max_rt.or(merged.inf_max_rt);
        out.push(IfaceConfig { name: name.clone(), service: base(&merged)? });
    }
    for name in &flags.ifaces {
        if !out.iter().any(|i| &i.name == name) {
            out.push(IfaceConfig { name: name.clone(), service: base(&parsed.defaults)? });
        }
    }
    let mut links = Vec::new();
    for fi in &parsed.interface {
        let pools = FilePools {
            na_pools: fi.na_pools.clone().unwrap_or_default(),
            pd_pools: fi.pd_pools.clone().unwrap_or_default(),
            preferred_lifetime: fi.preferred_lifetime,
            valid_lifetime: fi.valid_lifetime,
            t1: fi.t1,
            t2: fi.t2,
            rapid_commit: fi.rapid_commit,
        };
        if !pools.na_pools.is_empty() || !pools.pd_pools.is_empty() || !fi.reservation.is_empty() {
            links.push(link_pools(fi.name.get_ref(), &pools, &fi.reservation, &invalid)?);
        }
    }
    for fl in &parsed.link {
        let pools = FilePools {
            na_pools: fl.na_pools.clone(),
            pd_pools: fl.pd_pools.clone(),
            preferred_lifetime: fl.preferred_lifetime,
            valid_lifetime: fl.valid_lifetime,
            t1: fl.t1,
            t2: fl.t2,
            rapid_commit: fl.rapid_commit,
        };
        links.push(link_pools(fl.name.get_ref(), &pools, &fl.reservation, &invalid)?);
    }
    if !flags.na_pools.is_empty() || !flags.pd_pools.is_empty() {
        let mut l = LinkPools::new(DEFAULT_LINK);
        // Clients unicast nothing to a server that never sent them a Server Unicast option:
        // what arrives by unicast gets UseMulticast (Request, Renew, Release, Decline) or is
        // dropped (Solicit, Rebind, Confirm).
        l.reject_unicast = true;
        for p in &flags.na_pools {
            l.na.push(p.parse::<AddrRange>().map_err(|e| ConfigError::Flag(format!("--na-pool {p}: {e}")))?);
        }
        for p in &flags.pd_pools {
            l.pd.push(p.parse::<PrefixPool>().map_err(|e| ConfigError::Flag(format!("--pd-pool {p}: {e}")))?);
        }
        l.rapid_commit = flags.rapid_commit;
        links.push(l);
    }

    let relay = match &flags.relay_upstream {
        Some(up) => Some(RelaySettings {
            upstream: up.clone(),
            downstream: flags.relay_downstream.clone(),
            servers: flags.relay_servers.clone(),
            rewrite_dns: (!flags.relay_rewrite_dns.is_empty()).then(|| flags.relay_rewrite_dns.clone()),
        }),
        None => parsed.relay.map(|r| RelaySettings {
            upstream: r.upstream,
            downstream: r.downstream,
            servers: r.servers,
            rewrite_dns: r.rewrite_dns,
        }),
    };
    if let Some(r) = &relay {
        if r.downstream.is_empty() {
            return Err(ConfigError::Flag("relay mode needs at least one downstream interface".into()));
        }
        if let Some(both) = r.downstream.iter().find(|d| out.iter().any(|i| &i.name == *d) || **d == r.upstream) {
            return Err(ConfigError::Flag(format!("interface {both} cannot both serve and relay, or relay to itself")));
        }
    }
    // Validated as a whole (overlaps, reservations on their link) by the stateful engine.
    crate::server::stateful::Engine::new(links.clone(), Vec::new(), 0)
        .map_err(|e| ConfigError::Flag(format!("{}: {e}", path.display())))?;
    if out.is_empty() && relay.is_none() {
        return Err(ConfigError::Flag("no interface to serve: give --iface IF or [[interface]] in the config".into()));
    }
    Ok(Config { ifaces: out, relay, links })
}

fn hex(
    s: &toml::Spanned<String>,
    what: &str,
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<u8>, ConfigError> {
    let t: String = s.get_ref().chars().filter(|c| !matches!(c, ':' | '-' | ' ')).collect();
    let bytes: Option<Vec<u8>> =
        (0..t.len()).step_by(2).map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    match bytes {
        Some(b) if !b.is_empty() && t.len().is_multiple_of(2) => Ok(b),
        _ => Err(invalid(s.span().start, format!("{what} {:?} is not hex bytes", s.get_ref()))),
    }
}

fn link_pools(
    name: &str,
    p: &FilePools,
    reservations: &[FileReservation],
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<LinkPools, ConfigError> {
    let mut l = LinkPools::new(name);
    l.reject_unicast = true;
    for s in &p.na_pools {
        l.na.push(s.get_ref().parse::<AddrRange>().map_err(|e| invalid(s.span().start, e.to_string()))?);
    }
    for s in &p.pd_pools {
        l.pd.push(s.get_ref().parse::<PrefixPool>().map_err(|e| invalid(s.span().start, e.to_string()))?);
    }
    let mut lt = Lifetimes::new(p.preferred_lifetime.unwrap_or(3600), p.valid_lifetime.unwrap_or(7200));
    if let Some(t1) = p.t1 {
        lt.t1 = t1;
    }
    if let Some(t2) = p.t2 {
        lt.t2 = t2;
    }
    l.lifetimes = lt;
    l.rapid_commit = p.rapid_commit.unwrap_or(false);
    for r in reservations {
        let duid = match &r.duid {
            Some(d) => Some(Duid::new(&hex(d, "duid", invalid)?).map_err(|e| invalid(d.span().start, e.to_string()))?),
            None => None,
        };
        let prefix = match &r.prefix {
            Some(s) => {
                let (a, len) =
                    s.get_ref().split_once('/').ok_or_else(|| invalid(s.span().start, "prefix needs /LEN".into()))?;
                let a: Ipv6Addr =
                    a.parse().map_err(|_| invalid(s.span().start, format!("bad prefix {:?}", s.get_ref())))?;
                let len: u8 = len
                    .parse()
                    .map_err(|_| invalid(s.span().start, format!("bad prefix length in {:?}", s.get_ref())))?;
                Some((a, len))
            }
            None => None,
        };
        l.reservations.push(Reservation {
            duid,
            iaid: r.iaid,
            address: r.address,
            prefix,
            remote_id: r.remote_id.as_ref().map(|s| hex(s, "remote_id", invalid)).transpose()?,
            subscriber_id: r.subscriber_id.as_ref().map(|s| hex(s, "subscriber_id", invalid)).transpose()?,
            interface_id: r.interface_id.as_ref().map(|s| s.as_bytes().to_vec()),
            // RFC 6939: link-layer type 1 (Ethernet), then the MAC.
            client_linklayer: r
                .client_mac
                .as_ref()
                .map(|s| hex(s, "client_mac", invalid).map(|m| [vec![0, 1], m].concat()))
                .transpose()?,
        });
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("dhcpv6d-cfg-{}-{}.toml", std::process::id(), text.len()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load_text(text: &str, flags: &Overrides) -> Result<Config, ConfigError> {
        let p = write(text);
        let r = load(Some(&p), flags, Path::new("/nonexistent"));
        let _ = std::fs::remove_file(p);
        r
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e = load_text("[defaults]\ndns = [\"2001:db8::1\"]\ndsn = 1\n", &Overrides::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(":3: unknown field `dsn`"), "{msg}");
    }

    #[test]
    fn bad_address_and_bad_domain_are_refused_with_line() {
        let e = load_text("[[interface]]\nname = \"eth1\"\n\ndns = [\"not-an-address\"]\n", &Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains(":4:"), "{e}");
        let e =
            load_text("[defaults]\n\ndomains = [\"a..b\"]\n[[interface]]\nname = \"eth1\"\n", &Overrides::default())
                .unwrap_err();
        assert!(e.to_string().contains(":3: domain"), "{e}");
    }

    #[test]
    fn interface_overrides_defaults_and_flags_override_both() {
        let text = "[defaults]\ndns = [\"2001:db8::1\"]\ndomains = [\"d.example\"]\n[[interface]]\nname = \"eth1\"\ndns = [\"2001:db8::2\"]\n";
        let c = load_text(text, &Overrides { ifaces: vec!["eth2".into()], ..Default::default() }).unwrap().ifaces;
        assert_eq!(c[0].service.dns, vec!["2001:db8::2".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(c[0].service.domains, vec!["d.example"]);
        assert_eq!(c[1].name, "eth2");
        assert_eq!(c[1].service.dns, vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
        let flags = Overrides { dns: vec!["2001:db8::9".parse().unwrap()], ..Default::default() };
        let c = load_text(text, &flags).unwrap().ifaces;
        assert_eq!(c[0].service.dns, flags.dns);
        assert_eq!(c[0].service.information_refresh_time, Some(DEFAULT_IRT));
    }

    #[test]
    fn relay_section_and_flags() {
        let text = "[relay]\nupstream = \"up0\"\ndownstream = [\"dn0\"]\nservers = [\"2001:db8::547\"]\n";
        let c = load_text(text, &Overrides::default()).unwrap();
        let r = c.relay.unwrap();
        assert_eq!((r.upstream.as_str(), r.downstream.clone()), ("up0", vec!["dn0".to_owned()]));
        assert_eq!(r.servers, vec!["2001:db8::547".parse::<Ipv6Addr>().unwrap()]);
        let flags = Overrides { ifaces: vec!["dn0".into()], ..Default::default() };
        assert!(load_text(text, &flags).is_err(), "an interface cannot both serve and relay");
    }

    #[test]
    fn pools_per_interface_per_link_and_from_flags() {
        let text = "[[interface]]\nname = \"eth1\"\nna_pools = [\"2001:db8:1::100-2001:db8:1::1ff\"]\npd_pools = [\"2001:db8:100::/40:56\"]\nrapid_commit = true\n[[interface.reservation]]\nduid = \"00:03:00:01:02:00:00:00:00:01\"\naddress = \"2001:db8:1::150\"\n[[link]]\nname = \"access-7\"\nna_pools = [\"2001:db8:7::100-2001:db8:7::1ff\"]\n";
        let c = load_text(text, &Overrides::default()).unwrap();
        assert_eq!(c.links.len(), 2);
        assert_eq!(c.links[0].link, "eth1");
        assert!(c.links[0].rapid_commit);
        assert_eq!(c.links[0].reservations.len(), 1);
        assert_eq!(c.links[1].link, "access-7");
        let e = load_text(
            "[[interface]]\nname = \"eth1\"\n\nna_pools = [\"2001:db8::9-2001:db8::1\"]\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains(":4:"), "{e}");
        let flags = Overrides {
            ifaces: vec!["eth1".into()],
            na_pools: vec!["2001:db8:1::10-2001:db8:1::20".into()],
            ..Default::default()
        };
        let c = load(None, &flags, Path::new("/nonexistent")).unwrap();
        assert_eq!(c.links[0].link, DEFAULT_LINK);
        let bad =
            Overrides { ifaces: vec!["eth1".into()], pd_pools: vec!["2001:db8::/64:56".into()], ..Default::default() };
        assert!(load(None, &bad, Path::new("/nonexistent")).unwrap_err().to_string().contains("--pd-pool"));
    }

    #[test]
    fn no_interface_is_an_error() {
        assert!(load(None, &Overrides::default(), Path::new("/nonexistent")).is_err());
    }
}
