//! Response wrapping: a response handed over once, through a short-lived wrapping token.
//!
//! A request with `X-Vault-Wrap-TTL` gets, instead of its response, a `wrap_info` with a
//! wrapping token; the response is kept in the barrier under the token's SHA-256 until it is
//! unwrapped (once: the record is deleted, atomically with a check of its generation, before
//! the response leaves) or its TTL passes. Wrapping tokens are not auth tokens: they carry
//! their own prefix (`vdw_`), open nothing but `sys/wrapping/*`, and are never stored in the
//! clear.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api::{ApiError, Response};
use crate::barrier::{Barrier, BarrierError, Expect, MountId, RecordId, RecordKind};
use crate::token::{hash_token, new_accessor, new_token_with, well_formed_with};

/// The prefix of every wrapping token.
pub const WRAPPING_TOKEN_PREFIX: &str = "vdw_";

/// The longest a response may stay wrapped: 768 hours, Vault's default maximum.
pub const MAX_WRAP_TTL: Duration = Duration::from_secs(768 * 3600);

/// The answer to a wrapping token that is unknown, used, expired or malformed, as Vault's.
pub const NOT_VALID: &str = "wrapping token is not valid or does not exist";

/// What is kept for one wrapping token. The response is sealed by the barrier like every
/// record.
#[derive(Serialize, Deserialize)]
struct Wrapped {
    /// The envelope's `data`, `auth` and `warnings`.
    data: Option<Value>,
    auth: Option<Value>,
    warnings: Vec<String>,
    /// The wrapping token's accessor.
    accessor: String,
    /// The path whose response this is.
    creation_path: String,
    /// Unix seconds and nanoseconds.
    created_secs: u64,
    created_nanos: u32,
    /// Seconds.
    ttl: u64,
    /// The accessor of the token in `auth`, if the response created one.
    wrapped_accessor: Option<String>,
}

impl Wrapped {
    fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::new(self.created_secs, self.created_nanos)
    }

    fn expired(&self, now: SystemTime) -> bool {
        now >= self.created() + Duration::from_secs(self.ttl)
    }

    fn wrap_info(&self, token: &str) -> Value {
        let mut info = json!({
            "token": token,
            "accessor": self.accessor,
            "ttl": self.ttl,
            "creation_time": crate::duration::timestamp(self.created()),
            "creation_path": self.creation_path,
        });
        if let (Some(accessor), Value::Object(map)) = (&self.wrapped_accessor, &mut info) {
            map.insert("wrapped_accessor".into(), json!(accessor));
        }
        info
    }
}

/// The wrapped responses.
pub struct WrappingStore {
    barrier: std::sync::Arc<Barrier>,
}

impl WrappingStore {
    /// A store over `barrier`.
    pub fn new(barrier: std::sync::Arc<Barrier>) -> Self {
        WrappingStore { barrier }
    }

    /// Whether `response` is one that wrapping applies to: a JSON envelope with data or auth.
    pub fn wraps(response: &Response) -> bool {
        response.status.is_none()
            && response.raw.is_none()
            && !response.plain
            && (response.data.is_some() || response.auth.is_some())
    }

    /// Keeps `response` of the request to `path` for `ttl`, and answers the response that
    /// replaces it: the `wrap_info` with a new wrapping token.
    pub fn wrap(
        &self,
        response: Response,
        path: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        if ttl < Duration::from_secs(1) || ttl > MAX_WRAP_TTL {
            return Err(ApiError::bad_request(
                "the wrap TTL must be between 1s and 768h",
            ));
        }
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let wrapped_accessor = response
            .auth
            .as_ref()
            .and_then(|a| a.get("accessor"))
            .and_then(Value::as_str)
            .map(String::from);
        let wrapped = Wrapped {
            data: response.data,
            auth: response.auth,
            warnings: response.warnings,
            accessor: new_accessor()?,
            creation_path: path.to_string(),
            created_secs: since.as_secs(),
            created_nanos: since.subsec_nanos(),
            ttl: ttl.as_secs(),
            wrapped_accessor,
        };
        let token = new_token_with(WRAPPING_TOKEN_PREFIX)?;
        let body = encode(&wrapped)?;
        self.barrier
            .put(&record(&token)?, &body, Expect::Absent)
            .map_err(|e| match e {
                BarrierError::TooLarge { .. } => ApiError::too_large(
                    "the response is too large to wrap: a wrapped response holds at most 64 KiB",
                ),
                other => other.into(),
            })?;
        Ok(Response {
            wrap_info: Some(wrapped.wrap_info(&token)),
            ..Response::default()
        })
    }

