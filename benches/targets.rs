//! The whole-process targets of issue 5, measured side by side on this machine and printed as
//! `TARGET <name> <value> <limit> PASS|FAIL` lines for `scripts/bench.sh`:
//!
//! - `hook_vs_true`: the hook as a process (exec to exit: a realistic containerd spec and its
//!   sandbox spec, the policy file, one log append) against `/bin/true` with the same stdin,
//!   run in interleaved pairs; the ratio of the medians.
//! - `hook_peak_rss`: the largest `ru_maxrss` of any hook run.
//! - `runc_overhead`: `runc run` of a busybox container with pss-guard as prestart and
//!   createRuntime hook against the same bundle without hooks, interleaved; the difference of
//!   the medians over the median without hooks. The same rounds also run pss-guard as
//!   createRuntime hook only (as containerd installs it) and `/bin/true` as both hooks (what any
//!   hook costs runc), for the record.
//! - `audit_1000`: `pss-guard audit` over 1,000 pod containers' bundles on disk (each pod's
//!   sandbox bundle beside them, as containerd lays them out); the median of 5 runs.
//! - `snapshot_2000` (issue 10): the same hook run with the policy's `[snapshot] path` at the
//!   agent's snapshot of 2,000 labelled namespaces against the hook with no snapshot file, and
//!   `/bin/true`, in interleaved rounds; the ratio of the medians with/without the snapshot.
//! - `cri_view` (issue 13): on a real containerd test node (tests/containerd/node-up.sh, the
//!   host's containerd) with one pod running through kubelet-sim, the hook run on that pod's
//!   container bundle as containerd runs it, with the CRI lookup (`[cri] lookup = "auto"`, the
//!   default: two gRPC calls to containerd) against the same hook with `lookup = "off"`, and
//!   `/bin/true`, in interleaved rounds; the difference of the medians is the lookup's cost.
//!
//! Needs root (runc, and private namespaces for the simulated pod sandbox). Knobs (environment):
//! `PSS_BENCH_PAIRS` (default 1000), `PSS_BENCH_RUNC_ROUNDS` (default 150), `PSS_BENCH_ONLY`
//! (comma list of `process`, `runc`, `bundles`, `snapshot`, `cri`), `PSS_BENCH_SNAPSHOT_ROUNDS`
//! (default 500), `PSS_BENCH_CRI_ROUNDS` (default 500), `KUBELET_SIM_BIN` (default: the
//! kubelet-sim binary next to this benchmark's target directory), `PSS_GUARD_BIN` (default: the binary cargo
//! built alongside this benchmark).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wanted(part: &str) -> bool {
    match std::env::var("PSS_BENCH_ONLY") {
        Ok(v) if !v.is_empty() => v.split(',').any(|p| p.trim() == part),
        _ => true,
    }
}

fn bin() -> PathBuf {
    std::env::var_os("PSS_GUARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pss-guard")))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// One finished child: wall time from spawn to reaped, exit status, peak RSS in KiB.
struct Run {
    wall: Duration,
    status: i32,
    maxrss_kib: i64,
    minflt: i64,
}

/// Reaps `pid` with `wait4(2)`, which reports the child's own resource usage; std's `wait` does
/// not, and `RUSAGE_CHILDREN` mixes every child ever reaped.
#[allow(unsafe_code)]
fn wait4(pid: u32) -> (i32, i64, i64) {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types; pid is our own child,
        // not yet reaped (std only reaps in wait/try_wait, which we never call on it).
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4({pid}): {e}"
        );
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, usage.ru_maxrss, usage.ru_minflt)
}

// The child is reaped by `wait4` above, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command) -> Run {
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let (status, maxrss_kib, minflt) = wait4(child.id());
    Run {
        wall: started.elapsed(),
        status,
        maxrss_kib,
        minflt,
    }
}

