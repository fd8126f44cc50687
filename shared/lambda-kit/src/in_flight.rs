//! A test double (`testing` feature) for concurrent writes: wraps each request of a fake store,
//! records the keys of the requests in flight, and yields to the other requests a few times
//! before the call goes through, so that requests a scheduler lets run side by side do overlap
//! on a single-threaded runtime, without timing.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Keys in flight, the most seen at once, and every key found in flight twice at once.
///
/// ```
/// use lambda_kit::in_flight::InFlight;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let f = InFlight::default();
/// let a = f.around(vec!["a".into()], async { 1 });
/// let b = f.around(vec!["b".into(), "a".into()], async { 2 });
/// assert_eq!(futures_util::future::join(a, b).await, (1, 2));
/// assert_eq!(f.most(), 3);
/// assert_eq!(f.clashes(), ["a"]);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct InFlight {
    flying: Mutex<Vec<String>>,
    clashes: Mutex<Vec<String>>,
    most: AtomicUsize,
}

impl InFlight {
    /// Runs `call` as one request carrying `keys`: they count as in flight from before it
    /// starts until it is about to run.
    pub async fn around<T>(&self, keys: Vec<String>, call: impl Future<Output = T>) -> T {
        {
            let mut flying = self.flying.lock().unwrap_or_else(|p| p.into_inner());
            for k in &keys {
                if flying.contains(k) {
                    self.clashes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(k.clone());
                }
            }
            flying.extend(keys.iter().cloned());
            self.most.fetch_max(flying.len(), Ordering::SeqCst);
        }
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        {
            let mut flying = self.flying.lock().unwrap_or_else(|p| p.into_inner());
            for k in &keys {
                if let Some(at) = flying.iter().position(|f| f == k) {
                    flying.swap_remove(at);
                }
            }
        }
        call.await
    }

    /// The most keys in flight at once (with one key per request: the most requests).
    pub fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    /// Forgets [`most`](Self::most), to measure a next run.
    pub fn reset_most(&self) {
        self.most.store(0, Ordering::SeqCst);
    }

    /// Keys found in flight in two requests at once.
    pub fn clashes(&self) -> Vec<String> {
        self.clashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
