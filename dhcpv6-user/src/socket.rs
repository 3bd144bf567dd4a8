//! The server's UDP sockets on port 547: one per receive worker, each for every interface,
//! with the arrival interface and destination from IPV6_PKTINFO. ff02::1:2 (plus ff05::1:3
//! on served interfaces) is joined per interface on the first; the others hear multicast
//! too (IPV6_MULTICAST_ALL), and `steer` decides which of them keeps each datagram.

use std::{
    collections::HashSet,
    net::{Ipv6Addr, SocketAddrV6},
    os::fd::AsRawFd,
};

use anyhow::{Context, Result};
use dhcpv6_common::wire::{ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ALL_DHCP_SERVERS, SERVER_PORT};
use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{unix::AsyncFd, Interest};

mod batch;

pub use batch::{RecvBatch, Rejected, BATCH, SLOT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub from: SocketAddrV6,
    pub ifindex: u32,
    pub dst: Ipv6Addr,
}

pub struct ServerSocket {
    fd: AsyncFd<Socket>,
    /// (group, ifindex) pairs joined.
    joined: std::sync::Mutex<HashSet<([u8; 16], u32)>>,
}

impl ServerSocket {
    /// One socket, for one worker (today's daemon with `--workers 1`).
    pub fn bind() -> Result<Self> {
        Self::register(bind_one()?)
    }

    /// `workers` sockets in one SO_REUSEPORT group, with `steer`'s programs spreading the
    /// traffic over them when there are several. Not yet registered with a runtime: each
    /// goes to its worker's (`register`).
    pub fn bind_group(workers: u32) -> Result<Vec<Socket>> {
        let socks: Vec<Socket> = (0..workers.max(1)).map(|_| bind_one()).collect::<Result<_>>()?;
        if socks.len() > 1 {
            for (i, s) in (0u32..).zip(&socks) {
                crate::steer::attach_socket_filter(s, i, workers)?;
            }
            crate::steer::attach_group_program(&socks[0], workers)?;
        }
        Ok(socks)
    }

    /// `s` (from `bind_group`) with the runtime this is called in.
    pub fn register(s: Socket) -> Result<Self> {
        // SAFETY: the Socket owns its descriptor and lives inside the AsyncFd until both drop.
        let fd = unsafe { AsyncFd::register(s)? };
        Ok(Self { fd, joined: std::sync::Mutex::new(HashSet::new()) })
    }

    /// Joins ff02::1:2 on `ifindex` (idempotent; a re-created interface has a new index).
    pub fn join(&self, ifindex: u32) -> Result<()> {
        self.join_group(ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ifindex)
    }

    /// Joins ff02::1:2 and ff05::1:3 (All_DHCP_Servers, RFC 9915 section 7.1) on a served
    /// interface: a relay that multicasts its Relay-Forwards to the servers of its site is
    /// heard too.
    pub fn join_as_server(&self, ifindex: u32) -> Result<()> {
        self.join(ifindex)?;
        self.join_group(ALL_DHCP_SERVERS, ifindex)
    }

    fn join_group(&self, group: [u8; 16], ifindex: u32) -> Result<()> {
        let mut joined = self.joined.lock().map_err(|_| anyhow::anyhow!("socket state poisoned"))?;
        if joined.insert((group, ifindex)) {
            let addr = Ipv6Addr::from(group);
            if let Err(e) = self.fd.get_ref().join_multicast_v6(&addr, ifindex) {
                if e.raw_os_error() != Some(libc::EADDRINUSE) {
                    joined.remove(&(group, ifindex));
                    return Err(e).with_context(|| format!("joining {addr} on ifindex {ifindex}"));
                }
            }
        }
        Ok(())
    }

    /// Where multicast to ff05::1:3 leaves, and how far it may go (relay-agent mode).
    pub fn set_multicast_upstream(&self, ifindex: u32, hops: u32) -> Result<()> {
        self.fd.get_ref().set_multicast_if_v6(ifindex).context("IPV6_MULTICAST_IF")?;
        self.fd.get_ref().set_multicast_hops_v6(hops).context("IPV6_MULTICAST_HOPS")?;
        Ok(())
    }

