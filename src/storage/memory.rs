//! An in-memory backend for unit tests. Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use super::{Batch, Entries, Op, Storage, StorageError};

/// A [`Storage`] kept in a `BTreeMap`. Not for production: it keeps nothing across restarts.
#[derive(Default)]
pub struct MemoryStorage {
    entries: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStorage::default()
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-changed: every change is
        // a single insert or remove, so the poisoned state is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.entries().get(key).cloned())
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
        Ok(self
            .entries()
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        batch.check_limits()?;
        let mut entries = self.entries();
        for (key, expected) in batch.expectations() {
            if entries.get(key) != expected.as_ref() {
                return Err(StorageError::Conflict { key: key.clone() });
            }
        }
        for op in batch.ops {
            match op {
                Op::Put(key, value) => entries.insert(key, value),
                Op::Delete(key) => entries.remove(&key),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        crate::storage::conformance::run(&MemoryStorage::new());
    }
}
