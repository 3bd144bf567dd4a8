//! Relay-agent mode, as odhcpd's relay mode (RFC 9915 section 19; Client Link-Layer Address
//! RFC 6939; unknown message types RFC 7283; DHCPv6-Shield RFC 7610).
//!
//! A pure decision layer: the daemon hands it what arrived (on which interface, from whom) and
//! gets back what to send where, or a counter to bump. Client messages from a downstream
//! interface go upstream in a Relay-Forward; a Relay-Reply from upstream is opened one level
//! and its content goes down to the client (or to the next relay down).
//!
//! Trust: a Relay-Forward from below is relayed only from a trusted relay (a forged one would
//! reach the servers with its made-up inner level intact), a client message only from a
//! source on the downstream link. A Relay-Reply is taken only from a configured server (with
//! ff05::1:3, from a link-local source on the upstream), its peer-address must be on the
//! downstream link it names, and it carries only message types we know: otherwise anyone
//! could make us send what they like, from port 547, to any address (a reflector).

use crate::stats::Counter;
use std::net::{Ipv6Addr, SocketAddrV6};

use dhcpv6_common::wire::{msg, opt, ALL_DHCP_SERVERS, CLIENT_PORT, HOP_COUNT_LIMIT, SERVER_PORT};

use super::relay::{is_client_message, is_server_message};
use super::trust::{admit_client_source, Prefix, TrustedRelays};
use crate::wire::{relay::ClientLinkLayer, Message, RelayKind, RelayLevel, RelayMessage, Writer};

/// Hop limit for Relay-Forward sent to a multicast group (RFC 9915 section 19: 8, was 32 in
/// RFC 3315). The daemon sets it on the upstream socket (IPV6_MULTICAST_HOPS).
pub const UPSTREAM_MULTICAST_HOPS: u32 = 8;

/// A client-facing interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamIface {
    pub name: String,
    pub ifindex: u32,
    /// A global address of the interface, or `::` when it has none (the server then selects
    /// the link by Interface-ID).
    pub link_address: Ipv6Addr,
    /// Sent in every Relay-Forward and matched in Relay-Reply; empty means "send none" (then
    /// replies are routed by link-address alone, so that must be set and unique).
    pub interface_id: Vec<u8>,
    /// Prefixes on the interface's link: where a client's global source, and a Relay-Reply's
    /// peer-address, may be (link-local ones always may).
    pub on_link: Vec<Prefix>,
}

impl DownstreamIface {
    /// An interface whose Interface-ID is its name: readable in server logs and stable across
    /// reboots, unlike an ifindex.
    pub fn new(name: impl Into<String>, ifindex: u32, link_address: Ipv6Addr) -> Self {
        let name = name.into();
        let interface_id = name.as_bytes().to_vec();
        Self { name, ifindex, link_address, interface_id, on_link: Vec::new() }
    }
}

/// Where Relay-Forward messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// Unicast server addresses; empty means All_DHCP_Servers (ff05::1:3), the RFC 9915
    /// section 19 default. Relay-Reply is accepted only from these (with none, only from
    /// link-local sources on the upstream interface).
    pub servers: Vec<Ipv6Addr>,
    pub ifname: String,
    pub ifindex: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAgentConfig {
    pub downstream: Vec<DownstreamIface>,
    pub upstream: UpstreamTarget,
    /// Replace the DNS Recursive Name Server option content of relayed Reply and Advertise
    /// messages with these addresses (odhcpd's `always_rewrite_dns`, except that the option is
    /// rebuilt to the new length, and that a message with an Authentication option is sent
    /// unchanged rather than dropped). `None` or empty: no rewrite.
    pub rewrite_dns: Option<Vec<Ipv6Addr>>,
    /// Relays below us (e.g. lightweight relays, RFC 6221) whose Relay-Forward we pass on.
    pub trusted_relays: TrustedRelays,
}

/// What the daemon does with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAction {
    /// Send `payload` to each address, from the upstream interface, source port 547.
    Send { to: Vec<SocketAddrV6>, payload: Vec<u8> },
    /// Send `payload` out of downstream interface `ifindex` to `to`, source port 547.
    SendDown { ifindex: u32, to: SocketAddrV6, payload: Vec<u8> },
    /// Discard; bump this counter.
    Drop(Counter),
}

