//! Property tests over the library's evaluation (issue 6), with proptest:
//!
//! - adding any privilege to a spec never turns a refusal into an allowed container;
//! - the exemption decision depends only on runtime-set metadata: annotations a pod author
//!   controls (containerd passthrough with `pod_annotations = ["*"]`, CRI-O's copies of pod
//!   annotations, anything in a plain runc/podman spec) never earn an exemption.
//!
//! Specs are built as JSON, written to a bundle, loaded with `spec::load` and decided with
//! `hook::decide`, the same calls the hook makes. The bundle has no sandbox beside it: sandbox
//! lookups fail the same way everywhere (only exemption matters for containers that need one).

use std::time::Instant;

use proptest::prelude::*;
use pss_guard::config::Policy;
use pss_guard::hook::{self, Options};
use pss_guard::report::{Decision, Kind};
use pss_guard::spec::{self, Runtime, RuntimeArg, Target};
use serde_json::{Value, json};

fn decide(spec: &Value, runtime: Runtime, policy: &Policy) -> Decision {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("c1");
    std::fs::create_dir(&bundle).expect("mkdir");
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(spec).expect("json"),
    )
    .expect("write spec");
    let target = Target {
        id: "c1".into(),
        bundle,
        spec_file: None,
        sandbox_file: None,
        runtime: RuntimeArg::Named(runtime),
    };
    let loaded = spec::load(&target, &policy.paths);
    hook::decide(policy, &Options::default(), loaded, None, Instant::now())
}

// ---- privileges ---------------------------------------------------------------------------

/// A container that passes restricted:latest: non-root, no new privileges, seccomp, every
/// capability dropped, private namespaces, masked /proc, read-only /sys.
fn hardened() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 1000, "gid": 1000},
            "args": ["/app"],
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []},
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys", "/proc/bus"],
            "resources": {"devices": [{"allow": false, "access": "rwm"}]}
        }
    })
}

const CAP_SETS: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];
const HOST_SOURCES: [&str; 5] = [
    "/",
    "/etc",
    "/run/containerd/containerd.sock",
    "/var/lib/kubelet/pods/another-pod-uid/volumes/kubernetes.io~secret/token",
    "/var/lib/kubelet/pods/../../../etc",
];
const FORBIDDEN_SYSCTLS: [&str; 4] = [
    "kernel.msgmax",
    "net.core.somaxconn",
    "vm.overcommit_memory",
    "kernel.shm_rmid_forced.x",
];

