//! The XDP program in the kernel: load, attach, pin, keep the reply-data map in step, read
//! the counters.
//!
//! Everything lives under one bpffs folder (default `/sys/fs/bpf/dhcpv6/`): the maps by name
//! and one link per interface (`link_<ifname>`), so `bpftool` and `dhcpv6d stats` can find
//! them from another process. They outlive the daemon: the link keeps the program attached and
//! answering from the last reply data while no daemon runs, and a starting daemon adopts them
//! (see `pins`). Only `dhcpv6d detach` removes them.
//!
//! Reply data of an interface's untagged frames lives in a slot of `DHCPV6_REPLY_SLOTS`
//! named by the interface's selector in `DHCPV6_IFACE_SLOT` (the program's lookup is then
//! inlined); everything else, and what does not fit the slots, in the hash `DHCPV6_IFACES`.
//! A rewrite goes into a slot no program run can be reading (`slots`, `grace`) and then moves
//! the selector: a program never sees half of one version and half of another.

mod grace;
mod slots;

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array as BpfArray, HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use dhcpv6_common::{
    Counters, FloodConfig, IfaceKey, IfaceReply, IfaceSlot, RelayLinkKey, RelaySource, RenewEntry, RenewKey,
    MAP_COUNTERS, MAP_FLOOD_CONFIG, MAP_FLOOD_RELAYS, MAP_IFACE_REPLY, MAP_IFACE_SLOT, MAP_PROGS, MAP_RELAY_LINKS,
    MAP_RENEWS, MAP_REPLY_SLOTS, MAX_FLOOD_RELAYS, MAX_RELAY_LINKS, MAX_SLOT_IFINDEX, PROGRAM_NAME, PROG_RENEW,
    RELAY_LINK_KEY_BASE, RENEW_PROGRAM_NAME,
};
use tracing::{info, warn};

use crate::pins;
pub use grace::{Grace, GraceError};
use slots::SlotPool;

/// The XDP object, built by `cargo xtask build` and embedded at compile time.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("DHCPV6_EBPF_OBJ"));

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/dhcpv6";

/// How to attach: the driver's own XDP, or the kernel's generic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Driver mode, falling back to generic mode with a warning when the driver refuses.
    Auto,
    Driver,
    Generic,
}

/// What the daemon holds of one attachment. The pin keeps the link (and the program) alive
/// when the daemon is gone; the descriptor lets `detach` end it.
struct Attached {
    pin: PathBuf,
    link: FdLink,
}

pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    links: HashMap<String, Attached>,
    _logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Read from the selectors at the first write (the maps may be adopted).
    slots: Option<SlotPool>,
    grace: Option<Grace>,
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there, as iproute2 and bpftool do.
pub fn ensure_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf")) {
        return Ok(());
    }
    nix::mount::mount(Some("bpf"), "/sys/fs/bpf", Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .context("mounting bpffs at /sys/fs/bpf")?;
    info!("mounted bpffs at /sys/fs/bpf");
    Ok(())
}

impl Dataplane {
    /// Loads the program (verifier included) with its maps pinned under `pin_dir`. Maps that
    /// a previous daemon pinned with the same layout are adopted, counters and reply data
    /// included; otherwise fresh maps replace their pins, while a program still attached
    /// keeps answering from the old ones until `attach` swaps it.
    /// `bpf_log`: let the program log through aya-log (off by default: it costs a ring-buffer
    /// reservation per message).
    pub fn load(pin_dir: &Path, bpf_log: bool) -> Result<Self> {
        if pin_dir.starts_with("/sys/fs/bpf") {
            ensure_bpffs()?;
        }
        let created = !pin_dir.exists();
        fs::create_dir_all(pin_dir).with_context(|| format!("creating {}", pin_dir.display()))?;
        let loaded = Self::load_into(pin_dir, bpf_log);
        if loaded.is_err() && created {
            // Nothing of ours is left running: leave no pins or pin directory behind either.
            let _ = pins::remove_all(pin_dir);
        }
        loaded
    }

