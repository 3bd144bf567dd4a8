//! Typed and raw options, the User Class filter and per-link options, from text.

use super::*;
use crate::resolv::HostResolver;
use crate::server::{
    typed_options::{CustomOption, DnrInstance, OptionProblem, VendorOption},
    SendPolicy,
};

fn load_text(text: &str, flags: &Overrides) -> Result<Config, ConfigError> {
    from_str(text, "dhcpv6d.toml")?.merge(flags, &HostResolver::default())
}

fn refused(text: &str) -> String {
    load_text(text, &Overrides::default()).unwrap_err().to_string()
}

const ETH9: &str = "[[interface]]\nname = \"eth9\"\n";

#[test]
fn every_typed_option_and_raw_options_are_read_per_interface() {
    let text = format!(
        "{ETH9}ntp_fqdn = [\"ntp.example\"]\ncaptive_portal = \"https://portal.example/api\"\n\
         ignore_user_classes = [\"iptv\"]\n\
         [[interface.dnr]]\nadn = \"dns.example\"\naddresses = [\"2001:db8::53\"]\nalpn = [\"dot\"]\nport = 853\n\
         [[interface.vendor]]\nenterprise = 4491\nsuboptions = [\"1:aa\"]\n\
         [[interface.option]]\ncode = 100\nhex = \"0102\"\n\
         [[interface.option]]\ncode = 200\nhex = \"03\"\nalways = false\n"
    );
    let c = load_text(&text, &Overrides::default()).unwrap();
    let s = c.ifaces()[0].service();
    assert_eq!(s.ntp_fqdn, vec!["ntp.example".to_owned()]);
    assert_eq!(s.captive_portal.as_deref(), Some("https://portal.example/api"));
    assert_eq!(s.ignore_user_classes, vec![b"iptv".to_vec()]);
    assert_eq!(
        s.dnr,
        vec![DnrInstance {
            priority: 1,
            adn: "dns.example".into(),
            addresses: vec!["2001:db8::53".parse().unwrap()],
            alpn: vec!["dot".into()],
            port: Some(853),
            dohpath: None,
        }]
    );
    assert_eq!(s.vendor, vec![VendorOption { enterprise: 4491, suboptions: vec![(1, vec![0xaa])], always: false }]);
    assert_eq!(
        s.raw,
        vec![
            CustomOption { code: 100, data: vec![1, 2], always: true },
            CustomOption { code: 200, data: vec![3], always: false }
        ]
    );
    let encoded = s.encode().unwrap();
    let tail: Vec<_> = encoded.iter().rev().take(2).map(|o| (o.code, o.policy, o.encoded.clone())).collect();
    assert_eq!(
        tail,
        vec![
            (200, SendPolicy::WhenRequested, vec![0, 200, 0, 1, 3]),
            (100, SendPolicy::Always, vec![0, 100, 0, 2, 1, 2])
        ]
    );
    for code in [56, 103, 144, 17] {
        assert!(encoded.iter().any(|o| o.code == code), "option {code} missing");
    }
}

