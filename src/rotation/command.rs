//! Running an external rotator: one step at a time, JSON in on stdin and out on stdout.
//!
//! The rotator is started as `command args… STEP` with an empty environment (only `PATH`),
//! so no variable of the daemon (a token, a key file path) reaches it. Credentials travel
//! only through stdin and stdout. Its stderr goes to the operational log, cut to 2 KiB, never
//! to the audit log. A step that does not finish within the rotator's timeout is killed and
//! counts as failed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Rotator;

/// The most a rotator may print on stdout.
const MAX_OUTPUT: u64 = 64 * 1024;

/// What went wrong with a step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The rotator could not be started.
    #[error("rotator {name} could not be started: {reason}")]
    Start {
        /// The rotator.
        name: String,
        /// Why.
        reason: String,
    },
    /// It ran longer than its timeout and was killed.
    #[error("rotator {name} step {step} timed out after {seconds} s")]
    Timeout {
        /// The rotator.
        name: String,
        /// The step.
        step: String,
        /// The timeout.
        seconds: u64,
    },
    /// It exited with a failure.
    #[error("rotator {name} step {step} failed ({status})")]
    Failed {
        /// The rotator.
        name: String,
        /// The step.
        step: String,
        /// The exit status.
        status: String,
    },
    /// Its output is not the JSON object the contract asks for.
    #[error("rotator {name} step {step} printed no JSON object")]
    Output {
        /// The rotator.
        name: String,
        /// The step.
        step: String,
    },
}

/// Runs `step` with `input` on stdin; returns the JSON object the rotator printed.
pub fn run_step(
    rotator: &Rotator,
    step: &str,
    input: &Value,
) -> Result<serde_json::Map<String, Value>, StepError> {
    let name = rotator.name.clone();
    let mut child = Command::new(&rotator.command)
        .args(&rotator.args)
        .arg(step)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StepError::Start {
            name: name.clone(),
            reason: e.to_string(),
        })?;

    // Read both pipes on their own threads so a chatty rotator cannot block on a full pipe.
    let stdout = child
        .stdout
        .take()
        .map(|out| std::thread::spawn(move || read_limited(out)));
    let stderr = child
        .stderr
        .take()
        .map(|err| std::thread::spawn(move || read_limited(err)));
    if let Some(mut stdin) = child.stdin.take() {
        let body = serde_json::to_vec(input).unwrap_or_default();
        // A rotator that does not read its input is its own business; a broken pipe is fine.
        let _ = stdin.write_all(&body);
    }

    let deadline = Instant::now() + rotator.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StepError::Timeout {
                    name,
                    step: step.into(),
                    seconds: rotator.timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(StepError::Start {
                    name,
                    reason: e.to_string(),
                });
            }
        }
    };
    let output = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
    let errors = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if !errors.is_empty() {
        let text = String::from_utf8_lossy(&errors[..errors.len().min(2048)]).into_owned();
        tracing::info!(rotator = %rotator.name, step, stderr = %text, "rotator wrote to stderr");
    }
    if !status.success() {
        return Err(StepError::Failed {
            name,
            step: step.into(),
            status: status.to_string(),
        });
    }
    match serde_json::from_slice::<Value>(&output) {
        Ok(Value::Object(map)) => Ok(map),
        _ if output.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::Map::new()),
        _ => Err(StepError::Output {
            name,
            step: step.into(),
        }),
    }
}

fn read_limited(stream: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.take(MAX_OUTPUT).read_to_end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    fn shell(script: &str, timeout: u64) -> Rotator {
        Rotator {
            name: "test".into(),
            command: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into(), "rotator".into()],
            timeout: Duration::from_secs(timeout),
        }
    }

    #[test]
    fn json_in_json_out_and_the_step_as_last_argument() {
        let rotator = shell(
            r#"read input; printf '{"step":"%s","echo":%s}' "$1" "$input""#,
            5,
        );
        let out = run_step(&rotator, "create", &json!({"x": 1})).unwrap();
        assert_eq!(out["step"], "create");
        assert_eq!(out["echo"], json!({"x": 1}));
    }

    #[test]
    fn the_environment_is_empty() {
        let rotator = shell(r#"printf '{"token":"%s"}' "${VAULT_TOKEN:-none}""#, 5);
        let out = run_step(&rotator, "test", &json!({})).unwrap();
        assert_eq!(out["token"], "none");
    }

    #[test]
    fn failures_timeouts_and_bad_output() {
        assert!(matches!(
            run_step(&shell("echo oops >&2; exit 3", 5), "test", &json!({})),
            Err(StepError::Failed { .. })
        ));
        assert!(matches!(
            run_step(&shell("sleep 5", 1), "test", &json!({})),
            Err(StepError::Timeout { .. })
        ));
        assert!(matches!(
            run_step(&shell("echo not json", 5), "test", &json!({})),
            Err(StepError::Output { .. })
        ));
        assert!(
            run_step(&shell("true", 5), "finish", &json!({}))
                .unwrap()
                .is_empty()
        );
        let missing = Rotator {
            command: PathBuf::from("/nonexistent"),
            ..shell("", 1)
        };
        assert!(matches!(
            run_step(&missing, "create", &json!({})),
            Err(StepError::Start { .. })
        ));
    }
}
