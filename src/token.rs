//! Tokens: opaque bearer credentials, stored only as hashes.
//!
//! A token is `vdt_` followed by 43 base62 characters (256 random bits) and a 6-character
//! checksum, so leak scanners can recognise one and reject look-alikes without asking the
//! vault. The store keeps the SHA-256 of each token, never the token; the *accessor* names a
//! token in logs and lists without granting anything.
//!
//! Every token but an orphan has a parent; revoking a token revokes every token it created,
//! transitively. A use count, when set, is decremented with a compare-and-swap on the token's
//! record generation, so concurrent requests cannot use a token more often than allowed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api::ApiError;
use crate::barrier::{Barrier, BarrierError, Change, Expect, MountId, RecordId, RecordKind};
use crate::crypto::{fill_random, sha256};

/// The prefix of every token.
pub const TOKEN_PREFIX: &str = "vdt_";

/// The TTL of a token created without one: 768 hours, Vault's default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(768 * 3600);

/// The longest a token other than the root token can live, from its creation, renewals
/// included: 768 hours, Vault's default maximum.
pub const MAX_TTL: Duration = Duration::from_secs(768 * 3600);

const RANDOM_CHARS: usize = 43;
const CHECKSUM_CHARS: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What the store keeps about a token. Holds no secret: the token itself is not in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The accessor, which names the token without granting anything.
    pub accessor: String,
    /// Attached policies.
    pub policies: Vec<String>,
    /// The hash of the token that created this one; `None` for root and orphan tokens.
    pub parent: Option<String>,
    /// A name for logs.
    pub display_name: String,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Unix seconds at creation.
    pub creation_time: u64,
    /// The TTL at creation or last renewal, in seconds; 0 never expires.
    pub ttl: u64,
    /// The hard limit on the token's life in seconds from creation; 0 for none.
    pub explicit_max_ttl: u64,
    /// Remaining uses; 0 is unlimited.
    pub num_uses: u64,
    /// Whether the TTL can be extended.
    pub renewable: bool,
    /// Unix seconds at which the token expires; `None` never.
    pub expire_time: Option<u64>,
    /// The route that created it.
    pub path: String,
}

impl TokenEntry {
    /// Whether the token has the `root` policy.
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    /// Whether the token has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expire_time.is_some_and(|t| unix(now) >= t)
    }

    /// Seconds left at `now`; 0 for a token that never expires.
    pub fn remaining(&self, now: SystemTime) -> u64 {
        self.expire_time.map_or(0, |t| t.saturating_sub(unix(now)))
    }

    /// The token's properties as `auth/token/lookup*` return them; `id` is the token for
    /// `lookup-self` and empty otherwise.
    pub fn lookup_data(&self, id: &str, now: SystemTime) -> Value {
        json!({
            "accessor": self.accessor,
            "creation_time": self.creation_time,
            "creation_ttl": self.ttl,
            "display_name": self.display_name,
            "entity_id": "",
            "expire_time": self.expire_time.map(|t| crate::duration::timestamp(UNIX_EPOCH + Duration::from_secs(t))),
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": id,
            "issue_time": crate::duration::timestamp(UNIX_EPOCH + Duration::from_secs(self.creation_time)),
            "meta": if self.meta.is_empty() { Value::Null } else { json!(self.meta) },
            "num_uses": self.num_uses,
            "orphan": self.parent.is_none(),
            "path": self.path,
            "policies": self.policies,
            "renewable": self.renewable,
            "ttl": self.remaining(now),
            "type": "service",
        })
    }

    /// The `auth` block of a response that hands out `token`.
    pub fn auth_block(&self, token: &str) -> Value {
        let token_policies = self.policies.clone();
        json!({
            "client_token": token,
            "accessor": self.accessor,
            "policies": self.policies,
            "token_policies": token_policies,
            "identity_policies": null,
            "metadata": if self.meta.is_empty() { Value::Null } else { json!(self.meta) },
            "lease_duration": self.ttl,
            "renewable": self.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": self.parent.is_none(),
            "mfa_requirement": null,
            "num_uses": self.num_uses,
        })
    }
}

