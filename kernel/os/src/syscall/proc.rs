//! Process system calls: exit, ids, limits, scheduling, `prctl`, `arch_prctl`, `uname`,
//! `getrandom`, and signals sent to the program itself.
//!
//! The program is process and thread 1, leader of its own session and process group, and
//! runs as root on one CPU. Ids, limits and names the program sets are kept and reported
//! back; nothing else in the kernel enforces them yet.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::fd::MAX_FDS;
use crate::machine::Machine;
use crate::process::{Outcome, Process, PID};
use crate::sched::CpuTime;
use crate::small::{SmallMap, SmallSet};
use crate::syscall::signal::{Fate, NSIG};
use crate::syscall::time::NSEC_PER_SEC;
use crate::syscall::{read_user, ret, write_user};
use crate::sysno;
use spin::Mutex;

/// `uname` system name.
pub const UNAME_SYSNAME: &str = "Linux";
/// Default `uname` node name (until `sethostname`).
pub const UNAME_NODENAME: &str = "kiln";
/// `uname` release: a Linux version glibc accepts (it wants 3.2 or later).
pub const UNAME_RELEASE: &str = "6.1.0-kiln";
/// `uname` version.
pub const UNAME_VERSION: &str = "#1 SMP Kiln";
/// `uname` machine.
pub const UNAME_MACHINE: &str = "x86_64";
/// Default `uname` domain name.
pub const UNAME_DOMAINNAME: &str = "(none)";
/// Length of each `struct utsname` field (`__NEW_UTS_LEN + 1`).
pub const UTS_FIELD: usize = 65;

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;
/// Number of resource limits (`RLIM_NLIMITS`).
pub const RLIM_NLIMITS: usize = 16;
/// `RLIMIT_CPU`.
pub const RLIMIT_CPU: usize = 0;
/// `RLIMIT_FSIZE`.
pub const RLIMIT_FSIZE: usize = 1;
/// `RLIMIT_DATA`.
pub const RLIMIT_DATA: usize = 2;
/// `RLIMIT_STACK`.
pub const RLIMIT_STACK: usize = 3;
/// `RLIMIT_CORE`.
pub const RLIMIT_CORE: usize = 4;
/// `RLIMIT_NOFILE`.
pub const RLIMIT_NOFILE: usize = 7;
/// `RLIMIT_AS`.
pub const RLIMIT_AS: usize = 9;
/// `RLIMIT_NOFILE`'s hard limit at start (systemd's default, which Debian's services
/// get): servers raise their soft limit to it (Go does so by itself).
pub const NOFILE_HARD: u64 = 524_288;
/// Largest `RLIMIT_NOFILE` (Linux's default `fs.nr_open`).
pub const NR_OPEN: u64 = 1 << 20;

/// `PR_SET_PDEATHSIG`.
pub const PR_SET_PDEATHSIG: u64 = 1;
/// `PR_GET_PDEATHSIG`.
pub const PR_GET_PDEATHSIG: u64 = 2;
/// `PR_GET_DUMPABLE`.
pub const PR_GET_DUMPABLE: u64 = 3;
/// `PR_SET_DUMPABLE`.
pub const PR_SET_DUMPABLE: u64 = 4;
/// `PR_GET_KEEPCAPS`.
pub const PR_GET_KEEPCAPS: u64 = 7;
/// `PR_SET_KEEPCAPS`.
pub const PR_SET_KEEPCAPS: u64 = 8;
/// `PR_SET_NAME`.
pub const PR_SET_NAME: u64 = 15;
/// `PR_GET_NAME`.
pub const PR_GET_NAME: u64 = 16;
/// `PR_GET_SECCOMP`.
pub const PR_GET_SECCOMP: u64 = 21;
/// `PR_CAPBSET_READ`.
pub const PR_CAPBSET_READ: u64 = 23;
/// `PR_SET_TIMERSLACK`.
pub const PR_SET_TIMERSLACK: u64 = 29;
/// `PR_GET_TIMERSLACK`.
pub const PR_GET_TIMERSLACK: u64 = 30;
/// `PR_SET_CHILD_SUBREAPER`.
pub const PR_SET_CHILD_SUBREAPER: u64 = 36;
/// `PR_GET_CHILD_SUBREAPER`.
pub const PR_GET_CHILD_SUBREAPER: u64 = 37;
/// Linux's default timer slack, in ns.
const TIMERSLACK_DEFAULT: u64 = 50_000;
/// `PR_SET_NO_NEW_PRIVS`.
pub const PR_SET_NO_NEW_PRIVS: u64 = 38;
/// `PR_GET_NO_NEW_PRIVS`.
pub const PR_GET_NO_NEW_PRIVS: u64 = 39;
/// `PR_GET_TID_ADDRESS`.
pub const PR_GET_TID_ADDRESS: u64 = 40;
/// Highest capability number (`CAP_LAST_CAP` in Linux 6.1).
pub const CAP_LAST_CAP: u64 = 40;

/// `ARCH_SET_GS`.
pub const ARCH_SET_GS: u64 = 0x1001;
/// `ARCH_SET_FS`.
pub const ARCH_SET_FS: u64 = 0x1002;
/// `ARCH_GET_FS`.
pub const ARCH_GET_FS: u64 = 0x1003;
/// `ARCH_GET_GS`.
pub const ARCH_GET_GS: u64 = 0x1004;
/// `ARCH_GET_CPUID`.
pub const ARCH_GET_CPUID: u64 = 0x1011;
/// `ARCH_SET_CPUID`.
pub const ARCH_SET_CPUID: u64 = 0x1012;
/// First address above user space (`TASK_SIZE_MAX`): segment bases must lie below it.
pub const TASK_SIZE_MAX: u64 = (1 << 47) - 4096;

/// `GRND_NONBLOCK`.
pub const GRND_NONBLOCK: u64 = 1;
/// `GRND_RANDOM`.
pub const GRND_RANDOM: u64 = 2;
/// `GRND_INSECURE`.
pub const GRND_INSECURE: u64 = 4;
/// Largest single read or write (`MAX_RW_COUNT`).
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// Size of `struct robust_list_head`, the only length `set_robust_list` accepts.
pub const ROBUST_LIST_HEAD_SIZE: u64 = 24;
/// Clock ticks per second of `times` (`USER_HZ`).
pub const USER_HZ: u64 = 100;

/// A soft and hard resource limit (`struct rlimit`, 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Soft limit (`rlim_cur`).
    pub cur: u64,
    /// Hard limit (`rlim_max`).
    pub max: u64,
}

impl Rlimit {
    const INF: Rlimit = Rlimit {
        cur: RLIM_INFINITY,
        max: RLIM_INFINITY,
    };

    /// Decodes the user structure.
    pub fn from_bytes(b: &[u8; 16]) -> Rlimit {
        let mut c = [0; 8];
        let mut m = [0; 8];
        c.copy_from_slice(&b[..8]);
        m.copy_from_slice(&b[8..]);
        Rlimit {
            cur: u64::from_le_bytes(c),
            max: u64::from_le_bytes(m),
        }
    }

    /// Encodes the user structure.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.cur.to_le_bytes());
        b[8..].copy_from_slice(&self.max.to_le_bytes());
        b
    }
}

/// The limits a new program starts with: `RLIMIT_STACK` 8 MiB soft / unlimited hard (the
/// usual Linux default), `RLIMIT_NOFILE` 1024 / 524288, `RLIMIT_CORE` 0 / unlimited (Kiln
/// writes no core files), everything else unlimited.
pub fn default_limits() -> [Rlimit; RLIM_NLIMITS] {
    let mut l = [Rlimit::INF; RLIM_NLIMITS];
    l[RLIMIT_STACK].cur = 8 << 20;
    l[RLIMIT_NOFILE] = Rlimit {
        cur: MAX_FDS as u64,
        max: NOFILE_HARD,
    };
    l[RLIMIT_CORE].cur = 0;
    l
}

/// Real, effective, saved and file-system user or group ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ids {
    /// Real id.
    pub real: u32,
    /// Effective id.
    pub effective: u32,
    /// Saved set-id.
    pub saved: u32,
    /// File-system id.
    pub fs: u32,
}

/// The "unchanged" id (-1).
const NO_ID: u32 = u32::MAX;

impl Ids {
    fn holds(&self, id: u32) -> bool {
        id == self.real || id == self.effective || id == self.saved
    }

