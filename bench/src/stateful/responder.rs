//! `dhcpv6-bench responder`: the stateful generator's own ceiling. A server with no reply
//! cost of its own - no engine, no store, no commit: every Solicit gets an Advertise and
//! every Request or Renew a Reply at once, built from the message alone (the client's ID
//! copied, the IAs it asked for filled with an address and a prefix derived from its DUID,
//! so a Renew gets back what the Request got), batched with recvmmsg/sendmmsg. What
//! `dhcpv6-bench dhcp` reaches against it is what the generator (and the veth pair between
//! them) can do; a server's figure near it says more of the generator than of the server.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::msg::{self, Parsed, IAID};
use super::sock::BATCH;

const RECV_SIZE: usize = 1500;
/// An answer: header, Client ID (a DUID of at most 130 bytes), Server ID, IA_NA with one
/// address, IA_PD with one prefix.
const ANSWER_MAX: usize = 4 + (4 + 130) + (4 + SERVER_ID.len()) + (4 + 12 + 28) + (4 + 12 + 29);
/// DUID-LL of a made-up MAC.
const SERVER_ID: [u8; 10] = [0, 3, 0, 1, 0x02, 0xbe, 0xec, 0x00, 0x00, 0x01];
const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_IA_PD: u16 = 25;
const OPT_IAPREFIX: u16 = 26;
/// Lifetimes of what it grants (any non-zero will do: the generator checks only that).
const PREFERRED: u32 = 1800;
const VALID: u32 = 3600;

#[derive(clap::Args, Debug)]
pub struct ResponderArgs {
    /// The server end of the veth pair (the socket is bound to it and joins ff02::1:2 there).
    #[arg(long)]
    pub iface: String,
    /// Stops after this long at the latest (SIGTERM/SIGINT stop it sooner).
    #[arg(long, default_value_t = 3600)]
    pub max_secs: u64,
    #[arg(long, default_value_t = 16 << 20)]
    pub rcvbuf: usize,
}

/// The address and the prefix a client with `duid` is given: from the DUID's last four
/// bytes (the generator's client number), so that every client has its own and keeps it.
fn leases_of(duid: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let n = duid.len().checked_sub(4).and_then(|at| msg::be32(duid, at)).unwrap_or(0);
    let [a, b, c, d] = n.to_be_bytes();
    let na = Ipv6Addr::from([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 1, a, b, c, d]);
    // /56 prefixes: the client number in bits 24..56.
    let pd = Ipv6Addr::from([0x20, 0x01, 0x0d, a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    (na, pd)
}

struct W<'a> {
    buf: &'a mut [u8],
    n: usize,
}

impl W<'_> {
    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.buf.get_mut(self.n..self.n + b.len())?.copy_from_slice(b);
        self.n += b.len();
        Some(())
    }
    fn opt(&mut self, code: u16, parts: &[&[u8]]) -> Option<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.bytes(&code.to_be_bytes())?;
        self.bytes(&u16::try_from(len).ok()?.to_be_bytes())?;
        parts.iter().try_for_each(|p| self.bytes(p))
    }
}

/// The answer to `req` (a client's message) in `buf`, its length; `None` for anything it
/// does not answer (not a Solicit, Request or Renew, no Client ID, no room).
pub fn answer(req: &Parsed, buf: &mut [u8]) -> Option<usize> {
    let kind = match req.kind {
        msg::SOLICIT => msg::ADVERTISE,
        msg::REQUEST | msg::RENEW => msg::REPLY,
        _ => return None,
    };
    let duid = req.client_id.filter(|d| !d.is_empty() && d.len() <= 130)?;
    let (na, pd) = leases_of(duid);
    let mut w = W { buf, n: 0 };
    w.bytes(&[kind])?;
    w.bytes(&req.xid.to_be_bytes()[1..])?;
    w.opt(OPT_CLIENTID, &[duid])?;
    w.opt(OPT_SERVERID, &[&SERVER_ID[..]])?;
    let ia_head = |t1: u32, t2: u32| -> [u8; 12] {
        let mut h = [0u8; 12];
        h[..4].copy_from_slice(&IAID.to_be_bytes());
        h[4..8].copy_from_slice(&t1.to_be_bytes());
        h[8..].copy_from_slice(&t2.to_be_bytes());
        h
    };
    let (t1, t2) = (PREFERRED / 2, PREFERRED * 4 / 5);
    if req.na.is_some() {
        let mut addr = [0u8; 28];
        addr[..4].copy_from_slice(&[0, OPT_IAADDR as u8, 0, 24]);
        addr[4..20].copy_from_slice(&na.octets());
        addr[20..24].copy_from_slice(&PREFERRED.to_be_bytes());
        addr[24..].copy_from_slice(&VALID.to_be_bytes());
        w.opt(OPT_IA_NA, &[&ia_head(t1, t2)[..], &addr[..]])?;
    }
    if req.pd.is_some() {
        let mut p = [0u8; 29];
        p[..4].copy_from_slice(&[0, OPT_IAPREFIX as u8, 0, 25]);
        p[4..8].copy_from_slice(&PREFERRED.to_be_bytes());
        p[8..12].copy_from_slice(&VALID.to_be_bytes());
        p[12] = 56;
        p[13..].copy_from_slice(&pd.octets());
        w.opt(OPT_IA_PD, &[&ia_head(t1, t2)[..], &p[..]])?;
    }
    Some(w.n)
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, v: &T, what: &str) -> Result<()> {
    // SAFETY: `v` is a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (v as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if rc != 0 {
        bail!("setsockopt({what}): {}", io::Error::last_os_error());
    }
    Ok(())
}

