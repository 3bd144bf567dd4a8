//! From the file's structs (`file.rs`) to `ConfigFile`, the file's validated contents: every
//! value parsed, every interface name checked, and the pools of all links checked together
//! (overlaps, lifetimes, reservations on their link) with `stateful::check_links`, so that a
//! refusal names the file and line of the offending pool. No engine is built for that.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use toml::Spanned;

use crate::{
    leases::StoreSpec,
    server::stateful::{
        check_links, AddrRange, ClientLimits, ConfigError as LinksError, Item, LifetimeField, Lifetimes, LinkPools,
        PrefixPool, Refusal, Reservation, ReservationPart,
    },
    server::trust::{Prefix, TrustedRelays},
    wire::Duid,
};

use super::{
    file::{self, Source},
    options::{check_lists, OptionLayer},
    ConfigError, Reason, RelaySettings,
};

/// One `[[interface]]`: a Linux interface name, named once, and its options over
/// `[defaults]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceSection {
    pub name: String,
    pub options: OptionLayer,
    /// `trusted_relays`: whose Relay-Forward is served on this interface.
    pub trusted_relays: TrustedRelays,
}

/// What a file says, validated on its own. The command line comes on top in `flags.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigFile {
    pub(crate) path: PathBuf,
    pub(crate) defaults: OptionLayer,
    pub(crate) interfaces: Vec<InterfaceSection>,
    /// Interfaces with pools or reservations, then `[[link]]`s, in file order.
    pub(crate) links: Vec<LinkPools>,
    /// Where each of `links` was written, for refusals that come later (`flags.rs`).
    pub(crate) lines: Vec<LinkLines>,
    /// As written; checked against the served interfaces once the flags are in.
    pub(crate) relay: Option<RelaySettings>,
    /// The option layers of `[[link]]`s that set any option key (already over `[defaults]`),
    /// by link name: their relayed clients get these instead of the arrival interface's.
    pub(crate) link_options: Vec<(String, OptionLayer)>,
    /// `server_duid`: replaces every interface's own DUID.
    pub(crate) server_duid: Option<Duid>,
    /// `lease_script`, checked executable.
    pub(crate) lease_script: Option<PathBuf>,
    pub(crate) lease_script_timeout: Option<std::time::Duration>,
    /// `leasequery_from`: the requestors leasequeries are answered for.
    pub(crate) leasequery_from: TrustedRelays,
    /// `[store] url` or `path`.
    pub(crate) store: Option<StoreSpec>,
    /// `[store] load_split` (with its line) and `heartbeat_stale`.
    pub(crate) load_split: Option<(bool, usize)>,
    pub(crate) heartbeat_stale: Option<u32>,
    /// `workers`: userspace receive workers.
    pub(crate) workers: Option<u32>,
    /// `xdp_renew` (with its line) and `xdp_renew_window`.
    pub(crate) xdp_renew: Option<(bool, usize)>,
    pub(crate) xdp_renew_window: Option<u32>,
}

