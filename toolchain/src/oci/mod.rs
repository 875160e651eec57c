//! OCI images: Kiln images as OCI artifacts (KraftKit's unikernel convention) and KubeVirt
//! containerDisks, written as an OCI image layout ([`layout`]) or pushed to a registry
//! ([`registry`]); and pulled back, checked and cached for `run` ([`pull`], [`cache`]).
//!
//! **Kiln artifact** (`publish --oci`): one uncompressed tar layer
//! (`application/vnd.oci.image.layer.v1.tar`) holding the PVH image at [`KERNEL_PATH`]
//! (`/unikraft/bin/kernel`, KraftKit's well-known kernel path) and the provenance at
//! [`PROVENANCE_PATH`]. The config's `os` is the platform, `qemu` (KraftKit's name for
//! QEMU/KVM; the same image also boots on Firecracker and Cloud Hypervisor), `architecture` is
//! `x86_64` (KraftKit's spelling), `os.version` the kernel version, `Entrypoint` the kernel
//! path, `Cmd`/`Env` the baked arguments and environment. Annotations: `org.unikraft.kernel.*`
//! (version, arch, plat; `org.unikraft.kernel.image` on the layer), `org.opencontainers.image.*`
//! and Kiln's `dev.kiln.*`; the config's `dev.kiln.provenance` label holds the whole provenance
//! document (with the SBOM).
//!
//! **KubeVirt containerDisk** (`publish --kubevirt`): an ordinary `linux/amd64` image with one
//! layer holding the disk at `/disk/NAME.qcow2`, owned by uid/gid 107 (KubeVirt's qemu user).
//!
//! Everything is deterministic: tar headers carry mtime 0 (or `SOURCE_DATE_EPOCH`), fixed
//! owners and modes; JSON keys come in a fixed order; no `created` unless
//! `SOURCE_DATE_EPOCH` is set. The same inputs give the same digests.

pub mod cache;
pub mod kubevirt;
pub mod layer;
pub mod layout;
#[cfg(feature = "registry")]
pub mod publish;
#[cfg(feature = "registry")]
pub mod pull;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;

use crate::provenance::Provenance;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub use reference::ImageRef;

/// Where the PVH image lives in the kernel layer (KraftKit's `WellKnownKernelPath`).
pub const KERNEL_PATH: &str = "/unikraft/bin/kernel";
/// Where the provenance document lives in the kernel layer.
pub const PROVENANCE_PATH: &str = "/kiln/provenance.json";
/// The platform in the config's `os` field.
pub const PLATFORM: &str = "qemu";
/// The architecture, as KraftKit spells it.
pub const ARCH: &str = "x86_64";
/// Uncompressed tar layer.
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// KubeVirt's qemu user and group.
pub const KUBEVIRT_QEMU_ID: u64 = 107;

/// One content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its media type.
    pub media_type: String,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Descriptor annotations (layers only).
    pub annotations: BTreeMap<String, String>,
}

impl Blob {
    /// `sha256:HEX`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", crate::image::sha256_hex(&self.data))
    }

    fn descriptor(&self) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.data.len(),
        });
        if !self.annotations.is_empty() {
            d["annotations"] = json!(self.annotations);
        }
        d
    }
}

/// A complete OCI image: config, layers and the manifest bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The config blob.
    pub config: Blob,
    /// The layers, in order.
    pub layers: Vec<Blob>,
    /// The manifest's JSON bytes.
    pub manifest: Vec<u8>,
}

impl Artifact {
    /// Assembles the manifest for `config` and `layers`.
    pub fn new(config: Blob, layers: Vec<Blob>, annotations: BTreeMap<String, String>) -> Self {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if !annotations.is_empty() {
            m["annotations"] = json!(annotations);
        }
        let manifest = serde_json::to_vec(&m).expect("JSON values always serialize");
        Artifact {
            config,
            layers,
            manifest,
        }
    }

    /// The manifest digest (`sha256:HEX`): what the registry stores the tag under.
    pub fn digest(&self) -> String {
        format!("sha256:{}", crate::image::sha256_hex(&self.manifest))
    }
}

