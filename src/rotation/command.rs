//! Running an external rotator: one step at a time, JSON in on stdin and out on stdout.
//!
//! The rotator is started as `command args… STEP` with an empty environment (only `PATH`),
//! so no variable of the daemon (a token, a key file path) reaches it. Credentials travel
//! only through stdin and stdout. Its stderr goes to the operational log at debug level, cut
//! to 2 KiB, never to the audit log. A step that does not finish within the rotator's timeout is killed and
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
///
/// The rotator runs in its own process group, and a timeout kills the whole group, so a
/// rotator that started helpers of its own (a shell pipeline, a background process) cannot
/// keep the step, or the pipes it reads, alive past its timeout.
pub fn run_step(
    rotator: &Rotator,
    step: &str,
    input: &Value,
) -> Result<serde_json::Map<String, Value>, StepError> {
    use std::os::unix::process::CommandExt;

    let name = rotator.name.clone();
    let deadline = Instant::now() + rotator.timeout;
    let timed_out = || StepError::Timeout {
        name: name.clone(),
        step: step.into(),
        seconds: rotator.timeout.as_secs(),
    };
    let mut child = Command::new(&rotator.command)
        .args(&rotator.args)
        .arg(step)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| StepError::Start {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    let group = rustix::process::Pid::from_child(&child);
    let kill_group = |child: &mut std::process::Child| {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = child.kill();
        let _ = child.wait();
    };

    // Every pipe is served by its own thread, so neither a rotator that never reads its
    // input nor one that fills a pipe can block the daemon past the deadline.
    let (stdout_tx, stdout_rx) = std::sync::mpsc::channel();
    let (stderr_tx, stderr_rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || stdout_tx.send(read_limited(out)));
    }
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || stderr_tx.send(read_limited(err)));
    }
    if let Some(mut stdin) = child.stdin.take() {
        let body = serde_json::to_vec(input).unwrap_or_default();
        // A rotator that does not read its input is its own business; a broken pipe is fine.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
    }

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                return Err(timed_out());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                kill_group(&mut child);
                return Err(StepError::Start {
                    name,
                    reason: e.to_string(),
                });
            }
        }
    };
    // The rotator has exited, but something it started may still hold its stdout open.
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let Ok(output) = stdout_rx.recv_timeout(remaining()) else {
        kill_group(&mut child);
        return Err(timed_out());
    };
    let errors = stderr_rx.recv_timeout(remaining()).unwrap_or_default();
    if !errors.is_empty() {
        let text = String::from_utf8_lossy(&errors[..errors.len().min(2048)]).into_owned();
        tracing::debug!(rotator = %rotator.name, step, stderr = %text, "rotator wrote to stderr");
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
    let mut limited = stream.take(MAX_OUTPUT);
    let _ = limited.read_to_end(&mut out);
    // Drain the rest so the rotator is not blocked on a full pipe; it is not kept.
    let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
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
        // A helper left running with the rotator's stdout open cannot hold the step past its
        // timeout, and is killed with the rotator's process group.
        assert!(matches!(
            run_step(&shell("sleep 30 & printf '{}'", 1), "test", &json!({})),
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
