//! The vault pipeline in process, over in-memory storage, with time passed in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::*;
use crate::api::{ClientToken, Operation, Request};
use crate::config::Limits;
use crate::crypto::shamir::UnsealShare;
use crate::keyring::KeyringConfig;
use crate::seal::SealMechanism;
use crate::storage::{MemoryStorage, Storage};

struct Harness {
    storage: Arc<dyn Storage>,
    vault: Vault,
    share: String,
    token: String,
}

fn options() -> VaultOptions {
    VaultOptions {
        seal: SealMechanism::Shamir,
        keyring: KeyringConfig::default(),
        audit: Vec::new(),
        limits: Limits {
            requests_per_second_per_token: 100_000,
            burst_per_token: 100_000,
            ..Limits::default()
        },
        allow_init_from_any_address: false,
        rotators: Vec::new(),
        transit_encryption_limit: crate::transit::MAX_ENCRYPTIONS,
    }
}

impl Harness {
    fn new() -> Harness {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let vault = Vault::new(Arc::clone(&storage), options());
        let init = vault.initialize(1, 1).unwrap();
        let share = init.shares[0].to_hex();
        let token = init.root_token.to_string();
        let harness = Harness {
            storage,
            vault,
            share,
            token,
        };
        harness.unseal();
        harness
    }

    /// The same store under a new vault, as after a restart.
    fn restart(self) -> Harness {
        // As a stopping daemon does: seal first, which also stops a rewrap under way.
        self.vault.seal_now();
        let vault = Vault::new(Arc::clone(&self.storage), options());
        let harness = Harness { vault, ..self };
        harness.unseal();
        harness
    }

    fn unseal(&self) {
        self.vault
            .unseal(UnsealShare::parse(&self.share).unwrap(), None)
            .unwrap();
    }

    fn call(
        &self,
        operation: Operation,
        path: &str,
        data: Value,
    ) -> Result<Option<Value>, ApiError> {
        let request = Request {
            id: "test".into(),
            operation,
            path: path.into(),
            data: data.as_object().cloned().unwrap_or_default(),
            token: Some(ClientToken(Zeroizing::new(self.token.clone()))),
            remote: SocketAddr::from(([127, 0, 0, 1], 1)),
            wrap_ttl: None,
            client_certificates: None,
        };
        self.vault.handle(&request).result.map(|r| r.data)
    }

    fn version(&self, path: &str) -> u64 {
        let data = self
            .call(Operation::Read, &format!("secret/data/{path}"), json!({}))
            .unwrap()
            .unwrap();
        data["metadata"]["version"].as_u64().unwrap()
    }
}

fn at(seconds: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000) + Duration::from_secs_f64(seconds)
}

/// Sets a policy whose first due time is one period after `created`.
fn generate_every(harness: &Harness, path: &str, period: &str, created: SystemTime) {
    harness
        .call(
            Operation::Write,
            &format!("secret/data/{path}"),
            json!({"data": {"key": "initial"}}),
        )
        .unwrap();
    let mut request_data = json!({"method": "generate", "period": period, "field": "key"});
    request_data["length"] = json!(24);
    // Policies count from the time they are written; write it "at" `created`.
    harness
        .vault
        .rotation_route(
            &Route::RotationPolicy(&format!("secret/{path}")),
            &Request {
                id: "test".into(),
                operation: Operation::Write,
                path: format!("sys/rotation/policy/secret/{path}"),
                data: request_data.as_object().cloned().unwrap_or_default(),
                token: None,
                remote: SocketAddr::from(([127, 0, 0, 1], 1)),
                wrap_ttl: None,
                client_certificates: None,
            },
            created,
        )
        .unwrap();
}

#[test]
fn a_one_second_period_gives_one_rotation_per_second() {
    let harness = Harness::new();
    generate_every(&harness, "app", "1s", at(0.0));
    // Ticks every 100 ms for ten seconds of fake time.
    for step in 1..=100 {
        harness.vault.rotation_tick(at(f64::from(step) * 0.1));
    }
    // Version 1 is the initial value; jitter (under 50 ms) may push the tenth due time past
    // the last tick.
    let rotations = harness.version("app") - 1;
    assert!(
        (9..=10).contains(&rotations),
        "{rotations} rotations in 10 s"
    );
}

