//! Leasequery on UDP/547 (RFC 5007) and TCP/547 (bulk, RFC 5460), answered from the lease
//! store (`server::leasequery` decides; the store is asked off the server loop).
//!
//! Only requestors `--leasequery-from` / `leasequery_from` name are answered (none by
//! default). Over UDP anyone else is dropped and counted (`drop_leasequery_not_allowed`):
//! a NotAllowed reply to a spoofed source would make us a reflector. Over TCP the handshake
//! proves the source, so the first query gets a LEASEQUERY-REPLY with NotAllowed and the
//! connection is closed. TCP connections are bounded ([`MAX_CONNECTIONS`], more are closed at
//! once), idle ones closed after [`IDLE_TIMEOUT`], and a frame longer than [`MAX_QUERY_LEN`]
//! ends its connection: a query is a few hundred bytes.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use dhcpv6_common::wire::SERVER_PORT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::{
    leases::{unix_now, LeaseStore},
    server::{
        leasequery::{self, Query, Refusal, Transport},
        trust::TrustedRelays,
    },
    socket::ServerSocket,
    stats::{Counter, UserStats},
    wire::{leasequery::frame, Duid},
};

/// TCP connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// A TCP connection that sends no whole query for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest query frame taken over TCP.
pub const MAX_QUERY_LEN: usize = 4096;
/// UDP queries being answered at once (each asks the store); more are dropped and counted
/// (`drop_leasequery_store`) until one is done: a requestor in a loop cannot pile up tasks.
pub const MAX_UDP_IN_FLIGHT: usize = 64;

/// What both transports share: who may ask, as whom we answer, where the leases are.
pub(super) struct Leasequery {
    allowed: RwLock<TrustedRelays>,
    /// The Server Identifier of the served interfaces (the first one's, when they differ).
    duid: RwLock<Option<Duid>>,
    store: Option<Arc<dyn LeaseStore>>,
    stats: Arc<UserStats>,
    connections: Arc<Semaphore>,
    udp_in_flight: Arc<Semaphore>,
}