/// One step that gives a container more than it had.
#[derive(Clone, Debug)]
enum Privilege {
    Capability { set: usize, cap: usize },
    UnmaskProc,
    HostNamespace(&'static str),
    HostBind(usize),
    Sysctl(usize),
    NoSeccomp,
    AllowEscalation,
    Root,
    WritableSys,
    AllDevices,
    UnconfinedAppArmor,
    SeLinuxSpcT,
}

fn privilege() -> impl Strategy<Value = Privilege> {
    let n_caps = caps::all().len();
    prop_oneof![
        (0..CAP_SETS.len(), 0..n_caps).prop_map(|(set, cap)| Privilege::Capability { set, cap }),
        Just(Privilege::UnmaskProc),
        prop::sample::select(vec!["network", "pid", "ipc"]).prop_map(Privilege::HostNamespace),
        (0..HOST_SOURCES.len()).prop_map(Privilege::HostBind),
        (0..FORBIDDEN_SYSCTLS.len()).prop_map(Privilege::Sysctl),
        Just(Privilege::NoSeccomp),
        Just(Privilege::AllowEscalation),
        Just(Privilege::Root),
        Just(Privilege::WritableSys),
        Just(Privilege::AllDevices),
        Just(Privilege::UnconfinedAppArmor),
        Just(Privilege::SeLinuxSpcT),
    ]
}

fn grant(spec: &mut Value, p: &Privilege) {
    let linux = &mut spec["linux"];
    match p {
        Privilege::Capability { set, cap } => {
            let mut all: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
            all.sort();
            let list = &mut spec["process"]["capabilities"][CAP_SETS[*set]];
            if list.is_null() {
                *list = json!([]);
            }
            let list = list.as_array_mut().expect("cap list");
            let name = json!(all[*cap]);
            if !list.contains(&name) {
                list.push(name);
            }
        }
        Privilege::UnmaskProc => {
            let l = linux.as_object_mut().expect("linux");
            l.remove("maskedPaths");
            l.remove("readonlyPaths");
        }
        Privilege::HostNamespace(kind) => {
            linux["namespaces"]
                .as_array_mut()
                .expect("namespaces")
                .retain(|n| n["type"] != *kind);
        }
        Privilege::HostBind(i) => {
            spec["mounts"].as_array_mut().expect("mounts").push(json!({
                "destination": format!("/host{i}"),
                "type": "bind",
                "source": HOST_SOURCES[*i],
                "options": ["rbind", "rprivate", "rw"]
            }));
        }
        Privilege::Sysctl(i) => {
            if linux["sysctl"].is_null() {
                linux["sysctl"] = json!({});
            }
            linux["sysctl"][FORBIDDEN_SYSCTLS[*i]] = json!("1");
        }
        Privilege::NoSeccomp => {
            linux.as_object_mut().expect("linux").remove("seccomp");
        }
        Privilege::AllowEscalation => spec["process"]["noNewPrivileges"] = json!(false),
        Privilege::Root => spec["process"]["user"]["uid"] = json!(0),
        Privilege::WritableSys => {
            for m in spec["mounts"].as_array_mut().expect("mounts") {
                if m["destination"] == "/sys" {
                    m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
                }
            }
        }
        Privilege::AllDevices => {
            linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        }
        Privilege::UnconfinedAppArmor => spec["process"]["apparmorProfile"] = json!("unconfined"),
        Privilege::SeLinuxSpcT => {
            spec["process"]["selinuxLabel"] = json!("system_u:system_r:spc_t:s0");
        }
    }
}

fn enforce_policy() -> impl Strategy<Value = Policy> {
    let version = prop_oneof![
        Just("latest".to_owned()),
        (0u32..=40).prop_map(|n| format!("v1.{n}"))
    ];
    (
        prop::sample::select(vec!["baseline", "restricted"]),
        version,
    )
        .prop_map(|(level, version)| {
            Policy::from_toml(&format!("enforce = \"{level}:{version}\"\n")).expect("policy")
        })
}

fn refused(kind: Kind) -> bool {
    matches!(kind, Kind::Refused | Kind::Error)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn adding_a_privilege_never_turns_refused_into_allowed(
        policy in enforce_policy(),
        before in prop::collection::vec(privilege(), 0..4),
        extra in privilege(),
    ) {
        let mut spec = hardened();
        for p in &before {
            grant(&mut spec, p);
        }
        let d1 = decide(&spec, Runtime::None, &policy);
        grant(&mut spec, &extra);
        let d2 = decide(&spec, Runtime::None, &policy);
        prop_assert!(
            !refused(d1.kind()) || refused(d2.kind()),
            "{:?} then {:?} under {}: {:?} became {:?} ({:?})",
            before, extra, policy.enforce, d1.kind(), d2.kind(), d2.error()
        );
        // Nothing the generator grants is unreadable: these are verdicts, not errors.
        prop_assert!(d2.error().is_none(), "{:?}", d2.error());
    }
}

#[test]
fn hardened_spec_passes_restricted_and_each_privilege_is_seen_by_some_level() {
    // The property above is only meaningful if the start is allowed and privileges register.
    let restricted = Policy::from_toml("enforce = \"restricted:latest\"\n").unwrap();
    assert_eq!(
        decide(&hardened(), Runtime::None, &restricted).kind(),
        Kind::Allowed
    );
    let mut each = vec![
        Privilege::UnmaskProc,
        Privilege::HostNamespace("network"),
        Privilege::HostNamespace("pid"),
        Privilege::HostNamespace("ipc"),
        Privilege::NoSeccomp,
        Privilege::AllowEscalation,
        Privilege::Root,
        Privilege::UnconfinedAppArmor,
        Privilege::SeLinuxSpcT,
    ];
    each.extend((0..HOST_SOURCES.len()).map(Privilege::HostBind));
    each.extend((0..FORBIDDEN_SYSCTLS.len()).map(Privilege::Sysctl));
    each.push(Privilege::Capability { set: 0, cap: 0 });
    for p in each {
        let mut spec = hardened();
        grant(&mut spec, &p);
        let d = decide(&spec, Runtime::None, &restricted);
        assert_eq!(d.kind(), Kind::Refused, "{p:?}: {:?}", d.error());
    }
}
