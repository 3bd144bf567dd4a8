//! The served-interface table: each configured interface as the kernel has it, kept in step
//! with netlink and config in the XDP maps and the socket's memberships, and looked up by
//! ifindex for every datagram.
//!
//! The table owns its entries, the ifindex index and the reply-data generation; the
//! dataplane, netlink and the socket are lent to `sync` by the server, which shares them with
//! the relay agent (both write the same reply-data map and attach the same program).

use std::collections::HashMap;

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::{
    config::IfaceConfig,
    dataplane::{AttachMode, Dataplane},
    fastpath::{build_link_reply_data, build_reply_data},
    netlink::{LinkState, Netlink},
    server::{trust::Arrival, IfaceService, LinkService},
    socket::ServerSocket,
    wire::Duid,
};

/// One served interface as it stands now.
#[derive(Clone)]
pub struct ServedIface {
    cfg: IfaceConfig,
    link: Option<LinkState>,
    svc: Option<IfaceService>,
    /// The map entry last written, to skip rewrites that change nothing.
    written: Option<Vec<u8>>,
    /// Whether that entry lets XDP answer Renews (`IFACE_RENEW`).
    renew: bool,
}

impl ServedIface {
    fn new(cfg: IfaceConfig) -> Self {
        Self { cfg, link: None, svc: None, written: None, renew: false }
    }

    pub fn name(&self) -> &str {
        self.cfg.name()
    }

    /// Server DUID and encoded options; `None` until its options could be built.
    pub fn service(&self) -> Option<&IfaceService> {
        self.svc.as_ref()
    }

    /// Its ifindex as of the last sync; `None` while the kernel has no such interface.
    pub fn ifindex(&self) -> Option<u32> {
        self.link.map(|l| l.ifindex)
    }

    /// Whether the fast path has its reply data (it answers Information-Requests in XDP).
    pub fn has_reply_data(&self) -> bool {
        self.written.is_some()
    }

    /// What `server::trust` weighs a datagram that arrived here against: the relays
    /// trusted on it, the prefix of its first global address, its link-local address.
    pub fn arrival(&self) -> Arrival<'_> {
        let on_link = self.link.as_ref().and_then(|l| l.global_prefix.as_ref());
        Arrival {
            trusted: self.cfg.trusted_relays(),
            on_link: on_link.map_or(&[][..], std::slice::from_ref),
            link_local: self.link.and_then(|l| l.link_local),
        }
    }
}

pub struct ServedIfaces {
    ifaces: Vec<ServedIface>,
    /// The `[[link]]`s with options of their own, by the Interface-ID naming them, for the
    /// fast path's relayed Information-Requests; `None`: it cannot tell them all apart.
    relay_links: Option<Vec<(Vec<u8>, LinkService)>>,
    by_index: HashMap<u32, usize>,
    /// Interfaces whose Renews XDP may answer (`xdp_renew`: their clients' link has no
    /// `[[link]]` options of its own), by name; `None`: the feature is off.
    renew_links: Option<std::collections::HashSet<String>>,
    generation: u32,
    fast_path: bool,
    xdp_mode: AttachMode,
}

impl ServedIfaces {
    pub fn new(cfgs: Vec<IfaceConfig>, fast_path: bool, xdp_mode: AttachMode) -> Self {
        let ifaces = cfgs.into_iter().map(ServedIface::new).collect();
        Self {
            ifaces,
            relay_links: Some(Vec::new()),
            by_index: HashMap::new(),
            renew_links: None,
            generation: 0,
            fast_path,
            xdp_mode,
        }
    }

    /// The links a relayed Information-Request may name (`fastpath::relay_links`); the next
    /// `sync` writes them.
    pub fn set_relay_links(&mut self, links: Option<Vec<(Vec<u8>, LinkService)>>) {
        self.relay_links = links;
    }

    /// The interfaces whose Renews XDP may answer (`None`: none); the next `sync` writes them.
    pub fn set_renew_links(&mut self, links: Option<std::collections::HashSet<String>>) {
        self.renew_links = links;
    }

    /// The interfaces whose reply data lets XDP answer Renews, by name, with their ifindex.
    pub fn renew_ifaces(&self) -> HashMap<String, u32> {
        self.ifaces
            .iter()
            .filter(|i| i.renew && i.written.is_some())
            .filter_map(|i| Some((i.cfg.name().to_owned(), i.link?.ifindex)))
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ifaces.iter().map(|i| i.cfg.name())
    }

