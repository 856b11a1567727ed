use super::*;

fn build(storage: &dyn Storage, n: u64, cache: &Arc<BlockCache>) -> Table {
    let mut b = TableBuilder::create(storage, 1, TableCompression::Lz4, 512).unwrap();
    for i in 0..n {
        // Two versions of every key: newest first.
        for lsn in [2 * i + 2, 2 * i + 1] {
            b.add(&Entry {
                key: Bytes::from(format!("key{i:08}")),
                lsn,
                value: Some(Bytes::from(format!("v{lsn}"))),
            })
            .unwrap();
        }
    }
    b.finish(1, Arc::clone(cache)).unwrap()
}

/// A point read, hashing the key as the store does.
fn get(t: &Table, key: &[u8], snapshot: u64) -> Result<Option<Option<Bytes>>, KvError> {
    t.get(key, bloom::key_hash(key), snapshot)
}

/// Reads a table the way docs/KV_FORMAT.md describes it, with none of
/// the reader above: the document and the writer must agree.
#[test]
// A test table of a few KiB: offsets fit in usize.
#[allow(clippy::cast_possible_truncation)]
fn the_documented_layout_is_what_the_builder_writes() {
    let disk = wal_io::sim::SimDisk::new(5);
    let storage = disk.storage();
    let mut b = TableBuilder::create(&*storage, 1, TableCompression::None, 256).unwrap();
    let mut want = Vec::new();
    for i in 0..40u64 {
        let value = (i % 3 != 0).then(|| Bytes::from(format!("value {i}")));
        let e = Entry {
            key: Bytes::from(format!("k{i:04}")),
            lsn: 100 + i,
            value,
        };
        b.add(&e).unwrap();
        want.push(e);
    }
    drop(b.finish(1, block_cache(0)).unwrap());
    let file = storage.open(&file_name(1), FileOptions::BUFFERED).unwrap();
    let mut bytes = vec![0; file.size().unwrap() as usize];
    file.read_at(0, &mut bytes).unwrap();

    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    // Footer: 56 bytes, its CRC over the 52 before it.
    let footer = &bytes[bytes.len() - 56..];
    assert_eq!(crc32c::crc32c(&footer[..52]), u32_at(footer, 52));
    assert_eq!(&footer[..8], b"WALKVSST");
    assert_eq!(u32_at(footer, 8), 3);
    let (index_at, index_len) = (u64_at(footer, 12) as usize, u32_at(footer, 20) as usize);
    let (filter_at, filter_len) = (u64_at(footer, 24) as usize, u32_at(footer, 32) as usize);
    assert_eq!(u64_at(footer, 36), 40, "entries");
    assert_eq!(u64_at(footer, 44), 139, "max_lsn");
    assert_eq!(filter_at + filter_len, bytes.len() - 56);
    // Filter: hashes, whole 64-byte lines, CRC.
    let filter = &bytes[filter_at..filter_at + filter_len];
    assert_eq!(
        crc32c::crc32c(&filter[..filter_len - 4]),
        u32_at(filter, filter_len - 4)
    );
    assert_eq!(u32_at(filter, 0), 7);
    assert_eq!((filter_len - 8) % 64, 0);
    // Index: first key, then (last key, offset, len) per block, CRC.
    let index = &bytes[index_at..index_at + index_len];
    assert_eq!(
        crc32c::crc32c(&index[..index_len - 4]),
        u32_at(index, index_len - 4)
    );
    let first_len = u32_at(index, 0) as usize;
    assert_eq!(&index[4..4 + first_len], b"k0000");
    let mut at = 4 + first_len;
    let mut got = Vec::new();
    let mut data_end = 0;
    while at < index_len - 4 {
        let key_len = u32_at(index, at) as usize;
        let last_key = &index[at + 4..at + 4 + key_len];
        let (offset, len) = (
            u64_at(index, at + 4 + key_len) as usize,
            u32_at(index, at + 12 + key_len) as usize,
        );
        at += 16 + key_len;
        assert_eq!(offset, data_end, "blocks follow each other from offset 0");
        data_end = offset + len;
        // Block: payload, codec, raw_len, CRC over the three.
        let block = &bytes[offset..offset + len];
        assert_eq!(crc32c::crc32c(&block[..len - 4]), u32_at(block, len - 4));
        assert_eq!(block[len - 9], 0, "codec none");
        let payload = &block[..len - 9];
        assert_eq!(u32_at(block, len - 8) as usize, payload.len());
        let mut p = 0;
        let mut last = &b""[..];
        while p < payload.len() {
            let key_len = u32_at(payload, p) as usize;
            let key = &payload[p + 4..p + 4 + key_len];
            let lsn = u64_at(payload, p + 4 + key_len);
            p += 12 + key_len;
            let value = match payload[p] {
                0 => None,
                1 => {
                    let value_len = u32_at(payload, p + 1) as usize;
                    let v = &payload[p + 5..p + 5 + value_len];
                    p += 4 + value_len;
                    Some(Bytes::copy_from_slice(v))
                }
                other => panic!("has_value {other}"),
            };
            p += 1;
            last = key;
            got.push(Entry {
                key: Bytes::copy_from_slice(key),
                lsn,
                value,
            });
        }
        assert_eq!(last, last_key, "the index names each block's last key");
    }
    assert_eq!(data_end, index_at, "the index follows the blocks");
    assert!(
        got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(g, w)| g.key == w.key && g.lsn == w.lsn && g.value == w.value)
    );
}

