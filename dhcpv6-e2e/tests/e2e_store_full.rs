//! End to end, a lease store whose disk fills up: dhcpv6d keeps its lease database on a
//! small tmpfs, clients get bound, a filler file takes the rest of the space, and then:
//! new clients get nothing (NoAddrsAvail), a bound client's Renew gets no Reply naming a
//! lifetime the store does not have, Information-Requests are still answered, the log says
//! why once and the metrics say unhealthy; once the filler goes, grants resume by
//! themselves, and every address a client was told in a Reply is in the database.

mod common;

use std::{
    collections::BTreeSet,
    io::Write,
    net::Ipv6Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{lab::Lab, load::information_request, opt};
use dhcpv6::wire::{IaNa, Message};
use dhcpv6_common::wire::{msg, opt as code, status};

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";
/// Small enough to fill in a moment, big enough for the empty database, its WAL and the
/// daemon's 64 KiB probe once the filler is gone.
const TMPFS_SIZE: &str = "1m";

/// A size-limited tmpfs mounted for the test; unmounted on drop, also when the test fails
/// (lazily: the daemon may still hold the database open).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE},mode=0700"), "dhcpv6-store-full"])
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(at.to_path_buf())
    }

    /// Writes a file until the file system has no room left; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 4096];
        // Bounded: the tmpfs is 1 MiB, so this ends long before the cap.
        for _ in 0..100_000 {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // Single bytes too, so that not even the tail of a page is left.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn duid(n: u16) -> Vec<u8> {
    let [hi, lo] = n.to_be_bytes();
    vec![0, 3, 0, 1, 0x02, 0x5f, 0, 0, hi, lo]
}

fn ia_na(addr: Option<Ipv6Addr>) -> Vec<u8> {
    let mut d = 1u32.to_be_bytes().to_vec();
    d.extend_from_slice(&[0; 8]);
    if let Some(a) = addr {
        let mut x = a.octets().to_vec();
        x.extend_from_slice(&[0; 8]);
        d.extend(opt(code::IAADDR, &x));
    }
    opt(code::IA_NA, &d)
}

fn message(t: u8, xid: u16, opts: &[Vec<u8>]) -> Vec<u8> {
    let [hi, lo] = xid.to_be_bytes();
    let mut m = vec![t, 0x5f, hi, lo];
    for o in opts {
        m.extend_from_slice(o);
    }
    m
}

/// What a server message says about the client's IA_NA.
#[derive(Debug)]
struct Answer {
    msg_type: u8,
    server_id: Vec<u8>,
    /// Top-level status, if any.
    status: Option<u16>,
    /// The IA_NA's status, if any.
    ia_status: Option<u16>,
    /// Addresses with a valid lifetime above 0.
    addrs: Vec<Ipv6Addr>,
}

fn answer(bytes: &[u8]) -> Answer {
    let m = Message::parse(bytes).unwrap();
    let status = m.find(code::STATUS_CODE).map(|d| u16::from_be_bytes([d[0], d[1]]));
    let ia = m.find(code::IA_NA).map(|d| IaNa::parse(d).unwrap());
    Answer {
        msg_type: m.msg_type(),
        server_id: m.server_id().unwrap().unwrap_or_default().to_vec(),
        status,
        ia_status: ia.as_ref().and_then(|ia| ia.status.as_ref().map(|s| s.code)),
        addrs: ia.map(|ia| ia.leases.iter().filter(|l| l.valid > 0).map(|l| l.addr).collect()).unwrap_or_default(),
    }
}

/// Client `n` as a client does it: Solicit, then Request with the server's identifier and
/// whatever was offered. Returns the Advertise and the Reply (either may be missing).
fn bind(lab: &Lab, n: u16, server_id: &[u8]) -> (Option<Answer>, Option<Answer>) {
    let cid = opt(code::CLIENTID, &duid(n));
    let adv = lab
        .exchange(&message(msg::SOLICIT, n, &[cid.clone(), ia_na(None)]), Duration::from_secs(2))
        .map(|b| answer(&b));
    let offered = adv.as_ref().and_then(|a| a.addrs.first().copied());
    let sid = opt(code::SERVERID, server_id);
    let reply = lab
        .exchange(&message(msg::REQUEST, n, &[cid, sid, ia_na(offered)]), Duration::from_secs(2))
        .map(|b| answer(&b));
    (adv, reply)
}

fn renew(lab: &Lab, n: u16, server_id: &[u8], addr: Ipv6Addr) -> Option<Answer> {
    let m = message(
        msg::RENEW,
        n ^ 0x8000,
        &[opt(code::CLIENTID, &duid(n)), opt(code::SERVERID, server_id), ia_na(Some(addr))],
    );
    lab.exchange(&m, Duration::from_secs(2)).map(|b| answer(&b))
}

/// Addresses in the database, read as an operator would (`dhcpv6d leases`).
fn stored(db: &Path) -> BTreeSet<Ipv6Addr> {
    let out =
        std::process::Command::new(common::lab::daemon_bin()).arg("leases").arg("--lease-db").arg(db).output().unwrap();
    assert!(out.status.success(), "dhcpv6d leases: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("na "))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

fn outage_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains("lease store cannot write")).count()
}