impl RelayAgentConfig {
    /// A datagram received on downstream interface `iface_index` from `src` (the client, or a
    /// relay below us): wrap it in a Relay-Forward for the servers (RFC 9915 section 19.1).
    /// `client_mac` is the Ethernet source of the frame when the daemon knows it; it goes in a
    /// Client Link-Layer Address option for client messages only (RFC 6939: first-hop relay).
    pub fn from_client(
        &self,
        iface_index: u32,
        src: SocketAddrV6,
        payload: &[u8],
        client_mac: Option<[u8; 6]>,
    ) -> AgentAction {
        let Some(iface) = self.downstream.iter().find(|d| d.ifindex == iface_index) else {
            return AgentAction::Drop(Counter::DropAgentUnknownIface);
        };
        // The peer-address is where the answer will go: it must be a unicast address.
        if src.ip().is_unspecified() || src.ip().is_multicast() {
            return AgentAction::Drop(Counter::DropAgentBadSource);
        }
        let level = match payload.first() {
            None => return AgentAction::Drop(Counter::DropAgentMalformed),
            // Finding 1 of the relay agent: a host below forging a relay would have its made-up
            // inner level (Interface-ID, Remote-ID...) believed by the servers.
            Some(&msg::RELAY_FORW) if !self.trusted_relays.admits(src.ip()) => {
                return AgentAction::Drop(Counter::DropAgentUntrustedRelay)
            }
            Some(&msg::RELAY_FORW) => match forward_level_for_relay(iface, src, payload) {
                Ok(level) => level,
                Err(counter) => return AgentAction::Drop(counter),
            },
            // RFC 7610: whatever only a server sends cannot come from a client; relaying it
            // would let a rogue box on a subscriber link talk to the servers as one.
            Some(&t) if t == msg::RELAY_REPL || is_server_message(t) => {
                return AgentAction::Drop(Counter::DropAgentServerMsgFromClient)
            }
            // The peer-address is where the answer goes down: it must be on this link.
            Some(_) if admit_client_source(src.ip(), &iface.on_link).is_err() => {
                return AgentAction::Drop(Counter::DropAgentOffLinkSource)
            }
            Some(&t) => match forward_level_for_client(iface, src, payload, t, client_mac) {
                Ok(level) => level,
                Err(counter) => return AgentAction::Drop(counter),
            },
        };
        // The one error emitting can have: a length that does not fit its field or a datagram.
        match level.emit(RelayKind::Forward, payload) {
            Ok(payload) => AgentAction::Send { to: self.upstream_destinations(), payload },
            Err(_) => AgentAction::Drop(Counter::DropAgentTooLarge),
        }
    }

    /// Where Relay-Forward messages go, port 547. Link-local and multicast addresses carry the
    /// upstream ifindex as scope id. For ff05::1:3 Linux ignores the scope id (it is not
    /// link-scoped), so the daemon must also pick the interface: IPV6_MULTICAST_IF on the
    /// upstream socket, or IPV6_PKTINFO per send.
    pub fn upstream_destinations(&self) -> Vec<SocketAddrV6> {
        let scoped = |a: Ipv6Addr| {
            let scope = if a.is_unicast_link_local() || a.is_multicast() { self.upstream.ifindex } else { 0 };
            SocketAddrV6::new(a, SERVER_PORT, 0, scope)
        };
        if self.upstream.servers.is_empty() {
            vec![scoped(Ipv6Addr::from(ALL_DHCP_SERVERS))]
        } else {
            self.upstream.servers.iter().copied().map(scoped).collect()
        }
    }

    /// A datagram from upstream: a Relay-Reply opened one level (RFC 9915 section 19.2). The
    /// Interface-ID names the downstream interface, else the link-address does; the carried
    /// message goes to the peer-address: port 546 for a client, 547 when it is itself a
    /// Relay-Reply for the relay below.
    pub fn from_server(&self, payload: &[u8]) -> AgentAction {
        match payload.first() {
            Some(&msg::RELAY_REPL) => {}
            Some(_) => return AgentAction::Drop(Counter::DropAgentNotRelayReply),
            None => return AgentAction::Drop(Counter::DropAgentMalformed),
        }
        let Ok((level, inner)) = RelayLevel::parse(payload) else {
            return AgentAction::Drop(Counter::DropAgentMalformed);
        };
        if level.peer_address.is_unspecified() || level.peer_address.is_multicast() {
            return AgentAction::Drop(Counter::DropAgentBadPeerAddress);
        }
        let Some(iface) = self.downstream_for(&level) else {
            return AgentAction::Drop(Counter::DropAgentUnknownIface);
        };
        // Where a server, or whoever forged its reply, says the message goes: only to a
        // node on the link the Interface-ID names, never across the Internet from port 547.
        let peer = level.peer_address;
        if !(peer.is_unicast_link_local() || iface.on_link.iter().any(|p| p.contains(&peer))) {
            return AgentAction::Drop(Counter::DropAgentPeerOffLink);
        }
        let port = match inner_kind(inner) {
            Inner::RelayReply => SERVER_PORT,
            Inner::ToClient => CLIENT_PORT,
            Inner::Invalid(counter) => return AgentAction::Drop(counter),
        };
        let payload = self.maybe_rewrite_dns(inner).unwrap_or_else(|| inner.to_vec());
        let to = SocketAddrV6::new(level.peer_address, port, 0, iface.ifindex);
        AgentAction::SendDown { ifindex: iface.ifindex, to, payload }
    }

    /// A datagram received on `iface_index` from `src`, for the servers' side: checked by
    /// [`Self::accepts_server_source`], then [`Self::from_server`].
    pub fn from_upstream(&self, iface_index: u32, src: SocketAddrV6, payload: &[u8]) -> AgentAction {
        if !self.accepts_server_source(iface_index, src) {
            return AgentAction::Drop(Counter::DropAgentUnexpectedServer);
        }
        self.from_server(payload)
    }

