//! A reader for the root filesystem archive: ustar and GNU tar, with GNU long names
//! (`L`/`K` entries) and pax path records (`x` entries).
//!
//! Entries borrow their data from the archive, which lives in the image's memory for the
//! whole run. Corrupt or truncated archives give a [`TarError`]; nothing here panics on
//! bad input.

use alloc::string::String;
use alloc::vec::Vec;

/// Size of a tar block.
const BLOCK: usize = 512;

/// What an archive entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    HardLink,
}

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Normalised absolute path (`/`, `/etc/passwd`): no `.`, `..`, or repeated slashes.
    pub path: String,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// File contents (empty for anything but a file).
    pub data: &'a [u8],
    /// Symlink target (as written) or, for hard links, the normalised path of the target.
    pub link: String,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
}

/// Why an archive could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarError {
    /// The archive ends inside a header or an entry's data.
    Truncated,
    /// A header's checksum does not match.
    BadChecksum,
    /// A numeric header field is not a number.
    BadNumber,
    /// A pax extended header is malformed.
    BadPax,
    /// A name or link target is not valid UTF-8.
    BadName,
    /// A hard link names an entry that is not in the archive (or is a directory).
    BadLink,
    /// An entry type this reader cannot represent (such as GNU sparse files).
    Unsupported(u8),
}

/// Reads a numeric header field: octal ASCII (space/NUL padded) or GNU base-256.
fn number(field: &[u8]) -> Result<u64, TarError> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            // GNU base-256: big-endian, first byte's top bit is the marker (0xff: negative).
            if first == 0xff {
                return Err(TarError::BadNumber);
            }
            let mut v: u64 = u64::from(first & 0x7f);
            for &b in &field[1..] {
                if v >> 56 != 0 {
                    return Err(TarError::BadNumber);
                }
                v = (v << 8) | u64::from(b);
            }
            return Ok(v);
        }
    }
    let mut v: u64 = 0;
    let mut seen_digit = false;
    for &b in field {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(TarError::BadNumber)?;
                seen_digit = true;
            }
            b' ' if !seen_digit => {}
            b' ' | 0 => break,
            _ => return Err(TarError::BadNumber),
        }
    }
    Ok(v)
}

/// The bytes of a NUL-terminated (or full-width) header string field.
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Normalises an archive path to an absolute path: leading `/` and `./` stripped, `.` and
/// empty components dropped, `..` applied (never above the root).
pub use kiln_abi::path::normalise;

fn utf8(bytes: &[u8]) -> Result<String, TarError> {
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|_| TarError::BadName)
}

/// Path, link and size overrides from a pax extended header.
#[derive(Default)]
struct Pax {
    path: Option<String>,
    link: Option<String>,
    size: Option<u64>,
}

/// Parses pax records (`"<len> <key>=<value>\n"`, where len counts the whole record).
fn parse_pax(mut data: &[u8], pax: &mut Pax) -> Result<(), TarError> {
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or(TarError::BadPax)?;
        let len_str = core::str::from_utf8(&data[..sp]).map_err(|_| TarError::BadPax)?;
        let len = kiln_abi::cmdline::number(len_str, 10)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(TarError::BadPax)?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(TarError::BadPax);
        }
        let record = &data[sp + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TarError::BadPax)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pax.path = Some(utf8(value)?),
            b"linkpath" => pax.link = Some(utf8(value)?),
            b"size" => {
                let s = core::str::from_utf8(value).map_err(|_| TarError::BadPax)?;
                pax.size = Some(kiln_abi::cmdline::number(s, 10).ok_or(TarError::BadPax)?);
            }
            _ => {}
        }
        data = &data[len..];
    }
    Ok(())
}

/// Verifies a header block's checksum (unsigned, or the historic signed variant).
fn checksum_ok(h: &[u8]) -> Result<bool, TarError> {
    let stored = number(&h[148..156])?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    Ok(stored == unsigned || stored as i64 == signed)
}

