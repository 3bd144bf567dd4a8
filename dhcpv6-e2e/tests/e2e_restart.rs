//! Restarts, crashes and upgrades under load: the XDP program, its link and its maps outlive
//! the daemon, so a steady Information-Request load loses nothing while the daemon is
//! stopped, started, killed or swapped for one with other maps; `dhcpv6d detach` removes it all.

mod common;

use std::{path::Path, time::Duration};

use aya::{
    maps::{Array, Map, MapData, MapInfo},
    programs::links::{FdLink, PinnedLink},
};
use common::{
    lab::{pins_in, xdp_prog, Lab},
    load::{information_request, IrLoad},
};
use dhcpv6::wire::Message;

const ARGS: &[&str] = &["--dns", "2001:db8::53", "--domain", "isp.example"];
/// Requests a second, as in the measurement.
const RATE: u32 = 1000;
/// Upper bound of one load run (60 s at RATE), whatever happens to the test.
const MAX_REQUESTS: u32 = 60_000;

/// (link id, program id) of the pinned link, per the kernel.
fn link_info(pin: &Path) -> (u32, u32) {
    let link = FdLink::from(PinnedLink::from_pin(pin).unwrap());
    let info = link.info().unwrap();
    (info.id(), info.program_id())
}

fn map_id(pin: &Path) -> u32 {
    MapInfo::from_pin(pin).unwrap().id()
}

fn assert_all_answered(r: &common::load::LoadResult, what: &str) {
    assert_eq!(r.send_errors, 0, "{what}: sending failed: {:?}", r.first_error);
    assert_eq!(r.strays, 0, "{what}: replies to requests never sent: {r:?}");
    assert_eq!(
        r.unanswered(),
        0,
        "{what}: {} of {} Information-Requests unanswered (first: {:?})",
        r.unanswered(),
        r.sent,
        r.missing
    );
}

#[test]
fn five_restarts_under_steady_load_leave_no_request_unanswered() {
    let mut lab = Lab::new("rs");
    lab.start(ARGS);
    let link = lab.pin_dir.join("link_srv0");
    let (link_id, mut prog) = link_info(&link);
    assert_eq!(xdp_prog(&lab.srv, "srv0"), Some(prog));
    let load = IrLoad::start(&lab.cli, "cli0", RATE, MAX_REQUESTS);
    std::thread::sleep(Duration::from_secs(1));
    for round in 1..=5 {
        // As `systemctl restart`: SIGTERM, wait for the exit, start again.
        let t = std::time::Instant::now();
        assert!(lab.stop(false).unwrap().success(), "round {round}: clean exit\n{}", lab.log());
        assert_eq!(xdp_prog(&lab.srv, "srv0"), Some(prog), "round {round}: still attached with no daemon");
        std::thread::sleep(Duration::from_millis(300));
        lab.start(ARGS);
        // Userspace (stateful, relayed) has no socket for this long; the fast path has no gap.
        eprintln!("round {round}: SIGTERM to serving again in {:?}", t.elapsed());
        let log = lab.log();
        assert!(log.contains("adopted the pinned maps"), "round {round}: same layout, maps adopted\n{log}");
        assert!(log.contains("took over the pinned XDP link"), "round {round}\n{log}");
        // The same link now runs the new daemon's program: replaced, never detached.
        let (id, new_prog) = link_info(&link);
        assert_eq!(id, link_id, "round {round}: the link was updated, not re-created");
        assert_ne!(new_prog, prog, "round {round}: a new program was swapped in");
        assert_eq!(xdp_prog(&lab.srv, "srv0"), Some(new_prog));
        prog = new_prog;
        // About 20 s in all, as in the measurement that found the gap.
        std::thread::sleep(Duration::from_secs(3));
    }
    let r = load.stop(Duration::from_secs(2));
    eprintln!("five restarts: {r:?}");
    assert!(r.sent >= 15 * RATE, "the load ran through all restarts: {r:?}");
    assert_all_answered(&r, "five restarts");
    // The counters were adopted with the maps: they count every answer since the first start.
    let s = lab.stats();
    assert!(s["xdp_answered"] >= u64::from(r.sent), "XDP counters kept across restarts: {s:?} vs {r:?}");
}

