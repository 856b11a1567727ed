//! A runtime-agnostic future for durability.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::WalError;
use crate::log::{Registered, Shared, Wake};
use crate::sync::Arc;

/// Resolves when its LSN is durable, or with the error that stopped the log.
///
/// It is woken by the log's owner thread, not by an executor's reactor, so
/// any executor can poll it (tokio included, without `spawn_blocking`).
/// Created by [`Wal::durable`](crate::Wal::durable).
#[must_use = "futures do nothing unless polled"]
pub struct DurableFuture {
    shared: Arc<Shared>,
    lsn: u64,
    /// A tail's wait: asks for no sync, and the LSN may not be appended yet.
    passive: bool,
    /// The waiter registered by the last poll, if it still waits: later
    /// polls update it in place, and dropping the future takes it out.
    registered: Option<u64>,
}

impl DurableFuture {
    pub(crate) fn new(shared: Arc<Shared>, lsn: u64) -> Self {
        DurableFuture {
            shared,
            lsn,
            passive: false,
            registered: None,
        }
    }

    pub(crate) fn passive(shared: Arc<Shared>, lsn: u64) -> Self {
        DurableFuture {
            shared,
            lsn,
            passive: true,
            registered: None,
        }
    }

    /// The LSN this future waits for.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }
}

impl std::fmt::Debug for DurableFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableFuture")
            .field("lsn", &self.lsn)
            .finish()
    }
}

impl Future for DurableFuture {
    type Output = Result<(), WalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (lsn, passive) = (self.lsn, self.passive);
        if let Some(id) = self.registered {
            return match self.shared.poll_registered(lsn, id, passive, cx.waker()) {
                Registered::Now(result) => {
                    self.registered = None;
                    Poll::Ready(result)
                }
                Registered::Later(id) => {
                    self.registered = Some(id);
                    Poll::Pending
                }
            };
        }
        let wake = || Wake::Task(cx.waker().clone());
        let registered = if passive {
            self.shared.register_passive(lsn, wake)
        } else {
            self.shared.register(lsn, wake)
        };
        match registered {
            Registered::Now(result) => Poll::Ready(result),
            Registered::Later(id) => {
                self.registered = Some(id);
                Poll::Pending
            }
        }
    }
}

impl Drop for DurableFuture {
    fn drop(&mut self) {
        // A future dropped before it resolved waits no more.
        if let Some(id) = self.registered.take() {
            self.shared.deregister(self.lsn, id);
        }
    }
}
