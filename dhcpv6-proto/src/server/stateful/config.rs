//! Stateful configuration per link: pools, lifetimes, reservations. Plain structs; the
//! configuration layer (`crate::config`) fills them from the file or the command line and
//! checks them with `check_links`, which names the offending items (`Location`) so that a
//! refusal can point at a file's line. `Engine::new` runs the same checks as typed errors.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use crate::wire::Duid;

use super::pools::{in_prefix, mask, AddrRange, PrefixPool};

/// Lifetimes and renewal times handed to every lease of a link, in seconds. The same T1/T2
/// go into every IA of a message, so that a client renews all its IAs at once (RFC 9915
/// section 21.4 and RFC 7550 section 4.3 ask servers for that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub preferred: u32,
    pub valid: u32,
    pub t1: u32,
    pub t2: u32,
}

impl Lifetimes {
    /// T1 = 0.5 and T2 = 0.8 times the preferred lifetime, the ratios RFC 9915 section 21.4
    /// recommends.
    pub fn new(preferred: u32, valid: u32) -> Self {
        let t1 = preferred / 2;
        let t2 = (u64::from(preferred) * 4 / 5) as u32;
        Self { preferred, valid, t1, t2 }
    }

    /// Validated lifetimes: `t1`/`t2` default to the recommended ratios of `preferred`.
    pub fn checked(preferred: u32, valid: u32, t1: Option<u32>, t2: Option<u32>) -> Result<Self, LifetimeProblem> {
        let d = Self::new(preferred, valid);
        let l = Self { t1: t1.unwrap_or(d.t1), t2: t2.unwrap_or(d.t2), ..d };
        l.problem().map_or(Ok(l), Err)
    }

    pub fn problem(&self) -> Option<LifetimeProblem> {
        if self.valid == 0 {
            Some(LifetimeProblem::ValidZero)
        } else if self.preferred > self.valid {
            Some(LifetimeProblem::PreferredOverValid)
        } else if self.t1 > self.t2 {
            Some(LifetimeProblem::T1AfterT2)
        } else if self.t2 > self.preferred {
            Some(LifetimeProblem::T2AfterPreferred)
        } else {
            None
        }
    }
}

/// One of the four values of `Lifetimes`, to say which a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeField {
    Preferred,
    Valid,
    T1,
    T2,
}

/// Why a set of lifetimes cannot be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeProblem {
    #[error("valid lifetime is 0")]
    ValidZero,
    #[error("preferred lifetime is longer than the valid lifetime")]
    PreferredOverValid,
    #[error("T1 is later than T2")]
    T1AfterT2,
    #[error("T2 is later than the preferred lifetime")]
    T2AfterPreferred,
}

impl LifetimeProblem {
    /// The values involved, the one more likely mistyped first (the later one of a pair:
    /// operators raise one value and forget the other).
    pub fn fields(self) -> &'static [LifetimeField] {
        use LifetimeField::*;
        match self {
            Self::ValidZero => &[Valid],
            Self::PreferredOverValid => &[Preferred, Valid],
            Self::T1AfterT2 => &[T1, T2],
            Self::T2AfterPreferred => &[T2, Preferred],
        }
    }
}

impl Default for Lifetimes {
    /// Two hours valid, one hour preferred: short enough that an ISP can renumber or
    /// reclaim an abandoned CPE's lease within hours, long enough that a box renewing at T1
    /// sends one Renew every 30 minutes.
    fn default() -> Self {
        Self::new(3600, 7200)
    }
}

/// A fixed address and/or prefix for one client. Every matcher that is `Some` must match;
/// at least one must be set. Relay matchers compare the raw option data the relay inserted
/// (Remote-ID includes its 4-byte enterprise number).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reservation {
    pub duid: Option<Duid>,
    /// Only this IA of the client; `None`: the first IA of the right kind that asks.
    pub iaid: Option<u32>,
    pub address: Option<Ipv6Addr>,
    pub prefix: Option<(Ipv6Addr, u8)>,
    /// Relay Remote-ID (option 37) data.
    pub remote_id: Option<Vec<u8>>,
    /// Relay Subscriber-ID (option 38) data.
    pub subscriber_id: Option<Vec<u8>>,
    /// Interface-ID (option 18) data.
    pub interface_id: Option<Vec<u8>>,
    /// Client Link-Layer Address (option 79) data: 2-byte type then the address.
    pub client_linklayer: Option<Vec<u8>>,
}

