//! Acknowledged writes survive `kill -9` of the writing process, and the store always opens.
//!
//! The parent test starts this same test binary again as a child (running the ignored
//! `writer_child` test), which writes from several threads and prints a line for every write
//! the store acknowledged. After a random number of acknowledgements the parent kills it with
//! SIGKILL, reopens the store and checks every acknowledged write. A killed process cannot
//! show a missing fsync (the page cache survives it); what this catches is lost or torn
//! acknowledged writes and a store that no longer opens.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vaultd::storage::{Batch, SledStorage, Storage};

const WRITERS: u32 = 8;
const DIR_VAR: &str = "VAULTD_CRASH_DIR";
const ROUND_VAR: &str = "VAULTD_CRASH_ROUND";

/// Deterministic value of write `seq` of `writer` in `round`, of varying length.
fn value(round: u32, writer: u32, seq: u64) -> Vec<u8> {
    let len = 1 + (seq as usize * 37 + writer as usize * 101 + round as usize * 7) % 3000;
    let mut out = format!("{round}:{writer}:{seq}:").into_bytes();
    out.resize(len.max(out.len()), b'a' + (seq % 26) as u8);
    out
}

fn key(round: u32, writer: u32, seq: u64) -> Vec<u8> {
    format!("r{round:03}/w{writer}/{seq:010}").into_bytes()
}

fn latest_key(writer: u32) -> Vec<u8> {
    format!("latest/w{writer}").into_bytes()
}

/// Run only as the child of `acknowledged_writes_survive_sigkill`.
#[test]
#[ignore = "child process of acknowledged_writes_survive_sigkill, which starts it"]
fn writer_child() {
    let dir = std::env::var(DIR_VAR).expect("VAULTD_CRASH_DIR");
    let round: u32 = std::env::var(ROUND_VAR)
        .expect("VAULTD_CRASH_ROUND")
        .parse()
        .unwrap();
    let store = SledStorage::open(Path::new(&dir)).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let store = &store;
            scope.spawn(move || {
                for seq in 0.. {
                    // Each write is a batch of two records: this write's own key and the
                    // writer's overwritten "latest" marker.
                    let batch = Batch::new()
                        .put(&key(round, writer, seq), &value(round, writer, seq))
                        .put(&latest_key(writer), format!("{round}:{seq}").as_bytes());
                    store.apply(batch).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {writer} {seq}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let rounds: u32 = std::env::var("VAULTD_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut acknowledged: Vec<(u32, u32, u64)> = Vec::new();
    let mut total_acks = 0usize;

    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 1 + (seed % 600) as usize;

        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "storage_crash::writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut acks_this_round = 0;
        let mut killed = false;
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (writer, seq) = rest.split_once(' ').unwrap();
                acknowledged.push((round, writer.parse().unwrap(), seq.parse().unwrap()));
                acks_this_round += 1;
            }
            if acks_this_round == kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the writer exited by itself ({status}) after {acks_this_round} acks"
        );
        total_acks += acks_this_round;

        verify(dir.path(), &acknowledged, round);
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "crash loop exceeded its time bound"
        );
    }
    eprintln!("{rounds} kills, {total_acks} acknowledged writes, all present");
}

/// Opens the store (it must open) and checks every acknowledged write so far.
fn verify(dir: &Path, acknowledged: &[(u32, u32, u64)], round: u32) {
    let store = SledStorage::open(dir)
        .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
    let mut newest: BTreeMap<u32, (u32, u64)> = BTreeMap::new();
    for &(r, writer, seq) in acknowledged {
        let got = store.get(&key(r, writer, seq)).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&value(r, writer, seq)[..]),
            "round {round}: acknowledged write r{r}/w{writer}/{seq} lost or altered"
        );
        let entry = newest.entry(writer).or_insert((r, seq));
        *entry = (*entry).max((r, seq));
    }
    // The overwritten marker is at least as new as the newest acknowledged write.
    for (writer, (r, seq)) in newest {
        let marker = store
            .get(&latest_key(writer))
            .unwrap()
            .expect("latest marker");
        let marker = String::from_utf8(marker).unwrap();
        let (mr, ms) = marker.split_once(':').unwrap();
        let found: (u32, u64) = (mr.parse().unwrap(), ms.parse().unwrap());
        assert!(
            found >= (r, seq),
            "round {round}: writer {writer} marker {found:?} older than acknowledged {:?}",
            (r, seq)
        );
    }
}
