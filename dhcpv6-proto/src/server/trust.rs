//! Whom a datagram is believed from, before anything in it is (RFC 9915 sections 16, 18.4,
//! 19 and 21; lightweight relays RFC 6221 section 5.3.1 and its trusted interface).
//!
//! A Relay-Forward speaks for a client: its Interface-ID, link-address, Remote-ID,
//! Subscriber-ID and client MAC pick the link, the pools and the reservations, and its source
//! becomes a delegated prefix's next hop. So it is believed only from relays the operator
//! named ([`TrustedRelays`]). A client talks to us directly only from its link: link-local (as
//! RFC 9915 section 14 requires of clients) or on-link, and only to the DHCP multicast groups,
//! since we never sent a Server Unicast option ([`Arrival::admit`]). Every refusal is a
//! [`Counter`].

use std::{fmt, net::Ipv6Addr, str::FromStr};

use dhcpv6_common::wire::{msg, ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ALL_DHCP_SERVERS};

use crate::stats::Counter;

/// An IPv6 prefix, stored masked: `2001:db8::1/64` is `2001:db8::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: Ipv6Addr,
    len: u8,
}

/// Why a text is not a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    #[error("not an IPv6 address")]
    Address,
    #[error("prefix length is not a number from 0 to 128")]
    Length,
}

impl Prefix {
    /// `addr/len`, the bits past `len` cleared; `None` when `len` is over 128.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Self> {
        (len <= 128).then(|| Self { addr: Ipv6Addr::from(u128::from(addr) & mask(len)), len })
    }

    /// One address, as a /128.
    pub fn host(addr: Ipv6Addr) -> Self {
        Self { addr, len: 128 }
    }

    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `a` lies in this prefix.
    pub fn contains(&self, a: &Ipv6Addr) -> bool {
        u128::from(*a) & mask(self.len) == u128::from(self.addr)
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

/// `ADDR/LEN`, or a bare `ADDR` for one host (/128).
impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let (a, len) = match s.split_once('/') {
            Some((a, len)) => (a, len.parse::<u8>().map_err(|_| PrefixError::Length)?),
            None => (s, 128),
        };
        let a: Ipv6Addr = a.parse().map_err(|_| PrefixError::Address)?;
        Self::new(a, len).ok_or(PrefixError::Length)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The sources a Relay-Forward is believed from: `--trusted-relay`, `trusted_relays`. Empty
/// (the default) trusts nobody: relayed messages are dropped until the operator names the
/// relays. `fe80::/10` trusts every lightweight relay on the link (RFC 6221's trusted
/// interface); `::/0` is the old behaviour, every source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedRelays(Vec<Prefix>);

impl TrustedRelays {
    pub fn new(prefixes: impl IntoIterator<Item = Prefix>) -> Self {
        let mut t = Self::default();
        t.extend(prefixes);
        t
    }

    /// Adds prefixes not already listed.
    pub fn extend(&mut self, prefixes: impl IntoIterator<Item = Prefix>) {
        for p in prefixes {
            if !self.0.contains(&p) {
                self.0.push(p);
            }
        }
    }

    /// Whether a Relay-Forward from `src` is believed.
    pub fn admits(&self, src: &Ipv6Addr) -> bool {
        self.0.iter().any(|p| p.contains(src))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every link-local source is believed (a listed prefix covers `fe80::/10`): the
    /// lightweight relays on the link (RFC 6221) are trusted, whatever their address, and the
    /// XDP fast path may answer their relayed Information-Requests.
    pub fn admits_every_link_local(&self) -> bool {
        self.0.iter().any(|p| p.prefix_len() <= 10 && p.contains(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)))
    }

    pub fn prefixes(&self) -> &[Prefix] {
        &self.0
    }
}

/// A Relay-Forward from `src`: served only when `trusted` names it.
pub fn admit_relay(trusted: &TrustedRelays, src: &Ipv6Addr) -> Result<(), Counter> {
    if trusted.admits(src) {
        Ok(())
    } else {
        Err(Counter::DropUntrustedRelay)
    }
}

/// A message straight from a client: its source must be on the link it arrived on,
/// link-local or inside one of `on_link`. Anything else is spoofed or routed from afar, and
/// answering it would make us a reflector (a 4-byte request, a 100-byte answer).
pub fn admit_client_source(src: &Ipv6Addr, on_link: &[Prefix]) -> Result<(), Counter> {
    if src.is_unicast_link_local() || (is_unicast(src) && on_link.iter().any(|p| p.contains(src))) {
        Ok(())
    } else {
        Err(Counter::DropOffLinkSource)
    }
}

fn is_unicast(a: &Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_loopback())
}

