//! The boot-storm rows: `dhcpv6-bench storm` (N CPEs after a power cut, half behind one
//! relay, each with a LAN host's Information-Request) against Kea (memfile, PostgreSQL)
//! and dhcpv6d (SQLite, PostgreSQL) in turn, each on a fresh server, namespaces and
//! database; then every bound CPE's address and prefix looked up in the server's own store
//! (dhcpv6d: `dhcpv6d leases`, Kea: its memfile CSV or its lease6 table), so that a lease
//! answered but not stored shows.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dhcpv6_bench_common::lines::{Line, Storm};

use super::ir::{run_gen, say, slug};
use super::peers::{self, path_str, Peer, PgDb, Stateful, RELAY_IFID, RELAY_LINK};
use super::topo::{Topo, GEN_CPU, GEN_IF};
use super::{Paths, Plan};
use crate::interrupt;

#[derive(Debug, Clone)]
pub struct StormRun {
    pub storm: Storm,
    /// Bound CPEs' leases (addresses and prefixes) the generator listed, and how many of
    /// them the server's store holds for the same DUID.
    pub leases_bound: u64,
    pub leases_stored: u64,
}

#[derive(Debug, Clone)]
pub struct StormRow {
    pub command: String,
    pub gen_command: String,
    /// Where srv0's receive work runs.
    pub napi: String,
    pub runs: Vec<StormRun>,
    /// Why the row ran fewer storms than the plan's (`last_run`).
    pub cut_short: Option<String>,
}

/// A storm that took longer than this is the row's only one: Kea with PostgreSQL takes
/// ~575 s a storm, and three of them (half an hour) say what the first did.
pub const ONE_RUN_SECS: f64 = 300.0;

/// Why no storm follows run `i` (from 0) of a row, whose result is `s`; `None`: the plan's
/// runs go on.
pub fn last_run(i: usize, s: &Storm) -> Option<String> {
    if i == 0 && s.secs > ONE_RUN_SECS {
        return Some(format!(
            "1 run: the first took {:.0} s{} (a storm longer than {ONE_RUN_SECS:.0} s runs once)",
            s.secs,
            if s.timed_out { ", its time limit" } else { "" }
        ));
    }
    // Another run would take the whole time limit again to say the same.
    s.timed_out.then(|| format!("{} runs: run {} did not finish in its time limit", i + 1, i + 1))
}

/// A server and its lease store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StormServer {
    KeaMemfile,
    KeaPostgres,
    Dhcpv6dSqlite,
    /// SQLite, `--workers 2` on both CPUs (the generator shares CPU 0 with it).
    Dhcpv6dSqliteCores,
    Dhcpv6dPostgres,
}

impl StormServer {
    pub fn label(self) -> &'static str {
        match self {
            StormServer::KeaMemfile => "Kea memfile (1 thread)",
            StormServer::KeaPostgres => "Kea PostgreSQL (1 thread)",
            StormServer::Dhcpv6dSqlite => "dhcpv6d SQLite",
            StormServer::Dhcpv6dSqliteCores => "dhcpv6d SQLite, --workers 2 on CPUs 0-1",
            StormServer::Dhcpv6dPostgres => "dhcpv6d PostgreSQL",
        }
    }

    /// Its name for `--storm-servers`.
    pub fn name(self) -> &'static str {
        match self {
            StormServer::KeaMemfile => "kea-memfile",
            StormServer::KeaPostgres => "kea-pg",
            StormServer::Dhcpv6dSqlite => "dhcpv6d-sqlite",
            StormServer::Dhcpv6dSqliteCores => "dhcpv6d-sqlite-2w",
            StormServer::Dhcpv6dPostgres => "dhcpv6d-pg",
        }
    }

    fn peer(self) -> Peer {
        match self {
            StormServer::KeaMemfile | StormServer::KeaPostgres => Peer::Kea,
            StormServer::Dhcpv6dSqliteCores => Peer::StatefulCores,
            StormServer::Dhcpv6dSqlite | StormServer::Dhcpv6dPostgres => Peer::Stateful,
        }
    }

    fn postgres(self) -> bool {
        matches!(self, StormServer::KeaPostgres | StormServer::Dhcpv6dPostgres)
    }

    fn slug(self) -> String {
        format!("{}{}", slug(self.peer()), if self.postgres() { "-pg" } else { "" })
    }
}