    /// Whether a datagram from `src`, received on `iface_index`, may be a server's Relay-Reply:
    /// it must arrive on the upstream interface and come from a configured server. With
    /// ff05::1:3 there is no list: a link-local source (a server on the upstream link, which
    /// no remote host can spoof past a router) is accepted; servers farther away must be
    /// named (`servers`). So a client cannot inject Relay-Reply messages from downstream,
    /// nor a host on the Internet from upstream.
    pub fn accepts_server_source(&self, iface_index: u32, src: SocketAddrV6) -> bool {
        iface_index == self.upstream.ifindex
            && if self.upstream.servers.is_empty() {
                src.ip().is_unicast_link_local()
            } else {
                self.upstream.servers.contains(src.ip())
            }
    }

    /// The Interface-ID we sent, or failing that the link-address (a server that drops the
    /// Interface-ID, or an interface configured without one).
    fn downstream_for(&self, level: &RelayLevel) -> Option<&DownstreamIface> {
        let by_id = level
            .interface_id
            .as_deref()
            .and_then(|id| self.downstream.iter().find(|d| !d.interface_id.is_empty() && d.interface_id == id));
        by_id.or_else(|| {
            let link = level.link_address;
            if link.is_unspecified() {
                return None;
            }
            self.downstream.iter().find(|d| d.link_address == link)
        })
    }

    /// The inner message with its DNS servers replaced, or `None` to send it unchanged.
    fn maybe_rewrite_dns(&self, inner: &[u8]) -> Option<Vec<u8>> {
        let servers = self.rewrite_dns.as_deref().filter(|s| !s.is_empty())?;
        rewrite_dns(inner, servers)
    }
}

/// The Relay-Forward level for a message from a client (RFC 9915 section 19.1.1): hop-count 0,
/// our link-address for the link, the client's address as peer.
fn forward_level_for_client(
    iface: &DownstreamIface,
    src: SocketAddrV6,
    payload: &[u8],
    msg_type: u8,
    client_mac: Option<[u8; 6]>,
) -> Result<RelayLevel, Counter> {
    // Known client messages must be well formed: a server would discard them anyway. Types we
    // do not know are relayed as they are (RFC 7283), given the 4-byte header every message has.
    let well_formed = if is_client_message(msg_type) {
        Message::parse(payload).is_ok()
    } else {
        payload.len() >= Message::HEADER_LEN
    };
    if !well_formed {
        return Err(Counter::DropAgentMalformed);
    }
    let mut level = RelayLevel::new(0, iface.link_address, *src.ip());
    level.interface_id = interface_id(iface);
    level.client_linklayer = client_mac.map(ClientLinkLayer::ethernet);
    Ok(level)
}

/// The Relay-Forward level for a Relay-Forward from a relay below us (RFC 9915 section
/// 19.1.2), e.g. a lightweight relay (RFC 6221) in an access node.
fn forward_level_for_relay(iface: &DownstreamIface, src: SocketAddrV6, payload: &[u8]) -> Result<RelayLevel, Counter> {
    // Header and option structure only, plus the Relay Message option: the relay below owns
    // the rest of its message, and the server judges it.
    let below = match RelayMessage::parse(payload) {
        Ok(r) if r.relay_message().is_ok() => r,
        _ => return Err(Counter::DropAgentMalformed),
    };
    // At HOP_COUNT_LIMIT already, one more relay would exceed it: the chain is too long or
    // loops.
    if below.hop_count() >= HOP_COUNT_LIMIT {
        return Err(Counter::DropAgentHopLimit);
    }
    // A relay reachable by a global address identifies its own link; ours would mislead.
    // One reached by link-local (a lightweight relay, which leaves link-address unspecified)
    // sits on our link, so our address is the one that names it.
    let link = if src.ip().is_unicast_link_local() { iface.link_address } else { Ipv6Addr::UNSPECIFIED };
    let mut level = RelayLevel::new(below.hop_count() + 1, link, *src.ip());
    level.interface_id = interface_id(iface);
    Ok(level)
}

fn interface_id(iface: &DownstreamIface) -> Option<Vec<u8>> {
    (!iface.interface_id.is_empty()).then(|| iface.interface_id.clone())
}

enum Inner {
    RelayReply,
    ToClient,
    Invalid(Counter),
}

/// What a Relay-Reply carries. A server message must be well formed (we may rewrite it);
/// client messages and Relay-Forward never travel down, and neither do types we do not know:
/// RFC 7283 has relays pass them on, but downwards that lets whoever reaches our upstream
/// send any payload to a client from port 547.
fn inner_kind(inner: &[u8]) -> Inner {
    let Some(&t) = inner.first() else {
        return Inner::Invalid(Counter::DropAgentMalformed);
    };
    if t == msg::RELAY_REPL {
        return match RelayMessage::parse(inner) {
            Ok(_) => Inner::RelayReply,
            Err(_) => Inner::Invalid(Counter::DropAgentMalformed),
        };
    }
    if t == msg::RELAY_FORW || is_client_message(t) {
        return Inner::Invalid(Counter::DropAgentClientMsgFromServer);
    }
    if !is_server_message(t) {
        return Inner::Invalid(Counter::DropAgentUnknownType);
    }
    if Message::parse(inner).is_ok() {
        Inner::ToClient
    } else {
        Inner::Invalid(Counter::DropAgentMalformed)
    }
}

