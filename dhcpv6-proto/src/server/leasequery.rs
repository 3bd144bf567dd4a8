//! Leasequery answers (RFC 5007 over UDP, bulk leasequery RFC 5460 over TCP) from the lease
//! store's view. Two steps, because the store is asked in between (blocking I/O the daemon
//! runs off its loop): [`parse`] checks a LEASEQUERY and says which [`LeaseFilter`] to ask the
//! store, or refuses it; [`answer`] turns what the store holds into the replies.
//!
//! Choices where the RFCs leave room:
//! * A query without the requestor's Client Identifier, or naming another server's Server
//!   Identifier, is discarded (RFC 5007 section 4.3.1), counted, never answered.
//! * RFC 5460's query types (relay ID, link address, remote ID) are answered only over TCP;
//!   over UDP they get UnknownQueryType, as RFC 5007 (the UDP protocol) knows types 1 and 2 only.
//! * Only bound leases within their valid lifetime are bindings; declined addresses and
//!   expired rows not yet reclaimed are not reported.
//! * No binding: a LEASEQUERY-REPLY without client data and without a status (success).
//! * By client ID with the link-address unspecified, when the client's relayed bindings are
//!   on more than one link: OPTION_LQ_CLIENT_LINK with those links, no client data (RFC 5007
//!   section 4.3.3); the requestor asks again with a link-address.
//! * OPTION_LQ_RELAY_DATA only when the query's ORO asks for it. The store keeps the relay
//!   identities, not the client's message: the relay message is a one-level Relay-Forward
//!   rebuilt from them (link-address, peer-address, Interface-ID, Remote-ID, Subscriber-ID,
//!   client link-layer address, Relay-ID) around an empty Relay Message option.
//! * TCP: LEASEQUERY-REPLY with the first client's data, LEASEQUERY-DATA for each further
//!   client, then LEASEQUERY-DONE (also after a reply with no binding); a refused query gets
//!   the LEASEQUERY-REPLY with its status alone.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use dhcpv6_common::wire::{msg, opt, status};

use crate::leases::{Lease, LeaseFilter, LeaseKind, LeaseState, RelayRecord};
use crate::stats::Counter;
use crate::wire::leasequery::{emit_client_links, ClientData, LqQuery, LqRelayData, QueryType};
use crate::wire::relay::{RelayKind, RelayLevel};
use crate::wire::{ia::IaLease, Duid, IaAddress, IaPrefix, Message, Writer};

/// Which transport a query came over: it decides the query types served and the replies' shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A query accepted by [`parse`]: ask the store for `filter`, then call [`answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    xid: [u8; 3],
    requestor: Vec<u8>,
    kind: QueryType,
    pub filter: LeaseFilter,
    /// Restricts the answer to bindings whose relay link-address is this one; `None` for all.
    link: Option<Ipv6Addr>,
    relay_data: bool,
    transport: Transport,
}

/// Why a datagram or frame gets no client data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing is sent; count `Counter`.
    Discard(Counter),
    /// This LEASEQUERY-REPLY (with an error status) is sent, and counted as refused.
    Reply(Vec<u8>),
}

