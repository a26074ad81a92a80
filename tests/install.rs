//! `pss-guard install` / `uninstall` through the built binary, against a fake host root holding
//! real containerd config files of each version (tests/fixtures/containerd-config), with
//! version 2 results loaded by the real containerd 1.6 (`containerd config dump`).

// Test helpers: a panic is how a failed step reports itself.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");
const SPEC_DIR: &str = "etc/pss-guard/containerd";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/containerd-config")
        .join(name)
}

/// A fake host root with `config` as /etc/containerd/config.toml (and EKS's base spec).
fn host(config: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/containerd");
    fs::create_dir_all(&etc).unwrap();
    if let Some(c) = config {
        fs::copy(fixture(c), etc.join("config.toml")).unwrap();
    }
    fs::copy(
        fixture("eks-al2023-base-runtime-spec.json"),
        etc.join("base-runtime-spec.json"),
    )
    .unwrap();
    root
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pss-guard {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn install(root: &Path, extra: &[&str]) -> String {
    let r = root.to_str().unwrap();
    let mut a = vec!["install", "--root", r, "--only", "containerd"];
    a.extend_from_slice(extra);
    ok(&a)
}

fn uninstall(root: &Path, extra: &[&str]) -> String {
    let r = root.to_str().unwrap();
    let mut a = vec!["uninstall", "--root", r, "--only", "containerd"];
    a.extend_from_slice(extra);
    ok(&a)
}

fn config(root: &Path) -> toml::Table {
    toml::from_str(&fs::read_to_string(root.join("etc/containerd/config.toml")).unwrap()).unwrap()
}

fn runtimes(cfg: &toml::Table) -> &toml::Table {
    let plugin = if cfg["version"].as_integer() == Some(3) {
        "io.containerd.cri.v1.runtime"
    } else {
        "io.containerd.grpc.v1.cri"
    };
    cfg["plugins"][plugin]["containerd"]["runtimes"]
        .as_table()
        .unwrap()
}

fn spec(root: &Path, handler: &str) -> Value {
    let p = root
        .join(SPEC_DIR)
        .join(format!("base-runtime-spec-{handler}.json"));
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).unwrap()
}

fn assert_hooked(root: &Path, handler: &str) -> Value {
    let cfg = config(root);
    let h = &runtimes(&cfg)[handler];
    assert_eq!(
        h["base_runtime_spec"].as_str(),
        Some(format!("/{SPEC_DIR}/base-runtime-spec-{handler}.json").as_str()),
        "{handler}: {h:?}"
    );
    let s = spec(root, handler);
    let hooks = s["hooks"]["createRuntime"].as_array().unwrap();
    let ours: Vec<_> = hooks
        .iter()
        .filter(|h| h["path"] == "/usr/local/bin/pss-guard")
        .collect();
    assert_eq!(ours.len(), 1, "{hooks:?}");
    assert_eq!(
        ours[0]["args"],
        serde_json::json!([
            "pss-guard",
            "hook",
            "--runtime",
            "containerd",
            "--handler",
            handler
        ])
    );
    assert_eq!(ours[0]["timeout"], 10);
    s
}

/// containerd 1.6 loads the config and reports the handler's base spec.
fn containerd_loads(root: &Path, handler: &str, expect: Option<&str>) {
    let out = Command::new("containerd")
        .arg("--config")
        .arg(root.join("etc/containerd/config.toml"))
        .args(["config", "dump"])
        .output()
        .expect("containerd is installed (Debian's containerd package)");
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "containerd config dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: toml::Table = toml::from_str(&dump).unwrap();
    let got = runtimes(&cfg)[handler]["base_runtime_spec"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        got.as_deref().filter(|s| !s.is_empty()),
        expect,
        "containerd's view of {handler}"
    );
}

#[test]
fn v2_default_config_round_trips_and_containerd_loads_it() {
    let name = "v2-containerd-1.6.20-default.toml";
    let root = host(Some(name));
    let before = fs::read_to_string(fixture(name)).unwrap();
    let out = install(root.path(), &["--binary", BIN]);
    assert!(!out.contains("would"), "{out}");
    let s = assert_hooked(root.path(), "runc");
    // No base spec on this node: containerd's CRI default, without what a base spec must not carry.
    assert!(s["process"].get("rlimits").is_none());
    assert!(s["linux"].get("seccomp").is_none());
    assert!(s["process"].get("apparmorProfile").is_none());
    containerd_loads(
        root.path(),
        "runc",
        Some("/etc/pss-guard/containerd/base-runtime-spec-runc.json"),
    );
    // Only the one key changed: every other line, comments and layout included, is as it was.
    let after = fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap();
    let changed: Vec<_> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].1.contains("base_runtime_spec"));

    uninstall(root.path(), &["--restart", "--restart-command", "true"]);
    assert_eq!(
        fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap(),
        before
    );
    containerd_loads(root.path(), "runc", None);
    assert!(!root.path().join("usr/local/bin/pss-guard").exists());
    assert!(
        !root
            .path()
            .join(SPEC_DIR)
            .join("base-runtime-spec-runc.json")
            .exists()
    );
}

