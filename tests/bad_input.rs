//! The bad-input table (issue 6): every input a broken or hostile node can hand the hook, run
//! through the built binary with an empty environment and a time bound. Every row must end in
//! the documented exit code, exactly one line on stderr, nothing on stdout, no panic, no hang,
//! and one record in the decision log. `docs/bad-input.md` is this table; a test keeps the two
//! equal (`PSS_GUARD_BLESS=1` rewrites the doc from the table).
//!
//! Hook rows exit 2 ("could not evaluate", the container is refused) and log `"decision":
//! "error"` with the reason. Policy-file rows run a privileged container under a broken policy
//! file: the built-in default (baseline:latest) applies and refuses it (exit 1), and the record
//! carries `policy_error`. The default logs to /var/log/pss-guard/, so those rows run in a
//! private mount namespace with a temp dir bound over /var/log.

mod common;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Generous against a loaded CI machine; the hook's own bounds are 5 s (stdin) and 8 s (alarm).
const LIMIT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Could not evaluate: exit 2, a `decision: error` record whose `error` has the message.
    Hook,
    /// Broken policy file: exit 1 under the built-in default, `policy_error` has the message.
    Policy,
}

struct Row {
    input: &'static str,
    kind: Kind,
    /// A fragment of the stderr line (hook rows) or of the record's `policy_error`.
    message: &'static str,
    make: fn(&Node) -> Case,
}

struct Case {
    stdin: Stdin,
    cmd: Command,
    /// Where the record must appear.
    log: PathBuf,
    /// Kept alive for the run (the private /var/log of policy rows).
    _keep: Option<tempfile::TempDir>,
}

impl Row {
    fn exit(&self) -> i32 {
        match self.kind {
            Kind::Hook => 2,
            Kind::Policy => 1,
        }
    }
}

// ---- inputs -------------------------------------------------------------------------------

fn hook_case(node: &Node, stdin: Vec<u8>, runtime: &str) -> Case {
    Case {
        stdin: Stdin::Bytes(stdin),
        cmd: node.hook_command(&["--runtime", runtime]),
        log: node.log_path(),
        _keep: None,
    }
}

/// The state for `<node>/<name>`, whose config.json is written raw.
fn raw_bundle(node: &Node, name: &str, config: &[u8]) -> Case {
    let b = node.path().join(name);
    std::fs::create_dir_all(&b).expect("mkdir bundle");
    std::fs::write(b.join("config.json"), config).expect("write config.json");
    hook_case(node, state(name, &b), "none")
}

fn spec_bundle(node: &Node, name: &str, spec: &Value) -> Case {
    raw_bundle(node, name, &serde_json::to_vec(spec).expect("json"))
}

fn base() -> Value {
    base_spec(&["/bin/true"])
}

fn with_cap(set: &str, name: &str) -> Value {
    let mut s = base();
    let caps = &mut s["process"]["capabilities"][set];
    if caps.is_null() {
        *caps = json!([]);
    }
    caps.as_array_mut().expect("caps").push(json!(name));
    s
}

/// A containerd-shaped pod; `sandbox` = None leaves the sandbox bundle out.
fn pod_case(node: &Node, sandbox_id: &str, sandbox: Option<&Value>, app: Value) -> Case {
    let mut app = app;
    if app["annotations"].is_null() {
        app["annotations"] = cri_annotations("default", sandbox_id);
    }
    let b = containerd_pod(&node.path().join("k8s.io"), "c1", sandbox_id, sandbox, &app);
    hook_case(node, state("c1", &b), "containerd")
}

/// A privileged container under the policy file `content` (None: no file at all).
fn policy_case(node: &Node, content: Option<&[u8]>) -> Case {
    let mut spec = base();
    make_privileged(&mut spec);
    let b = node.bundle("priv", &spec);
    let policy = node.path().join("broken-policy.toml");
    if let Some(c) = content {
        std::fs::write(&policy, c).expect("write policy");
    }
    policy_case_at(&policy, &b)
}

