//! Versioned key-encryption keys ("key terms") under the root key.
//!
//! Every stored record has its own data key, and the data key is wrapped by one key term.
//! Exactly one term is active for new writes; older terms stay readable until the barrier has
//! rewrapped every data key they protect, after which they are destroyed.
//!
//! Each term counts the data keys it has wrapped, because AES-GCM with random 96-bit nonces
//! must not be used for more than about 2^32 messages under one key. The count is kept durable
//! in blocks: before a term wraps past its reservation, a larger reservation is written, so a
//! crash can only over-count. When the active term reaches the wear limit (2^30 by default) a
//! new term is added automatically.
//!
//! The keyring is stored as one record at [`KEYRING_KEY`], sealed directly with the root key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::crypto::{self, Algorithm, CryptoError, KEY_LEN, SecretKey};
use crate::storage::{Batch, Storage, StorageError};

/// Where the sealed keyring is stored.
pub const KEYRING_KEY: &[u8] = b"core/keyring";

/// The default number of wraps after which the active term is replaced: 2^30, a safe margin
/// below the 2^32 random-nonce bound.
pub const DEFAULT_WEAR_LIMIT: u64 = 1 << 30;

const FORMAT: u8 = 1;
const AAD: &[u8] = b"vaultd/keyring/v1";

/// The number of a key term. Terms are numbered from 1 and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyTerm(pub u32);

impl std::fmt::Display for KeyTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A key-encryption key and its wear counters. No `Debug`: it holds key material.
pub struct Term {
    number: KeyTerm,
    key: SecretKey,
    created: u64,
    wraps: AtomicU64,
    reserved: AtomicU64,
}

impl Term {
    /// The term's number.
    pub fn number(&self) -> KeyTerm {
        self.number
    }

    /// The key-encryption key.
    pub(crate) fn key(&self) -> &SecretKey {
        &self.key
    }

    /// Data keys wrapped so far (an upper bound after a restart).
    pub fn wraps(&self) -> u64 {
        self.wraps.load(Ordering::Relaxed)
    }

    /// Seconds since the Unix epoch at which the term was created.
    pub fn created(&self) -> u64 {
        self.created
    }
}

/// What the keyring needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct KeyringConfig {
    /// The AEAD for new records and for the keyring itself.
    pub algorithm: Algorithm,
    /// Wraps after which the active term is replaced.
    pub wear_limit: u64,
}

impl Default for KeyringConfig {
    fn default() -> Self {
        KeyringConfig {
            algorithm: Algorithm::default(),
            wear_limit: DEFAULT_WEAR_LIMIT,
        }
    }
}

