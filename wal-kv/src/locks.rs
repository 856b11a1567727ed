//! Lock helpers. A panic while a lock is held (a bug, or a panicking
//! callback) must not turn every later call into a second panic: the data
//! the store's locks guard is kept consistent by each critical section
//! before anything that could panic, so a poisoned lock is taken as is.

use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::Duration;

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `l`, poisoned or not.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `l`, poisoned or not.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cv` with `guard`, at most `timeout`, poisoned or not.
pub(crate) fn wait<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Option<Duration>,
) -> MutexGuard<'a, T> {
    match timeout {
        Some(t) => {
            cv.wait_timeout(guard, t)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
        None => cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
    }
}