impl Leasequery {
    pub fn new(allowed: TrustedRelays, store: Option<Arc<dyn LeaseStore>>, stats: Arc<UserStats>) -> Arc<Self> {
        if !allowed.is_empty() {
            info!(from = ?allowed.prefixes().iter().map(ToString::to_string).collect::<Vec<_>>(), "leasequery answered");
        }
        Arc::new(Self {
            allowed: RwLock::new(allowed),
            duid: RwLock::new(None),
            store,
            stats,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            udp_in_flight: Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT)),
        })
    }

    /// On reload: the new `leasequery_from`.
    pub fn set_allowed(&self, allowed: TrustedRelays) {
        if let Ok(mut a) = self.allowed.write() {
            *a = allowed;
        }
    }

    /// After an interface sync: the Server Identifier replies carry.
    pub fn set_duid(&self, duid: Option<Duid>) {
        if let Ok(mut d) = self.duid.write() {
            *d = duid;
        }
    }

    fn admits(&self, src: &Ipv6Addr) -> bool {
        self.allowed.read().is_ok_and(|a| a.admits(src))
    }

    fn duid(&self) -> Option<Duid> {
        self.duid.read().ok().and_then(|d| d.clone())
    }

    /// One UDP datagram whose first byte is LEASEQUERY, which came in on `arrival` (interface,
    /// destination address): checked here, answered by a task (the store is asked off the
    /// server loop), from the address it was sent to.
    pub fn udp(self: &Arc<Self>, pkt: &[u8], from: SocketAddrV6, arrival: (u32, Ipv6Addr), sock: &Arc<ServerSocket>) {
        if !self.admits(from.ip()) {
            debug!(%from, "leasequery from a requestor not in leasequery_from: dropped");
            self.stats.bump(Counter::DropLeasequeryNotAllowed);
            return;
        }
        let (Some(store), Some(duid)) = (self.store.clone(), self.duid()) else {
            self.stats.bump(Counter::DropNoStatefulService);
            return;
        };
        let q = match leasequery::parse(pkt, &duid, Transport::Udp) {
            Ok(q) => q,
            Err(r) => {
                let (me, sock) = (Arc::clone(self), Arc::clone(sock));
                tokio::spawn(async move { me.udp_refusal(r, from, arrival, &sock).await });
                return;
            }
        };
        let Ok(permit) = Arc::clone(&self.udp_in_flight).try_acquire_owned() else {
            self.stats.bump(Counter::DropLeasequeryStore);
            return;
        };
        let (me, sock) = (Arc::clone(self), Arc::clone(sock));
        tokio::spawn(async move {
            let _permit = permit;
            let Some(replies) = me.ask(store, q, &duid).await else { return };
            for r in replies {
                if let Err(e) = send(&sock, &r, from, arrival).await {
                    warn!(%from, error = %e, "leasequery reply not sent");
                    me.stats.bump(Counter::SendFailed);
                    return;
                }
            }
            me.stats.bump(Counter::LeasequeryAnswered);
        });
    }

    async fn udp_refusal(&self, r: Refusal, from: SocketAddrV6, arrival: (u32, Ipv6Addr), sock: &ServerSocket) {
        match r {
            Refusal::Discard(c) => self.stats.bump(c),
            Refusal::Reply(reply) => {
                self.stats.bump(Counter::LeasequeryRefused);
                if send(sock, &reply, from, arrival).await.is_err() {
                    self.stats.bump(Counter::SendFailed);
                }
            }
        }
    }

    /// The store's answer to `q`, off the async threads; `None` (counted) when it has none.
    async fn ask(&self, store: Arc<dyn LeaseStore>, q: Query, duid: &Duid) -> Option<Vec<Vec<u8>>> {
        let filter = q.filter.clone();
        match tokio::task::spawn_blocking(move || store.query(&filter)).await {
            Ok(Ok(leases)) => Some(leasequery::answer(&q, leases, unix_now(), duid)),
            Ok(Err(e)) => {
                warn!(error = %e, "leasequery: the lease store cannot answer");
                self.stats.bump(Counter::DropLeasequeryStore);
                None
            }
            Err(_) => {
                self.stats.bump(Counter::DropLeasequeryStore);
                None
            }
        }
    }

    /// Binds TCP/547 (every address: who is answered is `leasequery_from`'s business) and
    /// serves bulk leasequery connections until the daemon stops.
    pub fn listen_tcp(self: &Arc<Self>) -> Result<()> {
        let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SERVER_PORT, 0, 0));
        let socket = TcpSocket::new_v6().context("creating the leasequery TCP socket")?;
        socket.set_reuseaddr(true)?;
        // As the UDP socket: a new daemon binds while the old one still runs.
        socket.set_reuseport(true)?;
        socket.bind(addr).context("binding TCP [::]:547 for bulk leasequery")?;
        let listener = socket.listen(64).context("listening on TCP/547")?;
        let me = Arc::clone(self);
        tokio::spawn(async move { me.accept_loop(listener).await });
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "leasequery: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
                debug!(%peer, "leasequery: too many connections, closing");
                self.stats.bump(Counter::DropLeasequeryConnections);
                continue;
            };
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = me.connection(stream, peer).await {
                    debug!(%peer, error = %e, "leasequery connection ended");
                }
            });
        }
    }

    /// One requestor's connection: queries one after the other, each answered in full
    /// (REPLY, DATA..., DONE) before the next is read.
    async fn connection(&self, mut stream: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
        let ip = match peer {
            SocketAddr::V6(a) => a.ip().to_canonical(),
            SocketAddr::V4(a) => std::net::IpAddr::V4(*a.ip()),
        };
        let allowed = match ip {
            std::net::IpAddr::V6(a) => self.admits(&a),
            // An IPv4-mapped peer is not an IPv6 requestor.
            std::net::IpAddr::V4(_) => false,
        };
        let Some(duid) = self.duid() else { return Ok(()) };
        loop {
            let Some(query) = read_frame(&mut stream).await? else { return Ok(()) };
            if !allowed {
                self.stats.bump(Counter::LeasequeryRefused);
                if let Some(reply) = leasequery::not_allowed(&query, &duid) {
                    write_frames(&mut stream, &[reply]).await?;
                }
                return close_gently(stream).await;
            }
            let Some(store) = self.store.clone() else {
                self.stats.bump(Counter::DropNoStatefulService);
                return Ok(());
            };
            match leasequery::parse(&query, &duid, Transport::Tcp) {
                Err(Refusal::Discard(c)) => self.stats.bump(c),
                Err(Refusal::Reply(reply)) => {
                    self.stats.bump(Counter::LeasequeryRefused);
                    write_frames(&mut stream, &[reply]).await?;
                }
                Ok(q) => {
                    // A store that cannot answer ends the connection: the requestor retries.
                    let Some(replies) = self.ask(store, q, &duid).await else { return close_gently(stream).await };
                    write_frames(&mut stream, &replies).await?;
                    self.stats.bump(Counter::LeasequeryAnswered);
                }
            }
        }
    }
}

/// A UDP answer to `to`, from the unicast address the query came to (a query to a multicast
/// group is answered from an address the kernel picks). Out of the interface it came in on
/// for a link-local requestor; a routed one is reached wherever the routing table says.
async fn send(sock: &ServerSocket, reply: &[u8], to: SocketAddrV6, arrival: (u32, Ipv6Addr)) -> std::io::Result<usize> {
    let (ifindex, dst) = arrival;
    let src = if dst.is_multicast() { Ipv6Addr::UNSPECIFIED } else { dst };
    let ifindex = if to.ip().is_unicast_link_local() || src.is_unicast_link_local() { ifindex } else { 0 };
    sock.send_from(reply, to, ifindex, src).await
}

