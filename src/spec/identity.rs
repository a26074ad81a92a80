//! Who a container is (pod namespace, name, uid, container name, image), read only from
//! metadata the runtime itself sets, never from anything a pod author can write.
//!
//! containerd sets `io.kubernetes.cri.*` after copying any passthrough pod annotations
//! (`pod_annotations`), so its values win. CRI-O (`internal/factory/container/container.go`,
//! `SpecAddAnnotations`) first copies the sandbox's annotations, which are the pod author's,
//! then sets its own keys (`io.kubernetes.cri-o.Labels`, `.SandboxID`, `.ContainerType`,
//! `.ImageName`, ...), then the container's CRI annotations and labels, which kubelet alone
//! writes (`newContainerAnnotations`, `newContainerLabels`: the termination grace period, the
//! container hash, the pod's name, namespace and uid). So CRI-O's own keys win over any pod
//! annotation of the same name, and the identity comes from the labels kubelet set on the
//! container (`io.kubernetes.cri-o.Labels`). `io.kubernetes.cri-o.Annotations` holds the
//! container's kubelet-set annotations, `io.kubernetes.pod.terminationGracePeriod` among them,
//! and says nothing about forgery. Which runtime built the spec comes from the hook's arguments
//! (containerd) or the bundle's location (CRI-O), never from the spec.

use std::collections::HashMap;

use super::raw::RawSpec;

/// The runtime family that built the spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    /// Plain runc bundles, podman: no Kubernetes identity is trusted.
    #[default]
    None,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::None => "none",
        }
    }

    /// Where this runtime records the pod uid, for messages.
    pub fn pod_uid_key(self) -> &'static str {
        match self {
            Runtime::Containerd => keys::CRI_SANDBOX_UID,
            Runtime::CriO => "io.kubernetes.pod.uid in io.kubernetes.cri-o.Labels",
            Runtime::None => "pod uid",
        }
    }
}

impl std::str::FromStr for Runtime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "containerd" => Ok(Runtime::Containerd),
            "cri-o" => Ok(Runtime::CriO),
            "none" => Ok(Runtime::None),
            _ => Err(format!(
                "unknown runtime {s:?} (expected containerd, cri-o or none)"
            )),
        }
    }
}

pub mod keys {
    pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const CRI_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const CRI_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const CRI_SANDBOX_LOG_DIRECTORY: &str = "io.kubernetes.cri.sandbox-log-directory";
    pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

    pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
    pub const CRIO_SANDBOX_ID: &str = "io.kubernetes.cri-o.SandboxID";
    pub const CRIO_LABELS: &str = "io.kubernetes.cri-o.Labels";
    pub const CRIO_IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";

    /// kubelet's CRI labels on every container (`newContainerLabels`).
    pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
    pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
    pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

/// A container's Kubernetes identity, as the runtime recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kube {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: Option<String>,
    pub container: String,
    pub sandbox_id: String,
    pub image: Option<String>,
    /// `sandbox` for a pod's pause container, `container` otherwise.
    pub is_sandbox: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The OCI container ID (state `id`).
    pub container_id: String,
    /// The runtime whose metadata the identity was read from.
    pub runtime: Runtime,
    pub kube: Option<Kube>,
    /// Why the container has no Kubernetes identity although it looked like it might.
    pub note: Option<String>,
}

impl Identity {
    /// The identity of a container whose spec was not read: its metadata is unknown, not
    /// absent, so it earns no exemption that needs metadata to be absent (THREAT-MODEL row 12).
    pub fn unread(container_id: &str) -> Identity {
        Identity {
            container_id: container_id.to_owned(),
            note: Some("its spec was not read: its metadata is unknown".to_owned()),
            ..Identity::default()
        }
    }

    pub fn sandbox_id(&self) -> Option<&str> {
        self.kube.as_ref().map(|k| k.sandbox_id.as_str())
    }

    /// `container "app"` in messages: the Kubernetes name, or the OCI ID.
    pub fn container_name(&self) -> &str {
        match &self.kube {
            Some(k) => &k.container,
            None => &self.container_id,
        }
    }
}

