//! The x86_64 Linux system-call table: numbers, names and argument counts.
//!
//! Numbers follow `arch/x86/entry/syscalls/syscall_64.tbl` (the 64-bit ABI; the x32 numbers
//! from 512 up are not part of it). 335 to 423 are unused on x86_64.

macro_rules! sysnos {
    ($($konst:ident = $nr:literal, $name:literal, $args:literal;)*) => {
        $(#[doc = concat!("`", $name, "` (", stringify!($nr), ").")]
        pub const $konst: u64 = $nr;)*

        /// Every name, each followed by a NUL byte, in the order of [`NUMBERS`]: one string
        /// instead of a table of string slices (16 bytes a number), which keeps the kernel's
        /// copy small.
        const NAMES: &str = concat!($($name, "\0",)*);

        /// Every used number, in the order of [`NAMES`].
        const NUMBERS: &[u16] = &[$($nr,)*];

        /// Where each name starts in [`NAMES`], computed at compile time.
        const STARTS: [u16; NUMBERS.len()] = {
            let bytes = NAMES.as_bytes();
            let mut starts = [0u16; NUMBERS.len()];
            let (mut i, mut k) = (0, 1);
            while i < bytes.len() && k < starts.len() {
                if bytes[i] == 0 {
                    starts[k] = (i + 1) as u16;
                    k += 1;
                }
                i += 1;
            }
            starts
        };

        /// The name of system call `nr`, such as `"read"`, or `None` for an unused number.
        pub fn name(nr: u64) -> Option<&'static str> {
            let i = NUMBERS.iter().position(|&n| u64::from(n) == nr)?;
            let rest = NAMES.get(usize::from(STARTS[i])..)?;
            rest.split('\0').next()
        }

        /// How many arguments system call `nr` takes (for tracing), or `None` for an unused
        /// number.
        pub fn arg_count(nr: u64) -> Option<usize> {
            match nr {
                $($nr => Some($args),)*
                _ => None,
            }
        }
    };
}