#[test]
fn a_restart_does_not_rotate_again_for_the_same_due_date() {
    let harness = Harness::new();
    generate_every(&harness, "app", "60s", at(0.0));
    harness.vault.rotation_tick(at(61.0));
    assert_eq!(harness.version("app"), 2);
    let harness = harness.restart();
    harness.vault.rotation_tick(at(61.0));
    harness.vault.rotation_tick(at(62.0));
    assert_eq!(harness.version("app"), 2, "rotated twice for one due date");
    // The job survived the restart: the next period still rotates.
    harness.vault.rotation_tick(at(125.0));
    assert_eq!(harness.version("app"), 3);
}

#[test]
fn a_clock_jump_forward_rotates_once_and_backward_not_at_all() {
    let harness = Harness::new();
    generate_every(&harness, "app", "60s", at(0.0));
    harness.vault.rotation_tick(at(30.0));
    assert_eq!(harness.version("app"), 1);
    // A day later in one jump: one rotation, not 1,440.
    harness.vault.rotation_tick(at(86_400.0));
    harness.vault.rotation_tick(at(86_400.5));
    assert_eq!(harness.version("app"), 2);
    // Back to the start: nothing is due.
    harness.vault.rotation_tick(at(10.0));
    harness.vault.rotation_tick(at(70.0));
    assert_eq!(harness.version("app"), 2);
}

#[test]
fn generated_credentials_replace_only_their_field() {
    let harness = Harness::new();
    harness
        .call(
            Operation::Write,
            "secret/data/svc",
            json!({"data": {"key": "old", "user": "svc"}}),
        )
        .unwrap();
    harness.call(Operation::Write, "sys/rotation/policy/secret/svc", json!({"method": "generate", "period": "1h", "field": "key", "prefix": "sk-", "length": 30})).unwrap();
    let run = harness
        .call(
            Operation::Write,
            "sys/rotation/rotate/secret/svc",
            json!({}),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (run["from_version"].clone(), run["to_version"].clone()),
        (json!(1), json!(2))
    );
    let data = harness
        .call(Operation::Read, "secret/data/svc", json!({}))
        .unwrap()
        .unwrap();
    let key = data["data"]["key"].as_str().unwrap();
    assert!(key.starts_with("sk-") && key.len() == 33, "{key}");
    assert_eq!(data["data"]["user"], "svc");
    let status = harness
        .call(Operation::Read, "sys/rotation/policy/secret/svc", json!({}))
        .unwrap()
        .unwrap();
    assert_eq!(status["state"], "ok");
    assert_eq!(status["rotations"], 1);
    assert_eq!(status["last_version"], 2);
}

