//! The file as the operator writes it: serde structs that mirror the TOML key for key and
//! refuse unknown keys (a typo is an error, not a silent default). Nothing here is checked
//! beyond its TOML type; `validate.rs` turns these into the types the daemon runs with.
//!
//! Values a later check may refuse are `Spanned`, so that the refusal names their line.
//! Tables are never `Spanned` and nothing is `flatten`ed: both make serde buffer the table,
//! and errors inside it would lose their own line. That is why `[[interface]]` repeats the
//! keys of `[defaults]` and `[[link]]` those of the pools instead of sharing a struct (the
//! `served_table!` macro below writes those keys once); the `options()` and `pools()` views
//! gather them back.

use std::net::Ipv6Addr;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Reason};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    #[serde(default)]
    pub defaults: Options,
    #[serde(default)]
    pub interface: Vec<Interface>,
    /// Links reached through relays, with pools of their own.
    #[serde(default)]
    pub link: Vec<Link>,
    pub relay: Option<Relay>,
    /// One Server Identifier for every interface (several boxes answering as one server).
    pub server_duid: Option<Spanned<String>>,
    /// Run once per lease event; checked executable at load.
    pub lease_script: Option<Spanned<String>>,
    /// Seconds one run of the lease script may take before it is killed.
    pub lease_script_timeout: Option<Spanned<u32>>,
    /// Who may send leasequeries (RFC 5007 over UDP, RFC 5460 over TCP): addresses or prefixes.
    #[serde(default)]
    pub leasequery_from: Vec<Spanned<String>>,
    /// Userspace receive workers (`--workers`); read at start only.
    pub workers: Option<Spanned<u32>>,
    /// `[store]`: where the leases are kept.
    pub store: Option<Store>,
    /// Renews answered in XDP for leases pre-extended in the store (`--xdp-renew`).
    pub xdp_renew: Option<Spanned<bool>>,
    /// Seconds after a client's last transaction in userspace during which XDP answers its
    /// Renews (the stored expiry runs this much past the valid lifetime).
    pub xdp_renew_window: Option<Spanned<u32>>,
}

/// `[store]`: `url` (a PostgreSQL database) or `path` (an SQLite file), as `--lease-db`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Store {
    pub url: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    /// Answer Solicits only for this box's share of DUIDs (boxes on one database).
    pub load_split: Option<Spanned<bool>>,
    /// Seconds after which a box's heartbeat is stale and the others take its share.
    pub heartbeat_stale: Option<Spanned<u32>>,
}

/// `[defaults]`: what every interface hands out unless it says otherwise.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    pub dns: Option<Spanned<Vec<Ipv6Addr>>>,
    pub domains: Option<Vec<Spanned<String>>>,
    pub ntp: Option<Spanned<Vec<Ipv6Addr>>>,
    pub sntp: Option<Spanned<Vec<Ipv6Addr>>>,
    pub information_refresh_time: Option<u32>,
    pub inf_max_rt: Option<u32>,
    /// SOL_MAX_RT (option 82) for Advertise and Reply, seconds (RFC 9915 section 21.24).
    pub sol_max_rt: Option<Spanned<u32>>,
    /// The per-client limits and `create_on_renew` of every link that does not set its own.
    pub max_leases_per_client: Option<u32>,
    pub max_leases_per_mac: Option<u32>,
    pub max_declined_per_client: Option<u32>,
    pub max_declined_per_link: Option<u32>,
    pub create_on_renew: Option<bool>,
    // Options beyond the basics (typed forms, raw options) and the User Class filter.
    pub ntp_fqdn: Option<Vec<Spanned<String>>>,
    pub captive_portal: Option<Spanned<String>>,
    pub dnr: Option<Vec<Dnr>>,
    pub vendor: Option<Vec<Vendor>>,
    pub option: Option<Vec<Raw>>,
    pub ignore_user_classes: Option<Vec<Spanned<String>>>,
}

