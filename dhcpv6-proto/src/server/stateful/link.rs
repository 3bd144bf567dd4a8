//! Which link a client is on: the first decision for every stateful message, and a pure
//! one (names and prefixes in, a link out).
//!
//! A client on one of our interfaces belongs to that interface's pools, else to the
//! command line's (`DEFAULT_LINK`). A relayed client belongs to the link its innermost
//! relay names by Interface-ID, else to the one whose prefix holds the relay's
//! link-address. A client that fits none is put on `UNCONFIGURED_LINK`, when the caller
//! configured one (the daemon always does, `unconfigured()`): it gets NoAddrsAvail /
//! NoPrefixAvail inside its IAs rather than silence.

use std::net::Ipv6Addr;

use crate::config::DEFAULT_LINK;

use super::config::LinkPools;
use crate::server::relay::LinkSelector;

/// Where clients on a link no pool names are put.
pub const UNCONFIGURED_LINK: &str = "unconfigured";

/// The link of `UNCONFIGURED_LINK`: no pools, and no unicast (nothing there to serve).
pub fn unconfigured() -> LinkPools {
    LinkPools { reject_unicast: true, ..LinkPools::new(UNCONFIGURED_LINK) }
}

/// The link a client is on, as found by `named` (a link by name) and `by_address` (the link
/// whose prefix holds an address); `None` when not even `UNCONFIGURED_LINK` exists.
pub(crate) fn choose<L>(
    arrival: &str,
    relay: Option<&LinkSelector<'_>>,
    named: impl Fn(&str) -> Option<L>,
    by_address: impl Fn(Ipv6Addr) -> Option<L>,
) -> Option<L> {
    let found = match relay {
        Some(r) => r
            .interface_id
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(&named)
            .or_else(|| r.link_address.and_then(by_address)),
        None => named(arrival).or_else(|| named(DEFAULT_LINK)),
    };
    found.or_else(|| named(UNCONFIGURED_LINK))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINKS: [&str; 4] = ["eth1", DEFAULT_LINK, "vlan7", UNCONFIGURED_LINK];

    fn pick<'a>(links: &[&'a str], arrival: &str, relay: Option<&LinkSelector<'_>>) -> Option<&'a str> {
        let named = |n: &str| links.iter().copied().find(|l| *l == n);
        // vlan7's prefix is 2001:db8:7::/48.
        let by_address =
            |a: Ipv6Addr| (a.segments()[..3] == [0x2001, 0xdb8, 7]).then_some("vlan7").filter(|l| links.contains(l));
        choose(arrival, relay, named, by_address)
    }

    #[test]
    fn direct_clients_get_their_interface_then_the_default_then_unconfigured() {
        assert_eq!(pick(&LINKS, "eth1", None), Some("eth1"));
        assert_eq!(pick(&LINKS, "eth2", None), Some(DEFAULT_LINK));
        assert_eq!(pick(&["eth1", UNCONFIGURED_LINK], "eth2", None), Some(UNCONFIGURED_LINK));
        assert_eq!(pick(&["eth1"], "eth2", None), None);
    }

    #[test]
    fn relayed_clients_get_the_interface_id_then_the_link_address_never_the_arrival() {
        let by_id = LinkSelector { interface_id: Some(b"vlan7"), ..Default::default() };
        assert_eq!(pick(&LINKS, "eth1", Some(&by_id)), Some("vlan7"));
        let unknown_id = LinkSelector {
            interface_id: Some(b"vlan9"),
            link_address: Some("2001:db8:7::1".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(pick(&LINKS, "eth1", Some(&unknown_id)), Some("vlan7"));
        let not_utf8 = LinkSelector { interface_id: Some(&[0xff, 0xfe]), ..Default::default() };
        assert_eq!(pick(&LINKS, "eth1", Some(&not_utf8)), Some(UNCONFIGURED_LINK));
        let elsewhere = LinkSelector { link_address: Some("2001:db8:9::1".parse().unwrap()), ..Default::default() };
        assert_eq!(pick(&LINKS, "eth1", Some(&elsewhere)), Some(UNCONFIGURED_LINK), "not the arrival interface");
        assert_eq!(pick(&["eth1"], "eth1", Some(&elsewhere)), None);
    }

    #[test]
    fn the_unconfigured_link_serves_nothing_and_refuses_unicast() {
        let l = unconfigured();
        assert_eq!(l.link, UNCONFIGURED_LINK);
        assert!(l.na.is_empty() && l.pd.is_empty() && l.reservations.is_empty());
        assert!(l.reject_unicast);
    }
}