fn policy_case_at(policy: &Path, bundle: &Path) -> Case {
    let varlog = tempfile::tempdir().expect("tempdir");
    let hook = hook_command(policy, &["--runtime", "none"]);
    let setup = format!("mount --bind '{}' /var/log", varlog.path().display());
    Case {
        stdin: Stdin::Bytes(state("priv", bundle)),
        cmd: in_mount_namespace(&setup, &hook),
        log: varlog.path().join("pss-guard/decisions.log"),
        _keep: Some(varlog),
    }
}

fn state_json(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("json")
}

// ---- the table ----------------------------------------------------------------------------

fn rows() -> Vec<Row> {
    vec![
        // The state on stdin.
        Row {
            input: "empty stdin",
            kind: Kind::Hook,
            message: "parsing the container state: EOF while parsing",
            make: |n| hook_case(n, Vec::new(), "none"),
        },
        Row {
            input: "state is not JSON (`hello`)",
            kind: Kind::Hook,
            message: "parsing the container state: expected value",
            make: |n| hook_case(n, b"hello".to_vec(), "none"),
        },
        Row {
            input: "state is a JSON array",
            kind: Kind::Hook,
            message: "the container state has no bundle path",
            make: |n| hook_case(n, b"[]".to_vec(), "none"),
        },
        Row {
            input: "state is not UTF-8",
            kind: Kind::Hook,
            message: "parsing the container state: not UTF-8 (invalid byte at offset 28)",
            make: |n| {
                hook_case(
                    n,
                    b"{\"ociVersion\":\"1.0.2\",\"id\":\"\xff\xfe\",\"status\":\"creating\",\"bundle\":\"/b\"}".to_vec(),
                    "none",
                )
            },
        },
        Row {
            input: "state followed by trailing garbage",
            kind: Kind::Hook,
            message: "parsing the container state: trailing characters",
            make: |n| {
                let b = n.bundle("ok", &base());
                let mut s = state("ok", &b);
                s.extend_from_slice(b" {}");
                hook_case(n, s, "none")
            },
        },
        Row {
            input: "state without `bundle`",
            kind: Kind::Hook,
            message: "the container state has no bundle path",
            make: |n| {
                let s = json!({"ociVersion": "1.0.2", "id": "c", "status": "creating"});
                hook_case(n, state_json(s), "none")
            },
        },
        Row {
            input: "state with `bundle: \"\"`",
            kind: Kind::Hook,
            message: "the container state has no bundle path",
            make: |n| hook_case(n, state("c", Path::new("")), "none"),
        },
        Row {
            input: "state with a duplicated `bundle` key",
            kind: Kind::Hook,
            message: "parsing the container state: duplicate field `bundle`",
            make: |n| {
                let b = n.bundle("ok", &base());
                let s = format!(
                    r#"{{"ociVersion":"1.0.2","id":"c","status":"creating","bundle":"/tmp","bundle":{:?}}}"#,
                    b.display().to_string()
                );
                hook_case(n, s.into_bytes(), "none")
            },
        },
        Row {
            input: "state with `Bundle`, which Go's decoder reads as `bundle` (keys match in any case)",
            kind: Kind::Hook,
            message: "key \"Bundle\" would be read as \"bundle\"",
            make: |n| {
                let b = n.bundle("ok", &base());
                let s = format!(
                    r#"{{"ociVersion":"1.0.2","id":"c","status":"creating","bundle":{:?},"Bundle":"/tmp"}}"#,
                    b.display().to_string()
                );
                hook_case(n, s.into_bytes(), "none")
            },
        },
        Row {
            input: "state with a wrong type (`pid: \"1\"`)",
            kind: Kind::Hook,
            message: "parsing the container state: invalid type: string \"1\"",
            make: |n| {
                let s = json!({"ociVersion": "1.0.2", "id": "c", "status": "creating", "pid": "1", "bundle": "/b"});
                hook_case(n, state_json(s), "none")
            },
        },
        Row {
            input: "state larger than 8 MiB",
            kind: Kind::Hook,
            message: "the container state on stdin is larger than 8388608 bytes",
            make: |n| {
                let pad = "x".repeat(9 << 20);
                let s = json!({"ociVersion": "1.0.2", "id": "c", "status": "creating", "bundle": "/b", "annotations": {"pad": pad}});
                hook_case(n, state_json(s), "none")
            },
        },
        Row {
            input: "state nested 10,000 deep",
            kind: Kind::Hook,
            message: "parsing the container state: nested deeper than 128 levels",
            make: |n| {
                let s = format!(
                    r#"{{"ociVersion":"1.0.2","id":"c","status":"creating","bundle":"/b","x":{}{}}}"#,
                    "[".repeat(10_000),
                    "]".repeat(10_000)
                );
                hook_case(n, s.into_bytes(), "none")
            },
        },
        Row {
            input: "stdin never closed (the runtime writes nothing)",
            kind: Kind::Hook,
            message: "no container state arrived on stdin within 5 seconds",
            make: |n| Case {
                stdin: Stdin::NeverClosed,
                cmd: n.hook_command(&["--runtime", "none"]),
                log: n.log_path(),
                _keep: None,
            },
        },
        // The bundle path.
        Row {
            input: "bundle path relative (`run/bundle`)",
            kind: Kind::Hook,
            message: "bundle path \"run/bundle\" is not a clean absolute path",
            make: |n| hook_case(n, state("c", Path::new("run/bundle")), "none"),
        },
        Row {
            input: "bundle path with `..` (`<dir>/x/../ok`)",
            kind: Kind::Hook,
            message: "is not a clean absolute path",
            make: |n| {
                n.bundle("ok", &base());
                hook_case(n, state("c", &n.path().join("x/../ok")), "none")
            },
        },
        Row {
            input: "bundle path with `.` and a trailing `/`",
            kind: Kind::Hook,
            message: "is not a clean absolute path",
            make: |n| {
                n.bundle("ok", &base());
                let p = format!("{}/./ok/", n.path().display());
                hook_case(n, state("c", Path::new(&p)), "none")
            },
        },
        Row {
            input: "bundle is a symlink to a valid bundle",
            kind: Kind::Hook,
            message: "is not a directory",
            make: |n| {
                let real = n.bundle("real", &base());
                let link = n.path().join("link");
                symlink(&real, &link).expect("symlink");
                hook_case(n, state("c", &link), "none")
            },
        },
        Row {
            input: "bundle is a regular file",
            kind: Kind::Hook,
            message: "is not a directory",
            make: |n| {
                let f = n.path().join("file");
                std::fs::write(&f, b"{}").expect("write");
                hook_case(n, state("c", &f), "none")
            },
        },
        Row {
            input: "bundle does not exist",
            kind: Kind::Hook,
            message: "No such file or directory",
            make: |n| hook_case(n, state("c", &n.path().join("gone")), "none"),
        },
        // config.json.
        Row {
            input: "config.json missing",
            kind: Kind::Hook,
            message: "config.json\": No such file or directory",
            make: |n| {
                let b = n.path().join("empty-bundle");
                std::fs::create_dir_all(&b).expect("mkdir");
                hook_case(n, state("c", &b), "none")
            },
        },
        Row {
            input: "config.json empty",
            kind: Kind::Hook,
            message: "config.json\": EOF while parsing",
            make: |n| raw_bundle(n, "b", b""),
        },
        Row {
            input: "config.json truncated halfway",
            kind: Kind::Hook,
            message: "config.json\": EOF while parsing",
            make: |n| {
                let full = serde_json::to_vec(&base()).expect("json");
                raw_bundle(n, "b", &full[..full.len() / 2])
            },
        },
        Row {
            input: "config.json not UTF-8 (a 0xFF byte in a string)",
            kind: Kind::Hook,
            message: "config.json\": not UTF-8 (invalid byte at offset",
            make: |n| {
                let full = serde_json::to_vec(&base()).expect("json");
                let text = String::from_utf8(full).expect("utf-8");
                let mut bytes = text.replacen("/bin/true", "/bin/\u{1}", 1).into_bytes();
                let at = bytes.iter().position(|b| *b == 1).expect("marker");
                bytes[at] = 0xFF;
                raw_bundle(n, "b", &bytes)
            },
        },
        Row {
            input: "config.json of 100 MB",
            kind: Kind::Hook,
            message: "config.json\" is larger than 8388608 bytes",
            make: |n| {
                let b = n.path().join("huge");
                std::fs::create_dir_all(&b).expect("mkdir");
                // Sparse: 100 MB on paper, one page on disk, so the row stays fast.
                let mut f = std::fs::File::create(b.join("config.json")).expect("create");
                f.write_all(br#"{"ociVersion":"1.0.2","annotations":{"pad":""#)
                    .expect("write");
                f.set_len(100_000_000).expect("set_len");
                hook_case(n, state("huge", &b), "none")
            },
        },
        Row {
            input: "config.json nested 10,000 deep (in a field no check reads)",
            kind: Kind::Hook,
            message: "config.json\": nested deeper than 128 levels",
            make: |n| {
                let mut text = serde_json::to_string(&base()).expect("json");
                text.pop();
                text.push_str(&format!(
                    ",\"x\":{}{}}}",
                    "[".repeat(10_000),
                    "]".repeat(10_000)
                ));
                raw_bundle(n, "b", text.as_bytes())
            },
        },
        Row {
            input: "config.json with a duplicated key (`process` twice)",
            kind: Kind::Hook,
            message: "config.json\": duplicate field `process`",
            make: |n| {
                let mut privileged = base();
                make_privileged(&mut privileged);
                let mut text = serde_json::to_string(&privileged).expect("json");
                text.pop();
                let benign = serde_json::to_string(&base()["process"]).expect("json");
                text.push_str(&format!(",\"process\":{benign}}}"));
                raw_bundle(n, "b", text.as_bytes())
            },
        },
        Row {
            input: "config.json with `Mounts` after `mounts`: runc's decoder matches keys in any case and the last wins",
            kind: Kind::Hook,
            message: "config.json\": key \"Mounts\" would be read as \"mounts\"",
            make: |n| {
                let mut text = serde_json::to_string(&base()).expect("json");
                text.pop();
                text.push_str(
                    r#","Mounts":[{"destination":"/host","type":"bind","source":"/","options":["rbind","rw"]}]}"#,
                );
                raw_bundle(n, "b", text.as_bytes())
            },
        },
        Row {
            input: "config.json with `process.capabilities.Bounding` (a case variant one level down)",
            kind: Kind::Hook,
            message: "key \"Bounding\" would be read as \"bounding\"",
            make: |n| {
                let mut s = base();
                s["process"]["capabilities"]["Bounding"] = json!(["CAP_SYS_ADMIN"]);
                spec_bundle(n, "b", &s)
            },
        },
        Row {
            input: "config.json with `mountſ` (U+017F folds to `s` in Go), escaped as `\\u017f`",
            kind: Kind::Hook,
            message: "key \"mountſ\" would be read as \"mounts\"",
            make: |n| {
                let mut text = serde_json::to_string(&base()).expect("json");
                text.pop();
                text.push_str(r#","mount\u017f":[]}"#);
                raw_bundle(n, "b", text.as_bytes())
            },
        },
        Row {
            input: "config.json wrong type (`process.user.uid: \"0\"`)",
            kind: Kind::Hook,
            message: "config.json\": invalid type: string \"0\", expected u32",
            make: |n| {
                let mut s = base();
                s["process"]["user"]["uid"] = json!("0");
                spec_bundle(n, "b", &s)
            },
        },
        Row {
            input: "config.json wrong type (`noNewPrivileges: \"true\"`)",
            kind: Kind::Hook,
            message: "config.json\": invalid type: string \"true\", expected a boolean",
            make: |n| {
                let mut s = base();
                s["process"]["noNewPrivileges"] = json!("true");
                spec_bundle(n, "b", &s)
            },
        },
        Row {
            input: "config.json wrong type (an annotation value that is a number)",
            kind: Kind::Hook,
            message: "config.json\": invalid type: integer `1`, expected a string",
            make: |n| {
                let mut s = base();
                s["annotations"] = json!({"a": 1});
                spec_bundle(n, "b", &s)
            },
        },
        Row {
            input: "config.json without `process`",
            kind: Kind::Hook,
            message: "config.json\" has no process section",
            make: |n| {
                let mut s = base();
                s.as_object_mut().expect("object").remove("process");
                spec_bundle(n, "b", &s)
            },
        },
        Row {
            input: "config.json is a symlink to a valid spec",
            kind: Kind::Hook,
            message: "config.json\": Too many levels of symbolic links",
            make: |n| {
                let spare = n.path().join("spare.json");
                write_json(&spare, &base());
                let b = n.path().join("b");
                std::fs::create_dir_all(&b).expect("mkdir");
                symlink(&spare, b.join("config.json")).expect("symlink");
                hook_case(n, state("b", &b), "none")
            },
        },
        Row {
            input: "config.json is a FIFO nobody writes",
            kind: Kind::Hook,
            message: "config.json\": not a regular file",
            make: |n| {
                let b = n.path().join("b");
                std::fs::create_dir_all(&b).expect("mkdir");
                mkfifo(&b.join("config.json"));
                hook_case(n, state("b", &b), "none")
            },
        },
        Row {
            input: "config.json is a directory",
            kind: Kind::Hook,
            message: "config.json\": not a regular file",
            make: |n| {
                let b = n.path().join("b");
                std::fs::create_dir_all(b.join("config.json")).expect("mkdir");
                hook_case(n, state("b", &b), "none")
            },
        },
        // Capability names runc would not grant as written.
        Row {
            input: "capability name lowercase (`cap_sys_admin` in bounding)",
            kind: Kind::Hook,
            message: "unknown capability name \"cap_sys_admin\" in process.capabilities.bounding",
            make: |n| spec_bundle(n, "b", &with_cap("bounding", "cap_sys_admin")),
        },
        Row {
            input: "capability name without `CAP_` (`SYS_ADMIN` in effective)",
            kind: Kind::Hook,
            message: "unknown capability name \"SYS_ADMIN\" in process.capabilities.effective",
            make: |n| spec_bundle(n, "b", &with_cap("effective", "SYS_ADMIN")),
        },
        Row {
            input: "capability name numeric (`21` in permitted)",
            kind: Kind::Hook,
            message: "unknown capability name \"21\" in process.capabilities.permitted",
            make: |n| spec_bundle(n, "b", &with_cap("permitted", "21")),
        },
        Row {
            input: "capability name unknown (`CAP_NOPE` in inheritable)",
            kind: Kind::Hook,
            message: "unknown capability name \"CAP_NOPE\" in process.capabilities.inheritable",
            make: |n| spec_bundle(n, "b", &with_cap("inheritable", "CAP_NOPE")),
        },
        Row {
            input: "capability name doubled prefix of an unknown name (`CAP_CAP_NOPE` in ambient)",
            kind: Kind::Hook,
            message: "unknown capability name \"CAP_CAP_NOPE\" in process.capabilities.ambient",
            make: |n| spec_bundle(n, "b", &with_cap("ambient", "CAP_CAP_NOPE")),
        },
        // Namespaces and the pod sandbox.
        Row {
            input: "network namespace path that does not exist, no sandbox spec",
            kind: Kind::Hook,
            message: "cannot tell whether the net namespace is the host's: \"/proc/999999999/ns/net\" cannot be read",
            make: |n| {
                let mut s = base();
                s["linux"]["namespaces"] = json!([
                    {"type": "pid"}, {"type": "ipc"}, {"type": "mount"},
                    {"type": "network", "path": "/proc/999999999/ns/net"}
                ]);
                spec_bundle(n, "b", &s)
            },
        },
        Row {
            input: "containerd pod: sandbox bundle missing",
            kind: Kind::Hook,
            message: "k8s.io/sb1\": No such file or directory (os error 2)",
            make: |n| pod_case(n, "sb1", None, base()),
        },
        Row {
            input: "containerd pod: sandbox config.json not JSON",
            kind: Kind::Hook,
            message: "(sandbox \"sb1\") holds the pod's sysctls and host namespaces but cannot be read: parsing",
            make: |n| {
                let c = pod_case(n, "sb1", Some(&sandbox_spec()), base());
                let sb = n.path().join("k8s.io/sb1/config.json");
                std::fs::write(sb, b"{\"linux\": ").expect("write");
                c
            },
        },
        Row {
            input: "containerd pod: sandbox config.json unreadable (a FIFO)",
            kind: Kind::Hook,
            message: "(sandbox \"sb1\") holds the pod's sysctls and host namespaces but cannot be read: reading",
            make: |n| {
                let c = pod_case(n, "sb1", Some(&sandbox_spec()), base());
                let sb = n.path().join("k8s.io/sb1/config.json");
                std::fs::remove_file(&sb).expect("rm");
                mkfifo(&sb);
                c
            },
        },
        Row {
            input: "containerd pod: sandbox id `..`",
            kind: Kind::Hook,
            message: "the sandbox id \"..\" names no sandbox bundle",
            make: |n| pod_case(n, "..", None, base()),
        },
        Row {
            input: "containerd pod: no sandbox-uid and no log directory",
            kind: Kind::Hook,
            message: "the pod uid is unknown",
            make: |n| {
                let mut app = base();
                app["annotations"] = cri_annotations("default", "sb1");
                app["annotations"]
                    .as_object_mut()
                    .expect("annotations")
                    .remove("io.kubernetes.cri.sandbox-uid");
                pod_case(n, "sb1", Some(&sandbox_spec()), app)
            },
        },
        // The policy file: never bricks the node, the built-in default keeps enforcing.
        Row {
            input: "policy file missing",
            kind: Kind::Policy,
            message: "cannot be read: No such file or directory (os error 2); using the built-in default",
            make: |n| policy_case(n, None),
        },
        Row {
            input: "policy file empty",
            kind: Kind::Policy,
            message: "is empty; using the built-in default",
            make: |n| policy_case(n, Some(b"")),
        },
        Row {
            input: "policy file broken TOML",
            kind: Kind::Policy,
            message: "is not valid TOML for a pss-guard policy",
            make: |n| policy_case(n, Some(b"enforce = \"restricted:latest\n[exempt")),
        },
        Row {
            input: "policy file with an unknown key",
            kind: Kind::Policy,
            message: "unknown field `exempt_all`",
            make: |n| policy_case(n, Some(b"exempt_all = true\n")),
        },
        Row {
            input: "policy file with a wrong type (`enforce = 3`)",
            kind: Kind::Policy,
            message: "is not valid TOML for a pss-guard policy",
            make: |n| policy_case(n, Some(b"enforce = 3\n")),
        },
        Row {
            input: "policy file with an unknown level (`root:latest`)",
            kind: Kind::Policy,
            message: "enforce: unknown level \"root\"",
            make: |n| policy_case(n, Some(b"enforce = \"root:latest\"\n")),
        },
        Row {
            input: "policy file exempting every image (`images = [\"*\"]`)",
            kind: Kind::Policy,
            message: "exempt.images: \"*\" must start with a literal registry",
            make: |n| policy_case(n, Some(b"[exempt]\nimages = [\"*\"]\n")),
        },
        Row {
            input: "policy file not UTF-8",
            kind: Kind::Policy,
            message: "is not UTF-8",
            make: |n| policy_case(n, Some(b"enforce = \"baseline:latest\xff\"\n")),
        },
        Row {
            input: "policy file larger than 256 KiB",
            kind: Kind::Policy,
            message: "is larger than 262144 bytes",
            make: |n| {
                let mut big = b"# ".to_vec();
                big.resize(300 * 1024, b'x');
                policy_case(n, Some(&big))
            },
        },
        Row {
            input: "policy file is a FIFO nobody writes",
            kind: Kind::Policy,
            message: "cannot be read: not a regular file",
            make: |n| {
                let p = n.path().join("fifo-policy.toml");
                mkfifo(&p);
                let mut spec = base();
                make_privileged(&mut spec);
                let b = n.bundle("priv", &spec);
                policy_case_at(&p, &b)
            },
        },
    ]
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {p:?}");
}

// ---- running a row ------------------------------------------------------------------------

fn records(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

/// Checks one row; returns what went wrong, if anything.
fn check(row: &Row, o: &Output, log: &Path) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    if stderr.contains("panicked") {
        return Err(format!("panicked: {stderr}"));
    }
    if o.status.code() != Some(row.exit()) {
        return Err(format!("exit {:?}, stderr {stderr:?}", o.status));
    }
    if !o.stdout.is_empty() {
        return Err(format!("stdout not empty: {:?}", o.stdout));
    }
    if lines.len() != 1 || !lines[0].starts_with("pss-guard: ") {
        return Err(format!("want one \"pss-guard: \" line, got {lines:?}"));
    }
    let recs = records(log);
    let [rec] = recs.as_slice() else {
        return Err(format!("want one log record, got {recs:?}"));
    };
    match row.kind {
        Kind::Hook => {
            if !lines[0].contains("could not evaluate") || !lines[0].contains(row.message) {
                return Err(format!("stderr lacks {:?}: {}", row.message, lines[0]));
            }
            let err = rec["error"].as_str().unwrap_or_default();
            if rec["decision"] != "error" || !err.contains(row.message) {
                return Err(format!("record: {rec}"));
            }
        }
        Kind::Policy => {
            if !lines[0].contains("privileged (container \"priv\"") {
                return Err(format!("not refused by the default: {}", lines[0]));
            }
            let pe = rec["policy_error"].as_str().unwrap_or_default();
            if rec["decision"] != "refused"
                || rec["policy"] != "baseline:latest"
                || !pe.contains(row.message)
                || !pe.contains("using the built-in default")
            {
                return Err(format!(
                    "record lacks policy_error {:?}: {rec}",
                    row.message
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_bad_input_is_refused_with_one_line_and_a_record() {
    let rows = rows();
    assert!(rows.len() >= 30, "the issue asks for at least 30 rows");
    // All rows at once, so the stdin row's 5 s overlaps the rest.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                s.spawn(move || {
                    let node = Node::new("");
                    let case = (row.make)(&node);
                    let o = run_bounded(case.cmd, case.stdin, LIMIT);
                    check(row, &o, &case.log)
                        .map_err(|e| format!("row {} ({}): {e}", i + 1, row.input))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("row thread").err())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- the doc ------------------------------------------------------------------------------

const DOC: &str = "docs/bad-input.md";

fn render_doc(rows: &[Row]) -> String {
    let mut out = String::from(
        "# Bad input table\n\n\
         What the hook does with every broken or hostile input we know of. Each row is a case of\n\
         `tests/bad_input.rs`, run through the built binary with an empty environment and a time\n\
         bound; that test also checks that this file equals the table (regenerate it with\n\
         `PSS_GUARD_BLESS=1 cargo test --test bad_input`).\n\n\
         Every row also requires: nothing on stdout, exactly one line on stderr starting with\n\
         `pss-guard: `, no panic, no hang, and exactly one record in the decision log.\n\n\
         - **exit 2**: could not evaluate, the container is refused (fail closed). The stderr line\n  \
           reads `pss-guard: could not evaluate container \"<id>\", refusing it: <reason>` and the\n  \
           record has `\"decision\":\"error\"` and the reason in `error`. The message column is a\n  \
           fragment of that reason.\n\
         - **exit 1 (default)**: a broken policy file must not brick the node. The built-in default\n  \
           (`baseline:latest`, `kube-system` exempt, log at\n  \
           `/var/log/pss-guard/decisions.log`) applies, so the privileged container of these rows is\n  \
           refused with the usual PSA-shaped line; the record has `\"decision\":\"refused\"` and\n  \
           `policy_error` holding the message column and `; using the built-in default`.\n\n\
         | # | input | exit | message |\n|---|---|---|---|\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let exit = match r.kind {
            Kind::Hook => "2",
            Kind::Policy => "1 (default)",
        };
        let msg = r.message.replace('|', "\\|");
        out.push_str(&format!(
            "| {} | {} | {exit} | `` {msg} `` |\n",
            i + 1,
            r.input.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn doc_table_matches_the_test_table() {
    let want = render_doc(&rows());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    if std::env::var_os("PSS_GUARD_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write doc");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{DOC} differs from the table in tests/bad_input.rs; run PSS_GUARD_BLESS=1 cargo test --test bad_input"
    );
}
