//! openraft's messages between nodes as bytes, for a transport to carry
//! (`docs/RAFT_FORMAT.md`, "Messages"). Entries travel as the records the
//! Raft log stores, so a leader sends what it read and a follower appends
//! what it received, with the same checks. Decoders treat the bytes as
//! hostile: a message from a peer is no more trusted than one from disk.
//!
//! ```
//! use bytes::Bytes;
//! use openraft::raft::VoteRequest;
//! use wal_raft::wire::Wire;
//! use wal_raft::{LeaderId, TypeConfig, Vote};
//!
//! let vote = Vote::new(3, 1);
//! let request = VoteRequest::<TypeConfig>::new(vote, None);
//! let bytes = Bytes::from(request.encode()?);
//! assert_eq!(VoteRequest::<TypeConfig>::decode(&bytes)?, request);
//! // A message is refused where another is expected.
//! assert!(openraft::raft::SnapshotResponse::<TypeConfig>::decode(&bytes).is_err());
//! # Ok::<(), wal_raft::RaftStoreError>(())
//! ```

use bytes::Bytes;
use openraft::raft::TransferLeaderError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};

use crate::codec::{self, Cursor, Record};
use crate::{LeaderId, RaftStoreError, TypeConfig, Vote};

/// The first byte of every message: the layout's version.
const VERSION: u8 = 1;

const VOTE_REQUEST: u8 = 1;
const VOTE_RESPONSE: u8 = 2;
const APPEND_REQUEST: u8 = 3;
const APPEND_RESPONSE: u8 = 4;
const SNAPSHOT_RESPONSE: u8 = 5;
const TRANSFER_REQUEST: u8 = 6;
const TRANSFER_RESPONSE: u8 = 7;

/// Smallest entry record: tag, log id, payload kind.
const ENTRY_BYTES_MIN: usize = 26;

/// A message nodes exchange, as bytes.
pub trait Wire: Sized {
    /// The message's bytes.
    ///
    /// # Errors
    /// A part too large for its length field (over 4 GiB).
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError>;

    /// The message in `bytes`.
    ///
    /// # Errors
    /// [`RaftStoreError::Corrupt`] for bytes that are not one whole
    /// message of this kind and version.
    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError>;
}

fn start(kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    out.push(kind);
    out
}

/// A cursor past the header, which must be `kind`'s.
fn open<'a>(bytes: &'a [u8], kind: u8, what: &'a str) -> Result<Cursor<'a>, RaftStoreError> {
    let mut c = Cursor { bytes, at: 0, what };
    let version = c.u8()?;
    if version != VERSION {
        return Err(c.bad(&format!("message version {version}, not {VERSION}")));
    }
    let got = c.u8()?;
    if got != kind {
        return Err(c.bad(&format!("a message of kind {got}, not {kind}")));
    }
    Ok(c)
}

fn put_vote(out: &mut Vec<u8>, vote: &Vote) {
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
}

fn vote(c: &mut Cursor<'_>) -> Result<Vote, RaftStoreError> {
    let (term, node_id) = (c.u64()?, c.u64()?);
    let leader_id = LeaderId { term, node_id };
    match c.u8()? {
        0 => Ok(Vote {
            leader_id,
            committed: false,
        }),
        1 => Ok(Vote {
            leader_id,
            committed: true,
        }),
        _ => Err(c.bad("a committed flag that is neither 0 nor 1")),
    }
}

fn flag(c: &mut Cursor<'_>) -> Result<bool, RaftStoreError> {
    match c.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(c.bad("a flag that is neither 0 nor 1")),
    }
}

impl Wire for VoteRequest<TypeConfig> {
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError> {
        let mut out = start(VOTE_REQUEST);
        put_vote(&mut out, &self.vote);
        codec::put_opt_log_id(&mut out, self.last_log_id.as_ref());
        Ok(out)
    }

    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError> {
        let mut c = open(bytes, VOTE_REQUEST, "vote request")?;
        let v = vote(&mut c)?;
        let last = c.opt_log_id()?;
        c.end()?;
        Ok(VoteRequest::new(v, last))
    }
}