/// A token found in the store.
#[derive(Debug, Clone)]
pub struct Token {
    /// The SHA-256 of the token, hex.
    pub hash: String,
    /// Its properties.
    pub entry: TokenEntry,
    generation: u64,
}

/// What a new token should be.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    /// Policies to attach (before `default` is added).
    pub policies: Vec<String>,
    /// Whether to leave out the `default` policy.
    pub no_default_policy: bool,
    /// The TTL; [`DEFAULT_TTL`] when `None`.
    pub ttl: Option<Duration>,
    /// The hard limit on the token's life.
    pub explicit_max_ttl: Option<Duration>,
    /// Allowed uses; 0 is unlimited.
    pub num_uses: u64,
    /// Whether it can be renewed (default true).
    pub renewable: Option<bool>,
    /// The name for logs; `token` when `None`.
    pub display_name: Option<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Create without a parent.
    pub orphan: bool,
    /// The route creating it.
    pub path: String,
    /// Never expire (the root token only).
    pub never_expires: bool,
}

/// The token store.
pub struct TokenStore {
    barrier: Arc<Barrier>,
}

impl TokenStore {
    /// A store over `barrier`.
    pub fn new(barrier: Arc<Barrier>) -> Self {
        TokenStore { barrier }
    }

    /// Creates the root token at init: root policy, no expiry, no parent.
    pub fn create_root(
        &self,
        now: SystemTime,
    ) -> Result<(Zeroizing<String>, TokenEntry), ApiError> {
        let request = NewToken {
            policies: vec!["root".into()],
            no_default_policy: true,
            never_expires: true,
            orphan: true,
            display_name: Some("root".into()),
            path: "auth/token/root".into(),
            ..NewToken::default()
        };
        self.store_new(None, request, now)
    }

    /// Creates a token as `parent`. A non-root parent can only give policies it has itself,
    /// and a child never outlives its parent.
    pub fn create(
        &self,
        parent: &Token,
        mut request: NewToken,
        now: SystemTime,
    ) -> Result<(Zeroizing<String>, TokenEntry), ApiError> {
        if !parent.entry.is_root() {
            if request.orphan {
                return Err(ApiError::bad_request(
                    "root or sudo privileges required to create orphan token",
                ));
            }
            if let Some(policy) = request
                .policies
                .iter()
                .find(|p| *p != "default" && !parent.entry.policies.contains(p))
            {
                return Err(ApiError::bad_request(format!(
                    "child policies must be subset of parent: {policy} is not"
                )));
            }
        }
        if request.policies.is_empty() {
            // Vault's rule: with no policies given, a token inherits its parent's.
            request.policies = parent
                .entry
                .policies
                .iter()
                .filter(|p| *p != "default")
                .cloned()
                .collect();
        }
        let parent = (!request.orphan).then_some((parent.hash.as_str(), &parent.entry));
        self.store_new(parent, request, now)
    }

    /// Creates the token a login hands out: no parent, so it lives as long as its own TTL
    /// and explicit maximum allow, whoever logged in.
    pub fn create_login(
        &self,
        mut request: NewToken,
        now: SystemTime,
    ) -> Result<(Zeroizing<String>, TokenEntry), ApiError> {
        if request.policies.iter().any(|p| p == "root") {
            return Err(ApiError::bad_request(
                "a login cannot hand out the root policy",
            ));
        }
        request.orphan = true;
        request.never_expires = false;
        self.store_new(None, request, now)
    }

