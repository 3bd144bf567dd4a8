//! Configuration in two layers, as dora has it: the TOML file parsed into serde structs that
//! mirror it and refuse unknown keys (`file`), converted with `TryFrom` into a validated
//! `ConfigFile` (`validate`), then merged with the command line (`flags`) into the `Config`
//! the daemon runs with. The daemon only ever sees validated types; every refusal of the file
//! names it, the line and the reason (`path:line: reason`).
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
//! trusted_relays = ["2001:db8:1::2", "fe80::/10"]  # whose Relay-Forward is served here
//! ```
//!
//! Top-level keys (before any table): `server_duid = "HEX"`, `leasequery_from = ["PREFIX"]`.
//!
//! A new key is a field in `file.rs` (spanned if a later check refuses it), its check in
//! `validate.rs` into a field of `ConfigFile`, and, when a flag can override it, a line in
//! `flags.rs`; `Config` carries it to the daemon through an accessor. For the keys planned:
//! - an option key: a field of `file::Options`, repeated on `file::Interface` and
//!   `file::Link` (and in `options_view!`), and of `OptionLayer` (`options.rs`); a
//!   `[[link]]` with option keys is a layer over `[defaults]` whose encoded options travel on
//!   its `LinkPools::service`;
//!
//! `[store]` (`url` or `path`) says where the leases are, with `--lease-db` over it.

mod file;
mod flags;
mod options;
mod script;
mod validate;

#[cfg(test)]
mod options_tests;
#[cfg(test)]
mod tests;

use std::{
    net::Ipv6Addr,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::{
    leases::StoreSpec,
    resolv,
    server::{
        stateful::{self, LinkPools, PoolError},
        trust::{PrefixError, TrustedRelays},
        ServiceOptions,
    },
    wire::{Duid, WireError},
};

pub use flags::Overrides;
pub use options::{DEFAULT_INF_MAX_RT, DEFAULT_IRT};
pub use script::{LeaseScript, DEFAULT_LEASE_SCRIPT_TIMEOUT, MAX_LEASE_SCRIPT_TIMEOUT};
pub use validate::ConfigFile;

/// Why a configuration was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Something in the file, at `line` (1-based).
    #[error("{path}:{line}: {reason}")]
    Invalid { path: PathBuf, line: usize, reason: Reason },
    /// A command-line value (`flag` names it, with the value when that helps).
    #[error("{flag}: {reason}")]
    Flag { flag: String, reason: Reason },
    #[error("relay mode needs at least one downstream interface")]
    NoDownstream,
    #[error("interface {0} cannot both serve and relay, or relay to itself")]
    ServeAndRelay(String),
    #[error("no interface to serve: give --iface IF or [[interface]] in the config")]
    NothingToServe,
    /// The options configured for an interface do not fit their DHCPv6 encoding (e.g. more
    /// DNS servers than one option's 16-bit length can carry): refused at load, not at the
    /// first Information-Request.
    #[error("interface {iface}: its options cannot be sent: {source}")]
    Options { iface: String, source: crate::wire::WireError },
    /// The same, for a `[[link]]`'s own options.
    #[error("link {link}: its options cannot be sent: {source}")]
    LinkOptions { link: String, source: crate::wire::WireError },
}

/// What is wrong with one value of the file or the command line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Reason {
    /// TOML syntax, a value of the wrong type, an unknown key (toml's own message).
    #[error("{0}")]
    Syntax(String),
    #[error("interface name {0:?} is not a Linux interface name")]
    InterfaceName(String),
    #[error("interface {0:?} is configured twice")]
    DuplicateInterface(String),
    #[error("domain {name:?}: {error}")]
    Domain { name: String, error: WireError },
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// Pools, lifetimes and reservations checked together (`stateful::check_links`).
    #[error("{0}")]
    Links(#[from] stateful::ConfigError),
    #[error("{what} {value:?} is not hex bytes")]
    Hex { what: &'static str, value: String },
    #[error("{0}")]
    Duid(WireError),
    #[error("server DUID: {0}")]
    ServerDuid(String),
    #[error("prefix needs /LEN")]
    PrefixWithoutLength,
    #[error("bad prefix {0:?}")]
    BadPrefix(String),
    #[error("bad prefix length in {0:?}")]
    BadPrefixLength(String),
    #[error("trusted relay {value:?}: {error} (give an address or PREFIX/LEN)")]
    TrustedRelay { value: String, error: PrefixError },
    #[error("leasequery requestor {value:?}: {error} (give an address or PREFIX/LEN)")]
    LeasequeryFrom { value: String, error: PrefixError },
    #[error("{what} {value} is outside {min}..={max}")]
    Range { what: &'static str, value: u64, min: u64, max: u64 },
    /// A list whose option would not fit the 16-bit length of a DHCPv6 option.
    #[error("{option} take {bytes} bytes: more than one option holds (65,535)")]
    OptionTooLong { option: &'static str, bytes: usize },
    /// A typed or raw option, or a user class, that cannot be sent as configured.
    #[error("{0}")]
    Option(#[from] crate::server::typed_options::OptionProblem),
    #[error("lease script {}: {problem}", path.display())]
    LeaseScript { path: PathBuf, problem: String },
    /// A lease store the daemon cannot open as written (`StoreSpec::parse`'s reason).
    #[error("{0}")]
    Store(String),
    #[error("[store] takes url or path, not both")]
    StoreTwice,
    #[error(
        "the load split needs a PostgreSQL store shared by the boxes (--lease-db postgresql://... or [store] url)"
    )]
    SplitWithoutSharedStore,
    #[error(
        "xdp_renew needs a store this daemon alone writes (SQLite): with PostgreSQL another server may shorten or end a lease that XDP would go on renewing"
    )]
    XdpRenewSharedStore,
}

