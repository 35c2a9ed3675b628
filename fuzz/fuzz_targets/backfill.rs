//! Arbitrary file contents through `backfill::read_range` (IMP-3). Properties: no panic; every
//! returned line is a whole JSON object with an integer `id`, the ids are strictly increasing
//! and lie strictly between `after` and `before`; `normalize_cursor` is never negative/NaN.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use chat_run_core::backfill;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!(
            "chat-run-fuzz-backfill-{}.jsonl",
            std::process::id()
        ))
    })
}

fuzz_target!(|input: (f64, u16, &[u8])| {
    let (raw_after, before, contents) = input;
    let after = backfill::normalize_cursor(raw_after);
    assert!(
        after >= 0.0 && after.is_finite(),
        "normalize_cursor({raw_after}) = {after}"
    );
    let before = u64::from(before);
    std::fs::write(path(), contents).unwrap();
    for (after, before) in [(after, before), (raw_after, before), (0.0, u64::MAX)] {
        let lines = backfill::read_range(path(), after, before);
        let mut last: Option<u64> = None;
        for line in &lines {
            assert!(!line.contains('\n'), "a line holds a newline: {line:?}");
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("returned line is not JSON ({e}): {line:?}"));
            let id = value["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("no integer id: {line:?}"));
            assert!(
                last.is_none_or(|l| id > l),
                "ids not strictly increasing: {lines:?}"
            );
            // Not `id > after`: a NaN `after` (read as 0 by the cursor rule) must pass too.
            let at_or_below = matches!(
                (id as f64).partial_cmp(&after),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            );
            assert!(!at_or_below, "id {id} <= after {after}");
            assert!(id < before, "id {id} >= before {before}");
            last = Some(id);
        }
    }
});
