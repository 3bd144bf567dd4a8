//! Lease events: what happened to one lease, in the words operators use (grant, renew, rebind,
//! release, decline, expire, reclaim), with who asked for it. The daemon logs them and feeds
//! them to `--lease-script` once the change is durable; they are derived here, in one place,
//! from what the engine reports it changed: a message's `Undo` (`Undo::into_events`), an
//! expiry sweep (`Expired::events`), an operator's release (`LeaseEvent::operator_release`).
//!
//! The kinds:
//! * `grant`: a binding that did not exist (Request, Rapid Commit Solicit, a Renew or Rebind
//!   bound anew under `create_on_renew`);
//! * `renew`, `rebind`: an existing binding extended by a Renew, a Rebind (a repeated Request
//!   counts as a renew);
//! * `release`: the client released it (Release), or an operator did (`ctl release`,
//!   origin `operator`);
//! * `decline`: the client declined it (Decline): held back from allocation, or freed when
//!   the client or link holds as many declined addresses as allowed;
//! * `expire`: its valid lifetime ran out (the expiry sweep);
//! * `pre_extend`: the server stored a later expiry ahead of Renews the XDP program is to
//!   answer (`xdp_renew`): Renews answered in the kernel have no event of their own, so this
//!   one, once per lease and window, is what the log and the script see of them; its
//!   lifetimes are what the store now covers, not what a client was told;
//! * `reclaim`: the server took it back without the client's word: a declined address whose
//!   hold is over (the sweep), or a binding a Request, Renew or Rebind of its client found no
//!   longer valid for the link (returned with zero lifetimes, e.g. a new reservation).

use std::net::Ipv6Addr;

use dhcpv6_common::wire::msg;

use super::context::{Expired, Undo, UndoEntry};
use crate::leases::{Lease, LeaseState};
use crate::server::relay::LinkSelector;

/// What happened to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Grant,
    Renew,
    Rebind,
    Release,
    Decline,
    Expire,
    Reclaim,
    PreExtend,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Grant,
        EventKind::Renew,
        EventKind::Rebind,
        EventKind::Release,
        EventKind::Decline,
        EventKind::Expire,
        EventKind::Reclaim,
        EventKind::PreExtend,
    ];

    /// The name in the log line and in the script's `EVENT`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Grant => "grant",
            EventKind::Renew => "renew",
            EventKind::Rebind => "rebind",
            EventKind::Release => "release",
            EventKind::Decline => "decline",
            EventKind::Expire => "expire",
            EventKind::Reclaim => "reclaim",
            EventKind::PreExtend => "pre_extend",
        }
    }

    /// Whether the lease is the client's after the event (its lifetimes are then reported).
    pub const fn holds(self) -> bool {
        matches!(self, EventKind::Grant | EventKind::Renew | EventKind::Rebind | EventKind::PreExtend)
    }
}

/// Who made the event happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A client message.
    Client,
    /// The server on its own (the expiry sweep).
    Server,
    /// An operator (`dhcpv6d ctl release`).
    Operator,
}

impl Origin {
    pub const fn as_str(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Server => "server",
            Origin::Operator => "operator",
        }
    }
}

/// What the relays said about the client of a relayed message (`LinkSelector`), owned: an
/// event outlives the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayIds {
    /// The innermost relay's link-address, when one set it.
    pub link_address: Option<Ipv6Addr>,
    pub interface_id: Option<Vec<u8>>,
    /// The Remote-ID option's data (enterprise number, then the id), RFC 4649.
    pub remote_id: Option<Vec<u8>>,
    pub subscriber_id: Option<Vec<u8>>,
    /// From the Client Link-Layer Address option (RFC 6939), when it is Ethernet.
    pub client_mac: Option<[u8; 6]>,
}

impl From<&LinkSelector<'_>> for RelayIds {
    fn from(s: &LinkSelector<'_>) -> Self {
        Self {
            link_address: s.link_address,
            interface_id: s.interface_id.map(<[u8]>::to_vec),
            remote_id: s.remote_id.map(<[u8]>::to_vec),
            subscriber_id: s.subscriber_id.map(<[u8]>::to_vec),
            client_mac: s.client_mac(),
        }
    }
}

/// Who sent the message an event comes from: its source (the client's link-local address, or
/// the relay's peer-address for a relayed client) and the relays' identities of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub peer: Option<Ipv6Addr>,
    pub relay: Option<RelayIds>,
}

