//! A runtime-agnostic future for durability.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::WalError;
use crate::log::Shared;
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
}

impl DurableFuture {
    pub(crate) fn new(shared: Arc<Shared>, lsn: u64) -> Self {
        DurableFuture {
            shared,
            lsn,
            passive: false,
        }
    }

    pub(crate) fn passive(shared: Arc<Shared>, lsn: u64) -> Self {
        DurableFuture {
            shared,
            lsn,
            passive: true,
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let decided = if self.passive {
            self.shared.poll_passive(self.lsn, cx.waker())
        } else {
            self.shared.poll_durable(self.lsn, cx.waker())
        };
        match decided {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}
