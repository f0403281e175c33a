//! The rotation schedule in the vault: `sys/rotation/*`, `sys/rotate/config`, and the tick
//! that the daemon's scheduler thread calls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Route, Vault};
use crate::api::{ApiError, Fields, Operation, Request, Response};
use crate::barrier::{BarrierError, Change, Expect, MountId, RecordId, RecordKind};
use crate::mount::{EngineType, MountEntry};
use crate::rotation::{self, JobStatus, Journal, Method, RotationPolicy, millis};

/// A secret's rotation job: its policy and progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SecretJob {
    pub(super) policy: RotationPolicy,
    pub(super) status: JobStatus,
}

/// The keyring's rotation schedule (`sys/rotate/config`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct KeyringJob {
    pub(super) enabled: bool,
    /// Seconds between rotations.
    pub(super) interval: u64,
    pub(super) status: JobStatus,
}

/// The last read of a secret: when, by which accessor, and when a person last read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct LastRead {
    at: u64,
    accessor: String,
    human_at: Option<u64>,
}

/// Last reads of secrets, kept in memory and written to the store in batches by the
/// scheduler (every ten seconds), not on every read.
#[derive(Default)]
pub(super) struct ReadLog {
    pending: std::sync::Mutex<std::collections::HashMap<String, LastRead>>,
    last_flush: std::sync::atomic::AtomicU64,
}

impl ReadLog {
    /// Notes a read of `path` (mount included) by `token`.
    pub(super) fn record(&self, path: &str, token: &crate::token::Token, now: SystemTime) {
        let at = millis(now);
        // A person, as far as vaultd can tell: a root token, or one an operator got by
        // logging in with a password.
        let human = token.entry.is_root() || token.entry.path.starts_with("auth/userpass/");
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(path.to_string()).or_default();
        entry.at = at;
        entry.accessor = token.entry.accessor.clone();
        if human {
            entry.human_at = Some(at);
        }
    }

    fn peek(&self, path: &str) -> Option<LastRead> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    fn take(&self) -> std::collections::HashMap<String, LastRead> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The secrets being rotated right now, so the scheduler and a forced rotation never run
/// the same secret's rotation at once (the stored generation check would catch the race,
/// but only after a command rotator had already issued a second credential).
#[derive(Default)]
pub(super) struct Running {
    paths: std::sync::Mutex<std::collections::HashSet<String>>,
    released: std::sync::Condvar,
}

/// A claim on one secret's rotation, released on drop.
struct Claim<'a> {
    running: &'a Running,
    path: String,
}

