//! The client socket: UDP [::]:546 bound to the generator's interface, sending to
//! All_DHCP_Relay_Agents_and_Servers (ff02::1:2) port 547 on it, batched with sendmmsg and
//! recvmmsg. An ordinary socket, like perfdhcp's: the server sees ordinary client traffic.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

use super::msg::MAX_OUT;

/// Messages per sendmmsg/recvmmsg call.
pub const BATCH: usize = 64;
const RECV_SIZE: usize = 1500;

pub struct Sock {
    fd: OwnedFd,
    dst: libc::sockaddr_in6,
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

impl Sock {
    /// `rcvbuf`: receive buffer in bytes, forced past rmem_max (we are root): answers
    /// arrive in bursts while the generator is busy sending.
    pub fn open(iface: &str, rcvbuf: usize) -> Result<Sock> {
        Sock::open_port(iface, rcvbuf, 546)
    }

    /// As `open`, from UDP `port` (547: a relay agent's socket, whose Relay-Replies come
    /// back to it).
    pub fn open_port(iface: &str, rcvbuf: usize, port: u16) -> Result<Sock> {
        let name = CString::new(iface).context("interface name")?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface}: {}", io::Error::last_os_error());
        }
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw =
            unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
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
        let idx = ifindex as libc::c_int;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &idx, "IPV6_MULTICAST_IF")?;
        let one: libc::c_int = 1;
        // Link-local scope: one hop, as a client's.
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &one, "IPV6_MULTICAST_HOPS")?;
        // SAFETY: an all-zero sockaddr_in6 is valid; fields set below.
        let mut local: libc::sockaddr_in6 = unsafe { zeroed() };
        local.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        local.sin6_port = port.to_be();
        // SAFETY: a sockaddr_in6 of its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&local as *const libc::sockaddr_in6).cast(),
                size_of::<libc::sockaddr_in6>() as u32,
            )
        };
        if rc != 0 {
            bail!(
                "bind [::]:{port}: {} (another DHCPv6 client or relay in this namespace?)",
                io::Error::last_os_error()
            );
        }
        // SAFETY: as above.
        let mut dst: libc::sockaddr_in6 = unsafe { zeroed() };
        dst.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        dst.sin6_port = 547u16.to_be();
        dst.sin6_addr.s6_addr = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];
        dst.sin6_scope_id = ifindex;
        Ok(Sock { fd, dst })
    }

    /// Sends the outbox's messages (all of them unless the socket refuses); returns how many
    /// left and how many were refused, and empties the outbox.
    pub fn send(&self, out: &mut Outbox) -> Result<(usize, usize)> {
        let n = out.n;
        if n == 0 {
            return Ok((0, 0));
        }
        // SAFETY: zeroed iovec/mmsghdr are valid; the pointers set below outlive the call.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..n {
            iov[i] = libc::iovec { iov_base: out.bufs[i].as_mut_ptr().cast(), iov_len: out.lens[i] };
            hdr[i].msg_hdr.msg_name = (&self.dst as *const libc::sockaddr_in6).cast_mut().cast();
            hdr[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
            hdr[i].msg_hdr.msg_iov = &mut iov[i];
            hdr[i].msg_hdr.msg_iovlen = 1;
        }
        let (mut pos, mut sent, mut refused) = (0, 0, 0);
        // Bounded: every round moves `pos` on by at least one message.
        while pos < n {
            // SAFETY: `hdr[pos..n]` are initialised above.
            let rc = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), hdr[pos..].as_mut_ptr(), (n - pos) as u32, 0) };
            if rc > 0 {
                pos += rc as usize;
                sent += rc as usize;
            } else {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // A full queue: this message is given up (the caller counts it, and the
                    // step is the generator's failure, not the server's).
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                        pos += 1;
                        refused += 1;
                    }
                    // Anything else (interface gone, bad address) would turn the whole run
                    // into "server loss": stop instead.
                    _ => {
                        out.n = 0;
                        return Err(e).context("sendmmsg");
                    }
                }
            }
        }
        out.n = 0;
        Ok((sent, refused))
    }

    /// Receives what is waiting (at most BATCH datagrams), without blocking.
    pub fn recv(&self, inbox: &mut Inbox) -> Result<usize> {
        // SAFETY: as in `send`; buffers live in `inbox` for the call.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iov[i] = libc::iovec { iov_base: inbox.bufs[i].as_mut_ptr().cast(), iov_len: RECV_SIZE };
            hdr[i].msg_hdr.msg_iov = &mut iov[i];
            hdr[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: BATCH initialised headers.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdr.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e).context("recvmmsg"),
            };
        }
        let n = rc as usize;
        for (len, h) in inbox.lens.iter_mut().zip(&hdr).take(n) {
            // A datagram longer than the buffer is truncated; the parser then refuses it.
            *len = (h.msg_len as usize).min(RECV_SIZE);
        }
        inbox.n = n;
        Ok(n)
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Waits until an answer is readable or `timeout_ns` passed (or a signal arrives).
    pub fn wait(&self, timeout_ns: u64) {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ts =
            libc::timespec { tv_sec: (timeout_ns / 1_000_000_000) as _, tv_nsec: (timeout_ns % 1_000_000_000) as _ };
        // SAFETY: one pollfd, a valid timespec, no signal mask change.
        unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
    }

    /// Datagrams the kernel dropped for want of buffer space on this socket (SO_RXQ_OVFL
    /// is per message; /proc/net/snmp6 is per namespace and good enough here).
    pub fn rcvbuf_errors() -> u64 {
        let text = std::fs::read_to_string("/proc/net/snmp6").unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("Udp6RcvbufErrors")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }
}

/// Messages waiting to be sent in one sendmmsg.
pub struct Outbox {
    bufs: Vec<[u8; MAX_OUT]>,
    lens: [usize; BATCH],
    n: usize,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox { bufs: vec![[0u8; MAX_OUT]; BATCH], lens: [0; BATCH], n: 0 }
    }
}

impl Outbox {
    pub fn full(&self) -> bool {
        self.n == BATCH
    }
    pub fn len(&self) -> usize {
        self.n
    }
    #[cfg(test)]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }
    /// Writes one message with `f` (which returns its length) into the next slot; false
    /// when the outbox is full (send first).
    pub fn push(&mut self, f: impl FnOnce(&mut [u8; MAX_OUT]) -> usize) -> bool {
        if self.full() {
            return false;
        }
        let len = f(&mut self.bufs[self.n]);
        if len > 0 {
            self.lens[self.n] = len;
            self.n += 1;
        }
        true
    }
}

/// Datagrams from one recvmmsg.
pub struct Inbox {
    bufs: Vec<[u8; RECV_SIZE]>,
    lens: [usize; BATCH],
    n: usize,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox { bufs: vec![[0u8; RECV_SIZE]; BATCH], lens: [0; BATCH], n: 0 }
    }
}

impl Inbox {
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }
}
