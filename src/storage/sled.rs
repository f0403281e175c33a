//! The sled backend, made durable against power loss.
//!
//! sled 0.34 alone does not survive a power cut: its `flush` never syncs a directory and ends
//! with `sync_file_range`, which does not reach the disk's cache. So this backend
//!
//! - syncs the data directory, its parent and sled's `conf` after opening, so the names of
//!   sled's files outlive a power cut;
//! - after applying a write, waits for a sync that started after it: sled's `flush` and then
//!   an `fdatasync` of the `db` file. One writer at a time runs the sync on behalf of every
//!   write applied before it started (group commit), while the others go on applying theirs;
//! - refuses values over [`MAX_VALUE_LEN`](super::MAX_VALUE_LEN), which sled would otherwise
//!   put into blob files it never syncs.
//!
//! Batches are applied one at a time under a short lock, so a batch's expectations are checked
//! and its changes applied with no other write in between. A reader may see a write that is
//! applied but not yet durable; the writer itself is answered only once it is durable.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::{Batch, Entries, Op, Storage, StorageError};

/// The name of the lock file that keeps a second process out of the data directory.
const LOCK_FILE: &str = "LOCK";

/// A durable [`Storage`] on sled.
pub struct SledStorage {
    db: sled::Db,
    dir: PathBuf,
    db_path: PathBuf,
    db_file: File,
    /// Serialises the check-and-apply of batches; never held during a sync.
    apply: Mutex<()>,
    /// The sequence number of the last applied write.
    applied: AtomicU64,
    sync: Mutex<SyncState>,
    synced: Condvar,
    syncs: AtomicU64,
    // Held for the life of the store: the OS lock is released when the file is closed.
    _lock: File,
}

#[derive(Default)]
struct SyncState {
    /// Every write with a sequence number up to this one is durable.
    durable: u64,
    /// Whether some writer is running a sync now.
    syncing: bool,
    /// Set when a sync failed: durability can no longer be promised.
    failed: bool,
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches applied.
    pub writes: u64,
    /// Group commits (flush + fdatasync) performed.
    pub syncs: u64,
}

impl SledStorage {
    /// Opens (creating if needed, with mode 0700) the store in `dir`.
    ///
    /// Fails with [`StorageError::Locked`] if another process, or another `SledStorage` in
    /// this one, has the directory open.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let io_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { op, path, source }
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        let dir = dir.canonicalize().map_err(io_err("resolve", dir))?;

        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StorageError::Locked { path: dir }),
            Err(TryLockError::Error(source)) => {
                return Err(StorageError::Io {
                    op: "lock",
                    path: lock_path,
                    source,
                });
            }
        }

        let db = sled::Config::new()
            .path(&dir)
            .open()
            .map_err(backend_error)?;

        // Make the names of sled's files durable: without this a power cut can leave an empty
        // directory and sled silently starts a new, empty database.
        let conf = dir.join("conf");
        sync_path(&conf).map_err(io_err("fsync", &conf))?;
        sync_path(&dir).map_err(io_err("fsync", &dir))?;
        if let Some(parent) = dir.parent() {
            sync_path(parent).map_err(io_err("fsync", parent))?;
        }

        let db_path = dir.join("db");
        let db_file = File::open(&db_path).map_err(io_err("open", &db_path))?;
        Ok(SledStorage {
            db,
            dir,
            db_path,
            db_file,
            apply: Mutex::new(()),
            applied: AtomicU64::new(0),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            syncs: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many writes and group commits the store has done.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            writes: self.applied.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }

    /// Checks the batch's expectations and applies it; returns its sequence number.
    fn apply_now(&self, batch: &Batch) -> Result<u64, StorageError> {
        // Nothing inside can leave the lock's data half-changed, so poisoning is harmless.
        let _apply = self.apply.lock().unwrap_or_else(|p| p.into_inner());
        for (key, expected) in batch.expectations() {
            let current = self.db.get(key).map_err(backend_error)?;
            if current.as_deref() != expected.as_deref() {
                return Err(StorageError::Conflict { key: key.clone() });
            }
        }
        match batch.ops() {
            // sled's batches take a global lock that waits for every reader; a single change
            // does not need one to be atomic.
            [Op::Put(key, value)] => self.db.insert(key.as_slice(), value.as_slice()).map(drop),
            [Op::Delete(key)] => self.db.remove(key.as_slice()).map(drop),
            ops => {
                let mut writes = sled::Batch::default();
                for op in ops {
                    match op {
                        Op::Put(key, value) => writes.insert(key.as_slice(), value.as_slice()),
                        Op::Delete(key) => writes.remove(key.as_slice()),
                    }
                }
                self.db.apply_batch(writes)
            }
        }
        .map_err(backend_error)?;
        Ok(self.applied.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Returns once write `seq` is durable, running the sync itself if no one else is.
    fn wait_durable(&self, seq: u64) -> Result<(), StorageError> {
        let mut state = self.lock_sync();
        loop {
            if state.failed {
                return Err(StorageError::Failed);
            }
            if state.durable >= seq {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }

            // Lead a group commit covering every write applied so far.
            state.syncing = true;
            let target = self.applied.load(Ordering::Acquire);
            drop(state);
            let result = self.sync_now();
            state = self.lock_sync();
            state.syncing = false;
            match &result {
                Ok(()) => {
                    state.durable = state.durable.max(target);
                    self.syncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(path = %self.db_path.display(), error = %e, "store sync failed; refusing further writes");
                    state.failed = true;
                }
            }
            self.synced.notify_all();
            if let Err(source) = result {
                return Err(StorageError::Io {
                    op: "sync",
                    path: self.db_path.clone(),
                    source,
                });
            }
        }
    }

    fn sync_now(&self) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        // sled's flush ends with sync_file_range, which does not flush the disk's write cache.
        self.db_file.sync_data()
    }

    fn lock_sync(&self) -> MutexGuard<'_, SyncState> {
        // The state is updated field by field under the lock with no step that can panic.
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for SledStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self.db.get(key).map_err(backend_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError> {
        let start = match after {
            Some(after) => Bound::Excluded(after.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        let mut out = Vec::new();
        for entry in self.db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(backend_error)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        batch.check_limits()?;
        if self.lock_sync().failed {
            return Err(StorageError::Failed);
        }
        let seq = self.apply_now(&batch)?;
        self.wait_durable(seq)
    }
}

fn backend_error(e: sled::Error) -> StorageError {
    StorageError::Backend(Box::new(e))
}

fn sync_path(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap();
        crate::storage::conformance::run(&store);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SledStorage::open(dir.path()).unwrap();
        let Err(err) = SledStorage::open(dir.path()) else {
            panic!("second open succeeded");
        };
        assert!(matches!(err, StorageError::Locked { .. }));
        let message = err.to_string();
        assert!(
            message.contains(&first.dir().display().to_string()),
            "{message}"
        );
        drop(first);
        SledStorage::open(dir.path()).unwrap();
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStorage::open(dir.path()).unwrap();
            store.put(b"k", b"v").unwrap();
        }
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn concurrent_writers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap();
        thread::scope(|scope| {
            for t in 0..16u8 {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..50u8 {
                        store.put(&[t, i], &[i]).unwrap();
                    }
                });
            }
        });
        let stats = store.stats();
        assert_eq!(stats.writes, 16 * 50);
        assert!(stats.syncs <= stats.writes);
        for t in 0..16u8 {
            assert_eq!(store.scan(&[t], None, 100).unwrap().len(), 50);
        }
    }

    #[test]
    fn the_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;

        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("store");
        let _store = SledStorage::open(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
