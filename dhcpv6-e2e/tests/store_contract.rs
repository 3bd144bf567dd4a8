//! The PostgreSQL lease store against a real PostgreSQL (a throwaway cluster from
//! `testbed::postgres`, which needs root to run the server as user `postgres`): the
//! store contract that SQLite and the memory store also pass, the schema as psql
//! sees it, `dhcpv6d leases` on a URL, and the database stopped and started under a
//! stream of commits.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dhcpv6_proto::leases::contract::{self, address, prefix};
use dhcpv6_proto::leases::{self, LeaseOp, LeaseStore, Location, PgOptions, PgStore, StoreError};
use testbed::postgres::PgCluster;

struct Pg {
    url: String,
}

impl contract::Backend for Pg {
    fn open(&self) -> Arc<dyn LeaseStore> {
        Arc::new(PgStore::open(&self.url).unwrap_or_else(|e| panic!("open {}: {e}", self.url)))
    }
}

#[test]
fn postgres_store_meets_the_contract() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    contract::run_all(|name| Box::new(Pg { url: cluster.create_database(name).expect("createdb") }));
}

#[test]
fn the_schema_is_versioned_typed_and_readable_with_psql() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("schema").unwrap();
    // Through the daemon's opener, with the URL form of the docs (a Unix socket folder).
    assert!(url.starts_with("postgresql:///schema?host=/"), "{url}");
    let store = leases::open(&url).unwrap();
    assert!(matches!(store.location(), Location::Database(_)));
    store.commit(vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(prefix(1))]).wait_blocking().unwrap();

    let psql = |sql: &str| cluster.psql("schema", sql).unwrap().trim().to_string();
    assert_eq!(psql("SELECT max(version) FROM schema_version"), PgStore::SCHEMA_VERSION.to_string());
    assert_eq!(
        psql(
            "SELECT string_agg(column_name || ':' || udt_name, ',' ORDER BY column_name) FROM information_schema.columns
             WHERE table_name = 'leases' AND column_name IN ('address', 'prefix', 'duid', 'next_hop')"
        ),
        "address:inet,duid:bytea,next_hop:inet,prefix:cidr"
    );
    assert_eq!(
        psql(
            "SELECT kind, address, prefix_len, prefix, encode(duid, 'hex'), iaid, iface, state, next_hop, next_hop_dev
             FROM leases ORDER BY kind"
        ),
        "na|2001:db8::1|128|2001:db8::1/128|0001000100000001|1|eth1|bound||\n\
         pd|2001:db8:8000:100::|56|2001:db8:8000:100::/56|0001000100000001|1|relay:10.0.0.1/3|bound|2001:db8:ffff::1|eth1"
    );
    assert_eq!(
        psql("SELECT binding, valid_until FROM leases_readable WHERE kind = 'pd'"),
        "2001:db8:8000:100::/56|2033-05-18 03:33:20+00"
    );
    // The lease identity is the key: a second row for the same binding is refused,
    // which is what a claim by another daemon will rely on.
    let dup = cluster.psql(
        "schema",
        "INSERT INTO leases (kind, address, prefix_len, duid, iaid, iface, valid_until, preferred_until, state)
         VALUES ('na', '2001:db8::1', 128, '\\x01', 9, 'eth9', 1, 1, 'bound')",
    );
    assert!(format!("{:#}", dup.unwrap_err()).contains("duplicate key"));

    // A second daemon on the same database is fine (nothing to lock), and opening
    // again migrates nothing.
    let second = PgStore::open(&url).unwrap();
    assert_eq!(second.load_all().unwrap().len(), 2);
    assert_eq!(psql("SELECT count(*) FROM schema_version"), PgStore::SCHEMA_VERSION.to_string());
    drop((store, second));

    psql("INSERT INTO schema_version (version, description) VALUES (99, 'from the future')");
    let err = PgStore::open(&url).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedSchema { found: 99, .. }), "{err}");
}

