//! [`WriteBuf`]: the buffer appenders encode frames into, aligned for
//! O_DIRECT so the pipelined writer hands it to the kernel as it is.

use wal_format::FrameBuf;
use wal_io::IoBuf;

/// A growable [`IoBuf`]. Appenders encode records straight into it under
/// the state lock, and with [`crate::Options::direct_io`] the owner queues
/// it as the write itself: the bytes are copied once, from the caller's
/// record into the buffer the kernel reads.
///
/// Copying the whole batch into an aligned buffer afterwards, as the
/// writer did before, took 18% of the owner's samples on 128 B appends.
pub(crate) struct WriteBuf(IoBuf);

impl WriteBuf {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        WriteBuf(IoBuf::with_capacity(capacity))
    }

    /// A buffer that holds the largest batch a queue of `queue_bytes_max`
    /// takes, and the padding and terminator an O_DIRECT write adds, so it
    /// never grows. A large `IoBuf` is mapped memory whose pages cost
    /// nothing until written, so the room batches do not use is free.
    pub(crate) fn for_queue(queue_bytes_max: usize) -> Self {
        Self::with_capacity(queue_bytes_max.saturating_add(2 * wal_io::DIRECT_IO_ALIGN))
    }

    /// A buffer for a write, around one a completed write handed back.
    pub(crate) fn from_io_buf(mut buf: IoBuf) -> Self {
        buf.clear();
        WriteBuf(buf)
    }

    pub(crate) fn into_io_buf(self) -> IoBuf {
        self.0
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Makes room for `additional` more bytes. An `IoBuf` never moves (the
    /// kernel may hold its address), so growing means a new one, twice as
    /// large, and one copy: amortised as for `Vec`, and rare once the
    /// buffers of the steady state are as large as its batches.
    #[inline]
    fn reserve(&mut self, additional: usize) {
        if additional > self.0.remaining() {
            self.grow(additional);
        }
    }

    #[cold]
    fn grow(&mut self, additional: usize) {
        // Saturating: a length past `isize::MAX` fails in the allocation.
        let needed = self.0.len().saturating_add(additional);
        let mut grown = IoBuf::with_capacity(needed.max(self.0.capacity().saturating_mul(2)));
        grown.extend_from_slice(self.0.as_slice());
        self.0 = grown;
    }
}

impl FrameBuf for WriteBuf {
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    #[inline]
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    fn resize(&mut self, len: usize, fill: u8) {
        self.reserve(len.saturating_sub(self.0.len()));
        self.0.resize(len, fill);
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wal_io::DIRECT_IO_ALIGN;

    #[test]
    fn grows_past_its_capacity_keeping_bytes_and_alignment() {
        let mut buf = WriteBuf::with_capacity(1);
        let cap = buf.0.capacity();
        let chunk: Vec<u8> = (0..=255).collect();
        let mut want = Vec::new();
        while want.len() < 3 * cap {
            buf.extend_from_slice(&chunk);
            want.extend_from_slice(&chunk);
        }
        assert_eq!(buf.as_slice(), &want[..]);
        assert!(buf.0.capacity() >= want.len());
        assert_eq!(buf.as_slice().as_ptr() as usize % DIRECT_IO_ALIGN, 0);

        let long = buf.0.capacity() + 5;
        buf.resize(long, 9);
        assert_eq!(buf.len(), long);
        assert_eq!(&buf.as_slice()[..want.len()], &want[..]);
        assert!(buf.as_slice()[want.len()..].iter().all(|b| *b == 9));
        buf.truncate(3);
        assert_eq!(buf.as_slice(), &want[..3]);
    }

    #[test]
    fn a_buffer_for_the_queue_holds_its_largest_batch_without_moving() {
        let queue_bytes_max = 8 << 20;
        let mut buf = WriteBuf::for_queue(queue_bytes_max);
        let at = buf.as_slice().as_ptr();
        buf.resize(queue_bytes_max, 3);
        // The padding and terminator block of an O_DIRECT write.
        buf.resize(queue_bytes_max + 2 * DIRECT_IO_ALIGN, 0);
        assert_eq!(buf.as_slice().as_ptr(), at, "the buffer grew");
    }

    #[test]
    fn encodes_the_same_frame_as_a_vec() {
        let mut encoder = wal_format::FrameEncoder::new(wal_format::Compression::NONE);
        let records: [&[u8]; 3] = [b"a", &[7; 5000], b"c"];
        let mut vec = Vec::new();
        let mut buf = WriteBuf::with_capacity(1);
        let a = encoder.encode(&mut vec, 9, 4, 3, records).unwrap();
        let b = encoder.encode(&mut buf, 9, 4, 3, records).unwrap();
        assert_eq!(a, b);
        assert_eq!(buf.as_slice(), &vec[..]);
    }
}