/// The largest peak RSS of 50 runs, in KiB, as GNU time reports it. Not `ru_maxrss` from our
/// own `wait4`: std spawns with `vfork`, so the child's figure starts at this harness's RSS.
/// GNU time forks from a process of a few hundred KiB.
fn peak_rss(program: &Path, node: &common::Node, state: &Path) -> i64 {
    let out_file = node.dir.path().join("time.out");
    let mut peak = 0;
    for _ in 0..50 {
        let inner = hook_command(program, node, state);
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M", "-o"])
            .arg(&out_file)
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .current_dir(node.layout.bundle())
            .stdin(File::open(state).expect("state file"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let r = run(&mut c);
        assert_eq!(r.status, 0, "/usr/bin/time {:?} failed", program);
        let kib: i64 = std::fs::read_to_string(&out_file)
            .expect("/usr/bin/time output (install Debian's `time`)")
            .trim()
            .parse()
            .expect("a number of KiB");
        peak = peak.max(kib);
    }
    peak
}

/// The hook as containerd's base spec installs it, or `/bin/true` with the same stdin and argv.
fn hook_command(program: &Path, node: &common::Node, state: &Path) -> Command {
    hook_command_with(program, &node.policy_path(), node, state)
}

fn hook_command_with(program: &Path, policy: &Path, node: &common::Node, state: &Path) -> Command {
    hook_command_in(program, policy, &node.layout.bundle(), state)
}

/// As containerd's runc runs the hook: empty environment, cwd the bundle, the state on stdin.
fn hook_command_in(program: &Path, policy: &Path, bundle: &Path, state: &Path) -> Command {
    let mut c = Command::new(program);
    c.args(["hook", "--policy"])
        .arg(policy)
        .args(["--runtime", "containerd"])
        .env_clear()
        .current_dir(bundle)
        .stdin(File::open(state).expect("state file"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Runs `count` programs through 20 warm-up rounds, then `rounds` interleaved rounds in a
/// rotating order (`run_one(i)` runs program `i`, which must exit 0); each program's runs, in
/// the order they were made.
fn rotating_rounds(
    names: &[&str],
    rounds: usize,
    mut run_one: impl FnMut(usize) -> Run,
) -> Vec<Vec<Run>> {
    for i in 0..names.len() {
        for _ in 0..20 {
            run_one(i);
        }
    }
    let mut runs: Vec<Vec<Run>> = names.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for k in 0..names.len() {
            let i = (r + k) % names.len();
            let x = run_one(i);
            assert_eq!(x.status, 0, "{} exited {}", names[i], x.status);
            runs[i].push(x);
        }
    }
    runs
}

fn whole_process(pairs: usize) -> Vec<String> {
    let node = common::Node::new();
    let state_path = node.dir.path().join("state.json");
    std::fs::write(&state_path, node.layout.state(node.sandbox.pid())).expect("state");
    let hook = bin();
    let truth = Path::new("/bin/true");
    println!(
        "== hook as a process vs /bin/true: config.json {} B, sandbox config.json {} B, {} pairs",
        node.app_json.len(),
        node.sandbox_json.len(),
        pairs
    );

    // The hook must allow this container, or we would be timing the refusal path.
    let out = hook_command(&hook, &node, &state_path)
        .stderr(Stdio::piped())
        .output()
        .expect("run hook");
    assert!(
        out.status.success(),
        "the hook refused the bench container: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for _ in 0..20 {
        run(&mut hook_command(&hook, &node, &state_path));
        run(&mut hook_command(truth, &node, &state_path));
    }
    let (mut h, mut t) = (Vec::new(), Vec::new());
    let (mut hook_faults, mut true_faults) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which goes first, so neither always runs on a just-warmed cache.
        let one = |p: &Path| run(&mut hook_command(p, &node, &state_path));
        let (a, b) = if i % 2 == 0 {
            let a = one(&hook);
            (a, one(truth))
        } else {
            let b = one(truth);
            (one(&hook), b)
        };
        assert_eq!(a.status, 0, "hook run {i} exited {}", a.status);
        h.push(a.wall.as_secs_f64() * 1e6);
        t.push(b.wall.as_secs_f64() * 1e6);
        hook_faults.push(a.minflt as f64);
        true_faults.push(b.minflt as f64);
    }
    let (mh, mt) = (median(&h), median(&t));
    let ratio = mh / mt;
    let (peak_kib, true_kib) = (
        peak_rss(&hook, &node, &state_path),
        peak_rss(truth, &node, &state_path),
    );
    let peak_mb = peak_kib as f64 / 1024.0;
    println!("hook      median {mh:8.1} us");
    println!("/bin/true median {mt:8.1} us");
    println!("difference       {:8.1} us", mh - mt);
    println!(
        "peak RSS (GNU time, max of 50 runs): hook {peak_kib} KiB, /bin/true {true_kib} KiB; \
         minor faults (median): hook {}, /bin/true {}",
        median(&hook_faults),
        median(&true_faults)
    );
    let log =
        std::fs::read_to_string(node.dir.path().join("log/decisions.log")).unwrap_or_default();
    assert!(
        log.lines().count() >= pairs,
        "the hook did not log every decision"
    );
    hyperfine_cross_check(&hook, &node, &state_path);
    if std::env::var_os("PSS_BENCH_KEEP").is_some() {
        // For profiling by hand: leave the node and its sandbox process behind.
        println!(
            "kept: {} hook --policy {} --runtime containerd < {}",
            hook.display(),
            node.policy_path().display(),
            state_path.display()
        );
        println!("kept sandbox pid: {}", node.sandbox.pid());
        std::mem::forget(node);
    }
    vec![
        format!(
            "TARGET hook_vs_true {ratio:.3}x <=1.25x {}",
            verdict(ratio <= 1.25)
        ),
        format!(
            "TARGET hook_peak_rss {peak_mb:.2}MB <=4MB {}",
            verdict(peak_mb <= 4.0)
        ),
    ]
}

/// Several builds of the hook against `/bin/true` in interleaved rounds (each round runs every
/// program once, in a rotating order), for attributing a gain to one change:
/// `PSS_BENCH_COMPARE=name=/path/to/pss-guard,other=/path/...`.
fn compare(spec: &str, rounds: usize) {
    let node = common::Node::new();
    let state_path = node.dir.path().join("state.json");
    std::fs::write(&state_path, node.layout.state(node.sandbox.pid())).expect("state");
    let mut progs: Vec<(String, PathBuf)> = vec![("/bin/true".into(), "/bin/true".into())];
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (name, path) = item.split_once('=').expect("name=path");
        progs.push((name.to_owned(), PathBuf::from(path)));
    }
    println!(
        "== compare {} programs, {rounds} interleaved rounds",
        progs.len()
    );
    for (_, p) in &progs {
        for _ in 0..20 {
            run(&mut hook_command(p, &node, &state_path));
        }
    }
    let mut times = vec![Vec::new(); progs.len()];
    let mut rss = vec![Vec::new(); progs.len()];
    let mut faults = vec![Vec::new(); progs.len()];
    for r in 0..rounds {
        for k in 0..progs.len() {
            let i = (r + k) % progs.len();
            let x = run(&mut hook_command(&progs[i].1, &node, &state_path));
            assert_eq!(x.status, 0, "{} exited {}", progs[i].0, x.status);
            times[i].push(x.wall.as_secs_f64() * 1e6);
            rss[i].push(x.maxrss_kib as f64);
            faults[i].push(x.minflt as f64);
        }
    }
    let base = median(&times[0]);
    for (i, (name, _)) in progs.iter().enumerate() {
        let m = median(&times[i]);
        println!(
            "{name:>24}: median {m:8.1} us  ratio {:.3}  over /bin/true {:7.1} us  maxrss {:5.0} KiB  minor faults {:4.0}",
            m / base,
            m - base,
            median(&rss[i]),
            median(&faults[i])
        );
    }
}

/// The same comparison through Debian's `hyperfine`, for the record (it runs all of one
/// command, then all of the other, so it is not the target's measurement). Each command is
/// `exec`ed from bash so that only the redirect is extra, and equally so for both.
fn hyperfine_cross_check(hook: &Path, node: &common::Node, state: &Path) {
    if Command::new("hyperfine").arg("--version").output().is_err() {
        println!("(hyperfine not installed: no cross-check)");
        return;
    }
    let hook_cmd = format!(
        "exec {} hook --policy {} --runtime containerd < {}",
        hook.display(),
        node.policy_path().display(),
        state.display()
    );
    let true_cmd = format!("exec /bin/true < {}", state.display());
    let out = Command::new("hyperfine")
        .args([
            "-S", "bash", "-N", "--warmup", "50", "--runs", "500", "--style", "basic",
        ])
        .args(["-n", "hook", &hook_cmd, "-n", "/bin/true", &true_cmd])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output();
    // -N and -S conflict in some versions; retry with the shell only.
    let out = match out {
        Ok(o) if o.status.success() => o,
        _ => Command::new("hyperfine")
            .args([
                "-S", "bash", "--warmup", "50", "--runs", "500", "--style", "basic",
            ])
            .args(["-n", "hook", &hook_cmd, "-n", "/bin/true", &true_cmd])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("hyperfine"),
    };
    println!("-- hyperfine cross-check (not interleaved):");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let l = line.trim();
        if l.starts_with("Benchmark")
            || l.starts_with("Time")
            || l.contains("faster than")
            || l.contains("±") && !l.starts_with("Range")
        {
            println!("   {l}");
        }
    }
}

/// A busybox bundle running `true`, in the shape `runc spec` writes: compliant with baseline.
/// The hook in `stages` of a bundle: pss-guard with its policy, or any other program with the
/// same arguments (`/bin/true`, to see what running any hook costs runc).
struct Hook<'a> {
    program: &'a Path,
    policy: &'a Path,
    stages: &'a [&'a str],
}