/// A Reply or Advertise with every DNS Recursive Name Server option (RFC 3646) carrying
/// `servers` instead; `None` (send unchanged) for other types, when there is no such option,
/// and always when an Authentication option is present: changing the message would break its
/// integrity check and the client would discard it.
fn rewrite_dns(inner: &[u8], servers: &[Ipv6Addr]) -> Option<Vec<u8>> {
    let m = Message::parse(inner).ok()?;
    if !matches!(m.msg_type(), msg::REPLY | msg::ADVERTISE) {
        return None;
    }
    if m.find(opt::AUTH).is_some() || m.find(opt::DNS_SERVERS).is_none() {
        return None;
    }
    let dns: Vec<u8> = servers.iter().flat_map(|a| a.octets()).collect();
    // Rebuilt option by option, so every length is written afresh; too many servers for one
    // option, or a message grown past a datagram, is sent unchanged.
    let mut w = Writer::message(m.msg_type(), m.xid());
    for o in m.options() {
        w.option(o.code, if o.code == opt::DNS_SERVERS { &dns } else { o.data });
    }
    w.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::relay::{unwrap, wrap, MAX_UDP_PAYLOAD};
    use crate::wire::writer::test_option as encode_option;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const SOLICIT: &[u8] = &[msg::SOLICIT, 1, 2, 3, 0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9];
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn on_link(name: &str, ifindex: u32, addr: &str, prefix: &str) -> DownstreamIface {
        DownstreamIface { on_link: vec![prefix.parse().unwrap()], ..DownstreamIface::new(name, ifindex, ip(addr)) }
    }

    fn cfg() -> RelayAgentConfig {
        RelayAgentConfig {
            downstream: vec![
                on_link("eth1", 11, "2001:db8:1::1", "2001:db8:1::/64"),
                on_link("eth2", 12, "2001:db8:2::1", "2001:db8:2::/64"),
            ],
            upstream: UpstreamTarget {
                servers: vec![ip("2001:db8:ff::547"), ip("fe80::5")],
                ifname: "wan".into(),
                ifindex: 2,
            },
            rewrite_dns: None,
            trusted_relays: TrustedRelays::new(["fe80::/10".parse().unwrap(), "2001:db8:1::77".parse().unwrap()]),
        }
    }

    fn client() -> SocketAddrV6 {
        SocketAddrV6::new(ip("fe80::9"), 546, 0, 11)
    }

    fn sent(a: AgentAction) -> (Vec<SocketAddrV6>, Vec<u8>) {
        match a {
            AgentAction::Send { to, payload } => (to, payload),
            other => panic!("expected Send, got {other:?}"),
        }
    }

    fn sent_down(a: AgentAction) -> (u32, SocketAddrV6, Vec<u8>) {
        match a {
            AgentAction::SendDown { ifindex, to, payload } => (ifindex, to, payload),
            other => panic!("expected SendDown, got {other:?}"),
        }
    }

    /// A Relay-Reply as a server would send it for `level`.
    fn relay_reply(level: &RelayLevel, inner: &[u8]) -> Vec<u8> {
        wrap(std::slice::from_ref(level), inner).unwrap()
    }

    fn reply_with(opts: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![msg::REPLY, 1, 2, 3];
        opts.iter().for_each(|o| v.extend_from_slice(o));
        v
    }

    #[test]
    fn client_message_is_wrapped_with_interface_id_link_address_and_mac() {
        let (to, payload) = sent(cfg().from_client(11, client(), SOLICIT, Some(MAC)));
        assert_eq!(
            to,
            vec![SocketAddrV6::new(ip("2001:db8:ff::547"), 547, 0, 0), SocketAddrV6::new(ip("fe80::5"), 547, 0, 2)]
        );
        let r = unwrap(&payload).unwrap();
        assert_eq!(r.inner, SOLICIT);
        let l = &r.levels[0];
        assert_eq!((l.hop_count, l.link_address, l.peer_address), (0, ip("2001:db8:1::1"), ip("fe80::9")));
        assert_eq!(l.interface_id.as_deref(), Some(&b"eth1"[..]));
        assert_eq!(l.client_linklayer.as_deref(), Some(&[0, 1, 2, 0, 0, 0, 0, 9][..]));
        assert_eq!(r.link_selector().client_mac(), Some(MAC));
    }

    #[test]
    fn no_mac_no_link_layer_option_and_no_servers_means_all_dhcp_servers() {
        let mut c = cfg();
        c.upstream.servers.clear();
        let (to, payload) = sent(c.from_client(12, client(), SOLICIT, None));
        assert_eq!(to, vec![SocketAddrV6::new(ip("ff05::1:3"), 547, 0, 2)]);
        let r = unwrap(&payload).unwrap();
        assert_eq!(r.levels[0].client_linklayer, None);
        assert_eq!(r.levels[0].interface_id.as_deref(), Some(&b"eth2"[..]));
    }

    #[test]
    fn relay_forward_from_below_gets_hop_count_plus_one_and_no_mac() {
        let ldra = SocketAddrV6::new(ip("fe80::1d"), 547, 0, 11);
        let mut below = RelayLevel::new(0, Ipv6Addr::UNSPECIFIED, ip("fe80::9"));
        below.interface_id = Some(b"port3".to_vec());
        let fwd = {
            let mut w = Writer::relay(msg::RELAY_FORW, 0, below.link_address, below.peer_address);
            w.option(opt::INTERFACE_ID, b"port3").option(opt::RELAY_MSG, SOLICIT);
            w.finish().unwrap()
        };
        let (_, payload) = sent(cfg().from_client(11, ldra, &fwd, Some(MAC)));
        let r = unwrap(&payload).unwrap();
        assert_eq!(r.levels.len(), 2);
        let ours = &r.levels[0];
        assert_eq!((ours.hop_count, ours.link_address, ours.peer_address), (1, ip("2001:db8:1::1"), ip("fe80::1d")));
        assert_eq!(ours.client_linklayer, None, "RFC 6939: first-hop relay only");
        assert_eq!(r.levels[1], below);
        // The server picks our link (the LDRA left link-address unspecified) and its port.
        let s = r.link_selector();
        assert_eq!((s.link_address, s.interface_id), (Some(ip("2001:db8:1::1")), Some(&b"port3"[..])));

        // From a relay with a global address: link-address left unspecified.
        let global = SocketAddrV6::new(ip("2001:db8:1::77"), 547, 0, 0);
        let (_, payload) = sent(cfg().from_client(11, global, &fwd, None));
        assert_eq!(unwrap(&payload).unwrap().levels[0].link_address, Ipv6Addr::UNSPECIFIED);
    }

    fn forward_with_hop(hop: u8) -> Vec<u8> {
        let mut w = Writer::relay(msg::RELAY_FORW, hop, Ipv6Addr::UNSPECIFIED, ip("fe80::9"));
        w.option(opt::RELAY_MSG, SOLICIT);
        w.finish().unwrap()
    }

    #[test]
    fn hop_count_limit() {
        let src = SocketAddrV6::new(ip("fe80::1d"), 547, 0, 11);
        assert_eq!(
            cfg().from_client(11, src, &forward_with_hop(HOP_COUNT_LIMIT), None),
            AgentAction::Drop(Counter::DropAgentHopLimit)
        );
        assert_eq!(
            cfg().from_client(11, src, &forward_with_hop(200), None),
            AgentAction::Drop(Counter::DropAgentHopLimit)
        );
        // The last hop allowed produces HOP_COUNT_LIMIT, which the server side accepts.
        let (_, payload) = sent(cfg().from_client(11, src, &forward_with_hop(HOP_COUNT_LIMIT - 1), None));
        assert_eq!(unwrap(&payload).unwrap().levels[0].hop_count, HOP_COUNT_LIMIT);
    }

    #[test]
    fn server_messages_from_the_client_side_are_dropped() {
        for t in [msg::ADVERTISE, msg::REPLY, msg::RECONFIGURE, msg::RELAY_REPL] {
            let m = [t, 1, 2, 3];
            assert_eq!(
                cfg().from_client(11, client(), &m, None),
                AgentAction::Drop(Counter::DropAgentServerMsgFromClient),
                "type {t}"
            );
        }
    }

    #[test]
    fn relay_reply_sources() {
        let c = cfg();
        assert!(c.accepts_server_source(2, SocketAddrV6::new(ip("2001:db8:ff::547"), 547, 0, 0)));
        assert!(!c.accepts_server_source(11, SocketAddrV6::new(ip("2001:db8:ff::547"), 547, 0, 0)));
        assert!(!c.accepts_server_source(2, SocketAddrV6::new(ip("2001:db8:ff::666"), 547, 0, 0)));
        assert!(!c.accepts_server_source(2, SocketAddrV6::new(ip("fe80::666"), 547, 0, 2)));
    }

    /// Finding 4: with ff05::1:3 (no server configured) a Relay-Reply from any upstream
    /// source was accepted, and its message sent wherever its peer-address said, from port
    /// 547. Now only a link-local source on the upstream is a server, the peer-address must
    /// be on the downstream link, and unknown types do not go down.
    #[test]
    fn multicast_mode_is_no_reflector() {
        let multicast = RelayAgentConfig { upstream: UpstreamTarget { servers: vec![], ..cfg().upstream }, ..cfg() };
        let level = RelayLevel::new(0, ip("2001:db8:1::1"), ip("fe80::9"));
        let good = relay_reply(&level, &reply_with(&[]));
        let far = SocketAddrV6::new(ip("2001:db8:ff::666"), 547, 0, 0);
        assert!(!multicast.accepts_server_source(2, far));
        assert_eq!(multicast.from_upstream(2, far, &good), AgentAction::Drop(Counter::DropAgentUnexpectedServer));
        let on_upstream = SocketAddrV6::new(ip("fe80::5"), 547, 0, 2);
        assert!(multicast.accepts_server_source(2, on_upstream));
        assert!(!multicast.accepts_server_source(11, on_upstream), "not from downstream");
        let (ifindex, to, _) = sent_down(multicast.from_upstream(2, on_upstream, &good));
        assert_eq!((ifindex, to), (11, SocketAddrV6::new(ip("fe80::9"), 546, 0, 11)));
        // Configured servers: only those.
        let server = SocketAddrV6::new(ip("2001:db8:ff::547"), 547, 0, 0);
        assert!(matches!(cfg().from_upstream(2, server, &good), AgentAction::SendDown { .. }));
        assert_eq!(cfg().from_upstream(2, far, &good), AgentAction::Drop(Counter::DropAgentUnexpectedServer));
        assert_eq!(cfg().from_upstream(11, server, &good), AgentAction::Drop(Counter::DropAgentUnexpectedServer));
    }

    #[test]
    fn relay_reply_peer_address_must_be_on_the_downstream_link() {
        // The reflector: a victim across the Internet named as the peer.
        let victim = RelayLevel::new(0, ip("2001:db8:1::1"), ip("2001:db8:99::1"));
        assert_eq!(
            cfg().from_server(&relay_reply(&victim, &reply_with(&[]))),
            AgentAction::Drop(Counter::DropAgentPeerOffLink)
        );
        // On eth2's prefix but eth1 named by the link-address: not on that link either.
        let other_link = RelayLevel::new(0, ip("2001:db8:1::1"), ip("2001:db8:2::9"));
        assert_eq!(
            cfg().from_server(&relay_reply(&other_link, &reply_with(&[]))),
            AgentAction::Drop(Counter::DropAgentPeerOffLink)
        );
        // A global client address on the link named is fine, and leaves that interface.
        let on_link = RelayLevel::new(0, ip("2001:db8:1::1"), ip("2001:db8:1::9"));
        let (ifindex, to, _) = sent_down(cfg().from_server(&relay_reply(&on_link, &reply_with(&[]))));
        assert_eq!((ifindex, to), (11, SocketAddrV6::new(ip("2001:db8:1::9"), 546, 0, 11)));
        // An interface with no known prefix: link-local peers only.
        let bare =
            RelayAgentConfig { downstream: vec![DownstreamIface::new("eth1", 11, ip("2001:db8:1::1"))], ..cfg() };
        assert_eq!(
            bare.from_server(&relay_reply(&on_link, &reply_with(&[]))),
            AgentAction::Drop(Counter::DropAgentPeerOffLink)
        );
    }

    #[test]
    fn unknown_types_do_not_go_down() {
        let level = RelayLevel::new(0, ip("2001:db8:1::1"), ip("fe80::9"));
        for inner in [&[200u8, 1, 2, 3, 0xff][..], &[0, 1, 2, 3], &[99, 0, 0, 0]] {
            assert_eq!(
                cfg().from_server(&relay_reply(&level, inner)),
                AgentAction::Drop(Counter::DropAgentUnknownType),
                "type {}",
                inner[0]
            );
        }
    }

    /// Finding 1, relay-agent side: a downstream host's own Relay-Forward is not passed on
    /// unless it comes from a trusted relay.
    #[test]
    fn relay_forward_from_below_only_from_trusted_relays() {
        let fwd = forward_with_hop(0);
        let host = SocketAddrV6::new(ip("2001:db8:1::66"), 547, 0, 0);
        assert_eq!(cfg().from_client(11, host, &fwd, None), AgentAction::Drop(Counter::DropAgentUntrustedRelay));
        let nobody = RelayAgentConfig { trusted_relays: TrustedRelays::default(), ..cfg() };
        assert_eq!(nobody.from_client(11, client(), &fwd, None), AgentAction::Drop(Counter::DropAgentUntrustedRelay));
        // ...while the same host's client messages are relayed (it is on the link).
        assert!(matches!(nobody.from_client(11, host, SOLICIT, None), AgentAction::Send { .. }));
        let trusted = SocketAddrV6::new(ip("2001:db8:1::77"), 547, 0, 0);
        assert!(matches!(cfg().from_client(11, trusted, &fwd, None), AgentAction::Send { .. }));
    }

    #[test]
    fn client_messages_from_below_only_from_the_link() {
        let far = SocketAddrV6::new(ip("2001:db8:99::1"), 546, 0, 0);
        assert_eq!(cfg().from_client(11, far, SOLICIT, None), AgentAction::Drop(Counter::DropAgentOffLinkSource));
        // eth2's prefix arriving on eth1.
        let other = SocketAddrV6::new(ip("2001:db8:2::9"), 546, 0, 0);
        assert_eq!(cfg().from_client(11, other, SOLICIT, None), AgentAction::Drop(Counter::DropAgentOffLinkSource));
        let on = SocketAddrV6::new(ip("2001:db8:1::9"), 546, 0, 0);
        assert!(matches!(cfg().from_client(11, on, SOLICIT, None), AgentAction::Send { .. }));
    }

    #[test]
    fn malformed_unknown_iface_and_unknown_types() {
        let c = cfg();
        assert_eq!(c.from_client(99, client(), SOLICIT, None), AgentAction::Drop(Counter::DropAgentUnknownIface));
        assert_eq!(c.from_client(11, client(), &[], None), AgentAction::Drop(Counter::DropAgentMalformed));
        assert_eq!(
            c.from_client(11, client(), &[msg::SOLICIT, 1, 2, 3, 0, 1, 0, 9], None),
            AgentAction::Drop(Counter::DropAgentMalformed)
        );
        assert_eq!(
            c.from_client(11, client(), &[msg::RELAY_FORW, 0, 0], None),
            AgentAction::Drop(Counter::DropAgentMalformed)
        );
        let no_relay_msg = Writer::relay(msg::RELAY_FORW, 0, Ipv6Addr::UNSPECIFIED, ip("fe80::9")).finish().unwrap();
        assert_eq!(c.from_client(11, client(), &no_relay_msg, None), AgentAction::Drop(Counter::DropAgentMalformed));
        let unspecified = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 546, 0, 11);
        assert_eq!(c.from_client(11, unspecified, SOLICIT, None), AgentAction::Drop(Counter::DropAgentBadSource));
        // RFC 7283: an unknown type is relayed as it is.
        let (_, payload) = sent(c.from_client(11, client(), &[200, 1, 2, 3, 0xff], None));
        let r = RelayMessage::parse(&payload).unwrap();
        assert_eq!(r.relay_message().unwrap(), &[200, 1, 2, 3, 0xff]);
    }

    #[test]
    fn relay_reply_goes_to_the_client_on_the_interface_its_interface_id_names() {
        let mut level = RelayLevel::new(0, ip("2001:db8:1::1"), ip("fe80::9"));
        level.interface_id = Some(b"eth2".to_vec());
        let reply = reply_with(&[encode_option(opt::SERVERID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1])]);
        let (ifindex, to, payload) = sent_down(cfg().from_server(&relay_reply(&level, &reply)));
        // The Interface-ID wins over the link-address (which names eth1).
        assert_eq!(ifindex, 12);
        assert_eq!(to, SocketAddrV6::new(ip("fe80::9"), 546, 0, 12));
        assert_eq!(payload, reply);
    }

    #[test]
    fn without_interface_id_the_link_address_picks_the_interface() {
        let level = RelayLevel::new(0, ip("2001:db8:2::1"), ip("fe80::9"));
        let (ifindex, _, _) = sent_down(cfg().from_server(&relay_reply(&level, &reply_with(&[]))));
        assert_eq!(ifindex, 12);
        let mut unknown = RelayLevel::new(0, ip("2001:db8:9::1"), ip("fe80::9"));
        assert_eq!(
            cfg().from_server(&relay_reply(&unknown, &reply_with(&[]))),
            AgentAction::Drop(Counter::DropAgentUnknownIface)
        );
        unknown.interface_id = Some(b"nope".to_vec());
        assert_eq!(
            cfg().from_server(&relay_reply(&unknown, &reply_with(&[]))),
            AgentAction::Drop(Counter::DropAgentUnknownIface)
        );
    }

    #[test]
    fn relay_reply_inside_goes_to_port_547_of_the_relay_below() {
        let mut ldra = RelayLevel::new(0, Ipv6Addr::UNSPECIFIED, ip("fe80::9"));
        ldra.interface_id = Some(b"port3".to_vec());
        let mut ours = RelayLevel::new(1, ip("2001:db8:1::1"), ip("fe80::1d"));
        ours.interface_id = Some(b"eth1".to_vec());
        let reply = reply_with(&[]);
        let both = wrap(&[ours, ldra.clone()], &reply).unwrap();
        let (ifindex, to, payload) = sent_down(cfg().from_server(&both));
        assert_eq!((ifindex, to), (11, SocketAddrV6::new(ip("fe80::1d"), 547, 0, 11)));
        assert_eq!(payload, relay_reply(&ldra, &reply));
    }

    #[test]
    fn from_server_drops_what_is_not_a_sound_relay_reply() {
        let c = cfg();
        let level = RelayLevel::new(0, ip("2001:db8:1::1"), ip("fe80::9"));
        assert_eq!(c.from_server(&[]), AgentAction::Drop(Counter::DropAgentMalformed));
        assert_eq!(c.from_server(SOLICIT), AgentAction::Drop(Counter::DropAgentNotRelayReply));
        let good = relay_reply(&level, &reply_with(&[]));
        assert_eq!(c.from_server(&good[..good.len() - 1]), AgentAction::Drop(Counter::DropAgentMalformed));
        assert_eq!(c.from_server(&good[..20]), AgentAction::Drop(Counter::DropAgentMalformed));
        let mut bad_hop = good.clone();
        bad_hop[1] = HOP_COUNT_LIMIT + 1;
        assert_eq!(c.from_server(&bad_hop), AgentAction::Drop(Counter::DropAgentMalformed));
        let mut w = Writer::relay(msg::RELAY_REPL, 0, level.link_address, level.peer_address);
        w.option(opt::RELAY_MSG, SOLICIT);
        assert_eq!(c.from_server(&w.finish().unwrap()), AgentAction::Drop(Counter::DropAgentClientMsgFromServer));
        let to_nowhere = RelayLevel::new(0, level.link_address, Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            c.from_server(&relay_reply(&to_nowhere, &reply_with(&[]))),
            AgentAction::Drop(Counter::DropAgentBadPeerAddress)
        );
        let bad_reply = [msg::REPLY, 1, 2, 3, 0, 23, 0, 32];
        let mut w = Writer::relay(msg::RELAY_REPL, 0, level.link_address, level.peer_address);
        w.option(opt::RELAY_MSG, &bad_reply);
        assert_eq!(c.from_server(&w.finish().unwrap()), AgentAction::Drop(Counter::DropAgentMalformed));
    }

    fn dns_option(addrs: &[&str]) -> Vec<u8> {
        encode_option(opt::DNS_SERVERS, &addrs.iter().flat_map(|a| ip(a).octets()).collect::<Vec<_>>())
    }

    fn rewriting() -> RelayAgentConfig {
        RelayAgentConfig { rewrite_dns: Some(vec![ip("2001:db8:53::1")]), ..cfg() }
    }

    fn down_via(c: &RelayAgentConfig, inner: &[u8]) -> Vec<u8> {
        let level = RelayLevel::new(0, ip("2001:db8:1::1"), ip("fe80::9"));
        sent_down(c.from_server(&relay_reply(&level, inner))).2
    }

    #[test]
    fn dns_rewrite_replaces_the_option_and_keeps_the_message_valid() {
        let sid = encode_option(opt::SERVERID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
        let domains = encode_option(opt::DOMAIN_LIST, b"\x07example\x03net\x00");
        let reply = reply_with(&[sid.clone(), dns_option(&["2001:db8::a", "2001:db8::b"]), domains.clone()]);
        let out = down_via(&rewriting(), &reply);
        assert_eq!(out, reply_with(&[sid.clone(), dns_option(&["2001:db8:53::1"]), domains.clone()]));
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.xid(), [1, 2, 3]);

        // Growing works as well as shrinking.
        let c = RelayAgentConfig {
            rewrite_dns: Some(vec![ip("2001:db8:53::1"), ip("2001:db8:53::2"), ip("2001:db8:53::3")]),
            ..cfg()
        };
        let out = down_via(&c, &reply);
        assert_eq!(
            out,
            reply_with(&[sid, dns_option(&["2001:db8:53::1", "2001:db8:53::2", "2001:db8:53::3"]), domains])
        );

        // Advertise too.
        let mut adv = reply_with(&[dns_option(&["2001:db8::a"])]);
        adv[0] = msg::ADVERTISE;
        let out = down_via(&rewriting(), &adv);
        assert_eq!(Message::parse(&out).unwrap().find(opt::DNS_SERVERS), Some(&ip("2001:db8:53::1").octets()[..]));
    }

    #[test]
    fn dns_rewrite_never_touches_authenticated_or_other_messages() {
        let auth = encode_option(opt::AUTH, &[3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa]);
        let reply = reply_with(&[dns_option(&["2001:db8::a"]), auth]);
        assert_eq!(down_via(&rewriting(), &reply), reply);
        // No DNS option: nothing added.
        let bare = reply_with(&[]);
        assert_eq!(down_via(&rewriting(), &bare), bare);
        // Reconfigure is not rewritten.
        let mut reconf = reply_with(&[dns_option(&["2001:db8::a"])]);
        reconf[0] = msg::RECONFIGURE;
        assert_eq!(down_via(&rewriting(), &reconf), reconf);
        // Nor without a rewrite configured, or with an empty list.
        let reply = reply_with(&[dns_option(&["2001:db8::a"])]);
        assert_eq!(down_via(&cfg(), &reply), reply);
        let empty = RelayAgentConfig { rewrite_dns: Some(vec![]), ..cfg() };
        assert_eq!(down_via(&empty, &reply), reply);
    }

    #[test]
    fn agent_and_server_side_round_trip() {
        let c = cfg();
        let (_, fwd) = sent(c.from_client(11, client(), SOLICIT, Some(MAC)));
        let relayed = unwrap(&fwd).unwrap();
        let advertise = [msg::ADVERTISE, 1, 2, 3];
        let back = wrap(&relayed.levels, &advertise).unwrap();
        let (ifindex, to, payload) = sent_down(c.from_server(&back));
        assert_eq!((ifindex, to, payload), (11, SocketAddrV6::new(ip("fe80::9"), 546, 0, 11), advertise.to_vec()));
    }

    #[test]
    fn oversized_datagrams_are_dropped() {
        let mut big = vec![msg::INFORMATION_REQUEST, 1, 2, 3];
        big.extend_from_slice(&encode_option(opt::VENDOR_OPTS, &vec![0; MAX_UDP_PAYLOAD - 8 - 30]));
        assert_eq!(cfg().from_client(11, client(), &big, Some(MAC)), AgentAction::Drop(Counter::DropAgentTooLarge));
    }
}
