//! The id of the request a thread is working for, so every log line a request causes can
//! name it — on the HTTP worker, on a blocking thread and on a hashing thread alike.
//!
//! The web tier sets it while it polls a request's future ([`InRequest`]); work handed to
//! other threads carries it along ([`carried`]) and sets it there
//! for as long as the work runs ([`scope`]). The logger reads it with [`current`].

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

thread_local! {
    static CURRENT: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// The id of the request this thread is working for, if any.
pub fn current() -> Option<Arc<str>> {
    CURRENT.with_borrow(Clone::clone)
}

/// Runs `work` with `id` as this thread's current request, then restores the previous one
/// (also when `work` panics).
pub fn scope<R>(id: Option<Arc<str>>, work: impl FnOnce() -> R) -> R {
    let _restore = Restore(CURRENT.replace(id));
    work()
}

/// Puts the previous id back when dropped.
struct Restore(Option<Arc<str>>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.set(self.0.take());
    }
}

/// A fresh random id: a UUID version 4, from the operating system's generator.
pub fn new_id() -> String {
    uuid::Builder::from_random_bytes(crate::secrets::random_bytes())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A future that is the request `id`'s current work each time it is polled, whichever
/// thread polls it. Boxed inside, so it is `Unpin` without unsafe pin projection.
pub struct InRequest<F> {
    id: Arc<str>,
    inner: Pin<Box<F>>,
}

impl<F: Future> InRequest<F> {
    pub fn new(id: Arc<str>, inner: F) -> Self {
        Self {
            id,
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let id = Arc::clone(&self.id);
        scope(Some(id), || self.inner.as_mut().poll(cx))
    }
}

/// `work`, made to run as this thread's current request on whichever thread calls it: the
/// one way work handed to another thread keeps naming its request.
pub fn carried<R>(work: impl FnOnce() -> R) -> impl FnOnce() -> R {
    let request = current();
    move || scope(request, work)
}

/// Runs blocking work (a query) on the runtime's blocking threads, so an async caller's
/// worker stays free. The work runs as the caller's request, so what it logs names the
/// request.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::ServiceError> + Send + 'static,
) -> Result<T, crate::ServiceError> {
    tokio::task::spawn_blocking(carried(work))
        .await
        .map_err(|e| crate::ServiceError::internal("blocking task failed", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert!(current().is_none());
        scope(Some("outer".into()), || {
            assert_eq!(current().as_deref(), Some("outer"));
            scope(Some("inner".into()), || {
                assert_eq!(current().as_deref(), Some("inner"));
            });
            assert_eq!(current().as_deref(), Some("outer"));
            let _ = std::panic::catch_unwind(|| scope(None, || panic!("boom")));
            assert_eq!(current().as_deref(), Some("outer"));
        });
        assert!(current().is_none());
    }

    #[test]
    fn new_ids_are_version_4_uuids() {
        let id = new_id();
        let parsed = uuid::Uuid::try_parse(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id.len(), 36);
        assert_ne!(id, new_id());
    }

    #[tokio::test]
    async fn the_id_is_current_only_while_the_future_is_polled() {
        let seen = InRequest::new("r-1".into(), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("r-1"));
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn blocking_work_carries_the_id() {
        let seen = InRequest::new("r-2".into(), async { blocking(|| Ok(current())).await })
            .await
            .unwrap();
        assert_eq!(seen.as_deref(), Some("r-2"));
    }
}