#[test]
fn v2_package_config_gets_the_implicit_default_handler() {
    let name = "v2-debian-12-package.toml";
    let root = host(Some(name));
    install(root.path(), &["--binary", BIN]);
    assert_hooked(root.path(), "runc");
    assert_eq!(
        runtimes(&config(root.path()))["runc"]["runtime_type"].as_str(),
        Some("io.containerd.runc.v2")
    );
    let text = fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap();
    assert!(text.contains("bin_dir = \"/usr/lib/cni\""), "{text}");
    containerd_loads(
        root.path(),
        "runc",
        Some("/etc/pss-guard/containerd/base-runtime-spec-runc.json"),
    );
    uninstall(root.path(), &["--restart", "--restart-command", "true"]);
    assert_eq!(
        fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap(),
        fs::read_to_string(fixture(name)).unwrap()
    );
}

#[test]
fn v2_eks_al2_config_is_idempotent() {
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    install(root.path(), &["--binary", BIN]);
    let files = snapshot(root.path());
    let again = install(root.path(), &["--binary", BIN]);
    assert_eq!(snapshot(root.path()), files, "second install changed files");
    for line in again.lines().filter(|l| !l.starts_with(' ')) {
        assert!(
            line.contains("unchanged") || line.contains("kept") || line.contains("skipped"),
            "second install did something: {line}\n{again}"
        );
    }
    containerd_loads(
        root.path(),
        "runc",
        Some("/etc/pss-guard/containerd/base-runtime-spec-runc.json"),
    );
}

#[test]
fn v3_eks_al2023_spec_is_derived_from_nodeadms_base_spec() {
    let name = "v3-eks-al2023-nodeadm.toml";
    let root = host(Some(name));
    install(root.path(), &["--binary", BIN]);
    let s = assert_hooked(root.path(), "runc");
    let eks: Value =
        serde_json::from_slice(&fs::read(fixture("eks-al2023-base-runtime-spec.json")).unwrap())
            .unwrap();
    // Everything nodeadm put in its spec survives; only the hook is added.
    let mut without = s.clone();
    without.as_object_mut().unwrap().remove("hooks");
    assert_eq!(without, eks);
    assert_eq!(s["process"]["rlimits"][0]["hard"], 1048576);
    let text = fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap();
    assert!(
        text.contains("# Rendered the way nodeadm renders"),
        "{text}"
    );
    assert!(text.contains("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]"));

    uninstall(root.path(), &["--restart", "--restart-command", "true"]);
    // The same config again. Not byte for byte: toml_edit writes one quoting style per table
    // name, so nodeadm's mix of 'a' and "a" for the same name comes back as one of them.
    let after = fs::read_to_string(root.path().join("etc/containerd/config.toml")).unwrap();
    assert_eq!(
        toml::from_str::<toml::Table>(&after).unwrap(),
        toml::from_str::<toml::Table>(&fs::read_to_string(fixture(name)).unwrap()).unwrap()
    );
    assert!(after.starts_with("# Rendered the way nodeadm renders"));
    // nodeadm's own file is never touched.
    assert_eq!(
        fs::read(root.path().join("etc/containerd/base-runtime-spec.json")).unwrap(),
        fs::read(fixture("eks-al2023-base-runtime-spec.json")).unwrap()
    );
}

