//! The server's UDP socket on port 547: one socket for every interface, with the arrival
//! interface and destination from IPV6_PKTINFO, and ff02::1:2 (plus ff05::1:3 on served
//! interfaces) joined per interface.

use std::{
    collections::HashSet,
    io::IoSliceMut,
    net::{Ipv6Addr, SocketAddrV6},
    os::fd::AsRawFd,
};

use anyhow::{Context, Result};
use dhcpv6_common::wire::{ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ALL_DHCP_SERVERS, SERVER_PORT};
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn6,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{unix::AsyncFd, Interest};

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
    pub fn bind() -> Result<Self> {
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
        let addr = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SERVER_PORT, 0, 0);
        s.bind(&addr.into()).context("binding [::]:547 (is another DHCPv6 server running, without SO_REUSEPORT?)")?;
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

    pub async fn recv(&self, buf: &mut [u8]) -> std::io::Result<Received> {
        self.fd.async_io(Interest::READABLE, |s| recv_pktinfo(s.as_raw_fd(), buf)).await
    }

    /// One datagram if one is waiting, else `WouldBlock` (the socket is non-blocking; the next
    /// `recv` finds out itself that it must wait).
    pub fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<Received> {
        recv_pktinfo(self.fd.get_ref().as_raw_fd(), buf)
    }

    /// As `try_recv`, through the runtime's readiness: the `WouldBlock` that ends a drain
    /// then tells the runtime that the socket is empty, and the next `recv` waits for the
    /// kernel's word instead of first trying and failing (a wasted syscall per wake-up).
    /// Reads only while the runtime holds the socket readable, so right after `recv`.
    pub fn try_recv_ready(&self, buf: &mut [u8]) -> std::io::Result<Received> {
        self.fd.try_io(Interest::READABLE, |s| recv_pktinfo(s.as_raw_fd(), buf))
    }

    pub async fn send_to(&self, buf: &[u8], to: SocketAddrV6) -> std::io::Result<usize> {
        self.fd.async_io(Interest::WRITABLE, |s| s.send_to(buf, &to.into())).await
    }

    /// As `send_to`, out of interface `ifindex` (IPV6_PKTINFO), even for a global `to` that
    /// the routing table would send elsewhere.
    pub async fn send_via(&self, buf: &[u8], to: SocketAddrV6, ifindex: u32) -> std::io::Result<usize> {
        self.fd.async_io(Interest::WRITABLE, |s| send_pktinfo(s.as_raw_fd(), buf, to, ifindex)).await
    }
}

fn send_pktinfo(fd: i32, buf: &[u8], to: SocketAddrV6, ifindex: u32) -> std::io::Result<usize> {
    // Source address left to the kernel (unspecified): only the interface is pinned.
    let pi = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: [0; 16] }, ipi6_ifindex: ifindex };
    let cmsg = [ControlMessage::Ipv6PacketInfo(&pi)];
    let iov = [std::io::IoSlice::new(buf)];
    let dst = SockaddrIn6::from(to);
    sendmsg(fd, &iov, &cmsg, MsgFlags::empty(), Some(&dst)).map_err(std::io::Error::from)
}

fn recv_pktinfo(fd: i32, buf: &mut [u8]) -> std::io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT).map_err(std::io::Error::from)?;
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
