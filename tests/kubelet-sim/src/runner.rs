//! The CRI conversation: kuberuntime `SyncPod` order (sandbox, init containers one at a
//! time, then app containers), ephemeral containers into a running sandbox, and teardown.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};
use serde::Serialize;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Error;
use crate::manifest::PodManifest;
use crate::translate::{self, ImageUser, PodInfo};
use crate::volumes;

/// How the simulated kubelet is configured (the flags and config fields that matter here).
#[derive(Clone, Debug)]
pub struct Options {
    /// `--root-dir`; tests use one under the node dir, never /var/lib/kubelet.
    pub kubelet_root: PathBuf,
    /// `--pod-logs-dir` equivalent (kubelet: /var/log/pods).
    pub pod_log_root: PathBuf,
    /// Overrides `runtimeClassName` (RuntimeClass → handler is identity otherwise).
    pub runtime_handler: Option<String>,
    /// KubeletConfiguration `seccompDefault`.
    pub seccomp_default: bool,
    /// Whether the host kernel has AppArmor (see translate::apparmor_profile).
    pub host_supports_apparmor: bool,
    /// `--allowed-unsafe-sysctls`.
    pub allowed_unsafe_sysctls: Vec<String>,
    /// What happens to `hostUsers: false`: containerd 1.6 and 1.7 have no pod user namespaces
    /// (Refuse / Ignore); containerd 2.x with runc 1.2+ has them (Pod).
    pub user_namespaces: UserNamespaces,
    /// The pid of a process in the runtime's mount namespace, when it is not kubelet-sim's
    /// (a node whose containerd runs in a Debian tree): subPath binds are made there, as
    /// kubelet's are in the mount namespace it shares with the runtime. None: our own.
    pub mount_ns_pid: Option<u32>,
    /// How long to wait for an init container to exit before stopping it (the test images
    /// sleep forever; what matters is that the init container was allowed to start).
    pub init_timeout: Duration,
    /// A stand-in for the host's filesystem that hostPath volumes resolve under (kubelet resolves
    /// them against the host's `/`), so that pods made for real nodes (`/var/lib/kubelet`,
    /// `/etc/cni/net.d`, `/var/run/...`) touch nothing outside the test node; `/proc` and `/dev`
    /// stay the kernel's (volumes::host_path_on_node). None: the host paths themselves.
    pub host_path_root: Option<PathBuf>,
}

impl Options {
    pub fn new(kubelet_root: impl Into<PathBuf>) -> Self {
        let kubelet_root = kubelet_root.into();
        Options {
            pod_log_root: kubelet_root.join("pod-logs"),
            kubelet_root,
            runtime_handler: None,
            seccomp_default: false,
            host_supports_apparmor: Path::new("/sys/module/apparmor/parameters/enabled").exists(),
            allowed_unsafe_sysctls: Vec::new(),
            user_namespaces: UserNamespaces::Refuse,
            init_timeout: Duration::from_secs(10),
            mount_ns_pid: None,
            host_path_root: None,
        }
    }
}

/// How `hostUsers: false` is handled on a runtime without pod user namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserNamespaces {
    /// kubelet ≥1.33 (UserNamespacesSupport on): the handler reports no support, the pod is
    /// refused (CreatePodSandboxError).
    Refuse,
    /// kubelet/API server with UserNamespacesSupport off (default before 1.33): the field is
    /// dropped and the pod runs in the host user namespace.
    Ignore,
    /// A runtime with user namespaces (containerd 2.x + runc 1.3): the pod gets one of its
    /// own, CRI `userns_options` mode POD with a 65536-id mapping
    /// (translate::user_namespace).
    Pod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKind {
    Init,
    App,
    Ephemeral,
}