/// The link of `--na-pool`/`--pd-pool`: every served interface, and relayed clients whose
/// relay link-address lies in the pools' prefixes.
pub const DEFAULT_LINK: &str = "default";

/// Where the leases are when neither `--lease-db` nor `[store]` says.
pub const DEFAULT_LEASE_DB: &str = "/var/lib/dhcpv6d/leases.db";

/// Seconds after which a silent box's share is taken over, unless configured.
pub const DEFAULT_HEARTBEAT_STALE: u32 = 10;

/// The load split of boxes on one database (`--load-split`, `[store] load_split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSplit {
    /// A box whose heartbeat is older than this is dead for the split (seconds).
    pub stale_secs: u32,
}

impl LoadSplit {
    /// How often a box writes its heartbeat: three times per stale period, at most every
    /// 5 s, so that one lost write does not make it look dead.
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64((f64::from(self.stale_secs) / 3.0).clamp(0.5, 5.0))
    }

    pub fn stale(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.stale_secs))
    }
}

/// Everything the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    ifaces: Vec<IfaceConfig>,
    relay: Option<RelaySettings>,
    links: Vec<LinkPools>,
    lease_script: Option<LeaseScript>,
    leasequery_from: TrustedRelays,
    store: StoreSpec,
    load_split: Option<LoadSplit>,
    workers: Option<u32>,
    xdp_renew: Option<XdpRenew>,
}

/// Renews answered in XDP (`xdp_renew`, `--xdp-renew`): off unless asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpRenew {
    /// Seconds after a lease's last client transaction in userspace during which the XDP
    /// program answers its Renews (`xdp_renew_window`).
    pub window: u32,
}

/// `xdp_renew_window` unless configured: an hour, two Renews a T1 of 30 minutes apart.
pub const DEFAULT_XDP_RENEW_WINDOW: u32 = 3600;

/// `xdp_renew_window`: from 10 s (tests) to a week.
pub(crate) fn check_xdp_renew_window(v: u32) -> Result<u32, Reason> {
    const MAX: u32 = 7 * 86_400;
    if (10..=MAX).contains(&v) {
        Ok(v)
    } else {
        Err(Reason::Range { what: "xdp_renew_window", value: u64::from(v), min: 10, max: u64::from(MAX) })
    }
}

/// Most userspace receive workers one daemon runs (`workers`, `--workers`).
pub const MAX_WORKERS: u32 = 256;

/// `workers` (file) and `--workers` (flag): 1..=`MAX_WORKERS`.
pub(crate) fn check_workers(v: u32) -> Result<u32, Reason> {
    if (1..=MAX_WORKERS).contains(&v) {
        Ok(v)
    } else {
        Err(Reason::Range { what: "workers", value: u64::from(v), min: 1, max: u64::from(MAX_WORKERS) })
    }
}

impl Config {
    /// `--load-split` or `[store] load_split`, with its stale time.
    pub fn load_split(&self) -> Option<LoadSplit> {
        self.load_split
    }

    /// The lease store: `--lease-db`, else `[store]`, else [`DEFAULT_LEASE_DB`].
    pub fn store(&self) -> &StoreSpec {
        &self.store
    }

    /// Userspace receive workers asked for (`--workers` over the file's `workers`); `None`:
    /// the daemon's default, one per core it may run on.
    pub fn workers(&self) -> Option<u32> {
        self.workers
    }