impl TryFrom<Source<'_>> for ConfigFile {
    type Error = ConfigError;

    fn try_from(src: Source<'_>) -> Result<Self, ConfigError> {
        let doc = src.parse()?;
        let defaults = OptionLayer::from_file(&doc.defaults, &src)?;
        let mut interfaces: Vec<InterfaceSection> = Vec::new();
        for fi in &doc.interface {
            let name = fi.name.get_ref();
            let at = fi.name.span().start;
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(src.invalid(at, Reason::InterfaceName(name.clone())));
            }
            if interfaces.iter().any(|i| &i.name == name) {
                return Err(src.invalid(at, Reason::DuplicateInterface(name.clone())));
            }
            let options = OptionLayer::from_file(&fi.options(), &src)?.over(&defaults);
            let trusted_relays = trusted_relays(&fi.trusted_relays, &src)?;
            interfaces.push(InterfaceSection { name: name.clone(), options, trusted_relays });
        }
        let mut link_options = Vec::new();
        for l in &doc.link {
            let own = OptionLayer::from_file(&l.options(), &src)?;
            if own != OptionLayer::default() {
                link_options.push((l.name.get_ref().clone(), own.over(&defaults)));
            }
        }
        let tables = doc.interface.iter().map(file::Interface::pools).filter(|p| !p.is_empty());
        let (links, lines): (Vec<_>, Vec<_>) = tables
            .chain(doc.link.iter().map(file::Link::pools))
            .map(|p| link_pools(&p, &doc.defaults, &src))
            .collect::<Result<_, _>>()?;
        let relay = doc.relay.map(|r| relay_settings(r, &src)).transpose()?;
        let file = Self {
            path: src.path.to_path_buf(),
            defaults,
            interfaces,
            links,
            lines,
            relay,
            server_duid: doc
                .server_duid
                .as_ref()
                .map(|s| server_duid(&hex(s, "server_duid", &src)?).map_err(|r| src.invalid(s.span().start, r)))
                .transpose()?,
            link_options,
            lease_script: doc
                .lease_script
                .as_ref()
                .map(|s| {
                    let path = PathBuf::from(s.get_ref());
                    super::script::check_executable(&path).map(|()| path).map_err(|r| src.invalid(s.span().start, r))
                })
                .transpose()?,
            lease_script_timeout: doc
                .lease_script_timeout
                .as_ref()
                .map(|s| super::script::check_timeout(*s.get_ref()).map_err(|r| src.invalid(s.span().start, r)))
                .transpose()?,
            leasequery_from: prefixes(&doc.leasequery_from, &src, |value, error| Reason::LeasequeryFrom {
                value,
                error,
            })?,
            store: doc.store.as_ref().map(|s| store(s, &src)).transpose()?.flatten(),
            load_split: doc.store.as_ref().and_then(|s| s.load_split.as_ref()).map(|b| (*b.get_ref(), src.line_of(b))),
            heartbeat_stale: match doc.store.as_ref().and_then(|s| s.heartbeat_stale.as_ref()) {
                None => None,
                Some(v) => Some(heartbeat_stale(*v.get_ref()).map_err(|r| src.invalid(v.span().start, r))?),
            },
            workers: doc
                .workers
                .as_ref()
                .map(|w| super::check_workers(*w.get_ref()).map_err(|r| src.invalid(w.span().start, r)))
                .transpose()?,
            xdp_renew: doc.xdp_renew.as_ref().map(|b| (*b.get_ref(), src.line_of(b))),
            xdp_renew_window: doc
                .xdp_renew_window
                .as_ref()
                .map(|w| super::check_xdp_renew_window(*w.get_ref()).map_err(|r| src.invalid(w.span().start, r)))
                .transpose()?,
        };
        check_links(&file.links).map_err(|r| file.refused(r))?;
        Ok(file)
    }
}

/// `[store]`: the same forms as `--lease-db`, `url` a PostgreSQL database only and `path` a
/// file only, so that a URL typed as a path (or the reverse) is refused, not guessed.
fn store(s: &file::Store, src: &Source<'_>) -> Result<Option<StoreSpec>, ConfigError> {
    match (&s.url, &s.path) {
        (Some(_), Some(p)) => Err(src.invalid(p.span().start, Reason::StoreTwice)),
        (None, None) => Ok(None),
        (Some(u), None) => match StoreSpec::parse(u.get_ref()) {
            Ok(spec @ StoreSpec::Postgres(_)) => Ok(Some(spec)),
            Ok(StoreSpec::Sqlite(_)) => Err(src.invalid(
                u.span().start,
                Reason::Store(format!(
                    "url {:?} is not a postgresql:// or postgres:// URL (an SQLite file is `path`)",
                    u.get_ref()
                )),
            )),
            Err(e) => Err(src.invalid(u.span().start, store_reason(e))),
        },
        (None, Some(p)) => match StoreSpec::parse(p.get_ref()) {
            Ok(spec @ StoreSpec::Sqlite(_)) => Ok(Some(spec)),
            Ok(StoreSpec::Postgres(_)) => Err(src.invalid(
                p.span().start,
                Reason::Store("path is an SQLite file; a PostgreSQL database is `url`".into()),
            )),
            Err(e) => Err(src.invalid(p.span().start, store_reason(e))),
        },
    }
}