/// The pod's volumes some container mounts or uses as a device: kubelet's volume manager
/// sets up only those (desired_state_of_world_populator: "Skipping unused volume"), so a
/// volume declared and never mounted leaves nothing on the node.
fn used_volumes(spec: &PodSpec, all: &[crate::manifest::Volume]) -> Vec<crate::manifest::Volume> {
    let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        names.extend(c.volume_mounts.iter().flatten().map(|m| m.name.clone()));
        names.extend(c.volume_devices.iter().flatten().map(|d| d.name.clone()));
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        names.extend(c.volume_mounts.iter().flatten().map(|m| m.name.clone()));
        names.extend(c.volume_devices.iter().flatten().map(|d| d.name.clone()));
    }
    all.iter()
        .filter(|v| names.contains(&v.name))
        .cloned()
        .collect()
}

/// What happened to one container.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerRun {
    pub name: String,
    pub kind: ContainerKind,
    pub container_id: Option<String>,
    pub created: bool,
    pub started: bool,
    /// kubelet's waiting reason when it failed: CreateContainerConfigError,
    /// CreateContainerError, RunContainerError, ErrImageNeverPull.
    pub reason: Option<String>,
    /// The runtime's (or kubelet's) message, verbatim: what `kubectl describe` shows.
    pub error: Option<String>,
    /// CRI state after start (CONTAINER_RUNNING, CONTAINER_EXITED, ...).
    pub state: Option<String>,
    /// Set when kubelet-sim stopped a still-running init container after init_timeout.
    pub note: Option<String>,
}

impl ContainerRun {
    fn new(name: &str, kind: ContainerKind) -> Self {
        ContainerRun {
            name: name.to_string(),
            kind,
            container_id: None,
            created: false,
            started: false,
            reason: None,
            error: None,
            state: None,
            note: None,
        }
    }

    fn fail(mut self, reason: &str, error: String) -> Self {
        self.reason = Some(reason.to_string());
        self.error = Some(error);
        self
    }
}

/// What happened to one pod.
#[derive(Clone, Debug, Serialize)]
pub struct PodRun {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub sandbox_id: Option<String>,
    /// The pod never reached the runtime: kubelet admission or volume set-up refused it.
    pub kubelet_error: Option<String>,
    /// RunPodSandbox failed (the sandbox never runs the hook).
    pub sandbox_error: Option<String>,
    pub containers: Vec<ContainerRun>,
}

impl PodRun {
    /// Every container the pod declared was started.
    pub fn all_started(&self, expected: usize) -> bool {
        self.kubelet_error.is_none()
            && self.sandbox_error.is_none()
            && self.containers.len() == expected
            && self.containers.iter().all(|c| c.started)
    }

    /// All error messages, pod-level first.
    pub fn errors(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .kubelet_error
            .iter()
            .chain(self.sandbox_error.iter())
            .map(String::as_str)
            .collect();
        out.extend(self.containers.iter().filter_map(|c| c.error.as_deref()));
        out
    }
}

/// Everything needed to create a container in a running sandbox.
struct PodContext<'a> {
    info: PodInfo,
    spec: &'a PodSpec,
    /// The pod's annotations (kubelet reads the AppArmor one itself).
    annotations: &'a BTreeMap<String, String>,
    sandbox_id: String,
    sandbox_config: cri::PodSandboxConfig,
    volume_paths: BTreeMap<String, PathBuf>,
}

/// A connection to the runtime plus the simulated kubelet's configuration.
pub struct Kubelet {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    opts: Options,
}

static NO_ANNOTATIONS: BTreeMap<String, String> = BTreeMap::new();

const SECCOMP_ALLOW_ALL: &str = "{\"defaultAction\": \"SCMP_ACT_ALLOW\"}\n";

