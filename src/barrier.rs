//! The barrier: envelope encryption of every stored record.
//!
//! Engines never see storage keys or ciphertext. They name a record by a [`RecordId`] (kind,
//! mount, path, version) and hand the barrier plaintext; the barrier seals it with a fresh
//! data key, wraps that key with the keyring's active term, and stores it. While the vault is
//! sealed the barrier holds no keys, and every operation fails with [`BarrierError::Sealed`]
//! before touching storage.
//!
//! Records that are overwritten (metadata, tokens, policies) carry a generation number that
//! the barrier increments on every write; writers can make a change conditional on the
//! generation they read ([`Expect::Generation`]), which is how check-and-set and atomic use
//! counts are built.

mod record;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroizing;

pub use self::record::{FORMAT, OVERHEAD};
use crate::crypto::CryptoError;
use crate::keyring::{KeyTerm, Keyring, KeyringError, Term};
use crate::storage::{Batch, MAX_VALUE_LEN, Storage, StorageError};

/// The largest plaintext a record can hold, so that the sealed record fits the store's
/// 64 KiB value limit.
pub const MAX_PLAINTEXT_LEN: usize = MAX_VALUE_LEN - OVERHEAD;

/// The longest record path, in bytes.
pub const MAX_PATH_LEN: usize = 2048;

/// Every storage key of a sealed record starts with this prefix.
const RECORD_PREFIX: &[u8] = b"rec/";

/// How many records one rewrap page reads and writes at once.
const REWRAP_PAGE: usize = 256;

/// How long rewrapping waits for writers that picked an old term to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a write retries when a concurrent change (often a rewrap) moved under it.
const MAX_ATTEMPTS: usize = 16;

/// What a record holds. The kind is part of the record's authenticated identity, so a record
/// of one kind can never be read as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A KV secret's metadata.
    SecretMetadata = 1,
    /// One version of a KV secret.
    SecretVersion = 2,
    /// A mount table entry.
    Mount = 3,
    /// A token, keyed by its hash.
    Token = 4,
    /// The index from a token's accessor to the token.
    TokenAccessor = 5,
    /// An ACL policy.
    Policy = 6,
    /// A transit key.
    TransitKey = 7,
    /// Rotation schedule and journal state.
    RotationState = 8,
    /// Audit device keys (HMAC and signing) and chain heads.
    AuditKey = 9,
    /// The index from a token to the tokens it created.
    TokenChild = 10,
    /// A KV v2 mount's configuration.
    KvConfig = 11,
    /// A wrapped response, keyed by the SHA-256 of its wrapping token.
    WrappedResponse = 12,
    /// An auth method's entry: a userpass user or a cert role.
    AuthEntry = 13,
}

impl RecordKind {
    /// Every kind, in tag order.
    pub const ALL: [RecordKind; 13] = [
        RecordKind::SecretMetadata,
        RecordKind::SecretVersion,
        RecordKind::Mount,
        RecordKind::Token,
        RecordKind::TokenAccessor,
        RecordKind::Policy,
        RecordKind::TransitKey,
        RecordKind::RotationState,
        RecordKind::AuditKey,
        RecordKind::TokenChild,
        RecordKind::KvConfig,
        RecordKind::WrappedResponse,
        RecordKind::AuthEntry,
    ];

    fn from_tag(tag: u8) -> Option<Self> {
        RecordKind::ALL.into_iter().find(|k| *k as u8 == tag)
    }
}

/// A mount's UUID. Records bind the UUID, not the mount's path, so a mount can move and a new
/// mount at an old path cannot open the old mount's records.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MountId([u8; 16]);

impl MountId {
    /// The mount of the system's own records (tokens, policies, the mount table).
    pub const SYSTEM: MountId = MountId([0; 16]);

    /// A new random mount ID (UUID version 4).
    pub fn generate() -> MountId {
        MountId(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for MountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for MountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MountId({self})")
    }
}

impl FromStr for MountId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(MountId(*uuid::Uuid::parse_str(s)?.as_bytes()))
    }
}

