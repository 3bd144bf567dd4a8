//! Reply data rewritten while the program answers from it: every answer is one whole
//! version, never a mix. The daemon's scheme (a fresh slot, then the selector, the old slot
//! reused only after a grace period; see `dhcpv6_common::IfaceSlot`) under a writer thread
//! flipping between two versions as fast as it can, and, as the control that shows the test
//! can see a torn read at all, the same writer rewriting the live slot in place. Needs root.

mod common;

use std::{
    net::Ipv6Addr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData};
use common::*;
use dhcpv6::{
    dataplane::Dataplane,
    fastpath::{build_reply_data, model, model::ModelIface, Outcome},
    server::ServiceOptions,
    wire::Duid,
};
use dhcpv6_common::{IfaceReply, IfaceSlot, MAP_IFACE_SLOT, MAP_REPLY_SLOTS};

/// Another interface identity with other options: a reply built from a mix of it and
/// `model_iface`'s differs from both in its MAC, addresses, Server Identifier or options.
fn other_iface() -> ModelIface {
    let mac = [0x02, 0xd6, 0xbb, 0xbb, 0xbb, 0x02];
    let mut svc = service();
    svc.duid = Duid::from_mac(mac);
    svc.options = ServiceOptions {
        dns: vec!["2001:db8:bb::53".parse().unwrap()],
        domains: vec!["other.example".into(), "b.example".into(), "c.example".into()],
        information_refresh_time: Some(7200),
        ..Default::default()
    }
    .encode()
    .unwrap();
    ModelIface::new(mac, "fe80::bb:2".parse::<Ipv6Addr>().unwrap(), svc, true)
}

fn reply_data(i: &ModelIface) -> IfaceReply {
    build_reply_data(i.mac, i.link_local, &i.svc, i.fast_path, 1).unwrap()
}

struct Tally {
    a: u64,
    b: u64,
    torn: usize,
    /// The first few torn answers, for the failure message.
    samples: Vec<Outcome>,
    frames: u64,
}

/// Runs `frame` through the program until `budget`, or `max` frames with both versions seen,
/// or `stop_at_torn` torn answers, while `writer` runs on another thread; sorts every answer.
fn run_against(
    p: &mut Program,
    frame: &[u8],
    want: (&Outcome, &Outcome),
    budget: Duration,
    max: u64,
    stop_at_torn: usize,
    writer: impl FnOnce(Arc<AtomicBool>, Arc<AtomicU64>) + Send + 'static,
) -> (Tally, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let w = {
        let (stop, flips) = (stop.clone(), flips.clone());
        std::thread::spawn(move || writer(stop, flips))
    };
    // The writer is under way before the first frame.
    let t = Instant::now();
    while flips.load(Ordering::Relaxed) < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::yield_now();
    }
    let mut tally = Tally { a: 0, b: 0, torn: 0, samples: Vec::new(), frames: 0 };
    let t = Instant::now();
    // Past `max` while one version has not answered yet (the writer's grace periods fall on
    // one version's watch more than the other's), within the time budget.
    while t.elapsed() < budget && (tally.frames < max || tally.a == 0 || tally.b == 0) && tally.torn < stop_at_torn {
        let (got, _) = p.run(frame);
        tally.frames += 1;
        if &got == want.0 {
            tally.a += 1;
        } else if &got == want.1 {
            tally.b += 1;
        } else {
            tally.torn += 1;
            if tally.samples.len() < 3 {
                tally.samples.push(got);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer thread");
    (tally, flips.load(Ordering::Relaxed))
}

fn setup() -> (Program, Vec<u8>, Outcome, Outcome, IfaceReply, IfaceReply) {
    let (a, b) = (model_iface(true), other_iface());
    let p = Program::load(Some(&a));
    let frame = spec().build(&message(11, &[client_id(14), oro(&[23, 24, 32])]));
    let (want_a, want_b) = (model(&frame, Some(&a)), model(&frame, Some(&b)));
    assert!(matches!(want_a, Outcome::Tx(_)) && matches!(want_b, Outcome::Tx(_)));
    assert_ne!(want_a, want_b);
    (p, frame, want_a, want_b, reply_data(&a), reply_data(&b))
}

#[test]
fn reply_data_rewritten_while_the_program_answers_is_never_seen_torn() {
    let (mut p, frame, want_a, want_b, data_a, data_b) = setup();
    let pin_dir = p.pin_dir.clone();
    let ifindex = p.ifindex;
    // A second Dataplane on the same pinned maps, as a restarted daemon adopts them: the
    // writer follows the daemon's own path (`set_iface`), grace periods included.
    let writer = move |stop: Arc<AtomicBool>, flips: Arc<AtomicU64>| {
        let mut dp = Dataplane::load(&pin_dir, false).expect("adopting the pinned maps");
        while !stop.load(Ordering::Relaxed) {
            let n = flips.load(Ordering::Relaxed);
            dp.set_iface(ifindex, if n.is_multiple_of(2) { &data_b } else { &data_a }).expect("set_iface");
            flips.store(n + 1, Ordering::Relaxed);
        }
    };
    let (t, flips) = run_against(&mut p, &frame, (&want_a, &want_b), Duration::from_secs(8), 40_000, 1, writer);
    eprintln!("{} frames: {} as A, {} as B, {} torn; {flips} rewrites", t.frames, t.a, t.b, t.torn);
    assert_eq!(t.torn, 0, "answers from a mix of two versions: {:02x?}", t.samples);
    assert!(t.a > 0 && t.b > 0, "both versions answered: {} A, {} B", t.a, t.b);
    // More rewrites than spare slots: the writer went through grace periods, reusing slots.
    assert!(flips > 2 * u64::from(dhcpv6_common::REPLY_SLOTS), "only {flips} rewrites");
}

/// The control: rewriting the live slot in place (what a plain array update does) is seen.
/// Without it the test above could pass by never overlapping a read with a write.
#[test]
fn the_control_an_in_place_rewrite_of_the_live_slot_is_seen_torn() {
    let (mut p, frame, want_a, want_b, data_a, data_b) = setup();
    let open = |name: &str| MapData::from_pin(p.pin_dir.join(name)).unwrap();
    let sel = Array::<_, IfaceSlot>::try_from(Map::Array(open(MAP_IFACE_SLOT))).unwrap();
    let slot = sel.get(&p.ifindex, 0).unwrap().slot;
    assert_ne!(slot, 0, "the interface's reply data is in a slot");
    let mut slots = Array::<_, IfaceReply>::try_from(Map::Array(open(MAP_REPLY_SLOTS))).unwrap();
    let writer = move |stop: Arc<AtomicBool>, flips: Arc<AtomicU64>| {
        while !stop.load(Ordering::Relaxed) {
            let n = flips.load(Ordering::Relaxed);
            slots.set(slot, if n.is_multiple_of(2) { &data_b } else { &data_a }, 0).expect("in-place rewrite");
            flips.store(n + 1, Ordering::Relaxed);
        }
    };
    let (t, flips) = run_against(&mut p, &frame, (&want_a, &want_b), Duration::from_secs(20), 400_000, 3, writer);
    eprintln!("{} frames: {} as A, {} as B, {} torn; {flips} rewrites", t.frames, t.a, t.b, t.torn);
    assert!(t.torn > 0, "no torn answer in {} frames: this harness cannot see one", t.frames);
}
