//! The configuration from text: each test passes TOML and a name for messages; one reads a
//! real file.

use std::net::Ipv6Addr;
use std::path::Path;

use super::*;
use crate::resolv::HostResolver;
use crate::server::stateful::{ConfigError as LinksError, LifetimeProblem, PoolError};

fn load_text(text: &str, flags: &Overrides) -> Result<Config, ConfigError> {
    from_str(text, "dhcpv6d.toml")?.merge(flags, &HostResolver::default())
}

fn refused(text: &str) -> String {
    load_text(text, &Overrides::default()).unwrap_err().to_string()
}

/// A served interface, for files that only have `[[link]]`s.
fn serve_eth9() -> Overrides {
    Overrides { ifaces: vec!["eth9".into()], ..Default::default() }
}

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn unknown_key_names_file_and_line() {
    let e = load_text("[defaults]\ndns = [\"2001:db8::1\"]\ndsn = 1\n", &Overrides::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(":3: unknown field `dsn`"), "{msg}");
    assert!(msg.starts_with("dhcpv6d.toml:3: "), "{msg}");
    assert!(matches!(e, ConfigError::Invalid { line: 3, reason: Reason::Syntax(_), .. }), "{e:?}");
}

#[test]
fn bad_address_and_bad_domain_are_refused_with_line() {
    let e =
        load_text("[[interface]]\nname = \"eth1\"\n\ndns = [\"not-an-address\"]\n", &Overrides::default()).unwrap_err();
    assert!(e.to_string().contains(":4:"), "{e}");
    let e = load_text("[defaults]\n\ndomains = [\"a..b\"]\n[[interface]]\nname = \"eth1\"\n", &Overrides::default())
        .unwrap_err();
    assert!(e.to_string().contains(":3: domain"), "{e}");
    assert!(matches!(e, ConfigError::Invalid { line: 3, reason: Reason::Domain { .. }, .. }), "{e:?}");
}

#[test]
fn interface_overrides_defaults_and_flags_override_both() {
    let text = "[defaults]\ndns = [\"2001:db8::1\"]\ndomains = [\"d.example\"]\n[[interface]]\nname = \"eth1\"\ndns = [\"2001:db8::2\"]\n";
    let c = load_text(text, &Overrides { ifaces: vec!["eth2".into()], ..Default::default() }).unwrap();
    let c = c.ifaces();
    assert_eq!(c[0].service().dns, vec![a("2001:db8::2")]);
    assert_eq!(c[0].service().domains, vec!["d.example"]);
    assert_eq!(c[1].name(), "eth2");
    assert_eq!(c[1].service().dns, vec![a("2001:db8::1")]);
    let flags = Overrides { dns: vec![a("2001:db8::9")], ..Default::default() };
    let c = load_text(text, &flags).unwrap();
    assert_eq!(c.ifaces()[0].service().dns, flags.dns);
    assert_eq!(c.ifaces()[0].service().information_refresh_time, Some(DEFAULT_IRT));
}

#[test]
fn host_defaults_fill_what_nobody_configured() {
    let host = HostResolver { dns: vec![a("2001:db8::35")], domains: vec!["host.example".into()] };
    let text = "[[interface]]\nname = \"eth1\"\ndomains = [\"mine.example\"]\n";
    let c = from_str(text, "t.toml").unwrap().merge(&Overrides::default(), &host).unwrap();
    let s = c.ifaces()[0].service();
    assert_eq!((s.dns.clone(), s.domains.clone()), (host.dns.clone(), vec!["mine.example".to_owned()]));
    assert_eq!((s.inf_max_rt, s.ntp.len()), (Some(DEFAULT_INF_MAX_RT), 0));
    let flags = Overrides { domains: vec!["flag.example".into()], ..Default::default() };
    let c = from_str(text, "t.toml").unwrap().merge(&flags, &host).unwrap();
    assert_eq!(c.ifaces()[0].service().domains, vec!["flag.example"]);
    let bad = Overrides { domains: vec!["a..b".into()], ..Default::default() };
    let e = from_str(text, "t.toml").unwrap().merge(&bad, &host).unwrap_err();
    assert!(e.to_string().starts_with("--domain: domain \"a..b\""), "{e}");
}

#[test]
fn interface_names_are_checked_on_their_line() {
    let e = refused("[[interface]]\nname = \"eth1\"\n[[interface]]\nname = \"eth1\"\n");
    assert_eq!(e, "dhcpv6d.toml:4: interface \"eth1\" is configured twice");
    let e = refused("\n[[interface]]\nname = \"a/b\"\n");
    assert_eq!(e, "dhcpv6d.toml:3: interface name \"a/b\" is not a Linux interface name");
}

