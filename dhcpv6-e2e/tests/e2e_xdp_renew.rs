//! End to end, Renews answered in XDP (`--xdp-renew`, docs/operations.md "Renews answered in
//! XDP"): a Renew for a pre-extended lease is answered by the program (a capture on the
//! server's own interface sees neither it nor its Reply), by ISC dhclient renewing at a short
//! T1 as by crafted Renews; a Release then a Renew goes up; and after `kill -9` the SQLite
//! file covers every lifetime a client was told, also by the program still answering alone;
//! a reload with other lifetimes rebuilds the entries.

mod common;

use std::{net::Ipv6Addr, path::Path, time::Duration};

use common::lab::{path_str, Lab};
use dhcpv6::wire::{IaNa, Message};

const NA: &str = "2001:db8:1::100-2001:db8:1::1ff";
/// Preferred, valid, T1, T2 of the test link: dhclient renews every few seconds.
const LIFETIMES: (u32, u32, u32, u32) = (30, 60, 3, 5);
const WINDOW: u32 = 120;

fn config(lab: &Lab) -> std::path::PathBuf {
    let (p, v, t1, t2) = LIFETIMES;
    let cfg = lab.dir.join("dhcpv6d.toml");
    std::fs::write(
        &cfg,
        format!(
            "xdp_renew = true\nxdp_renew_window = {WINDOW}\n\n[[interface]]\nname = \"srv0\"\ndns = [\"2001:db8::53\"]\n\
             na_pools = [\"{NA}\"]\npreferred_lifetime = {p}\nvalid_lifetime = {v}\nt1 = {t1}\nt2 = {t2}\n\
             create_on_renew = false\n"
        ),
    )
    .unwrap();
    cfg
}

fn start(lab: &mut Lab) {
    let cfg = config(lab);
    let db = lab.dir.join("leases.db");
    lab.start(&["--config", path_str(&cfg), "--lease-db", path_str(&db), "--no-routes", "--flood-rate", "0"]);
    lab.wait_log("Renews answered in XDP for leases pre-extended", Duration::from_secs(5));
}

fn opt(code: u16, data: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    o.extend_from_slice(data);
    o
}

fn message(kind: u8, xid: u32, options: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&xid.to_be_bytes()[1..]);
    options.iter().for_each(|o| m.extend_from_slice(o));
    m
}

const DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0x5e, 0x77];
const IAID: u32 = 0x0102_0304;

fn ia_na(addr: Option<Ipv6Addr>) -> Vec<u8> {
    let mut d = IAID.to_be_bytes().to_vec();
    d.extend_from_slice(&[0; 8]);
    if let Some(a) = addr {
        d.extend(opt(5, &[&a.octets()[..], &[0; 8]].concat()));
    }
    opt(3, &d)
}

/// The client's message: Client ID, Server ID (if any), Elapsed Time, an ORO (DNS), the IA.
fn client_msg(kind: u8, xid: u32, sid: Option<&[u8]>, addr: Option<Ipv6Addr>) -> Vec<u8> {
    let mut o = vec![opt(1, &DUID)];
    o.extend(sid.map(|s| opt(2, s)));
    o.extend([opt(8, &[0, 0]), opt(6, &[0, 23]), ia_na(addr)]);
    message(kind, xid, &o)
}

/// The IA_NA of a reply.
fn ia_of(reply: &[u8]) -> IaNa {
    let m = Message::parse(reply).unwrap();
    IaNa::parse(m.find(3).expect("an IA_NA")).unwrap()
}

/// Solicit and Request by hand: the server's DUID and the address bound.
fn bind(lab: &Lab) -> (Vec<u8>, Ipv6Addr) {
    let adv = lab.exchange(&client_msg(1, 0x10, None, None), Duration::from_secs(3)).expect("an Advertise");
    let sid = Message::parse(&adv).unwrap().server_id().unwrap().expect("a Server ID").to_vec();
    let addr = ia_of(&adv).leases[0].addr;
    let rep = lab.exchange(&client_msg(3, 0x11, Some(&sid), Some(addr)), Duration::from_secs(3)).expect("a Reply");
    assert_eq!(ia_of(&rep).leases[0].addr, addr);
    (sid, addr)
}

