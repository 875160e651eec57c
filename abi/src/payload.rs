//! The payload: the program, its root filesystem, its baked-in configuration and the image's
//! provenance, appended to the kernel as one extra `PT_LOAD` segment by the toolchain's link step.
//!
//! The kernel finds the payload through [`LOCATION_SYMBOL`], a 16-byte static in the kernel
//! (`[physical address, length]`, both `u64` little-endian) that the link step fills in.
//! The payload itself starts with a [`Header`] of [`HEADER_LEN`] bytes:
//!
//! | offset | field |
//! |---|---|
//! | 0  | magic `KILNPAY1` |
//! | 8  | version (u32) = [`VERSION`] |
//! | 12 | header length (u32) = [`HEADER_LEN`] |
//! | 16 | program ELF: offset (u64), length (u64) |
//! | 32 | root filesystem tar: offset (u64), length (u64) |
//! | 48 | configuration (a command line, see [`crate::cmdline`]): offset (u64), length (u64) |
//! | 64 | provenance (UTF-8 JSON, see the toolchain's `provenance` module): offset (u64), length (u64) |
//!
//! Offsets are relative to the start of the payload. All integers are little-endian.
//! The header describes itself: the header length says how many parts follow the first 16
//! bytes (16 bytes each), so a reader knows where the parts it does not use end. Version 1
//! payloads (64-byte header, no provenance) still parse, with an empty provenance. The kernel
//! never reads the provenance; it is for tools (`cargo xtask inspect`).
//! The program starts on a 4 KiB boundary (the link step places the payload on one too), so
//! the kernel can map its read-only pages in place instead of copying them.

use core::ops::Range;

/// Name of the kernel symbol that holds the payload's physical address and length.
pub const LOCATION_SYMBOL: &str = "KILN_PAYLOAD_LOCATION";
/// First bytes of every payload.
pub const MAGIC: [u8; 8] = *b"KILNPAY1";
/// Current payload version.
pub const VERSION: u32 = 2;
/// The oldest version [`parse`] still reads (no provenance part).
pub const OLDEST_VERSION: u32 = 1;
/// Alignment of the program inside the payload (a page).
pub const PROGRAM_ALIGN: usize = 4096;
/// Size of the encoded [`Header`].
pub const HEADER_LEN: usize = 80;
/// Header length of version 1 payloads (three parts).
const HEADER_LEN_V1: usize = 64;

/// The parsed payload header: where each part lies inside the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Byte range of the program's ELF file.
    pub program: Range<usize>,
    /// Byte range of the root filesystem (a tar archive).
    pub rootfs: Range<usize>,
    /// Byte range of the baked-in configuration (command-line tokens, UTF-8).
    pub config: Range<usize>,
    /// Byte range of the provenance document (UTF-8 JSON); empty in version 1 payloads.
    pub provenance: Range<usize>,
}

/// Why a payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// Shorter than its header.
    Truncated,
    /// The magic number is wrong: this is not a Kiln payload.
    BadMagic,
    /// Written by an incompatible toolchain.
    UnsupportedVersion(u32),
    /// A part lies outside the payload.
    OutOfBounds,
}

impl core::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => write!(f, "payload is truncated"),
            Self::BadMagic => write!(f, "payload has no Kiln magic number"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "payload version {v} is not supported (expected {OLDEST_VERSION} to {VERSION}); rebuild the image"
            ),
            Self::OutOfBounds => write!(f, "payload part lies outside the payload"),
        }
    }
}

/// Builds a payload from its three runtime parts, with an empty provenance.
pub fn build(program: &[u8], rootfs: &[u8], config: &str) -> alloc::vec::Vec<u8> {
    build_with_provenance(program, rootfs, config, b"")
}

