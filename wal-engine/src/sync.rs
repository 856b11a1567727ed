//! The one place the engine's synchronisation comes from: `std` normally,
//! `loom`'s model-checked copies under `--cfg loom`, so the loom models
//! (`cargo xtask loom`) check the real group-commit code, not a copy of it.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// `std`'s `Arc`, for data that is shared but is not synchronisation (the
/// storage handle, a poisoning error): it stays the same under loom.
pub(crate) use std::sync::Arc as StdArc;

/// Threads: spawning the owner, parking and unparking waiters.
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::{JoinHandle, Thread, current, park, park_timeout};

    #[cfg(loom)]
    pub(crate) use loom::thread::{JoinHandle, Thread, current, park};

    /// Loom has no timed park; a model never relies on the timeout firing.
    #[cfg(loom)]
    pub(crate) fn park_timeout(_timeout: std::time::Duration) {
        park();
    }

    /// Spawns a named thread.
    #[cfg(not(loom))]
    pub(crate) fn spawn_named<F>(name: &str, f: F) -> std::io::Result<JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        std::thread::Builder::new().name(name.to_owned()).spawn(f)
    }

    /// Spawns a thread in the model.
    #[cfg(loom)]
    pub(crate) fn spawn_named<F>(_name: &str, f: F) -> std::io::Result<JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        Ok(loom::thread::spawn(f))
    }
}

/// Locks a mutex, ignoring poisoning: every critical section of the engine
/// leaves its data consistent before anything in it can panic (a panicking
/// user callback runs outside every lock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
