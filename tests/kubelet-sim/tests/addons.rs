//! Issue 17, items 1-3: the add-ons EKS clusters run, as their upstream manifests and charts
//! make their pods (tests/kubelet-sim/addons/, README there), started through kubelet-sim on a
//! real containerd node under the policy of every shipped overlay (deploy/kubernetes/overlays/*,
//! rendered with `kustomize build`: the pss-guard-policy ConfigMap's policy and its
//! `exempt-*.toml` fragments, composed as install and the agent compose them) and under the EKS
//! user-data boot policy (node-config/eks-al2023-user-data.mime), each in observe and in enforce
//! mode, with each add-on's namespace labelled as its installer labels it and unlabelled (the
//! agent's snapshot format).
//!
//! Asserted:
//! - the default overlays (daemonset-install, eks-userdata) and the boot policy refuse none of
//!   the add-ons, in observe and in enforce: every container starts and no record says
//!   refused, error or would_refuse; the seed privileged pod (examples/privileged-pod.yaml) in
//!   `default` is refused once enforcing and recorded `would_refuse` in observe;
//! - under every policy, in enforce mode a container starts exactly when its record is not
//!   refused or error, and in observe mode every container starts;
//! - kube-system's add-ons are never refused;
//! - observe is an exact preview of enforce: for every container of every pod, the observe
//!   record's would-be decision (would_refuse for refused or error, else the same) and its
//!   violations equal the enforce record's.
//!
//! Each pod runs once per distinct policy (identical rendered policies are run once) and per
//! distinct labelling of its own namespace; the pods of one run start concurrently.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use common::{Snapshot, TestNode, workspace_root};
use kubelet_sim::{ContainerRun, Kubelet, Options, PodManifest, PodRun, Source, load};
use serde_json::{Value, json};

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";

/// One add-on pod and the Pod Security labels its installer puts on its namespace (the README
/// next to the manifests says where each comes from).
struct Addon {
    file: &'static str,
    installer_labels: &'static [(&'static str, &'static str)],
}

const ADDONS: &[Addon] = &[
    Addon {
        file: "aws-node.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "kube-proxy.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "ebs-csi-node.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "efs-csi-node.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "coredns.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "eks-pod-identity-agent.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "karpenter.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "cloudwatch-agent.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "fluent-bit.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "guardduty-agent.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "network-flow-monitor-agent.yaml",
        installer_labels: &[],
    },
    // tigera/operator pkg/render/namespaces.go: CreateNamespace(calico-system, ..., PSSPrivileged)
    // sets enforce=privileged and enforce-version=latest.
    Addon {
        file: "calico-node.yaml",
        installer_labels: &[(ENFORCE, "privileged"), (ENFORCE_VERSION, "latest")],
    },
    // projectcalico/calico manifests/tigera-operator.yaml: the Namespace carries
    // enforce=privileged.
    Addon {
        file: "tigera-operator.yaml",
        installer_labels: &[(ENFORCE, "privileged")],
    },
    Addon {
        file: "istio-cni.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "ztunnel.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "node-exporter.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "datadog-agent.yaml",
        installer_labels: &[],
    },
    Addon {
        file: "falco.yaml",
        installer_labels: &[],
    },
];

/// The policies whose verdicts must let every add-on start: what a fresh EKS install runs.
const DEFAULT_POLICIES: &[&str] = &[
    "overlay daemonset-install",
    "overlay eks-userdata",
    "user-data boot policy",
];

const SEED: &str = "seed-privileged-pod";

