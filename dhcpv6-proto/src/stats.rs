//! Counters of the userspace path, and the file through which `dhcpv6d stats` reads them
//! from another process (the XDP counters come from the pinned map instead).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

#[derive(Default)]
pub struct UserStats {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl UserStats {
    pub fn bump(&self, name: &'static str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(name).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Rewrites `path` atomically (write then rename), `name value` per line.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text: String = self.snapshot().iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }
}

pub fn stats_file(state_dir: &Path) -> PathBuf {
    state_dir.join("userspace.stats")
}
