//! Requests, Renews and Rebinds already on their way to a Reply (and Solicits and
//! Information-Requests still queued). Under a storm a Request can
//! wait longer than REQ_TIMEOUT (1 s) in the receive queue and for its group commit, and its
//! client retransmits it; decided again, the copy costs a second commit of the same binding
//! exactly when commits are scarce. RFC 9915 section 15 keeps the transaction ID across
//! retransmissions, so a copy whose (client DUID, transaction ID, message type) is already
//! waiting is dropped (`duplicate_in_flight_*`): the Reply on its way answers it.
//!
//! A [`Claim`] is taken when the datagram joins the receive queue and goes with it: shed
//! from the queue, handled without a commit, or its commit resolved and its Reply sent (or
//! not), it is dropped and the key is free again, so a retransmission after that (the Reply
//! was lost) is served as before. The set holds at most one key per queued message or commit
//! on its way, both bounded, and `PENDING_LIMIT` on top: past it nothing more is tracked.
//!
//! The first copy to arrive holds the key: one that is then refused (by admission or the
//! engine) frees it when its handling ends, and the client's next retransmission is served.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use dhcpv6_common::wire::{msg, opt};

use crate::stats::Counter;

/// Keys at most: the receive queues' and the commit pipeline's bounds (65,536 per worker and
/// 16,384) for up to three workers; each key is the DUID and 4 bytes, well under 200 bytes
/// with the set's own, so some 40 MB when full.
pub(super) const PENDING_LIMIT: usize = 4 * 65_536;

/// Relay-Forward levels looked through, as the relay unwrapping allows (RFC 9915 section 7.6
/// HOP_COUNT_LIMIT).
const MAX_RELAY_LEVELS: usize = 32;

/// Relay-Forward header: msg-type, hop-count, link-address, peer-address.
const RELAY_HEADER: usize = 34;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    msg_type: u8,
    xid: [u8; 3],
    duid: Box<[u8]>,
}

/// The keys of the messages on their way, shared by every worker (a client's copies may
/// reach different ones).
#[derive(Debug)]
pub(super) struct Pending {
    keys: Mutex<HashSet<Key>>,
    limit: usize,
}

/// One message's hold on its key; dropping it frees the key.
#[derive(Debug)]
pub(super) struct Claim {
    pending: Arc<Pending>,
    key: Key,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.key);
    }
}

/// What becomes of an arriving datagram.
#[derive(Debug)]
pub(super) enum Admit {
    /// The first of its transaction: queued with its claim.
    Claimed(Claim),
    /// A copy of one on its way: dropped, counted under this counter.
    Duplicate(Counter),
    /// Not a message tracked here (or the set is full): queued as is.
    Untracked,
}

impl Pending {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { keys: Mutex::default(), limit })
    }

    /// Claims `pkt`'s transaction, or tells that it is already on its way.
    pub fn admit(self: &Arc<Self>, pkt: &[u8]) -> Admit {
        let Some(key) = key_of(pkt) else { return Admit::Untracked };
        let mut keys = self.lock();
        if keys.contains(&key) {
            return Admit::Duplicate(duplicate_counter(key.msg_type));
        }
        if keys.len() >= self.limit {
            return Admit::Untracked;
        }
        keys.insert(key.clone());
        drop(keys);
        Admit::Claimed(Claim { pending: Arc::clone(self), key })
    }

    /// Keys held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn duplicate_counter(msg_type: u8) -> Counter {
    match msg_type {
        msg::RENEW => Counter::DuplicateInFlightRenew,
        msg::REBIND => Counter::DuplicateInFlightRebind,
        msg::SOLICIT => Counter::DuplicateInFlightSolicit,
        msg::INFORMATION_REQUEST => Counter::DuplicateInFlightInformationRequest,
        _ => Counter::DuplicateInFlightRequest,
    }
}

/// The (type, transaction ID, client DUID) of a Request, Renew, Rebind, Solicit or
/// Information-Request, direct or inside Relay-Forwards; `None` for anything else, for an
/// Information-Request without a Client Identifier, or for anything that does not parse that
/// far (the handling then decides about it as before). Solicits and Information-Requests
/// commit nothing (but for Rapid Commit), so their keys go as soon as they are answered; they
/// are tracked because under a storm they wait in the queue behind Requests for longer than
/// their clients' first RT, and each copy would be answered again.
fn key_of(mut pkt: &[u8]) -> Option<Key> {
    for _ in 0..=MAX_RELAY_LEVELS {
        match *pkt.first()? {
            msg::RELAY_FORW => pkt = find(pkt.get(RELAY_HEADER..)?, opt::RELAY_MSG)?,
            t @ (msg::REQUEST | msg::RENEW | msg::REBIND | msg::SOLICIT | msg::INFORMATION_REQUEST) => {
                let xid = pkt.get(1..4)?.try_into().ok()?;
                let duid = find(pkt.get(4..)?, opt::CLIENTID)?;
                if duid.is_empty() {
                    return None;
                }
                return Some(Key { msg_type: t, xid, duid: duid.into() });
            }
            _ => return None,
        }
    }
    None
}