    /// `setuid`/`setgid`: privileged callers set all ids; others may switch the effective
    /// id to the real or saved one.
    pub fn set(&mut self, privileged: bool, id: u32) -> KResult<()> {
        if id == NO_ID {
            return Err(Errno::EINVAL);
        }
        if privileged {
            *self = Ids {
                real: id,
                effective: id,
                saved: id,
                fs: id,
            };
        } else if id == self.real || id == self.saved {
            self.effective = id;
            self.fs = id;
        } else {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    /// `setreuid`/`setregid` (`u32::MAX` leaves an id unchanged).
    pub fn set_re(&mut self, privileged: bool, real: u32, effective: u32) -> KResult<()> {
        let old = *self;
        let mut new = old;
        if real != NO_ID {
            if !privileged && real != old.real && real != old.effective {
                return Err(Errno::EPERM);
            }
            new.real = real;
        }
        if effective != NO_ID {
            if !privileged && !old.holds(effective) {
                return Err(Errno::EPERM);
            }
            new.effective = effective;
        }
        if real != NO_ID || (effective != NO_ID && effective != old.real) {
            new.saved = new.effective;
        }
        new.fs = new.effective;
        *self = new;
        Ok(())
    }

    /// `setresuid`/`setresgid` (`u32::MAX` leaves an id unchanged).
    pub fn set_res(
        &mut self,
        privileged: bool,
        real: u32,
        effective: u32,
        saved: u32,
    ) -> KResult<()> {
        let ids = [real, effective, saved];
        if !privileged && ids.iter().any(|&i| i != NO_ID && !self.holds(i)) {
            return Err(Errno::EPERM);
        }
        if real != NO_ID {
            self.real = real;
        }
        if effective != NO_ID {
            self.effective = effective;
        }
        if saved != NO_ID {
            self.saved = saved;
        }
        self.fs = self.effective;
        Ok(())
    }

    /// `setfsuid`/`setfsgid`: returns the old file-system id; changes it when allowed.
    pub fn set_fs(&mut self, privileged: bool, id: u32) -> u32 {
        let old = self.fs;
        if id != NO_ID && (privileged || self.holds(id) || id == self.fs) {
            self.fs = id;
        }
        old
    }
}

/// Process state the process system calls keep: ids, limits, names.
#[derive(Debug)]
pub struct ProcState {
    /// User ids (all 0: the program runs as root).
    pub uid: Ids,
    /// Group ids.
    pub gid: Ids,
    /// Supplementary groups (none at start).
    pub groups: Vec<u32>,
    /// Resource limits by `RLIMIT_*` number.
    pub limits: [Rlimit; RLIM_NLIMITS],
    /// Thread names (`comm`); the main thread's is the process's.
    pub names: ThreadNames,
    /// `PR_SET_DUMPABLE` value (1 at start).
    pub dumpable: u64,
    /// `PR_SET_PDEATHSIG` signal (0: none).
    pub pdeathsig: u32,
    /// `PR_SET_NO_NEW_PRIVS` flag.
    pub no_new_privs: bool,
    /// `PR_SET_KEEPCAPS` flag.
    pub keep_caps: bool,
    /// `PR_SET_TIMERSLACK` value in ns (0: not set, the default).
    pub timer_slack: u64,
    /// `PR_SET_CHILD_SUBREAPER` flag (kept; there are no child processes to reap).
    pub subreaper: bool,
    /// `set_robust_list` head address.
    pub robust_list: u64,
    /// Host name set by `sethostname`; `None`: the first line of `/etc/hostname`, else
    /// [`UNAME_NODENAME`].
    pub nodename: Option<Vec<u8>>,
    /// NIS domain name (`uname`, `setdomainname`).
    pub domainname: Vec<u8>,
    /// Where the argument strings are in the program's memory (`/proc/self/cmdline`).
    pub args: core::ops::Range<u64>,
    /// Where the environment strings are (`/proc/self/environ`).
    pub env: core::ops::Range<u64>,
    /// `/proc/sys/kernel/random/boot_id`, made at its first read.
    pub boot_id: Option<[u8; 16]>,
    /// `prctl` options already logged as unsupported.
    prctl_logged: SmallSet<u64>,
    /// The nice value (`setpriority`), -20 to 19.
    pub nice: i8,
    /// The capability sets (`capget`, `capset`).
    pub caps: caps::Caps,
}

impl Default for ProcState {
    fn default() -> Self {
        ProcState {
            uid: Ids::default(),
            gid: Ids::default(),
            groups: Vec::new(),
            limits: default_limits(),
            names: ThreadNames::default(),
            dumpable: 1,
            pdeathsig: 0,
            no_new_privs: false,
            keep_caps: false,
            timer_slack: 0,
            subreaper: false,
            robust_list: 0,
            nodename: None,
            domainname: UNAME_DOMAINNAME.as_bytes().to_vec(),
            args: 0..0,
            env: 0..0,
            boot_id: None,
            prctl_logged: SmallSet::new(),
            nice: 0,
            caps: caps::Caps::default(),
        }
    }
}

impl ProcState {
    /// The state of a program whose argument and environment strings are at `args` and
    /// `env` in its memory.
    pub fn with_strings(args: core::ops::Range<u64>, env: core::ops::Range<u64>) -> ProcState {
        ProcState {
            args,
            env,
            ..ProcState::default()
        }
    }

    /// Whether the program holds root's powers (effective uid 0).
    pub fn privileged(&self) -> bool {
        self.uid.effective == 0
    }

    /// Sets resource `resource` as `setrlimit` does: `EINVAL` for an unknown resource or a
    /// soft limit above the hard one, `EPERM` for raising the hard limit without privilege
    /// or `RLIMIT_NOFILE` above [`NR_OPEN`]. Returns the old limit.
    pub fn set_limit(&mut self, resource: u64, new: Rlimit) -> KResult<Rlimit> {
        let old = self.limit(resource)?;
        if new.cur > new.max {
            return Err(Errno::EINVAL);
        }
        if new.max > old.max && !self.privileged() {
            return Err(Errno::EPERM);
        }
        if resource as usize == RLIMIT_NOFILE && new.max > NR_OPEN {
            return Err(Errno::EPERM);
        }
        self.limits[resource as usize] = new;
        Ok(old)
    }

    /// Resource limit `resource`; `EINVAL` for an unknown resource.
    pub fn limit(&self, resource: u64) -> KResult<Rlimit> {
        self.limits
            .get(resource as usize)
            .copied()
            .filter(|_| resource < RLIM_NLIMITS as u64)
            .ok_or(Errno::EINVAL)
    }

    /// The process's name (`comm`, the main thread's): the name set, else the file name of
    /// `exe_path`, at most 15 bytes.
    pub fn comm(&self, exe_path: &str) -> Vec<u8> {
        self.thread_comm(PID as u32, exe_path)
    }

    /// Thread `tid`'s name: the name set, else the file name of `exe_path`.
    pub fn thread_comm(&self, tid: u32, exe_path: &str) -> Vec<u8> {
        self.names.get(tid).unwrap_or_else(|| {
            let base = exe_path.rsplit('/').next().unwrap_or(exe_path).as_bytes();
            base[..base.len().min(COMM_MAX)].to_vec()
        })
    }
}

/// Longest thread name (`TASK_COMM_LEN` - 1).
pub const COMM_MAX: usize = 15;

/// Thread names by thread id: given by `execve` (the main thread's: the name the program
/// was started by), `PR_SET_NAME`, a write to `/proc/self/task/N/comm` (or
/// `/proc/self/comm`, the main thread's), or inherited from the thread that made them.
/// Shared with the `comm` files open for writing, which rename through it.
#[derive(Debug, Clone, Default)]
pub struct ThreadNames(Arc<Mutex<SmallMap<u32, Vec<u8>>>>);

impl ThreadNames {
    /// Thread `tid`'s own name, if it has one.
    pub fn get(&self, tid: u32) -> Option<Vec<u8>> {
        self.0.lock().get(&tid).cloned()
    }

    /// Names thread `tid`: at most 15 bytes, up to the first NUL.
    pub fn set(&self, tid: u32, name: &[u8]) {
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        let name = name[..name.len().min(COMM_MAX)].to_vec();
        self.0.lock().insert(tid, name);
    }

    /// Forgets every name (`execve` ended the other threads and names the caller anew).
    pub fn clear(&self) {
        *self.0.lock() = SmallMap::new();
    }

    /// Forgets an ended thread's name.
    pub fn remove(&self, tid: u32) {
        self.0.lock().remove(&tid);
    }
}

/// Encodes `struct utsname` (six 65-byte NUL-padded fields).
pub fn utsname(nodename: &[u8], domainname: &[u8]) -> [u8; 6 * UTS_FIELD] {
    let mut b = [0; 6 * UTS_FIELD];
    let fields: [&[u8]; 6] = [
        UNAME_SYSNAME.as_bytes(),
        nodename,
        UNAME_RELEASE.as_bytes(),
        UNAME_VERSION.as_bytes(),
        UNAME_MACHINE.as_bytes(),
        domainname,
    ];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(UTS_FIELD - 1);
        b[i * UTS_FIELD..i * UTS_FIELD + n].copy_from_slice(&f[..n]);
    }
    b
}

/// Encodes `struct sysinfo` (112 bytes): uptime in whole seconds rounded up as Linux does,
/// RAM in bytes (`mem_unit` 1), no swap, load averages 0, one process.
pub fn sysinfo_bytes(uptime_ns: u64, total_ram: u64, free_ram: u64) -> [u8; 112] {
    let mut b = [0; 112];
    let uptime = uptime_ns.div_ceil(NSEC_PER_SEC);
    b[0..8].copy_from_slice(&uptime.to_le_bytes());
    b[32..40].copy_from_slice(&total_ram.to_le_bytes());
    b[40..48].copy_from_slice(&free_ram.to_le_bytes());
    b[80..82].copy_from_slice(&1u16.to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes());
    b
}

/// Encodes `struct rusage` (144 bytes) with user and system time and the resident size;
/// the other counters are zero.
pub fn rusage_bytes(cpu: CpuTime, maxrss_kib: u64) -> [u8; 144] {
    use crate::syscall::time::Timeval;
    let mut b = [0; 144];
    b[0..16].copy_from_slice(&Timeval::from_ns(cpu.user).to_bytes());
    b[16..32].copy_from_slice(&Timeval::from_ns(cpu.system).to_bytes());
    b[32..40].copy_from_slice(&maxrss_kib.to_le_bytes());
    b
}

/// Whether `pid` (a `pid_t`) names the program: 0 (the caller) or [`PID`].
pub fn is_self(pid: u64) -> bool {
    let pid = pid as u32 as i32;
    pid == 0 || i64::from(pid) == PID
}

/// Whether `pid` names the process or one of its threads: the scheduling calls take a
/// thread id, as on Linux (a thread asks about itself by its own id).
fn is_own_thread(m: &dyn Machine, pid: u64) -> bool {
    let pid = pid as u32 as i32;
    is_self(pid as u64) || (pid > 0 && m.tids().contains(&(pid as u32)))
}

/// Handles the process system calls; `None` for numbers this family does not own.
///
/// Not owned, so reported as unsupported: `rseq` (glibc runs without it), `fork`, `vfork`
/// and the other process-creating calls (`clone` of threads is [`super::thread`]'s,
/// `execve` [`super::exec`]'s).
#[inline(never)]
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    let r = match nr {
        sysno::EXIT_GROUP => return Some(Outcome::Exit(a[0] as u8)),
        sysno::GETPID | sysno::GETPGRP => Ok(PID),
        sysno::GETPPID => Ok(0),
        sysno::GETUID => Ok(state(p).uid.real.into()),
        sysno::GETEUID => Ok(state(p).uid.effective.into()),
        sysno::GETGID => Ok(state(p).gid.real.into()),
        sysno::GETEGID => Ok(state(p).gid.effective.into()),
        sysno::GETRESUID => {
            let ids = state(p).uid;
            put_ids(p, m, ids, a)
        }
        sysno::GETRESGID => {
            let ids = state(p).gid;
            put_ids(p, m, ids, a)
        }
        sysno::SETUID => {
            let s = state(p);
            let privileged = s.privileged();
            s.uid.set(privileged, a[0] as u32).map(|()| 0)
        }
        sysno::SETGID => {
            let s = state(p);
            let privileged = s.privileged();
            s.gid.set(privileged, a[0] as u32).map(|()| 0)
        }
        sysno::SETREUID => {
            let s = state(p);
            let privileged = s.privileged();
            s.uid
                .set_re(privileged, a[0] as u32, a[1] as u32)
                .map(|()| 0)
        }
        sysno::SETREGID => {
            let s = state(p);
            let privileged = s.privileged();
            s.gid
                .set_re(privileged, a[0] as u32, a[1] as u32)
                .map(|()| 0)
        }
        sysno::SETRESUID => {
            let s = state(p);
            let privileged = s.privileged();
            s.uid
                .set_res(privileged, a[0] as u32, a[1] as u32, a[2] as u32)
                .map(|()| 0)
        }
        sysno::SETRESGID => {
            let s = state(p);
            let privileged = s.privileged();
            s.gid
                .set_res(privileged, a[0] as u32, a[1] as u32, a[2] as u32)
                .map(|()| 0)
        }
        sysno::SETFSUID => {
            let s = state(p);
            let privileged = s.privileged();
            Ok(s.uid.set_fs(privileged, a[0] as u32).into())
        }
        sysno::SETFSGID => {
            let s = state(p);
            let privileged = s.privileged();
            Ok(s.gid.set_fs(privileged, a[0] as u32).into())
        }
        sysno::GETGROUPS => getgroups(p, m, a[0], a[1]),
        sysno::SETGROUPS => setgroups(p, m, a[0], a[1]),
        sysno::GETPGID | sysno::GETSID => {
            if is_self(a[0]) {
                Ok(PID)
            } else {
                Err(Errno::ESRCH)
            }
        }
        // The program leads its session: it can neither start one nor change group.
        sysno::SETSID => Err(Errno::EPERM),
        sysno::SETPGID => setpgid(a[0], a[1]),
        sysno::UNAME => {
            let b = utsname(&nodename(p), &state(p).domainname);
            write_user(p, m, a[0], &b).map(|()| 0)
        }
        sysno::SETHOSTNAME => set_uts_name(p, m, a[0], a[1], false),
        sysno::SETDOMAINNAME => set_uts_name(p, m, a[0], a[1], true),
        sysno::SYSINFO => {
            let (total, free) = m.ram();
            let b = sysinfo_bytes(m.since_boot_ns(), total, free);
            write_user(p, m, a[0], &b).map(|()| 0)
        }
        sysno::GETRLIMIT => getrlimit(p, m, a[0], a[1]),
        sysno::SETRLIMIT => setrlimit(p, m, a[0], a[1]),
        sysno::PRLIMIT64 => prlimit64(p, m, a[0], a[1], a[2], a[3]),
        sysno::SCHED_GETAFFINITY => sched_getaffinity(p, m, a[0], a[1], a[2]),
        sysno::SCHED_SETAFFINITY => sched_setaffinity(p, m, a[0], a[1], a[2]),
        sysno::SCHED_GETSCHEDULER => sched_pid(m, a[0]).map(|()| 0),
        sysno::SCHED_GETPARAM => {
            if a[1] == 0 {
                Err(Errno::EINVAL)
            } else {
                sched_pid(m, a[0])
                    .and_then(|()| write_user(p, m, a[1], &0i32.to_le_bytes()).map(|()| 0))
            }
        }
        sysno::SCHED_GET_PRIORITY_MAX => priority_range(a[0]).map(|r| r.1),
        sysno::SCHED_GET_PRIORITY_MIN => priority_range(a[0]).map(|r| r.0),
        sysno::SET_ROBUST_LIST => {
            if a[1] != ROBUST_LIST_HEAD_SIZE {
                Err(Errno::EINVAL)
            } else {
                state(p).robust_list = a[0];
                Ok(0)
            }
        }
        sysno::GET_ROBUST_LIST => get_robust_list(p, m, a[0], a[1], a[2]),
        sysno::PRCTL => prctl(p, m, a),
        sysno::ARCH_PRCTL => arch_prctl(p, m, a[0], a[1]),
        sysno::GETRANDOM => getrandom(p, m, a[0], a[1], a[2]),
        sysno::KILL => return Some(kill(p, m, a[0], a[1])),
        sysno::TKILL => return Some(tgkill(p, m, None, a[0], a[1])),
        sysno::TGKILL => return Some(tgkill(p, m, Some(a[0]), a[1], a[2])),
        sysno::GETCPU => getcpu(p, m, a[0], a[1]),
        sysno::TIMES => times(p, m, a[0]),
        sysno::GETRUSAGE => getrusage(p, m, a[0], a[1]),
        sysno::GETPRIORITY => caps::getpriority(p, m, a[0], a[1]),
        sysno::SETPRIORITY => caps::setpriority(p, m, a[0], a[1], a[2]),
        sysno::CAPGET => caps::capget(p, m, a[0], a[1]),
        sysno::CAPSET => caps::capset(p, m, a[0], a[1]),
        sysno::WAIT4 => wait4(a[0], a[2]),
        sysno::WAITID => waitid(a[0], a[3]),
        _ => return None,
    };
    Some(ret(r))
}

