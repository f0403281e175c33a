//! Token-bucket rate limits per client address and per token accessor, with bounded memory.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// The outcome of a check that passed, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// The burst size.
    pub limit: u32,
    /// Requests left in the burst.
    pub remaining: u32,
}

/// The outcome of a check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The burst size.
    pub limit: u32,
    /// Whole seconds until a request would pass.
    pub retry_after: u64,
}

/// A keyed token-bucket limiter that tracks at most `max_keys` keys.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: RwLock<Arc<Keyed<K>>>,
    quota: Quota,
    burst: u32,
    max_keys: usize,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `per_second` sustained, `burst` at once, for each of up to `max_keys` keys.
    pub fn new(per_second: u32, burst: u32, max_keys: usize) -> Self {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst_nz = NonZeroU32::new(burst).unwrap_or(per_second);
        let quota = Quota::per_second(per_second).allow_burst(burst_nz);
        Limiter {
            inner: RwLock::new(Arc::new(Self::make(quota))),
            quota,
            burst: burst_nz.get(),
            max_keys: max_keys.max(1),
            clock: DefaultClock::default(),
        }
    }

    fn make(quota: Quota) -> Keyed<K> {
        RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
    }

    /// Takes one request from `key`'s bucket.
    pub fn check(&self, key: &K) -> Result<Allowed, Refused> {
        let limiter = Arc::clone(&self.inner.read().unwrap_or_else(|p| p.into_inner()));
        if limiter.len() >= self.max_keys {
            limiter.retain_recent();
            if limiter.len() >= self.max_keys {
                // Still full of active keys: start over rather than grow without bound. A
                // flood of new addresses can reset buckets this way, never exhaust memory.
                tracing::warn!(
                    tracked = limiter.len(),
                    "rate limiter full; resetting its buckets"
                );
                *self.inner.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(Self::make(self.quota));
            }
        }
        match limiter.check_key(key) {
            Ok(state) => Ok(Allowed {
                limit: self.burst,
                remaining: state.remaining_burst_capacity(),
            }),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Refused {
                    limit: self.burst,
                    retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
        }
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Exponential back-off for clients that keep presenting invalid tokens: after
/// [`AuthFailures::FREE`] failures from one address, each further failure doubles the time that
/// address must wait (from one second up to [`AuthFailures::MAX_DELAY`]). A success clears it.
pub struct AuthFailures {
    entries: std::sync::Mutex<std::collections::HashMap<IpAddr, Failures>>,
    max_keys: usize,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: std::time::Instant,
}

impl AuthFailures {
    /// Failures allowed before any delay.
    pub const FREE: u32 = 5;
    /// The longest delay.
    pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

    /// Tracks at most `max_keys` addresses.
    pub fn new(max_keys: usize) -> Self {
        AuthFailures {
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Seconds `address` must still wait, if it is being delayed at `now`.
    pub fn delay(&self, address: IpAddr, now: std::time::Instant) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let failures = entries.get(&address)?;
        let left = failures.blocked_until.saturating_duration_since(now);
        (!left.is_zero()).then(|| left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    /// Records a failed authentication from `address` at `now`.
    pub fn failed(&self, address: IpAddr, now: std::time::Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_keys && !entries.contains_key(&address) {
            entries.retain(|_, f| f.blocked_until > now);
            if entries.len() >= self.max_keys {
                entries.clear();
            }
        }
        let failures = entries.entry(address).or_insert(Failures {
            count: 0,
            blocked_until: now,
        });
        failures.count = failures.count.saturating_add(1);
        if failures.count > Self::FREE {
            let exponent = (failures.count - Self::FREE - 1).min(20);
            let delay = std::time::Duration::from_secs(1u64 << exponent).min(Self::MAX_DELAY);
            failures.blocked_until = now + delay;
        }
    }

    /// Clears `address` after a successful authentication.
    pub fn succeeded(&self, address: IpAddr) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_with_a_retry_time() {
        let limiter = Limiter::new(1, 3, 10);
        for remaining in [2, 1, 0] {
            assert_eq!(limiter.check(&"a").unwrap().remaining, remaining);
        }
        let refused = limiter.check(&"a").unwrap_err();
        assert!(refused.retry_after >= 1);
        // Another key has its own bucket.
        assert!(limiter.check(&"b").is_ok());
    }

    #[test]
    fn failed_authentications_back_off_exponentially() {
        let failures = AuthFailures::new(10);
        let address: IpAddr = [192, 0, 2, 1].into();
        let now = std::time::Instant::now();
        for _ in 0..AuthFailures::FREE {
            failures.failed(address, now);
        }
        assert_eq!(failures.delay(address, now), None);
        failures.failed(address, now);
        assert_eq!(failures.delay(address, now), Some(1));
        failures.failed(address, now);
        failures.failed(address, now);
        assert_eq!(failures.delay(address, now), Some(4));
        assert_eq!(
            failures.delay(address, now + std::time::Duration::from_secs(5)),
            None
        );
        assert_eq!(failures.delay([192, 0, 2, 2].into(), now), None);
        failures.succeeded(address);
        assert_eq!(failures.delay(address, now), None);
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = Limiter::new(1, 1, 1000);
        for key in 0..100_000u32 {
            let _ = limiter.check(&key);
        }
        assert!(limiter.tracked() <= 1000);
    }
}
