//! The rotation schedule: which jobs rotate what, when each is due, and the rule that makes
//! every due date rotate exactly once.
//!
//! A job's state lives in one barrier record with its definition. A run writes its effect
//! (a new secret version, a new key term) and the job's next due time in one commit where it
//! can, or through a journal entry recorded before the effect where it cannot, so a crash or
//! a restart never rotates twice for one due date and never loses a rotation.
//!
//! Time is always passed in: the rules here are pure and tested with a fake clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::api::{ApiError, Fields, Request};
use crate::crypto::fill_random;

pub mod command;

/// The longest jitter added to a due time: 5 % of the period, at most five minutes.
pub const MAX_JITTER: Duration = Duration::from_secs(300);

/// How a secret is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A random value of a given length, alphabet and prefix.
    Generate,
    /// An external rotator named in the configuration (create, set, test, finish).
    Command,
    /// Nothing is done; the status says when the secret is due.
    Manual,
}

impl Method {
    /// The name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Method::Generate => "generate",
            Method::Command => "command",
            Method::Manual => "manual",
        }
    }
}

/// A secret's rotation policy, as set at `sys/rotation/policy/<mount>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    /// How to rotate.
    pub method: Method,
    /// Seconds between rotations.
    pub period: u64,
    /// Seconds after a rotation during which the old credential stays valid, and after a due
    /// date before the secret counts as overdue.
    pub grace: u64,
    /// The KV field that holds the credential.
    pub field: String,
    /// `generate`: length of the random part.
    pub length: usize,
    /// `generate`: the characters to draw from.
    pub alphabet: String,
    /// `generate`: a fixed prefix.
    pub prefix: String,
    /// `command`: the rotator's name in the configuration.
    pub rotator: Option<String>,
    /// Make the secret due at once when a person (a root token) has read it since its last
    /// rotation.
    #[serde(default)]
    pub rotate_after_human_read: bool,
}

/// Characters a generated credential is drawn from unless the policy says otherwise.
pub const DEFAULT_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl RotationPolicy {
    /// Reads a policy from a request, with Vault's lenient types.
    pub fn from_request(request: &Request) -> Result<(RotationPolicy, Vec<String>), ApiError> {
        let mut fields = Fields::new(request);
        let method = match fields.string("method")?.as_deref() {
            Some("generate") => Method::Generate,
            Some("command") => Method::Command,
            Some("manual") => Method::Manual,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown method {other:?}: expected generate, command or manual"
                )));
            }
            None => {
                return Err(ApiError::bad_request(
                    "method is required: generate, command or manual",
                ));
            }
        };
        let period = fields
            .duration("period")?
            .ok_or_else(|| ApiError::bad_request("period is required, e.g. \"720h\""))?;
        if period < Duration::from_secs(1) {
            return Err(ApiError::bad_request("period must be at least 1s"));
        }
        let grace = fields.duration("grace")?.unwrap_or(Duration::ZERO);
        let field = fields.string("field")?.unwrap_or_default();
        if method != Method::Manual && field.is_empty() {
            return Err(ApiError::bad_request(
                "field is required: the KV field that holds the credential",
            ));
        }
        let length = fields.u64("length")?.unwrap_or(32);
        if !(8..=512).contains(&length) {
            return Err(ApiError::bad_request("length must be between 8 and 512"));
        }
        let alphabet = fields
            .string("alphabet")?
            .unwrap_or_else(|| DEFAULT_ALPHABET.to_string());
        let distinct: std::collections::BTreeSet<char> = alphabet.chars().collect();
        if distinct.len() < 16
            || distinct.len() > 256
            || distinct.len() != alphabet.chars().count()
            || alphabet.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(
                "alphabet must have 16 to 256 distinct, printable characters and no repeats",
            ));
        }
        let prefix = fields.string("prefix")?.unwrap_or_default();
        if prefix.len() > 64 || prefix.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "prefix must be at most 64 printable characters",
            ));
        }
        let rotator = fields.string("rotator")?.filter(|r| !r.is_empty());
        let rotate_after_human_read = fields.bool("rotate_after_human_read")?.unwrap_or(false);
        if method == Method::Command && rotator.is_none() {
            return Err(ApiError::bad_request(
                "a command rotation needs rotator: the name of a rotator in vault.toml",
            ));
        }
        let policy = RotationPolicy {
            method,
            period: period.as_secs(),
            grace: grace.as_secs(),
            field,
            length: length as usize,
            alphabet,
            prefix,
            rotator,
            rotate_after_human_read,
        };
        Ok((policy, fields.unknown()))
    }

    /// A new random credential: the prefix and `length` characters of the alphabet, drawn
    /// without bias from the operating system's CSPRNG.
    pub fn generate(&self) -> Result<Zeroizing<String>, ApiError> {
        generate(self.length, &self.alphabet, &self.prefix)
    }
}

