//! The [`LeaseStore`] contract, written once and run against every backend: the
//! proto crate's tests run it on [`SqliteStore`](super::SqliteStore) and
//! [`MemoryStore`](super::MemoryStore), the root tests (`dhcpv6-e2e/tests/store_contract.rs`)
//! on [`PgStore`](super::PgStore) against a real PostgreSQL.
//!
//! A backend gives stores over one storage place; each case gets a fresh, empty one.
//! The cases panic on a broken promise, like any test.

use std::net::Ipv6Addr;
use std::sync::Arc;

use super::{
    CommitTicket, Lease, LeaseFilter, LeaseKind, LeaseOp, LeaseState, LeaseStore, NextHop, RelayRecord, StoreError,
};

/// Stores over one storage place.
pub trait Backend {
    /// Opens a store on the place. Opening again once every earlier store from here
    /// was dropped must give back what they committed.
    fn open(&self) -> Arc<dyn LeaseStore>;

    /// Whether the store shares one transaction among concurrent commits (group
    /// commit). False for a store without transactions to share.
    fn groups_commits(&self) -> bool {
        true
    }
}

/// One promise of the contract.
pub type Case = fn(&dyn Backend);

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("round_trip_each_kind", round_trip_each_kind),
    ("extreme_values_round_trip", extreme_values_round_trip),
    ("upsert_replaces", upsert_replaces),
    ("remove_deletes_and_is_idempotent", remove_deletes_and_is_idempotent),
    ("ops_in_one_commit_apply_in_order", ops_in_one_commit_apply_in_order),
    ("invalid_op_fails_whole_commit_without_writing", invalid_op_fails_whole_commit_without_writing),
    ("reload_after_reopen", reload_after_reopen),
    ("drop_flushes_queued_commits", drop_flushes_queued_commits),
    ("reclaim_expired_deletes_only_expired", reclaim_expired_deletes_only_expired),
    ("resolved_ticket_is_visible_to_load_all", resolved_ticket_is_visible_to_load_all),
    ("concurrent_commits_share_transactions", concurrent_commits_share_transactions),
    ("async_waiters_share_transactions", async_waiters_share_transactions),
    ("relay_records_round_trip", relay_records_round_trip),
    ("query_finds_by_each_filter", query_finds_by_each_filter),
    ("extension_batch_is_one_transaction", extension_batch_is_one_transaction),
];

/// Runs every case, each on a fresh backend from `fresh` (given the case's name).
pub fn run_all(mut fresh: impl FnMut(&str) -> Box<dyn Backend>) {
    for (name, case) in CASES {
        eprintln!("lease store contract: {name}");
        let backend = fresh(name);
        case(&*backend);
    }
}

/// Address lease number `n` of a client derived from `n`.
pub fn address(n: u32) -> Lease {
    Lease {
        duid: vec![0, 1, 0, 1, (n >> 24) as u8, (n >> 16) as u8, (n >> 8) as u8, n as u8],
        iaid: n,
        kind: LeaseKind::Address,
        addr: Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(n)),
        prefix_len: 128,
        iface: "eth1".to_string(),
        valid_until: 2_000_000_000,
        preferred_until: 1_999_999_000,
        state: LeaseState::Bound,
        next_hop: None,
        last_transaction: 1_999_990_000,
        relay: None,
    }
}

/// The relay record of relayed lease number `n`: relay `n % 4` (its Relay-ID and the
/// link-address it fills in), subscriber line `n` (Remote-ID, enterprise 3561).
pub fn relay_record(n: u32) -> RelayRecord {
    let relay = n % 4;
    RelayRecord {
        link_address: Ipv6Addr::from(0x2001_0db8_00aa_0000_0000_0000_0000_0001u128 | (u128::from(relay) << 64)),
        peer_address: Ipv6Addr::from(0xfe80_0000_0000_0000_0000_0000_0000_0000u128 | u128::from(n)),
        source: Ipv6Addr::from(0x2001_0db8_00ff_0000_0000_0000_0000_0000u128 | u128::from(relay)),
        interface_id: Some(format!("ge-0/0/{relay}").into_bytes()),
        remote_id: Some([&3561u32.to_be_bytes()[..], format!("line-{n}").as_bytes()].concat()),
        subscriber_id: Some(format!("sub-{n}").into_bytes()),
        relay_id: Some(vec![0, 2, 0, 0, 0x0d, 0xe9, b'r', relay as u8]),
        client_linklayer: Some(vec![0, 1, 2, 0, 0, 0, (n >> 8) as u8, n as u8]),
    }
}

