//! Initialising, unsealing and sealing the vault.
//!
//! ```text
//!   unseal key ──seals──▶ root key ──seals──▶ keyring (key terms) ──wrap──▶ data keys ──▶ records
//! ```
//!
//! At [`Seal::init`] a random root key and a random unseal key are made. The unseal key seals
//! the root key and is then either split into Shamir shares for operators (the `shamir` seal)
//! or written to a key file (the `keyfile` seal, for development and containers); it is never
//! stored. Unsealing recovers the unseal key, opens the root key, loads the keyring and hands
//! it to the [`Barrier`]; sealing takes it away again, and its keys are zeroized.
//!
//! Unseal progress is bound to a nonce that [`Seal::status`] shows, and forgotten after
//! [`UNSEAL_TIMEOUT`], so stray shares cannot hold the vault half-unsealed.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::barrier::Barrier;
use crate::crypto::shamir::{self, UnsealShare};
use crate::crypto::{self, Algorithm, CryptoError, SecretKey};
use crate::keyring::{KEYRING_KEY, Keyring, KeyringConfig, KeyringError};
use crate::storage::{Batch, StorageError};

/// Where the seal configuration is stored, in the clear: it holds no secret, and status must
/// be readable while sealed.
pub const SEAL_CONFIG_KEY: &[u8] = b"core/seal-config";

/// Where the root key is stored, sealed by the unseal key.
pub const ROOT_KEY_KEY: &[u8] = b"core/root-key";

/// How long unseal progress is kept without completing.
pub const UNSEAL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

const ROOT_KEY_FORMAT: u8 = 1;
const ROOT_KEY_AAD: &[u8] = b"vaultd/root-key/v1";

/// How the unseal key is kept, as stored in the seal configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealType {
    /// Split into Shamir shares held by operators.
    Shamir,
    /// Kept in a key file on the daemon's machine.
    Keyfile,
}

impl SealType {
    /// The name used in configuration and status output.
    pub fn name(self) -> &'static str {
        match self {
            SealType::Shamir => "shamir",
            SealType::Keyfile => "keyfile",
        }
    }
}

/// The stored seal configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealConfig {
    /// How the unseal key is kept.
    #[serde(rename = "type")]
    pub seal_type: SealType,
    /// How many shares the unseal key was split into.
    pub secret_shares: u8,
    /// How many shares unseal the vault.
    pub secret_threshold: u8,
}

/// The seal chosen by the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealMechanism {
    /// Operators submit Shamir shares.
    Shamir,
    /// The unseal key is read from this file, which must be readable by its owner only.
    KeyFile(PathBuf),
}

impl SealMechanism {
    fn seal_type(&self) -> SealType {
        match self {
            SealMechanism::Shamir => SealType::Shamir,
            SealMechanism::KeyFile(_) => SealType::Keyfile,
        }
    }
}

/// What `init` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitOptions {
    /// The number of shares to make (1 to 255).
    pub secret_shares: u8,
    /// The number of shares that unseal (1 to `secret_shares`, and at least 2 when
    /// `secret_shares` is more than 1).
    pub secret_threshold: u8,
}

/// What `init` returns: the unseal shares, shown once and never stored (empty for a key file
/// seal, whose key is in the file), and the unseal key itself, so the caller can unseal once
/// to finish setting up and then drop it.
pub struct InitOutput {
    /// The unseal shares.
    pub shares: Vec<UnsealShare>,
    /// The unseal key. Zeroized on drop; never return it to a client.
    pub unseal_key: SecretKey,
}

/// The seal state as `sys/seal-status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    /// The configured seal type.
    pub seal_type: SealType,
    /// Whether `init` has run.
    pub initialized: bool,
    /// Whether the vault is sealed.
    pub sealed: bool,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// Shares made at init.
    pub shares: u8,
    /// Shares submitted so far towards the current unseal.
    pub progress: u8,
    /// The nonce of the current unseal attempt; empty when none is under way.
    pub nonce: String,
}

