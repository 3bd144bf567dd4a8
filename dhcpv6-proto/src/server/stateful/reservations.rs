//! Finding a client's reservations without walking the list: each reservation is indexed
//! under one of its matchers (the DUID if it has one), every candidate is then checked
//! against all of its matchers.

use std::collections::HashMap;

use super::config::Reservation;
use crate::server::relay::LinkSelector;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Matcher {
    Duid(Vec<u8>),
    RemoteId(Vec<u8>),
    SubscriberId(Vec<u8>),
    InterfaceId(Vec<u8>),
    LinkLayer(Vec<u8>),
}

/// The reservations of one link.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkReservations {
    list: Vec<Reservation>,
    index: HashMap<Matcher, Vec<usize>>,
}

fn same(want: &Option<Vec<u8>>, got: Option<&[u8]>) -> bool {
    want.as_deref().is_none_or(|w| got == Some(w))
}

impl LinkReservations {
    pub fn new(list: Vec<Reservation>) -> Self {
        let mut index: HashMap<Matcher, Vec<usize>> = HashMap::new();
        for (i, r) in list.iter().enumerate() {
            let m = if let Some(d) = &r.duid {
                Matcher::Duid(d.as_bytes().to_vec())
            } else if let Some(v) = &r.remote_id {
                Matcher::RemoteId(v.clone())
            } else if let Some(v) = &r.subscriber_id {
                Matcher::SubscriberId(v.clone())
            } else if let Some(v) = &r.interface_id {
                Matcher::InterfaceId(v.clone())
            } else if let Some(v) = &r.client_linklayer {
                Matcher::LinkLayer(v.clone())
            } else {
                continue; // refused by validation
            };
            index.entry(m).or_default().push(i);
        }
        Self { list, index }
    }

    /// The reservations that match this client, those for `iaid` first, then those for any
    /// IA, each group in configuration order.
    pub fn matching(&self, duid: &[u8], iaid: u32, relay: Option<&LinkSelector<'_>>) -> Vec<&Reservation> {
        if self.list.is_empty() {
            return Vec::new();
        }
        let mut keys = vec![Matcher::Duid(duid.to_vec())];
        if let Some(r) = relay {
            keys.extend(r.remote_id.map(|v| Matcher::RemoteId(v.to_vec())));
            keys.extend(r.subscriber_id.map(|v| Matcher::SubscriberId(v.to_vec())));
            keys.extend(r.interface_id.map(|v| Matcher::InterfaceId(v.to_vec())));
            keys.extend(r.client_linklayer.map(|v| Matcher::LinkLayer(v.to_vec())));
        }
        let mut hits: Vec<usize> = keys.iter().filter_map(|k| self.index.get(k)).flatten().copied().collect();
        hits.sort_unstable();
        hits.dedup();
        let mut out: Vec<&Reservation> = hits
            .into_iter()
            .map(|i| &self.list[i])
            .filter(|r| r.iaid.is_none_or(|x| x == iaid))
            .filter(|r| r.duid.as_ref().is_none_or(|d| d.as_bytes() == duid))
            .filter(|r| {
                same(&r.remote_id, relay.and_then(|x| x.remote_id))
                    && same(&r.subscriber_id, relay.and_then(|x| x.subscriber_id))
                    && same(&r.interface_id, relay.and_then(|x| x.interface_id))
                    && same(&r.client_linklayer, relay.and_then(|x| x.client_linklayer))
            })
            .collect();
        // Stable: keeps configuration order within each group.
        out.sort_by_key(|r| r.iaid.is_none());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Duid;

    #[test]
    fn matches_by_duid_iaid_and_relay_options() {
        let d1 = Duid::from_mac([2, 0, 0, 0, 0, 1]);
        let any =
            Reservation { duid: Some(d1.clone()), address: Some("2001:db8::1".parse().unwrap()), ..Default::default() };
        let ia7 = Reservation { iaid: Some(7), address: Some("2001:db8::7".parse().unwrap()), ..any.clone() };
        let by_remote = Reservation {
            remote_id: Some(vec![0, 0, 0, 9, b'x']),
            address: Some("2001:db8::9".parse().unwrap()),
            ..Default::default()
        };
        let both = Reservation { remote_id: Some(vec![1]), ..any.clone() };
        let r = LinkReservations::new(vec![any.clone(), ia7.clone(), by_remote.clone(), both]);
        assert_eq!(r.matching(d1.as_bytes(), 7, None), vec![&ia7, &any]);
        assert_eq!(r.matching(d1.as_bytes(), 1, None), vec![&any]);
        assert!(r.matching(b"\x00\x03\x00\x01zzzzzz", 7, None).is_empty());
        let relay = LinkSelector { remote_id: Some(&[0, 0, 0, 9, b'x']), ..Default::default() };
        assert_eq!(r.matching(b"\x00\x03\x00\x01zzzzzz", 1, Some(&relay)), vec![&by_remote]);
        // DUID matches but the reservation also wants Remote-ID [1].
        let wrong = LinkSelector { remote_id: Some(&[2]), ..Default::default() };
        assert_eq!(r.matching(d1.as_bytes(), 1, Some(&wrong)), vec![&any]);
    }
}