/// ff02::1:2 or ff05::1:3: where clients (and relays) send to reach servers.
pub fn is_dhcp_multicast(dst: &Ipv6Addr) -> bool {
    let o = dst.octets();
    o == ALL_DHCP_RELAY_AGENTS_AND_SERVERS || o == ALL_DHCP_SERVERS
}

/// The messages a client sends to servers (RFC 9915 section 16), to which the unicast rule
/// applies.
fn is_rfc9915_client_message(t: u8) -> bool {
    matches!(
        t,
        msg::SOLICIT
            | msg::REQUEST
            | msg::CONFIRM
            | msg::RENEW
            | msg::REBIND
            | msg::RELEASE
            | msg::DECLINE
            | msg::INFORMATION_REQUEST
    )
}

/// A client message sent to `dst`, not relayed. RFC 9915 section 16: a server that never sent
/// a Server Unicast option (we never do: the option is obsolete) discards what a client
/// unicasts to it, rather than answering UseMulticast as RFC 8415 did. Information-Requests
/// too: the XDP fast path passes those up (`pass_addressing`) so that this rule decides.
pub fn admit_client_destination(msg_type: u8, dst: &Ipv6Addr) -> Result<(), Counter> {
    if !is_rfc9915_client_message(msg_type) || is_dhcp_multicast(dst) {
        return Ok(());
    }
    Err(Counter::DropUnicast)
}

/// What the daemon knows of a served interface when a datagram arrives on it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub trusted: &'a TrustedRelays,
    /// Prefixes on the interface's link (its global addresses' prefixes).
    pub on_link: &'a [Prefix],
    /// The interface's link-local address, once DAD is done.
    pub link_local: Option<Ipv6Addr>,
}

