//! One strace-style line per traced system call, from the kernel's records: decoded
//! arguments (quoted, abbreviated strings; flags and constants by name; socket addresses),
//! `-1 ENOENT (No such file or directory)` for errors, `<unfinished ...>` / `<... resumed>`
//! for calls that blocked.

use kiln_abi::record::{Phase, Syscall};
use kiln_abi::sysno::*;
use std::fmt::Write;

/// How to show one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    Int,
    UInt,
    Hex,
    Ptr,
    Fd,
    AtFd,
    /// A NUL-terminated string (a path), captured before the call.
    Str,
    /// An array of strings (`argv`), shown as a list.
    StrArray,
    /// An array of strings (`envp`), shown as its address and count, as strace does.
    VarArray,
    /// A buffer written by the program (its length is another argument).
    InBuf,
    /// A buffer the call filled (its length is the return value).
    OutBuf,
    OpenFlags,
    Mode,
    Prot,
    MapFlags,
    Whence,
    Domain,
    SockType,
    Protocol,
    /// A socket address given to the call.
    SockAddr,
    /// A socket address the call wrote; the next argument points at its length.
    OutSockAddr,
    /// A pointer to a socket-address length (`[16]`).
    LenPtr,
    Signal,
    SigHow,
    Clock,
    FutexOp,
    Fcntl,
    ArchPrctl,
    AccessMode,
    AtFlags,
    Timespec,
    OutTimespec,
    FdPair,
    Stat,
    MsgFlags,
    EpollOp,
    SockFlags,
}

use Arg::*;

/// The arguments of call `nr`, or `None` to show them as numbers.
fn signature(nr: u64) -> Option<&'static [Arg]> {
    Some(match nr {
        READ => &[Fd, OutBuf, UInt],
        WRITE => &[Fd, InBuf, UInt],
        PREAD64 => &[Fd, OutBuf, UInt, Int],
        PWRITE64 => &[Fd, InBuf, UInt, Int],
        OPEN => &[Str, OpenFlags, Mode],
        OPENAT => &[AtFd, Str, OpenFlags, Mode],
        CLOSE => &[Fd],
        STAT | LSTAT => &[Str, Stat],
        FSTAT => &[Fd, Stat],
        NEWFSTATAT => &[AtFd, Str, Stat, AtFlags],
        STATX => &[AtFd, Str, AtFlags, Hex, Ptr],
        LSEEK => &[Fd, Int, Whence],
        MMAP => &[Ptr, UInt, Prot, MapFlags, Fd, Hex],
        MPROTECT => &[Ptr, UInt, Prot],
        MUNMAP => &[Ptr, UInt],
        BRK => &[Ptr],
        MREMAP => &[Ptr, UInt, UInt, Hex, Ptr],
        MADVISE => &[Ptr, UInt, Int],
        RT_SIGACTION => &[Signal, Ptr, Ptr, UInt],
        RT_SIGPROCMASK => &[SigHow, Ptr, Ptr, UInt],
        IOCTL => &[Fd, Hex, Hex],
        ACCESS => &[Str, AccessMode],
        FACCESSAT | FACCESSAT2 => &[AtFd, Str, AccessMode, AtFlags],
        PIPE => &[FdPair],
        PIPE2 => &[FdPair, OpenFlags],
        DUP => &[Fd],
        DUP2 => &[Fd, Fd],
        DUP3 => &[Fd, Fd, OpenFlags],
        NANOSLEEP => &[Timespec, Ptr],
        CLOCK_NANOSLEEP => &[Clock, Int, Timespec, Ptr],
        CLOCK_GETTIME => &[Clock, OutTimespec],
        GETPID | GETTID | GETUID | GETGID | GETEUID | GETEGID | GETPPID | SCHED_YIELD => &[],
        SOCKET => &[Domain, SockType, Protocol],
        CONNECT | BIND => &[Fd, SockAddr, UInt],
        ACCEPT => &[Fd, OutSockAddr, LenPtr],
        ACCEPT4 => &[Fd, OutSockAddr, LenPtr, SockFlags],
        GETSOCKNAME | GETPEERNAME => &[Fd, OutSockAddr, LenPtr],
        LISTEN => &[Fd, Int],
        SHUTDOWN => &[Fd, Int],
        SENDTO => &[Fd, InBuf, UInt, MsgFlags, SockAddr, UInt],
        RECVFROM => &[Fd, OutBuf, UInt, MsgFlags, OutSockAddr, LenPtr],
        SETSOCKOPT | GETSOCKOPT => &[Fd, Int, Int, Ptr, Int],
        SOCKETPAIR => &[Domain, SockType, Protocol, FdPair],
        EXIT | EXIT_GROUP => &[Int],
        KILL => &[Int, Signal],
        TKILL => &[Int, Signal],
        TGKILL => &[Int, Int, Signal],
        FCNTL => &[Fd, Fcntl, Hex],
        GETCWD => &[OutBuf, UInt],
        CHDIR | RMDIR | UNLINK => &[Str],
        EXECVE => &[Str, StrArray, VarArray],
        EXECVEAT => &[AtFd, Str, StrArray, VarArray, AtFlags],
        MKDIR => &[Str, Mode],
        MKDIRAT => &[AtFd, Str, Mode],
        UNLINKAT => &[AtFd, Str, AtFlags],
        RENAME => &[Str, Str],
        READLINK => &[Str, OutBuf, UInt],
        READLINKAT => &[AtFd, Str, OutBuf, UInt],
        ARCH_PRCTL => &[ArchPrctl, Hex],
        SET_TID_ADDRESS => &[Ptr],
        FUTEX => &[Ptr, FutexOp, Int, Ptr],
        EPOLL_CREATE1 => &[OpenFlags],
        EPOLL_CTL => &[Fd, EpollOp, Fd, Ptr],
        EPOLL_WAIT => &[Fd, Ptr, Int, Int],
        EVENTFD2 => &[UInt, OpenFlags],
        GETRANDOM => &[Ptr, UInt, Hex],
        FSYNC | FDATASYNC => &[Fd],
        FTRUNCATE => &[Fd, Int],
        GETDENTS64 => &[Fd, Ptr, UInt],
        SIGALTSTACK => &[Ptr, Ptr],
        POLL => &[Ptr, UInt, Int],
        PRLIMIT64 => &[Int, Int, Ptr, Ptr],
        SCHED_GETAFFINITY => &[Int, UInt, Ptr],
        SET_ROBUST_LIST => &[Ptr, UInt],
        RSEQ => &[Ptr, UInt, Int, Hex],
        WRITEV | READV => &[Fd, Ptr, UInt],
        CLONE3 => &[Ptr, UInt],
        MUNLOCK | MLOCK => &[Ptr, UInt],
        _ => return None,
    })
}

