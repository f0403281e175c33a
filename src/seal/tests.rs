use super::*;
use crate::barrier::{Expect, MountId, RecordId, RecordKind};
use crate::storage::{MemoryStorage, Storage};

fn shamir_seal() -> Seal {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    Seal::new(
        Arc::new(Barrier::new(storage)),
        SealMechanism::Shamir,
        KeyringConfig::default(),
    )
}

fn options(shares: u8, threshold: u8) -> InitOptions {
    InitOptions {
        secret_shares: shares,
        secret_threshold: threshold,
    }
}

fn copy(share: &UnsealShare) -> UnsealShare {
    UnsealShare::parse(&share.to_hex()).unwrap()
}

fn secret() -> RecordId {
    RecordId::new(RecordKind::SecretVersion, MountId::SYSTEM, "app/key", 1).unwrap()
}

#[test]
fn init_unseal_seal_lifecycle() {
    let seal = shamir_seal();
    let now = Instant::now();
    let status = seal.status(now).unwrap();
    assert!(!status.initialized && status.sealed);

    let shares = seal.init(options(5, 3), SystemTime::now()).unwrap().shares;
    assert_eq!(shares.len(), 5);
    let status = seal.status(now).unwrap();
    assert!(status.initialized && status.sealed);
    assert_eq!(
        (status.shares, status.threshold, status.progress),
        (5, 3, 0)
    );

    let status = seal.submit_share(copy(&shares[4]), None, now).unwrap();
    assert_eq!(status.progress, 1);
    assert!(!status.nonce.is_empty());
    let nonce = status.nonce.clone();
    seal.submit_share(copy(&shares[0]), Some(&nonce), now)
        .unwrap();
    let status = seal
        .submit_share(copy(&shares[2]), Some(&nonce), now)
        .unwrap();
    assert!(!status.sealed);
    assert_eq!(status.progress, 0);

    seal.barrier()
        .put(&secret(), b"value", Expect::Any)
        .unwrap();
    seal.seal();
    assert!(seal.status(now).unwrap().sealed);
    assert!(seal.barrier().get(&secret()).is_err());

    for share in &shares[1..3] {
        seal.submit_share(copy(share), None, now).unwrap();
    }
    let status = seal.submit_share(copy(&shares[3]), None, now).unwrap();
    assert!(!status.sealed);
    assert_eq!(
        &seal.barrier().get(&secret()).unwrap().unwrap().value[..],
        b"value"
    );
}

#[test]
fn a_second_init_is_refused() {
    let seal = shamir_seal();
    seal.init(options(1, 1), SystemTime::now()).unwrap();
    assert!(matches!(
        seal.init(options(1, 1), SystemTime::now()),
        Err(SealError::AlreadyInitialized)
    ));
}

#[test]
fn unseal_before_init_is_refused() {
    let seal = shamir_seal();
    let share = UnsealShare::parse(&"ab".repeat(33)).unwrap();
    assert!(matches!(
        seal.submit_share(share, None, Instant::now()),
        Err(SealError::NotInitialized)
    ));
}

#[test]
fn invalid_parameters_are_refused() {
    let seal = shamir_seal();
    for (n, t) in [(0, 0), (3, 1), (2, 3)] {
        let err = seal.init(options(n, t), SystemTime::now()).err().unwrap();
        assert!(
            matches!(err, SealError::InvalidParameters(_)),
            "{n}/{t}: {err}"
        );
    }
    assert!(!seal.status(Instant::now()).unwrap().initialized);
}

#[test]
fn wrong_shares_never_unseal_and_reset_progress() {
    let seal = shamir_seal();
    let shares = seal.init(options(3, 2), SystemTime::now()).unwrap().shares;
    let other = shamir_seal();
    let foreign = other.init(options(3, 2), SystemTime::now()).unwrap().shares;
    let now = Instant::now();

    seal.submit_share(copy(&shares[0]), None, now).unwrap();
    let err = seal
        .submit_share(copy(&foreign[1]), None, now)
        .err()
        .unwrap();
    assert!(matches!(err, SealError::WrongShares), "{err}");
    let status = seal.status(now).unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0);

    // A corrupted share of the right vault fails the same way.
    let mut bytes = shares[1].as_bytes().to_vec();
    bytes[0] ^= 1;
    seal.submit_share(copy(&shares[0]), None, now).unwrap();
    let corrupted = UnsealShare::parse(&hex::encode(bytes)).unwrap();
    assert!(matches!(
        seal.submit_share(corrupted, None, now),
        Err(SealError::WrongShares)
    ));
    assert!(seal.status(now).unwrap().sealed);
}

