//! The CRI configs behind a container's spec: what kubelet asked containerd for, as it wrote it.
//!
//! Several Pod Security checks cannot be decided from `config.json` alone: a `hostPort` is part
//! of the pod's port mappings, not of the spec; `add: ["chown"]` and `add: ["NET_RAW"]` leave
//! containerd's default capability set unchanged; SELinux options and AppArmor requests vanish
//! on hosts without those security modules. containerd keeps the configs kubelet sent:
//!
//! - the container's `ContainerConfig` in the verbose answer of CRI `ContainerStatus`
//!   (`info["info"]`, a JSON document whose `config` is the config in Go's JSON encoding:
//!   snake_case names, enums as integers, zero values left out), with the annotations
//!   kubelet adds to every container config: the container's `ports` (an init container's
//!   too) and its `lifecycle.preStop` handler, each as Kubernetes API JSON;
//! - the pod's `PodSandboxConfig` in the sandbox container's extension
//!   `io.cri-containerd.sandbox.metadata` (containerd's containers API). This is containerd's
//!   internal record, versioned `"v1"`, read the same way by containerd 1.6, 1.7 and 2.x; the
//!   conformance run checks it on every runtime stack the project tests.
//!
//! Everything here is pure parsing; [`client`] fetches the documents. A [`View`] can only add
//! refusals (see [`crate::policy::evaluate`]); a document in a shape this module does not know
//! is a [`FormatError`], and the hook then decides from the spec alone and says so.

pub mod client;
mod wire;

use serde::Deserialize;

/// The extension containerd's CRI plugin stores a sandbox's metadata under.
pub const SANDBOX_EXTENSION: &str = "io.cri-containerd.sandbox.metadata";

/// What the CRI configs say about one container and its pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub container: ContainerView,
    pub pod: PodView,
}

/// The container's `linux.security_context`, as kubelet wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerView {
    /// `metadata.name`.
    pub name: String,
    /// `capabilities.add_capabilities`, verbatim (`"chown"`, `"CAP_CHOWN"`, `"NET_RAW"`).
    pub add_caps: Vec<String>,
    /// `capabilities.drop_capabilities`, verbatim.
    pub drop_caps: Vec<String>,
    pub privileged: bool,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// `selinux_options`, when kubelet sent any (the pod's, unless the container set its own).
    pub selinux: Option<SeLinux>,
    pub apparmor: AppArmorRequest,
    /// The container's own non-zero `hostPort`s, sorted, unique, from the annotation
    /// [`PORTS_ANNOTATION`] kubelet writes on every container config with ports, init
    /// containers included (kuberuntime `newContainerAnnotations`).
    pub host_ports: Vec<i32>,
    /// The `host` of the container's `preStop` handler (`httpGet` or `tcpSocket`), from the
    /// annotation [`PRE_STOP_ANNOTATION`]; empty when there is none or it names no host.
    pub pre_stop_hosts: Vec<String>,
}

/// The container-config annotation in which kubelet sends the container's `ports`, as the JSON
/// of `[]v1.ContainerPort` (kubernetes pkg/kubelet/kuberuntime/labels.go, `containerPortsLabel`).
pub const PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";
/// The container-config annotation in which kubelet sends the container's `lifecycle.preStop`,
/// as the JSON of a `v1.LifecycleHandler` (labels.go, `containerPreStopHandlerLabel`). kubelet
/// runs the handler itself when it stops the container; it keeps it here to find it again.
pub const PRE_STOP_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";

/// The pod's `PodSandboxConfig`, the parts Pod Security reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Every non-zero `port_mappings[].host_port`, sorted, unique. kubelet maps the ports of
    /// the app containers only; every container's own ports, an init container's included,
    /// come in its config's annotation ([`ContainerView::host_ports`]).
    pub host_ports: Vec<i32>,
    /// The pod-level `linux.security_context.selinux_options`.
    pub selinux: Option<SeLinux>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SeLinux {
    pub user: String,
    pub role: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub level: String,
}

