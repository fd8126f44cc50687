//! Retries with exponential backoff and jitter, bounded by the invocation deadline.
//!
//! The policy is plain data ([`RetryPolicy`]), the budget is a [`Deadline`], and [`retry`] runs
//! any async operation whose error implements [`Classify`]: data and environment errors return at
//! once, transient ones are retried after a backoff (or the wait the server asked for), and no sleep
//! ever ends past the deadline.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{ConfigError, Env};
use crate::error::{Classify, ErrorClass};

/// How often and how fast to retry.
///
/// Defaults: 5 attempts, 100 ms initial backoff doubling up to 5 s, jitter 0.5 (each wait is
/// drawn uniformly from `[backoff * (1 - jitter), backoff]`).
///
/// ```
/// use lambda_kit::retry::RetryPolicy;
/// use std::time::Duration;
///
/// let p = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
/// assert_eq!(p.backoff(1), Duration::from_millis(100));
/// assert_eq!(p.backoff(3), Duration::from_millis(400));
/// assert_eq!(p.backoff(30), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Wait after the first failed attempt.
    pub initial_backoff: Duration,
    /// Upper bound of a computed wait (a server-requested wait may be longer).
    pub max_backoff: Duration,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Fraction of the wait that is randomised, in `[0, 1]`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// Reads `{prefix}MAX_ATTEMPTS`, `{prefix}INITIAL_BACKOFF_MS`, `{prefix}MAX_BACKOFF_MS`,
    /// overriding the defaults.
    ///
    /// ```
    /// use lambda_kit::{config::Env, retry::RetryPolicy};
    /// let env = Env::from_pairs([("RETRY_MAX_ATTEMPTS", "3")]);
    /// assert_eq!(RetryPolicy::from_env(&env, "RETRY_").unwrap().max_attempts, 3);
    /// ```
    pub fn from_env(env: &Env, prefix: &str) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            max_attempts: env
                .positive_or(&format!("{prefix}MAX_ATTEMPTS"), d.max_attempts as usize)?
                as u32,
            initial_backoff: env
                .millis_or(&format!("{prefix}INITIAL_BACKOFF_MS"), d.initial_backoff)?,
            max_backoff: env.millis_or(&format!("{prefix}MAX_BACKOFF_MS"), d.max_backoff)?,
            ..d
        })
    }

    /// The wait after failed attempt number `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = self.initial_backoff.as_secs_f64() * exp;
        let capped = secs.min(self.max_backoff.as_secs_f64());
        let wait = Duration::from_secs_f64(if capped.is_finite() {
            capped.max(0.0)
        } else {
            0.0
        });
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            wait
        } else {
            wait.mul_f64(1.0 - jitter * fastrand::f64())
        }
    }
}

/// The point in time after which no more work may start, e.g. the Lambda deadline minus a
/// safety margin for reporting.
///
/// ```
/// use lambda_kit::retry::Deadline;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let d = Deadline::after(Duration::from_secs(10));
/// assert!(d.remaining() <= Duration::from_secs(10));
/// assert!(!d.is_expired());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
        }
    }

    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Self { at }
    }

    /// From the Lambda context: its deadline minus `settings.safety_margin`. A context without a
    /// deadline (`Context::default()` in tests, deadline 0) gets `settings.default_budget`.
    ///
    /// ```
    /// use lambda_kit::retry::{Deadline, DeadlineSettings};
    /// use lambda_runtime::Context;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let s = DeadlineSettings { safety_margin: Duration::from_secs(1), default_budget: Duration::from_secs(30) };
    /// let d = Deadline::from_context(&Context::default(), &s);
    /// assert!(d.remaining() > Duration::from_secs(28));
    /// # }
    /// ```
    pub fn from_context(ctx: &lambda_runtime::Context, settings: &DeadlineSettings) -> Self {
        Self::from_epoch_ms(ctx.deadline, SystemTime::now(), settings)
    }

    fn from_epoch_ms(deadline_ms: u64, now: SystemTime, settings: &DeadlineSettings) -> Self {
        if deadline_ms == 0 {
            return Self::after(settings.default_budget);
        }
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
        // Some emulators (`cargo lambda watch`) send the timeout itself (`600000`) rather than
        // an epoch time; a "deadline" more than a day in the past can only be that.
        if now
            .duration_since(deadline)
            .is_ok_and(|ago| ago > Duration::from_secs(86_400))
        {
            return Self::after(
                Duration::from_millis(deadline_ms).saturating_sub(settings.safety_margin),
            );
        }
        let left = deadline.duration_since(now).unwrap_or(Duration::ZERO);
        Self::after(left.saturating_sub(settings.safety_margin))
    }

    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// `true` once the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The instant itself.
    pub fn instant(&self) -> Instant {
        self.at
    }
}