/// A heartbeat stale time: long enough for a few heartbeats, short enough to matter.
pub(crate) fn heartbeat_stale(v: u32) -> Result<u32, Reason> {
    match v {
        2..=3600 => Ok(v),
        _ => Err(Reason::Range { what: "heartbeat_stale", value: u64::from(v), min: 2, max: 3600 }),
    }
}

/// `StoreSpec::parse`'s refusal without its `--lease-db` hint (the file has its own keys).
pub(crate) fn store_reason(e: crate::leases::StoreError) -> Reason {
    match e {
        crate::leases::StoreError::UnsupportedSpec { spec, reason } => Reason::Store(format!("{spec:?}: {reason}")),
        other => Reason::Store(other.to_string()),
    }
}

impl ConfigFile {
    /// A refusal of the file's links, on the line of the item written last (of two
    /// overlapping pools, the one that made them overlap).
    pub(crate) fn refused(&self, r: Refusal) -> ConfigError {
        let line = r.at.iter().filter_map(|at| self.lines.get(at.link).map(|l| l.line(at.item))).max().unwrap_or(1);
        ConfigError::Invalid { path: self.path.clone(), line, reason: Reason::Links(r.error) }
    }
}

/// The lines of one link's items, as `Item` names them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LinkLines {
    name: usize,
    na: Vec<usize>,
    pd: Vec<usize>,
    /// Preferred, valid, T1, T2, where set.
    lifetimes: [Option<usize>; 4],
    reservations: Vec<ReservationLines>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct ReservationLines {
    /// The table's first key: an empty table has none.
    first: Option<usize>,
    address: Option<usize>,
    prefix: Option<usize>,
}

impl LinkLines {
    fn line(&self, item: Item) -> usize {
        let found = match item {
            Item::Link => None,
            Item::Lifetimes(p) => p.fields().iter().find_map(|f| self.lifetimes[lifetime_index(*f)]),
            Item::AddrRange(i) => self.na.get(i).copied(),
            Item::PrefixPool(i) => self.pd.get(i).copied(),
            Item::Reservation(i, part) => self.reservations.get(i).and_then(|r| {
                let exact = match part {
                    ReservationPart::Whole => None,
                    ReservationPart::Address => r.address,
                    ReservationPart::Prefix => r.prefix,
                };
                exact.or(r.first)
            }),
        };
        found.unwrap_or(self.name)
    }
}

fn lifetime_index(f: LifetimeField) -> usize {
    match f {
        LifetimeField::Preferred => 0,
        LifetimeField::Valid => 1,
        LifetimeField::T1 => 2,
        LifetimeField::T2 => 3,
    }
}

/// `[relay]`, its DNS rewrite within one option: a longer list could not be put in a reply.
fn relay_settings(r: file::Relay, src: &Source<'_>) -> Result<RelaySettings, ConfigError> {
    if let Some(list) = &r.rewrite_dns {
        check_lists(Some(list.get_ref()), None, None).map_err(|(_, reason)| src.invalid(list.span().start, reason))?;
    }
    Ok(RelaySettings {
        trusted_relays: trusted_relays(&r.trusted_relays, src)?,
        upstream: r.upstream,
        downstream: r.downstream,
        servers: r.servers,
        rewrite_dns: r.rewrite_dns.map(Spanned::into_inner),
    })
}

