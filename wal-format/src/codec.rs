//! Per-frame compression.

/// How a frame's payload is stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is; decoded records borrow the input buffer (zero copy).
    #[default]
    None,
    /// LZ4 block format (`lz4_flex`), without a size prefix: the frame
    /// header carries the decompressed length.
    Lz4,
    /// Snappy raw format (`snap`).
    Snappy,
}

impl Codec {
    /// Every codec this version knows, in on-disk order.
    pub const ALL: [Codec; 3] = [Codec::None, Codec::Lz4, Codec::Snappy];

    /// The byte that names this codec in a frame header.
    pub const fn to_byte(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
            Codec::Snappy => 2,
        }
    }

    /// The codec named by a frame header byte, if this version knows it.
    pub const fn from_byte(byte: u8) -> Option<Codec> {
        match byte {
            0 => Some(Codec::None),
            1 => Some(Codec::Lz4),
            2 => Some(Codec::Snappy),
            _ => None,
        }
    }
}

/// The writer's compression choice, applied per frame.
///
/// A frame whose raw payload is shorter than `min_bytes` is stored plain
/// (compressing a few hundred bytes costs more time than it saves I/O), and so
/// is a frame whose compressed form would not be smaller than the raw one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// The codec to try.
    pub codec: Codec,
    /// Raw payloads shorter than this are never compressed.
    pub min_bytes: usize,
}

impl Compression {
    /// Default for [`Compression::min_bytes`]: below one 4 KiB page the I/O
    /// saved is nil, because writes go to disk in pages.
    pub const MIN_BYTES_DEFAULT: usize = 4096;

    /// Never compress.
    pub const NONE: Compression = Compression {
        codec: Codec::None,
        min_bytes: usize::MAX,
    };

    /// Compress with `codec` payloads of at least [`Compression::MIN_BYTES_DEFAULT`].
    pub const fn with(codec: Codec) -> Compression {
        Compression {
            codec,
            min_bytes: Compression::MIN_BYTES_DEFAULT,
        }
    }

    /// The codec to use for a raw payload of `raw_len` bytes.
    pub(crate) fn codec_for(&self, raw_len: usize) -> Codec {
        if raw_len < self.min_bytes {
            Codec::None
        } else {
            self.codec
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Compression::NONE
    }
}

/// Compresses `raw` with `codec` into `out` (cleared first). Returns `false`
/// when the result would not be smaller than `raw`, in which case the caller
/// stores the payload plain.
pub(crate) fn compress(codec: Codec, raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let written = match codec {
        Codec::None => return false,
        Codec::Lz4 => {
            out.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
            lz4_flex::block::compress_into(raw, out).ok()
        }
        Codec::Snappy => {
            out.resize(snap::raw::max_compress_len(raw.len()), 0);
            snap::raw::Encoder::new().compress(raw, out).ok()
        }
    };
    match written {
        Some(n) if n < raw.len() => {
            out.truncate(n);
            true
        }
        _ => false,
    }
}

/// Decompresses `stored` into a new buffer of exactly `raw_len` bytes.
pub(crate) fn decompress(codec: Codec, stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let mut raw = vec![0u8; raw_len];
    let written = match codec {
        Codec::None => return Err("codec none has nothing to decompress".to_owned()),
        Codec::Lz4 => {
            lz4_flex::block::decompress_into(stored, &mut raw).map_err(|e| e.to_string())?
        }
        Codec::Snappy => {
            let claimed = snap::raw::decompress_len(stored).map_err(|e| e.to_string())?;
            if claimed != raw_len {
                return Err(format!(
                    "snappy stream claims {claimed} bytes, frame header says {raw_len}"
                ));
            }
            snap::raw::Decoder::new()
                .decompress(stored, &mut raw)
                .map_err(|e| e.to_string())?
        }
    };
    if written != raw_len {
        return Err(format!(
            "produced {written} bytes, frame header says {raw_len}"
        ));
    }
    Ok(raw)
}