impl Reservation {
    fn has_matcher(&self) -> bool {
        self.duid.is_some()
            || self.remote_id.is_some()
            || self.subscriber_id.is_some()
            || self.interface_id.is_some()
            || self.client_linklayer.is_some()
    }
}

/// The stateful service of one link: an interface name, or a relay link id for links
/// behind relays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPools {
    pub link: String,
    pub na: Vec<AddrRange>,
    pub pd: Vec<PrefixPool>,
    pub lifetimes: Lifetimes,
    /// Answer a Solicit carrying Rapid Commit with a committed Reply (RFC 9915 section
    /// 18.3.1). Off by default: with several servers on a link, every one of them would
    /// commit a lease and all but one would be wasted until they expire.
    pub rapid_commit: bool,
    pub reservations: Vec<Reservation>,
    /// How long a declined address is kept out of allocation, in seconds.
    pub decline_hold: u32,
    /// Discard messages a client unicast to us (RFC 9915 section 16: we never send Server
    /// Unicast). The configuration always sets it; `false` serves them like any other.
    pub reject_unicast: bool,
    /// A relayed link's own options (`[[link]]` with option keys); `None`: clients get the
    /// options of the interface the message arrived on.
    pub service: Option<std::sync::Arc<crate::server::LinkService>>,
    /// What one client may hold on this link (finding: one MAC with 10,000 DUIDs took 954
    /// leases and starved the link).
    pub limits: ClientLimits,
    /// Renew and Rebind for an IA we have no binding for create one when the pools allow
    /// (RFC 9915 sections 18.3.4 and 18.3.5 let a server do so): a client whose lease we
    /// lost, or a CPE that switched from IA_NA to IA_PD with an old lease file, is bound at
    /// once instead of after its old lease's valid lifetime. Off: NoBinding for Renew, and
    /// a Rebind that names nothing usable is dropped.
    pub create_on_renew: bool,
}

/// Caps on what one client may hold on a link; 0 is no cap. Past a cap new leases are
/// refused (NoAddrsAvail/NoPrefixAvail in the IA, and a counter); what a client already
/// holds stays renewable. Reserved addresses and prefixes are not capped: the operator gave
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Addresses plus prefixes bound to one DUID on the link.
    pub per_client: u32,
    /// Addresses plus prefixes bound to one client identity beyond the DUID: the MAC from
    /// the relay's Client Link-Layer Address, else the relay's Remote-ID; for a client on
    /// the link, the MAC in an EUI-64 source address, else its link-local source address.
    pub per_mac: u32,
    /// Declined addresses held back for one DUID; a Decline past it frees the address
    /// instead of holding it.
    pub declined_per_client: u32,
    /// Declined addresses held back on the link, all clients together.
    pub declined_per_link: u32,
}

impl Default for ClientLimits {
    /// A CPE asks for one IA_NA and one IA_PD (RFC 7084), some for an IA_PD per LAN port:
    /// eight covers that with room for a reflashed CPE whose old DUID's leases still run.
    /// Two declines per client cover a real address conflict and its retry; 64 per link
    /// keep a Decline loop from emptying a pool while still recording real conflicts.
    fn default() -> Self {
        Self { per_client: 8, per_mac: 8, declined_per_client: 2, declined_per_link: 64 }
    }
}

impl LinkPools {
    pub fn new(link: impl Into<String>) -> Self {
        Self {
            link: link.into(),
            na: Vec::new(),
            pd: Vec::new(),
            lifetimes: Lifetimes::default(),
            rapid_commit: false,
            reservations: Vec::new(),
            // A day, as ISC Kea's decline-probation-period: long enough for an operator to
            // find the host that squats on the address.
            decline_hold: 86_400,
            reject_unicast: false,
            service: None,
            limits: ClientLimits::default(),
            create_on_renew: true,
        }
    }