/// Whether argument kind `a` is written by the call (shown after `<... resumed>`).
fn is_output(a: Arg) -> bool {
    matches!(
        a,
        OutBuf | OutSockAddr | LenPtr | OutTimespec | FdPair | Stat
    )
}

/// Linux's errno names and messages, as strace prints them.
pub fn errno(e: i64) -> (&'static str, &'static str) {
    match e {
        1 => ("EPERM", "Operation not permitted"),
        2 => ("ENOENT", "No such file or directory"),
        3 => ("ESRCH", "No such process"),
        4 => ("EINTR", "Interrupted system call"),
        5 => ("EIO", "Input/output error"),
        6 => ("ENXIO", "No such device or address"),
        7 => ("E2BIG", "Argument list too long"),
        8 => ("ENOEXEC", "Exec format error"),
        9 => ("EBADF", "Bad file descriptor"),
        10 => ("ECHILD", "No child processes"),
        11 => ("EAGAIN", "Resource temporarily unavailable"),
        12 => ("ENOMEM", "Cannot allocate memory"),
        13 => ("EACCES", "Permission denied"),
        14 => ("EFAULT", "Bad address"),
        15 => ("ENOTBLK", "Block device required"),
        16 => ("EBUSY", "Device or resource busy"),
        17 => ("EEXIST", "File exists"),
        18 => ("EXDEV", "Invalid cross-device link"),
        19 => ("ENODEV", "No such device"),
        20 => ("ENOTDIR", "Not a directory"),
        21 => ("EISDIR", "Is a directory"),
        22 => ("EINVAL", "Invalid argument"),
        23 => ("ENFILE", "Too many open files in system"),
        24 => ("EMFILE", "Too many open files"),
        25 => ("ENOTTY", "Inappropriate ioctl for device"),
        26 => ("ETXTBSY", "Text file busy"),
        27 => ("EFBIG", "File too large"),
        28 => ("ENOSPC", "No space left on device"),
        29 => ("ESPIPE", "Illegal seek"),
        30 => ("EROFS", "Read-only file system"),
        31 => ("EMLINK", "Too many links"),
        32 => ("EPIPE", "Broken pipe"),
        33 => ("EDOM", "Numerical argument out of domain"),
        34 => ("ERANGE", "Numerical result out of range"),
        35 => ("EDEADLK", "Resource deadlock avoided"),
        36 => ("ENAMETOOLONG", "File name too long"),
        37 => ("ENOLCK", "No locks available"),
        38 => ("ENOSYS", "Function not implemented"),
        39 => ("ENOTEMPTY", "Directory not empty"),
        40 => ("ELOOP", "Too many levels of symbolic links"),
        42 => ("ENOMSG", "No message of desired type"),
        43 => ("EIDRM", "Identifier removed"),
        61 => ("ENODATA", "No data available"),
        62 => ("ETIME", "Timer expired"),
        71 => ("EPROTO", "Protocol error"),
        74 => ("EBADMSG", "Bad message"),
        75 => ("EOVERFLOW", "Value too large for defined data type"),
        84 => (
            "EILSEQ",
            "Invalid or incomplete multibyte or wide character",
        ),
        88 => ("ENOTSOCK", "Socket operation on non-socket"),
        89 => ("EDESTADDRREQ", "Destination address required"),
        90 => ("EMSGSIZE", "Message too long"),
        91 => ("EPROTOTYPE", "Protocol wrong type for socket"),
        92 => ("ENOPROTOOPT", "Protocol not available"),
        93 => ("EPROTONOSUPPORT", "Protocol not supported"),
        94 => ("ESOCKTNOSUPPORT", "Socket type not supported"),
        95 => ("EOPNOTSUPP", "Operation not supported"),
        96 => ("EPFNOSUPPORT", "Protocol family not supported"),
        97 => ("EAFNOSUPPORT", "Address family not supported by protocol"),
        98 => ("EADDRINUSE", "Address already in use"),
        99 => ("EADDRNOTAVAIL", "Cannot assign requested address"),
        100 => ("ENETDOWN", "Network is down"),
        101 => ("ENETUNREACH", "Network is unreachable"),
        102 => ("ENETRESET", "Network dropped connection on reset"),
        103 => ("ECONNABORTED", "Software caused connection abort"),
        104 => ("ECONNRESET", "Connection reset by peer"),
        105 => ("ENOBUFS", "No buffer space available"),
        106 => ("EISCONN", "Transport endpoint is already connected"),
        107 => ("ENOTCONN", "Transport endpoint is not connected"),
        108 => ("ESHUTDOWN", "Cannot send after transport endpoint shutdown"),
        109 => ("ETOOMANYREFS", "Too many references: cannot splice"),
        110 => ("ETIMEDOUT", "Connection timed out"),
        111 => ("ECONNREFUSED", "Connection refused"),
        112 => ("EHOSTDOWN", "Host is down"),
        113 => ("EHOSTUNREACH", "No route to host"),
        114 => ("EALREADY", "Operation already in progress"),
        115 => ("EINPROGRESS", "Operation now in progress"),
        116 => ("ESTALE", "Stale file handle"),
        122 => ("EDQUOT", "Disk quota exceeded"),
        125 => ("ECANCELED", "Operation canceled"),
        130 => ("EOWNERDEAD", "Owner died"),
        131 => ("ENOTRECOVERABLE", "State not recoverable"),
        _ => ("E?", "Unknown error"),
    }
}

