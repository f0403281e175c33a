use std::collections::BTreeMap;
use std::thread;

use proptest::prelude::*;

use super::*;
use crate::crypto::SecretKey;
use crate::keyring::{KEYRING_KEY, KeyringConfig};
use crate::storage::MemoryStorage;

fn unsealed() -> (Barrier, Arc<dyn Storage>) {
    unsealed_with(KeyringConfig::default())
}

fn unsealed_with(config: KeyringConfig) -> (Barrier, Arc<dyn Storage>) {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let keyring = Keyring::create(
        SecretKey::generate().unwrap(),
        config,
        Arc::clone(&storage),
        SystemTime::now(),
    )
    .unwrap();
    storage
        .put(KEYRING_KEY, &keyring.sealed_record().unwrap())
        .unwrap();
    let barrier = Barrier::new(Arc::clone(&storage));
    barrier.unseal(keyring);
    (barrier, storage)
}

fn id(kind: RecordKind, path: &str, version: u64) -> RecordId {
    RecordId::new(kind, MountId::SYSTEM, path, version).unwrap()
}

fn stored(storage: &Arc<dyn Storage>, id: &RecordId) -> Vec<u8> {
    storage.get(&id.storage_key()).unwrap().unwrap()
}

fn assert_integrity_error(barrier: &Barrier, id: &RecordId) {
    match barrier.get(id) {
        Err(BarrierError::Integrity { .. }) => {}
        Ok(Some(_)) => panic!("tampered record {id} opened"),
        Ok(None) => panic!("tampered record {id} vanished"),
        Err(other) => panic!("tampered record {id}: unexpected error {other}"),
    }
}

#[test]
fn put_get_round_trip_with_generations() {
    let (barrier, _) = unsealed();
    let secret = id(RecordKind::SecretMetadata, "app/db", 0);
    assert!(barrier.get(&secret).unwrap().is_none());
    assert_eq!(barrier.put(&secret, b"first", Expect::Absent).unwrap(), 1);
    assert_eq!(
        barrier
            .put(&secret, b"second", Expect::Generation(1))
            .unwrap(),
        2
    );
    let record = barrier.get(&secret).unwrap().unwrap();
    assert_eq!(record.generation, 2);
    assert_eq!(&record.value[..], b"second");
    assert_eq!(barrier.put(&secret, b"third", Expect::Any).unwrap(), 3);
}

#[test]
fn failed_expectations_change_nothing() {
    let (barrier, _) = unsealed();
    let a = id(RecordKind::SecretMetadata, "a", 0);
    let b = id(RecordKind::SecretVersion, "a", 1);
    barrier.put(&a, b"v1", Expect::Absent).unwrap();

    assert!(matches!(
        barrier.put(&a, b"x", Expect::Absent),
        Err(BarrierError::Conflict { .. })
    ));
    assert!(matches!(
        barrier.put(&a, b"x", Expect::Generation(7)),
        Err(BarrierError::Conflict { .. })
    ));
    // A batch whose second change fails applies neither.
    let changes = [
        Change::Put {
            id: &b,
            value: b"version one",
            expect: Expect::Absent,
        },
        Change::Put {
            id: &a,
            value: b"v2",
            expect: Expect::Generation(5),
        },
    ];
    assert!(matches!(
        barrier.commit(&changes),
        Err(BarrierError::Conflict { .. })
    ));
    assert!(barrier.get(&b).unwrap().is_none());
    assert_eq!(&barrier.get(&a).unwrap().unwrap().value[..], b"v1");

    let changes = [
        Change::Put {
            id: &b,
            value: b"version one",
            expect: Expect::Absent,
        },
        Change::Put {
            id: &a,
            value: b"v2",
            expect: Expect::Generation(1),
        },
    ];
    assert_eq!(barrier.commit(&changes).unwrap(), vec![1, 2]);
    barrier.delete(&b, Expect::Generation(1)).unwrap();
    assert!(barrier.get(&b).unwrap().is_none());
}

#[test]
fn record_size_is_capped() {
    let (barrier, storage) = unsealed();
    let big = id(RecordKind::SecretVersion, "big", 1);
    let max = vec![0x42; MAX_PLAINTEXT_LEN];
    barrier.put(&big, &max, Expect::Any).unwrap();
    assert_eq!(stored(&storage, &big).len(), MAX_VALUE_LEN);
    let too_big = id(RecordKind::SecretVersion, "too-big", 1);
    let err = barrier
        .put(&too_big, &[0; MAX_PLAINTEXT_LEN + 1], Expect::Any)
        .unwrap_err();
    assert!(matches!(err, BarrierError::TooLarge { .. }), "{err}");
    assert!(barrier.get(&too_big).unwrap().is_none());
}