#[test]
fn duplicate_shares_and_foreign_nonces_are_refused() {
    let seal = shamir_seal();
    let shares = seal.init(options(3, 3), SystemTime::now()).unwrap().shares;
    let now = Instant::now();
    seal.submit_share(copy(&shares[0]), None, now).unwrap();
    assert!(matches!(
        seal.submit_share(copy(&shares[0]), None, now),
        Err(SealError::DuplicateShare)
    ));
    assert!(matches!(
        seal.submit_share(copy(&shares[1]), Some("another-attempt"), now),
        Err(SealError::NonceMismatch)
    ));
    assert_eq!(seal.status(now).unwrap().progress, 1);
    seal.reset();
    assert_eq!(seal.status(now).unwrap().progress, 0);
}

#[test]
fn unseal_progress_expires() {
    let seal = shamir_seal();
    let shares = seal.init(options(3, 2), SystemTime::now()).unwrap().shares;
    let start = Instant::now();
    let first = seal.submit_share(copy(&shares[0]), None, start).unwrap();
    let later = start + UNSEAL_TIMEOUT + Duration::from_secs(1);
    let status = seal.status(later).unwrap();
    assert_eq!(status.progress, 0);
    assert!(status.nonce.is_empty());

    // The next share starts a new attempt with a new nonce instead of completing the old one.
    let status = seal.submit_share(copy(&shares[1]), None, later).unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 1);
    assert_ne!(status.nonce, first.nonce);
}

#[test]
fn key_file_seal_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("insecure-unseal.key");
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let barrier = Arc::new(Barrier::new(storage));
    let seal = Seal::new(
        Arc::clone(&barrier),
        SealMechanism::KeyFile(path.clone()),
        KeyringConfig::default(),
    );
    assert!(matches!(
        seal.unseal_with_key_file(),
        Err(SealError::NotInitialized)
    ));

    assert!(
        seal.init(options(1, 1), SystemTime::now())
            .unwrap()
            .shares
            .is_empty()
    );
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    seal.unseal_with_key_file().unwrap();
    assert!(!barrier.is_sealed());
    let share = UnsealShare::parse(&"00".repeat(32)).unwrap();
    assert!(matches!(
        seal.submit_share(share, None, Instant::now()),
        Err(SealError::NotShamir)
    ));

    seal.seal();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = seal.unseal_with_key_file().err().unwrap();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(barrier.is_sealed());

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, "00".repeat(32)).unwrap();
    assert!(matches!(
        seal.unseal_with_key_file(),
        Err(SealError::WrongShares)
    ));
    assert!(barrier.is_sealed());
}

#[test]
fn key_file_init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("insecure-unseal.key");
    fs::write(&path, "existing").unwrap();
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let seal = Seal::new(
        Arc::new(Barrier::new(storage)),
        SealMechanism::KeyFile(path.clone()),
        KeyringConfig::default(),
    );
    assert!(matches!(
        seal.init(options(1, 1), SystemTime::now()),
        Err(SealError::KeyFile { .. })
    ));
    assert_eq!(fs::read_to_string(&path).unwrap(), "existing");
    assert!(!seal.status(Instant::now()).unwrap().initialized);
}

#[test]
fn sealing_keeps_the_configuration_readable() {
    let seal = shamir_seal();
    seal.init(options(5, 3), SystemTime::now()).unwrap();
    let config = seal.config().unwrap().unwrap();
    assert_eq!(
        config,
        SealConfig {
            seal_type: SealType::Shamir,
            secret_shares: 5,
            secret_threshold: 3
        }
    );
}