/// The storm servers, in the order they run (and are drawn).
pub const SERVERS: [StormServer; 5] = [
    StormServer::KeaMemfile,
    StormServer::Dhcpv6dSqlite,
    StormServer::Dhcpv6dSqliteCores,
    StormServer::KeaPostgres,
    StormServer::Dhcpv6dPostgres,
];

/// Fails on a `--storm-servers` name no server has.
pub fn check_names(names: &[String]) -> Result<()> {
    for n in names {
        if !SERVERS.iter().any(|s| s.name() == n) {
            let known: Vec<&str> = SERVERS.iter().map(|s| s.name()).collect();
            bail!("--storm-servers {n}: no such storm server; servers: {}", known.join(", "));
        }
    }
    Ok(())
}

/// The servers `names` picks (all when empty), in the order of `SERVERS`.
pub fn chosen(names: &[String]) -> Vec<StormServer> {
    SERVERS.into_iter().filter(|s| names.is_empty() || names.iter().any(|n| n == s.name())).collect()
}

/// A fresh cluster and database for one storm (Kea's schema in it for Kea).
fn postgres(server: StormServer, dir: &Path) -> Result<(testbed::postgres::PgCluster, PgDb)> {
    let pg = testbed::postgres::PgCluster::start().context("a PostgreSQL cluster for the storm")?;
    let name = "storm";
    pg.create_database(name)?;
    let db = PgDb { socket_dir: pg.socket_dir().to_path_buf(), port: pg.port(), name: name.to_string() };
    if server == StormServer::KeaPostgres {
        let port = db.port.to_string();
        let socket = path_str(&db.socket_dir)?.to_string();
        let mut cmd = Command::new("kea-admin");
        cmd.args(["db-init", "pgsql", "-u", "postgres", "-p", "", "-n", name, "-h", &socket, "-P", &port]);
        let out = testbed::run_command(&mut cmd, Duration::from_secs(120)).context("kea-admin db-init pgsql")?;
        fs::write(dir.join("kea-admin.log"), out)?;
    }
    Ok((pg, db))
}

pub fn row(paths: &Paths, plan: &Plan, server: StormServer) -> Result<StormRow> {
    let mut row = StormRow {
        command: String::new(),
        gen_command: String::new(),
        napi: String::new(),
        runs: Vec::new(),
        cut_short: None,
    };
    // A storm is of new CPEs on a fresh server: every run starts one.
    for i in 0..plan.storm_runs {
        interrupt::check()?;
        let dir = paths.dir.join(format!("storm-{}-{i}", server.slug()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        // Declared before the server: dropped (stopped) after it.
        let pg = if server.postgres() { Some(postgres(server, &dir)?) } else { None };
        let topo = Topo::new()?;
        let st = Stateful { on: true, relay_from: Some(topo.gen_ll), postgres: pg.as_ref().map(|p| p.1.clone()) };
        let mut run = peers::start(&topo, server.peer(), paths, &dir, st)?;
        // dhcpv6d answers the direct LAN hosts' Information-Requests in XDP (XDP_TX), which
        // a veth delivers only to a peer with an XDP program: a pass program on gen0, for
        // every server alike.
        peers::hold_on(&topo.gen, GEN_IF, &mut run, paths, &dir, "pass")?;
        // srv0's receive work (XDP, the UDP stack) onto the server's CPU, under the normal
        // scheduler: left in softirq it ran on CPU 0 and starved the generator (its timers
        // fired 1-1.5 s late at p99 against dhcpv6d at 100,000 CPEs).
        let (napi, _) = topo.thread_napi(true)?;
        row.napi = napi;
        row.command = run.command.clone();
        let bound_file = dir.join("bound.txt");
        let mut args: Vec<String> = vec![
            "storm".into(),
            "--iface".into(),
            GEN_IF.into(),
            "--cpes".into(),
            plan.storm_cpes.to_string(),
            "--max-secs".into(),
            format!("{:.0}", plan.storm_max_secs),
            "--link-address".into(),
            RELAY_LINK.into(),
            "--interface-id".into(),
            RELAY_IFID.into(),
        ];
        row.gen_command = format!("taskset -c {GEN_CPU} dhcpv6-bench {}", args.join(" "));
        args.extend(["--bound-out".into(), path_str(&bound_file)?.into()]);
        if let Some(pid) = run.server_pid {
            args.extend(["--server-pid".into(), pid.to_string()]);
        }
        let limit = Duration::from_secs_f64(plan.storm_max_secs + 60.0);
        let lines = run_gen(&topo, paths, &args, &dir.join("storm.log"), limit)?;
        run.check_running()?;
        let Some(storm) = lines.into_iter().find_map(|l| if let Line::Storm(s) = l { Some(*s) } else { None }) else {
            bail!("dhcpv6-bench storm printed no result; see {}", dir.join("storm.log").display());
        };
        let bound = read_bound(&bound_file)?;
        let stored = stored_leases(paths, server, &dir, pg.as_ref())?;
        let leases_stored = bound.iter().filter(|k| stored.contains(*k)).count() as u64;
        let r = StormRun { storm, leases_bound: bound.len() as u64, leases_stored };
        say(&format!("  run {}: {}", i + 1, summary(&r)));
        let last = last_run(i, &r.storm);
        row.runs.push(r);
        if let Some(why) = last {
            if i + 1 < plan.storm_runs {
                say(&format!("  no further storms of this row: {why}"));
                row.cut_short = Some(why);
            }
            break;
        }
    }
    Ok(row)
}

pub fn summary(r: &StormRun) -> String {
    let s = &r.storm;
    let t = |v: Option<f64>| v.map_or("not reached".to_string(), |x| format!("{x:.2} s"));
    format!(
        "{} of {} bound (50 % {}, 99 % {}, 100 % {}), {:.2} messages per CPE, {} of {} leases in the store{}{}",
        s.bound,
        s.cpes,
        t(s.t50_s),
        t(s.t99_s),
        t(s.t100_s),
        s.msgs_per_cpe,
        r.leases_stored,
        r.leases_bound,
        if s.timed_out { ", stopped at the time limit" } else { "" },
        if s.generator_bound { " (generator-bound)" } else { "" },
    )
}

/// `DUID-hex lease` pairs of the generator's `--bound-out` file.
fn read_bound(path: &Path) -> Result<BTreeSet<(String, String)>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().filter_map(|l| l.split_once(' ').map(|(d, a)| (d.to_string(), a.trim().to_string()))).collect())
}