/// Delegated /56 number `n`, relayed, with the route to it.
pub fn prefix(n: u32) -> Lease {
    Lease {
        kind: LeaseKind::Prefix,
        addr: Ipv6Addr::from(0x2001_0db8_8000_0000_0000_0000_0000_0000u128 | (u128::from(n) << 72)),
        prefix_len: 56,
        iface: "relay:10.0.0.1/3".to_string(),
        next_hop: Some(Box::new(NextHop {
            via: Ipv6Addr::from(0x2001_0db8_ffff_0000_0000_0000_0000_0000u128 | u128::from(n)),
            dev: "eth1".to_string(),
        })),
        relay: Some(Box::new(relay_record(n))),
        ..address(n)
    }
}

fn commit(store: &dyn LeaseStore, ops: Vec<LeaseOp>) {
    store.commit(ops).wait_blocking().expect("commit");
}

fn sorted(mut leases: Vec<Lease>) -> Vec<Lease> {
    leases.sort_by_key(Lease::key);
    leases
}

fn load(store: &dyn LeaseStore) -> Vec<Lease> {
    sorted(store.load_all().expect("load_all"))
}

pub fn round_trip_each_kind(backend: &dyn Backend) {
    let store = backend.open();
    let mut declined = address(2);
    declined.state = LeaseState::Declined;
    let leases = vec![address(1), declined, prefix(1)];
    commit(&*store, leases.iter().cloned().map(LeaseOp::Upsert).collect());
    assert_eq!(load(&*store), sorted(leases));
}

/// The edges of every field's range survive the backend's column types.
pub fn extreme_values_round_trip(backend: &dyn Backend) {
    let store = backend.open();
    let widest = Lease {
        duid: (0..=129).collect(),
        iaid: u32::MAX,
        valid_until: i64::MAX as u64,
        preferred_until: 0,
        iface: "relay:2001:db8::1/4294967295 with ünïcode".into(),
        ..address(1)
    };
    let shortest = Lease { duid: vec![0xff], iaid: 0, valid_until: 0, preferred_until: 0, ..address(2) };
    let wide_prefix = Lease { addr: "8000::".parse().unwrap(), prefix_len: 1, ..prefix(3) };
    let host_route = Lease { addr: "2001:db8:ffff::1".parse().unwrap(), prefix_len: 128, next_hop: None, ..prefix(4) };
    let leases = vec![widest, shortest, wide_prefix, host_route];
    commit(&*store, leases.iter().cloned().map(LeaseOp::Upsert).collect());
    assert_eq!(load(&*store), sorted(leases));
}

pub fn upsert_replaces(backend: &dyn Backend) {
    let store = backend.open();
    commit(&*store, vec![LeaseOp::Upsert(address(1))]);
    let mut renewed = address(1);
    renewed.duid = vec![9, 9, 9];
    renewed.iaid = 77;
    renewed.valid_until += 3600;
    renewed.iface = "eth2".into();
    commit(&*store, vec![LeaseOp::Upsert(renewed.clone())]);
    assert_eq!(load(&*store), vec![renewed]);

    // A prefix gains, changes and loses its next hop.
    let mut p = prefix(1);
    p.next_hop = None;
    commit(&*store, vec![LeaseOp::Upsert(p.clone())]);
    commit(&*store, vec![LeaseOp::Upsert(prefix(1))]);
    assert_eq!(store.load_all().unwrap().into_iter().find(|l| l.kind == LeaseKind::Prefix), Some(prefix(1)));
    commit(&*store, vec![LeaseOp::Upsert(p.clone())]);
    assert_eq!(store.load_all().unwrap().into_iter().find(|l| l.kind == LeaseKind::Prefix), Some(p));
}