sysnos! {
    READ = 0, "read", 3;
    WRITE = 1, "write", 3;
    OPEN = 2, "open", 3;
    CLOSE = 3, "close", 1;
    STAT = 4, "stat", 2;
    FSTAT = 5, "fstat", 2;
    LSTAT = 6, "lstat", 2;
    POLL = 7, "poll", 3;
    LSEEK = 8, "lseek", 3;
    MMAP = 9, "mmap", 6;
    MPROTECT = 10, "mprotect", 3;
    MUNMAP = 11, "munmap", 2;
    BRK = 12, "brk", 1;
    RT_SIGACTION = 13, "rt_sigaction", 4;
    RT_SIGPROCMASK = 14, "rt_sigprocmask", 4;
    RT_SIGRETURN = 15, "rt_sigreturn", 0;
    IOCTL = 16, "ioctl", 3;
    PREAD64 = 17, "pread64", 4;
    PWRITE64 = 18, "pwrite64", 4;
    READV = 19, "readv", 3;
    WRITEV = 20, "writev", 3;
    ACCESS = 21, "access", 2;
    PIPE = 22, "pipe", 1;
    SELECT = 23, "select", 5;
    SCHED_YIELD = 24, "sched_yield", 0;
    MREMAP = 25, "mremap", 5;
    MSYNC = 26, "msync", 3;
    MINCORE = 27, "mincore", 3;
    MADVISE = 28, "madvise", 3;
    SHMGET = 29, "shmget", 3;
    SHMAT = 30, "shmat", 3;
    SHMCTL = 31, "shmctl", 3;
    DUP = 32, "dup", 1;
    DUP2 = 33, "dup2", 2;
    PAUSE = 34, "pause", 0;
    NANOSLEEP = 35, "nanosleep", 2;
    GETITIMER = 36, "getitimer", 2;
    ALARM = 37, "alarm", 1;
    SETITIMER = 38, "setitimer", 3;
    GETPID = 39, "getpid", 0;
    SENDFILE = 40, "sendfile", 4;
    SOCKET = 41, "socket", 3;
    CONNECT = 42, "connect", 3;
    ACCEPT = 43, "accept", 3;
    SENDTO = 44, "sendto", 6;
    RECVFROM = 45, "recvfrom", 6;
    SENDMSG = 46, "sendmsg", 3;
    RECVMSG = 47, "recvmsg", 3;
    SHUTDOWN = 48, "shutdown", 2;
    BIND = 49, "bind", 3;
    LISTEN = 50, "listen", 2;
    GETSOCKNAME = 51, "getsockname", 3;
    GETPEERNAME = 52, "getpeername", 3;
    SOCKETPAIR = 53, "socketpair", 4;
    SETSOCKOPT = 54, "setsockopt", 5;
    GETSOCKOPT = 55, "getsockopt", 5;
    CLONE = 56, "clone", 5;
    FORK = 57, "fork", 0;
    VFORK = 58, "vfork", 0;
    EXECVE = 59, "execve", 3;
    EXIT = 60, "exit", 1;
    WAIT4 = 61, "wait4", 4;
    KILL = 62, "kill", 2;
    UNAME = 63, "uname", 1;
    SEMGET = 64, "semget", 3;
    SEMOP = 65, "semop", 3;
    SEMCTL = 66, "semctl", 4;
    SHMDT = 67, "shmdt", 1;
    MSGGET = 68, "msgget", 2;
    MSGSND = 69, "msgsnd", 4;
    MSGRCV = 70, "msgrcv", 5;
    MSGCTL = 71, "msgctl", 3;
    FCNTL = 72, "fcntl", 3;
    FLOCK = 73, "flock", 2;
    FSYNC = 74, "fsync", 1;
    FDATASYNC = 75, "fdatasync", 1;
    TRUNCATE = 76, "truncate", 2;
    FTRUNCATE = 77, "ftruncate", 2;
    GETDENTS = 78, "getdents", 3;
    GETCWD = 79, "getcwd", 2;
    CHDIR = 80, "chdir", 1;
    FCHDIR = 81, "fchdir", 1;
    RENAME = 82, "rename", 2;
    MKDIR = 83, "mkdir", 2;
    RMDIR = 84, "rmdir", 1;
    CREAT = 85, "creat", 2;
    LINK = 86, "link", 2;
    UNLINK = 87, "unlink", 1;
    SYMLINK = 88, "symlink", 2;
    READLINK = 89, "readlink", 3;
    CHMOD = 90, "chmod", 2;
    FCHMOD = 91, "fchmod", 2;
    CHOWN = 92, "chown", 3;
    FCHOWN = 93, "fchown", 3;
    LCHOWN = 94, "lchown", 3;
    UMASK = 95, "umask", 1;
    GETTIMEOFDAY = 96, "gettimeofday", 2;
    GETRLIMIT = 97, "getrlimit", 2;
    GETRUSAGE = 98, "getrusage", 2;
    SYSINFO = 99, "sysinfo", 1;
    TIMES = 100, "times", 1;
    PTRACE = 101, "ptrace", 4;
    GETUID = 102, "getuid", 0;
    SYSLOG = 103, "syslog", 3;
    GETGID = 104, "getgid", 0;
    SETUID = 105, "setuid", 1;
    SETGID = 106, "setgid", 1;
    GETEUID = 107, "geteuid", 0;
    GETEGID = 108, "getegid", 0;
    SETPGID = 109, "setpgid", 2;
    GETPPID = 110, "getppid", 0;
    GETPGRP = 111, "getpgrp", 0;
    SETSID = 112, "setsid", 0;
    SETREUID = 113, "setreuid", 2;
    SETREGID = 114, "setregid", 2;
    GETGROUPS = 115, "getgroups", 2;
    SETGROUPS = 116, "setgroups", 2;
    SETRESUID = 117, "setresuid", 3;
    GETRESUID = 118, "getresuid", 3;
    SETRESGID = 119, "setresgid", 3;
    GETRESGID = 120, "getresgid", 3;
    GETPGID = 121, "getpgid", 1;
    SETFSUID = 122, "setfsuid", 1;
    SETFSGID = 123, "setfsgid", 1;
    GETSID = 124, "getsid", 1;
    CAPGET = 125, "capget", 2;
    CAPSET = 126, "capset", 2;
    RT_SIGPENDING = 127, "rt_sigpending", 2;
    RT_SIGTIMEDWAIT = 128, "rt_sigtimedwait", 4;
    RT_SIGQUEUEINFO = 129, "rt_sigqueueinfo", 3;
    RT_SIGSUSPEND = 130, "rt_sigsuspend", 2;
    SIGALTSTACK = 131, "sigaltstack", 2;
    UTIME = 132, "utime", 2;
    MKNOD = 133, "mknod", 3;
    USELIB = 134, "uselib", 1;
    PERSONALITY = 135, "personality", 1;
    USTAT = 136, "ustat", 2;
    STATFS = 137, "statfs", 2;
    FSTATFS = 138, "fstatfs", 2;
    SYSFS = 139, "sysfs", 3;
    GETPRIORITY = 140, "getpriority", 2;
    SETPRIORITY = 141, "setpriority", 3;
    SCHED_SETPARAM = 142, "sched_setparam", 2;
    SCHED_GETPARAM = 143, "sched_getparam", 2;
    SCHED_SETSCHEDULER = 144, "sched_setscheduler", 3;
    SCHED_GETSCHEDULER = 145, "sched_getscheduler", 1;
    SCHED_GET_PRIORITY_MAX = 146, "sched_get_priority_max", 1;
    SCHED_GET_PRIORITY_MIN = 147, "sched_get_priority_min", 1;
    SCHED_RR_GET_INTERVAL = 148, "sched_rr_get_interval", 2;
    MLOCK = 149, "mlock", 2;
    MUNLOCK = 150, "munlock", 2;
    MLOCKALL = 151, "mlockall", 1;
    MUNLOCKALL = 152, "munlockall", 0;
    VHANGUP = 153, "vhangup", 0;
    MODIFY_LDT = 154, "modify_ldt", 3;
    PIVOT_ROOT = 155, "pivot_root", 2;
    SYSCTL = 156, "_sysctl", 1;
    PRCTL = 157, "prctl", 5;
    ARCH_PRCTL = 158, "arch_prctl", 2;
    ADJTIMEX = 159, "adjtimex", 1;
    SETRLIMIT = 160, "setrlimit", 2;
    CHROOT = 161, "chroot", 1;
    SYNC = 162, "sync", 0;
    ACCT = 163, "acct", 1;
    SETTIMEOFDAY = 164, "settimeofday", 2;
    MOUNT = 165, "mount", 5;
    UMOUNT2 = 166, "umount2", 2;
    SWAPON = 167, "swapon", 2;
    SWAPOFF = 168, "swapoff", 1;
    REBOOT = 169, "reboot", 4;
    SETHOSTNAME = 170, "sethostname", 2;
    SETDOMAINNAME = 171, "setdomainname", 2;
    IOPL = 172, "iopl", 1;
    IOPERM = 173, "ioperm", 3;
    CREATE_MODULE = 174, "create_module", 2;
    INIT_MODULE = 175, "init_module", 3;
    DELETE_MODULE = 176, "delete_module", 2;
    GET_KERNEL_SYMS = 177, "get_kernel_syms", 1;
    QUERY_MODULE = 178, "query_module", 5;
    QUOTACTL = 179, "quotactl", 4;
    NFSSERVCTL = 180, "nfsservctl", 3;
    GETPMSG = 181, "getpmsg", 5;
    PUTPMSG = 182, "putpmsg", 5;
    AFS_SYSCALL = 183, "afs_syscall", 5;
    TUXCALL = 184, "tuxcall", 3;
    SECURITY = 185, "security", 3;
    GETTID = 186, "gettid", 0;
    READAHEAD = 187, "readahead", 3;
    SETXATTR = 188, "setxattr", 5;
    LSETXATTR = 189, "lsetxattr", 5;
    FSETXATTR = 190, "fsetxattr", 5;
    GETXATTR = 191, "getxattr", 4;
    LGETXATTR = 192, "lgetxattr", 4;
    FGETXATTR = 193, "fgetxattr", 4;
    LISTXATTR = 194, "listxattr", 3;
    LLISTXATTR = 195, "llistxattr", 3;
    FLISTXATTR = 196, "flistxattr", 3;
    REMOVEXATTR = 197, "removexattr", 2;
    LREMOVEXATTR = 198, "lremovexattr", 2;
    FREMOVEXATTR = 199, "fremovexattr", 2;
    TKILL = 200, "tkill", 2;
    TIME = 201, "time", 1;
    FUTEX = 202, "futex", 6;
    SCHED_SETAFFINITY = 203, "sched_setaffinity", 3;
    SCHED_GETAFFINITY = 204, "sched_getaffinity", 3;
    SET_THREAD_AREA = 205, "set_thread_area", 1;
    IO_SETUP = 206, "io_setup", 2;
    IO_DESTROY = 207, "io_destroy", 1;
    IO_GETEVENTS = 208, "io_getevents", 5;
    IO_SUBMIT = 209, "io_submit", 3;
    IO_CANCEL = 210, "io_cancel", 3;
    GET_THREAD_AREA = 211, "get_thread_area", 1;
    LOOKUP_DCOOKIE = 212, "lookup_dcookie", 3;
    EPOLL_CREATE = 213, "epoll_create", 1;
    EPOLL_CTL_OLD = 214, "epoll_ctl_old", 4;
    EPOLL_WAIT_OLD = 215, "epoll_wait_old", 4;
    REMAP_FILE_PAGES = 216, "remap_file_pages", 5;
    GETDENTS64 = 217, "getdents64", 3;
    SET_TID_ADDRESS = 218, "set_tid_address", 1;
    RESTART_SYSCALL = 219, "restart_syscall", 0;
    SEMTIMEDOP = 220, "semtimedop", 4;
    FADVISE64 = 221, "fadvise64", 4;
    TIMER_CREATE = 222, "timer_create", 3;
    TIMER_SETTIME = 223, "timer_settime", 4;
    TIMER_GETTIME = 224, "timer_gettime", 2;
    TIMER_GETOVERRUN = 225, "timer_getoverrun", 1;
    TIMER_DELETE = 226, "timer_delete", 1;
    CLOCK_SETTIME = 227, "clock_settime", 2;
    CLOCK_GETTIME = 228, "clock_gettime", 2;
    CLOCK_GETRES = 229, "clock_getres", 2;
    CLOCK_NANOSLEEP = 230, "clock_nanosleep", 4;
    EXIT_GROUP = 231, "exit_group", 1;
    EPOLL_WAIT = 232, "epoll_wait", 4;
    EPOLL_CTL = 233, "epoll_ctl", 4;
    TGKILL = 234, "tgkill", 3;
    UTIMES = 235, "utimes", 2;
    VSERVER = 236, "vserver", 5;
    MBIND = 237, "mbind", 6;
    SET_MEMPOLICY = 238, "set_mempolicy", 3;
    GET_MEMPOLICY = 239, "get_mempolicy", 5;
    MQ_OPEN = 240, "mq_open", 4;
    MQ_UNLINK = 241, "mq_unlink", 1;
    MQ_TIMEDSEND = 242, "mq_timedsend", 5;
    MQ_TIMEDRECEIVE = 243, "mq_timedreceive", 5;
    MQ_NOTIFY = 244, "mq_notify", 2;
    MQ_GETSETATTR = 245, "mq_getsetattr", 3;
    KEXEC_LOAD = 246, "kexec_load", 4;
    WAITID = 247, "waitid", 5;
    ADD_KEY = 248, "add_key", 5;
    REQUEST_KEY = 249, "request_key", 4;
    KEYCTL = 250, "keyctl", 5;
    IOPRIO_SET = 251, "ioprio_set", 3;
    IOPRIO_GET = 252, "ioprio_get", 2;
    INOTIFY_INIT = 253, "inotify_init", 0;
    INOTIFY_ADD_WATCH = 254, "inotify_add_watch", 3;
    INOTIFY_RM_WATCH = 255, "inotify_rm_watch", 2;
    MIGRATE_PAGES = 256, "migrate_pages", 4;
    OPENAT = 257, "openat", 4;
    MKDIRAT = 258, "mkdirat", 3;
    MKNODAT = 259, "mknodat", 4;
    FCHOWNAT = 260, "fchownat", 5;
    FUTIMESAT = 261, "futimesat", 3;
    NEWFSTATAT = 262, "newfstatat", 4;
    UNLINKAT = 263, "unlinkat", 3;
    RENAMEAT = 264, "renameat", 4;
    LINKAT = 265, "linkat", 5;
    SYMLINKAT = 266, "symlinkat", 3;
    READLINKAT = 267, "readlinkat", 4;
    FCHMODAT = 268, "fchmodat", 3;
    FACCESSAT = 269, "faccessat", 3;
    PSELECT6 = 270, "pselect6", 6;
    PPOLL = 271, "ppoll", 5;
    UNSHARE = 272, "unshare", 1;
    SET_ROBUST_LIST = 273, "set_robust_list", 2;
    GET_ROBUST_LIST = 274, "get_robust_list", 3;
    SPLICE = 275, "splice", 6;
    TEE = 276, "tee", 4;
    SYNC_FILE_RANGE = 277, "sync_file_range", 4;
    VMSPLICE = 278, "vmsplice", 4;
    MOVE_PAGES = 279, "move_pages", 6;
    UTIMENSAT = 280, "utimensat", 4;
    EPOLL_PWAIT = 281, "epoll_pwait", 6;
    SIGNALFD = 282, "signalfd", 3;
    TIMERFD_CREATE = 283, "timerfd_create", 2;
    EVENTFD = 284, "eventfd", 1;
    FALLOCATE = 285, "fallocate", 4;
    TIMERFD_SETTIME = 286, "timerfd_settime", 4;
    TIMERFD_GETTIME = 287, "timerfd_gettime", 2;
    ACCEPT4 = 288, "accept4", 4;
    SIGNALFD4 = 289, "signalfd4", 4;
    EVENTFD2 = 290, "eventfd2", 2;
    EPOLL_CREATE1 = 291, "epoll_create1", 1;
    DUP3 = 292, "dup3", 3;
    PIPE2 = 293, "pipe2", 2;
    INOTIFY_INIT1 = 294, "inotify_init1", 1;
    PREADV = 295, "preadv", 4;
    PWRITEV = 296, "pwritev", 4;
    RT_TGSIGQUEUEINFO = 297, "rt_tgsigqueueinfo", 4;
    PERF_EVENT_OPEN = 298, "perf_event_open", 5;
    RECVMMSG = 299, "recvmmsg", 5;
    FANOTIFY_INIT = 300, "fanotify_init", 2;
    FANOTIFY_MARK = 301, "fanotify_mark", 5;
    PRLIMIT64 = 302, "prlimit64", 4;
    NAME_TO_HANDLE_AT = 303, "name_to_handle_at", 5;
    OPEN_BY_HANDLE_AT = 304, "open_by_handle_at", 3;
    CLOCK_ADJTIME = 305, "clock_adjtime", 2;
    SYNCFS = 306, "syncfs", 1;
    SENDMMSG = 307, "sendmmsg", 4;
    SETNS = 308, "setns", 2;
    GETCPU = 309, "getcpu", 3;
    PROCESS_VM_READV = 310, "process_vm_readv", 6;
    PROCESS_VM_WRITEV = 311, "process_vm_writev", 6;
    KCMP = 312, "kcmp", 5;
    FINIT_MODULE = 313, "finit_module", 3;
    SCHED_SETATTR = 314, "sched_setattr", 3;
    SCHED_GETATTR = 315, "sched_getattr", 4;
    RENAMEAT2 = 316, "renameat2", 5;
    SECCOMP = 317, "seccomp", 3;
    GETRANDOM = 318, "getrandom", 3;
    MEMFD_CREATE = 319, "memfd_create", 2;
    KEXEC_FILE_LOAD = 320, "kexec_file_load", 5;
    BPF = 321, "bpf", 3;
    EXECVEAT = 322, "execveat", 5;
    USERFAULTFD = 323, "userfaultfd", 1;
    MEMBARRIER = 324, "membarrier", 3;
    MLOCK2 = 325, "mlock2", 3;
    COPY_FILE_RANGE = 326, "copy_file_range", 6;
    PREADV2 = 327, "preadv2", 6;
    PWRITEV2 = 328, "pwritev2", 6;
    PKEY_MPROTECT = 329, "pkey_mprotect", 4;
    PKEY_ALLOC = 330, "pkey_alloc", 2;
    PKEY_FREE = 331, "pkey_free", 1;
    STATX = 332, "statx", 5;
    IO_PGETEVENTS = 333, "io_pgetevents", 6;
    RSEQ = 334, "rseq", 4;
    PIDFD_SEND_SIGNAL = 424, "pidfd_send_signal", 4;
    IO_URING_SETUP = 425, "io_uring_setup", 2;
    IO_URING_ENTER = 426, "io_uring_enter", 6;
    IO_URING_REGISTER = 427, "io_uring_register", 4;
    OPEN_TREE = 428, "open_tree", 3;
    MOVE_MOUNT = 429, "move_mount", 5;
    FSOPEN = 430, "fsopen", 2;
    FSCONFIG = 431, "fsconfig", 5;
    FSMOUNT = 432, "fsmount", 3;
    FSPICK = 433, "fspick", 3;
    PIDFD_OPEN = 434, "pidfd_open", 2;
    CLONE3 = 435, "clone3", 2;
    CLOSE_RANGE = 436, "close_range", 3;
    OPENAT2 = 437, "openat2", 4;
    PIDFD_GETFD = 438, "pidfd_getfd", 3;
    FACCESSAT2 = 439, "faccessat2", 4;
    PROCESS_MADVISE = 440, "process_madvise", 5;
    EPOLL_PWAIT2 = 441, "epoll_pwait2", 6;
    MOUNT_SETATTR = 442, "mount_setattr", 5;
    QUOTACTL_FD = 443, "quotactl_fd", 4;
    LANDLOCK_CREATE_RULESET = 444, "landlock_create_ruleset", 3;
    LANDLOCK_ADD_RULE = 445, "landlock_add_rule", 4;
    LANDLOCK_RESTRICT_SELF = 446, "landlock_restrict_self", 2;
    MEMFD_SECRET = 447, "memfd_secret", 1;
    PROCESS_MRELEASE = 448, "process_mrelease", 2;
    FUTEX_WAITV = 449, "futex_waitv", 5;
    SET_MEMPOLICY_HOME_NODE = 450, "set_mempolicy_home_node", 4;
    CACHESTAT = 451, "cachestat", 4;
    FCHMODAT2 = 452, "fchmodat2", 4;
    MAP_SHADOW_STACK = 453, "map_shadow_stack", 3;
    FUTEX_WAKE = 454, "futex_wake", 4;
    FUTEX_WAIT = 455, "futex_wait", 6;
    FUTEX_REQUEUE = 456, "futex_requeue", 4;
    STATMOUNT = 457, "statmount", 4;
    LISTMOUNT = 458, "listmount", 4;
    LSM_GET_SELF_ATTR = 459, "lsm_get_self_attr", 4;
    LSM_SET_SELF_ATTR = 460, "lsm_set_self_attr", 4;
    LSM_LIST_MODULES = 461, "lsm_list_modules", 3;
    MSEAL = 462, "mseal", 3;
    SETXATTRAT = 463, "setxattrat", 6;
    GETXATTRAT = 464, "getxattrat", 6;
    LISTXATTRAT = 465, "listxattrat", 5;
    REMOVEXATTRAT = 466, "removexattrat", 4;
    OPEN_TREE_ATTR = 467, "open_tree_attr", 5;
    FILE_GETATTR = 468, "file_getattr", 5;
    FILE_SETATTR = 469, "file_setattr", 5;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn names_of_a_sample() {
        assert_eq!(name(0), Some("read"));
        assert_eq!(name(1), Some("write"));
        assert_eq!(name(13), Some("rt_sigaction"));
        assert_eq!(name(60), Some("exit"));
        assert_eq!(name(156), Some("_sysctl"));
        assert_eq!(name(158), Some("arch_prctl"));
        assert_eq!(name(231), Some("exit_group"));
        assert_eq!(name(262), Some("newfstatat"));
        assert_eq!(name(302), Some("prlimit64"));
        assert_eq!(name(334), Some("rseq"));
        assert_eq!(name(425), Some("io_uring_setup"));
        assert_eq!(name(435), Some("clone3"));
        assert_eq!(name(436), Some("close_range"));
        assert_eq!(name(437), Some("openat2"));
        assert_eq!(name(439), Some("faccessat2"));
        assert_eq!(name(441), Some("epoll_pwait2"));
        assert_eq!(name(444), Some("landlock_create_ruleset"));
        assert_eq!(name(447), Some("memfd_secret"));
        assert_eq!(name(449), Some("futex_waitv"));
        assert_eq!(name(451), Some("cachestat"));
        assert_eq!(name(452), Some("fchmodat2"));
        assert_eq!(name(453), Some("map_shadow_stack"));
        assert_eq!(name(454), Some("futex_wake"));
        assert_eq!(name(455), Some("futex_wait"));
        assert_eq!(name(456), Some("futex_requeue"));
        assert_eq!(name(457), Some("statmount"));
        assert_eq!(name(458), Some("listmount"));
        assert_eq!(name(461), Some("lsm_list_modules"));
        assert_eq!(name(462), Some("mseal"));
    }

    #[test]
    fn constants_match_numbers() {
        assert_eq!(READ, 0);
        assert_eq!(MMAP, 9);
        assert_eq!(CLONE, 56);
        assert_eq!(FUTEX, 202);
        assert_eq!(CLOCK_GETTIME, 228);
        assert_eq!(OPENAT, 257);
        assert_eq!(GETRANDOM, 318);
        assert_eq!(STATX, 332);
        assert_eq!(CLONE3, 435);
        assert_eq!(MSEAL, 462);
        assert_eq!(name(SYSCTL), Some("_sysctl"));
    }

    #[test]
    fn gaps_and_out_of_range_have_no_name() {
        for nr in 335..424 {
            assert_eq!(name(nr), None, "{nr}");
        }
        assert_eq!(name(512), None);
        assert_eq!(name(u64::MAX), None);
    }

    #[test]
    fn every_number_below_the_gap_is_named() {
        for nr in 0..335 {
            assert!(name(nr).is_some(), "{nr}");
        }
        for nr in 424..470 {
            assert!(name(nr).is_some(), "{nr}");
        }
    }

    #[test]
    fn every_name_is_whole_and_distinct() {
        let names: Vec<&str> = (0..512).filter_map(name).collect();
        assert_eq!(names.len(), NUMBERS.len());
        for n in &names {
            assert!(
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n:?}"
            );
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }

    #[test]
    fn argument_counts() {
        assert_eq!(arg_count(GETPID), Some(0));
        assert_eq!(arg_count(EXIT_GROUP), Some(1));
        assert_eq!(arg_count(WRITE), Some(3));
        assert_eq!(arg_count(RT_SIGACTION), Some(4));
        assert_eq!(arg_count(MMAP), Some(6));
        assert_eq!(arg_count(CLONE3), Some(2));
        assert_eq!(arg_count(400), None);
    }
}
