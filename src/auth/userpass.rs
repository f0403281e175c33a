//! `auth/userpass`: operators log in with a name and a password, as with Vault's userpass
//! method.
//!
//! Passwords are kept only as Argon2id hashes (t = 3, m = 64 MiB, p = 4) and must be at least
//! ten characters with an upper-case letter, a lower-case letter, a digit and a symbol, and
//! not be guessable (zxcvbn score 3 or more: no common password, dictionary word with
//! decorations, keyboard walk or the user's own name). A login answers a token of 30 minutes,
//! renewable up to 14 days, unless the user is configured otherwise. An unknown user costs
//! the same Argon2 run and gets the same answer as a wrong password.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::{HashingGate, LoginFailures, check_entry_name, entry_id};
use crate::api::{ApiError, Fields, Operation, Request, Response};
use crate::barrier::{Barrier, Expect};
use crate::token::{NewToken, TokenStore};

/// The TTL of a login token when the user sets none.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

/// The longest a login token lives, renewals included.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// The longest password accepted, in bytes: enough for any passphrase, little for a hash.
const MAX_PASSWORD_BYTES: usize = 1024;

/// How long a login waits for an Argon2 place before it is told to retry.
const HASHING_PATIENCE: Duration = Duration::from_secs(10);

/// The answer to a wrong password and to an unknown user alike.
pub const INVALID: &str = "invalid username or password";

/// A stored user.
#[derive(Serialize, Deserialize)]
struct User {
    /// PHC string: `$argon2id$v=19$m=65536,t=3,p=4$salt$hash`.
    password_hash: String,
    token_policies: Vec<String>,
    /// Seconds.
    token_ttl: u64,
    /// Seconds.
    token_max_ttl: u64,
}

/// The userpass method: its users, the Argon2 gate and the failed-login tracker.
pub struct UserpassEngine {
    barrier: Arc<Barrier>,
    gate: HashingGate,
    failures: LoginFailures,
    dummy: OnceLock<String>,
}

impl UserpassEngine {
    /// The method over `barrier`, tracking failed logins of at most `max_tracked` address and
    /// user pairs.
    pub fn new(barrier: Arc<Barrier>, max_tracked: usize) -> Self {
        UserpassEngine {
            barrier,
            gate: HashingGate::per_core(),
            failures: LoginFailures::new(max_tracked),
            dummy: OnceLock::new(),
        }
    }

    /// The administrative routes under `auth/userpass/`: `users`, `users/:name`,
    /// `users/:name/password` and `users/:name/policies`.
    pub fn handle(&self, rest: &str, request: &Request) -> Result<Response, ApiError> {
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        match (parts.as_slice(), request.operation) {
            (["users"], Operation::List) => self.list(),
            (["users", name], Operation::Read) => self.read(&normalize(name)?),
            (["users", name], Operation::Write) => self.write(&normalize(name)?, request),
            (["users", name], Operation::Delete) => {
                self.barrier
                    .delete(&entry_id("userpass", &normalize(name)?)?, Expect::Any)?;
                Ok(Response::empty())
            }
            (["users", name, "password"], Operation::Write) => {
                self.change(&normalize(name)?, request, true)
            }
            (["users", name, "policies"], Operation::Write) => {
                self.change(&normalize(name)?, request, false)
            }
            (["users", ..], _) => Err(ApiError::method_not_allowed()),
            _ => Err(ApiError::unsupported_path(&request.path)),
        }
    }

    /// `auth/userpass/login/:name`: a token for the right password.
    pub fn login(
        &self,
        name: &str,
        request: &Request,
        tokens: &TokenStore,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let name = normalize(name)?;
        let address: IpAddr = request.remote.ip();
        if let Some(wait) = self.failures.delay(address, &name, Instant::now()) {
            tracing::warn!(%address, user = %name, "login refused during a delay after failures");
            return Err(ApiError::rate_limited(wait));
        }
        let mut fields = Fields::new(request);
        let password = Zeroizing::new(
            fields
                .string("password")?
                .ok_or_else(|| ApiError::bad_request("missing password"))?,
        );
        let user = self.user(&name)?;

        // The same work whether or not the user exists.
        let verified = {
            let _place = self
                .gate
                .enter(HASHING_PATIENCE)
                .ok_or_else(|| ApiError::rate_limited(1))?;
            let hash = match &user {
                Some(user) => user.password_hash.as_str(),
                None => self.dummy_hash()?,
            };
            verify(hash, &password) && user.is_some()
        };
        if !verified {
            // A failed login is a security event, not an error of the daemon.
            tracing::warn!(%address, user = %name, "failed userpass login");
            self.failures.failed(address, &name, Instant::now());
            return Err(ApiError::bad_request(INVALID));
        }
        self.failures.succeeded(address, &name);
        let user = user.ok_or_else(|| ApiError::bad_request(INVALID))?;
        let (token, entry) = tokens.create_login(
            NewToken {
                policies: user.token_policies.clone(),
                ttl: Some(Duration::from_secs(user.token_ttl)),
                explicit_max_ttl: Some(Duration::from_secs(user.token_max_ttl)),
                renewable: Some(true),
                display_name: Some(format!("userpass-{name}")),
                meta: [("username".to_string(), name.clone())].into(),
                path: format!("auth/userpass/login/{name}"),
                ..NewToken::default()
            },
            now,
        )?;
        tracing::info!(user = %name, accessor = %entry.accessor, "userpass login");
        Ok(Response {
            auth: Some(entry.auth_block(&token)),
            ..Response::default()
        })
    }