#[test]
fn paths_are_checked() {
    assert!(RecordId::new(RecordKind::Policy, MountId::SYSTEM, "a\0b", 0).is_err());
    assert!(
        RecordId::new(
            RecordKind::Policy,
            MountId::SYSTEM,
            "x".repeat(MAX_PATH_LEN + 1),
            0
        )
        .is_err()
    );
    let long = RecordId::new(
        RecordKind::Policy,
        MountId::SYSTEM,
        "x".repeat(MAX_PATH_LEN),
        0,
    )
    .unwrap();
    assert_eq!(RecordId::from_storage_key(&long.storage_key()), Some(long));
}

#[test]
fn list_pages_through_paths_and_versions() {
    let (barrier, _) = unsealed();
    let mount = MountId::generate();
    for (path, version) in [("app/a", 1), ("app/a", 2), ("app/b", 1), ("other", 1)] {
        let id = RecordId::new(RecordKind::SecretVersion, mount, path, version).unwrap();
        barrier.put(&id, b"v", Expect::Any).unwrap();
    }
    // Same path in another mount and another kind stays out of the listing.
    barrier
        .put(
            &id(RecordKind::SecretVersion, "app/z", 1),
            b"v",
            Expect::Any,
        )
        .unwrap();
    let meta = RecordId::new(RecordKind::SecretMetadata, mount, "app/y", 0).unwrap();
    barrier.put(&meta, b"m", Expect::Any).unwrap();

    let first = barrier
        .list(RecordKind::SecretVersion, mount, "app/", None, 2)
        .unwrap();
    let rest = barrier
        .list(RecordKind::SecretVersion, mount, "app/", first.last(), 10)
        .unwrap();
    let all: Vec<(String, u64)> = first
        .iter()
        .chain(&rest)
        .map(|i| (i.path.clone(), i.version))
        .collect();
    assert_eq!(
        all,
        [
            ("app/a".into(), 1),
            ("app/a".into(), 2),
            ("app/b".into(), 1)
        ]
    );
}

#[test]
fn sealed_means_sealed() {
    let (barrier, storage) = unsealed();
    let secret = id(RecordKind::SecretVersion, "app/key", 1);
    barrier.put(&secret, b"value", Expect::Any).unwrap();
    let before = storage.scan(b"", None, usize::MAX).unwrap();

    barrier.seal();
    assert!(barrier.is_sealed());
    assert!(matches!(barrier.get(&secret), Err(BarrierError::Sealed)));
    assert!(matches!(
        barrier.put(&secret, b"new", Expect::Any),
        Err(BarrierError::Sealed)
    ));
    assert!(matches!(
        barrier.delete(&secret, Expect::Any),
        Err(BarrierError::Sealed)
    ));
    assert!(matches!(
        barrier.list(RecordKind::SecretVersion, MountId::SYSTEM, "", None, 10),
        Err(BarrierError::Sealed)
    ));
    assert!(matches!(
        barrier.rotate(SystemTime::now()),
        Err(BarrierError::Sealed)
    ));
    assert!(matches!(barrier.rewrap(), Err(BarrierError::Sealed)));
    assert!(matches!(barrier.keyring(), Err(BarrierError::Sealed)));
    assert_eq!(storage.scan(b"", None, usize::MAX).unwrap(), before);
}

/// Every single-bit flip of a stored record is an integrity error, with no plaintext.
#[test]
fn every_bit_flip_is_detected() {
    for algorithm in [
        crate::crypto::Algorithm::Aes256Gcm,
        crate::crypto::Algorithm::ChaCha20Poly1305,
    ] {
        let (barrier, storage) = unsealed_with(KeyringConfig {
            algorithm,
            ..KeyringConfig::default()
        });
        let secret = id(RecordKind::SecretVersion, "k", 1);
        barrier
            .put(&secret, b"sixteen byte val", Expect::Any)
            .unwrap();
        let original = stored(&storage, &secret);
        for bit in 0..original.len() * 8 {
            let mut flipped = original.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            storage.put(&secret.storage_key(), &flipped).unwrap();
            assert_integrity_error(&barrier, &secret);
        }
        storage.put(&secret.storage_key(), &original).unwrap();
        assert_eq!(
            &barrier.get(&secret).unwrap().unwrap().value[..],
            b"sixteen byte val"
        );
    }
}