impl Arrival<'_> {
    /// Whether a datagram whose first byte is `msg_type`, from `src` to `dst`, is looked at
    /// at all. A Relay-Forward needs a trusted relay (its destination is whatever the relay
    /// was configured with); anything else comes from a client on the link and, if it is a
    /// client message, to a DHCP multicast group.
    pub fn admit(&self, msg_type: Option<u8>, src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<(), Counter> {
        match msg_type {
            Some(msg::RELAY_FORW) => admit_relay(self.trusted, src),
            Some(t) => {
                admit_client_source(src, self.on_link)?;
                admit_client_destination(t, dst)
            }
            // Empty: the parser counts it as malformed.
            None => admit_client_source(src, self.on_link),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    const ALL_RELAYS: &str = "ff02::1:2";
    const CLIENT_MESSAGES: [u8; 8] = [
        msg::SOLICIT,
        msg::REQUEST,
        msg::CONFIRM,
        msg::RENEW,
        msg::REBIND,
        msg::RELEASE,
        msg::DECLINE,
        msg::INFORMATION_REQUEST,
    ];

    #[test]
    fn prefixes_parse_mask_and_contain() {
        assert_eq!(p("2001:db8::1"), Prefix::host(ip("2001:db8::1")));
        assert_eq!(p("2001:db8::1/64").to_string(), "2001:db8::/64");
        assert_eq!(p("fe80::/10").to_string(), "fe80::/10");
        assert!(p("2001:db8::/64").contains(&ip("2001:db8::ffff")));
        assert!(!p("2001:db8::/64").contains(&ip("2001:db8:0:1::1")));
        assert!(p("::/0").contains(&ip("2001:db8::1")) && p("::/0").contains(&ip("fe80::1")));
        assert!(p("2001:db8::1").contains(&ip("2001:db8::1")));
        assert!(!p("2001:db8::1").contains(&ip("2001:db8::2")));
        assert_eq!("2001:db8::/129".parse::<Prefix>(), Err(PrefixError::Length));
        assert_eq!("2001:db8::/x".parse::<Prefix>(), Err(PrefixError::Length));
        assert_eq!("2001:db8::/".parse::<Prefix>(), Err(PrefixError::Length));
        assert_eq!("192.0.2.1".parse::<Prefix>(), Err(PrefixError::Address));
        assert_eq!("".parse::<Prefix>(), Err(PrefixError::Address));
    }

    #[test]
    fn trusted_relays_admit_only_what_they_list() {
        let none = TrustedRelays::default();
        assert!(!none.admits(&ip("2001:db8:1::2")) && !none.admits(&ip("fe80::1")));
        let t = TrustedRelays::new([p("2001:db8:1::2"), p("fe80::/10"), p("fe80::/10")]);
        assert_eq!(t.prefixes().len(), 2, "duplicates folded");
        assert!(t.admits(&ip("2001:db8:1::2")));
        assert!(t.admits(&ip("fe80::1234")));
        assert!(!t.admits(&ip("2001:db8:1::3")));
        assert!(TrustedRelays::new([p("::/0")]).admits(&ip("2001:db8:ffff::1")));
    }

    #[test]
    fn every_link_local_source_only_with_a_prefix_covering_fe80_10() {
        assert!(TrustedRelays::new([p("fe80::/10")]).admits_every_link_local());
        assert!(TrustedRelays::new([p("2001:db8::1"), p("::/0")]).admits_every_link_local());
        assert!(TrustedRelays::new([p("fe80::/8")]).admits_every_link_local());
        for narrower in ["fe80::/64", "fe80::1", "fe80::/11", "2001:db8::/32"] {
            assert!(!TrustedRelays::new([p(narrower)]).admits_every_link_local(), "{narrower}");
        }
        assert!(!TrustedRelays::default().admits_every_link_local());
    }

    /// Finding 1: a Relay-Forward from a host nobody named is not served (its Interface-ID,
    /// link-address, Remote-ID... would otherwise choose the link and the reservation).
    #[test]
    fn relay_forward_only_from_trusted_relays() {
        let trusted = TrustedRelays::new([p("2001:db8:1::2")]);
        let on_link = [p("2001:db8:1::/64")];
        let a = Arrival { trusted: &trusted, on_link: &on_link, link_local: Some(ip("fe80::1")) };
        let dst = ip("2001:db8:1::1");
        assert_eq!(a.admit(Some(msg::RELAY_FORW), &ip("2001:db8:1::2"), &dst), Ok(()));
        // A client on the same link, link-local or global, forging a relay.
        for src in ["fe80::9", "2001:db8:1::9", "2001:db8:99::1"] {
            assert_eq!(a.admit(Some(msg::RELAY_FORW), &ip(src), &dst), Err(Counter::DropUntrustedRelay), "{src}");
            assert_eq!(
                a.admit(Some(msg::RELAY_FORW), &ip(src), &ip(ALL_RELAYS)),
                Err(Counter::DropUntrustedRelay),
                "{src}"
            );
        }
        // With nothing configured, nobody.
        let none = TrustedRelays::default();
        let a = Arrival { trusted: &none, ..a };
        assert_eq!(a.admit(Some(msg::RELAY_FORW), &ip("2001:db8:1::2"), &dst), Err(Counter::DropUntrustedRelay));
        // Lightweight relays on the link: fe80::/10.
        let ldra = TrustedRelays::new([p("fe80::/10")]);
        let a = Arrival { trusted: &ldra, ..a };
        assert_eq!(a.admit(Some(msg::RELAY_FORW), &ip("fe80::9"), &ip(ALL_RELAYS)), Ok(()));
        assert_eq!(a.admit(Some(msg::RELAY_FORW), &ip("2001:db8:1::9"), &dst), Err(Counter::DropUntrustedRelay));
    }

    /// Finding 6: a spoofed global source gets nothing; link-local and on-link sources do.
    #[test]
    fn client_messages_only_from_the_link() {
        let on_link = [p("2001:db8:1::/64")];
        assert_eq!(admit_client_source(&ip("fe80::9"), &on_link), Ok(()));
        assert_eq!(admit_client_source(&ip("2001:db8:1::9"), &on_link), Ok(()));
        for src in ["2001:db8:2::9", "2001:db8::1", "::", "::1", "ff02::1"] {
            assert_eq!(admit_client_source(&ip(src), &on_link), Err(Counter::DropOffLinkSource), "{src}");
        }
        assert_eq!(admit_client_source(&ip("2001:db8:1::9"), &[]), Err(Counter::DropOffLinkSource));
        let none = TrustedRelays::default();
        let a = Arrival { trusted: &none, on_link: &on_link, link_local: None };
        for t in CLIENT_MESSAGES {
            assert_eq!(a.admit(Some(t), &ip("fe80::9"), &ip(ALL_RELAYS)), Ok(()), "type {t}");
            assert_eq!(
                a.admit(Some(t), &ip("2001:db8:77::1"), &ip(ALL_RELAYS)),
                Err(Counter::DropOffLinkSource),
                "type {t}"
            );
        }
        // Whatever the type: a Reply or an unknown type from afar is not looked at either.
        assert_eq!(a.admit(Some(msg::REPLY), &ip("2001:db8:77::1"), &ip(ALL_RELAYS)), Err(Counter::DropOffLinkSource));
        assert_eq!(a.admit(None, &ip("2001:db8:77::1"), &ip(ALL_RELAYS)), Err(Counter::DropOffLinkSource));
        // Even a trusted relay's address does not make a non-relayed message admissible.
        let relay = TrustedRelays::new([p("2001:db8:77::1")]);
        let a = Arrival { trusted: &relay, ..a };
        assert_eq!(
            a.admit(Some(msg::SOLICIT), &ip("2001:db8:77::1"), &ip(ALL_RELAYS)),
            Err(Counter::DropOffLinkSource)
        );
    }

    /// RFC 9915 section 16: unicast client messages are discarded, not answered with
    /// UseMulticast; the one exception is the fast path's Information-Request to our
    /// link-local address.
    #[test]
    fn unicast_client_messages_are_discarded() {
        let ll = ip("fe80::1");
        for t in CLIENT_MESSAGES {
            assert_eq!(admit_client_destination(t, &ip("ff02::1:2")), Ok(()), "type {t}");
            assert_eq!(admit_client_destination(t, &ip("ff05::1:3")), Ok(()), "type {t}");
            assert_eq!(admit_client_destination(t, &ip("2001:db8:1::1")), Err(Counter::DropUnicast), "type {t}");
            assert_eq!(admit_client_destination(t, &ip("ff02::1")), Err(Counter::DropUnicast), "type {t}");
            assert_eq!(admit_client_destination(t, &ll), Err(Counter::DropUnicast), "type {t}, to our link-local");
        }
        // To a link-local address that is not ours, or before DAD gave us one.
        assert_eq!(admit_client_destination(msg::INFORMATION_REQUEST, &ip("fe80::2")), Err(Counter::DropUnicast));
        assert_eq!(admit_client_destination(msg::INFORMATION_REQUEST, &ll), Err(Counter::DropUnicast));
        // Not client messages: decided elsewhere (dropped as unsupported).
        assert_eq!(admit_client_destination(msg::REPLY, &ip("2001:db8:1::1")), Ok(()));
        // A relayed message is unicast by design: not subject to this rule.
        let t = TrustedRelays::new([p("2001:db8:1::2")]);
        let a = Arrival { trusted: &t, on_link: &[], link_local: Some(ll) };
        assert_eq!(a.admit(Some(msg::RELAY_FORW), &ip("2001:db8:1::2"), &ip("2001:db8:1::1")), Ok(()));
        assert_eq!(a.admit(Some(msg::RENEW), &ip("fe80::9"), &ip("2001:db8:1::1")), Err(Counter::DropUnicast));
    }
}
