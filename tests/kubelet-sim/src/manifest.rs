//! Reading a Pod manifest and applying what the API server would have done before kubelet
//! ever sees the pod: defaulting, the AppArmor annotation-to-field sync, and the
//! ServiceAccount admission plugin's token volume. The seccomp annotations are left alone, as
//! the API server has left them since Kubernetes 1.27 (kubernetes/kubernetes#114947 removed
//! their copy into `seccompProfile`; kubelet stopped reading them in 1.25): a pod that sets
//! only the annotation runs with the profile kubelet picks for an unset one. Static pods skip the API server, so
//! [`Source::Static`] applies only the defaulting kubelet's own static-pod path does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value, json};

use crate::Error;

/// Where the pod comes from, which decides the API-side mutations it went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Created through the API server: defaulting plus mutating admission (ServiceAccount).
    ApiServer,
    /// A static pod read from the kubelet's manifest dir: no API server, no admission.
    Static,
}

/// The pod after API-side mutation, as kubelet receives it.
#[derive(Clone, Debug)]
pub struct PodManifest {
    pub pod: Pod,
    /// The volumes as JSON, because `k8s-openapi` no longer models every in-tree volume
    /// type the PSA fixtures use (for example `scaleIO`), and a dropped source would turn
    /// into an emptyDir by defaulting.
    pub volumes: Vec<Volume>,
}

/// One pod volume: its name and the key of its source (`emptyDir`, `hostPath`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub source: String,
    pub spec: Value,
}

/// The annotation key prefix the API server syncs into the container's AppArmor field (pod
/// strategy `applyAppArmorVersionSkew`).
const APPARMOR_CONTAINER_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
/// Where the ServiceAccount admission plugin mounts the token volume.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// API default for `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Parse `yaml` (one Pod) and apply the API-side mutations for `source`.
pub fn load(yaml: &str, source: Source) -> Result<PodManifest, Error> {
    let mut raw: Value = serde_yaml::from_str(yaml).map_err(Error::ParseYaml)?;
    if raw.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err(Error::NotAPod);
    }
    default_pod(&mut raw, source);
    let volumes = raw
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vols| vols.iter().filter_map(volume_from_json).collect())
        .unwrap_or_default();
    let pod: Pod = serde_json::from_value(raw).map_err(Error::ParsePod)?;
    Ok(PodManifest { pod, volumes })
}

fn volume_from_json(v: &Value) -> Option<Volume> {
    let obj = v.as_object()?;
    let name = obj.get("name")?.as_str()?.to_string();
    let (source, spec) = obj.iter().find(|(k, _)| k.as_str() != "name")?;
    Some(Volume {
        name,
        source: source.clone(),
        spec: spec.clone(),
    })
}

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

/// Get or create the object at `key` inside `parent`.
fn child<'a>(parent: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let entry = parent.entry(key.to_string()).or_insert_with(|| json!({}));
    if entry.is_null() {
        *entry = json!({});
    }
    entry.as_object_mut()
}

fn default_pod(raw: &mut Value, source: Source) {
    let Some(pod) = obj(raw) else { return };
    let annotations: BTreeMap<String, String> = pod
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(meta) = child(pod, "metadata") {
        meta.entry("namespace").or_insert_with(|| json!("default"));
    }
    let Some(spec) = child(pod, "spec") else {
        return;
    };

    // SetDefaults_Volume: a volume without a source is an emptyDir.
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(|v| v.as_object_mut()) {
            if v.keys().all(|k| k == "name") {
                v.insert("emptyDir".into(), json!({}));
            }
        }
    }

    if source == Source::ApiServer {
        sync_apparmor_annotations(spec, &annotations);
        add_service_account_volume(spec);
    }

    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(|c| c.as_object_mut()) {
                c.entry("terminationMessagePath")
                    .or_insert_with(|| json!(DEFAULT_TERMINATION_MESSAGE_PATH));
            }
        }
    }
}

/// `ApparmorFieldForAnnotation`, keeping only what `ValidateAppArmorProfileField` accepts
/// (a Localhost profile needs a name): an invalid annotation is not copied.
fn apparmor_from_annotation(value: &str) -> Option<Value> {
    match value {
        "runtime/default" => Some(json!({"type": "RuntimeDefault"})),
        "unconfined" => Some(json!({"type": "Unconfined"})),
        _ => value
            .strip_prefix("localhost/")
            .filter(|p| !p.is_empty())
            .map(|p| json!({"type": "Localhost", "localhostProfile": p})),
    }
}

/// Fill a missing `securityContext.<field>` of each named container from its annotation,
/// unless the profile equals `pod_profile` (AppArmor: the pod-level one then applies anyway).
fn sync_container_annotations(
    spec: &mut Map<String, Value>,
    annotations: &BTreeMap<String, String>,
    prefix: &str,
    field: &str,
    convert: fn(&str) -> Option<Value>,
    pod_profile: Option<&Value>,
) {
    let pod_profile = pod_profile.cloned();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(|c| c.as_object_mut()) {
            let Some(name) = c.get("name").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            let Some(profile) = annotations
                .get(&format!("{prefix}{name}"))
                .and_then(|v| convert(v))
                .filter(|p| Some(p) != pod_profile.as_ref())
            else {
                continue;
            };
            if let Some(sc) = child(c, "securityContext") {
                sc.entry(field.to_string()).or_insert(profile);
            }
        }
    }
}