    fn store_new(
        &self,
        parent: Option<(&str, &TokenEntry)>,
        request: NewToken,
        now: SystemTime,
    ) -> Result<(Zeroizing<String>, TokenEntry), ApiError> {
        let mut policies = request.policies;
        if !request.no_default_policy && !policies.iter().any(|p| p == "root" || p == "default") {
            policies.push("default".into());
        }
        policies.sort();
        policies.dedup();

        let now_secs = unix(now);
        // A TTL of 0 means the default, as in Vault; only the root token never expires.
        let asked = request
            .ttl
            .filter(|t| !t.is_zero())
            .unwrap_or(DEFAULT_TTL)
            .as_secs();
        let explicit_max_ttl = request.explicit_max_ttl.map_or(0, |d| d.as_secs());
        let mut ttl = asked.min(MAX_TTL.as_secs());
        if explicit_max_ttl > 0 {
            ttl = ttl.min(explicit_max_ttl);
        }
        let mut expire_time = (!request.never_expires).then(|| now_secs.saturating_add(ttl));
        if request.never_expires {
            ttl = 0;
        }
        // A child never outlives its parent.
        if let Some(parent_expiry) = parent.and_then(|(_, p)| p.expire_time) {
            let capped = expire_time.map_or(parent_expiry, |t| t.min(parent_expiry));
            expire_time = Some(capped);
            ttl = capped.saturating_sub(now_secs);
        }

        let token = new_token()?;
        let hash = hash_token(&token);
        let entry = TokenEntry {
            accessor: new_accessor()?,
            policies,
            parent: parent.map(|(h, _)| h.to_string()),
            display_name: request.display_name.unwrap_or_else(|| "token".into()),
            meta: request.meta,
            creation_time: now_secs,
            ttl,
            explicit_max_ttl,
            num_uses: request.num_uses,
            renewable: request.renewable.unwrap_or(true) && ttl > 0,
            expire_time,
            path: request.path,
        };
        let body = encode(&entry)?;
        let token_id = token_record(&hash)?;
        let accessor_id = accessor_record(&entry.accessor)?;
        let mut changes = vec![
            Change::Put {
                id: &token_id,
                value: &body,
                expect: Expect::Absent,
            },
            Change::Put {
                id: &accessor_id,
                value: hash.as_bytes(),
                expect: Expect::Absent,
            },
        ];
        let (child_id, parent_id);
        if let Some((parent_hash, _)) = parent {
            child_id = child_record(parent_hash, &hash)?;
            parent_id = token_record(parent_hash)?;
            changes.push(Change::Put {
                id: &child_id,
                value: b"",
                expect: Expect::Any,
            });
            // The parent must still exist when the child is stored: a child created while
            // its parent is being revoked would otherwise escape the revocation.
            changes.push(Change::Check {
                id: &parent_id,
                expect: Expect::Present,
            });
        }
        self.barrier.commit(&changes)?;
        Ok((token, entry))
    }

    /// Finds the token a client sent. Malformed tokens, unknown tokens and expired ones (which
    /// are then removed) are all `None`.
    pub fn lookup(&self, token: &str, now: SystemTime) -> Result<Option<Token>, ApiError> {
        if !well_formed(token) {
            return Ok(None);
        }
        self.lookup_hash(&hash_token(token), now)
    }

