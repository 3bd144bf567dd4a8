//! What the XDP program must do with a frame, modelled in userspace.
//!
//! The DHCPv6 decision (answer, and with what bytes, or discard) is the userspace server's own
//! (`server::information_request`); this module adds only what is particular to the fast path:
//! which frames it classifies, which reply data a frame finds (by interface and VLAN), the
//! limits past which it hands a request to userspace, the headers of the frame it sends back,
//! the flood buckets on the way up and the client MACs it learns. Relayed Information-Requests
//! (one lightweight relay's level) are the server's too: `relay::unwrap`, the link's options
//! as `daemon::dispatch` picks them, `relay::wrap`. Tests run the real program
//! and this model ([`ModelMaps`]) on the same frames and require the same outcome (the same
//! [`Verdict`]) and, for answers, the same bytes. Renews answered from the renew map are
//! `fastpath::renew`'s.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv6Addr,
};

use dhcpv6_common::{
    limits::{MAX_INTERFACE_ID, MAX_OPTIONS, MAX_ORO_CODES, MAX_RELAY_OPTIONS, MAX_REQUEST_UDP_LEN},
    wire::{
        is_ipv6_ext_header,
        msg::{self, is_client_message},
        opt, ALL_DHCP_RELAY_AGENTS_AND_SERVERS, DUID_MAX_LEN, DUID_MIN_LEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV6,
        IPPROTO_UDP, REPLY_HOP_LIMIT, SERVER_PORT,
    },
    FloodConfig, FloodKey, FloodLimit, IfaceKey, RenewEntry, RenewKey, Verdict, FLOOD_KEY_MAC, FLOOD_KEY_RELAY,
    VLAN_VID_MASK,
};

use super::frame::{addr, be16, udp_checksum, udp_sum, Offsets};
use crate::{
    server::{information_request, information_request_with, relay, Discard, IfaceService, LinkService},
    wire::{Message, RelayLevel, RelayMessage},
};

/// The fast path's view of one interface (or VLAN): its reply data.
#[derive(Debug, Clone)]
pub struct ModelIface {
    pub mac: [u8; 6],
    pub link_local: Ipv6Addr,
    pub svc: IfaceService,
    pub fast_path: bool,
    /// `IFACE_LEARN_MACS`: client MACs are learned from frames passed up.
    pub learn_macs: bool,
    /// `IFACE_RELAYED_IR`: lightweight relays on the link are trusted; their relayed
    /// Information-Requests are answered here.
    pub relayed_ir: bool,
    /// `[[link]]`s with options of their own, by the Interface-ID that names them; `None`:
    /// the link's reply data is missing (`pass_relay_link`).
    pub links: Vec<(Vec<u8>, Option<LinkService>)>,
    /// `IFACE_RENEW`: Renews are answered from `ModelMaps::renews` (`fastpath::renew`).
    pub renew: bool,
}

impl ModelIface {
    /// An interface answering direct Information-Requests (when `fast_path`), no relays.
    pub fn new(mac: [u8; 6], link_local: Ipv6Addr, svc: IfaceService, fast_path: bool) -> Self {
        ModelIface {
            mac,
            link_local,
            svc,
            fast_path,
            learn_macs: false,
            relayed_ir: false,
            links: Vec::new(),
            renew: false,
        }
    }
}

/// The program's action and the counter it bumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not IPv6 UDP/547: passed, counted only as a frame.
    NotDhcp,
    Tx(Vec<u8>),
    /// A Relay-Reply sent back to a lightweight relay (`tx_relayed_ir`).
    TxRelayed(Vec<u8>),
    /// A Reply to a Renew, from `DHCPV6_RENEWS` (`tx_renew`).
    TxRenew(Vec<u8>),
    Pass(Verdict),
    Drop(Verdict),
}