#[test]
fn every_truncation_is_detected() {
    let (barrier, storage) = unsealed();
    let secret = id(RecordKind::SecretVersion, "k", 1);
    barrier
        .put(&secret, b"sixteen byte val", Expect::Any)
        .unwrap();
    let original = stored(&storage, &secret);
    for len in 0..original.len() {
        storage
            .put(&secret.storage_key(), &original[..len])
            .unwrap();
        assert_integrity_error(&barrier, &secret);
    }
    let mut extended = original.clone();
    extended.push(0);
    storage.put(&secret.storage_key(), &extended).unwrap();
    assert_integrity_error(&barrier, &secret);
}

/// A record copied to another path, version, kind, mount or generation does not open there.
#[test]
fn relocated_records_are_detected() {
    let (barrier, storage) = unsealed();
    let mount = MountId::generate();
    let source = RecordId::new(RecordKind::SecretVersion, mount, "app/key", 2).unwrap();
    barrier.put(&source, b"value", Expect::Any).unwrap();
    let bytes = stored(&storage, &source);
    let targets = [
        RecordId {
            path: "app/other".into(),
            ..source.clone()
        },
        RecordId {
            version: 3,
            ..source.clone()
        },
        RecordId {
            kind: RecordKind::SecretMetadata,
            ..source.clone()
        },
        RecordId {
            kind: RecordKind::Policy,
            ..source.clone()
        },
        RecordId {
            mount: MountId::generate(),
            ..source.clone()
        },
        RecordId {
            mount: MountId::SYSTEM,
            ..source.clone()
        },
    ];
    for target in &targets {
        storage.put(&target.storage_key(), &bytes).unwrap();
        assert_integrity_error(&barrier, target);
    }

    // An older generation of a record put back in place is accepted only as that generation:
    // the generation is authenticated, so it cannot be relabelled as the current one.
    let meta = RecordId::new(RecordKind::SecretMetadata, mount, "app/key", 0).unwrap();
    barrier.put(&meta, b"gen1", Expect::Any).unwrap();
    let gen1 = stored(&storage, &meta);
    barrier.put(&meta, b"gen2", Expect::Any).unwrap();
    let mut relabelled = gen1.clone();
    relabelled[record::HEADER_LEN - 1] = 2;
    storage.put(&meta.storage_key(), &relabelled).unwrap();
    assert_integrity_error(&barrier, &meta);
}

#[test]
fn data_keys_are_unique_per_record() {
    let (barrier, storage) = unsealed();
    let a = id(RecordKind::SecretVersion, "a", 1);
    let b = id(RecordKind::SecretVersion, "b", 1);
    barrier.put(&a, b"same", Expect::Any).unwrap();
    barrier.put(&b, b"same", Expect::Any).unwrap();
    let (ra, rb) = (stored(&storage, &a), stored(&storage, &b));
    assert_ne!(ra[7..67], rb[7..67]);
    assert_ne!(ra[record::HEADER_LEN..], rb[record::HEADER_LEN..]);
}

#[test]
fn rewrap_moves_only_wrapped_keys_and_destroys_old_terms() {
    let (barrier, storage) = unsealed();
    let mut ids = Vec::new();
    for i in 0..600u64 {
        let id = id(RecordKind::SecretVersion, &format!("s/{i}"), i);
        barrier
            .put(&id, format!("value {i}").as_bytes(), Expect::Any)
            .unwrap();
        ids.push(id);
    }
    let before: Vec<Vec<u8>> = ids.iter().map(|id| stored(&storage, id)).collect();
    assert_eq!(barrier.rotate(SystemTime::now()).unwrap(), KeyTerm(2));

    let report = barrier.rewrap().unwrap();
    assert_eq!(report.rewrapped, 600);
    assert_eq!(report.destroyed, vec![KeyTerm(1)]);
    assert!(!barrier.rewrap_status().running);
    let keyring = barrier.keyring().unwrap();
    assert!(keyring.term(KeyTerm(1)).is_none());

    for (i, (id, old)) in ids.iter().zip(&before).enumerate() {
        let new = stored(&storage, id);
        assert_eq!(new[..3], old[..3]);
        assert_eq!(new[3..7], 2u32.to_be_bytes());
        assert_eq!(new[67..], old[67..], "value bytes of {id} changed");
        assert_eq!(
            &barrier.get(id).unwrap().unwrap().value[..],
            format!("value {i}").as_bytes()
        );
    }
    // A second rewrap has nothing to do.
    assert_eq!(barrier.rewrap().unwrap().rewrapped, 0);
}

