//! Encryptions per transit key version: counted in memory, reserved durably in blocks.
//!
//! AES-GCM and ChaCha20-Poly1305 with random 96-bit nonces stay within their collision
//! bound for 2^32 messages under one key (NIST SP 800-38D, section 8.3), so every encryption
//! with a key version is counted against a limit of at most that. The store holds a
//! reservation a block ahead of the count, written (and fsynced) before the block is used,
//! so a crash loses at most the unused part of a block: the count after a restart can only
//! be too high, never too low. A version at its limit encrypts no more; requests for the
//! latest version rotate the key first (see `TransitEngine::make_room`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::ApiError;
use crate::barrier::{Barrier, Expect, MountId, RecordId, RecordKind};

/// The default and highest limit: 2^32 encryptions per key version.
pub const MAX_ENCRYPTIONS: u64 = 1 << 32;

#[derive(Clone, Copy, Default)]
struct Count {
    used: u64,
    reserved: u64,
}

/// The counters of every key version used since the vault was unsealed.
pub(super) struct Counters {
    barrier: Arc<Barrier>,
    limit: u64,
    counts: Mutex<HashMap<(MountId, String, u32), Count>>,
}

impl Counters {
    pub(super) fn new(barrier: Arc<Barrier>, limit: u64) -> Self {
        Counters {
            barrier,
            limit: limit.clamp(1, MAX_ENCRYPTIONS),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Encryptions a version may do.
    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// A block is 1/1024 of the limit, between 1 and 4096 encryptions: one durable write per
    /// 4096 encryptions at the default limit.
    fn block(&self) -> u64 {
        (self.limit / 1024).clamp(1, 4096)
    }

    /// Counts `n` encryptions with `version`, refusing (400) once the limit is reached.
    pub(super) fn count(
        &self,
        mount: MountId,
        name: &str,
        version: u32,
        n: u64,
    ) -> Result<(), ApiError> {
        if self.try_count(mount, name, version, n)? {
            return Ok(());
        }
        Err(ApiError::bad_request(format!(
            "version {version} of key {name} has done its {} encryptions; rotate the key",
            self.limit
        )))
    }

    /// Counts `n` encryptions with `version` if they fit under the limit (answering false,
    /// and counting nothing, if not), reserving the next block in the store first when the
    /// reservation is used up.
    pub(super) fn try_count(
        &self,
        mount: MountId,
        name: &str,
        version: u32,
        n: u64,
    ) -> Result<bool, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut count = self.load(&mut counts, mount, name, version)?;
        let used = count.used.saturating_add(n);
        if used > self.limit {
            return Ok(false);
        }
        if used > count.reserved {
            // `used` and the rest of a block.
            let reserved = used.saturating_add(self.block() - 1).min(self.limit);
            self.barrier.put(
                &uses_id(mount, name, version)?,
                &reserved.to_be_bytes(),
                Expect::Any,
            )?;
            count.reserved = reserved;
        }
        count.used = used;
        counts.insert((mount, name.to_string(), version), count);
        Ok(true)
    }

    /// Drops the in-memory counts of a deleted key (its records go with the key).
    pub(super) fn forget(&self, mount: MountId, name: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.retain(|(m, n, _), _| !(*m == mount && n == name));
    }

    fn load(
        &self,
        counts: &mut HashMap<(MountId, String, u32), Count>,
        mount: MountId,
        name: &str,
        version: u32,
    ) -> Result<Count, ApiError> {
        if let Some(count) = counts.get(&(mount, name.to_string(), version)) {
            return Ok(*count);
        }
        // After a restart the whole reservation counts as used.
        let stored = match self.barrier.get(&uses_id(mount, name, version)?)? {
            Some(record) => {
                let bytes: [u8; 8] = record.value.as_slice().try_into().map_err(|_| {
                    ApiError::internal(format!("the use counter of key {name} does not parse"))
                })?;
                u64::from_be_bytes(bytes)
            }
            None => 0,
        };
        let count = Count {
            used: stored,
            reserved: stored,
        };
        counts.insert((mount, name.to_string(), version), count);
        Ok(count)
    }
}

/// The record holding a key version's reservation.
pub(super) fn uses_id(mount: MountId, name: &str, version: u32) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::TransitKey,
        mount,
        format!("uses/{name}"),
        u64::from(version),
    )?)
}
