//! Pod and container specs to CRI configs, the way kubelet's kuberuntime manager builds
//! them. Pure functions: file-system work (volumes, subPath binds) happens in the runner.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

use crate::runner::{Options, UserNamespaces};

/// securitycontext `defaultMaskedPaths` (kubelet ≥1.31 list).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// securitycontext `defaultReadonlyPaths`.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// kubelet's `SafeSysctlAllowlist` (pkg/kubelet/sysctl): the sysctls a pod may set without
/// `--allowed-unsafe-sysctls`. Same list as PSA baseline's.
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Identity of a pod as kubelet passes it to the runtime.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub hostname: String,
    /// `/var/log/pods/<ns>_<name>_<uid>` equivalent.
    pub log_dir: String,
}

/// The user an image runs as, from ImageStatus (`getImageUser`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

/// Size of a pod's user namespace (kubelet's userns manager `userNsLength`).
pub const USERNS_LENGTH: u32 = 65536;

/// kuberuntime `runtimeUserNamespace` for a `hostUsers: false` pod on a runtime with user
/// namespaces: mode POD, container ids 0-65535 mapped onto one block of 65536 host ids. kubelet
/// hands out the first free block above its own range; this stand-in derives the block from
/// the pod UID (stable for the pod's sandbox and all its containers), never block 0 (the
/// host's own ids).
pub fn user_namespace(spec: &PodSpec, pod_uid: &str, opts: &Options) -> Option<cri::UserNamespace> {
    if spec.host_users != Some(false) || opts.user_namespaces != UserNamespaces::Pod {
        return None;
    }
    // FNV-1a over the UID: any stable spread will do.
    let hash = pod_uid.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let host_id = USERNS_LENGTH * (1 + hash % 1024);
    let map = vec![cri::IdMapping {
        host_id,
        container_id: 0,
        length: USERNS_LENGTH,
    }];
    Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: map.clone(),
        gids: map,
    })
}

/// kuberuntime `namespacesForPod`.
pub fn namespace_options(
    spec: &PodSpec,
    userns: Option<cri::UserNamespace>,
) -> cri::NamespaceOption {
    let mode = |host: Option<bool>| {
        if host == Some(true) {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        }
    };
    let pid = if spec.host_pid == Some(true) {
        cri::NamespaceMode::Node
    } else if spec.share_process_namespace == Some(true) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: mode(spec.host_network) as i32,
        pid: pid as i32,
        ipc: mode(spec.host_ipc) as i32,
        userns_options: userns,
        ..Default::default()
    }
}

/// `HasPrivilegedContainer`: any init, app or ephemeral container with privileged=true.
pub fn has_privileged_container(spec: &PodSpec) -> bool {
    let privileged =
        |sc: &Option<SecurityContext>| sc.as_ref().and_then(|s| s.privileged) == Some(true);
    spec.containers
        .iter()
        .any(|c| privileged(&c.security_context))
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| privileged(&c.security_context))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(&c.security_context))
}

/// kuberuntime `getSeccompProfile`: container field, else pod field, else RuntimeDefault
/// with `seccompDefault`, else Unconfined. Localhost paths are under `<root>/seccomp`.
pub fn seccomp_profile(
    kubelet_root: &Path,
    pod: Option<&SeccompProfile>,
    container: Option<&SeccompProfile>,
    seccomp_default: bool,
) -> cri::SecurityProfile {
    use cri::security_profile::ProfileType;
    let chosen = container.or(pod);
    let (profile_type, localhost_ref) = match chosen.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => (ProfileType::RuntimeDefault, String::new()),
        Some("Localhost") => {
            let name = chosen
                .and_then(|p| p.localhost_profile.clone())
                .unwrap_or_default();
            (
                ProfileType::Localhost,
                kubelet_root
                    .join("seccomp")
                    .join(name)
                    .display()
                    .to_string(),
            )
        }
        Some(_) => (ProfileType::Unconfined, String::new()),
        None if seccomp_default => (ProfileType::RuntimeDefault, String::new()),
        None => (ProfileType::Unconfined, String::new()),
    };
    cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    }
}

