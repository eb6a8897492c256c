//! Argon2id hashing with configurable parameters, and the gate that bounds how many
//! hashes run at once (each holds `argon2_memory_kib` of memory).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::secrets::random_bytes;
use crate::{ServiceError, request_context};

/// Hashes and verifies passwords as argon2id PHC strings.
///
/// The argon2 working memory (`argon2_memory_kib`) is reused while hashes keep coming,
/// instead of being allocated for every hash ([`WORKING_MEMORY`]).
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    params: Params,
}

/// Largest stored `m` accepted when verifying (a corrupt hash must not allocate gigabytes).
const MAX_VERIFY_MEMORY_KIB: u32 = 1 << 20;

thread_local! {
    /// This thread's argon2 working memory, kept for its next hash. Hashing threads
    /// ([`HashPool`]) free theirs once the pool has had no hash for [`RELEASE_AFTER`], so an
    /// idle server holds none; another thread that hashed (the CLI) keeps it until it ends.
    static WORKING_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Working memory is reserved at least this large (32 MiB and a block, of which only the
/// blocks argon2 uses are ever touched), so that freeing it returns it to the operating
/// system. glibc's malloc maps a block of its own only for requests above a threshold that
/// each freed mapping of up to 32 MiB raises to its own size: a 19 MiB buffer freed once
/// would come from a heap the next time, where a free leaves it resident, and one more such
/// buffer would stay with each later login.
const RESERVED_BLOCKS: usize = (32 << 20) / size_of::<Block>() + 1;

/// A random 16-byte salt.
fn new_salt() -> Result<SaltString, ServiceError> {
    SaltString::encode_b64(&random_bytes::<16>()).map_err(hashing_failed)
}

fn hashing_failed(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::internal("password hashing failed", error.to_string())
}

/// Grows this thread's working memory to at least `blocks`.
fn grow_working_memory(blocks: usize) {
    WORKING_MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.reserve_exact(blocks.max(RESERVED_BLOCKS) - memory.len());
            memory.resize(blocks, Block::default());
        }
    });
}

/// Runs argon2 into `out`, in this thread's working memory. Returns how long the hash
/// itself took, without getting the memory.
fn hash_into(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<Duration, argon2::Error> {
    let needed = params.block_count();
    grow_working_memory(needed);
    WORKING_MEMORY.with_borrow_mut(|blocks| {
        let started = Instant::now();
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
            .map(|()| started.elapsed())
    })
}

impl PasswordHasher {
    pub fn new(params: Params) -> Self {
        Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
            params,
        }
    }

    /// A fresh salted PHC string for `password`.
    pub fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let salt = new_salt()?;
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(hashing_failed)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        hash_into(
            &self.argon2,
            &self.params,
            password.as_bytes(),
            salt_bytes,
            &mut out,
        )
        .map_err(hashing_failed)?;
        self.phc(&salt, &out)
    }

    /// A PHC string with the current parameters that no password matches (its hash is
    /// random bytes). Verifying against it costs exactly what a real verify costs, which is
    /// what unknown users are checked against — without hashing anything at start-up.
    pub fn unmatchable_hash(&self) -> Result<String, ServiceError> {
        let out: [u8; Params::DEFAULT_OUTPUT_LEN] = random_bytes();
        self.phc(&new_salt()?, &out)
    }

    fn phc(&self, salt: &SaltString, out: &[u8]) -> Result<String, ServiceError> {
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(hashing_failed)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(out).map_err(hashing_failed)?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches `phc` (compared in constant time); an unparsable hash
    /// never matches.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        self.verify_timed(password, phc).0
    }

    /// [`verify`](Self::verify), and how long the hash itself took (`None` if `phc` could
    /// not be used). Working memory for the current parameters is got first and not timed,
    /// also for an older, smaller or unusable hash: after an idle second it is allocated
    /// afresh ([`RELEASE_AFTER`]), and that must cost every kind of check alike, while the
    /// time returned, which checks against older hashes are padded to, stays that of
    /// hashing alone.
    pub fn verify_timed(&self, password: &str, phc: &str) -> (bool, Option<Duration>) {
        grow_working_memory(self.params.block_count());
        match self.verify_phc(password, phc) {
            Ok((matched, took)) => (matched, Some(took)),
            Err(error) => {
                log::error!("stored password hash cannot be used: {error}");
                (false, None)
            }
        }
    }

    fn verify_phc(&self, password: &str, phc: &str) -> Result<(bool, Duration), String> {
        let hash = PasswordHash::new(phc).map_err(|e| e.to_string())?;
        let expected = hash.hash.ok_or("no hash")?;
        let params = Params::try_from(&hash).map_err(|e| e.to_string())?;
        if params.m_cost() > MAX_VERIFY_MEMORY_KIB {
            return Err(format!(
                "memory cost {} KiB is implausible",
                params.m_cost()
            ));
        }
        let algorithm = Algorithm::try_from(hash.algorithm).map_err(|e| e.to_string())?;
        let version = hash
            .version
            .map_or(Ok(Version::V0x13), Version::try_from)
            .map_err(|e| e.to_string())?;
        let mut salt = [0u8; 64];
        let salt = hash
            .salt
            .ok_or("no salt")?
            .decode_b64(&mut salt)
            .map_err(|e| e.to_string())?;
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let took = hash_into(&argon2, &params, password.as_bytes(), salt, &mut out)
            .map_err(|e| e.to_string())?;
        // `Output`'s equality is constant-time.
        Ok((
            Output::new(&out).map_err(|e| e.to_string())? == expected,
            took,
        ))
    }

    /// Whether `phc` was made with other parameters than the current ones.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(params) = Params::try_from(&hash) else {
            return true;
        };
        hash.algorithm != argon2::ARGON2ID_IDENT
            || hash.version != Some(Version::V0x13.into())
            || params.m_cost() != self.params.m_cost()
            || params.t_cost() != self.params.t_cost()
            || params.p_cost() != self.params.p_cost()
    }
}

