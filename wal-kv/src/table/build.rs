//! Writing a table: blocks as entries arrive, then the index, the filter
//! and the footer, synced before the table is opened.

use super::*;

/// Writes a table from entries given in order.
pub(crate) struct TableBuilder {
    file: FileRef,
    name: String,
    compression: TableCompression,
    block_bytes: usize,
    block: Vec<u8>,
    first_key: Option<Bytes>,
    last_key: Option<Bytes>,
    offset: u64,
    index: Vec<u8>,
    key_hashes: Vec<(u32, u32)>,
    entries: u64,
    max_lsn: u64,
}

impl TableBuilder {
    pub fn create(
        storage: &dyn Storage,
        id: u64,
        compression: TableCompression,
        block_bytes: usize,
    ) -> Result<TableBuilder, KvError> {
        let name = file_name(id);
        // A leftover of an interrupted checkpoint may hold this name.
        let _ = storage.remove(&name);
        let file = storage.create(&name, FileOptions::BUFFERED)?;
        Ok(TableBuilder {
            file,
            name,
            compression,
            block_bytes,
            block: Vec::new(),
            first_key: None,
            last_key: None,
            offset: 0,
            index: Vec::new(),
            key_hashes: Vec::new(),
            entries: 0,
            max_lsn: 0,
        })
    }

    /// Adds an entry; keys ascending, and for one key LSNs descending.
    pub fn add(&mut self, e: &Entry) -> Result<(), KvError> {
        if let Some(last) = &self.last_key {
            assert!(last <= &e.key, "table entries must be added in key order");
        }
        if self.last_key.as_ref() != Some(&e.key) {
            self.key_hashes.push(bloom::hashes(&e.key));
        }
        if self.first_key.is_none() {
            self.first_key = Some(e.key.clone());
        }
        put_bytes(&mut self.block, &e.key);
        self.block.extend_from_slice(&e.lsn.to_le_bytes());
        match &e.value {
            Some(v) => {
                self.block.push(1);
                put_bytes(&mut self.block, v);
            }
            None => self.block.push(0),
        }
        self.entries += 1;
        self.max_lsn = self.max_lsn.max(e.lsn);
        self.last_key = Some(e.key.clone());
        if self.block.len() >= self.block_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), KvError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let raw_len = u32::try_from(self.block.len())
            .map_err(|_| KvError::InvalidOptions("table block over 4 GiB".into()))?;
        let mut out = match self.compression {
            TableCompression::None => std::mem::take(&mut self.block),
            TableCompression::Lz4 => lz4_flex::block::compress(&self.block),
            TableCompression::Snappy => snap::raw::Encoder::new()
                .compress_vec(&self.block)
                .map_err(|e| KvError::InvalidOptions(format!("snappy: {e}")))?,
        };
        out.push(self.compression.code());
        out.extend_from_slice(&raw_len.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        self.file.write_at(self.offset, &[&out])?;
        let last = self.last_key.clone().unwrap_or_default();
        put_bytes(&mut self.index, &last);
        self.index.extend_from_slice(&self.offset.to_le_bytes());
        let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
        self.index.extend_from_slice(&len.to_le_bytes());
        self.offset += out.len() as u64;
        self.block.clear();
        Ok(())
    }

    /// Bytes of data written and buffered so far (before index and filter).
    pub fn data_bytes(&self) -> u64 {
        self.offset + self.block.len() as u64
    }

    /// The last key added.
    pub fn last_key(&self) -> Option<&Bytes> {
        self.last_key.as_ref()
    }

    /// Writes index, filter and footer, syncs, and opens the table for reading.
    pub fn finish(mut self, id: u64, cache: Arc<BlockCache>) -> Result<Table, KvError> {
        self.flush_block()?;
        let index_offset = self.offset;
        let mut index = Vec::with_capacity(self.index.len() + 64);
        put_bytes(&mut index, self.first_key.as_deref().unwrap_or_default());
        index.extend_from_slice(&self.index);
        let crc = crc32c::crc32c(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        self.file.write_at(index_offset, &[&index])?;
        let filter_offset = index_offset + index.len() as u64;
        let lines = bloom::lines_for(self.key_hashes.len());
        let mut filter = vec![0u8; 4 + lines * bloom::LINE_BYTES];
        filter[..4].copy_from_slice(&bloom::HASHES.to_le_bytes());
        for &h in &self.key_hashes {
            bloom::add(&mut filter[4..], bloom::HASHES, h);
        }
        let crc = crc32c::crc32c(&filter);
        filter.extend_from_slice(&crc.to_le_bytes());
        self.file.write_at(filter_offset, &[&filter])?;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(MAGIC);
        footer.extend_from_slice(&VERSION.to_le_bytes());
        footer.extend_from_slice(&index_offset.to_le_bytes());
        footer.extend_from_slice(&u32::try_from(index.len()).unwrap_or(u32::MAX).to_le_bytes());
        footer.extend_from_slice(&filter_offset.to_le_bytes());
        footer.extend_from_slice(
            &u32::try_from(filter.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        footer.extend_from_slice(&self.entries.to_le_bytes());
        footer.extend_from_slice(&self.max_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        self.file
            .write_at(filter_offset + filter.len() as u64, &[&footer])?;
        self.file.sync_data()?;
        let size = filter_offset + filter.len() as u64 + footer.len() as u64;
        Table::from_file(self.file, self.name, id, size, cache)
    }
}

/// Appends `b` with its length before it.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("keys and values are checked against u32 limits");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}
