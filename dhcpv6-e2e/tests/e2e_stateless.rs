//! End to end, stateless: dhcpv6d on one end of a veth pair, real clients (ISC dhclient,
//! dhcpcd) and crafted datagrams on the other, each side in its own network namespace.

mod common;

use std::time::Duration;

use common::{lab::Lab, *};
use dhcpv6::wire::Message;

const ARGS: &[&str] =
    &["--dns", "2001:db8::53", "--dns", "2001:db8::54", "--domain", "isp.example", "--domain", "lab.example"];

#[test]
fn dhclient_is_configured_by_the_xdp_fast_path() {
    let mut lab = Lab::new("fp");
    let mut args = ARGS.to_vec();
    args.extend(["--metrics", "[::1]:9547"]);
    lab.start(&args);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(
        env.get("new_dhcp6_name_servers").map(String::as_str),
        Some("2001:db8::53 2001:db8::54"),
        "{out}\n{env:?}"
    );
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("isp.example. lab.example."), "{out}");
    let s = lab.stats();
    assert!(s["xdp_answered"] >= 1, "the fast path answered: {s:?}");
    assert_eq!(s.get("user_received").copied().unwrap_or(0), 0, "userspace saw nothing: {s:?}");
    // The same counters for Prometheus.
    let m = lab
        .srv
        .run(&["python3", "-c", "import urllib.request;print(urllib.request.urlopen('http://[::1]:9547/metrics',timeout=5).read().decode())"])
        .unwrap();
    let answered = format!("dhcpv6_xdp_frames_total{{outcome=\"answered\"}} {}", s["xdp_answered"]);
    assert!(m.contains(&answered), "{answered} in:\n{m}");
    assert!(m.contains("# TYPE dhcpv6_userspace_total counter") && m.contains("dhcpv6_leases 0"), "{m}");
}

#[test]
fn userspace_answers_the_same_with_no_fast_path() {
    let mut lab = Lab::new("nf");
    let mut args = ARGS.to_vec();
    args.push("--no-fast-path");
    lab.start(&args);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53 2001:db8::54"), "{out}");
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("isp.example. lab.example."), "{out}");
    // Userspace counters reach their file once a second.
    testbed::wait_for(Duration::from_secs(3), || Ok(lab.stats().get("user_replied").copied().unwrap_or(0) >= 1))
        .unwrap();
    let s = lab.stats();
    assert_eq!(s["xdp_answered"], 0, "{s:?}");
    assert!(s["xdp_pass_fast_path_off"] >= 1, "{s:?}");
    assert!(s["user_replied"] >= 1, "{s:?}");
}

#[test]
fn crafted_requests_foreign_server_id_is_dropped_and_counted() {
    let mut lab = Lab::new("cr");
    lab.start(ARGS);
    // A valid request first: proves the crafted path reaches the server and gets a Reply.
    let ok = message(11, &[client_id(14), oro(&[23, 24])]);
    let reply = lab.exchange(&ok, Duration::from_secs(3)).expect("a reply to a valid request");
    let m = Message::parse(&reply).unwrap();
    assert_eq!((m.msg_type(), m.xid()), (7, [0x12, 0x34, 0x56]));
    assert_eq!(m.client_id().unwrap(), Some(&client_id(14)[4..]));
    let before = lab.stats();
    let foreign = message(11, &[client_id(14), opt(2, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 0x99])]);
    assert_eq!(lab.exchange(&foreign, Duration::from_secs(2)), None, "no answer to a foreign Server ID");
    let with_ia = message(11, &[client_id(14), opt(3, &[0; 12])]);
    assert_eq!(lab.exchange(&with_ia, Duration::from_secs(2)), None, "no answer with an IA");
    let after = lab.stats();
    assert_eq!(after["xdp_drop_foreign_server_id"], before["xdp_drop_foreign_server_id"] + 1, "{after:?}");
    assert_eq!(after["xdp_drop_ia_present"], before["xdp_drop_ia_present"] + 1, "{after:?}");
    assert!(after["xdp_answered"] >= 1);
}