#[test]
fn gets_find_every_version_with_or_without_a_cache() {
    let disk = wal_io::sim::SimDisk::new(7);
    let storage = disk.storage();
    for cache_bytes in [0, 4096, 1 << 20] {
        let cache = block_cache(cache_bytes);
        let t = build(&*storage, 2000, &cache);
        for i in 0..2000u64 {
            let key = format!("key{i:08}");
            let newest = get(&t, key.as_bytes(), u64::MAX).unwrap();
            assert_eq!(newest, Some(Some(Bytes::from(format!("v{}", 2 * i + 2)))));
            let older = get(&t, key.as_bytes(), 2 * i + 1).unwrap();
            assert_eq!(older, Some(Some(Bytes::from(format!("v{}", 2 * i + 1)))));
            assert_eq!(get(&t, key.as_bytes(), 2 * i).unwrap(), None, "before it");
        }
        assert_eq!(get(&t, b"key", u64::MAX).unwrap(), None);
        assert_eq!(get(&t, b"kez", u64::MAX).unwrap(), None);
        let all: Vec<Entry> = Arc::new(t)
            .iter(Bound::Unbounded, Bound::Unbounded, cache_bytes > 0, false)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all.len(), 4000);
        storage.remove(&file_name(1)).unwrap();
    }
}

#[test]
fn reverse_iteration_is_forward_reversed_for_any_bounds() {
    let disk = wal_io::sim::SimDisk::new(9);
    let storage = disk.storage();
    let t = Arc::new(build(&*storage, 300, &block_cache(1 << 20)));
    let key = |i: u64| Bytes::from(format!("key{i:08}"));
    let bounds = |i: u64| {
        [
            Bound::Unbounded,
            Bound::Included(key(i)),
            Bound::Excluded(key(i)),
            // Between two keys, and beyond either end.
            Bound::Included(Bytes::from(format!("key{i:08}!"))),
            Bound::Excluded(Bytes::from("a")),
            Bound::Included(Bytes::from("z")),
        ]
    };
    let mut checked = 0;
    for (a, b) in [
        (0, 299),
        (17, 18),
        (40, 41),
        (150, 151),
        (5, 290),
        (299, 299),
    ] {
        for lo in bounds(a) {
            for hi in bounds(b) {
                let forward: Vec<Entry> = t
                    .iter(lo.clone(), hi.clone(), true, false)
                    .collect::<Result<_, _>>()
                    .unwrap();
                let mut reverse: Vec<Entry> = t
                    .iter(lo.clone(), hi.clone(), true, true)
                    .collect::<Result<_, _>>()
                    .unwrap();
                reverse.reverse();
                assert_eq!(forward, reverse, "{lo:?}..{hi:?}");
                checked += usize::from(!forward.is_empty());
            }
        }
    }
    assert!(checked > 100, "most ranges are not empty: {checked}");
}