#[test]
fn a_changed_map_layout_is_swapped_in_under_load_without_a_gap() {
    let mut lab = Lab::new("ly");
    lab.start(ARGS);
    let link = lab.pin_dir.join("link_srv0");
    let ifaces = lab.pin_dir.join(dhcpv6_common::MAP_IFACE_REPLY);
    let (link_id, old_prog) = link_info(&link);
    let old_map = map_id(&ifaces);
    let load = IrLoad::start(&lab.cli, "cli0", RATE, MAX_REQUESTS);
    std::thread::sleep(Duration::from_secs(1));
    assert!(lab.stop(false).unwrap().success());
    // What a daemon with other map definitions would have left: another layout fingerprint.
    let data = MapData::from_pin(lab.pin_dir.join("layout")).unwrap();
    let mut layout = Array::<_, u64>::try_from(Map::from_map_data(data).unwrap()).unwrap();
    let fp = layout.get(&0, 0).unwrap();
    layout.set(0, fp ^ 1, 0).unwrap();
    drop(layout);
    std::thread::sleep(Duration::from_millis(300));
    lab.start(ARGS);
    let log = lab.log();
    assert!(log.contains("map layout changed"), "{log}");
    assert!(!log.contains("adopted the pinned maps"), "{log}");
    assert_ne!(map_id(&ifaces), old_map, "fresh maps are pinned");
    let (id, new_prog) = link_info(&link);
    assert_eq!(id, link_id, "the link was updated (bpf_link_update), not re-created");
    assert_ne!(new_prog, old_prog);
    assert_eq!(xdp_prog(&lab.srv, "srv0"), Some(new_prog));
    std::thread::sleep(Duration::from_secs(2));
    let r = load.stop(Duration::from_secs(2));
    eprintln!("layout change: {r:?}");
    assert!(r.sent >= 2 * RATE, "{r:?}");
    assert_all_answered(&r, "layout change");
    // The new maps count from zero: only what the new program answered.
    let s = lab.stats();
    assert!(s["xdp_answered"] > 0 && s["xdp_answered"] < u64::from(r.sent), "{s:?} vs {r:?}");
    // The next start finds the layout it wrote and adopts.
    assert!(lab.stop(false).unwrap().success());
    lab.start(ARGS);
    assert!(lab.log().contains("adopted the pinned maps"), "{}", lab.log());
}

#[test]
fn stopped_or_crashed_the_fast_path_answers_on_and_detach_removes_everything() {
    let mut lab = Lab::new("dt");
    lab.srv.run(&["ip", "link", "add", "d0", "type", "bridge"]).unwrap();
    lab.srv.run(&["ip", "link", "set", "d0", "up"]).unwrap();
    let mut with_d0 = ARGS.to_vec();
    with_d0.extend(["--iface", "d0"]);
    lab.start(&with_d0);
    let pins = pins_in(&lab.pin_dir);
    for want in ["DHCPV6_COUNTERS", "DHCPV6_IFACES", "layout", "link_d0", "link_srv0"] {
        assert!(pins.iter().any(|p| p == want), "{want} pinned: {pins:?}");
    }
    assert!(xdp_prog(&lab.srv, "d0").is_some());
    let ir = information_request(0x0a0b0c);
    let ask = |lab: &Lab| {
        lab.exchange(&ir, Duration::from_secs(3)).map(|r| Message::parse(&r).map(|m| (m.msg_type(), m.xid())).unwrap())
    };

    // SIGTERM: the daemon goes, the program and its pins stay and answer.
    assert!(lab.stop(false).unwrap().success());
    assert_eq!(pins_in(&lab.pin_dir), pins, "nothing unpinned on SIGTERM");
    let before = lab.stats()["xdp_answered"];
    assert_eq!(ask(&lab), Some((7, [0x0a, 0x0b, 0x0c])), "the fast path answers with no daemon");
    assert_eq!(lab.stats()["xdp_answered"], before + 1, "answered in XDP");

    // A daemon that no longer serves d0 takes its program off.
    lab.start(ARGS);
    lab.wait_log("no longer served: XDP detached", Duration::from_secs(5));
    assert_eq!(xdp_prog(&lab.srv, "d0"), None, "d0 detached");
    assert!(!lab.pin_dir.join("link_d0").exists());
    assert!(xdp_prog(&lab.srv, "srv0").is_some());

    // kill -9 is no different.
    lab.stop(true).expect("daemon killed");
    assert_eq!(ask(&lab), Some((7, [0x0a, 0x0b, 0x0c])), "the fast path answers after a crash");

    // detach: nothing attached, nothing pinned, nothing answers.
    let out = lab.detach();
    assert!(out.contains("detached XDP from srv0"), "{out}");
    assert!(!lab.pin_dir.exists(), "pin folder gone: {:?}", pins_in(&lab.pin_dir));
    assert_eq!(xdp_prog(&lab.srv, "srv0"), None, "srv0 detached");
    assert_eq!(ask(&lab), None, "no daemon, no program: no answer");
    assert!(lab.detach().contains("nothing pinned"), "detach again is a no-op");
}