    /// Waits for datagrams and reads what is there into `batch` (up to its capacity).
    ///
    /// A batch that comes back short of full emptied the socket (recvmmsg stops only when
    /// the socket has no more, or on an error, which an unconnected UDP socket without
    /// IPV6_RECVERR does not get from ICMP): the runtime is told so at once, and the next
    /// call waits for the kernel's word instead of first trying and failing. The readiness
    /// is cleared only if no new event came meanwhile (tokio compares its tick), and a
    /// datagram that arrived after the read raises a new edge: nothing is left unread.
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|s| batch.recv(s.get_ref().as_raw_fd())) {
                Ok(Ok(n)) => {
                    if n < batch.capacity() {
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(e)) => return Err(e),
                // WouldBlock: try_io cleared the readiness; wait for the next.
                Err(_) => {}
            }
        }
    }

    /// As `recv_batch` if datagrams are waiting, else `WouldBlock` (the socket is non-blocking;
    /// the next `recv_batch` finds out itself that it must wait).
    pub fn try_recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        batch.recv(self.fd.get_ref().as_raw_fd())
    }

    /// As `try_recv_batch`, through the runtime's readiness: the `WouldBlock` that ends a
    /// drain then tells the runtime that the socket is empty, and the next `recv_batch` waits
    /// for the kernel's word instead of first trying and failing (a wasted syscall per
    /// wake-up). Reads only while the runtime holds the socket readable, so right after
    /// `recv_batch`.
    pub fn try_recv_batch_ready(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        self.fd.try_io(Interest::READABLE, |s| batch.recv(s.as_raw_fd()))
    }

    pub async fn send_to(&self, buf: &[u8], to: SocketAddrV6) -> std::io::Result<usize> {
        self.fd.async_io(Interest::WRITABLE, |s| s.send_to(buf, &to.into())).await
    }

    /// As `send_to`, out of interface `ifindex` (IPV6_PKTINFO), even for a global `to` that
    /// the routing table would send elsewhere.
    pub async fn send_via(&self, buf: &[u8], to: SocketAddrV6, ifindex: u32) -> std::io::Result<usize> {
        let unspecified = Ipv6Addr::UNSPECIFIED;
        self.fd.async_io(Interest::WRITABLE, |s| send_pktinfo(s.as_raw_fd(), buf, to, ifindex, unspecified)).await
    }

    /// As `send_via`, from source address `src` (the address a unicast query was sent to, so
    /// that the answer comes from where the requestor asked).
    pub async fn send_from(&self, buf: &[u8], to: SocketAddrV6, ifindex: u32, src: Ipv6Addr) -> std::io::Result<usize> {
        self.fd.async_io(Interest::WRITABLE, |s| send_pktinfo(s.as_raw_fd(), buf, to, ifindex, src)).await
    }
}

/// One socket on [::]:547, in the port's SO_REUSEPORT group.
fn bind_one() -> Result<Socket> {
    bind_on(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SERVER_PORT, 0, 0))
}

fn bind_on(addr: SocketAddrV6) -> Result<Socket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).context("creating the UDP socket")?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    // A new daemon binds while the old one still runs (restart, upgrade): both receive
    // until the old one exits, so no window without a listener.
    s.set_reuse_port(true).context("SO_REUSEPORT")?;
    s.set_nonblocking(true)?;
    // Room for a boot storm's burst while the loop is busy.
    let _ = s.set_recv_buffer_size(8 << 20);
    setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).context("IPV6_RECVPKTINFO")?;
    s.set_multicast_loop_v6(false)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding {addr} (is another DHCPv6 server running, without SO_REUSEPORT?)"))?;
    Ok(s)
}