/// Builds a payload from its parts; `provenance` goes last, so the bytes before it do not
/// depend on it.
pub fn build_with_provenance(
    program: &[u8],
    rootfs: &[u8],
    config: &str,
    provenance: &[u8],
) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec::Vec::with_capacity(HEADER_LEN + program.len() + rootfs.len() + 64);
    out.resize(HEADER_LEN, 0);
    let place = |out: &mut alloc::vec::Vec<u8>, bytes: &[u8], align: usize| {
        while !out.len().is_multiple_of(align) {
            out.push(0);
        }
        let start = out.len();
        out.extend_from_slice(bytes);
        (start as u64, bytes.len() as u64)
    };
    let p = place(&mut out, program, PROGRAM_ALIGN);
    // Page-aligned too, so file data the archive aligns to pages (libraries) can be mapped
    // into the program in place.
    let r = place(&mut out, rootfs, PROGRAM_ALIGN);
    let c = place(&mut out, config.as_bytes(), 8);
    let v = place(&mut out, provenance, 8);
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    for (i, (off, len)) in [p, r, c, v].into_iter().enumerate() {
        let at = 16 + i * 16;
        out[at..at + 8].copy_from_slice(&off.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&len.to_le_bytes());
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Parses and bounds-checks the header of `payload`.
pub fn parse(payload: &[u8]) -> Result<Header, PayloadError> {
    if payload.len() < 16 {
        return Err(PayloadError::Truncated);
    }
    if payload[0..8] != MAGIC {
        return Err(PayloadError::BadMagic);
    }
    let version = u32_at(payload, 8);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(PayloadError::UnsupportedVersion(version));
    }
    let header_len = u32_at(payload, 12) as usize;
    let parts = header_len.saturating_sub(16) / 16;
    let needed = if version == 1 {
        HEADER_LEN_V1
    } else {
        HEADER_LEN
    };
    if header_len < needed || header_len > payload.len() {
        return Err(PayloadError::Truncated);
    }
    let range = |i: usize| -> Result<Range<usize>, PayloadError> {
        if i >= parts {
            return Ok(header_len..header_len);
        }
        let at = 16 + i * 16;
        let off = u64_at(payload, at);
        let len = u64_at(payload, at + 8);
        let end = off.checked_add(len).ok_or(PayloadError::OutOfBounds)?;
        if off < header_len as u64 || end > payload.len() as u64 {
            return Err(PayloadError::OutOfBounds);
        }
        Ok(off as usize..end as usize)
    };
    Ok(Header {
        program: range(0)?,
        rootfs: range(1)?,
        config: range(2)?,
        provenance: range(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse() {
        let p = build(b"\x7fELFprog", b"tar!", "kiln.argv=a");
        let h = parse(&p).unwrap();
        assert_eq!(&p[h.program.clone()], b"\x7fELFprog");
        assert_eq!(&p[h.rootfs.clone()], b"tar!");
        assert_eq!(&p[h.config.clone()], b"kiln.argv=a");
        assert_eq!(h.program.start % PROGRAM_ALIGN, 0);
        assert_eq!(h.rootfs.start % 8, 0);
        assert!(h.provenance.is_empty());
        let q = build_with_provenance(b"\x7fELFprog", b"tar!", "kiln.argv=a", b"{}");
        let hq = parse(&q).unwrap();
        assert_eq!(&q[hq.provenance.clone()], b"{}");
        // The provenance goes last: everything before it is the same as without it.
        assert_eq!(&q[HEADER_LEN..h.config.end], &p[HEADER_LEN..h.config.end]);
        assert_eq!(
            (hq.program, hq.rootfs, hq.config),
            (h.program, h.rootfs, h.config)
        );
    }

    #[test]
    fn reads_version_1_payloads() {
        // A version 1 payload: 64-byte header, three parts.
        let mut v1 = alloc::vec![0u8; 72];
        v1[0..8].copy_from_slice(&MAGIC);
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1[12..16].copy_from_slice(&64u32.to_le_bytes());
        for (i, off) in [64u64, 68, 72].into_iter().enumerate() {
            v1[16 + i * 16..24 + i * 16].copy_from_slice(&off.to_le_bytes());
            let len: u64 = if i < 2 { 4 } else { 0 };
            v1[24 + i * 16..32 + i * 16].copy_from_slice(&len.to_le_bytes());
        }
        let h = parse(&v1).unwrap();
        assert_eq!(h.program, 64..68);
        assert_eq!(h.config, 72..72);
        assert!(h.provenance.is_empty());
        // A version 2 header claiming only 64 bytes is truncated.
        let mut bad = build(b"x", b"y", "");
        bad[12..16].copy_from_slice(&64u32.to_le_bytes());
        assert_eq!(parse(&bad), Err(PayloadError::Truncated));
    }

    #[test]
    fn rejects_bad_payloads() {
        let mut p = build(b"x", b"y", "");
        assert_eq!(parse(&p[..10]), Err(PayloadError::Truncated));
        let mut bad = p.clone();
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(PayloadError::BadMagic));
        let mut bad = p.clone();
        bad[8] = 9;
        assert_eq!(parse(&bad), Err(PayloadError::UnsupportedVersion(9)));
        p[30] = 0xff; // program length far past the end
        assert_eq!(parse(&p), Err(PayloadError::OutOfBounds));
    }
}