impl Outcome {
    /// The outcome the program gives `v` (a reply's bytes aside).
    fn of(v: Verdict) -> Outcome {
        match v {
            Verdict::NotDhcp => Outcome::NotDhcp,
            v if v.action() == dhcpv6_common::outcomes::xdp_action::DROP => Outcome::Drop(v),
            v => Outcome::Pass(v),
        }
    }

    /// The counter that moves (`not_dhcp` and `answered` included, by their names).
    pub fn counter(&self) -> &'static str {
        match self {
            Outcome::NotDhcp => Verdict::NotDhcp.name(),
            Outcome::Tx(_) => Verdict::Answered.name(),
            Outcome::TxRelayed(_) => Verdict::TxRelayedIr.name(),
            Outcome::TxRenew(_) => Verdict::TxRenew.name(),
            Outcome::Pass(v) | Outcome::Drop(v) => v.name(),
        }
    }
}

/// Everything the program reads and writes for one ingress interface, as the model keeps it:
/// reply data by VLAN, the flood limits and buckets, the learned client MACs.
#[derive(Debug, Clone, Default)]
pub struct ModelMaps {
    /// Reply data by (outer VLAN ID, inner VLAN ID); `(0, 0)` is the untagged interface.
    pub ifaces: HashMap<(u16, u16), ModelIface>,
    pub flood: FloodConfig,
    pub relays: HashSet<Ipv6Addr>,
    /// Bucket state (theoretical arrival time, ns), as `DHCPV6_FLOOD` (without its eviction).
    pub buckets: HashMap<FloodKey, u64>,
    /// `DHCPV6_CLIENT_MACS` for this interface.
    pub macs: HashMap<Ipv6Addr, [u8; 6]>,
    /// `DHCPV6_RENEWS` (keys on ifindex 1, as the harness runs every frame there).
    pub renews: HashMap<RenewKey, RenewEntry>,
    /// The program's `bpf_ktime_get_boot_ns` for the renew entries' deadlines.
    pub boot_ns: u64,
}

impl ModelMaps {
    /// One untagged interface (or none), no flood limits.
    pub fn single(iface: Option<&ModelIface>) -> Self {
        let mut m = ModelMaps::default();
        if let Some(i) = iface {
            m.ifaces.insert((0, 0), i.clone());
        }
        m
    }

    /// The outcome the program must produce for `frame` arriving at `now_ns`
    /// (`bpf_ktime_get_ns`, CLOCK_MONOTONIC), updating buckets and MACs as it would.
    pub fn run(&mut self, frame: &[u8], now_ns: u64) -> Outcome {
        let hdr = match classify(frame) {
            Ok(h) => h,
            Err(v) => return Outcome::of(v),
        };
        let Some(iface) = self.ifaces.get(&(hdr.outer_vlan, hdr.inner_vlan)) else {
            let v = if hdr.off.l3 != 14 { Verdict::PassVlan } else { Verdict::PassNoIface };
            return self.admit(frame, hdr.off.l3, v, now_ns);
        };
        let learn = iface.learn_macs;
        let key = IfaceKey { ifindex: 1, outer_vlan: hdr.outer_vlan, inner_vlan: hdr.inner_vlan };
        match serve(frame, hdr.off, iface, key, &self.renews, self.boot_ns) {
            Ok(o) | Err(o) => match o {
                Outcome::Pass(v) => {
                    let o = self.admit(frame, hdr.off.l3, v, now_ns);
                    if learn && matches!(o, Outcome::Pass(_)) {
                        self.learn(frame, hdr.off);
                    }
                    o
                }
                o => o,
            },
        }
    }

