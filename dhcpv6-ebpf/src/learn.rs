//! Client MACs for the relay agent's Client Link-Layer Address option (RFC 6939).
//!
//! The table is keyed by the source address a frame claims, so what may write it is narrow:
//! only a frame that the flood bucket admitted (the caller's job) and that looks like a
//! client's message to us: classified UDP/547 (at most two VLAN tags, no extension header),
//! a link-local source, IPv6 and UDP lengths that agree and lie inside the frame, a whole
//! DHCPv6 header, and a client message type (not Relay-Forward: a relay below us is not the
//! client). Anything else could overwrite a client's entry or flush the LRU with junk.

use aya_ebpf::programs::XdpContext;
use dhcpv6_common::{wire::msg::is_client_message, ClientMac, MacKey};

use crate::{
    frame::{self, ptr_at, Hdr},
    DHCPV6_CLIENT_MACS,
};

#[inline(always)]
pub fn client_mac(ctx: &XdpContext, hdr: &Hdr, ifindex: u32) {
    let Ok(udp_len) = frame::check_lengths(ctx, hdr) else { return };
    // UDP header and the DHCPv6 message header (type and transaction id).
    if udp_len < 12 {
        return;
    }
    match frame::msg_type(ctx, hdr) {
        Some(t) if is_client_message(t) => {}
        _ => return,
    }
    let (Some(mac), Some(src)) = (ptr_at::<[u8; 6]>(ctx, 6), ptr_at::<[u8; 16]>(ctx, hdr.l3 + 8)) else {
        return;
    };
    // SAFETY: bounds checked by ptr_at.
    let (mac, addr) = unsafe { (*mac, *src) };
    if !frame::link_local(&addr) {
        return;
    }
    let _ = DHCPV6_CLIENT_MACS.insert(MacKey { ifindex, addr }, ClientMac { mac, _pad: [0; 2] }, 0);
}