#[test]
fn rewrap_with_concurrent_writers_loses_nothing() {
    let (barrier, _) = unsealed();
    for i in 0..300u64 {
        barrier
            .put(
                &id(RecordKind::SecretMetadata, &format!("m/{i}"), 0),
                b"0",
                Expect::Any,
            )
            .unwrap();
    }
    barrier.rotate(SystemTime::now()).unwrap();
    thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for round in 1..=5u8 {
                for i in 0..300u64 {
                    let id = id(RecordKind::SecretMetadata, &format!("m/{i}"), 0);
                    barrier.put(&id, &[b'0' + round], Expect::Any).unwrap();
                }
            }
        });
        barrier.rewrap().unwrap();
        writer.join().unwrap();
    });
    barrier.rewrap().unwrap();
    let keyring = barrier.keyring().unwrap();
    assert_eq!(keyring.terms().len(), 1);
    for i in 0..300u64 {
        let record = barrier
            .get(&id(RecordKind::SecretMetadata, &format!("m/{i}"), 0))
            .unwrap()
            .unwrap();
        assert_eq!(&record.value[..], b"5", "write to m/{i} lost");
        assert_eq!(record.generation, 6);
    }
}

#[test]
fn records_survive_reseal_with_the_stored_keyring() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let root = SecretKey::generate().unwrap();
    let root_bytes = *root.expose();
    let keyring = Keyring::create(
        root,
        KeyringConfig::default(),
        Arc::clone(&storage),
        SystemTime::now(),
    )
    .unwrap();
    storage
        .put(KEYRING_KEY, &keyring.sealed_record().unwrap())
        .unwrap();
    let barrier = Barrier::new(Arc::clone(&storage));
    barrier.unseal(keyring);
    let secret = id(RecordKind::SecretVersion, "k", 1);
    barrier.put(&secret, b"kept", Expect::Any).unwrap();
    barrier.rotate(SystemTime::now()).unwrap();
    barrier
        .put(
            &id(RecordKind::SecretVersion, "k", 2),
            b"kept too",
            Expect::Any,
        )
        .unwrap();
    barrier.seal();

    let keyring = Keyring::load(
        SecretKey::from_bytes(root_bytes),
        KeyringConfig::default(),
        Arc::clone(&storage),
    )
    .unwrap();
    barrier.unseal(keyring);
    assert_eq!(&barrier.get(&secret).unwrap().unwrap().value[..], b"kept");
    assert_eq!(
        &barrier
            .get(&id(RecordKind::SecretVersion, "k", 2))
            .unwrap()
            .unwrap()
            .value[..],
        b"kept too"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any interleaving of writes, rotations and rewraps keeps every record readable with its
    /// last value, and a final rewrap leaves only the active term.
    #[test]
    fn rotate_and_rewrap_keep_every_record_readable(
        steps in proptest::collection::vec((0u8..10, 0u16..40, any::<u32>()), 1..120),
    ) {
        let (barrier, _) = unsealed();
        let mut expected: BTreeMap<u16, u32> = BTreeMap::new();
        for (action, key, value) in steps {
            match action {
                0 => { barrier.rotate(SystemTime::now()).unwrap(); }
                1 => { barrier.rewrap().unwrap(); }
                2 => {
                    barrier.delete(&id(RecordKind::Token, &key.to_string(), 0), Expect::Any).unwrap();
                    expected.remove(&key);
                }
                _ => {
                    let id = id(RecordKind::Token, &key.to_string(), 0);
                    barrier.put(&id, &value.to_be_bytes(), Expect::Any).unwrap();
                    expected.insert(key, value);
                }
            }
        }
        barrier.rotate(SystemTime::now()).unwrap();
        barrier.rewrap().unwrap();
        prop_assert_eq!(barrier.keyring().unwrap().terms().len(), 1);
        for key in 0u16..40 {
            let got = barrier.get(&id(RecordKind::Token, &key.to_string(), 0)).unwrap();
            let got = got.map(|r| u32::from_be_bytes(r.value[..].try_into().unwrap()));
            prop_assert_eq!(got, expected.get(&key).copied());
        }
    }
}