/// Pod annotation prefix kubelet still reads for a container's AppArmor profile (apparmor
/// `getProfileFromPodAnnotations`; the key ends with the container's name).
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// apparmor `getProfileFromPodAnnotations`: `runtime/default`, `unconfined`, `localhost/<name>`
/// (an empty name included: kubelet's admission refuses that later); anything else is no
/// profile.
fn apparmor_from_annotation(value: &str) -> Option<AppArmorProfile> {
    let profile = |type_: &str, localhost_profile: Option<String>| AppArmorProfile {
        type_: type_.to_string(),
        localhost_profile,
    };
    match value {
        "runtime/default" => Some(profile("RuntimeDefault", None)),
        "unconfined" => Some(profile("Unconfined", None)),
        _ => value
            .strip_prefix("localhost/")
            .map(|name| profile("Localhost", Some(name.to_string()))),
    }
}

/// apparmor `GetProfile`: the container's own `securityContext.appArmorProfile`, else the pod
/// annotation `container.apparmor.security.beta.kubernetes.io/<container name>` (static pods
/// never had it synced into the field by the API server), else the pod's
/// `securityContext.appArmorProfile`; `None` when none is set.
pub fn apparmor_request(
    pod_annotations: &BTreeMap<String, String>,
    pod: Option<&PodSecurityContext>,
    container_name: &str,
    container: Option<&SecurityContext>,
) -> Option<AppArmorProfile> {
    if let Some(p) = container.and_then(|c| c.app_armor_profile.as_ref()) {
        return Some(p.clone());
    }
    let annotation = pod_annotations
        .get(&format!("{APPARMOR_ANNOTATION_PREFIX}{container_name}"))
        .and_then(|v| apparmor_from_annotation(v));
    annotation.or_else(|| pod.and_then(|p| p.app_armor_profile.clone()))
}

/// kuberuntime `getAppArmorProfile`: the CRI profile and the deprecated string kubelet still
/// fills for runtimes that predate the `apparmor` field (`runtime/default`, `unconfined`,
/// `localhost/<name>`); nothing when no profile was asked for (the runtime then applies its
/// default). An unknown type or a Localhost profile without a name is kubelet's
/// CreateContainerConfigError (the error text is kubelet's).
fn apparmor_profile(
    requested: Option<&AppArmorProfile>,
    host_supports_apparmor: bool,
) -> Result<(Option<cri::SecurityProfile>, String), String> {
    use cri::security_profile::ProfileType;
    let Some(p) = requested else {
        return Ok((None, String::new()));
    };
    let (t, name, deprecated) = match p.type_.as_str() {
        "RuntimeDefault" => (
            ProfileType::RuntimeDefault,
            String::new(),
            "runtime/default".to_string(),
        ),
        "Unconfined" => (
            ProfileType::Unconfined,
            String::new(),
            "unconfined".to_string(),
        ),
        "Localhost" => {
            let Some(n) = p.localhost_profile.clone() else {
                return Err("missing localhost apparmor profile name".into());
            };
            (ProfileType::Localhost, n.clone(), format!("localhost/{n}"))
        }
        other => return Err(format!("unknown apparmor profile type: {other:?}")),
    };
    // Deviation: on a kernel without AppArmor kubelet refuses such pods outright; the
    // simulator drops the profile instead so the rest of the pod can still be exercised.
    if !host_supports_apparmor && t != ProfileType::Unconfined {
        return Ok((None, String::new()));
    }
    Ok((
        Some(cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: name,
        }),
        deprecated,
    ))
}

/// securitycontext `DetermineEffectiveSecurityContext`: the pod's context overlaid by the
/// container's, field by field.
pub fn effective_security_context(
    pod: Option<&PodSecurityContext>,
    c: Option<&SecurityContext>,
) -> SecurityContext {
    let mut eff = SecurityContext::default();
    if let Some(p) = pod {
        eff.se_linux_options = p.se_linux_options.clone();
        eff.run_as_user = p.run_as_user;
        eff.run_as_group = p.run_as_group;
        eff.run_as_non_root = p.run_as_non_root;
        eff.seccomp_profile = p.seccomp_profile.clone();
        eff.app_armor_profile = p.app_armor_profile.clone();
    }
    if let Some(c) = c {
        macro_rules! overlay {
            ($($f:ident),*) => { $( if c.$f.is_some() { eff.$f = c.$f.clone(); } )* };
        }
        overlay!(
            se_linux_options,
            run_as_user,
            run_as_group,
            run_as_non_root,
            seccomp_profile,
            app_armor_profile,
            capabilities,
            privileged,
            read_only_root_filesystem,
            allow_privilege_escalation,
            proc_mount
        );
    }
    eff
}