    fn list(&self) -> Result<Response, ApiError> {
        let names = super::entry_names(&self.barrier, "userpass")?;
        if names.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({ "keys": names })))
    }

    fn read(&self, name: &str) -> Result<Response, ApiError> {
        let user = self.user(name)?.ok_or_else(ApiError::not_found)?;
        Ok(Response::data(json!({
            "token_policies": user.token_policies,
            "policies": user.token_policies,
            "token_ttl": user.token_ttl,
            "ttl": user.token_ttl,
            "token_max_ttl": user.token_max_ttl,
            "max_ttl": user.token_max_ttl,
            "token_explicit_max_ttl": 0,
            "token_no_default_policy": false,
            "token_num_uses": 0,
            "token_period": 0,
            "token_type": "default",
            "token_bound_cidrs": [],
        })))
    }

    /// Creates or updates a user: a new user needs a password.
    fn write(&self, name: &str, request: &Request) -> Result<Response, ApiError> {
        let id = entry_id("userpass", name)?;
        let existing = self.barrier.get(&id)?;
        let mut fields = Fields::new(request);
        let _ = fields.value("username");
        let password = fields.string("password")?.map(Zeroizing::new);
        let policies = policies_field(&mut fields)?;
        let ttl = duration_field(&mut fields, "token_ttl", "ttl")?;
        let max_ttl = duration_field(&mut fields, "token_max_ttl", "max_ttl")?;
        super::refuse_unenforced(&mut fields, &super::UNENFORCED_TOKEN_FIELDS)?;
        let warnings = fields.unknown();

        let (mut user, expect) = match &existing {
            Some(record) => (parse(&record.value)?, Expect::Generation(record.generation)),
            None => {
                let Some(password) = &password else {
                    return Err(ApiError::bad_request("missing password"));
                };
                check_password(password, name)?;
                (
                    User {
                        password_hash: self.hash(password)?,
                        token_policies: Vec::new(),
                        token_ttl: DEFAULT_TOKEN_TTL.as_secs(),
                        token_max_ttl: MAX_TOKEN_TTL.as_secs(),
                    },
                    Expect::Absent,
                )
            }
        };
        if let (Some(password), Some(_)) = (&password, &existing) {
            check_password(password, name)?;
            user.password_hash = self.hash(password)?;
        }
        if let Some(policies) = policies {
            user.token_policies = policies;
        }
        if let Some(ttl) = ttl {
            user.token_ttl = ttl;
        }
        if let Some(max_ttl) = max_ttl {
            user.token_max_ttl = max_ttl;
        }
        check_ttls(&user)?;
        self.barrier
            .put(&id, &encode(&user)?, expect)
            .map_err(conflict)?;
        Ok(Response::empty().with_warnings(warnings))
    }

    /// `users/:name/password` (`password_only`) or `users/:name/policies`.
    fn change(
        &self,
        name: &str,
        request: &Request,
        password_only: bool,
    ) -> Result<Response, ApiError> {
        let id = entry_id("userpass", name)?;
        let record = self
            .barrier
            .get(&id)?
            .ok_or_else(|| ApiError::bad_request(format!("username {name} does not exist")))?;
        let mut user = parse(&record.value)?;
        let mut fields = Fields::new(request);
        let _ = fields.value("username");
        if password_only {
            let password = Zeroizing::new(
                fields
                    .string("password")?
                    .ok_or_else(|| ApiError::bad_request("missing password"))?,
            );
            check_password(&password, name)?;
            user.password_hash = self.hash(&password)?;
        } else {
            user.token_policies = policies_field(&mut fields)?.unwrap_or_default();
        }
        let warnings = fields.unknown();
        self.barrier
            .put(&id, &encode(&user)?, Expect::Generation(record.generation))
            .map_err(conflict)?;
        Ok(Response::empty().with_warnings(warnings))
    }

    fn user(&self, name: &str) -> Result<Option<User>, ApiError> {
        match self.barrier.get(&entry_id("userpass", name)?)? {
            Some(record) => parse(&record.value).map(Some),
            None => Ok(None),
        }
    }

    fn hash(&self, password: &str) -> Result<String, ApiError> {
        let _place = self
            .gate
            .enter(HASHING_PATIENCE)
            .ok_or_else(|| ApiError::rate_limited(1))?;
        hash_password(password)
    }

    /// A hash of no one's password, verified for unknown users so they cost the same.
    fn dummy_hash(&self) -> Result<&str, ApiError> {
        if let Some(hash) = self.dummy.get() {
            return Ok(hash);
        }
        let mut random = Zeroizing::new([0u8; 32]);
        crate::crypto::fill_random(random.as_mut())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let hash = hash_password(&hex::encode(random.as_ref()))?;
        Ok(self.dummy.get_or_init(|| hash))
    }
}

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(64 * 1024, 3, 4, Some(32))
        .map_err(|e| ApiError::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    crate::crypto::fill_random(&mut salt).map_err(|e| ApiError::internal(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::internal(e.to_string()))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("cannot hash a password: {e}")))
}

