//! Size rotation of the decision log through the built binary: a burst of 64 concurrent hooks
//! with a limit small enough that the burst crosses several rotations, and every record of the
//! burst is found whole, exactly once, in `decisions.log` and its rotated files. Records carry
//! the schema version.

// Test helpers: a panic is how a failed step reports itself.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);
/// A refused record is about 600 bytes, an allowed one about 350: 4 KiB holds a handful.
const MAX_BYTES: u64 = 4096;

fn rotated(log: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", log.display()))
}

/// Every line of the log and its rotated files, oldest file first, with the file it came from.
fn all_lines(log: &Path, keep: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|n| rotated(log, n)).collect();
    files.push(log.to_owned());
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{f:?} ends in a torn record"
        );
        out.extend(
            text.lines()
                .map(|l| (f.display().to_string(), l.to_owned())),
        );
    }
    out
}

/// A node whose policy ends in its `[log]` table, with the rotation keys appended there.
fn rotating_node(max_bytes: u64, keep: u32) -> Node {
    let node = Node::new("");
    let mut policy = std::fs::read_to_string(node.policy_path()).unwrap();
    assert!(policy.contains("[log]"));
    policy.push_str(&format!("max_bytes = {max_bytes}\nkeep = {keep}\n"));
    std::fs::write(node.policy_path(), policy).unwrap();
    node
}

#[test]
fn sixty_four_concurrent_hooks_across_rotations_lose_no_record() {
    let keep = 200;
    let node = rotating_node(MAX_BYTES, keep);
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    let mut spec = base_spec(&["/bin/true"]);
    make_privileged(&mut spec);
    let bad = node.bundle("bad", &spec);
    let children: Vec<_> = (0..64)
        .map(|i| {
            let (bundle, id) = if i % 2 == 0 {
                (&ok, format!("ok-{i:02}"))
            } else {
                (&bad, format!("bad-{i:02}"))
            };
            let cmd = node.hook_command(&["--runtime", "none"]);
            let input = state(&id, bundle);
            std::thread::spawn(move || (id, run_bounded(cmd, Stdin::Bytes(input), LIMIT)))
        })
        .collect();
    for c in children {
        let (id, o) = c.join().unwrap();
        let want = if id.starts_with("ok") { 0 } else { 1 };
        assert_eq!(
            o.status.code(),
            Some(want),
            "{id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // A rotation never shows on the hook's stderr: the allowed ones print nothing at all.
        if want == 0 {
            assert!(o.stderr.is_empty(), "{id}: {:?}", o.stderr);
        }
    }
    let log = node.log_path();
    let lines = all_lines(&log, keep);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut files = std::collections::BTreeSet::new();
    for (file, l) in &lines {
        let r: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("torn record in {file}: {e}: {l:?}"));
        assert_eq!(r["schema"], 1, "{r}");
        let id = r["container_id"].as_str().unwrap().to_owned();
        let want = if id.starts_with("ok") {
            "allowed"
        } else {
            "refused"
        };
        assert_eq!(r["decision"], want, "{r}");
        *seen.entry(id).or_default() += 1;
        files.insert(file.clone());
    }
    assert_eq!(seen.len(), 64, "every hook's record is present: {seen:?}");
    assert!(seen.values().all(|n| *n == 1), "a record twice: {seen:?}");
    // The burst crossed rotations: records are spread over several files.
    assert!(
        files.len() >= 3,
        "expected at least two rotations, records are in {files:?}"
    );
    // Rotated files stay near the limit: one rotation per crossing, not one per hook.
    for n in 1..=keep {
        if let Ok(m) = std::fs::metadata(rotated(&log, n)) {
            assert!(
                m.len() > MAX_BYTES / 2,
                "{n}: a tiny rotated file ({} bytes)",
                m.len()
            );
        }
    }
}

#[test]
fn a_held_rotation_lock_never_blocks_the_hook() {
    // Another hook holding the lock (here: this test, forever) makes the next one skip
    // rotation; it writes its record and exits at once, and the log grows past the limit.
    let node = rotating_node(4096, 2);
    let ok = node.bundle("ok", &base_spec(&["/bin/true"]));
    let log = node.log_path();
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, vec![b'\n'; 5000]).unwrap();
    let lock = std::fs::File::create(format!("{}.lock", log.display())).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let started = std::time::Instant::now();
    let o = run_bounded(
        node.hook_command(&["--runtime", "none"]),
        Stdin::Bytes(state("ok-1", &ok)),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!rotated(&log, 1).exists(), "rotated without the lock");
    assert!(std::fs::read_to_string(&log).unwrap().contains("\"ok-1\""));
    drop(_held);
    // With the lock free, the next hook rotates.
    let o = run_bounded(
        node.hook_command(&["--runtime", "none"]),
        Stdin::Bytes(state("ok-2", &ok)),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0));
    let rotated_text = std::fs::read_to_string(rotated(&log, 1)).unwrap();
    assert!(rotated_text.contains("\"ok-1\"") && rotated_text.contains("\"ok-2\""));
}
