//! Who a client is beyond its DUID, for the per-MAC limit: a DUID costs nothing to make up,
//! the link-layer address a frame comes from or the line a relay saw it on does.
//!
//! * Relayed: the MAC of the relay's Client Link-Layer Address (RFC 6939), else that option's
//!   other link-layer address, else the relay's Remote-ID (RFC 4649, the subscriber line);
//!   with none of them, no identity (the per-DUID limit still applies).
//! * On the link: the MAC inside an EUI-64 source address (modified EUI-64, RFC 4291
//!   appendix A); else the link-local source address itself, which a host keeps for as
//!   long as it is up (RFC 7217 stable addresses); else (a global source without an EUI-64
//!   interface id) no identity. The daemon's UDP socket does not see the frame's MAC, so
//!   a host that uses stable-privacy link-locals is counted by its address, not its MAC.

use std::net::Ipv6Addr;

use super::index::Ident;
use crate::server::relay::LinkSelector;

const MAC: u8 = 1;
const LINK_LAYER: u8 = 2;
const REMOTE_ID: u8 = 3;
const LINK_LOCAL: u8 = 4;

/// The identity of the client that sent a message; see the module docs.
pub(crate) fn of(relay: Option<&LinkSelector<'_>>, peer: Ipv6Addr) -> Option<Ident> {
    let tagged = |tag: u8, bytes: &[u8]| [&[tag][..], bytes].concat();
    match relay {
        Some(r) => r
            .client_mac()
            .map(|m| tagged(MAC, &m))
            .or_else(|| r.client_linklayer.map(|l| tagged(LINK_LAYER, l)))
            .or_else(|| r.remote_id.map(|id| tagged(REMOTE_ID, id))),
        None => match eui64_mac(peer) {
            Some(m) => Some(tagged(MAC, &m)),
            None if peer.is_unicast_link_local() => Some(tagged(LINK_LOCAL, &peer.octets())),
            None => None,
        },
    }
}

/// The MAC a modified EUI-64 interface identifier was made from (ff:fe in the middle, the
/// universal/local bit inverted).
fn eui64_mac(a: Ipv6Addr) -> Option<[u8; 6]> {
    let o = a.octets();
    (o[11] == 0xff && o[12] == 0xfe).then(|| [o[8] ^ 0x02, o[9], o[10], o[13], o[14], o[15]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn direct_clients_by_eui64_mac_else_link_local() {
        let mac = of(None, a("fe80::200:ff:fe00:1")).unwrap();
        assert_eq!(mac, vec![MAC, 0, 0, 0, 0, 0, 1]);
        // The same MAC through a global EUI-64 address is the same client.
        assert_eq!(of(None, a("2001:db8::200:ff:fe00:1")), Some(mac));
        assert_eq!(of(None, a("fe80::1234:5678:9abc:def0")).unwrap()[0], LINK_LOCAL);
        assert_eq!(of(None, a("2001:db8::1234:5678:9abc:def0")), None);
    }

    #[test]
    fn relayed_clients_by_link_layer_address_else_remote_id() {
        let cll = [0, 1, 2, 0, 0, 0, 0, 9];
        let rid = [0, 0, 0, 9, 1];
        let mut sel = LinkSelector {
            link_address: None,
            interface_id: None,
            remote_id: Some(&rid),
            subscriber_id: None,
            client_linklayer: Some(&cll),
            ..LinkSelector::default()
        };
        assert_eq!(of(Some(&sel), a("2001:db8::1")), Some(vec![MAC, 2, 0, 0, 0, 0, 9]));
        sel.client_linklayer = None;
        assert_eq!(of(Some(&sel), a("2001:db8::1")), Some(vec![REMOTE_ID, 0, 0, 0, 9, 1]));
        sel.remote_id = None;
        assert_eq!(of(Some(&sel), a("fe80::200:ff:fe00:1")), None, "the relay's address is not the client's");
    }
}
