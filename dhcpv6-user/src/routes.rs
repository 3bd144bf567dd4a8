//! Routes to delegated prefixes (RFC 8987: a delegating router routes what it delegates),
//! tagged with protocol "dhcp" so that `ip -6 route show proto dhcp` lists exactly ours.

use std::net::Ipv6Addr;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use netlink_packet_route::route::{RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};

#[derive(Clone)]
pub struct Routes {
    handle: Handle,
}

impl Routes {
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket for routes")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Installs or moves the route to `prefix/len` via `via` on `ifindex`.
    pub async fn replace(&self, prefix: Ipv6Addr, len: u8, via: Ipv6Addr, ifindex: u32) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(prefix, len)
            .gateway(via)
            .output_interface(ifindex)
            .protocol(RouteProtocol::Dhcp)
            .build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .with_context(|| format!("route {prefix}/{len} via {via}"))
    }

    pub async fn remove(&self, prefix: Ipv6Addr, len: u8) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(prefix, len)
            .protocol(RouteProtocol::Dhcp)
            .build();
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing route {prefix}/{len}")),
        }
    }

    /// Our routes in the kernel now (destination, length).
    pub async fn ours(&self) -> Result<Vec<(Ipv6Addr, u8)>> {
        let filter = RouteMessageBuilder::<Ipv6Addr>::new().build();
        let mut routes = self.handle.route().get(filter).execute();
        let mut out = Vec::new();
        while let Some(r) = routes.try_next().await.context("listing routes")? {
            if r.header.protocol != RouteProtocol::Dhcp {
                continue;
            }
            for a in &r.attributes {
                if let RouteAttribute::Destination(netlink_packet_route::route::RouteAddress::Inet6(d)) = a {
                    out.push((*d, r.header.destination_prefix_length));
                }
            }
        }
        Ok(out)
    }
}