/// Whether `password` matches the PHC string `hash`, with the parameters it names.
fn verify(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// The password rules. The error says which rule failed, never the password.
pub fn check_password(password: &str, username: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "the password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!(
            "the password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let has = |test: fn(char) -> bool| password.chars().any(test);
    if !(has(char::is_uppercase)
        && has(char::is_lowercase)
        && has(|c| c.is_ascii_digit())
        && has(|c| !c.is_alphanumeric()))
    {
        return Err(ApiError::bad_request(
            "the password must have an upper-case letter, a lower-case letter, a digit and a symbol",
        ));
    }
    let estimate = zxcvbn::zxcvbn(password, &[username]);
    if (estimate.score() as u8) < 3 {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "the password is too easy to guess{why}: use a longer or less common one"
        )));
    }
    Ok(())
}

fn normalize(name: &str) -> Result<String, ApiError> {
    let name = name.to_lowercase();
    check_entry_name("user", &name)?;
    Ok(name)
}

pub(crate) fn policies_field(fields: &mut Fields<'_>) -> Result<Option<Vec<String>>, ApiError> {
    let token_policies = fields.strings("token_policies")?;
    let policies = fields.strings("policies")?;
    let Some(mut list) = token_policies.or(policies) else {
        return Ok(None);
    };
    list.retain(|p| !p.is_empty());
    if list.iter().any(|p| p == "root") {
        return Err(ApiError::bad_request(
            "a login cannot hand out the root policy",
        ));
    }
    Ok(Some(list))
}

pub(crate) fn duration_field(
    fields: &mut Fields<'_>,
    name: &'static str,
    legacy: &'static str,
) -> Result<Option<u64>, ApiError> {
    let value = fields.duration(name)?;
    let old = fields.duration(legacy)?;
    Ok(value.or(old).map(|d| d.as_secs()))
}

fn check_ttls(user: &User) -> Result<(), ApiError> {
    if user.token_max_ttl == 0 || user.token_max_ttl > MAX_TOKEN_TTL.as_secs() {
        return Err(ApiError::bad_request(
            "token_max_ttl must be between 1s and 336h (14 days)",
        ));
    }
    if user.token_ttl == 0 || user.token_ttl > user.token_max_ttl {
        return Err(ApiError::bad_request(
            "token_ttl must be between 1s and token_max_ttl",
        ));
    }
    Ok(())
}

fn parse(value: &[u8]) -> Result<User, ApiError> {
    serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("user does not parse: {e}")))
}

fn encode(user: &User) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(user).map_err(|e| ApiError::internal(e.to_string()))
}

fn conflict(e: crate::barrier::BarrierError) -> ApiError {
    match e {
        crate::barrier::BarrierError::Conflict { .. } => {
            ApiError::bad_request("the user changed concurrently; retry")
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        for (password, rule) in [
            ("Sh0rt!", "at least 10"),
            ("alllowercase1!", "upper-case"),
            ("ALLUPPERCASE1!", "upper-case"),
            ("NoDigitsHere!!", "digit"),
            ("NoSymbols12345", "symbol"),
            ("Password123!", "too easy"),
            ("Qwertyuiop1!", "too easy"),
            ("Alice-operator1", "too easy"),
        ] {
            let error = check_password(password, "alice-operator").err();
            let text = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains(rule), "{password}: {text}");
            assert!(!text.contains(password), "the error repeats the password");
        }
        for good in [
            "Tangerine-Kettle-47-Orbit",
            "v9#Lq2!xWm7&Rt",
            "Ünïcødé-pässwörd-9",
        ] {
            assert!(check_password(good, "alice").is_ok(), "{good}");
        }
    }

    #[test]
    fn hashes_are_argon2id_with_the_required_parameters() {
        let hash = hash_password("Tangerine-Kettle-47-Orbit").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"),
            "{hash}"
        );
        assert!(verify(&hash, "Tangerine-Kettle-47-Orbit"));
        assert!(!verify(&hash, "Tangerine-Kettle-47-orbit"));
        assert!(!verify("not a hash", "anything"));
    }
}
