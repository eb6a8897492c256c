//! Argon2id hashing with configurable parameters, and the gate that bounds how many
//! hashes run at once (each holds `argon2_memory_kib` of memory).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::ServiceError;
use crate::config::AuthSettings;

/// Hashes and verifies passwords as argon2id PHC strings.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    params: Params,
}

impl PasswordHasher {
    /// A hasher with the parameters from `settings`; fails if argon2 refuses them.
    pub fn new(settings: &AuthSettings) -> Result<Self, argon2::Error> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
            params,
        })
    }

    /// A fresh salted PHC string for `password`.
    pub fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
    }

    /// Whether `password` matches `phc`; an unparsable hash never matches.
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(hash) => self
                .argon2
                .verify_password(password.as_bytes(), &hash)
                .is_ok(),
            Err(error) => {
                log::error!("stored password hash cannot be parsed: {error}");
                false
            }
        }
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

/// Bounds password hashing: at most `concurrency` hashes run and at most `queue` more wait.
/// Admission ([`HashGate::try_admit`]) never blocks, so an overloaded server can say 503
/// at once instead of piling up threads and memory.
#[derive(Debug)]
pub struct HashGate {
    state: Mutex<GateState>,
    slot_freed: Condvar,
    concurrency: usize,
    capacity: usize,
}

#[derive(Debug, Default)]
struct GateState {
    admitted: usize,
    running: usize,
}

impl HashGate {
    /// A gate running `concurrency` hashes at once with `queue` waiting places.
    pub fn new(concurrency: usize, queue: usize) -> Arc<Self> {
        let concurrency = concurrency.max(1);
        Arc::new(Self {
            state: Mutex::default(),
            slot_freed: Condvar::new(),
            concurrency,
            capacity: concurrency + queue,
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ticket if there is room, `None` if hashing is saturated. Never blocks.
    pub fn try_admit(self: &Arc<Self>) -> Option<HashTicket> {
        let mut state = self.lock();
        if state.admitted >= self.capacity {
            return None;
        }
        state.admitted += 1;
        Some(HashTicket {
            gate: Arc::clone(self),
        })
    }
}

/// A place in the hashing queue; dropping it gives the place back.
#[derive(Debug)]
pub struct HashTicket {
    gate: Arc<HashGate>,
}

impl HashTicket {
    /// Runs `work` once a hashing slot is free (blocking the calling thread until then).
    pub fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        let gate = &self.gate;
        {
            let mut state = gate.lock();
            while state.running >= gate.concurrency {
                state = gate
                    .slot_freed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.running += 1;
        }
        let _slot = Slot(gate);
        work()
    }
}

impl Drop for HashTicket {
    fn drop(&mut self) {
        self.gate.lock().admitted -= 1;
    }
}

/// Frees a running slot even if the work panics.
struct Slot<'a>(&'a HashGate);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.slot_freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_settings() -> AuthSettings {
        AuthSettings {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..AuthSettings::default()
        }
    }

    #[test]
    fn hash_round_trip_and_phc_format() {
        let hasher = PasswordHasher::new(&AuthSettings::default()).unwrap();
        let phc = hasher.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify("correct horse", &phc));
        assert!(!hasher.verify("wrong horse", &phc));
        assert!(!hasher.verify("correct horse", "not a phc string"));
        assert!(!hasher.needs_rehash(&phc));
    }

    #[test]
    fn older_parameters_need_rehash() {
        let old = PasswordHasher::new(&fast_settings())
            .unwrap()
            .hash("pw-12345")
            .unwrap();
        let current = PasswordHasher::new(&AuthSettings::default()).unwrap();
        assert!(current.needs_rehash(&old));
        assert!(current.verify("pw-12345", &old), "old hashes still verify");
    }

    #[test]
    fn gate_admits_concurrency_plus_queue() {
        let gate = HashGate::new(2, 1);
        let tickets: Vec<_> = (0..3).map(|_| gate.try_admit().unwrap()).collect();
        assert!(gate.try_admit().is_none());
        drop(tickets);
        assert!(gate.try_admit().is_some());
    }

    #[test]
    fn gate_bounds_running_work() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = HashGate::new(2, 10);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ticket = gate.try_admit().unwrap();
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                std::thread::spawn(move || {
                    ticket.run(|| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    });
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