/// Checks one LEASEQUERY message; see the module docs for what is discarded or refused.
pub fn parse(pkt: &[u8], server_duid: &Duid, transport: Transport) -> Result<Query, Refusal> {
    let m = Message::parse(pkt).map_err(|_| Refusal::Discard(Counter::DropLeasequeryMalformed))?;
    if m.msg_type() != msg::LEASEQUERY {
        return Err(Refusal::Discard(Counter::DropLeasequeryMalformed));
    }
    let requestor = match m.client_id() {
        Ok(Some(id)) => id.to_vec(),
        _ => return Err(Refusal::Discard(Counter::DropLeasequeryMalformed)),
    };
    match m.server_id() {
        Ok(None) => {}
        Ok(Some(id)) if id == server_duid.as_bytes() => {}
        _ => return Err(Refusal::Discard(Counter::DropUnexpectedServerId)),
    }
    let refuse = |code: u16, text: &str| Refusal::Reply(status_reply(m.xid(), &requestor, server_duid, code, text));
    let malformed = |text: &str| refuse(status::MALFORMED_QUERY, text);
    if m.count(opt::LQ_QUERY) != 1 {
        return Err(malformed("exactly one OPTION_LQ_QUERY expected"));
    }
    let q = m.find(opt::LQ_QUERY).map(LqQuery::parse).ok_or_else(|| malformed("no OPTION_LQ_QUERY"))?;
    let q = q.map_err(|e| malformed(&e.to_string()))?;
    let Some(kind) = q.kind().filter(|k| transport == Transport::Tcp || !k.is_bulk_only()) else {
        return Err(refuse(status::UNKNOWN_QUERY_TYPE, "query type not served over this transport"));
    };
    let link = (!q.link_address.is_unspecified()).then_some(q.link_address);
    let duid_option = |code: u16| {
        q.find(code)
            .filter(|d| (dhcpv6_common::wire::DUID_MIN_LEN..=dhcpv6_common::wire::DUID_MAX_LEN).contains(&d.len()))
    };
    let (filter, link) = match kind {
        QueryType::ByAddress => {
            let ia = q.find(opt::IAADDR).map(IaAddress::parse);
            let Some(Ok(ia)) = ia else { return Err(malformed("query by address without a valid IAADDR")) };
            (LeaseFilter::Address(ia.addr), None)
        }
        QueryType::ByClientId => {
            let id = duid_option(opt::CLIENTID).ok_or_else(|| malformed("query by client ID without a Client ID"))?;
            (LeaseFilter::Client(id.to_vec()), link)
        }
        QueryType::ByRelayId => {
            let id = duid_option(opt::RELAY_ID).ok_or_else(|| malformed("query by relay ID without a Relay-ID"))?;
            (LeaseFilter::RelayId(id.to_vec()), link)
        }
        QueryType::ByRemoteId => {
            let id = q.find(opt::REMOTE_ID).filter(|d| d.len() > 4);
            let id = id.ok_or_else(|| malformed("query by remote ID without a valid Remote-ID"))?;
            (LeaseFilter::RemoteId(id.to_vec()), link)
        }
        QueryType::ByLinkAddress => {
            let a = link.ok_or_else(|| malformed("query by link address with link-address ::"))?;
            (LeaseFilter::LinkAddress(a), None)
        }
    };
    Ok(Query {
        xid: m.xid(),
        requestor,
        kind,
        filter,
        link,
        relay_data: q.requested().contains(&opt::LQ_RELAY_DATA),
        transport,
    })
}

/// A LEASEQUERY-REPLY with NotAllowed, for a TCP requestor outside the access list; `None` when
/// `pkt` is not a LEASEQUERY with a Client Identifier (it is then only dropped).
pub fn not_allowed(pkt: &[u8], server_duid: &Duid) -> Option<Vec<u8>> {
    let m = Message::parse(pkt).ok().filter(|m| m.msg_type() == msg::LEASEQUERY)?;
    let requestor = m.client_id().ok()??;
    Some(status_reply(m.xid(), requestor, server_duid, status::NOT_ALLOWED, "requestor not allowed"))
}

/// The replies to `q`, given what the store returned for `q.filter` at `now` (unix seconds):
/// one message over UDP, REPLY, DATA..., DONE over TCP.
pub fn answer(q: &Query, stored: Vec<Lease>, now: u64, server_duid: &Duid) -> Vec<Vec<u8>> {
    let bindings: Vec<Lease> = stored
        .into_iter()
        .filter(|l| l.state == LeaseState::Bound && l.valid_until > now && q.filter.matches(l))
        .filter(|l| q.link.is_none_or(|a| l.relay.as_ref().is_some_and(|r| r.link_address == a)))
        .collect();
    // One client per OPTION_CLIENT_DATA, in DUID order so that answers are stable.
    let mut clients: BTreeMap<Vec<u8>, Vec<Lease>> = BTreeMap::new();
    for l in bindings {
        clients.entry(l.duid.clone()).or_default().push(l);
    }
    if q.kind == QueryType::ByAddress {
        // The binding holding the address: an address lease before a prefix containing it.
        clients.values_mut().for_each(|ls| ls.sort_by_key(|l| l.kind != LeaseKind::Address));
        let first = clients.iter().min_by_key(|(_, ls)| ls[0].kind != LeaseKind::Address).map(|(d, _)| d.clone());
        clients.retain(|d, _| Some(d) == first.as_ref());
    }
    let mut out = Vec::new();
    let mut reply = header(msg::LEASEQUERY_REPLY, q.xid, &q.requestor, server_duid);
    let mut rest = clients.into_values();
    if let Some(first) = rest.next() {
        let links = client_links(&first);
        if q.kind == QueryType::ByClientId && q.link.is_none() && links.len() > 1 {
            emit_client_links(&mut reply, &links);
        } else {
            client_data(&first, now, q.relay_data).emit(&mut reply);
        }
    }
    out.extend(reply.finish().ok());
    if q.transport == Transport::Tcp {
        for c in rest {
            let mut w = Writer::message(msg::LEASEQUERY_DATA, q.xid);
            client_data(&c, now, q.relay_data).emit(&mut w);
            out.extend(w.finish().ok());
        }
        out.extend(header(msg::LEASEQUERY_DONE, q.xid, &q.requestor, server_duid).finish().ok());
    }
    out
}

