//! Spreading UDP/547 over the receive workers' sockets (classic BPF, no maps, no loader).
//!
//! Every worker has its own socket bound to [::]:547 in one SO_REUSEPORT group. The kernel
//! delivers the two kinds of traffic differently, so each needs its own steering:
//!
//! - Unicast (Relay-Forward from a relay, the bulk behind an ISP's relays) goes to one socket
//!   of the group. The kernel's own choice hashes the 4-tuple, and one relay talks to us from
//!   one address and port: every client behind it would land on one worker. The group gets a
//!   program (`SO_ATTACH_REUSEPORT_CBPF`) that picks the socket by the relayed client's
//!   peer-address instead, and by the transaction ID for anything else.
//! - Multicast (every client on a served link: Solicit, Request, ... to ff02::1:2) is copied
//!   to *every* socket bound to the port, whichever joined the group (IPV6_MULTICAST_ALL).
//!   Each socket gets a filter (`SO_ATTACH_FILTER`) that keeps a multicast datagram only if
//!   its key (the same one) falls on this worker, so each is answered once; unicast passes
//!   every filter, since the group program already chose one socket for it.
//!
//! The key of a datagram is the same in both programs and computed the same way by
//! [`worker_of`] (for tests): the low 24 bits of the peer-address's last word for a
//! Relay-Forward long enough to have one, else the transaction ID; modulo the worker count.
//! A datagram too short for either goes to worker 0. Any worker could answer any client (the
//! stateful engine is shared), so the key only needs to spread, not to keep a client on one
//! worker.
//!
//! During a restart the old daemon's sockets are in the same group: the group program's
//! index may name one of them (they come first), which then answers as before; indexes past
//! the group's size fall back to the kernel's hash. Its own filters keep its own share of
//! multicast, as ours keep ours: both daemons answer a multicast message once each, as they
//! did with one socket each.

use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use dhcpv6_common::wire::msg;
use libc::{sock_filter, sock_fprog};

const UDP_HEADER: u32 = 8;
/// A Relay-Forward's peer-address ends here (type, hop count, link-address, peer-address).
const RELAY_PEER_END: u32 = 34;
/// Where the peer-address's last word starts.
const RELAY_PEER_LAST_WORD: u32 = RELAY_PEER_END - 4;
/// Type and transaction ID.
const XID_END: u32 = 4;
const KEY_MASK: u32 = 0x00ff_ffff;
/// The first byte of the IPv6 destination, from the network header.
const IPV6_DST_FIRST: i32 = libc::SKF_NET_OFF + 24;
const ACCEPT: u32 = u32::MAX;
const DROP: u32 = 0;

/// The worker `payload` (a UDP/547 payload) belongs to, as the programs below compute it.
pub fn worker_of(payload: &[u8], workers: u32) -> u32 {
    let word = |at: usize| payload.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let relay_peer = RELAY_PEER_END as usize;
    let key = if payload.len() >= relay_peer && payload[0] == msg::RELAY_FORW {
        word(RELAY_PEER_LAST_WORD as usize)
    } else {
        word(0)
    };
    match key {
        Some(k) if workers > 0 => (k & KEY_MASK) % workers,
        _ => 0,
    }
}

fn stmt(code: u32, k: u32) -> sock_filter {
    // Opcodes are 16 bits by definition (linux/filter.h); the constants all fit.
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code: code as u16, jt, jf, k }
}