    /// Finds a token by its accessor.
    pub fn lookup_accessor(
        &self,
        accessor: &str,
        now: SystemTime,
    ) -> Result<Option<Token>, ApiError> {
        if accessor.is_empty()
            || accessor.len() > 64
            || !accessor.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Ok(None);
        }
        let Some(record) = self.barrier.get(&accessor_record(accessor)?)? else {
            return Ok(None);
        };
        let hash = String::from_utf8(record.value.to_vec())
            .map_err(|_| ApiError::internal("accessor record is not UTF-8"))?;
        self.lookup_hash(&hash, now)
    }

    fn lookup_hash(&self, hash: &str, now: SystemTime) -> Result<Option<Token>, ApiError> {
        let Some(record) = self.barrier.get(&token_record(hash)?)? else {
            return Ok(None);
        };
        let entry: TokenEntry = serde_json::from_slice(&record.value)
            .map_err(|e| ApiError::internal(format!("token record does not parse: {e}")))?;
        let token = Token {
            hash: hash.to_string(),
            entry,
            generation: record.generation,
        };
        if token.entry.expired(now) {
            self.revoke(&token.hash)?;
            return Ok(None);
        }
        Ok(Some(token))
    }

    /// Counts one use of a token with a limited number of uses, and returns the token as it
    /// is after that use; `None` if it has no use left (a concurrent request took the last
    /// one). The last use revokes the token, but the request that spent it proceeds.
    pub fn spend_use(&self, token: &Token, now: SystemTime) -> Result<Option<Token>, ApiError> {
        if token.entry.num_uses == 0 {
            return Ok(Some(token.clone()));
        }
        let mut current = token.clone();
        loop {
            let id = token_record(&current.hash)?;
            let expect = Expect::Generation(current.generation);
            let mut entry = current.entry.clone();
            entry.num_uses -= 1;
            let spent = if entry.num_uses == 0 {
                self.remove_at(&current, expect)
                    .map(|()| current.generation)
            } else {
                self.barrier.put(&id, &encode(&entry)?, expect)
            };
            match spent {
                Ok(generation) => {
                    if entry.num_uses == 0 {
                        self.revoke(&current.hash)?;
                    }
                    return Ok(Some(Token {
                        hash: current.hash,
                        entry,
                        generation,
                    }));
                }
                Err(BarrierError::Conflict { .. }) => match self.lookup_hash(&current.hash, now)? {
                    Some(fresh) => current = fresh,
                    None => return Ok(None),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Extends a renewable token's TTL by `increment` (or its original TTL), never past its
    /// explicit maximum, [`MAX_TTL`] from its creation, or its parent's expiry.
    pub fn renew(
        &self,
        token: &Token,
        increment: Option<Duration>,
        now: SystemTime,
    ) -> Result<TokenEntry, ApiError> {
        if !token.entry.renewable || token.entry.expire_time.is_none() {
            return Err(ApiError::bad_request("token is not renewable"));
        }
        let mut entry = token.entry.clone();
        let now_secs = unix(now);
        let mut end = entry.creation_time.saturating_add(MAX_TTL.as_secs());
        if entry.explicit_max_ttl > 0 {
            end = end.min(entry.creation_time.saturating_add(entry.explicit_max_ttl));
        }
        if let Some(parent) = &entry.parent
            && let Some(parent) = self.lookup_hash(parent, now)?
            && let Some(parent_end) = parent.entry.expire_time
        {
            end = end.min(parent_end);
        }
        let asked = increment
            .filter(|d| !d.is_zero())
            .map_or(entry.ttl, |d| d.as_secs());
        let ttl = asked.min(end.saturating_sub(now_secs));
        entry.ttl = ttl;
        entry.expire_time = Some(now_secs.saturating_add(ttl));
        self.barrier
            .put(
                &token_record(&token.hash)?,
                &encode(&entry)?,
                Expect::Generation(token.generation),
            )
            .map_err(|e| match e {
                BarrierError::Conflict { .. } => {
                    ApiError::bad_request("token changed during renewal; retry")
                }
                other => other.into(),
            })?;
        Ok(entry)
    }

    /// Revokes a token and, transitively, every token it created.
    pub fn revoke(&self, hash: &str) -> Result<(), ApiError> {
        let mut pending = vec![hash.to_string()];
        while let Some(current) = pending.pop() {
            let prefix = format!("{current}/");
            loop {
                let children = self.barrier.list(
                    RecordKind::TokenChild,
                    MountId::SYSTEM,
                    &prefix,
                    None,
                    256,
                )?;
                if children.is_empty() {
                    break;
                }
                for child in children {
                    if let Some(child_hash) = child.path.strip_prefix(&prefix) {
                        pending.push(child_hash.to_string());
                    }
                    self.barrier.delete(&child, Expect::Any)?;
                }
            }
            self.remove_one(&current)?;
        }
        Ok(())
    }

    fn remove_one(&self, hash: &str) -> Result<(), ApiError> {
        let id = token_record(hash)?;
        let Some(record) = self.barrier.get(&id)? else {
            return Ok(());
        };
        let entry: TokenEntry = serde_json::from_slice(&record.value)
            .map_err(|e| ApiError::internal(format!("token record does not parse: {e}")))?;
        let token = Token {
            hash: hash.to_string(),
            entry,
            generation: record.generation,
        };
        match self.remove_at(&token, Expect::Any) {
            Ok(()) | Err(BarrierError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a token's record with its accessor and its entry in its parent's index, if
    /// the record still matches `expect`.
    fn remove_at(&self, token: &Token, expect: Expect) -> Result<(), BarrierError> {
        let id = RecordId::new(RecordKind::Token, MountId::SYSTEM, token.hash.as_str(), 0)?;
        let accessor = RecordId::new(
            RecordKind::TokenAccessor,
            MountId::SYSTEM,
            token.entry.accessor.as_str(),
            0,
        )?;
        let child = match &token.entry.parent {
            Some(parent) => Some(RecordId::new(
                RecordKind::TokenChild,
                MountId::SYSTEM,
                format!("{parent}/{}", token.hash),
                0,
            )?),
            None => None,
        };
        let mut changes = vec![
            Change::Delete { id: &id, expect },
            Change::Delete {
                id: &accessor,
                expect: Expect::Any,
            },
        ];
        if let Some(child) = &child {
            changes.push(Change::Delete {
                id: child,
                expect: Expect::Any,
            });
        }
        self.barrier.commit(&changes).map(drop)
    }
}

/// The SHA-256 of a token, hex: the only form in which tokens are stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

/// Whether `token` has the form and checksum of a vaultd token.
pub fn well_formed(token: &str) -> bool {
    well_formed_with(token, TOKEN_PREFIX)
}

/// Whether `token` is `prefix`, then 43 random base62 characters and their checksum.
pub fn well_formed_with(token: &str, prefix: &str) -> bool {
    let Some(body) = token.strip_prefix(prefix) else {
        return false;
    };
    if body.len() != RANDOM_CHARS + CHECKSUM_CHARS
        || !body.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    let (random, checksum) = body.split_at(RANDOM_CHARS);
    checksum_of(random) == checksum
}

fn new_token() -> Result<Zeroizing<String>, ApiError> {
    new_token_with(TOKEN_PREFIX)
}

/// A fresh secret: `prefix`, 43 random base62 characters (256 bits) and a 6-character
/// checksum, so leak scanners can tell it from noise.
pub fn new_token_with(prefix: &str) -> Result<Zeroizing<String>, ApiError> {
    let random = Zeroizing::new(random_base62(RANDOM_CHARS)?);
    let mut token = Zeroizing::new(String::with_capacity(
        prefix.len() + RANDOM_CHARS + CHECKSUM_CHARS,
    ));
    token.push_str(prefix);
    token.push_str(&random);
    token.push_str(&checksum_of(&random));
    Ok(token)
}

fn checksum_of(random: &str) -> String {
    let digest = sha256(random.as_bytes());
    let mut n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) as u64;
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

/// A fresh accessor: 24 random base62 characters.
pub fn new_accessor() -> Result<String, ApiError> {
    random_base62(24)
}

/// `len` uniformly random base62 characters (rejection sampling, no modulo bias).
fn random_base62(len: usize) -> Result<String, ApiError> {
    let mut out = String::with_capacity(len);
    let mut buffer = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        fill_random(buffer.as_mut()).map_err(|e| ApiError::internal(e.to_string()))?;
        for &byte in buffer.iter() {
            // 248 = 4 × 62: bytes at or above it would favour the first characters.
            if byte < 248 && out.len() < len {
                out.push(BASE62[(byte % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

fn encode(entry: &TokenEntry) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(entry).map_err(|e| ApiError::internal(e.to_string()))
}

fn token_record(hash: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(RecordKind::Token, MountId::SYSTEM, hash, 0)?)
}

fn accessor_record(accessor: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::TokenAccessor,
        MountId::SYSTEM,
        accessor,
        0,
    )?)
}

fn child_record(parent: &str, child: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::TokenChild,
        MountId::SYSTEM,
        format!("{parent}/{child}"),
        0,
    )?)
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use crate::keyring::{KEYRING_KEY, Keyring, KeyringConfig};
    use crate::storage::{MemoryStorage, Storage};

    fn store() -> TokenStore {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let keyring = Keyring::create(
            SecretKey::generate().unwrap(),
            KeyringConfig::default(),
            Arc::clone(&storage),
            SystemTime::now(),
        )
        .unwrap();
        storage
            .put(KEYRING_KEY, &keyring.sealed_record().unwrap())
            .unwrap();
        let barrier = Arc::new(Barrier::new(storage));
        barrier.unseal(keyring);
        TokenStore::new(barrier)
    }

    #[test]
    fn tokens_have_a_prefix_and_a_checksum() {
        let token = new_token().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), 4 + 43 + 6);
        assert!(well_formed(&token));
        let mut altered = token.to_string();
        let last = altered.pop().unwrap();
        altered.push(if last == 'a' { 'b' } else { 'a' });
        assert!(!well_formed(&altered));
        assert!(!well_formed("hvs.something"));
        assert!(!well_formed(""));
    }

    #[test]
    fn create_lookup_and_revoke_a_tree() {
        let store = store();
        let now = SystemTime::now();
        let (root, root_entry) = store.create_root(now).unwrap();
        assert_eq!(root_entry.policies, ["root"]);
        assert_eq!(root_entry.expire_time, None);
        let root = store.lookup(&root, now).unwrap().unwrap();

        let (child, child_entry) = store
            .create(
                &root,
                NewToken {
                    policies: vec!["app".into()],
                    ..NewToken::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(child_entry.policies, ["app", "default"]);
        assert_eq!(child_entry.ttl, DEFAULT_TTL.as_secs());
        let child_token = store.lookup(&child, now).unwrap().unwrap();
        let (grandchild, _) = store
            .create(&child_token, NewToken::default(), now)
            .unwrap();
        assert_eq!(
            store
                .lookup(&grandchild, now)
                .unwrap()
                .unwrap()
                .entry
                .policies,
            ["app", "default"]
        );
        let by_accessor = store
            .lookup_accessor(&child_entry.accessor, now)
            .unwrap()
            .unwrap();
        assert_eq!(by_accessor.hash, hash_token(&child));

        // A child cannot widen its policies.
        let wider = NewToken {
            policies: vec!["admin".into()],
            ..NewToken::default()
        };
        assert!(store.create(&child_token, wider, now).is_err());

        store.revoke(&child_token.hash).unwrap();
        assert!(store.lookup(&child, now).unwrap().is_none());
        assert!(store.lookup(&grandchild, now).unwrap().is_none());
        assert!(
            store
                .lookup_accessor(&child_entry.accessor, now)
                .unwrap()
                .is_none()
        );
        assert!(store.lookup(&root.entry.accessor, now).unwrap().is_none());
    }

    #[test]
    fn expiry_and_renewal() {
        let store = store();
        let now = SystemTime::now();
        let (root, _) = store.create_root(now).unwrap();
        let root = store.lookup(&root, now).unwrap().unwrap();
        let request = NewToken {
            ttl: Some(Duration::from_secs(60)),
            explicit_max_ttl: Some(Duration::from_secs(100)),
            ..NewToken::default()
        };
        let (token, entry) = store.create(&root, request, now).unwrap();
        assert_eq!(entry.ttl, 60);
        let later = now + Duration::from_secs(50);
        let found = store.lookup(&token, later).unwrap().unwrap();
        assert_eq!(found.entry.remaining(later), 10);
        let renewed = store
            .renew(&found, Some(Duration::from_secs(600)), later)
            .unwrap();
        assert_eq!(renewed.ttl, 50, "renewal is capped by explicit_max_ttl");
        assert!(
            store
                .lookup(&token, now + Duration::from_secs(101))
                .unwrap()
                .is_none()
        );
        // Expired tokens are removed, not only hidden.
        assert!(store.lookup(&token, now).unwrap().is_none());
    }

    #[test]
    fn use_counts_are_spent_exactly() {
        let store = store();
        let now = SystemTime::now();
        let (root, _) = store.create_root(now).unwrap();
        let root = store.lookup(&root, now).unwrap().unwrap();
        let (token, _) = store
            .create(
                &root,
                NewToken {
                    num_uses: 3,
                    ..NewToken::default()
                },
                now,
            )
            .unwrap();
        let mut allowed = 0;
        for _ in 0..5 {
            let Some(found) = store.lookup(&token, now).unwrap() else {
                break;
            };
            if store.spend_use(&found, now).unwrap().is_some() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3);
        assert!(store.lookup(&token, now).unwrap().is_none());
    }
}