#[test]
fn relay_section_and_flags() {
    let text = "[relay]\nupstream = \"up0\"\ndownstream = [\"dn0\"]\nservers = [\"2001:db8::547\"]\n";
    let c = load_text(text, &Overrides::default()).unwrap();
    let r = c.relay().unwrap();
    assert_eq!((r.upstream(), r.downstream().to_vec()), ("up0", vec!["dn0".to_owned()]));
    assert_eq!(r.servers(), [a("2001:db8::547")]);
    assert_eq!(r.rewrite_dns(), None);
    let flags = Overrides { ifaces: vec!["dn0".into()], ..Default::default() };
    let e = load_text(text, &flags).unwrap_err();
    assert!(matches!(e, ConfigError::ServeAndRelay(ref i) if i == "dn0"), "an interface cannot both serve and relay");
    let flags = Overrides { relay_upstream: Some("up1".into()), ..Default::default() };
    assert!(matches!(load_text(text, &flags), Err(ConfigError::NoDownstream)), "the flags replace [relay]");
    let flags = Overrides {
        relay_upstream: Some("up1".into()),
        relay_downstream: vec!["dn1".into()],
        relay_rewrite_dns: vec![a("2001:db8::53")],
        ..Default::default()
    };
    let c = load_text(text, &flags).unwrap();
    let r = c.relay().unwrap();
    assert_eq!((r.upstream(), r.downstream(), r.servers()), ("up1", &["dn1".to_owned()][..], &[][..]));
    assert_eq!(r.rewrite_dns(), Some(&[a("2001:db8::53")][..]));
}

#[test]
fn pools_per_interface_per_link_and_from_flags() {
    let text = "[[interface]]\nname = \"eth1\"\nna_pools = [\"2001:db8:1::100-2001:db8:1::1ff\"]\npd_pools = [\"2001:db8:100::/40:56\"]\nrapid_commit = true\n[[interface.reservation]]\nduid = \"00:03:00:01:02:00:00:00:00:01\"\naddress = \"2001:db8:1::150\"\n[[link]]\nname = \"access-7\"\nna_pools = [\"2001:db8:7::100-2001:db8:7::1ff\"]\n";
    let c = load_text(text, &Overrides::default()).unwrap();
    let links = c.links();
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].link, "eth1");
    assert!(links[0].rapid_commit);
    assert!(links[0].reject_unicast);
    assert_eq!(links[0].reservations.len(), 1);
    assert_eq!(links[0].reservations[0].address, Some(a("2001:db8:1::150")));
    assert_eq!(links[1].link, "access-7");
    let e = load_text(
        "[[interface]]\nname = \"eth1\"\n\nna_pools = [\"2001:db8::9-2001:db8::1\"]\n",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains(":4:"), "{e}");
    assert!(matches!(e, ConfigError::Invalid { reason: Reason::Pool(PoolError::Reversed { .. }), .. }), "{e:?}");
    let flags = Overrides {
        ifaces: vec!["eth1".into()],
        na_pools: vec!["2001:db8:1::10-2001:db8:1::20".into()],
        ..Default::default()
    };
    let c = load(None, &flags, Path::new("/nonexistent")).unwrap();
    assert_eq!(c.links()[0].link, DEFAULT_LINK);
    let bad =
        Overrides { ifaces: vec!["eth1".into()], pd_pools: vec!["2001:db8::/64:56".into()], ..Default::default() };
    assert!(load(None, &bad, Path::new("/nonexistent")).unwrap_err().to_string().contains("--pd-pool"));
}

#[test]
fn an_interface_without_pools_is_no_link() {
    let c = load_text("[[interface]]\nname = \"eth1\"\n[[interface]]\nname = \"eth2\"\nna_pools = [\"2001:db8:2::1-2001:db8:2::9\"]\n", &Overrides::default()).unwrap();
    assert_eq!(c.links().iter().map(|l| l.link.as_str()).collect::<Vec<_>>(), ["eth2"]);
}

/// Overlaps between links are found without an engine and blamed on the pool written last.
#[test]
fn overlapping_pools_name_the_later_pool() {
    let text = "[[link]]\nname = \"b\"\nna_pools = [\"2001:db8::100-2001:db8::1ff\"]\n\n[[interface]]\nname = \"eth1\"\nna_pools = [\n  \"2001:db8:1::1-2001:db8:1::9\",\n  \"2001:db8::1f0-2001:db8::2ff\",\n]\n";
    let e = load_text(text, &Overrides::default()).unwrap_err();
    let ConfigError::Invalid { line, reason: Reason::Links(LinksError::Overlap { what, .. }), .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!((*line, *what), (9, "address ranges"), "{e}");
    assert!(e.to_string().starts_with("dhcpv6d.toml:9: address ranges overlap: "), "{e}");
    let e = refused("[[link]]\nname = \"a\"\npd_pools = [\"2001:db8::/40:56\"]\n[[link]]\nname = \"b\"\npd_pools = [\"2001:db8:80::/41:56\"]\n");
    assert!(e.starts_with("dhcpv6d.toml:6: prefix pools overlap"), "{e}");
    let e = refused(
        "[[link]]\nname = \"a\"\nna_pools = [\"2001:db8::10-2001:db8::20\"]\npd_pools = [\"2001:db8::/48:56\"]\n",
    );
    assert!(e.starts_with("dhcpv6d.toml:4: prefix pool and link prefix overlap"), "{e}");
    let e =
        refused("[[interface]]\nname = \"x\"\nna_pools = [\"2001:db8::10-2001:db8::20\"]\n[[link]]\nname = \"x\"\n");
    assert_eq!(e, "dhcpv6d.toml:5: link \"x\" is configured twice");
}

#[test]
fn lifetimes_are_checked_on_the_key_at_fault() {
    let pools = "[[link]]\nname = \"a\"\nna_pools = [\"2001:db8::10-2001:db8::20\"]\n";
    let e = load_text(&format!("{pools}valid_lifetime = 1000\n"), &Overrides::default()).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                line: 4,
                reason: Reason::Links(LinksError::Lifetimes { reason: LifetimeProblem::PreferredOverValid, .. }),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "dhcpv6d.toml:4: link \"a\": lifetimes: preferred lifetime is longer than the valid lifetime"
    );
    let e = refused(&format!("{pools}t2 = 100\nt1 = 200\n"));
    assert_eq!(e, "dhcpv6d.toml:5: link \"a\": lifetimes: T1 is later than T2");
    let e = refused(&format!("{pools}valid_lifetime = 0\n"));
    assert!(e.starts_with("dhcpv6d.toml:4: "), "{e}");
    let c =
        load_text(&format!("{pools}preferred_lifetime = 100\nvalid_lifetime = 200\nt2 = 90\n"), &serve_eth9()).unwrap();
    let l = c.links()[0].lifetimes;
    assert_eq!((l.preferred, l.valid, l.t1, l.t2), (100, 200, 50, 90));
}

