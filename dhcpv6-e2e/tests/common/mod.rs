//! Shared by the program and end-to-end tests: frames, the XDP program under test_run.
#![allow(dead_code)]

pub mod lab;
pub mod load;

use std::{
    net::Ipv6Addr,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{TestRun, TestRunOptions};
use dhcpv6::{
    dataplane::Dataplane,
    fastpath::{build_link_reply_data, build_reply_data, frame::FrameSpec, model::ModelIface, ModelMaps, Outcome},
    server::{IfaceService, ServiceOptions},
    wire::Duid,
};
use dhcpv6_common::{
    outcomes::xdp_action, wire::ALL_DHCP_RELAY_AGENTS_AND_SERVERS, Counters, IfaceKey, Verdict, IFACE_LEARN_MACS,
    IFACE_RELAYED_IR, IFACE_RELAY_LINKS,
};

pub const SERVER_MAC: [u8; 6] = [0x02, 0xd6, 0, 0, 0, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x02];

pub fn server_ll() -> Ipv6Addr {
    "fe80::d6ff:fe00:1".parse().unwrap()
}

pub fn client_ll() -> Ipv6Addr {
    "fe80::c1ff:fe00:2".parse().unwrap()
}

pub fn service() -> IfaceService {
    let options = ServiceOptions {
        dns: vec!["2001:db8::53".parse().unwrap(), "2001:db8::54".parse().unwrap()],
        domains: vec!["example.net".into(), "isp.example".into()],
        ntp: vec!["2001:db8::123".parse().unwrap()],
        sntp: vec!["2001:db8::124".parse().unwrap()],
        information_refresh_time: Some(3600),
        inf_max_rt: Some(900),
        // Never in a Reply to Information-Request: both paths must leave it out.
        sol_max_rt: Some(600),
        ..Default::default()
    }
    .encode()
    .unwrap();
    IfaceService { duid: Duid::from_mac(SERVER_MAC), options, ignore_user_classes: Vec::new() }
}

pub fn model_iface(fast_path: bool) -> ModelIface {
    ModelIface::new(SERVER_MAC, server_ll(), service(), fast_path)
}

pub fn spec() -> FrameSpec {
    FrameSpec {
        dst_mac: [0x33, 0x33, 0, 1, 0, 2],
        src_mac: CLIENT_MAC,
        vlans: vec![],
        src: client_ll(),
        dst: ALL_DHCP_RELAY_AGENTS_AND_SERVERS.into(),
        src_port: 546,
        dst_port: 547,
        hop_limit: 1,
    }
}

pub fn opt(code: u16, data: &[u8]) -> Vec<u8> {
    dhcpv6::wire::writer::encode_option(code, data).expect("test option fits")
}

pub fn client_id(n: usize) -> Vec<u8> {
    let mut duid = vec![0, 2, 0, 0, 0x12, 0x34];
    duid.resize(n.max(3), 0xc1);
    duid.truncate(n);
    opt(1, &duid)
}

pub fn oro(codes: &[u16]) -> Vec<u8> {
    opt(6, &codes.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<_>>())
}

pub fn message(msg_type: u8, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![msg_type, 0x12, 0x34, 0x56];
    for o in opts {
        m.extend_from_slice(o);
    }
    m
}

/// The real XDP program, loaded with its maps pinned in a folder of its own.
pub struct Program {
    pub dp: Option<Dataplane>,
    pub ifindex: u32,
    /// Where its maps are pinned (another Dataplane can adopt them from there).
    pub pin_dir: std::path::PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Program {
    /// test_run frames arrive on loopback (ifindex 1) unless the context says otherwise.
    pub fn load(iface: Option<&ModelIface>) -> Program {
        Self::load_maps(&ModelMaps::single(iface))
    }

    /// The program with every map the model describes written: reply data per VLAN, flood
    /// limits and relay sources.
    pub fn load_maps(maps: &ModelMaps) -> Program {
        testbed::require_root().expect("the XDP program tests need root (BPF_PROG_TEST_RUN, bpffs pins)");
        let dir = format!("/sys/fs/bpf/dhcpv6-test-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut dp = Dataplane::load(std::path::Path::new(&dir), false).expect("load XDP program");
        for (&(outer_vlan, inner_vlan), i) in &maps.ifaces {
            let mut data = build_reply_data(i.mac, i.link_local, &i.svc, i.fast_path, 1).unwrap();
            if i.learn_macs {
                data.flags |= IFACE_LEARN_MACS;
            }
            if i.relayed_ir {
                data.flags |= IFACE_RELAYED_IR;
            }
            if i.renew {
                dhcpv6::fastpath::allow_renew(&mut data, &i.svc).expect("a service the Renew path can answer");
            }
            let key = IfaceKey { ifindex: 1, outer_vlan, inner_vlan };
            if !i.links.is_empty() {
                // As the daemon writes them: the links first, then the interface that names them.
                let links: Vec<_> =
                    i.links.iter().filter_map(|(id, l)| l.clone().map(|l| (id.clone(), l))).collect::<Vec<_>>();
                let mut built = build_link_reply_data(i.mac, i.link_local, &i.svc.duid, &links, i.fast_path, 1);
                // The links the model has without reply data: named, but nothing to answer with.
                for (id, l) in &i.links {
                    if l.is_none() {
                        built.push((id.clone(), None));
                    }
                }
                dp.set_relay_links(key, &built).unwrap();
                data.flags |= IFACE_RELAY_LINKS;
            }
            dp.set_reply_data(key, &data).unwrap();
        }
        let relays: Vec<Ipv6Addr> = maps.relays.iter().copied().collect();
        dp.set_flood(&maps.flood, &relays).unwrap();
        for (k, e) in &maps.renews {
            dp.put_renew(k, e).unwrap();
        }
        Program { dp: Some(dp), ifindex: 1, pin_dir: dir.into() }
    }

    pub fn dp(&mut self) -> &mut Dataplane {
        self.dp.as_mut().unwrap()
    }

    /// Runs one frame; returns the outcome as the model names it, and the counters that moved.
    /// Asserts that exactly the counters of one outcome moved: `frames`, `dhcp` for DHCPv6,
    /// and the outcome's own, which must agree with the action.
    pub fn run(&mut self, frame: &[u8]) -> (Outcome, Vec<&'static str>) {
        let before = self.dp().counters().unwrap();
        let mut out = vec![0u8; 4096];
        let prog = self.dp().program().unwrap();
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
            .expect("test_run");
        out.truncate(r.data_size_out as usize);
        let after = self.dp().counters().unwrap();
        let moved = moved(&before, &after);
        let counted: Vec<Verdict> =
            Verdict::COUNTED.iter().copied().filter(|v| after.get(*v) != before.get(*v)).collect();
        assert!(counted.len() <= 1, "one outcome per frame, not {counted:?}");
        let verdict = counted.first().copied().unwrap_or(Verdict::NotDhcp);
        for v in &counted {
            assert_eq!(after.get(*v) - before.get(*v), 1, "{} moved by one", v.name());
        }
        assert_eq!(after.frames - before.frames, 1, "frames counts every frame");
        // `dhcp` counts the frames classified as DHCPv6: all but those passed for their headers.
        let dhcp_moved = after.dhcp != before.dhcp;
        match verdict {
            Verdict::NotDhcp | Verdict::PassHeaders => assert!(!dhcp_moved, "{}: `dhcp` stays", verdict.name()),
            _ => assert!(dhcp_moved, "{}: `dhcp` moves too: {moved:?}", verdict.name()),
        }
        let expected = 1 + usize::from(dhcp_moved) + counted.len();
        assert_eq!(moved.len(), expected, "nothing else moved: {moved:?}");
        assert_eq!(r.return_value, verdict.action(), "{}: the action matches the counter", verdict.name());
        let outcome = match r.return_value {
            xdp_action::TX if verdict == Verdict::TxRelayedIr => Outcome::TxRelayed(out),
            xdp_action::TX if verdict == Verdict::TxRenew => Outcome::TxRenew(out),
            xdp_action::TX => Outcome::Tx(out),
            xdp_action::PASS if verdict == Verdict::NotDhcp => Outcome::NotDhcp,
            xdp_action::PASS => Outcome::Pass(verdict),
            xdp_action::DROP => Outcome::Drop(verdict),
            other => panic!("unexpected XDP action {other}"),
        };
        (outcome, moved)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Some(dp) = self.dp.take() {
            let _ = dp.shutdown();
        }
    }
}

pub fn moved(before: &Counters, after: &Counters) -> Vec<&'static str> {
    before.fields().iter().zip(after.fields()).filter(|(b, a)| b.1 != a.1).map(|(_, a)| a.0).collect()
}