/// The distinct relay link-addresses of one client's bindings.
fn client_links(leases: &[Lease]) -> Vec<Ipv6Addr> {
    let mut links: Vec<Ipv6Addr> = leases.iter().filter_map(|l| l.relay.as_ref().map(|r| r.link_address)).collect();
    links.sort();
    links.dedup();
    links.retain(|a| !a.is_unspecified());
    links
}

fn client_data(leases: &[Lease], now: u64, relay_data: bool) -> ClientData {
    let secs = |until: u64| u32::try_from(until.saturating_sub(now)).unwrap_or(u32::MAX);
    let last = leases.iter().map(|l| l.last_transaction).max().unwrap_or(0);
    ClientData {
        client_id: leases.first().map(|l| l.duid.clone()).unwrap_or_default(),
        addresses: leases
            .iter()
            .filter(|l| l.kind == LeaseKind::Address)
            .map(|l| IaAddress {
                addr: l.addr,
                preferred: secs(l.preferred_until),
                valid: secs(l.valid_until),
                status: None,
            })
            .collect(),
        prefixes: leases
            .iter()
            .filter(|l| l.kind == LeaseKind::Prefix)
            .map(|l| IaPrefix {
                preferred: secs(l.preferred_until),
                valid: secs(l.valid_until),
                prefix_len: l.prefix_len,
                prefix: l.addr,
                status: None,
            })
            .collect(),
        // Unknown (0) stays 0 rather than claiming the client was last heard in 1970.
        clt_time: if last == 0 { 0 } else { u32::try_from(now.saturating_sub(last)).unwrap_or(u32::MAX) },
        relay_data: if relay_data {
            leases
                .iter()
                .filter(|l| l.relay.is_some())
                .max_by_key(|l| l.last_transaction)
                .and_then(|l| l.relay.as_deref())
                .and_then(relay_data_of)
        } else {
            None
        },
    }
}

/// OPTION_LQ_RELAY_DATA rebuilt from a lease's relay record (see the module docs).
fn relay_data_of(r: &RelayRecord) -> Option<LqRelayData> {
    let level = RelayLevel {
        interface_id: r.interface_id.clone(),
        remote_id: r.remote_id.clone(),
        subscriber_id: r.subscriber_id.clone(),
        client_linklayer: r.client_linklayer.clone(),
        relay_id: r.relay_id.clone(),
        ..RelayLevel::new(0, r.link_address, r.peer_address)
    };
    let relay_message = level.emit(RelayKind::Forward, &[]).ok()?;
    Some(LqRelayData { peer_address: r.peer_address, relay_message })
}

fn header(msg_type: u8, xid: [u8; 3], requestor: &[u8], server_duid: &Duid) -> Writer {
    let mut w = Writer::message(msg_type, xid);
    w.option(opt::SERVERID, server_duid.as_bytes()).option(opt::CLIENTID, requestor);
    w
}

fn status_reply(xid: [u8; 3], requestor: &[u8], server_duid: &Duid, code: u16, text: &str) -> Vec<u8> {
    let mut w = header(msg::LEASEQUERY_REPLY, xid, requestor, server_duid);
    w.status(code, text);
    // A Server ID, a Client ID (at most 130 bytes each) and a short text always fit.
    w.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests;