/// Parses a whole archive. An empty archive, or one that ends at a block boundary without
/// the two zero blocks, is accepted; anything cut short inside an entry is not.
/// Device nodes, FIFOs, volume labels and global pax headers are skipped.
pub fn parse(archive: &[u8]) -> Result<Vec<Entry<'_>>, TarError> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    let mut pax = Pax::default();
    while pos < archive.len() {
        let h = archive.get(pos..pos + BLOCK).ok_or(TarError::Truncated)?;
        if h.iter().all(|&b| b == 0) {
            // End of archive (one zero block is enough to stop; the rest is padding).
            if long_name.is_some() || long_link.is_some() || pax.path.is_some() {
                return Err(TarError::Truncated);
            }
            break;
        }
        if !checksum_ok(h)? {
            return Err(TarError::BadChecksum);
        }
        let typeflag = h[156];
        let size = match pax.size.take() {
            Some(s) if typeflag != b'x' && typeflag != b'g' => s,
            _ => number(&h[124..136])?,
        };
        let data_start = pos + BLOCK;
        let size_usize = usize::try_from(size).map_err(|_| TarError::Truncated)?;
        let data_end = data_start
            .checked_add(size_usize)
            .ok_or(TarError::Truncated)?;
        let data = archive
            .get(data_start..data_end)
            .ok_or(TarError::Truncated)?;
        let padded = size_usize.div_ceil(BLOCK) * BLOCK;
        pos = data_start.checked_add(padded).ok_or(TarError::Truncated)?;

        match typeflag {
            b'L' => {
                long_name = Some(utf8(cstr(data))?);
                continue;
            }
            b'K' => {
                long_link = Some(utf8(cstr(data))?);
                continue;
            }
            b'x' => {
                parse_pax(data, &mut pax)?;
                continue;
            }
            b'g' | b'V' => continue,
            _ => {}
        }

        let name = match (long_name.take(), pax.path.take()) {
            (_, Some(p)) => p,
            (Some(n), None) => n,
            (None, None) => {
                let base = cstr(&h[0..100]);
                let ustar = &h[257..263] == b"ustar\0";
                let prefix = if ustar { cstr(&h[345..500]) } else { &[][..] };
                if prefix.is_empty() {
                    utf8(base)?
                } else {
                    let mut s = utf8(prefix)?;
                    s.push('/');
                    s.push_str(&utf8(base)?);
                    s
                }
            }
        };
        let link = match (long_link.take(), pax.link.take()) {
            (_, Some(l)) => l,
            (Some(l), None) => l,
            (None, None) => utf8(cstr(&h[157..257]))?,
        };
        let mode = (number(&h[100..108])? & 0o7777) as u32;
        let mtime = number(&h[136..148])?;
        let path = normalise(&name);
        let (kind, data, link) = match typeflag {
            b'0' | 0 | b'7' if name.ends_with('/') && size == 0 => (EntryKind::Dir, &[][..], link),
            b'0' | 0 | b'7' => (EntryKind::File, data, String::new()),
            b'1' => (EntryKind::HardLink, &[][..], normalise(&link)),
            b'2' => (EntryKind::Symlink, &[][..], link),
            b'5' => (EntryKind::Dir, &[][..], String::new()),
            b'3' | b'4' | b'6' => continue,
            other => return Err(TarError::Unsupported(other)),
        };
        entries.push(Entry {
            path,
            kind,
            mode,
            data,
            link,
            mtime,
        });
    }
    if long_name.is_some() || long_link.is_some() || pax.path.is_some() || pax.link.is_some() {
        return Err(TarError::Truncated);
    }
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    /// Leaks a buffer so tests can hand it to the `'static` parser.
    pub fn leak(v: Vec<u8>) -> &'static [u8] {
        Box::leak(v.into_boxed_slice())
    }

    /// Writes an octal field of `field.len()` bytes (NUL-terminated).
    fn octal(field: &mut [u8], v: u64) {
        let w = field.len() - 1;
        let s = alloc::format!("{v:0w$o}");
        field[..w].copy_from_slice(s.as_bytes());
        field[w] = 0;
    }

    /// A hand-made header block (GNU magic unless `ustar`).
    pub fn header(
        name: &[u8],
        typeflag: u8,
        size: u64,
        mode: u32,
        link: &[u8],
        ustar: bool,
    ) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], MTIME);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        if ustar {
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
        } else {
            h[257..265].copy_from_slice(b"ustar  \0");
        }
        fix_checksum(&mut h);
        h
    }

    /// Recomputes a header's checksum.
    pub fn fix_checksum(h: &mut [u8]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = alloc::format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
    }

    /// Appends an entry (header + padded data).
    /// The mtime of the test archives' entries (seconds).
    pub const MTIME: u64 = 1_700_000_000;

    pub fn push(out: &mut Vec<u8>, name: &[u8], typeflag: u8, mode: u32, link: &[u8], data: &[u8]) {
        out.extend(header(name, typeflag, data.len() as u64, mode, link, false));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    /// Appends the two zero end blocks.
    pub fn finish(out: &mut Vec<u8>) {
        out.extend(core::iter::repeat_n(0u8, 1024));
    }

    #[test]
    fn empty_archive_is_empty() {
        assert_eq!(parse(&[]), Ok(vec![]));
        assert_eq!(parse(leak(vec![0; 1024])), Ok(vec![]));
    }

    #[test]
    fn files_dirs_links() {
        let mut a = Vec::new();
        push(&mut a, b"./", b'5', 0o755, b"", b"");
        push(&mut a, b"./etc/", b'5', 0o755, b"", b"");
        push(
            &mut a,
            b"./etc/hosts",
            b'0',
            0o644,
            b"",
            b"127.0.0.1 localhost\n",
        );
        push(&mut a, b"etc/alias", b'2', 0o777, b"hosts", b"");
        push(&mut a, b"etc/hard", b'1', 0o644, b"./etc/hosts", b"");
        push(&mut a, b"/a//b/../c", b'0', 0o4755, b"", b"x");
        finish(&mut a);
        let e = parse(leak(a)).unwrap();
        assert_eq!(e.len(), 6);
        assert_eq!((e[0].path.as_str(), e[0].kind), ("/", EntryKind::Dir));
        assert_eq!((e[1].path.as_str(), e[1].kind), ("/etc", EntryKind::Dir));
        assert_eq!(e[2].path, "/etc/hosts");
        assert_eq!(e[2].kind, EntryKind::File);
        assert_eq!(e[2].mode, 0o644);
        assert_eq!(e[2].data, b"127.0.0.1 localhost\n");
        assert_eq!(e[3].kind, EntryKind::Symlink);
        assert_eq!(e[3].link, "hosts");
        assert_eq!(e[4].kind, EntryKind::HardLink);
        assert_eq!(e[4].link, "/etc/hosts");
        assert_eq!(e[5].path, "/a/c");
        assert_eq!(e[5].mode, 0o4755);
    }

    #[test]
    fn data_is_borrowed_not_copied() {
        let mut a = Vec::new();
        push(&mut a, b"f", b'0', 0o644, b"", b"hello");
        let a = leak(a);
        let e = parse(a).unwrap();
        assert!(core::ptr::eq(e[0].data.as_ptr(), a[512..].as_ptr()));
    }

    #[test]
    fn ustar_prefix_joins_name() {
        let mut h = header(b"file", b'0', 0, 0o644, b"", true);
        h[345..352].copy_from_slice(b"usr/lib");
        fix_checksum(&mut h);
        let e = parse(leak(h)).unwrap();
        assert_eq!(e[0].path, "/usr/lib/file");
    }

    #[test]
    fn gnu_long_names_and_links() {
        let long: Vec<u8> = core::iter::repeat_n(b'n', 150).collect();
        let mut name = b"dir/".to_vec();
        name.extend(&long);
        let mut target = b"/x/".to_vec();
        target.extend(&long);
        let mut a = Vec::new();
        let mut n0 = name.clone();
        n0.push(0);
        push(&mut a, b"././@LongLink", b'L', 0o644, b"", &n0);
        push(&mut a, b"K-placeholder", b'K', 0o644, b"", &target);
        push(&mut a, &name[..100], b'2', 0o777, &target[..100], b"");
        push(&mut a, b"short", b'0', 0o644, b"", b"");
        let e = parse(leak(a)).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path.as_bytes()[1..], name[..]);
        assert_eq!(e[0].link.as_bytes(), &target[..]);
        assert_eq!(e[1].path, "/short");
    }

    #[test]
    fn pax_path_and_size() {
        let rec = |k: &str, v: &str| {
            // Find the self-inclusive length.
            let body = alloc::format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while alloc::format!("{len}").len() + body.len() != len {
                len += 1;
            }
            alloc::format!("{len}{body}")
        };
        let mut recs = rec("path", "very/long/pax/name");
        recs.push_str(&rec("size", "3"));
        recs.push_str(&rec("mtime", "1.5"));
        let mut a = Vec::new();
        push(&mut a, b"PaxHeaders/x", b'x', 0o644, b"", recs.as_bytes());
        // The ustar header says size 0 would be wrong; the pax size wins.
        a.extend(header(b"trunc", b'0', 0, 0o600, b"", true));
        a.extend_from_slice(b"abc");
        a.resize(a.len().div_ceil(512) * 512, 0);
        push(
            &mut a,
            b"PaxHeaders/g",
            b'g',
            0o644,
            b"",
            rec("comment", "hi").as_bytes(),
        );
        push(&mut a, b"after", b'0', 0o644, b"", b"z");
        finish(&mut a);
        let e = parse(leak(a)).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path, "/very/long/pax/name");
        assert_eq!(e[0].data, b"abc");
        assert_eq!(e[1].path, "/after");
    }

    #[test]
    fn bad_pax_is_an_error() {
        let mut a = Vec::new();
        push(&mut a, b"p", b'x', 0o644, b"", b"99 path=x\n");
        push(&mut a, b"f", b'0', 0o644, b"", b"");
        assert_eq!(parse(leak(a)), Err(TarError::BadPax));
        let mut a = Vec::new();
        push(&mut a, b"p", b'x', 0o644, b"", b"garbage");
        assert_eq!(parse(leak(a)), Err(TarError::BadPax));
    }

    #[test]
    fn truncation_is_an_error() {
        let mut a = Vec::new();
        push(&mut a, b"f", b'0', 0o644, b"", &[7u8; 1000]);
        for cut in [100, 511, 600, 1023] {
            let short = leak(a[..cut].to_vec());
            assert_eq!(parse(short), Err(TarError::Truncated), "cut at {cut}");
        }
        // A long-name entry with nothing after it.
        let mut b = Vec::new();
        push(&mut b, b"././@LongLink", b'L', 0o644, b"", b"name\0");
        assert_eq!(parse(leak(b.clone())), Err(TarError::Truncated));
        finish(&mut b);
        assert_eq!(parse(leak(b)), Err(TarError::Truncated));
    }

    #[test]
    fn corruption_is_an_error() {
        let mut a = Vec::new();
        push(&mut a, b"f", b'0', 0o644, b"", b"data");
        let mut bad = a.clone();
        bad[0] = b'g';
        assert_eq!(parse(leak(bad)), Err(TarError::BadChecksum));
        let mut bad = a.clone();
        bad[124] = b'9';
        fix_checksum(&mut bad[..512]);
        assert_eq!(parse(leak(bad)), Err(TarError::BadNumber));
        let mut bad = a.clone();
        bad[148] = b'x';
        assert_eq!(parse(leak(bad)), Err(TarError::BadNumber));
        let mut bad = a.clone();
        bad[0] = 0xff;
        fix_checksum(&mut bad[..512]);
        assert_eq!(parse(leak(bad)), Err(TarError::BadName));
        let mut bad = a;
        bad[156] = b'S';
        fix_checksum(&mut bad[..512]);
        assert_eq!(parse(leak(bad)), Err(TarError::Unsupported(b'S')));
        // Huge sizes do not overflow.
        let mut h = header(b"f", b'0', 0, 0o644, b"", false);
        h[124] = 0x80;
        h[125..136].copy_from_slice(&[0xff; 11]);
        fix_checksum(&mut h);
        assert!(parse(leak(h)).is_err());
    }

    #[test]
    fn base256_numbers() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 5;
        f[10] = 1;
        assert_eq!(number(&f), Ok(261));
        assert_eq!(number(b"  0644 \0"), Ok(0o644));
        assert_eq!(number(b"\0\0\0\0"), Ok(0));
    }

    #[test]
    fn devices_and_fifos_are_skipped() {
        let mut a = Vec::new();
        push(&mut a, b"dev/null", b'3', 0o666, b"", b"");
        push(&mut a, b"fifo", b'6', 0o666, b"", b"");
        push(&mut a, b"f", b'0', 0o644, b"", b"");
        assert_eq!(parse(leak(a)).unwrap().len(), 1);
    }

    #[test]
    fn reads_what_the_tar_crate_writes() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "usr/", &[][..]).unwrap();
        let long = alloc::format!("usr/{}", "x".repeat(200));
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(5);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "usr/link", "../usr/target").unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o600);
        h.set_size(2);
        b.append_data(&mut h, "ustar/file", &b"hi"[..]).unwrap();
        let bytes = leak(b.into_inner().unwrap());
        let e = parse(bytes).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].path, "/usr");
        assert_eq!(e[0].kind, EntryKind::Dir);
        assert_eq!(e[1].path, alloc::format!("/{long}"));
        assert_eq!(e[1].data, b"hello");
        assert_eq!(e[2].kind, EntryKind::Symlink);
        assert_eq!(e[2].link, "../usr/target");
        assert_eq!(e[3].path, "/ustar/file");
        assert_eq!(e[3].mode, 0o600);
    }
}