/// What each container breaks of baseline as the hook sees it (addons/README.md: Pod Security's
/// view pod by pod, against the container's own spec here; host ports and the AppArmor
/// annotation are in the CRI view only, which is not asked for once the spec refuses or the
/// container is exempt). Every record at a baseline level must list exactly these checks, refused,
/// exempt or allowed; an empty list is a container that meets baseline.
const BASELINE: &[(&str, &[&str])] = &[
    (
        "aws-node.yaml/aws-vpc-cni-init",
        &["hostNamespaces", "hostPathVolumes", "privileged"],
    ),
    (
        "aws-node.yaml/aws-node",
        &["capabilities_baseline", "hostNamespaces", "hostPathVolumes"],
    ),
    (
        "aws-node.yaml/aws-eks-nodeagent",
        &["hostNamespaces", "hostPathVolumes", "privileged"],
    ),
    (
        "kube-proxy.yaml/kube-proxy",
        &["capabilities_baseline", "hostNamespaces", "hostPathVolumes"],
    ),
    (
        "ebs-csi-node.yaml/ebs-plugin",
        &["hostPathVolumes", "privileged"],
    ),
    (
        "ebs-csi-node.yaml/node-driver-registrar",
        &["hostPathVolumes"],
    ),
    ("ebs-csi-node.yaml/liveness-probe", &["hostPathVolumes"]),
    (
        "efs-csi-node.yaml/efs-plugin",
        &["hostNamespaces", "hostPathVolumes", "privileged"],
    ),
    (
        "efs-csi-node.yaml/csi-driver-registrar",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    (
        "efs-csi-node.yaml/liveness-probe",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    ("coredns.yaml/coredns", &[]),
    (
        "eks-pod-identity-agent.yaml/eks-pod-identity-agent-init",
        &["hostNamespaces", "privileged"],
    ),
    (
        "eks-pod-identity-agent.yaml/eks-pod-identity-agent",
        &["capabilities_baseline", "hostNamespaces"],
    ),
    ("karpenter.yaml/controller", &[]),
    (
        "cloudwatch-agent.yaml/otc-container",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    (
        "fluent-bit.yaml/fluent-bit",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    (
        "guardduty-agent.yaml/aws-guardduty-agent",
        &["capabilities_baseline", "hostPathVolumes"],
    ),
    (
        "network-flow-monitor-agent.yaml/aws-network-flow-monitor-agent",
        &["hostNamespaces", "privileged"],
    ),
    (
        "calico-node.yaml/flexvol-driver",
        &["hostNamespaces", "hostPathVolumes", "privileged"],
    ),
    (
        "calico-node.yaml/ebpf-bootstrap",
        &["hostNamespaces", "hostPathVolumes", "privileged"],
    ),
    (
        "calico-node.yaml/install-cni",
        &["hostNamespaces", "hostPathVolumes", "privileged"],
    ),
    (
        "calico-node.yaml/calico-node",
        &["hostNamespaces", "hostPathVolumes", "privileged"],
    ),
    (
        "tigera-operator.yaml/tigera-operator",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    (
        "istio-cni.yaml/install-cni",
        &["capabilities_baseline", "hostPathVolumes"],
    ),
    (
        "ztunnel.yaml/istio-proxy",
        &["capabilities_baseline", "hostPathVolumes"],
    ),
    (
        "node-exporter.yaml/node-exporter",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    ("datadog-agent.yaml/init-volume", &["hostNamespaces"]),
    (
        "datadog-agent.yaml/init-config",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    (
        "datadog-agent.yaml/agent",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    (
        "datadog-agent.yaml/trace-agent",
        &["hostNamespaces", "hostPathVolumes"],
    ),
    (
        "falco.yaml/falco-driver-loader",
        &["hostPathVolumes", "privileged"],
    ),
    ("falco.yaml/falcoctl-artifact-install", &[]),
    ("falco.yaml/falco", &["hostPathVolumes", "privileged"]),
    ("falco.yaml/falcoctl-artifact-follow", &[]),
    ("seed-privileged-pod/app", &["privileged"]),
];

/// A pod to run: the add-on's manifest (or the seed pod), its namespace, its labelling.
#[derive(Clone)]
struct PodCase {
    name: String,
    file: String,
    yaml: String,
    namespace: String,
    installer_labels: BTreeMap<String, String>,
    containers: usize,
}

fn addon_dir() -> PathBuf {
    workspace_root().join("tests/kubelet-sim/addons")
}

fn pod_cases() -> Vec<PodCase> {
    let mut out = Vec::new();
    let mut files: Vec<(String, String, BTreeMap<String, String>)> = ADDONS
        .iter()
        .map(|a| {
            let p = addon_dir().join(a.file);
            let yaml =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let labels = a
                .installer_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (a.file.to_string(), yaml, labels)
        })
        .collect();
    let seed = workspace_root().join("examples/privileged-pod.yaml");
    files.push((
        SEED.into(),
        std::fs::read_to_string(&seed).expect("examples/privileged-pod.yaml"),
        BTreeMap::new(),
    ));
    for (file, yaml, installer_labels) in files {
        let m = load(&yaml, Source::ApiServer).unwrap_or_else(|e| panic!("{file}: {e}"));
        let spec = m.pod.spec.as_ref().expect("pod spec");
        let containers = spec.containers.len() + spec.init_containers.as_ref().map_or(0, Vec::len);
        out.push(PodCase {
            name: m.pod.metadata.name.clone().expect("pod name"),
            namespace: m
                .pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            file,
            yaml,
            installer_labels,
            containers,
        });
    }
    // Every file the README lists is in the suite, and every manifest in the directory too.
    let on_disk: BTreeSet<String> = std::fs::read_dir(addon_dir())
        .expect("addons dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    let listed: BTreeSet<String> = ADDONS.iter().map(|a| a.file.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "tests/kubelet-sim/addons/*.yaml and ADDONS differ"
    );
    let readme = std::fs::read_to_string(addon_dir().join("README.md")).expect("addons README");
    for f in &listed {
        assert!(
            readme.contains(f.as_str()),
            "addons/README.md does not list {f}"
        );
    }
    out
}

/// A policy as shipped: the main policy text and its `exempt-*.toml` fragments.
struct Shipped {
    name: String,
    main: String,
    fragments: Vec<(String, String)>,
}

fn kustomize_build(dir: &Path) -> String {
    let out = Command::new("kustomize")
        .arg("build")
        .arg(dir)
        .output()
        .expect("kustomize is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "kustomize build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize output is UTF-8")
}

/// The pss-guard-policy ConfigMap of every overlay under deploy/kubernetes/overlays.
fn overlay_policies() -> Vec<Shipped> {
    let root = workspace_root().join("deploy/kubernetes/overlays");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("overlays dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 2, "no overlays under {}", root.display());
    dirs.iter()
        .map(|dir| {
            let yaml = kustomize_build(dir);
            let cm = serde_yaml::Deserializer::from_str(&yaml)
                .filter_map(|d| serde::Deserialize::deserialize(d).ok())
                .map(|v: serde_yaml::Value| serde_json::to_value(v).expect("yaml as json"))
                .find(|v: &Value| {
                    v["kind"] == "ConfigMap" && v["metadata"]["name"] == "pss-guard-policy"
                })
                .unwrap_or_else(|| panic!("{}: no ConfigMap pss-guard-policy", dir.display()));
            let data = cm["data"].as_object().expect("ConfigMap data");
            let main = data
                .get("policy.toml")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: no policy.toml key", dir.display()))
                .to_string();
            let fragments = data
                .iter()
                .filter(|(k, _)| k.starts_with("exempt-") && k.ends_with(".toml"))
                .map(|(k, v)| (k.clone(), v.as_str().expect("fragment text").to_string()))
                .collect();
            Shipped {
                name: format!(
                    "overlay {}",
                    dir.file_name().expect("overlay name").to_string_lossy()
                ),
                main,
                fragments,
            }
        })
        .collect()
}

/// The policy the EKS user data writes at boot: the here-document of the script part of
/// node-config/eks-al2023-user-data.mime.
fn boot_policy() -> Shipped {
    let p = workspace_root().join("node-config/eks-al2023-user-data.mime");
    let mime = std::fs::read_to_string(&p).expect("user-data mime");
    let start = mime
        .find("<<'POLICY'\n")
        .expect("the user data writes the policy with a <<'POLICY' here-document")
        + "<<'POLICY'\n".len();
    let len = mime[start..]
        .find("\nPOLICY\n")
        .expect("end of the POLICY here-document");
    Shipped {
        name: "user-data boot policy".into(),
        main: mime[start..start + len].to_string() + "\n",
        fragments: Vec::new(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Observe,
    Enforce,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
        }
    }
}

/// The node's policy file for `shipped` in `mode`: the composed policy (main + fragments, as
/// install writes it), the switch set to `mode`, and this test node's own paths (kubelet root,
/// containerd root, state and socket, decision log, snapshot). `[cri] budget_ms` is the most a
/// policy may ask, as tests/cri_view.rs does for pods starting at once: on a loaded 2-core
/// machine a lookup may otherwise run out, and the spec alone would decide.
fn node_policy(node: &TestNode, shipped: &Shipped, mode: Mode, snapshot: &Path) -> String {
    let composed = compose(&shipped.main, &shipped.fragments);
    let mut t: toml::Table = composed.parse().unwrap_or_else(|e| {
        panic!(
            "{}: composed policy is not TOML: {e}\n{composed}",
            shipped.name
        )
    });
    t.insert("mode".into(), mode.as_str().into());
    let paths = t
        .entry("paths")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[paths] is a table");
    for (k, env) in [
        ("kubelet_root", "KUBELET_ROOT"),
        ("containerd_root", "CONTAINERD_ROOT"),
        ("containerd_state", "CONTAINERD_STATE"),
        ("containerd_socket", "CONTAINERD_SOCKET"),
    ] {
        paths.insert(k.into(), node.var(env).display().to_string().into());
    }
    let mut log = toml::Table::new();
    log.insert(
        "path".into(),
        node.var("PSS_GUARD_DECISION_LOG")
            .display()
            .to_string()
            .into(),
    );
    t.insert("log".into(), log.into());
    let mut snap = toml::Table::new();
    snap.insert("path".into(), snapshot.display().to_string().into());
    snap.insert("stale_after_seconds".into(), 3600.into());
    t.insert("snapshot".into(), snap.into());
    let cri = t
        .entry("cri")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[cri] is a table");
    cri.insert("budget_ms".into(), 2000.into());
    let text = toml::to_string(&t).expect("policy as TOML");
    // The hook falls back to its built-in policy on a file it cannot read: make sure it reads
    // this one.
    if let Err(e) = pss_guard::config::Policy::from_toml(&text) {
        panic!(
            "{} in {} mode does not load: {e}\n{text}",
            shipped.name,
            mode.as_str()
        );
    }
    text
}

/// install's and the agent's composition of the main policy and its fragments.
fn compose(main: &str, fragments: &[(String, String)]) -> String {
    pss_guard::config::compose(main, fragments)
        .unwrap_or_else(|e| panic!("composing the shipped policy: {e}"))
}

/// The namespaces of the cluster, as the agent's snapshot lists them: every add-on namespace
/// and `default`, labelled as their installers label them or all unlabelled.
fn cluster(cases: &[PodCase], installer_labelled: bool) -> Value {
    let mut ns = serde_json::Map::new();
    for c in cases {
        let labels = if installer_labelled {
            json!(c.installer_labels)
        } else {
            json!({})
        };
        ns.insert(c.namespace.clone(), labels);
    }
    Value::Object(ns)
}

/// One pod's run under one policy, mode and labelling, with its containers' records.
#[derive(Clone)]
struct Outcome {
    policy: String,
    mode: Mode,
    labelling: &'static str,
    case: String,
    run: PodRun,
    records: BTreeMap<String, Value>,
}

async fn run_one(opts: Options, socket: PathBuf, case: PodCase) -> PodRun {
    let mut k = Kubelet::connect(&socket, opts)
        .await
        .expect("connect to the node's containerd");
    let m: PodManifest = load(&case.yaml, Source::ApiServer).expect("pod parses");
    let r = k
        .run_pod(&m)
        .await
        .unwrap_or_else(|e| panic!("{}: kubelet-sim: {e}", case.file));
    if let Some(s) = r.sandbox_id.as_deref() {
        k.stop_pod(s).await.expect("stop pod");
    }
    r
}

/// Runs `cases` at once (at most `PARALLEL` at a time) and returns each pod with the records
/// its containers got in this run.
async fn run_batch(
    node: &TestNode,
    cases: &[PodCase],
) -> Vec<(PodCase, PodRun, BTreeMap<String, Value>)> {
    const PARALLEL: usize = 4;
    let before = node.decisions().len();
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().enumerate() {
        let (opts, socket, c, sem) = (pod_options(node), node.socket(), c.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            (i, run_one(opts, socket, c).await)
        });
    }
    let mut runs: Vec<(usize, PodRun)> = Vec::new();
    while let Some(r) = set.join_next().await {
        runs.push(r.expect("pod task"));
    }
    runs.sort_by_key(|(i, _)| *i);
    let new: Vec<Value> = node.decisions().split_off(before);
    runs.into_iter()
        .map(|(i, run)| {
            let case = cases[i].clone();
            let mut records = BTreeMap::new();
            for d in new.iter().filter(|d| {
                d["pod"] == case.name.as_str() && d["namespace"] == case.namespace.as_str()
            }) {
                let c = d["container"].as_str().unwrap_or_default().to_string();
                assert!(
                    records.insert(c.clone(), d.clone()).is_none(),
                    "{}: two records for container {c} in one run",
                    case.file
                );
            }
            (case, run, records)
        })
        .collect()
}

fn pod_options(node: &TestNode) -> Options {
    let mut o = node.options();
    o.host_path_root = Some(host_root(node));
    o
}

fn host_root(node: &TestNode) -> PathBuf {
    node.dir.join("host")
}

/// The test node's stand-in for the host's filesystem (kubelet_sim::Options::host_path_root):
/// a directory bound onto itself and made recursively shared in containerd's mount namespace,
/// as a node's `/` is (containerd refuses Bidirectional and HostToContainer mounts from a
/// source that is not shared), holding what an EKS node has where the add-ons' host paths of
/// type Directory or File must exist, and the files they mount without a type. Everything else
/// is made as a real node makes it: kubelet for DirectoryOrCreate and FileOrCreate, containerd
/// (a directory) for a missing untyped path.
fn prepare_host_root(node: &TestNode, cases: &[PodCase]) {
    let root = host_root(node);
    std::fs::create_dir_all(&root).expect("host root");
    let mut must: BTreeSet<(String, bool)> = BTreeSet::new();
    for c in cases {
        let m = load(&c.yaml, Source::ApiServer).expect("pod parses");
        for v in m
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
        {
            let Some(hp) = &v.host_path else { continue };
            match hp.type_.as_deref() {
                Some("Directory") => must.insert((hp.path.clone(), true)),
                Some("File" | "Socket" | "CharDevice" | "BlockDevice") => {
                    must.insert((hp.path.clone(), false))
                }
                _ => false,
            };
        }
    }
    for f in ["/etc/os-release", "/etc/passwd", "/var/log/dmesg"] {
        must.insert((f.to_string(), false));
    }
    for (p, dir) in &must {
        let on = kubelet_sim::volumes::host_path_on_node(Path::new(p), Some(&root));
        if on.starts_with(&root) {
            if *dir {
                std::fs::create_dir_all(&on).expect("stand-in host dir");
            } else {
                std::fs::create_dir_all(on.parent().expect("parent")).expect("stand-in parent");
                std::fs::write(&on, b"").expect("stand-in host file");
            }
        }
    }
    let script = format!(
        "mount --bind {0} {0} && mount --make-rshared {0}",
        shell_quote(&root.display().to_string())
    );
    let mut cmd = if node.env.get("STACK").is_some_and(|s| s != "bookworm") {
        let mut c = Command::new("nsenter");
        c.args(["-t", &node.env["CONTAINERD_PID"], "-m", "sh", "-c", &script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    let out = cmd.output().expect("run mount");
    assert!(
        out.status.success(),
        "making the stand-in host root shared: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn container<'a>(run: &'a PodRun, name: &str) -> &'a ContainerRun {
    run.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in {run:#?}"))
}

fn checks(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["check"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addons_under_every_shipped_policy_in_observe_and_enforce() {
    let started = Instant::now();
    let cases = pod_cases();
    let mut shipped = overlay_policies();
    shipped.push(boot_policy());
    for d in DEFAULT_POLICIES {
        assert!(shipped.iter().any(|s| s.name == *d), "no {d} to test");
    }

    let node = TestNode::up();
    prepare_host_root(&node, &cases);
    let snap_path = node.dir.join("cluster.json");
    let snap = Snapshot {
        path: snap_path.clone(),
    };

    // Distinct node policies: one run per distinct text; every shipped name it stands for.
    let mut policies: Vec<(String, Mode, Vec<String>)> = Vec::new();
    for s in &shipped {
        for mode in [Mode::Enforce, Mode::Observe] {
            let text = node_policy(&node, s, mode, &snap_path);
            match policies
                .iter_mut()
                .find(|(t, m, _)| *t == text && *m == mode)
            {
                Some((_, _, names)) => names.push(s.name.clone()),
                None => policies.push((text, mode, vec![s.name.clone()])),
            }
        }
    }

    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut runs = 0usize;
    for (text, mode, names) in &policies {
        std::fs::write(node.var("PSS_GUARD_POLICY"), text).expect("write policy");
        for (labelling, installer) in [("installer labels", true), ("unlabelled", false)] {
            // A pod whose namespace its installer does not label runs once: both labellings
            // are the same cluster for it.
            let batch: Vec<PodCase> = cases
                .iter()
                .filter(|c| installer || !c.installer_labels.is_empty())
                .cloned()
                .collect();
            snap.write(0, cluster(&cases, installer));
            runs += batch.len();
            for (case, run, records) in run_batch(&node, &batch).await {
                for name in names {
                    outcomes.push(Outcome {
                        policy: name.clone(),
                        mode: *mode,
                        labelling: if case.installer_labels.is_empty() {
                            "any"
                        } else {
                            labelling
                        },
                        case: case.file.clone(),
                        run: run.clone(),
                        records: records.clone(),
                    });
                }
            }
        }
    }

    let mut failures: Vec<String> = Vec::new();
    let by_file: BTreeMap<&str, &PodCase> = cases.iter().map(|c| (c.file.as_str(), c)).collect();
    for o in &outcomes {
        let case = by_file[o.case.as_str()];
        let what = format!(
            "{} [{} mode, {}] {}",
            o.policy,
            o.mode.as_str(),
            o.labelling,
            o.case
        );
        if o.run.kubelet_error.is_some() || o.run.sandbox_error.is_some() {
            failures.push(format!(
                "{what}: pod did not reach its containers: {:?}",
                o.run.errors()
            ));
            continue;
        }
        // kubelet stops at a failed init container; otherwise every container was tried.
        let stopped_at_init = o
            .run
            .containers
            .last()
            .is_some_and(|c| c.kind == kubelet_sim::ContainerKind::Init && !c.started);
        if o.run.containers.len() != case.containers && !stopped_at_init {
            failures.push(format!(
                "{what}: {} of {} containers tried: {:?}",
                o.run.containers.len(),
                case.containers,
                o.run.errors()
            ));
        }
        for c in &o.run.containers {
            let Some(rec) = o.records.get(&c.name) else {
                failures.push(format!(
                    "{what}/{}: no decision-log record ({:?})",
                    c.name, c.error
                ));
                continue;
            };
            let decision = rec["decision"].as_str().unwrap_or("?");
            // The record and what the runtime did agree: refused/error <=> not started.
            let refused = matches!(decision, "refused" | "error");
            if c.started == refused {
                failures.push(format!(
                    "{what}/{}: decision {decision} but started={} ({:?})",
                    c.name, c.started, c.error
                ));
            }
            if o.mode == Mode::Observe && refused {
                failures.push(format!(
                    "{what}/{}: {decision} in observe mode: {rec}",
                    c.name
                ));
            }
            if o.mode == Mode::Enforce && decision == "would_refuse" {
                failures.push(format!("{what}/{}: would_refuse in enforce mode", c.name));
            }
            let is_default = DEFAULT_POLICIES.contains(&o.policy.as_str());
            let kube_system = case.namespace == "kube-system";
            let seed = o.case == SEED;
            if (is_default || kube_system)
                && !seed
                && matches!(decision, "refused" | "error" | "would_refuse")
            {
                failures.push(format!(
                    "{what}/{}: {decision} ({:?}, violations {:?})",
                    c.name,
                    rec["policy"],
                    checks(&rec["violations"])
                ));
            }
            if seed && is_default {
                let want = match o.mode {
                    Mode::Enforce => "refused",
                    Mode::Observe => "would_refuse",
                };
                if decision != want
                    || !checks(&rec["violations"]).contains(&"privileged".to_string())
                {
                    failures.push(format!(
                        "{what}/{}: {decision}, expected {want} for privileged: {rec}",
                        c.name
                    ));
                }
                if o.mode == Mode::Enforce
                    && !container(&o.run, &c.name)
                        .error
                        .as_deref()
                        .unwrap_or("")
                        .contains("pss-guard: ")
                {
                    failures.push(format!("{what}: not refused by pss-guard: {:?}", c.error));
                }
            }
        }
    }

    // Each container's baseline violations, whatever the policy decided about them.
    let mut seen_at_baseline: BTreeSet<String> = BTreeSet::new();
    for o in &outcomes {
        for (c, r) in &o.records {
            if !r["policy"]
                .as_str()
                .is_some_and(|p| p.starts_with("baseline:"))
            {
                continue;
            }
            let key = format!("{}/{c}", o.case);
            let mut got = checks(&r["violations"]);
            got.sort();
            match BASELINE.iter().find(|(k, _)| *k == key) {
                Some((_, want)) if got == *want => {
                    seen_at_baseline.insert(key);
                }
                Some((_, want)) => failures.push(format!(
                    "{} [{} mode, {}] {key}: baseline violations {got:?}, expected {want:?}",
                    o.policy,
                    o.mode.as_str(),
                    o.labelling
                )),
                None => failures.push(format!("{key}: not in BASELINE")),
            }
        }
    }
    for (k, _) in BASELINE {
        if !seen_at_baseline.contains(*k) {
            failures.push(format!("{k}: never judged at baseline"));
        }
    }

    // Observe previews enforce exactly: the same pods under the same policy and labelling.
    let mut pairs = 0usize;
    for e in outcomes.iter().filter(|o| o.mode == Mode::Enforce) {
        let Some(ob) = outcomes.iter().find(|o| {
            o.mode == Mode::Observe
                && o.policy == e.policy
                && o.labelling == e.labelling
                && o.case == e.case
        }) else {
            failures.push(format!(
                "{} {} {}: no observe run",
                e.policy, e.labelling, e.case
            ));
            continue;
        };
        for (c, er) in &e.records {
            let Some(or) = ob.records.get(c) else {
                failures.push(format!(
                    "{} {} {}/{c}: no observe record",
                    e.policy, e.labelling, e.case
                ));
                continue;
            };
            pairs += 1;
            if let Some(diff) = preview_differs(er, or) {
                failures.push(format!(
                    "{} [{}] {}/{c}: observe does not preview enforce: {diff}",
                    e.policy, e.labelling, e.case
                ));
            }
        }
    }

    write_verdicts(&node, &outcomes);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "addons: {} pods, {} shipped policies as {} distinct node policies, {runs} pod runs, {pairs} observe/enforce pairs, {secs:.1} s",
        cases.len(),
        shipped.len(),
        policies.len()
    );
    assert!(pairs > 0, "no observe/enforce pair compared");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every verdict of the run, one line per container, in `target/addons/<stack>.txt` (for
/// reading; nothing compares it).
fn write_verdicts(node: &TestNode, outcomes: &[Outcome]) {
    let mut lines: Vec<String> = Vec::new();
    for o in outcomes {
        for (c, r) in &o.records {
            lines.push(format!(
                "{} | {} | {} | {}/{c} | {} {} {:?} | {}",
                o.policy,
                o.mode.as_str(),
                o.labelling,
                o.case,
                r["decision"].as_str().unwrap_or("?"),
                r["policy"].as_str().unwrap_or("?"),
                checks(&r["violations"]),
                r["cri_view"].as_str().unwrap_or("")
            ));
        }
    }
    lines.sort();
    lines.dedup();
    let dir = workspace_root().join("target/addons");
    let stack = node.env.get("STACK").cloned().unwrap_or_default();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{stack}.txt")), lines.join("\n") + "\n");
    }
}

/// Issue 17 item 1: `None` when the observe record `o` says what the enforce record `e` decided
/// (would_refuse for refused or error, else the same decision) with the same enforced policy and
/// violations.
fn preview_differs(e: &Value, o: &Value) -> Option<String> {
    let ed = e["decision"].as_str().unwrap_or("?");
    let want = match ed {
        "refused" | "error" => "would_refuse",
        other => other,
    };
    if o["decision"] != want {
        return Some(format!("enforce {ed}, observe {}", o["decision"]));
    }
    for key in ["violations", "policy", "policy_from", "audit_violations"] {
        if e[key] != o[key] {
            return Some(format!("{key}: enforce {} observe {}", e[key], o[key]));
        }
    }
    None
}
