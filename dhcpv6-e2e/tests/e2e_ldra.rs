//! End to end, a lightweight relay (RFC 6221) in front of dhcpv6d: crafted LDRA
//! Relay-Forwards (hop-count 0, link-address ::, peer-address the client's link-local
//! address, Interface-ID) from the client namespace, as an access node on the link sends
//! them, answered by the XDP fast path. No Debian package provides an LDRA (isc-dhcp-relay,
//! wide-dhcpv6-relay and dnsmasq relay at layer 3, with a link-address of their own), so the
//! relay's frames are crafted here.

mod common;

use std::{path::Path, time::Duration};

use common::{lab::Lab, *};
use dhcpv6::wire::{Message, RelayMessage};

/// The served interface's options, and a `[[link]]` with options of its own named as an
/// Interface-ID; lightweight relays on the link are trusted (`fe80::/10`).
const CONFIG: &str = "[[interface]]\nname = \"srv0\"\ndns = [\"2001:db8::53\"]\ndomains = [\"srv0.example\"]\n\
                      trusted_relays = [\"fe80::/10\"]\n\
                      [[link]]\nname = \"olt-7\"\nna_pools = [\"2001:db8:7::100-2001:db8:7::1ff\"]\n\
                      dns = [\"2001:db8:7::53\"]\n";

fn link_local(ns: &testbed::Netns, ifname: &str) -> std::net::Ipv6Addr {
    let text = ns.run(&["ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link"]).unwrap();
    text.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on {ifname}: {text}"))
}

/// An LDRA's Relay-Forward for the client at `peer`.
fn ldra(peer: std::net::Ipv6Addr, iid: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut m = vec![12, 0];
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&peer.octets());
    m.extend_from_slice(&opt(18, iid));
    m.extend_from_slice(&opt(37, &[0, 0, 0x0d, 0xe9, b'o', b'n', b't']));
    m.extend_from_slice(&opt(9, inner));
    m
}

/// What the relay receives for one Relay-Forward sent from cli0's port 547 to ff02::1:2:
/// the payload, the sender's address and port and the hop limit, or `None`.
fn exchange(lab: &Lab, payload: &[u8]) -> Option<(Vec<u8>, String)> {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.setsockopt(socket.SOL_SOCKET,25,b'cli0')\n\
         s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_RECVHOPLIMIT,1)\n\
         s.bind(('::',547))\n\
         s.sendto(bytes.fromhex('{hex}'),('ff02::1:2',547,0,socket.if_nametoindex('cli0')))\n\
         s.settimeout(3)\n\
         try:\n  d,anc,fl,a=s.recvmsg(65535,256)\n\
         except socket.timeout:\n  print('none'); raise SystemExit\n\
         hl=[int.from_bytes(x[2],'little') for x in anc if x[1]==socket.IPV6_HOPLIMIT]\n\
         print(d.hex()); print(a[0].split('%')[0], a[1], hl)\n"
    );
    let out = lab.cli.cmd("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let first = lines.next()?.trim();
    if first == "none" {
        return None;
    }
    let bytes = (0..first.len()).step_by(2).map(|i| u8::from_str_radix(&first[i..i + 2], 16).unwrap()).collect();
    Some((bytes, lines.next().unwrap_or_default().to_owned()))
}

/// A packet capture on the server's own interface, inside its namespace.
struct Capture {
    proc: testbed::Proc,
    pcap: std::path::PathBuf,
}