impl Kubelet {
    /// Connect to the CRI socket at `socket`.
    pub async fn connect(socket: &Path, opts: Options) -> Result<Self, Error> {
        let path = socket.to_path_buf();
        let channel =
            Endpoint::try_from("http://[::]:50051")
                .map_err(|e| Error::Connect(path.clone(), e))?
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|e| Error::Connect(socket.to_path_buf(), e))?;
        Ok(Kubelet {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            opts,
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Run a pod as kubelet's `SyncPod` would on its first sync.
    pub async fn run_pod(&mut self, m: &PodManifest) -> Result<PodRun, Error> {
        let spec = m.pod.spec.as_ref().ok_or(Error::NoSpec)?;
        let name = m.pod.metadata.name.clone().unwrap_or_else(|| "pod".into());
        let namespace = m
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let uid = m.pod.metadata.uid.clone().unwrap_or_else(new_uid);
        let mut run = PodRun {
            name: name.clone(),
            namespace: namespace.clone(),
            uid: uid.clone(),
            sandbox_id: None,
            kubelet_error: None,
            sandbox_error: None,
            containers: Vec::new(),
        };

        // Pod admission (lifecycle handlers): the node OS, then the sysctl allowlist.
        if let Some(os) = spec
            .os
            .as_ref()
            .map(|o| o.name.as_str())
            .filter(|os| *os != "linux")
        {
            run.kubelet_error = Some(format!(
                "PodOSNotSupported: Failed to admit pod as the OS field doesn't match node OS (pod OS {os:?}, node OS \"linux\")"
            ));
            return Ok(run);
        }
        if spec.host_users == Some(false) && self.opts.user_namespaces == UserNamespaces::Refuse {
            run.kubelet_error = Some(format!(
                "CreatePodSandboxError: RuntimeHandler {:?} does not support user namespaces",
                self.handler(spec)
            ));
            return Ok(run);
        }
        if let Some(s) = translate::forbidden_sysctl(spec, &self.opts.allowed_unsafe_sysctls) {
            run.kubelet_error = Some(format!(
                "SysctlForbidden: forbidden sysctl: \"{s}\" not allowlisted"
            ));
            return Ok(run);
        }
        let pod_dir = volumes::pod_dir(&self.opts.kubelet_root, &uid);
        fs::create_dir_all(&pod_dir).map_err(|e| Error::Io(pod_dir.clone(), e))?;
        let used = used_volumes(spec, &m.volumes);
        let volume_paths = match volumes::setup(
            &self.opts.kubelet_root,
            self.opts.host_path_root.as_deref(),
            &uid,
            &used,
        ) {
            Ok(p) => p,
            Err(e) => {
                run.kubelet_error = Some(format!("FailedMount: {}", chain(&e)));
                return Ok(run);
            }
        };
        self.write_localhost_seccomp_profiles(spec)?;

        let info = self.pod_info(&name, &namespace, &uid, spec);
        fs::create_dir_all(&info.log_dir)
            .map_err(|e| Error::Io(PathBuf::from(&info.log_dir), e))?;
        let sandbox_config = translate::sandbox_config(&m.pod, spec, &info, &self.opts);
        let handler = self.handler(spec);
        let resp = self
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: handler,
            })
            .await;
        let sandbox_id = match resp {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(status) => {
                run.sandbox_error = Some(status.message().to_string());
                return Ok(run);
            }
        };
        run.sandbox_id = Some(sandbox_id.clone());

        let ip = self.sandbox_ip(&sandbox_id).await?;
        volumes::write_etc_hosts(&self.opts.kubelet_root, &uid, &info.hostname, &ip)?;
        let ctx = PodContext {
            info,
            spec,
            annotations: m
                .pod
                .metadata
                .annotations
                .as_ref()
                .unwrap_or(&NO_ANNOTATIONS),
            sandbox_id,
            sandbox_config,
            volume_paths,
        };

        // Init containers run one at a time, each to completion; a failed one blocks the
        // rest of the pod (kuberuntime computePodActions).
        for c in spec.init_containers.iter().flatten() {
            let mut cr = self
                .start_container(&ctx, c, ContainerKind::Init, None)
                .await?;
            // A restartable (sidecar) init container keeps running next to the app
            // containers: kubelet only waits for it to start.
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            if cr.started && !sidecar {
                self.finish_init_container(&mut cr).await?;
            }
            let ok = cr.started && cr.reason.is_none();
            run.containers.push(cr);
            if !ok {
                return Ok(run);
            }
        }
        for c in &spec.containers {
            let cr = self
                .start_container(&ctx, c, ContainerKind::App, None)
                .await?;
            run.containers.push(cr);
        }
        Ok(run)
    }