/// A failure of the keyring.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Reading or writing the keyring record failed.
    #[error("keyring storage: {0}")]
    Storage(#[from] StorageError),
    /// The keyring record did not open under the root key or is malformed.
    #[error("the keyring record is corrupt or was sealed with another root key")]
    Corrupt,
    /// No keyring record exists.
    #[error("no keyring is stored: the vault is not initialised")]
    Missing,
    /// A random key could not be made.
    #[error("keyring: {0}")]
    Crypto(#[from] CryptoError),
    /// Every term number has been used.
    #[error("key terms exhausted")]
    Exhausted,
    /// The stored keyring is no longer the one this instance wrote (the vault was sealed
    /// and unsealed meanwhile); nothing was changed.
    #[error("the stored keyring changed under this instance; the change was not made")]
    Stale,
}

/// The unsealed keyring: all live terms, which one is active, and the root key that seals it.
pub struct Keyring {
    root: SecretKey,
    config: KeyringConfig,
    storage: Arc<dyn Storage>,
    terms: RwLock<Terms>,
    // Serialises changes to the stored record and holds the bytes last stored, so that every
    // write is a compare-and-swap: a keyring instance left over from before a seal and unseal
    // can never overwrite the current one.
    persist: Mutex<Option<Vec<u8>>>,
}

struct Terms {
    active: Arc<Term>,
    all: BTreeMap<KeyTerm, Arc<Term>>,
}

impl Keyring {
    /// Makes the first keyring (term 1) for a new vault. Nothing is stored: the caller writes
    /// [`Keyring::sealed_record`] together with the rest of initialisation.
    pub fn create(
        root: SecretKey,
        config: KeyringConfig,
        storage: Arc<dyn Storage>,
        now: SystemTime,
    ) -> Result<Self, KeyringError> {
        let first = Arc::new(Term {
            number: KeyTerm(1),
            key: SecretKey::generate()?,
            created: unix_seconds(now),
            wraps: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
        });
        let all = BTreeMap::from([(first.number, Arc::clone(&first))]);
        Ok(Keyring {
            root,
            config,
            storage,
            terms: RwLock::new(Terms { active: first, all }),
            persist: Mutex::new(None),
        })
    }

    /// Loads the stored keyring with the root key.
    pub fn load(
        root: SecretKey,
        config: KeyringConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, KeyringError> {
        let stored = storage.get(KEYRING_KEY)?.ok_or(KeyringError::Missing)?;
        let terms = decode(&root, &stored)?;
        Ok(Keyring {
            root,
            config,
            storage,
            terms: RwLock::new(terms),
            persist: Mutex::new(Some(stored)),
        })
    }

    /// The AEAD for new records.
    pub fn algorithm(&self) -> Algorithm {
        self.config.algorithm
    }

    /// The active term, counted as having wrapped one more data key. The caller holds the
    /// returned handle until its write is stored, which is how rewrapping knows when every
    /// writer that picked an old term has finished.
    pub fn term_for_wrap(&self) -> Result<Arc<Term>, KeyringError> {
        loop {
            let term = Arc::clone(&self.read_terms().active);
            let count = term.wraps.fetch_add(1, Ordering::Relaxed) + 1;
            if count <= term.reserved.load(Ordering::Acquire) && count < self.config.wear_limit {
                return Ok(term);
            }
            if self.reserve_or_rotate(&term, count)? {
                return Ok(term);
            }
            // The term was worn out and has been replaced: take the new active term.
        }
    }

    /// The term with the given number, if it still exists.
    pub fn term(&self, number: KeyTerm) -> Option<Arc<Term>> {
        self.read_terms().all.get(&number).cloned()
    }

    /// The active term's number.
    pub fn active_term(&self) -> KeyTerm {
        self.read_terms().active.number
    }

    /// Every live term, oldest first.
    pub fn terms(&self) -> Vec<Arc<Term>> {
        self.read_terms().all.values().cloned().collect()
    }

    /// Adds a new term and makes it active for new writes. Older terms stay readable.
    pub fn rotate(&self, now: SystemTime) -> Result<KeyTerm, KeyringError> {
        let mut stored = self.lock_persist();
        self.rotate_locked(&mut stored, now)
    }

    /// Removes a term that no record uses any more. The active term is never removed.
    pub fn destroy(&self, number: KeyTerm) -> Result<(), KeyringError> {
        let mut stored = self.lock_persist();
        let mut next = self.snapshot();
        if next.active.number == number {
            return Ok(());
        }
        next.all.remove(&number);
        self.persist_locked(&mut stored, next)
    }

    /// The keyring sealed under the root key, for the caller to store at [`KEYRING_KEY`]
    /// (at init). Later writes expect to find exactly these bytes there.
    pub fn sealed_record(&self) -> Result<Vec<u8>, KeyringError> {
        let mut stored = self.lock_persist();
        let record = encode(&self.root, self.config.algorithm, &self.read_terms(), None)?;
        *stored = Some(record.clone());
        Ok(record)
    }

    /// Makes wrap number `count` of `term` durable, or rotates if the term is worn out.
    /// Returns whether `term` may be used for this wrap.
    fn reserve_or_rotate(&self, term: &Term, count: u64) -> Result<bool, KeyringError> {
        let mut stored = self.lock_persist();
        if count >= self.config.wear_limit {
            if self.read_terms().active.number == term.number {
                tracing::info!(term = %term.number, wraps = count, "key term reached its wear limit; rotating");
                self.rotate_locked(&mut stored, SystemTime::now())?;
            }
            return Ok(false);
        }
        if count > term.reserved.load(Ordering::Acquire) {
            let block = (self.config.wear_limit / 16).clamp(1, 1 << 16);
            let target = count.saturating_add(block).min(self.config.wear_limit);
            // The larger reservation is durable before any wrap beyond the old one is used:
            // other writers see it only after the store, and wait on the lock until then.
            let record = encode(
                &self.root,
                self.config.algorithm,
                &self.read_terms(),
                Some((term.number, target)),
            )?;
            self.store(&mut stored, record)?;
            term.reserved.store(target, Ordering::Release);
        }
        Ok(true)
    }

    fn rotate_locked(
        &self,
        stored: &mut Option<Vec<u8>>,
        now: SystemTime,
    ) -> Result<KeyTerm, KeyringError> {
        let mut next = self.snapshot();
        let last = next.all.keys().next_back().map_or(0, |t| t.0);
        let number = KeyTerm(last.checked_add(1).ok_or(KeyringError::Exhausted)?);
        let term = Arc::new(Term {
            number,
            key: SecretKey::generate()?,
            created: unix_seconds(now),
            wraps: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
        });
        next.all.insert(number, Arc::clone(&term));
        next.active = term;
        self.persist_locked(stored, next)?;
        tracing::info!(term = %number, "key term added and active for new writes");
        Ok(number)
    }

    /// Stores `next` and, once it is durable, makes it the live keyring.
    fn persist_locked(
        &self,
        stored: &mut Option<Vec<u8>>,
        next: Terms,
    ) -> Result<(), KeyringError> {
        let record = encode(&self.root, self.config.algorithm, &next, None)?;
        self.store(stored, record)?;
        *self.terms.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Replaces the stored keyring, but only if it is still the one this instance wrote last.
    fn store(&self, stored: &mut Option<Vec<u8>>, record: Vec<u8>) -> Result<(), KeyringError> {
        let batch = Batch::new()
            .expect(KEYRING_KEY, stored.as_deref())
            .put(KEYRING_KEY, &record);
        match self.storage.apply(batch) {
            Ok(()) => {
                *stored = Some(record);
                Ok(())
            }
            Err(StorageError::Conflict { .. }) => Err(KeyringError::Stale),
            Err(e) => Err(e.into()),
        }
    }

    fn snapshot(&self) -> Terms {
        let terms = self.read_terms();
        Terms {
            active: Arc::clone(&terms.active),
            all: terms.all.clone(),
        }
    }

    fn read_terms(&self) -> RwLockReadGuard<'_, Terms> {
        // Writers replace the whole map in one assignment, so a poisoned lock still guards a
        // consistent value.
        self.terms.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_persist(&self) -> MutexGuard<'_, Option<Vec<u8>>> {
        self.persist.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// The sealed record: FORMAT ‖ algorithm ‖ seal(root, AAD, body), where the body is
// active term (u32) ‖ count (u32) ‖ count × [term (u32) ‖ created (u64) ‖ reserved (u64) ‖ key].
const TERM_LEN: usize = 4 + 8 + 8 + KEY_LEN;

/// Encodes and seals `terms`; `reserve` replaces one term's reservation in the record.
fn encode(
    root: &SecretKey,
    algorithm: Algorithm,
    terms: &Terms,
    reserve: Option<(KeyTerm, u64)>,
) -> Result<Vec<u8>, KeyringError> {
    let mut body = Zeroizing::new(Vec::with_capacity(8 + terms.all.len() * TERM_LEN));
    body.extend_from_slice(&terms.active.number.0.to_be_bytes());
    let count = u32::try_from(terms.all.len()).map_err(|_| KeyringError::Exhausted)?;
    body.extend_from_slice(&count.to_be_bytes());
    for term in terms.all.values() {
        body.extend_from_slice(&term.number.0.to_be_bytes());
        body.extend_from_slice(&term.created.to_be_bytes());
        let reserved = match reserve {
            Some((number, target)) if number == term.number => target,
            _ => term.reserved.load(Ordering::Acquire),
        };
        body.extend_from_slice(&reserved.to_be_bytes());
        body.extend_from_slice(term.key.expose());
    }
    let mut record = vec![FORMAT, algorithm.id()];
    crypto::seal_into(algorithm, root, AAD, &body, &mut record)?;
    Ok(record)
}

fn decode(root: &SecretKey, record: &[u8]) -> Result<Terms, KeyringError> {
    let [FORMAT, algorithm, sealed @ ..] = record else {
        return Err(KeyringError::Corrupt);
    };
    let algorithm = Algorithm::from_id(*algorithm).ok_or(KeyringError::Corrupt)?;
    let body = crypto::open(algorithm, root, AAD, sealed).map_err(|_| KeyringError::Corrupt)?;
    let mut reader = Reader(&body);
    let active = KeyTerm(reader.u32()?);
    let count = reader.u32()?;
    let mut all = BTreeMap::new();
    for _ in 0..count {
        let number = KeyTerm(reader.u32()?);
        let created = reader.u64()?;
        let reserved = reader.u64()?;
        let key = SecretKey::from_slice(reader.take(KEY_LEN)?).ok_or(KeyringError::Corrupt)?;
        let term = Term {
            number,
            key,
            created,
            // A restart cannot know how much of the reservation was used: assume all of it.
            wraps: AtomicU64::new(reserved),
            reserved: AtomicU64::new(reserved),
        };
        all.insert(number, Arc::new(term));
    }
    if !reader.0.is_empty() {
        return Err(KeyringError::Corrupt);
    }
    let active = all.get(&active).cloned().ok_or(KeyringError::Corrupt)?;
    Ok(Terms { active, all })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KeyringError> {
        if self.0.len() < n {
            return Err(KeyringError::Corrupt);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, KeyringError> {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(bytes))
    }

    fn u64(&mut self) -> Result<u64, KeyringError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn new_keyring(wear_limit: u64) -> (Keyring, Arc<dyn Storage>, [u8; KEY_LEN]) {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let root = SecretKey::generate().unwrap();
        let root_bytes = *root.expose();
        let config = KeyringConfig {
            wear_limit,
            ..KeyringConfig::default()
        };
        let keyring =
            Keyring::create(root, config, Arc::clone(&storage), SystemTime::now()).unwrap();
        storage
            .put(KEYRING_KEY, &keyring.sealed_record().unwrap())
            .unwrap();
        (keyring, storage, root_bytes)
    }

    fn reload(storage: &Arc<dyn Storage>, root: [u8; KEY_LEN], wear_limit: u64) -> Keyring {
        let config = KeyringConfig {
            wear_limit,
            ..KeyringConfig::default()
        };
        Keyring::load(SecretKey::from_bytes(root), config, Arc::clone(storage)).unwrap()
    }

    #[test]
    fn rotation_adds_a_term_and_survives_reload() {
        let (keyring, storage, root) = new_keyring(DEFAULT_WEAR_LIMIT);
        assert_eq!(keyring.active_term(), KeyTerm(1));
        assert_eq!(keyring.rotate(SystemTime::now()).unwrap(), KeyTerm(2));
        let old_key = *keyring.term(KeyTerm(1)).unwrap().key().expose();

        let again = reload(&storage, root, DEFAULT_WEAR_LIMIT);
        assert_eq!(again.active_term(), KeyTerm(2));
        assert_eq!(again.terms().len(), 2);
        assert_eq!(again.term(KeyTerm(1)).unwrap().key().expose(), &old_key);

        again.destroy(KeyTerm(1)).unwrap();
        again.destroy(KeyTerm(2)).unwrap(); // the active term stays
        let last = reload(&storage, root, DEFAULT_WEAR_LIMIT);
        assert!(last.term(KeyTerm(1)).is_none());
        assert_eq!(last.active_term(), KeyTerm(2));
    }

    #[test]
    fn a_wrong_root_key_does_not_open_the_keyring() {
        let (_keyring, storage, _root) = new_keyring(DEFAULT_WEAR_LIMIT);
        let wrong = SecretKey::generate().unwrap();
        let err = Keyring::load(wrong, KeyringConfig::default(), storage)
            .err()
            .unwrap();
        assert!(matches!(err, KeyringError::Corrupt));
    }

    #[test]
    fn wear_limit_rotates_and_counts_survive_restarts() {
        let (keyring, storage, root) = new_keyring(100);
        for _ in 0..99 {
            assert_eq!(keyring.term_for_wrap().unwrap().number(), KeyTerm(1));
        }
        // The hundredth wrap reaches the limit: a new term takes over.
        assert_eq!(keyring.term_for_wrap().unwrap().number(), KeyTerm(2));

        // After a restart the count restarts from the durable reservation, never below the
        // number of wraps actually done.
        let used = keyring.term(KeyTerm(2)).unwrap().wraps();
        let again = reload(&storage, root, 100);
        assert!(again.term(KeyTerm(2)).unwrap().wraps() >= used);
        assert_eq!(again.term(KeyTerm(1)).unwrap().wraps(), 100);
    }

    #[test]
    fn corrupt_records_are_refused() {
        let (_keyring, storage, root) = new_keyring(DEFAULT_WEAR_LIMIT);
        let record = storage.get(KEYRING_KEY).unwrap().unwrap();
        for cut in 0..record.len() {
            let key = SecretKey::from_bytes(root);
            assert!(decode(&key, &record[..cut]).is_err());
        }
    }
}