/// The process state these calls keep.
fn state(p: &mut Process) -> &mut ProcState {
    &mut p.proc
}

/// The host name: set by `sethostname`, else the first line of `/etc/hostname`, else
/// [`UNAME_NODENAME`].
pub fn nodename(p: &Process) -> Vec<u8> {
    if let Some(n) = &p.proc.nodename {
        return n.clone();
    }
    if let Ok(node) = p.vfs.find("/", "/etc/hostname", true) {
        if node.is_regular() {
            let mut buf = [0u8; UTS_FIELD];
            let n = node.read_at(0, &mut buf);
            let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or(&[]);
            let line = line.trim_ascii();
            if !line.is_empty() && line.len() < UTS_FIELD {
                return line.to_vec();
            }
        }
    }
    UNAME_NODENAME.as_bytes().to_vec()
}

fn put_ids(p: &mut Process, m: &mut dyn Machine, ids: Ids, a: [u64; 6]) -> KResult<i64> {
    write_user(p, m, a[0], &ids.real.to_le_bytes())?;
    write_user(p, m, a[1], &ids.effective.to_le_bytes())?;
    write_user(p, m, a[2], &ids.saved.to_le_bytes())?;
    Ok(0)
}

/// Largest supplementary group list (`NGROUPS_MAX`).
const NGROUPS_MAX: u64 = 65536;