impl Running {
    /// Claims `path`, waiting up to `patience` for another claim on it to end.
    fn claim(&self, path: &str, patience: Duration) -> Option<Claim<'_>> {
        let deadline = std::time::Instant::now() + patience;
        let mut set = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        while set.contains(path) {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            set = self
                .released
                .wait_timeout(set, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        set.insert(path.to_string());
        Some(Claim {
            running: self,
            path: path.to_string(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut set = self.running.paths.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.path);
        self.running.released.notify_all();
    }
}

/// What one run did, for the audit log and the caller.
struct Run {
    from: u64,
    to: u64,
}

impl Vault {
    pub(super) fn rotation_route(
        &self,
        route: &Route<'_>,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        match (route, request.operation) {
            (Route::RotationPolicies, _) => self.list_rotation_policies(),
            (Route::RotationPolicy(path), Operation::Read) => {
                let (job, _) = self.secret_job(path)?.ok_or_else(ApiError::not_found)?;
                let mut described = describe_job(&job, now);
                self.describe_key(path, &job, &mut described, now)?;
                Ok(Response::data(described))
            }
            (Route::RotationPolicy(path), Operation::Write) => {
                self.write_rotation_policy(path, request, now)
            }
            (Route::RotationPolicy(path), _) => {
                let Some((job, generation)) = self.secret_job(path)? else {
                    return Ok(Response::empty());
                };
                if job.status.journal.is_some() {
                    return Err(in_progress(path));
                }
                self.barrier
                    .delete(&job_record(path)?, Expect::Generation(generation))
                    .map_err(conflict)?;
                Ok(Response::empty())
            }
            (Route::RotationRotate(path), _) => {
                let run = self.run_secret_job(path, now, true)?;
                Ok(Response::data(
                    json!({"from_version": run.from, "to_version": run.to}),
                ))
            }
            (Route::RotateConfig, Operation::Read) => {
                let (job, _) = self.keyring_job()?;
                Ok(Response::data(json!({
                    "enabled": job.enabled,
                    "interval": crate::duration::format(Duration::from_secs(job.interval)),
                    "max_operations": crate::keyring::DEFAULT_WEAR_LIMIT,
                    "next_due": (job.enabled).then(|| timestamp(job.status.next_due)),
                    "last_rotated": job.status.last_rotated.map(timestamp),
                })))
            }
            (Route::RotateConfig, _) => self.write_rotate_config(request, now),
            _ => Err(ApiError::unsupported_path(&request.path)),
        }
    }

    fn list_rotation_policies(&self) -> Result<Response, ApiError> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = self.barrier.list(
                RecordKind::RotationState,
                MountId::SYSTEM,
                "policy/",
                after.as_ref(),
                256,
            )?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            keys.extend(
                page.iter()
                    .filter_map(|id| id.path.strip_prefix("policy/").map(String::from)),
            );
            after = Some(last);
        }
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({"keys": keys})))
    }

    fn write_rotation_policy(
        &self,
        path: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        self.kv_target(path)?;
        let (policy, warnings) = RotationPolicy::from_request(request)?;
        if policy.method == Method::Command
            && !self
                .options
                .rotators
                .iter()
                .any(|r| Some(&r.name) == policy.rotator.as_ref())
        {
            return Err(ApiError::bad_request(format!(
                "no rotator named {:?} in the configuration ([[rotator]] in vault.toml)",
                policy.rotator.as_deref().unwrap_or_default()
            )));
        }
        let id = job_record(path)?;
        let existing = self.secret_job(path)?;
        let period_ms = policy.period.saturating_mul(1000);
        let (status, expect) = match existing {
            Some((job, _)) if job.status.journal.is_some() => {
                return Err(in_progress(path));
            }
            // An unchanged period keeps its due time; a changed one counts from the last
            // rotation, or from now.
            Some((job, generation)) => {
                let next_due = if job.policy.period == policy.period {
                    job.status.next_due
                } else {
                    job.status
                        .last_rotated
                        .unwrap_or(millis(now))
                        .saturating_add(period_ms)
                };
                (
                    JobStatus {
                        next_due,
                        ..job.status
                    },
                    Expect::Generation(generation),
                )
            }
            None => (
                JobStatus {
                    next_due: millis(now).saturating_add(period_ms),
                    ..JobStatus::default()
                },
                Expect::Absent,
            ),
        };
        let job = SecretJob { policy, status };
        self.barrier
            .put(&id, &encode(&job)?, expect)
            .map_err(conflict)?;
        Ok(Response::empty().with_warnings(warnings))
    }

    fn write_rotate_config(
        &self,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let (mut job, generation) = self.keyring_job()?;
        if let Some(enabled) = fields.bool("enabled")? {
            job.enabled = enabled;
        }
        if let Some(interval) = fields.duration("interval")? {
            if !interval.is_zero() && interval < Duration::from_secs(1) {
                return Err(ApiError::bad_request("interval must be at least 1s"));
            }
            job.interval = interval.as_secs();
            job.enabled = job.enabled || job.interval > 0;
        }
        let _ = fields.u64("max_operations")?;
        if job.enabled && job.interval == 0 {
            return Err(ApiError::bad_request(
                "an enabled keyring schedule needs an interval, e.g. \"720h\"",
            ));
        }
        job.status.next_due = millis(now).saturating_add(job.interval.saturating_mul(1000));
        let expect = if generation == 0 {
            Expect::Absent
        } else {
            Expect::Generation(generation)
        };
        self.barrier
            .put(&keyring_record()?, &encode(&job)?, expect)
            .map_err(conflict)?;
        Ok(Response::empty().with_warnings(fields.unknown()))
    }

    /// Adds what vaultd knows of the secret as a provider key: its provider, a fingerprint of
    /// the credential (never the credential), when it was created and last read, and by whom.
    fn describe_key(
        &self,
        path: &str,
        job: &SecretJob,
        out: &mut Value,
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let (mount, rest) = self.kv_target(path)?;
        let custom = self.kv.custom_metadata(&mount, &rest)?.unwrap_or_default();
        let current = self
            .kv
            .current_field(&mount, &rest, &job.policy.field, now)?;
        let read = self.last_read(path)?;
        let created = self.kv.created_time(&mount, &rest)?;
        if let Value::Object(map) = out {
            map.insert("provider".into(), json!(custom.get("provider")));
            map.insert(
                "fingerprint".into(),
                json!(
                    current
                        .as_ref()
                        .map(|(_, value)| crate::provider::fingerprint(value))
                ),
            );
            map.insert("created".into(), json!(created));
            map.insert(
                "last_read".into(),
                json!(read.as_ref().map(|r| timestamp(r.at))),
            );
            map.insert(
                "last_reader".into(),
                json!(read.as_ref().map(|r| r.accessor.clone())),
            );
            map.insert(
                "last_human_read".into(),
                json!(read.as_ref().and_then(|r| r.human_at).map(timestamp)),
            );
        }
        Ok(())
    }

    /// Warnings for a write of a provider key whose credential does not have the provider's
    /// known shape. The write itself is never refused for that.
    pub(super) fn provider_warnings(
        &self,
        mount: &MountEntry,
        full: &str,
        path: &str,
        request: &Request,
    ) -> Vec<String> {
        let Ok(Some(custom)) = self.kv.custom_metadata(mount, path) else {
            return Vec::new();
        };
        let Some(provider) = custom
            .get("provider")
            .and_then(|p| crate::provider::Provider::parse(p))
        else {
            return match custom.get("provider") {
                Some(other) => vec![format!(
                    "provider {other:?} is not one vaultd knows; its key's shape is not checked"
                )],
                None => Vec::new(),
            };
        };
        let field = match self.secret_job(full) {
            Ok(Some((job, _))) => job.policy.field,
            _ => "api_key".to_string(),
        };
        request
            .data
            .get("data")
            .and_then(|d| d.get(&field))
            .and_then(Value::as_str)
            .and_then(|key| provider.check(&field, key))
            .into_iter()
            .collect()
    }

    fn last_read(&self, path: &str) -> Result<Option<LastRead>, ApiError> {
        if let Some(read) = self.reads.peek(path) {
            let stored = self.stored_read(path)?;
            return Ok(Some(LastRead {
                human_at: read.human_at.or(stored.and_then(|s| s.human_at)),
                ..read
            }));
        }
        self.stored_read(path)
    }

    fn stored_read(&self, path: &str) -> Result<Option<LastRead>, ApiError> {
        let Some(record) = self.barrier.get(&reads_record(path)?)? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&record.value).ok())
    }

    /// Writes the last reads noted since the previous flush, every ten seconds at most.
    /// Deletes wrapped responses whose TTL has passed, once a minute.
    fn sweep_wrapped_responses(&self, now: SystemTime) {
        let now_ms = millis(now);
        let not_before = self.wrapping_not_before.load(Ordering::Relaxed);
        if now_ms < not_before {
            return;
        }
        self.wrapping_not_before
            .store(now_ms.saturating_add(60_000), Ordering::Relaxed);
        match self.wrapping.sweep(now) {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "expired wrapped responses deleted"),
            Err(e) => tracing::debug!(error = %e, "wrapped responses not swept"),
        }
    }

    fn flush_reads(&self, now: SystemTime) {
        let now_ms = millis(now);
        let last = self.reads.last_flush.load(Ordering::Relaxed);
        if now_ms < last.saturating_add(10_000) && now_ms >= last {
            return;
        }
        self.reads.last_flush.store(now_ms, Ordering::Relaxed);
        for (path, read) in self.reads.take() {
            let merged = match self.stored_read(&path) {
                Ok(Some(stored)) => LastRead {
                    human_at: read.human_at.or(stored.human_at),
                    ..read
                },
                _ => read,
            };
            let written = reads_record(&path)
                .and_then(|id| Ok(self.barrier.put(&id, &encode(&merged)?, Expect::Any)?));
            if let Err(e) = written {
                tracing::debug!(%path, error = %e, "last read not recorded");
            }
        }
    }

    /// Whether a person read the secret since its last rotation (or, never rotated, ever).
    fn read_by_a_person_since_rotation(&self, path: &str, status: &JobStatus) -> bool {
        let Ok(Some(read)) = self.last_read(path) else {
            return false;
        };
        read.human_at
            .is_some_and(|at| at > status.last_rotated.unwrap_or(0))
    }

    /// How many secret jobs are in each state at `now`, for metrics.
    pub(super) fn rotation_states(
        &self,
        now: SystemTime,
    ) -> std::collections::BTreeMap<&'static str, u64> {
        let mut counts = std::collections::BTreeMap::new();
        let mut after = None;
        while let Ok(page) = self.barrier.list(
            RecordKind::RotationState,
            MountId::SYSTEM,
            "policy/",
            after.as_ref(),
            256,
        ) {
            let Some(last) = page.last().cloned() else {
                break;
            };
            for id in &page {
                let Some(path) = id.path.strip_prefix("policy/") else {
                    continue;
                };
                if let Ok(Some((job, _))) = self.secret_job(path) {
                    let state = rotation::state(
                        &job.status,
                        millis(now),
                        job.policy.grace.saturating_mul(1000),
                    );
                    *counts.entry(state).or_default() += 1;
                }
            }
            after = Some(last);
        }
        counts
    }

    /// Runs every job that is due at `now`. Called about twice a second by the daemon's
    /// scheduler thread while the vault is unsealed; errors are logged and retried later.
    pub fn rotation_tick(&self, now: SystemTime) {
        if self.is_sealed() {
            return;
        }
        if let Err(e) = self.keyring_tick(now) {
            tracing::warn!(error = %e, "scheduled keyring rotation did not run");
        }
        self.rewrap_if_needed(now);
        self.rotate_transit_keys(now);
        self.flush_reads(now);
        self.sweep_wrapped_responses(now);
        let mut after = None;
        loop {
            let page = match self.barrier.list(
                RecordKind::RotationState,
                MountId::SYSTEM,
                "policy/",
                after.as_ref(),
                256,
            ) {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(error = %e, "rotation tick stopped");
                    return;
                }
            };
            let Some(last) = page.last().cloned() else {
                break;
            };
            for id in &page {
                let Some(path) = id.path.strip_prefix("policy/") else {
                    continue;
                };
                match self.run_secret_job(path, now, false) {
                    Ok(_) => {}
                    Err(e) if e.status == 204 => {}
                    Err(e) => tracing::warn!(%path, error = %e, "scheduled rotation failed"),
                }
            }
            after = Some(last);
        }
    }

    /// Rotates one secret now (`forced`) or if it is due. A run that is not due, or that is
    /// already running for a scheduled call, answers an `ApiError` with status 204, which
    /// callers treat as "nothing to do"; a forced run while another runs answers 409.
    fn run_secret_job(&self, path: &str, now: SystemTime, forced: bool) -> Result<Run, ApiError> {
        // The schedule holds each secret's claim for a moment on every tick to see whether it
        // is due; a forced run waits that out instead of answering 409.
        let patience = if forced {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        };
        let waiting = std::time::Instant::now();
        let Some(_claim) = self.running.claim(path, patience) else {
            return Err(if forced {
                ApiError {
                    status: 409,
                    ..ApiError::bad_request(format!("a rotation of {path} is already running"))
                }
            } else {
                ApiError {
                    status: 204,
                    ..ApiError::bad_request("already running")
                }
            });
        };
        // The run happens when the wait ends, not when it was asked for.
        self.run_claimed_job(path, now + waiting.elapsed(), forced)
    }

    fn run_claimed_job(&self, path: &str, now: SystemTime, forced: bool) -> Result<Run, ApiError> {
        let (job, generation) = self.secret_job(path)?.ok_or_else(|| ApiError {
            status: 404,
            ..ApiError::bad_request(format!("no rotation policy for {path}"))
        })?;
        if job.policy.method == Method::Command {
            return self.run_command_job(path, job, generation, now, forced);
        }
        let now_ms = millis(now);
        let status = &job.status;
        let human_due = job.policy.rotate_after_human_read
            && self.read_by_a_person_since_rotation(path, status);
        let due = (now_ms >= status.next_due || human_due) && status.journal.is_none();
        let retry_ok = status.retry_at.is_none_or(|at| now_ms >= at);
        if !(forced || due && retry_ok) {
            return Err(ApiError {
                status: 204,
                ..ApiError::bad_request("not due")
            });
        }
        let period_ms = job.policy.period.saturating_mul(1000);
        let next = if forced {
            now_ms
                .saturating_add(period_ms)
                .saturating_add(rotation::jitter(period_ms))
        } else {
            rotation::next_due(
                status.next_due,
                now_ms,
                period_ms,
                rotation::jitter(period_ms),
            )
        };
        let (mount, rest) = self.kv_target(path)?;
        let rotation_id = uuid::Uuid::new_v4().to_string();

        match job.policy.method {
            Method::Manual if !forced => {
                if status.last_error.as_deref() != Some("due") {
                    tracing::warn!(%path, "secret with a manual rotation policy is due; rotate it and run `vaultctl rotate`");
                    let mut noted = job.clone();
                    noted.status.last_error = Some("due".into());
                    let _ = self.barrier.put(
                        &job_record(path)?,
                        &encode(&noted)?,
                        Expect::Generation(generation),
                    );
                }
                Err(ApiError {
                    status: 204,
                    ..ApiError::bad_request("manual")
                })
            }
            Method::Manual => {
                // The operator says the secret was rotated by hand: the schedule restarts.
                let current = self.kv.current_version(&mount, &rest)?;
                self.audit_rotation(
                    &rotation_id,
                    path,
                    "manual",
                    (current, current),
                    "start",
                    None,
                )?;
                let mut done = job.clone();
                done.status = completed(&job.status, now_ms, next, current, current);
                self.barrier
                    .put(
                        &job_record(path)?,
                        &encode(&done)?,
                        Expect::Generation(generation),
                    )
                    .map_err(conflict)?;
                self.audit_rotation(&rotation_id, path, "manual", (current, current), "ok", None)?;
                self.rotations_ok.fetch_add(1, Ordering::Relaxed);
                Ok(Run {
                    from: current,
                    to: current,
                })
            }
            Method::Generate => {
                let current = self.kv.current_version(&mount, &rest)?;
                // Audited before the change, as every change is.
                self.audit_rotation(
                    &rotation_id,
                    path,
                    "generate",
                    (current, current + 1),
                    "start",
                    None,
                )?;
                let value = job.policy.generate()?;
                let mut done = job.clone();
                done.status = completed(&job.status, now_ms, next, current, current + 1);
                match self.commit_rotation(
                    path,
                    (&mount, &rest),
                    &value,
                    current,
                    (&done, generation),
                    now,
                ) {
                    Ok((from, to)) => {
                        self.audit_rotation(
                            &rotation_id,
                            path,
                            "generate",
                            (from, to),
                            "ok",
                            None,
                        )?;
                        self.rotations_ok.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%path, from, to, "secret rotated");
                        Ok(Run { from, to })
                    }
                    Err(e) => {
                        self.rotations_failed.fetch_add(1, Ordering::Relaxed);
                        let message = e.messages.join("; ");
                        self.audit_rotation(
                            &rotation_id,
                            path,
                            "generate",
                            (current, current),
                            "failed",
                            Some(&message),
                        )?;
                        self.record_failure(path, &message, now_ms);
                        Err(e)
                    }
                }
            }
            Method::Command => Err(ApiError::internal(
                "command jobs are run by run_command_job",
            )),
        }
    }

    /// A command rotation: create, set, test, commit, and after the grace period finish,
    /// each step recorded in the job's journal before the next, so that after a crash the
    /// rotation resumes where it stopped with the same `rotation_id` (a rotator must make
    /// `create` return the same credential for the same ID). The new credential becomes the
    /// current version only after `test` passed, in one commit with the journal's step.
    fn run_command_job(
        &self,
        path: &str,
        mut job: SecretJob,
        mut generation: u64,
        now: SystemTime,
        forced: bool,
    ) -> Result<Run, ApiError> {
        let now_ms = millis(now);
        let name = job.policy.rotator.clone().unwrap_or_default();
        let retry_ok = job.status.retry_at.is_none_or(|at| now_ms >= at);
        let Some(rotator) = self.options.rotators.iter().find(|r| r.name == name) else {
            // A rotator removed from the configuration is a failure like any other: recorded,
            // and retried with back-off (it may come back with the next restart).
            let wanted = job.status.journal.is_some() || now_ms >= job.status.next_due;
            if !(forced || retry_ok && wanted) {
                return Err(ApiError {
                    status: 204,
                    ..ApiError::bad_request("not due, or waiting to retry")
                });
            }
            let message = format!("no rotator named {name:?} in the configuration");
            self.record_failure(path, &message, now_ms);
            return Err(ApiError::bad_request(message));
        };
        let mut journal = match job.status.journal.clone() {
            Some(journal) if journal.step.as_deref() == Some("finish") => {
                let waiting = now_ms < journal.finish_at.unwrap_or(0) || !retry_ok;
                match (waiting, forced) {
                    (false, _) => journal,
                    (true, true) => {
                        return Err(ApiError {
                            status: 409,
                            ..ApiError::bad_request(format!(
                                "the previous rotation of {path} is not finished: its old credential is revoked after {}",
                                timestamp(
                                    journal
                                        .finish_at
                                        .unwrap_or(0)
                                        .max(job.status.retry_at.unwrap_or(0))
                                )
                            ))
                        });
                    }
                    (true, false) => {
                        return Err(ApiError {
                            status: 204,
                            ..ApiError::bad_request("grace period running")
                        });
                    }
                }
            }
            Some(journal) if forced || retry_ok => journal,
            Some(_) => {
                return Err(ApiError {
                    status: 204,
                    ..ApiError::bad_request("waiting to retry")
                });
            }
            None if !(forced
                || (now_ms >= job.status.next_due
                    || job.policy.rotate_after_human_read
                        && self.read_by_a_person_since_rotation(path, &job.status))
                    && retry_ok) =>
            {
                return Err(ApiError {
                    status: 204,
                    ..ApiError::bad_request("not due")
                });
            }
            None => {
                let (mount, rest) = self.kv_target(path)?;
                let (before, old) = self
                    .kv
                    .current_field(&mount, &rest, &job.policy.field, now)?
                    .unwrap_or((self.kv.current_version(&mount, &rest)?, String::new()));
                let mut journal = Journal::new(
                    uuid::Uuid::new_v4().to_string(),
                    job.status.next_due,
                    before,
                );
                journal.step = Some("create".into());
                journal.old = Some(old);
                self.audit_rotation(
                    &journal.rotation_id,
                    path,
                    "command",
                    (before, before + 1),
                    "start",
                    None,
                )?;
                job.status.journal = Some(journal.clone());
                generation = self.save_job(path, &job, generation)?;
                journal
            }
        };
        let mut run = Run {
            from: journal.before,
            to: journal.before + 1,
        };
        loop {
            let step = journal.step.clone().unwrap_or_default();
            let input = json!({
                "rotation_id": journal.rotation_id,
                "path": path,
                "field": job.policy.field,
                "current": journal.old,
                "new": journal.pending,
                "state": journal.state,
            });
            match step.as_str() {
                "create" | "set" | "test" => {
                    let output = match rotation::command::run_step(rotator, &step, &input) {
                        Ok(output) => output,
                        Err(e) => {
                            return Err(self.command_failed(
                                path,
                                &journal,
                                &step,
                                &e.to_string(),
                                now_ms,
                            ));
                        }
                    };
                    if let Some(state) = output.get("state") {
                        journal.state = Some(state.clone());
                    }
                    if step == "create" {
                        let Some(credential) = output
                            .get("credential")
                            .and_then(Value::as_str)
                            .filter(|c| !c.is_empty())
                        else {
                            return Err(self.command_failed(
                                path,
                                &journal,
                                &step,
                                "create printed no credential",
                                now_ms,
                            ));
                        };
                        journal.pending = Some(credential.to_string());
                    }
                    journal.step = Some(
                        match step.as_str() {
                            "create" => "set",
                            "set" => "test",
                            _ => "commit",
                        }
                        .into(),
                    );
                    job.status.journal = Some(journal.clone());
                    generation = self.save_job(path, &job, generation)?;
                }
                "commit" => {
                    let (mount, rest) = self.kv_target(path)?;
                    let pending = journal.pending.clone().unwrap_or_default();
                    let period_ms = job.policy.period.saturating_mul(1000);
                    let next = rotation::next_due(
                        journal.due,
                        now_ms,
                        period_ms,
                        rotation::jitter(period_ms),
                    );
                    let mut finishing = journal.clone();
                    finishing.step = Some("finish".into());
                    // `finish` is told the new credential too, so it can make sure it keeps it.
                    finishing.finish_at =
                        Some(now_ms.saturating_add(job.policy.grace.saturating_mul(1000)));
                    let mut done = job.clone();
                    done.status = completed(
                        &job.status,
                        now_ms,
                        next,
                        journal.before,
                        journal.before + 1,
                    );
                    done.status.journal = Some(finishing.clone());
                    match self.commit_rotation(
                        path,
                        (&mount, &rest),
                        &pending,
                        journal.before,
                        (&done, generation),
                        now,
                    ) {
                        Ok((from, to)) => {
                            run = Run { from, to };
                            self.audit_rotation(
                                &journal.rotation_id,
                                path,
                                "command",
                                (from, to),
                                "ok",
                                None,
                            )?;
                            self.rotations_ok.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%path, from, to, "secret rotated by its rotator; the old credential is revoked after the grace period");
                            job = done;
                            journal = finishing;
                            generation += 1;
                        }
                        Err(e) if e.status == 409 => {
                            // The secret was written meanwhile: this rotation's credential is
                            // not used. The rotator is asked to revoke it (`abort`), and the
                            // next attempt starts a new rotation from the new version.
                            if let Err(abort) =
                                rotation::command::run_step(rotator, "abort", &input)
                            {
                                tracing::warn!(%path, error = %abort, "rotator could not abort; the unused credential may stay valid at the provider");
                            }
                            let message = "the secret changed during the rotation; it was abandoned and will be retried";
                            let error = self.command_failed(path, &journal, &step, message, now_ms);
                            if let Ok(Some((mut fresh, generation))) = self.secret_job(path) {
                                fresh.status.journal = None;
                                let _ = self.save_job(path, &fresh, generation);
                            }
                            return Err(error);
                        }
                        Err(e) => {
                            return Err(self.command_failed(
                                path,
                                &journal,
                                &step,
                                &e.messages.join("; "),
                                now_ms,
                            ));
                        }
                    }
                }
                "finish" => {
                    if now_ms < journal.finish_at.unwrap_or(0) {
                        return Ok(run);
                    }
                    if let Err(e) = rotation::command::run_step(rotator, "finish", &input) {
                        return Err(self.command_failed(
                            path,
                            &journal,
                            &step,
                            &e.to_string(),
                            now_ms,
                        ));
                    }
                    job.status.journal = None;
                    job.status.failures = 0;
                    job.status.retry_at = None;
                    self.save_job(path, &job, generation)?;
                    self.audit_rotation(
                        &journal.rotation_id,
                        path,
                        "command",
                        (run.from, run.to),
                        "finished",
                        None,
                    )?;
                    return Ok(run);
                }
                other => {
                    return Err(ApiError::internal(format!(
                        "rotation journal of {path} has an unknown step {other:?}"
                    )));
                }
            }
        }
    }

    /// Records a failed step (the journal stays, so the retry resumes at that step with the
    /// same rotation ID) and returns the error to report.
    fn command_failed(
        &self,
        path: &str,
        journal: &Journal,
        step: &str,
        message: &str,
        now_ms: u64,
    ) -> ApiError {
        self.rotations_failed.fetch_add(1, Ordering::Relaxed);
        let message = format!("step {step}: {message}");
        let _ = self.audit_rotation(
            &journal.rotation_id,
            path,
            "command",
            (journal.before, journal.before + 1),
            "failed",
            Some(&message),
        );
        self.record_failure(path, &message, now_ms);
        tracing::warn!(%path, %message, "rotation step failed; it is retried");
        ApiError {
            status: 502,
            ..ApiError::bad_request(format!("rotation of {path} failed at {message}"))
        }
    }

    /// Writes `value` as the new version of the job's field, if the secret is still at
    /// `from`, in one commit with `done`, the job's record after the rotation.
    fn commit_rotation(
        &self,
        path: &str,
        (mount, rest): (&MountEntry, &str),
        value: &str,
        from: u64,
        (done, generation): (&SecretJob, u64),
        now: SystemTime,
    ) -> Result<(u64, u64), ApiError> {
        let body = encode(done)?;
        let id = job_record(path)?;
        let also = [Change::Put {
            id: &id,
            value: &body,
            expect: Expect::Generation(generation),
        }];
        self.kv
            .rotate_field(mount, rest, (&done.policy.field, value), from, &also, now)
    }

    fn save_job(&self, path: &str, job: &SecretJob, generation: u64) -> Result<u64, ApiError> {
        self.barrier
            .put(
                &job_record(path)?,
                &encode(job)?,
                Expect::Generation(generation),
            )
            .map_err(conflict)
    }

    fn record_failure(&self, path: &str, message: &str, now_ms: u64) {
        let Ok(Some((mut job, generation))) = self.secret_job(path) else {
            return;
        };
        job.status.failures = job.status.failures.saturating_add(1);
        job.status.last_error = Some(message.to_string());
        let delay = u64::try_from(rotation::retry_delay(job.status.failures).as_millis())
            .unwrap_or(u64::MAX);
        job.status.retry_at = Some(now_ms.saturating_add(delay));
        if let (Ok(id), Ok(body)) = (job_record(path), encode(&job)) {
            let _ = self.barrier.put(&id, &body, Expect::Generation(generation));
        }
    }

    /// The keyring's scheduled rotation, journalled so that a crash between adding the term
    /// and recording it never adds a second term for one due date.
    fn keyring_tick(&self, now: SystemTime) -> Result<(), ApiError> {
        let (job, generation) = self.keyring_job()?;
        let now_ms = millis(now);
        if !job.enabled || (job.status.journal.is_none() && now_ms < job.status.next_due) {
            return Ok(());
        }
        let keyring = self.barrier.keyring()?;
        let (journal, generation) = match &job.status.journal {
            Some(journal) => (journal.clone(), generation),
            None => {
                let journal = Journal::new(
                    uuid::Uuid::new_v4().to_string(),
                    job.status.next_due,
                    u64::from(keyring.active_term().0),
                );
                self.audit_rotation(
                    &journal.rotation_id,
                    "keyring",
                    "keyring",
                    (journal.before, journal.before + 1),
                    "start",
                    None,
                )?;
                let mut started = job.clone();
                started.status.journal = Some(journal.clone());
                let generation = self
                    .barrier
                    .put(
                        &keyring_record()?,
                        &encode(&started)?,
                        Expect::Generation(generation),
                    )
                    .map_err(conflict)?;
                (journal, generation)
            }
        };
        // Steps may run twice; the term is added once: only if it is still the one from before.
        if u64::from(keyring.active_term().0) == journal.before {
            self.barrier.rotate(now)?;
        }
        let to = u64::from(keyring.active_term().0);
        let period_ms = job.interval.saturating_mul(1000);
        let mut done = job.clone();
        done.status = completed(
            &job.status,
            now_ms,
            rotation::next_due(journal.due, now_ms, period_ms, rotation::jitter(period_ms)),
            journal.before,
            to,
        );
        self.barrier
            .put(
                &keyring_record()?,
                &encode(&done)?,
                Expect::Generation(generation),
            )
            .map_err(conflict)?;
        self.audit_rotation(
            &journal.rotation_id,
            "keyring",
            "keyring",
            (journal.before, to),
            "ok",
            None,
        )?;
        self.rotations_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(from = journal.before, to, "keyring rotated on schedule");
        Ok(())
    }

    /// Starts a background rewrap when old key terms remain (after a rotation, a wear-out,
    /// or a rewrap cut short), at most once a minute after a failure.
    fn rewrap_if_needed(&self, now: SystemTime) {
        let Ok(keyring) = self.barrier.keyring() else {
            return;
        };
        if keyring.terms().len() < 2 || self.barrier.rewrap_status().running {
            return;
        }
        let now_ms = millis(now);
        if now_ms < self.rewrap_not_before.load(Ordering::Relaxed) {
            return;
        }
        self.rewrap_not_before
            .store(now_ms.saturating_add(60_000), Ordering::Relaxed);
        let barrier = Arc::clone(&self.barrier);
        let started = std::thread::Builder::new().name("vaultd-rewrap".into()).spawn(move || match barrier.rewrap() {
            Ok(report) => tracing::info!(rewrapped = report.rewrapped, destroyed = ?report.destroyed, "rewrap finished"),
            Err(e) => tracing::warn!(error = %e, "rewrap did not finish; it is retried"),
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the rewrap");
        }
    }

    /// Rotates the transit keys whose `auto_rotate_period` has passed, checking once a minute.
    /// Each rotation is audited before and after, like every scheduled rotation.
    fn rotate_transit_keys(&self, now: SystemTime) {
        let now_ms = millis(now);
        if now_ms < self.transit_not_before.load(Ordering::Relaxed) {
            return;
        }
        self.transit_not_before
            .store(now_ms.saturating_add(60_000), Ordering::Relaxed);
        for (path, mount) in self.mounts.all() {
            if mount.engine != EngineType::Transit {
                continue;
            }
            let due = mount
                .id()
                .and_then(|id| Ok((id, self.transit.keys_due(id, now)?)));
            let (id, due) = match due {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(mount = %path, error = %e, "cannot check transit keys for rotation");
                    continue;
                }
            };
            for (name, version) in due {
                let job = format!("{path}keys/{name}");
                let rotation_id = uuid::Uuid::new_v4().to_string();
                let versions = (u64::from(version), u64::from(version) + 1);
                let rotated = self
                    .audit_rotation(
                        &rotation_id,
                        &job,
                        "auto_rotate_period",
                        versions,
                        "start",
                        None,
                    )
                    .and_then(|()| self.transit.rotate_key(id, &name, now));
                match rotated {
                    Ok(to) => {
                        let versions = (u64::from(version), u64::from(to));
                        if let Err(e) = self.audit_rotation(
                            &rotation_id,
                            &job,
                            "auto_rotate_period",
                            versions,
                            "ok",
                            None,
                        ) {
                            tracing::warn!(key = %job, error = %e, "transit key rotated but the audit entry failed");
                        }
                        self.rotations_ok.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(key = %job, version = to, "transit key rotated on schedule");
                    }
                    Err(e) => {
                        self.rotations_failed.fetch_add(1, Ordering::Relaxed);
                        let message = e.messages.join("; ");
                        let _ = self.audit_rotation(
                            &rotation_id,
                            &job,
                            "auto_rotate_period",
                            versions,
                            "failed",
                            Some(&message),
                        );
                        tracing::warn!(key = %job, error = %e, "scheduled transit key rotation failed; it is retried");
                    }
                }
            }
        }
    }

    fn audit_rotation(
        &self,
        id: &str,
        job: &str,
        method: &str,
        (from, to): (u64, u64),
        result: &str,
        error: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut entry = Map::new();
        entry.insert(
            "time".into(),
            json!(crate::duration::timestamp(SystemTime::now())),
        );
        entry.insert("type".into(), json!("rotation"));
        entry.insert(
            "rotation".into(),
            json!({"id": id, "job": job, "method": method, "from": from, "to": to, "result": result}),
        );
        entry.insert("error".into(), json!(error.unwrap_or("")));
        self.audit.log(entry)
    }

    pub(super) fn secret_job(&self, path: &str) -> Result<Option<(SecretJob, u64)>, ApiError> {
        let Some(record) = self.barrier.get(&job_record(path)?)? else {
            return Ok(None);
        };
        let job = serde_json::from_slice(&record.value)
            .map_err(|e| ApiError::internal(format!("rotation job {path} does not parse: {e}")))?;
        Ok(Some((job, record.generation)))
    }

    pub(super) fn keyring_job(&self) -> Result<(KeyringJob, u64), ApiError> {
        match self.barrier.get(&keyring_record()?)? {
            Some(record) => Ok((
                serde_json::from_slice(&record.value)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
                record.generation,
            )),
            None => Ok((KeyringJob::default(), 0)),
        }
    }

    /// The KV v2 mount and path a rotation path names.
    fn kv_target(&self, path: &str) -> Result<(MountEntry, String), ApiError> {
        let (mount, rest) = self
            .mounts
            .resolve(path)
            .ok_or_else(|| ApiError::bad_request(format!("no mount serves {path}")))?;
        if mount.engine != EngineType::Kv {
            return Err(ApiError::bad_request(format!(
                "{} is not a KV mount",
                mount.path
            )));
        }
        crate::kv::check_path(rest)?;
        Ok((mount, rest.to_string()))
    }
}

