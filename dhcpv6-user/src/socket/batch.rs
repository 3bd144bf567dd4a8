//! Datagrams read off a socket in batches (recvmmsg): one syscall for what a burst left in
//! the socket instead of one recvmsg per datagram. The buffers, headers, addresses and
//! control-message space are allocated once, with the batch; a read allocates nothing.
//!
//! Each datagram is what `recvmsg` would have made of it: its length, source, and the arrival
//! interface and destination from its own IPV6_PKTINFO.

use std::{
    io,
    net::{Ipv6Addr, SocketAddrV6},
    os::fd::RawFd,
};

use nix::sys::socket::{SockaddrIn6, SockaddrLike};
use thiserror::Error;

use super::Received;

/// Datagrams per recvmmsg in the daemon's workers: a burst's worth without a syscall each.
pub const BATCH: usize = 32;

/// Room for each datagram: what the single `recvmsg` read into before (64 KiB, more than any
/// UDP payload), so batching truncates nothing that was kept whole. Only the pages a datagram
/// fills are ever touched.
pub const SLOT: usize = 65_536;

/// A datagram read off the socket but not usable as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Rejected {
    /// Longer than its slot: the kernel kept the slot's worth and dropped the rest.
    #[error("datagram longer than the {slot}-byte receive slot")]
    Truncated { slot: usize },
    /// Its control messages did not fit (recvmsg's ENOBUFS): its IPV6_PKTINFO may be missing.
    #[error("control messages truncated")]
    ControlTruncated,
    /// No IPv6 source address came with it.
    #[error("no source address")]
    NoAddress,
}

/// Preallocated room for `capacity` datagrams of up to `slot` bytes each.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    slot: usize,
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_in6]>,
    /// Control-message space, `cmsg_words` per datagram; u64 words for cmsghdr's alignment.
    cmsg: Box<[u64]>,
    cmsg_words: usize,
    got: Vec<Result<Received, Rejected>>,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` point only into the boxes of the same batch
// (whose heap storage does not move with it), and they are rewritten before every read; the
// batch is used by one thread at a time (`&mut self`).
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(capacity: usize, slot: usize) -> Self {
        let capacity = capacity.max(1);
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as libc::c_uint) } as usize;
        let cmsg_words = space.div_ceil(size_of::<u64>());
        // SAFETY: all-zero bytes are valid for these plain C structs (null pointers, zero lengths).
        let zeroed_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zeroed_addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        Self {
            bufs: vec![0u8; capacity * slot].into_boxed_slice(),
            slot,
            hdrs: vec![zeroed_hdr; capacity].into_boxed_slice(),
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; capacity].into_boxed_slice(),
            addrs: vec![zeroed_addr; capacity].into_boxed_slice(),
            cmsg: vec![0u64; capacity * cmsg_words].into_boxed_slice(),
            cmsg_words,
            got: Vec::with_capacity(capacity),
        }
    }

    /// How many datagrams one read takes at most.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Reads what `fd` (a UDP socket with IPV6_RECVPKTINFO) has waiting, up to `capacity`,
    /// without waiting; returns how many datagrams, `WouldBlock` if none. The previous read's
    /// datagrams are gone.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got.clear();
        let n = self.capacity();
        let cmsg_bytes = self.cmsg_words * size_of::<u64>();
        for i in 0..n {
            // Every field the kernel writes back (lengths, flags) is reset: a short control
            // message or address last time must not shrink the room this time.
            self.iovs[i] = libc::iovec { iov_base: self.bufs[i * self.slot..].as_mut_ptr().cast(), iov_len: self.slot };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_hdr.msg_iov = std::ptr::from_mut(&mut self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsg[i * self.cmsg_words..].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = cmsg_bytes as _;
            h.msg_hdr.msg_flags = 0;
        }
        let vlen = libc::c_uint::try_from(n).map_err(|_| io::Error::other("receive batch too large"))?;
        // SAFETY: every header points into this batch's own buffers, sized as the headers say,
        // and they outlive the call.
        let r = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), vlen, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        let got = usize::try_from(r).map_err(|_| io::Error::last_os_error())?;
        for i in 0..got.min(n) {
            let parsed = self.parse(i);
            self.got.push(parsed);
        }
        Ok(self.got.len())
    }

    // cmsg_len is a size_t on glibc but a socklen_t on musl: the conversion is not useless there.
    #[allow(clippy::useless_conversion)]
    fn parse(&self, i: usize) -> Result<Received, Rejected> {
        let h = &self.hdrs[i];
        let flags = h.msg_hdr.msg_flags;
        if flags & libc::MSG_TRUNC != 0 {
            return Err(Rejected::Truncated { slot: self.slot });
        }
        if flags & libc::MSG_CTRUNC != 0 {
            return Err(Rejected::ControlTruncated);
        }
        // SAFETY: the kernel wrote msg_namelen bytes of address into `addrs[i]`; `from_raw`
        // checks the family and length.
        let from =
            unsafe { SockaddrIn6::from_raw(std::ptr::from_ref(&self.addrs[i]).cast(), Some(h.msg_hdr.msg_namelen)) }
                .map(SocketAddrV6::from)
                .ok_or(Rejected::NoAddress)?;
        let mut ifindex = 0;
        let mut dst = Ipv6Addr::UNSPECIFIED;
        // SAFETY: msg_control/msg_controllen describe this datagram's control messages as the
        // kernel left them (within the slot's space); the CMSG_ macros stay inside them.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while let Some(cm) = c.as_ref() {
                let need = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as libc::c_uint) as usize;
                if cm.cmsg_level == libc::IPPROTO_IPV6
                    && cm.cmsg_type == libc::IPV6_PKTINFO
                    && usize::try_from(cm.cmsg_len).is_ok_and(|l| l >= need)
                {
                    let pi = libc::CMSG_DATA(cm).cast::<libc::in6_pktinfo>().read_unaligned();
                    ifindex = pi.ipi6_ifindex;
                    dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, cm);
            }
        }
        Ok(Received { len: h.msg_len as usize, from, ifindex, dst })
    }

    /// The last read's datagrams in arrival order, each with its bytes (empty if rejected).
    pub fn messages(&self) -> impl Iterator<Item = (Result<Received, Rejected>, &[u8])> {
        self.got.iter().enumerate().map(|(i, r)| {
            let start = i * self.slot;
            let len = r.as_ref().map_or(0, |rx| rx.len.min(self.slot));
            (*r, self.bufs.get(start..start + len).unwrap_or_default())
        })
    }

    /// Appends a datagram as if read (for tests of what consumes a batch); false when full.
    #[cfg(test)]
    pub fn push(&mut self, r: Result<Received, Rejected>, data: &[u8]) -> bool {
        let i = self.got.len();
        if i == self.capacity() || data.len() > self.slot {
            return false;
        }
        self.bufs[i * self.slot..][..data.len()].copy_from_slice(data);
        self.got.push(r.map(|rx| Received { len: data.len(), ..rx }));
        true
    }

    /// Forgets the last read's datagrams (for tests; `recv` does it itself).
    #[cfg(test)]
    pub fn clear(&mut self) {
        self.got.clear();
    }
}