#[test]
fn a_full_disk_stops_grants_truthfully_and_they_resume_when_room_is_made() {
    let mut lab = Lab::new("sf");
    let fs = Tmpfs::mount(&lab.dir.join("store"));
    let db = fs.0.join("leases.db");
    lab.start(&["--na-pool", NA, "--lease-db", db.to_str().unwrap(), "--metrics", "[::1]:9547", "--no-routes"]);

    // Every address a Reply named, and to whom.
    let mut told: Vec<(u16, Ipv6Addr)> = Vec::new();
    let server_id = {
        let solicit = message(msg::SOLICIT, 0, &[opt(code::CLIENTID, &duid(0)), ia_na(None)]);
        let adv =
            lab.exchange(&solicit, Duration::from_secs(3)).unwrap_or_else(|| panic!("no Advertise\n{}", lab.log()));
        answer(&adv).server_id
    };
    let mut next = 1u16;
    for _ in 0..5 {
        let (_, reply) = bind(&lab, next, &server_id);
        let reply = reply.unwrap_or_else(|| panic!("client {next} got no Reply\n{}", lab.log()));
        assert_eq!(reply.addrs.len(), 1, "client {next} bound: {reply:?}");
        told.push((next, reply.addrs[0]));
        next += 1;
    }
    assert!(lab.metrics().contains("dhcpv6_store_healthy 1"));

    // The disk fills up.
    let filler = fs.fill();
    let mut refused = 0;
    for _ in 0..6 {
        let (adv, reply) = bind(&lab, next, &server_id);
        if let Some(r) = &reply {
            told.extend(r.addrs.iter().map(|a| (next, *a)));
        }
        let refusal = adv.as_ref().is_some_and(|a| a.addrs.is_empty() && a.status == Some(status::NO_ADDRS_AVAIL))
            && reply.as_ref().is_some_and(|r| {
                r.msg_type == msg::REPLY && r.addrs.is_empty() && r.ia_status == Some(status::NO_ADDRS_AVAIL)
            });
        refused += usize::from(refusal);
        next += 1;
    }
    let log = lab.log();
    assert!(refused >= 4, "new clients are refused with NoAddrsAvail ({refused} of 6)\n{log}");
    assert_eq!(outage_lines(&log), 1, "the outage is logged once\n{log}");
    let line = log.lines().find(|l| l.contains("lease store cannot write")).unwrap();
    assert!(line.contains("reason=full") && line.contains("disk full"), "the log says why: {line}");
    let m = lab.metrics();
    assert!(m.contains("dhcpv6_store_healthy 0"), "{m}");
    assert!(m.contains("dhcpv6_userspace_total{event=\"store_outage_full\"} 1"), "{m}");

    // A bound client's Renew cannot be recorded: no Reply (no lifetime the disk lacks).
    let (c1, a1) = told[0];
    let r = renew(&lab, c1, &server_id, a1);
    assert!(r.is_none(), "a Renew while the disk is full gets no Reply: {r:?}");
    // Still running, still answering what needs no lease.
    assert!(lab.daemon.as_ref().unwrap().is_running(), "dhcpv6d still runs\n{}", lab.log());
    let ir = lab.exchange(&information_request(0x42), Duration::from_secs(3)).expect("Information-Request answered");
    assert_eq!(ir[0], msg::REPLY);
    testbed::wait_for(Duration::from_secs(3), || {
        Ok(lab.stats().get("user_refused_store_down").copied().unwrap_or(0) > 0)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", lab.stats()));
    let stats = lab.stats();
    assert!(stats["user_drop_store_down"] >= 1, "{stats:?}");
    assert_eq!(stats["user_store_outage_full"], 1, "{stats:?}");

    // Room again: grants resume by themselves, within a few probe intervals.
    std::fs::remove_file(&filler).unwrap();
    let t = Instant::now();
    lab.wait_log("lease store writes again", Duration::from_secs(20));
    eprintln!("grants resumed {:?} after the filler went", t.elapsed());
    assert!(lab.metrics().contains("dhcpv6_store_healthy 1"));
    let (_, reply) = bind(&lab, next, &server_id);
    let reply = reply.unwrap_or_else(|| panic!("no Reply after recovery\n{}", lab.log()));
    assert_eq!(reply.addrs.len(), 1, "a new client is bound again: {reply:?}");
    told.push((next, reply.addrs[0]));
    let r = renew(&lab, c1, &server_id, a1).unwrap_or_else(|| panic!("Renew unanswered after recovery\n{}", lab.log()));
    assert_eq!(r.addrs, vec![a1], "the Renew is extended now");
    assert_eq!(outage_lines(&lab.log()), 1, "one outage, one line");

    // Every address a client was told is in the database, and nothing a client was refused.
    let check = |when: &str| {
        let s = stored(&db);
        for (n, a) in &told {
            assert!(s.contains(a), "{when}: client {n} was told {a}, which is not stored: {s:?}");
        }
        assert_eq!(s.len(), told.len(), "{when}: only told leases are stored: {s:?} vs {told:?}");
    };
    check("running");
    // And after the daemon closes the database and it is opened afresh.
    assert!(lab.stop(false).unwrap().success(), "clean exit\n{}", lab.log());
    check("reopened");
    drop(fs);
}