/// `[[defaults.dnr]]`, `[[interface.dnr]]`, `[[link.dnr]]`: one encrypted DNS resolver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Dnr {
    /// Refusals of the instance name this line.
    pub adn: Spanned<String>,
    pub priority: Option<u16>,
    #[serde(default)]
    pub addresses: Vec<Ipv6Addr>,
    #[serde(default)]
    pub alpn: Vec<String>,
    pub port: Option<u16>,
    pub dohpath: Option<String>,
}

/// `[[*.vendor]]`: Vendor-specific Information for one enterprise number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Vendor {
    pub enterprise: Spanned<u32>,
    /// `"CODE:HEX"` each.
    #[serde(default)]
    pub suboptions: Vec<Spanned<String>>,
    pub always: Option<bool>,
}

/// `[[*.option]]`: a raw option.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    pub code: Spanned<u16>,
    pub hex: Spanned<String>,
    /// Default true; false: only when the client's Option Request names it.
    pub always: Option<bool>,
}

/// A served table (`[[interface]]`, `[[link]]`): `name`, the keys of `[defaults]`, the
/// stateful keys, then the table's own keys (`$own`), in this order (the order serde names
/// the keys in when it refuses an unknown one). Written once here because the keys cannot
/// be shared through a `flatten`ed struct (see the top of the file). Also gives the table
/// its `options()` and `pools()` views.
macro_rules! served_table {
    (
        $(#[$meta:meta])*
        $table:ident { $($(#[$own_meta:meta])* $own:ident: $own_ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $table {
            pub name: Spanned<String>,
            pub dns: Option<Spanned<Vec<Ipv6Addr>>>,
            pub domains: Option<Vec<Spanned<String>>>,
            pub ntp: Option<Spanned<Vec<Ipv6Addr>>>,
            pub sntp: Option<Spanned<Vec<Ipv6Addr>>>,
            pub information_refresh_time: Option<u32>,
            pub inf_max_rt: Option<u32>,
            pub sol_max_rt: Option<Spanned<u32>>,
            // Options beyond the basics (typed forms, raw options) and the User Class filter.
            pub ntp_fqdn: Option<Vec<Spanned<String>>>,
            pub captive_portal: Option<Spanned<String>>,
            pub dnr: Option<Vec<Dnr>>,
            pub vendor: Option<Vec<Vendor>>,
            pub option: Option<Vec<Raw>>,
            pub ignore_user_classes: Option<Vec<Spanned<String>>>,
            #[serde(default)]
            pub na_pools: Vec<Spanned<String>>,
            #[serde(default)]
            pub pd_pools: Vec<Spanned<String>>,
            pub preferred_lifetime: Option<Spanned<u32>>,
            pub valid_lifetime: Option<Spanned<u32>>,
            pub t1: Option<Spanned<u32>>,
            pub t2: Option<Spanned<u32>>,
            pub rapid_commit: Option<bool>,
            pub max_leases_per_client: Option<u32>,
            pub max_leases_per_mac: Option<u32>,
            pub max_declined_per_client: Option<u32>,
            pub max_declined_per_link: Option<u32>,
            pub create_on_renew: Option<bool>,
            #[serde(default)]
            pub reservation: Vec<Reservation>,
            $($(#[$own_meta])* pub $own: $own_ty,)*
        }

        impl $table {
            pub fn options(&self) -> Options {
                Options {
                    dns: self.dns.clone(),
                    domains: self.domains.clone(),
                    ntp: self.ntp.clone(),
                    sntp: self.sntp.clone(),
                    information_refresh_time: self.information_refresh_time,
                    inf_max_rt: self.inf_max_rt,
                    sol_max_rt: self.sol_max_rt.clone(),
                    ntp_fqdn: self.ntp_fqdn.clone(),
                    captive_portal: self.captive_portal.clone(),
                    dnr: self.dnr.clone(),
                    vendor: self.vendor.clone(),
                    option: self.option.clone(),
                    ignore_user_classes: self.ignore_user_classes.clone(),
                    // The stateful keys are read through `pools()`.
                    ..Options::default()
                }
            }

            pub fn pools(&self) -> Pools<'_> {
                Pools {
                    name: &self.name,
                    na_pools: &self.na_pools,
                    pd_pools: &self.pd_pools,
                    preferred_lifetime: self.preferred_lifetime.as_ref(),
                    valid_lifetime: self.valid_lifetime.as_ref(),
                    t1: self.t1.as_ref(),
                    t2: self.t2.as_ref(),
                    rapid_commit: self.rapid_commit,
                    max_leases_per_client: self.max_leases_per_client,
                    max_leases_per_mac: self.max_leases_per_mac,
                    max_declined_per_client: self.max_declined_per_client,
                    max_declined_per_link: self.max_declined_per_link,
                    create_on_renew: self.create_on_renew,
                    reservation: &self.reservation,
                }
            }
        }
    };
}

served_table! {
    /// `[[interface]]`: the keys of `[defaults]` and of the pools, for one served interface.
    Interface {
        /// Relays whose Relay-Forward this interface serves: addresses or `PREFIX/LEN`.
        #[serde(default)]
        trusted_relays: Vec<Spanned<String>>,
    }
}

served_table! {
    /// `[[link]]`: a link behind relays, with the keys of `Interface`: its pools, and options
    /// that relayed clients on it get instead of the arrival interface's.
    Link {}
}

/// `[[interface.reservation]]`, `[[link.reservation]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reservation {
    pub duid: Option<Spanned<String>>,
    pub iaid: Option<Spanned<u32>>,
    pub address: Option<Spanned<Ipv6Addr>>,
    pub prefix: Option<Spanned<String>>,
    /// Relay-supplied identifiers, as hex (Remote-ID: enterprise number + id).
    pub remote_id: Option<Spanned<String>>,
    pub subscriber_id: Option<Spanned<String>>,
    pub interface_id: Option<Spanned<String>>,
    pub client_mac: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Relay {
    pub upstream: String,
    pub downstream: Vec<String>,
    #[serde(default)]
    pub servers: Vec<Ipv6Addr>,
    pub rewrite_dns: Option<Spanned<Vec<Ipv6Addr>>>,
    /// Relays below the downstream interfaces whose Relay-Forward is passed on.
    #[serde(default)]
    pub trusted_relays: Vec<Spanned<String>>,
}

/// The stateful keys of an interface or a link, borrowed.
pub(crate) struct Pools<'a> {
    pub name: &'a Spanned<String>,
    pub na_pools: &'a [Spanned<String>],
    pub pd_pools: &'a [Spanned<String>],
    pub preferred_lifetime: Option<&'a Spanned<u32>>,
    pub valid_lifetime: Option<&'a Spanned<u32>>,
    pub t1: Option<&'a Spanned<u32>>,
    pub t2: Option<&'a Spanned<u32>>,
    pub rapid_commit: Option<bool>,
    pub max_leases_per_client: Option<u32>,
    pub max_leases_per_mac: Option<u32>,
    pub max_declined_per_client: Option<u32>,
    pub max_declined_per_link: Option<u32>,
    pub create_on_renew: Option<bool>,
    pub reservation: &'a [Reservation],
}

impl Pools<'_> {
    /// True if the table has anything stateful to serve.
    pub fn is_empty(&self) -> bool {
        self.na_pools.is_empty() && self.pd_pools.is_empty() && self.reservation.is_empty()
    }
}

/// The text of a file and the name it goes by in messages, to turn byte offsets (serde
/// spans) into lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub path: &'a std::path::Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or(self.text);
        before.bytes().filter(|b| *b == b'\n').count() + 1
    }

    pub fn line_of<T>(&self, s: &Spanned<T>) -> usize {
        self.line(s.span().start)
    }

    /// A refusal of what sits at `offset`.
    pub fn invalid(&self, offset: usize, reason: Reason) -> ConfigError {
        self.invalid_at_line(self.line(offset), reason)
    }

    pub fn invalid_at_line(&self, line: usize, reason: Reason) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_path_buf(), line, reason }
    }

    /// The document, or the TOML error (syntax, type, unknown key) on its line.
    pub fn parse(&self) -> Result<Document, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let line = e.span().map_or(1, |s| self.line(s.start));
            self.invalid_at_line(line, Reason::Syntax(e.message().to_owned()))
        })
    }
}