    /// `--xdp-renew` or the file's `xdp_renew`, with its window; `None`: Renews go to
    /// userspace (the default).
    pub fn xdp_renew(&self) -> Option<XdpRenew> {
        self.xdp_renew
    }

    /// Served interfaces: the file's in its order, then those only named by `--iface`.
    pub fn ifaces(&self) -> &[IfaceConfig] {
        &self.ifaces
    }

    pub fn relay(&self) -> Option<&RelaySettings> {
        self.relay.as_ref()
    }

    /// Stateful pools per link, checked together: served interfaces by name, relayed links
    /// by `[[link]]` name, and `DEFAULT_LINK` for the command line's pools.
    pub fn links(&self) -> &[LinkPools] {
        &self.links
    }

    /// `--lease-script` or the file's `lease_script`, checked executable, with its timeout.
    pub fn lease_script(&self) -> Option<&LeaseScript> {
        self.lease_script.as_ref()
    }

    /// Whose leasequeries are answered: the file's `leasequery_from` and every
    /// `--leasequery-from`. Empty (the default): none, over UDP or TCP.
    pub fn leasequery_from(&self) -> &TrustedRelays {
        &self.leasequery_from
    }

    pub fn into_parts(self) -> (Vec<IfaceConfig>, Option<RelaySettings>, Vec<LinkPools>) {
        (self.ifaces, self.relay, self.links)
    }
}

/// One served interface: its name and what it hands out (DNS may still be empty here: the
/// daemon then falls back to the interface's link-local address, as odhcpd does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceConfig {
    name: String,
    service: ServiceOptions,
    /// `--server-duid` or `server_duid`; `None`: the interface's own (DUID-LL of its MAC).
    server_duid: Option<Duid>,
    trusted_relays: TrustedRelays,
}

impl IfaceConfig {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Server Identifier configured for every interface, if any.
    pub fn server_duid(&self) -> Option<&Duid> {
        self.server_duid.as_ref()
    }

    pub fn service(&self) -> &ServiceOptions {
        &self.service
    }

    /// Whose Relay-Forward is served on this interface: its `trusted_relays` and every
    /// `--trusted-relay`. Empty: relayed messages are dropped.
    pub fn trusted_relays(&self) -> &TrustedRelays {
        &self.trusted_relays
    }
}

/// Relay-agent mode (as odhcpd's): client messages on `downstream` interfaces go to `servers`
/// (or ff05::1:3) through `upstream`, wrapped in Relay-Forward. At least one downstream
/// interface, none of them served or the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    upstream: String,
    downstream: Vec<String>,
    servers: Vec<Ipv6Addr>,
    rewrite_dns: Option<Vec<Ipv6Addr>>,
    trusted_relays: TrustedRelays,
}

impl RelaySettings {
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn downstream(&self) -> &[String] {
        &self.downstream
    }

    /// Unicast servers; empty: ff05::1:3 on the upstream.
    pub fn servers(&self) -> &[Ipv6Addr] {
        &self.servers
    }

    /// DNS servers to put into relayed replies instead of the server's.
    pub fn rewrite_dns(&self) -> Option<&[Ipv6Addr]> {
        self.rewrite_dns.as_deref()
    }

    /// Relays below the downstream interfaces whose Relay-Forward is passed on: `[relay]
    /// trusted_relays` and every `--trusted-relay`.
    pub fn trusted_relays(&self) -> &TrustedRelays {
        &self.trusted_relays
    }
}

/// Parses and validates a file's text; `path` only names it in messages.
pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<ConfigFile, ConfigError> {
    ConfigFile::try_from(file::Source { path: path.as_ref(), text })
}

/// Reads, parses and validates a file.
pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    from_str(&text, path)
}

impl ConfigFile {
    /// The command line over this file, host defaults (`resolv.conf`'s) under both.
    pub fn merge(self, flags: &Overrides, host: &resolv::HostResolver) -> Result<Config, ConfigError> {
        flags::merge(self, flags, host)
    }
}

/// Reads and validates the whole configuration: `file` if any, under `flags`, with host
/// defaults from `resolv_conf`.
pub fn load(file: Option<&Path>, flags: &Overrides, resolv_conf: &Path) -> Result<Config, ConfigError> {
    let file = match file {
        Some(p) => read(p)?,
        None => ConfigFile { path: "<command line>".into(), ..ConfigFile::default() },
    };
    file.merge(flags, &resolv::read(resolv_conf))
}
