//! The node image: a static pss-guard built from this checkout, `deploy/Containerfile` built by
//! Debian's buildah (FROM scratch, no registry), and the image's installer run by podman the way
//! the DaemonSet's init container runs it, against a fake host root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");
const TAG: &str = "localhost/pss-guard:install-image-test";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn ok(out: Output, what: &str) -> String {
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{s}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

/// A statically linked pss-guard, built beside the test's own target directory.
fn static_binary() -> PathBuf {
    let target = Path::new(BIN).parent().and_then(Path::parent).unwrap();
    let dir = target.join("static");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "-p",
            "pss-guard",
            "--bin",
            "pss-guard",
            "--target",
            triple,
        ])
        .env("CARGO_TARGET_DIR", &dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C debuginfo=0")
        .output()
        .unwrap();
    ok(out, "static cargo build");
    let bin = dir.join(triple).join("debug/pss-guard");
    assert!(!has_interpreter(&bin), "{bin:?} is dynamically linked");
    // The check tells them apart: the ordinary test build is dynamic.
    assert!(has_interpreter(Path::new(BIN)));
    bin
}

/// Whether an ELF64 file names a program interpreter (PT_INTERP): a dynamically linked binary
/// would not start in a `FROM scratch` image.
fn has_interpreter(path: &Path) -> bool {
    let b = fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{path:?} is not ELF");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (size, n) = (u16_at(0x36), u16_at(0x38));
    (0..n).any(|i| {
        let o = phoff + i * size;
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 3
    })
}