/// Flags by name: the names of set bits, `|`-joined, then any bits left in hex.
fn flags(v: u64, names: &[(u64, &str)], zero: &str) -> String {
    let mut left = v;
    let mut parts: Vec<String> = Vec::new();
    for &(bit, name) in names {
        if bit != 0 && left & bit == bit {
            parts.push(name.into());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("{left:#x}"));
    }
    if parts.is_empty() {
        zero.into()
    } else {
        parts.join("|")
    }
}

fn open_flags(v: u64) -> String {
    let acc = match v & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = flags(
        v & !3,
        &[
            (0o100, "O_CREAT"),
            (0o200, "O_EXCL"),
            (0o400, "O_NOCTTY"),
            (0o1000, "O_TRUNC"),
            (0o2000, "O_APPEND"),
            (0o4000, "O_NONBLOCK"),
            (0o4010000, "O_SYNC"),
            (0o10000, "O_DSYNC"),
            (0o200000, "O_DIRECTORY"),
            (0o400000, "O_NOFOLLOW"),
            (0o1000000, "O_NOATIME"),
            (0o2000000, "O_CLOEXEC"),
            (0o10000000, "O_PATH"),
            (0o20200000, "O_TMPFILE"),
            (0o100000, "O_LARGEFILE"),
        ],
        "",
    );
    if rest.is_empty() {
        acc.into()
    } else {
        format!("{acc}|{rest}")
    }
}