/// Annotations every Kiln image carries (manifest and config labels), from its provenance.
pub fn provenance_annotations(p: &Provenance) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        a.insert(k.to_string(), v);
    };
    put("org.opencontainers.image.title", p.app.name.clone());
    if let Some(v) = &p.app.version {
        put("org.opencontainers.image.version", v.clone());
    }
    if let Some(g) = &p.app.git {
        put("org.opencontainers.image.revision", g.commit.clone());
        put("dev.kiln.app.git.dirty", g.dirty.to_string());
    }
    if let Some(c) = &p.created {
        put("org.opencontainers.image.created", c.clone());
    }
    put("org.unikraft.kernel.version", p.kernel.version.clone());
    put("org.unikraft.kernel.arch", ARCH.into());
    put("org.unikraft.kernel.plat", PLATFORM.into());
    put("dev.kiln.app.name", p.app.name.clone());
    put("dev.kiln.app.source", p.app.source.clone());
    put("dev.kiln.app.program.sha256", p.app.program_sha256.clone());
    if let Some(l) = &p.app.cargo_lock_sha256 {
        put("dev.kiln.cargo-lock.sha256", l.clone());
    }
    put("dev.kiln.image.sha256", p.image_sha256.clone());
    put(
        "dev.kiln.image.sha256.covers",
        p.image_sha256_covers.clone(),
    );
    put("dev.kiln.kernel.version", p.kernel.version.clone());
    put("dev.kiln.kernel.features", p.kernel.features.join(","));
    if let Some(g) = &p.kernel.git {
        put("dev.kiln.kernel.git.commit", g.commit.clone());
    }
    if let Some(r) = &p.build.rustc {
        put("dev.kiln.rustc", r.clone());
    }
    put("dev.kiln.build.app-flags", p.build.app_flags.join(" "));
    put(
        "dev.kiln.build.kernel-flags",
        p.build.kernel_flags.join(" "),
    );
    put("dev.kiln.version", p.build.kiln_version.clone());
    put(
        "dev.kiln.sbom",
        format!(
            "CycloneDX {} JSON, {} crates: in {PROVENANCE_PATH} and the config label dev.kiln.provenance",
            p.sbom["specVersion"].as_str().unwrap_or("?"),
            p.sbom_components()
        ),
    );
    a
}

/// `Cmd` and `Env` from the baked configuration.
fn cmd_env(config: &str) -> (Vec<String>, Vec<String>) {
    let Ok(c) = kiln_abi::cmdline::Config::parse(config) else {
        return (Vec::new(), Vec::new());
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let cmd = c.argv.unwrap_or_default().iter().map(|a| text(a)).collect();
    let env = c
        .env
        .iter()
        .map(|(k, v)| format!("{}={}", text(k), text(v)))
        .collect();
    (cmd, env)
}

/// An image config: `os`/`architecture`, the runtime config and one layer's diff id.
fn config_blob(
    os: &str,
    arch: &str,
    extra: Map<String, Value>,
    runtime: Value,
    layers: &[&Blob],
    created: Option<&str>,
) -> Blob {
    let mut c = json!({
        "architecture": arch,
        "os": os,
    });
    for (k, v) in extra {
        c[k] = v;
    }
    if let Some(t) = created {
        c["created"] = json!(t);
    }
    c["config"] = runtime;
    c["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.digest()).collect::<Vec<_>>(),
    });
    Blob {
        media_type: MEDIA_CONFIG.into(),
        data: serde_json::to_vec(&c).expect("JSON values always serialize"),
        annotations: BTreeMap::new(),
    }
}

/// The Kiln artifact for a PVH image with provenance `p`.
pub fn kiln_artifact(image: &[u8], p: &Provenance) -> anyhow::Result<Artifact> {
    let mtime = layer::mtime()?;
    let layer = Blob {
        media_type: MEDIA_LAYER.into(),
        data: layer::kernel_layer(image, &p.to_json(), mtime)?,
        annotations: BTreeMap::from([
            (
                "org.unikraft.kernel.image".to_string(),
                KERNEL_PATH.to_string(),
            ),
            (
                "org.opencontainers.image.title".to_string(),
                "kernel".to_string(),
            ),
        ]),
    };
    let annotations = provenance_annotations(p);
    let mut labels = annotations.clone();
    labels.insert(
        "dev.kiln.provenance".into(),
        String::from_utf8(p.to_json()).expect("JSON is UTF-8"),
    );
    let (cmd, env) = cmd_env(&p.config);
    let mut extra = Map::new();
    extra.insert("os.version".into(), json!(p.kernel.version));
    if !p.kernel.features.is_empty() {
        extra.insert("os.features".into(), json!(p.kernel.features));
    }
    let config = config_blob(
        PLATFORM,
        ARCH,
        extra,
        json!({
            "Entrypoint": [KERNEL_PATH],
            "Cmd": cmd,
            "Env": env,
            "WorkingDir": "/",
            "Labels": labels,
        }),
        &[&layer],
        p.created.as_deref(),
    );
    Ok(Artifact::new(config, vec![layer], annotations))
}

