//! The GCE archive: a gzip'd tar (GNU "oldgnu" format) holding exactly `disk.raw`, stored
//! as a GNU sparse entry (type `S`), whose size is a whole number of GiB.
//!
//! The `tar` crate reads sparse entries but cannot write them, so the header and the
//! extension blocks are filled here through its `GnuHeader`/`GnuExtSparseHeader` types;
//! GNU tar reads the result (`tar -xSf`).

use anyhow::{bail, Context};
use flate2::write::GzEncoder;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// GCE's size unit: disks are whole GB, where GCE's GB is 2^30 bytes.
pub const GIB: u64 = 1 << 30;
/// Granularity of the data/hole scan.
const BLOCK: u64 = 4096;

/// The data runs (offset, length) of the file: every `BLOCK` with a non-zero byte.
pub fn data_runs(f: &mut std::fs::File, size: u64) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    f.seek(SeekFrom::Start(0))?;
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n])?;
        for (i, chunk) in buf[..n].chunks(BLOCK as usize).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                let off = at + i as u64 * BLOCK;
                let len = chunk.len() as u64;
                match runs.last_mut() {
                    Some(r) if r.0 + r.1 == off => r.1 += len,
                    _ => runs.push((off, len)),
                }
            }
        }
        at += n as u64;
    }
    // GNU tar wants the map to reach the end of the file: a final empty run marks a
    // trailing hole.
    if runs.last().is_none_or(|r| r.0 + r.1 != size) {
        runs.push((size, 0));
    }
    Ok(runs)
}

fn octal(field: &mut [u8], v: u64) -> anyhow::Result<()> {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        bail!("{v} does not fit a {digits}-digit tar field");
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    Ok(())
}

/// Writes `raw` (a whole number of GiB) as `disk.raw` in a gzip'd oldgnu sparse tar at `out`.
pub fn write_tar_gz(raw: &Path, out: &Path) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::open(raw).with_context(|| format!("could not open {}", raw.display()))?;
    let size = f.metadata()?.len();
    if size == 0 || !size.is_multiple_of(GIB) {
        bail!("internal: the GCE disk is {size} bytes, not a whole number of GiB");
    }
    let runs = data_runs(&mut f, size)?;
    let stored: u64 = runs.iter().map(|r| r.1).sum();

    let mut header = tar::Header::new_gnu();
    header.set_path("disk.raw")?;
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_size(stored);
    let gnu = header
        .as_gnu_mut()
        .ok_or_else(|| anyhow::anyhow!("internal: not a GNU header"))?;
    octal(&mut gnu.realsize, size)?;
    let (first, rest) = runs.split_at(runs.len().min(4));
    for (slot, r) in gnu.sparse.iter_mut().zip(first) {
        octal(&mut slot.offset, r.0)?;
        octal(&mut slot.numbytes, r.1)?;
    }
    gnu.isextended[0] = u8::from(!rest.is_empty());
    header.set_cksum();

    let file = std::fs::File::create(out)
        .with_context(|| format!("could not create {}", out.display()))?;
    let mut gz = GzEncoder::new(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    gz.write_all(header.as_bytes())?;
    let chunks: Vec<&[(u64, u64)]> = rest.chunks(21).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut ext = zeroed_ext();
        for (slot, r) in ext.sparse.iter_mut().zip(chunk.iter()) {
            octal(&mut slot.offset, r.0)?;
            octal(&mut slot.numbytes, r.1)?;
        }
        ext.isextended[0] = u8::from(i + 1 < chunks.len());
        gz.write_all(ext.as_bytes())?;
    }
    let mut buf = vec![0u8; 1 << 20];
    for &(off, len) in &runs {
        f.seek(SeekFrom::Start(off))?;
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..n])?;
            gz.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    let pad = (512 - stored % 512) % 512;
    gz.write_all(&vec![0u8; pad as usize + 1024])?;
    gz.finish()?.flush()?;
    Ok(())
}

/// An all-zero extension header.
fn zeroed_ext() -> tar::GnuExtSparseHeader {
    tar::GnuExtSparseHeader {
        sparse: std::array::from_fn(|_| tar::GnuSparseHeader {
            offset: [0; 12],
            numbytes: [0; 12],
        }),
        isextended: [0],
        padding: [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_data_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let mut f = std::fs::File::create(&p).unwrap();
        f.set_len(3 * BLOCK * 10).unwrap();
        f.seek(SeekFrom::Start(5)).unwrap();
        f.write_all(b"a").unwrap();
        f.seek(SeekFrom::Start(BLOCK * 4 + 1)).unwrap();
        f.write_all(b"b").unwrap();
        drop(f);
        let mut f = std::fs::File::open(&p).unwrap();
        let runs = data_runs(&mut f, 30 * BLOCK).unwrap();
        assert_eq!(runs, vec![(0, BLOCK), (4 * BLOCK, BLOCK), (30 * BLOCK, 0)]);
    }
}