/// One table's pools, lifetimes, limits and reservations, each value checked on its own
/// line; limits and `create_on_renew` it leaves out come from `[defaults]`.
fn link_pools(
    p: &file::Pools<'_>,
    file_defaults: &file::Options,
    src: &Source<'_>,
) -> Result<(LinkPools, LinkLines), ConfigError> {
    let name = p.name.get_ref();
    let mut l = LinkPools::new(name.as_str());
    let mut lines = LinkLines { name: src.line_of(p.name), ..Default::default() };
    // RFC 9915 removed Server Unicast; we never send it, so unicast from clients is refused.
    l.reject_unicast = true;
    for s in p.na_pools {
        l.na.push(s.get_ref().parse::<AddrRange>().map_err(|e| src.invalid(s.span().start, e.into()))?);
        lines.na.push(src.line_of(s));
    }
    for s in p.pd_pools {
        l.pd.push(s.get_ref().parse::<PrefixPool>().map_err(|e| src.invalid(s.span().start, e.into()))?);
        lines.pd.push(src.line_of(s));
    }
    let given = [p.preferred_lifetime, p.valid_lifetime, p.t1, p.t2];
    lines.lifetimes = given.map(|v| v.map(|s| src.line_of(s)));
    let [preferred, valid, t1, t2] = given.map(|v| v.map(|s| *s.get_ref()));
    let defaults = Lifetimes::default();
    l.lifetimes = Lifetimes::checked(preferred.unwrap_or(defaults.preferred), valid.unwrap_or(defaults.valid), t1, t2)
        .map_err(|reason| {
            let refused = LinksError::Lifetimes { link: name.clone(), reason };
            src.invalid_at_line(lines.line(Item::Lifetimes(reason)), refused.into())
        })?;
    l.rapid_commit = p.rapid_commit.unwrap_or(false);
    let d = ClientLimits::default();
    l.limits = ClientLimits {
        per_client: p.max_leases_per_client.or(file_defaults.max_leases_per_client).unwrap_or(d.per_client),
        per_mac: p.max_leases_per_mac.or(file_defaults.max_leases_per_mac).unwrap_or(d.per_mac),
        declined_per_client: p
            .max_declined_per_client
            .or(file_defaults.max_declined_per_client)
            .unwrap_or(d.declined_per_client),
        declined_per_link: p
            .max_declined_per_link
            .or(file_defaults.max_declined_per_link)
            .unwrap_or(d.declined_per_link),
    };
    l.create_on_renew = p.create_on_renew.or(file_defaults.create_on_renew).unwrap_or(l.create_on_renew);
    for r in p.reservation {
        let (reservation, at) = reservation(r, src)?;
        l.reservations.push(reservation);
        lines.reservations.push(at);
    }
    Ok((l, lines))
}

fn reservation(r: &file::Reservation, src: &Source<'_>) -> Result<(Reservation, ReservationLines), ConfigError> {
    let duid = r.duid.as_ref().map(|d| duid(d, src)).transpose()?;
    let prefix = r.prefix.as_ref().map(|s| prefix(s, src)).transpose()?;
    let starts = [
        r.duid.as_ref().map(|s| s.span().start),
        r.iaid.as_ref().map(|s| s.span().start),
        r.address.as_ref().map(|s| s.span().start),
        r.prefix.as_ref().map(|s| s.span().start),
        r.remote_id.as_ref().map(|s| s.span().start),
        r.subscriber_id.as_ref().map(|s| s.span().start),
        r.interface_id.as_ref().map(|s| s.span().start),
        r.client_mac.as_ref().map(|s| s.span().start),
    ];
    let lines = ReservationLines {
        first: starts.into_iter().flatten().min().map(|o| src.line(o)),
        address: r.address.as_ref().map(|s| src.line_of(s)),
        prefix: r.prefix.as_ref().map(|s| src.line_of(s)),
    };
    let reservation = Reservation {
        duid,
        iaid: r.iaid.as_ref().map(|s| *s.get_ref()),
        address: r.address.as_ref().map(|s| *s.get_ref()),
        prefix,
        remote_id: r.remote_id.as_ref().map(|s| hex(s, "remote_id", src)).transpose()?,
        subscriber_id: r.subscriber_id.as_ref().map(|s| hex(s, "subscriber_id", src)).transpose()?,
        interface_id: r.interface_id.as_ref().map(|s| s.get_ref().as_bytes().to_vec()),
        // RFC 6939: link-layer type 1 (Ethernet), then the MAC.
        client_linklayer: r
            .client_mac
            .as_ref()
            .map(|s| hex(s, "client_mac", src).map(|m| [vec![0, 1], m].concat()))
            .transpose()?,
    };
    Ok((reservation, lines))
}

