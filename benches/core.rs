//! Benchmarks of the sealed core; they print numbers and assert nothing.
//!
//! Run with `cargo bench --bench core`. Measures envelope seal/open per record size and
//! algorithm, durable writes per second at 1, 16 and 64 concurrent writers on sled with group
//! commit, and the time to open a store of 100,000 records and read from it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use vaultd::barrier::{Barrier, Expect, MountId, RecordId, RecordKind};
use vaultd::crypto::{Algorithm, SecretKey};
use vaultd::keyring::{KEYRING_KEY, Keyring, KeyringConfig};
use vaultd::storage::{Batch, MemoryStorage, SledStorage, Storage};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    envelope(quick);
    durable_writes(quick, Layer::Storage);
    durable_writes(quick, Layer::Barrier);
    cold_open(if quick { 10_000 } else { 100_000 });
}

fn unsealed_barrier(storage: Arc<dyn Storage>, algorithm: Algorithm) -> (Barrier, [u8; 32]) {
    let root = SecretKey::generate().unwrap();
    let root_bytes = *root.expose();
    let config = KeyringConfig {
        algorithm,
        ..KeyringConfig::default()
    };
    let keyring = Keyring::create(root, config, Arc::clone(&storage), SystemTime::now()).unwrap();
    storage
        .put(KEYRING_KEY, &keyring.sealed_record().unwrap())
        .unwrap();
    let barrier = Barrier::new(storage);
    barrier.unseal(keyring);
    (barrier, root_bytes)
}

fn record(path: &str, version: u64) -> RecordId {
    RecordId::new(RecordKind::SecretVersion, MountId::SYSTEM, path, version).unwrap()
}

/// Envelope seal (barrier put) and open (barrier get) over the in-memory store.
fn envelope(quick: bool) {
    println!("## envelope seal/open (in-memory store, one thread)");
    println!(
        "{:<20} {:>8} {:>14} {:>14}",
        "algorithm", "size", "seal µs/op", "open µs/op"
    );
    let rounds = if quick { 2_000 } else { 20_000 };
    for algorithm in [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305] {
        for size in [64usize, 4096] {
            let (barrier, _) = unsealed_barrier(Arc::new(MemoryStorage::new()), algorithm);
            let value = vec![0x5a; size];
            let ids: Vec<RecordId> = (0..rounds).map(|i| record(&format!("k{i}"), 1)).collect();
            let start = Instant::now();
            for id in &ids {
                barrier.put(id, &value, Expect::Any).unwrap();
            }
            let seal = start.elapsed();
            let start = Instant::now();
            for id in &ids {
                let got = barrier.get(id).unwrap().unwrap();
                assert_eq!(got.value.len(), size);
            }
            let open = start.elapsed();
            println!(
                "{:<20} {:>8} {:>14.2} {:>14.2}",
                algorithm.name(),
                size,
                micros_per(seal, rounds),
                micros_per(open, rounds)
            );
        }
    }
    println!();
}

#[derive(Clone, Copy, Debug)]
enum Layer {
    /// Raw storage puts of the size a sealed 256-byte record has.
    Storage,
    /// Barrier puts: read the current record, seal, store.
    Barrier,
}

/// Durable writes of 256-byte values on sled, at several concurrencies.
fn durable_writes(quick: bool, layer: Layer) {
    println!(
        "## durable writes, {layer:?} layer (sled, flush + fdatasync, group commit, 256-byte values)"
    );
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>10} {:>14}",
        "writers", "writes/s", "p50 ms", "p99 ms", "max ms", "writes/sync"
    );
    let run_for = Duration::from_secs(if quick { 1 } else { 4 });
    for writers in [1usize, 16, 64] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStorage::open(dir.path()).unwrap());
        let (barrier, _) = unsealed_barrier(store.clone(), Algorithm::Aes256Gcm);
        let before = store.stats();
        let value = vec![0xa5; 256];
        let sealed_size = vec![0xa5; 256 + vaultd::barrier::OVERHEAD];
        let start = Instant::now();
        let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..writers)
                .map(|w| {
                    let barrier = &barrier;
                    let value = &value;
                    let store = &store;
                    let sealed_size = &sealed_size;
                    scope.spawn(move || {
                        let mut latencies = Vec::new();
                        let mut i = 0u64;
                        while start.elapsed() < run_for {
                            let id = record(&format!("w{w}/{i}"), 1);
                            let t = Instant::now();
                            match layer {
                                Layer::Barrier => {
                                    barrier.put(&id, value, Expect::Any).unwrap();
                                }
                                Layer::Storage => {
                                    let key = format!("w{w}/{i}");
                                    store.put(key.as_bytes(), sealed_size).unwrap();
                                }
                            }
                            latencies.push(t.elapsed());
                            i += 1;
                        }
                        latencies
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let elapsed = start.elapsed();
        let after = store.stats();
        latencies.sort();
        let writes = after.writes - before.writes;
        let syncs = (after.syncs - before.syncs).max(1);
        println!(
            "{:>8} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>14.1}",
            writers,
            latencies.len() as f64 / elapsed.as_secs_f64(),
            millis(percentile(&latencies, 0.50)),
            millis(percentile(&latencies, 0.99)),
            millis(latencies.last().copied().unwrap_or_default()),
            writes as f64 / syncs as f64
        );
    }
    println!();
}

/// Opening a store of `count` records: sled open, keyring load, first read, full scan.
fn cold_open(count: usize) {
    println!("## open a store of {count} records");
    let dir = tempfile::tempdir().unwrap();
    let root = {
        let store = Arc::new(SledStorage::open(dir.path()).unwrap());
        let (barrier, root) = unsealed_barrier(store.clone(), Algorithm::Aes256Gcm);
        let value = vec![0x11; 200];
        let start = Instant::now();
        // Writers in parallel so the fill shares syncs; the fill itself is not the measurement.
        std::thread::scope(|scope| {
            for w in 0..32 {
                let barrier = &barrier;
                let value = &value;
                scope.spawn(move || {
                    for i in (w..count).step_by(32) {
                        barrier
                            .put(&record(&format!("r/{i:08}"), 1), value, Expect::Any)
                            .unwrap();
                    }
                });
            }
        });
        println!("filled in {:.1} s", start.elapsed().as_secs_f64());
        store.apply(Batch::new()).unwrap();
        root
    };
    let size: u64 = walk(dir.path());
    println!("data directory: {:.1} MiB", size as f64 / (1024.0 * 1024.0));
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();

    let start = Instant::now();
    let store: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
    let opened = start.elapsed();
    let keyring = Keyring::load(
        SecretKey::from_bytes(root),
        KeyringConfig::default(),
        Arc::clone(&store),
    )
    .unwrap();
    let barrier = Barrier::new(Arc::clone(&store));
    barrier.unseal(keyring);
    let unsealed = start.elapsed();
    barrier
        .get(&record(&format!("r/{:08}", count / 2), 1))
        .unwrap()
        .unwrap();
    let first_read = start.elapsed();
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = barrier
            .list(
                RecordKind::SecretVersion,
                MountId::SYSTEM,
                "r/",
                after.as_ref(),
                1000,
            )
            .unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen += page.len();
        after = Some(last);
    }
    assert_eq!(seen, count);
    let scanned = start.elapsed();
    println!(
        "page cache dropped: {dropped}; sled open {:.0} ms, keyring loaded {:.0} ms, first read {:.0} ms, all keys listed {:.0} ms",
        millis(opened),
        millis(unsealed),
        millis(first_read),
        millis(scanned)
    );
}

fn walk(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros_per(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