/// Rewrites table 1 in the version-2 layout: no first key in the index.
// A test table is a few KiB: its offsets fit every integer type here.
#[allow(clippy::cast_possible_truncation)]
fn downgrade_to_version_2(storage: &dyn Storage) {
    let name = file_name(1);
    let file = storage.open(&name, FileOptions::BUFFERED).unwrap();
    let mut data = vec![0u8; usize::try_from(file.size().unwrap()).unwrap()];
    file.read_at(0, &mut data).unwrap();
    file.close();
    let footer = &data[data.len() - FOOTER_LEN..];
    let field = |at: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&footer[at..at + n]);
        u64::from_le_bytes(b) as usize
    };
    let (index_at, index_len) = (field(12, 8), field(20, 4));
    let (filter_at, filter_len) = (field(24, 8), field(32, 4));
    let first_len = u32::from_le_bytes(data[index_at..index_at + 4].try_into().unwrap()) as usize;
    let mut out = data[..index_at].to_vec();
    let mut index = data[index_at + 4 + first_len..index_at + index_len - 4].to_vec();
    let crc = crc32c::crc32c(&index);
    index.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&index);
    let new_filter_at = out.len() as u64;
    out.extend_from_slice(&data[filter_at..filter_at + filter_len]);
    let mut f = Vec::new();
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&VERSION_NO_FIRST_KEY.to_le_bytes());
    f.extend_from_slice(&(index_at as u64).to_le_bytes());
    f.extend_from_slice(&(index.len() as u32).to_le_bytes());
    f.extend_from_slice(&new_filter_at.to_le_bytes());
    f.extend_from_slice(&footer[32..FOOTER_LEN - 4]);
    let crc = crc32c::crc32c(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&f);
    storage.remove(&name).unwrap();
    let file = storage.create(&name, FileOptions::BUFFERED).unwrap();
    file.write_at(0, &[&out]).unwrap();
    file.close();
}

#[test]
fn a_version_2_table_reads_its_first_key_from_its_first_block() {
    let disk = wal_io::sim::SimDisk::new(10);
    let storage = disk.storage();
    let cache = block_cache(1 << 20);
    let v3 = build(&*storage, 500, &cache);
    let range = v3.key_range().map(|(a, b)| (a.clone(), b.clone()));
    assert_eq!(range.as_ref().unwrap().0, Bytes::from("key00000000"));
    drop(v3);
    downgrade_to_version_2(&*storage);
    let v2 = Table::open(&*storage, 1, block_cache(1 << 20)).unwrap();
    assert_eq!(v2.key_range().map(|(a, b)| (a.clone(), b.clone())), range);
    let newest = get(&v2, b"key00000321", u64::MAX).unwrap();
    assert_eq!(newest, Some(Some(Bytes::from("v644"))));
}

#[test]
fn the_filter_has_no_false_negatives_and_few_false_positives() {
    let disk = wal_io::sim::SimDisk::new(8);
    let storage = disk.storage();
    let t = build(&*storage, 5000, &block_cache(0));
    for i in 0..5000u64 {
        assert!(t.may_contain(bloom::hashes(format!("key{i:08}").as_bytes())));
    }
    let false_positives = (5000..25_000u64)
        .filter(|i| t.may_contain(bloom::hashes(format!("key{i:08}").as_bytes())))
        .count();
    // 10 bits per key and 7 hashes in one line: about 1 % expected.
    assert!(false_positives < 600, "{false_positives} of 20000");
}

