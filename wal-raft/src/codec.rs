//! The records of the Raft log and the metadata file, as bytes
//! (`docs/RAFT_FORMAT.md`). Decoders treat the bytes as hostile: every
//! length is checked against what is left before it is used.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::BasicNode;
use openraft::entry::RaftEntry;

use crate::{
    Entry, Guard, LeaderId, LogId, Membership, Payload, RaftStoreError, Request, StoredMembership,
    Vote,
};

/// A record holding one entry.
pub(crate) const ENTRY: u8 = 1;
/// A record holding the committed log id.
pub(crate) const COMMITTED: u8 = 2;

const BLANK: u8 = 0;
const NORMAL: u8 = 1;
const MEMBERSHIP: u8 = 2;
const GUARDED: u8 = 3;

const ABSENT: u8 = 0;
const EQUALS: u8 = 1;

/// Most voter sets in a membership (a joint config has two).
const CONFIGS_MAX: u32 = 16;
/// Longest node address.
const ADDR_BYTES_MAX: u32 = 4096;

/// A decoded record of the Raft log.
#[derive(Debug)]
pub(crate) enum Record {
    Entry(Entry),
    Committed(LogId),
}

pub(crate) fn put_log_id(out: &mut Vec<u8>, id: &LogId) {
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
}

/// Encodes an entry as one record.
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, RaftStoreError> {
    let mut out = Vec::with_capacity(64);
    out.push(ENTRY);
    put_log_id(&mut out, &entry.log_id);
    match &entry.payload {
        Payload::Blank => out.push(BLANK),
        Payload::Normal(request) if request.guards.is_empty() => {
            out.push(NORMAL);
            out.extend_from_slice(&request.batch.to_record()?);
        }
        Payload::Normal(request) => {
            out.push(GUARDED);
            encode_guards(&mut out, &request.guards)?;
            out.extend_from_slice(&request.batch.to_record()?);
        }
        Payload::Membership(m) => {
            out.push(MEMBERSHIP);
            encode_membership(&mut out, m)?;
        }
    }
    Ok(out)
}