/// The KubeVirt containerDisk for `disk` (qcow2 or raw bytes, stored as `/disk/FILE_NAME`),
/// labelled with the provenance `p` of the Kiln image inside it.
pub fn container_disk(disk: &[u8], file_name: &str, p: &Provenance) -> anyhow::Result<Artifact> {
    let mtime = layer::mtime()?;
    let layer = Blob {
        media_type: MEDIA_LAYER.into(),
        data: layer::disk_layer(disk, file_name, mtime)?,
        annotations: BTreeMap::new(),
    };
    let mut annotations = provenance_annotations(p);
    annotations.insert(
        "dev.kiln.kubevirt.disk".into(),
        format!("/disk/{file_name}"),
    );
    let config = config_blob(
        "linux",
        "amd64",
        Map::new(),
        json!({ "Labels": annotations }),
        &[&layer],
        p.created.as_deref(),
    );
    Ok(Artifact::new(config, vec![layer], annotations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kiln_artifact_follows_kraftkit() {
        let mut p = crate::provenance::tests::sample();
        p.config = "kiln.name=/bin/hello kiln.argv=--exit,3 kiln.env=GREETING=hi".into();
        let a = kiln_artifact(b"\x7fELF image", &p).unwrap();
        assert_eq!(
            a,
            kiln_artifact(b"\x7fELF image", &p).unwrap(),
            "deterministic"
        );
        let m: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["mediaType"], MEDIA_MANIFEST);
        assert_eq!(m["config"]["digest"], a.config.digest());
        assert_eq!(m["layers"][0]["mediaType"], MEDIA_LAYER);
        assert_eq!(
            m["layers"][0]["annotations"]["org.unikraft.kernel.image"],
            KERNEL_PATH
        );
        assert_eq!(m["annotations"]["org.unikraft.kernel.version"], "0.1.0");
        assert_eq!(m["annotations"]["org.opencontainers.image.title"], "hello");
        assert_eq!(
            m["annotations"]["org.opencontainers.image.revision"],
            "c0ffee"
        );
        assert_eq!(m["annotations"]["dev.kiln.image.sha256"], p.image_sha256);
        assert!(m["annotations"]
            .get("org.opencontainers.image.created")
            .is_none());
        let c: Value = serde_json::from_slice(&a.config.data).unwrap();
        assert_eq!(c["os"], "qemu");
        assert_eq!(c["architecture"], "x86_64");
        assert_eq!(c["config"]["Entrypoint"][0], KERNEL_PATH);
        assert_eq!(c["config"]["Cmd"], json!(["--exit", "3"]));
        assert_eq!(c["config"]["Env"], json!(["GREETING=hi"]));
        assert_eq!(c["rootfs"]["diff_ids"][0], a.layers[0].digest());
        let prov = c["config"]["Labels"]["dev.kiln.provenance"]
            .as_str()
            .unwrap();
        assert_eq!(Provenance::from_json(prov.as_bytes()).unwrap(), p);
        assert_eq!(
            a.digest(),
            format!("sha256:{}", crate::image::sha256_hex(&a.manifest))
        );
    }

    #[test]
    fn container_disk_is_linux_amd64() {
        let p = crate::provenance::tests::sample();
        let a = container_disk(b"QFI\xfbdisk", "hello.qcow2", &p).unwrap();
        let c: Value = serde_json::from_slice(&a.config.data).unwrap();
        assert_eq!(
            (c["os"].as_str(), c["architecture"].as_str()),
            (Some("linux"), Some("amd64"))
        );
        let m: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(
            m["annotations"]["dev.kiln.kubevirt.disk"],
            "/disk/hello.qcow2"
        );
    }
}
