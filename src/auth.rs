//! Logins: how a service or an operator proves who it is and gets a token.
//!
//! - [`userpass`]: operators, by name and password (Argon2id hashes, password rules, a delay
//!   per address and user after repeated failures).
//! - [`cert`]: services, by the TLS client certificate of their connection, checked against
//!   the CA of a role.
//!
//! Both hand out ordinary tokens with no parent ([`crate::token::TokenStore::create_login`]),
//! so everything a token can do, and every way to revoke one, applies to them.

pub mod cert;
pub mod userpass;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::api::ApiError;
use crate::barrier::{MountId, RecordId, RecordKind};

/// Failures from one address for one user before that user is delayed from that address.
pub const FAILURES_BEFORE_DELAY: u32 = 5;

/// How long the delay lasts, and how long a failure is remembered.
pub const DELAY: Duration = Duration::from_secs(15 * 60);

/// The record of an auth method's entry: `userpass/<name>` or `cert/<name>`.
pub(crate) fn entry_id(method: &str, name: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::AuthEntry,
        MountId::SYSTEM,
        format!("{method}/{name}"),
        0,
    )?)
}

/// The names of an auth method's entries: its users or its roles.
pub(crate) fn entry_names(
    barrier: &crate::barrier::Barrier,
    method: &str,
) -> Result<Vec<String>, ApiError> {
    let prefix = format!("{method}/");
    Ok(barrier
        .list_all(RecordKind::AuthEntry, MountId::SYSTEM, &prefix)?
        .into_iter()
        .filter_map(|id| id.path.strip_prefix(&prefix).map(String::from))
        .collect())
}

/// Names of users and roles: 1 to 128 letters, digits, `-`, `_`, `.` or `@`.
pub(crate) fn check_entry_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        return Err(ApiError::bad_request(format!(
            "{what} names are 1 to 128 letters, digits, '-', '_', '.' or '@'"
        )));
    }
    Ok(())
}

/// Token options of Vault's auth methods that vaultd does not enforce. Each would restrict
/// the token a login hands out, so a role or user that sets one is refused rather than
/// given a token that can do more than it says.
pub(crate) const UNENFORCED_TOKEN_FIELDS: [&str; 5] = [
    "token_bound_cidrs",
    "token_explicit_max_ttl",
    "token_no_default_policy",
    "token_num_uses",
    "token_period",
];

/// Refuses any of `names` that is set to something other than an empty or zero value;
/// `token_type` may only be `default` or `service`.
pub(crate) fn refuse_unenforced(
    fields: &mut crate::api::Fields<'_>,
    names: &[&'static str],
) -> Result<(), ApiError> {
    use serde_json::Value;
    for &name in names {
        let set = match fields.value(name) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty() && s != "0" && s != "false",
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
        };
        if set {
            return Err(ApiError::bad_request(format!(
                "{name} is not supported by vaultd: it is refused rather than ignored, so that no login gets more than it says"
            )));
        }
    }
    match fields.value("token_type") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::String(t)) if ["", "default", "service"].contains(&t.as_str()) => {
            Ok(())
        }
        Some(_) => Err(ApiError::bad_request(
            "token_type must be default or service: vaultd has no batch tokens",
        )),
    }
}

/// Failed logins per client address and user, so that guessing one user's password from one
/// address is delayed while the same user logs in from anywhere else. IPv6 addresses count
/// by their /64, which one client usually holds whole.
///
/// Memory is bounded: at most `capacity` pairs are tracked. When the table is full, pairs
/// that are not delayed are forgotten first (each such pair had fewer than five failures);
/// if every pair is delayed, the delays that end soonest are dropped.
pub struct LoginFailures {
    pairs: Mutex<HashMap<(IpAddr, String), Failures>>,
    capacity: usize,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    delayed_until: Option<Instant>,
}

impl LoginFailures {
    /// A tracker of at most `capacity` address and user pairs.
    pub fn new(capacity: usize) -> Self {
        LoginFailures {
            pairs: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Seconds `user` must wait before logging in from `address`, if delayed at `now`.
    pub fn delay(&self, address: IpAddr, user: &str, now: Instant) -> Option<u64> {
        let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let until = pairs.get(&key(address, user))?.delayed_until?;
        let left = until.checked_duration_since(now).filter(|d| !d.is_zero())?;
        Some(left.as_secs().max(1))
    }

    /// Counts a failed login; the fifth within [`DELAY`] starts a delay.
    pub fn failed(&self, address: IpAddr, user: &str, now: Instant) {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(address, user);
        if !pairs.contains_key(&key) && pairs.len() >= self.capacity {
            make_room(&mut pairs, self.capacity, now);
        }
        let entry = pairs.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            delayed_until: None,
        });
        if now.duration_since(entry.last) > DELAY {
            entry.count = 0;
        }
        if entry.delayed_until.is_some_and(|until| until <= now) {
            entry.delayed_until = None;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= FAILURES_BEFORE_DELAY {
            entry.delayed_until = Some(now + DELAY);
            entry.count = 0;
        }
    }

    /// Forgets the failures of a pair that just logged in.
    pub fn succeeded(&self, address: IpAddr, user: &str) {
        self.pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(address, user));
    }

