//! `publish`: a Kiln image (built now, or an existing one) as an OCI artifact or a KubeVirt
//! containerDisk, pushed to a registry and/or written as an OCI image layout.

use super::registry::{self, PushOptions};
use super::{kubevirt, layout, Artifact, ImageRef};
use crate::image::{self, BuildRequest};
use crate::provenance::{self, Provenance};
use crate::Layout;
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};

/// Where the Kiln image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Build it (the same selectors and options as `build-image`).
    Build(BuildRequest),
    /// An existing PVH image (`--image`).
    File(PathBuf),
    /// Only a disk (`--kubevirt --disk FILE`): its provenance comes from the image inside.
    DiskOnly,
}

/// Everything `publish` needs.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The Kiln image.
    pub source: ImageSource,
    /// `--oci REGISTRY/REPO:TAG`.
    pub oci: Option<ImageRef>,
    /// `--oci-dir DIR`.
    pub oci_dir: Option<PathBuf>,
    /// `--kubevirt`: a containerDisk instead of the Kiln artifact.
    pub kubevirt: bool,
    /// `--disk FILE`: the qcow2 (or raw) disk for the containerDisk.
    pub disk: Option<PathBuf>,
    /// `--kubevirt-manifest FILE`.
    pub kubevirt_manifest: Option<PathBuf>,
    /// Memory request of the VirtualMachine, MiB.
    pub memory_mib: u64,
    /// Registry options (`--force` also applies to `--oci-dir`).
    pub push: PushOptions,
}

/// What `publish` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The manifest digest.
    pub digest: String,
    /// `REGISTRY/REPO:TAG` when pushed.
    pub pushed: Option<String>,
    /// The layout directory when written.
    pub oci_dir: Option<PathBuf>,
    /// The VirtualMachine manifest when written.
    pub kubevirt_manifest: Option<PathBuf>,
}

/// Reads a PVH image and its provenance, refusing images without one or whose bytes changed.
pub fn read_image(path: &Path) -> anyhow::Result<(Vec<u8>, Provenance)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    let (prov, ok) = provenance::read(&bytes).map_err(|e| {
        anyhow!(
            "{}: {e} (--image takes a PVH image from `cargo xtask build-image`; for a disk use --kubevirt --disk)",
            path.display()
        )
    })?;
    if !ok {
        bail!(
            "{}: its bytes do not match its recorded image_sha256 {}: it was changed after it was built; rebuild it",
            path.display(),
            prov.image_sha256
        );
    }
    Ok((bytes, prov))
}

/// The disk for a containerDisk: the given `--disk`, else a qcow2 built from the PVH image
/// (with [`crate::disk`]).
fn disk_for(
    layout: &Layout,
    req: &PublishRequest,
    pvh: Option<&(Vec<u8>, Provenance)>,
) -> anyhow::Result<(Vec<u8>, String, Provenance)> {
    let tmp = tempfile::tempdir()?;
    let path = match &req.disk {
        Some(p) => p.clone(),
        None => {
            // No --disk: make the qcow2 (a UEFI GPT disk) from the image, as
            // `build-image --format qcow2` does.
            let (bytes, p) = pvh.ok_or_else(|| anyhow!("--kubevirt needs an image or --disk"))?;
            let out = tmp.path().join(format!("{}.qcow2", p.app.name));
            crate::disk::write(layout, bytes, crate::disk::Format::Qcow2, &out)?;
            out
        }
    };
    let path = &path;
    let found = crate::inspect::inspect(path).map_err(|e| {
        anyhow!("--disk {}: {e}; pass a qcow2 or raw disk made by `cargo xtask build-image --format qcow2|raw`", path.display())
    })?;
    let fmt = found.format;
    if !matches!(
        fmt,
        crate::inspect::Format::Qcow2 | crate::inspect::Format::Raw
    ) {
        bail!(
            "--disk {} is a {} image; KubeVirt containerDisks hold qcow2 or raw disks",
            path.display(),
            fmt.name()
        );
    }
    if !found.verified {
        bail!(
            "--disk {}: the Kiln image inside does not match its recorded image_sha256; rebuild it",
            path.display()
        );
    }
    if let Some((_, p)) = pvh {
        if p.image_sha256 != found.provenance.image_sha256 {
            bail!(
                "--disk {} holds a different Kiln image (image sha256 {}) than the one selected (image sha256 {}); rebuild the disk from the same inputs, or publish the disk alone with --kubevirt --disk",
                path.display(),
                found.provenance.image_sha256,
                p.image_sha256
            );
        }
    }
    let bytes = std::fs::read(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}.{}", found.provenance.app.name, fmt.name()));
    Ok((bytes, name, found.provenance))
}

/// Runs `publish`.
pub fn publish(layout: &Layout, req: &PublishRequest) -> anyhow::Result<Published> {
    if req.oci.is_none() && req.oci_dir.is_none() {
        bail!("nothing to publish to: give --oci REGISTRY/REPO:TAG and/or --oci-dir DIR");
    }
    if req.kubevirt_manifest.is_some() && req.oci.is_none() {
        bail!("--kubevirt-manifest needs --oci: the VirtualMachine pulls its disk from a registry");
    }
    if req.disk.is_some() && !req.kubevirt {
        bail!("--disk is for --kubevirt (the disk that goes into the containerDisk)");
    }
    let pvh = match &req.source {
        ImageSource::Build(b) => {
            let built = image::build_image(layout, b)?;
            crate::note!(
                "image {} ({} bytes)",
                layout.display(&built.path),
                built.size
            );
            Some(read_image(&built.path)?)
        }
        ImageSource::File(p) => Some(read_image(p)?),
        ImageSource::DiskOnly => None,
    };
    let (artifact, prov): (Artifact, Provenance) = if req.kubevirt {
        let (disk, name, prov) = disk_for(layout, req, pvh.as_ref())?;
        (super::container_disk(&disk, &name, &prov)?, prov)
    } else {
        let (bytes, prov) = pvh.ok_or_else(|| {
            anyhow!("publish needs an image: give --example, --manifest-path, --elf or --image")
        })?;
        (super::kiln_artifact(&bytes, &prov)?, prov)
    };
    let digest = artifact.digest();
    let mut out = Published {
        digest: digest.clone(),
        pushed: None,
        oci_dir: None,
        kubevirt_manifest: None,
    };
    if let Some(dir) = &req.oci_dir {
        layout::write(
            dir,
            &artifact,
            req.oci.as_ref().map(|r| r.tag.as_str()),
            req.push.force,
        )?;
        out.oci_dir = Some(dir.clone());
    }
    if let Some(r) = &req.oci {
        let pushed = registry::push(r, &artifact, &req.push)?;
        debug_assert_eq!(pushed, digest);
        out.pushed = Some(r.to_string());
        if let Some(path) = &req.kubevirt_manifest {
            let yaml = kubevirt::vm_manifest(
                &prov.app.name,
                &r.pinned(&digest),
                req.memory_mib,
                &prov.image_sha256,
            );
            image::write_atomically(path, yaml.as_bytes())?;
            out.kubevirt_manifest = Some(path.clone());
        }
    }
    Ok(out)
}