impl Wire for VoteResponse<TypeConfig> {
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError> {
        let mut out = start(VOTE_RESPONSE);
        put_vote(&mut out, &self.vote);
        out.push(u8::from(self.vote_granted));
        codec::put_opt_log_id(&mut out, self.last_log_id.as_ref());
        Ok(out)
    }

    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError> {
        let mut c = open(bytes, VOTE_RESPONSE, "vote response")?;
        let v = vote(&mut c)?;
        let granted = flag(&mut c)?;
        let last = c.opt_log_id()?;
        c.end()?;
        Ok(VoteResponse::new(v, last, granted))
    }
}

impl Wire for AppendEntriesRequest<TypeConfig> {
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError> {
        let mut out = start(APPEND_REQUEST);
        put_vote(&mut out, &self.vote);
        codec::put_opt_log_id(&mut out, self.prev_log_id.as_ref());
        codec::put_opt_log_id(&mut out, self.leader_commit.as_ref());
        let count = u32::try_from(self.entries.len())
            .map_err(|_| RaftStoreError::Misuse(format!("{} entries", self.entries.len())))?;
        out.extend_from_slice(&count.to_le_bytes());
        for entry in &self.entries {
            let record = codec::encode_entry(entry)?;
            let len = u32::try_from(record.len())
                .map_err(|_| RaftStoreError::Misuse(format!("an entry of {}", record.len())))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&record);
        }
        Ok(out)
    }

    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError> {
        let what = "append-entries request";
        let mut c = open(bytes, APPEND_REQUEST, what)?;
        let v = vote(&mut c)?;
        let prev_log_id = c.opt_log_id()?;
        let leader_commit = c.opt_log_id()?;
        let count = c.u32()? as usize;
        // No count can make us reserve more than the bytes could hold.
        if count > (c.bytes.len() - c.at) / (4 + ENTRY_BYTES_MIN) {
            return Err(c.bad(&format!("{count} entries")));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let len = c.u32()? as usize;
            let from = c.at;
            c.take(len)?;
            match codec::decode_in(&bytes.slice(from..from + len), what)? {
                Record::Entry(entry) => entries.push(entry),
                Record::Committed(_) => return Err(c.bad("a record that is not an entry")),
            }
        }
        c.end()?;
        Ok(AppendEntriesRequest {
            vote: v,
            prev_log_id,
            entries,
            leader_commit,
        })
    }
}

const SUCCESS: u8 = 0;
const PARTIAL: u8 = 1;
const CONFLICT: u8 = 2;
const HIGHER_VOTE: u8 = 3;

impl Wire for AppendEntriesResponse<TypeConfig> {
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError> {
        let mut out = start(APPEND_RESPONSE);
        match self {
            AppendEntriesResponse::Success => out.push(SUCCESS),
            AppendEntriesResponse::PartialSuccess(upto) => {
                out.push(PARTIAL);
                codec::put_opt_log_id(&mut out, upto.as_ref());
            }
            AppendEntriesResponse::Conflict => out.push(CONFLICT),
            AppendEntriesResponse::HigherVote(v) => {
                out.push(HIGHER_VOTE);
                put_vote(&mut out, v);
            }
        }
        Ok(out)
    }

    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError> {
        let mut c = open(bytes, APPEND_RESPONSE, "append-entries response")?;
        let response = match c.u8()? {
            SUCCESS => AppendEntriesResponse::Success,
            PARTIAL => AppendEntriesResponse::PartialSuccess(c.opt_log_id()?),
            CONFLICT => AppendEntriesResponse::Conflict,
            HIGHER_VOTE => AppendEntriesResponse::HigherVote(vote(&mut c)?),
            other => return Err(c.bad(&format!("unknown outcome {other}"))),
        };
        c.end()?;
        Ok(response)
    }
}

