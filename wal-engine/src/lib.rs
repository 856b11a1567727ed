//! The write-ahead log: segments, LSNs, group commit, sync policies, readers
//! and tailing, truncation, recovery and fail-stop on I/O errors.
//!
//! **Status: not yet implemented.** This crate is an empty placeholder in the
//! workspace so that the dependency graph is in place; it exports nothing.
//!
//! It will keep the durability contract (C1 to C6) written in
//! `docs/ARCHITECTURE.md`, on the bytes of `wal-format` and the I/O of
//! `wal-io`, and never touch a file descriptor itself.
#![forbid(unsafe_code)]