pub fn identify(runtime: Runtime, container_id: &str, spec: &RawSpec) -> Identity {
    let mut id = Identity {
        container_id: container_id.to_owned(),
        runtime,
        ..Identity::default()
    };
    match runtime {
        Runtime::Containerd => id.kube = containerd(spec),
        Runtime::CriO => match crio(spec) {
            Ok(k) => id.kube = k,
            Err(note) => id.note = Some(note),
        },
        Runtime::None => {}
    }
    id
}

fn containerd(spec: &RawSpec) -> Option<Kube> {
    use keys::*;
    Some(Kube {
        namespace: spec.annotation(CRI_SANDBOX_NAMESPACE)?.to_owned(),
        pod: spec.annotation(CRI_SANDBOX_NAME)?.to_owned(),
        pod_uid: spec.annotation(CRI_SANDBOX_UID).map(str::to_owned),
        container: match spec.annotation(CRI_CONTAINER_TYPE)? {
            "sandbox" => "POD".to_owned(),
            _ => spec.annotation(CRI_CONTAINER_NAME)?.to_owned(),
        },
        sandbox_id: spec.annotation(CRI_SANDBOX_ID)?.to_owned(),
        image: spec.annotation(CRI_IMAGE_NAME).map(str::to_owned),
        is_sandbox: spec.annotation(CRI_CONTAINER_TYPE)? == "sandbox",
    })
}