fn runc_bundle(dir: &Path, name: &str, hook: Option<Hook>) -> PathBuf {
    let b = dir.join(name);
    let rootfs = b.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox is missing: install busybox-static");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).expect("symlink");
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if let Some(hook) = hook {
        let h = json!({
            "path": hook.program,
            "args": ["pss-guard", "hook", "--policy", hook.policy, "--runtime", "none"],
            "timeout": 10
        });
        let mut hooks = serde_json::Map::new();
        for stage in hook.stages {
            hooks.insert((*stage).to_owned(), json!([h.clone()]));
        }
        spec["hooks"] = serde_json::Value::Object(hooks);
    }
    std::fs::write(
        b.join("config.json"),
        serde_json::to_vec(&spec).expect("json"),
    )
    .expect("write config.json");
    b
}

fn runc(root: &Path, bundle: &Path, id: &str) -> Run {
    let mut c = Command::new("runc");
    c.arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(&mut c)
}

fn runc_overhead(rounds: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "enforce = \"baseline:latest\"\n[log]\npath = {:?}\nnode_name = \"bench-node\"\n",
            dir.path().join("log/decisions.log")
        ),
    )
    .expect("policy");
    let hook = bin();
    let both: &[&str] = &["prestart", "createRuntime"];
    let with = |program, stages| {
        Some(Hook {
            program,
            policy: &policy,
            stages,
        })
    };
    // 0: the target's comparison, pss-guard as prestart and createRuntime hook;
    // 1: no hooks; 2: createRuntime only, as containerd's base spec installs it;
    // 3: /bin/true in both stages, what any hook costs runc.
    let bundles = [
        runc_bundle(dir.path(), "hooked", with(&hook, both)),
        runc_bundle(dir.path(), "plain", None),
        runc_bundle(
            dir.path(),
            "create-runtime",
            with(&hook, &["createRuntime"]),
        ),
        runc_bundle(dir.path(), "true-hooks", with(Path::new("/bin/true"), both)),
    ];
    let root = dir.path().join("runc-root");
    println!("== runc run of a busybox container with vs without the hook: {rounds} rounds");

    let first = runc(&root, &bundles[0], "bench-check");
    if first.status != 0 {
        let out = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle"])
            .arg(&bundles[0])
            .arg("bench-check2")
            .stdin(Stdio::null())
            .output()
            .expect("runc");
        panic!(
            "runc run with the hook failed ({}): {}",
            first.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..5 {
        for (k, b) in bundles.iter().enumerate() {
            runc(&root, b, &format!("warm-{i}-{k}"));
        }
    }
    let mut ms = vec![Vec::new(); bundles.len()];
    for i in 0..rounds {
        // Each round runs every bundle once, in a rotating order.
        for k in 0..bundles.len() {
            let b = (i + k) % bundles.len();
            let r = runc(&root, &bundles[b], &format!("r{i}-{b}"));
            assert_eq!(r.status, 0, "runc run of bundle {b} failed in round {i}");
            ms[b].push(r.wall.as_secs_f64() * 1e3);
        }
    }
    // Differences of medians: on this noisy machine they are steadier than paired
    // differences, whose partners run up to three runs apart.
    let base = median(&ms[1]);
    let paired = |b: usize| {
        let d: Vec<f64> = ms[b].iter().zip(&ms[1]).map(|(x, y)| x - y).collect();
        median(&d)
    };
    println!("without hooks                      median {base:7.2} ms");
    let names = [
        "pss-guard prestart + createRuntime",
        "",
        "pss-guard createRuntime only",
        "/bin/true prestart + createRuntime",
    ];
    for b in [0, 2, 3] {
        let m = median(&ms[b]);
        println!(
            "{:34} median {m:7.2} ms: +{:5.2} ms = {:5.2} % (median of paired differences {:5.2} %)",
            names[b],
            m - base,
            100.0 * (m - base) / base,
            100.0 * paired(b) / base
        );
    }
    println!(
        "pss-guard's own share (pss-guard hooks vs /bin/true hooks): {:.2} ms = {:.2} %",
        median(&ms[0]) - median(&ms[3]),
        100.0 * (median(&ms[0]) - median(&ms[3])) / base
    );
    let pct = 100.0 * (median(&ms[0]) - base) / base;
    vec![format!(
        "TARGET runc_overhead {pct:.2}% <=3% {}",
        verdict(pct <= 3.0)
    )]
}

fn bundles(count: usize) -> Vec<String> {
    use pss_guard::config::Policy;
    use pss_guard::hook::{self, Options};
    use pss_guard::spec::{self, Runtime, RuntimeArg, Target};

    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = common::Sandbox::start();
    let first = common::Layout::new(dir.path(), 0);
    std::fs::write(dir.path().join("policy.toml"), first.policy()).expect("policy");
    let mut bundles = Vec::with_capacity(count);
    for seed in 0..count as u64 {
        let l = common::Layout::new(dir.path(), seed);
        l.create_dirs();
        l.write_bundles(sandbox.pid());
        bundles.push(l.bundle());
    }
    println!(
        "== {count} pod bundles on disk (plus their {count} sandbox bundles): `pss-guard audit`"
    );
    let policy_path = dir.path().join("policy.toml");
    let audit = || {
        let started = Instant::now();
        let out = Command::new(bin())
            .args(["audit", "--policy"])
            .arg(&policy_path)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("run pss-guard audit");
        (started.elapsed().as_secs_f64(), out)
    };
    let (_, first) = audit();
    assert!(
        first.status.success(),
        "pss-guard audit found a refusal or failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let listed = String::from_utf8_lossy(&first.stdout)
        .lines()
        .filter(|l| l.contains(common::CONTAINER))
        .count();
    assert!(
        listed >= count,
        "audit listed {listed} of {count} containers"
    );
    let walls: Vec<f64> = (0..5).map(|_| audit().0).collect();
    let wall = median(&walls);
    println!(
        "audit of {count} containers: median of 5 runs {wall:.3} s ({:.0} containers/s)",
        count as f64 / wall
    );

    // The same work in this process through the library, without the directory walk and the
    // table: the evaluation alone.
    let started = Instant::now();
    let policy = Policy::load(&policy_path).expect("policy");
    let opts = Options::default();
    let mut refused = 0;
    for b in &bundles {
        let target = Target {
            id: b
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bundle: b.clone(),
            spec_file: None,
            sandbox_file: None,
            runtime: RuntimeArg::Named(Runtime::Containerd),
        };
        let loaded = spec::load(&target, &policy.paths);
        let d = hook::decide(&policy, &opts, loaded, None, Instant::now());
        if d.kind().exit_code() != 0 {
            refused += 1;
        }
    }
    let lib = started.elapsed().as_secs_f64();
    assert_eq!(refused, 0, "every generated bundle is compliant");
    println!("library loop (load + decide per container): {lib:.3} s");
    vec![format!(
        "TARGET audit_1000 {wall:.3}s <1s {}",
        verdict(wall < 1.0)
    )]
}

/// The agent's snapshot of a cluster with `n` namespaces (the bench pod's among them), in its
/// format: every namespace, keys sorted, only Pod Security labels kept, an unlabeled one as
/// `{}`. The mix is what a cluster that adopted PSA looks like: a third unlabeled, a third
/// enforcing baseline and warning restricted with pinned versions, a third restricted in all
/// three modes.
fn cluster_snapshot(n: usize) -> Vec<u8> {
    use std::collections::BTreeMap;
    const P: &str = "pod-security.kubernetes.io/";
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for i in 0..n.saturating_sub(1) {
        let mut labels = BTreeMap::new();
        let mut set = |k: &str, v: &str| labels.insert(format!("{P}{k}"), v.to_owned());
        match i % 3 {
            0 => {}
            1 => {
                set("enforce", "baseline");
                set("enforce-version", "v1.31");
                set("warn", "restricted");
                set("warn-version", "latest");
            }
            _ => {
                set("enforce", "restricted");
                set("enforce-version", "latest");
                set("audit", "restricted");
                set("warn", "restricted");
            }
        }
        namespaces.insert(
            format!("team-{:04}-{}", i, ["web", "batch", "data"][i % 3]),
            labels,
        );
    }
    namespaces.insert(
        common::NAMESPACE.to_owned(),
        [(format!("{P}enforce"), "baseline".to_owned())].into(),
    );
    let classes = [
        ("gvisor", "runsc"),
        ("kata", "kata-qemu"),
        ("nvidia", "nvidia"),
    ]
    .into_iter()
    .map(|(n, h)| (n.to_owned(), h.to_owned()))
    .collect();
    pss_guard::snapshot::render(
        std::time::SystemTime::now(),
        pss_guard::snapshot::Cluster {
            namespaces: &namespaces,
            runtime_classes: &classes,
            kubernetes_version: Some("v1.34"),
        },
    )
}

/// The hook with a 2,000-namespace snapshot against the hook without one (and `/bin/true`),
/// interleaved rounds in a rotating order.
fn snapshot_cost(rounds: usize) -> Vec<String> {
    let node = common::Node::new();
    let state_path = node.dir.path().join("state.json");
    std::fs::write(&state_path, node.layout.state(node.sandbox.pid())).expect("state");
    let base = std::fs::read_to_string(node.policy_path()).expect("policy");
    let snap = node.dir.path().join("cluster.json");
    let bytes = cluster_snapshot(2000);
    std::fs::write(&snap, &bytes).expect("snapshot");
    let without = node.dir.path().join("policy-no-snapshot.toml");
    let with = node.dir.path().join("policy-snapshot.toml");
    let missing = node.dir.path().join("no-such-snapshot.json");
    std::fs::write(&without, format!("{base}[snapshot]\npath = {missing:?}\n")).expect("policy");
    std::fs::write(&with, format!("{base}[snapshot]\npath = {snap:?}\n")).expect("policy");
    let hook = bin();
    println!(
        "== snapshot: hook with the agent's snapshot of 2,000 namespaces ({} B) vs without, {rounds} rounds",
        bytes.len()
    );
    // Both allow the container, and the snapshot's labels are the ones applied.
    let log = node.dir.path().join("log/decisions.log");
    for policy in [&without, &with] {
        let out = hook_command_with(&hook, policy, &node, &state_path)
            .stderr(Stdio::piped())
            .output()
            .expect("run hook");
        assert!(
            out.status.success(),
            "the hook refused the bench container: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = std::fs::read_to_string(&log).expect("log");
    assert!(
        last.lines()
            .last()
            .is_some_and(|l| l.contains("\"policy_from\":\"namespace labels\"")),
        "the snapshot's labels were not used: {last}"
    );
    let progs: [(&str, &Path, &Path); 3] = [
        ("/bin/true", Path::new("/bin/true"), &without),
        ("hook, no snapshot", &hook, &without),
        ("hook, 2,000 namespaces", &hook, &with),
    ];
    let names = progs.map(|(name, _, _)| name);
    let runs = rotating_rounds(&names, rounds, |i| {
        let (_, p, pol) = progs[i];
        run(&mut hook_command_with(p, pol, &node, &state_path))
    });
    let wall = |r: &[Run]| {
        median(
            &r.iter()
                .map(|x| x.wall.as_secs_f64() * 1e6)
                .collect::<Vec<_>>(),
        )
    };
    let m: Vec<f64> = runs.iter().map(|r| wall(r)).collect();
    for (i, name) in names.iter().enumerate() {
        let faults: Vec<f64> = runs[i].iter().map(|x| x.minflt as f64).collect();
        println!(
            "{name:>24}: median {:8.1} us  / bin/true {:.3}x  minor faults {:4.0}",
            m[i],
            m[i] / m[0],
            median(&faults)
        );
    }
    let ratio = m[2] / m[1];
    println!(
        "snapshot adds {:.1} us to the hook ({:.3}x)",
        m[2] - m[1],
        ratio
    );
    vec![format!(
        "TARGET snapshot_2000 {ratio:.3}x <=1.05x {}",
        verdict(ratio <= 1.05)
    )]
}

/// The workspace's kubelet-sim binary (`cargo build -p kubelet-sim`).
fn kubelet_sim() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBELET_SIM_BIN") {
        return p.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["release", "debug"]
        .iter()
        .map(|p| root.join("target").join(p).join("kubelet-sim"))
        .find(|p| p.is_file())
        .expect("no kubelet-sim binary: cargo build -p kubelet-sim, or set KUBELET_SIM_BIN")
}

/// `KEY=value` lines of the node's env file.
fn node_var(env: &str, key: &str) -> String {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("node env has no {key}"))
        .to_owned()
}

/// The hook on a live containerd container's bundle, with and without the CRI lookup.
fn cri_view_cost(rounds: usize) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hook = bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    let up = Command::new("bash")
        .arg(root.join("tests/containerd/node-up.sh"))
        .arg(&node)
        .env("PSS_GUARD_BIN", &hook)
        .env("PSS_GUARD_STACK", "bookworm")
        .output()
        .expect("run node-up.sh");
    assert!(
        up.status.success(),
        "node-up.sh failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    // Taken down however this part ends, a failed assertion included.
    struct NodeDown(PathBuf);
    impl Drop for NodeDown {
        fn drop(&mut self) {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let _ = Command::new("bash")
                .arg(root.join("tests/containerd/node-down.sh"))
                .arg(&self.0)
                .output();
        }
    }
    let _down = NodeDown(node.clone());
    let env = std::fs::read_to_string(node.join("env")).expect("node env");
    let socket = node_var(&env, "CONTAINERD_SOCKET");
    let state_dir = node_var(&env, "CONTAINERD_STATE");
    let policy = PathBuf::from(node_var(&env, "PSS_GUARD_POLICY"));
    let log = PathBuf::from(node_var(&env, "PSS_GUARD_DECISION_LOG"));
    let pod = node.join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bench\n  namespace: default\nspec:\n  containers:\n  - name: app\n    image: localhost/pss-guard/app:latest\n    command: [\"sleep\", \"3600\"]\n",
    )
    .expect("pod");
    let base = std::fs::read_to_string(&policy).expect("policy");
    // node-up.sh points the policy at the node's own containerd.
    let with_socket = base.clone();
    assert!(
        with_socket.contains(&format!("containerd_socket = {socket:?}")),
        "the node's policy does not name its containerd socket: {base}"
    );
    let auto = node.join("policy-cri-auto.toml");
    let off = node.join("policy-cri-off.toml");
    std::fs::write(&auto, format!("{with_socket}\n[cri]\nlookup = \"auto\"\n")).expect("policy");
    std::fs::write(&off, format!("{with_socket}\n[cri]\nlookup = \"off\"\n")).expect("policy");
    std::fs::copy(&auto, &policy).expect("policy");
    let out = Command::new(kubelet_sim())
        .args(["run-pod", "--socket", &socket, "--kubelet-root"])
        .arg(node.join("kubelet"))
        .arg(&pod)
        .output()
        .expect("run kubelet-sim");
    let pod_run: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kubelet-sim: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let id = pod_run["containers"][0]["container_id"]
        .as_str()
        .expect("container id")
        .to_owned();
    assert_eq!(
        pod_run["containers"][0]["started"], true,
        "bench pod: {pod_run}"
    );
    let bundle = Path::new(&state_dir)
        .join("io.containerd.runtime.v2.task/k8s.io")
        .join(&id);
    let state = node.join("state.json");
    std::fs::write(
        &state,
        json!({"ociVersion": "1.0.2", "id": id, "status": "created", "pid": 0,
               "bundle": bundle})
        .to_string(),
    )
    .expect("state");
    let cmd = |program: &Path, policy: &Path| hook_command_in(program, policy, &bundle, &state);
    // Each policy decides as intended before anything is timed.
    for (policy, want) in [(&off, "skipped: cri.lookup"), (&auto, "used")] {
        let x = run(&mut cmd(&hook, policy));
        assert_eq!(x.status, 0, "the hook refused the bench container");
        let last = std::fs::read_to_string(&log).expect("log");
        let last = last.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("\"cri_view\":\"{want}")),
            "expected cri_view {want}: {last}"
        );
    }
    println!(
        "== cri: hook on a running containerd container's bundle, CRI lookup on vs off, {rounds} rounds"
    );
    let progs: [(&str, &Path, &Path); 3] = [
        ("/bin/true", Path::new("/bin/true"), &off),
        ("hook, lookup off", &hook, &off),
        ("hook, lookup on", &hook, &auto),
    ];
    let names = progs.map(|(name, _, _)| name);
    let runs = rotating_rounds(&names, rounds, |i| {
        let (_, p, pol) = progs[i];
        run(&mut cmd(p, pol))
    });
    let m: Vec<f64> = runs
        .iter()
        .map(|r| {
            median(
                &r.iter()
                    .map(|x| x.wall.as_secs_f64() * 1e6)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        println!(
            "{name:>24}: median {:8.1} us  / bin/true {:.3}x",
            m[i],
            m[i] / m[0]
        );
    }
    let added_ms = (m[2] - m[1]) / 1000.0;
    println!(
        "the CRI lookup adds {:.1} us to the hook ({:.3}x)",
        m[2] - m[1],
        m[2] / m[1]
    );
    vec![
        format!(
            "TARGET cri_view_added {added_ms:.3}ms <2ms {}",
            verdict(added_ms < 2.0)
        ),
        format!(
            "RECORD hook_with_cri_view_vs_true {:.3}x (lookup off {:.3}x)",
            m[2] / m[0],
            m[1] / m[0]
        ),
    ]
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter would be the next argument. Nothing here
    // takes a filter: PSS_BENCH_ONLY selects parts.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(spec) = std::env::var("PSS_BENCH_COMPARE") {
        compare(&spec, env_usize("PSS_BENCH_PAIRS", 1000));
        return;
    }
    let mut results = Vec::new();
    if wanted("process") {
        results.extend(whole_process(env_usize("PSS_BENCH_PAIRS", 1000)));
    }
    if wanted("runc") {
        results.extend(runc_overhead(env_usize("PSS_BENCH_RUNC_ROUNDS", 150)));
    }
    if wanted("bundles") {
        results.extend(bundles(1000));
    }
    if wanted("snapshot") {
        results.extend(snapshot_cost(env_usize("PSS_BENCH_SNAPSHOT_ROUNDS", 500)));
    }
    if wanted("cri") {
        results.extend(cri_view_cost(env_usize("PSS_BENCH_CRI_ROUNDS", 500)));
    }
    println!();
    for r in results {
        println!("{r}");
    }
}