pub fn remove_deletes_and_is_idempotent(backend: &dyn Backend) {
    let store = backend.open();
    commit(&*store, vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(prefix(1))]);
    commit(&*store, vec![LeaseOp::remove(address(1).key())]);
    commit(&*store, vec![LeaseOp::remove(address(1).key())]);
    assert_eq!(load(&*store), vec![prefix(1)]);
    // The key is kind, address and length: a prefix of another length is another lease.
    let mut other_len = prefix(1).key();
    other_len.prefix_len = 64;
    commit(&*store, vec![LeaseOp::remove(other_len)]);
    assert_eq!(load(&*store), vec![prefix(1)]);
}

pub fn ops_in_one_commit_apply_in_order(backend: &dyn Backend) {
    let store = backend.open();
    commit(&*store, vec![LeaseOp::Upsert(address(1)), LeaseOp::remove(address(1).key()), LeaseOp::Upsert(address(2))]);
    assert_eq!(load(&*store), vec![address(2)]);
    // And across commits queued together (one transaction): the later one wins.
    let mut later = address(2);
    later.valid_until += 1;
    let tickets = [store.commit(vec![LeaseOp::Upsert(address(2))]), store.commit(vec![LeaseOp::Upsert(later.clone())])];
    tickets.into_iter().for_each(|t| t.wait_blocking().unwrap());
    assert_eq!(load(&*store), vec![later]);
}

pub fn invalid_op_fails_whole_commit_without_writing(backend: &dyn Backend) {
    let store = backend.open();
    let mut bad = address(2);
    bad.prefix_len = 64;
    let result = store.commit(vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(bad)]).wait_blocking();
    assert!(matches!(result, Err(StoreError::InvalidLease { .. })), "{result:?}");
    // A good commit after it still works.
    commit(&*store, vec![LeaseOp::Upsert(address(3))]);
    assert_eq!(load(&*store), vec![address(3)]);
}

pub fn reload_after_reopen(backend: &dyn Backend) {
    let leases: Vec<Lease> = (0..50).map(address).chain((0..50).map(prefix)).collect();
    {
        let store = backend.open();
        commit(&*store, leases.iter().cloned().map(LeaseOp::Upsert).collect());
    }
    let store = backend.open();
    assert_eq!(load(&*store), sorted(leases));
}

pub fn drop_flushes_queued_commits(backend: &dyn Backend) {
    let tickets: Vec<CommitTicket> = {
        let store = backend.open();
        (0..200).map(|n| store.commit(vec![LeaseOp::Upsert(address(n))])).collect()
    };
    for ticket in tickets {
        ticket.wait_blocking().unwrap();
    }
    let store = backend.open();
    assert_eq!(store.load_all().unwrap().len(), 200);
}

pub fn reclaim_expired_deletes_only_expired(backend: &dyn Backend) {
    let store = backend.open();
    let now = 1_000_000;
    let mut expired = address(1);
    expired.valid_until = now;
    expired.preferred_until = now - 10;
    let mut declined = prefix(2);
    declined.state = LeaseState::Declined;
    declined.valid_until = now - 1;
    declined.preferred_until = 0;
    let mut alive = address(3);
    alive.valid_until = now + 1;
    alive.preferred_until = now;
    commit(&*store, [&expired, &declined, &alive].into_iter().cloned().map(LeaseOp::Upsert).collect());

    let reclaimed = store.reclaim_expired(now).unwrap();
    assert_eq!(sorted(reclaimed), sorted(vec![expired, declined]));
    assert_eq!(load(&*store), vec![alive]);
    assert!(store.reclaim_expired(now).unwrap().is_empty());
}

