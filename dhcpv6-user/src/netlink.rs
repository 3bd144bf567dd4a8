//! Interfaces as the kernel has them (index, MAC, link-local address), and a watch on link
//! and address changes so the daemon can keep the XDP maps in step.
//!
//! The watch reports "something changed"; the daemon then re-reads the state of every served
//! interface. That one path also covers a netlink overflow (ENOBUFS) or a dropped socket:
//! the watcher reconnects, and a periodic resync catches anything missed.

use std::{net::Ipv6Addr, time::Duration};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::{
    address::{AddressAttribute, AddressHeaderFlags, AddressScope},
    link::{LinkAttribute, LinkFlags},
};
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::mpsc;
use tracing::warn;

use crate::server::trust::Prefix;

/// What the fast path needs of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The first non-tentative link-local address; `None` until DAD completes.
    pub link_local: Option<Ipv6Addr>,
    /// The first global address: a relay's link-address.
    pub global: Option<Ipv6Addr>,
    /// That address's prefix: where clients on the link may have global sources.
    pub global_prefix: Option<Prefix>,
    pub up: bool,
}

pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The current state of `name`, or `None` when no such interface exists.
    pub async fn link(&self, name: &str) -> Result<Option<LinkState>> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        let msg = match links.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            // ENODEV comes back as an error for a name that does not exist.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading link {name}")),
        };
        let ifindex = msg.header.index;
        let up = msg.header.flags.contains(LinkFlags::Up);
        let mut mac = [0u8; 6];
        for a in &msg.attributes {
            if let LinkAttribute::Address(bytes) = a {
                if bytes.len() == 6 {
                    mac.copy_from_slice(bytes);
                }
            }
        }
        let mut link_local = None;
        let mut global = None;
        let mut global_prefix = None;
        let mut addrs = self.handle.address().get().set_link_index_filter(ifindex).execute();
        while let Some(a) = addrs.try_next().await.with_context(|| format!("reading addresses of {name}"))? {
            if a.header.flags.contains(AddressHeaderFlags::Tentative) {
                continue;
            }
            for attr in &a.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V6(v6)) = attr {
                    if a.header.scope == AddressScope::Link && v6.is_unicast_link_local() && link_local.is_none() {
                        link_local = Some(*v6);
                    }
                    if a.header.scope == AddressScope::Universe && global.is_none() {
                        global = Some(*v6);
                        global_prefix = Prefix::new(*v6, a.header.prefix_len);
                    }
                }
            }
        }
        Ok(Some(LinkState { ifindex, mac, link_local, global, global_prefix, up }))
    }
}

/// Sends `()` on every link or IPv6 address event, after the socket was (re)opened, and every
/// `resync` as a safety net. Runs until the receiver is dropped.
pub fn watch(resync: Duration) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            match rtnetlink::new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Ipv6Ifaddr]) {
                Ok((conn, _handle, mut messages)) => {
                    let conn = tokio::spawn(conn);
                    // A fresh subscription may have missed events: resync once.
                    let _ = tx.try_send(());
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(_) => { let _ = tx.try_send(()); }
                                None => { warn!("netlink event stream ended; reconnecting"); break; }
                            },
                            _ = tokio::time::sleep(resync) => { let _ = tx.try_send(()); }
                            _ = tx.closed() => { conn.abort(); return; }
                        }
                    }
                    conn.abort();
                }
                Err(e) => warn!(error = %e, "cannot subscribe to netlink events; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    rx
}
