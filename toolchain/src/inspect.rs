//! `inspect`: find the PVH image inside anything Kiln writes and print its provenance.
//!
//! - PVH ELF: the payload is the `PT_LOAD` that starts with `KILNPAY1`.
//! - Disks and wrappers that hold the PVH image as contiguous bytes (raw, VHD, EFI, the FAT
//!   file system of a GPT disk): the file is scanned for the payload magic at 8-byte
//!   alignment; the ELF header that owns it is found a whole number of pages before it (the
//!   link step places the payload at a page-aligned file offset).
//! - qcow2 and VMDK: converted to raw with `qemu-img convert` in a temporary directory.
//! - GCE (`.tar.gz` holding `disk.raw`): unpacked to a temporary file, then scanned.
//! - OCI image layout directory (`publish --oci-dir`): the kernel layer's
//!   `/unikraft/bin/kernel`.
//!
//! Every answer says whether the image's `image_sha256` matches its bytes.

use crate::provenance::{self, Provenance};
use anyhow::{anyhow, bail, Context};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The container formats `inspect` recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PVH ELF image (`build-image`'s default).
    Pvh,
    /// qcow2 (`QFI\xfb`).
    Qcow2,
    /// VMDK (sparse `KDMV` or a descriptor file).
    Vmdk,
    /// A fixed VHD (`conectix` footer).
    Vhd,
    /// A PE32+ EFI application (`MZ`).
    Efi,
    /// A gzip'd tar (GCE's `disk.raw` in a `.tar.gz`).
    Gce,
    /// An OCI image layout directory.
    OciLayout,
    /// Anything else: scanned as raw bytes (a raw disk image).
    Raw,
}

impl Format {
    /// Lower-case name, as `--format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pvh => "pvh",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd => "vhd",
            Format::Efi => "efi",
            Format::Gce => "gce",
            Format::OciLayout => "oci-layout",
            Format::Raw => "raw",
        }
    }
}

/// What `inspect` found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The outer format.
    pub format: Format,
    /// The PVH image's provenance.
    pub provenance: Provenance,
    /// Whether `image_sha256` matches the PVH image's bytes.
    pub verified: bool,
    /// Size of the PVH image in bytes.
    pub pvh_size: u64,
}

/// Guesses the format from the first bytes and the last 512 (for VHD's footer).
pub fn detect(head: &[u8], tail: &[u8]) -> Format {
    if head.starts_with(b"\x7fELF") {
        Format::Pvh
    } else if head.starts_with(b"QFI\xfb") {
        Format::Qcow2
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        Format::Vmdk
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gce
    } else if head.starts_with(b"MZ") {
        Format::Efi
    } else if tail.starts_with(b"conectix") {
        Format::Vhd
    } else {
        Format::Raw
    }
}

/// Inspects the file or OCI layout directory at `path`.
pub fn inspect(path: &Path) -> anyhow::Result<Inspection> {
    if path.is_dir() {
        return inspect_oci_layout(path);
    }
    let mut f =
        std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut head = vec![0u8; 64.min(len as usize)];
    f.read_exact(&mut head)?;
    let mut tail = vec![0u8; 512.min(len as usize)];
    f.seek(SeekFrom::End(-(tail.len() as i64)))?;
    f.read_exact(&mut tail)?;
    let format = detect(&head, &tail);
    let (image, format) = match format {
        Format::Pvh => {
            let bytes = std::fs::read(path)?;
            // A raw disk never starts with an ELF header, but be safe: if this ELF has no
            // payload, scan it like any other container.
            if provenance::find_payload(&bytes).is_ok() {
                (bytes, Format::Pvh)
            } else {
                (scan_file(path)?, Format::Raw)
            }
        }
        Format::Qcow2 | Format::Vmdk => {
            let tmp = tempfile::tempdir()?;
            let raw = tmp.path().join("disk.raw");
            qemu_img_to_raw(path, &raw)?;
            (scan_file(&raw)?, format)
        }
        Format::Gce => {
            let tmp = tempfile::tempdir()?;
            let raw = tmp.path().join("disk.raw");
            gunzip_disk_raw(path, &raw)?;
            (scan_file(&raw)?, format)
        }
        Format::Vhd | Format::Efi | Format::Raw => (scan_file(path)?, format),
        Format::OciLayout => unreachable!("directories are handled above"),
    };
    let (provenance, verified) = provenance::read(&image)?;
    Ok(Inspection {
        format,
        provenance,
        verified,
        pvh_size: image.len() as u64,
    })
}