/// Names of signals 1-31.
pub fn signal_name(s: u64) -> String {
    crate::debug::crash::signal_name(s as u32)
}

/// A quoted buffer as strace shows it: escapes, and `...` after 32 bytes.
fn quote(bytes: &[u8], truncated: bool) -> String {
    quote_up_to(bytes, truncated, 32)
}

/// A quoted path: strace shows file names whole.
fn quote_path(bytes: &[u8]) -> String {
    quote_up_to(bytes, false, usize::MAX)
}

fn quote_up_to(bytes: &[u8], truncated: bool, show: usize) -> String {
    let mut s = String::from("\"");
    for &b in bytes.iter().take(show) {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:o}");
            }
        }
    }
    s.push('"');
    if truncated || bytes.len() > show {
        s.push_str("...");
    }
    s
}

fn sockaddr(b: &[u8]) -> String {
    if b.len() < 2 {
        return "{...}".into();
    }
    let family = u16::from_le_bytes([b[0], b[1]]);
    match family {
        2 if b.len() >= 8 => format!(
            "{{sa_family=AF_INET, sin_port=htons({}), sin_addr=inet_addr(\"{}.{}.{}.{}\")}}",
            u16::from_be_bytes([b[2], b[3]]),
            b[4],
            b[5],
            b[6],
            b[7]
        ),
        1 => {
            let path = &b[2..];
            let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
            format!(
                "{{sa_family=AF_UNIX, sun_path={}}}",
                quote_path(&path[..end])
            )
        }
        10 => "{sa_family=AF_INET6, ...}".into(),
        f => format!("{{sa_family={f}, ...}}"),
    }
}

fn timespec(b: &[u8]) -> String {
    if b.len() < 16 {
        return "{...}".into();
    }
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let nsec = i64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
    format!("{{tv_sec={sec}, tv_nsec={nsec}}}")
}

fn stat(b: &[u8]) -> String {
    if b.len() < 56 {
        return "{...}".into();
    }
    let mode = u32::from_le_bytes(b[24..28].try_into().unwrap_or_default());
    let size = i64::from_le_bytes(b[48..56].try_into().unwrap_or_default());
    let kind = match mode & 0o170000 {
        0o100000 => "S_IFREG",
        0o040000 => "S_IFDIR",
        0o120000 => "S_IFLNK",
        0o020000 => "S_IFCHR",
        0o010000 => "S_IFIFO",
        0o140000 => "S_IFSOCK",
        0o060000 => "S_IFBLK",
        _ => "S_IF?",
    };
    format!(
        "{{st_mode={kind}|{:04o}, st_size={size}, ...}}",
        mode & 0o7777
    )
}