fn send_pktinfo(fd: i32, buf: &[u8], to: SocketAddrV6, ifindex: u32, src: Ipv6Addr) -> std::io::Result<usize> {
    // An unspecified source is left to the kernel: then only the interface is pinned.
    let pi = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: src.octets() }, ipi6_ifindex: ifindex };
    let cmsg = [ControlMessage::Ipv6PacketInfo(&pi)];
    let iov = [std::io::IoSlice::new(buf)];
    let dst = SockaddrIn6::from(to);
    sendmsg(fd, &iov, &cmsg, MsgFlags::empty(), Some(&dst)).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::io::IoSliceMut;

    /// One datagram with recvmsg: the reference `RecvBatch` must agree with (tests).
    fn recv_pktinfo(fd: i32, buf: &mut [u8]) -> std::io::Result<Received> {
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
            .map_err(std::io::Error::from)?;
        let from = msg.address.map(SocketAddrV6::from).ok_or_else(|| std::io::Error::other("no source address"))?;
        let mut ifindex = 0;
        let mut dst = Ipv6Addr::UNSPECIFIED;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::Ipv6PacketInfo(pi) = c {
                ifindex = pi.ipi6_ifindex;
                dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
            }
        }
        Ok(Received { len: msg.bytes, from, ifindex, dst })
    }

    /// The kernel runs the group program as `steer` models it: unicast from one source
    /// (one relay, one generator) reaches the socket its key names, on every worker.
    #[test]
    fn the_group_program_spreads_one_source_over_the_sockets_by_key() {
        let first = bind_on(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0)).unwrap();
        let port = first.local_addr().unwrap().as_socket_ipv6().unwrap().port();
        let second = bind_on(SocketAddrV6::new(Ipv6Addr::LOCALHOST, port, 0, 0)).unwrap();
        crate::steer::attach_group_program(&first, 2).unwrap();
        let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let mut sent = [Vec::new(), Vec::new()];
        for xid in 0u8..20 {
            let payload = [dhcpv6_common::wire::msg::SOLICIT, 0, xid / 3, xid];
            client.send_to(&payload, ("::1", port)).unwrap();
            sent[crate::steer::worker_of(&payload, 2) as usize].push(payload.to_vec());
        }
        for (sock, want) in [first, second].iter().zip(&sent) {
            assert!(!want.is_empty());
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            // Loopback delivers before send_to returns; non-blocking reads see it all.
            while let Ok(r) = recv_pktinfo(sock.as_raw_fd(), &mut buf) {
                got.push(buf[..r.len].to_vec());
            }
            assert_eq!(&got, want);
        }
    }

    /// A socket on [::1] as the daemon sets it up (IPV6_RECVPKTINFO), and its port.
    fn loopback_server() -> (Socket, u16) {
        let s = bind_on(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)).unwrap();
        let port = s.local_addr().unwrap().as_socket_ipv6().unwrap().port();
        (s, port)
    }

    /// Several datagrams from two sources in one read: each with its own length, bytes,
    /// source and IPV6_PKTINFO, exactly as one recvmsg per datagram reads the same traffic.
    #[test]
    fn a_batch_reads_what_recvmsg_reads_datagram_by_datagram() {
        let (server, port) = loopback_server();
        let clients = [std::net::UdpSocket::bind("[::1]:0").unwrap(), std::net::UdpSocket::bind("[::1]:0").unwrap()];
        let payloads: Vec<Vec<u8>> = (0u8..5).map(|i| vec![i; 10 + usize::from(i) * 100]).collect();
        let send_all = || {
            for (i, p) in payloads.iter().enumerate() {
                clients[i % 2].send_to(p, ("::1", port)).unwrap();
            }
        };
        send_all();
        let mut buf = [0u8; 2048];
        let mut want = Vec::new();
        while let Ok(r) = recv_pktinfo(server.as_raw_fd(), &mut buf) {
            want.push((r, buf[..r.len].to_vec()));
        }
        assert_eq!(want.len(), payloads.len());
        let lo = nix::net::if_::if_nametoindex("lo").unwrap();
        assert!(want.iter().all(|(r, _)| r.ifindex == lo && r.dst == Ipv6Addr::LOCALHOST));

        send_all();
        let mut batch = RecvBatch::new(8, SLOT);
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), payloads.len(), "one read takes them all");
        let got: Vec<(Received, Vec<u8>)> = batch.messages().map(|(r, d)| (r.unwrap(), d.to_vec())).collect();
        assert_eq!(got, want);
        for (i, (r, data)) in got.iter().enumerate() {
            assert_eq!(data, &payloads[i]);
            assert_eq!(r.from, clients[i % 2].local_addr().unwrap().to_string().parse::<SocketAddrV6>().unwrap());
        }
        let empty = batch.recv(server.as_raw_fd()).unwrap_err();
        assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(batch.messages().count(), 0, "a failed read leaves nothing of the last one");
    }

    /// More than a batch waits: it comes in batches, in order; the rest stays for the next read.
    #[test]
    fn a_full_batch_leaves_the_rest_for_the_next_read() {
        let (server, port) = loopback_server();
        let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
        for i in 0u8..7 {
            client.send_to(&[i], ("::1", port)).unwrap();
        }
        let mut batch = RecvBatch::new(3, 64);
        let mut seen = Vec::new();
        for want in [3, 3, 1] {
            assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), want);
            seen.extend(batch.messages().map(|(r, d)| (r.unwrap().len, d[0])));
        }
        assert_eq!(seen, (0u8..7).map(|i| (1, i)).collect::<Vec<_>>());
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }

    /// A datagram longer than its slot is reported as truncated (MSG_TRUNC), not handed on
    /// cut short; the datagrams around it in the same read are whole, with their pktinfo.
    #[test]
    fn an_over_long_datagram_is_rejected_and_its_neighbours_kept() {
        let (server, port) = loopback_server();
        let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
        client.send_to(&[1; 10], ("::1", port)).unwrap();
        client.send_to(&[2; 65], ("::1", port)).unwrap();
        client.send_to(&[3; 64], ("::1", port)).unwrap();
        let mut batch = RecvBatch::new(4, 64);
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 3);
        let got: Vec<_> = batch.messages().map(|(r, d)| (r.map(|r| (r.len, r.dst)), d.to_vec())).collect();
        assert_eq!(
            got,
            [
                (Ok((10, Ipv6Addr::LOCALHOST)), vec![1; 10]),
                (Err(Rejected::Truncated { slot: 64 }), vec![]),
                (Ok((64, Ipv6Addr::LOCALHOST)), vec![3; 64]),
            ]
        );
        // The slots are the daemon's: a UDP datagram's most fits.
        const { assert!(SLOT >= 65_535 - 8) };
    }

    /// Through the runtime: a full batch leaves the socket readable for the rest, a short
    /// one marks it empty, and a datagram arriving after that still wakes the next read.
    #[test]
    fn recv_batch_misses_no_datagram_after_a_short_batch() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (server, port) = loopback_server();
            let sock = ServerSocket::register(server).unwrap();
            let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
            let mut batch = RecvBatch::new(4, 64);
            let within = std::time::Duration::from_secs(5);
            for i in 0u8..6 {
                client.send_to(&[i], ("::1", port)).unwrap();
            }
            let mut seen = Vec::new();
            for want in [4, 2] {
                let n = tokio::time::timeout(within, sock.recv_batch(&mut batch)).await.unwrap().unwrap();
                assert_eq!(n, want);
                seen.extend(batch.messages().map(|(_, d)| d[0]));
            }
            for i in 6u8..8 {
                client.send_to(&[i], ("::1", port)).unwrap();
                let n = tokio::time::timeout(within, sock.recv_batch(&mut batch)).await.unwrap().unwrap();
                assert_eq!(n, 1, "woken for the datagram after a short batch");
                seen.extend(batch.messages().map(|(_, d)| d[0]));
            }
            assert_eq!(seen, (0u8..8).collect::<Vec<_>>());
            let idle = tokio::time::timeout(std::time::Duration::from_millis(50), sock.recv_batch(&mut batch)).await;
            assert!(idle.is_err(), "nothing more: the read waits");
        });
    }
}