/// `prefix` followed by `length` characters of `alphabet`, by rejection sampling.
pub fn generate(
    length: usize,
    alphabet: &str,
    prefix: &str,
) -> Result<Zeroizing<String>, ApiError> {
    let symbols: Vec<char> = alphabet.chars().collect();
    if symbols.is_empty() || symbols.len() > 256 {
        return Err(ApiError::bad_request(
            "alphabet must have 1 to 256 characters",
        ));
    }
    let n = symbols.len();
    // The largest multiple of n that fits a byte: bytes at or above it would bias the draw.
    let limit = 256 - 256 % n;
    let mut out = Zeroizing::new(String::with_capacity(prefix.len() + length));
    out.push_str(prefix);
    let mut buffer = Zeroizing::new([0u8; 64]);
    let mut drawn = 0;
    while drawn < length {
        fill_random(buffer.as_mut()).map_err(|e| ApiError::internal(e.to_string()))?;
        for &byte in buffer.iter() {
            if usize::from(byte) < limit && drawn < length {
                out.push(symbols[usize::from(byte) % n]);
                drawn += 1;
            }
        }
    }
    Ok(out)
}

/// A job's progress, kept with its definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Milliseconds since the Unix epoch at which the next rotation is due.
    pub next_due: u64,
    /// When the last rotation committed.
    pub last_rotated: Option<u64>,
    /// Rotations done.
    pub runs: u64,
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// The last failure, for the status.
    pub last_error: Option<String>,
    /// The versions (or key terms) the last rotation went from and to.
    pub last_from: Option<u64>,
    /// See `last_from`.
    pub last_to: Option<u64>,
    /// A rotation under way whose effect cannot be committed with its state.
    pub journal: Option<Journal>,
    /// After a failure, when the job may run again.
    #[serde(default)]
    pub retry_at: Option<u64>,
}

/// What a rotation records before an effect it cannot commit together with the job's state,
/// so a restart finishes it instead of doing it again. It holds credentials: its `Debug`
/// leaves them out, and they are zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// One ID for every step of one rotation.
    pub rotation_id: String,
    /// The due date the rotation serves.
    pub due: u64,
    /// What was current before (a key term, a version).
    pub before: u64,
    /// A command rotation's next step: `create`, `set`, `test`, `commit` or `finish`.
    #[serde(default)]
    pub step: Option<String>,
    /// The credential in use before the rotation (kept until `finish` revokes it).
    #[serde(default)]
    pub old: Option<String>,
    /// The credential `create` minted, until it is committed.
    #[serde(default)]
    pub pending: Option<String>,
    /// The rotator's own state, passed back to it at every step.
    #[serde(default)]
    pub state: Option<serde_json::Value>,
    /// When `finish` may revoke the old credential: the end of the grace period.
    #[serde(default)]
    pub finish_at: Option<u64>,
}

impl Journal {
    /// A journal for rotation `rotation_id`, serving due date `due`, from `before`.
    pub fn new(rotation_id: String, due: u64, before: u64) -> Journal {
        Journal {
            rotation_id,
            due,
            before,
            step: None,
            old: None,
            pending: None,
            state: None,
            finish_at: None,
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("rotation_id", &self.rotation_id)
            .field("due", &self.due)
            .field("before", &self.before)
            .field("step", &self.step)
            .field("finish_at", &self.finish_at)
            .finish_non_exhaustive()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.old.zeroize();
        self.pending.zeroize();
    }
}

/// Milliseconds since the Unix epoch.
pub fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The next due time after a rotation for the due time `due` ran at `now`: one period after
/// `due`, unless that is already past (the daemon was down, or the clock jumped), in which
/// case one period after `now`, so missed periods are caught up once, not once each.
pub fn next_due(due: u64, now: u64, period_ms: u64, jitter_ms: u64) -> u64 {
    let next = due.saturating_add(period_ms);
    let next = if next <= now {
        now.saturating_add(period_ms)
    } else {
        next
    };
    next.saturating_add(jitter_ms)
}

/// A random jitter for a job of `period_ms`: up to 5 % of the period, at most
/// [`MAX_JITTER`], so jobs that fall due together spread out.
pub fn jitter(period_ms: u64) -> u64 {
    let bound = (period_ms / 20).min(u64::try_from(MAX_JITTER.as_millis()).unwrap_or(u64::MAX));
    if bound == 0 {
        return 0;
    }
    let mut bytes = [0u8; 8];
    if fill_random(&mut bytes).is_err() {
        return 0;
    }
    u64::from_le_bytes(bytes) % bound
}

/// The state the status shows: `failing` after a failed run, else `ok` before the due time,
/// `due` until the grace period after it ends, and `overdue` after that.
pub fn state(status: &JobStatus, now: u64, grace_ms: u64) -> &'static str {
    if status.failures > 0 {
        "failing"
    } else if now < status.next_due {
        "ok"
    } else if now < status.next_due.saturating_add(grace_ms.max(1000)) {
        "due"
    } else {
        "overdue"
    }
}