#[test]
fn reservations_are_checked_on_their_lines() {
    let link =
        "[[link]]\nname = \"a\"\nna_pools = [\"2001:db8::10-2001:db8::20\"]\npd_pools = [\"2001:db8:100::/40:56\"]\n";
    let e = refused(&format!(
        "{link}[[link.reservation]]\nduid = \"00:03:00:01:02:00:00:00:00:01\"\naddress = \"2001:db9::1\"\n"
    ));
    assert!(e.starts_with("dhcpv6d.toml:7: link \"a\": reservation 0: 2001:db9::1 is not in a prefix"), "{e}");
    let e = refused(&format!("{link}[[link.reservation]]\n\naddress = \"2001:db8::15\"\n"));
    assert!(e.starts_with("dhcpv6d.toml:7: link \"a\": reservation 0: no DUID"), "{e}");
    let e = refused(&format!(
        "{link}[[link.reservation]]\nremote_id = \"00000009:01\"\nprefix = \"2001:db8:100:100::/60\"\n"
    ));
    assert!(e.starts_with("dhcpv6d.toml:7: ") && e.contains("is not one of its prefixes"), "{e}");
    let e = refused(&format!("{link}[[link.reservation]]\nremote_id = \"00000009:01\"\naddress = \"x\"\n"));
    assert!(e.starts_with("dhcpv6d.toml:7: "), "{e}");
    let e = refused(&format!("{link}[[link.reservation]]\nremote_id = \"0009:1\"\n"));
    assert_eq!(e, "dhcpv6d.toml:6: remote_id \"0009:1\" is not hex bytes");
    let e = refused(&format!("{link}[[link.reservation]]\nduid = \"00:01\"\n"));
    assert!(e.starts_with("dhcpv6d.toml:6: DUID of 2 bytes"), "{e}");
    let e = refused(&format!(
        "{link}[[link.reservation]]\nduid = \"00:03:00:01:02:00:00:00:00:01\"\nprefix = \"2001:db8:9000::\"\n"
    ));
    assert_eq!(e, "dhcpv6d.toml:7: prefix needs /LEN");
    let ok = format!("{link}[[link.reservation]]\nclient_mac = \"02:00:00:00:00:07\"\ninterface_id = \"port-1/7\"\niaid = 3\nprefix = \"2001:db8:100:100::/56\"\n");
    let c = load_text(&ok, &serve_eth9()).unwrap();
    let r = &c.links()[0].reservations[0];
    assert_eq!(r.client_linklayer.as_deref(), Some(&[0, 1, 2, 0, 0, 0, 0, 7][..]));
    assert_eq!((r.interface_id.as_deref(), r.iaid), (Some(&b"port-1/7"[..]), Some(3)));
    assert_eq!(r.prefix, Some((a("2001:db8:100:100::"), 56)));
}

#[test]
fn pools_of_the_flags_are_checked_against_the_file() {
    let text = "[[interface]]\nname = \"eth1\"\nna_pools = [\"2001:db8:1::100-2001:db8:1::1ff\"]\n";
    let flags = Overrides { na_pools: vec!["2001:db8:1::1f0-2001:db8:1::2ff".into()], ..Default::default() };
    let e = load_text(text, &flags).unwrap_err();
    assert!(matches!(e, ConfigError::Flag { reason: Reason::Links(LinksError::Overlap { .. }), .. }), "{e:?}");
    assert!(e.to_string().starts_with("--na-pool/--pd-pool: address ranges overlap"), "{e}");
    let text = "[[link]]\nname = \"default\"\n";
    let flags = Overrides {
        ifaces: vec!["eth1".into()],
        na_pools: vec!["2001:db8:1::1-2001:db8:1::2".into()],
        ..Default::default()
    };
    let e = load_text(text, &flags).unwrap_err();
    assert_eq!(e.to_string(), "--na-pool/--pd-pool: link \"default\" is configured twice");
}

#[test]
fn no_interface_is_an_error() {
    assert!(matches!(load(None, &Overrides::default(), Path::new("/nonexistent")), Err(ConfigError::NothingToServe)));
}

