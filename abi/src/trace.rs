//! What a syscall trace record carries besides the registers: the bytes behind the pointer
//! arguments a reader needs (paths, the start of buffers, socket addresses, small structs),
//! copied by the kernel before the call (inputs) or after it (outputs). The host decodes
//! and formats them strace's way; this table is the one both sides agree on.

use crate::sysno::*;

/// Most bytes of a buffer a trace record keeps (strace shows 32 by default).
pub const MAX_BUF: usize = 64;
/// Most bytes of a NUL-terminated string.
pub const MAX_STR: usize = 4096;
/// Most bytes of a socket address.
pub const MAX_SOCKADDR: usize = 128;
/// Most strings of an array ([`Capture::StrArray`]) a trace keeps (strace shows 32).
pub const MAX_ARRAY: usize = 32;
/// Most entries of an array that are counted.
pub const MAX_ARRAY_COUNT: usize = 4096;
/// Most bytes kept of each string of an array.
pub const MAX_ARRAY_STR: usize = 64;
/// Marks a string of an array kept in part.
const TRUNCATED: u32 = 1 << 31;

/// The blob of a [`Capture::StrArray`]: how many entries the array has (up to
/// [`MAX_ARRAY_COUNT`]), then the first [`MAX_ARRAY`] strings, each with its length (the
/// top bit set when only its first [`MAX_ARRAY_STR`] bytes are kept).
pub fn encode_str_array(count: usize, strings: &[(&[u8], bool)]) -> alloc::vec::Vec<u8> {
    let mut v = alloc::vec::Vec::new();
    v.extend_from_slice(&(count as u32).to_le_bytes());
    for (s, truncated) in strings.iter().take(MAX_ARRAY) {
        let s = &s[..s.len().min(MAX_ARRAY_STR)];
        let len = s.len() as u32 | if *truncated { TRUNCATED } else { 0 };
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(s);
    }
    v
}

/// Reads [`encode_str_array`]'s blob: the count and the strings kept (each with whether it
/// was cut short). `None` when the bytes are not such a blob.
#[allow(clippy::type_complexity)]
pub fn decode_str_array(b: &[u8]) -> Option<(usize, alloc::vec::Vec<(&[u8], bool)>)> {
    let count = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let mut at = 4;
    let mut out = alloc::vec::Vec::new();
    while at < b.len() {
        let len = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?);
        let n = (len & !TRUNCATED) as usize;
        let s = b.get(at + 4..at + 4 + n)?;
        out.push((s, len & TRUNCATED != 0));
        at += 4 + n;
    }
    (out.len() <= count && out.len() <= MAX_ARRAY).then_some((count, out))
}

/// One piece of memory to copy for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// A NUL-terminated string at argument `0` (a path), before the call.
    Str(u8),
    /// `min(arg[len], MAX_BUF)` bytes at argument `ptr`, before the call.
    In {
        /// The pointer argument.
        ptr: u8,
        /// The argument holding the length.
        len: u8,
    },
    /// `min(return value, MAX_BUF)` bytes at argument `ptr`, after a successful call.
    Out {
        /// The pointer argument.
        ptr: u8,
    },
    /// `size` bytes at argument `ptr`, before the call.
    InFixed {
        /// The pointer argument.
        ptr: u8,
        /// Bytes to copy.
        size: u16,
    },
    /// `size` bytes at argument `ptr`, after a successful call.
    OutFixed {
        /// The pointer argument.
        ptr: u8,
        /// Bytes to copy.
        size: u16,
    },
    /// A NULL-terminated array of strings at argument `0` (`execve`'s `argv` and `envp`),
    /// before the call: see [`encode_str_array`].
    StrArray(u8),
    /// A socket address at argument `ptr` whose length the kernel wrote to the `u32` at
    /// argument `lenptr`, after a successful call.
    OutSockaddr {
        /// The pointer argument.
        ptr: u8,
        /// The argument pointing at the length.
        lenptr: u8,
    },
}

use Capture::*;

/// Size of `struct stat` on x86_64.
pub const STAT_SIZE: u16 = 144;