/// The (DUID-hex, address or prefix/len) pairs the server's store holds.
fn stored_leases(
    paths: &Paths,
    server: StormServer,
    dir: &Path,
    pg: Option<&(testbed::postgres::PgCluster, PgDb)>,
) -> Result<BTreeSet<(String, String)>> {
    let mut set = BTreeSet::new();
    if let (StormServer::KeaPostgres, Some((cluster, db))) = (server, pg) {
        let sql = "SELECT address, encode(duid, 'hex'), lease_type, prefix_len FROM lease6 WHERE valid_lifetime > 0";
        return Ok(kea_rows(&cluster.psql(&db.name, sql)?).collect());
    }
    if server == StormServer::KeaMemfile {
        for e in fs::read_dir(dir)?.flatten() {
            if !e.file_name().to_string_lossy().starts_with("kea-leases6") {
                continue;
            }
            set.extend(kea_csv(&fs::read_to_string(e.path()).unwrap_or_default()));
        }
        return Ok(set);
    }
    let db = match pg {
        Some((_, db)) => db.url(),
        None => path_str(&dir.join("leases.db"))?.to_string(),
    };
    let out = Command::new(&paths.daemon).args(["leases", "--lease-db", &db]).output().context("dhcpv6d leases")?;
    if !out.status.success() {
        bail!("dhcpv6d leases --lease-db {db} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(dhcpv6d_table(&String::from_utf8_lossy(&out.stdout)))
}

/// Kea's memfile: address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,
/// iaid,prefix_len,... (lease_type 2: a prefix). Later lines of a lease update earlier ones;
/// any line with a valid lifetime counts.
fn kea_csv(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        let (addr, duid, valid, kind, plen) = (f.first()?, f.get(1)?, f.get(2)?, f.get(6)?, f.get(8)?);
        if *valid == "0" {
            return None;
        }
        let lease = if *kind == "2" { format!("{addr}/{plen}") } else { addr.to_string() };
        Some((duid.replace(':', "").to_lowercase(), lease))
    })
}