    fn load_into(pin_dir: &Path, bpf_log: bool) -> Result<Self> {
        let level: u8 = if bpf_log { 5 } else { 0 };
        let defs = pins::pinned_map_defs(EBPF_OBJECT)?;
        let layout = pins::fingerprint(&defs);
        let adopt = match pins::read_layout(pin_dir) {
            Some(old) if old == layout => match pins::mismatch(pin_dir, &defs) {
                None => true,
                Some(why) => {
                    warn!(pin_dir = %pin_dir.display(), reason = %why, "pinned maps do not match; creating fresh ones");
                    false
                }
            },
            Some(old) => {
                info!(
                    old = format!("{old:016x}"),
                    new = format!("{layout:016x}"),
                    "map layout changed: fresh maps, the program swaps over to them"
                );
                false
            }
            None => false,
        };
        let paths: Vec<(String, PathBuf)> = defs.iter().map(|d| (d.name.clone(), pin_dir.join(&d.name))).collect();
        let mut loader = EbpfLoader::new();
        loader.override_global("AYA_LOG_LEVEL", &level, false);
        if adopt {
            for (name, path) in &paths {
                // Opens the pinned map (or creates and pins one that is missing).
                loader.map_pin_path(name.as_str(), path.as_path());
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT).context("loading the XDP object")?;
        let logger = if bpf_log {
            Some(aya_log::EbpfLogger::init(&mut ebpf).context("starting the XDP program's logger")?)
        } else {
            None
        };
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("program {PROGRAM_NAME} missing from the object"))?
            .try_into()?;
        prog.load().context("the kernel verifier rejected the XDP program")?;
        load_renew(&mut ebpf)?;
        if adopt {
            info!(pin_dir = %pin_dir.display(), "adopted the pinned maps (same layout): counters and reply data carry on");
        } else {
            // The old maps (if any) stay alive as long as an attached program uses them.
            for (name, path) in &paths {
                let _ = fs::remove_file(path);
                ebpf.map(name)
                    .ok_or_else(|| anyhow!("map {name} missing from the object"))?
                    .pin(path)
                    .with_context(|| format!("pinning {}", path.display()))?;
            }
            // Last: a daemon that dies before this line leaves a layout that does not match.
            pins::write_layout(pin_dir, layout)?;
        }
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            links: HashMap::new(),
            _logger: logger,
            slots: None,
            grace: None,
        })
    }

    /// Hands the program's log lines (when `--bpf-log` is on) to the daemon's logger.
    pub fn flush_log(&mut self) {
        if let Some(l) = self._logger.as_mut() {
            l.flush();
        }
    }

    /// For tests and benchmarks: the loaded program itself.
    pub fn program(&mut self) -> Result<&mut Xdp> {
        Ok(self.ebpf.program_mut(PROGRAM_NAME).ok_or_else(|| anyhow!("no program"))?.try_into()?)
    }

    /// For tests: the Renew program (`dhcpv6_renew`), loaded with the main one.
    pub fn renew_program(&mut self) -> Result<&mut Xdp> {
        Ok(self.ebpf.program_mut(RENEW_PROGRAM_NAME).ok_or_else(|| anyhow!("no renew program"))?.try_into()?)
    }

    fn link_pin(&self, ifname: &str) -> PathBuf {
        self.pin_dir.join(format!("link_{ifname}"))
    }

    /// Attaches to `ifname` and pins the link. A link pinned by an earlier daemon on the same
    /// interface is taken over: `bpf_link_update` swaps in this program atomically, so the
    /// interface never runs without one (its attach mode stays the one it was made with).
    /// Returns the mode in which it attached.
    pub fn attach(&mut self, ifname: &str, mode: AttachMode) -> Result<AttachMode> {
        let pin = self.link_pin(ifname);
        if let Some(link) = self.take_over(ifname, &pin)? {
            info!(iface = ifname, "took over the pinned XDP link (program replaced with bpf_link_update)");
            self.links.insert(ifname.to_owned(), Attached { pin, link });
            return Ok(mode);
        }
        let prog = self.program()?;
        let (id, used) = match mode {
            AttachMode::Driver => (prog.attach(ifname, XdpMode::Driver)?, AttachMode::Driver),
            AttachMode::Generic => (prog.attach(ifname, XdpMode::Skb)?, AttachMode::Generic),
            AttachMode::Auto => match prog.attach(ifname, XdpMode::Driver) {
                Ok(id) => (id, AttachMode::Driver),
                Err(e) => {
                    warn!(iface = ifname, error = %e, "driver refused native XDP; attaching in generic mode (slower)");
                    (
                        prog.attach(ifname, XdpMode::Skb).with_context(|| format!("attaching XDP to {ifname}"))?,
                        AttachMode::Generic,
                    )
                }
            },
        };
        let link = prog.take_link(id)?;
        let fd: FdLink =
            link.try_into().map_err(|_| anyhow!("the kernel attached {ifname} without a bpf_link; cannot pin it"))?;
        let pinned = fd.pin(&pin).with_context(|| format!("pinning {}", pin.display()))?;
        self.links.insert(ifname.to_owned(), Attached { pin, link: FdLink::from(pinned) });
        Ok(used)
    }

    /// Points the link pinned at `pin` to this program. None when there is nothing to take
    /// over: no pin, or a stale one (its interface is gone), which is removed.
    fn take_over(&mut self, ifname: &str, pin: &Path) -> Result<Option<FdLink>> {
        if !pin.exists() {
            return Ok(None);
        }
        // The pin stays in place throughout: dropping our descriptor never detaches.
        let Ok(old) = PinnedLink::from_pin(pin) else {
            warn!(iface = ifname, pin = %pin.display(), "unreadable link pin; attaching anew");
            let _ = fs::remove_file(pin);
            return Ok(None);
        };
        let Ok(xdp) = XdpLink::try_from(FdLink::from(old)) else {
            warn!(iface = ifname, pin = %pin.display(), "pin is not an XDP link; attaching anew");
            let _ = fs::remove_file(pin);
            return Ok(None);
        };
        let prog = self.program()?;
        match prog.attach_to_link(xdp) {
            Ok(id) => {
                let fd: FdLink = prog.take_link(id)?.try_into().map_err(|_| anyhow!("link is not a bpf_link"))?;
                Ok(Some(fd))
            }
            Err(ProgramError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOLINK) => {
                // The interface it was attached to was deleted (perhaps re-created since).
                info!(iface = ifname, "pinned link belonged to a deleted interface; attaching anew");
                let _ = fs::remove_file(pin);
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("replacing the program on {ifname} (bpf_link_update)")),
        }
    }

    /// Detaches from `ifname` (the link pin goes, and with it the attachment).
    pub fn detach(&mut self, ifname: &str) -> Result<()> {
        if let Some(a) = self.links.remove(ifname) {
            drop(a.link);
            pins::detach_link(&a.pin).with_context(|| format!("detaching XDP from {ifname}"))?;
        }
        Ok(())
    }

    /// At start, after the first sync: links pinned for interfaces this daemon no longer
    /// serves are detached, and reply data of interfaces it does not serve is removed.
    /// Returns the interfaces detached.
    pub fn remove_stale(&mut self, served: &std::collections::HashSet<u32>) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        let entries = fs::read_dir(&self.pin_dir).with_context(|| format!("reading {}", self.pin_dir.display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(ifname) = name.strip_prefix(pins::LINK_PREFIX) else {
                continue;
            };
            if !self.links.contains_key(ifname) {
                pins::detach_link(&e.path())?;
                gone.push(ifname.to_owned());
            }
        }
        // Every entry of an interface no longer served goes, its VLANs' included.
        let mut stale: Vec<IfaceKey> =
            self.ifaces()?.keys().filter_map(|k| k.ok()).filter(|k| !served.contains(&k.ifindex)).collect();
        stale.extend(self.pool()?.live_ifindexes().filter(|i| !served.contains(i)).map(IfaceKey::untagged));
        for key in stale {
            self.remove_reply_data(key)?;
        }
        Ok(gone)
    }

    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    fn ifaces(&mut self) -> Result<BpfHashMap<&mut MapData, IfaceKey, IfaceReply>> {
        let map = self.ebpf.map_mut(MAP_IFACE_REPLY).ok_or_else(|| anyhow!("no reply-data map"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    /// Replaces the reply data of one interface's untagged frames (one atomic map update).
    pub fn set_iface(&mut self, ifindex: u32, data: &IfaceReply) -> Result<()> {
        self.set_reply_data(IfaceKey::untagged(ifindex), data)
    }

    /// Replaces the reply data of frames with `key`'s VLAN tags arriving on its interface
    /// (a VLAN interface whose parent runs the program). Without it such frames go up.
    /// Untagged keys go into a slot when one is free (see the module's notes); a program
    /// answers from the old data or the new, never from a mix.
    pub fn set_reply_data(&mut self, key: IfaceKey, data: &IfaceReply) -> Result<()> {
        let Some(index) = IfaceSlot::index(&key) else {
            return self.insert_hashed(key, data);
        };
        self.grace()?;
        let (Some(pool), Some(grace)) = (self.slots.as_mut(), self.grace.as_ref()) else {
            bail!("the reply-data slots were not set up");
        };
        let Some(slot) = pool.take(|| grace.wait())? else {
            // Every slot live: this interface is answered from the hash, as all were before.
            self.insert_hashed(key, data)?;
            return self.unlink_slot(index);
        };
        if let Err(e) = self.reply_slots()?.set(slot, data, 0) {
            self.pool()?.put_back(slot);
            return Err(e).with_context(|| format!("writing reply data for {key:?} into slot {slot}"));
        }
        // The slot's bytes before the selector's, for a program on another CPU that follows
        // the selector (the kernel's memcpys carry no ordering of their own; on x86 stores
        // are ordered anyway).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.selectors()?
            .set(index, IfaceSlot { slot }, 0)
            .with_context(|| format!("pointing {key:?} to slot {slot}"))?;
        self.pool()?.link(index, slot);
        // An entry left in the hash (the slots were full once) is no longer read.
        self.remove_hashed(key)
    }

    fn insert_hashed(&mut self, key: IfaceKey, data: &IfaceReply) -> Result<()> {
        self.ifaces()?.insert(key, data, 0).with_context(|| format!("writing reply data for {key:?}"))
    }

    fn remove_hashed(&mut self, key: IfaceKey) -> Result<()> {
        match self.ifaces()?.remove(&key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Points `index`'s selector back to the hash; its slot is retired.
    fn unlink_slot(&mut self, index: u32) -> Result<()> {
        if self.pool()?.live(index).is_some() {
            self.selectors()?.set(index, IfaceSlot { slot: 0 }, 0).context("clearing a reply-data selector")?;
            self.pool()?.unlink(index);
        }
        Ok(())
    }

    fn selectors(&mut self) -> Result<BpfArray<&mut MapData, IfaceSlot>> {
        let map = self.ebpf.map_mut(MAP_IFACE_SLOT).ok_or_else(|| anyhow!("no reply-data selector map"))?;
        Ok(BpfArray::try_from(map)?)
    }

    fn reply_slots(&mut self) -> Result<BpfArray<&mut MapData, IfaceReply>> {
        let map = self.ebpf.map_mut(MAP_REPLY_SLOTS).ok_or_else(|| anyhow!("no reply-data slot map"))?;
        Ok(BpfArray::try_from(map)?)
    }

    /// The slots' bookkeeping, read from the selectors the first time.
    fn pool(&mut self) -> Result<&mut SlotPool> {
        if self.slots.is_none() {
            let sel = self.selectors()?;
            let mut live = Vec::new();
            for i in 0..MAX_SLOT_IFINDEX {
                let s = sel.get(&i, 0).context("reading the reply-data selectors")?;
                if s.slot != 0 {
                    live.push((i, s.slot));
                }
            }
            self.slots = Some(SlotPool::adopt(live));
        }
        Ok(self.slots.as_mut().expect("set above"))
    }

    /// The grace-period waiter, made at the first write (it creates two small maps).
    fn grace(&mut self) -> Result<&Grace> {
        self.pool()?;
        if self.grace.is_none() {
            self.grace = Some(Grace::new()?);
        }
        Ok(self.grace.as_ref().expect("set above"))
    }

    pub fn remove_iface(&mut self, ifindex: u32) -> Result<()> {
        self.remove_reply_data(IfaceKey::untagged(ifindex))?;
        self.set_relay_links(IfaceKey::untagged(ifindex), &[])
    }

    /// Writes the `[[link]]`s with options of their own that a lightweight relay's
    /// Interface-ID on `key` may name (`DHCPV6_RELAY_LINKS`): each link's reply data goes
    /// into `DHCPV6_IFACES` under a key no frame has (`outer_vlan` from
    /// `RELAY_LINK_KEY_BASE`, `inner_vlan` the arrival's VLAN), or is removed when it could
    /// not be built (`None`: the program then passes such requests up); entries of `key` no
    /// longer listed go. Call before the arrival's reply data with `IFACE_RELAY_LINKS`.
    pub fn set_relay_links(&mut self, key: IfaceKey, links: &[(Vec<u8>, Option<IfaceReply>)]) -> Result<()> {
        if key.inner_vlan != 0 {
            bail!("relay links are kept for untagged and single-tagged frames only, not {key:?}");
        }
        let count = u16::try_from(links.len())
            .ok()
            .filter(|&n| n <= u16::MAX - RELAY_LINK_KEY_BASE && u32::from(n) <= MAX_RELAY_LINKS)
            .ok_or_else(|| anyhow!("{} relay links; the program holds at most {MAX_RELAY_LINKS}", links.len()))?;
        // Below RELAY_LINK_KEY_BASE + count, which fits (checked above).
        let target =
            |n: u16| IfaceKey { ifindex: key.ifindex, outer_vlan: RELAY_LINK_KEY_BASE + n, inner_vlan: key.outer_vlan };
        let mut wanted = Vec::with_capacity(links.len());
        for (n, (iid, data)) in (0..count).zip(links) {
            let k = RelayLinkKey::new(key, iid)
                .ok_or_else(|| anyhow!("an Interface-ID of {} bytes is longer than the program looks up", iid.len()))?;
            match data {
                Some(d) => self.set_reply_data(target(n), d)?,
                None => self.remove_reply_data(target(n))?,
            }
            wanted.push((k, target(n)));
        }
        let stale_data: Vec<IfaceKey> = self
            .ifaces()?
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| {
                k.ifindex == key.ifindex
                    && k.inner_vlan == key.outer_vlan
                    && k.outer_vlan >= RELAY_LINK_KEY_BASE + count
            })
            .collect();
        let map = self.ebpf.map_mut(MAP_RELAY_LINKS).ok_or_else(|| anyhow!("no relay-link map"))?;
        let mut map = BpfHashMap::<_, RelayLinkKey, IfaceKey>::try_from(map)?;
        let stale: Vec<RelayLinkKey> = map
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.iface == key && !wanted.iter().any(|(w, _)| w == k))
            .collect();
        for k in stale {
            let _ = map.remove(&k);
        }
        for (k, t) in &wanted {
            map.insert(k, t, 0).context("writing a relay link")?;
        }
        for k in stale_data {
            self.remove_reply_data(k)?;
        }
        Ok(())
    }

    pub fn remove_reply_data(&mut self, key: IfaceKey) -> Result<()> {
        if let Some(index) = IfaceSlot::index(&key) {
            self.unlink_slot(index)?;
        }
        self.remove_hashed(key)
    }

    /// The reply data the program answers an interface's untagged frames from.
    pub fn iface(&mut self, ifindex: u32) -> Result<Option<IfaceReply>> {
        let key = IfaceKey::untagged(ifindex);
        if let Some(slot) = IfaceSlot::index(&key).map(|i| self.pool().map(|p| p.live(i))).transpose()?.flatten() {
            return Ok(Some(self.reply_slots()?.get(&slot, 0)?));
        }
        match self.ifaces()?.get(&key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the flood limits and the relay sources that get the relay buckets. Sources
    /// no longer listed are removed first; the limits are written last, with the count the
    /// program checks before it looks a source up.
    pub fn set_flood(&mut self, config: &FloodConfig, relays: &[std::net::Ipv6Addr]) -> Result<()> {
        if relays.len() > MAX_FLOOD_RELAYS as usize {
            bail!("{} relay sources; the program holds at most {MAX_FLOOD_RELAYS}", relays.len());
        }
        let wanted: Vec<RelaySource> = relays.iter().map(|a| RelaySource { addr: a.octets() }).collect();
        {
            let map = self.ebpf.map_mut(MAP_FLOOD_RELAYS).ok_or_else(|| anyhow!("no relay-source map"))?;
            let mut map = BpfHashMap::<_, RelaySource, u32>::try_from(map)?;
            let stale: Vec<RelaySource> = map.keys().filter_map(|k| k.ok()).filter(|k| !wanted.contains(k)).collect();
            for k in stale {
                let _ = map.remove(&k);
            }
            for k in &wanted {
                map.insert(k, 0, 0).context("writing a relay source")?;
            }
        }
        let config = FloodConfig { relays: wanted.len() as u32, ..*config };
        let map = self.ebpf.map_mut(MAP_FLOOD_CONFIG).ok_or_else(|| anyhow!("no flood config map"))?;
        aya::maps::Array::<_, FloodConfig>::try_from(map)?.set(0, config, 0).context("writing the flood limits")?;
        Ok(())
    }

    fn renews(&mut self) -> Result<BpfHashMap<&mut MapData, RenewKey, RenewEntry>> {
        let map = self.ebpf.map_mut(MAP_RENEWS).ok_or_else(|| anyhow!("no renew map"))?;
        Ok(BpfHashMap::try_from(map)?)
    }

    /// Puts (or replaces, whole: one `bpf_map_update_elem`) what a Renew for `key`'s IA is
    /// answered with in XDP. Entries come from `server::stateful::fast_renew::entry`, sealed;
    /// an unsealed one is refused (the program would never answer from it). Call only after
    /// the store durably covers the entry (docs/fast-path.md, "Renew").
    pub fn put_renew(&mut self, key: &RenewKey, entry: &RenewEntry) -> Result<()> {
        if !entry.is_sealed(key) {
            bail!("renew entry for {key:?} is not sealed for its key");
        }
        self.renews()?.insert(key, entry, 0).context("writing a renew entry")
    }

    /// As `put_renew` without the seal check: for tests of the program's torn-read guard.
    #[doc(hidden)]
    pub fn put_renew_unsealed(&mut self, key: &RenewKey, entry: &RenewEntry) -> Result<()> {
        self.renews()?.insert(key, entry, 0).context("writing a renew entry")
    }

    /// Where the maps are pinned (another process, or a test's writer thread, opens them there).
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Deletes `key`'s entry, before any commit that could shorten or end its lease. `false`
    /// when there was none.
    pub fn delete_renew(&mut self, key: &RenewKey) -> Result<bool> {
        match self.renews()?.remove(key) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e).context("deleting a renew entry"),
        }
    }

    /// Deletes every renew entry (at start: a previous process's entries are not trusted).
    /// Returns how many went.
    pub fn clear_renews(&mut self) -> Result<usize> {
        let mut map = self.renews()?;
        let mut n = 0;
        // Keys are collected first: deleting while iterating restarts the walk in the kernel.
        // Bounded: the map holds at most MAX_RENEWS, and each pass removes what it saw.
        for _ in 0..4 {
            let keys: Vec<RenewKey> = map.keys().filter_map(|k| k.ok()).collect();
            if keys.is_empty() {
                break;
            }
            for k in &keys {
                if map.remove(k).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Entries in the renew map now (a walk of its keys: for metrics, not per packet).
    pub fn renew_count(&mut self) -> Result<usize> {
        Ok(self.renews()?.keys().filter(|k| k.is_ok()).count())
    }

    /// The entry for `key`, if any (tests, `ctl`).
    pub fn renew(&mut self, key: &RenewKey) -> Result<Option<RenewEntry>> {
        match self.renews()?.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The MAC the program saw on a DHCPv6 frame from `addr` on `ifindex` (interfaces with
    /// `IFACE_LEARN_MACS`).
    pub fn client_mac(&self, ifindex: u32, addr: std::net::Ipv6Addr) -> Option<[u8; 6]> {
        let map = self.ebpf.map(dhcpv6_common::MAP_CLIENT_MACS)?;
        let macs = BpfHashMap::<_, dhcpv6_common::MacKey, dhcpv6_common::ClientMac>::try_from(map).ok()?;
        macs.get(&dhcpv6_common::MacKey { ifindex, addr: addr.octets() }, 0).ok().map(|m| m.mac)
    }

    pub fn counters(&self) -> Result<Counters> {
        let map = self.ebpf.map(MAP_COUNTERS).ok_or_else(|| anyhow!("no counters map"))?;
        sum_counters(&PerCpuArray::<_, Counters>::try_from(map)?)
    }

    /// Detaches everything and removes every pin, as `dhcpv6d detach` does (for tests and
    /// benchmarks; the daemon itself leaves them for the next one).
    pub fn shutdown(mut self) -> Result<()> {
        let names: Vec<String> = self.links.keys().cloned().collect();
        for name in names {
            self.detach(&name)?;
        }
        let dir = self.pin_dir.clone();
        drop(self);
        pins::remove_all(&dir)?;
        Ok(())
    }
}

/// Loads the Renew program and puts it where `dhcpv6_xdp` tail-calls it (`DHCPV6_PROGS`).
/// Without it a Renew goes up as it always did (`pass_other_msg`).
fn load_renew(ebpf: &mut Ebpf) -> Result<()> {
    let renew: &mut Xdp = ebpf
        .program_mut(RENEW_PROGRAM_NAME)
        .ok_or_else(|| anyhow!("program {RENEW_PROGRAM_NAME} missing from the object"))?
        .try_into()?;
    renew.load().context("the kernel verifier rejected the Renew program")?;
    let fd = renew.fd()?.try_clone().context("duplicating the Renew program's descriptor")?;
    let map = ebpf.map_mut(MAP_PROGS).ok_or_else(|| anyhow!("map {MAP_PROGS} missing from the object"))?;
    aya::maps::ProgramArray::try_from(map)?.set(PROG_RENEW, &fd, 0).context("writing the Renew program's slot")?;
    Ok(())
}

fn sum_counters<T: std::borrow::Borrow<MapData>>(arr: &PerCpuArray<T, Counters>) -> Result<Counters> {
    let per_cpu = arr.get(&0, 0)?;
    let mut total = Counters::default();
    for c in per_cpu.iter() {
        total.add(c);
    }
    Ok(total)
}

/// Counters read from the pinned map, by another process than the daemon.
pub fn pinned_counters(pin_dir: &Path) -> Result<Counters> {
    let path = pin_dir.join(MAP_COUNTERS);
    if !path.exists() {
        bail!(
            "{} does not exist: was dhcpv6d ever started with this --pin-dir (since boot or `dhcpv6d detach`)?",
            path.display()
        );
    }
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let map = aya::maps::Map::PerCpuArray(data);
    sum_counters(&PerCpuArray::<_, Counters>::try_from(map)?)
}
