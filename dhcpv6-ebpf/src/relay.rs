//! A lightweight relay's Relay-Forward (RFC 6221) around an Information-Request: the relay
//! level's walk (over the datagram copied into scratch), and the link whose options answer it.
//!
//! Only one level as an LDRA writes it goes on in XDP: hop-count 0, link-address
//! unspecified, peer-address link-local, an Interface-ID, a Relay Message carrying a client
//! message that is not itself relayed. The level's rules are `RelayLevel::parse`'s (each relay
//! option at most once, Remote-ID, Subscriber-ID and Client Link-Layer Address of their
//! minimum lengths, one Relay Message): a level that breaks them is dropped, as userspace
//! drops it; any other shape goes up.

use dhcpv6_common::{
    limits::{MAX_INTERFACE_ID, MAX_RELAY_OPTIONS},
    wire::{msg, opt},
    IfaceKey, IfaceReply, Scratch, IFACE_FAST_PATH, IFACE_RELAY_LINKS, REQ_MASK,
};

use crate::{
    frame::load,
    scratch::{get, set},
    ifaces, Verdict, DHCPV6_RELAY_LINKS,
};

/// Offsets in the datagram: the relay header after the UDP header, its options after it.
const RELAY_AT: usize = 8;
const RELAY_OPTS_AT: usize = RELAY_AT + 34;

/// Minimum data lengths of the relay identifiers (RFC 4649, 4580, 6939).
const REMOTE_ID_MIN: usize = 5;
const SUBSCRIBER_ID_MIN: usize = 1;
const LINKLAYER_MIN: usize = 3;

#[inline(always)]
fn be16(req: &[u8; dhcpv6_common::REQ_BUF], off: usize) -> u16 {
    let off = off & REQ_MASK;
    u16::from_be_bytes([req[off], req[off + 1]])
}

/// Walks the relay level of the datagram in scratch (`udp_len` bytes); on success the client
/// message's range is in `found.msg_off`/`msg_end` and the Interface-ID in `iid_off`/`iid_len`.
#[inline(always)]
pub fn walk(scratch: &mut Scratch, udp_len: usize) -> Result<(), Verdict> {
    if udp_len < RELAY_OPTS_AT {
        return Err(Verdict::DropRelayMalformed);
    }
    let req = &scratch.req;
    // SAFETY: the 34-byte header lies inside the 656-byte buffer.
    let (hop, link, peer): (u8, [u64; 2], u16) = unsafe {
        let p = req.as_ptr();
        (req[RELAY_AT + 1], [load(p, RELAY_AT + 2), load(p, RELAY_AT + 10)], load(p, RELAY_AT + 18))
    };
    // fe80::/10 on the peer-address's first two bytes (native order: low byte first).
    let peer = peer.to_ne_bytes();
    if hop != 0 || link != [0, 0] || peer[0] != 0xfe || peer[1] & 0xc0 != 0x80 {
        return Err(Verdict::PassRelayShape);
    }
    let f = &mut scratch.found;
    set(&mut f.relay_seen, 0);
    let end = udp_len;
    let mut off = RELAY_OPTS_AT;
    for _ in 0..MAX_RELAY_OPTIONS {
        if off >= end {
            break;
        }
        if off + 4 > end {
            return Err(Verdict::DropRelayMalformed);
        }
        let code = be16(&scratch.req, off);
        let len = be16(&scratch.req, off + 2) as usize;
        let next = off + 4 + len;
        if next > end {
            return Err(Verdict::DropRelayMalformed);
        }
        let f = &mut scratch.found;
        let (bit, min) = match code {
            opt::RELAY_MSG => {
                set(&mut f.rmsg_off, off as u32);
                set(&mut f.rmsg_len, len as u32);
                (1, 0)
            }
            opt::INTERFACE_ID => {
                set(&mut f.iid_off, off as u32);
                set(&mut f.iid_len, len as u32);
                (2, 0)
            }
            opt::REMOTE_ID => (4, REMOTE_ID_MIN),
            opt::SUBSCRIBER_ID => (8, SUBSCRIBER_ID_MIN),
            opt::CLIENT_LINKLAYER_ADDR => (16, LINKLAYER_MIN),
            _ => (0, 0),
        };
        let seen = get(&f.relay_seen);
        if len < min || seen & bit != 0 {
            return Err(Verdict::DropRelayMalformed);
        }
        set(&mut f.relay_seen, seen | bit);
        off = next;
    }
    if off < end {
        return Err(Verdict::PassLimits);
    }
    let f = &mut scratch.found;
    let seen = get(&f.relay_seen);
    if seen & 1 == 0 {
        return Err(Verdict::DropRelayMalformed);
    }
    if seen & 2 == 0 {
        return Err(Verdict::PassRelayShape);
    }
    if get(&f.iid_len) as usize > MAX_INTERFACE_ID {
        return Err(Verdict::PassLimits);
    }
    let (rmsg_off, rmsg_len) = (get(&f.rmsg_off) as usize, get(&f.rmsg_len) as usize);
    // Shorter than a message header: userspace finds it malformed whatever its type.
    if rmsg_len < 4 {
        return Err(Verdict::DropRelayMalformed);
    }
    let inner = rmsg_off + 4;
    match scratch.req[inner & REQ_MASK] {
        msg::INFORMATION_REQUEST => {}
        msg::RELAY_FORW => return Err(Verdict::PassRelayShape),
        _ => return Err(Verdict::PassRelayInner),
    }
    let f = &mut scratch.found;
    set(&mut f.msg_off, inner as u32);
    set(&mut f.msg_end, (inner + rmsg_len) as u32);
    Ok(())
}

/// The reply data that answers the relayed request: the `[[link]]`'s the Interface-ID names
/// when it has options of its own, else the arrival interface's (`iface`).
#[inline(always)]
pub fn link<'a>(scratch: &mut Scratch, key: IfaceKey, iface: &'a IfaceReply) -> Result<&'a IfaceReply, Verdict> {
    if iface.flags & IFACE_RELAY_LINKS == 0 {
        return Ok(iface);
    }
    let len = get(&scratch.found.iid_len) as usize & 127;
    let src = (get(&scratch.found.iid_off) as usize + 4) & REQ_MASK;
    let k = &mut scratch.link_key;
    k.iface = key;
    k.iid_len = len as u32;
    k._pad = 0;
    let p = scratch.req.as_ptr();
    let dst = scratch.link_key.iid.as_mut_ptr();
    for w in 0..MAX_INTERFACE_ID / 8 {
        let i = w * 8;
        // SAFETY: src < 512 and i + 8 <= 64 stay inside the 656-byte buffer; the key has 64 bytes.
        let v: u64 = unsafe { load(p, src + i) };
        // Native order: the bytes past the end are the high ones, and must be zero in the key.
        let v = if len >= i + 8 {
            v
        } else if len > i {
            v & ((1u64 << ((len - i) * 8)) - 1)
        } else {
            0
        };
        // SAFETY: i + 8 <= 64.
        unsafe { crate::frame::store::<u64>(dst, i, v) };
    }
    let Some(target) = DHCPV6_RELAY_LINKS.get_ptr(&scratch.link_key) else {
        return Ok(iface);
    };
    // SAFETY: a map value, valid for this run.
    let target = unsafe { *target };
    let Some(link) = ifaces::link_reply_data(target) else {
        return Err(Verdict::PassRelayLink);
    };
    if link.flags & IFACE_FAST_PATH == 0 {
        return Err(Verdict::PassRelayLink);
    }
    Ok(link)
}