/// `applyAppArmorVersionSkew` (kubernetes pkg/api/pod/util.go): a container annotation
/// becomes the container's field when that is unset, the annotation is valid and it differs
/// from the pod-level profile.
fn sync_apparmor_annotations(
    spec: &mut Map<String, Value>,
    annotations: &BTreeMap<String, String>,
) {
    let pod_profile = spec
        .get("securityContext")
        .and_then(|sc| sc.get("appArmorProfile"))
        .cloned();
    sync_container_annotations(
        spec,
        annotations,
        APPARMOR_CONTAINER_PREFIX,
        "appArmorProfile",
        apparmor_from_annotation,
        pod_profile.as_ref(),
    );
}

/// The ServiceAccount admission plugin: a projected `kube-api-access-*` volume with the
/// token, the cluster CA and the namespace, mounted read-only into every init and app
/// container (not ephemeral ones), unless `automountServiceAccountToken: false`.
fn add_service_account_volume(spec: &mut Map<String, Value>) {
    if spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)) {
        return;
    }
    let name = "kube-api-access-pssgt";
    let volume = json!({
        "name": name,
        "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
        ]}
    });
    match spec.get_mut("volumes").and_then(Value::as_array_mut) {
        Some(vols) => vols.push(volume),
        None => {
            spec.insert("volumes".into(), json!([volume]));
        }
    }
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(|c| c.as_object_mut()) {
            let mount = json!({"name": name, "mountPath": SERVICE_ACCOUNT_MOUNT, "readOnly": true});
            let entry = c
                .entry("volumeMounts".to_string())
                .or_insert_with(|| json!([]));
            if let Some(mounts) = entry.as_array_mut() {
                let taken = mounts.iter().any(|m| {
                    m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT)
                });
                if !taken {
                    mounts.push(mount);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    seccomp.security.alpha.kubernetes.io/pod: unconfined
    container.apparmor.security.beta.kubernetes.io/c: localhost/prof
spec:
  containers:
  - name: c
    image: registry.k8s.io/pause
  volumes:
  - name: nosource
  - name: sio
    scaleIO: {gateway: g, system: s, secretRef: {name: x}}
"#;

    #[test]
    fn api_pod_gets_defaults_and_token() {
        let m = load(POD, Source::ApiServer).unwrap();
        let spec = m.pod.spec.unwrap();
        assert_eq!(m.pod.metadata.namespace.as_deref(), Some("default"));
        let sources: Vec<_> = m.volumes.iter().map(|v| v.source.as_str()).collect();
        assert_eq!(sources, ["emptyDir", "scaleIO", "projected"]);
        // The seccomp annotation is not copied (Kubernetes 1.27+).
        assert!(
            spec.security_context
                .and_then(|s| s.seccomp_profile)
                .is_none()
        );
        let c = &spec.containers[0];
        let aa = c
            .security_context
            .clone()
            .unwrap()
            .app_armor_profile
            .unwrap();
        assert_eq!(aa.localhost_profile.as_deref(), Some("prof"));
        let mounts = c.volume_mounts.clone().unwrap();
        assert_eq!(mounts[0].mount_path, SERVICE_ACCOUNT_MOUNT);
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some(DEFAULT_TERMINATION_MESSAGE_PATH)
        );
    }

    #[test]
    fn static_pod_gets_no_token_and_no_sync() {
        let m = load(POD, Source::Static).unwrap();
        let spec = m.pod.spec.unwrap();
        assert!(spec.security_context.is_none());
        assert_eq!(m.volumes.len(), 2);
    }

    #[test]
    fn apparmor_annotation_sync_skips_invalid_and_pod_level_profiles() {
        let pod = |annotations: &str, pod_sc: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {annotations}\n\
                 spec:\n  securityContext: {pod_sc}\n  containers:\n  - {{name: c, image: i}}\n  - {{name: d, image: i}}\n"
            )
        };
        let field = |yaml: &str, i: usize| {
            let m = load(yaml, Source::ApiServer).unwrap();
            m.pod.spec.unwrap().containers[i]
                .security_context
                .clone()
                .and_then(|sc| sc.app_armor_profile)
                .map(|p| p.type_)
        };
        let key = APPARMOR_CONTAINER_PREFIX;
        // Copied to the named container only.
        let y = pod(&format!("{{{key}c: unconfined}}"), "{}");
        assert_eq!(field(&y, 0).as_deref(), Some("Unconfined"));
        assert_eq!(field(&y, 1), None);
        // Same as the pod-level profile: not copied.
        let y = pod(
            &format!("{{{key}c: unconfined}}"),
            "{appArmorProfile: {type: Unconfined}}",
        );
        assert_eq!(field(&y, 0), None);
        // Invalid values (unknown, Localhost without a name): not copied.
        let y = pod(&format!("{{{key}c: bogus, {key}d: localhost/}}"), "{}");
        assert_eq!((field(&y, 0), field(&y, 1)), (None, None));
    }

    #[test]
    fn non_pod_is_rejected() {
        assert!(matches!(
            load("kind: Deployment\n", Source::Static),
            Err(Error::NotAPod)
        ));
    }
}