    /// The flood bucket of the frame's sender, for a frame on its way up.
    fn admit(&mut self, f: &[u8], l3: usize, v: Verdict, now_ns: u64) -> Outcome {
        if !v.metered() {
            return Outcome::of(v);
        }
        let relay = if self.relays.is_empty() { None } else { addr(f, l3 + 8).filter(|a| self.relays.contains(a)) };
        let (kind, addr, limit, over): (u32, [u8; 16], FloodLimit, Verdict) = match relay {
            Some(a) => (FLOOD_KEY_RELAY, a.octets(), self.flood.relay, Verdict::DropFloodRelay),
            None => {
                let mut a = [0u8; 16];
                a[..6].copy_from_slice(&f[6..12]);
                (FLOOD_KEY_MAC, a, self.flood.client, Verdict::DropFlood)
            }
        };
        if limit.is_off() {
            return Outcome::of(v);
        }
        // The test harness runs every frame on ifindex 1.
        let key = FloodKey { ifindex: 1, kind, addr };
        let tat = self.buckets.get(&key).copied().unwrap_or(0);
        match limit.admit(tat, now_ns) {
            Some(next) => {
                self.buckets.insert(key, next);
                Outcome::of(v)
            }
            None => Outcome::of(over),
        }
    }

    /// Client MAC learning: only a client message from a link-local source with consistent
    /// lengths (as `learn.rs`).
    fn learn(&mut self, f: &[u8], off: Offsets) {
        let Ok(udp_len) = check_lengths(f, off) else { return };
        if udp_len < 12 || !is_client_message(f[off.l4 + 8]) {
            return;
        }
        let Some(src) = addr(f, off.l3 + 8) else { return };
        let o = src.octets();
        if o[0] != 0xfe || o[1] & 0xc0 != 0x80 {
            return;
        }
        let mac: [u8; 6] = f[6..12].try_into().expect("six bytes");
        self.macs.insert(src, mac);
    }
}

fn is_vlan(t: u16) -> bool {
    t == ETH_P_8021Q || t == ETH_P_8021AD
}

struct Classified {
    off: Offsets,
    outer_vlan: u16,
    inner_vlan: u16,
}

fn classify(f: &[u8]) -> Result<Classified, Verdict> {
    let mut ethertype = be16(f, 12).ok_or(Verdict::NotDhcp)?;
    let mut l3 = 14;
    let mut vids = [0u16; 2];
    for vid in &mut vids {
        if !is_vlan(ethertype) {
            break;
        }
        *vid = be16(f, l3).ok_or(Verdict::NotDhcp)? & VLAN_VID_MASK;
        ethertype = be16(f, l3 + 2).ok_or(Verdict::NotDhcp)?;
        l3 += 4;
    }
    if is_vlan(ethertype) {
        return Err(Verdict::PassHeaders);
    }
    if ethertype != ETH_P_IPV6 {
        return Err(Verdict::NotDhcp);
    }
    let (Some(&v), Some(&next)) = (f.get(l3), f.get(l3 + 6)) else {
        return Err(Verdict::NotDhcp);
    };
    if v >> 4 != 6 {
        return Err(Verdict::NotDhcp);
    }
    if next != IPPROTO_UDP {
        return Err(if is_ipv6_ext_header(next) { Verdict::PassHeaders } else { Verdict::NotDhcp });
    }
    let l4 = l3 + 40;
    if be16(f, l4 + 2).ok_or(Verdict::NotDhcp)? != SERVER_PORT {
        return Err(Verdict::NotDhcp);
    }
    Ok(Classified { off: Offsets { l3, l4 }, outer_vlan: vids[0], inner_vlan: vids[1] })
}

/// UDP length equal to the IPv6 payload length, at least a UDP header, inside the frame.
fn check_lengths(f: &[u8], Offsets { l3, l4 }: Offsets) -> Result<usize, Verdict> {
    let payload = usize::from(be16(f, l3 + 4).ok_or(Verdict::PassLength)?);
    let udp_len = usize::from(be16(f, l4 + 4).ok_or(Verdict::PassLength)?);
    if udp_len != payload || udp_len < 8 || l4 + udp_len > f.len() {
        return Err(Verdict::PassLength);
    }
    Ok(udp_len)
}

