//! Fetches a container's CRI view over containerd's socket, within a hard time budget.
//!
//! Two unary gRPC calls on one HTTP/2 connection, sent together: CRI `ContainerStatus`
//! (verbose) for the container, and containerd's `Containers/Get` for its pod's sandbox in
//! namespace `k8s.io`. Never CRI `PodSandboxStatus`: while the hook runs, the pod's shim holds
//! its lock for the whole `runc create`, and a verbose sandbox status waits on it for seconds.
//!
//! The calls run on a single-threaded tokio runtime that exists only for the lookup; the
//! budget covers connecting, both calls and reading the answers. Whatever goes wrong is an
//! [`Unavailable`] with the reason, never a panic or a wait beyond the budget.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use super::wire;
use super::{SANDBOX_EXTENSION, View};

/// containerd's namespace for everything its CRI plugin creates.
const CRI_NAMESPACE: &str = "k8s.io";
/// The most a response may hold. A verbose status carries the whole runtime spec and the CRI
/// config (whose environment, mounts and annotations repeat the spec's), so it is bounded by
/// twice the largest spec the hook reads at all, and a little: a pod cannot make the answer
/// too large to read without making its spec too large to start.
const MAX_RESPONSE_BYTES: usize = 2 * crate::spec::MAX_SPEC_BYTES + (1 << 20);

/// Why the view could not be had, in words for the decision record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The CRI view of container `container_id`, whose pod's sandbox the runtime's own metadata
/// names `sandbox_id`. The two must agree with what containerd answers.
pub fn fetch(
    socket: &Path,
    container_id: &str,
    sandbox_id: &str,
    budget: Duration,
) -> Result<View, Unavailable> {
    check_socket(socket)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Unavailable(format!("starting the lookup: {e}")))?;
    let answer = rt.block_on(async {
        tokio::time::timeout(budget, both(socket, container_id, sandbox_id)).await
    });
    // Dropping the runtime cancels whatever is still waiting on the socket.
    drop(rt);
    let (info, sandbox) = answer.map_err(|_| {
        Unavailable(format!(
            "containerd did not answer within the budget of {} ms",
            budget.as_millis()
        ))
    })??;
    let (cri_sandbox_id, container) =
        super::parse_container_info(&info).map_err(|e| Unavailable(e.to_string()))?;
    if cri_sandbox_id != sandbox_id {
        return Err(Unavailable(format!(
            "containerd places the container in sandbox {cri_sandbox_id:?}, its spec in {sandbox_id:?}"
        )));
    }
    let pod = super::parse_sandbox_metadata(&sandbox, sandbox_id)
        .map_err(|e| Unavailable(e.to_string()))?;
    Ok(View { container, pod })
}

/// Only a socket owned by root is containerd's: anything else at that path is not asked.
fn check_socket(socket: &Path) -> Result<(), Unavailable> {
    let meta = std::fs::metadata(socket)
        .map_err(|e| Unavailable(format!("containerd socket {socket:?}: {e}")))?;
    if !meta.file_type().is_socket() {
        return Err(Unavailable(format!("{socket:?} is not a socket")));
    }
    if meta.uid() != 0 {
        return Err(Unavailable(format!(
            "containerd socket {socket:?} is owned by uid {}, not root",
            meta.uid()
        )));
    }
    Ok(())
}