/// The pieces of memory a trace of call `nr` carries.
pub fn captures(nr: u64) -> &'static [Capture] {
    match nr {
        READ | PREAD64 => &[Out { ptr: 1 }],
        WRITE | PWRITE64 => &[In { ptr: 1, len: 2 }],
        OPEN | ACCESS | CHDIR | MKDIR | RMDIR | UNLINK | TRUNCATE | CHMOD => &[Str(0)],
        EXECVE => &[Str(0), StrArray(1), StrArray(2)],
        EXECVEAT => &[Str(1), StrArray(2), StrArray(3)],
        STAT | LSTAT => &[
            Str(0),
            OutFixed {
                ptr: 1,
                size: STAT_SIZE,
            },
        ],
        FSTAT => &[OutFixed {
            ptr: 1,
            size: STAT_SIZE,
        }],
        RENAME | LINK | SYMLINK => &[Str(0), Str(1)],
        READLINK => &[Str(0), Out { ptr: 1 }],
        READLINKAT => &[Str(1), Out { ptr: 2 }],
        OPENAT | MKDIRAT | UNLINKAT | FACCESSAT | FACCESSAT2 | STATX | FCHMODAT => &[Str(1)],
        NEWFSTATAT => &[
            Str(1),
            OutFixed {
                ptr: 2,
                size: STAT_SIZE,
            },
        ],
        RENAMEAT | RENAMEAT2 => &[Str(1), Str(3)],
        GETCWD => &[Out { ptr: 0 }],
        PIPE | PIPE2 => &[OutFixed { ptr: 0, size: 8 }],
        SOCKETPAIR => &[OutFixed { ptr: 3, size: 8 }],
        NANOSLEEP => &[InFixed { ptr: 0, size: 16 }],
        CLOCK_NANOSLEEP => &[InFixed { ptr: 2, size: 16 }],
        CLOCK_GETTIME => &[OutFixed { ptr: 1, size: 16 }],
        CONNECT | BIND => &[In { ptr: 1, len: 2 }],
        SENDTO => &[In { ptr: 1, len: 2 }, In { ptr: 4, len: 5 }],
        RECVFROM => &[Out { ptr: 1 }, OutSockaddr { ptr: 4, lenptr: 5 }],
        ACCEPT | ACCEPT4 | GETSOCKNAME | GETPEERNAME => &[OutSockaddr { ptr: 1, lenptr: 2 }],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_arrays_keep_their_count_and_first_strings() {
        let long = [b'x'; 100];
        let blob = encode_str_array(3, &[(b"sh", false), (&long, true), (b"", false)]);
        let (count, strings) = decode_str_array(&blob).unwrap();
        assert_eq!(count, 3);
        assert_eq!(strings[0], (&b"sh"[..], false));
        assert_eq!(strings[1], (&long[..MAX_ARRAY_STR], true));
        assert_eq!(strings[2], (&b""[..], false));
        // Only the count: a long environment.
        let blob = encode_str_array(5000, &[]);
        assert_eq!(
            decode_str_array(&blob),
            Some((5000, alloc::vec::Vec::new()))
        );
        assert_eq!(decode_str_array(&blob[..3]), None);
        assert_eq!(decode_str_array(&[1, 0, 0, 0, 9, 0, 0, 0, b'a']), None);
    }

    #[test]
    fn paths_and_buffers_are_captured() {
        assert_eq!(captures(OPENAT), &[Str(1)]);
        assert_eq!(captures(WRITE), &[In { ptr: 1, len: 2 }]);
        assert_eq!(captures(READ), &[Out { ptr: 1 }]);
        assert!(captures(GETPID).is_empty());
        // Every captured argument exists.
        for nr in 0..470 {
            for c in captures(nr) {
                let args: &[u8] = match *c {
                    Str(a) | StrArray(a) | Out { ptr: a } => &[a],
                    In { ptr, len } => &[ptr, len],
                    InFixed { ptr, .. } | OutFixed { ptr, .. } => &[ptr],
                    OutSockaddr { ptr, lenptr } => &[ptr, lenptr],
                };
                let n = arg_count(nr).unwrap();
                assert!(args.iter().all(|a| usize::from(*a) < n), "{nr}");
            }
        }
    }
}
