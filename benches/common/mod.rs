//! A containerd node laid out in a temp dir for the benchmarks: a pod sandbox and an app container
//! bundle whose `config.json` has the shape and size containerd's CRI plugin writes (EKS-style
//! base spec without seccomp, Kubernetes service-link environment, 15 mounts, CRI annotations),
//! the kubelet and containerd directories its bind mounts name, a policy file and a log.
//!
//! The app container joins the sandbox's network, IPC and UTS namespaces by `/proc/<pid>/ns/*`
//! path, as containerd writes them; `<pid>` is a real process in private namespaces (the
//! "sandbox"), so the hook's inode comparison sees what it sees on a node.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub const NAMESPACE: &str = "shop";
pub const POD: &str = "checkout-7d9f8b6c5-x2x9k";
pub const POD_UID: &str = "5b0d6a7e-3c1f-4c2a-9e8b-0f6a2d1c4b7e";
pub const CONTAINER: &str = "checkout";
pub const IMAGE: &str = "registry.example.com/shop/checkout:2.14.3";

/// A 64-hex-digit ID, as containerd names containers and sandboxes.
pub fn hex_id(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect()
}

/// A process sitting in its own network, IPC and UTS namespaces: the pod's pause process.
pub struct Sandbox {
    child: Child,
}