#[test]
fn malformed_options_are_refused_with_file_and_line() {
    let cases: &[(&str, &str)] = &[
        ("[[interface.option]]\ncode = 100\nhex = \"0g\"\n", "dhcpv6d.toml:5: \"100:0g\" is not CODE:HEX"),
        ("[[interface.option]]\ncode = 2\nhex = \"00\"\n", "dhcpv6d.toml:4: option code 2 is written by the server"),
        ("[[interface.option]]\ncode = 70000\nhex = \"00\"\n", "dhcpv6d.toml:4: "),
        (
            "[[interface.option]]\ncode = 100\nhex = \"\"\n[[interface.option]]\ncode = 100\nhex = \"01\"\n",
            "dhcpv6d.toml:7: raw option 100 is given twice",
        ),
        ("captive_portal = \"http://portal.example/\"\n", "dhcpv6d.toml:3: captive portal URI"),
        ("ntp_fqdn = [\"bad..name\"]\n", "dhcpv6d.toml:3: domain \"bad..name\""),
        ("ignore_user_classes = [\"\"]\n", "dhcpv6d.toml:3: user class \"\""),
        (
            "[[interface.dnr]]\nadn = \"dns.example\"\naddresses = [\"2001:db8::53\"]\n",
            "dhcpv6d.toml:4: DNR with addresses needs alpn",
        ),
        ("[[interface.dnr]]\nadn = \"dns.example\"\nport = 853\n", "dhcpv6d.toml:4: DNR without addresses"),
        ("[[interface.dnr]]\npriority = 0\nadn = \"dns.example\"\n", "dhcpv6d.toml:5: DNR service priority 0"),
        (
            "[[interface.vendor]]\nenterprise = 9\nsuboptions = [\"1:aa\", \"x\"]\n",
            "dhcpv6d.toml:5: \"x\" is not CODE:HEX",
        ),
        ("[[interface.option]]\ncode = 100\nhex = \"00\"\nalways = 1\n", "dhcpv6d.toml:6: "),
    ];
    for (table, want) in cases {
        let e = refused(&format!("{ETH9}{table}"));
        assert!(e.starts_with(want), "{table:?}: got {e:?}, want {want:?}");
    }
    let e = refused("[defaults]\ncaptive_portal = \"portal\"\n[[interface]]\nname = \"eth9\"\n");
    assert!(e.starts_with("dhcpv6d.toml:2: captive portal URI \"portal\""), "{e}");
    let e =
        refused("[[interface]]\nname = \"eth9\"\n[[link]]\nname = \"olt-7\"\n[[link.option]]\ncode = 6\nhex = \"\"\n");
    assert!(e.starts_with("dhcpv6d.toml:6: option code 6"), "{e}");
}

#[test]
fn flags_add_raw_options_over_the_file_and_set_user_classes() {
    let text = format!("[defaults]\n[[defaults.option]]\ncode = 100\nhex = \"01\"\n[[defaults.option]]\ncode = 101\nhex = \"02\"\nalways = false\n{ETH9}");
    let flags = Overrides {
        raw_options: vec!["100:ff".into(), "250:".into()],
        ignore_user_classes: vec!["guest".into()],
        ..Default::default()
    };
    let c = load_text(&text, &flags).unwrap();
    let s = c.ifaces()[0].service();
    assert_eq!(
        s.raw,
        vec![
            CustomOption { code: 101, data: vec![2], always: false },
            CustomOption { code: 100, data: vec![0xff], always: true },
            CustomOption { code: 250, data: vec![], always: true },
        ],
        "the flag's 100 replaces the file's"
    );
    assert_eq!(s.ignore_user_classes, vec![b"guest".to_vec()]);
    let bad = Overrides { raw_options: vec!["1:00".into()], ..Default::default() };
    let e = load_text(ETH9, &bad).unwrap_err().to_string();
    assert_eq!(e, "--option 1:00: option code 1 is written by the server itself (or has a key of its own)");
    let bad = Overrides { raw_options: vec!["100:0".into()], ..Default::default() };
    assert_eq!(load_text(ETH9, &bad).unwrap_err().to_string(), "--option 100:0: \"100:0\" is not CODE:HEX");
    let bad = Overrides { ignore_user_classes: vec![String::new()], ..Default::default() };
    assert!(load_text(ETH9, &bad).unwrap_err().to_string().starts_with("--ignore-user-class: "));
    let e = OptionProblem::NotCodeHex("x".into());
    assert_eq!(e.to_string(), "\"x\" is not CODE:HEX");
}