/// The verbose info document of the container and the sandbox metadata extension's value.
async fn both(
    socket: &Path,
    container_id: &str,
    sandbox_id: &str,
) -> Result<(Vec<u8>, Vec<u8>), Unavailable> {
    let io = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| Unavailable(format!("connecting to containerd at {socket:?}: {e}")))?;
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(MAX_RESPONSE_BYTES as u32)
        .initial_connection_window_size(2 * MAX_RESPONSE_BYTES as u32)
        .max_header_list_size(64 << 10)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| Unavailable(format!("HTTP/2 handshake with containerd: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let status = unary(
        send.clone(),
        "/runtime.v1.RuntimeService/ContainerStatus",
        None,
        wire::frame(&wire::ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose: true,
        }),
    );
    let sandbox = unary(
        send,
        "/containerd.services.containers.v1.Containers/Get",
        Some(CRI_NAMESPACE),
        wire::frame(&wire::GetContainerRequest {
            id: sandbox_id.to_owned(),
        }),
    );
    let (status, sandbox) = tokio::join!(status, sandbox);
    let mut status = wire::ContainerStatusResponse::decode(status?.as_slice())
        .map_err(|e| Unavailable(format!("decoding ContainerStatus: {e}")))?;
    let info = status
        .info
        .remove("info")
        .ok_or_else(|| Unavailable("ContainerStatus carries no verbose info".into()))?;
    let sandbox = wire::GetContainerResponse::decode(sandbox?.as_slice())
        .map_err(|e| Unavailable(format!("decoding Containers/Get: {e}")))?;
    let ext = sandbox
        .container
        .filter(|c| c.id == sandbox_id)
        .ok_or_else(|| Unavailable("Containers/Get answered for another container".into()))?
        .extensions
        .remove(SANDBOX_EXTENSION)
        .ok_or_else(|| {
            Unavailable(format!(
                "the sandbox container has no {SANDBOX_EXTENSION} extension"
            ))
        })?;
    Ok((info.into_bytes(), ext.value))
}

/// One unary call: the message of a successful answer, or why there is none.
async fn unary(
    send: h2::client::SendRequest<Bytes>,
    path: &str,
    namespace: Option<&str>,
    body: Vec<u8>,
) -> Result<Vec<u8>, Unavailable> {
    let method = path.rsplit('/').next().unwrap_or(path);
    let fail = |what: String| Unavailable(format!("{method}: {what}"));
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(ns) = namespace {
        req = req.header("containerd-namespace", ns);
    }
    let req = req.body(()).map_err(|e| fail(e.to_string()))?;
    let mut send = send.ready().await.map_err(|e| fail(e.to_string()))?;
    let (response, mut stream) = send
        .send_request(req, false)
        .map_err(|e| fail(e.to_string()))?;
    stream
        .send_data(Bytes::from(body), true)
        .map_err(|e| fail(e.to_string()))?;
    let response = response.await.map_err(|e| fail(e.to_string()))?;
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(fail(format!("HTTP status {}", parts.status)));
    }
    // A "trailers-only" answer carries the gRPC status in its headers.
    grpc_status(&parts.headers).map_err(fail)?;
    let mut buf = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| fail(e.to_string()))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(fail(format!(
                "the answer exceeds {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    match body.trailers().await.map_err(|e| fail(e.to_string()))? {
        Some(trailers) => grpc_status(&trailers).map_err(fail)?,
        None if parts.headers.contains_key("grpc-status") => {}
        None => return Err(fail("the answer ends without a gRPC status".into())),
    }
    wire::unframe(&buf).map(<[u8]>::to_vec).map_err(fail)
}

/// `Ok` for an absent or zero `grpc-status`, else the status and message.
fn grpc_status(headers: &http::HeaderMap) -> Result<(), String> {
    match headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("0") => Ok(()),
        Some(code) => {
            let msg = headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or("");
            Err(format!("gRPC status {code}: {msg}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::time::Instant;

    #[test]
    fn a_missing_socket_is_unavailable() {
        let e = fetch(
            Path::new("/nonexistent/containerd.sock"),
            "c",
            "s",
            Duration::from_millis(50),
        )
        .unwrap_err();
        assert!(e.0.contains("No such file"), "{e}");
    }

    #[test]
    fn a_silent_socket_costs_at_most_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // Accepts and never answers: the connection stays open until the test ends.
        let _held = std::thread::spawn(move || {
            let kept: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(2));
            drop(kept);
        });
        let t = Instant::now();
        let e = fetch(&path, "c", "s", Duration::from_millis(100)).unwrap_err();
        assert!(e.0.contains("within the budget of 100 ms"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_not_asked() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = fetch(f.path(), "c", "s", Duration::from_millis(50)).unwrap_err();
        assert!(e.0.contains("is not a socket"), "{e}");
    }
}
