//! Disk images: `build-image --format` and recognising images for `run --image`.
//!
//! Every disk format starts from the same raw GPT disk ([`esp`]): a protective MBR, a GPT
//! with one EFI System Partition (FAT32) holding `\EFI\BOOT\BOOTX64.EFI` (Kiln's EFI
//! application, [`crate::efi`]) and `\KILN\CMDLINE` (the run-time command line cloud users
//! can edit). From it:
//!
//! | format | how | why |
//! |---|---|---|
//! | `raw` | [`esp`]: `gpt` + `fatfs` crates | plain bytes |
//! | `qcow2` | `qemu-img convert -O qcow2` | no maintained Rust crate writes qcow2 |
//! | `vmdk` | `qemu-img convert -O vmdk -o subformat=streamOptimized`, random CID replaced | likewise; the CID is the only non-reproducible field |
//! | `vhd` | [`vhd`]: raw + a 512-byte fixed-disk footer written here | trivial, and qemu-img would stamp the time and a random UUID |
//! | `gce` | [`gce`]: tar (oldgnu, sparse `disk.raw`) + gzip with `tar` and `flate2` | the `tar` crate cannot write sparse entries: the sparse header is written by hand with its GNU header types |
//!
//! All identifiers (GPT disk and partition GUIDs, FAT volume id, VHD unique id) derive from
//! the SHA-256 of the EFI application, and every time stamp is fixed, so two builds of the
//! same inputs give identical bytes.

