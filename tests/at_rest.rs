//! What reaches the disk: no plaintext of a stored value, and nothing readable while sealed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use vaultd::barrier::{Barrier, BarrierError, Expect, MountId, RecordId, RecordKind};
use vaultd::crypto::Algorithm;
use vaultd::crypto::shamir::UnsealShare;
use vaultd::keyring::KeyringConfig;
use vaultd::seal::{InitOptions, Seal, SealMechanism};
use vaultd::storage::{SledStorage, Storage};

fn open_seal(dir: &Path, algorithm: Algorithm) -> Seal {
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir).unwrap());
    let config = KeyringConfig {
        algorithm,
        ..KeyringConfig::default()
    };
    Seal::new(
        Arc::new(Barrier::new(storage)),
        SealMechanism::Shamir,
        config,
    )
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_plaintext_reaches_the_disk() {
    for algorithm in [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305] {
        let dir = tempfile::tempdir().unwrap();
        let mut canaries = Vec::new();
        let unseal_key;
        {
            let seal = open_seal(dir.path(), algorithm);
            let share = seal
                .init(
                    InitOptions {
                        secret_shares: 1,
                        secret_threshold: 1,
                    },
                    SystemTime::now(),
                )
                .unwrap();
            unseal_key = share.shares[0].as_bytes().to_vec();
            seal.submit_share(
                UnsealShare::parse(&share.shares[0].to_hex()).unwrap(),
                None,
                Instant::now(),
            )
            .unwrap();
            let barrier = seal.barrier();
            let mount = MountId::generate();
            for (i, size) in [8usize, 100, 4000, 60_000].into_iter().enumerate() {
                let mut canary = format!("CANARY-{i}-sk-proj-").into_bytes();
                canary.resize(size.max(canary.len()), b'Q');
                let id = RecordId::new(RecordKind::SecretVersion, mount, format!("apps/{i}"), 1)
                    .unwrap();
                barrier.put(&id, &canary, Expect::Any).unwrap();
                // Overwrite a record too, so old versions in sled's log are covered.
                let meta = RecordId::new(RecordKind::SecretMetadata, mount, format!("apps/{i}"), 0)
                    .unwrap();
                barrier.put(&meta, &canary, Expect::Any).unwrap();
                barrier.put(&meta, b"replaced", Expect::Any).unwrap();
                canaries.push(canary);
            }
        }

        let files = files_under(dir.path());
        assert!(
            files.iter().any(|(_, data)| data.len() > 60_000),
            "the store wrote nothing"
        );
        for (name, data) in &files {
            for canary in &canaries {
                assert!(
                    !contains(data, &canary[..16]),
                    "{algorithm}: plaintext found in {name}"
                );
            }
            assert!(
                !contains(data, b"replaced"),
                "{algorithm}: plaintext found in {name}"
            );
            assert!(
                !contains(data, &unseal_key),
                "{algorithm}: the unseal key is in {name}"
            );
        }
    }
}

#[test]
fn a_sealed_vault_reads_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let id = RecordId::new(RecordKind::SecretVersion, MountId::SYSTEM, "app/key", 1).unwrap();
    {
        let seal = open_seal(dir.path(), Algorithm::Aes256Gcm);
        let init = seal
            .init(
                InitOptions {
                    secret_shares: 3,
                    secret_threshold: 2,
                },
                SystemTime::now(),
            )
            .unwrap();
        for share in &init.shares[..2] {
            seal.submit_share(
                UnsealShare::parse(&share.to_base64()).unwrap(),
                None,
                Instant::now(),
            )
            .unwrap();
        }
        seal.barrier().put(&id, b"value", Expect::Absent).unwrap();
    }

    // After a restart the vault is sealed: every record operation fails before storage.
    let seal = open_seal(dir.path(), Algorithm::Aes256Gcm);
    let status = seal.status(Instant::now()).unwrap();
    assert!(status.initialized && status.sealed);
    let barrier = seal.barrier();
    assert!(matches!(barrier.get(&id), Err(BarrierError::Sealed)));
    assert!(matches!(
        barrier.put(&id, b"x", Expect::Any),
        Err(BarrierError::Sealed)
    ));
    assert!(matches!(
        barrier.delete(&id, Expect::Any),
        Err(BarrierError::Sealed)
    ));
    assert!(matches!(
        barrier.list(RecordKind::SecretVersion, MountId::SYSTEM, "", None, 10),
        Err(BarrierError::Sealed)
    ));
}
