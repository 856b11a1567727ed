//! `verify` reads everything and says what each recovery mode would do:
//! exit 0 for a clean log or store, 1 for damage opening repairs (a torn
//! tail, a compaction's leftover), 2 for damage it refuses (corruption in
//! the middle, a damaged table), naming segment and offset; and it never
//! changes the directory.

mod common;

use std::path::Path;

use common::{crashed, frame_ends, log, segments, snapshot, stdout, walctl};
use serde_json::Value;

fn verify(dir: &Path) -> (i32, Value, String) {
    let before = snapshot(dir);
    let d = dir.to_str().unwrap();
    let out = walctl(&["verify", d, "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let text = stdout(&walctl(&["verify", d]));
    assert_eq!(snapshot(dir), before, "verify wrote to the directory");
    (out.status.code().unwrap(), v, text)
}

#[test]
fn a_clean_log_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    log(dir.path(), 200);
    let (code, v, _) = verify(dir.path());
    assert_eq!(code, 0, "{v}");
    for m in v["modes"].as_array().unwrap() {
        assert_eq!(m["opens"], true, "{m}");
        assert_eq!(m["records"], 200, "{m}");
    }
}

#[test]
fn a_torn_tail_is_repairable_and_named() {
    let dir = tempfile::tempdir().unwrap();
    log(dir.path(), 1000);
    crashed(dir.path());
    let last = segments(dir.path()).pop().unwrap();
    let path = dir.path().join(&last);
    let ends = frame_ends(&path);
    let cut = ends[ends.len() - 2] + 20; // inside the last frame
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..usize::try_from(cut).unwrap()]).unwrap();
    let (code, v, text) = verify(dir.path());
    assert_eq!(code, 1, "{text}");
    let default = &v["modes"][0];
    assert_eq!(default["opens"], true);
    assert_eq!(default["records"], 999);
    let cut_text = default["would_cut"][0].as_str().unwrap();
    assert!(cut_text.contains(&last), "{cut_text}");
    assert!(
        cut_text.contains(&format!("offset {}", ends[ends.len() - 2])),
        "{cut_text}"
    );
    assert_eq!(
        v["modes"][1]["opens"], false,
        "absolute consistency refuses a torn tail"
    );
    assert!(
        text.contains("verdict: damage that opening repairs"),
        "{text}"
    );
}

#[test]
fn corruption_in_the_middle_is_refused_and_salvage_modes_say_what_they_keep() {
    let dir = tempfile::tempdir().unwrap();
    log(dir.path(), 1000);
    crashed(dir.path());
    let first = segments(dir.path())[0].clone();
    let path = dir.path().join(&first);
    let ends = frame_ends(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // A byte inside the tenth frame's payload: valid frames follow it.
    let at = usize::try_from(ends[9]).unwrap() - 30;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (code, v, text) = verify(dir.path());
    assert_eq!(code, 2, "{text}");
    let refusal = v["modes"][0]["refusal"].as_str().unwrap();
    assert!(refusal.contains(&first), "{refusal}");
    assert!(
        refusal.contains(&format!("offset {}", ends[8])),
        "{refusal}"
    );
    let pit = &v["modes"][2];
    assert_eq!(pit["opens"], true, "{pit}");
    assert_eq!(pit["records"], 9, "point in time keeps the prefix: {pit}");
    let skip = &v["modes"][3];
    assert_eq!(skip["opens"], true, "{skip}");
    assert!(!skip["gaps"].as_array().unwrap().is_empty(), "{skip}");
    assert!(text.contains("refuses"), "{text}");
}

/// A store with tables at level 0 and the log after its checkpoint.
fn store(dir: &Path) {
    let store = wal_kv::Store::open(dir, wal_kv::Options::default()).unwrap();
    for i in 0..2000u32 {
        store.put(format!("key{i:05}"), vec![b'v'; 100]).unwrap();
    }
    store.checkpoint().unwrap();
    store.put("after", "checkpoint").unwrap();
    // Dropped, not closed: a close would checkpoint the put after the
    // checkpoint, which stays in the log here.
    drop(store);
}

fn tables(dir: &Path) -> Vec<String> {
    let mut t: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sst"))
        .collect();
    t.sort();
    t
}

#[test]
fn a_store_s_tables_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let (code, v, text) = verify(dir.path());
    assert_eq!(code, 0, "{text}");
    let entries: u64 = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["entries"].as_u64().unwrap())
        .sum();
    assert_eq!(entries, 2000);

    // A leftover table open would remove: repairable.
    let table = tables(dir.path())[0].clone();
    std::fs::copy(
        dir.path().join(&table),
        dir.path().join("00000000000000000999.sst"),
    )
    .unwrap();
    let (code, _, text) = verify(dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("00000000000000000999.sst is not in the manifest"),
        "{text}"
    );
    std::fs::remove_file(dir.path().join("00000000000000000999.sst")).unwrap();

    // A flipped byte in a data block: opening would not notice until a
    // read; verify reads every block.
    let path = dir.path().join(&table);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (code, v, text) = verify(dir.path());
    assert_eq!(code, 2, "{text}");
    let damaged = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["ok"] == false)
        .unwrap();
    assert!(
        damaged["error"].as_str().unwrap().contains(&table),
        "{damaged}"
    );
}