fn completed(previous: &JobStatus, now_ms: u64, next_due: u64, from: u64, to: u64) -> JobStatus {
    JobStatus {
        next_due,
        last_rotated: Some(now_ms),
        runs: previous.runs.saturating_add(1),
        failures: 0,
        last_error: None,
        last_from: Some(from),
        last_to: Some(to),
        journal: None,
        retry_at: None,
    }
}

fn describe_job(job: &SecretJob, now: SystemTime) -> Value {
    let policy = &job.policy;
    let status = &job.status;
    json!({
        "method": policy.method.name(),
        "period": crate::duration::format(Duration::from_secs(policy.period)),
        "grace": crate::duration::format(Duration::from_secs(policy.grace)),
        "field": policy.field,
        "length": policy.length,
        "alphabet": policy.alphabet,
        "prefix": policy.prefix,
        "rotator": policy.rotator,
        "last_rotated": status.last_rotated.map(timestamp),
        "next_due": timestamp(status.next_due),
        "state": rotation::state(status, millis(now), policy.grace.saturating_mul(1000)),
        "last_error": status.last_error.as_deref().filter(|e| *e != "due"),
        "rotations": status.runs,
        "last_version": status.last_to,
        "in_progress": status.journal.as_ref().and_then(|j| j.step.clone()),
    })
}