pub mod esp;
pub mod gce;
pub mod qemu_img;
pub mod vhd;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What `build-image --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The PVH ELF (QEMU `-kernel`, Firecracker, Cloud Hypervisor).
    #[default]
    Pvh,
    /// The PE32+ EFI application (`BOOTX64.EFI`).
    Efi,
    /// A raw GPT disk with an EFI System Partition.
    Raw,
    /// qcow2 (QEMU, OpenStack).
    Qcow2,
    /// VMDK, streamOptimized (VMware, AWS ImportSnapshot).
    Vmdk,
    /// Fixed VHD, N MiB + 512 bytes (Azure).
    Vhd,
    /// GCE: `disk.raw` (a whole number of GiB) in an oldgnu sparse tar, gzipped.
    Gce,
}

impl Format {
    /// Every format, in display order.
    pub const ALL: [Format; 7] = [
        Format::Pvh,
        Format::Efi,
        Format::Raw,
        Format::Qcow2,
        Format::Vmdk,
        Format::Vhd,
        Format::Gce,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pvh => "pvh",
            Format::Efi => "efi",
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Gce => "gce",
        }
    }

    /// The file extension of the default output name.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Pvh => "elf",
            Format::Efi => "efi",
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Gce => "tar.gz",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown format `{s}`; use pvh, efi, raw, qcow2, vmdk, vhd or gce")
            })
    }
}

/// Derives 16 bytes from `seed` for the identifier called `what`.
pub fn derive_id(seed: &[u8], what: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"kiln-disk-id\0");
    h.update(what.as_bytes());
    h.update([0]);
    h.update(seed);
    h.finalize()[..16].try_into().expect("16 bytes")
}

/// Writes the image in `format` to `out`, from the linked PVH image.
pub fn write(layout: &crate::Layout, pvh: &[u8], format: Format, out: &Path) -> anyhow::Result<()> {
    if format == Format::Pvh {
        return crate::image::write_atomically(out, pvh);
    }
    let efi = crate::efi::efi_application(layout, pvh)?;
    write_from_efi(&efi, format, out)
}

/// Writes the image in `format` (not `pvh`) to `out`, from the EFI application.
pub fn write_from_efi(efi: &[u8], format: Format, out: &Path) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-disk-")
        .tempdir_in(&dir)
        .with_context(|| format!("could not write in {}", dir.display()))?;
    let raw = tmp.path().join("disk.raw");
    let staged = tmp.path().join("out");
    match format {
        Format::Pvh => bail!("internal: the pvh format has no disk"),
        Format::Efi => std::fs::write(&staged, efi)?,
        Format::Raw => esp::write_raw_disk(efi, None, &staged)?,
        Format::Qcow2 | Format::Vmdk => {
            esp::write_raw_disk(efi, None, &raw)?;
            qemu_img::convert(&raw, format, &staged)?;
            if format == Format::Vmdk {
                qemu_img::fix_vmdk_cid(&staged, &derive_id(efi, "vmdk-cid"))?;
            }
        }
        Format::Vhd => {
            esp::write_raw_disk(efi, None, &staged)?;
            vhd::append_fixed_footer(&staged, &derive_id(efi, "vhd-uuid"))?;
        }
        Format::Gce => {
            esp::write_raw_disk(efi, Some(gce::GIB), &raw)?;
            gce::write_tar_gz(&raw, &staged)?;
        }
    }
    std::fs::rename(&staged, out).with_context(|| format!("could not write {}", out.display()))?;
    Ok(())
}

/// `build-image --format FORMAT`: builds the PVH image as `build-image` does, then writes
/// it in `format` (to `req.output`, or `target/kiln/images/NAME.EXT`).
pub fn build_image(
    layout: &crate::Layout,
    req: &crate::image::BuildRequest,
    format: Format,
) -> anyhow::Result<crate::image::BuiltImage> {
    if format == Format::Pvh {
        return crate::image::build_image(layout, req);
    }
    std::fs::create_dir_all(layout.images_dir())?;
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-pvh-")
        .tempdir_in(layout.images_dir())
        .context("could not create a temporary directory under target/kiln/images")?;
    let mut pvh_req = req.clone();
    pvh_req.output = Some(tmp.path().join("image.elf"));
    let built = crate::image::build_image(layout, &pvh_req)?;
    let pvh = std::fs::read(&built.path)?;
    let out = req.output.clone().unwrap_or_else(|| {
        layout
            .images_dir()
            .join(format!("{}.{}", built.app.name, format.extension()))
    });
    write(layout, &pvh, format, &out)?;
    finish(built.app, out)
}

/// `build-image --image IMG --format FORMAT`: writes an existing PVH image (or the image
/// inside a Kiln EFI application) in `format`.
pub fn convert_image(
    layout: &crate::Layout,
    image: &Path,
    format: Format,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<crate::image::BuiltImage> {
    let bytes =
        std::fs::read(image).with_context(|| format!("could not read {}", image.display()))?;
    let pvh = match detect(image)? {
        ImageKind::Pvh => bytes,
        ImageKind::Efi => crate::efi::inspect_pe(&bytes)?.embedded,
        _ => bail!(
            "{} is already a disk image; give build-image --image a PVH image (.elf) or a Kiln EFI application (.efi)",
            image.display()
        ),
    };
    crate::pvh::verify(&pvh)
        .map_err(|e| anyhow::anyhow!("{} is not a bootable PVH image: {e}", image.display()))?;
    let name = image
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.split('.').next().unwrap_or(n).to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "image".into());
    let out = output.unwrap_or_else(|| {
        layout
            .images_dir()
            .join(format!("{name}.{}", format.extension()))
    });
    if out.canonicalize().ok() == image.canonicalize().ok() {
        bail!(
            "refusing to overwrite the input {}; choose another -o",
            image.display()
        );
    }
    write(layout, &pvh, format, &out)?;
    finish(
        crate::app::App {
            name,
            elf: image.to_path_buf(),
        },
        out,
    )
}

fn finish(
    app: crate::app::App,
    path: std::path::PathBuf,
) -> anyhow::Result<crate::image::BuiltImage> {
    let mut f = std::fs::File::open(&path)?;
    let mut h = Sha256::new();
    let size = std::io::copy(&mut f, &mut h)?;
    Ok(crate::image::BuiltImage {
        app,
        path,
        size,
        sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// What `run --image` was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A PVH ELF: QEMU `-kernel`.
    Pvh,
    /// A PE32+ EFI application: wrapped into a raw disk for the run.
    Efi,
    /// A disk image QEMU opens with this `format=` (`raw`, `qcow2`, `vmdk`, `vpc`).
    Disk(&'static str),
    /// A GCE archive (gzip): unpack it first.
    GceArchive,
}

/// Recognises an image by its contents.
pub fn detect(path: &Path) -> anyhow::Result<ImageKind> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("could not open image {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 1024];
    let n = f.read(&mut head)?;
    let head = &head[..n];
    let mut tail = [0u8; 512];
    let tail_ok = len >= 512 && {
        f.seek(SeekFrom::End(-512))?;
        f.read_exact(&mut tail).is_ok()
    };
    let tail = if tail_ok { &tail[..] } else { &[][..] };
    detect_bytes(head, tail).ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not a Kiln image (PVH ELF, EFI application, or raw/qcow2/vmdk/vhd disk); build one with `cargo xtask build-image`",
            path.display()
        )
    })
}

/// Recognises an image from its first bytes (up to 1024) and its last 512 (empty when the
/// file is shorter); `None` when it is no kind `run --image` knows.
pub fn detect_bytes(head: &[u8], tail: &[u8]) -> Option<ImageKind> {
    Some(if head.starts_with(b"\x7fELF") {
        ImageKind::Pvh
    } else if head.starts_with(b"MZ") {
        ImageKind::Efi
    } else if head.starts_with(b"QFI\xfb") {
        ImageKind::Disk("qcow2")
    } else if head.starts_with(b"KDMV") {
        ImageKind::Disk("vmdk")
    } else if head.starts_with(b"conectix") || tail.starts_with(b"conectix") {
        ImageKind::Disk("vpc")
    } else if head.len() >= 520 && &head[510..512] == b"\x55\xaa" && &head[512..520] == b"EFI PART"
    {
        ImageKind::Disk("raw")
    } else if head.starts_with(b"\x1f\x8b") {
        ImageKind::GceArchive
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert!("iso".parse::<Format>().unwrap_err().contains("qcow2"));
        assert_eq!(Format::Gce.extension(), "tar.gz");
        assert_eq!(Format::default(), Format::Pvh);
    }

    #[test]
    fn derived_ids_differ_and_repeat() {
        assert_eq!(derive_id(b"a", "x"), derive_id(b"a", "x"));
        assert_ne!(derive_id(b"a", "x"), derive_id(b"a", "y"));
        assert_ne!(derive_id(b"a", "x"), derive_id(b"b", "x"));
    }
}