    /// The prefixes that are on this link: each address range's /64 (or shorter).
    pub fn link_prefixes(&self) -> impl Iterator<Item = (Ipv6Addr, u8)> + '_ {
        self.na.iter().map(AddrRange::link_prefix)
    }

    /// True if `a` is appropriate for this link (RFC 9915 section 18.3.3).
    pub fn is_on_link(&self, a: Ipv6Addr) -> bool {
        self.link_prefixes().any(|(p, l)| in_prefix(a, p, l))
    }
}

/// The link a relayed client is on: the one whose address-range prefix holds the relay's
/// link-address (RFC 9915 section 19.1.1: the relay puts an address of the client's link
/// there). `None` for `::` (the relay sent no usable link-address; use the Interface-ID).
pub fn link_for_relay(links: &[LinkPools], link_address: Ipv6Addr) -> Option<&LinkPools> {
    if link_address.is_unspecified() {
        return None;
    }
    links.iter().find(|l| l.is_on_link(link_address))
}

/// Why a configuration cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("link {0:?} is configured twice")]
    DuplicateLink(String),
    #[error("link {link:?}: lifetimes: {reason}")]
    Lifetimes { link: String, reason: LifetimeProblem },
    #[error("{what} overlap: {a} and {b}")]
    Overlap { what: &'static str, a: String, b: String },
    #[error("link {link:?}: reservation {index}: {reason}")]
    Reservation { link: String, index: usize, reason: String },
}

/// What in a link a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The link as a whole (its name).
    Link,
    Lifetimes(LifetimeProblem),
    /// `na[i]`.
    AddrRange(usize),
    /// `pd[i]`.
    PrefixPool(usize),
    /// `reservations[i]`, and which of its values.
    Reservation(usize, ReservationPart),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationPart {
    /// The reservation as a whole (what it matches on, or that it reserves nothing).
    Whole,
    Address,
    Prefix,
}

/// An item of `links[link]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub link: usize,
    pub item: Item,
}

/// A refused set of links: the reason and the items it is about (two for an overlap or a
/// duplicate name, in the order of `links`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Refusal {
    pub error: ConfigError,
    pub at: Vec<Location>,
}

impl From<Refusal> for ConfigError {
    fn from(r: Refusal) -> Self {
        r.error
    }
}

/// An inclusive interval of the address space with a description for errors.
struct Span {
    start: u128,
    end: u128,
    at: Location,
    desc: String,
}

fn prefix_span(p: Ipv6Addr, len: u8, at: Location, desc: String) -> Span {
    let start = u128::from(p) & mask(len);
    Span { start, end: start | !mask(len), at, desc }
}

/// Finds two overlapping spans, ignoring pairs for which `allowed` is true.
fn first_overlap(mut spans: Vec<Span>, allowed: impl Fn(&Span, &Span) -> bool) -> Option<(Span, Span)> {
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut widest: Option<Span> = None;
    for s in spans {
        match widest {
            Some(w) if s.start <= w.end && !allowed(&w, &s) => return Some((w, s)),
            Some(ref w) if w.end >= s.end => {}
            _ => widest = Some(s),
        }
    }
    None
}

/// `first_overlap` as a refusal, with both items in link order.
fn refuse_overlap(what: &'static str, spans: Vec<Span>, allowed: impl Fn(&Span, &Span) -> bool) -> Result<(), Refusal> {
    match first_overlap(spans, allowed) {
        None => Ok(()),
        Some((a, b)) => {
            let mut at = vec![a.at, b.at];
            at.sort_by_key(|l| l.link);
            Err(Refusal { error: ConfigError::Overlap { what, a: a.desc, b: b.desc }, at })
        }
    }
}

/// What `Engine::new` relies on, as a typed error (see `check_links`).
pub(crate) fn validate(links: &[LinkPools]) -> Result<(), ConfigError> {
    Ok(check_links(links)?)
}