    /// `kubectl debug`-style: add an ephemeral container to the running sandbox of `m`.
    pub async fn run_ephemeral(
        &mut self,
        m: &PodManifest,
        sandbox_id: &str,
        ec: &EphemeralContainer,
    ) -> Result<ContainerRun, Error> {
        let spec = m.pod.spec.as_ref().ok_or(Error::NoSpec)?;
        let status = self.sandbox_status(sandbox_id).await?;
        let meta = status.metadata.unwrap_or_default();
        // The new ephemeral container's mounts count as used too.
        let mut with_ec = spec.clone();
        with_ec
            .ephemeral_containers
            .get_or_insert_with(Vec::new)
            .push(ec.clone());
        let used = used_volumes(&with_ec, &m.volumes);
        let volume_paths = volumes::setup(
            &self.opts.kubelet_root,
            self.opts.host_path_root.as_deref(),
            &meta.uid,
            &used,
        )?;
        let info = self.pod_info(&meta.name, &meta.namespace, &meta.uid, spec);
        let sandbox_config = translate::sandbox_config(&m.pod, spec, &info, &self.opts);
        let ctx = PodContext {
            info,
            spec,
            annotations: m
                .pod
                .metadata
                .annotations
                .as_ref()
                .unwrap_or(&NO_ANNOTATIONS),
            sandbox_id: sandbox_id.to_string(),
            sandbox_config,
            volume_paths,
        };
        // An EphemeralContainer carries a Container's fields (EphemeralContainerCommon).
        let value = serde_json::to_value(ec).map_err(Error::ParsePod)?;
        let c: Container = serde_json::from_value(value).map_err(Error::ParsePod)?;
        let target = match &ec.target_container_name {
            Some(t) => Some(self.container_id(sandbox_id, t).await?),
            None => None,
        };
        self.start_container(&ctx, &c, ContainerKind::Ephemeral, target.as_deref())
            .await
    }