/// How long to wait before retrying a failed job: 2^failures seconds, at most an hour.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(12)).min(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the schedule rule with a fake clock: `ticks` at `step_ms` apart, returning how
    /// many rotations ran.
    fn simulate(start: u64, ticks: &[u64], period_ms: u64) -> (u64, u64) {
        let mut status = JobStatus {
            next_due: start + period_ms,
            ..JobStatus::default()
        };
        for &now in ticks {
            if now >= status.next_due {
                status.next_due = next_due(status.next_due, now, period_ms, 0);
                status.runs += 1;
            }
        }
        (status.runs, status.next_due)
    }

    #[test]
    fn a_one_second_period_rotates_once_a_second() {
        let ticks: Vec<u64> = (1..=100).map(|i| i * 100).collect(); // 10 s, a tick every 100 ms
        let (runs, _) = simulate(0, &ticks, 1000);
        assert_eq!(runs, 10);
    }

    #[test]
    fn downtime_is_caught_up_once() {
        // Due at 1 s; the next tick comes after an hour.
        let (runs, next) = simulate(0, &[3_600_000], 1000);
        assert_eq!(runs, 1);
        assert_eq!(next, 3_601_000);
    }

    #[test]
    fn a_clock_jump_forward_rotates_once_and_backward_not_at_all() {
        // Forward: from 0.5 s to a day later.
        let (runs, _) = simulate(0, &[500, 86_400_000, 86_400_100], 60_000);
        assert_eq!(runs, 1);
        // Backward: rotated at 61 s, then the clock reads 10 s again for a while.
        let (runs, next) = simulate(0, &[61_000, 10_000, 20_000, 30_000], 60_000);
        assert_eq!(runs, 1);
        assert_eq!(next, 120_000);
    }

    #[test]
    fn the_same_due_date_never_rotates_twice() {
        // A restart re-reads the stored state: ticks at the same instant see the advanced
        // due time.
        let (runs, _) = simulate(0, &[1000, 1000, 1000, 1500], 1000);
        assert_eq!(runs, 1);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        assert!(jitter(1000) < 50);
        for _ in 0..100 {
            assert!(jitter(1_000_000) < 50_000);
            assert!(jitter(u64::MAX / 2) < 300_000);
        }
        assert_eq!(jitter(10), 0);
    }

    #[test]
    fn states_follow_the_due_time() {
        let mut status = JobStatus {
            next_due: 10_000,
            ..JobStatus::default()
        };
        assert_eq!(state(&status, 5_000, 60_000), "ok");
        assert_eq!(state(&status, 10_000, 60_000), "due");
        assert_eq!(state(&status, 80_000, 60_000), "overdue");
        status.failures = 1;
        assert_eq!(state(&status, 5_000, 60_000), "failing");
    }

    #[test]
    fn generated_values_use_the_alphabet_and_prefix() {
        let value = generate(40, "abcdefghijklmnop", "sk-test-").unwrap();
        assert!(value.starts_with("sk-test-"));
        assert_eq!(value.len(), 48);
        assert!(value[8..].chars().all(|c| ('a'..='p').contains(&c)));
        assert_ne!(
            *value,
            *generate(40, "abcdefghijklmnop", "sk-test-").unwrap()
        );
    }

    #[test]
    fn generation_is_unbiased_enough() {
        // 62 symbols: a naive modulo would favour the first 8 by a quarter.
        let value = generate(62 * 400, DEFAULT_ALPHABET, "").unwrap();
        let mut counts = std::collections::HashMap::new();
        for c in value.chars() {
            *counts.entry(c).or_insert(0u32) += 1;
        }
        let low = counts[&'A'] + counts[&'B'] + counts[&'C'] + counts[&'D'];
        let high = counts[&'6'] + counts[&'7'] + counts[&'8'] + counts[&'9'];
        assert!(low < high * 3 / 2 && high < low * 3 / 2, "{low} vs {high}");
    }
}