/// How long the last few password checks with the current parameters took. A check
/// against an older, cheaper hash is padded to their median, so that how long a wrong
/// password takes does not tell which accounts have old hashes (that is, exist). A median,
/// so that a check slowed by a burst does not skew it.
#[derive(Debug, Default)]
pub struct CheckTimes(Mutex<VecDeque<Duration>>);

impl CheckTimes {
    const KEPT: usize = 15;

    pub fn record(&self, took: Duration) {
        let mut times = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if times.len() == Self::KEPT {
            times.pop_front();
        }
        times.push_back(took);
    }

    pub fn median(&self) -> Option<Duration> {
        let mut times: Vec<Duration> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        times.sort_unstable();
        times.get(times.len() / 2).copied()
    }
}

/// Runs password hashing on its own `concurrency` threads, with at most `queue` more
/// hashes waiting. Admission ([`HashPool::try_admit`]) never blocks, so an overloaded server
/// says 503 at once, and waiting callers hold no thread: they await a channel.
///
/// Dedicated threads also bound memory: each argon2 hash needs `argon2_memory_kib`, so
/// only `concurrency` such buffers are ever in use, and kept ([`WORKING_MEMORY`]).
#[derive(Debug)]
pub struct HashPool {
    jobs: crossbeam_channel::Sender<Job>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashing threads free their working memory once the pool has had no hash for this long
/// (within twice this after the last hash began).
const RELEASE_AFTER: Duration = Duration::from_secs(1);

impl HashPool {
    /// Gauge: logins admitted here, waiting for a hashing thread or holding one (at most
    /// `hash_concurrency + hash_queue`; past that, logins get 503).
    pub const QUEUE_DEPTH_METRIC: &str = "myapi_hash_queue_depth";