    /// Every configured interface, present or not (for `ctl status`).
    pub fn iter(&self) -> impl Iterator<Item = &ServedIface> {
        self.ifaces.iter()
    }

    /// The present interfaces by ifindex, for the workers' table.
    pub fn by_index(&self) -> std::collections::HashMap<u32, ServedIface> {
        self.by_index.iter().map(|(&i, &idx)| (i, self.ifaces[idx].clone())).collect()
    }

    /// The ifindexes served as of the last sync.
    pub fn indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_index.keys().copied()
    }

    /// A reloaded configuration: known interfaces take their new settings, new ones are
    /// added (the next `sync` finds them). Returns whether any was added.
    pub fn reconfigure(&mut self, cfgs: Vec<IfaceConfig>) -> bool {
        let known = self.ifaces.len();
        for c in cfgs {
            match self.ifaces.iter_mut().find(|i| i.cfg.name() == c.name()) {
                Some(i) => i.cfg = c,
                None => self.ifaces.push(ServedIface::new(c)),
            }
        }
        known != self.ifaces.len()
    }

    /// Re-reads every served interface from the kernel and rewrites what changed: attachment,
    /// multicast membership, and the reply data of the fast path.
    pub async fn sync(&mut self, nl: &Netlink, dp: &mut Dataplane, sock: &ServerSocket) -> Result<()> {
        self.by_index.clear();
        for idx in 0..self.ifaces.len() {
            let name = self.ifaces[idx].cfg.name().to_owned();
            let now = nl.link(&name).await?;
            let before = self.ifaces[idx].link;
            if let Some(old) = before {
                if now.map(|n| n.ifindex) != Some(old.ifindex) {
                    // Gone or re-created: its old entry and attachment are stale.
                    dp.remove_iface(old.ifindex)?;
                    dp.detach(&name)?;
                    self.ifaces[idx].written = None;
                }
            }
            let Some(link) = now else {
                if before.is_some() {
                    warn!(iface = %name, "interface disappeared; waiting for it to come back");
                }
                self.ifaces[idx].link = None;
                self.ifaces[idx].svc = None;
                continue;
            };
            sock.join_as_server(link.ifindex)?;
            self.by_index.insert(link.ifindex, idx);
            self.ifaces[idx].link = Some(link);
            // Reply data first: a program swapped in over fresh maps (changed layout) must
            // find it there from its first frame.
            self.update_reply_data(idx, dp)?;
            if before.map(|b| b.ifindex) != Some(link.ifindex) {
                let mode = dp.attach(&name, self.xdp_mode).with_context(|| format!("attaching XDP to {name}"))?;
                info!(iface = %name, ifindex = link.ifindex, ?mode, "XDP attached");
            }
        }
        Ok(())
    }

    fn update_reply_data(&mut self, idx: usize, dp: &mut Dataplane) -> Result<()> {
        let served = &self.ifaces[idx];
        let Some(link) = served.link else {
            return Ok(());
        };
        let mut service = served.cfg.service().clone();
        // As odhcpd: with no DNS server known, announce ourselves (the link-local address).
        if service.dns.is_empty() {
            service.dns.extend(link.link_local);
        }
        let options = service.encode().with_context(|| format!("{}: configured options", served.cfg.name()))?;
        // A configured DUID (several boxes as one server) replaces the interface's own, in
        // userspace and in the fast path's reply data alike.
        let duid = served.cfg.server_duid().cloned().unwrap_or_else(|| Duid::from_mac(link.mac));
        let ignore_user_classes = service.ignore_user_classes.clone();
        let svc = IfaceService { duid, options, ignore_user_classes };
        let name = served.cfg.name().to_owned();
        let Some(ll) = link.link_local else {
            // No link-local address yet (DAD): the program cannot source replies; userspace will.
            dp.remove_iface(link.ifindex)?;
            self.ifaces[idx].svc = Some(svc);
            self.ifaces[idx].written = None;
            return Ok(());
        };
        let generation = self.generation.wrapping_add(1);
        // Relayed Information-Requests in XDP: only from relays the interface trusts all of
        // on the link (lightweight relays), and only when every link an Interface-ID may
        // name with options of its own is in the map.
        let relay_links = match &self.relay_links {
            Some(l) if self.fast_path && served.cfg.trusted_relays().admits_every_link_local() => Some(l),
            _ => None,
        };
        let links = relay_links
            .map_or_else(Vec::new, |l| build_link_reply_data(link.mac, ll, &svc.duid, l, self.fast_path, generation));
        match build_reply_data(link.mac, ll, &svc, self.fast_path, generation) {
            Ok(mut data) => {
                let renew = self.fast_path && self.renew_links.as_ref().is_some_and(|l| l.contains(&name));
                self.ifaces[idx].renew = false;
                if renew {
                    match crate::fastpath::allow_renew(&mut data, &svc) {
                        Ok(()) => self.ifaces[idx].renew = true,
                        // Said once per change of what is written, not at every sync.
                        Err(e) if self.ifaces[idx].written.is_none() => {
                            warn!(iface = %name, error = %e, "Renews on this interface go to userspace")
                        }
                        Err(_) => {}
                    }
                }
                if relay_links.is_some() {
                    data.flags |= dhcpv6_common::IFACE_RELAYED_IR;
                }
                if !links.is_empty() {
                    data.flags |= dhcpv6_common::IFACE_RELAY_LINKS;
                }
                let mut key = written_key(&data);
                for (iid, d) in &links {
                    key.extend_from_slice(iid);
                    key.extend(d.as_ref().map_or_else(Vec::new, written_key));
                }
                if self.ifaces[idx].written.as_ref() != Some(&key) {
                    self.generation = generation;
                    // The links first: the interface's entry is what tells the program to look.
                    dp.set_relay_links(dhcpv6_common::IfaceKey::untagged(link.ifindex), &links)?;
                    dp.set_iface(link.ifindex, &data)?;
                    info!(
                        iface = %name,
                        link_local = %ll,
                        generation = self.generation,
                        relayed = relay_links.is_some(),
                        links = links.len(),
                        "fast-path reply data written"
                    );
                    self.ifaces[idx].written = Some(key);
                }
            }
            Err(e) => {
                warn!(iface = %name, error = %e, "options do not fit the fast path; userspace answers this interface");
                dp.remove_iface(link.ifindex)?;
                self.ifaces[idx].written = None;
            }
        }
        self.ifaces[idx].svc = Some(svc);
        Ok(())
    }
}