#[test]
fn keyring_rotation_on_schedule_happens_once_per_due_date() {
    let harness = Harness::new();
    let term = |h: &Harness| h.vault.barrier().keyring().unwrap().active_term().0;
    assert_eq!(term(&harness), 1);
    harness
        .vault
        .rotation_route(
            &Route::RotateConfig,
            &Request {
                id: "t".into(),
                operation: Operation::Write,
                path: "sys/rotate/config".into(),
                data: json!({"enabled": true, "interval": "60s"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                token: None,
                remote: SocketAddr::from(([127, 0, 0, 1], 1)),
                wrap_ttl: None,
                client_certificates: None,
            },
            at(0.0),
        )
        .unwrap();
    harness.vault.rotation_tick(at(30.0));
    assert_eq!(term(&harness), 1);
    harness.vault.rotation_tick(at(61.0));
    harness.vault.rotation_tick(at(61.5));
    assert_eq!(term(&harness), 2);
    let harness = harness.restart();
    harness.vault.rotation_tick(at(62.0));
    assert_eq!(term(&harness), 2);
    harness.vault.rotation_tick(at(125.0));
    assert_eq!(term(&harness), 3);
}

#[test]
fn manual_policies_only_report() {
    let harness = Harness::new();
    harness
        .call(
            Operation::Write,
            "secret/data/hand",
            json!({"data": {"key": "x"}}),
        )
        .unwrap();
    harness
        .vault
        .rotation_route(
            &Route::RotationPolicy("secret/hand"),
            &Request {
                id: "t".into(),
                operation: Operation::Write,
                path: "sys/rotation/policy/secret/hand".into(),
                data: json!({"method": "manual", "period": "60s", "grace": "30s"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                token: None,
                remote: SocketAddr::from(([127, 0, 0, 1], 1)),
                wrap_ttl: None,
                client_certificates: None,
            },
            at(0.0),
        )
        .unwrap();
    harness.vault.rotation_tick(at(70.0));
    assert_eq!(
        harness.version("hand"),
        1,
        "a manual policy changed the secret"
    );
    let metrics = String::from_utf8(harness.vault.metrics().raw.unwrap().1).unwrap();
    assert!(
        metrics.contains("vaultd_rotation_jobs{state=\"ok\"} 1")
            || metrics.contains("vaultd_rotation_jobs{state=\"overdue\"} 1"),
        "{metrics}"
    );
    let (job, _) = harness.vault.secret_job("secret/hand").unwrap().unwrap();
    assert_eq!(
        crate::rotation::state(&job.status, crate::rotation::millis(at(70.0)), 30_000),
        "due"
    );
    assert_eq!(
        crate::rotation::state(&job.status, crate::rotation::millis(at(100.0)), 30_000),
        "overdue"
    );
}

/// A crash between the journal entry and the new term, and one between the new term and the
/// job's record, both finish the rotation at the next tick with exactly one new term.
#[test]
fn an_interrupted_keyring_rotation_resumes_without_a_second_term() {
    use crate::barrier::Expect;
    use crate::rotation::Journal;

    for crashed_after_rotate in [false, true] {
        let harness = Harness::new();
        let keyring = harness.vault.barrier().keyring().unwrap();
        let (mut job, _) = harness.vault.keyring_job().unwrap();
        job.enabled = true;
        job.interval = 60;
        job.status.next_due = crate::rotation::millis(at(60.0));
        job.status.journal = Some(Journal::new("r-1".into(), job.status.next_due, 1));
        if crashed_after_rotate {
            harness.vault.barrier().rotate(at(61.0)).unwrap();
        }
        let body = rotation::encode(&job).unwrap();
        harness
            .vault
            .barrier()
            .put(&rotation::keyring_record().unwrap(), &body, Expect::Any)
            .unwrap();
        drop(keyring);

        // The restart finds the journal and finishes the rotation.
        let harness = harness.restart();
        harness.vault.rotation_tick(at(61.5));
        let keyring = harness.vault.barrier().keyring().unwrap();
        assert_eq!(
            keyring.active_term().0,
            2,
            "crashed after rotate: {crashed_after_rotate}"
        );
        let (job, _) = harness.vault.keyring_job().unwrap();
        assert!(job.status.journal.is_none());
        assert_eq!(job.status.runs, 1);
        assert!(job.status.next_due > crate::rotation::millis(at(61.5)));
    }
}

#[test]
fn provider_keys_are_checked_and_only_fingerprinted() {
    let harness = Harness::new();
    harness
        .call(
            Operation::Write,
            "secret/metadata/openai",
            json!({"custom_metadata": {"provider": "openai"}}),
        )
        .unwrap();
    let good = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
    let write = |key: &str| {
        let request = Request {
            id: "t".into(),
            operation: Operation::Write,
            path: "secret/data/openai".into(),
            data: json!({"data": {"api_key": key}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            token: Some(ClientToken(Zeroizing::new(harness.token.clone()))),
            remote: SocketAddr::from(([127, 0, 0, 1], 1)),
            wrap_ttl: None,
            client_certificates: None,
        };
        harness.vault.handle(&request).result.unwrap().warnings
    };
    assert!(write(good).is_empty());
    let warnings = write("sk-ant-api03-not-an-openai-key-at-all-0000");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("does not look like a openai key")
            && !warnings[0].contains("not-an-openai"),
        "{warnings:?}"
    );

    harness
        .call(
            Operation::Write,
            "secret/data/openai",
            json!({"data": {"api_key": good}}),
        )
        .unwrap();
    harness
        .call(
            Operation::Write,
            "sys/rotation/policy/secret/openai",
            json!({"method": "manual", "period": "1h"}),
        )
        .unwrap();
    harness
        .call(
            Operation::Write,
            "sys/rotation/policy/secret/openai",
            json!({"method": "manual", "period": "1h", "field": "api_key"}),
        )
        .unwrap();
    let status = harness
        .call(
            Operation::Read,
            "sys/rotation/policy/secret/openai",
            json!({}),
        )
        .unwrap()
        .unwrap();
    assert_eq!(status["provider"], "openai");
    assert_eq!(status["fingerprint"], "sk-proj-…6789");
    assert!(
        !status.to_string().contains(good),
        "the status shows the key"
    );
    assert!(status["created"].is_string());
}

#[test]
fn a_read_by_a_person_makes_the_key_due_when_asked() {
    let harness = Harness::new();
    harness
        .call(
            Operation::Write,
            "secret/data/watched",
            json!({"data": {"key": "initial"}}),
        )
        .unwrap();
    let policy = json!({"method": "generate", "period": "720h", "field": "key", "rotate_after_human_read": true});
    harness
        .vault
        .rotation_route(
            &Route::RotationPolicy("secret/watched"),
            &Request {
                id: "t".into(),
                operation: Operation::Write,
                path: "sys/rotation/policy/secret/watched".into(),
                data: policy.as_object().cloned().unwrap_or_default(),
                token: None,
                remote: SocketAddr::from(([127, 0, 0, 1], 1)),
                wrap_ttl: None,
                client_certificates: None,
            },
            at(0.0),
        )
        .unwrap();
    harness.vault.rotation_tick(at(10.0));
    assert_eq!(harness.version("watched"), 1);
    // The root token reads it: a person has seen the key.
    harness
        .call(Operation::Read, "secret/data/watched", json!({}))
        .unwrap();
    harness.vault.rotation_tick(at(11.0));
    assert_eq!(
        harness.version("watched"),
        2,
        "a key a person read was not rotated"
    );
    let status = harness
        .call(
            Operation::Read,
            "sys/rotation/policy/secret/watched",
            json!({}),
        )
        .unwrap()
        .unwrap();
    assert!(status["last_reader"].is_string());
}

#[test]
fn transit_keys_rotate_once_per_auto_rotate_period() {
    let harness = Harness::new();
    let latest = |name: &str| {
        harness
            .call(Operation::Read, &format!("transit/keys/{name}"), json!({}))
            .unwrap()
            .unwrap()["latest_version"]
            .as_u64()
            .unwrap()
    };
    harness
        .call(
            Operation::Write,
            "transit/keys/scheduled",
            json!({"auto_rotate_period": "1h"}),
        )
        .unwrap();
    harness
        .call(Operation::Write, "transit/keys/by-hand", json!({}))
        .unwrap();
    let too_short = harness.call(
        Operation::Write,
        "transit/keys/scheduled/config",
        json!({"auto_rotate_period": "59m"}),
    );
    assert_eq!(too_short.unwrap_err().status, 400);

    // Made now, so long past due at the simulated times.
    harness.vault.rotation_tick(at(0.0));
    assert_eq!(latest("scheduled"), 2);
    assert_eq!(latest("by-hand"), 1, "a key without a period rotated");
    for seconds in [0.5, 61.0, 3_599.0] {
        harness.vault.rotation_tick(at(seconds));
        assert_eq!(latest("scheduled"), 2, "rotated again at {seconds} s");
    }
    harness.vault.rotation_tick(at(3_661.0));
    assert_eq!(latest("scheduled"), 3);
    harness.vault.rotation_tick(at(3_722.0));
    assert_eq!(latest("scheduled"), 3);
}