    /// The response `token` wraps, handed out once: the record is gone before it is
    /// returned.
    pub fn unwrap(&self, token: &str, now: SystemTime) -> Result<Response, ApiError> {
        let (id, wrapped, generation) = self.find(token, now)?;
        match self.barrier.delete(&id, Expect::Generation(generation)) {
            Ok(()) => {}
            // Another unwrap took it first.
            Err(BarrierError::Conflict { .. }) => return Err(ApiError::bad_request(NOT_VALID)),
            Err(other) => return Err(other.into()),
        }
        Ok(Response {
            data: wrapped.data,
            auth: wrapped.auth,
            warnings: wrapped.warnings,
            ..Response::default()
        })
    }

    /// Where and when `token`'s response was wrapped, without unwrapping it.
    pub fn lookup(&self, token: &str, now: SystemTime) -> Result<Response, ApiError> {
        let (_, wrapped, _) = self.find(token, now)?;
        Ok(Response::data(json!({
            "creation_path": wrapped.creation_path,
            "creation_time": crate::duration::timestamp(wrapped.created()),
            "creation_ttl": wrapped.ttl,
        })))
    }

    /// The same response under a new wrapping token with the same path and TTL; `token`
    /// stops working.
    pub fn rewrap(&self, token: &str, now: SystemTime) -> Result<Response, ApiError> {
        let (id, wrapped, generation) = self.find(token, now)?;
        let fresh = new_token_with(WRAPPING_TOKEN_PREFIX)?;
        let renewed = Wrapped {
            accessor: new_accessor()?,
            ..wrapped
        };
        let body = encode(&renewed)?;
        let new_id = record(&fresh)?;
        self.barrier
            .commit(&[
                crate::barrier::Change::Delete {
                    id: &id,
                    expect: Expect::Generation(generation),
                },
                crate::barrier::Change::Put {
                    id: &new_id,
                    value: &body,
                    expect: Expect::Absent,
                },
            ])
            .map_err(|e| match e {
                BarrierError::Conflict { .. } => ApiError::bad_request(NOT_VALID),
                other => other.into(),
            })?;
        Ok(Response {
            wrap_info: Some(renewed.wrap_info(&fresh)),
            ..Response::default()
        })
    }

    /// Deletes the wrapped responses whose TTL has passed at `now`; answers how many.
    pub fn sweep(&self, now: SystemTime) -> Result<usize, ApiError> {
        let mut removed = 0;
        let mut after = None;
        loop {
            let page = self.barrier.list(
                RecordKind::WrappedResponse,
                MountId::SYSTEM,
                "",
                after.as_ref(),
                256,
            )?;
            let Some(last) = page.last().cloned() else {
                return Ok(removed);
            };
            for id in &page {
                let Some(record) = self.barrier.get(id)? else {
                    continue;
                };
                let expired = serde_json::from_slice::<Wrapped>(&record.value)
                    .map_or(true, |w| w.expired(now));
                if expired
                    && self
                        .barrier
                        .delete(id, Expect::Generation(record.generation))
                        .is_ok()
                {
                    removed += 1;
                }
            }
            after = Some(last);
        }
    }

