//! Replays the committed fuzz corpus (`fuzz/seeds/evaluate/`, `fuzz/corpus-sample/evaluate/`)
//! through the fuzz harness itself, so CI checks on every run, cheaply, what `cargo fuzz run
//! evaluate` checked for minutes: no panic and the harness's invariants on every input.
//! See docs/fuzzing.md.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn committed_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds/evaluate", "corpus-sample/evaluate"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let ok = std::panic::catch_unwind(|| harness::run(&data));
            assert!(ok.is_ok(), "{} fails the harness", path.display());
            n += 1;
        }
    }
    // 78 seeds and 200 fuzzer-found inputs: an empty or missing corpus must not pass silently.
    assert!(
        n >= 278,
        "only {n} corpus inputs found under {}",
        root.display()
    );
}

#[test]
fn harness_splits_inputs_into_four_parts() {
    let parts = harness::split(b"a\xffb\xff\xffd\xffe");
    assert_eq!(parts, [&b"a"[..], b"b", b"", b"d\xffe"]);
    assert_eq!(harness::split(b""), [&b""[..]; 4]);
}