#[test]
fn v3_every_runc_handler_is_hooked_and_kata_is_reported() {
    let root = host(Some("v3-containerd-2.x-gpu-and-kata.toml"));
    let out = install(root.path(), &["--binary", BIN]);
    let nvidia = assert_hooked(root.path(), "nvidia");
    assert_eq!(nvidia["process"]["rlimits"][0]["soft"], 65536);
    let runc = assert_hooked(root.path(), "runc");
    assert!(runc["process"].get("rlimits").is_none());
    let cfg = config(root.path());
    assert!(runtimes(&cfg)["kata"].get("base_runtime_spec").is_none());
    assert!(
        out.lines()
            .any(|l| l.contains("kata") && l.contains("skipped") && l.contains("not checked")),
        "{out}"
    );
}

#[test]
fn dry_run_changes_nothing_and_says_what_it_would_do() {
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    let before = snapshot(root.path());
    let out = install(root.path(), &["--binary", BIN, "--dry-run"]);
    assert_eq!(snapshot(root.path()), before);
    assert!(
        out.contains("/usr/local/bin/pss-guard: would create"),
        "{out}"
    );
    assert!(
        out.contains(
            "runtimes.runc.base_runtime_spec = \"/etc/pss-guard/containerd/base-runtime-spec-runc.json\" (was unset)"
        ),
        "{out}"
    );
    install(root.path(), &["--binary", BIN]);
    let installed = snapshot(root.path());
    let out = uninstall(root.path(), &["--dry-run"]);
    assert_eq!(snapshot(root.path()), installed);
    assert!(out.contains("would replace"), "{out}");
}