/// buildah/podman with their own storage under `dir`: nothing touches the host's images.
fn tool(name: &str, storage: &Path) -> Command {
    let mut c = Command::new(name);
    c.arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

fn configmap_policy() -> String {
    let text = fs::read_to_string(repo("deploy/kubernetes/pss-guard.yaml")).unwrap();
    let mut lines = text.lines().skip_while(|l| !l.contains("policy.toml: |"));
    lines.next();
    let mut out: String = lines
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// The DaemonSet's init container `command` + `args` after the entrypoint, from the manifest.
fn init_container_args() -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml\nds=[d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d['kind']=='DaemonSet'][0]\nc=ds['spec']['template']['spec']['initContainers'][0]\nprint(json.dumps(c.get('command',[])+c['args']))",
        ])
        .arg(repo("deploy/kubernetes/pss-guard.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let argv: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    // The image's entrypoint is /pss-guard: the manifest names it as the command.
    assert_eq!(argv[0], "/pss-guard", "{argv:?}");
    argv[1..].to_vec()
}

#[test]
fn image_builds_from_scratch_and_its_installer_sets_up_a_host() {
    let bin = static_binary();
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("storage");
    let ctx = work.path().join("context");
    fs::create_dir_all(&ctx).unwrap();
    fs::copy(&bin, ctx.join("pss-guard")).unwrap();

    let out = tool("buildah", &storage)
        .args(["bud", "--layers=false", "-f"])
        .arg(repo("deploy/Containerfile"))
        .args(["-t", TAG])
        .arg(&ctx)
        .output()
        .expect("buildah is installed (Debian's buildah)");
    ok(out, "buildah bud");
    let out = tool("buildah", &storage)
        .args([
            "inspect",
            "--type",
            "image",
            "--format",
            "{{len .OCIv1.RootFS.DiffIDs}} {{.OCIv1.Config.Entrypoint}}",
            TAG,
        ])
        .output()
        .unwrap();
    let inspect = ok(out, "buildah inspect");
    assert_eq!(
        inspect.trim(),
        "1 [/pss-guard]",
        "one layer (the binary), FROM scratch"
    );

    // The fake host: an EKS AL2023-shaped containerd 2.x node that also has CRI-O's config dir.
    let host = work.path().join("host");
    let etc = host.join("etc/containerd");
    fs::create_dir_all(&etc).unwrap();
    let fixtures = repo("tests/fixtures/containerd-config");
    fs::copy(
        fixtures.join("v3-eks-al2023-nodeadm.toml"),
        etc.join("config.toml"),
    )
    .unwrap();
    fs::copy(
        fixtures.join("eks-al2023-base-runtime-spec.json"),
        etc.join("base-runtime-spec.json"),
    )
    .unwrap();
    fs::create_dir_all(host.join("etc/crio")).unwrap();
    let config = work.path().join("config");
    fs::create_dir_all(&config).unwrap();
    let policy = configmap_policy();
    fs::write(config.join("policy.toml"), &policy).unwrap();
    let hooks = work.path().join("no-hooks");
    fs::create_dir_all(&hooks).unwrap();

    // The init container's arguments, minus --restart (there is no containerd to restart).
    let run_image = |args: &[&str]| {
        tool("podman", &storage)
            .arg("--hooks-dir")
            .arg(&hooks)
            .args(["--cgroup-manager", "cgroupfs", "--runtime", "runc"])
            .args([
                "--events-backend",
                "none",
                "run",
                "--rm",
                "--network",
                "none",
            ])
            // This machine's limits are below podman's defaults.
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .arg("-v")
            .arg(format!("{}:/host", host.display()))
            .arg("-v")
            .arg(format!("{}:/config:ro", config.display()))
            .arg(TAG)
            .args(args)
            .output()
            .expect("podman is installed")
    };
    let run_installer = |args: &[&str]| ok(run_image(args), "podman run installer");
    // The rendered DaemonSet's init container (deploy/kubernetes/pss-guard.yaml, rendered from
    // the kustomize overlay), minus --restart: there is no containerd to restart here.
    let init = init_container_args();
    assert!(init.contains(&"--restart".to_owned()), "{init:?}");
    let args: Vec<&str> = init
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--restart")
        .collect();
    let first = run_installer(&args);

    let installed = host.join("usr/local/bin/pss-guard");
    assert_eq!(
        fs::read(&installed).unwrap(),
        fs::read(&bin).unwrap(),
        "{first}"
    );
    assert_eq!(
        fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let v = Command::new(&installed).arg("version").output().unwrap();
    assert!(ok(v, "installed binary").starts_with("pss-guard "));
    assert_eq!(
        fs::read_to_string(host.join("etc/pss-guard/policy.toml")).unwrap(),
        policy
    );
    let cfg: toml::Table =
        toml::from_str(&fs::read_to_string(etc.join("config.toml")).unwrap()).unwrap();
    assert_eq!(
        cfg["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
            ["base_runtime_spec"]
            .as_str(),
        Some("/etc/pss-guard/containerd/base-runtime-spec-runc.json")
    );
    let spec: serde_json::Value = serde_json::from_slice(
        &fs::read(host.join("etc/pss-guard/containerd/base-runtime-spec-runc.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        spec["hooks"]["createRuntime"][0]["path"],
        "/usr/local/bin/pss-guard"
    );
    assert_eq!(
        spec["process"]["rlimits"][0]["hard"], 1048576,
        "nodeadm's spec kept"
    );
    assert!(
        host.join("usr/share/containers/oci/hooks.d/pss-guard.json")
            .is_file(),
        "{first}"
    );

    // The pod restarts (or the DaemonSet rolls out the same image): nothing to do.
    let second = run_installer(&args);
    for line in second.lines().filter(|l| !l.starts_with(' ')) {
        assert!(
            line.contains("unchanged") || line.contains("skipped"),
            "second run changed something: {line}\n{second}"
        );
    }

    // The readiness probe's command from the image, on the host it just wired: binary, policy
    // and both runtimes' wiring true; no containerd runs here, so no decision since its start
    // can be shown and the node is not ready.
    let out = run_image(&["health", "--root", "/host", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in ["binary", "policy", "runtime"] {
        assert_eq!(v[s]["ok"], true, "{s}: {v:#}");
    }
    assert_eq!(v["decision_since_restart"]["ok"], false, "{v:#}");
    assert_eq!(v["protected"], 2, "containerd's runc and hooks.d: {v:#}");
    assert_eq!(v["unprotected"], 0, "{v:#}");
}
