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

/// Replaces the random content id qemu-img writes into a VMDK's embedded descriptor
/// (`CID=` followed by one to eight hex digits, unpadded) with eight digits derived from
/// `id`, so converting the same disk twice gives the same bytes.
pub fn fix_vmdk_cid(path: &Path, id: &[u8; 16]) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let cid = u32::from_le_bytes(id[..4].try_into().expect("4 bytes")) | 0x1000_0000;
    set_vmdk_cid(&mut bytes, cid)?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Rewrites the `CID=` line of the descriptor embedded in the sparse VMDK `bytes` to `cid`
/// as eight hex digits, shifting the rest of the descriptor within its reserved sectors.
fn set_vmdk_cid(bytes: &mut [u8], cid: u32) -> anyhow::Result<()> {
    const SECTOR: usize = 512;
    if bytes.len() < SECTOR || &bytes[..4] != b"KDMV" {
        bail!("qemu-img wrote a VMDK without a sparse extent header");
    }
    let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    // Sparse extent header: magic, version, flags, capacity, grainSize, descriptorOffset,
    // descriptorSize (the last two in sectors).
    let (offset, size) = (field(28) as usize * SECTOR, field(36) as usize * SECTOR);
    if offset == 0 || size == 0 || offset.saturating_add(size) > bytes.len() {
        bail!("qemu-img wrote a VMDK without an embedded descriptor");
    }
    let region = &mut bytes[offset..offset + size];
    let text_len = region.iter().position(|&b| b == 0).unwrap_or(size);
    let text =
        std::str::from_utf8(&region[..text_len]).context("the VMDK descriptor is not text")?;
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let line = lines
        .iter_mut()
        .find(|l| l.starts_with("CID="))
        .ok_or_else(|| anyhow::anyhow!("qemu-img wrote a VMDK without a CID line"))?;
    let old = &line["CID=".len()..];
    if old.is_empty() || old.len() > 8 || !old.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("unexpected CID line in the VMDK descriptor: {line:?}");
    }
    *line = format!("CID={cid:08x}");
    let new = lines.join("\n");
    if new.len() > size {
        bail!("the VMDK descriptor does not fit its sectors after setting the CID");
    }
    region[..new.len()].copy_from_slice(new.as_bytes());
    region[new.len()..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::set_vmdk_cid;

    fn vmdk(cid: &str) -> Vec<u8> {
        let mut v = vec![0u8; 4 * 512];
        v[..4].copy_from_slice(b"KDMV");
        v[28..36].copy_from_slice(&1u64.to_le_bytes());
        v[36..44].copy_from_slice(&2u64.to_le_bytes());
        let desc = format!("# Disk DescriptorFile\nversion=1\nCID={cid}\nparentCID=ffffffff\n");
        v[512..512 + desc.len()].copy_from_slice(desc.as_bytes());
        v
    }

    #[test]
    fn any_random_cid_becomes_the_same_eight_digits() {
        let (mut long, mut short) = (vmdk("9abcdef0"), vmdk("3f2"));
        set_vmdk_cid(&mut long, 0x1234_5678).unwrap();
        set_vmdk_cid(&mut short, 0x1234_5678).unwrap();
        assert_eq!(long, short);
        let text = String::from_utf8_lossy(&long[512..1024]);
        assert!(
            text.contains("\nCID=12345678\nparentCID=ffffffff\n"),
            "{text}"
        );
    }

    #[test]
    fn a_disk_without_a_descriptor_is_an_error() {
        let mut v = vmdk("1");
        v[0] = b'X';
        assert!(set_vmdk_cid(&mut v, 1).is_err());
        let mut v = vmdk("nothex");
        assert!(set_vmdk_cid(&mut v, 1).is_err());
    }
}