impl Requester {
    pub fn new(peer: Ipv6Addr, relay: Option<&LinkSelector<'_>>) -> Self {
        Self { peer: Some(peer), relay: relay.map(RelayIds::from) }
    }

    /// For an event no message caused (expiry, reclaim, an operator's release): what the
    /// store kept of the relays of the lease's last relayed transaction, if any.
    pub fn stored(lease: &Lease) -> Self {
        let Some(r) = lease.relay.as_deref() else { return Self::default() };
        let client_mac = r.client_linklayer.as_deref().and_then(|ll| match ll {
            [0, 1, mac @ ..] => <[u8; 6]>::try_from(mac).ok(),
            _ => None,
        });
        let relay = RelayIds {
            link_address: (!r.link_address.is_unspecified()).then_some(r.link_address),
            interface_id: r.interface_id.clone(),
            remote_id: r.remote_id.clone(),
            subscriber_id: r.subscriber_id.clone(),
            client_mac,
        };
        Self { peer: (!r.peer_address.is_unspecified()).then_some(r.peer_address), relay: Some(relay) }
    }
}

/// One lease event. `lease` is the lease as it stands after the event, or as it was when the
/// event ended it (release, expire, reclaim, and a decline that freed the address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEvent {
    pub kind: EventKind,
    pub origin: Origin,
    pub lease: Lease,
    /// Unix seconds when it was decided.
    pub at: u64,
    /// For the server's and operator's events, what the store kept of the lease's relays.
    pub requester: Requester,
}

impl LeaseEvent {
    /// (preferred, valid) lifetimes left at the event, seconds: what the Reply said for a
    /// grant, renew or rebind, 0 for an event after which the client holds nothing.
    pub fn lifetimes(&self) -> (u64, u64) {
        if !self.kind.holds() {
            return (0, 0);
        }
        (self.lease.preferred_until.saturating_sub(self.at), self.lease.valid_until.saturating_sub(self.at))
    }

    /// `ctl release`: the operator ended `lease`.
    pub fn operator_release(lease: Lease, at: u64) -> Self {
        let requester = Requester::stored(&lease);
        Self { kind: EventKind::Release, origin: Origin::Operator, lease, at, requester }
    }

    /// A pre-extension batch (`Engine::pre_extend`) stored `lease`'s later expiry.
    pub fn pre_extended(lease: Lease, at: u64) -> Self {
        let requester = Requester::stored(&lease);
        Self { kind: EventKind::PreExtend, origin: Origin::Server, lease, at, requester }
    }

    /// A lease the server dropped because its time was up: a bound one expired, a declined
    /// one's hold is over (its address is reclaimed for the pool).
    pub fn ended(lease: Lease, at: u64) -> Self {
        let kind = match lease.state {
            LeaseState::Bound => EventKind::Expire,
            LeaseState::Declined => EventKind::Reclaim,
        };
        let requester = Requester::stored(&lease);
        Self { kind, origin: Origin::Server, lease, at, requester }
    }
}

impl Undo {
    /// The events of a message of type `msg_type` whose changes are now durable, one per
    /// lease it changed. Consumes the undo: once durable there is nothing to roll back.
    pub fn into_events(self, msg_type: u8, requester: &Requester, at: u64) -> Vec<LeaseEvent> {
        self.0
            .into_iter()
            .filter_map(|e| {
                let (kind, lease) = classify(e, msg_type)?;
                Some(LeaseEvent { kind, origin: Origin::Client, lease, at, requester: requester.clone() })
            })
            .collect()
    }
}

impl Expired {
    /// One `expire` or `reclaim` per lease the sweep dropped.
    pub fn events(&self, at: u64) -> Vec<LeaseEvent> {
        self.leases.iter().map(|l| LeaseEvent::ended(l.clone(), at)).collect()
    }
}

/// The kind of one change made for a client message, with the lease it is about.
fn classify(e: UndoEntry, msg_type: u8) -> Option<(EventKind, Lease)> {
    match (e.before, e.after) {
        (_, Some(a)) if a.state == LeaseState::Declined => Some((EventKind::Decline, a)),
        (None, Some(a)) => Some((EventKind::Grant, a)),
        (Some(_), Some(a)) if msg_type == msg::REBIND => Some((EventKind::Rebind, a)),
        (Some(_), Some(a)) => Some((EventKind::Renew, a)),
        (Some(b), None) => Some((
            match msg_type {
                msg::RELEASE => EventKind::Release,
                msg::DECLINE => EventKind::Decline,
                _ => EventKind::Reclaim,
            },
            b,
        )),
        (None, None) => None,
    }
}