impl Capture {
    fn start(lab: &Lab, name: &str) -> Capture {
        let pcap = lab.dir.join(format!("{name}.pcap"));
        let log = lab.dir.join(format!("{name}.log"));
        let proc = lab
            .srv
            .spawn(
                &["tshark", "-q", "-i", "srv0", "-f", "udp port 547 or udp port 546", "-w", path_str(&pcap)],
                Some(&log),
            )
            .unwrap();
        testbed::wait_for(Duration::from_secs(15), || {
            Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("Capturing on"))
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Capture { proc, pcap }
    }

    /// Stops the capture; the number of frames it saw.
    fn frames(self, lab: &Lab) -> usize {
        std::thread::sleep(Duration::from_millis(500));
        self.proc.terminate();
        let out = lab.srv.run(&["tshark", "-r", path_str(&self.pcap), "-T", "fields", "-e", "frame.number"]).unwrap();
        out.lines().filter(|l| !l.trim().is_empty()).count()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The Reply inside a Relay-Reply, and the DNS server it gives.
fn inner_dns(relay_reply: &[u8]) -> Vec<u8> {
    let r = RelayMessage::parse(relay_reply).unwrap();
    let m = Message::parse(r.relay_message().unwrap()).unwrap();
    m.find(23).expect("DNS option").to_vec()
}

#[test]
fn ldra_information_requests_are_answered_in_xdp_byte_equal_to_userspace() {
    testbed::ensure_tools(&[("tshark", "tshark")]).unwrap();
    let mut lab = Lab::new("ld");
    let cfg = lab.dir.join("server.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let db = lab.dir.join("leases.db");
    let args = ["--config", path_str(&cfg), "--lease-db", path_str(&db)];
    lab.start(&args);
    let client = link_local(&lab.cli, "cli0");
    let server = link_local(&lab.srv, "srv0");
    let ir = message(11, &[client_id(14), oro(&[23, 24]), opt(8, &[0, 0])]);
    let requests = [("port 7", ldra(client, b"port-7", &ir)), ("olt-7", ldra(client, b"olt-7", &ir))];

    // XDP: the capture on srv0 sees neither the Relay-Forwards nor the Relay-Replies.
    let cap = Capture::start(&lab, "xdp");
    let xdp: Vec<(Vec<u8>, String)> = requests
        .iter()
        .map(|(name, r)| exchange(&lab, r).unwrap_or_else(|| panic!("{name}: no answer\n{}", lab.log())))
        .collect();
    let seen = cap.frames(&lab);
    let s = lab.stats();
    assert_eq!(s["xdp_tx_relayed_ir"], 2, "{s:?}\n{}", lab.log());
    assert_eq!(s.get("user_received").copied().unwrap_or(0), 0, "userspace saw nothing: {s:?}");
    assert_eq!(seen, 0, "the server's own interface saw no frame of the exchanges");
    for (bytes, from) in &xdp {
        let r = RelayMessage::parse(bytes).unwrap();
        assert_eq!((r.msg_type(), r.hop_count(), r.peer_address()), (13, 0, client));
        assert!(r.link_address().is_unspecified());
        assert!(from.starts_with(&format!("{server} 547 ")), "from our link-local, port 547: {from}");
    }
    assert_eq!(RelayMessage::parse(&xdp[0].0).unwrap().find(18), Some(&b"port-7"[..]), "Interface-ID echoed");
    assert_eq!(inner_dns(&xdp[0].0), "2001:db8::53".parse::<std::net::Ipv6Addr>().unwrap().octets());
    assert_eq!(inner_dns(&xdp[1].0), "2001:db8:7::53".parse::<std::net::Ipv6Addr>().unwrap().octets(), "the link's");

    // The capture works: a relayed Solicit goes up (pass_relay_inner) and is seen there.
    let cap = Capture::start(&lab, "control");
    let solicit = message(1, &[client_id(14), opt(3, &[0; 12]), opt(8, &[0, 0])]);
    let _ = exchange(&lab, &ldra(client, b"olt-7", &solicit));
    assert!(cap.frames(&lab) >= 1, "the capture on srv0 sees what XDP passes up");
    assert!(lab.stats()["xdp_pass_relay_inner"] >= 1);

    // Userspace alone (--no-fast-path): the same bytes, from the same address and port,
    // with the same hop limit.
    lab.stop(false);
    let mut args = args.to_vec();
    args.push("--no-fast-path");
    lab.start(&args);
    for ((name, r), (bytes, from)) in requests.iter().zip(&xdp) {
        let (user, user_from) = exchange(&lab, r).unwrap_or_else(|| panic!("{name}: userspace gave no answer"));
        assert_eq!(&user, bytes, "{name}: userspace's Relay-Reply is the fast path's, byte for byte");
        assert_eq!(&user_from, from, "{name}");
    }
    let s = lab.stats();
    assert!(s["xdp_pass_fast_path_off"] >= 2, "{s:?}");
}

/// Without `fe80::/10` among the trusted relays the program passes a lightweight relay's
/// Relay-Forward up, and userspace drops it as untrusted.
#[test]
fn an_untrusted_lightweight_relay_gets_no_answer() {
    let mut lab = Lab::new("lu");
    let cfg = lab.dir.join("server.toml");
    std::fs::write(&cfg, CONFIG.replace("trusted_relays = [\"fe80::/10\"]\n", "")).unwrap();
    lab.start(&["--config", path_str(&cfg), "--trusted-relay", "fe80::1234"]);
    let client = link_local(&lab.cli, "cli0");
    let ir = message(11, &[client_id(14), oro(&[23])]);
    assert_eq!(exchange(&lab, &ldra(client, b"port-7", &ir)), None);
    testbed::wait_for(Duration::from_secs(3), || {
        Ok(lab.stats().get("user_drop_untrusted_relay").copied().unwrap_or(0) >= 1)
    })
    .unwrap();
    let s = lab.stats();
    assert_eq!(s["xdp_pass_relay_untrusted"], 1, "{s:?}");
    assert_eq!(s["xdp_tx_relayed_ir"], 0, "{s:?}");
}

/// SIGHUP rewrites the links in the map: a link's new options, a new link, and a link whose
/// options went away (its Interface-ID then gets the interface's), all answered in XDP.
#[test]
fn sighup_rewrites_the_links_the_fast_path_answers_relayed_requests_with() {
    let mut lab = Lab::new("lh");
    let cfg = lab.dir.join("server.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let db = lab.dir.join("leases.db");
    lab.start(&["--config", path_str(&cfg), "--lease-db", path_str(&db)]);
    let client = link_local(&lab.cli, "cli0");
    let ir = message(11, &[client_id(14), oro(&[23])]);
    let dns = |lab: &Lab, iid: &[u8]| {
        let (r, _) = exchange(lab, &ldra(client, iid, &ir)).unwrap_or_else(|| panic!("no answer\n{}", lab.log()));
        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&inner_dns(&r)[..16]).unwrap())
    };
    let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    assert_eq!(dns(&lab, b"olt-7"), a("2001:db8:7::53"));
    assert_eq!(dns(&lab, b"olt-8"), a("2001:db8::53"), "no such link: the interface's");
    let next = CONFIG.replace("2001:db8:7::53", "2001:db8:7::54")
        + "[[link]]\nname = \"olt-8\"\nna_pools = [\"2001:db8:8::100-2001:db8:8::1ff\"]\ndns = [\"2001:db8:8::53\"]\n";
    std::fs::write(&cfg, next).unwrap();
    lab.signal(testbed::signal::SIGHUP);
    lab.wait_log("configuration reloaded", Duration::from_secs(5));
    testbed::wait_for(Duration::from_secs(5), || Ok(dns(&lab, b"olt-8") == a("2001:db8:8::53"))).unwrap();
    assert_eq!(dns(&lab, b"olt-7"), a("2001:db8:7::54"));
    // olt-7 keeps its pool but loses its options.
    let fewer = CONFIG.replace("dns = [\"2001:db8:7::53\"]\n", "");
    std::fs::write(&cfg, fewer).unwrap();
    lab.signal(testbed::signal::SIGHUP);
    testbed::wait_for(Duration::from_secs(5), || Ok(dns(&lab, b"olt-7") == a("2001:db8::53"))).unwrap();
    assert_eq!(dns(&lab, b"olt-8"), a("2001:db8::53"));
    let s = lab.stats();
    assert_eq!(s.get("user_received").copied().unwrap_or(0), 0, "all answered in XDP: {s:?}");
    assert!(s["xdp_tx_relayed_ir"] >= 6, "{s:?}");
}