/// The identity of a record: what it is, which mount owns it, its path within the mount, and
/// its version (0 for records that are not versioned).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// What the record holds.
    pub kind: RecordKind,
    /// The owning mount.
    pub mount: MountId,
    /// The path within the mount; at most [`MAX_PATH_LEN`] bytes, no NUL.
    pub path: String,
    /// The version, for versioned records.
    pub version: u64,
}

impl RecordId {
    /// Names a record, checking the path.
    pub fn new(
        kind: RecordKind,
        mount: MountId,
        path: impl Into<String>,
        version: u64,
    ) -> Result<Self, BarrierError> {
        let path = path.into();
        if path.len() > MAX_PATH_LEN {
            return Err(BarrierError::InvalidPath("path is longer than 2048 bytes"));
        }
        if path.contains('\0') {
            return Err(BarrierError::InvalidPath("path contains a NUL character"));
        }
        Ok(RecordId {
            kind,
            mount,
            path,
            version,
        })
    }

    /// `rec/` ‖ kind ‖ mount ‖ path ‖ NUL ‖ version (big-endian), so that keys sort by kind,
    /// mount, path and then version, and a prefix of the path is a prefix of the key.
    fn storage_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(RECORD_PREFIX.len() + 1 + 16 + self.path.len() + 9);
        key.extend_from_slice(&scan_prefix(self.kind, self.mount, &self.path));
        key.push(0);
        key.extend_from_slice(&self.version.to_be_bytes());
        key
    }

    fn from_storage_key(key: &[u8]) -> Option<Self> {
        let rest = key.strip_prefix(RECORD_PREFIX)?;
        let (&tag, rest) = rest.split_first()?;
        let kind = RecordKind::from_tag(tag)?;
        let mount = MountId(rest.get(..16)?.try_into().ok()?);
        let rest = &rest[16..];
        let split = rest.len().checked_sub(9)?;
        let (path, tail) = rest.split_at(split);
        let (&0, version) = tail.split_first()? else {
            return None;
        };
        let version = u64::from_be_bytes(version.try_into().ok()?);
        let path = String::from_utf8(path.to_vec()).ok()?;
        Some(RecordId {
            kind,
            mount,
            path,
            version,
        })
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {}/{:?} v{}",
            self.kind, self.mount, self.path, self.version
        )
    }
}

fn scan_prefix(kind: RecordKind, mount: MountId, path_prefix: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(RECORD_PREFIX.len() + 17 + path_prefix.len());
    key.extend_from_slice(RECORD_PREFIX);
    key.push(kind as u8);
    key.extend_from_slice(mount.as_bytes());
    key.extend_from_slice(path_prefix.as_bytes());
    key
}

/// A record read back: its generation and plaintext (zeroized on drop). No `Debug`.
pub struct Record {
    /// How many times the record has been written, counting from 1.
    pub generation: u64,
    /// The plaintext.
    pub value: Zeroizing<Vec<u8>>,
}

/// A condition on the current state of a record, checked atomically with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The record must not exist.
    Absent,
    /// The record must exist at this generation.
    Generation(u64),
    /// The record must exist, at any generation.
    Present,
}

/// One change within [`Barrier::commit`].
pub enum Change<'a> {
    /// Write `value` as record `id`, if `expect` holds.
    Put {
        /// The record.
        id: &'a RecordId,
        /// The new plaintext.
        value: &'a [u8],
        /// The condition.
        expect: Expect,
    },
    /// Remove record `id` with its data key, if `expect` holds.
    Delete {
        /// The record.
        id: &'a RecordId,
        /// The condition.
        expect: Expect,
    },
    /// Change nothing, but apply the commit only if `expect` holds for record `id`.
    Check {
        /// The record.
        id: &'a RecordId,
        /// The condition.
        expect: Expect,
    },
}