/// UDP [::]:547 on `iface`, in ff02::1:2 there.
fn open(iface: &str, rcvbuf: usize) -> Result<OwnedFd> {
    let name = CString::new(iface).context("interface name")?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface}: {}", io::Error::last_os_error());
    }
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        bail!("socket: {}", io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let buf = rcvbuf.min(i32::MAX as usize) as libc::c_int;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buf, "SO_RCVBUFFORCE")?;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &buf, "SO_SNDBUFFORCE")?;
    // SAFETY: the name and its length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.as_bytes_with_nul().len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("SO_BINDTODEVICE {iface}: {}", io::Error::last_os_error());
    }
    // A second receive timeout: the loop sees a stop or its deadline within one.
    let tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")?;
    // SAFETY: an all-zero sockaddr_in6 is valid; fields set below.
    let mut local: libc::sockaddr_in6 = unsafe { zeroed() };
    local.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    local.sin6_port = 547u16.to_be();
    // SAFETY: a sockaddr_in6 of its size.
    let rc = unsafe {
        libc::bind(fd.as_raw_fd(), (&local as *const libc::sockaddr_in6).cast(), size_of::<libc::sockaddr_in6>() as u32)
    };
    if rc != 0 {
        bail!("bind [::]:547: {} (a DHCPv6 server already in this namespace?)", io::Error::last_os_error());
    }
    // SAFETY: an all-zero ipv6_mreq is valid; fields set below.
    let mut group: libc::ipv6_mreq = unsafe { zeroed() };
    group.ipv6mr_multiaddr.s6_addr = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
    group.ipv6mr_interface = ifindex;
    setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &group, "IPV6_ADD_MEMBERSHIP ff02::1:2")?;
    Ok(fd)
}