#[test]
fn a_flood_from_one_mac_is_dropped_in_xdp_and_its_answers_still_come() {
    let mut lab = Lab::new("fl");
    let mut args = ARGS.to_vec();
    args.extend(["--flood-rate", "1", "--flood-burst", "5"]);
    lab.start(&args);
    let before = lab.stats();
    // Solicits to a server without pools: each one passed up costs userspace a read.
    lab.send_burst(&message(1, &[client_id(14)]), 60);
    std::thread::sleep(Duration::from_millis(500));
    let after = lab.stats();
    let delta = |k: &str| after[k] - before[k];
    // The burst, plus a token a second while python sends.
    assert!(delta("xdp_drop_flood") >= 50, "the flood is dropped in XDP: {after:?}");
    assert!((5..=8).contains(&delta("xdp_pass_other_msg")), "the burst went up: {after:?}");
    assert!(delta("user_received") <= 8, "userspace read only the burst: {after:?}");
    // Answers given in XDP are not metered: the flooding client is still configured.
    let ok = message(11, &[client_id(14), oro(&[23, 24])]);
    let reply = lab.exchange(&ok, Duration::from_secs(3)).expect("the fast path still answers");
    assert_eq!(Message::parse(&reply).unwrap().msg_type(), 7);
    assert!(lab.log().contains("flood limits for frames passed up"), "{}", lab.log());
    // The operator hears of it (on the 10-second sweep).
    lab.wait_log("flood buckets dropped frames in XDP", Duration::from_secs(15));
}

#[test]
fn sighup_changes_the_next_answer() {
    let mut lab = Lab::new("hup");
    let cfg = lab.dir.join("dhcpv6d.toml");
    std::fs::write(&cfg, "[defaults]\ndns = [\"2001:db8::1\"]\ndomains = [\"one.example\"]\n").unwrap();
    lab.start(&["--config", cfg.to_str().unwrap()]);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::1"), "{out}");
    std::fs::write(&cfg, "[defaults]\ndns = [\"2001:db8::2\"]\ndomains = [\"two.example\"]\n").unwrap();
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("configuration reloaded", Duration::from_secs(5));
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::2"), "{out}");
    assert_eq!(env.get("new_dhcp6_domain_search").map(String::as_str), Some("two.example."), "{out}");
    // A broken file is refused with file, line and reason, and the last good one stays.
    std::fs::write(&cfg, "[defaults]\ndns = [\"2001:db8::3\"]\nbogus = 1\n").unwrap();
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("configuration refused", Duration::from_secs(5));
    assert!(lab.log().contains("dhcpv6d.toml:3"), "{}", lab.log());
    let (env, _) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::2"));
}

/// The userspace path with two workers: a reload reaches both (each reads the table the
/// server loop publishes), so every answer after it, whichever worker gives it, is the new one.
#[test]
fn with_two_workers_a_reload_reaches_every_worker() {
    let mut lab = Lab::new("hw2");
    let cfg = lab.dir.join("dhcpv6d.toml");
    std::fs::write(&cfg, "[defaults]\ndns = [\"2001:db8::1\"]\n").unwrap();
    lab.start(&["--config", cfg.to_str().unwrap(), "--no-fast-path", "--workers", "2"]);
    let dns_of = |xid: u32| {
        let reply = lab
            .exchange(&common::load::information_request(xid), Duration::from_secs(3))
            .unwrap_or_else(|| panic!("no Reply to xid {xid}\n{}", lab.log()));
        let m = Message::parse(&reply).unwrap();
        m.find(23).map(<[u8]>::to_vec)
    };
    let one = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
    let two = "2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
    // Transaction IDs 1..=8 fall on both workers (steer::worker_of: by xid).
    let workers: std::collections::HashSet<u32> =
        (1..=8).map(|x| dhcpv6::steer::worker_of(&common::load::information_request(x), 2)).collect();
    assert_eq!(workers.len(), 2);
    for xid in 1..=8 {
        assert_eq!(dns_of(xid), Some(one.clone()), "xid {xid} before the reload");
    }
    std::fs::write(&cfg, "[defaults]\ndns = [\"2001:db8::2\"]\n").unwrap();
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("configuration reloaded", Duration::from_secs(5));
    for xid in 11..=18 {
        assert_eq!(dns_of(xid), Some(two.clone()), "xid {xid} after the reload");
    }
}