/// Kea's lease6 table as psql prints it: address|duid-hex|lease_type|prefix_len.
fn kea_rows(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        let (addr, duid, kind, plen) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
        let lease = if *kind == "2" { format!("{addr}/{plen}") } else { addr.to_string() };
        Some((duid.to_lowercase(), lease))
    })
}

/// `dhcpv6d leases`: TYPE ADDRESS/PREFIX DUID ... a line each, after a heading.
fn dhcpv6d_table(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (_, lease, duid) = (w.next()?, w.next()?, w.next()?);
            Some((duid.to_lowercase(), lease.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_servers_are_picked_by_name_in_their_order() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(chosen(&[]), SERVERS.to_vec(), "none named: all");
        assert_eq!(
            chosen(&names(&["dhcpv6d-sqlite-2w", "kea-memfile", "dhcpv6d-sqlite"])),
            [StormServer::KeaMemfile, StormServer::Dhcpv6dSqlite, StormServer::Dhcpv6dSqliteCores]
        );
        assert!(check_names(&names(&["kea-memfile", "dhcpv6d-pg", "kea-pg"])).is_ok());
        let e = check_names(&names(&["kea"])).unwrap_err().to_string();
        assert!(e.contains("no such storm server") && e.contains("dhcpv6d-sqlite-2w"), "{e}");
        let mut all: Vec<&str> = SERVERS.iter().map(|s| s.name()).collect();
        all.dedup();
        assert_eq!(all.len(), SERVERS.len());
    }

    #[test]
    fn only_a_long_first_storm_or_one_cut_by_its_limit_ends_the_row() {
        let storm = |secs, timed_out| Storm { secs, timed_out, ..Storm::default() };
        assert_eq!(last_run(0, &storm(40.0, false)), None);
        assert_eq!(last_run(0, &storm(300.0, false)), None, "300 s is not longer than 300 s");
        assert_eq!(
            last_run(0, &storm(575.4, false)).as_deref(),
            Some("1 run: the first took 575 s (a storm longer than 300 s runs once)")
        );
        assert_eq!(
            last_run(0, &storm(600.0, true)).as_deref(),
            Some("1 run: the first took 600 s, its time limit (a storm longer than 300 s runs once)")
        );
        // Only the first storm decides: a later long one (the first was short) does not cut
        // the row, a later one stopped at its limit does.
        assert_eq!(last_run(1, &storm(350.0, false)), None);
        assert_eq!(last_run(1, &storm(200.0, true)).as_deref(), Some("2 runs: run 2 did not finish in its time limit"));
    }

    #[test]
    fn both_stores_read_as_duid_and_lease() {
        let kea = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd\n\
                   2001:db8:1::1:5,00:03:00:01:02:aa:bb:00:00:01,7200,1,1,3600,0,1,128,0\n\
                   2001:db8:8000:100::,00:03:00:01:02:aa:bb:00:00:01,7200,1,1,3600,2,1,56,0\n\
                   2001:db8:1::1:6,00:03:00:01:02:aa:bb:00:00:02,0,1,1,3600,0,1,128,0\n";
        let v: BTreeSet<_> = kea_csv(kea).collect();
        assert!(v.contains(&("0003000102aabb000001".into(), "2001:db8:1::1:5".into())));
        assert!(v.contains(&("0003000102aabb000001".into(), "2001:db8:8000:100::/56".into())));
        assert_eq!(v.len(), 2, "a released lease (valid 0) is not held: {v:?}");
        let ours = "TYPE ADDRESS/PREFIX DUID IAID LINK EXPIRES STATE ROUTE\n\
                    NA   2001:db8:1::1:5 0003000102aabb000001 1 srv0 7199s bound -\n\
                    PD   2001:db8:4000:100::/56 0003000102aabb000002 1 storm-relay 7199s bound -\n";
        let v: BTreeSet<_> =
            kea_rows("2001:db8:2::1:9|0003000102aabb000003|0|128\n2001:db8:4000:200::|0003000102aabb000003|2|56\n")
                .collect();
        assert!(v.contains(&("0003000102aabb000003".into(), "2001:db8:4000:200::/56".into())));
        assert!(v.contains(&("0003000102aabb000003".into(), "2001:db8:2::1:9".into())));
        let v = dhcpv6d_table(ours);
        assert!(v.contains(&("0003000102aabb000002".into(), "2001:db8:4000:100::/56".into())));
        assert_eq!(v.len(), 2);
    }
}