/// The key of the datagram at `base` (0: the payload; 8: the UDP header first) into A,
/// modulo `workers`. `short` is what to do with a datagram too short for any key (the
/// instruction there is the caller's). Ends with A = worker index, falling through.
fn key_into_a(base: u32, workers: u32, short: sock_filter) -> Vec<sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LEN, BPF_MOD, BPF_W,
    };
    vec![
        /* 0 */ stmt(BPF_LD | BPF_W | BPF_LEN, 0),
        /* 1 */ jump(BPF_JMP | BPF_JGE | BPF_K, base + XID_END, 1, 0),
        /* 2 */ short,
        /* 3 */ jump(BPF_JMP | BPF_JGE | BPF_K, base + RELAY_PEER_END, 0, 4),
        /* 4 */ stmt(BPF_LD | BPF_B | BPF_ABS, base),
        /* 5 */ jump(BPF_JMP | BPF_JEQ | BPF_K, u32::from(msg::RELAY_FORW), 0, 2),
        /* 6 */ stmt(BPF_LD | BPF_W | BPF_ABS, base + RELAY_PEER_LAST_WORD),
        /* 7 */ stmt(BPF_JMP | BPF_JA, 1),
        /* 8 */ stmt(BPF_LD | BPF_W | BPF_ABS, base),
        /* 9 */ stmt(BPF_ALU | BPF_AND | BPF_K, KEY_MASK),
        /* 10 */ stmt(BPF_ALU | BPF_MOD | BPF_K, workers),
    ]
}

/// The group program: the socket index for a unicast datagram (the kernel gives it the
/// payload at offset 0).
pub fn group_program(workers: u32) -> Vec<sock_filter> {
    use libc::{BPF_A, BPF_K, BPF_RET};
    let mut p = key_into_a(0, workers, stmt(BPF_RET | BPF_K, 0));
    p.push(stmt(BPF_RET | BPF_A, 0));
    p
}

/// Worker `index`'s socket filter: every unicast datagram, and the multicast ones whose key
/// falls on this worker (a socket filter sees the UDP header at offset 0).
pub fn socket_program(index: u32, workers: u32) -> Vec<sock_filter> {
    use libc::{BPF_ABS, BPF_B, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET};
    let mut p = vec![
        stmt(BPF_LD | BPF_B | BPF_ABS, IPV6_DST_FIRST as u32),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 0xff, 1, 0),
        stmt(BPF_RET | BPF_K, ACCEPT),
    ];
    let short = stmt(BPF_RET | BPF_K, if index == 0 { ACCEPT } else { DROP });
    p.extend(key_into_a(UDP_HEADER, workers, short));
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, index, 0, 1));
    p.push(stmt(BPF_RET | BPF_K, ACCEPT));
    p.push(stmt(BPF_RET | BPF_K, DROP));
    p
}

fn attach(fd: &impl AsRawFd, option: libc::c_int, prog: &[sock_filter]) -> std::io::Result<()> {
    let len = u16::try_from(prog.len()).map_err(|_| std::io::Error::other("BPF program too long"))?;
    let fprog = sock_fprog { len, filter: prog.as_ptr().cast_mut() };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&fprog).cast(),
            std::mem::size_of::<sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Worker `index`'s share of multicast on its socket.
pub fn attach_socket_filter(fd: &impl AsRawFd, index: u32, workers: u32) -> Result<()> {
    attach(fd, libc::SO_ATTACH_FILTER, &socket_program(index, workers)).context("SO_ATTACH_FILTER")
}