/// securitycontext `AddNoNewPrivileges`: true only for an explicit
/// `allowPrivilegeEscalation: false` (and never for a privileged container).
pub fn add_no_new_privileges(sc: &SecurityContext) -> bool {
    if sc.privileged == Some(true) {
        return false;
    }
    sc.allow_privilege_escalation == Some(false)
}

/// securitycontext `ConvertToRuntimeMaskedPaths` / `ConvertToRuntimeReadonlyPaths`.
pub fn masked_and_readonly_paths(proc_mount: Option<&str>) -> (Vec<String>, Vec<String>) {
    if proc_mount == Some("Unmasked") {
        return (Vec::new(), Vec::new());
    }
    (
        DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
        DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

/// kuberuntime `verifyRunAsNonRoot`: with runAsNonRoot=true, refuse (before any CRI call,
/// as CreateContainerConfigError) a container that would run as uid 0 or whose image user
/// cannot be verified.
pub fn verify_run_as_non_root(
    pod: &str,
    container: &str,
    eff: &SecurityContext,
    user: &ImageUser,
) -> Result<(), String> {
    if eff.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(uid) = eff.run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"
            ));
        }
        return Ok(());
    }
    match (user.uid, user.username.as_str()) {
        (Some(0), _) | (None, "") => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
        )),
        (None, name) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
        )),
        (Some(_), _) => Ok(()),
    }
}

/// kuberuntime `generatePodSandboxConfig` + `generatePodSandboxLinuxConfig`.
pub fn sandbox_config(
    pod: &Pod,
    spec: &PodSpec,
    info: &PodInfo,
    opts: &Options,
) -> cri::PodSandboxConfig {
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert("io.kubernetes.pod.name".into(), info.name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), info.namespace.clone());
    labels.insert("io.kubernetes.pod.uid".into(), info.uid.clone());
    let annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();

    // makePortMappings: every declared container port, hostPort or not.
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            } as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();

    let psc = spec.security_context.as_ref();
    let sysctls = psc
        .and_then(|s| s.sysctls.as_ref())
        .map(|l| {
            l.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut supplemental_groups: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs_group) = psc.and_then(|s| s.fs_group) {
        supplemental_groups.push(fs_group);
    }
    let security_context = cri::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(
            spec,
            user_namespace(spec, &info.uid, opts),
        )),
        selinux_options: psc.and_then(|s| s.se_linux_options.as_ref()).map(selinux),
        run_as_user: psc
            .and_then(|s| s.run_as_user)
            .map(|value| cri::Int64Value { value }),
        run_as_group: psc
            .and_then(|s| s.run_as_group)
            .map(|value| cri::Int64Value { value }),
        supplemental_groups,
        privileged: has_privileged_container(spec),
        seccomp: Some(seccomp_profile(
            &opts.kubelet_root,
            psc.and_then(|s| s.seccomp_profile.as_ref()),
            None,
            opts.seccomp_default,
        )),
        ..Default::default()
    };

    let dns_config = if spec.host_network == Some(true) {
        None
    } else {
        // ClusterFirst with a cluster DNS service address from the documentation range.
        Some(cri::DnsConfig {
            servers: vec!["192.0.2.10".into()],
            searches: vec![
                format!("{}.svc.cluster.local", info.namespace),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        })
    };

    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: info.name.clone(),
            uid: info.uid.clone(),
            namespace: info.namespace.clone(),
            attempt: 0,
        }),
        // Only pods with their own network (and so UTS) namespace get a hostname.
        hostname: if spec.host_network == Some(true) {
            String::new()
        } else {
            info.hostname.clone()
        },
        log_directory: info.log_dir.clone(),
        dns_config,
        port_mappings,
        labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(security_context),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

fn selinux(o: &k8s_openapi::api::core::v1::SELinuxOptions) -> cri::SeLinuxOption {
    cri::SeLinuxOption {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        r#type: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
    }
}