/// The AppArmor profile kubelet asked for: the container's field, else the pod annotation,
/// else the pod's field (kubelet resolves it; the runtime gets one answer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AppArmorRequest {
    /// Nothing asked: the runtime applies its default.
    #[default]
    Unset,
    RuntimeDefault,
    Unconfined,
    Localhost(String),
    /// A string kubelet should never have passed on (its own validation refuses it): PSA
    /// refuses any profile but `runtime/default` and `localhost/…`, so the check does too,
    /// rather than losing the whole view over a value the pod wrote.
    Other(String),
}

/// A document that is not in a shape this module knows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct FormatError(pub String);

fn format_error(what: impl Into<String>) -> FormatError {
    FormatError(what.into())
}

// ---- Go's JSON encoding of the CRI types (k8s.io/cri-api runtime/v1), the fields read here ----

#[derive(Deserialize)]
struct ContainerInfo {
    #[serde(rename = "sandboxID", default)]
    sandbox_id: String,
    config: Option<ContainerConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContainerConfig {
    metadata: Option<Metadata>,
    linux: Option<LinuxContainerConfig>,
    annotations: std::collections::BTreeMap<String, String>,
}

/// `v1.ContainerPort` in the Kubernetes API's JSON, the field read here.
#[derive(Deserialize)]
struct ApiContainerPort {
    #[serde(rename = "hostPort", default)]
    host_port: i32,
}

/// `v1.LifecycleHandler` in the Kubernetes API's JSON, the fields that can name a host.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiLifecycleHandler {
    #[serde(rename = "httpGet")]
    http_get: Option<ApiHostField>,
    #[serde(rename = "tcpSocket")]
    tcp_socket: Option<ApiHostField>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiHostField {
    host: String,
}

/// The container's non-zero host ports from kubelet's ports annotation.
fn annotated_host_ports(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<i32>, FormatError> {
    let Some(raw) = annotations.get(PORTS_ANNOTATION) else {
        return Ok(Vec::new());
    };
    let ports: Vec<ApiContainerPort> = serde_json::from_str(raw).map_err(|e| {
        format_error(format!(
            "annotation {PORTS_ANNOTATION} is not the JSON expected: {e}"
        ))
    })?;
    let mut out: Vec<i32> = ports
        .iter()
        .map(|p| p.host_port)
        .filter(|p| *p != 0)
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The hosts named by the container's preStop handler from kubelet's annotation.
fn annotated_pre_stop_hosts(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<String>, FormatError> {
    let Some(raw) = annotations.get(PRE_STOP_ANNOTATION) else {
        return Ok(Vec::new());
    };
    let h: ApiLifecycleHandler = serde_json::from_str(raw).map_err(|e| {
        format_error(format!(
            "annotation {PRE_STOP_ANNOTATION} is not the JSON expected: {e}"
        ))
    })?;
    let mut out: Vec<String> = [h.http_get, h.tcp_socket]
        .into_iter()
        .flatten()
        .map(|f| f.host)
        .filter(|h| !h.is_empty())
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    name: String,
    uid: String,
    namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LinuxContainerConfig {
    security_context: Option<ContainerSecurityContext>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContainerSecurityContext {
    capabilities: Option<Capability>,
    privileged: bool,
    namespace_options: Option<NamespaceOptions>,
    selinux_options: Option<SeLinux>,
    apparmor: Option<SecurityProfile>,
    /// Deprecated since Kubernetes 1.30, still sent next to `apparmor`.
    apparmor_profile: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Capability {
    add_capabilities: Vec<String>,
    drop_capabilities: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamespaceOptions {
    network: i32,
    pid: i32,
    ipc: i32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SecurityProfile {
    profile_type: i32,
    localhost_ref: String,
}

#[derive(Deserialize)]
struct SandboxRecord {
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Metadata")]
    metadata: SandboxMetadata,
}

#[derive(Deserialize)]
struct SandboxMetadata {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Config")]
    config: Option<SandboxConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SandboxConfig {
    metadata: Option<Metadata>,
    port_mappings: Vec<PortMapping>,
    linux: Option<LinuxSandboxConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PortMapping {
    host_port: i32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LinuxSandboxConfig {
    security_context: Option<SandboxSecurityContext>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SandboxSecurityContext {
    selinux_options: Option<SeLinux>,
}

/// CRI `NamespaceMode`: POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3.
fn host_namespace(mode: i32, which: &str) -> Result<bool, FormatError> {
    match mode {
        0 | 1 | 3 => Ok(false),
        2 => Ok(true),
        n => Err(format_error(format!("unknown {which} namespace mode {n}"))),
    }
}

/// CRI `SecurityProfile.ProfileType`: RuntimeDefault = 0, Unconfined = 1, Localhost = 2.
fn apparmor(ctx: &ContainerSecurityContext) -> Result<AppArmorRequest, FormatError> {
    if let Some(p) = &ctx.apparmor {
        return match p.profile_type {
            0 => Ok(AppArmorRequest::RuntimeDefault),
            1 => Ok(AppArmorRequest::Unconfined),
            2 => Ok(AppArmorRequest::Localhost(p.localhost_ref.clone())),
            n => Err(format_error(format!("unknown AppArmor profile type {n}"))),
        };
    }
    // Kubelets before 1.30 send only the string form.
    match ctx.apparmor_profile.as_str() {
        "" => Ok(AppArmorRequest::Unset),
        "runtime/default" => Ok(AppArmorRequest::RuntimeDefault),
        "unconfined" => Ok(AppArmorRequest::Unconfined),
        s => Ok(match s.strip_prefix("localhost/") {
            Some(name) => AppArmorRequest::Localhost(name.to_owned()),
            None => AppArmorRequest::Other(s.to_owned()),
        }),
    }
}

/// The container's view from CRI `ContainerStatus(verbose)`'s `info["info"]`; returns it with
/// the sandbox id containerd recorded for the container.
pub fn parse_container_info(json: &[u8]) -> Result<(String, ContainerView), FormatError> {
    let info: ContainerInfo = serde_json::from_slice(json)
        .map_err(|e| format_error(format!("container info is not the JSON expected: {e}")))?;
    let config = info
        .config
        .ok_or_else(|| format_error("container info carries no config"))?;
    let name = config
        .metadata
        .map(|m| m.name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format_error("container config names no container"))?;
    if info.sandbox_id.is_empty() {
        return Err(format_error("container info names no sandbox"));
    }
    let host_ports = annotated_host_ports(&config.annotations)?;
    let pre_stop_hosts = annotated_pre_stop_hosts(&config.annotations)?;
    let sc = config
        .linux
        .and_then(|l| l.security_context)
        .unwrap_or_default();
    let ns = sc.namespace_options.as_ref();
    let caps = sc.capabilities.as_ref();
    let view = ContainerView {
        name,
        add_caps: caps.map(|c| c.add_capabilities.clone()).unwrap_or_default(),
        drop_caps: caps
            .map(|c| c.drop_capabilities.clone())
            .unwrap_or_default(),
        privileged: sc.privileged,
        host_network: host_namespace(ns.map_or(0, |n| n.network), "network")?,
        host_pid: host_namespace(ns.map_or(0, |n| n.pid), "pid")?,
        host_ipc: host_namespace(ns.map_or(0, |n| n.ipc), "ipc")?,
        selinux: sc.selinux_options.clone(),
        apparmor: apparmor(&sc)?,
        host_ports,
        pre_stop_hosts,
    };
    Ok((info.sandbox_id, view))
}

/// The pod's view from the sandbox metadata extension's JSON value, which must be the record
/// of sandbox `sandbox_id`.
pub fn parse_sandbox_metadata(json: &[u8], sandbox_id: &str) -> Result<PodView, FormatError> {
    let record: SandboxRecord = serde_json::from_slice(json)
        .map_err(|e| format_error(format!("sandbox metadata is not the JSON expected: {e}")))?;
    if record.version != "v1" {
        return Err(format_error(format!(
            "sandbox metadata version {:?} (known: \"v1\")",
            record.version
        )));
    }
    if record.metadata.id != sandbox_id {
        return Err(format_error("sandbox metadata is another sandbox's"));
    }
    let config = record
        .metadata
        .config
        .ok_or_else(|| format_error("sandbox metadata carries no config"))?;
    let meta = config
        .metadata
        .ok_or_else(|| format_error("sandbox config names no pod"))?;
    let mut host_ports: Vec<i32> = config
        .port_mappings
        .iter()
        .map(|p| p.host_port)
        .filter(|p| *p != 0)
        .collect();
    host_ports.sort_unstable();
    host_ports.dedup();
    Ok(PodView {
        namespace: meta.namespace,
        name: meta.name,
        uid: meta.uid,
        host_ports,
        selinux: config
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.selinux_options),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_info_as_containerd_writes_it() {
        // Trimmed from containerd 1.6's answer for a container with `add: ["chown", "NET_RAW"]`
        // and an Unconfined AppArmor request (zero values left out, enums as integers).
        let info = br#"{"sandboxID":"sb1","pid":0,"removing":false,
            "config":{"metadata":{"name":"app"},"image":{"image":"busybox"},
            "linux":{"security_context":{"capabilities":{"add_capabilities":["chown","NET_RAW"]},
            "namespace_options":{"network":2,"pid":1},"run_as_user":{},
            "seccomp":{},"apparmor":{"profile_type":1},"apparmor_profile":"unconfined"}}},
            "runtimeSpec":{"ociVersion":"1.0.2"}}"#;
        let (sb, v) = parse_container_info(info).unwrap();
        assert_eq!(sb, "sb1");
        assert_eq!(v.name, "app");
        assert_eq!(v.add_caps, ["chown", "NET_RAW"]);
        assert!(v.host_network && !v.host_pid && !v.host_ipc);
        assert_eq!(v.apparmor, AppArmorRequest::Unconfined);
        assert!(!v.privileged && v.selinux.is_none());
    }

    #[test]
    fn kubelets_ports_and_pre_stop_annotations_are_read() {
        // As kubelet writes them (Kubernetes API JSON inside the CRI config's annotations).
        let info = br#"{"sandboxID":"sb1","config":{"metadata":{"name":"initcontainer1"},
            "annotations":{"io.kubernetes.container.ports":"[{\"hostPort\":12346,\"containerPort\":12346,\"protocol\":\"TCP\"},{\"containerPort\":12348,\"protocol\":\"TCP\"},{\"hostPort\":12346,\"containerPort\":1,\"protocol\":\"UDP\"}]",
            "io.kubernetes.container.preStopHandler":"{\"httpGet\":{\"path\":\"/\",\"port\":8080,\"host\":\"bad.host\",\"scheme\":\"HTTP\"}}",
            "io.kubernetes.container.type":"init"}}}"#;
        let (_, v) = parse_container_info(info).unwrap();
        assert_eq!(v.host_ports, [12346]);
        assert_eq!(v.pre_stop_hosts, ["bad.host"]);
        let tcp = br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"annotations":{"io.kubernetes.container.preStopHandler":"{\"tcpSocket\":{\"port\":1,\"host\":\"::1\"}}"}}}"#;
        assert_eq!(parse_container_info(tcp).unwrap().1.pre_stop_hosts, ["::1"]);
        let exec = br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"annotations":{"io.kubernetes.container.preStopHandler":"{\"exec\":{\"command\":[\"true\"]}}","io.kubernetes.container.ports":"[{\"containerPort\":80}]"}}}"#;
        let (_, v) = parse_container_info(exec).unwrap();
        assert!(v.pre_stop_hosts.is_empty() && v.host_ports.is_empty());
        // A value kubelet would never write is a format error, not "no ports".
        for bad in [
            &br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"annotations":{"io.kubernetes.container.ports":"{"}}}"#[..],
            br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"annotations":{"io.kubernetes.container.ports":"[{\"hostPort\":\"80\"}]"}}}"#,
            br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"annotations":{"io.kubernetes.container.preStopHandler":"{\"httpGet\":{\"host\":5}}"}}}"#,
        ] {
            assert!(parse_container_info(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_deprecated_apparmor_string_is_read_when_the_field_is_absent() {
        let with = |s: &str| {
            format!(
                r#"{{"sandboxID":"s","config":{{"metadata":{{"name":"a"}},"linux":{{"security_context":{{"apparmor_profile":"{s}"}}}}}}}}"#
            )
        };
        let read = |s: &str| parse_container_info(with(s).as_bytes()).map(|(_, v)| v.apparmor);
        assert_eq!(read(""), Ok(AppArmorRequest::Unset));
        assert_eq!(read("unconfined"), Ok(AppArmorRequest::Unconfined));
        assert_eq!(
            read("localhost/foo"),
            Ok(AppArmorRequest::Localhost("foo".into()))
        );
        assert_eq!(
            read("something/else"),
            Ok(AppArmorRequest::Other("something/else".into()))
        );
    }

    #[test]
    fn unknown_shapes_are_format_errors() {
        for bad in [
            &br#"{"sandboxID":"s"}"#[..],
            br#"{"config":{"metadata":{"name":"a"}}}"#,
            br#"{"sandboxID":"s","config":{}}"#,
            br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"linux":{"security_context":{"namespace_options":{"network":7}}}}}"#,
            br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"linux":{"security_context":{"apparmor":{"profile_type":9}}}}}"#,
            br#"{"sandboxID":"s","config":{"metadata":{"name":"a"},"linux":{"security_context":{"privileged":"yes"}}}}"#,
            b"[]",
            b"",
        ] {
            assert!(
                parse_container_info(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        /// Whatever containerd (or something in its place) answers, parsing returns.
        #[test]
        fn any_answer_parses_or_is_a_format_error(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            json in "\\{\"(sandboxID|Version|Metadata|config)\":[\\[\\]{}\"a-z0-9:,]{0,64}\\}",
        ) {
            let _ = parse_container_info(&bytes);
            let _ = parse_sandbox_metadata(&bytes, "s");
            let _ = parse_container_info(json.as_bytes());
            let _ = parse_sandbox_metadata(json.as_bytes(), "s");
        }

        /// Whatever kubelet's annotations hold (any text), parsing returns.
        #[test]
        fn any_annotation_value_parses_or_is_a_format_error(
            value in "[\\[\\]{}\"a-zA-Z0-9:,. -]{0,80}",
            key in proptest::sample::select(vec![PORTS_ANNOTATION, PRE_STOP_ANNOTATION]),
        ) {
            let doc = serde_json::json!({"sandboxID": "s", "config": {
                "metadata": {"name": "a"}, "annotations": {key: value}}});
            let _ = parse_container_info(doc.to_string().as_bytes());
        }
    }

    #[test]
    fn sandbox_metadata_gives_host_ports_and_pod_selinux() {
        let doc = br#"{"Version":"v1","Metadata":{"ID":"sb1","Name":"web_default_u1_0",
            "Config":{"metadata":{"name":"web","uid":"u1","namespace":"default"},
            "port_mappings":[{"container_port":80,"host_port":8080},{"protocol":1,"container_port":53},
            {"container_port":81,"host_port":8080}],
            "linux":{"security_context":{"selinux_options":{"type":"spc_t"},"namespace_options":{}}}},
            "NetNSPath":"/var/run/netns/x","RuntimeHandler":""}}"#;
        let p = parse_sandbox_metadata(doc, "sb1").unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str(), p.uid.as_str()),
            ("default", "web", "u1")
        );
        assert_eq!(p.host_ports, [8080]);
        assert_eq!(p.selinux.unwrap().type_, "spc_t");
        assert!(
            parse_sandbox_metadata(doc, "sb2").is_err(),
            "another sandbox's"
        );
        let v2 = br#"{"Version":"v2","Metadata":{"ID":"sb1"}}"#;
        assert!(parse_sandbox_metadata(v2, "sb1").is_err());
        let no_config = br#"{"Version":"v1","Metadata":{"ID":"sb1"}}"#;
        assert!(parse_sandbox_metadata(no_config, "sb1").is_err());
    }
}
