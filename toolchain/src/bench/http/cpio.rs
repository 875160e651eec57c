//! A writer for the cpio "newc" format (the one Linux unpacks as an initramfs): directories,
//! regular files, symbolic links and character devices, owned by root, with mtime 0 so the same inputs give
//! the same bytes.
//!
//! Each entry is a 110-byte ASCII header (`070701` and 13 eight-digit hex fields), the
//! NUL-terminated name padded to a multiple of 4 bytes, then the data padded the same way.
//! The archive ends with an entry named `TRAILER!!!`.

/// File type bits of `mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const S_IFLNK: u32 = 0o120000;

/// An archive being written.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Writer {
        Writer {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    /// Adds a directory (`path` without a leading `/`, such as `dev`).
    pub fn dir(&mut self, path: &str, perm: u32) {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
    }

    /// Adds a symbolic link to `target` (its data is the target, as in `cpio -H newc`).
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// Adds a character device node (`dev/console` is 5:1).
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino += 1;
            self.next_ino - 1
        };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).expect("cpio newc files are smaller than 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short name"),
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    /// Adds the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, mode, rdev, data.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// A minimal reader, to check what the writer wrote.
    fn read_all(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let total = b.len();
        loop {
            assert_eq!((total - b.len()) % 4, 0, "entries start 4-aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rdev, namesize) = (
                field(1),
                field(6) as usize,
                (field(9), field(10)),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).div_ceil(4) * 4;
            let data = b[data_at..data_at + size].to_vec();
            b = &b[(data_at + size).div_ceil(4) * 4..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn header_layout() {
        let mut w = Writer::new();
        w.file("/init", 0o755, b"abc");
        let a = w.finish();
        let h = std::str::from_utf8(&a[..110]).unwrap();
        assert_eq!(
            h,
            "070701\
             00000001\
             000081ed\
             00000000\
             00000000\
             00000001\
             00000000\
             00000003\
             00000000\
             00000000\
             00000000\
             00000000\
             00000005\
             00000000"
        );
        // 110 + "init\0" = 115, padded to 116; data 3 bytes padded to 4.
        assert_eq!(&a[110..116], b"init\0\0");
        assert_eq!(&a[116..120], b"abc\0");
        assert_eq!(&a[120..126], b"070701");
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn round_trip() {
        let mut w = Writer::new();
        w.dir("dev", 0o755);
        w.char_device("dev/console", 0o600, 5, 1);
        w.file("modules/00-virtio.ko", 0o644, &[7u8; 1001]);
        w.file("empty", 0o644, b"");
        w.symlink("lib", "usr/lib");
        let e = read_all(&w.finish());
        assert_eq!(e.len(), 5);
        assert_eq!(e[4], ("lib".into(), 0o120777, (0, 0), b"usr/lib".to_vec()));
        assert_eq!(e[0], ("dev".into(), 0o040755, (0, 0), vec![]));
        assert_eq!(e[1], ("dev/console".into(), 0o020600, (5, 1), vec![]));
        assert_eq!(e[2].0, "modules/00-virtio.ko");
        assert_eq!(e[2].1, 0o100644);
        assert_eq!(e[2].3, vec![7u8; 1001]);
        assert_eq!(e[3], ("empty".into(), 0o100644, (0, 0), vec![]));
    }

    #[test]
    fn deterministic() {
        let make = || {
            let mut w = Writer::new();
            w.dir("proc", 0o555);
            w.file("server", 0o755, b"\x7fELF");
            w.finish()
        };
        assert_eq!(make(), make());
    }
}