    /// Starts `concurrency` hashing threads with `queue` waiting places.
    pub fn new(concurrency: usize, queue: usize) -> Arc<Self> {
        let concurrency = concurrency.max(1);
        let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
        let last_job = Arc::new(Mutex::new(Instant::now()));
        for index in 0..concurrency {
            let (receiver, last_job) = (receiver.clone(), Arc::clone(&last_job));
            let spawned = std::thread::Builder::new()
                .name(format!("myapi-hash-{index}"))
                .spawn(move || Self::hash_thread(&receiver, &last_job));
            if let Err(error) = spawned {
                log::error!("cannot start hashing thread: {error}");
            }
        }
        Arc::new(Self {
            jobs: sender,
            admitted: Arc::default(),
            capacity: concurrency + queue,
        })
    }

    /// Runs jobs until the pool is dropped. The channel hands each job to the thread that
    /// has waited longest, so while hashes keep coming each thread sees gaps of up to
    /// `concurrency` times theirs: a thread frees its memory only once the whole pool has
    /// been idle ([`RELEASE_AFTER`]), and then waits without a timeout.
    fn hash_thread(jobs: &crossbeam_channel::Receiver<Job>, last_job: &Mutex<Instant>) {
        use crossbeam_channel::RecvTimeoutError;
        let since_last_job = || {
            last_job
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed()
        };
        loop {
            let job = if WORKING_MEMORY.with_borrow(Vec::is_empty) {
                jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                jobs.recv_timeout(RELEASE_AFTER)
            };
            match job {
                Ok(job) => {
                    *last_job.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                    // A panicking job must not take the thread down with it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
                Err(RecvTimeoutError::Timeout) if since_last_job() >= RELEASE_AFTER => {
                    WORKING_MEMORY.take();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// A ticket for one hash if there is room, `None` if hashing is saturated. Never blocks.
    pub fn try_admit(self: &Arc<Self>) -> Option<HashTicket> {
        let admitted = self.admitted.fetch_add(1, Ordering::AcqRel);
        if admitted >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!(Self::QUEUE_DEPTH_METRIC).increment(1.0);
        Some(HashTicket {
            pool: Arc::clone(self),
        })
    }
}

/// A place in the hashing queue; its work runs on a hashing thread.
#[derive(Debug)]
pub struct HashTicket {
    pool: Arc<HashPool>,
}

impl HashTicket {
    /// Runs `work` on a hashing thread, as the caller's request ([`request_context`]); the
    /// caller waits without holding a thread.
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let (sender, receiver) = oneshot::channel();
        let pool = Arc::clone(&self.pool);
        let work = request_context::carried(work);
        let job: Job = Box::new(move || {
            let _ticket = self; // the place is given back once the hash is done
            let _ = sender.send(work());
        });
        pool.jobs
            .send(job)
            .map_err(|e| ServiceError::internal("hashing threads have stopped", e.to_string()))?;
        receiver
            .await
            .map_err(|e| ServiceError::internal("a password check was lost", e))
    }
}

impl Drop for HashTicket {
    fn drop(&mut self) {
        self.pool.admitted.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(HashPool::QUEUE_DEPTH_METRIC).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_hasher() -> PasswordHasher {
        PasswordHasher::new(Params::new(19_456, 2, 1, None).unwrap())
    }

    #[test]
    fn hash_round_trip_and_phc_format() {
        let hasher = default_hasher();
        let phc = hasher.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify("correct horse", &phc));
        assert!(!hasher.verify("wrong horse", &phc));
        assert!(!hasher.verify("correct horse", "not a phc string"));
        assert!(!hasher.needs_rehash(&phc));
    }

    #[test]
    fn verifies_hashes_made_by_the_argon2_crate_itself() {
        use argon2::password_hash::PasswordHasher as _;
        let salt = new_salt().unwrap();
        let phc = Argon2::default()
            .hash_password(b"interop-password", &salt)
            .unwrap()
            .to_string();
        let hasher = default_hasher();
        assert!(hasher.verify("interop-password", &phc));
        assert!(!hasher.verify("interop-passwore", &phc));
        // And ours verify with the crate's own verifier.
        use argon2::password_hash::PasswordVerifier as _;
        let ours = hasher.hash("ours-password").unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"ours-password", &PasswordHash::new(&ours).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn the_unmatchable_hash_has_current_parameters_and_matches_nothing() {
        let hasher = default_hasher();
        let dummy = hasher.unmatchable_hash().unwrap();
        assert!(
            dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{dummy}"
        );
        assert!(!hasher.needs_rehash(&dummy));
        assert!(!hasher.verify("", &dummy) && !hasher.verify("password", &dummy));
    }

    #[test]
    fn older_parameters_need_rehash() {
        let old = PasswordHasher::new(Params::new(1024, 1, 1, None).unwrap())
            .hash("pw-12345")
            .unwrap();
        let current = default_hasher();
        assert!(current.needs_rehash(&old));
        assert!(current.verify("pw-12345", &old), "old hashes still verify");
    }

    #[test]
    fn every_check_gets_memory_for_current_hashes_before_it_is_timed() {
        let current = default_hasher();
        let old = PasswordHasher::new(Params::new(1024, 1, 1, None).unwrap())
            .hash("pw-12345")
            .unwrap();
        let blocks = || WORKING_MEMORY.with_borrow(Vec::len);
        for (phc, timed) in [(old.as_str(), true), ("not a phc string", false)] {
            WORKING_MEMORY.take();
            let (matched, took) = current.verify_timed("pw-12345", phc);
            assert_eq!((matched, took.is_some()), (timed, timed), "{phc}");
            assert_eq!(blocks(), 19_456, "{phc}");
        }
    }

    #[test]
    fn pool_admits_concurrency_plus_queue() {
        let pool = HashPool::new(2, 1);
        let tickets: Vec<_> = (0..3).map(|_| pool.try_admit().unwrap()).collect();
        assert!(pool.try_admit().is_none());
        drop(tickets);
        assert!(pool.try_admit().is_some());
    }

    /// Jobs go to whichever thread waits, so with two threads and a job every 0.6 s a thread
    /// can wait 1.2 s or more between its jobs: past RELEASE_AFTER, but the pool was not
    /// idle. Each thread finds its memory empty once, at its first job.
    #[tokio::test]
    async fn hashing_threads_keep_their_memory_until_the_whole_pool_is_idle() {
        let pool = HashPool::new(2, 0);
        let job = || async {
            let ticket = pool.try_admit().unwrap();
            ticket
                .run(|| {
                    let had = WORKING_MEMORY.with_borrow(Vec::len);
                    grow_working_memory(8);
                    (std::thread::current().id(), had)
                })
                .await
                .unwrap()
        };
        let mut found = Vec::new();
        for _ in 0..6 {
            found.push(job().await);
            std::thread::sleep(Duration::from_millis(600));
        }
        let threads: std::collections::HashSet<_> = found.iter().map(|(id, _)| id).collect();
        let empty = found.iter().filter(|(_, had)| *had == 0).count();
        assert_eq!(empty, threads.len(), "{found:?}");
        std::thread::sleep(RELEASE_AFTER * 2 + Duration::from_millis(500));
        assert_eq!(job().await.1, 0, "freed once the pool was idle");
    }

    #[tokio::test]
    async fn pool_bounds_running_work_and_returns_results() {
        use std::sync::atomic::AtomicUsize;
        let pool = HashPool::new(2, 10);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                let ticket = pool.try_admit().unwrap();
                tokio::spawn(ticket.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    i * 10
                }))
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().unwrap());
        }
        assert_eq!(results, (0..8).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert!(
            pool.try_admit().is_some(),
            "tickets are released when work finishes"
        );
    }

    #[tokio::test]
    async fn hashing_runs_as_the_callers_request() {
        let pool = HashPool::new(1, 1);
        let ticket = pool.try_admit().unwrap();
        let seen =
            request_context::InRequest::new("r-hash".into(), ticket.run(request_context::current))
                .await
                .unwrap();
        assert_eq!(seen.as_deref(), Some("r-hash"));
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_pool() {
        let pool = HashPool::new(1, 1);
        let failed = pool.try_admit().unwrap().run(|| panic!("boom")).await;
        assert!(failed.is_err());
        let ok = pool.try_admit().unwrap().run(|| 7).await;
        assert_eq!(ok.unwrap(), 7);
    }
}
