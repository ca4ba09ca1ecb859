//! Password hashing, bounded. Every SignUp hashes a password and every SignIn verifies one
//! (against a decoy hash for unknown accounts), each argon2id with 19 MiB of memory and tens
//! of milliseconds of one core. Unbounded, a storm of attempts holds hundreds of hashes at
//! once: gigabytes, every core busy, and tokio's blocking pool, which SQLite reads share, full
//! of them.
//!
//! So at most `concurrency` hashes run at once (one per core by default), each on a thread of
//! its own at a lower priority, off tokio's blocking pool, which stays free for storage reads,
//! and behind whatever else the server has to do on the CPU; at most
//! `queue` more attempts wait for a turn, holding nothing but their request; beyond that an
//! attempt is refused at once with RESOURCE_EXHAUSTED and a retry hint (the time the queue
//! ahead of it takes, from how long hashes take here).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::{ApiError, Limit};
use crate::store::StoreError;

/// The shortest retry hint: a hint of a few milliseconds would only bring the next wave back
/// at once.
const SHORTEST_HINT: Duration = Duration::from_millis(100);

/// Runs argon2id for sign-up and sign-in, a bounded number at once.
pub struct Hashing {
    slots: Arc<Semaphore>,
    concurrency: usize,
    waiting: AtomicUsize,
    queue: usize,
    /// How long one hash takes here, in microseconds: a moving average, for the retry hint.
    typical_micros: AtomicU64,
}

/// A turn to hash: while it lives, one of the `concurrency` slots is taken.
pub struct Turn {
    _slot: OwnedSemaphorePermit,
}

impl Hashing {
    /// `concurrency` hashes at once (0: one per core), `queue` attempts waiting at most.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = match concurrency {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            waiting: AtomicUsize::new(0),
            queue,
            typical_micros: AtomicU64::new(50_000),
        }
    }

    /// Waits for a turn to hash, or refuses at once when `queue` attempts already wait.
    /// Dropping the future (the client went away) leaves the queue.
    pub async fn turn(&self) -> Result<Turn, ApiError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(Turn { _slot: permit });
        }
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _in_line = InLine(&self.waiting);
        if ahead >= self.queue {
            return Err(ApiError::RateLimited {
                limit: Limit::SignInQueue,
                retry_after: self.time_to_drain(ahead),
            });
        }
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the hashing semaphore was closed".into()))?;
        Ok(Turn { _slot: permit })
    }

    /// Hashes `password` with a fresh salt, in `turn`.
    pub async fn hash(&self, turn: Turn, password: String) -> Result<String, ApiError> {
        self.run(turn, move || hash_password(&password)).await
    }

    /// Whether `password` matches `hash`, in `turn`.
    pub async fn verify(
        &self,
        turn: Turn,
        password: String,
        hash: String,
    ) -> Result<bool, ApiError> {
        self.run(turn, move || verify_password(&password, &hash))
            .await
    }

    /// Runs `work` on a thread of its own, holding `turn` until it is done even if the caller
    /// stops waiting (the core stays busy until then, so the slot must too). Not on tokio's
    /// blocking pool: storage reads use that, and a hashing thread runs at a lower priority
    /// (see [`lower_priority`]) so that, with every core hashing, calls that need the CPU
    /// briefly still get it at once.
    async fn run<T: Send + 'static>(
        &self,
        turn: Turn,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let (done, outcome) = oneshot::channel();
        std::thread::Builder::new()
            .name("password-hash".into())
            .spawn(move || {
                let _turn = turn;
                lower_priority();
                let _ = done.send(work());
            })
            .map_err(|error| {
                ApiError::Internal(format!("cannot start a hashing thread: {error}"))
            })?;
        let outcome = outcome
            .await
            .map_err(|_| ApiError::Internal("a hashing thread died".into()))?;
        self.learn(started.elapsed());
        outcome
    }

    /// Folds one measured hash into the moving average (an eighth of the way).
    fn learn(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .typical_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |typical| {
                Some(typical - typical / 8 + took / 8)
            });
    }

    /// How long until `ahead` waiting attempts and the ones hashing now are through.
    fn time_to_drain(&self, ahead: usize) -> Duration {
        let rounds = u32::try_from(ahead / self.concurrency + 1).unwrap_or(u32::MAX);
        let typical = Duration::from_micros(self.typical_micros.load(Ordering::Relaxed));
        typical.saturating_mul(rounds).max(SHORTEST_HINT)
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// One place in the queue, given up when dropped, whether the turn came or the caller left.
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lowers the calling thread's scheduling priority to nice 10, where the kernel gives it about
/// a tenth of the CPU share of a normal thread when both want to run: hashing uses what the
/// rest of the server leaves. (Linux keeps a nice value per thread; elsewhere this does
/// nothing, and hashing competes as an equal.)
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority(2) only changes the calling thread's nice value (`who` 0 is the
    // caller; per thread on Linux), and a failure leaves it unchanged, which is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Hashes a password at once, on the calling thread: only for start-up (the decoy hash).
pub fn hash_now(password: &str) -> Result<String, ApiError> {
    hash_password(password)
}

fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|error| ApiError::Internal(format!("salt: {error}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| ApiError::Internal(format!("password hashing: {error}")))
}

fn verify_password(password: &str, hash: &str) -> Result<bool, ApiError> {
    let parsed = PasswordHash::new(hash).map_err(|error| {
        ApiError::from(StoreError::Unavailable(format!(
            "bad password hash in database: {error}"
        )))
    })?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash).unwrap());
        assert!(!verify_password("wrong horse", &hash).unwrap());
    }

    #[tokio::test]
    async fn turns_are_bounded_and_the_queue_beyond_them_too() {
        let hashing = Hashing::new(2, 3);
        let first = hashing.turn().await.unwrap();
        let _second = hashing.turn().await.unwrap();
        // Three may wait; the fourth is refused at once, with a hint.
        let waiting: Vec<_> = (0..3).map(|_| Box::pin(hashing.turn())).collect();
        let mut waiting = futures::future::join_all(waiting);
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "no turn is free yet"
        );
        assert_eq!(hashing.waiting(), 3);
        match hashing.turn().await {
            Err(ApiError::RateLimited {
                limit: Limit::SignInQueue,
                retry_after,
            }) => assert!(retry_after >= SHORTEST_HINT, "{retry_after:?}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a fourth waiting attempt was let in"),
        }
        // A freed turn goes to one that waits.
        drop(first);
        assert!((&mut waiting).now_or_never().is_none(), "two still wait");
        drop(waiting);
        assert_eq!(
            hashing.waiting(),
            0,
            "callers that left gave up their places"
        );
    }
}