fn getgroups(p: &mut Process, m: &mut dyn Machine, size: u64, list: u64) -> KResult<i64> {
    let size = size as u32 as i32;
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    let groups = state(p).groups.clone();
    if size == 0 {
        return Ok(groups.len() as i64);
    }
    if (size as usize) < groups.len() {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    write_user(p, m, list, &bytes)?;
    Ok(groups.len() as i64)
}

fn setgroups(p: &mut Process, m: &mut dyn Machine, size: u64, list: u64) -> KResult<i64> {
    let size = size as u32 as i32;
    if size < 0 || size as u64 > NGROUPS_MAX {
        return Err(Errno::EINVAL);
    }
    if !state(p).privileged() {
        return Err(Errno::EPERM);
    }
    let mut bytes = alloc::vec![0; size as usize * 4];
    if !bytes.is_empty() {
        p.vm.copy_from_user(m.pages(), list, &mut bytes)?;
    }
    let groups: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Sorted as Linux keeps them (getgroups returns them in order).
    state(p).groups = crate::small::sorted(groups);
    Ok(0)
}

fn setpgid(pid: u64, pgid: u64) -> KResult<i64> {
    if (pgid as u32 as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    if !is_self(pid) {
        return Err(Errno::ESRCH);
    }
    // A session leader cannot change its process group.
    Err(Errno::EPERM)
}

/// `sethostname`/`setdomainname`: at most 64 bytes (`EINVAL`), root only (`EPERM`).
fn set_uts_name(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    len: u64,
    domain: bool,
) -> KResult<i64> {
    if !state(p).privileged() {
        return Err(Errno::EPERM);
    }
    if len > (UTS_FIELD - 1) as u64 {
        return Err(Errno::EINVAL);
    }
    let mut name = alloc::vec![0; len as usize];
    if !name.is_empty() {
        p.vm.copy_from_user(m.pages(), addr, &mut name)?;
    }
    if domain {
        state(p).domainname = name;
    } else {
        state(p).nodename = Some(name);
    }
    Ok(0)
}

/// Applies the limits other parts of the kernel enforce (the descriptor table's).
fn limits_changed(p: &mut Process) {
    let nofile = state(p)
        .limit(RLIMIT_NOFILE as u64)
        .map_or(MAX_FDS as u64, |l| l.cur);
    p.files.set_limit(nofile);
}

fn getrlimit(p: &mut Process, m: &mut dyn Machine, resource: u64, rlim: u64) -> KResult<i64> {
    let l = state(p).limit(resource as u32 as u64)?;
    write_user(p, m, rlim, &l.to_bytes())?;
    Ok(0)
}

fn setrlimit(p: &mut Process, m: &mut dyn Machine, resource: u64, rlim: u64) -> KResult<i64> {
    let new = Rlimit::from_bytes(&read_user(p, m, rlim)?);
    state(p).set_limit(resource as u32 as u64, new)?;
    limits_changed(p);
    Ok(0)
}

fn prlimit64(
    p: &mut Process,
    m: &mut dyn Machine,
    pid: u64,
    resource: u64,
    new: u64,
    old: u64,
) -> KResult<i64> {
    let resource = resource as u32 as u64;
    let new = if new != 0 {
        Some(Rlimit::from_bytes(&read_user(p, m, new)?))
    } else {
        None
    };
    if !is_self(pid) {
        return Err(Errno::ESRCH);
    }
    let previous = match new {
        Some(new) => state(p).set_limit(resource, new)?,
        None => state(p).limit(resource)?,
    };
    limits_changed(p);
    if old != 0 {
        write_user(p, m, old, &previous.to_bytes())?;
    }
    Ok(0)
}

/// Bytes of a CPU mask (`cpumask_size()` with up to 64 CPUs: one `long`).
const CPUMASK_SIZE: u64 = 8;

/// The mask of the machine's CPUs (`0..n`).
fn all_cpus(m: &dyn Machine) -> u64 {
    match m.cpus() {
        n if n >= 64 => u64::MAX,
        n => (1u64 << n.max(1)) - 1,
    }
}

fn sched_getaffinity(
    p: &mut Process,
    m: &mut dyn Machine,
    pid: u64,
    len: u64,
    mask: u64,
) -> KResult<i64> {
    let len = len as u32 as u64;
    if len == 0 || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    if !is_own_thread(m, pid) {
        return Err(Errno::ESRCH);
    }
    let cpus = all_cpus(m);
    write_user(p, m, mask, &cpus.to_le_bytes())?;
    Ok(CPUMASK_SIZE as i64)
}

/// Accepts any mask that includes one of the machine's CPUs (`EINVAL` otherwise); threads
/// keep running on any CPU.
fn sched_setaffinity(
    p: &mut Process,
    m: &mut dyn Machine,
    pid: u64,
    len: u64,
    mask: u64,
) -> KResult<i64> {
    let len = (len as u32 as u64).min(CPUMASK_SIZE) as usize;
    let mut bytes = [0u8; 8];
    if len > 0 {
        p.vm.copy_from_user(m.pages(), mask, &mut bytes[..len])?;
    }
    if !is_own_thread(m, pid) {
        return Err(Errno::ESRCH);
    }
    if u64::from_le_bytes(bytes) & all_cpus(m) == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

fn sched_pid(m: &dyn Machine, pid: u64) -> KResult<()> {
    if (pid as u32 as i32) < 0 {
        Err(Errno::EINVAL)
    } else if is_own_thread(m, pid) {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

/// (min, max) static priority of a scheduling policy.
fn priority_range(policy: u64) -> KResult<(i64, i64)> {
    match policy as u32 {
        // SCHED_FIFO, SCHED_RR.
        1 | 2 => Ok((1, 99)),
        // SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE.
        0 | 3 | 5 | 6 => Ok((0, 0)),
        _ => Err(Errno::EINVAL),
    }
}

fn get_robust_list(
    p: &mut Process,
    m: &mut dyn Machine,
    pid: u64,
    head_ptr: u64,
    len_ptr: u64,
) -> KResult<i64> {
    if !is_self(pid) {
        return Err(Errno::ESRCH);
    }
    let head = state(p).robust_list;
    write_user(p, m, len_ptr, &ROBUST_LIST_HEAD_SIZE.to_le_bytes())?;
    write_user(p, m, head_ptr, &head.to_le_bytes())?;
    Ok(0)
}

fn prctl(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<i64> {
    let option = a[0] as u32 as u64;
    match option {
        PR_SET_PDEATHSIG => {
            if a[1] > NSIG as u64 {
                return Err(Errno::EINVAL);
            }
            state(p).pdeathsig = a[1] as u32;
            Ok(0)
        }
        PR_GET_PDEATHSIG => {
            let sig = state(p).pdeathsig;
            write_user(p, m, a[1], &sig.to_le_bytes())?;
            Ok(0)
        }
        PR_GET_DUMPABLE => Ok(state(p).dumpable as i64),
        PR_SET_DUMPABLE => {
            if a[1] > 1 {
                return Err(Errno::EINVAL);
            }
            state(p).dumpable = a[1];
            Ok(0)
        }
        PR_SET_NAME => {
            // Up to 15 bytes, stopping at a NUL, like strncpy_from_user.
            let mut name = Vec::new();
            while name.len() < COMM_MAX {
                let [b] = read_user::<1>(p, m, a[1] + name.len() as u64)?;
                if b == 0 {
                    break;
                }
                name.push(b);
            }
            p.proc.names.set(m.thread().tid, &name);
            Ok(0)
        }
        PR_GET_NAME => {
            let comm = p.proc.thread_comm(m.thread().tid, &p.exe_path);
            let mut b = [0u8; 16];
            b[..comm.len()].copy_from_slice(&comm);
            write_user(p, m, a[1], &b)?;
            Ok(0)
        }
        PR_GET_SECCOMP => Ok(0),
        PR_GET_KEEPCAPS => Ok(state(p).keep_caps as i64),
        PR_SET_KEEPCAPS => {
            if a[1] > 1 {
                return Err(Errno::EINVAL);
            }
            state(p).keep_caps = a[1] == 1;
            Ok(0)
        }
        // Recorded and reported; timers here expire on time whatever the slack.
        PR_SET_TIMERSLACK => {
            state(p).timer_slack = a[1];
            Ok(0)
        }
        PR_GET_TIMERSLACK => Ok(match state(p).timer_slack {
            0 => TIMERSLACK_DEFAULT,
            n => n,
        } as i64),
        PR_SET_CHILD_SUBREAPER => {
            state(p).subreaper = a[1] != 0;
            Ok(0)
        }
        PR_GET_CHILD_SUBREAPER => {
            let v = state(p).subreaper as u32;
            write_user(p, m, a[1], &v.to_le_bytes())?;
            Ok(0)
        }
        PR_CAPBSET_READ => {
            if a[1] > CAP_LAST_CAP {
                Err(Errno::EINVAL)
            } else {
                Ok(1)
            }
        }
        PR_SET_NO_NEW_PRIVS => {
            if a[1] != 1 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            state(p).no_new_privs = true;
            Ok(0)
        }
        PR_GET_NO_NEW_PRIVS => {
            if a[1] != 0 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(state(p).no_new_privs as i64)
        }
        PR_GET_TID_ADDRESS => {
            let addr = m.thread().clear_child_tid;
            write_user(p, m, a[1], &addr.to_le_bytes())?;
            Ok(0)
        }
        _ => {
            if state(p).prctl_logged.insert(option) {
                m.log(format_args!("prctl option {option} not supported: EINVAL"));
            }
            Err(Errno::EINVAL)
        }
    }
}

fn arch_prctl(p: &mut Process, m: &mut dyn Machine, code: u64, addr: u64) -> KResult<i64> {
    match code as u32 as u64 {
        ARCH_SET_FS | ARCH_SET_GS if addr >= TASK_SIZE_MAX => Err(Errno::EPERM),
        ARCH_SET_FS => {
            m.thread().fs_base = addr;
            Ok(0)
        }
        ARCH_SET_GS => {
            m.thread().gs_base = addr;
            Ok(0)
        }
        ARCH_GET_FS => {
            let v = m.thread().fs_base;
            write_user(p, m, addr, &v.to_le_bytes()).map(|()| 0)
        }
        ARCH_GET_GS => {
            let v = m.thread().gs_base;
            write_user(p, m, addr, &v.to_le_bytes()).map(|()| 0)
        }
        // CPUID is always allowed; the CPU cannot be made to fault on it.
        ARCH_GET_CPUID => Ok(1),
        ARCH_SET_CPUID => Err(Errno::ENODEV),
        _ => Err(Errno::EINVAL),
    }
}

/// Checks `getrandom` flags: only `GRND_NONBLOCK`, `GRND_RANDOM`, `GRND_INSECURE`, and not
/// `GRND_RANDOM` with `GRND_INSECURE`.
pub fn getrandom_flags_valid(flags: u64) -> bool {
    let flags = flags as u32 as u64;
    flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) == 0
        && flags & (GRND_RANDOM | GRND_INSECURE) != GRND_RANDOM | GRND_INSECURE
}

/// Fills the buffer from the machine's entropy source, which never blocks. A fault after
/// some bytes returns the count written so far, as Linux does.
fn getrandom(p: &mut Process, m: &mut dyn Machine, buf: u64, len: u64, flags: u64) -> KResult<i64> {
    if !getrandom_flags_valid(flags) {
        return Err(Errno::EINVAL);
    }
    let len = len.min(MAX_RW_COUNT);
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        m.fill_random(&mut chunk[..n]);
        if let Err(e) = write_user(p, m, buf + done, &chunk[..n]) {
            if done == 0 {
                return Err(e);
            }
            break;
        }
        done += n as u64;
    }
    chunk.fill(0);
    Ok(done as i64)
}

fn kill(p: &mut Process, m: &mut dyn Machine, pid: u64, sig: u64) -> Outcome {
    let pid = pid as u32 as i32;
    let target = match pid {
        0 => true,
        // Every process but init and the caller: there is none.
        -1 => false,
        _ if pid > 0 => i64::from(pid) == PID,
        i32::MIN => false,
        _ => i64::from(-pid) == PID,
    };
    if !target {
        return ret(Err(Errno::ESRCH));
    }
    send_self(p, m, sig)
}

/// Checks `sig` (an `int`): `EINVAL` outside 0 to 64; `None` for 0 (only checks).
fn signal_arg(sig: u64) -> KResult<Option<u32>> {
    let sig = sig as u32;
    if sig > NSIG {
        return Err(Errno::EINVAL);
    }
    Ok((sig != 0).then_some(sig))
}

fn fate_outcome(fate: Fate) -> Outcome {
    match fate {
        Fate::Killed(s) => Outcome::Killed(s),
        Fate::Pending | Fate::Discarded | Fate::Queued(_) => Outcome::Return(0),
    }
}

/// Sends `sig` to the program (process-directed: a thread that does not block it takes it).
fn send_self(p: &mut Process, m: &mut dyn Machine, sig: u64) -> Outcome {
    match signal_arg(sig) {
        Err(e) => ret(Err(e)),
        Ok(None) => Outcome::Return(0),
        Ok(Some(sig)) => fate_outcome(p.signals.send(m, sig)),
    }
}

/// `tkill(tid, sig)` (`tgid` `None`) and `tgkill(tgid, tid, sig)`: to one thread.
fn tgkill(p: &mut Process, m: &mut dyn Machine, tgid: Option<u64>, tid: u64, sig: u64) -> Outcome {
    let tid = tid as u32 as i32;
    let tgid = tgid.map(|g| g as u32 as i32);
    if tid <= 0 || tgid.is_some_and(|g| g <= 0) {
        return ret(Err(Errno::EINVAL));
    }
    if tgid.is_some_and(|g| i64::from(g) != PID) || m.thread_of(tid as u32).is_none() {
        return ret(Err(Errno::ESRCH));
    }
    let sig = match signal_arg(sig) {
        Err(e) => return ret(Err(e)),
        Ok(None) => return Outcome::Return(0),
        Ok(Some(s)) => s,
    };
    let info = crate::sigframe::SigInfo {
        code: crate::syscall::signal::send::SI_TKILL,
        ..crate::syscall::signal::send::user_info(sig)
    };
    match p.signals.send_thread(m, tid as u32, info) {
        Some(f) => fate_outcome(f),
        None => ret(Err(Errno::ESRCH)),
    }
}

fn getcpu(p: &mut Process, m: &mut dyn Machine, cpu: u64, node: u64) -> KResult<i64> {
    if cpu != 0 {
        let this = m.cpu() as u32;
        write_user(p, m, cpu, &this.to_le_bytes())?;
    }
    if node != 0 {
        write_user(p, m, node, &0u32.to_le_bytes())?;
    }
    Ok(0)
}

/// `times`: the process's user and system time in `USER_HZ` ticks (children have used
/// nothing); the return value is the tick count since boot.
fn times(p: &mut Process, m: &mut dyn Machine, buf: u64) -> KResult<i64> {
    let tick = NSEC_PER_SEC / USER_HZ;
    let ticks = m.since_boot_ns() / tick;
    if buf != 0 {
        let cpu = m.cpu_time(None).unwrap_or_default();
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(cpu.user / tick).to_le_bytes());
        b[8..16].copy_from_slice(&(cpu.system / tick).to_le_bytes());
        write_user(p, m, buf, &b)?;
    }
    Ok(ticks as i64)
}

/// `getrusage`: the process's or the calling thread's user and system time; children have
/// used nothing.
fn getrusage(p: &mut Process, m: &mut dyn Machine, who: u64, usage: u64) -> KResult<i64> {
    // ru_maxrss: the resident size now (the kernel keeps no peak).
    let rss = |p: &Process, m: &mut dyn Machine| crate::procfs::resident(p, m) / 1024;
    let b = match who as u32 as i32 {
        // RUSAGE_SELF.
        0 => rusage_bytes(m.cpu_time(None).unwrap_or_default(), rss(p, m)),
        // RUSAGE_THREAD.
        1 => {
            let me = m.running().and_then(|t| m.cpu_time(Some(t)));
            rusage_bytes(me.unwrap_or_default(), rss(p, m))
        }
        // RUSAGE_CHILDREN.
        -1 => rusage_bytes(CpuTime::default(), 0),
        _ => return Err(Errno::EINVAL),
    };
    write_user(p, m, usage, &b)?;
    Ok(0)
}

/// `wait4`: there are never children (`ECHILD`) once the options are valid.
fn wait4(pid: u64, options: u64) -> KResult<i64> {
    // WNOHANG, WUNTRACED, WCONTINUED, __WNOTHREAD, __WALL, __WCLONE.
    const VALID: u32 = 1 | 2 | 8 | 0x2000_0000 | 0x4000_0000 | 0x8000_0000;
    if options as u32 & !VALID != 0 {
        return Err(Errno::EINVAL);
    }
    if pid as u32 as i32 == i32::MIN {
        return Err(Errno::ESRCH);
    }
    Err(Errno::ECHILD)
}

/// `waitid`: there are never children (`ECHILD`) once the id type and options are valid.
fn waitid(idtype: u64, options: u64) -> KResult<i64> {
    // WNOHANG, WSTOPPED, WEXITED, WCONTINUED, WNOWAIT, __WNOTHREAD, __WALL, __WCLONE.
    const VALID: u32 = 1 | 2 | 4 | 8 | 0x0100_0000 | 0x2000_0000 | 0x4000_0000 | 0x8000_0000;
    let options = options as u32;
    if options & !VALID != 0 || options & (2 | 4 | 8) == 0 {
        return Err(Errno::EINVAL);
    }
    // P_ALL, P_PID, P_PGID, P_PIDFD.
    if idtype as u32 > 3 {
        return Err(Errno::EINVAL);
    }
    Err(Errno::ECHILD)
}

pub mod caps;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ThreadState;
    use crate::syscall::signal::{SigAction, SIGABRT, SIGCHLD, SIGTERM, SIGUSR1, SIG_IGN};
    use crate::syscall::testutil::*;
    use crate::testing::FakeMachine;

    const EINVAL: i64 = -22;
    const EPERM: i64 = -1;
    const ESRCH: i64 = -3;
    const EFAULT: i64 = -14;

    #[test]
    fn exits() {
        let (mut p, mut m, _) = setup();
        assert_eq!(
            outcome(&mut p, &mut m, sysno::EXIT_GROUP, &[300]),
            Outcome::Exit(44)
        );
        assert_eq!(outcome(&mut p, &mut m, sysno::EXIT, &[3]), Outcome::Exit(3));
    }

    #[test]
    fn ids_of_root() {
        let (mut p, mut m, buf) = setup();
        for nr in [sysno::GETPID, sysno::GETTID, sysno::GETPGRP] {
            assert_eq!(call(&mut p, &mut m, nr, &[]), 1);
        }
        for nr in [
            sysno::GETPPID,
            sysno::GETUID,
            sysno::GETEUID,
            sysno::GETGID,
            sysno::GETEGID,
        ] {
            assert_eq!(call(&mut p, &mut m, nr, &[]), 0);
        }
        poke(&mut p, &mut m, buf, &[0xff; 12]);
        let r = call(&mut p, &mut m, sysno::GETRESUID, &[buf, buf + 4, buf + 8]);
        assert_eq!(r, 0);
        assert_eq!(peek(&mut p, &mut m, buf, 12), [0; 12]);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETRESGID, &[buf, buf + 4, UNMAPPED]),
            EFAULT
        );
        assert_eq!(call(&mut p, &mut m, sysno::GETPGID, &[0]), 1);
        assert_eq!(call(&mut p, &mut m, sysno::GETSID, &[1]), 1);
        assert_eq!(call(&mut p, &mut m, sysno::GETSID, &[2]), ESRCH);
        assert_eq!(call(&mut p, &mut m, sysno::SETSID, &[]), EPERM);
        assert_eq!(call(&mut p, &mut m, sysno::SETPGID, &[0, 0]), EPERM);
    }

    #[test]
    fn dropping_root() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::SETGID, &[100]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::GETEGID, &[]), 100);
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::SETRESUID,
                &[u64::MAX, 1000, u64::MAX]
            ),
            0
        );
        assert_eq!(call(&mut p, &mut m, sysno::GETEUID, &[]), 1000);
        assert_eq!(call(&mut p, &mut m, sysno::GETUID, &[]), 0);
        // Unprivileged now: groups and hard limits are out of reach, euid 0 is not.
        assert_eq!(call(&mut p, &mut m, sysno::SETGROUPS, &[0, 0]), EPERM);
        assert_eq!(call(&mut p, &mut m, sysno::SETHOSTNAME, &[buf, 1]), EPERM);
        assert_eq!(call(&mut p, &mut m, sysno::SETREUID, &[u64::MAX, 0]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::SETUID, &[1000]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::SETUID, &[0]), EPERM);
        assert_eq!(call(&mut p, &mut m, sysno::SETFSUID, &[u64::MAX]), 1000);
        call(&mut p, &mut m, sysno::GETRESUID, &[buf, buf + 4, buf + 8]);
        assert_eq!(
            peek(&mut p, &mut m, buf, 12),
            [232, 3, 0, 0, 232, 3, 0, 0, 232, 3, 0, 0]
        );
    }

    #[test]
    fn groups() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::GETGROUPS, &[0, 0]), 0);
        poke(&mut p, &mut m, buf, &[7, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(call(&mut p, &mut m, sysno::SETGROUPS, &[2, buf]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::GETGROUPS, &[0, 0]), 2);
        assert_eq!(call(&mut p, &mut m, sysno::GETGROUPS, &[1, buf]), EINVAL);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETGROUPS, &[u64::MAX, buf]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::GETGROUPS, &[8, buf + 16]), 2);
        assert_eq!(peek(&mut p, &mut m, buf + 16, 8), [3, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(
            call(&mut p, &mut m, sysno::SETGROUPS, &[65537, buf]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETGROUPS, &[1, UNMAPPED]),
            EFAULT
        );
    }

    #[test]
    fn uname_and_hostname() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::UNAME, &[buf]), 0);
        let b = peek(&mut p, &mut m, buf, 390);
        assert_eq!(&b[..6], b"Linux\0");
        assert_eq!(&b[65..70], b"kiln\0");
        assert_eq!(&b[130..141], b"6.1.0-kiln\0");
        assert_eq!(call(&mut p, &mut m, sysno::UNAME, &[UNMAPPED]), EFAULT);

        poke(&mut p, &mut m, buf + 1000, b"web-1");
        assert_eq!(
            call(&mut p, &mut m, sysno::SETHOSTNAME, &[buf + 1000, 5]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETHOSTNAME, &[buf + 1000, 65]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETDOMAINNAME, &[buf + 1000, 3]),
            0
        );
        call(&mut p, &mut m, sysno::UNAME, &[buf]);
        let b = peek(&mut p, &mut m, buf, 390);
        assert_eq!(&b[65..71], b"web-1\0");
        assert_eq!(&b[325..329], b"web\0");

        let (mut p, mut m, buf) = setup_with(&[("etc/hostname", b"  box.example \nextra\n")]);
        call(&mut p, &mut m, sysno::UNAME, &[buf]);
        let b = peek(&mut p, &mut m, buf, 390);
        assert_eq!(&b[65..77], b"box.example\0");
    }

    #[test]
    fn sysinfo_call() {
        let (mut p, mut m, buf) = setup();
        m.now = kiln_abi::vdso::MONOTONIC_AT_BOOT_NS + 61 * NSEC_PER_SEC;
        m.ram = (1 << 30, 1 << 29);
        assert_eq!(call(&mut p, &mut m, sysno::SYSINFO, &[buf]), 0);
        assert_eq!(peek64(&mut p, &mut m, buf), 61);
        assert_eq!(peek64(&mut p, &mut m, buf + 32), 1 << 30);
        assert_eq!(peek64(&mut p, &mut m, buf + 40), 1 << 29);
        assert_eq!(call(&mut p, &mut m, sysno::SYSINFO, &[UNMAPPED]), EFAULT);
    }

    #[test]
    fn rlimit_calls() {
        let (mut p, mut m, buf) = setup();
        let stack = RLIMIT_STACK as u64;
        let nofile = RLIMIT_NOFILE as u64;
        assert_eq!(
            call(&mut p, &mut m, sysno::PRLIMIT64, &[0, stack, 0, buf]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf), 8 << 20);
        assert_eq!(peek64(&mut p, &mut m, buf + 8), RLIM_INFINITY);
        poke(
            &mut p,
            &mut m,
            buf + 16,
            &Rlimit {
                cur: 4096,
                max: 4096,
            }
            .to_bytes(),
        );
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::PRLIMIT64,
                &[1, nofile, buf + 16, buf]
            ),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf), 1024);
        assert_eq!(call(&mut p, &mut m, sysno::GETRLIMIT, &[nofile, buf]), 0);
        assert_eq!(peek64(&mut p, &mut m, buf), 4096);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRLIMIT64, &[2, nofile, 0, buf]),
            ESRCH
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRLIMIT64, &[0, 16, 0, buf]),
            EINVAL
        );
        poke(
            &mut p,
            &mut m,
            buf + 16,
            &Rlimit { cur: 10, max: 5 }.to_bytes(),
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETRLIMIT, &[nofile, buf + 16]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETRLIMIT, &[nofile, UNMAPPED]),
            EFAULT
        );
        poke(
            &mut p,
            &mut m,
            buf + 16,
            &Rlimit { cur: 100, max: 200 }.to_bytes(),
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETRLIMIT, &[nofile, buf + 16]),
            0
        );
        assert_eq!(p.proc.limit(nofile), Ok(Rlimit { cur: 100, max: 200 }));
        assert_eq!(call(&mut p, &mut m, sysno::GETRLIMIT, &[99, buf]), EINVAL);
    }

    #[test]
    fn affinity_and_scheduling() {
        let (mut p, mut m, buf) = setup();
        poke(&mut p, &mut m, buf, &[0xff; 16]);
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[0, 128, buf]),
            8
        );
        assert_eq!(
            peek(&mut p, &mut m, buf, 16),
            [1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[0, 8, buf]),
            8
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[0, 4, buf]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[0, 0, buf]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[7, 8, buf]),
            ESRCH
        );
        // Another thread, by its id.
        m.others.insert(
            7,
            ThreadState {
                tid: 7,
                ..ThreadState::default()
            },
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[7, 8, buf]),
            8
        );
        m.others.remove(&7);
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[0, 8, UNMAPPED]),
            EFAULT
        );
        poke(&mut p, &mut m, buf, &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_SETAFFINITY, &[0, 8, buf]),
            0
        );
        poke(&mut p, &mut m, buf, &[2]);
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_SETAFFINITY, &[1, 8, buf]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_SETAFFINITY, &[0, 0, buf]),
            EINVAL
        );
        // Two CPUs: both in the mask; a mask of the second alone is accepted.
        m.cpus = 2;
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GETAFFINITY, &[0, 8, buf]),
            8
        );
        assert_eq!(peek(&mut p, &mut m, buf, 8), [3, 0, 0, 0, 0, 0, 0, 0]);
        poke(&mut p, &mut m, buf, &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_SETAFFINITY, &[0, 8, buf]),
            0
        );
        poke(&mut p, &mut m, buf, &[4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_SETAFFINITY, &[0, 8, buf]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::SCHED_GETSCHEDULER, &[0]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::SCHED_GETSCHEDULER, &[3]), ESRCH);
        poke(&mut p, &mut m, buf, &[9; 4]);
        assert_eq!(call(&mut p, &mut m, sysno::SCHED_GETPARAM, &[0, buf]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 4), [0; 4]);
        assert_eq!(call(&mut p, &mut m, sysno::SCHED_GETPARAM, &[0, 0]), EINVAL);
        assert_eq!(
            call(&mut p, &mut m, sysno::SCHED_GET_PRIORITY_MAX, &[1]),
            99
        );
        assert_eq!(call(&mut p, &mut m, sysno::SCHED_GET_PRIORITY_MIN, &[0]), 0);
        poke(&mut p, &mut m, buf, &[9; 8]);
        assert_eq!(call(&mut p, &mut m, sysno::GETCPU, &[buf, buf + 4, 0]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 8), [0; 8]);
        m.cpu = 1;
        assert_eq!(call(&mut p, &mut m, sysno::GETCPU, &[buf, 0, 0]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 8), [1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn thread_bookkeeping() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::SET_TID_ADDRESS, &[0x1234]), 1);
        assert_eq!(m.thread.clear_child_tid, 0x1234);
        assert_eq!(
            call(&mut p, &mut m, sysno::SET_ROBUST_LIST, &[0x5000, 16]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SET_ROBUST_LIST, &[0x5000, 24]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::GET_ROBUST_LIST, &[0, buf, buf + 8]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf), 0x5000);
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 24);
        assert_eq!(
            call(&mut p, &mut m, sysno::GET_ROBUST_LIST, &[9, buf, buf + 8]),
            ESRCH
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_TID_ADDRESS, buf]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf), 0x1234);
    }

    #[test]
    fn prctl_options() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_NAME, buf]), 0);
        assert_eq!(&peek(&mut p, &mut m, buf, 16)[..5], b"prog\0");
        poke(&mut p, &mut m, buf, b"tokio-runtime-worker\0");
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_NAME, buf]), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_NAME, buf + 32]),
            0
        );
        assert_eq!(peek(&mut p, &mut m, buf + 32, 16), b"tokio-runtime-w\0");
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_NAME, UNMAPPED]),
            EFAULT
        );
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_DUMPABLE]), 1);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_DUMPABLE, 2]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_DUMPABLE, 0]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_DUMPABLE]), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_PDEATHSIG, 65]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_PDEATHSIG, 9]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_PDEATHSIG, buf]),
            0
        );
        assert_eq!(peek(&mut p, &mut m, buf, 4), [9, 0, 0, 0]);
        // Keep-caps (ping sets it before dropping capabilities), timer slack, subreaper.
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_KEEPCAPS]), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_KEEPCAPS, 2]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_KEEPCAPS, 1]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_KEEPCAPS]), 1);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_TIMERSLACK]),
            50_000
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_TIMERSLACK, 1]),
            0
        );
        assert_eq!(call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_TIMERSLACK]), 1);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_CHILD_SUBREAPER, 1]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_CHILD_SUBREAPER, buf]),
            0
        );
        assert_eq!(peek(&mut p, &mut m, buf, 4), [1, 0, 0, 0]);
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_NO_NEW_PRIVS, 1]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_GET_NO_NEW_PRIVS]),
            1
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_SET_NO_NEW_PRIVS, 2]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_CAPBSET_READ, 21]),
            1
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[PR_CAPBSET_READ, 41]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[0x5356_4d41, 0]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::PRCTL, &[0x5356_4d41, 0]),
            EINVAL
        );
        assert_eq!(m.log, ["prctl option 1398164801 not supported: EINVAL"]);
    }

    #[test]
    fn arch_prctl_bases() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::ARCH_PRCTL,
                &[ARCH_SET_FS, 0x7f00_1000]
            ),
            0
        );
        assert_eq!(m.thread.fs_base, 0x7f00_1000);
        assert_eq!(
            call(&mut p, &mut m, sysno::ARCH_PRCTL, &[ARCH_SET_GS, 0x2000]),
            0
        );
        assert_eq!(m.thread.gs_base, 0x2000);
        assert_eq!(
            call(&mut p, &mut m, sysno::ARCH_PRCTL, &[ARCH_GET_FS, buf]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf), 0x7f00_1000);
        assert_eq!(
            call(&mut p, &mut m, sysno::ARCH_PRCTL, &[ARCH_GET_GS, buf]),
            0
        );
        assert_eq!(peek64(&mut p, &mut m, buf), 0x2000);
        assert_eq!(
            call(&mut p, &mut m, sysno::ARCH_PRCTL, &[ARCH_GET_GS, UNMAPPED]),
            EFAULT
        );
        for bad in [TASK_SIZE_MAX, 0x8000_0000_0000, 0xffff_8000_0000_0000] {
            assert_eq!(
                call(&mut p, &mut m, sysno::ARCH_PRCTL, &[ARCH_SET_FS, bad]),
                EPERM
            );
        }
        assert_eq!(m.thread.fs_base, 0x7f00_1000);
        assert_eq!(
            call(&mut p, &mut m, sysno::ARCH_PRCTL, &[ARCH_GET_CPUID, 0]),
            1
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::ARCH_PRCTL, &[ARCH_SET_CPUID, 0]),
            -19
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::ARCH_PRCTL, &[0x1005, 0]),
            EINVAL
        );
    }

    #[test]
    fn getrandom_call() {
        let (mut p, mut m, buf) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::GETRANDOM, &[buf, 300, 0]), 300);
        let b = peek(&mut p, &mut m, buf, 301);
        assert_eq!(b[0], 1);
        assert_eq!(b[255], 0);
        assert_eq!(b[256], 1);
        assert_eq!(b[299], 44);
        assert_eq!(b[300], 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETRANDOM, &[buf, 16, GRND_NONBLOCK]),
            16
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::GETRANDOM, &[buf, 16, 8]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::GETRANDOM, &[buf, 16, 6]),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::GETRANDOM, &[buf, 0, 0]), 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETRANDOM, &[UNMAPPED, 16, 0]),
            EFAULT
        );
        // The buffer runs off the end of the mapping: the bytes before it are returned.
        let end = buf + BUF_LEN;
        assert_eq!(
            call(&mut p, &mut m, sysno::GETRANDOM, &[end - 512, 1000, 0]),
            512
        );
    }

    #[test]
    fn kill_self() {
        let (mut p, mut m, _) = setup();
        let term = SIGTERM as u64;
        assert_eq!(call(&mut p, &mut m, sysno::KILL, &[1, 0]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::KILL, &[2, term]), ESRCH);
        assert_eq!(call(&mut p, &mut m, sysno::KILL, &[u64::MAX, term]), ESRCH);
        assert_eq!(
            call(&mut p, &mut m, sysno::KILL, &[(-5i64) as u64, term]),
            ESRCH
        );
        assert_eq!(call(&mut p, &mut m, sysno::KILL, &[1, 65]), EINVAL);
        assert_eq!(call(&mut p, &mut m, sysno::KILL, &[0, SIGCHLD as u64]), 0);
        assert_eq!(
            outcome(&mut p, &mut m, sysno::KILL, &[1, term]),
            Outcome::Killed(15)
        );
        assert_eq!(
            outcome(&mut p, &mut m, sysno::KILL, &[0, term]),
            Outcome::Killed(15)
        );
        // -1 is every process but init and the caller: none.
        assert_eq!(
            call(&mut p, &mut m, sysno::KILL, &[(-1i64) as u64, 9]),
            ESRCH
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::KILL, &[(-2i64) as u64, 9]),
            ESRCH
        );
        assert_eq!(
            outcome(&mut p, &mut m, sysno::KILL, &[1, 9]),
            Outcome::Killed(9)
        );
        p.signals
            .set_action(
                SIGTERM,
                SigAction {
                    handler: SIG_IGN,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(call(&mut p, &mut m, sysno::KILL, &[1, term]), 0);
    }

    #[test]
    fn abort_with_a_handler_still_ends_the_program() {
        let (mut p, mut m, buf) = setup();
        let act = SigAction {
            handler: 0x40_1000,
            ..Default::default()
        };
        poke(&mut p, &mut m, buf, &act.to_bytes());
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::RT_SIGACTION,
                &[SIGABRT as u64, buf, 0, 8]
            ),
            0
        );
        // The handler is queued to run; glibc's abort() then restores the default action
        // and raises again, which ends the program.
        assert_eq!(
            outcome(&mut p, &mut m, sysno::TGKILL, &[1, 1, SIGABRT as u64]),
            Outcome::Return(0)
        );
        assert_eq!(
            p.signals
                .next_queued(&mut m.thread.signals)
                .map(|q| q.1.signo),
            Some(SIGABRT as i32)
        );
        p.signals.reset_to_default(SIGABRT);
        assert_eq!(
            outcome(&mut p, &mut m, sysno::TKILL, &[1, SIGABRT as u64]),
            Outcome::Killed(6)
        );
        assert!(m.log.is_empty());
        assert_eq!(call(&mut p, &mut m, sysno::TKILL, &[2, 6]), ESRCH);
        assert_eq!(call(&mut p, &mut m, sysno::TKILL, &[0, 6]), EINVAL);
        assert_eq!(call(&mut p, &mut m, sysno::TGKILL, &[1, 2, 6]), ESRCH);
        assert_eq!(call(&mut p, &mut m, sysno::TGKILL, &[0, 1, 6]), EINVAL);
        assert_eq!(call(&mut p, &mut m, sysno::TGKILL, &[1, 1, 0]), 0);
    }

    #[test]
    fn blocked_kill_is_delivered_on_unblock() {
        let (mut p, mut m, buf) = setup();
        let usr1 = SIGUSR1 as u64;
        poke(&mut p, &mut m, buf, &(1u64 << (usr1 - 1)).to_le_bytes());
        assert_eq!(
            call(&mut p, &mut m, sysno::RT_SIGPROCMASK, &[0, buf, 0, 8]),
            0
        );
        assert_eq!(call(&mut p, &mut m, sysno::KILL, &[1, usr1]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::RT_SIGPENDING, &[buf + 8, 8]), 0);
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 1 << (usr1 - 1));
        assert_eq!(
            outcome(&mut p, &mut m, sysno::RT_SIGPROCMASK, &[1, buf, 0, 8]),
            Outcome::Killed(10)
        );
    }

    #[test]
    fn accounting() {
        let (mut p, mut m, buf) = setup();
        m.now = kiln_abi::vdso::MONOTONIC_AT_BOOT_NS + 2 * NSEC_PER_SEC + 500_000_000;
        // The thread used 1.2 s of user and 0.3 s of system time; the process twice that
        // (the fake machine's ended threads).
        m.cpu_time = CpuTime {
            user: 1_200_000_000,
            system: 300_000_000,
        };
        // times: ticks since boot; the process's user and system ticks, none for children.
        assert_eq!(call(&mut p, &mut m, sysno::TIMES, &[0]), 250);
        assert_eq!(call(&mut p, &mut m, sysno::TIMES, &[buf]), 250);
        assert_eq!(peek64(&mut p, &mut m, buf), 240);
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 60);
        assert_eq!(peek64(&mut p, &mut m, buf + 16), 0);
        assert_eq!(call(&mut p, &mut m, sysno::TIMES, &[UNMAPPED]), EFAULT);
        // RUSAGE_SELF: the process.
        assert_eq!(call(&mut p, &mut m, sysno::GETRUSAGE, &[0, buf]), 0);
        assert_eq!(peek64(&mut p, &mut m, buf), 2);
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 400_000);
        assert_eq!(peek64(&mut p, &mut m, buf + 16), 0);
        assert_eq!(peek64(&mut p, &mut m, buf + 24), 600_000);
        // RUSAGE_THREAD: the caller.
        assert_eq!(call(&mut p, &mut m, sysno::GETRUSAGE, &[1, buf]), 0);
        assert_eq!(peek64(&mut p, &mut m, buf), 1);
        assert_eq!(peek64(&mut p, &mut m, buf + 8), 200_000);
        assert_eq!(peek64(&mut p, &mut m, buf + 24), 300_000);
        // RUSAGE_CHILDREN: nothing.
        assert_eq!(call(&mut p, &mut m, sysno::GETRUSAGE, &[u64::MAX, buf]), 0);
        assert_eq!(peek64(&mut p, &mut m, buf), 0);
        assert_eq!(peek64(&mut p, &mut m, buf + 16), 0);
        assert_eq!(call(&mut p, &mut m, sysno::GETRUSAGE, &[2, buf]), EINVAL);
        assert_eq!(
            call(&mut p, &mut m, sysno::WAIT4, &[u64::MAX, 0, 0, 0]),
            -10
        );
        assert_eq!(call(&mut p, &mut m, sysno::WAITID, &[0, 0, 0, 4]), -10);
    }

    #[test]
    fn raising_nofile_lets_the_table_grow_past_1024() {
        let (mut p, mut m, buf) = setup();
        let dup_all = |p: &mut Process, m: &mut FakeMachine| loop {
            let fd = call(p, m, sysno::DUP, &[1]);
            if fd < 0 {
                return fd;
            }
        };
        assert_eq!(dup_all(&mut p, &mut m), -24, "EMFILE");
        assert_eq!(call(&mut p, &mut m, sysno::DUP, &[1]), -24);
        assert_eq!(call(&mut p, &mut m, sysno::DUP2, &[1, 1024]), -9);
        let set_nofile = |p: &mut Process, m: &mut FakeMachine, cur: u64| {
            poke(p, m, buf, &Rlimit { cur, max: 524_288 }.to_bytes());
            call(p, m, sysno::SETRLIMIT, &[RLIMIT_NOFILE as u64, buf])
        };
        // setrlimit(RLIMIT_NOFILE, {4096, 524288}): 3,072 more.
        assert_eq!(set_nofile(&mut p, &mut m, 4096), 0);
        assert_eq!(call(&mut p, &mut m, sysno::DUP, &[1]), 1024);
        assert_eq!(call(&mut p, &mut m, sysno::DUP2, &[1, 4095]), 4095);
        assert_eq!(dup_all(&mut p, &mut m), -24);
        assert_eq!(p.files.fds().count(), 4096);
        // Lowered again: the open ones stay, no new one.
        assert_eq!(set_nofile(&mut p, &mut m, 2048), 0);
        assert_eq!(call(&mut p, &mut m, sysno::CLOSE, &[3000]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::DUP, &[4095]), -24);
        assert_eq!(call(&mut p, &mut m, sysno::WRITE, &[4095, buf, 0]), 0);
    }

    #[test]
    fn limits_table() {
        let s = ProcState::default();
        assert_eq!(
            s.limit(RLIMIT_STACK as u64),
            Ok(Rlimit {
                cur: 8 << 20,
                max: RLIM_INFINITY
            })
        );
        assert_eq!(
            s.limit(RLIMIT_NOFILE as u64),
            Ok(Rlimit {
                cur: 1024,
                max: 524_288
            })
        );
        assert_eq!(s.limit(RLIMIT_AS as u64), Ok(Rlimit::INF));
        assert_eq!(s.limit(RLIMIT_CPU as u64), Ok(Rlimit::INF));
        assert_eq!(s.limit(RLIMIT_CORE as u64).unwrap().cur, 0);
        assert_eq!(s.limit(16), Err(Errno::EINVAL));
        assert_eq!(s.limit(u64::MAX), Err(Errno::EINVAL));
    }

    #[test]
    fn setting_limits() {
        let mut s = ProcState::default();
        let nofile = RLIMIT_NOFILE as u64;
        let old = s
            .set_limit(
                nofile,
                Rlimit {
                    cur: 4096,
                    max: 4096,
                },
            )
            .unwrap();
        assert_eq!(old.cur, 1024);
        assert_eq!(s.limit(nofile).unwrap().cur, 4096);
        assert_eq!(
            s.set_limit(nofile, Rlimit { cur: 10, max: 5 }),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            s.set_limit(
                nofile,
                Rlimit {
                    cur: 10,
                    max: NR_OPEN + 1
                }
            ),
            Err(Errno::EPERM)
        );
        assert_eq!(
            s.set_limit(16, Rlimit { cur: 0, max: 0 }),
            Err(Errno::EINVAL)
        );
        // Root may raise the hard limit; others may not.
        s.set_limit(RLIMIT_FSIZE as u64, Rlimit { cur: 10, max: 100 })
            .unwrap();
        s.set_limit(RLIMIT_FSIZE as u64, Rlimit { cur: 10, max: 200 })
            .unwrap();
        s.uid.effective = 1000;
        assert_eq!(
            s.set_limit(RLIMIT_FSIZE as u64, Rlimit { cur: 10, max: 300 }),
            Err(Errno::EPERM)
        );
        s.set_limit(RLIMIT_FSIZE as u64, Rlimit { cur: 10, max: 50 })
            .unwrap();
    }

    #[test]
    fn rlimit_bytes() {
        let l = Rlimit {
            cur: 1,
            max: u64::MAX,
        };
        let b = l.to_bytes();
        assert_eq!(&b[..8], &1u64.to_le_bytes());
        assert_eq!(Rlimit::from_bytes(&b), l);
    }

    #[test]
    fn setuid_rules() {
        let mut ids = Ids::default();
        assert_eq!(ids.set(true, u32::MAX), Err(Errno::EINVAL));
        ids.set(true, 1000).unwrap();
        assert_eq!(
            ids,
            Ids {
                real: 1000,
                effective: 1000,
                saved: 1000,
                fs: 1000
            }
        );
        assert_eq!(ids.set(false, 0), Err(Errno::EPERM));
        assert_eq!(ids.set(false, 1000), Ok(()));
    }

    #[test]
    fn seteuid_and_back() {
        // seteuid(1000) as root is setresuid(-1, 1000, -1): saved stays 0.
        let mut ids = Ids::default();
        ids.set_res(true, NO_ID, 1000, NO_ID).unwrap();
        assert_eq!(
            (ids.real, ids.effective, ids.saved, ids.fs),
            (0, 1000, 0, 1000)
        );
        ids.set_res(false, NO_ID, 0, NO_ID).unwrap();
        assert_eq!(ids.effective, 0);
        assert_eq!(ids.set_res(false, 5, NO_ID, NO_ID), Err(Errno::EPERM));
    }

    #[test]
    fn setres_unprivileged() {
        let mut ids = Ids {
            real: 1,
            effective: 2,
            saved: 3,
            fs: 2,
        };
        assert_eq!(ids.set_res(false, 4, NO_ID, NO_ID), Err(Errno::EPERM));
        ids.set_res(false, 3, 1, 2).unwrap();
        assert_eq!((ids.real, ids.effective, ids.saved, ids.fs), (3, 1, 2, 1));
    }

    #[test]
    fn setre_rules() {
        let mut ids = Ids::default();
        // setreuid(-1, 1000) as root: euid differs from ruid, so saved follows.
        ids.set_re(true, NO_ID, 1000).unwrap();
        assert_eq!(
            (ids.real, ids.effective, ids.saved, ids.fs),
            (0, 1000, 1000, 1000)
        );
        // Unprivileged: may swap to the real id.
        ids.set_re(false, NO_ID, 0).unwrap();
        assert_eq!(ids.effective, 0);
        let mut ids = Ids {
            real: 1,
            effective: 2,
            saved: 3,
            fs: 2,
        };
        assert_eq!(ids.set_re(false, 3, NO_ID), Err(Errno::EPERM));
        assert_eq!(ids.set_re(false, NO_ID, 9), Err(Errno::EPERM));
        ids.set_re(false, 2, 3).unwrap();
        assert_eq!((ids.real, ids.effective, ids.saved, ids.fs), (2, 3, 3, 3));
    }

    #[test]
    fn setfs_rules() {
        let mut ids = Ids {
            real: 1,
            effective: 2,
            saved: 3,
            fs: 2,
        };
        assert_eq!(ids.set_fs(false, 9), 2);
        assert_eq!(ids.fs, 2);
        assert_eq!(ids.set_fs(false, 3), 2);
        assert_eq!(ids.set_fs(false, NO_ID), 3);
        assert_eq!(ids.set_fs(true, 9), 3);
        assert_eq!(ids.fs, 9);
    }

    #[test]
    fn uname_layout() {
        let b = utsname(b"box", b"(none)");
        assert_eq!(&b[..6], b"Linux\0");
        assert_eq!(&b[65..69], b"box\0");
        assert_eq!(&b[130..141], b"6.1.0-kiln\0");
        assert_eq!(&b[195..207], b"#1 SMP Kiln\0");
        assert_eq!(&b[260..267], b"x86_64\0");
        assert_eq!(&b[325..332], b"(none)\0");
        assert_eq!(b.len(), 390);
    }

    #[test]
    fn sysinfo_layout() {
        let b = sysinfo_bytes(1_500_000_000, 1 << 30, 1 << 29);
        assert_eq!(&b[0..8], &2u64.to_le_bytes());
        assert_eq!(&b[32..40], &(1u64 << 30).to_le_bytes());
        assert_eq!(&b[40..48], &(1u64 << 29).to_le_bytes());
        assert_eq!(&b[80..82], &1u16.to_le_bytes());
        assert_eq!(&b[104..108], &1u32.to_le_bytes());
        assert_eq!(&sysinfo_bytes(0, 0, 0)[0..8], &0u64.to_le_bytes());
        assert_eq!(
            &sysinfo_bytes(3 * NSEC_PER_SEC, 0, 0)[0..8],
            &3u64.to_le_bytes()
        );
    }

    #[test]
    fn rusage_layout() {
        let cpu = CpuTime {
            user: 2 * NSEC_PER_SEC + 5_000,
            system: 7_000,
        };
        let b = rusage_bytes(cpu, 0);
        assert_eq!(&b[0..8], &2i64.to_le_bytes());
        assert_eq!(&b[8..16], &5i64.to_le_bytes());
        assert_eq!(&b[16..24], &0i64.to_le_bytes());
        assert_eq!(&b[24..32], &7i64.to_le_bytes());
        assert!(b[32..].iter().all(|&x| x == 0));
    }

    #[test]
    fn comm_names() {
        let s = ProcState::default();
        assert_eq!(s.comm("/bin/hello"), b"hello");
        assert_eq!(s.comm("/a-very-long-program-name"), b"a-very-long-pro");
        s.names.set(PID as u32, b"worker");
        assert_eq!(s.comm("/bin/hello"), b"worker");
    }

    #[test]
    fn self_pids() {
        assert!(is_self(0));
        assert!(is_self(1));
        assert!(is_self(0xffff_ffff_0000_0001));
        assert!(!is_self(2));
        assert!(!is_self(u64::MAX));
    }

    #[test]
    fn getrandom_flags() {
        assert!(getrandom_flags_valid(0));
        assert!(getrandom_flags_valid(GRND_NONBLOCK));
        assert!(getrandom_flags_valid(GRND_RANDOM | GRND_NONBLOCK));
        assert!(getrandom_flags_valid(GRND_INSECURE));
        assert!(!getrandom_flags_valid(GRND_RANDOM | GRND_INSECURE));
        assert!(!getrandom_flags_valid(8));
    }

    #[test]
    fn wait_calls() {
        assert_eq!(wait4(u64::MAX, 0), Err(Errno::ECHILD));
        assert_eq!(wait4(u64::MAX, 1), Err(Errno::ECHILD));
        assert_eq!(wait4(u64::MAX, 0x10), Err(Errno::EINVAL));
        assert_eq!(wait4(0x8000_0000, 0), Err(Errno::ESRCH));
        assert_eq!(waitid(0, 4), Err(Errno::ECHILD));
        assert_eq!(waitid(0, 1), Err(Errno::EINVAL));
        assert_eq!(waitid(7, 4), Err(Errno::EINVAL));
        assert_eq!(waitid(0, 4 | 0x10), Err(Errno::EINVAL));
    }

    #[test]
    fn priorities_and_setpgid() {
        assert_eq!(priority_range(0), Ok((0, 0)));
        assert_eq!(priority_range(1), Ok((1, 99)));
        assert_eq!(priority_range(2), Ok((1, 99)));
        assert_eq!(priority_range(4), Err(Errno::EINVAL));
        assert_eq!(setpgid(0, 0), Err(Errno::EPERM));
        assert_eq!(setpgid(7, 0), Err(Errno::ESRCH));
        assert_eq!(setpgid(0, u64::MAX), Err(Errno::EINVAL));
        let mut m = FakeMachine::default();
        assert_eq!(sched_pid(&m, 0), Ok(()));
        assert_eq!(sched_pid(&m, 5), Err(Errno::ESRCH));
        assert_eq!(sched_pid(&m, u64::MAX), Err(Errno::EINVAL));
        // A thread's own id names it (glibc's pthread_getaffinity_np asks so).
        m.others.insert(
            5,
            ThreadState {
                tid: 5,
                ..ThreadState::default()
            },
        );
        assert_eq!(sched_pid(&m, 5), Ok(()));
    }
}