fn timestamp(ms: u64) -> String {
    crate::duration::timestamp(UNIX_EPOCH + Duration::from_millis(ms))
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn conflict(e: BarrierError) -> ApiError {
    match e {
        BarrierError::Conflict { .. } => ApiError {
            status: 409,
            ..ApiError::bad_request("the rotation state changed meanwhile; retry")
        },
        other => other.into(),
    }
}

fn in_progress(path: &str) -> ApiError {
    ApiError {
        status: 409,
        ..ApiError::bad_request(format!(
            "a rotation of {path} is in progress; change or delete its policy once it has finished"
        ))
    }
}

fn reads_record(path: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::RotationState,
        MountId::SYSTEM,
        format!("reads/{path}"),
        0,
    )?)
}

fn job_record(path: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::RotationState,
        MountId::SYSTEM,
        format!("policy/{path}"),
        0,
    )?)
}

pub(super) fn keyring_record() -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::RotationState,
        MountId::SYSTEM,
        "keyring",
        0,
    )?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Running;

    #[test]
    fn one_rotation_per_secret_at_a_time() {
        let running = Running::default();
        let now = Duration::ZERO;
        let claim = running.claim("secret/a", now).expect("free");
        assert!(running.claim("secret/a", now).is_none(), "already running");
        assert!(
            running.claim("secret/b", now).is_some(),
            "another secret is free"
        );
        drop(claim);
        assert!(running.claim("secret/a", now).is_some(), "released on drop");
    }

    #[test]
    fn a_patient_claim_waits_for_a_short_one_to_end() {
        let running = std::sync::Arc::new(Running::default());
        let claim = running.claim("secret/a", Duration::ZERO).expect("free");
        let waiter = {
            let running = std::sync::Arc::clone(&running);
            std::thread::spawn(move || running.claim("secret/a", Duration::from_secs(10)).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(claim);
        assert!(waiter.join().unwrap(), "the waiting claim was not granted");
    }
}