    /// The live record of `token`, with its generation. An expired one is deleted.
    fn find(&self, token: &str, now: SystemTime) -> Result<(RecordId, Wrapped, u64), ApiError> {
        if !well_formed_with(token, WRAPPING_TOKEN_PREFIX) {
            return Err(ApiError::bad_request(NOT_VALID));
        }
        let id = record(token)?;
        let record = self
            .barrier
            .get(&id)?
            .ok_or_else(|| ApiError::bad_request(NOT_VALID))?;
        // The error's kind and place only: its text could quote the wrapped secret.
        let wrapped: Wrapped = serde_json::from_slice(&record.value).map_err(|e| {
            ApiError::internal(format!(
                "wrapped response does not parse ({:?} at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if wrapped.expired(now) {
            let _ = self
                .barrier
                .delete(&id, Expect::Generation(record.generation));
            return Err(ApiError::bad_request(NOT_VALID));
        }
        Ok((id, wrapped, record.generation))
    }
}

fn encode(wrapped: &Wrapped) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    serde_json::to_vec(wrapped)
        .map(Zeroizing::new)
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn record(token: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::WrappedResponse,
        MountId::SYSTEM,
        hash_token(token),
        0,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> WrappingStore {
        WrappingStore::new(Barrier::unsealed_for_tests())
    }

    fn token_of(response: &Response) -> String {
        response.wrap_info.as_ref().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_response_unwraps_once() {
        let store = store();
        let now = SystemTime::now();
        let wrapped = store
            .wrap(
                Response::data(json!({"api_key": "sk-canary"})),
                "secret/data/app",
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        let token = token_of(&wrapped);
        assert!(token.starts_with(WRAPPING_TOKEN_PREFIX));
        assert!(wrapped.data.is_none());
        let info = store.lookup(&token, now).unwrap().data.unwrap();
        assert_eq!(info["creation_path"], "secret/data/app");
        assert_eq!(info["creation_ttl"], 60);

        let unwrapped = store.unwrap(&token, now).unwrap();
        assert_eq!(unwrapped.data.unwrap()["api_key"], "sk-canary");
        for again in [store.unwrap(&token, now), store.lookup(&token, now)] {
            assert_eq!(again.err().unwrap().messages, vec![NOT_VALID]);
        }
    }

    #[test]
    fn an_expired_response_is_gone() {
        let store = store();
        let now = SystemTime::now();
        let ttl = Duration::from_secs(5);
        let token = token_of(
            &store
                .wrap(Response::data(json!({"k": "v"})), "p", ttl, now)
                .unwrap(),
        );
        let later = now + ttl;
        assert_eq!(store.unwrap(&token, later).err().unwrap().status, 400);

        let kept = token_of(
            &store
                .wrap(Response::data(json!({"k": "v"})), "p", ttl, now)
                .unwrap(),
        );
        let short = token_of(
            &store
                .wrap(
                    Response::data(json!({"k": "v"})),
                    "p",
                    Duration::from_secs(1),
                    now,
                )
                .unwrap(),
        );
        assert_eq!(store.sweep(now + Duration::from_secs(2)).unwrap(), 1);
        assert!(store.lookup(&kept, now).is_ok());
        assert!(store.lookup(&short, now).is_err());
    }

    #[test]
    fn rewrap_moves_the_response_to_a_new_token() {
        let store = store();
        let now = SystemTime::now();
        let old = token_of(
            &store
                .wrap(
                    Response::data(json!({"k": "v"})),
                    "p",
                    Duration::from_secs(60),
                    now,
                )
                .unwrap(),
        );
        let new = token_of(&store.rewrap(&old, now).unwrap());
        assert_ne!(old, new);
        assert!(store.unwrap(&old, now).is_err());
        assert_eq!(store.unwrap(&new, now).unwrap().data.unwrap()["k"], "v");
    }

    #[test]
    fn bad_tokens_and_ttls_are_refused() {
        let store = store();
        let now = SystemTime::now();
        for token in [
            "",
            "vdw_short",
            "vdt_0000000000000000000000000000000000000000000abcdef",
        ] {
            assert_eq!(store.unwrap(token, now).err().unwrap().status, 400);
        }
        for ttl in [Duration::ZERO, MAX_WRAP_TTL + Duration::from_secs(1)] {
            let refused = store.wrap(Response::data(json!({})), "p", ttl, now);
            assert_eq!(refused.err().unwrap().status, 400);
        }
    }
}