    /// How many pairs are tracked.
    pub fn len(&self) -> usize {
        self.pairs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no pair is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key(address: IpAddr, user: &str) -> (IpAddr, String) {
    let address = match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    };
    (address, user.to_string())
}

fn make_room(pairs: &mut HashMap<(IpAddr, String), Failures>, capacity: usize, now: Instant) {
    pairs.retain(|_, f| f.delayed_until.is_some_and(|until| until > now));
    if pairs.len() < capacity {
        return;
    }
    // Every pair is delayed: drop the tenth whose delays end soonest.
    let mut ends: Vec<Instant> = pairs.values().filter_map(|f| f.delayed_until).collect();
    ends.sort_unstable();
    let cut = ends[(ends.len() / 10).min(ends.len() - 1)];
    pairs.retain(|_, f| f.delayed_until.is_some_and(|until| until > cut));
}

/// At most as many Argon2 runs at once as the machine has cores: each takes 64 MiB and a
/// core for about a sixth of a second, so more would only slow every login down and let a
/// flood of logins exhaust memory.
pub struct HashingGate {
    running: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

/// A place in the [`HashingGate`], given back when dropped.
pub struct HashingPermit<'a>(&'a HashingGate);

impl HashingGate {
    /// A gate of `limit` places (at least one).
    pub fn new(limit: usize) -> Self {
        HashingGate {
            running: Mutex::new(0),
            freed: Condvar::new(),
            limit: limit.max(1),
        }
    }

    /// A gate with one place per core.
    pub fn per_core() -> Self {
        HashingGate::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Waits up to `patience` for a place; `None` if none came free.
    pub fn enter(&self, patience: Duration) -> Option<HashingPermit<'_>> {
        let deadline = Instant::now() + patience;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *running >= self.limit {
            let left = deadline.checked_duration_since(Instant::now())?;
            running = self
                .freed
                .wait_timeout(running, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *running += 1;
        Some(HashingPermit(self))
    }
}

impl Drop for HashingPermit<'_> {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *running = running.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn five_failures_delay_one_user_from_one_address() {
        let failures = LoginFailures::new(100);
        let (here, there) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..4 {
            failures.failed(here, "alice", now);
            assert_eq!(failures.delay(here, "alice", now), None);
        }
        failures.failed(here, "alice", now);
        assert_eq!(failures.delay(here, "alice", now), Some(DELAY.as_secs()));
        // Not a global lockout: the same user elsewhere, another user here.
        assert_eq!(failures.delay(there, "alice", now), None);
        assert_eq!(failures.delay(here, "bob", now), None);
        // The delay ends.
        assert_eq!(failures.delay(here, "alice", now + DELAY), None);
    }

    #[test]
    fn old_failures_are_forgotten_and_a_login_clears_them() {
        let failures = LoginFailures::new(100);
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..4 {
            failures.failed(here, "alice", now);
        }
        let later = now + DELAY + Duration::from_secs(1);
        failures.failed(here, "alice", later);
        assert_eq!(failures.delay(here, "alice", later), None);
        failures.succeeded(here, "alice");
        assert!(failures.is_empty());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let failures = LoginFailures::new(100);
        let now = Instant::now();
        for host in 1..=5 {
            failures.failed(format!("2001:db8::{host}").parse().unwrap(), "alice", now);
        }
        let other_host: IpAddr = "2001:db8::99".parse().unwrap();
        assert!(failures.delay(other_host, "alice", now).is_some());
        let other_net: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(failures.delay(other_net, "alice", now).is_none());
    }

    #[test]
    fn memory_stays_bounded_with_100_000_addresses() {
        let capacity = 10_000;
        let failures = LoginFailures::new(capacity);
        let now = Instant::now();
        // One address keeps its delay through the flood.
        let attacker: IpAddr = "10.9.9.9".parse().unwrap();
        for _ in 0..FAILURES_BEFORE_DELAY {
            failures.failed(attacker, "alice", now);
        }
        for n in 0..100_000u32 {
            failures.failed(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), "alice", now);
            assert!(failures.len() <= capacity);
        }
        assert!(failures.delay(attacker, "alice", now).is_some());
    }

    #[test]
    fn the_gate_admits_its_limit() {
        let gate = HashingGate::new(2);
        let a = gate.enter(Duration::ZERO).unwrap();
        let _b = gate.enter(Duration::ZERO).unwrap();
        assert!(gate.enter(Duration::from_millis(10)).is_none());
        drop(a);
        assert!(gate.enter(Duration::ZERO).is_some());
    }
}