/// kuberuntime `generateLinuxContainerConfig` security part:
/// `determineEffectiveSecurityContext` → `convertToRuntimeSecurityContext`, plus the image
/// user, the pod's namespaces and the seccomp/AppArmor profiles (`apparmor`: what
/// [`apparmor_request`] resolved). kubelet still fills the deprecated `apparmor_profile`
/// string for runtimes that predate the `apparmor` field. An `Err` is kubelet's
/// CreateContainerConfigError.
#[allow(deprecated)]
pub fn container_security_context(
    spec: &PodSpec,
    eff: &SecurityContext,
    apparmor: Option<&AppArmorProfile>,
    user: &ImageUser,
    target_container_id: Option<&str>,
    pod_uid: &str,
    opts: &Options,
) -> Result<cri::LinuxContainerSecurityContext, String> {
    let psc = spec.security_context.as_ref();
    let caps = eff.capabilities.as_ref().map(|c| cri::Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    let (masked_paths, readonly_paths) = masked_and_readonly_paths(eff.proc_mount.as_deref());
    let mut ns = namespace_options(spec, user_namespace(spec, pod_uid, opts));
    if let Some(id) = target_container_id {
        // Ephemeral containers with targetContainerName share that container's PID ns.
        ns.pid = cri::NamespaceMode::Target as i32;
        ns.target_id = id.to_string();
    }
    let (apparmor, apparmor_profile) = apparmor_profile(apparmor, opts.host_supports_apparmor)?;
    let mut supplemental_groups: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs_group) = psc.and_then(|s| s.fs_group) {
        supplemental_groups.push(fs_group);
    }
    let (run_as_user, run_as_username) = match (eff.run_as_user, user.uid) {
        (Some(uid), _) | (None, Some(uid)) => (Some(cri::Int64Value { value: uid }), String::new()),
        (None, None) => (None, user.username.clone()),
    };
    Ok(cri::LinuxContainerSecurityContext {
        capabilities: caps,
        privileged: eff.privileged == Some(true),
        namespace_options: Some(ns),
        selinux_options: eff.se_linux_options.as_ref().map(selinux),
        run_as_user,
        run_as_group: eff.run_as_group.map(|value| cri::Int64Value { value }),
        run_as_username,
        readonly_rootfs: eff.read_only_root_filesystem == Some(true),
        supplemental_groups,
        no_new_privs: add_no_new_privileges(eff),
        masked_paths,
        readonly_paths,
        seccomp: Some(seccomp_profile(
            &opts.kubelet_root,
            None,
            eff.seccomp_profile.as_ref(),
            opts.seccomp_default,
        )),
        apparmor,
        apparmor_profile,
        ..Default::default()
    })
}

/// kuberuntime `generateContainerConfig` (less what needs I/O: image user and mounts are
/// passed in). `container_type` is kubelet's `io.kubernetes.container.type`: `init`,
/// `container` or `ephemeral`.
pub fn container_config(
    info: &PodInfo,
    c: &Container,
    container_type: &str,
    security_context: cri::LinuxContainerSecurityContext,
    mounts: Vec<cri::Mount>,
) -> cri::ContainerConfig {
    let mut labels = HashMap::new();
    labels.insert("io.kubernetes.container.name".to_string(), c.name.clone());
    labels.insert("io.kubernetes.pod.name".to_string(), info.name.clone());
    labels.insert(
        "io.kubernetes.pod.namespace".to_string(),
        info.namespace.clone(),
    );
    labels.insert("io.kubernetes.pod.uid".to_string(), info.uid.clone());
    let mut annotations = HashMap::new();
    annotations.insert(
        "io.kubernetes.container.restartCount".to_string(),
        "0".to_string(),
    );
    annotations.insert(
        "io.kubernetes.container.terminationMessagePath".to_string(),
        c.termination_message_path.clone().unwrap_or_default(),
    );
    annotations.insert(
        "io.kubernetes.container.terminationMessagePolicy".to_string(),
        c.termination_message_policy
            .clone()
            .unwrap_or_else(|| "File".into()),
    );
    annotations.insert(
        "io.kubernetes.pod.terminationGracePeriod".to_string(),
        "30".to_string(),
    );
    annotations.extend(kubelet_container_annotations(c, container_type));

    // makeEnvironmentVariables: the kubernetes service variables come first, then the
    // container's literal values (valueFrom is not resolved).
    let mut envs = vec![
        kv("KUBERNETES_SERVICE_HOST", "192.0.2.1"),
        kv("KUBERNETES_SERVICE_PORT", "443"),
        kv("KUBERNETES_PORT", "tcp://192.0.2.1:443"),
    ];
    for e in c.env.iter().flatten() {
        envs.push(kv(&e.name, e.value.as_deref().unwrap_or("")));
    }

    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        labels,
        annotations,
        log_path: format!("{}/0.log", c.name),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        linux: Some(cri::LinuxContainerConfig {
            // A BestEffort pod's container: minimum CPU shares, OOM score 1000
            // (restrict_oom_score_adj clamps it on this node).
            resources: Some(cri::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_shares: 2,
                oom_score_adj: 1000,
                ..Default::default()
            }),
            security_context: Some(security_context),
        }),
        ..Default::default()
    }
}