    /// StopPodSandbox + RemovePodSandbox, then kubelet's cleanup of the pod directory.
    pub async fn stop_pod(&mut self, sandbox_id: &str) -> Result<(), Error> {
        let meta = self
            .sandbox_status(sandbox_id)
            .await?
            .metadata
            .unwrap_or_default();
        self.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_string(),
            })
            .await
            .map_err(|s| Error::Cri("StopPodSandbox", s))?;
        self.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_string(),
            })
            .await
            .map_err(|s| Error::Cri("RemovePodSandbox", s))?;
        if !meta.uid.is_empty() {
            volumes::cleanup(&self.opts.kubelet_root, &meta.uid, self.opts.mount_ns_pid)?;
            let logs = self.log_dir(&meta.namespace, &meta.name, &meta.uid);
            if logs.exists() {
                fs::remove_dir_all(&logs).map_err(|e| Error::Io(logs.clone(), e))?;
            }
        }
        Ok(())
    }

    /// Remove every sandbox the runtime knows (test teardown).
    pub async fn stop_all(&mut self) -> Result<usize, Error> {
        let list = self
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(|s| Error::Cri("ListPodSandbox", s))?
            .into_inner()
            .items;
        for s in &list {
            self.stop_pod(&s.id).await?;
        }
        Ok(list.len())
    }

    /// ContainerStatus of one container.
    pub async fn container_status(&mut self, id: &str) -> Result<cri::ContainerStatus, Error> {
        Ok(self
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .map_err(|s| Error::Cri("ContainerStatus", s))?
            .into_inner()
            .status
            .unwrap_or_default())
    }

    /// The RuntimeClass handler: the override, else runtimeClassName, else the default.
    fn handler(&self, spec: &PodSpec) -> String {
        self.opts
            .runtime_handler
            .clone()
            .or_else(|| spec.runtime_class_name.clone())
            .unwrap_or_default()
    }

    fn log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.opts
            .pod_log_root
            .join(format!("{namespace}_{name}_{uid}"))
    }

    fn pod_info(&self, name: &str, namespace: &str, uid: &str, spec: &PodSpec) -> PodInfo {
        // GeneratePodHostNameAndDomain: spec.hostname, else the pod name, cut to 63 bytes.
        let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.to_string());
        hostname.truncate(63);
        PodInfo {
            name: name.to_string(),
            namespace: namespace.to_string(),
            uid: uid.to_string(),
            hostname,
            log_dir: self.log_dir(namespace, name, uid).display().to_string(),
        }
    }

    /// Localhost seccomp profiles must exist under `<root>/seccomp` or containerd refuses the
    /// container; stand in for the operator with an allow-all profile.
    fn write_localhost_seccomp_profiles(&self, spec: &PodSpec) -> Result<(), Error> {
        let mut names: Vec<String> = Vec::new();
        let pod = spec
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref());
        names.extend(pod.and_then(|p| p.localhost_profile.clone()));
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in containers {
            let p = c
                .security_context
                .as_ref()
                .and_then(|s| s.seccomp_profile.as_ref());
            names.extend(p.and_then(|p| p.localhost_profile.clone()));
        }
        for name in names {
            let path = self.opts.kubelet_root.join("seccomp").join(&name);
            if path.exists() || name.contains("..") {
                continue;
            }
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| Error::Io(dir.to_path_buf(), e))?;
            }
            fs::write(&path, SECCOMP_ALLOW_ALL).map_err(|e| Error::Io(path.clone(), e))?;
        }
        Ok(())
    }

    async fn sandbox_status(&mut self, id: &str) -> Result<cri::PodSandboxStatus, Error> {
        Ok(self
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .map_err(|s| Error::Cri("PodSandboxStatus", s))?
            .into_inner()
            .status
            .unwrap_or_default())
    }

    async fn sandbox_ip(&mut self, id: &str) -> Result<String, Error> {
        let status = self.sandbox_status(id).await?;
        Ok(status.network.map(|n| n.ip).unwrap_or_default())
    }

    async fn container_id(&mut self, sandbox_id: &str, name: &str) -> Result<String, Error> {
        let list = self
            .runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sandbox_id.to_string(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| Error::Cri("ListContainers", s))?
            .into_inner()
            .containers;
        list.into_iter()
            .find(|c| c.metadata.as_ref().map(|m| m.name.as_str()) == Some(name))
            .map(|c| c.id)
            .ok_or_else(|| Error::UnknownContainer(name.to_string()))
    }

    /// `getImageUser`; `None` when the image is not on the node (nothing can be pulled here).
    async fn image_user(&mut self, image: &str) -> Result<Option<ImageUser>, Error> {
        let img = self
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(|s| Error::Cri("ImageStatus", s))?
            .into_inner()
            .image;
        Ok(img.map(|i| ImageUser {
            uid: i.uid.map(|u| u.value),
            username: i.username,
        }))
    }

    /// kuberuntime `startContainer`: image check, config generation (which may fail with
    /// CreateContainerConfigError), CreateContainer, StartContainer.
    async fn start_container(
        &mut self,
        ctx: &PodContext<'_>,
        c: &Container,
        kind: ContainerKind,
        target: Option<&str>,
    ) -> Result<ContainerRun, Error> {
        let mut cr = ContainerRun::new(&c.name, kind);
        let image = c.image.clone().unwrap_or_default();
        let Some(user) = self.image_user(&image).await? else {
            return Ok(cr.fail(
                "ErrImageNeverPull",
                format!("image {image:?} is not present on the node and cannot be pulled"),
            ));
        };
        let eff = translate::effective_security_context(
            ctx.spec.security_context.as_ref(),
            c.security_context.as_ref(),
        );
        if let Err(msg) = translate::verify_run_as_non_root(&ctx.info.name, &c.name, &eff, &user) {
            return Ok(cr.fail("CreateContainerConfigError", msg));
        }
        let mounts = match self.make_mounts(ctx, c) {
            Ok(m) => m,
            Err(e) => return Ok(cr.fail("CreateContainerConfigError", chain(&e))),
        };
        let apparmor = translate::apparmor_request(
            ctx.annotations,
            ctx.spec.security_context.as_ref(),
            &c.name,
            c.security_context.as_ref(),
        );
        let sc = match translate::container_security_context(
            ctx.spec,
            &eff,
            apparmor.as_ref(),
            &user,
            target,
            &ctx.info.uid,
            &self.opts,
        ) {
            Ok(sc) => sc,
            Err(msg) => return Ok(cr.fail("CreateContainerConfigError", msg)),
        };
        let config = translate::container_config(&ctx.info, c, sc, mounts);
        let log_dir = Path::new(&ctx.info.log_dir).join(&c.name);
        fs::create_dir_all(&log_dir).map_err(|e| Error::Io(log_dir.clone(), e))?;

        let created = self
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: ctx.sandbox_id.clone(),
                config: Some(config),
                sandbox_config: Some(ctx.sandbox_config.clone()),
            })
            .await;
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(s) => return Ok(cr.fail("CreateContainerError", s.message().to_string())),
        };
        cr.created = true;
        cr.container_id = Some(id.clone());
        let started = self
            .runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await;
        if let Err(s) = started {
            cr = cr.fail("RunContainerError", s.message().to_string());
        } else {
            cr.started = true;
        }
        let status = self.container_status(&id).await?;
        cr.state = Some(state_name(status.state));
        Ok(cr)
    }

    /// Wait for an init container to exit; stop it after `init_timeout` (see Options).
    async fn finish_init_container(&mut self, cr: &mut ContainerRun) -> Result<(), Error> {
        let Some(id) = cr.container_id.clone() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.opts.init_timeout;
        loop {
            let st = self.container_status(&id).await?;
            if st.state == cri::ContainerState::ContainerExited as i32 {
                cr.state = Some(state_name(st.state));
                if st.exit_code != 0 {
                    cr.reason = Some("Error".into());
                    cr.error = Some(format!("init container exited with code {}", st.exit_code));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .map_err(|s| Error::Cri("StopContainer", s))?;
        cr.state = Some(state_name(self.container_status(&id).await?.state));
        cr.note =
            Some("init container still running after init_timeout; stopped by kubelet-sim".into());
        Ok(())
    }

    /// kuberuntime `makeMounts`: volume mounts (with subPath binds), then /etc/hosts and the
    /// termination-message file.
    fn make_mounts(&self, ctx: &PodContext<'_>, c: &Container) -> Result<Vec<cri::Mount>, Error> {
        let root = &self.opts.kubelet_root;
        let mut mounts = Vec::new();
        for (i, vm) in c.volume_mounts.iter().flatten().enumerate() {
            let vol = ctx
                .volume_paths
                .get(&vm.name)
                .ok_or_else(|| Error::UnknownVolume(vm.name.clone()))?;
            let host_path = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => volumes::bind_sub_path(
                    root,
                    &ctx.info.uid,
                    &vm.name,
                    vol,
                    &c.name,
                    i,
                    sub,
                    self.opts.mount_ns_pid,
                )?,
                None => vol.clone(),
            };
            let propagation = match vm.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
                _ => cri::MountPropagation::PropagationPrivate,
            };
            mounts.push(cri::Mount {
                container_path: vm.mount_path.clone(),
                host_path: host_path.display().to_string(),
                readonly: vm.read_only == Some(true),
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        // makeHostsMount: kubelet's managed /etc/hosts unless the container mounts its own.
        if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            mounts.push(cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: volumes::pod_dir(root, &ctx.info.uid)
                    .join("etc-hosts")
                    .display()
                    .to_string(),
                selinux_relabel: true,
                ..Default::default()
            });
        }
        if let Some(path) = c
            .termination_message_path
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            let file = volumes::termination_log(root, &ctx.info.uid, &c.name)?;
            mounts.push(cri::Mount {
                container_path: path.to_string(),
                host_path: file.display().to_string(),
                selinux_relabel: true,
                ..Default::default()
            });
        }
        Ok(mounts)
    }
}

fn state_name(state: i32) -> String {
    cri::ContainerState::try_from(state)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("UNKNOWN({state})"))
}

/// A random v4-style UUID, as the API server assigns.
fn new_uid() -> String {
    let a = volumes::random_u64();
    let b = volumes::random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// An error and its causes as `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