/// A map entry's bytes as compared to skip rewrites (the generation changes every time).
fn written_key(data: &dhcpv6_common::IfaceReply) -> Vec<u8> {
    let mut key = bytemuck::bytes_of(data).to_vec();
    key[dhcpv6_common::maps::GENERATION_OFFSET..dhcpv6_common::maps::GENERATION_OFFSET + 4].fill(0);
    key
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{self, Overrides};

    fn cfgs(names: &[&str], dns: &str) -> Vec<IfaceConfig> {
        let flags = Overrides {
            ifaces: names.iter().map(|&n| n.to_owned()).collect(),
            dns: vec![dns.parse().unwrap()],
            ..Overrides::default()
        };
        let (ifaces, _, _) = config::load(None, &flags, Path::new("/nonexistent/resolv.conf")).unwrap().into_parts();
        ifaces
    }

    #[test]
    fn a_reload_updates_known_interfaces_and_adds_new_ones() {
        let mut t = ServedIfaces::new(cfgs(&["eth1"], "2001:db8::53"), true, AttachMode::Generic);
        assert!(!t.reconfigure(cfgs(&["eth1"], "2001:db8::54")));
        assert_eq!(t.ifaces[0].cfg.service().dns, vec!["2001:db8::54".parse::<std::net::Ipv6Addr>().unwrap()]);
        assert!(t.reconfigure(cfgs(&["eth1", "eth2"], "2001:db8::54")));
        assert_eq!(t.names().collect::<Vec<_>>(), ["eth1", "eth2"]);
    }

    #[test]
    fn nothing_is_served_before_the_kernel_has_been_read() {
        let t = ServedIfaces::new(cfgs(&["eth1"], "2001:db8::53"), true, AttachMode::Generic);
        assert_eq!(t.indexes().count(), 0);
        assert!(t.by_index().is_empty());
    }
}