/// Answers until stopped or `max_secs` passed; prints what it answered.
pub fn respond(a: ResponderArgs) -> Result<()> {
    let fd = open(&a.iface, a.rcvbuf)?;
    eprintln!("dhcpv6-bench responder: listening on [::]:547 on {}", a.iface);
    let started = Instant::now();
    let limit = Duration::from_secs(a.max_secs);
    let mut inbufs = vec![[0u8; RECV_SIZE]; BATCH];
    let mut outbufs = vec![[0u8; ANSWER_MAX]; BATCH];
    // SAFETY: zeroed sockaddr_in6 are valid (filled by the kernel).
    let mut peers: [libc::sockaddr_in6; BATCH] = unsafe { zeroed() };
    let (mut received, mut answered, mut refused) = (0u64, 0u64, 0u64);
    // Bounded by `limit`: a receive returns within a second (SO_RCVTIMEO) when idle.
    while started.elapsed() < limit && !crate::signal::stopped() {
        // SAFETY: as in sock.rs; the buffers outlive the call.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iov[i] = libc::iovec { iov_base: inbufs[i].as_mut_ptr().cast(), iov_len: RECV_SIZE };
            hdr[i].msg_hdr.msg_iov = &mut iov[i];
            hdr[i].msg_hdr.msg_iovlen = 1;
            hdr[i].msg_hdr.msg_name = (&mut peers[i] as *mut libc::sockaddr_in6).cast();
            hdr[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
        }
        // Blocks for the first datagram, then takes what else is waiting.
        // SAFETY: BATCH initialised headers.
        let rc = unsafe {
            libc::recvmmsg(fd.as_raw_fd(), hdr.as_mut_ptr(), BATCH as u32, libc::MSG_WAITFORONE, std::ptr::null_mut())
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                _ => return Err(e).context("recvmmsg"),
            }
        }
        let got = rc as usize;
        received += got as u64;
        // SAFETY: as above.
        let mut oiov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut ohdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut n = 0;
        for i in 0..got {
            let len = (hdr[i].msg_len as usize).min(RECV_SIZE);
            let Ok(p) = msg::parse(&inbufs[i][..len]) else { continue };
            let Some(alen) = answer(&p, &mut outbufs[n]) else { continue };
            oiov[n] = libc::iovec { iov_base: outbufs[n].as_mut_ptr().cast(), iov_len: alen };
            ohdr[n].msg_hdr.msg_iov = &mut oiov[n];
            ohdr[n].msg_hdr.msg_iovlen = 1;
            ohdr[n].msg_hdr.msg_name = (&mut peers[i] as *mut libc::sockaddr_in6).cast();
            ohdr[n].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
            n += 1;
        }
        let mut pos = 0;
        // Bounded: every round moves `pos` on by at least one answer.
        while pos < n {
            // SAFETY: `ohdr[pos..n]` are initialised above.
            let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), ohdr[pos..].as_mut_ptr(), (n - pos) as u32, 0) };
            if rc > 0 {
                pos += rc as usize;
                answered += rc as u64;
            } else {
                // A full queue: the answer is lost, as a real server's would be.
                pos += 1;
                refused += 1;
            }
        }
    }
    eprintln!("dhcpv6-bench responder: received {received}, answered {answered}, send refused {refused}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stateful::client::{Clients, Outcome, Phase, Servers};
    use crate::stateful::msg::{parse, Mode, MAX_OUT};

    /// The generator's clients against the responder, message by message: every exchange
    /// completes, and a Renew gets the Request's leases back.
    #[test]
    fn the_generator_binds_and_renews_against_it() {
        for mode in [Mode::Address, Mode::Prefix, Mode::Both] {
            let mut cs = Clients::new(3, 1, 7, 40, mode);
            let mut servers = Servers::default();
            let (mut out, mut ans) = ([0u8; MAX_OUT], [0u8; ANSWER_MAX]);
            for i in 0..3 {
                let mut phase = Phase::Soliciting;
                for _ in 0..2 {
                    let n = cs.message(i, phase, 0, &servers, &mut out);
                    let m = answer(&parse(&out[..n]).unwrap(), &mut ans).unwrap();
                    match cs.answer(&parse(&ans[..m]).unwrap(), 10, &mut servers) {
                        Ok(Outcome::Advertised(j)) => {
                            assert_eq!(j, i);
                            phase = Phase::Requesting;
                        }
                        Ok(Outcome::Replied { index, .. }) => assert_eq!(index, i),
                        o => panic!("{mode:?} client {i}: {o:?}"),
                    }
                }
                assert_eq!(cs.list[i].phase, Phase::Bound);
                let n = cs.message(i, Phase::Renewing, 20, &servers, &mut out);
                let m = answer(&parse(&out[..n]).unwrap(), &mut ans).unwrap();
                assert!(matches!(cs.answer(&parse(&ans[..m]).unwrap(), 30, &mut servers), Ok(Outcome::Replied { .. })));
            }
            // Every client its own address.
            let addrs: std::collections::HashSet<_> =
                cs.list.iter().map(|c| (c.na.map(|l| l.addr), c.pd.map(|l| l.addr))).collect();
            assert_eq!(addrs.len(), 3);
        }
    }

    #[test]
    fn answers_only_client_messages_with_a_client_id() {
        let mut ans = [0u8; ANSWER_MAX];
        let mut out = [0u8; MAX_OUT];
        let d = msg::duid(1, 2);
        let enc = |kind, out: &mut [u8; MAX_OUT]| {
            msg::encode(&msg::Out { kind, xid: 9, duid: &d, server_id: None, na: Some(None), pd: None }, out)
        };
        let n = enc(msg::REPLY, &mut out);
        assert_eq!(answer(&parse(&out[..n]).unwrap(), &mut ans), None);
        let n = enc(msg::INFORMATION_REQUEST, &mut out);
        assert_eq!(answer(&parse(&out[..n]).unwrap(), &mut ans), None);
        let no_id = Parsed { kind: msg::SOLICIT, ..Parsed::default() };
        assert_eq!(answer(&no_id, &mut ans), None);
    }
}