/// Checks everything `Engine::new` relies on: pools that do not overlap (so every address
/// and prefix has one owner), link prefixes that belong to one link each (so a relay's
/// link-address names one link), and reservations that can be honoured. No engine is built.
pub fn check_links(links: &[LinkPools]) -> Result<(), Refusal> {
    let mut names = std::collections::HashMap::new();
    for (i, l) in links.iter().enumerate() {
        if let Some(first) = names.insert(l.link.as_str(), i) {
            let at = [first, i].map(|link| Location { link, item: Item::Link }).to_vec();
            return Err(Refusal { error: ConfigError::DuplicateLink(l.link.clone()), at });
        }
        if let Some(reason) = l.lifetimes.problem() {
            let at = vec![Location { link: i, item: Item::Lifetimes(reason) }];
            return Err(Refusal { error: ConfigError::Lifetimes { link: l.link.clone(), reason }, at });
        }
    }
    let ranges = links.iter().enumerate().flat_map(|(link, l)| {
        l.na.iter().enumerate().map(move |(j, r)| Span {
            start: u128::from(r.start()),
            end: u128::from(r.end()),
            at: Location { link, item: Item::AddrRange(j) },
            desc: format!("{} on {:?}", r, l.link),
        })
    });
    refuse_overlap("address ranges", ranges.collect(), |_, _| false)?;
    let pd_spans = || {
        links.iter().enumerate().flat_map(|(link, l)| {
            l.pd.iter().enumerate().map(move |(j, p)| {
                let at = Location { link, item: Item::PrefixPool(j) };
                prefix_span(p.prefix(), p.prefix_len(), at, format!("{} on {:?}", p, l.link))
            })
        })
    };
    refuse_overlap("prefix pools", pd_spans().collect(), |_, _| false)?;
    let link_spans = || {
        links.iter().enumerate().flat_map(|(link, l)| {
            l.na.iter().enumerate().map(move |(j, r)| {
                let (p, len) = r.link_prefix();
                let at = Location { link, item: Item::AddrRange(j) };
                prefix_span(p, len, at, format!("{}/{} of {:?}", p, len, l.link))
            })
        })
    };
    // One link may have several ranges in one /64; two links may not share a prefix.
    refuse_overlap("link prefixes", link_spans().collect(), |a, b| a.at.link == b.at.link)?;
    // Delegated prefixes are routed to CPEs; one inside a link's own /64 would hijack it.
    let is_pd = |s: &Span| matches!(s.at.item, Item::PrefixPool(_));
    let mixed: Vec<Span> = pd_spans().chain(link_spans()).collect();
    refuse_overlap("prefix pool and link prefix", mixed, |a, b| is_pd(a) == is_pd(b))?;
    check_reservations(links)
}