/// `qemu-img convert -O raw SRC DST`, with a clear error when qemu-img is missing.
pub fn qemu_img_to_raw(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let out = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow!(
                "could not run qemu-img to read {} ({e}); install it: apt-get install qemu-utils",
                src.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "qemu-img could not convert {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Extracts `disk.raw` from a GCE `.tar.gz` (with `tar`, which handles the sparse entries GCE
/// images use) into `dst`.
fn gunzip_disk_raw(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let dir = dst.parent().unwrap_or(Path::new("."));
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(src)
        .arg("-C")
        .arg(dir)
        .arg("disk.raw")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow!("could not run tar to unpack {}: {e}", src.display()))?;
    if !out.status.success() {
        bail!(
            "{} is gzip'd but not a GCE image (a tar holding disk.raw): {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Finds the first PVH image (ELF header + payload) stored contiguously in the file.
pub fn scan_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let len = f.metadata()?.len();
    scan(&mut f, len)?.ok_or_else(|| {
        anyhow!(
            "{} holds no Kiln image: no payload (KILNPAY1) with its PVH ELF found in it",
            path.display()
        )
    })
}

/// Finds the first PVH image stored contiguously in `f` (`len` bytes long): the payload
/// magic at 8-byte alignment, and the ELF header that owns it a whole number of pages
/// before. `None` when there is none.
pub fn scan<F: Read + Seek>(f: &mut F, len: u64) -> anyhow::Result<Option<Vec<u8>>> {
    const CHUNK: usize = 8 << 20;
    let mut buf = vec![0u8; (len.min(CHUNK as u64) as usize) + 8];
    let mut pos: u64 = 0;
    while pos < len {
        f.seek(SeekFrom::Start(pos))?;
        let n = read_up_to(f, &mut buf)?;
        let mut i = 0;
        while i + 8 <= n {
            if buf[i..i + 8] == kiln_abi::payload::MAGIC {
                if let Some(image) = image_around(f, len, pos + i as u64)? {
                    return Ok(Some(image));
                }
            }
            i += 8;
        }
        pos += CHUNK as u64;
    }
    Ok(None)
}

fn read_up_to<F: Read>(f: &mut F, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Given a payload magic at `at`, finds the ELF that owns it and returns the PVH image bytes.
fn image_around<F: Read + Seek>(f: &mut F, len: u64, at: u64) -> anyhow::Result<Option<Vec<u8>>> {
    let mut header = [0u8; kiln_abi::payload::HEADER_LEN];
    if at + header.len() as u64 > len {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut header)?;
    // The payload's length: the end of its last part.
    let mut payload_len = kiln_abi::payload::HEADER_LEN as u64;
    for i in 0..4 {
        let field = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().unwrap());
        let end = field(16 + i * 16).saturating_add(field(24 + i * 16));
        payload_len = payload_len.max(end);
    }
    // Look back for the ELF header, a whole number of pages before the payload.
    const MAX_KERNEL: u64 = 256 << 20;
    let back = at.min(MAX_KERNEL) / 4096 * 4096;
    let end = at.saturating_add(payload_len).min(len);
    for k in 1..=back / 4096 {
        let start = at - k * 4096;
        let mut magic = [0u8; 4];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut magic)?;
        if &magic != b"\x7fELF" {
            continue;
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut bytes)?;
        let Ok((_, phdrs)) = crate::elf::headers(&bytes) else {
            continue;
        };
        let owns = phdrs
            .iter()
            .any(|p| p.p_type == goblin::elf::program_header::PT_LOAD && p.p_offset == at - start);
        if !owns {
            continue;
        }
        let file_end = phdrs
            .iter()
            .map(|p| p.p_offset.saturating_add(p.p_filesz))
            .max()
            .unwrap_or(0) as usize;
        if file_end <= bytes.len() {
            bytes.truncate(file_end);
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// Reads a JSON file from an OCI layout.
fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| anyhow!("{} is not valid JSON: {e}", path.display()))
}

fn blob_path(dir: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| anyhow!("unsupported digest {digest:?} (only sha256)"))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

/// Reads the PVH image out of an OCI layout written by `publish --oci-dir`.
fn inspect_oci_layout(dir: &Path) -> anyhow::Result<Inspection> {
    if !dir.join("oci-layout").is_file() {
        bail!(
            "{} is a directory but not an OCI image layout (no oci-layout file)",
            dir.display()
        );
    }
    let index = read_json(&dir.join("index.json"))?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("{}/index.json lists no manifest", dir.display()))?;
    let manifest = read_json(&blob_path(dir, manifest_digest)?)?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for layer in layers {
        let Some(digest) = layer["digest"].as_str() else {
            continue;
        };
        let tar = std::fs::read(blob_path(dir, digest)?)?;
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if path == crate::oci::KERNEL_PATH.trim_start_matches('/') {
                let mut image = Vec::new();
                entry.read_to_end(&mut image)?;
                let (provenance, verified) = provenance::read(&image)?;
                return Ok(Inspection {
                    format: Format::OciLayout,
                    provenance,
                    verified,
                    pvh_size: image.len() as u64,
                });
            }
        }
    }
    bail!(
        "the OCI layout {} holds no {} (a KubeVirt containerDisk holds a disk: inspect the disk image instead)",
        dir.display(),
        crate::oci::KERNEL_PATH
    )
}

/// The human-readable summary `cargo xtask inspect` prints.
pub fn summary(path: &Path, i: &Inspection) -> String {
    let p = &i.provenance;
    let git = |g: &Option<provenance::GitInfo>| match g {
        Some(g) => format!("{}{}", g.commit, if g.dirty { " (dirty)" } else { "" }),
        None => "none".into(),
    };
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<14} {v}\n"));
    line("file", format!("{} ({})", path.display(), i.format.name()));
    line(
        "app",
        format!(
            "{} {} ({})",
            p.app.name,
            p.app.version.as_deref().unwrap_or("(no version)"),
            p.app.source
        ),
    );
    line("git", git(&p.app.git));
    line("Cargo.lock", opt(&p.app.cargo_lock_sha256));
    line("program", p.app.program_sha256.clone());
    line("rootfs", p.rootfs_sha256.clone());
    line("config", p.config.clone());
    line(
        "kernel",
        format!(
            "{} features [{}] git {}",
            p.kernel.version,
            p.kernel.features.join(", "),
            git(&p.kernel.git)
        ),
    );
    line("rustc", opt(&p.build.rustc));
    if let Some(cc) = &p.build.cc {
        line("cc", cc.clone());
    }
    line("app flags", p.build.app_flags.join(" "));
    line("kernel flags", p.build.kernel_flags.join(" "));
    line("kiln", p.build.kiln_version.clone());
    line("created", opt(&p.created));
    line(
        "sbom",
        format!(
            "CycloneDX {} ({} crates{}; `inspect --json` prints it)",
            p.sbom["specVersion"].as_str().unwrap_or("?"),
            p.sbom_components().saturating_sub(p.libraries.len()),
            if p.libraries.is_empty() {
                String::new()
            } else {
                format!(", {} libraries", p.libraries.len())
            }
        ),
    );
    for l in &p.libraries {
        let pkg = match (&l.package, &l.version) {
            (Some(p), Some(v)) => format!("{p} {v}"),
            (Some(p), None) => p.clone(),
            _ => "(no Debian package)".into(),
        };
        line(
            "library",
            format!(
                "{} {} sha256 {}",
                l.path,
                pkg,
                &l.sha256[..16.min(l.sha256.len())]
            ),
        );
    }
    line(
        "image sha256",
        format!(
            "{} ({}; {} bytes of PVH image)",
            p.image_sha256,
            if i.verified {
                "verified"
            } else {
                "MISMATCH: the image was changed after it was built"
            },
            i.pvh_size
        ),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed_image() -> Vec<u8> {
        let kernel = crate::link::tests::fake_kernel(kiln_abi::payload::LOCATION_SYMBOL, 16);
        let prov = crate::provenance::tests::sample();
        let payload =
            kiln_abi::payload::build_with_provenance(b"\x7fELFp", b"tar", "c", &prov.to_json());
        let mut image = crate::link::link(&kernel, &payload).unwrap();
        crate::provenance::seal(&mut image).unwrap();
        image
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect(b"\x7fELF..", b""), Format::Pvh);
        assert_eq!(detect(b"QFI\xfb", b""), Format::Qcow2);
        assert_eq!(detect(b"KDMV", b""), Format::Vmdk);
        assert_eq!(detect(b"\x1f\x8b\x08", b""), Format::Gce);
        assert_eq!(detect(b"MZ\x90", b""), Format::Efi);
        assert_eq!(detect(b"\0\0", b"conectix"), Format::Vhd);
        assert_eq!(detect(b"\0\0", b"\0"), Format::Raw);
    }

    #[test]
    fn finds_the_image_in_a_pvh_file_and_inside_a_raw_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let image = sealed_image();
        let pvh = tmp.path().join("a.elf");
        std::fs::write(&pvh, &image).unwrap();
        let i = inspect(&pvh).unwrap();
        assert_eq!(i.format, Format::Pvh);
        assert!(i.verified);
        assert_eq!(i.provenance.app.name, "hello");
        // A raw disk: the image at a sector boundary with other bytes around it, and a decoy
        // magic that no ELF owns.
        let mut disk = vec![0u8; 3 * 512];
        disk[512..520].copy_from_slice(&kiln_abi::payload::MAGIC);
        disk.extend_from_slice(&image);
        disk.extend_from_slice(&vec![0xeeu8; 10_000]);
        let raw = tmp.path().join("disk.raw");
        std::fs::write(&raw, &disk).unwrap();
        let i = inspect(&raw).unwrap();
        assert_eq!(i.format, Format::Raw);
        assert!(i.verified);
        assert_eq!(i.pvh_size, image.len() as u64);
        let s = summary(&raw, &i);
        assert!(
            s.contains("hello 0.1.0 (example:hello)") && s.contains("verified"),
            "{s}"
        );
        assert!(s.contains("c0ffee (dirty)"), "{s}");
        // Nothing there.
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        let e = inspect(&raw).unwrap_err().to_string();
        assert!(e.contains("holds no Kiln image"), "{e}");
    }
}