impl Change<'_> {
    /// The same change, borrowed again (to gather changes from several owners).
    pub fn reborrow(&self) -> Change<'_> {
        match self {
            Change::Put { id, value, expect } => Change::Put {
                id,
                value,
                expect: *expect,
            },
            Change::Delete { id, expect } => Change::Delete {
                id,
                expect: *expect,
            },
            Change::Check { id, expect } => Change::Check {
                id,
                expect: *expect,
            },
        }
    }

    fn target(&self) -> (&RecordId, Expect) {
        match self {
            Change::Put { id, expect, .. }
            | Change::Delete { id, expect }
            | Change::Check { id, expect } => (id, *expect),
        }
    }
}

/// A failure of the barrier.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// The vault is sealed: no record can be read or written.
    #[error("Vault is sealed")]
    Sealed,
    /// A stored record failed authentication or does not parse: it was altered, truncated,
    /// moved, or sealed under a key this vault no longer has.
    #[error("integrity check failed for record {record}")]
    Integrity {
        /// The record that failed, as `kind mount/path vVersion`.
        record: String,
    },
    /// The record path is not acceptable.
    #[error("invalid record path: {0}")]
    InvalidPath(&'static str),
    /// The plaintext does not fit in one record.
    #[error("value of {len} bytes exceeds the {max}-byte record limit")]
    TooLarge {
        /// The plaintext's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An [`Expect`] did not hold; nothing was changed.
    #[error("record {record} changed concurrently or does not match the expected state")]
    Conflict {
        /// The record whose condition failed.
        record: String,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The keyring failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A cryptographic primitive failed (the system random number generator).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Progress of the current or last rewrap, readable while it runs.
#[derive(Default)]
pub struct RewrapProgress {
    running: AtomicBool,
    scanned: AtomicU64,
    rewrapped: AtomicU64,
}

/// A snapshot of [`RewrapProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapStatus {
    /// Whether a rewrap is running now.
    pub running: bool,
    /// Records examined by the current or last rewrap.
    pub scanned: u64,
    /// Data keys moved to the active term by the current or last rewrap.
    pub rewrapped: u64,
}

/// What a completed rewrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// Records examined, over all passes.
    pub scanned: u64,
    /// Data keys moved to the active term.
    pub rewrapped: u64,
    /// Terms destroyed because no record used them any more.
    pub destroyed: Vec<KeyTerm>,
}

/// Envelope encryption over a [`Storage`], holding the keyring while unsealed.
pub struct Barrier {
    storage: Arc<dyn Storage>,
    keyring: RwLock<Option<Arc<Keyring>>>,
    rewrap: RewrapProgress,
}

impl Barrier {
    /// A sealed barrier over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Barrier {
            storage,
            keyring: RwLock::new(None),
            rewrap: RewrapProgress::default(),
        }
    }

    /// An unsealed barrier over a fresh in-memory store, for unit tests of the engines.
    #[cfg(test)]
    pub(crate) fn unsealed_for_tests() -> Arc<Barrier> {
        let storage: Arc<dyn Storage> = Arc::new(crate::storage::MemoryStorage::new());
        let keyring = Keyring::create(
            crate::crypto::SecretKey::generate().unwrap(),
            crate::keyring::KeyringConfig::default(),
            Arc::clone(&storage),
            std::time::SystemTime::now(),
        )
        .unwrap();
        storage
            .put(
                crate::keyring::KEYRING_KEY,
                &keyring.sealed_record().unwrap(),
            )
            .unwrap();
        let barrier = Arc::new(Barrier::new(storage));
        barrier.unseal(keyring);
        barrier
    }

    /// The store underneath, for the seal's own core records.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Installs the keyring: records can be read and written from now on.
    pub fn unseal(&self, keyring: Keyring) {
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(keyring));
    }

    /// Drops the keyring. Its keys are zeroized as soon as operations already under way end.
    ///
    /// A rewrap under way notices at its next step and stops; this waits for that (up to a
    /// minute), so no write of the old keyring can land after a later unseal has loaded the
    /// stored one.
    pub fn seal(&self) {
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = None;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.rewrap.running.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the barrier is sealed.
    pub fn is_sealed(&self) -> bool {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// The unsealed keyring.
    pub fn keyring(&self) -> Result<Arc<Keyring>, BarrierError> {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(BarrierError::Sealed)
    }

    /// Reads a record.
    pub fn get(&self, id: &RecordId) -> Result<Option<Record>, BarrierError> {
        let keyring = self.keyring()?;
        let Some(bytes) = self.storage.get(&id.storage_key())? else {
            return Ok(None);
        };
        let (generation, value) = record::open(&keyring, id, &bytes)?;
        Ok(Some(Record { generation, value }))
    }

    /// Writes a record if `expect` holds; returns its new generation.
    pub fn put(&self, id: &RecordId, value: &[u8], expect: Expect) -> Result<u64, BarrierError> {
        let generations = self.commit(&[Change::Put { id, value, expect }])?;
        Ok(generations.first().copied().unwrap_or_default())
    }

    /// Removes a record and its data key if `expect` holds. Removing a missing record with
    /// [`Expect::Any`] is not an error.
    pub fn delete(&self, id: &RecordId, expect: Expect) -> Result<(), BarrierError> {
        self.commit(&[Change::Delete { id, expect }]).map(drop)
    }

    /// Applies several changes atomically: all of them, or none if any [`Expect`] fails.
    /// Returns the new generation of each change (0 for deletions).
    pub fn commit(&self, changes: &[Change<'_>]) -> Result<Vec<u64>, BarrierError> {
        let keyring = self.keyring()?;
        for change in changes {
            if let Change::Put { value, .. } = change
                && value.len() > MAX_PLAINTEXT_LEN
            {
                return Err(BarrierError::TooLarge {
                    len: value.len(),
                    max: MAX_PLAINTEXT_LEN,
                });
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            // The terms stay held until the batch is stored: see `Keyring::term_for_wrap`.
            let mut held: Vec<Arc<Term>> = Vec::new();
            let mut batch = Batch::new();
            let mut generations = Vec::with_capacity(changes.len());
            for change in changes {
                let (id, expect) = change.target();
                let key = id.storage_key();
                let current = self.storage.get(&key)?;
                let generation = match &current {
                    None => None,
                    Some(bytes) => Some(
                        record::Header::parse(bytes)
                            .ok_or_else(|| BarrierError::Integrity {
                                record: id.to_string(),
                            })?
                            .generation,
                    ),
                };
                let holds = match expect {
                    Expect::Any => true,
                    Expect::Absent => generation.is_none(),
                    Expect::Generation(g) => generation == Some(g),
                    Expect::Present => generation.is_some(),
                };
                if !holds {
                    return Err(BarrierError::Conflict {
                        record: id.to_string(),
                    });
                }
                batch = batch.expect(&key, current.as_deref());
                match change {
                    Change::Put { id, value, .. } => {
                        let next = generation.unwrap_or(0).saturating_add(1);
                        let term = keyring.term_for_wrap()?;
                        let sealed = record::seal(keyring.algorithm(), &term, id, next, value)?;
                        held.push(term);
                        batch = batch.put(&key, &sealed);
                        generations.push(next);
                    }
                    Change::Delete { .. } => {
                        if current.is_some() {
                            batch = batch.delete(&key);
                        }
                        generations.push(0);
                    }
                    Change::Check { .. } => generations.push(generation.unwrap_or(0)),
                }
            }
            match self.storage.apply(batch) {
                Ok(()) => return Ok(generations),
                // Something moved between our read and the write, often a rewrap changing
                // only the wrapped data key: read again and re-check the expectations.
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let record = changes
            .first()
            .map(|c| c.target().0.to_string())
            .unwrap_or_default();
        Err(BarrierError::Conflict { record })
    }

    /// Lists up to `limit` records of `kind` in `mount` whose path starts with `prefix`, in
    /// path then version order, starting after `after` when given.
    pub fn list(
        &self,
        kind: RecordKind,
        mount: MountId,
        prefix: &str,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<RecordId>, BarrierError> {
        // Paths are not secret values, but they are not shown while sealed either.
        let _keyring = self.keyring()?;
        let after = after.map(RecordId::storage_key);
        let entries =
            self.storage
                .scan(&scan_prefix(kind, mount, prefix), after.as_deref(), limit)?;
        Ok(entries
            .iter()
            .filter_map(|(key, _)| RecordId::from_storage_key(key))
            .collect())
    }

    /// Every record of `kind` in `mount` whose path starts with `prefix`, read in pages. For
    /// sets that stay small (keys of a mount, users, roles); page with [`Barrier::list`]
    /// where a set can grow without bound and the work can go page by page.
    pub fn list_all(
        &self,
        kind: RecordKind,
        mount: MountId,
        prefix: &str,
    ) -> Result<Vec<RecordId>, BarrierError> {
        let mut all = Vec::new();
        loop {
            let page = self.list(kind, mount, prefix, all.last(), 256)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Adds a key term and makes it active for new writes.
    pub fn rotate(&self, now: SystemTime) -> Result<KeyTerm, BarrierError> {
        Ok(self.keyring()?.rotate(now)?)
    }

    fn is_current(&self, keyring: &Keyring) -> bool {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|current| std::ptr::eq(current.as_ref(), keyring))
    }

    /// Progress of the current or last rewrap.
    pub fn rewrap_status(&self) -> RewrapStatus {
        RewrapStatus {
            running: self.rewrap.running.load(Ordering::Relaxed),
            scanned: self.rewrap.scanned.load(Ordering::Relaxed),
            rewrapped: self.rewrap.rewrapped.load(Ordering::Relaxed),
        }
    }

    /// Moves every data key wrapped by an old term to the active term, then destroys the old
    /// terms.
    ///
    /// A term is destroyed only once every writer that picked it has finished and a scan that
    /// starts after that finds no record under it. Values are never rewritten: only the 60
    /// bytes of each wrapped data key change, each with a compare-and-swap so a concurrent
    /// write is never lost.
    pub fn rewrap(&self) -> Result<RewrapReport, BarrierError> {
        let keyring = self.keyring()?;
        if self.rewrap.running.swap(true, Ordering::AcqRel) {
            return Err(BarrierError::Conflict {
                record: "keyring (a rewrap is running)".into(),
            });
        }
        self.rewrap.scanned.store(0, Ordering::Relaxed);
        self.rewrap.rewrapped.store(0, Ordering::Relaxed);
        let result = self.rewrap_all(&keyring);
        self.rewrap.running.store(false, Ordering::Release);
        result
    }

    fn rewrap_all(&self, keyring: &Keyring) -> Result<RewrapReport, BarrierError> {
        let active = keyring
            .term(keyring.active_term())
            .ok_or(KeyringError::Missing)?;
        let old: Vec<Arc<Term>> = keyring
            .terms()
            .into_iter()
            .filter(|t| t.number() != active.number())
            .collect();
        tracing::info!(active = %active.number(), old_terms = old.len(), "rewrap started");

        let mut moved = self.rewrap_pass(keyring, &active)?;
        // Wait for writers that picked an old term before it was replaced; after that nothing
        // can write under an old term, so a pass that finds nothing is final.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        for term in &old {
            // Two references remain when idle: the keyring's map and `old` here.
            while Arc::strong_count(term) > 2 {
                if !self.is_current(keyring) {
                    return Err(BarrierError::Sealed);
                }
                if Instant::now() > deadline {
                    return Err(BarrierError::Conflict {
                        record: format!("key term {} (writers did not drain)", term.number()),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        loop {
            let found = self.rewrap_pass(keyring, &active)?;
            if found == 0 {
                break;
            }
            moved += found;
        }

        let mut destroyed = Vec::new();
        for term in old {
            if !self.is_current(keyring) {
                return Err(BarrierError::Sealed);
            }
            keyring.destroy(term.number())?;
            destroyed.push(term.number());
        }
        let report = RewrapReport {
            scanned: self.rewrap.scanned.load(Ordering::Relaxed),
            rewrapped: moved,
            destroyed,
        };
        tracing::info!(scanned = report.scanned, rewrapped = report.rewrapped, destroyed = ?report.destroyed, "rewrap finished");
        Ok(report)
    }

    /// One scan over every record; returns how many data keys it moved to `active`.
    fn rewrap_pass(&self, keyring: &Keyring, active: &Term) -> Result<u64, BarrierError> {
        let mut moved = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            // A seal (and perhaps a new unseal) since the rewrap began ends it: this keyring
            // is no longer the vault's.
            if !self.is_current(keyring) {
                return Err(BarrierError::Sealed);
            }
            let page = self
                .storage
                .scan(RECORD_PREFIX, after.as_deref(), REWRAP_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            self.rewrap
                .scanned
                .fetch_add(page.len() as u64, Ordering::Relaxed);

            let mut batch = Batch::new();
            let mut in_batch = 0u64;
            for (key, bytes) in &page {
                if let Some(rewrapped) = self.rewrapped(keyring, key, bytes, active)? {
                    batch = batch.expect(key, Some(bytes)).put(key, &rewrapped);
                    in_batch += 1;
                }
            }
            if in_batch == 0 {
                continue;
            }
            let done = match self.storage.apply(batch) {
                Ok(()) => in_batch,
                // A writer changed a record of this page meanwhile: go one record at a time.
                Err(StorageError::Conflict { .. }) => {
                    self.rewrap_one_by_one(keyring, &page, active)?
                }
                Err(e) => return Err(e.into()),
            };
            moved += done;
            self.rewrap.rewrapped.fetch_add(done, Ordering::Relaxed);
            tracing::debug!(
                scanned = self.rewrap.scanned.load(Ordering::Relaxed),
                moved,
                "rewrap progress"
            );
        }
        Ok(moved)
    }

    fn rewrap_one_by_one(
        &self,
        keyring: &Keyring,
        page: &[(Vec<u8>, Vec<u8>)],
        active: &Term,
    ) -> Result<u64, BarrierError> {
        let mut moved = 0;
        for (key, _) in page {
            for _ in 0..MAX_ATTEMPTS {
                let Some(bytes) = self.storage.get(key)? else {
                    break;
                };
                let Some(rewrapped) = self.rewrapped(keyring, key, &bytes, active)? else {
                    break;
                };
                match self
                    .storage
                    .apply(Batch::new().expect(key, Some(&bytes)).put(key, &rewrapped))
                {
                    Ok(()) => {
                        moved += 1;
                        break;
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(moved)
    }

    /// The record rewrapped under `active`, or `None` if it already is.
    fn rewrapped(
        &self,
        keyring: &Keyring,
        key: &[u8],
        bytes: &[u8],
        active: &Term,
    ) -> Result<Option<Vec<u8>>, BarrierError> {
        let integrity = || BarrierError::Integrity {
            record: RecordId::from_storage_key(key)
                .map_or_else(|| key.escape_ascii().to_string(), |id| id.to_string()),
        };
        let header = record::Header::parse(bytes).ok_or_else(integrity)?;
        if header.term == active.number() {
            return Ok(None);
        }
        // A record that cannot be rewrapped must stop the rewrap: destroying its term would
        // make it unreadable for ever.
        match record::rewrap(keyring, bytes, active) {
            Some(result) => result.map(Some),
            None => Err(integrity()),
        }
    }
}

#[cfg(test)]
mod tests;