fn arg_text(kind: Arg, i: u8, s: &Syscall) -> String {
    let v = s.args[usize::from(i)];
    let iv = v as i64;
    let blob = s.blob(i);
    match kind {
        Int => format!("{}", iv as i32),
        UInt => format!("{v}"),
        Hex if v == 0 => "0".into(),
        Hex => format!("{v:#x}"),
        Ptr | OutSockAddr | OutBuf | OutTimespec | FdPair | Stat | LenPtr | InBuf | Str
        | SockAddr | Timespec
            if v == 0 =>
        {
            "NULL".into()
        }
        Ptr => format!("{v:#x}"),
        Fd => format!("{}", iv as i32),
        AtFd if iv as i32 == -100 => "AT_FDCWD".into(),
        AtFd => format!("{}", iv as i32),
        Str => blob.map_or_else(|| format!("{v:#x}"), quote_path),
        StrArray => match blob.and_then(kiln_abi::trace::decode_str_array) {
            Some((count, strings)) => {
                let mut items: Vec<String> = strings.iter().map(|(s, t)| quote(s, *t)).collect();
                if count > strings.len() {
                    items.push("...".into());
                }
                format!("[{}]", items.join(", "))
            }
            None if v == 0 => "NULL".into(),
            None => format!("{v:#x}"),
        },
        VarArray => match blob.and_then(kiln_abi::trace::decode_str_array) {
            Some((count, _)) => format!(
                "{v:#x} /* {count} var{} */",
                if count == 1 { "" } else { "s" }
            ),
            None if v == 0 => "NULL".into(),
            None => format!("{v:#x}"),
        },
        InBuf => blob.map_or_else(
            || format!("{v:#x}"),
            |b| {
                let len = s.args[usize::from(i) + 1] as usize;
                quote(b, len > b.len())
            },
        ),
        OutBuf => match blob {
            Some(b) if s.ret >= 0 => quote(b, s.ret as usize > b.len()),
            _ => format!("{v:#x}"),
        },
        OpenFlags => open_flags(v),
        Mode => format!("0{v:03o}"),
        Prot => flags(
            v,
            &[(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")],
            "PROT_NONE",
        ),
        MapFlags => {
            let kind = match v & 3 {
                1 => "MAP_SHARED",
                2 => "MAP_PRIVATE",
                3 => "MAP_SHARED_VALIDATE",
                _ => "0",
            };
            let rest = flags(
                v & !3,
                &[
                    (0x10, "MAP_FIXED"),
                    (0x20, "MAP_ANONYMOUS"),
                    (0x100, "MAP_GROWSDOWN"),
                    (0x4000, "MAP_NORESERVE"),
                    (0x8000, "MAP_POPULATE"),
                    (0x20000, "MAP_STACK"),
                    (0x100000, "MAP_FIXED_NOREPLACE"),
                ],
                "",
            );
            if rest.is_empty() {
                kind.into()
            } else {
                format!("{kind}|{rest}")
            }
        }
        Whence => match v {
            0 => "SEEK_SET".into(),
            1 => "SEEK_CUR".into(),
            2 => "SEEK_END".into(),
            _ => v.to_string(),
        },
        Domain => match v {
            1 => "AF_UNIX".into(),
            2 => "AF_INET".into(),
            10 => "AF_INET6".into(),
            16 => "AF_NETLINK".into(),
            _ => v.to_string(),
        },
        SockType => {
            let base = match v & 0xf {
                1 => "SOCK_STREAM",
                2 => "SOCK_DGRAM",
                3 => "SOCK_RAW",
                5 => "SOCK_SEQPACKET",
                _ => "SOCK_?",
            };
            let rest = flags(
                v & !0xf,
                &[(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")],
                "",
            );
            if rest.is_empty() {
                base.into()
            } else {
                format!("{base}|{rest}")
            }
        }
        SockFlags => flags(
            v,
            &[(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")],
            "0",
        ),
        Protocol => match v {
            0 => "IPPROTO_IP".into(),
            6 => "IPPROTO_TCP".into(),
            17 => "IPPROTO_UDP".into(),
            _ => v.to_string(),
        },
        SockAddr => blob.map_or_else(|| format!("{v:#x}"), sockaddr),
        OutSockAddr => match blob {
            Some(b) if s.ret >= 0 => sockaddr(b),
            _ => format!("{v:#x}"),
        },
        LenPtr => match s.blob(i - 1) {
            Some(b) if s.ret >= 0 => format!("[{}]", b.len()),
            _ => format!("{v:#x}"),
        },
        Signal => signal_name(v),
        SigHow => match v {
            0 => "SIG_BLOCK".into(),
            1 => "SIG_UNBLOCK".into(),
            2 => "SIG_SETMASK".into(),
            _ => v.to_string(),
        },
        Clock => match v {
            0 => "CLOCK_REALTIME".into(),
            1 => "CLOCK_MONOTONIC".into(),
            2 => "CLOCK_PROCESS_CPUTIME_ID".into(),
            3 => "CLOCK_THREAD_CPUTIME_ID".into(),
            4 => "CLOCK_MONOTONIC_RAW".into(),
            5 => "CLOCK_REALTIME_COARSE".into(),
            6 => "CLOCK_MONOTONIC_COARSE".into(),
            7 => "CLOCK_BOOTTIME".into(),
            _ => v.to_string(),
        },
        FutexOp => {
            let op = match v & 0x7f {
                0 => "FUTEX_WAIT",
                1 => "FUTEX_WAKE",
                3 => "FUTEX_REQUEUE",
                4 => "FUTEX_CMP_REQUEUE",
                5 => "FUTEX_WAKE_OP",
                9 => "FUTEX_WAIT_BITSET",
                10 => "FUTEX_WAKE_BITSET",
                _ => "FUTEX_?",
            };
            let mut t = op.to_string();
            if v & 128 != 0 {
                t.push_str("_PRIVATE");
            }
            if v & 256 != 0 {
                t.push_str("|FUTEX_CLOCK_REALTIME");
            }
            t
        }
        Fcntl => match v {
            0 => "F_DUPFD".into(),
            1 => "F_GETFD".into(),
            2 => "F_SETFD".into(),
            3 => "F_GETFL".into(),
            4 => "F_SETFL".into(),
            1030 => "F_DUPFD_CLOEXEC".into(),
            _ => v.to_string(),
        },
        ArchPrctl => match v {
            0x1001 => "ARCH_SET_GS".into(),
            0x1002 => "ARCH_SET_FS".into(),
            0x1003 => "ARCH_GET_FS".into(),
            0x1004 => "ARCH_GET_GS".into(),
            _ => format!("{v:#x}"),
        },
        AccessMode => flags(v, &[(4, "R_OK"), (2, "W_OK"), (1, "X_OK")], "F_OK"),
        AtFlags => flags(
            v,
            &[
                (0x100, "AT_SYMLINK_NOFOLLOW"),
                (0x200, "AT_REMOVEDIR"),
                (0x400, "AT_SYMLINK_FOLLOW"),
                (0x800, "AT_NO_AUTOMOUNT"),
                (0x1000, "AT_EMPTY_PATH"),
            ],
            "0",
        ),
        Timespec => blob.map_or_else(|| format!("{v:#x}"), timespec),
        OutTimespec => match blob {
            Some(b) if s.ret >= 0 => timespec(b),
            _ => format!("{v:#x}"),
        },
        FdPair => match blob {
            Some(b) if s.ret >= 0 && b.len() >= 8 => format!(
                "[{}, {}]",
                i32::from_le_bytes(b[..4].try_into().unwrap_or_default()),
                i32::from_le_bytes(b[4..8].try_into().unwrap_or_default())
            ),
            _ => format!("{v:#x}"),
        },
        Stat => match blob {
            Some(b) if s.ret >= 0 => stat(b),
            _ => format!("{v:#x}"),
        },
        MsgFlags => flags(
            v,
            &[
                (1, "MSG_OOB"),
                (2, "MSG_PEEK"),
                (0x40, "MSG_DONTWAIT"),
                (0x100, "MSG_WAITALL"),
                (0x4000, "MSG_NOSIGNAL"),
            ],
            "0",
        ),
        EpollOp => match v {
            1 => "EPOLL_CTL_ADD".into(),
            2 => "EPOLL_CTL_DEL".into(),
            3 => "EPOLL_CTL_MOD".into(),
            _ => v.to_string(),
        },
    }
}

/// The call's name (or `syscall_N`).
pub fn name(nr: u64) -> String {
    kiln_abi::sysno::name(nr).map_or_else(|| format!("syscall_{nr}"), str::to_string)
}

/// The result as strace shows it.
fn result(s: &Syscall) -> String {
    if s.ret == i64::MIN {
        return "?".into();
    }
    if (-4095..0).contains(&s.ret) {
        let (n, msg) = errno(-s.ret);
        return if n == "E?" {
            format!("-1 E{} ({msg})", -s.ret)
        } else {
            format!("-1 {n} ({msg})")
        };
    }
    match s.nr {
        MMAP | MREMAP | BRK => format!("{:#x}", s.ret),
        _ => s.ret.to_string(),
    }
}

/// The arguments, split where the call's outputs begin (for unfinished/resumed lines).
fn args(s: &Syscall) -> (Vec<String>, Vec<String>) {
    let (inputs, outputs) = match signature(s.nr) {
        Some(sig) => {
            // open and openat show a mode only when they create something.
            let creates = |flags: u64| flags & 0o100 != 0 || flags & 0o20200000 == 0o20200000;
            let sig = match s.nr {
                OPEN if !creates(s.args[1]) => &sig[..2],
                OPENAT if !creates(s.args[2]) => &sig[..3],
                _ => sig,
            };
            let split = sig.iter().position(|a| is_output(*a)).unwrap_or(sig.len());
            let text = |range: std::ops::Range<usize>| {
                range
                    .map(|i| arg_text(sig[i], i as u8, s))
                    .collect::<Vec<_>>()
            };
            (text(0..split), text(split..sig.len()))
        }
        None => {
            let n = kiln_abi::sysno::arg_count(s.nr).unwrap_or(6);
            (
                s.args[..n].iter().map(|a| format!("{a:#x}")).collect(),
                Vec::new(),
            )
        }
    };
    (inputs, outputs)
}

/// The trace line of one record (without a newline). `time` adds the time since boot in
/// front and the time spent in the call behind, as `strace -ttt -T` do.
pub fn line(s: &Syscall, time: bool) -> String {
    let mut out = String::new();
    if s.tid != 1 {
        let _ = write!(out, "[pid {:>5}] ", s.tid);
    }
    if time {
        let at = if s.phase == Phase::Resumed {
            s.end_ns
        } else {
            s.start_ns
        };
        let _ = write!(
            out,
            "{}.{:06} ",
            at / 1_000_000_000,
            at % 1_000_000_000 / 1000
        );
    }
    let name = name(s.nr);
    let (inputs, outputs) = args(s);
    match s.phase {
        Phase::Complete => {
            let all: Vec<String> = inputs.into_iter().chain(outputs).collect();
            let _ = write!(out, "{name}({}) = {}", all.join(", "), result(s));
        }
        Phase::Unfinished => {
            let _ = write!(out, "{name}({}", inputs.join(", "));
            if !outputs.is_empty() {
                out.push_str(", ");
            }
            out.push_str(" <unfinished ...>");
            return out;
        }
        Phase::Resumed => {
            let _ = write!(
                out,
                "<... {name} resumed>{}) = {}",
                outputs.join(", "),
                result(s)
            );
        }
    }
    if time {
        let d = s.end_ns.saturating_sub(s.start_ns);
        let _ = write!(
            out,
            " <{}.{:06}>",
            d / 1_000_000_000,
            d % 1_000_000_000 / 1000
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_abi::record::Blob;

    fn call(nr: u64, args: &[u64], ret: i64, blobs: &[(u8, &[u8])]) -> Syscall {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        Syscall {
            tid: 1,
            phase: Phase::Complete,
            nr,
            args: a,
            ret,
            start_ns: 1_500_000_000,
            end_ns: 1_500_020_000,
            blobs: blobs
                .iter()
                .map(|(arg, d)| Blob {
                    arg: *arg,
                    out: false,
                    data: d.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn strace_lines() {
        let at_fdcwd = (-100i64) as u64;
        let c = call(
            OPENAT,
            &[at_fdcwd, 0x1000, 0o2000000],
            3,
            &[(1, b"/etc/hostname")],
        );
        assert_eq!(
            line(&c, false),
            "openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY|O_CLOEXEC) = 3"
        );
        let c = call(OPENAT, &[at_fdcwd, 0x1000, 0], -2, &[(1, b"/nope")]);
        assert_eq!(
            line(&c, false),
            "openat(AT_FDCWD, \"/nope\", O_RDONLY) = -1 ENOENT (No such file or directory)"
        );
        let c = call(
            OPENAT,
            &[at_fdcwd, 0x1000, 0o1101, 0o644],
            4,
            &[(1, b"/tmp/x")],
        );
        assert_eq!(
            line(&c, false),
            "openat(AT_FDCWD, \"/tmp/x\", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 4"
        );
        let c = call(WRITE, &[1, 0x1000, 6], 6, &[(1, b"hello\n")]);
        assert_eq!(line(&c, false), "write(1, \"hello\\n\", 6) = 6");
        let long = [b'x'; 64];
        let c = call(WRITE, &[1, 0x1000, 100], 100, &[(1, &long)]);
        assert_eq!(
            line(&c, false),
            format!("write(1, \"{}\"..., 100) = 100", "x".repeat(32))
        );
        let c = call(SOCKET, &[2, 1 | 0o2000000, 0], 3, &[]);
        assert_eq!(
            line(&c, false),
            "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3"
        );
        let addr = [2u8, 0, 0x1f, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let c = call(BIND, &[3, 0x1000, 16], 0, &[(1, &addr)]);
        assert_eq!(
            line(&c, false),
            "bind(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr(\"0.0.0.0\")}, 16) = 0"
        );
        let c = call(
            MMAP,
            &[0, 8192, 3, 0x22, u64::MAX, 0],
            0x7f00_0000_0000,
            &[],
        );
        assert_eq!(
            line(&c, false),
            "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000"
        );
        let c = call(EXIT_GROUP, &[0], i64::MIN, &[]);
        assert_eq!(line(&c, false), "exit_group(0) = ?");
        let c = call(GETPID, &[], 1, &[]);
        assert_eq!(line(&c, true), "1.500000 getpid() = 1 <0.000020>");
        let c = call(400, &[1, 2], -38, &[]);
        assert_eq!(
            line(&c, false),
            "syscall_400(0x1, 0x2, 0x0, 0x0, 0x0, 0x0) = -1 ENOSYS (Function not implemented)"
        );
    }

    #[test]
    fn execve_shows_its_arguments_and_counts_its_environment() {
        let argv = kiln_abi::trace::encode_str_array(
            3,
            &[(b"sh", false), (b"-c", false), (b"echo \"hi\"", false)],
        );
        let envp = kiln_abi::trace::encode_str_array(2, &[(b"A=1", false), (b"B=2", false)]);
        let c = call(
            EXECVE,
            &[0x1000, 0x2000, 0x3000],
            0,
            &[(0, b"/bin/sh"), (1, &argv), (2, &envp)],
        );
        assert_eq!(
            line(&c, false),
            "execve(\"/bin/sh\", [\"sh\", \"-c\", \"echo \\\"hi\\\"\"], 0x3000 /* 2 vars */) = 0"
        );
        // More arguments than kept, and one cut short.
        let long = [b'a'; 64];
        let argv = kiln_abi::trace::encode_str_array(40, &[(b"x", false), (&long, true)]);
        let c = call(
            EXECVE,
            &[0x1000, 0x2000, 0],
            -2,
            &[(0, b"/nope"), (1, &argv)],
        );
        let expect = format!(
            "execve(\"/nope\", [\"x\", \"{}\"..., ...], NULL) = -1 ENOENT (No such file or directory)",
            "a".repeat(32)
        );
        assert_eq!(line(&c, false), expect);
    }

    #[test]
    fn blocked_calls_show_unfinished_and_resumed() {
        let mut c = call(READ, &[0, 0x1000, 16], 0, &[]);
        c.tid = 2;
        c.phase = Phase::Unfinished;
        assert_eq!(line(&c, false), "[pid     2] read(0,  <unfinished ...>");
        c.phase = Phase::Resumed;
        c.ret = 2;
        c.blobs = vec![Blob {
            arg: 1,
            out: true,
            data: b"hi".to_vec(),
        }];
        assert_eq!(
            line(&c, false),
            "[pid     2] <... read resumed>\"hi\", 16) = 2"
        );
        let mut f = call(FUTEX, &[0x1000, 128, 0, 0], 0, &[]);
        f.phase = Phase::Unfinished;
        assert_eq!(
            line(&f, false),
            "futex(0x1000, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>"
        );
    }
}