/// A `[[link]]` with option keys has a layer of its own over `[defaults]` (not over any
/// interface); one without keeps the arrival interface's options (`service: None`).
#[test]
fn links_with_option_keys_get_their_own_options_over_the_defaults() {
    let text = "[defaults]\ndns = [\"2001:db8::53\"]\nntp = [\"2001:db8::123\"]\n\
                [[interface]]\nname = \"eth9\"\ndns = [\"2001:db8:9::53\"]\ndomains = [\"eth9.example\"]\n\
                [[link]]\nname = \"olt-7\"\nna_pools = [\"2001:db8:7::100-2001:db8:7::1ff\"]\n\
                domains = [\"olt7.example\"]\nignore_user_classes = [\"iptv\"]\n\
                [[link.option]]\ncode = 100\nhex = \"07\"\n\
                [[link]]\nname = \"olt-8\"\nna_pools = [\"2001:db8:8::100-2001:db8:8::1ff\"]\n";
    let flags = Overrides { raw_options: vec!["101:01".into()], ..Default::default() };
    let c = load_text(text, &flags).unwrap();
    let olt7 = c.links().iter().find(|l| l.link == "olt-7").unwrap();
    let own = olt7.service.as_deref().expect("olt-7 has options of its own");
    let want = crate::server::ServiceOptions {
        dns: vec!["2001:db8::53".parse().unwrap()],
        domains: vec!["olt7.example".into()],
        ntp: vec!["2001:db8::123".parse().unwrap()],
        information_refresh_time: Some(DEFAULT_IRT),
        inf_max_rt: Some(DEFAULT_INF_MAX_RT),
        raw: vec![
            CustomOption { code: 100, data: vec![7], always: true },
            CustomOption { code: 101, data: vec![1], always: true },
        ],
        ..Default::default()
    };
    assert_eq!(own.options, want.encode().unwrap(), "defaults under the link, flags over it, never eth9's");
    assert_eq!(own.ignore_user_classes, vec![b"iptv".to_vec()]);
    assert!(c.links().iter().find(|l| l.link == "olt-8").unwrap().service.is_none());
    assert!(c.links().iter().find(|l| l.link == "eth9").is_none_or(|l| l.service.is_none()));
}

#[test]
fn a_link_whose_options_cannot_be_sent_is_refused_at_load() {
    let dns: Vec<String> = (0..4096u32).map(|n| format!("\"2001:db8::{:x}:{:x}\"", n >> 16, n & 0xffff)).collect();
    let text = format!("{ETH9}[[link]]\nname = \"olt-7\"\ndns = [{}]\n", dns.join(", "));
    let e = load_text(&text, &Overrides::default()).unwrap_err();
    // A list too long for its option is refused on its own line (`check_lists`), before any
    // encoding.
    assert!(
        matches!(&e, ConfigError::Invalid { line: 5, reason: Reason::OptionTooLong { option: "dns servers", .. }, .. }),
        "{e:?}"
    );
    // What only the encoding shows (NTP addresses that fit, an FQDN sub-option that tips
    // option 56 past 65,535 bytes) is refused at load too, naming the link.
    let ntp: Vec<String> = (0..3276u32).map(|n| format!("\"2001:db8::{:x}:{:x}\"", n >> 16, n & 0xffff)).collect();
    let text = format!("{ETH9}[[link]]\nname = \"olt-7\"\nntp = [{}]\nntp_fqdn = [\"ntp.example\"]\n", ntp.join(", "));
    let e = load_text(&text, &Overrides::default()).unwrap_err();
    assert!(matches!(&e, ConfigError::LinkOptions { link, .. } if link == "olt-7"), "{e:?}");
}

#[test]
fn the_example_file_has_every_option_key() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/example.toml");
    let c = load(Some(&path), &Overrides::default(), std::path::Path::new("/nonexistent")).unwrap();
    let s = c.ifaces()[0].service();
    assert_eq!((s.ntp_fqdn.len(), s.dnr.len(), s.vendor.len(), s.raw.len()), (1, 1, 1, 1));
    assert!(s.captive_portal.is_some() && !s.ignore_user_classes.is_empty());
    assert_eq!(s.vendor[0].suboptions, vec![(1, vec![0x0a, 0x0b]), (32, vec![])]);
    let olt = c.links().iter().find(|l| l.link == "olt-7").unwrap().service.as_deref().unwrap();
    assert!(olt.options.iter().any(|o| o.code == 101) && olt.options.iter().any(|o| o.code == 24));
}