impl Sandbox {
    pub fn start() -> Sandbox {
        // Root can unshare directly; elsewhere a user namespace makes it possible.
        for flags in [&["-n", "-i", "-u"][..], &["-r", "-n", "-i", "-u"][..]] {
            let child = Command::new("unshare")
                .args(flags)
                .args(["sleep", "3600"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(mut child) = child else { continue };
            // Give unshare time to switch namespaces and exec sleep (or to fail).
            for _ in 0..100 {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ours = std::fs::read_link("/proc/self/ns/net").ok();
                let its = std::fs::read_link(format!("/proc/{}/ns/net", child.id())).ok();
                let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).ok();
                if its.is_some()
                    && its != ours
                    && exe.is_some_and(|e| e.to_string_lossy().contains("sleep"))
                {
                    return Sandbox { child };
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("cannot start a process in private namespaces: unshare(1) failed (run as root)");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where one pod's files live on the simulated node.
pub struct Layout {
    pub root: PathBuf,
    pub sandbox_id: String,
    pub container_id: String,
    pub pod_uid: String,
}

impl Layout {
    pub fn new(root: &Path, seed: u64) -> Layout {
        Layout {
            root: root.to_owned(),
            sandbox_id: hex_id(seed * 2 + 1),
            container_id: hex_id(seed * 2 + 2),
            pod_uid: if seed == 0 {
                POD_UID.to_owned()
            } else {
                format!("5b0d6a7e-3c1f-4c2a-9e8b-{seed:012x}")
            },
        }
    }
    pub fn kubelet(&self) -> PathBuf {
        self.root.join("var/lib/kubelet")
    }
    pub fn containerd_root(&self) -> PathBuf {
        self.root.join("var/lib/containerd")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.root.join("run/containerd")
    }
    pub fn tasks(&self) -> PathBuf {
        self.containerd_state()
            .join("io.containerd.runtime.v2.task/k8s.io")
    }
    pub fn bundle(&self) -> PathBuf {
        self.tasks().join(&self.container_id)
    }
    pub fn sandbox_bundle(&self) -> PathBuf {
        self.tasks().join(&self.sandbox_id)
    }
    pub fn pod_dir(&self) -> PathBuf {
        self.kubelet().join("pods").join(&self.pod_uid)
    }
    fn cri_root(&self) -> PathBuf {
        self.containerd_root().join("io.containerd.grpc.v1.cri")
    }
    fn cri_state(&self) -> PathBuf {
        self.containerd_state().join("io.containerd.grpc.v1.cri")
    }

    /// The app container's bind mounts as (host source, container destination, read-only).
    fn binds(&self) -> Vec<(PathBuf, &'static str, bool)> {
        let pod = self.pod_dir();
        let vols = pod.join("volumes");
        let sb = self.cri_root().join("sandboxes").join(&self.sandbox_id);
        vec![
            (pod.join("etc-hosts"), "/etc/hosts", false),
            (
                pod.join("containers").join(CONTAINER).join("7c3e91a2"),
                "/dev/termination-log",
                false,
            ),
            (sb.join("hostname"), "/etc/hostname", false),
            (sb.join("resolv.conf"), "/etc/resolv.conf", false),
            (
                self.cri_state()
                    .join("sandboxes")
                    .join(&self.sandbox_id)
                    .join("shm"),
                "/dev/shm",
                false,
            ),
            (
                vols.join("kubernetes.io~projected/kube-api-access-8xk2p"),
                "/var/run/secrets/kubernetes.io/serviceaccount",
                true,
            ),
            (
                vols.join("kubernetes.io~configmap/app-config"),
                "/etc/checkout",
                true,
            ),
            (
                vols.join("kubernetes.io~secret/tls"),
                "/etc/checkout/tls",
                true,
            ),
            (
                vols.join("kubernetes.io~empty-dir/cache"),
                "/var/cache/checkout",
                false,
            ),
        ]
    }

    /// Creates the directories and files the mounts name, as kubelet and containerd would.
    pub fn create_dirs(&self) {
        for (src, _, _) in self.binds() {
            let file = ["etc-hosts", "7c3e91a2", "hostname", "resolv.conf"]
                .iter()
                .any(|f| src.ends_with(f));
            if file {
                std::fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
                std::fs::write(&src, "").expect("write");
            } else {
                std::fs::create_dir_all(&src).expect("mkdir");
            }
        }
        std::fs::create_dir_all(self.cri_root().join("sandboxes").join(&self.sandbox_id))
            .expect("mkdir");
    }

    /// The app container's spec, as containerd's CRI plugin writes it from an EKS-style base
    /// runtime spec (no seccomp, no AppArmor): compliant with baseline.
    pub fn app_spec(&self, sandbox_pid: u32) -> Value {
        // containerd's default set, as the base runtime spec of an EKS node has it.
        let caps = pss_guard::facts::CONTAINERD_DEFAULT_CAPS;
        let mut mounts = vec![
            json!({"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]}),
            json!({"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}),
            json!({"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]}),
            json!({"destination":"/dev/mqueue","type":"mqueue","source":"mqueue","options":["nosuid","noexec","nodev"]}),
            json!({"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}),
            json!({"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["nosuid","noexec","nodev","relatime","ro"]}),
        ];
        for (src, dst, ro) in self.binds() {
            mounts.push(json!({
                "destination": dst, "type": "bind", "source": src,
                "options": ["rbind", "rprivate", if ro { "ro" } else { "rw" }]
            }));
        }
        json!({
            "ociVersion": "1.1.0",
            "process": {
                "user": {"uid": 1000, "gid": 3000, "additionalGids": [3000, 2000]},
                "args": ["/usr/local/bin/checkout", "--config", "/etc/checkout/config.yaml",
                         "--listen", ":8080", "--metrics", ":9090"],
                "env": service_env(48),
                "cwd": "/app",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 65536}],
                "noNewPrivileges": false,
                "oomScoreAdj": 969
            },
            "root": {"path": "rootfs"},
            "mounts": mounts,
            "annotations": annotations(self, false),
            "linux": {
                "resources": {
                    "devices": [{"allow": false, "access": "rwm"}],
                    "memory": {"limit": 536870912, "swap": 536870912},
                    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                    "unified": {"memory.oom.group": "1", "memory.swap.max": "0"}
                },
                "cgroupsPath": format!("kubepods-burstable-pod{}.slice:cri-containerd:{}",
                    self.pod_uid.replace('-', "_"), self.container_id),
                "namespaces": [
                    {"type": "pid"},
                    {"type": "ipc", "path": format!("/proc/{sandbox_pid}/ns/ipc")},
                    {"type": "uts", "path": format!("/proc/{sandbox_pid}/ns/uts")},
                    {"type": "mount"},
                    {"type": "network", "path": format!("/proc/{sandbox_pid}/ns/net")}
                ],
                "maskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        })
    }

    /// The pause container's spec: where the pod's sysctls and host namespaces show.
    pub fn sandbox_spec(&self) -> Value {
        // containerd's default set, as the base runtime spec of an EKS node has it.
        let caps = pss_guard::facts::CONTAINERD_DEFAULT_CAPS;
        json!({
            "ociVersion": "1.1.0",
            "process": {
                "user": {"uid": 65535, "gid": 65535},
                "args": ["/pause"],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "noNewPrivileges": true,
                "oomScoreAdj": -998
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": POD,
            "mounts": [
                {"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]},
                {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},
                {"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]},
                {"destination":"/dev/mqueue","type":"mqueue","source":"mqueue","options":["nosuid","noexec","nodev"]},
                {"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]},
                {"destination":"/dev/shm","type":"bind","source":
                    self.cri_state().join("sandboxes").join(&self.sandbox_id).join("shm"),
                    "options":["rbind","ro","nosuid","nodev","noexec"]}
            ],
            "annotations": annotations(self, true),
            "linux": {
                "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0",
                           "net.ipv4.ping_group_range": "0 2147483647"},
                "resources": {"devices": [{"allow": false, "access": "rwm"}], "cpu": {"shares": 2}},
                "cgroupsPath": format!("kubepods-burstable-pod{}.slice:cri-containerd:{}",
                    self.pod_uid.replace('-', "_"), self.sandbox_id),
                "namespaces": [
                    {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                    {"type": "network", "path": "/var/run/netns/cni-3f1e2d4c-5b6a-7980-a1b2-c3d4e5f60718"}
                ],
                "maskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        })
    }

    /// Writes both bundles' `config.json` (compact, as containerd marshals them).
    pub fn write_bundles(&self, sandbox_pid: u32) -> (Vec<u8>, Vec<u8>) {
        let app = serde_json::to_vec(&self.app_spec(sandbox_pid)).expect("json");
        let sb = serde_json::to_vec(&self.sandbox_spec()).expect("json");
        std::fs::create_dir_all(self.bundle()).expect("mkdir bundle");
        std::fs::create_dir_all(self.sandbox_bundle()).expect("mkdir sandbox bundle");
        std::fs::write(self.bundle().join("config.json"), &app).expect("write");
        std::fs::write(self.sandbox_bundle().join("config.json"), &sb).expect("write");
        (app, sb)
    }

    /// The state runc hands a createRuntime hook: the spec's annotations included.
    pub fn state(&self, pid: u32) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "ociVersion": "1.2.0",
            "id": self.container_id,
            "status": "creating",
            "pid": pid,
            "bundle": self.bundle(),
            "annotations": annotations(self, false)
        }))
        .expect("json")
    }

    /// A policy file: baseline enforced, restricted audited, this node's directories, the log
    /// under the temp dir.
    pub fn policy(&self) -> String {
        format!(
            "enforce = \"baseline:latest\"\naudit = \"restricted:latest\"\n\
             [exempt]\nnamespaces = [\"monitoring\"]\n\
             [paths]\nkubelet_root = {:?}\ncontainerd_root = {:?}\ncontainerd_state = {:?}\n\
             [log]\npath = {:?}\nnode_name = \"bench-node\"\n",
            self.kubelet(),
            self.containerd_root(),
            self.containerd_state(),
            self.root.join("log/decisions.log"),
        )
    }
}

fn annotations(l: &Layout, sandbox: bool) -> Value {
    let mut a = json!({
        "io.kubernetes.cri.sandbox-id": l.sandbox_id,
        "io.kubernetes.cri.sandbox-name": POD,
        "io.kubernetes.cri.sandbox-namespace": NAMESPACE,
        "io.kubernetes.cri.sandbox-uid": l.pod_uid,
    });
    let m = a.as_object_mut().expect("object");
    if sandbox {
        m.insert("io.kubernetes.cri.container-type".into(), json!("sandbox"));
        m.insert(
            "io.kubernetes.cri.sandbox-log-directory".into(),
            json!(format!("/var/log/pods/{NAMESPACE}_{POD}_{}", l.pod_uid)),
        );
        m.insert(
            "io.kubernetes.cri.podsandbox.image-name".into(),
            json!("registry.k8s.io/pause:3.10"),
        );
        m.insert(
            "io.kubernetes.cri.sandbox-cpu-period".into(),
            json!("100000"),
        );
        m.insert("io.kubernetes.cri.sandbox-cpu-quota".into(), json!("50000"));
        m.insert("io.kubernetes.cri.sandbox-cpu-shares".into(), json!("512"));
        m.insert(
            "io.kubernetes.cri.sandbox-memory".into(),
            json!("536870912"),
        );
    } else {
        m.insert(
            "io.kubernetes.cri.container-type".into(),
            json!("container"),
        );
        m.insert("io.kubernetes.cri.container-name".into(), json!(CONTAINER));
        m.insert("io.kubernetes.cri.image-name".into(), json!(IMAGE));
    }
    a
}

/// The environment kubelet gives a container in a namespace with `n` services (service links
/// are on by default): eight variables per service (one named port), plus the container's own.
fn service_env(n: usize) -> Vec<String> {
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        format!("HOSTNAME={POD}"),
        "LANG=C.UTF-8".to_owned(),
        "CHECKOUT_LOG_LEVEL=info".to_owned(),
        "CHECKOUT_DB_HOST=postgres.shop.svc.cluster.local".to_owned(),
        "GOMAXPROCS=1".to_owned(),
        "KUBERNETES_SERVICE_HOST=10.100.0.1".to_owned(),
        "KUBERNETES_SERVICE_PORT=443".to_owned(),
        "KUBERNETES_SERVICE_PORT_HTTPS=443".to_owned(),
        "KUBERNETES_PORT=tcp://10.100.0.1:443".to_owned(),
        "KUBERNETES_PORT_443_TCP=tcp://10.100.0.1:443".to_owned(),
        "KUBERNETES_PORT_443_TCP_PROTO=tcp".to_owned(),
        "KUBERNETES_PORT_443_TCP_PORT=443".to_owned(),
        "KUBERNETES_PORT_443_TCP_ADDR=10.100.0.1".to_owned(),
    ];
    for i in 0..n {
        let name = format!("SHOP_SERVICE_{i:02}_BACKEND");
        let ip = format!("10.100.{}.{}", 10 + i / 200, 20 + i % 200);
        let port = 8000 + i;
        env.extend([
            format!("{name}_SERVICE_HOST={ip}"),
            format!("{name}_SERVICE_PORT={port}"),
            format!("{name}_SERVICE_PORT_HTTP={port}"),
            format!("{name}_PORT=tcp://{ip}:{port}"),
            format!("{name}_PORT_{port}_TCP=tcp://{ip}:{port}"),
            format!("{name}_PORT_{port}_TCP_PROTO=tcp"),
            format!("{name}_PORT_{port}_TCP_PORT={port}"),
            format!("{name}_PORT_{port}_TCP_ADDR={ip}"),
        ]);
    }
    env
}

/// A whole simulated node with one pod: directories, bundles, policy file.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub layout: Layout,
    pub sandbox: Sandbox,
    pub app_json: Vec<u8>,
    pub sandbox_json: Vec<u8>,
}

impl Node {
    pub fn new() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path(), 0);
        let sandbox = Sandbox::start();
        layout.create_dirs();
        let (app_json, sandbox_json) = layout.write_bundles(sandbox.pid());
        std::fs::write(dir.path().join("policy.toml"), layout.policy()).expect("policy");
        Node {
            dir,
            layout,
            sandbox,
            app_json,
            sandbox_json,
        }
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }
}