#[test]
fn trusted_relays_from_the_file_and_the_flags() {
    let text = "[[interface]]\nname = \"eth1\"\ntrusted_relays = [\"2001:db8:1::2\", \"2001:db8:7::/48\"]\n[[interface]]\nname = \"eth2\"\n";
    let c = load_text(text, &Overrides::default()).unwrap();
    let (eth1, eth2) = (c.ifaces()[0].trusted_relays(), c.ifaces()[1].trusted_relays());
    assert!(eth1.admits(&a("2001:db8:1::2")) && eth1.admits(&a("2001:db8:7:ff::1")));
    assert!(!eth1.admits(&a("2001:db8:1::3")) && !eth1.admits(&a("fe80::2")));
    assert!(eth2.is_empty(), "nothing named, nobody trusted");
    // --trusted-relay: on every interface, the file's and the flags' own, and below a relay.
    let flags = Overrides {
        ifaces: vec!["eth3".into()],
        trusted_relays: vec!["fe80::/10".into(), "2001:db8:9::9".into()],
        ..Default::default()
    };
    let c = load_text(&format!("{text}[relay]\nupstream = \"up0\"\ndownstream = [\"dn0\"]\n"), &flags).unwrap();
    for i in c.ifaces() {
        assert!(i.trusted_relays().admits(&a("fe80::1")) && i.trusted_relays().admits(&a("2001:db8:9::9")), "{i:?}");
    }
    assert!(c.ifaces()[0].trusted_relays().admits(&a("2001:db8:1::2")), "the file's are kept");
    assert_eq!(c.ifaces()[2].name(), "eth3");
    assert!(c.relay().unwrap().trusted_relays().admits(&a("fe80::1")));
    // Refused: in the file on its line, on the command line by flag.
    let e = load_text(
        "[[interface]]\nname = \"eth1\"\ntrusted_relays = [\n  \"2001:db8::1\",\n  \"2001:db8::/129\",\n]\n",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { line: 5, reason: Reason::TrustedRelay { .. }, .. }), "{e:?}");
    assert!(e.to_string().starts_with("dhcpv6d.toml:5: trusted relay \"2001:db8::/129\""), "{e}");
    let e = load_text(
        "[relay]\nupstream = \"up0\"\ndownstream = [\"dn0\"]\ntrusted_relays = [\"eth0\"]\n",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { line: 4, reason: Reason::TrustedRelay { .. }, .. }), "{e:?}");
    let flags = Overrides { ifaces: vec!["eth1".into()], trusted_relays: vec!["nope".into()], ..Default::default() };
    let e = load_text("", &flags).unwrap_err();
    assert!(e.to_string().starts_with("--trusted-relay: trusted relay \"nope\""), "{e}");
}

/// The one test that goes through the file system: the example with every documented key.
#[test]
fn reads_the_example_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/example.toml");
    let c = load(Some(&path), &Overrides::default(), Path::new("/nonexistent")).unwrap();
    assert_eq!(c.ifaces().len(), 1);
    let s = c.ifaces()[0].service();
    assert_eq!(s.dns, vec![a("2001:db8:1::53")]);
    assert_eq!((s.ntp.clone(), s.sntp.clone()), (vec![a("2001:db8::123")], vec![a("2001:db8::124")]));
    assert_eq!(c.links().iter().map(|l| l.link.as_str()).collect::<Vec<_>>(), ["eth1", "olt-7"]);
    assert_eq!(c.links()[1].reservations[0].remote_id.as_deref(), Some(&[0, 0, 0, 9, 1, 2][..]));
    assert_eq!((c.links()[0].limits.per_client, c.links()[0].limits.declined_per_link), (8, 64));
    assert!(c.links()[0].create_on_renew);
    assert_eq!((c.links()[1].limits.per_client, c.links()[1].limits.per_mac), (8, 16));
    assert_eq!(c.relay().map(|r| r.downstream().len()), Some(2));
    assert_eq!(c.ifaces()[0].server_duid().map(|d| d.to_hex()).as_deref(), Some("0002000004d2646863707636"));
    let script = c.lease_script().unwrap();
    assert_eq!((script.path.as_path(), script.timeout), (Path::new("/bin/true"), std::time::Duration::from_secs(10)));
    assert_eq!(c.workers(), Some(2));
    let t = c.ifaces()[0].trusted_relays();
    assert!(t.admits(&a("2001:db8:1::2")) && t.admits(&a("fe80::7")) && !t.admits(&a("2001:db8:1::3")));
    assert!(c.leasequery_from().admits(&a("2001:db8:ff::9")) && !c.leasequery_from().admits(&a("2001:db8:fe::9")));
    assert!(c.relay().unwrap().trusted_relays().admits(&a("fe80::7")));
    assert_eq!(
        c.store(),
        &crate::leases::StoreSpec::Postgres("postgresql:///dhcpv6?host=/run/postgresql&port=5432&user=dhcp".into())
    );
    let e = load(Some(Path::new("/nonexistent/dhcpv6d.toml")), &Overrides::default(), Path::new("/nonexistent"));
    assert!(matches!(e, Err(ConfigError::Read { .. })), "{e:?}");
}

#[test]
fn sol_max_rt_is_checked_on_its_line_and_flag() {
    let e = refused("[defaults]\nsol_max_rt = 30\n[[interface]]\nname = \"eth9\"\n");
    assert!(e.starts_with("dhcpv6d.toml:2:") && e.contains("sol_max_rt 30 is outside 60..=86400"), "{e}");
    let c = load_text("[defaults]\nsol_max_rt = 600\n[[interface]]\nname = \"eth9\"\n", &Overrides::default()).unwrap();
    assert_eq!(c.ifaces()[0].service().sol_max_rt, Some(600));
    let flags = Overrides { sol_max_rt: Some(100_000), ..serve_eth9() };
    let e = load_text("", &flags).unwrap_err().to_string();
    assert!(e.starts_with("--sol-max-rt:"), "{e}");
    let flags = Overrides { sol_max_rt: Some(120), ..serve_eth9() };
    let c = load_text("[defaults]\nsol_max_rt = 600\n", &flags).unwrap();
    assert_eq!(c.ifaces()[0].service().sol_max_rt, Some(120), "the flag wins over the file");
}

