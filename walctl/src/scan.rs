//! Reading segments as the log's format lays them out: each segment's
//! valid frames and how it ends, and which of its records are the log's
//! (a segment that starts inside the previous one, as `truncate_back`
//! leaves, ends the previous one there).

use wal_format::{DecodeError, Frame, SegmentEnd, SegmentHeader, SegmentScanner};

use crate::error::CliError;
use crate::target::{Segment, Target};

/// One segment, scanned.
pub struct Scanned {
    pub name: String,
    /// Bytes of the file.
    pub size: u64,
    /// Its header, or why it is unreadable.
    pub header: Result<SegmentHeader, DecodeError>,
    /// Its valid frames, in order (a seal included).
    pub frames: Vec<Frame>,
    /// How its valid prefix ends (none if the header is unreadable).
    pub end: Option<SegmentEnd>,
    /// Records from this LSN on belong to the next segment, not this one.
    pub cut_at: Option<u64>,
}

impl Scanned {
    /// The records of the log in this segment: (frame, LSN, bytes).
    pub fn records(&self) -> impl Iterator<Item = (&Frame, wal_format::Record)> + '_ {
        self.frames.iter().flat_map(move |f| {
            f.records()
                .filter(move |r| self.cut_at.is_none_or(|cut| r.lsn < cut))
                .map(move |r| (f, r))
        })
    }
}

/// Scans `segment`; `next` is the segment after it, if any.
///
/// # Errors
/// The storage's read errors.
pub fn scan(
    target: &Target,
    segment: &Segment,
    next: Option<&Segment>,
) -> Result<Scanned, CliError> {
    let data = target.read(&segment.name)?;
    let size = data.len() as u64;
    let (header, frames, end) = match SegmentScanner::new(data) {
        Ok(mut scanner) => {
            let header = *scanner.header();
            let frames: Vec<Frame> = scanner.by_ref().collect();
            (Ok(header), frames, Some(scanner.finish().end))
        }
        Err(e) => (Err(e), Vec::new(), None),
    };
    Ok(Scanned {
        name: segment.name.clone(),
        size,
        header,
        frames,
        end,
        cut_at: next.map(|n| n.first_lsn),
    })
}

/// Every segment, scanned in LSN order, handed to `f` one at a time (a
/// segment's bytes are held only while `f` looks at it).
///
/// # Errors
/// The storage's read errors, and `f`'s.
pub fn each(
    target: &Target,
    mut f: impl FnMut(&Scanned) -> Result<std::ops::ControlFlow<()>, CliError>,
) -> Result<(), CliError> {
    for (k, segment) in target.segments.iter().enumerate() {
        let scanned = scan(target, segment, target.segments.get(k + 1))?;
        if f(&scanned)?.is_break() {
            break;
        }
    }
    Ok(())
}

/// How a segment's valid prefix ends, in a few words.
pub fn describe_end(s: &Scanned) -> String {
    match (&s.header, &s.end) {
        (Err(e), _) => format!("unreadable header: {e}"),
        (_, Some(SegmentEnd::Clean)) => "clean".into(),
        (_, Some(SegmentEnd::Sealed { next_lsn })) => format!("sealed (next LSN {next_lsn})"),
        (_, Some(SegmentEnd::TornTail { error, .. })) => {
            format!("torn tail at offset {}: {error}", error.offset())
        }
        (_, Some(SegmentEnd::Corrupt { error, evidence })) => format!(
            "corrupt at offset {}: {error} (a later frame at offset {} records LSN {} durable)",
            error.offset(),
            evidence.offset,
            evidence.durable_lsn
        ),
        (_, Some(other)) => format!("{other:?}"),
        (_, None) => "unknown".into(),
    }
}

/// A codec's name.
pub fn codec_name(c: wal_format::Codec) -> &'static str {
    match c {
        wal_format::Codec::None => "none",
        wal_format::Codec::Lz4 => "lz4",
        wal_format::Codec::Snappy => "snappy",
        _ => "other",
    }
}
