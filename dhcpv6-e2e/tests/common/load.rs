//! A steady Information-Request load from the client namespace: one request per tick, each
//! with its own transaction id, and a record of which ids got a Reply. Bounded in count (and
//! so in time) whatever the test does.
#![allow(dead_code)]

use std::{
    net::{Ipv6Addr, SocketAddrV6},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, Socket, Type};
use testbed::Netns;

use super::{client_id, oro};

pub struct IrLoad {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<SendResult>>,
    receiver: Option<JoinHandle<Vec<u32>>>,
    recv_done: Arc<AtomicBool>,
}

struct SendResult {
    sent: u32,
    send_errors: u32,
    first_error: Option<String>,
    elapsed: Duration,
}

#[derive(Debug)]
pub struct LoadResult {
    pub sent: u32,
    pub send_errors: u32,
    pub first_error: Option<String>,
    /// Distinct transaction ids, among those sent, that got a Reply.
    pub answered: u32,
    /// Replies beyond the first for one id.
    pub duplicates: u32,
    /// Replies to ids never sent (must be none).
    pub strays: u32,
    /// Up to 20 ids that got no Reply.
    pub missing: Vec<u32>,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn unanswered(&self) -> u32 {
        self.sent - self.answered
    }
}

/// The Information-Request with transaction id `xid` (24 bits).
pub fn information_request(xid: u32) -> Vec<u8> {
    let x = xid.to_be_bytes();
    let mut m = vec![11, x[1], x[2], x[3]];
    m.extend(client_id(14));
    m.extend(oro(&[23, 24]));
    m
}

impl IrLoad {
    /// Starts sending `rate` requests a second from `ifname` in `ns` to ff02::1:2, at most
    /// `max` of them, until `stop`.
    pub fn start(ns: &Netns, ifname: &str, rate: u32, max: u32) -> IrLoad {
        assert!(max < 1 << 24, "transaction ids are 24 bits");
        let sock = client_socket(ns, ifname);
        let rx = sock.try_clone().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let ifindex = ns.ifindex(ifname).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let recv_done = Arc::new(AtomicBool::new(false));
        let done = recv_done.clone();
        let receiver = std::thread::spawn(move || {
            let mut hits = vec![0u32; max as usize + 1];
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
            loop {
                match rx.recv(&mut buf) {
                    Ok(n) if n >= 4 => {
                        // SAFETY: recv initialised the first n bytes.
                        let b: Vec<u8> = buf[..4].iter().map(|x| unsafe { x.assume_init() }).collect();
                        if b[0] == 7 {
                            let xid = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
                            if xid < hits.len() {
                                hits[xid] += 1;
                            } else {
                                hits[0] += 1;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) if done.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            hits
        });
        let to =
            SocketAddrV6::new(Ipv6Addr::from(dhcpv6_common::wire::ALL_DHCP_RELAY_AGENTS_AND_SERVERS), 547, 0, ifindex);
        let halt = stop.clone();
        let sender = std::thread::spawn(move || {
            let tick = Duration::from_secs(1) / rate;
            let t0 = Instant::now();
            let mut r = SendResult { sent: 0, send_errors: 0, first_error: None, elapsed: Duration::ZERO };
            for xid in 1..=max {
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                let due = t0 + tick * (xid - 1);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                match sock.send_to(&information_request(xid), &to.into()) {
                    Ok(_) => r.sent = xid,
                    Err(e) => {
                        r.sent = xid;
                        r.send_errors += 1;
                        r.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            r.elapsed = t0.elapsed();
            r
        });
        IrLoad { stop, sender: Some(sender), receiver: Some(receiver), recv_done }
    }

    /// Stops sending, waits `settle` for the last replies, and counts.
    pub fn stop(mut self, settle: Duration) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let s = self.sender.take().unwrap().join().unwrap();
        std::thread::sleep(settle);
        self.recv_done.store(true, Ordering::Relaxed);
        let hits = self.receiver.take().unwrap().join().unwrap();
        let sent = &hits[1..=s.sent as usize];
        let answered = sent.iter().filter(|h| **h > 0).count() as u32;
        let duplicates = sent.iter().map(|h| h.saturating_sub(1)).sum();
        let strays = hits[0] + hits[s.sent as usize + 1..].iter().sum::<u32>();
        let missing = (1..=s.sent).filter(|x| hits[*x as usize] == 0).take(20).collect();
        LoadResult {
            sent: s.sent,
            send_errors: s.send_errors,
            first_error: s.first_error,
            answered,
            duplicates,
            strays,
            missing,
            elapsed: s.elapsed,
        }
    }
}

impl Drop for IrLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.recv_done.store(true, Ordering::Relaxed);
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
        if let Some(r) = self.receiver.take() {
            let _ = r.join();
        }
    }
}

/// A UDP socket on port 546 bound to `ifname`, made inside `ns`: a socket stays in the
/// namespace it was created in, so only this short-lived thread has to enter it.
fn client_socket(ns: &Netns, ifname: &str) -> Socket {
    let path = ns.path().to_path_buf();
    let ifname = ifname.to_owned();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: setns(2) on a namespace file we opened; it moves only this thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {}: {}", path.display(), std::io::Error::last_os_error());
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_only_v6(true).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind_device(Some(ifname.as_bytes())).unwrap();
        let _ = s.set_recv_buffer_size(4 << 20);
        s.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 546, 0, 0).into()).unwrap();
        s
    })
    .join()
    .unwrap()
}