#[test]
fn limits_and_create_on_renew_per_link_over_defaults_and_flags_over_both() {
    use crate::server::stateful::ClientLimits;
    let text = "[defaults]\nmax_leases_per_client = 4\nmax_declined_per_link = 16\ncreate_on_renew = false\n\
                [[interface]]\nname = \"eth1\"\nna_pools = [\"2001:db8:1::100-2001:db8:1::1ff\"]\n\
                max_leases_per_mac = 32\nmax_declined_per_client = 1\n\
                [[link]]\nname = \"olt-1\"\nna_pools = [\"2001:db8:7::100-2001:db8:7::1ff\"]\n\
                max_leases_per_client = 2\ncreate_on_renew = true\n\
                [[link]]\nname = \"olt-2\"\nna_pools = [\"2001:db8:8::100-2001:db8:8::1ff\"]\n";
    let c = load_text(text, &Overrides::default()).unwrap();
    let d = ClientLimits::default();
    let [eth1, olt1, olt2] = c.links() else { panic!("three links") };
    assert_eq!(eth1.limits, ClientLimits { per_client: 4, per_mac: 32, declined_per_client: 1, declined_per_link: 16 });
    assert!(!eth1.create_on_renew);
    assert_eq!(olt1.limits, ClientLimits { per_client: 2, declined_per_link: 16, ..d });
    assert!(olt1.create_on_renew);
    assert_eq!(olt2.limits, ClientLimits { per_client: 4, declined_per_link: 16, ..d });
    // Without a file: the built-in defaults, which fit a CPE.
    let flags = Overrides {
        ifaces: vec!["eth1".into()],
        na_pools: vec!["2001:db8:1::10-2001:db8:1::20".into()],
        ..Default::default()
    };
    let c = load(None, &flags, Path::new("/nonexistent")).unwrap();
    assert_eq!(
        c.links()[0].limits,
        ClientLimits { per_client: 8, per_mac: 8, declined_per_client: 2, declined_per_link: 64 }
    );
    assert!(c.links()[0].create_on_renew);
    // The flags over every link, the file's and their own.
    let flags = Overrides {
        max_leases_per_mac: Some(0),
        max_leases_per_client: Some(3),
        na_pools: vec!["2001:db8:9::10-2001:db8:9::20".into()],
        ..flags
    };
    let c = load_text(text, &flags).unwrap();
    assert_eq!(c.links().len(), 4);
    assert!(c.links().iter().all(|l| l.limits.per_mac == 0 && l.limits.per_client == 3), "{:?}", c.links());
    assert_eq!(c.links()[0].limits.declined_per_client, 1, "what the flags do not name stays");
    // A typo is an error on its line.
    let e = load_text("[[link]]\nname = \"x\"\nmax_leases_per_clinet = 3\n", &Overrides::default()).unwrap_err();
    assert!(e.to_string().contains(":3:"), "{e}");
}

/// Found by the `config` fuzz target's invariant (every accepted option says its own length):
/// 4,096 DNS servers were accepted and encoded with a length field of 0.
#[test]
fn lists_longer_than_one_option_are_refused_on_their_line() {
    let list = |n: u32| (0..n).map(|i| format!("\"2001:db8::{i:x}\"")).collect::<Vec<_>>().join(", ");
    for (key, fits) in [("dns", 4095), ("sntp", 4095), ("ntp", 3276)] {
        let text = |n| format!("[[interface]]\nname = \"eth1\"\n\n{key} = [{}]\n", list(n));
        let c = load_text(&text(fits), &Overrides::default()).unwrap_or_else(|e| panic!("{key} x {fits}: {e}"));
        for o in c.ifaces()[0].service().encode().unwrap() {
            assert_eq!(o.encoded.len() - 4, usize::from(u16::from_be_bytes([o.encoded[2], o.encoded[3]])), "{key}");
        }
        let e = load_text(&text(fits + 1), &Overrides::default()).unwrap_err();
        assert!(
            matches!(e, ConfigError::Invalid { line: 4, reason: Reason::OptionTooLong { .. }, .. }),
            "{key} x {}: {e:?}",
            fits + 1
        );
    }
    // 1,000 names of 66 bytes: refused at the name that makes the list too long.
    let names: Vec<String> = (0..1000).map(|i| format!("{}{i:04}.example", "a".repeat(53))).collect();
    let text =
        format!("[defaults]\ndomains = [\n{}\n]\n", names.iter().map(|n| format!("\"{n}\",\n")).collect::<String>());
    let e = load_text(&text, &serve_eth9()).unwrap_err();
    let want = 3 + 65_535 / (names[0].len() + 2);
    assert!(
        matches!(e, ConfigError::Invalid { line, reason: Reason::OptionTooLong { .. }, .. } if line == want),
        "{e:?}"
    );
    let flags = Overrides { dns: (0..4096u128).map(Ipv6Addr::from).collect(), ..serve_eth9() };
    assert!(matches!(load_text("", &flags), Err(ConfigError::Flag { reason: Reason::OptionTooLong { .. }, .. })));
    let text = format!("[relay]\nupstream = \"eth0\"\ndownstream = [\"eth2\"]\n\nrewrite_dns = [{}]\n", list(4096));
    let e = load_text(&text, &Overrides::default()).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { line: 5, reason: Reason::OptionTooLong { .. }, .. }), "{e:?}");
    let flags = Overrides {
        relay_upstream: Some("eth0".into()),
        relay_downstream: vec!["eth2".into()],
        relay_rewrite_dns: (0..4096u128).map(Ipv6Addr::from).collect(),
        ..Overrides::default()
    };
    assert!(matches!(load_text("", &flags), Err(ConfigError::Flag { reason: Reason::OptionTooLong { .. }, .. })));
    let flags = Overrides { domains: names.clone(), ..serve_eth9() };
    assert!(matches!(load_text("", &flags), Err(ConfigError::Flag { reason: Reason::OptionTooLong { .. }, .. })));
}

