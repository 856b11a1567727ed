//! A durable, versioned key-value store on the write-ahead log.
//!
//! **Status: not yet implemented.** This crate is an empty placeholder in the
//! workspace so that the dependency graph is in place; it exports nothing.
//!
//! It will offer atomic write batches, MVCC snapshots, checkpoints to sorted
//! table files, compaction and recovery, built on the public API of
//! `wal-engine` alone and doing its file I/O through `wal-io`.
#![forbid(unsafe_code)]
