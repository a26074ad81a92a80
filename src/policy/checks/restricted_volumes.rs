//! `restrictedVolumes`: only configMap, csi, downwardAPI, emptyDir, ephemeral, image, projected,
//! persistentVolumeClaim and secret volumes.
//!
//! The node tells volume types by the kubelet plugin directory a bind source sits in
//! (`<kubelet root>/pods/<uid>/volumes/kubernetes.io~<plugin>/...`). configmap, secret,
//! projected, downward-api, empty-dir and csi are allowed; a host path is `hostPath`. Other
//! plugin directories (`kubernetes.io~nfs`, `~local-volume`, ...) serve both inline volumes
//! (refused by admission) and PersistentVolumeClaims (allowed); the switch
//! `legacy_volume_plugins` decides, default allow.

use crate::facts::{Facts, MountOrigin};
use crate::policy::LegacyVolumes;
use crate::policy::{Check, Context, Level, Outcome};

pub const CHECK: Check = Check {
    id: "restrictedVolumes",
    reason: "restricted volume types",
    level: Level::Restricted,
    since: 0,
    overridden_from: None,
    eval,
    cri: None,
};

const ALLOWED_PLUGINS: [&str; 6] = [
    "kubernetes.io~configmap",
    "kubernetes.io~secret",
    "kubernetes.io~projected",
    "kubernetes.io~downward-api",
    "kubernetes.io~empty-dir",
    "kubernetes.io~csi",
];

fn eval(f: &Facts, ctx: &Context) -> Outcome {
    let mut bad: Vec<String> = super::host_mounts(&f.mounts, f.host_ns.ipc)
        .into_iter()
        .map(|m| {
            format!(
                "host path {:?} at {:?} uses restricted volume type \"hostPath\"",
                m.source, m.destination
            )
        })
        .collect();
    if ctx.ambiguity.legacy_volumes == LegacyVolumes::Refuse {
        for m in &f.mounts {
            if let MountOrigin::Managed { plugin: Some(p) } = &m.origin
                && !ALLOWED_PLUGINS.contains(&p.as_str())
            {
                let typ = p.strip_prefix("kubernetes.io~").unwrap_or(p);
                bad.push(format!(
                    "volume at {:?} uses restricted volume type {typ:?}",
                    m.destination
                ));
            }
        }
    }
    if bad.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail {
            detail: bad.join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::BindMount;
    use crate::policy::Ambiguity;
    use crate::policy::checks::testing::{detail, run, run_with};

    fn with(origin: MountOrigin) -> Facts {
        let mut f = Facts::compliant_example();
        f.mounts = vec![BindMount {
            source: "/src".into(),
            destination: "/dst".into(),
            origin,
        }];
        f
    }

    #[test]
    fn allowed_plugins_pass() {
        for p in ALLOWED_PLUGINS {
            let f = with(MountOrigin::Managed {
                plugin: Some(p.into()),
            });
            assert_eq!(run(&CHECK, &f, 37), Outcome::Pass, "{p}");
        }
    }

    #[test]
    fn host_path_fails() {
        assert_eq!(
            detail(run(&CHECK, &with(MountOrigin::Host), 37)),
            "host path \"/src\" at \"/dst\" uses restricted volume type \"hostPath\""
        );
    }

    #[test]
    fn legacy_plugin_follows_switch() {
        let f = with(MountOrigin::Managed {
            plugin: Some("kubernetes.io~nfs".into()),
        });
        assert_eq!(run(&CHECK, &f, 37), Outcome::Pass);
        let amb = Ambiguity {
            legacy_volumes: LegacyVolumes::Refuse,
            ..Ambiguity::default()
        };
        assert_eq!(
            detail(run_with(&CHECK, &f, 37, amb)),
            "volume at \"/dst\" uses restricted volume type \"nfs\""
        );
    }
}