#[test]
fn binary_goes_first_and_restart_only_when_asked() {
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    let out = install(root.path(), &["--binary", BIN]);
    let order: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    let pos = |w: &str| order.iter().position(|x| *x == w).unwrap();
    assert!(pos("binary") < pos("policy"), "{out}");
    assert!(pos("policy") < pos("base"), "{out}");
    assert!(pos("base") < pos("containerd"), "{out}");
    assert!(pos("containerd") < pos("restart"), "{out}");
    assert!(out.contains("skipped: not asked (--restart)"), "{out}");
    let b = root.path().join("usr/local/bin/pss-guard");
    assert_eq!(fs::read(&b).unwrap(), fs::read(BIN).unwrap());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&b), 0o755);
    // A binary that lost its execute bits is put right by the next install.
    fs::set_permissions(&b, fs::Permissions::from_mode(0o644)).unwrap();
    let again = install(root.path(), &["--binary", BIN]);
    assert!(again.contains("pss-guard: replaced"), "{again}");
    assert_eq!(mode(&b), 0o755);

    // The base spec cannot be written (a directory is in its place): the binary is in place
    // (it went first), the config still names no hook, and the command fails.
    let name = "v2-eks-al2-bootstrap.toml";
    let root = host(Some(name));
    fs::create_dir_all(
        root.path()
            .join(SPEC_DIR)
            .join("base-runtime-spec-runc.json"),
    )
    .unwrap();
    let out = run(&[
        "install",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "containerd",
        "--binary",
        BIN,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(root.path().join("usr/local/bin/pss-guard").is_file());
    assert_eq!(
        fs::read(root.path().join("etc/containerd/config.toml")).unwrap(),
        fs::read(fixture(name)).unwrap()
    );

    // With --restart, the restart command runs once the config changed, and not again.
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    let marker = root.path().join("restarted");
    let cmd = format!("touch {}", marker.display());
    let out = install(
        root.path(),
        &["--binary", BIN, "--restart", "--restart-command", &cmd],
    );
    assert!(marker.exists(), "{out}");
    fs::remove_file(&marker).unwrap();
    install(
        root.path(),
        &["--binary", BIN, "--restart", "--restart-command", &cmd],
    );
    assert!(!marker.exists(), "restarted although nothing changed");
}

#[test]
fn uninstall_without_restart_keeps_the_binary_the_running_containerd_still_calls() {
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    install(root.path(), &["--binary", BIN]);
    let out = uninstall(root.path(), &[]);
    assert!(
        root.path().join("usr/local/bin/pss-guard").exists(),
        "{out}"
    );
    assert!(
        out.contains("kept: containerd still runs with the hook"),
        "{out}"
    );
    // The config is already restored; a second run with --restart still knows to restart and
    // only then removes the binary.
    let marker = root.path().join("restarted");
    let cmd = format!("touch {}", marker.display());
    let out = uninstall(root.path(), &["--restart", "--restart-command", &cmd]);
    assert!(marker.exists(), "{out}");
    assert!(
        !root.path().join("usr/local/bin/pss-guard").exists(),
        "{out}"
    );
    assert!(
        root.path().join("etc/pss-guard/policy.toml").exists(),
        "policy is the operator's"
    );
    uninstall(root.path(), &["--purge"]);
    assert!(!root.path().join("etc/pss-guard/policy.toml").exists());
}

#[test]
fn existing_policy_is_kept_unless_replacement_is_asked() {
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    let pol = root.path().join("etc/pss-guard/policy.toml");
    fs::create_dir_all(pol.parent().unwrap()).unwrap();
    fs::write(&pol, "enforce = \"restricted:latest\"\n").unwrap();
    let src = root.path().join("new-policy.toml");
    fs::write(&src, "enforce = \"baseline:v1.30\"\n").unwrap();
    let src_s = src.to_str().unwrap();
    let out = install(root.path(), &["--binary", BIN, "--policy", src_s]);
    assert!(out.contains("--replace-policy"), "{out}");
    assert_eq!(
        fs::read_to_string(&pol).unwrap(),
        "enforce = \"restricted:latest\"\n"
    );
    install(
        root.path(),
        &["--binary", BIN, "--policy", src_s, "--replace-policy"],
    );
    assert_eq!(
        fs::read_to_string(&pol).unwrap(),
        "enforce = \"baseline:v1.30\"\n"
    );

    // A broken policy is refused before anything is written.
    let fresh = host(Some("v2-eks-al2-bootstrap.toml"));
    fs::write(&src, "enforce = \"root:latest\"\n").unwrap();
    let before = snapshot(fresh.path());
    let out = run(&[
        "install",
        "--root",
        fresh.path().to_str().unwrap(),
        "--binary",
        BIN,
        "--policy",
        src_s,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid pss-guard policy"));
    assert_eq!(snapshot(fresh.path()), before);
}

#[test]
fn a_binary_that_is_not_pss_guard_is_never_installed() {
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    let before = snapshot(root.path());
    for bogus in ["/bin/true", "/etc/hostname"] {
        let out = run(&[
            "install",
            "--root",
            root.path().to_str().unwrap(),
            "--binary",
            bogus,
        ]);
        assert_eq!(out.status.code(), Some(2), "{bogus}");
        assert_eq!(snapshot(root.path()), before, "{bogus}");
    }
}

#[test]
fn custom_policy_path_reaches_the_hook_arguments() {
    let root = host(Some("v2-eks-al2-bootstrap.toml"));
    install(
        root.path(),
        &["--binary", BIN, "--policy-path", "/opt/pss/policy.toml"],
    );
    let s = spec(root.path(), "runc");
    let args = s["hooks"]["createRuntime"][0]["args"].as_array().unwrap();
    assert_eq!(args[args.len() - 2], "--policy");
    assert_eq!(args[args.len() - 1], "/opt/pss/policy.toml");
    assert!(root.path().join("opt/pss/policy.toml").is_file());
}

#[test]
fn missing_config_is_created_with_the_version_of_the_containerd_binary() {
    let root = host(None);
    let bin = root.path().join("usr/bin");
    fs::create_dir_all(&bin).unwrap();
    // A containerd 2.x binary carries the v3 CRI plugin ID; 1.x ones do not.
    fs::write(
        bin.join("containerd"),
        b"\x7fELF...io.containerd.cri.v1.runtime...",
    )
    .unwrap();
    install(root.path(), &["--binary", BIN]);
    let cfg = config(root.path());
    assert_eq!(cfg["version"].as_integer(), Some(3));
    assert_hooked(root.path(), "runc");

    let root = host(None);
    let out = run(&[
        "install",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "containerd",
        "--binary",
        BIN,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--containerd-config-version"));
}

#[test]
fn hooks_d_definition_goes_where_crio_reads_it() {
    let root = tempfile::tempdir().unwrap();
    let crio = root.path().join("etc/crio");
    fs::create_dir_all(&crio).unwrap();
    fs::write(
        crio.join("crio.conf"),
        "[crio.runtime]\nhooks_dir = [\"/etc/containers/oci/hooks.d\"]\n",
    )
    .unwrap();
    let r = root.path().to_str().unwrap();
    ok(&["install", "--root", r, "--binary", BIN]);
    let def = root
        .path()
        .join("etc/containers/oci/hooks.d/pss-guard.json");
    let v: Value = serde_json::from_slice(&fs::read(&def).unwrap()).unwrap();
    let shipped: Value = serde_json::from_str(include_str!("../hooks/pss-guard.json")).unwrap();
    assert_eq!(v, shipped, "the installed definition is the shipped one");
    assert!(root.path().join("usr/local/bin/pss-guard").is_file());
    // No containerd on this host: nothing written for it.
    assert!(!root.path().join("etc/containerd/config.toml").exists());
    ok(&["uninstall", "--root", r]);
    assert!(!def.exists());
    assert!(!root.path().join("usr/local/bin/pss-guard").exists());
}

fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

#[test]
fn a_yaml_policy_with_fragments_installs_and_the_node_file_says_what_the_node_is() {
    // A PodSecurityConfiguration from the ConfigMap, an exempt-*.toml key beside it, the
    // DaemonSet's namespace, and a containerd whose default handler is nvidia (EKS GPU AMIs).
    let root = host(Some("v3-containerd-2.x-gpu-and-kata.toml"));
    let config = tempfile::tempdir().unwrap();
    let psc = "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults:\n  enforce: baseline\nexemptions:\n  runtimeClasses: [gpu]\n";
    fs::write(config.path().join("policy.yaml"), psc).unwrap();
    fs::write(
        config.path().join("exempt-addons.toml"),
        "[exempt]\nnamespaces = [\"calico-system\"]\n",
    )
    .unwrap();
    let policy = config.path().join("policy.yaml");
    install(
        root.path(),
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--own-namespace",
            "guard-system",
        ],
    );
    let etc = root.path().join("etc/pss-guard");
    let written = fs::read_to_string(etc.join("policy.toml")).unwrap();
    assert!(
        written.starts_with(psc),
        "the operator's YAML as it is:\n{written}"
    );
    let (p, err) = pss_guard::config::Policy::load_or_default(&etc.join("policy.toml"));
    assert_eq!(err, None, "{written}");
    assert_eq!(p.enforce.to_string(), "baseline:latest");
    assert!(p.exempt_namespaces.contains("calico-system"), "{written}");
    assert_eq!(p.own_namespace.as_deref(), Some("guard-system"));
    assert_eq!(p.default_runtime_handler, "nvidia");
    // A namespace the hook would not take stops the install before anything is written.
    let again = tempfile::tempdir().unwrap();
    let r = again.path().to_str().unwrap();
    let out = run(&[
        "install",
        "--root",
        r,
        "--only",
        "containerd",
        "--own-namespace",
        "default",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Uninstall removes the node file, which is the installer's own.
    uninstall(root.path(), &[]);
    assert!(!etc.join("node.toml").exists());
    assert!(
        etc.join("policy.toml").exists(),
        "the policy is the operator's"
    );
}
