//! What one daemon leaves pinned for the next: the folder's names, the map layout a daemon
//! may adopt, and how an operator removes it all (`dhcpv6d detach`).
//!
//! The pin folder holds every `DHCPV6_*` map of the program by name, `layout` (a one-entry
//! array: the fingerprint of those maps' definitions) and one `link_<ifname>` per interface.
//! bpffs holds no plain files, so the fingerprint is itself a pinned map: it lives and dies
//! with the maps it describes (a reboot or `detach` takes both).

use std::{
    fs,
    io::ErrorKind,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData, MapInfo};

/// The pinned fingerprint of the map layout.
pub const LAYOUT_PIN: &str = "layout";
/// Pinned XDP links are `link_<ifname>`.
pub const LINK_PREFIX: &str = "link_";
/// Maps of the program that are pinned and adopted: every one whose name starts so.
pub const MAP_PREFIX: &str = "DHCPV6_";

/// One pinned map as the object defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDef {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// The maps the daemon pins, from the object itself (nothing is created), sorted by name.
pub fn pinned_map_defs(object: &[u8]) -> Result<Vec<MapDef>> {
    let obj = aya_obj::Object::parse(object).context("parsing the XDP object")?;
    let mut defs: Vec<MapDef> = obj
        .maps
        .iter()
        .filter(|(name, _)| name.starts_with(MAP_PREFIX))
        .map(|(name, m)| MapDef {
            name: name.clone(),
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: m.max_entries(),
            flags: m.map_flags(),
        })
        .collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(defs)
}

/// FNV-1a over the layout version and every definition: equal only for the same maps.
pub fn fingerprint(defs: &[MapDef]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&dhcpv6_common::MAPS_LAYOUT_VERSION.to_le_bytes());
    for d in defs {
        eat(d.name.as_bytes());
        eat(&[0]);
        for v in [d.map_type, d.key_size, d.value_size, d.max_entries, d.flags] {
            eat(&v.to_le_bytes());
        }
    }
    h
}

/// The fingerprint a previous daemon pinned, if any is readable.
pub fn read_layout(dir: &Path) -> Option<u64> {
    let data = MapData::from_pin(dir.join(LAYOUT_PIN)).ok()?;
    let arr = Array::<_, u64>::try_from(Map::from_map_data(data).ok()?).ok()?;
    arr.get(&0, 0).ok()
}

/// Pins `fp` as the layout of the maps now pinned in `dir` (replacing an older one).
pub fn write_layout(dir: &Path, fp: u64) -> Result<()> {
    let path = dir.join(LAYOUT_PIN);
    remove_file(&path)?;
    let mut arr = Array::<MapData, u64>::create(1, 0).context("creating the layout map")?;
    arr.set(0, fp, 0).context("writing the layout map")?;
    arr.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
    Ok(())
}

/// Why the maps pinned in `dir` cannot be adopted for `defs`, if they cannot: a pin that is
/// there must be a map of exactly that definition (a missing one is created afresh).
pub fn mismatch(dir: &Path, defs: &[MapDef]) -> Option<String> {
    for d in defs {
        let path = dir.join(&d.name);
        if !path.exists() {
            continue;
        }
        let info = match MapInfo::from_pin(&path) {
            Ok(i) => i,
            Err(e) => return Some(format!("{}: {e}", path.display())),
        };
        let have = (info.key_size(), info.value_size(), info.max_entries(), info.map_flags());
        let want = (d.key_size, d.value_size, d.max_entries, d.flags);
        let same_type = info.map_type().ok().map(|t| t as u32) == Some(d.map_type);
        if !same_type || have != want {
            return Some(format!("{}: pinned (key, value, entries, flags) {have:?}, program wants {want:?}", d.name));
        }
    }
    None
}

/// Detaches the link pinned at `path` from its interface now, also while another process
/// (a running daemon) holds it open, and removes the pin. No pin there is no error.
pub fn detach_link(path: &Path) -> Result<()> {
    let fd = match obj_get(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    match link_detach(fd.as_fd()) {
        // A link whose interface went away is already defunct.
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(e) => return Err(e).with_context(|| format!("BPF_LINK_DETACH {}", path.display())),
    }
    remove_file(path)
}

/// What `remove_all` took away.
#[derive(Debug, Default)]
pub struct Removed {
    pub links: Vec<String>,
    pub others: Vec<String>,
}

/// Detaches every pinned link in `dir`, removes every pin and the folder: the program is
/// unloaded and the maps freed once no process holds them. Nothing there is not an error.
pub fn remove_all(dir: &Path) -> Result<Removed> {
    let mut removed = Removed::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    // Links first: the program stops running before its maps go.
    names.sort_by_key(|n| !n.starts_with(LINK_PREFIX));
    for name in names {
        let path = dir.join(&name);
        if name.starts_with(LINK_PREFIX) {
            detach_link(&path)?;
            removed.links.push(name);
        } else {
            remove_file(&path)?;
            removed.others.push(name);
        }
    }
    fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(removed)
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", path.display())),
        _ => Ok(()),
    }
}

/// bpf(2) with `attr`: the kernel reads `size_of::<A>()` bytes and takes the rest of its
/// attribute union as zero.
pub(crate) fn bpf<A>(cmd: aya_obj::generated::bpf_cmd, attr: &A) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr` for `cmd`,
    // and the size passed is its own.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr as *const A, std::mem::size_of::<A>() as libc::c_uint)
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

/// BPF_OBJ_GET: a descriptor of whatever is pinned at `path` (aya keeps its own private).
fn obj_get(path: &Path) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let attr = Attr { pathname: c.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    let fd = bpf(aya_obj::generated::bpf_cmd::BPF_OBJ_GET, &attr)?;
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("descriptor out of range"))?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// BPF_LINK_DETACH (Linux 5.9): aya has no call for it.
fn link_detach(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    #[repr(C)]
    struct Attr {
        link_fd: u32,
    }
    let raw = u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?;
    bpf(aya_obj::generated::bpf_cmd::BPF_LINK_DETACH, &Attr { link_fd: raw })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, value_size: u32) -> MapDef {
        MapDef { name: name.into(), map_type: 1, key_size: 4, value_size, max_entries: 16, flags: 1 }
    }

    #[test]
    fn fingerprint_follows_every_field_and_name() {
        let a = vec![def("DHCPV6_A", 8), def("DHCPV6_B", 16)];
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        let mut b = a.clone();
        b[1].value_size = 24;
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c[0].name = "DHCPV6_C".into();
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let mut d = a.clone();
        d.push(def("DHCPV6_D", 8));
        assert_ne!(fingerprint(&a), fingerprint(&d));
        let mut e = a.clone();
        e[0].flags = 0;
        assert_ne!(fingerprint(&a), fingerprint(&e));
    }

    #[test]
    fn the_objects_pinned_maps_are_the_dhcpv6_ones() {
        let defs = pinned_map_defs(crate::dataplane::EBPF_OBJECT).unwrap();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        for want in [dhcpv6_common::MAP_IFACE_REPLY, dhcpv6_common::MAP_COUNTERS, dhcpv6_common::MAP_CLIENT_MACS] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert!(names.iter().all(|n| n.starts_with(MAP_PREFIX)), "{names:?}");
    }
}