fn encode_guards(out: &mut Vec<u8>, guards: &[Guard]) -> Result<(), RaftStoreError> {
    out.extend_from_slice(&len_u32(guards.len(), "guards")?.to_le_bytes());
    for g in guards {
        out.extend_from_slice(&len_u32(g.key.len(), "key bytes")?.to_le_bytes());
        out.extend_from_slice(&g.key);
        match &g.expect {
            None => out.push(ABSENT),
            Some(v) => {
                out.push(EQUALS);
                out.extend_from_slice(&len_u32(v.len(), "value bytes")?.to_le_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    Ok(())
}

/// The bytes a request's payload takes in its record (kind byte included).
pub(crate) fn request_bytes(request: &Request) -> usize {
    let guards: usize = if request.guards.is_empty() {
        0
    } else {
        4 + request
            .guards
            .iter()
            .map(|g| 4 + g.key.len() + 1 + g.expect.as_ref().map_or(0, |v| 4 + v.len()))
            .sum::<usize>()
    };
    1 + guards
        + request
            .batch
            .to_record()
            .map_or(usize::MAX / 2, |r| r.len())
}

/// Encodes the committed log id as one record.
pub(crate) fn encode_committed(id: &LogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(COMMITTED);
    put_log_id(&mut out, id);
    out
}

fn len_u32(n: usize, what: &str) -> Result<u32, RaftStoreError> {
    u32::try_from(n).map_err(|_| RaftStoreError::Misuse(format!("{n} {what}")))
}

fn encode_membership(out: &mut Vec<u8>, m: &Membership) -> Result<(), RaftStoreError> {
    let configs = m.get_joint_config();
    out.extend_from_slice(&len_u32(configs.len(), "voter sets")?.to_le_bytes());
    for config in configs {
        out.extend_from_slice(&len_u32(config.len(), "voters")?.to_le_bytes());
        for id in config {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    let nodes: Vec<(&u64, &BasicNode)> = m.nodes().collect();
    out.extend_from_slice(&len_u32(nodes.len(), "nodes")?.to_le_bytes());
    for (id, node) in nodes {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&len_u32(node.addr.len(), "address bytes")?.to_le_bytes());
        out.extend_from_slice(node.addr.as_bytes());
    }
    Ok(())
}

/// Reads fields off untrusted bytes.
pub(crate) struct Cursor<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
    pub what: &'a str,
}

impl<'a> Cursor<'a> {
    pub fn bad(&self, detail: &str) -> RaftStoreError {
        RaftStoreError::corrupt(self.what, format!("{detail} at byte {}", self.at))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], RaftStoreError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.bad("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, RaftStoreError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, RaftStoreError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, RaftStoreError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn log_id(&mut self) -> Result<LogId, RaftStoreError> {
        let (term, node_id, index) = (self.u64()?, self.u64()?, self.u64()?);
        Ok(LogId::new(LeaderId { term, node_id }, index))
    }

    /// A log id written by [`put_opt_log_id`].
    pub fn opt_log_id(&mut self) -> Result<Option<LogId>, RaftStoreError> {
        let has = self.u8()?;
        let id = self.log_id()?;
        match has {
            0 => Ok(None),
            1 => Ok(Some(id)),
            _ => Err(self.bad("a presence byte that is neither 0 nor 1")),
        }
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    pub fn end(&self) -> Result<(), RaftStoreError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.bad("trailing bytes"))
        }
    }
}

/// Decodes a record of the Raft log read at `lsn`.
pub(crate) fn decode(record: &Bytes, lsn: u64) -> Result<Record, RaftStoreError> {
    decode_in(record, &format!("raft log record at LSN {lsn}"))
}

/// Decodes a record found in `what` (for its errors).
pub(crate) fn decode_in(record: &Bytes, what: &str) -> Result<Record, RaftStoreError> {
    let mut c = Cursor {
        bytes: record,
        at: 0,
        what,
    };
    match c.u8()? {
        COMMITTED => {
            let id = c.log_id()?;
            c.end()?;
            Ok(Record::Committed(id))
        }
        ENTRY => {
            let log_id = c.log_id()?;
            let payload = match c.u8()? {
                BLANK => Payload::Blank,
                kind @ (NORMAL | GUARDED) => {
                    let guards = if kind == GUARDED {
                        decode_guards(&mut c, record)?
                    } else {
                        Vec::new()
                    };
                    let start = c.at;
                    c.rest();
                    let batch = wal_kv::WriteBatch::from_record(&record.slice(start..))
                        .map_err(|e| RaftStoreError::corrupt(what, e.to_string()))?;
                    Payload::Normal(Request::guarded(guards, batch))
                }
                MEMBERSHIP => Payload::Membership(decode_membership(&mut c)?),
                kind => return Err(c.bad(&format!("unknown payload kind {kind}"))),
            };
            c.end()?;
            Ok(Record::Entry(Entry::new(log_id, payload)))
        }
        tag => Err(c.bad(&format!("unknown record tag {tag}"))),
    }
}

fn decode_guards(c: &mut Cursor<'_>, record: &Bytes) -> Result<Vec<Guard>, RaftStoreError> {
    let count = c.u32()? as usize;
    // Each guard takes at least 5 bytes: no count can make us reserve more
    // than the record could hold.
    if count > (c.bytes.len() - c.at) / 5 {
        return Err(c.bad(&format!("{count} guards")));
    }
    let mut guards = Vec::with_capacity(count);
    for _ in 0..count {
        let len = c.u32()? as usize;
        let start = c.at;
        c.take(len)?;
        let key = record.slice(start..start + len);
        let expect = match c.u8()? {
            ABSENT => None,
            EQUALS => {
                let len = c.u32()? as usize;
                let start = c.at;
                c.take(len)?;
                Some(record.slice(start..start + len))
            }
            other => return Err(c.bad(&format!("unknown guard kind {other}"))),
        };
        guards.push(Guard { key, expect });
    }
    Ok(guards)
}

fn decode_membership(c: &mut Cursor<'_>) -> Result<Membership, RaftStoreError> {
    let count = c.u32()?;
    if count > CONFIGS_MAX {
        return Err(c.bad(&format!("{count} voter sets")));
    }
    let mut configs = Vec::new();
    for _ in 0..count {
        let n = c.u32()?;
        // Each voter takes 8 bytes: a count past what is left is a lie.
        if u64::from(n) * 8 > (c.bytes.len() - c.at) as u64 {
            return Err(c.bad(&format!("{n} voters")));
        }
        let mut set = BTreeSet::new();
        for _ in 0..n {
            set.insert(c.u64()?);
        }
        configs.push(set);
    }
    let n = c.u32()?;
    if u64::from(n) * 12 > (c.bytes.len() - c.at) as u64 {
        return Err(c.bad(&format!("{n} nodes")));
    }
    let mut nodes = BTreeMap::new();
    for _ in 0..n {
        let id = c.u64()?;
        let len = c.u32()?;
        if len > ADDR_BYTES_MAX {
            return Err(c.bad(&format!("an address of {len} bytes")));
        }
        let addr = std::str::from_utf8(c.take(len as usize)?)
            .map_err(|_| c.bad("an address that is not UTF-8"))?;
        nodes.insert(
            id,
            BasicNode {
                addr: addr.to_owned(),
            },
        );
    }
    Membership::new(configs, nodes).map_err(|e| c.bad(&format!("membership: {e}")))
}

pub(crate) fn put_opt_log_id(out: &mut Vec<u8>, id: Option<&LogId>) {
    out.push(u8::from(id.is_some()));
    put_log_id(
        out,
        id.unwrap_or(&LogId::new(
            LeaderId {
                term: 0,
                node_id: 0,
            },
            0,
        )),
    );
}

/// The state machine's own state: the last applied log id and the
/// membership, stored with the data they describe.
pub(crate) fn encode_state(
    applied: Option<&LogId>,
    membership: &StoredMembership,
) -> Result<Vec<u8>, RaftStoreError> {
    let mut out = Vec::with_capacity(96);
    put_opt_log_id(&mut out, applied);
    put_opt_log_id(&mut out, membership.log_id().as_ref());
    encode_membership(&mut out, membership.membership())?;
    Ok(out)
}

/// Decodes [`encode_state`]'s bytes, found in `what`.
pub(crate) fn decode_state(
    bytes: &[u8],
    what: &str,
) -> Result<(Option<LogId>, StoredMembership), RaftStoreError> {
    let mut c = Cursor { bytes, at: 0, what };
    let applied = c.opt_log_id()?;
    let log_id = c.opt_log_id()?;
    let membership = decode_membership(&mut c)?;
    c.end()?;
    Ok((applied, StoredMembership::new(log_id, membership)))
}

/// The metadata file: what must survive a crash beside the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub vote: Option<Vote>,
    pub purged: Option<LogId>,
}

const META_MAGIC: &[u8; 8] = b"WALRAFT1";
const HAS_VOTE: u8 = 1;
const VOTE_COMMITTED: u8 = 2;
const HAS_PURGED: u8 = 4;
const FLAGS_KNOWN: u8 = HAS_VOTE | VOTE_COMMITTED | HAS_PURGED;

impl Meta {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(META_MAGIC);
        let mut flags = 0;
        if let Some(v) = &self.vote {
            flags |= HAS_VOTE;
            if v.committed {
                flags |= VOTE_COMMITTED;
            }
        }
        if self.purged.is_some() {
            flags |= HAS_PURGED;
        }
        out.push(flags);
        let zero = LeaderId {
            term: 0,
            node_id: 0,
        };
        let vote = self.vote.map_or(zero, |v| v.leader_id);
        out.extend_from_slice(&vote.term.to_le_bytes());
        out.extend_from_slice(&vote.node_id.to_le_bytes());
        put_log_id(
            &mut out,
            &self.purged.unwrap_or_else(|| LogId::new(zero, 0)),
        );
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Meta, RaftStoreError> {
        let mut c = Cursor {
            bytes,
            at: 0,
            what: "raft metadata",
        };
        if c.take(8)? != META_MAGIC {
            return Err(c.bad("no metadata magic"));
        }
        let flags = c.u8()?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(c.bad(&format!("unknown flags {flags:#x}")));
        }
        let (term, node_id) = (c.u64()?, c.u64()?);
        let purged = c.log_id()?;
        let body = c.at;
        let crc = c.u32()?;
        c.end()?;
        if crc32c::crc32c(&bytes[..body]) != crc {
            return Err(RaftStoreError::corrupt(
                "raft metadata",
                "checksum mismatch",
            ));
        }
        let vote = (flags & HAS_VOTE != 0).then(|| {
            let leader = LeaderId { term, node_id };
            Vote {
                leader_id: leader,
                committed: flags & VOTE_COMMITTED != 0,
            }
        });
        let purged = (flags & HAS_PURGED != 0).then_some(purged);
        Ok(Meta { vote, purged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(
            LeaderId {
                term,
                node_id: node,
            },
            index,
        )
    }

    fn round_trip(entry: Entry) {
        let bytes = Bytes::from(encode_entry(&entry).unwrap());
        match decode(&bytes, 1).unwrap() {
            Record::Entry(e) => {
                assert_eq!(e.log_id, entry.log_id);
                assert_eq!(e.payload, entry.payload);
            }
            other => panic!("{other:?}"),
        }
        // Every cut of the record is refused, never misread.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes.slice(..cut), 1).is_err(), "cut at {cut}");
        }
    }

    /// The bytes docs/RAFT_FORMAT.md shows between the markers around
    /// `name`, from its `offset: byte byte ...` lines.
    fn documented(name: &str) -> Vec<u8> {
        let doc = include_str!("../../docs/RAFT_FORMAT.md");
        let section = doc
            .split(&format!("<!-- {name}-bytes:begin -->"))
            .nth(1)
            .and_then(|rest| rest.split(&format!("<!-- {name}-bytes:end -->")).next())
            .expect("markers");
        section
            .lines()
            .filter_map(|line| line.split_once(':').map(|(_, hex)| hex))
            .flat_map(|hex| {
                hex.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap())
            })
            .collect()
    }

    fn hex(bytes: &[u8]) -> String {
        let lines = bytes.chunks(16).enumerate().map(|(i, l)| {
            let b: Vec<String> = l.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}", i * 16, b.join(" "))
        });
        lines.collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn the_documented_examples_are_what_the_encoders_write() {
        let blank = encode_entry(&Entry::new(log_id(2, 1, 3), Payload::Blank)).unwrap();
        assert_eq!(
            documented("blank-entry"),
            blank,
            "should be:\n{}",
            hex(&blank)
        );
        let mut batch = wal_kv::WriteBatch::new();
        batch.put("k", "v");
        let guarded = encode_entry(&Entry::new(
            log_id(2, 1, 4),
            Payload::Normal(Request::guarded(
                vec![Guard::equals("k", "u"), Guard::absent("n")],
                batch,
            )),
        ))
        .unwrap();
        assert_eq!(
            documented("guarded-entry"),
            guarded[..47],
            "should begin:\n{}",
            hex(&guarded[..47])
        );
        let meta = Meta {
            vote: Some(Vote {
                leader_id: LeaderId {
                    term: 3,
                    node_id: 2,
                },
                committed: true,
            }),
            purged: Some(log_id(2, 1, 40)),
        }
        .encode();
        assert_eq!(documented("meta"), meta, "should be:\n{}", hex(&meta));
    }

    #[test]
    fn entries_round_trip_and_every_truncation_is_refused() {
        round_trip(Entry::new(log_id(1, 2, 3), Payload::Blank));
        let mut batch = wal_kv::WriteBatch::new();
        batch.put("k", "v").delete("gone");
        round_trip(Entry::new(
            log_id(4, 5, 6),
            Payload::Normal(Request::new(batch.clone())),
        ));
        let guards = vec![Guard::equals("k", "old"), Guard::absent("new")];
        let guarded = Request::guarded(guards, batch);
        let entry = Entry::new(log_id(4, 5, 7), Payload::Normal(guarded.clone()));
        assert_eq!(
            encode_entry(&entry).unwrap().len(),
            25 + guarded.encoded_bytes()
        );
        round_trip(entry);
        let nodes = BTreeMap::from([
            (1, BasicNode { addr: "a:1".into() }),
            (2, BasicNode { addr: "b:2".into() }),
            (3, BasicNode { addr: "c:3".into() }),
        ]);
        let m =
            Membership::new(vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 3])], nodes).unwrap();
        round_trip(Entry::new(log_id(7, 1, 8), Payload::Membership(m)));
        let c = Bytes::from(encode_committed(&log_id(9, 9, 9)));
        assert!(matches!(decode(&c, 1).unwrap(), Record::Committed(id) if id == log_id(9, 9, 9)));
    }

    #[test]
    fn hostile_counts_and_tags_are_refused() {
        let mut bad = encode_entry(&Entry::new(log_id(1, 1, 1), Payload::Blank)).unwrap();
        bad[0] = 9;
        assert!(decode(&Bytes::from(bad), 1).is_err());
        // A membership claiming 2^32 - 1 voters in a few bytes.
        let mut m = vec![ENTRY];
        put_log_id(&mut m, &log_id(1, 1, 1));
        m.push(MEMBERSHIP);
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&Bytes::from(m), 1).is_err());
        // Guards: 2^32 - 1 of them, a key running past the end, an
        // unknown guard kind.
        let guarded = |tail: &[u8]| {
            let mut g = vec![ENTRY];
            put_log_id(&mut g, &log_id(1, 1, 1));
            g.push(GUARDED);
            g.extend_from_slice(tail);
            decode(&Bytes::from(g), 1)
        };
        assert!(guarded(&u32::MAX.to_le_bytes()).is_err());
        assert!(guarded(&[1, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(guarded(&[1, 0, 0, 0, 1, 0, 0, 0, b'k', 7, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn metadata_round_trips_and_damage_is_detected() {
        let meta = Meta {
            vote: Some(Vote {
                leader_id: LeaderId {
                    term: 3,
                    node_id: 2,
                },
                committed: true,
            }),
            purged: Some(log_id(2, 1, 40)),
        };
        let bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes).unwrap(), meta);
        assert_eq!(
            Meta::decode(&Meta::default().encode()).unwrap(),
            Meta::default()
        );
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Meta::decode(&b).is_err(), "flip at {i}");
        }
    }
}