/// The group's choice of socket for unicast, set through any of its sockets.
pub fn attach_group_program(fd: &impl AsRawFd, workers: u32) -> Result<()> {
    attach(fd, libc::SO_ATTACH_REUSEPORT_CBPF, &group_program(workers)).context("SO_ATTACH_REUSEPORT_CBPF")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_forward(peer_last: [u8; 4]) -> Vec<u8> {
        let mut p = vec![msg::RELAY_FORW, 0];
        p.extend([0u8; 16]);
        p.extend([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        p.extend(peer_last);
        p.extend([0, 9, 0, 0]);
        p
    }

    #[test]
    fn the_key_is_the_relayed_peer_or_the_transaction_id() {
        assert_eq!(worker_of(&[msg::SOLICIT, 0, 0, 7], 2), 1);
        assert_eq!(worker_of(&[msg::SOLICIT, 0, 0, 8], 2), 0);
        assert_eq!(worker_of(&[msg::SOLICIT, 0, 1, 0], 3), 256 % 3);
        // The message type is not part of the key: Solicit and Request of one xid agree.
        assert_eq!(worker_of(&[msg::REQUEST, 0, 0, 7], 2), 1);
        assert_eq!(worker_of(&relay_forward([0xfe, 0, 0, 5]), 4), 1);
        assert_eq!(worker_of(&relay_forward([0xfe, 0, 0, 6]), 4), 2);
        // Too short for a key: worker 0.
        assert_eq!(worker_of(&[msg::SOLICIT, 0], 2), 0);
        assert_eq!(worker_of(&[], 2), 0);
    }

    /// A classic-BPF interpreter for what these programs use, over `packet` (`net`: the
    /// network header, for SKF_NET_OFF loads), so the programs are held to `worker_of`.
    fn run(prog: &[sock_filter], packet: &[u8], net: &[u8]) -> u32 {
        use libc::*;
        let (mut a, mut pc) = (0u32, 0usize);
        let load = |k: u32, n: usize| -> Option<u32> {
            let (buf, at) = match i32::try_from(k) {
                Ok(k) if k >= 0 => (packet, k as usize),
                _ => (net, (k as i32 - SKF_NET_OFF) as usize),
            };
            let b = buf.get(at..at + n)?;
            Some(b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)))
        };
        loop {
            let i = prog[pc];
            let code = u32::from(i.code);
            pc += 1;
            match code {
                c if c == BPF_LD | BPF_W | BPF_LEN => a = packet.len() as u32,
                c if c == BPF_LD | BPF_B | BPF_ABS => match load(i.k, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_W | BPF_ABS => match load(i.k, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
                c if c == BPF_ALU | BPF_MOD | BPF_K => a %= i.k,
                c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                c if c == BPF_JMP | BPF_JGE | BPF_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                c if c == BPF_RET | BPF_K => return i.k,
                c if c == BPF_RET | BPF_A => return a,
                c => panic!("opcode {c:#x} not modelled"),
            }
        }
    }

    fn ipv6_header(dst_first: u8) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[24] = dst_first;
        h
    }

    #[test]
    fn the_programs_agree_with_worker_of_and_each_multicast_datagram_has_one_taker() {
        let mut payloads: Vec<Vec<u8>> =
            (0u8..40).map(|x| vec![msg::SOLICIT, x.wrapping_mul(37), x, x.wrapping_add(3), 0, 1]).collect();
        payloads.extend((0u8..20).map(|x| relay_forward([0xfe, x, 1, x.wrapping_mul(7)])));
        payloads.push(vec![msg::SOLICIT, 1]);
        payloads.push(vec![msg::RELAY_FORW, 0, 0, 0, 0, 5]);
        for workers in [1, 2, 3, 4] {
            let group = group_program(workers);
            for p in &payloads {
                assert_eq!(run(&group, p, &[]), worker_of(p, workers), "{p:?}");
                let mut udp = vec![0u8; 8];
                udp.extend(p);
                let takers: Vec<u32> = (0..workers)
                    .filter(|&i| run(&socket_program(i, workers), &udp, &ipv6_header(0xff)) == ACCEPT)
                    .collect();
                assert_eq!(takers, [worker_of(p, workers)], "multicast {p:?} with {workers} workers");
                let unicast = (0..workers)
                    .filter(|&i| run(&socket_program(i, workers), &udp, &ipv6_header(0x20)) == ACCEPT)
                    .count();
                assert_eq!(unicast as u32, workers, "unicast passes every filter");
            }
        }
        // The load generator's way: one source, transaction IDs counting up, both workers fed.
        let spread: std::collections::HashSet<u32> =
            (0u32..16).map(|x| worker_of(&[msg::SOLICIT, 0, 0, x as u8], 2)).collect();
        assert_eq!(spread.len(), 2);
    }
}