#[test]
fn server_duid_replaces_every_interface_duid_and_the_flag_wins() {
    let text = "server_duid = \"00:02:00:00:ab:11:01:02\"\n[[interface]]\nname = \"eth9\"\n";
    let c = load_text(text, &Overrides { ifaces: vec!["eth8".into()], ..Overrides::default() }).unwrap();
    let want = crate::wire::Duid::new(&[0, 2, 0, 0, 0xab, 0x11, 1, 2]).unwrap();
    assert_eq!(c.ifaces().len(), 2);
    assert!(c.ifaces().iter().all(|i| i.server_duid() == Some(&want)), "{:?}", c.ifaces());

    let flags = Overrides { server_duid: Some("000300010200000000aa".into()), ..serve_eth9() };
    let c = load_text(text, &flags).unwrap();
    assert_eq!(c.ifaces()[0].server_duid().map(|d| d.to_hex()), Some("000300010200000000aa".into()));
    // None configured: each interface keeps its own.
    assert_eq!(load_text("", &serve_eth9()).unwrap().ifaces()[0].server_duid(), None);
}

#[test]
fn server_duid_must_be_a_known_type_of_fitting_length() {
    for (duid, why) in [
        ("00:03:00:01", "too short for a DUID-LL"),
        ("00:09:00:01:02:03", "DUID type 9"),
        ("00:04:01:02:03:04", "too short for a DUID-UUID"),
        ("0g", "not hex"),
    ] {
        let e = refused(&format!("\n\nserver_duid = \"{duid}\"\n[[interface]]\nname = \"eth9\"\n"));
        assert!(e.starts_with("dhcpv6d.toml:3:") && e.contains(why), "{duid}: {e}");
        let flags = Overrides { server_duid: Some(duid.into()), ..serve_eth9() };
        let e = load_text("", &flags).unwrap_err().to_string();
        assert!(e.starts_with(&format!("--server-duid {duid}:")) && e.contains(why), "{duid}: {e}");
    }
    let long = format!("0002{}", "ab".repeat(129));
    let e = load_text("", &Overrides { server_duid: Some(long), ..serve_eth9() }).unwrap_err().to_string();
    assert!(e.contains("131"), "{e}");
}

