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

use crate::{resolv, server::ServiceOptions, wire::domain};

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
    relay: Option<FileRelay>,
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
}

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
    let invalid = |offset: usize, reason: String| ConfigError::Invalid { path: path.clone(), line: line_of(&text, offset), reason };

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
    if out.is_empty() && relay.is_none() {
        return Err(ConfigError::Flag("no interface to serve: give --iface IF or [[interface]] in the config".into()));
    }
    Ok(Config { ifaces: out, relay })
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
        let e = load_text("[[interface]]\nname = \"eth1\"\n\ndns = [\"not-an-address\"]\n", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains(":4:"), "{e}");
        let e = load_text("[defaults]\n\ndomains = [\"a..b\"]\n[[interface]]\nname = \"eth1\"\n", &Overrides::default()).unwrap_err();
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
    fn no_interface_is_an_error() {
        assert!(load(None, &Overrides::default(), Path::new("/nonexistent")).is_err());
    }
}