/// Waits until the daemon put `n` Renew entries (a batch is durable).
fn wait_entries(lab: &Lab, n: u64) {
    testbed::wait_for(
        Duration::from_secs(10),
        || Ok(lab.stats().get("user_xdp_renew_entries_put").copied() >= Some(n)),
    )
    .unwrap_or_else(|e| panic!("{e}: no Renew entry put: {:?}\n{}", lab.stats(), lab.log()));
}

fn xdp(lab: &Lab, name: &str) -> u64 {
    lab.stats().get(&format!("xdp_{name}")).copied().unwrap_or_else(|| panic!("no xdp_{name} in {:?}", lab.stats()))
}

/// A capture on the server's own interface, inside its namespace.
struct Capture {
    proc: testbed::Proc,
    pcap: std::path::PathBuf,
}

impl Capture {
    fn start(lab: &Lab, name: &str) -> Capture {
        testbed::ensure_tools(&[("tshark", "tshark")]).unwrap();
        let pcap = lab.dir.join(format!("{name}.pcap"));
        let log = lab.dir.join(format!("{name}.log"));
        let args = ["tshark", "-q", "-i", "srv0", "-f", "udp port 547 or udp port 546", "-w", path_str(&pcap)];
        let proc = lab.srv.spawn(&args, Some(&log)).unwrap();
        testbed::wait_for(Duration::from_secs(15), || {
            Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("Capturing on"))
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Capture { proc, pcap }
    }

    /// Stops the capture; the DHCPv6 message types it saw, in order.
    fn types(self, lab: &Lab) -> Vec<u8> {
        std::thread::sleep(Duration::from_millis(500));
        self.proc.terminate();
        let out = lab.srv.run(&["tshark", "-r", path_str(&self.pcap), "-T", "fields", "-e", "dhcpv6.msgtype"]).unwrap();
        out.lines().filter_map(|l| l.split(',').next()?.trim().parse().ok()).collect()
    }
}

/// (valid_until, preferred_until) of the address lease in the SQLite file, read with the
/// stock sqlite3 tool (the daemon is gone or holds it open: WAL readers do not block).
fn stored(db: &Path, addr: Ipv6Addr) -> (u64, u64) {
    testbed::ensure_tools(&[("sqlite3", "sqlite3")]).unwrap();
    let q = format!("SELECT valid_until, preferred_until FROM leases WHERE address = '{addr}';");
    let out = std::process::Command::new("sqlite3").arg(db).arg(q).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (v, p) = text.split_once('|').unwrap_or_else(|| panic!("no row for {addr}: {text:?}"));
    (v.parse().unwrap(), p.parse().unwrap())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn a_renew_is_answered_in_xdp_and_after_a_release_goes_up() {
    let mut lab = Lab::new("xrn");
    start(&mut lab);
    let (sid, addr) = bind(&lab);
    wait_entries(&lab, 1);
    let db = lab.dir.join("leases.db");
    let (_, v, t1, t2) = LIFETIMES;
    assert!(stored(&db, addr).0 >= unix_now() + u64::from(WINDOW) + u64::from(v) - 5, "pre-extended in the store");
    // The batch's lease event stands for the Renews the kernel will answer.
    lab.wait_log("event=pre_extend origin=server", Duration::from_secs(5));

    let before = xdp(&lab, "tx_renew");
    let cap = Capture::start(&lab, "renew");
    let renew = client_msg(5, 0x12, Some(&sid), Some(addr));
    let reply = lab.exchange(&renew, Duration::from_secs(3)).expect("a Reply to the Renew");
    let told = unix_now();
    let seen = cap.types(&lab);
    assert!(seen.is_empty(), "the capture on srv0 saw DHCPv6 messages {seen:?}: not answered in XDP\n{}", lab.log());
    assert_eq!(xdp(&lab, "tx_renew"), before + 1);
    let m = Message::parse(&reply).unwrap();
    assert_eq!((m.msg_type(), m.xid()), (7, [0, 0, 0x12]));
    assert_eq!(m.client_id().unwrap(), Some(&DUID[..]));
    assert_eq!(m.server_id().unwrap(), Some(&sid[..]));
    assert_eq!(m.find(23).map(<[u8]>::to_vec), Some("2001:db8::53".parse::<Ipv6Addr>().unwrap().octets().to_vec()));
    let ia = ia_of(&reply);
    assert_eq!((ia.iaid, ia.t1, ia.t2, ia.leases.len()), (IAID, t1, t2, 1));
    assert_eq!((ia.leases[0].addr, ia.leases[0].preferred, ia.leases[0].valid), (addr, LIFETIMES.0, v));
    assert!(stored(&db, addr).0 >= told + u64::from(v), "the store covers what XDP told");

    // Release goes up (the entry goes before its commit); the same Renew then goes up too
    // and gets NoBinding from userspace.
    let cap = Capture::start(&lab, "release");
    let rel = lab.exchange(&client_msg(8, 0x13, Some(&sid), Some(addr)), Duration::from_secs(3)).expect("a Reply");
    assert_eq!(Message::parse(&rel).unwrap().msg_type(), 7);
    let reply = lab.exchange(&renew, Duration::from_secs(3)).expect("a Reply from userspace");
    let seen = cap.types(&lab);
    assert_eq!(seen, [8, 7, 5, 7], "Release, Reply, Renew, Reply all on srv0\n{}", lab.log());
    assert_eq!(xdp(&lab, "tx_renew"), before + 1, "not answered in XDP");
    assert!(xdp(&lab, "pass_renew_no_entry") >= 1);
    assert_eq!(ia_of(&reply).status.map(|s| s.code), Some(3), "NoBinding");
    assert!(lab.stats().get("user_xdp_renew_entries_deleted").copied() >= Some(1));
}

#[test]
fn dhclient_renewing_at_t1_is_answered_in_xdp() {
    testbed::ensure_tools(&[("dhclient", "isc-dhcp-client")]).unwrap();
    let mut lab = Lab::new("xrd");
    start(&mut lab);
    let env = lab.dir.join("dhclient.env");
    let script = lab.dir.join("dhclient.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason $new_ip6_address $new_max_life $new_preferred_life\" >> {}\n",
            env.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let (lf, pf) = (lab.dir.join("dhclient.leases"), lab.dir.join("dhclient.pid"));
    let args = ["timeout", "60", "dhclient", "-6", "-N", "-d", "-v", "-lf", path_str(&lf), "-pf", path_str(&pf)];
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-sf", path_str(&script), "cli0"]);
    let client = lab.cli.spawn(&all, Some(&lab.dir.join("dhclient.log"))).unwrap();
    let events = || std::fs::read_to_string(&env).unwrap_or_default();
    testbed::wait_for(Duration::from_secs(20), || Ok(events().contains("BOUND6")))
        .unwrap_or_else(|e| panic!("{e}: dhclient not bound\n{}\n{}", events(), lab.log()));
    wait_entries(&lab, 1);
    let before = xdp(&lab, "tx_renew");
    let renewed_before = events().matches("RENEW6").count();
    let cap = Capture::start(&lab, "dhclient");
    // T1 is 3 s: two renewals within 10 s.
    let got =
        testbed::wait_for(Duration::from_secs(12), || Ok(events().matches("RENEW6").count() >= renewed_before + 2));
    let seen = cap.types(&lab);
    let log = std::fs::read_to_string(lab.dir.join("dhclient.log")).unwrap_or_default();
    client.terminate();
    got.unwrap_or_else(|e| panic!("{e}: dhclient did not renew\n{}\n{log}", events()));
    let (p, v, _, _) = LIFETIMES;
    let last = events().lines().rfind(|l| l.starts_with("RENEW6")).unwrap_or_default().to_owned();
    assert!(last.ends_with(&format!(" {v} {p}")), "renewed with the link's lifetimes: {last:?}");
    assert!(xdp(&lab, "tx_renew") >= before + 2, "answered in XDP: {:?}", lab.stats());
    assert!(!seen.contains(&5) && !seen.contains(&7), "the capture on srv0 saw {seen:?}\n{log}\n{}", lab.log());
}

#[test]
fn after_kill_9_the_store_covers_every_lifetime_told() {
    let mut lab = Lab::new("xrk");
    start(&mut lab);
    let (sid, addr) = bind(&lab);
    wait_entries(&lab, 1);
    let renew = client_msg(5, 0x21, Some(&sid), Some(addr));
    let before = xdp(&lab, "tx_renew");
    let reply = lab.exchange(&renew, Duration::from_secs(3)).expect("a Reply");
    let told = unix_now() + u64::from(ia_of(&reply).leases[0].valid);
    assert_eq!(xdp(&lab, "tx_renew"), before + 1);
    lab.stop(true).expect("the daemon was running");

    // The program stays attached and answers alone from its entries: still covered.
    let reply = lab.exchange(&renew, Duration::from_secs(3)).expect("the program answers without a daemon");
    let told_after = unix_now() + u64::from(ia_of(&reply).leases[0].valid);
    assert_eq!(xdp(&lab, "tx_renew"), before + 2);
    let db = lab.dir.join("leases.db");
    let (valid_until, _) = stored(&db, addr);
    assert!(valid_until >= told.max(told_after), "stored {valid_until}, told until {told} and {told_after}");

    // A new daemon empties the map before it puts anything: it never trusts what the killed
    // one left, and puts the lease's entry again only after its own batch.
    start(&mut lab);
    lab.wait_log("removed Renew entries a previous daemon left", Duration::from_secs(5));
    let reply = lab.exchange(&renew, Duration::from_secs(3)).expect("a Reply");
    assert_eq!(ia_of(&reply).leases[0].addr, addr);
    assert!(stored(&db, addr).0 >= unix_now() + u64::from(ia_of(&reply).leases[0].valid));
}

#[test]
fn a_reload_with_other_lifetimes_rebuilds_the_entries() {
    let mut lab = Lab::new("xrh");
    start(&mut lab);
    let (sid, addr) = bind(&lab);
    wait_entries(&lab, 1);
    let renew = client_msg(5, 0x31, Some(&sid), Some(addr));
    let before = xdp(&lab, "tx_renew");
    let reply = lab.exchange(&renew, Duration::from_secs(3)).expect("a Reply");
    assert_eq!(ia_of(&reply).leases[0].valid, LIFETIMES.1);
    assert_eq!(xdp(&lab, "tx_renew"), before + 1);

    // Longer lifetimes: the old entries go with the reload, the batch puts new ones, and the
    // kernel's Reply tells the new lifetimes (an old entry would tell the old).
    let cfg = lab.dir.join("dhcpv6d.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("preferred_lifetime = 30", "preferred_lifetime = 45")
            .replace("valid_lifetime = 60", "valid_lifetime = 90"),
    )
    .unwrap();
    let put = lab.stats().get("user_xdp_renew_entries_put").copied().unwrap_or(0);
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("configuration reloaded", Duration::from_secs(10));
    wait_entries(&lab, put + 1);
    assert!(lab.stats().get("user_xdp_renew_entries_deleted").copied() >= Some(1), "the reload deleted the old entry");
    let reply = lab.exchange(&renew, Duration::from_secs(3)).expect("a Reply");
    let ia = ia_of(&reply);
    assert_eq!((ia.leases[0].preferred, ia.leases[0].valid), (45, 90));
    assert_eq!(xdp(&lab, "tx_renew"), before + 2, "answered in XDP from the rebuilt entry");
    assert!(stored(&lab.dir.join("leases.db"), addr).0 >= unix_now() + 90);
}
