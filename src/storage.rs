//! Where records live: a small key-value [`Storage`] trait and its backends.
//!
//! The store sees only opaque byte strings; every value above the core keys is a sealed
//! record from the [`barrier`](crate::barrier). A write returns only once it is durable: for
//! [`SledStorage`] that means sled's flush *and* an `fdatasync` of its data file, shared by all
//! writes queued together (group commit). Every backend passes the same conformance suite.

mod memory;
mod sled;

use std::fmt;
use std::path::PathBuf;

pub use self::memory::MemoryStorage;
pub use self::sled::SledStorage;

/// The largest value a backend stores: 64 KiB.
///
/// sled 0.34 moves values of roughly 128 KiB and more into separate blob files that it never
/// fsyncs, so a power cut could leave the store unopenable; keeping every record well below
/// that size keeps all data in the one file whose syncs we control.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// The longest key a backend stores.
pub const MAX_KEY_LEN: usize = 4 * 1024;

/// Key-value pairs returned by a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A key-value store with atomic, durable batches.
///
/// Implementations must make a successful [`apply`](Storage::apply) durable against power loss
/// before returning, apply a batch all or nothing, and check its preconditions atomically
/// with applying it.
pub trait Storage: Send + Sync {
    /// Reads the value stored at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Lists up to `limit` entries whose keys start with `prefix`, in key order, starting after
    /// the key `after` when given (for paging through large ranges).
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError>;

    /// Applies every operation of `batch` atomically and durably, or none of them if one of its
    /// expectations does not hold ([`StorageError::Conflict`]).
    fn apply(&self, batch: Batch) -> Result<(), StorageError>;

    /// Stores `value` at `key`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.apply(Batch::new().put(key, value))
    }

    /// Removes `key`; removing a missing key is not an error.
    fn delete(&self, key: &[u8]) -> Result<(), StorageError> {
        self.apply(Batch::new().delete(key))
    }
}

/// One change within a [`Batch`].
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    /// Store a value at a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
}

/// A set of changes applied together, guarded by optional expectations on current values.
#[derive(Clone, Default)]
pub struct Batch {
    ops: Vec<Op>,
    expectations: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a write of `value` at `key`.
    pub fn put(mut self, key: &[u8], value: &[u8]) -> Self {
        self.ops.push(Op::Put(key.to_vec(), value.to_vec()));
        self
    }

    /// Adds the removal of `key`.
    pub fn delete(mut self, key: &[u8]) -> Self {
        self.ops.push(Op::Delete(key.to_vec()));
        self
    }

    /// Applies the batch only if `key` currently holds `value` (`None`: is absent).
    pub fn expect(mut self, key: &[u8], value: Option<&[u8]>) -> Self {
        self.expectations
            .push((key.to_vec(), value.map(<[u8]>::to_vec)));
        self
    }

    /// The changes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The expectations that guard the batch.
    pub fn expectations(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.expectations
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks key and value sizes against the backend limits.
    fn check_limits(&self) -> Result<(), StorageError> {
        for op in &self.ops {
            let (key, value_len) = match op {
                Op::Put(key, value) => (key, value.len()),
                Op::Delete(key) => (key, 0),
            };
            if key.len() > MAX_KEY_LEN {
                return Err(StorageError::KeyTooLong {
                    len: key.len(),
                    max: MAX_KEY_LEN,
                });
            }
            if value_len > MAX_VALUE_LEN {
                return Err(StorageError::ValueTooLarge {
                    len: value_len,
                    max: MAX_VALUE_LEN,
                });
            }
        }
        Ok(())
    }
}

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file system operation on the data directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {} is in use by another vaultd process", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The backend reported an error.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A value exceeds [`MAX_VALUE_LEN`].
    #[error("value of {len} bytes exceeds the {max}-byte record limit")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key exceeds [`MAX_KEY_LEN`].
    #[error("key of {len} bytes exceeds the {max}-byte key limit")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An expectation of the batch did not hold; nothing was applied.
    #[error(
        "a concurrent change conflicted with this write at {}",
        KeyDisplay(key)
    )]
    Conflict {
        /// The key whose value was not the expected one.
        key: Vec<u8>,
    },
    /// An earlier sync failed, so durability can no longer be promised; the store refuses
    /// writes until the daemon restarts and recovers from what is on disk.
    #[error("the store refuses writes after a failed sync; restart vaultd")]
    Failed,
    /// The store is closed.
    #[error("the store is closed")]
    Closed,
}

