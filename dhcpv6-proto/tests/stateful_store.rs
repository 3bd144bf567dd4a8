//! The stateful engine against the real SQLite store, driven the way the daemon must drive
//! it: commit the ops, send only after the ticket resolves, rebuild from the store after a
//! restart.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::LazyLock;

use dhcpv6_common::wire::{msg, opt};
use dhcpv6_proto::leases::{LeaseStore, SqliteStore};
use dhcpv6_proto::server::stateful::{ClientContext, Engine, LinkPools, RouteChange};
use dhcpv6_proto::wire::writer::encode_option;
use dhcpv6_proto::wire::{Duid, Message};

const NOW: u64 = 1_800_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("dhcpv6-stateful-store-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn links() -> Vec<LinkPools> {
    vec![LinkPools {
        na: vec!["2001:db8:1::1000-2001:db8:1::1fff".parse().unwrap()],
        pd: vec!["2001:db8:100::/40:56".parse().unwrap()],
        ..LinkPools::new("eth1")
    }]
}

static SERVER_DUID: LazyLock<Duid> = LazyLock::new(|| Duid::from_mac([2, 0, 0, 0, 0, 1]));

fn ctx() -> ClientContext<'static> {
    ClientContext {
        server_duid: &SERVER_DUID,
        relay: None,
        unicast: false,
        peer: "fe80::2".parse().unwrap(),
        arrival: "eth1",
        options: &[],
        ignore_user_classes: &[],
    }
}

fn request(client: u8) -> Vec<u8> {
    let mut m = vec![msg::REQUEST, 1, 2, 3];
    m.extend(encode_option(opt::CLIENTID, &[0, 3, 0, 1, 2, 0, 0, 0, 0, client]).unwrap());
    m.extend(encode_option(opt::SERVERID, ctx().server_duid.as_bytes()).unwrap());
    m.extend(encode_option(opt::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap());
    m.extend(encode_option(opt::IA_PD, &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap());
    m
}

/// The daemon's part: commit, then send (here: return the reply) or roll back.
fn serve(engine: &mut Engine, store: &dyn LeaseStore, m: &[u8]) -> (Vec<u8>, Vec<RouteChange>) {
    let out = engine.handle(&Message::parse(m).unwrap(), &ctx(), NOW);
    match store.commit(out.ops).wait_blocking() {
        Ok(()) => (out.reply.unwrap(), out.routes),
        Err(e) => {
            engine.rollback(out.undo);
            panic!("commit failed: {e}");
        }
    }
}

/// The address and prefix granted in a Reply.
fn granted(reply: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let m = Message::parse(reply).unwrap();
    let na = m.find(opt::IA_NA).unwrap();
    let pd = m.find(opt::IA_PD).unwrap();
    let addr = <[u8; 16]>::try_from(&na[16..32]).unwrap();
    let pfx = <[u8; 16]>::try_from(&pd[12 + 4 + 9..12 + 4 + 25]).unwrap();
    (addr.into(), pfx.into())
}

#[test]
fn leases_survive_a_restart_through_the_sqlite_store() {
    let dir = TempDir::new();
    let path = dir.0.join("leases.db");
    let (first, second) = {
        let store = SqliteStore::open(&path).unwrap();
        let mut engine = Engine::new(links(), store.load_all().unwrap(), NOW).unwrap();
        let (r1, routes) = serve(&mut engine, &store, &request(1));
        assert!(matches!(&routes[..], [RouteChange::Add { len: 56, .. }]));
        let (r2, _) = serve(&mut engine, &store, &request(2));
        (granted(&r1), granted(&r2))
    };
    assert_ne!(first, second);

    // Restart: the engine is rebuilt from disk and hands the same bindings back.
    let store = SqliteStore::open(&path).unwrap();
    let stored = store.load_all().unwrap();
    assert_eq!(stored.len(), 4);
    let mut engine = Engine::new(links(), stored, NOW).unwrap();
    let (again, _) = serve(&mut engine, &store, &request(1));
    assert_eq!(granted(&again), first);
    let (other, _) = serve(&mut engine, &store, &request(3));
    let other = granted(&other);
    assert!(other.0 != first.0 && other.0 != second.0);
    assert!(other.1 != first.1 && other.1 != second.1);
    assert_eq!(engine.lease_count(), 6);
}