/// A database of schema v2 (before leasequery) is migrated on open: its leases load with no
/// relay record, relayed ones are stored and found by the leasequery filters.
#[test]
fn a_schema_v2_database_is_migrated() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("v2").unwrap();
    let psql = |sql: &str| cluster.psql("v2", sql).unwrap().trim().to_string();
    psql(
        "CREATE TABLE schema_version (version bigint PRIMARY KEY, description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    );
    for (version, (description, sql)) in (1..).zip(PgStore::schema_until(2)) {
        psql(sql);
        psql(&format!(
            "INSERT INTO schema_version (version, description) VALUES ({version}, '{}')",
            description.replace('\'', "''")
        ));
    }
    psql(
        "INSERT INTO leases (kind, address, prefix_len, duid, iaid, iface, valid_until, preferred_until, state)
         VALUES ('na', '2001:db8::7', 128, '\\x000300010200000000aa', 5, 'eth1', 2000000000, 1999999000, 'bound')",
    );
    let store = PgStore::open(&url).unwrap();
    let old = store.load_all().unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!((old[0].iaid, old[0].last_transaction, old[0].relay.as_ref()), (5, 0, None));
    // Every later version applied (3 is leasequery's; others may follow it).
    assert_eq!(psql("SELECT max(version) FROM schema_version"), PgStore::SCHEMA_VERSION.to_string());
    assert!(PgStore::SCHEMA_VERSION >= 3);
    let relayed = prefix(3);
    store.commit(vec![LeaseOp::Upsert(relayed.clone())]).wait_blocking().unwrap();
    let rec = relayed.relay.as_deref().unwrap();
    for filter in [
        leases::LeaseFilter::RelayId(rec.relay_id.clone().unwrap()),
        leases::LeaseFilter::RemoteId(rec.remote_id.clone().unwrap()),
        leases::LeaseFilter::LinkAddress(rec.link_address),
        leases::LeaseFilter::Address(std::net::Ipv6Addr::from(u128::from(relayed.addr) | 1)),
    ] {
        assert_eq!(store.query(&filter).unwrap(), vec![relayed.clone()], "{filter:?}");
    }
    assert_eq!(store.query(&leases::LeaseFilter::Address("2001:db8::7".parse().unwrap())).unwrap(), old);
}