/// A scratch folder of this test's own (removed at the end).
fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dhcpv6-config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn lease_script_must_be_an_executable_file_and_the_flag_wins() {
    let d = scratch("lease-script");
    let (run, plain) = (d.join("run.sh"), d.join("plain.sh"));
    write_mode(&run, 0o755);
    write_mode(&plain, 0o644);
    let file = |p: &Path| format!("[[interface]]\nname = \"eth9\"\n\nlease_script = {:?}\n", p.display().to_string());
    // Top-level keys after a table belong to it in TOML: put them first.
    let top = |p: &Path, extra: &str| {
        format!("{extra}lease_script = {:?}\n[[interface]]\nname = \"eth9\"\n", p.display().to_string())
    };

    let c = load_text(&top(&run, ""), &Overrides::default()).unwrap();
    let want = LeaseScript { path: run.clone(), timeout: std::time::Duration::from_secs(10) };
    assert_eq!(c.lease_script(), Some(&want));
    let c = load_text(&top(&run, "lease_script_timeout = 3\n"), &Overrides::default()).unwrap();
    assert_eq!(c.lease_script().map(|s| s.timeout), Some(std::time::Duration::from_secs(3)));
    assert_eq!(load_text("", &serve_eth9()).unwrap().lease_script(), None);

    // Refused with file, line and reason: not executable, missing, a folder.
    for (p, why) in [(&plain, "not executable"), (&d.join("missing"), "No such file"), (&d, "not a regular file")] {
        let e = refused(&top(p, "\n"));
        assert!(e.starts_with("dhcpv6d.toml:2:") && e.contains("lease script") && e.contains(why), "{e}");
        let flags = Overrides { lease_script: Some(p.clone()), ..serve_eth9() };
        let e = load_text("", &flags).unwrap_err().to_string();
        assert!(e.starts_with("--lease-script:") && e.contains(why), "{e}");
    }
    // Inside [[interface]] the key is unknown there: refused too, not ignored.
    assert!(refused(&file(&run)).contains("unknown field"), "{}", refused(&file(&run)));
    let e = refused(&top(&run, "lease_script_timeout = 0\n"));
    assert!(e.starts_with("dhcpv6d.toml:1:") && e.contains("outside 1..=3600"), "{e}");

    // The flags over the file.
    let flags = Overrides { lease_script: Some(run.clone()), lease_script_timeout: Some(60), ..Overrides::default() };
    let other = d.join("other.sh");
    write_mode(&other, 0o700);
    let c = load_text(&top(&other, "lease_script_timeout = 3\n"), &flags).unwrap();
    assert_eq!(c.lease_script(), Some(&LeaseScript { path: run, timeout: std::time::Duration::from_secs(60) }));
    let bad = Overrides { lease_script_timeout: Some(4000), ..flags };
    assert!(load_text("", &Overrides { ifaces: vec!["eth9".into()], ..bad })
        .unwrap_err()
        .to_string()
        .starts_with("--lease-script-timeout:"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn leasequery_requestors_from_the_file_and_the_flags() {
    let text = "leasequery_from = [\"2001:db8:f::/48\"]\n[[interface]]\nname = \"eth1\"\n";
    let c = load_text(text, &Overrides::default()).unwrap();
    assert!(c.leasequery_from().admits(&a("2001:db8:f:1::9")));
    assert!(!c.leasequery_from().admits(&a("2001:db8:e::9")));
    let o = Overrides { leasequery_from: vec!["2001:db8:e::9".into()], ..Overrides::default() };
    let c = load_text(text, &o).unwrap();
    assert!(c.leasequery_from().admits(&a("2001:db8:e::9")) && c.leasequery_from().admits(&a("2001:db8:f::1")));
    let none = load_text("[[interface]]\nname = \"eth1\"\n", &Overrides::default()).unwrap();
    assert!(none.leasequery_from().is_empty(), "nobody by default");
    let e = load_text(
        "leasequery_from = [\n  \"2001:db8::/200\",\n]\n[[interface]]\nname = \"eth1\"\n",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("dhcpv6d.toml:2: leasequery requestor \"2001:db8::/200\""), "{e}");
    let o = Overrides { leasequery_from: vec!["nope".into()], ..Overrides::default() };
    assert!(load_text(text, &o).unwrap_err().to_string().starts_with("--leasequery-from: "));
}

#[test]
fn store_url_or_path_from_the_file_and_the_flag_over_it() {
    let url = "postgresql:///dhcpv6?host=/run/postgresql&port=5432&user=dhcp";
    let c = load_text(&format!("[store]\nurl = \"{url}\"\n"), &serve_eth9()).unwrap();
    assert_eq!(c.store(), &crate::leases::StoreSpec::Postgres(url.into()));
    let c = load_text("[store]\npath = \"/srv/leases.db\"\n", &serve_eth9()).unwrap();
    assert_eq!(c.store(), &crate::leases::StoreSpec::Sqlite("/srv/leases.db".into()));
    // Neither: the default file.
    let c = load_text("", &serve_eth9()).unwrap();
    assert_eq!(c.store(), &crate::leases::StoreSpec::Sqlite(DEFAULT_LEASE_DB.into()));
    // The command line wins, whichever form either has.
    let flags = Overrides { lease_db: Some("/tmp/other.db".into()), ..serve_eth9() };
    let c = load_text(&format!("[store]\nurl = \"{url}\"\n"), &flags).unwrap();
    assert_eq!(c.store(), &crate::leases::StoreSpec::Sqlite("/tmp/other.db".into()));
    let flags = Overrides { lease_db: Some("postgres://db.example/leases".into()), ..serve_eth9() };
    let c = load_text("[store]\npath = \"/srv/leases.db\"\n", &flags).unwrap();
    assert_eq!(c.store(), &crate::leases::StoreSpec::Postgres("postgres://db.example/leases".into()));
}

#[test]
fn store_refusals_name_file_line_and_reason_as_the_flag_does() {
    let serve = "[[interface]]\nname = \"eth9\"\n";
    for (store, why) in [
        ("url = \"mysql://db/leases\"", "the scheme mysql:// is not supported"),
        ("url = \"POSTGRESQL:///dhcpv6\"", "lower case"),
        ("url = \"host=/run/postgresql dbname=dhcpv6\"", "key=value connection strings are not supported"),
        ("url = \"/var/lib/dhcpv6d/leases.db\"", "an SQLite file is `path`"),
        ("path = \"postgresql:///dhcpv6?host=/run/postgresql\"", "a PostgreSQL database is `url`"),
        ("path = \"sqlite:///var/lib/leases.db\"", "without sqlite://"),
        ("path = \"\"", "empty"),
        ("url = \"postgresql:///a\"\npath = \"/b.db\"", "not both"),
        ("uri = \"postgresql:///a\"", "unknown field `uri`"),
    ] {
        let e = refused(&format!("{serve}\n[store]\n{store}\n"));
        assert!(e.starts_with("dhcpv6d.toml:") && e.contains(why), "{store}: {e}");
        // The key's own line (the second of `not both`: the one that made it two).
        let line = if why == "not both" { 6 } else { 5 };
        assert!(e.starts_with(&format!("dhcpv6d.toml:{line}: ")), "{store}: {e}");
    }
    // The flag refuses the same values, naming itself.
    for (v, why) in [("mysql://db/leases", "mysql:// is not supported"), ("postgres:x", "starts with postgres://")] {
        let flags = Overrides { lease_db: Some(v.into()), ..serve_eth9() };
        let e = load_text("", &flags).unwrap_err().to_string();
        assert!(e.starts_with("--lease-db: ") && e.contains(why), "{v}: {e}");
    }
}

#[test]
fn load_split_from_the_file_or_the_flag_needs_a_shared_store() {
    let url = "[store]\nurl = \"postgresql:///dhcpv6?host=/run/postgresql\"\n";
    assert_eq!(load_text(url, &serve_eth9()).unwrap().load_split(), None);
    let c = load_text(&format!("{url}load_split = true\n"), &serve_eth9()).unwrap();
    assert_eq!(c.load_split(), Some(LoadSplit { stale_secs: DEFAULT_HEARTBEAT_STALE }));
    let c = load_text(&format!("{url}load_split = true\nheartbeat_stale = 4\n"), &serve_eth9()).unwrap();
    assert_eq!(c.load_split().map(|s| s.stale_secs), Some(4));
    assert!(c.load_split().unwrap().interval() < c.load_split().unwrap().stale());
    let flags = Overrides { load_split: true, heartbeat_stale: Some(30), ..serve_eth9() };
    assert_eq!(load_text(url, &flags).unwrap().load_split(), Some(LoadSplit { stale_secs: 30 }));
    // `load_split = false` in the file and no flag: off.
    assert_eq!(load_text(&format!("{url}load_split = false\n"), &serve_eth9()).unwrap().load_split(), None);

    // On an SQLite file a box would answer half its clients and nobody the rest.
    let e = load_text("[store]\npath = \"/srv/l.db\"\n\nload_split = true\n", &serve_eth9()).unwrap_err().to_string();
    assert!(e.starts_with("dhcpv6d.toml:4: the load split needs a PostgreSQL store"), "{e}");
    let e = load_text("", &Overrides { load_split: true, ..serve_eth9() }).unwrap_err().to_string();
    assert!(e.starts_with("--load-split: the load split needs a PostgreSQL store"), "{e}");
    for v in [0, 1, 3601] {
        let e = refused(&format!("[[interface]]\nname = \"eth9\"\n{url}heartbeat_stale = {v}\n"));
        assert!(e.starts_with("dhcpv6d.toml:5: heartbeat_stale") && e.contains("2..=3600"), "{v}: {e}");
        let flags = Overrides { load_split: true, heartbeat_stale: Some(v), ..serve_eth9() };
        let e = load_text(url, &flags).unwrap_err().to_string();
        assert!(e.starts_with("--heartbeat-stale: heartbeat_stale"), "{v}: {e}");
    }
}

#[test]
fn workers_come_from_the_flag_over_the_file_and_are_checked() {
    let c = load_text("workers = 3\n[[interface]]\nname = \"eth9\"\n", &Overrides::default()).unwrap();
    assert_eq!(c.workers(), Some(3));
    let flag = Overrides { workers: Some(2), ..Default::default() };
    assert_eq!(load_text("workers = 3\n[[interface]]\nname = \"eth9\"\n", &flag).unwrap().workers(), Some(2));
    assert_eq!(load_text("[[interface]]\nname = \"eth9\"\n", &Overrides::default()).unwrap().workers(), None);
    let e = refused("\nworkers = 0\n[[interface]]\nname = \"eth9\"\n");
    assert!(e.starts_with("dhcpv6d.toml:2:") && e.contains("workers 0 is outside 1..=256"), "{e}");
    let e = load_text("[[interface]]\nname = \"eth9\"\n", &Overrides { workers: Some(999), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("--workers") && e.contains("workers 999 is outside 1..=256"), "{e}");
}

#[test]
fn xdp_renew_is_off_by_default_and_refused_on_a_shared_store() {
    assert_eq!(load_text("", &serve_eth9()).unwrap().xdp_renew(), None);
    assert_eq!(load_text("xdp_renew = false\n", &serve_eth9()).unwrap().xdp_renew(), None);
    let c = load_text("xdp_renew = true\n", &serve_eth9()).unwrap();
    assert_eq!(c.xdp_renew(), Some(XdpRenew { window: DEFAULT_XDP_RENEW_WINDOW }));
    let c = load_text("xdp_renew = true\nxdp_renew_window = 30\n", &serve_eth9()).unwrap();
    assert_eq!(c.xdp_renew(), Some(XdpRenew { window: 30 }));
    let flag = Overrides { xdp_renew: true, ..serve_eth9() };
    assert_eq!(load_text("xdp_renew_window = 120\n", &flag).unwrap().xdp_renew(), Some(XdpRenew { window: 120 }));
    // The window alone turns nothing on.
    assert_eq!(load_text("xdp_renew_window = 120\n", &serve_eth9()).unwrap().xdp_renew(), None);
    for v in [0, 9, 604_801] {
        let e = refused(&format!("\n\nxdp_renew_window = {v}\n[[interface]]\nname = \"eth9\"\n"));
        assert!(e.starts_with("dhcpv6d.toml:3: xdp_renew_window") && e.contains("10..=604800"), "{v}: {e}");
    }

    // Another box on a shared database may end a lease XDP would go on renewing.
    let url = "[store]\nurl = \"postgresql:///dhcpv6?host=/run/postgresql\"\n";
    let e = load_text(&format!("\nxdp_renew = true\n{url}"), &serve_eth9()).unwrap_err().to_string();
    assert!(e.starts_with("dhcpv6d.toml:2: xdp_renew needs a store this daemon alone writes"), "{e}");
    let e = load_text(url, &flag).unwrap_err().to_string();
    assert!(e.starts_with("--xdp-renew: xdp_renew needs a store this daemon alone writes"), "{e}");
}