/// The annotations kuberuntime `newContainerAnnotations` (pkg/kubelet/kuberuntime/labels.go)
/// writes from the container itself, for every container kind: its `lifecycle.preStop` handler
/// (`io.kubernetes.container.preStopHandler`) and its `ports`
/// (`io.kubernetes.container.ports`), each as the JSON of the Kubernetes API object, and
/// its type. kubelet keeps the handler and the ports there to find them again when it stops
/// or inspects the container; the runtime stores them with the config.
pub fn kubelet_container_annotations(c: &Container, container_type: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        out.push(("io.kubernetes.container.preStopHandler".to_string(), json));
    }
    if let Some(ports) = c.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        out.push(("io.kubernetes.container.ports".to_string(), json));
    }
    out.push((
        "io.kubernetes.container.type".to_string(),
        container_type.to_string(),
    ));
    out
}

fn kv(key: &str, value: &str) -> cri::KeyValue {
    cri::KeyValue {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// kubelet `SafeSysctlAllowlist` admission: the first pod sysctl that is neither safe nor
/// in `allowed_unsafe` (entries may end in `*`).
pub fn forbidden_sysctl(spec: &PodSpec, allowed_unsafe: &[String]) -> Option<String> {
    let sysctls = spec.security_context.as_ref()?.sysctls.as_ref()?;
    sysctls.iter().map(|s| s.name.clone()).find(|name| {
        !SAFE_SYSCTLS.contains(&name.as_str())
            && !allowed_unsafe.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => a == name,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Capabilities;

    #[test]
    fn ports_and_pre_stop_are_annotated_as_kubelet_does_for_every_container_kind() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "init", "image": "busybox",
            "ports": [{"containerPort": 12346, "hostPort": 12346}, {"containerPort": 12348}],
            "lifecycle": {"preStop": {"httpGet": {"host": "bad.host", "port": 8080}}}
        }))
        .expect("container");
        let a: BTreeMap<String, String> = kubelet_container_annotations(&c, "init")
            .into_iter()
            .collect();
        let ports: serde_json::Value =
            serde_json::from_str(&a["io.kubernetes.container.ports"]).expect("ports json");
        assert_eq!(ports[0]["hostPort"], 12346);
        assert_eq!(ports[1]["containerPort"], 12348);
        let pre_stop: serde_json::Value =
            serde_json::from_str(&a["io.kubernetes.container.preStopHandler"]).expect("json");
        assert_eq!(pre_stop["httpGet"]["host"], "bad.host");
        assert_eq!(a["io.kubernetes.container.type"], "init");
        // Neither without the fields (kubelet writes them only when set).
        let bare: Container =
            serde_json::from_value(serde_json::json!({"name": "c"})).expect("container");
        let a = kubelet_container_annotations(&bare, "container");
        assert_eq!(
            a,
            [(
                "io.kubernetes.container.type".to_string(),
                "container".to_string()
            )]
        );
    }

    #[test]
    fn no_new_privs_only_for_explicit_false() {
        let mut sc = SecurityContext::default();
        assert!(!add_no_new_privileges(&sc));
        sc.allow_privilege_escalation = Some(true);
        assert!(!add_no_new_privileges(&sc));
        sc.allow_privilege_escalation = Some(false);
        assert!(add_no_new_privileges(&sc));
    }

    #[test]
    fn unmasked_proc_mount_sends_empty_lists() {
        let (m, r) = masked_and_readonly_paths(Some("Unmasked"));
        assert!(m.is_empty() && r.is_empty());
        let (m, r) = masked_and_readonly_paths(None);
        assert_eq!((m.len(), r.len()), (11, 5));
    }

    #[test]
    fn container_context_overrides_pod_context() {
        let pod = PodSecurityContext {
            run_as_user: Some(1),
            run_as_non_root: Some(true),
            ..Default::default()
        };
        let c = SecurityContext {
            run_as_user: Some(0),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_RAW".into()]),
                drop: None,
            }),
            ..Default::default()
        };
        let eff = effective_security_context(Some(&pod), Some(&c));
        assert_eq!(eff.run_as_user, Some(0));
        assert_eq!(eff.run_as_non_root, Some(true));
        let err = verify_run_as_non_root("p", "c", &eff, &ImageUser::default()).unwrap_err();
        assert!(err.contains("breaks non-root policy"), "{err}");
    }

    #[test]
    fn run_as_non_root_needs_numeric_non_root_image_user() {
        let eff = SecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        };
        let root = ImageUser::default();
        assert!(verify_run_as_non_root("p", "c", &eff, &root).is_err());
        let named = ImageUser {
            uid: None,
            username: "app".into(),
        };
        assert!(verify_run_as_non_root("p", "c", &eff, &named).is_err());
        let nonroot = ImageUser {
            uid: Some(65535),
            username: String::new(),
        };
        assert!(verify_run_as_non_root("p", "c", &eff, &nonroot).is_ok());
    }

    #[test]
    fn seccomp_falls_back_to_unconfined_without_seccomp_default() {
        use cri::security_profile::ProfileType;
        let root = Path::new("/k");
        let p = seccomp_profile(root, None, None, false);
        assert_eq!(p.profile_type, ProfileType::Unconfined as i32);
        let p = seccomp_profile(root, None, None, true);
        assert_eq!(p.profile_type, ProfileType::RuntimeDefault as i32);
        let local = SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("a.json".into()),
        };
        let p = seccomp_profile(root, Some(&local), None, false);
        assert_eq!(p.localhost_ref, "/k/seccomp/a.json");
    }

    fn aa(type_: &str, name: Option<&str>) -> AppArmorProfile {
        AppArmorProfile {
            type_: type_.into(),
            localhost_profile: name.map(str::to_string),
        }
    }

    #[test]
    fn apparmor_request_is_container_field_then_annotation_then_pod_field() {
        let key = |c: &str| format!("{APPARMOR_ANNOTATION_PREFIX}{c}");
        let pod_sc = PodSecurityContext {
            app_armor_profile: Some(aa("Localhost", Some("pod-prof"))),
            ..Default::default()
        };
        let c_sc = SecurityContext {
            app_armor_profile: Some(aa("RuntimeDefault", None)),
            ..Default::default()
        };
        let none = BTreeMap::new();
        let ann = BTreeMap::from([(key("app"), "unconfined".to_string())]);
        // The container's field wins over the annotation and the pod's field.
        let got = apparmor_request(&ann, Some(&pod_sc), "app", Some(&c_sc));
        assert_eq!(got, Some(aa("RuntimeDefault", None)));
        // The annotation wins over the pod's field.
        let got = apparmor_request(&ann, Some(&pod_sc), "app", None);
        assert_eq!(got, Some(aa("Unconfined", None)));
        // Another container's annotation is not this one's.
        let got = apparmor_request(&ann, Some(&pod_sc), "other", None);
        assert_eq!(got, Some(aa("Localhost", Some("pod-prof"))));
        // Nothing set: nothing asked for.
        assert_eq!(apparmor_request(&none, None, "app", None), None);
        // The three annotation forms; an unknown value is no profile (the pod's field applies).
        for (value, want) in [
            ("runtime/default", Some(aa("RuntimeDefault", None))),
            ("unconfined", Some(aa("Unconfined", None))),
            ("localhost/prof", Some(aa("Localhost", Some("prof")))),
            ("localhost/", Some(aa("Localhost", Some("")))),
            ("docker/default", None),
        ] {
            let ann = BTreeMap::from([(key("app"), value.to_string())]);
            assert_eq!(apparmor_request(&ann, None, "app", None), want, "{value}");
        }
        let ann = BTreeMap::from([(key("app"), "bogus".to_string())]);
        let got = apparmor_request(&ann, Some(&pod_sc), "app", None);
        assert_eq!(got, Some(aa("Localhost", Some("pod-prof"))));
    }

    #[test]
    fn apparmor_profile_and_the_deprecated_string() {
        use cri::security_profile::ProfileType;
        let sent = |p: Option<AppArmorProfile>, host: bool| {
            let (profile, deprecated) = apparmor_profile(p.as_ref(), host).unwrap();
            (
                profile.map(|p| {
                    (
                        ProfileType::try_from(p.profile_type).unwrap(),
                        p.localhost_ref,
                    )
                }),
                deprecated,
            )
        };
        // A host with AppArmor: every profile, with its deprecated string.
        assert_eq!(sent(None, true), (None, String::new()));
        assert_eq!(
            sent(Some(aa("RuntimeDefault", None)), true),
            (
                Some((ProfileType::RuntimeDefault, String::new())),
                "runtime/default".into()
            )
        );
        assert_eq!(
            sent(Some(aa("Unconfined", None)), true),
            (
                Some((ProfileType::Unconfined, String::new())),
                "unconfined".into()
            )
        );
        assert_eq!(
            sent(Some(aa("Localhost", Some("prof"))), true),
            (
                Some((ProfileType::Localhost, "prof".into())),
                "localhost/prof".into()
            )
        );
        // Without AppArmor (the documented deviation): only Unconfined is sent.
        assert_eq!(
            sent(Some(aa("Unconfined", None)), false),
            (
                Some((ProfileType::Unconfined, String::new())),
                "unconfined".into()
            )
        );
        assert_eq!(
            sent(Some(aa("RuntimeDefault", None)), false),
            (None, String::new())
        );
        assert_eq!(
            sent(Some(aa("Localhost", Some("p"))), false),
            (None, String::new())
        );
        // kubelet's CreateContainerConfigError cases.
        let err = apparmor_profile(Some(&aa("Localhost", None)), true).unwrap_err();
        assert_eq!(err, "missing localhost apparmor profile name");
        let err = apparmor_profile(Some(&aa("Bogus", None)), false).unwrap_err();
        assert!(err.contains("unknown apparmor profile type"), "{err}");
    }

    /// A static pod (no API-server sync) asking for Unconfined by annotation gets it in the
    /// container's CRI config.
    #[test]
    #[allow(deprecated)]
    fn static_pod_apparmor_annotation_reaches_the_cri_config() {
        let m = crate::load(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    \
             container.apparmor.security.beta.kubernetes.io/app: unconfined\n\
             spec:\n  containers:\n  - {name: app, image: i}\n",
            crate::Source::Static,
        )
        .unwrap();
        let spec = m.pod.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        assert!(c.security_context.is_none(), "static pods are not synced");
        let requested = apparmor_request(
            m.pod.metadata.annotations.as_ref().unwrap(),
            spec.security_context.as_ref(),
            &c.name,
            c.security_context.as_ref(),
        );
        let mut opts = Options::new("/k");
        opts.host_supports_apparmor = false;
        let eff = effective_security_context(None, None);
        let sc = container_security_context(
            spec,
            &eff,
            requested.as_ref(),
            &ImageUser::default(),
            None,
            "uid",
            &opts,
        )
        .unwrap();
        let p = sc.apparmor.expect("apparmor sent");
        assert_eq!(
            p.profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
        assert_eq!(sc.apparmor_profile, "unconfined");
    }

    #[test]
    fn unsafe_sysctls_are_refused_unless_allowed() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [],
            "securityContext": {"sysctls": [
                {"name": "kernel.shm_rmid_forced", "value": "0"},
                {"name": "kernel.msgmax", "value": "1"}]}
        }))
        .unwrap();
        assert_eq!(forbidden_sysctl(&spec, &[]), Some("kernel.msgmax".into()));
        assert_eq!(forbidden_sysctl(&spec, &["kernel.msg*".into()]), None);
    }
}
