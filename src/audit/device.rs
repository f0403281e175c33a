//! A file audit device: one writer thread per file, group commit, chained and signed lines.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{AuditKeys, CHECKPOINT_CONTEXT};
use crate::api::ApiError;
use crate::crypto::sha256;

/// The most entries one group commit covers.
const MAX_GROUP: usize = 1024;

type Reply = mpsc::SyncSender<Result<(), String>>;

/// An open file device.
pub struct FileDevice {
    name: String,
    path: PathBuf,
    declared: bool,
    description: String,
    queue: Option<mpsc::Sender<(Map<String, Value>, Reply)>>,
    writer: Option<JoinHandle<()>>,
    head: Arc<Mutex<Head>>,
}

/// The end of a device's chain: the last line's sequence number and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The sequence number of the last line.
    pub seq: u64,
    /// The SHA-256 of the last line, hex in JSON.
    #[serde(with = "hex::serde")]
    pub hash: [u8; 32],
}

impl FileDevice {
    /// Opens (creating with mode 0600) the log file and continues its chain: from the file's
    /// last line, or, for a new empty file (after rotation), from `stored`, the head kept in
    /// the barrier when the device was last closed. A file whose end differs from `stored`
    /// was changed while the vault was not writing it; that is logged as an error.
    pub fn open(
        name: &str,
        path: &Path,
        declared: bool,
        description: &str,
        keys: Arc<AuditKeys>,
        stored: Option<Head>,
    ) -> Result<Self, ApiError> {
        let unavailable = |e: io::Error| {
            ApiError::bad_request(format!("cannot open audit file {}: {e}", path.display()))
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(unavailable)?;
        let found = chain_head(&mut file).map_err(unavailable)?;
        let head = match (found, stored) {
            (None, Some(stored)) => stored,
            (None, None) => Head {
                seq: 0,
                hash: [0; 32],
            },
            (Some(found), Some(stored)) if found != stored => {
                // The head is recorded at seal, so after a crash the file is simply longer;
                // a shorter or different file means it was cut or replaced.
                tracing::error!(
                    device = name,
                    path = %path.display(),
                    expected_seq = stored.seq,
                    found_seq = found.seq,
                    "the audit file does not end where the vault last recorded it: expected after a crash if it is longer, otherwise it was cut or replaced while closed"
                );
                found
            }
            (Some(found), _) => found,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(unavailable)?;
        }
        let (queue, jobs) = mpsc::channel();
        let thread_name = format!("vaultd-audit-{name}");
        let shared = Arc::new(Mutex::new(head));
        let mut chain = Chain {
            file,
            seq: head.seq,
            prev: head.hash,
            keys,
            head: Arc::clone(&shared),
        };
        let writer = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || chain.run(&jobs))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(FileDevice {
            name: name.to_string(),
            path: path.to_path_buf(),
            declared,
            description: description.to_string(),
            queue: Some(queue),
            writer: Some(writer),
            head: shared,
        })
    }

    /// The end of the chain as last made durable.
    pub fn head(&self) -> Head {
        *self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it was declared in the configuration file.
    pub fn declared(&self) -> bool {
        self.declared
    }

    /// Queues an entry; the receiver answers once it is durable or failed.
    pub fn submit(
        &self,
        entry: Map<String, Value>,
    ) -> Result<mpsc::Receiver<Result<(), String>>, String> {
        let (reply, done) = mpsc::sync_channel(1);
        let queue = self.queue.as_ref().ok_or("device closed")?;
        queue
            .send((entry, reply))
            .map_err(|_| "device writer stopped".to_string())?;
        Ok(done)
    }

    /// The device as `sys/audit` shows it.
    pub fn describe(&self) -> Value {
        json!({
            "type": "file",
            "description": self.description,
            "options": {"file_path": self.path.display().to_string()},
            "local": false,
            "path": format!("{}/", self.name),
        })
    }
}

impl Drop for FileDevice {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

struct Chain {
    file: File,
    seq: u64,
    prev: [u8; 32],
    keys: Arc<AuditKeys>,
    head: Arc<Mutex<Head>>,
}

impl Chain {
    fn run(&mut self, jobs: &mpsc::Receiver<(Map<String, Value>, Reply)>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Ok(first) = jobs.recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let (seq, prev) = (self.seq, self.prev);
            let mut buffer = Vec::with_capacity(group.len() * 512);
            for (entry, _) in &mut group {
                self.append(entry, &mut buffer);
            }
            self.append_checkpoint(&mut buffer);
            let length = self.file.metadata().map(|m| m.len()).ok();
            let result = self
                .file
                .write_all(&buffer)
                .and_then(|()| self.file.sync_data());
            match &result {
                Ok(()) => {
                    *self.head.lock().unwrap_or_else(|p| p.into_inner()) = Head {
                        seq: self.seq,
                        hash: self.prev,
                    };
                }
                Err(_) => {
                    // Nothing of this group counts: cut off what was written of it, and chain
                    // the next group from the last durable line.
                    if let Some(length) = length {
                        let _ = self.file.set_len(length);
                    }
                    self.seq = seq;
                    self.prev = prev;
                }
            }
            let reply = result.map_err(|e| e.to_string());
            for (_, sender) in group.drain(..) {
                let _ = sender.send(reply.clone());
            }
        }
        // A last checkpoint is already on disk after every group; nothing more to sign here.
    }

    fn append(&mut self, entry: &mut Map<String, Value>, buffer: &mut Vec<u8>) {
        self.seq += 1;
        entry.insert(
            "chain".into(),
            json!({"seq": self.seq, "prev": hex::encode(self.prev)}),
        );
        let start = buffer.len();
        // Serialising a map of JSON values cannot fail.
        let _ = serde_json::to_writer(&mut *buffer, &entry);
        self.prev = sha256(&buffer[start..]);
        buffer.push(b'\n');
    }

    fn append_checkpoint(&mut self, buffer: &mut Vec<u8>) {
        let head = hex::encode(self.prev);
        let signature = self
            .keys
            .sign(format!("{CHECKPOINT_CONTEXT} {} {head}", self.seq + 1).as_bytes());
        let mut entry = Map::new();
        entry.insert(
            "time".into(),
            json!(crate::duration::timestamp(SystemTime::now())),
        );
        entry.insert("type".into(), json!("checkpoint"));
        entry.insert("signature".into(), json!(signature));
        self.append(&mut entry, buffer);
    }
}

/// The sequence number and hash of the last line of an existing log, to continue its chain;
/// `None` for an empty file.
fn chain_head(file: &mut File) -> io::Result<Option<Head>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let start = len.saturating_sub(256 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let last = body.rsplit(|b| *b == b'\n').next().unwrap_or(body);
    let seq = serde_json::from_slice::<Value>(last)
        .ok()
        .and_then(|v| {
            v.get("chain")
                .and_then(|c| c.get("seq"))
                .and_then(Value::as_u64)
        })
        .unwrap_or(0);
    if !tail.ends_with(b"\n") {
        // A torn last line: start a new line so the next entry stays parseable.
        file.write_all(b"\n")?;
    }
    Ok(Some(Head {
        seq,
        hash: sha256(last),
    }))
}
