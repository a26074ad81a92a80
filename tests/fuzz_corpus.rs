//! Replays the committed fuzz corpus (`fuzz/seeds/<target>/`, `fuzz/corpus-sample/<target>/`)
//! through the fuzz harness itself, so CI checks on every run, cheaply, what `cargo fuzz run`
//! checked for minutes: no panic and the harness's invariants on every input.
//! See docs/fuzzing.md.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Replays every committed input of `target` (seeds and fuzzer-found samples) through `run`;
/// returns how many there were.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "corpus-sample"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus input");
            let ok = std::panic::catch_unwind(|| run(&data));
            assert!(ok.is_ok(), "{} fails the harness", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn committed_fuzz_corpus_replays_cleanly() {
    // An empty or missing corpus must not pass silently: at least the committed seeds and
    // samples of each target.
    for (target, run, least) in [
        ("evaluate", harness::run as fn(&[u8]), 278),
        ("keys", harness::keys, 220),
        ("mounts", harness::mounts, 104),
    ] {
        let n = replay(target, run);
        assert!(n >= least, "only {n} corpus inputs for {target}");
    }
}

#[test]
fn harness_splits_inputs_into_four_parts() {
    let parts = harness::split(b"a\xffb\xff\xffd\xffe");
    assert_eq!(parts, [&b"a"[..], b"b", b"", b"d\xffe"]);
    assert_eq!(harness::split(b""), [&b""[..]; 4]);
}
