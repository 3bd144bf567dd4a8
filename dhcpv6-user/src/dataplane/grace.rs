//! Waiting until no XDP program run can still hold what it read before now.
//!
//! An XDP program (in a driver's NAPI poll, in generic XDP, or under BPF_PROG_TEST_RUN) runs
//! inside an RCU read-side critical section, so an RCU grace period that begins after a map
//! write ends only once every run that could have read the old value has returned. Userspace
//! has no `synchronize_rcu()`, but the kernel calls it for us on every successful update of a
//! map-in-map (`maybe_wait_bpf_programs` in kernel/bpf/syscall.c: "wait for any running
//! non-sleepable BPF programs to complete so that userspace ... knows that all non-sleepable
//! programs that could be running use the new map value"; the kernel's own selftests use
//! the same update as `kern_sync_rcu()`). `membarrier(MEMBARRIER_CMD_GLOBAL)` would not do:
//! it skips the wait on one CPU, where a preempted test_run may still be reading.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use aya_obj::generated::{bpf_cmd, bpf_map_type};

use crate::pins::bpf;

/// A one-entry array of maps and the inner map its entry is set to; updating the entry is
/// the wait. Neither is pinned or seen by the program.
pub struct Grace {
    outer: OwnedFd,
    inner: OwnedFd,
}

#[derive(Debug, thiserror::Error)]
#[error("waiting for running XDP programs (map-in-map update): {0}")]
pub struct GraceError(#[from] std::io::Error);

#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct UpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn create(map_type: bpf_map_type, inner: Option<&OwnedFd>, name: &[u8]) -> std::io::Result<OwnedFd> {
    let mut attr =
        CreateAttr { map_type: map_type as u32, key_size: 4, value_size: 4, max_entries: 1, ..Default::default() };
    if let Some(fd) = inner {
        attr.inner_map_fd = u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?;
    }
    attr.map_name[..name.len()].copy_from_slice(name);
    let fd = bpf(bpf_cmd::BPF_MAP_CREATE, &attr)?;
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("descriptor out of range"))?;
    // SAFETY: BPF_MAP_CREATE returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Grace {
    pub fn new() -> Result<Grace, GraceError> {
        let inner = create(bpf_map_type::BPF_MAP_TYPE_ARRAY, None, b"dhcpv6_grace_in")?;
        let outer = create(bpf_map_type::BPF_MAP_TYPE_ARRAY_OF_MAPS, Some(&inner), b"dhcpv6_grace")?;
        Ok(Grace { outer, inner })
    }

    /// Returns once every program run that began before the call has ended (one RCU grace
    /// period: milliseconds).
    pub fn wait(&self) -> Result<(), GraceError> {
        let key: u32 = 0;
        let value = u32::try_from(self.inner.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?;
        let attr = UpdateAttr {
            map_fd: u32::try_from(self.outer.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            flags: 0,
        };
        bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &attr)?;
        Ok(())
    }
}