/// Ends a connection the requestor may still be writing to: our side is shut first, then what
/// it sends is read and dropped until it closes (at most a second, 64 KiB). Closing with
/// unread data would send a reset, and a reset makes the requestor's kernel throw away the
/// answer it has not read yet.
async fn close_gently(mut stream: TcpStream) -> std::io::Result<()> {
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

/// One length-framed message (RFC 5460 section 5.1); `None` when the requestor closed the
/// connection between messages. Idle past [`IDLE_TIMEOUT`], or a frame over [`MAX_QUERY_LEN`],
/// is an error that ends the connection.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "leasequery connection idle");
    let mut len = [0u8; 2];
    match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut len)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(r) => r?,
    };
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_QUERY_LEN {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("leasequery frame of {len} bytes")));
    }
    let mut buf = vec![0; len];
    tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut buf)).await.map_err(|_| timed_out())??;
    Ok(Some(buf))
}

async fn write_frames(stream: &mut TcpStream, messages: &[Vec<u8>]) -> std::io::Result<()> {
    for m in messages {
        let framed = frame(m).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        tokio::time::timeout(IDLE_TIMEOUT, stream.write_all(&framed))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "leasequery requestor not reading"))??;
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::{Lease, LeaseKind, LeaseOp, LeaseState, MemoryStore};

    const REQUESTOR: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 0x99];

    fn service(allowed: &str) -> (Arc<Leasequery>, Arc<UserStats>) {
        let store = Arc::new(MemoryStore::new());
        let lease = Lease {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 7],
            iaid: 1,
            kind: LeaseKind::Address,
            addr: "2001:db8:1::100".parse().unwrap(),
            prefix_len: 128,
            iface: "eth1".into(),
            valid_until: unix_now() + 3600,
            preferred_until: unix_now() + 1800,
            state: LeaseState::Bound,
            next_hop: None,
            last_transaction: unix_now(),
            relay: None,
        };
        store.commit(vec![LeaseOp::Upsert(lease)]).wait_blocking().unwrap();
        let stats = Arc::<UserStats>::default();
        let lq = Leasequery::new(TrustedRelays::new([allowed.parse().unwrap()]), Some(store), stats.clone());
        lq.set_duid(Some(Duid::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]).unwrap()));
        (lq, stats)
    }

    fn by_address(xid: u8) -> Vec<u8> {
        let ia = [&[0, 5, 0, 24][..], &"2001:db8:1::100".parse::<Ipv6Addr>().unwrap().octets(), &[0; 8]].concat();
        let lq = [&[1u8][..], &[0; 16], &ia].concat();
        let len = u8::try_from(lq.len()).unwrap();
        [&[14, 0, 0, xid, 0, 1, 0, 10][..], &REQUESTOR, &[0, 44, 0, len], &lq].concat()
    }

    async fn listen(lq: &Arc<Leasequery>) -> SocketAddr {
        let listener = TcpListener::bind("[::1]:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Arc::clone(lq).accept_loop(listener));
        addr
    }

    async fn read_all(s: &mut TcpStream) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(Some(m)) = read_frame(s).await {
            out.push(m);
        }
        out
    }

    #[tokio::test]
    async fn an_allowed_requestor_gets_reply_and_done_over_tcp() {
        let (lq, stats) = service("::1");
        let addr = listen(&lq).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        write_frames(&mut s, &[by_address(1), by_address(2)]).await.unwrap();
        s.shutdown().await.unwrap();
        let msgs = read_all(&mut s).await;
        let types: Vec<(u8, u8)> = msgs.iter().map(|m| (m[0], m[3])).collect();
        assert_eq!(types, [(15, 1), (16, 1), (15, 2), (16, 2)]);
        assert_eq!(stats.get(Counter::LeasequeryAnswered), 2);
    }

    #[tokio::test]
    async fn others_get_not_allowed_and_the_connection_ends() {
        let (lq, stats) = service("2001:db8:ff::/48");
        let addr = listen(&lq).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        write_frames(&mut s, &[by_address(1), by_address(2)]).await.unwrap();
        let msgs = read_all(&mut s).await;
        assert_eq!(msgs.len(), 1);
        let m = crate::wire::Message::parse(&msgs[0]).unwrap();
        let status = m.find(dhcpv6_common::wire::opt::STATUS_CODE).expect("a status");
        assert_eq!(&status[..2], &[0, 10], "NotAllowed");
        assert_eq!(stats.get(Counter::LeasequeryRefused), 1);
    }

    #[tokio::test]
    async fn connections_past_the_limit_and_oversized_frames_are_closed() {
        let (lq, stats) = service("::1");
        let addr = listen(&lq).await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // Each held connection is served (a query answered) before the next one counts.
        for s in &mut held {
            write_frames(s, &[by_address(1)]).await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await.unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "the 17th connection is closed");
        assert_eq!(stats.get(Counter::DropLeasequeryConnections), 1);
        drop(held);
        // Their tasks see the ends and give their places back.
        tokio::time::timeout(Duration::from_secs(5), async {
            while lq.connections.available_permits() < MAX_CONNECTIONS {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();

        let mut s = TcpStream::connect(addr).await.unwrap();
        let len = u16::try_from(MAX_QUERY_LEN + 1).unwrap();
        s.write_all(&len.to_be_bytes()).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await.unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "an oversized frame ends the connection");
        assert_eq!(stats.get(Counter::DropLeasequeryConnections), 1, "closed for its frame, not the limit");
    }
}
