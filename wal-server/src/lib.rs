//! The replicated key-value server (`walkv`): the Redis protocol on
//! `wal-kv` and `wal-raft`, so `redis-cli`, `redis-benchmark` and every
//! Redis client library are its clients.
//!
//! Built in parts (see the README): so far the protocol, requests in
//! ([`Decoder`]) and replies out ([`Reply`]), RESP2 and RESP3, and a
//! single-node [`Server`] on a local store with the string commands
//! (`GET`, `SET`, `INCR`, ...); replication and the rest of the commands
//! follow.
//!
//! ```
//! use bytes::BytesMut;
//! use wal_server::{Decoder, Limits, Protocol, Reply};
//!
//! let mut decoder = Decoder::new(Limits::default());
//! // A pipelined array request, then an inline one.
//! let mut input = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING \"a b\"\r\n"[..]);
//! let get = decoder.decode(&mut input)?.unwrap();
//! assert_eq!(get, ["GET", "k"]);
//! let ping = decoder.decode(&mut input)?.unwrap();
//! assert_eq!(ping, ["PING", "a b"]);
//! assert!(decoder.decode(&mut input)?.is_none());
//!
//! let mut out = BytesMut::new();
//! Reply::Null.encode(Protocol::Resp2, &mut out);
//! Reply::Null.encode(Protocol::Resp3, &mut out);
//! assert_eq!(&out[..], b"$-1\r\n_\r\n");
//! # Ok::<(), wal_server::ProtocolError>(())
//! ```
#![forbid(unsafe_code)]

mod backend;
mod cluster;
mod command;
mod error;
mod http_api;
mod info;
mod metrics;
mod reply;
mod request;
mod scan;
mod server;
mod strings;
mod value;

pub use backend::SyncMode;
pub use cluster::admin::call as admin_call;
pub use cluster::{ClusterConfig, NodeAddr};
pub use error::ServerError;
pub use reply::{Protocol, Reply};
pub use request::{Decoder, Limits, ProtocolError, encode_request};
pub use server::{ArchiveConfig, Config, Server};
