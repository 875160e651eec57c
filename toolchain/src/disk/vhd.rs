//! Fixed VHD: the raw disk followed by a 512-byte footer (Azure wants N MiB + 512 bytes).

use anyhow::{bail, Context};
use std::io::Write;
use std::path::Path;

/// The footer for a fixed disk of `size` bytes with unique id `uuid`.
///
/// The creator application is `qem2`, the tag that QEMU's `-o force_size` writes and that
/// QEMU and Hyper-V read as "the size is the footer's current size" (not CHS geometry). The
/// time stamp is 0 (2000-01-01) for reproducible bytes.
pub fn fixed_footer(size: u64, uuid: &[u8; 16]) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: reserved bit
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // version 1.0
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // no dynamic header
    f[24..28].copy_from_slice(&0u32.to_be_bytes()); // time stamp
    f[28..32].copy_from_slice(b"qem2");
    f[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = chs(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // fixed disk
    f[68..84].copy_from_slice(uuid);
    let sum: u32 = f.iter().map(|&b| b as u32).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

/// CHS geometry as the VHD specification computes it.
pub fn chs(size: u64) -> (u16, u8, u8) {
    let mut total = size / 512;
    if total > 65535 * 16 * 255 {
        total = 65535 * 16 * 255;
    }
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

/// Appends the fixed-disk footer to the raw disk at `path` (a whole number of MiB).
pub fn append_fixed_footer(path: &Path, uuid: &[u8; 16]) -> anyhow::Result<()> {
    let size = std::fs::metadata(path)?.len();
    if !size.is_multiple_of(1 << 20) {
        bail!("internal: the raw disk is {size} bytes, not a whole number of MiB");
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("could not open {}", path.display()))?;
    f.write_all(&fixed_footer(size, uuid))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_fields_and_checksum() {
        let f = fixed_footer(42 << 20, &[7; 16]);
        assert_eq!(&f[..8], b"conectix");
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 42 << 20);
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        let mut z = f;
        z[64..68].fill(0);
        let sum: u32 = z.iter().map(|&b| b as u32).sum();
        assert_eq!(u32::from_be_bytes(f[64..68].try_into().unwrap()), !sum);
        // The geometry never claims more sectors than the disk has.
        let (c, h, s) = chs(42 << 20);
        assert!(c as u64 * h as u64 * s as u64 <= 86016);
    }
}
