//! The hook runs at every container start and must stay a small binary: no HTTP stack, TLS,
//! gRPC framework or Kubernetes client may reach it through the shared library crate. The one
//! network call it makes (the CRI view, issue 13: two unary gRPC calls to containerd over its
//! Unix socket) uses `h2` on tokio's single-threaded runtime, built only for that lookup; the
//! multi-threaded scheduler stays out. The agent depends on `pss-guard`, never the other way
//! round; this test reads the dependency graph cargo resolves for the hook's package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// `cargo tree -p pss-guard <edges…> --prefix none`, resolved for the hook's package alone.
fn cargo_tree(edges: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-p", "pss-guard"])
        .args(edges)
        .args(["--prefix", "none", "--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_hook_package_links_no_async_runtime_http_stack_or_kubernetes_client() {
    let tree = cargo_tree(&["-e", "normal"]);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"pss-guard") && crates.contains(&"serde_json"),
        "{tree}"
    );
    for banned in [
        "hyper",
        "hyper-util",
        "kube",
        "kube-client",
        "k8s-openapi",
        "rustls",
        "tonic",
        "tower",
        "pss-guard-agent",
    ] {
        assert!(
            !crates.contains(&banned),
            "the hook now depends on {banned}:\n{tree}"
        );
    }
}

#[test]
fn the_hooks_async_runtime_is_single_threaded() {
    let tree = cargo_tree(&["-e", "normal,features", "-i", "tokio"]);
    assert!(tree.contains("tokio feature \"rt\""), "{tree}");
    for banned in ["rt-multi-thread", "fs", "process", "signal"] {
        assert!(
            !tree.contains(&format!("tokio feature \"{banned}\"")),
            "the hook's tokio has {banned}:\n{tree}"
        );
    }
}