fn check_reservations(links: &[LinkPools]) -> Result<(), Refusal> {
    let mut taken_addrs = HashSet::new();
    let mut taken_prefixes = HashSet::new();
    for (link, l) in links.iter().enumerate() {
        for (index, r) in l.reservations.iter().enumerate() {
            let err = |part, reason: String| Refusal {
                error: ConfigError::Reservation { link: l.link.clone(), index, reason },
                at: vec![Location { link, item: Item::Reservation(index, part) }],
            };
            use ReservationPart::*;
            if !r.has_matcher() {
                return Err(err(
                    Whole,
                    "no DUID, Remote-ID, Subscriber-ID, Interface-ID or link-layer address to match".into(),
                ));
            }
            if r.address.is_none() && r.prefix.is_none() {
                return Err(err(Whole, "reserves neither an address nor a prefix".into()));
            }
            if let Some(a) = r.address {
                if !l.is_on_link(a) {
                    return Err(err(Address, format!("{a} is not in a prefix of this link's address ranges")));
                }
                if !taken_addrs.insert(a) {
                    return Err(err(Address, format!("{a} is reserved twice")));
                }
            }
            if let Some((p, len)) = r.prefix {
                if len == 0 || len > 128 || u128::from(p) & !mask(len) != 0 {
                    return Err(err(Prefix, format!("{p}/{len} is not a valid prefix")));
                }
                // Inside a pool it must be one of that pool's prefixes, or it would overlap
                // prefixes the pool delegates to others.
                for (owner, pool) in links.iter().flat_map(|o| o.pd.iter().map(move |p| (o, p))) {
                    if pool.overlaps(p, len) && (owner.link != l.link || pool.slot_of(p, len).is_none()) {
                        return Err(err(
                            Prefix,
                            format!(
                                "{p}/{len} overlaps pool {pool} of {:?} but is not one of its prefixes",
                                owner.link
                            ),
                        ));
                    }
                }
                if !taken_prefixes.insert((p, len)) {
                    return Err(err(Prefix, format!("{p}/{len} is reserved twice")));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, na: &[&str], pd: &[&str]) -> LinkPools {
        LinkPools {
            na: na.iter().map(|s| s.parse().unwrap()).collect(),
            pd: pd.iter().map(|s| s.parse().unwrap()).collect(),
            ..LinkPools::new(name)
        }
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn default_lifetimes_follow_the_recommended_ratios() {
        let l = Lifetimes::default();
        assert_eq!((l.preferred, l.valid, l.t1, l.t2), (3600, 7200, 1800, 2880));
        assert_eq!(l.problem(), None);
        assert!(Lifetimes { t1: 3000, ..l }.problem().is_some());
        assert!(Lifetimes { preferred: 8000, ..l }.problem().is_some());
        assert!(Lifetimes { t2: 4000, t1: 0, ..l }.problem().is_some());
    }

    #[test]
    fn relay_link_address_selects_the_link_by_its_range_prefix() {
        let links = vec![
            link("vlan100", &["2001:db8:100::1000-2001:db8:100::1fff"], &[]),
            link("vlan200", &["2001:db8:200::1000-2001:db8:200::1fff"], &["2001:db8:8000::/40:56"]),
        ];
        assert_eq!(link_for_relay(&links, a("2001:db8:200::1")).map(|l| l.link.as_str()), Some("vlan200"));
        assert_eq!(link_for_relay(&links, a("2001:db8:100::ffff:1")).map(|l| l.link.as_str()), Some("vlan100"));
        assert!(link_for_relay(&links, a("2001:db8:300::1")).is_none());
        assert!(link_for_relay(&links, Ipv6Addr::UNSPECIFIED).is_none());
        assert!(validate(&links).is_ok());
    }

    #[test]
    fn overlaps_are_refused() {
        let two = |x: LinkPools, y: LinkPools| validate(&[x, y]);
        let e = two(link("a", &["2001:db8::10-2001:db8::20"], &[]), link("b", &["2001:db8::20-2001:db8::30"], &[]));
        assert!(matches!(e, Err(ConfigError::Overlap { what: "address ranges", .. })), "{e:?}");
        let e = two(link("a", &["2001:db8::10-2001:db8::20"], &[]), link("b", &["2001:db8::100-2001:db8::130"], &[]));
        assert!(matches!(e, Err(ConfigError::Overlap { what: "link prefixes", .. })), "{e:?}");
        // Same link, two ranges in one /64: fine.
        assert!(validate(&[link("a", &["2001:db8::10-2001:db8::20", "2001:db8::100-2001:db8::130"], &[])]).is_ok());
        let e = two(link("a", &[], &["2001:db8::/40:56"]), link("b", &[], &["2001:db8:80::/41:56"]));
        assert!(matches!(e, Err(ConfigError::Overlap { what: "prefix pools", .. })), "{e:?}");
        let e = validate(&[link("a", &["2001:db8::10-2001:db8::20"], &["2001:db8::/48:56"])]);
        assert!(matches!(e, Err(ConfigError::Overlap { what: "prefix pool and link prefix", .. })), "{e:?}");
        let e = validate(&[link("a", &[], &[]), link("a", &[], &[])]);
        assert_eq!(e, Err(ConfigError::DuplicateLink("a".into())));
    }

    #[test]
    fn refusals_name_their_items() {
        let at = |link, item| Location { link, item };
        let r = check_links(&[
            link("a", &["2001:db8::10-2001:db8::20"], &[]),
            link("b", &["2001:db8:1::1-2001:db8:1::2", "2001:db8::20-2001:db8::30"], &[]),
        ])
        .unwrap_err();
        assert_eq!(r.at, vec![at(0, Item::AddrRange(0)), at(1, Item::AddrRange(1))]);
        let r = check_links(&[link("a", &["2001:db8::10-2001:db8::20"], &["2001:db8::/48:56"])]).unwrap_err();
        assert_eq!(r.at.len(), 2);
        assert!(r.at.contains(&at(0, Item::PrefixPool(0))) && r.at.contains(&at(0, Item::AddrRange(0))), "{r:?}");
        let r = check_links(&[link("a", &[], &[]), link("b", &[], &[]), link("a", &[], &[])]).unwrap_err();
        assert_eq!(r.at, vec![at(0, Item::Link), at(2, Item::Link)]);
        let bad = LinkPools { lifetimes: Lifetimes { t1: 3000, ..Lifetimes::default() }, ..link("a", &[], &[]) };
        let r = check_links(&[bad]).unwrap_err();
        assert_eq!(r.at, vec![at(0, Item::Lifetimes(LifetimeProblem::T1AfterT2))]);
        assert_eq!(r.to_string(), "link \"a\": lifetimes: T1 is later than T2");
        let r = check_links(&[LinkPools {
            reservations: vec![Reservation { iaid: Some(1), address: Some(a("2001:db8::1")), ..Default::default() }],
            ..link("a", &["2001:db8::10-2001:db8::20"], &[])
        }])
        .unwrap_err();
        assert_eq!(r.at, vec![at(0, Item::Reservation(0, ReservationPart::Whole))]);
    }

    #[test]
    fn checked_lifetimes_default_t1_t2_from_preferred() {
        assert_eq!(Lifetimes::checked(3600, 7200, None, None), Ok(Lifetimes::default()));
        let l = Lifetimes::checked(100, 200, None, Some(90)).unwrap();
        assert_eq!((l.t1, l.t2), (50, 90));
        assert_eq!(Lifetimes::checked(300, 200, None, None), Err(LifetimeProblem::PreferredOverValid));
        assert_eq!(Lifetimes::checked(100, 200, Some(95), Some(90)), Err(LifetimeProblem::T1AfterT2));
        assert_eq!(Lifetimes::checked(100, 0, None, None).unwrap_err().fields(), [LifetimeField::Valid]);
    }

    #[test]
    fn reservations_are_checked() {
        let base = link("a", &["2001:db8::10-2001:db8::20"], &["2001:db8:100::/40:56"]);
        let duid = Some(Duid::from_mac([2, 0, 0, 0, 0, 1]));
        let with = |r: Reservation| validate(&[LinkPools { reservations: vec![r], ..base.clone() }]);
        assert!(
            with(Reservation { duid: duid.clone(), address: Some(a("2001:db8::99")), ..Default::default() }).is_ok()
        );
        assert!(with(Reservation { address: Some(a("2001:db8::99")), ..Default::default() }).is_err(), "no matcher");
        assert!(with(Reservation { duid: duid.clone(), ..Default::default() }).is_err(), "nothing reserved");
        assert!(
            with(Reservation { duid: duid.clone(), address: Some(a("2001:db9::1")), ..Default::default() }).is_err()
        );
        let pfx = |p: &str, l| Reservation { duid: duid.clone(), prefix: Some((a(p), l)), ..Default::default() };
        assert!(with(pfx("2001:db8:100:100::", 56)).is_ok(), "a pool prefix");
        assert!(with(pfx("2001:db8:9000::", 48)).is_ok(), "outside every pool");
        assert!(with(pfx("2001:db8:100:100::", 60)).is_err(), "inside a pool, wrong length");
        assert!(with(pfx("2001:db8:100:101::", 56)).is_err(), "host bits");
        let relay_only = Reservation {
            remote_id: Some(vec![0, 0, 0, 9, 1]),
            address: Some(a("2001:db8::15")),
            ..Default::default()
        };
        assert!(with(relay_only).is_ok());
    }
}