/// Once a ticket resolves Ok the lease is committed, not merely queued: the
/// store's reads (another connection, where the backend has connections) see it.
pub fn resolved_ticket_is_visible_to_load_all(backend: &dyn Backend) {
    let store = backend.open();
    for n in 0..20 {
        commit(&*store, vec![LeaseOp::Upsert(address(n))]);
        let loaded = store.load_all().unwrap();
        assert!(loaded.contains(&address(n)), "lease {n} not visible after its ticket resolved");
        assert_eq!(loaded.len(), n as usize + 1);
    }
}

pub fn concurrent_commits_share_transactions(backend: &dyn Backend) {
    const THREADS: u32 = 8;
    const PER_THREAD: u32 = 250;
    let store = backend.open();
    let before = store.transactions();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                // Issue all commits first, like a server with many requests in
                // flight, then wait for each.
                let tickets: Vec<CommitTicket> =
                    (0..PER_THREAD).map(|i| store.commit(vec![LeaseOp::Upsert(address(t * PER_THREAD + i))])).collect();
                for ticket in tickets {
                    ticket.wait_blocking().expect("commit resolves Ok");
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    assert_eq!(store.load_all().unwrap().len(), total as usize);
    let transactions = store.transactions() - before;
    if backend.groups_commits() {
        assert!(
            transactions * 10 <= u64::from(total),
            "{transactions} transactions for {total} commits: no group commit"
        );
    } else {
        assert_eq!(transactions, u64::from(total));
    }
}

pub fn async_waiters_share_transactions(backend: &dyn Backend) {
    let store = backend.open();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    rt.block_on(async {
        let tasks: Vec<_> = (0..2_000)
            .map(|n| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.commit(vec![LeaseOp::Upsert(prefix(n))]).wait().await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("commit");
        }
    });
    if backend.groups_commits() {
        assert!(store.transactions() < 2_000, "{} transactions", store.transactions());
    }
    assert_eq!(store.load_all().unwrap().len(), 2_000);
}

/// Every field of the relay record survives, each optional one alone and absent, and an
/// upsert replaces the record (or drops it) with the lease.
pub fn relay_records_round_trip(backend: &dyn Backend) {
    let store = backend.open();
    let full = Lease { relay: Some(Box::new(relay_record(7))), ..address(1) };
    let bare = Lease {
        relay: Some(Box::new(RelayRecord {
            link_address: Ipv6Addr::UNSPECIFIED,
            peer_address: "fe80::1".parse().unwrap(),
            source: "fe80::2".parse().unwrap(),
            ..RelayRecord::default()
        })),
        ..address(2)
    };
    let empty_ids = Lease {
        relay: Some(Box::new(RelayRecord { interface_id: Some(Vec::new()), ..relay_record(3) })),
        ..address(3)
    };
    let unknown_time = Lease { last_transaction: 0, ..prefix(4) };
    let leases = vec![full.clone(), bare, empty_ids, unknown_time, prefix(5)];
    commit(store.as_ref(), leases.iter().cloned().map(LeaseOp::Upsert).collect());
    assert_eq!(load(store.as_ref()), sorted(leases.clone()));

    // Moved behind another relay, then onto the link.
    let moved = Lease { relay: Some(Box::new(relay_record(8))), last_transaction: 2_000_000, ..full.clone() };
    commit(store.as_ref(), vec![LeaseOp::Upsert(moved.clone())]);
    assert!(load(store.as_ref()).contains(&moved));
    let direct = Lease { relay: None, ..moved };
    commit(store.as_ref(), vec![LeaseOp::Upsert(direct.clone())]);
    assert!(load(store.as_ref()).contains(&direct));
    drop(store);
    let reopened = backend.open();
    assert!(load(reopened.as_ref()).contains(&direct));
}

/// `query` answers each leasequery filter with exactly the matching stored leases.
pub fn query_finds_by_each_filter(backend: &dyn Backend) {
    let store = backend.open();
    // Relayed addresses 10..18 (relays 10 % 4 ..), prefixes 0..4, direct addresses 20..22.
    let relayed: Vec<Lease> =
        (10..18).map(|n| Lease { relay: Some(Box::new(relay_record(n))), ..address(n) }).collect();
    let prefixes: Vec<Lease> = (0..4).map(prefix).collect();
    let direct: Vec<Lease> = (20..22).map(address).collect();
    let all: Vec<Lease> = relayed.iter().chain(&prefixes).chain(&direct).cloned().collect();
    commit(store.as_ref(), all.iter().cloned().map(LeaseOp::Upsert).collect());
    let query = |f: LeaseFilter| sorted(store.query(&f).expect("query"));
    let expect = |f: LeaseFilter| sorted(all.iter().filter(|l| f.matches(l)).cloned().collect());

    assert_eq!(query(LeaseFilter::Address(address(11).addr)), vec![relayed[1].clone()]);
    let inside = Ipv6Addr::from(u128::from(prefix(2).addr) | 0xabcd);
    assert_eq!(query(LeaseFilter::Address(inside)), vec![prefixes[2].clone()]);
    assert_eq!(query(LeaseFilter::Address("2001:db8:ffff::99".parse().unwrap())), vec![]);
    // address(n) and prefix(n) share a DUID.
    assert_eq!(query(LeaseFilter::Client(address(2).duid)), sorted(vec![prefixes[2].clone()]));
    assert_eq!(query(LeaseFilter::Client(address(20).duid)), vec![direct[0].clone()]);
    for relay in 0..4 {
        let rec = relay_record(relay);
        let by_id = LeaseFilter::RelayId(rec.relay_id.clone().unwrap());
        assert_eq!(query(by_id.clone()).len(), 3, "relay {relay}: two relayed addresses and one prefix");
        assert_eq!(query(by_id.clone()), expect(by_id));
        let by_link = LeaseFilter::LinkAddress(rec.link_address);
        assert_eq!(query(by_link.clone()), expect(by_link));
        assert_eq!(query(LeaseFilter::LinkAddress(rec.link_address)).len(), 3);
    }
    let line = relay_record(13).remote_id.unwrap();
    assert_eq!(query(LeaseFilter::RemoteId(line)), vec![relayed[3].clone()]);
    assert_eq!(query(LeaseFilter::RemoteId(vec![0, 0, 0, 9, 9])), vec![]);
    assert_eq!(query(LeaseFilter::RelayId(vec![9, 9, 9])), vec![]);
}

/// A pre-extension batch (`xdp_renew`): thousands of leases' later expiry in one commit are
/// one transaction, all or nothing, and what a reopened store holds. The daemon puts the
/// XDP entries only once this ticket resolved: each relies on its row's new expiry.
pub fn extension_batch_is_one_transaction(backend: &dyn Backend) {
    let leases: Vec<Lease> = (0..2000).map(address).collect();
    let extended: Vec<Lease> = leases
        .iter()
        .map(|l| Lease { valid_until: l.valid_until + 3600, preferred_until: l.preferred_until + 3600, ..l.clone() })
        .collect();
    {
        let store = backend.open();
        commit(&*store, leases.iter().cloned().map(LeaseOp::Upsert).collect());
        let before = store.transactions();
        commit(&*store, extended.iter().cloned().map(LeaseOp::Upsert).collect());
        assert_eq!(store.transactions(), before + 1, "one batch, one transaction");
        // One invalid lease in a batch fails all of it: no row moves.
        let mut bad: Vec<LeaseOp> =
            extended.iter().map(|l| LeaseOp::Upsert(Lease { valid_until: l.valid_until + 60, ..l.clone() })).collect();
        let mut broken = address(9999);
        broken.prefix_len = 64;
        bad.push(LeaseOp::Upsert(broken));
        assert!(store.commit(bad).wait_blocking().is_err());
        assert_eq!(load(&*store), sorted(extended.clone()));
    }
    let store = backend.open();
    assert_eq!(load(&*store), sorted(extended));
}
