//! Pause points in login, refresh and the movie reads, where a test can run code (change a password, say)
//! to force an interleaving that timing alone would rarely produce. Each service instance
//! has its own, so tests running side by side never meet each other's hooks.
//!
//! Only with the `test-hooks` feature (the web tier's tests enable it): without it
//! [`Hooks`] is empty and [`Hooks::reach`] does nothing, so a release build has no hook.

/// Where a hook may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// A login's password matched; its session has not started yet.
    LoginVerified,
    /// A refresh marked its token used; its transaction has not read the user yet.
    RefreshClaimed,
    /// A refresh used its token and committed; its access token is not signed yet.
    RefreshRotated,
    /// A movie read fetched its movie or page; it has not stored it in the cache yet.
    MovieFetched,
    /// A create sent with an idempotency key inserted its movie; its answer is not stored
    /// and its transaction, holding the key, has not committed yet.
    KeyedMovieInserted,
}

#[cfg(feature = "test-hooks")]
mod enabled {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};

    use super::Point;

    type Hook = Arc<dyn Fn() + Send + Sync>;

    #[derive(Clone, Default)]
    pub struct Hooks(Arc<Mutex<HashMap<Point, Hook>>>);

    impl Hooks {
        /// Runs `hook` on whichever thread reaches `point`, each time, until replaced.
        pub fn set(&self, point: Point, hook: impl Fn() + Send + Sync + 'static) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(point, Arc::new(hook));
        }

        pub fn clear(&self, point: Point) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&point);
        }

        pub(crate) fn reach(&self, point: Point) {
            let hook = self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&point)
                .cloned();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    impl std::fmt::Debug for Hooks {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Hooks")
        }
    }
}

#[cfg(feature = "test-hooks")]
pub use enabled::Hooks;

#[cfg(not(feature = "test-hooks"))]
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    _none: (),
}

#[cfg(not(feature = "test-hooks"))]
impl Hooks {
    #[inline(always)]
    pub(crate) fn reach(&self, _point: Point) {}
}
