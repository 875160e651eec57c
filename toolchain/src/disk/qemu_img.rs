//! qcow2 and VMDK through `qemu-img` (Debian's `qemu-utils`), installed when missing.

use super::Format;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Finds `qemu-img`, installing `qemu-utils` when it is missing and we are root.
pub fn ensure() -> anyhow::Result<PathBuf> {
    crate::qemu::install::ensure_tool("qemu-img", "qemu-utils")
}

/// Converts the raw disk `raw` to `format` (qcow2 or vmdk streamOptimized) at `out`.
pub fn convert(raw: &Path, format: Format, out: &Path) -> anyhow::Result<()> {
    let qemu_img = ensure()?;
    let mut cmd = Command::new(&qemu_img);
    cmd.args(["convert", "-q", "-f", "raw"]);
    match format {
        Format::Qcow2 => cmd.args(["-O", "qcow2"]),
        Format::Vmdk => cmd.args(["-O", "vmdk", "-o", "subformat=streamOptimized"]),
        _ => bail!("internal: qemu-img does not write {}", format.name()),
    };
    let r = cmd
        .arg(raw)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .context("could not run qemu-img")?;
    if !r.status.success() {
        bail!(
            "qemu-img convert to {} failed: {}",
            format.name(),
            String::from_utf8_lossy(&r.stderr).trim()
        );
    }
    Ok(())
}

/// Replaces the random content id (`CID=xxxxxxxx`) qemu-img writes into a VMDK's embedded
/// descriptor with one derived from `id`, in place (same length).
pub fn fix_vmdk_cid(path: &Path, id: &[u8; 16]) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    // The descriptor lives in the first few sectors after the 512-byte header.
    let window = bytes.len().min(64 * 1024);
    let at = bytes[..window]
        .windows(5)
        .position(|w| w == b"\nCID=")
        .ok_or_else(|| anyhow::anyhow!("qemu-img wrote a VMDK without a CID line"))?
        + 5;
    let cid = format!(
        "{:08x}",
        u32::from_le_bytes(id[..4].try_into().expect("4 bytes")) | 1
    );
    if bytes.len() < at + 8 || !bytes[at..at + 8].iter().all(u8::is_ascii_hexdigit) {
        bail!("unexpected CID line in the VMDK descriptor");
    }
    bytes[at..at + 8].copy_from_slice(cid.as_bytes());
    std::fs::write(path, bytes)?;
    Ok(())
}