/// Shows a storage key for messages: printable ASCII as is, other bytes escaped.
struct KeyDisplay<'a>(&'a [u8]);

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The behaviour every [`Storage`] backend must show.

    use super::*;

    /// Runs every check against a fresh, empty store.
    pub fn run(store: &dyn Storage) {
        get_put_delete(store);
        scan_pages_in_key_order(store);
        batches_are_atomic(store);
        expectations_guard_batches(store);
        limits_are_enforced(store);
    }

    fn get_put_delete(store: &dyn Storage) {
        assert_eq!(store.get(b"a/missing").unwrap(), None);
        store.put(b"a/1", b"one").unwrap();
        assert_eq!(store.get(b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
        store.put(b"a/1", b"uno").unwrap();
        assert_eq!(store.get(b"a/1").unwrap().as_deref(), Some(&b"uno"[..]));
        store.put(b"a/empty", b"").unwrap();
        assert_eq!(store.get(b"a/empty").unwrap().as_deref(), Some(&b""[..]));
        store.delete(b"a/1").unwrap();
        store.delete(b"a/empty").unwrap();
        assert_eq!(store.get(b"a/1").unwrap(), None);
        store.delete(b"a/never").unwrap();
    }

    fn scan_pages_in_key_order(store: &dyn Storage) {
        for i in (0..25u8).rev() {
            store.put(&[b's', b'/', i], &[i]).unwrap();
        }
        store.put(b"t/outside", b"x").unwrap();
        store.put(b"r/outside", b"x").unwrap();

        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan(b"s/", after.as_deref(), 10).unwrap();
            assert!(page.len() <= 10);
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen.extend(page);
        }
        let expected: Vec<_> = (0..25u8).map(|i| (vec![b's', b'/', i], vec![i])).collect();
        assert_eq!(seen, expected);
        assert!(store.scan(b"none/", None, 10).unwrap().is_empty());
    }

    fn batches_are_atomic(store: &dyn Storage) {
        store.put(b"b/gone", b"x").unwrap();
        store
            .apply(
                Batch::new()
                    .put(b"b/1", b"1")
                    .put(b"b/2", b"2")
                    .delete(b"b/gone"),
            )
            .unwrap();
        assert_eq!(store.get(b"b/1").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.get(b"b/2").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(store.get(b"b/gone").unwrap(), None);

        // Later operations win within one batch.
        store
            .apply(Batch::new().put(b"b/3", b"a").put(b"b/3", b"b"))
            .unwrap();
        assert_eq!(store.get(b"b/3").unwrap().as_deref(), Some(&b"b"[..]));
    }

    fn expectations_guard_batches(store: &dyn Storage) {
        store.put(b"c/1", b"v1").unwrap();
        let stale = Batch::new()
            .expect(b"c/1", Some(b"v0"))
            .put(b"c/1", b"v2")
            .put(b"c/2", b"x");
        assert!(matches!(
            store.apply(stale),
            Err(StorageError::Conflict { .. })
        ));
        assert_eq!(store.get(b"c/1").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(store.get(b"c/2").unwrap(), None);

        let fresh = Batch::new().expect(b"c/1", Some(b"v1")).put(b"c/1", b"v2");
        store.apply(fresh).unwrap();
        assert_eq!(store.get(b"c/1").unwrap().as_deref(), Some(&b"v2"[..]));

        let absent = Batch::new().expect(b"c/new", None).put(b"c/new", b"n");
        store.apply(absent.clone()).unwrap();
        assert!(matches!(
            store.apply(absent),
            Err(StorageError::Conflict { .. })
        ));
    }

    fn limits_are_enforced(store: &dyn Storage) {
        let big = vec![7u8; MAX_VALUE_LEN + 1];
        assert!(matches!(
            store.put(b"d/big", &big),
            Err(StorageError::ValueTooLarge { .. })
        ));
        assert_eq!(store.get(b"d/big").unwrap(), None);
        store.put(b"d/max", &big[..MAX_VALUE_LEN]).unwrap();
        assert_eq!(
            store.get(b"d/max").unwrap().map(|v| v.len()),
            Some(MAX_VALUE_LEN)
        );
        let long_key = vec![b'k'; MAX_KEY_LEN + 1];
        assert!(matches!(
            store.put(&long_key, b"v"),
            Err(StorageError::KeyTooLong { .. })
        ));
    }
}
