//! The control socket's protocol, shared by the daemon (`daemon/control.rs`) and
//! `dhcpv6d ctl` (`ctl.rs`): one request per connection, one line of JSON each way.
//!
//! ```text
//! > {"cmd":"leases","filter":{"link":"eth1"}}
//! < {"result":"leases","leases":[{"duid":"000100...","iaid":1,"kind":"na",...}]}
//! ```

use std::{collections::BTreeMap, fmt, net::Ipv6Addr, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::leases::{Lease, LeaseKind};

/// Longest request line the daemon reads (a request is a command and a few filters).
pub const MAX_REQUEST_LEN: usize = 16 * 1024;
/// Longest answer `ctl` reads: a lease list of a few hundred thousand leases fits.
pub const MAX_RESPONSE_LEN: usize = 512 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    // Braces, not unit variants: serde refuses unknown fields only in struct variants.
    Status {},
    Leases {
        #[serde(default)]
        filter: LeaseFilter,
    },
    /// Frees an address or prefix and removes its route.
    Release {
        target: ReleaseTarget,
    },
    /// Re-reads the configuration file, as SIGHUP does.
    Reload {},
    /// Parses and validates a file with the daemon's command line, without applying it.
    ConfigCheck {
        path: PathBuf,
    },
    Stats {},
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Leases {
        leases: Vec<LeaseView>,
    },
    Released {
        lease: LeaseView,
    },
    Reloaded,
    ConfigOk {
        path: PathBuf,
    },
    Stats(Stats),
    /// The request was refused or failed; for `reload` and `config_check` a refused file
    /// is `path:line: reason`.
    Error {
        message: String,
    },
}

