//! Offline verification of audit files (`vaultctl audit verify`, `vaultd audit verify`).
//!
//! Walks the lines of the files in order and checks that each line's `chain.prev` is the
//! SHA-256 of the line before it, that sequence numbers rise by one, that every checkpoint's
//! signature verifies under the public key, and that the last line is a checkpoint. So an
//! edited, deleted, inserted or reordered line, and a file cut short inside a group, are all
//! found, and the first bad line is named. A file cut exactly after a checkpoint cannot be
//! told apart from one that ended there; the daemon keeps the chain head to catch that.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::Value;

/// The signed message of a checkpoint: this prefix, the sequence number and the head hash.
pub const CHECKPOINT_CONTEXT: &str = "vaultd-audit-checkpoint/v1";

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Lines checked, checkpoints included.
    pub lines: u64,
    /// Checkpoints whose signatures verified.
    pub checkpoints: u64,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The file.
    pub file: PathBuf,
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
    }
}

/// Verifies `files`, in order, as one chain under the base64 Ed25519 `public_key`.
pub fn verify(files: &[PathBuf], public_key: &str) -> Result<Report, Failure> {
    let key_bytes = BASE64.decode(public_key.trim()).map_err(|_| Failure {
        file: PathBuf::from("--public-key"),
        line: 0,
        problem: "the public key is not base64".into(),
    })?;
    let key = UnparsedPublicKey::new(&ED25519, key_bytes);
    let mut report = Report {
        lines: 0,
        checkpoints: 0,
    };
    let mut previous: Option<([u8; 32], u64)> = None;
    let mut last_was_checkpoint = false;
    let mut last_place = (PathBuf::new(), 0);

    for file in files {
        let text =
            std::fs::read(file).map_err(|e| failure(file, 0, format!("cannot read: {e}")))?;
        if !text.is_empty() && !text.ends_with(b"\n") {
            let lines = text.split(|b| *b == b'\n').count();
            return Err(failure(
                file,
                lines,
                "the last line is incomplete (file truncated)".into(),
            ));
        }
        for (index, line) in text.split(|b| *b == b'\n').enumerate() {
            let number = index + 1;
            if line.is_empty() {
                continue;
            }
            let entry: Value = serde_json::from_slice(line)
                .map_err(|_| failure(file, number, "not a JSON entry".into()))?;
            let chain = entry
                .get("chain")
                .ok_or_else(|| failure(file, number, "no chain field".into()))?;
            let seq = chain
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or_else(|| failure(file, number, "no chain sequence number".into()))?;
            let prev = chain
                .get("prev")
                .and_then(Value::as_str)
                .ok_or_else(|| failure(file, number, "no chain hash".into()))?;
            if let Some((hash, previous_seq)) = previous {
                if seq != previous_seq + 1 {
                    return Err(failure(
                        file,
                        number,
                        format!(
                            "sequence {seq} follows {previous_seq}: a line is missing or out of order"
                        ),
                    ));
                }
                if prev != hex::encode(hash) {
                    // The sequence is intact, so the line before was altered (or this line's
                    // own chain field was).
                    let (bad_file, bad_line) = &last_place;
                    return Err(failure(
                        bad_file,
                        *bad_line,
                        format!(
                            "this line was altered: line {number} recorded a different hash for it"
                        ),
                    ));
                }
            }
            last_was_checkpoint = entry.get("type").and_then(Value::as_str) == Some("checkpoint");
            if last_was_checkpoint {
                let signature = entry
                    .get("signature")
                    .and_then(Value::as_str)
                    .and_then(|s| BASE64.decode(s).ok())
                    .ok_or_else(|| {
                        failure(file, number, "checkpoint without a signature".into())
                    })?;
                let message = format!("{CHECKPOINT_CONTEXT} {seq} {prev}");
                key.verify(message.as_bytes(), &signature).map_err(|_| {
                    failure(
                        file,
                        number,
                        "checkpoint signature does not verify under this public key".into(),
                    )
                })?;
                report.checkpoints += 1;
            }
            previous = Some((sha256(line), seq));
            report.lines += 1;
            last_place = (file.clone(), number);
        }
    }
    if report.lines > 0 && !last_was_checkpoint {
        return Err(failure(&last_place.0, last_place.1, "entries after the last signed checkpoint: the log was cut short or its end was changed".into()));
    }
    Ok(report)
}

fn failure(file: &Path, line: usize, problem: String) -> Failure {
    Failure {
        file: file.to_path_buf(),
        line,
        problem,
    }
}