#[test]
fn unreachable_and_unsupported_urls_fail_clearly() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    // No such database: the server's own words come through.
    let err = PgStore::open(&cluster.url("nosuchdb")).unwrap_err();
    assert!(err.to_string().contains("nosuchdb"), "{err}");
    // No server at that socket.
    let err = PgStore::open("postgresql:///x?host=/nonexistent&port=1&user=postgres").unwrap_err();
    assert!(matches!(err, StoreError::Postgres { action: "connect", .. }), "{err}");
    let err = PgStore::open("postgresql:///x?host=/tmp&sslmode=require").unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    // A password never shows in an error.
    let err = PgStore::open("postgresql://u:s3cret@/x?host=/nonexistent&port=1").unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn dhcpv6d_leases_lists_a_postgres_store() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("listing").unwrap();
    {
        let store = PgStore::open(&url).unwrap();
        store.commit(vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(prefix(1))]).wait_blocking().unwrap();
    }
    let bin = std::env::var_os("DHCPV6D_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/dhcpv6d"));
    let out = std::process::Command::new(&bin).args(["leases", "--lease-db", &url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} leases: {stderr}", bin.display());
    assert!(stdout.contains("2001:db8::1 "), "{stdout}");
    assert!(stdout.contains("2001:db8:8000:100::/56"), "{stdout}");
    assert!(stdout.contains("via 2001:db8:ffff::1 dev eth1"), "{stdout}");
    assert!(stderr.contains("2 leases"), "{stderr}");

    // A URL of another kind is refused, and creates no folder named after it.
    let dir = std::env::temp_dir().join(format!("dhcpv6-leases-url-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(&bin)
        .current_dir(&dir)
        .args(["leases", "--lease-db", "mysql://db/dhcpv6"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("mysql:// is not supported") && stderr.contains("postgresql://"), "{stderr}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing created");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_statement_rolls_back_its_batch_and_keeps_the_session() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("refused").unwrap();
    let store = PgStore::open(&url).unwrap();
    // An operator's rule the daemon does not know about.
    cluster.psql("refused", "ALTER TABLE leases ADD CONSTRAINT not_eth9 CHECK (iface <> 'eth9')").unwrap();
    let bad = leases::Lease { iface: "eth9".into(), ..address(2) };
    let result = store.commit(vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(bad)]).wait_blocking();
    match &result {
        Err(StoreError::Postgres { action: "commit", message, .. }) => {
            assert!(message.contains("not_eth9"), "{message}")
        }
        other => panic!("expected a rolled-back commit, got {other:?}"),
    }
    assert!(store.load_all().unwrap().is_empty(), "nothing of the failed transaction is stored");
    assert!(store.is_up(), "a refused statement is not a lost session");
    assert_eq!(store.refused(), 0);
    store.commit(vec![LeaseOp::Upsert(address(3))]).wait_blocking().expect("the session still commits");
    assert_eq!(store.load_all().unwrap(), vec![address(3)]);
}

#[test]
fn a_terminated_session_is_replaced_and_a_hung_commit_times_out() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("hung").unwrap();
    let options = PgOptions {
        commit_timeout: Duration::from_secs(1),
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..PgOptions::default()
    };
    let store = PgStore::open_with(&url, options).unwrap();
    store.commit(vec![LeaseOp::Upsert(address(1))]).wait_blocking().unwrap();
    let wait_up = |what: &str| {
        let since = Instant::now();
        while !store.is_up() {
            assert!(since.elapsed() < Duration::from_secs(20), "{what}: the store did not reconnect");
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // A DBA ends our sessions (pg_terminate_backend): the store notices, reconnects
    // to the still running server, and goes on.
    let ended = cluster
        .psql(
            "hung",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'dhcpv6d'",
        )
        .unwrap();
    assert_ne!(ended.trim(), "0", "the store's sessions were found");
    std::thread::sleep(Duration::from_millis(100));
    wait_up("after pg_terminate_backend");
    store.commit(vec![LeaseOp::Upsert(address(2))]).wait_blocking().expect("commits after a terminated session");

    // A lock held elsewhere stalls the next transaction past commit_timeout: its
    // outcome is unknown (the server may still commit it once the lock goes).
    let locker = {
        let cluster_url = cluster.socket_dir().to_path_buf();
        let port = cluster.port();
        std::thread::spawn(move || {
            std::process::Command::new(testbed::postgres::bin_dir().unwrap().join("psql"))
                .arg("-h")
                .arg(&cluster_url)
                .args(["-p", &port.to_string(), "-U", "postgres", "-d", "hung", "-X", "-q", "-c"])
                .arg("BEGIN; LOCK TABLE leases IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;")
                .output()
                .unwrap()
        })
    };
    let since = Instant::now();
    while cluster
        .psql("hung", "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND granted AND relation = 'leases'::regclass")
        .unwrap()
        .trim()
        == "0"
    {
        assert!(since.elapsed() < Duration::from_secs(20), "the lock was never taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let at = Instant::now();
    let stalled = store.commit(vec![LeaseOp::Upsert(address(3))]).wait_blocking();
    assert!(matches!(stalled, Err(StoreError::OutcomeUnknown { .. })), "{stalled:?}");
    assert!(at.elapsed() < Duration::from_secs(3), "gave up after {:?}", at.elapsed());
    assert!(locker.join().unwrap().status.success());
    wait_up("after the lock");
    store.commit(vec![LeaseOp::Upsert(address(4))]).wait_blocking().expect("commits once the lock is gone");
    let stored = store.load_all().unwrap();
    for n in [1, 2, 4] {
        assert!(stored.contains(&address(n)), "lease {n} whose ticket said Ok is stored");
    }
}

/// Log lines, captured for the assertions on what the store logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Lines that contain every one of `words`.
    fn count(&self, words: &[&str]) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|l| words.iter().all(|w| l.contains(w))).count()
    }
}

/// What a producer saw for one commit.
struct Outcome {
    n: u32,
    result: Result<(), StoreError>,
    took: Duration,
}

/// The database killed (`pg_ctl -m immediate stop`) and started again while four
/// producers commit as fast as they can: nothing crashes, commits during the outage
/// fail (fast), commits resume afterwards, and every commit whose ticket said Ok is
/// in the database.
#[test]
fn the_database_stopped_and_started_under_load() {
    const PRODUCERS: u32 = 4;
    const IN_FLIGHT: u32 = 16;
    const MAX_COMMITS: u32 = 400_000;
    let deadline = Instant::now() + Duration::from_secs(240);
    // The store's thread logs, so the subscriber must be global; only this test sets one.
    let logs = Captured::default();
    tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).try_init().expect("the only subscriber");

    let mut cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("outage").unwrap();
    let options = PgOptions {
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        commit_timeout: Duration::from_secs(5),
        ..PgOptions::default()
    };
    let store = Arc::new(PgStore::open_with(&url, options).unwrap());

    let next = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (store, next, stop, outcomes) =
                (Arc::clone(&store), Arc::clone(&next), Arc::clone(&stop), Arc::clone(&outcomes));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let tickets: Vec<_> = (0..IN_FLIGHT)
                        .map_while(|_| {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            (n < MAX_COMMITS)
                                .then(|| (n, Instant::now(), store.commit(vec![LeaseOp::Upsert(address(n))])))
                        })
                        .collect();
                    if tickets.is_empty() {
                        break;
                    }
                    let batch: Vec<Outcome> = tickets
                        .into_iter()
                        .map(|(n, at, ticket)| {
                            let result = ticket.wait_blocking();
                            Outcome { n, result, took: at.elapsed() }
                        })
                        .collect();
                    let failed = batch.iter().any(|o| o.result.is_err());
                    outcomes.lock().unwrap().extend(batch);
                    if failed {
                        // A client would retransmit after a while, not at once.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
        })
        .collect();

    let oks = |outcomes: &Mutex<Vec<Outcome>>| outcomes.lock().unwrap().iter().filter(|o| o.result.is_ok()).count();
    let wait_for_oks = |at_least: usize, what: &str| {
        while oks(&outcomes) < at_least {
            assert!(Instant::now() < deadline, "{what}: only {} commits Ok", oks(&outcomes));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for_oks(1_000, "before the outage");

    cluster.stop().expect("stop the database");
    let stopped_after = oks(&outcomes);
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(!store.is_up(), "the store noticed the database is gone");
    cluster.start_again().expect("start the database again");
    let restarted = Instant::now();
    wait_for_oks(stopped_after + 1_000, "after the restart");
    let resumed_in = restarted.elapsed();

    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().expect("a producer panicked");
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());

    // Every error is one the daemon can act on: refused at once, or outcome unknown.
    let mut unavailable = 0;
    let mut unknown = 0;
    for o in &outcomes {
        match &o.result {
            Ok(()) => {}
            Err(StoreError::Unavailable { .. }) => {
                unavailable += 1;
                // At once, or after the in-flight batch failed: never a timeout's wait.
                assert!(o.took < Duration::from_secs(2), "a refusal took {:?}", o.took);
            }
            Err(StoreError::OutcomeUnknown { .. }) => unknown += 1,
            Err(e) => panic!("commit {}: unexpected error {e}", o.n),
        }
    }
    assert!(unavailable > 0, "commits during the outage were refused");
    assert!(store.refused() >= unavailable, "the store counts its refusals");
    assert!(store.is_up());
    eprintln!(
        "{} commits: {} Ok, {unavailable} refused while down, {unknown} of unknown outcome; grants resumed {resumed_in:?} after the restart",
        outcomes.len(),
        outcomes.iter().filter(|o| o.result.is_ok()).count()
    );

    // The promise: every Ok is stored, seen by this store and by a fresh one.
    let ok: BTreeSet<_> = outcomes.iter().filter(|o| o.result.is_ok()).map(|o| address(o.n).addr).collect();
    for reader in [Arc::clone(&store) as Arc<dyn LeaseStore>, Arc::new(PgStore::open(&url).unwrap())] {
        let stored: BTreeSet<_> = reader.load_all().unwrap().into_iter().map(|l| l.addr).collect();
        let lost: Vec<_> = ok.difference(&stored).take(10).collect();
        assert!(
            lost.is_empty(),
            "{} commits resolved Ok but are not stored, e.g. {lost:?}",
            ok.difference(&stored).count()
        );
    }

    // Logged once per outage, however many commits were refused.
    assert_eq!(logs.count(&["lease database lost", "/outage?"]), 1, "one line for the outage");
    assert_eq!(logs.count(&["lease database back", "/outage?"]), 1);

    // Idle: the loss is noticed without a commit, and the first commit is refused at once.
    cluster.stop().unwrap();
    let noticed = Instant::now();
    while store.is_up() {
        assert!(noticed.elapsed() < Duration::from_secs(5), "an idle store did not notice the database go");
        std::thread::sleep(Duration::from_millis(10));
    }
    let at = Instant::now();
    let refused = store.commit(vec![LeaseOp::Upsert(prefix(1))]).wait_blocking();
    assert!(matches!(refused, Err(StoreError::Unavailable { .. })), "{refused:?}");
    assert!(at.elapsed() < Duration::from_millis(100), "refused in {:?}", at.elapsed());
    cluster.start_again().unwrap();
    let back = Instant::now();
    while !store.is_up() {
        assert!(back.elapsed() < Duration::from_secs(30), "the store did not reconnect");
        std::thread::sleep(Duration::from_millis(10));
    }
    store.commit(vec![LeaseOp::Upsert(prefix(1))]).wait_blocking().expect("grants resume");
    assert!(store.load_all().unwrap().contains(&prefix(1)));
    assert_eq!(logs.count(&["lease database lost", "/outage?"]), 2);
    assert_eq!(logs.count(&["lease database back", "/outage?"]), 2);
}

fn server(url: &str, name: &str) -> PgStore {
    PgStore::open_with(url, PgOptions { writer: Some(name.into()), ..PgOptions::default() }).unwrap()
}

/// Two daemons on one database: a claim of a binding the other holds for another client
/// fails alone (typed, with the holder) while the rest of its group commit is stored; the
/// same client's IA may be taken over (failover); a stale sweep or removal leaves the
/// other's live binding alone; and each hears of the other's changes, not its own.
#[test]
fn two_servers_share_one_database_without_giving_a_binding_twice() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("multibox").unwrap();
    let (a, b) = (server(&url, "box-a"), server(&url, "box-b"));
    let mut feed_b = b.subscribe().expect("PostgreSQL reports other servers' changes");
    let mut feed_a = a.subscribe().unwrap();
    // Let both LISTENs start (the initial read of the table sends nothing yet: it is empty).
    std::thread::sleep(Duration::from_millis(500));

    a.commit(vec![LeaseOp::Upsert(address(1)), LeaseOp::Upsert(prefix(1))]).wait_blocking().unwrap();

    // B, not knowing, gives the same address to client 2 and, in the same batch, an
    // unrelated address to client 3.
    let mut stolen = address(2);
    stolen.addr = address(1).addr;
    let taken = b.commit(vec![LeaseOp::Upsert(stolen), LeaseOp::Upsert(prefix(2))]);
    let fine = b.commit(vec![LeaseOp::Upsert(address(3))]);
    match taken.wait_blocking() {
        Err(StoreError::Conflict { key, holder: Some(holder), .. }) => {
            assert_eq!(key, address(1).key());
            assert_eq!(*holder, address(1), "the holder is reported as stored");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    fine.wait_blocking().expect("the other commit of the batch is stored");
    let stored = std::collections::HashSet::from_iter(a.load_all().unwrap());
    assert_eq!(
        stored,
        std::collections::HashSet::from([address(1), prefix(1), address(3)]),
        "nothing of the lost claim is stored"
    );

    // Failover: B extends client 1's own bindings (its Rebind), taking them over.
    let mut renewed = prefix(1);
    renewed.valid_until += 600;
    renewed.next_hop = Some(Box::new(leases::NextHop { via: "fe80::1".parse().unwrap(), dev: "eth7".into() }));
    b.commit(vec![LeaseOp::Upsert(renewed.clone())]).wait_blocking().unwrap();

    // A's sweep did not hear of that: its removal of the prefix leaves B's binding, and a
    // removal of B's live address 3 does nothing either.
    a.commit(vec![LeaseOp::remove(prefix(1).key()), LeaseOp::remove(address(3).key())]).wait_blocking().unwrap();
    let stored = std::collections::HashSet::from_iter(b.load_all().unwrap());
    assert_eq!(stored, std::collections::HashSet::from([address(1), renewed.clone(), address(3)]));
    // B may release what it wrote.
    b.commit(vec![LeaseOp::remove(address(3).key())]).wait_blocking().unwrap();

    // What each heard: the other's changes, in commit order, never its own.
    fn heard(mut next: impl FnMut() -> Option<leases::ForeignChange>, n: usize) -> Vec<leases::ForeignChange> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            match next() {
                Some(c) => got.push(c),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        got.extend(std::iter::from_fn(next));
        got
    }
    use leases::ForeignChange::{Remove, Upsert};
    let got_b = heard(|| feed_b.try_recv().ok(), 2);
    assert_eq!(got_b.len(), 2, "{got_b:?}");
    assert!(got_b.contains(&Upsert(address(1))) && got_b.contains(&Upsert(prefix(1))), "{got_b:?}");
    let got_a = heard(|| feed_a.try_recv().ok(), 3);
    assert_eq!(
        got_a,
        vec![
            Upsert(address(3)),
            Upsert(renewed),
            Remove { key: address(3).key(), valid_until: address(3).valid_until }
        ]
    );

    // The feed's session is cut (a DBA, a database restart): it comes back, reads the table
    // again (what the other server wrote meanwhile is not lost), and follows new changes.
    let cut = cluster
        .psql(
            "multibox",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%, written_by FROM leases'",
        )
        .unwrap();
    assert_eq!(cut.trim(), "2", "both feeds' sessions");
    a.commit(vec![LeaseOp::Upsert(address(4))]).wait_blocking().unwrap();
    let got_b = heard(|| feed_b.try_recv().ok(), 3);
    assert!(got_b.contains(&Upsert(address(4))), "{got_b:?}");
    assert!(got_b.contains(&Upsert(address(1))), "the table read again: {got_b:?}");
    a.commit(vec![LeaseOp::Upsert(address(5))]).wait_blocking().unwrap();
    let got_b = heard(|| feed_b.try_recv().ok(), 1);
    assert!(got_b.contains(&Upsert(address(5))), "followed after the reconnection: {got_b:?}");
}

/// The probe that ends a store outage (`LeaseStore::probe`) is a real write: on a database
/// that takes no writes (here read-only, as a standby promoted wrongly or a DBA's switch
/// would be) it fails where an empty commit passes; while the server is down it is refused
/// at once; once writes are possible again it passes.
#[test]
fn the_probe_proves_the_database_takes_writes() {
    let mut cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("probe").unwrap();
    let store = PgStore::open(&url).unwrap();
    store.probe().wait_blocking().expect("a probe on a healthy database");
    let wait_up = |store: &PgStore| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !store.is_up() {
            assert!(Instant::now() < deadline, "the store did not reconnect");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // New sessions of the database are read-only; the store's own are cut, and it reconnects.
    let cut = |cluster: &PgCluster| {
        cluster
            .psql(
                "postgres",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'probe' AND pid <> pg_backend_pid()",
            )
            .unwrap();
    };
    cluster.psql("postgres", "ALTER DATABASE probe SET default_transaction_read_only = on").unwrap();
    cut(&cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        wait_up(&store);
        match store.probe().wait_blocking() {
            // Still the old session, or refused while reconnecting: try again.
            Ok(()) | Err(StoreError::Unavailable { .. } | StoreError::OutcomeUnknown { .. }) => {
                assert!(Instant::now() < deadline, "the probe kept passing on a read-only database");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => break e,
        }
    };
    assert!(refused.to_string().contains("read-only"), "{refused}");
    assert!(refused.outage().is_some(), "a refused probe keeps the outage going: {refused}");
    store.commit(Vec::new()).wait_blocking().expect("an empty commit writes nothing, so it passes even here");
    let write = store.commit(vec![LeaseOp::Upsert(address(1))]).wait_blocking();
    assert!(write.is_err(), "a lease cannot be written either: {write:?}");

    cluster.psql("postgres", "ALTER DATABASE probe RESET default_transaction_read_only").unwrap();
    cut(&cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        wait_up(&store);
        match store.probe().wait_blocking() {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "the probe did not pass again: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    store.commit(vec![LeaseOp::Upsert(address(1))]).wait_blocking().expect("writes again");

    // The server stopped: refused at once once noticed; started again: passes.
    cluster.stop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.is_up() {
        assert!(Instant::now() < deadline, "the store did not notice the database go");
        std::thread::sleep(Duration::from_millis(10));
    }
    let at = Instant::now();
    let down = store.probe().wait_blocking();
    assert!(matches!(down, Err(StoreError::Unavailable { .. })), "{down:?}");
    assert!(at.elapsed() < Duration::from_millis(100), "refused in {:?}", at.elapsed());
    cluster.start_again().unwrap();
    wait_up(&store);
    store.probe().wait_blocking().expect("the probe passes once the database is back");
    assert!(store.load_all().unwrap().contains(&address(1)));
}

/// The load split's heartbeats: each box's row by its writer name, the boxes alive by the
/// database's clock, a silent one left out once its row is older than the stale time.
#[test]
fn heartbeats_list_the_boxes_alive() {
    let cluster = PgCluster::start().expect("PostgreSQL test cluster");
    let url = cluster.create_database("heartbeats").unwrap();
    let (a, b) = (server(&url, "box-a"), server(&url, "box-b"));
    let long = Duration::from_secs(30);
    let h = a.heartbeat(long).unwrap().expect("a shared store has heartbeats");
    assert_eq!((h.me.as_str(), h.live.clone()), ("box-a", vec!["box-a".to_string()]));
    let h = b.heartbeat(long).unwrap().unwrap();
    assert_eq!(h.live, ["box-a", "box-b"]);
    std::thread::sleep(Duration::from_millis(1_500));
    // Only b beats again: with a 1 s stale time, a is gone; with 30 s, both are alive.
    assert_eq!(b.heartbeat(Duration::from_secs(1)).unwrap().unwrap().live, ["box-b"]);
    assert_eq!(b.heartbeat(long).unwrap().unwrap().live, ["box-a", "box-b"]);
    assert_eq!(cluster.psql("heartbeats", "SELECT count(*) FROM heartbeats").unwrap().trim(), "2");
    // A store one daemon owns has none.
    let dir = std::env::temp_dir().join(format!("dhcpv6-hb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = leases::open(dir.join("leases.db")).unwrap();
    assert_eq!(sqlite.heartbeat(long).unwrap(), None);
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}