impl Response {
    pub fn error(message: impl fmt::Display) -> Self {
        Response::Error { message: message.to_string() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: u64,
    /// The XDP program answers Information-Requests itself (`--no-fast-path` turns it off).
    pub fast_path: bool,
    pub ifaces: Vec<IfaceStatus>,
    /// Relay-agent mode: the upstream interface.
    pub relay_upstream: Option<String>,
    /// Leases held; `None` without stateful service (no pools).
    pub leases: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceStatus {
    pub name: String,
    /// `None` while the interface does not exist.
    pub ifindex: Option<u32>,
    /// The XDP program is attached to it (through a pinned link).
    pub xdp_attached: bool,
    /// The fast path has its reply data (a link-local address is known).
    pub reply_data: bool,
}

/// One lease as `ctl leases` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The client's DUID, hex.
    pub duid: String,
    pub iaid: u32,
    /// `na` (address) or `pd` (delegated prefix).
    pub kind: String,
    /// For `na`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv6Addr>,
    /// For `pd`: `PREFIX/LEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub link: String,
    /// Seconds left of the valid and preferred lifetimes (0: expired, not yet reclaimed).
    pub valid_left: u64,
    pub preferred_left: u64,
    /// `bound` or `declined`.
    pub state: String,
    /// For a delegated prefix: `via ADDR dev IF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

impl LeaseView {
    pub fn new(l: &Lease, now: u64) -> Self {
        let (address, prefix) = match l.kind {
            LeaseKind::Address => (Some(l.addr), None),
            LeaseKind::Prefix => (None, Some(format!("{}/{}", l.addr, l.prefix_len))),
        };
        LeaseView {
            duid: hex(&l.duid),
            iaid: l.iaid,
            kind: l.kind.as_str().to_owned(),
            address,
            prefix,
            link: l.iface.clone(),
            valid_left: l.valid_until.saturating_sub(now),
            preferred_left: l.preferred_until.saturating_sub(now),
            state: l.state.as_str().to_owned(),
            route: l.next_hop.as_ref().map(|h| format!("via {} dev {}", h.via, h.dev)),
        }
    }

    /// The address, or `PREFIX/LEN`.
    pub fn what(&self) -> String {
        match (&self.address, &self.prefix) {
            (Some(a), _) => a.to_string(),
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Which leases `ctl leases` lists: all given conditions hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duid: Option<HexBytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The address itself, or an address inside a delegated prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv6Addr>,
}

impl LeaseFilter {
    pub fn matches(&self, l: &Lease) -> bool {
        self.duid.as_ref().is_none_or(|d| d.0 == l.duid)
            && self.link.as_ref().is_none_or(|k| *k == l.iface)
            && self.address.is_none_or(|a| covers(l, a))
    }
}

fn covers(l: &Lease, a: Ipv6Addr) -> bool {
    match l.kind {
        LeaseKind::Address => l.addr == a,
        LeaseKind::Prefix => {
            let mask = u128::MAX.checked_shl(128 - u32::from(l.prefix_len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(l.addr) & mask
        }
    }
}

/// What `ctl release` names: an address, or a delegated prefix (`PREFIX/LEN`, or its first
/// address alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTarget {
    pub addr: Ipv6Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u8>,
}

impl ReleaseTarget {
    /// Whether `l` is the lease this names.
    pub fn names(&self, l: &Lease) -> bool {
        match self.len {
            Some(len) => l.addr == self.addr && l.prefix_len == len,
            None => l.addr == self.addr,
        }
    }
}

impl FromStr for ReleaseTarget {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::Target(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok().filter(|l| (1..=128).contains(l)).ok_or_else(bad)?)),
            None => (s, None),
        };
        Ok(ReleaseTarget { addr: addr.parse().map_err(|_| bad())?, len })
    }
}

impl fmt::Display for ReleaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.len {
            Some(l) => write!(f, "{}/{l}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Bytes written as hex (a DUID); parsing takes `0001...` or `00:01:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexBytes(pub Vec<u8>);

impl FromStr for HexBytes {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let digits: Vec<u8> = s.bytes().filter(|b| !matches!(b, b':' | b'-')).collect();
        if digits.is_empty() || !digits.len().is_multiple_of(2) {
            return Err(ParseError::Hex(s.to_owned()));
        }
        digits
            .chunks(2)
            .map(|p| {
                let p = std::str::from_utf8(p).map_err(|_| ParseError::Hex(s.to_owned()))?;
                u8::from_str_radix(p, 16).map_err(|_| ParseError::Hex(s.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(HexBytes)
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The counters `ctl stats` shows (the same as `dhcpv6d stats`, read from the daemon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// XDP counters summed over CPUs; `None` when the map could not be read (`xdp_error`).
    pub xdp: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_error: Option<String>,
    pub userspace: BTreeMap<String, u64>,
    /// Message type -> outcome -> count.
    pub messages: BTreeMap<String, BTreeMap<String, u64>>,
    pub lease_events: BTreeMap<String, u64>,
    /// The lease script's `runs`, `dropped` and `failed_REASON` (absent from older daemons).
    #[serde(default)]
    pub lease_script: BTreeMap<String, u64>,
    pub commit_latency: Latency,
    /// Each receive worker's share (`--workers`), in worker order; empty from a daemon that
    /// predates them.
    #[serde(default)]
    pub workers: Vec<WorkerView>,
}

/// One receive worker's counters and queue depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerView {
    pub received: u64,
    pub shed: u64,
    pub queue: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub sum_seconds: f64,
    /// (upper bound in seconds, commits at or below it), cumulative.
    pub buckets: Vec<(f64, u64)>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("{0:?} is not hex bytes")]
    Hex(String),
    #[error("{0:?} is not an address or PREFIX/LEN")]
    Target(String),
}

/// Why a line is not a request or an answer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtoError {
    #[error("longer than {0} bytes")]
    TooLong(usize),
    #[error("not a valid message: {0}")]
    Json(#[from] serde_json::Error),
}

/// One message as its line on the socket.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // These types have string keys and no non-finite floats but for the latency sum,
    // which is a finite sum of finite durations: serialization cannot fail.
    let mut line = serde_json::to_vec(v).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::error(format!("encoding the answer: {e}"))).unwrap_or_default()
    });
    line.push(b'\n');
    line
}

/// A request from the bytes read up to the newline (or end of stream).
pub fn decode_request(line: &[u8]) -> Result<Request, ProtoError> {
    if line.len() > MAX_REQUEST_LEN {
        return Err(ProtoError::TooLong(MAX_REQUEST_LEN));
    }
    Ok(serde_json::from_slice(line.trim_ascii())?)
}

pub fn decode_response(line: &[u8]) -> Result<Response, ProtoError> {
    if line.len() > MAX_RESPONSE_LEN {
        return Err(ProtoError::TooLong(MAX_RESPONSE_LEN));
    }
    Ok(serde_json::from_slice(line.trim_ascii())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::{LeaseState, NextHop};

    fn lease(kind: LeaseKind, addr: &str, len: u8, duid: &[u8], link: &str) -> Lease {
        Lease {
            duid: duid.to_vec(),
            iaid: 7,
            kind,
            addr: addr.parse().unwrap(),
            prefix_len: len,
            iface: link.into(),
            valid_until: 1_000,
            preferred_until: 600,
            state: LeaseState::Bound,
            next_hop: (kind == LeaseKind::Prefix)
                .then(|| Box::new(NextHop { via: "fe80::2".parse().unwrap(), dev: "eth1".into() })),
            last_transaction: 0,
            relay: None,
        }
    }

    #[test]
    fn requests_round_trip_as_one_line() {
        let all = [
            Request::Status {},
            Request::Leases { filter: LeaseFilter::default() },
            Request::Leases {
                filter: LeaseFilter {
                    duid: Some("00:01:ab".parse().unwrap()),
                    link: Some("eth1".into()),
                    address: Some("2001:db8::1".parse().unwrap()),
                },
            },
            Request::Release { target: "2001:db8:100::/56".parse().unwrap() },
            Request::Release { target: "2001:db8::5".parse().unwrap() },
            Request::Reload {},
            Request::ConfigCheck { path: "/etc/dhcpv6d/dhcpv6d.toml".into() },
            Request::Stats {},
        ];
        for r in all {
            let line = encode(&r);
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line");
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(decode_request(&line).unwrap(), r);
        }
        assert_eq!(
            String::from_utf8(encode(&Request::Leases {
                filter: LeaseFilter { duid: Some(HexBytes(vec![0, 1, 0xab])), ..Default::default() }
            }))
            .unwrap(),
            "{\"cmd\":\"leases\",\"filter\":{\"duid\":\"0001ab\"}}\n"
        );
        // A filter may be left out.
        assert_eq!(
            decode_request(b"{\"cmd\":\"leases\"}").unwrap(),
            Request::Leases { filter: LeaseFilter::default() }
        );
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"cmd\":\"format_disk\"}",
            b"{\"cmd\":\"status\",\"extra\":1}",
            b"{\"cmd\":\"leases\",\"filter\":{\"duid\":\"xyz\"}}",
            b"{\"cmd\":\"leases\",\"filter\":{\"colour\":\"red\"}}",
            b"{\"cmd\":\"release\",\"target\":{\"addr\":\"not-an-address\"}}",
            b"\xff\xfe",
        ] {
            assert!(decode_request(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = vec![b' '; MAX_REQUEST_LEN + 1];
        assert!(matches!(decode_request(&long), Err(ProtoError::TooLong(_))));
    }

    #[test]
    fn responses_round_trip() {
        let l = LeaseView::new(&lease(LeaseKind::Prefix, "2001:db8:100::", 56, &[0, 1, 2], "eth1"), 400);
        let all = [
            Response::Leases { leases: vec![l.clone()] },
            Response::Released { lease: l },
            Response::Reloaded,
            Response::ConfigOk { path: "/x.toml".into() },
            Response::error("/x.toml:3: unknown field `colour`"),
            Response::Status(Status {
                version: "0.1.0".into(),
                pid: 1,
                uptime_seconds: 5,
                fast_path: true,
                ifaces: vec![IfaceStatus {
                    name: "eth1".into(),
                    ifindex: Some(2),
                    xdp_attached: true,
                    reply_data: true,
                }],
                relay_upstream: None,
                leases: Some(3),
            }),
            Response::Stats(Stats {
                xdp: None,
                xdp_error: Some("no map".into()),
                userspace: [("received".to_owned(), 3)].into(),
                messages: [("solicit".to_owned(), [("replied".to_owned(), 2)].into())].into(),
                lease_events: [("granted".to_owned(), 1)].into(),
                lease_script: [("runs".to_owned(), 4), ("failed_timeout".to_owned(), 1)].into(),
                commit_latency: Latency { count: 1, sum_seconds: 0.002, buckets: vec![(0.001, 0), (0.0025, 1)] },
                workers: vec![WorkerView { received: 5, shed: 1, queue: 0 }],
            }),
        ];
        for r in all {
            assert_eq!(decode_response(&encode(&r)).unwrap(), r);
        }
    }

    #[test]
    fn lease_views_name_everything_an_operator_asks_for() {
        let v = LeaseView::new(&lease(LeaseKind::Address, "2001:db8::5", 128, &[0, 1, 0xab], "eth1"), 400);
        let json: serde_json::Value = serde_json::from_slice(&encode(&v)).unwrap();
        assert_eq!(json["duid"], "0001ab");
        assert_eq!(json["iaid"], 7);
        assert_eq!(json["kind"], "na");
        assert_eq!(json["address"], "2001:db8::5");
        assert_eq!(json["link"], "eth1");
        assert_eq!(json["valid_left"], 600);
        assert_eq!(json["preferred_left"], 200);
        assert_eq!(json["state"], "bound");
        assert!(json.get("route").is_none() && json.get("prefix").is_none());
        let p = LeaseView::new(&lease(LeaseKind::Prefix, "2001:db8:100::", 56, &[1], "eth1"), 2_000);
        assert_eq!((p.prefix.as_deref(), p.valid_left, p.preferred_left), (Some("2001:db8:100::/56"), 0, 0));
        assert_eq!(p.route.as_deref(), Some("via fe80::2 dev eth1"));
        assert_eq!(p.what(), "2001:db8:100::/56");
    }

    #[test]
    fn filters_match_duid_link_and_address_or_the_prefix_holding_it() {
        let na = lease(LeaseKind::Address, "2001:db8::5", 128, &[0, 1, 0xab], "eth1");
        let pd = lease(LeaseKind::Prefix, "2001:db8:100::", 56, &[0, 1, 0xcd], "olt-7");
        let f = |duid: Option<&str>, link: Option<&str>, addr: Option<&str>| LeaseFilter {
            duid: duid.map(|d| d.parse().unwrap()),
            link: link.map(Into::into),
            address: addr.map(|a| a.parse().unwrap()),
        };
        assert!(f(None, None, None).matches(&na) && f(None, None, None).matches(&pd));
        assert!(f(Some("00:01:ab"), None, None).matches(&na));
        assert!(!f(Some("0001ab"), None, None).matches(&pd));
        assert!(f(None, Some("olt-7"), None).matches(&pd) && !f(None, Some("olt-7"), None).matches(&na));
        assert!(f(None, None, Some("2001:db8::5")).matches(&na));
        assert!(!f(None, None, Some("2001:db8::6")).matches(&na));
        assert!(f(None, None, Some("2001:db8:100:ff::1")).matches(&pd), "inside the /56");
        assert!(!f(None, None, Some("2001:db8:100:100::")).matches(&pd), "the next /56");
        assert!(f(Some("0001cd"), Some("olt-7"), Some("2001:db8:100::")).matches(&pd));
        assert!(!f(Some("0001cd"), Some("eth1"), Some("2001:db8:100::")).matches(&pd), "every condition holds");
    }

    #[test]
    fn release_targets_parse_and_name_their_lease() {
        let t: ReleaseTarget = "2001:db8:100::/56".parse().unwrap();
        assert_eq!(t.to_string(), "2001:db8:100::/56");
        let pd = lease(LeaseKind::Prefix, "2001:db8:100::", 56, &[1], "eth1");
        assert!(t.names(&pd));
        assert!(!"2001:db8:100::/48".parse::<ReleaseTarget>().unwrap().names(&pd));
        assert!("2001:db8:100::".parse::<ReleaseTarget>().unwrap().names(&pd), "its first address alone");
        for bad in ["", "2001:db8::/0", "2001:db8::/129", "2001:db8::/x", "10.0.0.1", "2001:db8::1/64/2"] {
            assert!(bad.parse::<ReleaseTarget>().is_err(), "{bad}");
        }
        for bad in ["", "0", "zz", "00:0"] {
            assert!(bad.parse::<HexBytes>().is_err(), "{bad}");
        }
        assert_eq!("00-01-AB".parse::<HexBytes>().unwrap().0, vec![0, 1, 0xab]);
    }
}
