//! Every file descriptor of the write-ahead log.
//!
//! **Status: not yet implemented.** This crate is an empty placeholder in the
//! workspace so that the dependency graph is in place; it exports nothing.
//!
//! It will own the small positional storage trait that `wal-engine` and
//! `wal-kv` do all their I/O through, and three backends behind it: `uring`
//! (Linux, `io_uring`, optional `O_DIRECT`), `portable` (`pwritev` and
//! `fdatasync`) and `sim` (in memory, deterministic from a seed, losing
//! unsynced data the ways real disks do and injecting I/O errors). It is the
//! only crate of the workspace allowed `unsafe` code, and every block of it
//! will carry a `// SAFETY:` proof.
