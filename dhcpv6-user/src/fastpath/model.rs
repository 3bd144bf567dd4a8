//! What the XDP program must do with a frame, modelled in userspace.
//!
//! The DHCPv6 decision (answer, and with what bytes, or discard) is the userspace server's own
//! (`server::information_request`); this module adds only what is particular to the fast path:
//! which frames it classifies, the limits past which it hands a request to userspace, and the
//! headers of the frame it sends back. Tests run the real program and this model on the same
//! frames and require the same outcome and, for answers, the same bytes.

use std::net::Ipv6Addr;

use dhcpv6_common::{
    limits::{MAX_OPTIONS, MAX_ORO_CODES, MAX_REQUEST_UDP_LEN},
    wire::{
        msg, opt, ALL_DHCP_RELAY_AGENTS_AND_SERVERS, DUID_MAX_LEN, DUID_MIN_LEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV6,
        IPPROTO_UDP, REPLY_HOP_LIMIT, SERVER_PORT,
    },
};

use super::frame::{addr, be16, udp_checksum, udp_sum, Offsets};
use crate::{
    server::{information_request, Discard, IfaceService},
    wire::Message,
};

/// The fast path's view of one interface.
#[derive(Debug, Clone)]
pub struct ModelIface {
    pub mac: [u8; 6],
    pub link_local: Ipv6Addr,
    pub svc: IfaceService,
    pub fast_path: bool,
}

/// The program's action and the counter it bumps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not IPv6 UDP/547: passed, counted only as a frame.
    NotDhcp,
    Tx(Vec<u8>),
    Pass(&'static str),
    Drop(&'static str),
}

fn is_vlan(t: u16) -> bool {
    t == ETH_P_8021Q || t == ETH_P_8021AD
}

fn classify(f: &[u8]) -> Result<Offsets, Outcome> {
    let mut ethertype = be16(f, 12).ok_or(Outcome::NotDhcp)?;
    let mut l3 = 14;
    for _ in 0..2 {
        if !is_vlan(ethertype) {
            break;
        }
        ethertype = be16(f, l3 + 2).ok_or(Outcome::NotDhcp)?;
        l3 += 4;
    }
    if is_vlan(ethertype) {
        return Err(Outcome::Pass("pass_headers"));
    }
    if ethertype != ETH_P_IPV6 {
        return Err(Outcome::NotDhcp);
    }
    let (Some(&v), Some(&next)) = (f.get(l3), f.get(l3 + 6)) else {
        return Err(Outcome::NotDhcp);
    };
    if v >> 4 != 6 {
        return Err(Outcome::NotDhcp);
    }
    if next != IPPROTO_UDP {
        let ext = matches!(next, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140);
        return Err(if ext { Outcome::Pass("pass_headers") } else { Outcome::NotDhcp });
    }
    let l4 = l3 + 40;
    if be16(f, l4 + 2).ok_or(Outcome::NotDhcp)? != SERVER_PORT {
        return Err(Outcome::NotDhcp);
    }
    Ok(Offsets { l3, l4 })
}

/// The fast path's own limits, checked over the first `MAX_OPTIONS` options as the program
/// walks them. `Ok`: within limits, or malformed (the server's decision then drops it).
fn walk_limits(opts: &[u8]) -> Result<(), Outcome> {
    let mut off = 0usize;
    let mut oros = 0;
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
            _ => {}
        }
        off += 4 + len;
    }
    if off < opts.len() || oros > 1 {
        return Err(Outcome::Pass("pass_limits"));
    }
    Ok(())
}

/// The outcome the program must produce for `frame` arriving on an interface with `iface`.
pub fn model(frame: &[u8], iface: Option<&ModelIface>) -> Outcome {
    match decide(frame, iface) {
        Ok(o) | Err(o) => o,
    }
}

fn decide(f: &[u8], iface: Option<&ModelIface>) -> Result<Outcome, Outcome> {
    let Offsets { l3, l4 } = classify(f)?;
    let iface = iface.ok_or(Outcome::Pass("pass_no_iface"))?;
    if !iface.fast_path {
        return Err(Outcome::Pass("pass_fast_path_off"));
    }
    let src = addr(f, l3 + 8).ok_or(Outcome::Pass("pass_length"))?;
    let dst = addr(f, l3 + 24).ok_or(Outcome::Pass("pass_length"))?;
    let o = src.octets();
    if o[0] != 0xfe || o[1] & 0xc0 != 0x80 {
        return Err(Outcome::Pass("pass_addressing"));
    }
    if dst.octets() != ALL_DHCP_RELAY_AGENTS_AND_SERVERS && dst != iface.link_local {
        return Err(Outcome::Pass("pass_addressing"));
    }
    let payload = usize::from(be16(f, l3 + 4).ok_or(Outcome::Pass("pass_length"))?);
    let udp_len = usize::from(be16(f, l4 + 4).ok_or(Outcome::Pass("pass_length"))?);
    if udp_len != payload || udp_len < 8 || l4 + udp_len > f.len() {
        return Err(Outcome::Pass("pass_length"));
    }
    if udp_len < 12 {
        return Err(Outcome::Drop("drop_malformed"));
    }
    if f[l4 + 8] != msg::INFORMATION_REQUEST {
        return Err(Outcome::Pass("pass_other_msg"));
    }
    if udp_len > MAX_REQUEST_UDP_LEN {
        return Err(Outcome::Pass("pass_limits"));
    }
    let udp = &f[l4..l4 + udp_len];
    if be16(udp, 6) == Some(0) || udp_sum(&src, &dst, udp) != 0xffff {
        return Err(Outcome::Pass("pass_checksum"));
    }
    let dhcp = &udp[8..];
    walk_limits(&dhcp[4..])?;
    let reply = Message::parse(dhcp).map_err(Discard::Malformed).and_then(|m| {
        let r = information_request(&m, &iface.svc)?;
        Ok((r, m.requested_options().map(|c| c.len()).unwrap_or(0)))
    });
    let (reply, oro_codes) = match reply {
        Ok(r) => r,
        Err(d) => return Err(Outcome::Drop(d.counter().as_str())),
    };
    if oro_codes > MAX_ORO_CODES {
        return Err(Outcome::Pass("pass_limits"));
    }
    Ok(Outcome::Tx(reply_frame(f, l3, l4, src, iface, &reply)))
}

/// The frame the program sends: the request's Ethernet header and VLAN tags turned around,
/// fresh IPv6 and UDP headers, and the server's reply as payload.
fn reply_frame(f: &[u8], l3: usize, l4: usize, client: Ipv6Addr, iface: &ModelIface, reply: &[u8]) -> Vec<u8> {
    let udp_len = 8 + reply.len();
    let mut out = Vec::with_capacity(l4 + udp_len);
    out.extend_from_slice(&f[6..12]);
    out.extend_from_slice(&iface.mac);
    out.extend_from_slice(&f[12..l3]);
    debug_assert_eq!(be16(&out, l3 - 2), Some(ETH_P_IPV6));
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.push(IPPROTO_UDP);
    out.push(REPLY_HOP_LIMIT);
    out.extend_from_slice(&iface.link_local.octets());
    out.extend_from_slice(&client.octets());
    out.extend_from_slice(&SERVER_PORT.to_be_bytes());
    out.extend_from_slice(&f[l4..l4 + 2]);
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(reply);
    let c = udp_checksum(&iface.link_local, &client, &out[l4..]);
    out[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    out
}