#[test]
fn link_local_change_is_followed_within_a_second() {
    let mut lab = Lab::new("ll");
    lab.start(ARGS);
    let old = lab.srv.wait_link_local("srv0", Duration::from_secs(5)).unwrap();
    lab.srv.run(&["ip", "-6", "addr", "del", &format!("{old}/64"), "dev", "srv0"]).unwrap();
    lab.srv.add_addr("srv0", "fe80::beef/64").unwrap();
    let t = std::time::Instant::now();
    lab.wait_log("link_local=fe80::beef", Duration::from_secs(1));
    eprintln!("map rewritten {:?} after the address change", t.elapsed());
    let (env, out) = lab.dhclient_stateless();
    assert!(out.contains("from fe80::beef"), "the reply comes from the new address:\n{out}");
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53 2001:db8::54"));
    assert!(lab.stats()["xdp_answered"] >= 1);
}

#[test]
fn dhcpcd_is_configured_statelessly() {
    testbed::ensure_tools(&[("dhcpcd", "dhcpcd-base")]).unwrap();
    let mut lab = Lab::new("dcd");
    lab.start(ARGS);
    let out = lab
        .cli
        .cmd("timeout")
        .args(["30", "dhcpcd", "-6", "--inform6", "-1", "-T", "-f", "/dev/null", "cli0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("2001:db8::53"), "dhcpcd got the DNS servers:\n{text}");
    assert!(text.contains("isp.example"), "dhcpcd got the search list:\n{text}");
    assert!(lab.stats()["xdp_answered"] >= 1);
}

#[test]
fn generic_xdp_mode_still_configures_the_client() {
    let mut lab = Lab::new("gen");
    let mut args = ARGS.to_vec();
    args.extend(["--xdp-mode", "generic"]);
    lab.start(&args);
    let (env, out) = lab.dhclient_stateless();
    assert_eq!(env.get("new_dhcp6_name_servers").map(String::as_str), Some("2001:db8::53 2001:db8::54"), "{out}");
    // Answered in XDP when the frame could grow, else passed up (counted) and answered by
    // userspace: either way counted, never lost.
    testbed::wait_for(Duration::from_secs(3), || {
        let s = lab.stats();
        Ok(s["xdp_answered"] + s.get("user_replied").copied().unwrap_or(0) >= 1)
    })
    .unwrap();
    let s = lab.stats();
    assert_eq!(s["xdp_answered"] + s["xdp_pass_no_room"], s["xdp_dhcp"] - s["xdp_pass_other_msg"], "{s:?}");
    eprintln!("generic mode: {s:?}");
}

#[test]
fn interface_recreated_is_reattached_and_served_by_xdp() {
    let mut lab = Lab::new("rc");
    lab.start(ARGS);
    let old = lab.srv.ifindex("srv0").unwrap();
    // Delete the veth pair and make it again with the same names: a new ifindex, no program.
    lab.srv.run(&["ip", "link", "del", "srv0"]).unwrap();
    lab.wait_log("interface disappeared", Duration::from_secs(5));
    lab.srv
        .run(&["ip", "link", "add", "srv0", "type", "veth", "peer", "name", "cli0", "netns", lab.cli.name()])
        .unwrap();
    lab.srv.run(&["ip", "link", "set", "srv0", "up"]).unwrap();
    lab.cli.run(&["ip", "link", "set", "cli0", "up"]).unwrap();
    lab.cli.set_tx_offload("cli0", false).unwrap();
    let out = lab
        .cli
        .cmd(common::lab::daemon_bin().to_str().unwrap())
        .args(["attach-aux", "--iface", "cli0", "--pin"])
        .arg(format!("{}-2", lab.aux_pin.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let new = lab.srv.ifindex("srv0").unwrap();
    assert_ne!(old, new);
    lab.cli.wait_link_local("cli0", Duration::from_secs(10)).unwrap();
    lab.wait_log(&format!("XDP attached iface=srv0 ifindex={new}"), Duration::from_secs(5));
    let before = lab.stats()["xdp_answered"];
    let (env, out) = lab.dhclient_stateless();
    let _ = std::fs::remove_file(format!("{}-2", lab.aux_pin.display()));
    assert_eq!(
        env.get("new_dhcp6_name_servers").map(String::as_str),
        Some("2001:db8::53 2001:db8::54"),
        "{out}\n{}",
        lab.log()
    );
    assert!(lab.stats()["xdp_answered"] > before, "answered by XDP on the new interface");
}

/// A driver without native XDP (a bridge): the daemon falls back to generic mode, says so,
/// and serves on.
#[test]
fn driver_without_native_xdp_falls_back_to_generic_mode() {
    let mut lab = Lab::new("dm");
    lab.srv.run(&["ip", "link", "add", "d0", "type", "bridge"]).unwrap();
    lab.srv.run(&["ip", "link", "set", "d0", "up"]).unwrap();
    lab.start(&["--iface", "d0", "--dns", "2001:db8::53"]);
    assert!(lab.log().contains("driver refused native XDP; attaching in generic mode"), "{}", lab.log());
    let out = lab.srv.run(&["ip", "-d", "link", "show", "d0"]).unwrap();
    assert!(out.contains("xdpgeneric"), "{out}");
    // srv0 (veth) still got driver mode.
    assert!(lab.srv.run(&["ip", "-d", "link", "show", "srv0"]).unwrap().contains("xdp "), "driver mode on veth");
}

/// The options probe: a raw option (`--option`) is in the XDP answer and in userspace's
/// byte for byte (userspace answers the request that carries a User Class not ignored,
/// which the program passes up); an ignored User Class gets no answer, to an
/// Information-Request (passed up by XDP, dropped by userspace) or a Solicit, and each drop
/// is counted.
#[test]
fn a_raw_option_is_byte_equal_from_both_paths_and_an_ignored_user_class_gets_nothing() {
    let mut lab = Lab::new("uc");
    let db = lab.dir.join("leases.db");
    let mut args = ARGS.to_vec();
    args.extend([
        "--option",
        "100:0a0b0c",
        "--ignore-user-class",
        "iptv",
        "--na-pool",
        "2001:db8:1::100-2001:db8:1::1ff",
    ]);
    args.extend(["--lease-db", db.to_str().unwrap()]);
    lab.start(&args);
    let iptv = opt(15, &[0, 4, b'i', b'p', b't', b'v']);
    let vod = opt(15, &[0, 3, b'v', b'o', b'd']);
    let xdp =
        lab.exchange(&message(11, &[client_id(14), oro(&[23, 24])]), Duration::from_secs(3)).expect("XDP answers");
    let s = lab.stats();
    assert!(s["xdp_answered"] >= 1, "{s:?}");
    let m = Message::parse(&xdp).unwrap();
    assert_eq!(m.find(100), Some(&[0x0a, 0x0b, 0x0c][..]), "the raw option in the XDP answer");
    let user = lab.exchange(&message(11, &[client_id(14), oro(&[23, 24]), vod]), Duration::from_secs(3));
    let user = user.expect("userspace answers a User Class that is not ignored");
    assert_eq!(user, xdp, "userspace's answer is the fast path's, byte for byte");
    let after = lab.stats();
    assert_eq!(after["xdp_pass_user_class"], s["xdp_pass_user_class"] + 1, "{after:?}");
    assert_eq!(after["xdp_answered"], s["xdp_answered"], "{after:?}");
    // Ignored: no answer to an Information-Request nor to a Solicit.
    assert_eq!(lab.exchange(&message(11, &[client_id(14), iptv.clone()]), Duration::from_secs(2)), None);
    let ia_na = opt(3, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(lab.exchange(&message(1, &[client_id(14), ia_na.clone(), iptv]), Duration::from_secs(2)), None);
    let advertise = lab.exchange(&message(1, &[client_id(14), ia_na]), Duration::from_secs(3)).expect("an Advertise");
    assert_eq!(Message::parse(&advertise).unwrap().msg_type(), 2);
    testbed::wait_for(
        Duration::from_secs(3),
        || Ok(lab.stats().get("user_drop_user_class").copied().unwrap_or(0) >= 2),
    )
    .unwrap();
    let s = lab.stats();
    assert_eq!(s["user_drop_user_class"], 2, "{s:?}");
    assert_eq!(s["xdp_pass_user_class"], after["xdp_pass_user_class"] + 1, "the IR went up: {s:?}");
}

/// With the fast path off, userspace alone: the raw option the same, the ignored class
/// dropped and counted.
#[test]
fn with_no_fast_path_the_raw_option_and_the_user_class_filter_are_the_same() {
    let mut lab = Lab::new("un");
    let mut args = ARGS.to_vec();
    args.extend(["--option", "100:0a0b0c", "--ignore-user-class", "iptv", "--no-fast-path"]);
    lab.start(&args);
    let r = lab.exchange(&message(11, &[client_id(14), oro(&[23, 24])]), Duration::from_secs(3)).expect("an answer");
    assert_eq!(Message::parse(&r).unwrap().find(100), Some(&[0x0a, 0x0b, 0x0c][..]));
    let iptv = opt(15, &[0, 4, b'i', b'p', b't', b'v']);
    assert_eq!(lab.exchange(&message(11, &[client_id(14), iptv]), Duration::from_secs(2)), None);
    testbed::wait_for(
        Duration::from_secs(3),
        || Ok(lab.stats().get("user_drop_user_class").copied().unwrap_or(0) >= 1),
    )
    .unwrap();
    assert_eq!(lab.stats()["xdp_answered"], 0);
}

/// Finding 6 and RFC 9915 section 16: a request from a global source that is not on the link
/// (spoofed, or routed from afar) gets no answer, nor does a client message sent by unicast;
/// both are counted. An Information-Request to our link-local address is still answered, as
/// the fast path does.
#[test]
fn off_link_sources_and_unicast_get_no_answer() {
    let mut lab = Lab::new("ol");
    lab.start(ARGS);
    let ir = message(11, &[client_id(14), oro(&[23])]);
    lab.cli.run(&["ip", "-6", "addr", "add", "2001:db8:99::9/64", "dev", "cli0", "nodad"]).unwrap();
    let spoofed = lab.exchange_in(&lab.cli, "cli0", ("2001:db8:99::9", 546), "ff02::1:2", &ir, Duration::from_secs(2));
    assert_eq!(spoofed, None, "no answer to an off-link source\n{}", lab.log());

    let text = lab.srv.run(&["ip", "-6", "-o", "addr", "show", "dev", "srv0", "scope", "link"]).unwrap();
    let ll = text
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on srv0: {text}"))
        .to_owned();
    let solicit = message(1, &[client_id(14), opt(3, &[0; 12]), opt(8, &[0, 0])]);
    let unicast = lab.exchange_in(&lab.cli, "cli0", ("::", 546), &ll, &solicit, Duration::from_secs(2));
    assert_eq!(unicast, None, "no answer to a unicast Solicit");
    // An Information-Request unicast to our link-local: passed up by the fast path, and
    // discarded there like every other unicast client message (RFC 9915 section 16).
    let answered = lab.exchange_in(&lab.cli, "cli0", ("::", 546), &ll, &ir, Duration::from_secs(2));
    assert_eq!(answered, None, "no answer to a unicast Information-Request");
    testbed::wait_for(Duration::from_secs(3), || {
        let s = lab.stats();
        Ok(s.get("user_drop_off_link_source").copied().unwrap_or(0) >= 1
            && s.get("user_drop_unicast").copied().unwrap_or(0) >= 2)
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", lab.stats()));
    let s = lab.stats();
    assert_eq!(s["user_replied"], 0, "userspace answered nothing: {s:?}");
    assert!(s["xdp_pass_addressing"] >= 1, "the fast path left the off-link source to userspace: {s:?}");
}