fn crio(spec: &RawSpec) -> Result<Option<Kube>, String> {
    use keys::*;
    let Some(raw) = spec.annotation(CRIO_LABELS) else {
        return Ok(None);
    };
    let labels: HashMap<String, String> = serde_json::from_str(raw)
        .map_err(|_| format!("{CRIO_LABELS} is not a JSON object of strings"))?;
    let get = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    let is_sandbox = spec.annotation(CRIO_CONTAINER_TYPE) == Some("sandbox");
    let (Some(namespace), Some(pod), Some(sandbox_id)) = (
        get(LABEL_POD_NAMESPACE),
        get(LABEL_POD_NAME),
        spec.annotation(CRIO_SANDBOX_ID).map(str::to_owned),
    ) else {
        return Ok(None);
    };
    let container = if is_sandbox {
        "POD".to_owned()
    } else {
        match get(LABEL_CONTAINER_NAME) {
            Some(c) => c,
            None => return Ok(None),
        }
    };
    Ok(Some(Kube {
        namespace,
        pod,
        pod_uid: get(LABEL_POD_UID),
        container,
        sandbox_id,
        image: spec.annotation(CRIO_IMAGE_NAME).map(str::to_owned),
        is_sandbox,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pairs: &[(&str, &str)]) -> RawSpec {
        RawSpec {
            annotations: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..RawSpec::default()
        }
    }

    fn containerd_app(ns: &str) -> RawSpec {
        use keys::*;
        spec(&[
            (CRI_CONTAINER_TYPE, "container"),
            (CRI_SANDBOX_ID, "sb1"),
            (CRI_SANDBOX_NAME, "web"),
            (CRI_SANDBOX_NAMESPACE, ns),
            (CRI_SANDBOX_UID, "uid-1"),
            (CRI_CONTAINER_NAME, "app"),
            (CRI_IMAGE_NAME, "docker.io/library/nginx:1"),
        ])
    }

    #[test]
    fn containerd_annotations_identify_the_pod() {
        let id = identify(Runtime::Containerd, "c1", &containerd_app("default"));
        let k = id.kube.unwrap();
        assert_eq!((k.namespace.as_str(), k.pod.as_str()), ("default", "web"));
        assert_eq!(k.container, "app");
        assert_eq!(k.pod_uid.as_deref(), Some("uid-1"));
        assert!(!k.is_sandbox);
    }

    #[test]
    fn containerd_keys_mean_nothing_to_other_runtimes() {
        for rt in [Runtime::None, Runtime::CriO] {
            let id = identify(rt, "c1", &containerd_app("kube-system"));
            assert_eq!(id.kube, None, "{rt:?}");
        }
    }

    #[test]
    fn incomplete_containerd_metadata_is_unidentified() {
        use keys::*;
        let s = spec(&[(CRI_SANDBOX_NAMESPACE, "kube-system")]);
        assert_eq!(identify(Runtime::Containerd, "c1", &s).kube, None);
    }

    #[test]
    fn crio_identity_comes_from_kubelet_labels() {
        use keys::*;
        let labels = r#"{"io.kubernetes.pod.namespace":"default","io.kubernetes.pod.name":"web","io.kubernetes.pod.uid":"u","io.kubernetes.container.name":"app"}"#;
        let s = spec(&[
            (CRIO_LABELS, labels),
            (CRIO_SANDBOX_ID, "sb"),
            (CRIO_CONTAINER_TYPE, "container"),
            // A pod annotation copied to the top level, imitating containerd: ignored.
            (CRI_SANDBOX_NAMESPACE, "kube-system"),
        ]);
        let k = identify(Runtime::CriO, "c1", &s).kube.unwrap();
        assert_eq!(k.namespace, "default");
        assert_eq!(k.container, "app");
    }

    /// A CRI-O container's annotations in `SpecAddAnnotations`' order: the sandbox's (the pod
    /// author's) first, then CRI-O's own keys, then kubelet's container annotations; a later
    /// write of a key replaces an earlier one, as in the Go map CRI-O fills.
    fn crio_spec(pod: &[(&str, &str)], crio: &[(&str, &str)], kubelet: &[(&str, &str)]) -> RawSpec {
        let mut all: Vec<(&str, &str)> = pod.to_vec();
        all.extend_from_slice(crio);
        all.extend_from_slice(kubelet);
        spec(&all)
    }

    #[test]
    fn crio_own_keys_win_over_forged_pod_annotations() {
        use keys::*;
        let forged = r#"{"io.kubernetes.pod.namespace":"kube-system","io.kubernetes.pod.name":"x","io.kubernetes.container.name":"x"}"#;
        let real = r#"{"io.kubernetes.pod.namespace":"default","io.kubernetes.pod.name":"web","io.kubernetes.pod.uid":"u","io.kubernetes.container.name":"app"}"#;
        let s = crio_spec(
            &[
                (CRIO_LABELS, forged),
                (CRIO_SANDBOX_ID, "forged"),
                (CRIO_CONTAINER_TYPE, "sandbox"),
            ],
            &[
                (CRIO_LABELS, real),
                (CRIO_SANDBOX_ID, "sb"),
                (CRIO_CONTAINER_TYPE, "container"),
                (
                    "io.kubernetes.cri-o.Annotations",
                    r#"{"io.kubernetes.pod.terminationGracePeriod":"30"}"#,
                ),
            ],
            &[
                ("io.kubernetes.pod.terminationGracePeriod", "30"),
                ("io.kubernetes.container.hash", "1"),
            ],
        );
        let k = identify(Runtime::CriO, "c1", &s).kube.unwrap();
        assert_eq!(
            (k.namespace.as_str(), k.pod.as_str(), k.container.as_str()),
            ("default", "web", "app")
        );
        assert_eq!(k.sandbox_id, "sb");
        assert!(!k.is_sandbox);
    }

    #[test]
    fn crio_kubelet_grace_period_keeps_the_identity() {
        use keys::*;
        let labels = r#"{"io.kubernetes.pod.namespace":"kube-system","io.kubernetes.pod.name":"coredns","io.kubernetes.container.name":"coredns"}"#;
        let s = crio_spec(
            &[],
            &[
                (CRIO_LABELS, labels),
                (CRIO_SANDBOX_ID, "sb"),
                (
                    "io.kubernetes.cri-o.Annotations",
                    r#"{"io.kubernetes.pod.terminationGracePeriod":"30","io.kubernetes.container.restartCount":"0"}"#,
                ),
            ],
            &[("io.kubernetes.pod.terminationGracePeriod", "30")],
        );
        let id = identify(Runtime::CriO, "c1", &s);
        assert_eq!(id.kube.unwrap().namespace, "kube-system");
        assert_eq!(id.note, None);
    }

    #[test]
    fn crio_malformed_labels_are_a_note_not_an_identity() {
        use keys::*;
        let s = spec(&[(CRIO_LABELS, "{not json"), (CRIO_SANDBOX_ID, "sb")]);
        let id = identify(Runtime::CriO, "c1", &s);
        assert_eq!(id.kube, None);
        assert!(id.note.unwrap().contains("not a JSON object"));
    }
}