/// A key's versions may run on into the next block (a block's last entry
/// is not known to be its key's oldest version), so an absent key costs its
/// own block and at most the next: never a walk through the table.
#[test]
fn a_get_for_an_absent_key_reads_its_block_and_at_most_the_next() {
    let disk = wal_io::sim::SimDisk::new(8);
    let storage = disk.storage();
    // No cache: every block a get looks at is read and counted.
    let cache = block_cache(0);
    let t = build(&*storage, 2000, &cache);
    assert!(t.block_count() > 10);
    for i in (0..2000u64).step_by(97) {
        // Between two stored keys, and past the last version of one.
        for (key, snapshot) in [(format!("key{i:08}a"), u64::MAX), (format!("key{i:08}"), 0)] {
            let before = cache.reads.load(Ordering::Relaxed);
            assert_eq!(get(&t, key.as_bytes(), snapshot).unwrap(), None);
            let read = cache.reads.load(Ordering::Relaxed) - before;
            assert!(read <= 2, "{key} at {snapshot}: {read} blocks read");
        }
    }
}

#[test]
fn a_block_is_indexed_by_the_first_get_that_finds_it_cached() {
    let disk = wal_io::sim::SimDisk::new(9);
    let storage = disk.storage();
    let cache = block_cache(1 << 20);
    let t = build(&*storage, 2000, &cache);
    let key = b"key00000500";
    let cached = || {
        let i = t.block_for(key);
        t.slots.cached(i).expect("cached")
    };
    // Read from the file: searched, not indexed.
    assert_eq!(
        get(&t, key, u64::MAX).unwrap(),
        Some(Some(Bytes::from("v1002")))
    );
    assert!(!cached().is_indexed());
    // Found in the cache: indexed from now on.
    assert_eq!(
        get(&t, key, 1001).unwrap(),
        Some(Some(Bytes::from("v1001")))
    );
    assert!(cached().is_indexed());
    // Without a cache no block is found there, and none is indexed.
    let uncached = block_cache(0);
    let t = build(&*storage, 2000, &uncached);
    for _ in 0..2 {
        assert_eq!(
            get(&t, key, u64::MAX).unwrap(),
            Some(Some(Bytes::from("v1002")))
        );
    }
    assert_eq!(
        uncached.reads.load(Ordering::Relaxed),
        2,
        "each get read its block"
    );
}

#[test]
fn a_small_value_read_is_a_copy_and_a_large_one_shares_its_block() {
    let disk = wal_io::sim::SimDisk::new(11);
    let storage = disk.storage();
    let cache = block_cache(1 << 20);
    let mut b = TableBuilder::create(&*storage, 1, TableCompression::None, 4096).unwrap();
    let sizes = [1, 100, VALUE_COPY_BYTES_MAX, VALUE_COPY_BYTES_MAX + 1];
    for (i, &len) in sizes.iter().enumerate() {
        b.add(&Entry {
            key: Bytes::from(format!("k{i}")),
            lsn: 1,
            value: Some(Bytes::from(vec![u8::try_from(i).unwrap(); len])),
        })
        .unwrap();
    }
    let t = b.finish(1, Arc::clone(&cache)).unwrap();
    // Twice: read from the file, then found cached (and indexed).
    for _ in 0..2 {
        for (i, &len) in sizes.iter().enumerate() {
            let value = get(&t, format!("k{i}").as_bytes(), 1)
                .unwrap()
                .flatten()
                .expect("present");
            assert_eq!(value, vec![u8::try_from(i).unwrap(); len]);
            // A copy owns its bytes; a slice shares them with the cached
            // block, so a caller keeping it keeps the block in memory.
            let copied = len <= VALUE_COPY_BYTES_MAX;
            assert_eq!(value.is_unique(), copied, "value of {len} bytes");
        }
    }
}