impl Wire for SnapshotResponse<TypeConfig> {
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError> {
        let mut out = start(SNAPSHOT_RESPONSE);
        put_vote(&mut out, &self.vote);
        Ok(out)
    }

    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError> {
        let mut c = open(bytes, SNAPSHOT_RESPONSE, "snapshot response")?;
        let v = vote(&mut c)?;
        c.end()?;
        Ok(SnapshotResponse::new(v))
    }
}

impl Wire for TransferLeaderRequest<TypeConfig> {
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError> {
        let mut out = start(TRANSFER_REQUEST);
        put_vote(&mut out, self.from_leader());
        out.extend_from_slice(&self.to_node_id().to_le_bytes());
        codec::put_opt_log_id(&mut out, self.last_log_id());
        Ok(out)
    }

    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError> {
        let mut c = open(bytes, TRANSFER_REQUEST, "transfer-leader request")?;
        let from = vote(&mut c)?;
        let to = c.u64()?;
        let last = c.opt_log_id()?;
        c.end()?;
        Ok(TransferLeaderRequest::new(from, to, last))
    }
}

const ACCEPTED: u8 = 0;
const VOTE_CHANGED: u8 = 1;
const LOG_NOT_FLUSHED: u8 = 2;

/// The answer to a [`TransferLeaderRequest`], which openraft spells as a
/// `Result`: a newtype, so it can have [`Wire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLeaderAnswer(pub TransferLeaderResponse<TypeConfig>);