/// `trusted_relays = ["2001:db8::2", "fe80::/10"]`, each refused on its own line.
fn trusted_relays(list: &[Spanned<String>], src: &Source<'_>) -> Result<TrustedRelays, ConfigError> {
    prefixes(list, src, |value, error| Reason::TrustedRelay { value, error })
}

/// A list of addresses or prefixes, each refusal on its own line as `reason` says.
fn prefixes(
    list: &[Spanned<String>],
    src: &Source<'_>,
    reason: impl Fn(String, crate::server::trust::PrefixError) -> Reason,
) -> Result<TrustedRelays, ConfigError> {
    let prefixes = list.iter().map(|s| {
        s.get_ref().parse::<Prefix>().map_err(|error| src.invalid(s.span().start, reason(s.get_ref().clone(), error)))
    });
    Ok(TrustedRelays::new(prefixes.collect::<Result<Vec<_>, _>>()?))
}

/// A DUID in hex (a reservation's; a `server_duid` would be read the same way).
fn duid(s: &Spanned<String>, src: &Source<'_>) -> Result<Duid, ConfigError> {
    Duid::new(&hex(s, "duid", src)?).map_err(|e| src.invalid(s.span().start, Reason::Duid(e)))
}

/// `ADDR/LEN`; whether it fits the link's pools is `check_links`'s business.
fn prefix(s: &Spanned<String>, src: &Source<'_>) -> Result<(Ipv6Addr, u8), ConfigError> {
    let at = s.span().start;
    let text = s.get_ref();
    let (a, len) = text.split_once('/').ok_or_else(|| src.invalid(at, Reason::PrefixWithoutLength))?;
    let a: Ipv6Addr = a.parse().map_err(|_| src.invalid(at, Reason::BadPrefix(text.clone())))?;
    let len: u8 = len.parse().map_err(|_| src.invalid(at, Reason::BadPrefixLength(text.clone())))?;
    Ok((a, len))
}

/// Hex bytes, with `:`, `-` or spaces between them or not.
/// A DUID we may put in our Server Identifier: a known type (RFC 9915 section 11) at least
/// as long as that type's fixed fields, at most 130 bytes. Shared by `server_duid` and
/// `--server-duid`.
pub(crate) fn server_duid(bytes: &[u8]) -> Result<Duid, Reason> {
    let duid = Duid::new(bytes).map_err(Reason::Duid)?;
    let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
    // Type code, then the fixed fields: LLT hardware type and time, EN enterprise
    // number, LL hardware type; a UUID is exactly 16 bytes.
    let (name, fits) = match kind {
        1 => ("DUID-LLT", bytes.len() > 8),
        2 => ("DUID-EN", bytes.len() > 6),
        3 => ("DUID-LL", bytes.len() > 4),
        4 => ("DUID-UUID", bytes.len() == 18),
        _ => {
            return Err(Reason::ServerDuid(format!("DUID type {kind} is not one of 1 (LLT), 2 (EN), 3 (LL), 4 (UUID)")))
        }
    };
    if !fits {
        return Err(Reason::ServerDuid(format!("{} bytes are too short for a {name}", bytes.len())));
    }
    Ok(duid)
}

fn hex(s: &Spanned<String>, what: &'static str, src: &Source<'_>) -> Result<Vec<u8>, ConfigError> {
    hex_bytes(s.get_ref()).ok_or_else(|| src.invalid(s.span().start, Reason::Hex { what, value: s.get_ref().clone() }))
}

/// Hex bytes, optionally separated by `:`, `-` or spaces; `None` if not that or empty.
pub(crate) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let t: String = s.chars().filter(|c| !matches!(c, ':' | '-' | ' ')).collect();
    let bytes: Option<Vec<u8>> =
        (0..t.len()).step_by(2).map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    bytes.filter(|b| !b.is_empty() && t.len().is_multiple_of(2))
}
