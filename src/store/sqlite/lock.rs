//! The run lock and the database file's permissions.
//!
//! Invariants: one `pollhook run` per database file, whatever name or link reaches it; the file
//! (with the `-wal` and `-shm` SQLite creates with its mode) is readable by its owner only,
//! because it holds endpoint secrets in plain text.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::store::StoreError;

/// Held while `pollhook run` owns a database; released when dropped or when the process dies.
///
/// The lock is a `flock(2)` on the database file itself, so a second run reaching the same file
/// through a symlink or a hard link finds it taken. On Linux `flock` locks are independent of
/// the POSIX `fcntl` locks SQLite takes on the same file, so neither disturbs the other. The
/// descriptor is never closed: closing *any* descriptor of a file drops every POSIX lock the
/// process holds on it, SQLite's own included (sqlite.org/howtocorrupt.html §2.2). It stays in
/// `HELD` for the life of the process, one per database, and dropping the lock unlocks it.
#[derive(Debug)]
pub struct RunLock {
    key: FileKey,
}

/// A file's identity whatever its name: device and inode.
type FileKey = (u64, u64);

/// An open descriptor of each database this process has locked, and whether a [`RunLock`]
/// holds it now (a second `flock` on the same descriptor would succeed, so the flag refuses it).
static HELD: Mutex<BTreeMap<FileKey, (File, bool)>> = Mutex::new(BTreeMap::new());

fn held() -> MutexGuard<'static, BTreeMap<FileKey, (File, bool)>> {
    // Nothing is left half-done under this lock: a poisoned map is fine to reuse.
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunLock {
    /// Takes the exclusive run lock on the database file at `db`, creating it (mode 0600, see
    /// `Store::open`) if it does not exist yet.
    pub fn acquire(db: &Path) -> Result<RunLock, StoreError> {
        let lock_error = |e: std::io::Error| StoreError::LockFile {
            path: db.to_owned(),
            reason: match db.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) if parent.exists() && !parent.is_dir() => {
                    format!("{} is not a directory", parent.display())
                }
                _ => e.to_string(),
            },
        };
        let mut held = held();
        // Looked up by the name first, so that a database already held here is not opened (and
        // so later closed) again.
        let by_name = std::fs::metadata(db).ok().map(|m| (m.dev(), m.ino()));
        let key = match by_name {
            Some(key) if held.contains_key(&key) => key,
            _ => {
                create_private(db).map_err(lock_error)?;
                let file = File::options().read(true).open(db).map_err(lock_error)?;
                let meta = file.metadata().map_err(lock_error)?;
                let key = (meta.dev(), meta.ino());
                match held.entry(key) {
                    Entry::Vacant(slot) => {
                        slot.insert((file, false));
                    }
                    // The name was pointed at a file held here between the two looks: keep this
                    // descriptor open too rather than close it (see above).
                    Entry::Occupied(_) => std::mem::forget(file),
                }
                key
            }
        };
        let (file, taken) = held
            .get_mut(&key)
            .expect("the key was found or inserted above, under the same lock");
        if *taken {
            return Err(StoreError::Locked {
                path: db.to_owned(),
            });
        }
        match file.try_lock() {
            Ok(()) => {
                *taken = true;
                Ok(RunLock { key })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: db.to_owned(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(lock_error(e)),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some((file, taken)) = held().get_mut(&self.key) {
            // An unlock cannot fail on a descriptor that holds the lock; if it did, the lock
            // would end with the process anyway.
            let _ = file.unlock();
            *taken = false;
        }
    }
}

/// The database holds endpoint secrets: it, and the `-wal` and `-shm` files SQLite creates with
/// its permissions, are readable by their owner only. Creates an empty file with mode 0600 if
/// none exists; an existing one with group or other access is tightened, with a warning.
pub(super) fn create_private(db: &Path) -> std::io::Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: a missing directory is reported by the open below.
        let _ = std::fs::create_dir_all(dir);
    }
    match File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        // A new file: no other descriptor of it exists, so closing this one is harmless.
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for file in [db.to_owned(), sibling(db, "-wal"), sibling(db, "-shm")] {
        let Some(meta) = std::fs::metadata(&file)
            .ok()
            .filter(std::fs::Metadata::is_file)
        else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => tracing::warn!(
                    file = %file.display(), was = %format!("{mode:o}"), now = %format!("{:o}", mode & 0o700),
                    "The database holds endpoint secrets; access for group and others removed."
                ),
                Err(error) => tracing::warn!(
                    file = %file.display(), mode = %format!("{mode:o}"), %error,
                    "The database holds endpoint secrets but is readable by others, and its mode cannot be changed; chmod 600 it."
                ),
            }
        }
    }
    Ok(())
}

/// `db` with `suffix` appended to its file name (`pollhook.db-wal`).
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
