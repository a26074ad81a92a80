//! The parts of an OCI runtime spec (`config.json`) that the checks read, deserialised with
//! oci-spec's types wherever they are exact.
//!
//! Why not `oci_spec::runtime::Spec` as a whole: its capability parser upper-cases names and
//! strips any number of `CAP_` prefixes, so `cap_sys_admin` and `CAP_CAP_CHOWN` would read as
//! real capabilities, while runc ignores them; we need the literal names to refuse what we cannot
//! evaluate. And parsing every field with strict enums would refuse legitimate containers over
//! fields no check reads (a new seccomp action, say). Unknown fields are ignored; duplicate
//! fields and wrong types are errors, so the hook fails closed on them.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxNamespace, Mount};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::scan::{Fields, Value};

/// Every field of `config.json` the hook reads, at every level, for [`super::scan::check`]:
/// a key that matches one of these only case-insensitively is refused. Kept beside the types
/// that read them; a test checks that serde reads each name listed.
pub static SPEC_FIELDS: Fields = Fields(&[
    ("process", Value::Object(&PROCESS_FIELDS)),
    ("mounts", Value::Objects(&MOUNT_FIELDS)),
    ("annotations", Value::Data),
    ("linux", Value::Object(&LINUX_FIELDS)),
]);
static PROCESS_FIELDS: Fields = Fields(&[
    ("user", Value::Object(&USER_FIELDS)),
    ("capabilities", Value::Object(&CAPABILITY_FIELDS)),
    ("noNewPrivileges", Value::Data),
    ("apparmorProfile", Value::Data),
    ("selinuxLabel", Value::Data),
]);
static USER_FIELDS: Fields = Fields(&[("uid", Value::Data)]);
static CAPABILITY_FIELDS: Fields = Fields(&[
    ("bounding", Value::Data),
    ("effective", Value::Data),
    ("inheritable", Value::Data),
    ("permitted", Value::Data),
    ("ambient", Value::Data),
]);
static MOUNT_FIELDS: Fields = Fields(&[
    ("destination", Value::Data),
    ("type", Value::Data),
    ("source", Value::Data),
    ("options", Value::Data),
]);
static LINUX_FIELDS: Fields = Fields(&[
    ("namespaces", Value::Objects(&NAMESPACE_FIELDS)),
    ("sysctl", Value::Data),
    ("seccomp", Value::Data),
    ("maskedPaths", Value::Data),
    ("readonlyPaths", Value::Data),
    ("resources", Value::Object(&RESOURCE_FIELDS)),
]);
static NAMESPACE_FIELDS: Fields = Fields(&[("type", Value::Data), ("path", Value::Data)]);
static RESOURCE_FIELDS: Fields = Fields(&[("devices", Value::Objects(&DEVICE_FIELDS))]);
static DEVICE_FIELDS: Fields = Fields(&[
    ("allow", Value::Data),
    ("type", Value::Data),
    ("major", Value::Data),
    ("minor", Value::Data),
    ("access", Value::Data),
]);
/// The OCI state's fields (`oci_spec::runtime::State`).
pub static STATE_FIELDS: Fields = Fields(&[
    ("ociVersion", Value::Data),
    ("id", Value::Data),
    ("status", Value::Data),
    ("pid", Value::Data),
    ("bundle", Value::Data),
    ("annotations", Value::Data),
]);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSpec {
    #[serde(default)]
    pub process: Option<RawProcess>,
    #[serde(default)]
    pub mounts: Option<Vec<Mount>>,
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    pub linux: Option<RawLinux>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawProcess {
    pub user: RawUser,
    #[serde(default)]
    pub capabilities: Option<RawCapabilities>,
    #[serde(default)]
    pub no_new_privileges: Option<bool>,
    #[serde(default)]
    pub apparmor_profile: Option<String>,
    #[serde(default)]
    pub selinux_label: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawUser {
    pub uid: u32,
}

/// Capability sets as the literal strings in the spec.
#[derive(Debug, Default, Deserialize)]
pub struct RawCapabilities {
    #[serde(default)]
    pub bounding: Option<Vec<String>>,
    #[serde(default)]
    pub effective: Option<Vec<String>>,
    #[serde(default)]
    pub inheritable: Option<Vec<String>>,
    #[serde(default)]
    pub permitted: Option<Vec<String>>,
    #[serde(default)]
    pub ambient: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLinux {
    #[serde(default)]
    pub namespaces: Option<Vec<LinuxNamespace>>,
    #[serde(default)]
    pub sysctl: Option<HashMap<String, String>>,
    /// Only its presence matters: any profile is RuntimeDefault or Localhost to admission.
    #[serde(default)]
    pub seccomp: Option<IgnoredAny>,
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(default)]
    pub resources: Option<RawResources>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawResources {
    #[serde(default)]
    pub devices: Option<Vec<LinuxDeviceCgroup>>,
}

impl RawSpec {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn namespaces(&self) -> &[LinuxNamespace] {
        self.linux
            .as_ref()
            .and_then(|l| l.namespaces.as_deref())
            .unwrap_or(&[])
    }

    pub fn mounts(&self) -> &[Mount] {
        self.mounts.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

    /// Every path the field lists name, arrays entered at their first element.
    fn paths(fields: &Fields, prefix: &[Json], out: &mut Vec<Vec<Json>>) {
        for (name, v) in fields.0 {
            let mut p = prefix.to_vec();
            p.push(json!(name));
            out.push(p.clone());
            match v {
                Value::Data => {}
                Value::Object(f) => paths(f, &p, out),
                Value::Objects(f) => {
                    p.push(json!(0));
                    paths(f, &p, out);
                }
            }
        }
    }

    fn at<'a>(doc: &'a mut Json, path: &[Json]) -> &'a mut Json {
        path.iter().fold(doc, |d, seg| match seg {
            Json::String(k) => &mut d[k.as_str()],
            n => &mut d[n.as_u64().expect("index") as usize],
        })
    }

    /// Each listed name is one serde reads: a value of the wrong type there fails the parse.
    /// (`linux.seccomp` is read for its presence only, so any value parses.)
    fn check_listed(fields: &Fields, base: Json, parse: impl Fn(&[u8]) -> bool) {
        let text = serde_json::to_vec(&base).expect("json");
        assert!(parse(&text), "the base document parses");
        let mut all = Vec::new();
        paths(fields, &[], &mut all);
        for path in all {
            let mut doc = base.clone();
            let slot = at(&mut doc, &path);
            assert!(
                !slot.is_null(),
                "{path:?} is missing from the base document"
            );
            *slot = if slot.is_number() {
                json!("x")
            } else {
                json!(12345)
            };
            let parsed = parse(&serde_json::to_vec(&doc).expect("json"));
            if path.last() == Some(&json!("seccomp")) {
                assert!(parsed);
            } else {
                assert!(!parsed, "{path:?} is listed but serde does not read it");
            }
        }
    }

    #[test]
    fn every_listed_spec_field_is_read() {
        let base = json!({
            "process": {"user": {"uid": 0},
                "capabilities": {"bounding": [], "effective": [], "inheritable": [],
                    "permitted": [], "ambient": []},
                "noNewPrivileges": true, "apparmorProfile": "p", "selinuxLabel": "l"},
            "mounts": [{"destination": "/d", "type": "bind", "source": "/s", "options": ["rbind"]}],
            "annotations": {},
            "linux": {"namespaces": [{"type": "pid", "path": "/p"}], "sysctl": {},
                "seccomp": {}, "maskedPaths": [], "readonlyPaths": [],
                "resources": {"devices": [{"allow": true, "type": "a", "major": 1, "minor": 1,
                    "access": "rwm"}]}}
        });
        check_listed(&SPEC_FIELDS, base, |b| {
            super::super::parse_spec(b, std::path::Path::new("config.json")).is_ok()
        });
    }

    #[test]
    fn every_listed_state_field_is_read() {
        let base = json!({"ociVersion": "1.0.2", "id": "c", "status": "creating", "pid": 1,
            "bundle": "/b", "annotations": {}});
        check_listed(&STATE_FIELDS, base, |b| {
            super::super::parse_state(b).is_ok()
        });
    }
}