/// A failure to initialise, unseal or seal.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// `init` has not run.
    #[error("Vault is not initialized")]
    NotInitialized,
    /// `init` already ran.
    #[error("Vault is already initialized")]
    AlreadyInitialized,
    /// Share or threshold counts are invalid.
    #[error("invalid seal parameters: {0}")]
    InvalidParameters(&'static str),
    /// The submitted shares combine to a key that does not open the root key.
    #[error("the unseal shares are not valid for this vault; unseal progress was reset")]
    WrongShares,
    /// This share was already submitted in the current unseal attempt.
    #[error("this unseal share was already provided for the current attempt")]
    DuplicateShare,
    /// The request named another unseal attempt than the current one.
    #[error("unseal nonce does not match the current unseal attempt")]
    NonceMismatch,
    /// Shares were submitted to a vault that unseals otherwise.
    #[error("this vault unseals with its key file, not with shares")]
    NotShamir,
    /// The key file is missing, unsafe or malformed.
    #[error("key file {}: {problem}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The stored seal configuration does not match the configured seal.
    #[error("the vault was initialised with the {stored} seal but is configured for {configured}")]
    MechanismMismatch {
        /// The seal recorded at init.
        stored: &'static str,
        /// The seal in the configuration.
        configured: &'static str,
    },
    /// A core record is corrupt.
    #[error("core record {0} is corrupt")]
    Corrupt(&'static str),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The keyring failed to load.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A cryptographic primitive failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

struct Progress {
    nonce: String,
    shares: Vec<UnsealShare>,
    started: Instant,
}

/// The seal state machine: uninitialised → sealed ⇄ unsealed.
pub struct Seal {
    barrier: Arc<Barrier>,
    mechanism: SealMechanism,
    keyring_config: KeyringConfig,
    progress: Mutex<Option<Progress>>,
}

impl Seal {
    /// A seal over `barrier` using `mechanism`; the barrier starts sealed.
    pub fn new(
        barrier: Arc<Barrier>,
        mechanism: SealMechanism,
        keyring_config: KeyringConfig,
    ) -> Self {
        Seal {
            barrier,
            mechanism,
            keyring_config,
            progress: Mutex::new(None),
        }
    }

    /// The barrier this seal opens.
    pub fn barrier(&self) -> &Arc<Barrier> {
        &self.barrier
    }

    /// The stored seal configuration, if the vault is initialised.
    pub fn config(&self) -> Result<Option<SealConfig>, SealError> {
        let Some(raw) = self.barrier.storage().get(SEAL_CONFIG_KEY)? else {
            return Ok(None);
        };
        let config =
            serde_json::from_slice(&raw).map_err(|_| SealError::Corrupt("seal configuration"))?;
        Ok(Some(config))
    }

    /// The current state, forgetting unseal progress older than [`UNSEAL_TIMEOUT`].
    pub fn status(&self, now: Instant) -> Result<SealStatus, SealError> {
        let config = self.config()?;
        let mut progress = self.lock_progress();
        expire(&mut progress, now);
        let (count, nonce) = match progress.as_ref() {
            Some(p) => (p.shares.len() as u8, p.nonce.clone()),
            None => (0, String::new()),
        };
        Ok(SealStatus {
            seal_type: config
                .as_ref()
                .map_or(self.mechanism.seal_type(), |c| c.seal_type),
            initialized: config.is_some(),
            sealed: self.barrier.is_sealed(),
            threshold: config.as_ref().map_or(0, |c| c.secret_threshold),
            shares: config.as_ref().map_or(0, |c| c.secret_shares),
            progress: count,
            nonce,
        })
    }

    /// Initialises the vault: makes the root key, the unseal key and the first key term, and
    /// stores them (the root key sealed, the unseal key not at all). The vault stays sealed.
    ///
    /// With a key file seal the key file is created (it must not exist) and no shares are
    /// returned; `options` must then ask for one share.
    pub fn init(&self, options: InitOptions, now: SystemTime) -> Result<InitOutput, SealError> {
        shamir::check_parameters(options.secret_shares, options.secret_threshold).map_err(|e| {
            match e {
                CryptoError::Shares(message) => SealError::InvalidParameters(message),
                other => SealError::Crypto(other),
            }
        })?;
        if matches!(self.mechanism, SealMechanism::KeyFile(_)) && options.secret_shares != 1 {
            return Err(SealError::InvalidParameters(
                "a key file seal takes exactly one share",
            ));
        }
        let storage = Arc::clone(self.barrier.storage());
        if storage.get(SEAL_CONFIG_KEY)?.is_some() {
            return Err(SealError::AlreadyInitialized);
        }

        let unseal_key = SecretKey::generate()?;
        let root_key = SecretKey::generate()?;
        let algorithm = self.keyring_config.algorithm;
        let mut root_record = vec![ROOT_KEY_FORMAT, algorithm.id()];
        crypto::seal_into(
            algorithm,
            &unseal_key,
            ROOT_KEY_AAD,
            root_key.expose(),
            &mut root_record,
        )?;
        let keyring = Keyring::create(root_key, self.keyring_config, Arc::clone(&storage), now)?;
        let config = SealConfig {
            seal_type: self.mechanism.seal_type(),
            secret_shares: options.secret_shares,
            secret_threshold: options.secret_threshold,
        };
        let config_json =
            serde_json::to_vec(&config).map_err(|_| SealError::Corrupt("seal configuration"))?;

        let shares = match &self.mechanism {
            SealMechanism::Shamir => {
                shamir::split(&unseal_key, options.secret_shares, options.secret_threshold)?
            }
            SealMechanism::KeyFile(path) => {
                write_key_file(path, &unseal_key)?;
                Vec::new()
            }
        };
        let batch = Batch::new()
            .expect(SEAL_CONFIG_KEY, None)
            .put(ROOT_KEY_KEY, &root_record)
            .put(KEYRING_KEY, &keyring.sealed_record()?)
            .put(SEAL_CONFIG_KEY, &config_json);
        if let Err(e) = storage.apply(batch) {
            if let SealMechanism::KeyFile(path) = &self.mechanism {
                // The key file belongs to an init that did not happen.
                let _ = fs::remove_file(path);
            }
            return Err(match e {
                StorageError::Conflict { .. } => SealError::AlreadyInitialized,
                other => other.into(),
            });
        }
        tracing::info!(
            seal = config.seal_type.name(),
            shares = config.secret_shares,
            threshold = config.secret_threshold,
            "vault initialised"
        );
        Ok(InitOutput { shares, unseal_key })
    }

    /// Adds one unseal share. When the threshold is reached the shares are combined and, if
    /// they open the root key, the vault is unsealed; if not, progress is reset.
    ///
    /// `nonce`, when given, must match the current attempt's nonce from [`Seal::status`].
    /// Submitting a share to an unsealed vault changes nothing.
    pub fn submit_share(
        &self,
        share: UnsealShare,
        nonce: Option<&str>,
        now: Instant,
    ) -> Result<SealStatus, SealError> {
        let config = self.initialized_config()?;
        if config.seal_type != SealType::Shamir {
            return Err(SealError::NotShamir);
        }
        if !self.barrier.is_sealed() {
            return self.status(now);
        }
        {
            let mut progress = self.lock_progress();
            expire(&mut progress, now);
            let attempt = match progress.as_mut() {
                Some(attempt) => attempt,
                None => progress.insert(Progress {
                    nonce: uuid::Uuid::new_v4().to_string(),
                    shares: Vec::new(),
                    started: now,
                }),
            };
            if nonce.is_some_and(|n| n != attempt.nonce) {
                return Err(SealError::NonceMismatch);
            }
            if attempt
                .shares
                .iter()
                .any(|s| s.as_bytes() == share.as_bytes())
            {
                return Err(SealError::DuplicateShare);
            }
            attempt.shares.push(share);
            if attempt.shares.len() >= usize::from(config.secret_threshold) {
                let shares = std::mem::take(&mut attempt.shares);
                *progress = None;
                let unseal_key = match shamir::combine(&shares, config.secret_threshold) {
                    Ok(key) => key,
                    Err(_) => return Err(SealError::WrongShares),
                };
                self.unseal_with(&unseal_key)?;
            }
        }
        self.status(now)
    }

    /// Forgets the shares submitted so far.
    pub fn reset(&self) {
        *self.lock_progress() = None;
    }

    /// Unseals from the configured key file.
    pub fn unseal_with_key_file(&self) -> Result<(), SealError> {
        let config = self.initialized_config()?;
        let SealMechanism::KeyFile(path) = &self.mechanism else {
            return Err(SealError::MechanismMismatch {
                stored: config.seal_type.name(),
                configured: "shamir",
            });
        };
        if config.seal_type != SealType::Keyfile {
            return Err(SealError::MechanismMismatch {
                stored: config.seal_type.name(),
                configured: "keyfile",
            });
        }
        if !self.barrier.is_sealed() {
            return Ok(());
        }
        let unseal_key = read_key_file(path)?;
        self.unseal_with(&unseal_key)
    }

    /// Seals the vault: the keyring is dropped and zeroized, and unseal progress is forgotten.
    pub fn seal(&self) {
        self.barrier.seal();
        self.reset();
        tracing::info!("vault sealed");
    }

    /// Unseals with the unseal key itself (right after init, to finish setting up).
    pub fn unseal_with(&self, unseal_key: &SecretKey) -> Result<(), SealError> {
        let storage = Arc::clone(self.barrier.storage());
        let record = storage
            .get(ROOT_KEY_KEY)?
            .ok_or(SealError::Corrupt("root key"))?;
        let [ROOT_KEY_FORMAT, algorithm, sealed @ ..] = record.as_slice() else {
            return Err(SealError::Corrupt("root key"));
        };
        let algorithm = Algorithm::from_id(*algorithm).ok_or(SealError::Corrupt("root key"))?;
        let root = crypto::open(algorithm, unseal_key, ROOT_KEY_AAD, sealed)
            .map_err(|_| SealError::WrongShares)?;
        let root = SecretKey::from_slice(&root).ok_or(SealError::Corrupt("root key"))?;
        let keyring = Keyring::load(root, self.keyring_config, storage)?;
        self.barrier.unseal(keyring);
        tracing::info!("vault unsealed");
        Ok(())
    }

    fn initialized_config(&self) -> Result<SealConfig, SealError> {
        self.config()?.ok_or(SealError::NotInitialized)
    }

    fn lock_progress(&self) -> MutexGuard<'_, Option<Progress>> {
        // Progress is replaced whole, so a poisoned lock still holds a consistent value.
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn expire(progress: &mut Option<Progress>, now: Instant) {
    if progress
        .as_ref()
        .is_some_and(|p| now.saturating_duration_since(p.started) > UNSEAL_TIMEOUT)
    {
        tracing::info!("unseal progress expired and was reset");
        *progress = None;
    }
}

/// Creates the key file (mode 0600, refusing to overwrite) holding the unseal key in hex.
fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), SealError> {
    let problem = |problem: String| SealError::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| problem(format!("cannot create: {e}")))?;
    let mut text = Zeroizing::new(hex::encode(key.expose()));
    text.push('\n');
    file.write_all(text.as_bytes())
        .map_err(|e| problem(format!("cannot write: {e}")))?;
    file.sync_all()
        .map_err(|e| problem(format!("cannot sync: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| problem(format!("cannot sync its directory: {e}")))?;
    }
    Ok(())
}

/// Reads the unseal key from a key file, refusing one that group or others can read.
fn read_key_file(path: &Path) -> Result<SecretKey, SealError> {
    let problem = |problem: String| SealError::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    let metadata = fs::metadata(path).map_err(|e| problem(format!("cannot read: {e}")))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(problem(format!(
            "is accessible to group or others (mode {mode:03o}); restrict it with chmod 600"
        )));
    }
    let text =
        Zeroizing::new(fs::read_to_string(path).map_err(|e| problem(format!("cannot read: {e}")))?);
    let bytes = Zeroizing::new(
        hex::decode(text.trim()).map_err(|_| problem("does not hold a hex-encoded key".into()))?,
    );
    SecretKey::from_slice(&bytes).ok_or_else(|| problem("does not hold a 32-byte key".into()))
}

#[cfg(test)]
mod tests;
