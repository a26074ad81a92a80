//! EKS user data, run rather than read: the script part of node-config/eks-al2023-user-data.mime
//! executed with stand-ins for `aws` and `uname` (paths moved into a temp dir) puts the binary in
//! place only when its ELF header is for the node's CPU; node-config/add-to-user-data.py keeps a
//! launch template's existing user data; the Karpenter EC2NodeClass carries the same user data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pss-guard");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The MIME document's parts: `[{"type", "marker", "body"}]`.
fn parts(mime: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import email,json,sys\nm=email.message_from_string(sys.stdin.read())\nassert m.is_multipart()\nprint(json.dumps([{'type':p.get_content_type(),'marker':p.get('X-Pss-Guard'),'body':p.get_payload()} for p in m.walk() if not p.is_multipart()]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(mime.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "not MIME:\n{mime}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn script_part() -> String {
    let mime = std::fs::read_to_string(repo("node-config/eks-al2023-user-data.mime")).unwrap();
    parts(&mime)
        .into_iter()
        .find(|p| p["type"] == "text/x-shellscript")
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs the user data script on a pretend node of `arch` that downloads `binary`.
fn run_script(dir: &Path, arch: &str, binary: &Path) -> Output {
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let bin_dir = dir.join("usr/local/bin");
    let etc = dir.join("etc/pss-guard");
    std::fs::create_dir_all(&bin_dir).unwrap();
    // `aws s3 cp SRC DEST` copies the given binary; `uname -m` says the node's CPU.
    std::fs::write(
        stubs.join("aws"),
        format!(
            "#!/bin/sh\nfor a; do d=$a; done\ncp {} \"$d\"\n",
            binary.display()
        ),
    )
    .unwrap();
    std::fs::write(stubs.join("uname"), format!("#!/bin/sh\necho {arch}\n")).unwrap();
    for s in ["aws", "uname"] {
        std::fs::set_permissions(
            stubs.join(s),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let sum = Command::new("sha256sum").arg(binary).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let script = script_part()
        .replace("/usr/local/bin", &bin_dir.display().to_string())
        .replace("/etc/pss-guard", &etc.display().to_string())
        .replace(
            "0000000000000000000000000000000000000000000000000000000000000000",
            &sum,
        )
        .replace(
            "1111111111111111111111111111111111111111111111111111111111111111",
            &sum,
        );
    let f = dir.join("user-data.sh");
    std::fs::write(&f, script).unwrap();
    Command::new("bash")
        .arg(&f)
        .env("PATH", format!("{}:/usr/bin:/bin", stubs.display()))
        .output()
        .unwrap()
}

#[test]
fn user_data_installs_a_binary_for_the_nodes_cpu_only() {
    let host_arch = std::env::consts::ARCH;
    let other_arch = if host_arch == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    // The right CPU: in place, executable, and the policy written.
    let dir = tempfile::tempdir().unwrap();
    let o = run_script(dir.path(), host_arch, Path::new(BIN));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let installed = dir.path().join("usr/local/bin/pss-guard");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(BIN).unwrap()
    );
    // The boot policy loads, observes, and exempts pss-guard's own namespace through the node
    // file, as the agent will once it runs (the same text: scripts/render-manifests.sh).
    let (p, err) =
        pss_guard::config::Policy::load_or_default(&dir.path().join("etc/pss-guard/policy.toml"));
    assert_eq!(err, None);
    assert_eq!(p.mode, pss_guard::config::Mode::Observe);
    assert_eq!(p.own_namespace.as_deref(), Some("pss-guard"));
    assert!(p.exempt_namespaces.contains("calico-system"));

    // A node of the other CPU given this binary (a mix-up in the bucket, checksum matching):
    // refused before anything is in place.
    let dir = tempfile::tempdir().unwrap();
    let o = run_script(dir.path(), other_arch, Path::new(BIN));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not an ELF executable for"), "{err}");
    assert!(!dir.path().join("usr/local/bin/pss-guard").exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("usr/local/bin"))
            .unwrap()
            .count(),
        0,
        "temp file left behind"
    );

    // Not ELF at all.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "#!/bin/sh\nexit 0\n").unwrap();
    let o = run_script(dir.path(), host_arch, &junk);
    assert_eq!(o.status.code(), Some(1));
    assert!(!dir.path().join("usr/local/bin/pss-guard").exists());
}

fn merge(existing: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("existing");
    std::fs::write(&f, existing).unwrap();
    Command::new("python3")
        .arg(repo("node-config/add-to-user-data.py"))
        .arg(&f)
        .arg(repo("node-config/eks-al2023-user-data.mime"))
        .output()
        .unwrap()
}

fn merged(existing: &str) -> String {
    let o = merge(existing);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn adding_to_user_data_keeps_every_existing_part() {
    let ours =
        parts(&std::fs::read_to_string(repo("node-config/eks-al2023-user-data.mime")).unwrap());
    // A managed node group's launch template with its own NodeConfig and a script.
    let existing = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n--//\nContent-Type: application/node.eks.aws\n\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: 110\n\n--//\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\necho site-setup\n\n--//--\n";
    let out = merged(existing);
    let p = parts(&out);
    assert_eq!(p.len(), 4, "{out}");
    assert!(p[0]["body"].as_str().unwrap().contains("maxPods: 110"));
    assert!(p[1]["body"].as_str().unwrap().contains("echo site-setup"));
    assert!(p[0]["marker"].is_null() && p[1]["marker"].is_null());
    for i in 0..2 {
        assert_eq!(p[2 + i]["body"], ours[i]["body"]);
        assert_eq!(p[2 + i]["type"], ours[i]["type"]);
        assert_eq!(p[2 + i]["marker"], "1");
    }
    // Again: the same document, pss-guard's parts not doubled.
    assert_eq!(merged(&out), out);

    // A plain script or cloud-config becomes the first part.
    let p = parts(&merged("#!/bin/bash\necho old\n"));
    assert_eq!(p.len(), 3);
    assert_eq!(p[0]["type"], "text/x-shellscript");
    assert_eq!(p[0]["body"], "#!/bin/bash\necho old\n");
    let p = parts(&merged("#cloud-config\npackages: [jq]\n"));
    assert_eq!(p[0]["type"], "text/cloud-config");
    // No user data yet: pss-guard's parts alone.
    assert_eq!(parts(&merged("")).len(), 2);
    // Something it cannot place is refused, not dropped.
    let o = merge("just some text\n");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("merge by hand"));
}

#[test]
fn karpenter_node_class_carries_the_same_user_data() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(repo("node-config/karpenter-ec2nodeclass.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["apiVersion"], "karpenter.k8s.aws/v1");
    assert_eq!(v["kind"], "EC2NodeClass");
    assert_eq!(v["spec"]["amiSelectorTerms"][0]["alias"], "al2023@latest");
    assert_eq!(
        v["spec"]["userData"].as_str().unwrap(),
        std::fs::read_to_string(repo("node-config/eks-al2023-user-data.mime")).unwrap(),
        "the EC2NodeClass and the launch-template user data differ"
    );
}