/// The data of the first option `code` in `opts`.
fn find(mut opts: &[u8], code: u16) -> Option<&[u8]> {
    while let [c0, c1, l0, l1, rest @ ..] = opts {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let data = rest.get(..len)?;
        if u16::from_be_bytes([*c0, *c1]) == code {
            return Some(data);
        }
        opts = &rest[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(code: u16, data: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn message(t: u8, xid: [u8; 3], duid: &[u8]) -> Vec<u8> {
        let mut m = vec![t, xid[0], xid[1], xid[2]];
        m.extend(option(opt::ELAPSED_TIME, &[0, 0]));
        m.extend(option(opt::CLIENTID, duid));
        m.extend(option(opt::IA_NA, &[0; 12]));
        m
    }

    fn relayed(inner: &[u8]) -> Vec<u8> {
        let mut m = vec![msg::RELAY_FORW, 0];
        m.extend_from_slice(&[0x20; 32]);
        m.extend(option(opt::INTERFACE_ID, b"storm-relay"));
        m.extend(option(opt::RELAY_MSG, inner));
        m
    }

    const DUID: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0, 7];

    #[test]
    fn a_copy_of_a_request_on_its_way_is_a_duplicate_until_the_first_is_done() {
        let p = Pending::new(16);
        let req = message(msg::REQUEST, [1, 2, 3], DUID);
        let Admit::Claimed(first) = p.admit(&req) else { panic!("the first is claimed") };
        assert!(matches!(p.admit(&req), Admit::Duplicate(Counter::DuplicateInFlightRequest)));
        // The same client's copy through a relay is the same transaction.
        assert!(matches!(p.admit(&relayed(&relayed(&req))), Admit::Duplicate(_)));
        assert_eq!(p.len(), 1);
        drop(first);
        assert_eq!(p.len(), 0, "freed when the first is done");
        assert!(matches!(p.admit(&req), Admit::Claimed(_)), "a retransmission after the Reply is served");
    }

    #[test]
    fn type_transaction_and_duid_each_make_another_key() {
        let p = Pending::new(16);
        let _held: Vec<Claim> = [
            message(msg::REQUEST, [1, 2, 3], DUID),
            message(msg::RENEW, [1, 2, 3], DUID),
            message(msg::REBIND, [1, 2, 3], DUID),
            message(msg::REQUEST, [1, 2, 4], DUID),
            message(msg::REQUEST, [1, 2, 3], &[0, 3, 0, 1, 2, 0, 0, 0, 0, 8]),
        ]
        .iter()
        .map(|m| match p.admit(m) {
            Admit::Claimed(c) => c,
            other => panic!("{other:?}"),
        })
        .collect();
        assert_eq!(p.len(), 5);
        assert!(matches!(
            p.admit(&message(msg::RENEW, [1, 2, 3], DUID)),
            Admit::Duplicate(Counter::DuplicateInFlightRenew)
        ));
        assert!(matches!(
            p.admit(&message(msg::REBIND, [1, 2, 3], DUID)),
            Admit::Duplicate(Counter::DuplicateInFlightRebind)
        ));
    }

    #[test]
    fn solicits_and_information_requests_waiting_in_the_queue_are_tracked_too() {
        let p = Pending::new(16);
        let sol = relayed(&message(msg::SOLICIT, [1, 2, 3], DUID));
        let ir = message(msg::INFORMATION_REQUEST, [1, 2, 3], DUID);
        let held = (p.admit(&sol), p.admit(&ir));
        assert!(matches!(held, (Admit::Claimed(_), Admit::Claimed(_))));
        assert!(matches!(p.admit(&sol), Admit::Duplicate(Counter::DuplicateInFlightSolicit)));
        assert!(matches!(p.admit(&ir), Admit::Duplicate(Counter::DuplicateInFlightInformationRequest)));
        drop(held);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn other_messages_and_what_does_not_parse_are_not_tracked() {
        let p = Pending::new(16);
        for m in [
            message(msg::RELEASE, [1, 2, 3], DUID),
            message(msg::DECLINE, [1, 2, 3], DUID),
            message(msg::CONFIRM, [1, 2, 3], DUID),
            message(msg::INFORMATION_REQUEST, [1, 2, 3], &[]),
            vec![msg::REQUEST, 1, 2],
            vec![msg::REQUEST, 1, 2, 3, 0, 1, 0, 9, 0],
            message(msg::REQUEST, [1, 2, 3], &[]),
            relayed(&message(msg::RELEASE, [1, 2, 3], DUID)),
            vec![msg::RELAY_FORW; 20],
            Vec::new(),
        ] {
            assert!(matches!(p.admit(&m), Admit::Untracked), "{m:?}");
            assert!(matches!(p.admit(&m), Admit::Untracked), "twice: {m:?}");
        }
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn relays_nested_past_the_hop_limit_are_not_looked_into() {
        let mut m = message(msg::REQUEST, [1, 2, 3], DUID);
        for _ in 0..=MAX_RELAY_LEVELS {
            m = relayed(&m);
        }
        assert!(key_of(&m).is_none());
    }

    #[test]
    fn memory_is_bounded_past_the_limit_nothing_more_is_tracked() {
        let p = Pending::new(2);
        let held: Vec<Admit> = (0..3u8).map(|i| p.admit(&message(msg::REQUEST, [0, 0, i], DUID))).collect();
        assert!(matches!(held[..], [Admit::Claimed(_), Admit::Claimed(_), Admit::Untracked]));
        assert_eq!(p.len(), 2);
        assert!(matches!(p.admit(&message(msg::REQUEST, [0, 0, 2], DUID)), Admit::Untracked), "handled as before");
    }
}