impl Wire for TransferLeaderAnswer {
    fn encode(&self) -> Result<Vec<u8>, RaftStoreError> {
        let mut out = start(TRANSFER_RESPONSE);
        match &self.0 {
            Ok(()) => out.push(ACCEPTED),
            Err(TransferLeaderError::VoteChanged { expected, actual }) => {
                out.push(VOTE_CHANGED);
                put_vote(&mut out, expected);
                put_vote(&mut out, actual);
            }
            Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
                out.push(LOG_NOT_FLUSHED);
                codec::put_opt_log_id(&mut out, expected.as_ref());
                codec::put_opt_log_id(&mut out, actual.as_ref());
            }
        }
        Ok(out)
    }

    fn decode(bytes: &Bytes) -> Result<Self, RaftStoreError> {
        let mut c = open(bytes, TRANSFER_RESPONSE, "transfer-leader response")?;
        let answer = match c.u8()? {
            ACCEPTED => Ok(()),
            VOTE_CHANGED => Err(TransferLeaderError::VoteChanged {
                expected: vote(&mut c)?,
                actual: vote(&mut c)?,
            }),
            LOG_NOT_FLUSHED => Err(TransferLeaderError::LogNotFlushed {
                expected: c.opt_log_id()?,
                actual: c.opt_log_id()?,
            }),
            other => return Err(c.bad(&format!("unknown outcome {other}"))),
        };
        c.end()?;
        Ok(TransferLeaderAnswer(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Guard, LogId, Payload, Request};
    use openraft::entry::RaftEntry;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(
            LeaderId {
                term,
                node_id: node,
            },
            index,
        )
    }

    fn append_request() -> AppendEntriesRequest<TypeConfig> {
        let mut batch = wal_kv::WriteBatch::new();
        batch.put("k", "v");
        batch.delete("gone");
        let guarded = Request::guarded(vec![Guard::absent("k")], batch.clone());
        AppendEntriesRequest {
            vote: Vote::new_committed(4, 2),
            prev_log_id: Some(log_id(3, 1, 9)),
            entries: vec![
                Entry::new(log_id(4, 2, 10), Payload::Blank),
                Entry::new(log_id(4, 2, 11), Payload::Normal(Request::new(batch))),
                Entry::new(log_id(4, 2, 12), Payload::Normal(guarded)),
            ],
            leader_commit: Some(log_id(3, 1, 9)),
        }
    }

    /// Every message round-trips (compared by their debug forms: not
    /// every message has `PartialEq`), and every shorter prefix and every
    /// longer extension of its bytes is refused.
    fn check<M: Wire + std::fmt::Debug>(m: &M) {
        let bytes = m.encode().unwrap();
        let back = M::decode(&Bytes::from(bytes.clone())).unwrap();
        assert_eq!(format!("{back:?}"), format!("{m:?}"));
        for cut in 0..bytes.len() {
            assert!(
                M::decode(&Bytes::copy_from_slice(&bytes[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(M::decode(&Bytes::from(longer)).is_err());
        let mut other_version = bytes;
        other_version[0] = VERSION + 1;
        assert!(M::decode(&Bytes::from(other_version)).is_err());
    }

    #[test]
    fn every_message_round_trips_and_truncations_are_refused() {
        check(&VoteRequest::<TypeConfig>::new(
            Vote::new(7, 3),
            Some(log_id(6, 1, 100)),
        ));
        check(&VoteResponse::<TypeConfig>::new(
            Vote::new(7, 3),
            None,
            true,
        ));
        check(&VoteResponse::<TypeConfig>::new(
            Vote::new_committed(8, 1),
            Some(log_id(1, 1, 1)),
            false,
        ));
        check(&append_request());
        check(&AppendEntriesResponse::<TypeConfig>::Success);
        check(&AppendEntriesResponse::<TypeConfig>::PartialSuccess(Some(
            log_id(2, 2, 5),
        )));
        check(&AppendEntriesResponse::<TypeConfig>::PartialSuccess(None));
        check(&AppendEntriesResponse::<TypeConfig>::Conflict);
        check(&AppendEntriesResponse::<TypeConfig>::HigherVote(Vote::new(
            9, 2,
        )));
        check(&SnapshotResponse::<TypeConfig>::new(Vote::new_committed(
            5, 5,
        )));
        check(&TransferLeaderRequest::<TypeConfig>::new(
            Vote::new_committed(5, 1),
            2,
            Some(log_id(5, 1, 40)),
        ));
        check(&TransferLeaderAnswer(Ok(())));
        check(&TransferLeaderAnswer(Err(
            TransferLeaderError::VoteChanged {
                expected: Vote::new_committed(5, 1),
                actual: Vote::new(6, 3),
            },
        )));
        check(&TransferLeaderAnswer(Err(
            TransferLeaderError::LogNotFlushed {
                expected: Some(log_id(5, 1, 40)),
                actual: None,
            },
        )));
    }

    #[test]
    fn hostile_counts_and_kinds_are_refused() {
        let bytes = append_request().encode().unwrap();
        // The entry count sits after version, kind, vote (17) and two
        // optional log ids (25 each).
        let at = 2 + 17 + 25 + 25;
        let mut huge = bytes.clone();
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = AppendEntriesRequest::<TypeConfig>::decode(&Bytes::from(huge)).unwrap_err();
        assert!(err.to_string().contains("entries"), "{err}");
        // A message sent to the wrong endpoint.
        assert!(VoteRequest::<TypeConfig>::decode(&Bytes::from(bytes)).is_err());
        // A committed record where an entry belongs.
        let mut forged = start(APPEND_REQUEST);
        put_vote(&mut forged, &Vote::new(1, 1));
        codec::put_opt_log_id(&mut forged, None);
        codec::put_opt_log_id(&mut forged, None);
        forged.extend_from_slice(&1u32.to_le_bytes());
        let record = codec::encode_committed(&log_id(1, 1, 1));
        forged.extend_from_slice(&u32::try_from(record.len()).unwrap().to_le_bytes());
        forged.extend_from_slice(&record);
        assert!(AppendEntriesRequest::<TypeConfig>::decode(&Bytes::from(forged)).is_err());
    }
}
