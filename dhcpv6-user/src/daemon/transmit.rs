//! Where replies leave: the server socket, or a test's stand-in for it, and the counting
//! every sent reply shares.

use std::future::Future;
use std::net::SocketAddrV6;

use tracing::warn;

use crate::{
    socket::ServerSocket,
    stats::{Counter, MessageOutcome, UserStats},
};

/// Sends one datagram. The server's socket is the one implementation outside tests.
pub trait Transmit: Send + Sync + 'static {
    fn send_to(&self, buf: &[u8], to: SocketAddrV6) -> impl Future<Output = std::io::Result<usize>> + Send;

    /// As `send_to`, out of interface `ifindex` whatever the routing table says (a test's
    /// stand-in may ignore the interface).
    fn send_via(
        &self,
        buf: &[u8],
        to: SocketAddrV6,
        ifindex: u32,
    ) -> impl Future<Output = std::io::Result<usize>> + Send {
        let _ = ifindex;
        self.send_to(buf, to)
    }
}

impl Transmit for ServerSocket {
    fn send_to(&self, buf: &[u8], to: SocketAddrV6) -> impl Future<Output = std::io::Result<usize>> + Send {
        ServerSocket::send_to(self, buf, to)
    }

    fn send_via(
        &self,
        buf: &[u8],
        to: SocketAddrV6,
        ifindex: u32,
    ) -> impl Future<Output = std::io::Result<usize>> + Send {
        ServerSocket::send_via(self, buf, to, ifindex)
    }
}

/// Sends a reply and counts what became of it; the outcome is for the caller to count
/// under its message's type.
pub async fn send_reply(sock: &impl Transmit, stats: &UserStats, reply: &[u8], to: SocketAddrV6) -> MessageOutcome {
    match sock.send_to(reply, to).await {
        Ok(_) => {
            stats.bump(Counter::Replied);
            MessageOutcome::Replied
        }
        Err(e) => {
            warn!(%to, error = %e, "send failed");
            stats.bump(Counter::SendFailed);
            MessageOutcome::Failed
        }
    }
}