/// The fast path's own limits, checked over the first `MAX_OPTIONS` options as the program
/// walks them. `Ok`: within limits, or malformed (the server's decision then drops it).
fn walk_limits(opts: &[u8], user_class_filter: bool) -> Result<(), Outcome> {
    let mut off = 0usize;
    let mut oros = 0;
    let mut user_class = false;
    let (mut cid, mut sid) = (false, false);
    for _ in 0..MAX_OPTIONS {
        if off >= opts.len() {
            break;
        }
        let (Some(code), Some(len)) = (be16(opts, off), be16(opts, off + 2)) else {
            return Ok(());
        };
        let len = usize::from(len);
        if off + 4 + len > opts.len() {
            return Ok(());
        }
        match code {
            opt::CLIENTID | opt::SERVERID if !(DUID_MIN_LEN..=DUID_MAX_LEN).contains(&len) => return Ok(()),
            opt::CLIENTID if cid => return Ok(()),
            opt::SERVERID if sid => return Ok(()),
            opt::CLIENTID => cid = true,
            opt::SERVERID => sid = true,
            opt::ORO if len % 2 != 0 => return Ok(()),
            opt::ORO => oros += 1,
            opt::USER_CLASS => user_class = true,
            _ => {}
        }
        off += 4 + len;
    }
    if off < opts.len() || oros > 1 {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    if user_class && user_class_filter {
        return Err(Outcome::Pass(Verdict::PassUserClass));
    }
    Ok(())
}

/// The outcome the program must produce for `frame` arriving untagged-served on an interface
/// with `iface` and no flood limits (tagged frames find no reply data: `pass_vlan`).
pub fn model(frame: &[u8], iface: Option<&ModelIface>) -> Outcome {
    ModelMaps::single(iface).run(frame, 0)
}

/// The server's discard as the program counts it.
fn discard_verdict(d: &Discard) -> Verdict {
    match d {
        Discard::Malformed(_) => Verdict::DropMalformed,
        Discard::IaPresent => Verdict::DropIaPresent,
        Discard::ForeignServerId => Verdict::DropForeignServerId,
        // Not an Information-Request: the program passes those up.
        Discard::Unsupported(_) => Verdict::PassOtherMsg,
        // A reply over 65,535 bytes: never in the map (the daemon cannot build its reply
        // data), and past the program's reply-size limit anyway.
        Discard::ReplyTooLong(_) => Verdict::PassLimits,
        // Not reached: with classes configured every request carrying one goes up first.
        Discard::IgnoredUserClass => Verdict::PassUserClass,
    }
}

/// What the program's `serve` does with a classified frame that found reply data (and the
/// Renew program it tail-calls).
fn serve(
    f: &[u8],
    off: Offsets,
    iface: &ModelIface,
    key: IfaceKey,
    renews: &HashMap<RenewKey, RenewEntry>,
    boot_ns: u64,
) -> Result<Outcome, Outcome> {
    let Offsets { l3, l4 } = off;
    if !iface.fast_path {
        return Err(Outcome::Pass(Verdict::PassFastPathOff));
    }
    let src = addr(f, l3 + 8).ok_or(Outcome::Pass(Verdict::PassLength))?;
    let dst = addr(f, l3 + 24).ok_or(Outcome::Pass(Verdict::PassLength))?;
    let o = src.octets();
    if o[0] != 0xfe || o[1] & 0xc0 != 0x80 {
        return Err(Outcome::Pass(Verdict::PassAddressing));
    }
    if dst.octets() != ALL_DHCP_RELAY_AGENTS_AND_SERVERS {
        return Err(Outcome::Pass(Verdict::PassAddressing));
    }
    let udp_len = check_lengths(f, off).map_err(Outcome::of)?;
    if udp_len < 12 {
        return Err(Outcome::Drop(Verdict::DropMalformed));
    }
    let (relayed, renew) = match f[l4 + 8] {
        msg::INFORMATION_REQUEST => (false, false),
        msg::RELAY_FORW if !iface.relayed_ir => return Err(Outcome::Pass(Verdict::PassRelayUntrusted)),
        msg::RELAY_FORW => (true, false),
        msg::RENEW if iface.renew => (false, true),
        _ => return Err(Outcome::Pass(Verdict::PassOtherMsg)),
    };
    if udp_len > MAX_REQUEST_UDP_LEN {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    let udp = &f[l4..l4 + udp_len];
    if be16(udp, 6) == Some(0) || udp_sum(&src, &dst, udp) != 0xffff {
        return Err(Outcome::Pass(Verdict::PassChecksum));
    }
    let dhcp = &udp[8..];
    if renew {
        let reply = super::renew::serve(dhcp, key, iface, renews, boot_ns)?;
        let client_port = be16(f, l4).ok_or(Outcome::Pass(Verdict::PassLength))?;
        return Ok(Outcome::TxRenew(reply_frame(f, l3, l4, src, client_port, iface, &reply)?));
    }
    if relayed {
        return serve_relayed(f, off, src, dhcp, iface);
    }
    walk_limits(&dhcp[4..], !iface.svc.ignore_user_classes.is_empty())?;
    let reply = Message::parse(dhcp).map_err(Discard::Malformed).and_then(|m| {
        let r = information_request(&m, &iface.svc)?;
        Ok((r, m.requested_options().map(|c| c.len()).unwrap_or(0)))
    });
    let (reply, oro_codes) = match reply {
        Ok(r) => r,
        Err(d) => return Err(Outcome::of(discard_verdict(&d))),
    };
    if oro_codes > MAX_ORO_CODES {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    let client_port = be16(f, l4).ok_or(Outcome::Pass(Verdict::PassLength))?;
    Ok(Outcome::Tx(reply_frame(f, l3, l4, src, client_port, iface, &reply)?))
}

/// The fast path's shape of a lightweight relay's level, checked before the server's parser:
/// hop-count 0, link-address unspecified, peer-address link-local.
fn ldra_header(dhcp: &[u8]) -> Result<(), Outcome> {
    if dhcp.len() < RelayMessage::HEADER_LEN {
        // RFC 9915 section 9: userspace's parser refuses it (`drop_relay_short_header`).
        return Err(Outcome::Drop(Verdict::DropRelayMalformed));
    }
    let peer = &dhcp[18..34];
    if dhcp[1] != 0 || dhcp[2..18].iter().any(|&b| b != 0) || peer[0] != 0xfe || peer[1] & 0xc0 != 0x80 {
        return Err(Outcome::Pass(Verdict::PassRelayShape));
    }
    Ok(())
}

/// The program's limit on the relay level's options (`MAX_RELAY_OPTIONS`), as it walks them.
/// `Ok`: within it, or malformed within it (the server's parser then drops it).
fn relay_walk_limits(opts: &[u8]) -> Result<(), Outcome> {
    let mut off = 0usize;
    for _ in 0..MAX_RELAY_OPTIONS {
        if off >= opts.len() {
            return Ok(());
        }
        let Some(len) = be16(opts, off + 2) else { return Ok(()) };
        off += 4 + usize::from(len);
    }
    if off < opts.len() {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    Ok(())
}

/// A Relay-Forward on an interface that trusts lightweight relays: the program's shape and
/// limits, then the server's own parsing, link choice, answer and Relay-Reply.
fn serve_relayed(f: &[u8], off: Offsets, src: Ipv6Addr, dhcp: &[u8], iface: &ModelIface) -> Result<Outcome, Outcome> {
    ldra_header(dhcp)?;
    relay_walk_limits(&dhcp[RelayMessage::HEADER_LEN..])?;
    let (level, carried) = RelayLevel::parse(dhcp).map_err(|_| Outcome::Drop(Verdict::DropRelayMalformed))?;
    let Some(iid) = level.interface_id.as_deref() else {
        return Err(Outcome::Pass(Verdict::PassRelayShape));
    };
    if iid.len() > MAX_INTERFACE_ID {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    match carried.first() {
        _ if carried.len() < Message::HEADER_LEN => {
            debug_assert!(relay::unwrap(dhcp).is_err(), "userspace drops a relayed message shorter than a header");
            return Err(Outcome::Drop(Verdict::DropRelayMalformed));
        }
        Some(&msg::INFORMATION_REQUEST) => {}
        Some(&msg::RELAY_FORW) => return Err(Outcome::Pass(Verdict::PassRelayShape)),
        _ => return Err(Outcome::Pass(Verdict::PassRelayInner)),
    }
    // `daemon::dispatch`: a `[[link]]` the Interface-ID names, with options of its own,
    // answers with those; any other, with the arrival interface's.
    let (options, classes) = match iface.links.iter().find(|(id, _)| id == iid) {
        Some((_, None)) => return Err(Outcome::Pass(Verdict::PassRelayLink)),
        Some((_, Some(l))) => (&l.options[..], &l.ignore_user_classes[..]),
        None => (&iface.svc.options[..], &iface.svc.ignore_user_classes[..]),
    };
    walk_limits(&carried[Message::HEADER_LEN..], !classes.is_empty())?;
    let reply =
        relay::unwrap(dhcp).map_err(|_| Discard::Malformed(crate::wire::WireError::ShortHeader(0))).and_then(|r| {
            let m = r.message();
            let reply = information_request_with(&m, &iface.svc.duid, options, classes)?;
            let wrapped = relay::wrap(&r.levels, &reply)
                .map_err(|_| Discard::ReplyTooLong(crate::wire::WireError::MessageTooLong { len: reply.len() }))?;
            Ok((wrapped, m.requested_options().map(|c| c.len()).unwrap_or(0)))
        });
    let (reply, oro_codes) = match reply {
        Ok(r) => r,
        Err(d) => return Err(Outcome::of(discard_verdict(&d))),
    };
    if oro_codes > MAX_ORO_CODES {
        return Err(Outcome::Pass(Verdict::PassLimits));
    }
    // `relay::reply_destination`: the relay's address, port 547.
    Ok(Outcome::TxRelayed(reply_frame(f, off.l3, off.l4, src, SERVER_PORT, iface, &reply)?))
}

/// The frame the program sends: the request's Ethernet header and VLAN tags turned around,
/// fresh IPv6 and UDP headers, and the server's reply as payload. A reply past the 16-bit UDP
/// length (the reply data's bounds keep it far below) is not sent but passed, as the program
/// would have to.
fn reply_frame(
    f: &[u8],
    l3: usize,
    l4: usize,
    client: Ipv6Addr,
    client_port: u16,
    iface: &ModelIface,
    reply: &[u8],
) -> Result<Vec<u8>, Outcome> {
    let udp_len = u16::try_from(8 + reply.len()).map_err(|_| Outcome::Pass(Verdict::PassLimits))?;
    let mut out = Vec::with_capacity(l4 + usize::from(udp_len));
    out.extend_from_slice(&f[6..12]);
    out.extend_from_slice(&iface.mac);
    out.extend_from_slice(&f[12..l3]);
    debug_assert_eq!(be16(&out, l3 - 2), Some(ETH_P_IPV6));
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.push(IPPROTO_UDP);
    out.push(REPLY_HOP_LIMIT);
    out.extend_from_slice(&iface.link_local.octets());
    out.extend_from_slice(&client.octets());
    out.extend_from_slice(&SERVER_PORT.to_be_bytes());
    out.extend_from_slice(&client_port.to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(reply);
    let c = udp_checksum(&iface.link_local, &client, &out[l4..]);
    out[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    Ok(out)
}