/// How a [`Deadline`] is derived from the Lambda context.
///
/// Defaults: 2 s safety margin (time kept to write dead letters and answer), 60 s budget when
/// the context has no deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineSettings {
    /// Subtracted from the context deadline.
    pub safety_margin: Duration,
    /// Used when the context carries no deadline.
    pub default_budget: Duration,
}

impl Default for DeadlineSettings {
    fn default() -> Self {
        Self {
            safety_margin: Duration::from_secs(2),
            default_budget: Duration::from_secs(60),
        }
    }
}

impl DeadlineSettings {
    /// Reads `DEADLINE_SAFETY_MARGIN_MS` and `DEFAULT_BUDGET_MS`, overriding the defaults.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            safety_margin: env.millis_or("DEADLINE_SAFETY_MARGIN_MS", d.safety_margin)?,
            default_budget: env.millis_or("DEFAULT_BUDGET_MS", d.default_budget)?,
        })
    }
}

/// One attempt of a retried operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// 1-based attempt number.
    pub number: u32,
    /// Time left before the deadline when the attempt starts: use it as the attempt's timeout.
    pub remaining: Duration,
}

/// Runs `op` until it succeeds, fails with an error that is not transient, runs out of attempts, or the next wait would
/// end past `deadline`. Returns the last error in the failure cases. A server-requested wait
/// (`Retry-After`) replaces the computed backoff.
///
/// `op` is not started at all when the deadline has already passed; then `on_expired` provides
/// the error.
///
/// ```
/// use lambda_kit::error::{Classify, ErrorClass};
/// use lambda_kit::retry::{retry, Deadline, RetryPolicy};
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Flaky;
/// impl Classify for Flaky {
///     fn class(&self) -> ErrorClass { ErrorClass::TRANSIENT }
///     fn error_code(&self) -> &'static str { "flaky" }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = RetryPolicy { initial_backoff: Duration::from_millis(1), ..RetryPolicy::default() };
/// let deadline = Deadline::after(Duration::from_secs(5));
/// let mut calls = 0;
/// let out = retry(&policy, &deadline, || Flaky, |a| {
///     calls += 1;
///     async move { if a.number < 3 { Err(Flaky) } else { Ok(a.number) } }
/// }).await;
/// assert_eq!(out.unwrap(), 3);
/// assert_eq!(calls, 3);
/// # }
/// ```
pub async fn retry<T, E, F, Fut, X>(
    policy: &RetryPolicy,
    deadline: &Deadline,
    on_expired: X,
    mut op: F,
) -> Result<T, E>
where
    E: Classify,
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    X: FnOnce() -> E,
{
    let mut number = 1;
    loop {
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            return Err(on_expired());
        }
        let err = match op(Attempt { number, remaining }).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        // Only a transient error is retried: data and environment errors come back the same.
        let ErrorClass::Transient { retry_after } = err.class() else {
            return Err(err);
        };
        if number >= policy.max_attempts.max(1) {
            return Err(err);
        }
        let wait = retry_after.unwrap_or_else(|| policy.backoff(number));
        if wait >= deadline.remaining() {
            tracing::debug!(
                error_code = err.error_code(),
                ?wait,
                "retry wait would pass the deadline; giving up"
            );
            return Err(err);
        }
        tracing::debug!(
            error_code = err.error_code(),
            attempt = number,
            ?wait,
            "transient error; retrying"
        );
        tokio::time::sleep(wait).await;
        number += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum E {
        T(Option<Duration>),
        P,
        D,
        Expired,
    }
    impl Classify for E {
        fn class(&self) -> ErrorClass {
            match self {
                E::T(r) => ErrorClass::Transient { retry_after: *r },
                E::P => ErrorClass::Environment,
                E::D => ErrorClass::Data,
                E::Expired => ErrorClass::TRANSIENT,
            }
        }
        fn error_code(&self) -> &'static str {
            "e"
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_is_not_retried() {
        for e in [E::P, E::D] {
            let mut n = 0;
            let r: Result<(), E> = retry(
                &fast(),
                &Deadline::after(Duration::from_secs(9)),
                || E::Expired,
                |_| {
                    n += 1;
                    let e = if e == E::P { E::P } else { E::D };
                    async { Err(e) }
                },
            )
            .await;
            assert_eq!(r, Err(e));
            assert_eq!(n, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_stops_after_max_attempts_with_backoff() {
        let start = Instant::now();
        let mut n = 0;
        let r: Result<(), E> = retry(
            &fast(),
            &Deadline::after(Duration::from_secs(9)),
            || E::Expired,
            |_| {
                n += 1;
                async { Err(E::T(None)) }
            },
        )
        .await;
        assert_eq!(r, Err(E::T(None)));
        assert_eq!(n, 5);
        // 10 + 20 + 40 + 80 ms of backoff between five attempts.
        assert_eq!(start.elapsed(), Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn server_wait_is_honoured() {
        let start = Instant::now();
        let mut n = 0;
        let r = retry(
            &fast(),
            &Deadline::after(Duration::from_secs(9)),
            || E::Expired,
            |a| {
                n += 1;
                async move {
                    if a.number == 1 {
                        Err(E::T(Some(Duration::from_secs(3))))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn never_sleeps_past_the_deadline() {
        let start = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(2));
        let r: Result<(), E> = retry(
            &fast(),
            &deadline,
            || E::Expired,
            |_| async { Err(E::T(Some(Duration::from_secs(5)))) },
        )
        .await;
        assert_eq!(r, Err(E::T(Some(Duration::from_secs(5)))));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_deadline_does_not_start_op() {
        let deadline = Deadline::after(Duration::ZERO);
        let mut n = 0;
        let r: Result<(), E> = retry(
            &fast(),
            &deadline,
            || E::Expired,
            |_| {
                n += 1;
                async { Ok(()) }
            },
        )
        .await;
        assert_eq!(r, Err(E::Expired));
        assert_eq!(n, 0);
    }

    #[test]
    fn jitter_stays_in_range() {
        let p = RetryPolicy {
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        for _ in 0..1000 {
            let w = p.backoff(2);
            assert!(
                w >= Duration::from_millis(100) && w <= Duration::from_millis(200),
                "{w:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_from_context_epoch() {
        let s = DeadlineSettings {
            safety_margin: Duration::from_secs(1),
            default_budget: Duration::from_secs(7),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let d = Deadline::from_epoch_ms(1_010_000, now, &s);
        assert_eq!(d.remaining(), Duration::from_secs(9));
        let d = Deadline::from_epoch_ms(0, now, &s);
        assert_eq!(d.remaining(), Duration::from_secs(7));
        // A deadline already passed (or closer than the margin) leaves nothing.
        let d = Deadline::from_epoch_ms(1_000_500, now, &s);
        assert!(d.is_expired());
        // cargo lambda watch sends a duration (600000 ms) instead of an epoch deadline.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let d = Deadline::from_epoch_ms(600_000, now, &s);
        assert_eq!(d.remaining(), Duration::from_secs(599));
    }
}
