//! One daemon per SQLite file.
//!
//! SQLite's own locking keeps two writers from corrupting the file, but not from
//! corrupting the *allocation*: each daemon keeps its own index of free addresses,
//! so two daemons on one file hand the same address to two clients (seen in a
//! two-box test: 29 of 3,567 addresses given twice). So the store takes an exclusive
//! `flock` on `FILE.lock` beside the database and holds it for its whole life; a
//! second daemon is refused with a message naming the file and the holder's pid.
//!
//! A separate file rather than the database itself: the lock must not interfere
//! with SQLite's POSIX locks, and the operator's `sqlite3` (or `dhcpv6d leases`)
//! must still be able to read the database while the daemon runs. The lock file is
//! left in place on exit; only the lock on it matters, and the kernel drops that
//! when the process ends, however it ends.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StoreError;

/// An exclusive lock on `DB.lock`, released when dropped.
#[derive(Debug)]
pub(super) struct StoreLock {
    /// The lock lives as long as this open file description.
    _file: File,
}

/// The lock file of the database at `db`.
pub(super) fn lock_path(db: &Path) -> PathBuf {
    let mut name = OsString::from(db.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of the database at `db`, or says who holds it.
pub(super) fn lock(db: &Path) -> Result<StoreLock, StoreError> {
    let lock = lock_path(db);
    let io_error =
        |e: std::io::Error| StoreError::Lock { path: db.to_path_buf(), lock: lock.clone(), source: Arc::new(e) };
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock).map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StoreError::Locked { path: db.to_path_buf(), lock: lock.clone(), holder: holder(&mut file) });
        }
        Err(TryLockError::Error(e)) => return Err(io_error(e)),
    }
    // The pid is only for the message a second daemon prints; failing to write it
    // does not weaken the lock.
    let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).and_then(|()| file.flush());
    Ok(StoreLock { _file: file })
}

/// The pid the holder wrote into the lock file, if it is readable.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_file_and_holder() {
        let dir = TempDir::new("lock");
        let db = dir.path().join("leases.db");
        let first = lock(&db).unwrap();
        // Same process, but another open file description: flock treats it as
        // another holder, exactly like a second daemon.
        let err = lock(&db).unwrap_err();
        match &err {
            StoreError::Locked { path, lock, holder } => {
                assert_eq!(path, &db);
                assert_eq!(lock, &lock_path(&db));
                assert_eq!(*holder, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&*db.to_string_lossy()), "{message}");
        assert!(message.contains("another dhcpv6d"), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");

        drop(first);
        lock(&db).expect("free again once the holder is gone");
    }
}
