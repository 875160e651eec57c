//! The text files of `/proc`, made when they are opened (each open reads a snapshot, as
//! Linux's `seq_file`s do for a read that fits one buffer): the process's `comm`, `stat`, `statm`, `status`, `limits`,
//! `cmdline`, `environ`, `maps`, `mounts` and `mountinfo` under `/proc/1` (`/proc/self`
//! links there), and the machine's `meminfo`, `uptime`, `loadavg`, `cpuinfo`, `stat` and
//! `version`. Programs read them for what they say about themselves and the machine:
//! `ps` and `top` the process's, `free` and memory-sizing runtimes `meminfo`, `df` the
//! mounts, libuv and Node's `os.cpus()` `cpuinfo` and `stat`.
//!
//! CPU times (`stat`'s `utime` and `stime`, the process's and each thread's) are the
//! scheduler's accounting ([`Machine::cpu_time`]), as `times` and `getrusage` report it.
//! The machine's files (`stat`, `uptime`) tell busy from idle time, which the kernel counts
//! ([`Machine::idle_ns`]), and the program's user time from the rest.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::errno::{Errno, KResult};
use crate::fs::node::FsId;
use crate::machine::Machine;
use crate::process::Process;
use crate::syscall::proc::{UNAME_RELEASE, UNAME_VERSION};

use crate::process::PID;
/// Clock ticks per second in `/proc` (`USER_HZ`, also `AT_CLKTCK`).
const USER_HZ: u64 = 100;
/// The queued-signal limit `status` shows (Linux's default for a small machine).
const SIGQUEUE_MAX: u32 = 7_823;
/// Nanoseconds per clock tick.
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// Which `/proc` file a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcFile {
    /// `/proc/1/maps`: the memory map.
    Maps,
    /// `/proc/1/stat`: one line of process figures.
    Stat,
    /// `/proc/1/status`: the same and more, one `Name:\tvalue` per line.
    Status,
    /// `/proc/1/cmdline`: the arguments, each ending in NUL.
    Cmdline,
    /// `/proc/1/environ`: the initial environment, likewise.
    Environ,
    /// `/proc/1/comm`: the process's name.
    Comm,
    /// `/proc/1/statm`: memory sizes in pages.
    StatM,
    /// `/proc/1/limits`: the resource limits.
    Limits,
    /// `/proc/1/mounts` (and `/proc/mounts`): the file systems, as `/etc/fstab` lists them.
    Mounts,
    /// `/proc/1/mountinfo`: the same with ids and device numbers.
    MountInfo,
    /// `/proc/1/cgroup`: the root of the unified hierarchy (`0::/`), as a process outside
    /// any container sees it; runtimes read it to size their thread pools.
    Cgroup,
    /// `/proc/meminfo`: RAM, total and free.
    MemInfo,
    /// `/proc/uptime`: seconds since boot, and idle seconds.
    Uptime,
    /// `/proc/loadavg`: load averages, running and all threads, last pid.
    LoadAvg,
    /// `/proc/cpuinfo`: one paragraph per CPU.
    CpuInfo,
    /// `/proc/stat`: CPU times, boot time, process counts.
    SysStat,
    /// `/proc/version`: the kernel's version line.
    Version,
    /// `/proc/net/dev`: each interface's traffic.
    NetDev,
    /// `/proc/net/route`: the IPv4 routes.
    NetRoute,
    /// `/proc/net/tcp` (`false`: `/proc/net/tcp6`, empty: the stack is IPv4 only).
    NetTcp(bool),
    /// `/proc/net/udp` (`false`: `/proc/net/udp6`, empty).
    NetUdp(bool),
    /// A setting under `/proc/sys` that never changes.
    Fixed(&'static str),
    /// `/proc/sys/kernel/hostname`: what `uname` calls the node.
    Hostname,
    /// `/proc/sys/kernel/osrelease`: the kernel's release.
    OsRelease,
    /// `/proc/sys/kernel/random/uuid`: a new random UUID at each read.
    Uuid,
    /// `/proc/sys/kernel/random/boot_id`: one random UUID for the whole boot.
    BootId,
    /// `/proc/1/task/TID/stat`: the process's `stat` as thread TID sees it.
    TaskStat(u32),
    /// `/proc/1/task/TID/status`: the process's `status` with thread TID's id, state and
    /// signal sets.
    TaskStatus(u32),
    /// `/proc/1/task/TID/comm`: the name.
    TaskComm(u32),
    /// `/proc/vmstat`: memory counters (free pages; no swap, no paging to disk).
    VmStat,
    /// `/proc/sys/fs/file-nr`: open files (the process's descriptors), 0 free, the limit.
    FileNr,
    /// `/proc/sys/kernel/random/entropy_avail`: 256 (a seeded generator, as Linux 5.18 and
    /// later always report) when the CPU's RDRAND feeds the kernel's random bytes, 0 when
    /// they come from the TSC-based fallback ([`Machine::random_is_seeded`]).
    EntropyAvail,
    /// `/sys/devices/system/cpu/online` (and `possible`, `present`): the CPUs as a list
    /// (`0-1`), which glibc's `get_nprocs` and runtimes sizing thread pools read.
    CpuList,
}

impl ProcFile {
    /// The thread a write to this file renames (`comm` files), if it is writable.
    pub fn renames(self) -> Option<u32> {
        match self {
            ProcFile::Comm => Some(PID as u32),
            ProcFile::TaskComm(tid) => Some(tid),
            _ => None,
        }
    }

    /// The file's permission bits: `comm` files are writable, as on Linux.
    pub fn mode(self) -> u32 {
        if self.renames().is_some() {
            0o644
        } else {
            0o444
        }
    }

    /// The files of `/proc/1`, by name.
    pub const PROCESS: [(&'static str, ProcFile); 11] = [
        ("comm", ProcFile::Comm),
        ("maps", ProcFile::Maps),
        ("stat", ProcFile::Stat),
        ("statm", ProcFile::StatM),
        ("limits", ProcFile::Limits),
        ("status", ProcFile::Status),
        ("cmdline", ProcFile::Cmdline),
        ("environ", ProcFile::Environ),
        ("mounts", ProcFile::Mounts),
        ("mountinfo", ProcFile::MountInfo),
        ("cgroup", ProcFile::Cgroup),
    ];
    /// The files of `/proc` itself, by name.
    pub const MACHINE: [(&'static str, ProcFile); 8] = [
        ("meminfo", ProcFile::MemInfo),
        ("uptime", ProcFile::Uptime),
        ("loadavg", ProcFile::LoadAvg),
        ("cpuinfo", ProcFile::CpuInfo),
        ("stat", ProcFile::SysStat),
        ("version", ProcFile::Version),
        ("vmstat", ProcFile::VmStat),
        // Block devices' counters: the machine has none (volumes are 9P shares).
        ("diskstats", ProcFile::Fixed("")),
    ];
    /// The directories under `/proc/sys`: (parent, name), the parent an index into this
    /// list plus one (0: `/proc/sys` itself). Indexes rather than paths keep the code that
    /// builds them at boot small (under TCG, code run at boot is code translated at boot).
    pub const SYS_DIRS: [(usize, &'static str); 6] = [
        (0, "net"),
        (1, "core"),
        (0, "kernel"),
        (3, "random"),
        (0, "vm"),
        (0, "fs"),
    ];
    /// The files of `/proc/sys` that programs read: (directory as in [`Self::SYS_DIRS`],
    /// name, file).
    pub const SYS: [(usize, &'static str, ProcFile); 13] = [
        // The largest listen backlog (Go reads it): `crate::net::SOMAXCONN`.
        (2, "somaxconn", ProcFile::Fixed("4096\n")),
        (3, "hostname", ProcFile::Hostname),
        (3, "osrelease", ProcFile::OsRelease),
        (3, "ostype", ProcFile::Fixed("Linux\n")),
        (3, "pid_max", ProcFile::Fixed("4194304\n")),
        (4, "uuid", ProcFile::Uuid),
        (4, "boot_id", ProcFile::BootId),
        (4, "entropy_avail", ProcFile::EntropyAvail),
        (4, "poolsize", ProcFile::Fixed("256\n")),
        (6, "file-nr", ProcFile::FileNr),
        (5, "overcommit_memory", ProcFile::Fixed("0\n")),
        (6, "file-max", ProcFile::Fixed("9223372036854775807\n")),
        (6, "nr_open", ProcFile::Fixed("1048576\n")),
    ];
    /// The files of `/sys/devices/system/cpu`, by name.
    pub const SYS_CPU: [(&'static str, ProcFile); 3] = [
        ("online", ProcFile::CpuList),
        ("possible", ProcFile::CpuList),
        ("present", ProcFile::CpuList),
    ];
    /// The files of `/proc/net`, by name.
    pub const NET: [(&'static str, ProcFile); 6] = [
        ("dev", ProcFile::NetDev),
        ("route", ProcFile::NetRoute),
        ("tcp", ProcFile::NetTcp(true)),
        ("tcp6", ProcFile::NetTcp(false)),
        ("udp", ProcFile::NetUdp(true)),
        ("udp6", ProcFile::NetUdp(false)),
    ];
}

/// The file systems the kernel mounts: (mount point, type, source, options, `st_dev`
/// minor number). Volumes (`run -v`) are listed after them by [`mount_table`].
const MOUNTS: [(&str, &str, &str, &str, FsId); 4] = [
    ("/", "rootfs", "rootfs", "ro", FsId::Root),
    ("/dev", "devtmpfs", "devtmpfs", "rw,nosuid", FsId::Dev),
    (
        "/proc",
        "proc",
        "proc",
        "rw,nosuid,nodev,noexec",
        FsId::Proc,
    ),
    (
        "/tmp",
        "tmpfs",
        "tmpfs",
        "rw,nosuid,nodev,noexec",
        FsId::Tmp,
    ),
];

/// The text of `file` now.
pub fn text(file: ProcFile, p: &mut Process, m: &mut dyn Machine) -> KResult<Vec<u8>> {
    let mut out = String::new();
    match file {
        ProcFile::Maps => out = p.vm.try_maps_text(&p.exe_path)?,
        ProcFile::Cmdline => return strings(p, m, p.proc.args.clone()),
        ProcFile::Environ => return strings(p, m, p.proc.env.clone()),
        ProcFile::Stat => stat(&mut out, p, m, None),
        ProcFile::Status => status(&mut out, p, m, None),
        ProcFile::TaskStat(tid) => stat(&mut out, p, m, Some(tid)),
        ProcFile::TaskStatus(tid) => status(&mut out, p, m, Some(tid)),
        ProcFile::Comm | ProcFile::TaskComm(_) => {
            out = comm(
                p,
                match file {
                    ProcFile::TaskComm(tid) => Some(tid),
                    _ => None,
                },
            );
            out.push('\n');
        }
        ProcFile::StatM => {
            let (size, resident) = sizes(p, m);
            let code = code_range(p);
            let text = (code.end - code.start) / 4096;
            let _ = writeln!(
                out,
                "{} {} 0 {text} 0 {} 0",
                size / 4096,
                resident / 4096,
                size / 4096 - text
            );
        }
        ProcFile::Limits => limits(&mut out, p),
        ProcFile::Cgroup => out.push_str("0::/\n"),
        ProcFile::Mounts => {
            for (at, kind, source, opts, _) in mount_table(p) {
                let _ = writeln!(out, "{source} {at} {kind} {opts} 0 0");
            }
        }
        ProcFile::MountInfo => {
            for (i, (at, kind, source, opts, minor)) in mount_table(p).into_iter().enumerate() {
                let parent = if i == 0 { 1 } else { 2 };
                let _ = writeln!(
                    out,
                    "{} {parent} 0:{minor} / {at} {opts} - {kind} {source} {opts}",
                    i + 2
                );
            }
        }
        ProcFile::MemInfo => {
            let (total, free) = m.ram();
            for (name, bytes) in [
                ("MemTotal", total),
                ("MemFree", free),
                ("MemAvailable", free),
                ("Buffers", 0),
                ("Cached", 0),
                ("SwapCached", 0),
                ("SwapTotal", 0),
                ("SwapFree", 0),
                ("Shmem", 0),
            ] {
                let _ = writeln!(
                    out,
                    "{:<15}{:>9} kB",
                    alloc::format!("{name}:"),
                    bytes >> 10
                );
            }
        }
        ProcFile::Uptime => {
            let (cs, idle) = (m.since_boot_ns() / 10_000_000, m.idle_ns() / 10_000_000);
            let _ = writeln!(
                out,
                "{}.{:02} {}.{:02}",
                cs / 100,
                cs % 100,
                idle / 100,
                idle % 100
            );
        }
        ProcFile::LoadAvg => {
            let threads = m.thread_count();
            let _ = writeln!(out, "0.00 0.00 0.00 1/{threads} {PID}");
        }
        ProcFile::CpuInfo => {
            let n = m.cpus();
            for cpu in 0..n {
                let _ = write!(
                    out,
                    "processor\t: {cpu}\nvendor_id\t: Kiln\nmodel name\t: Kiln virtual CPU\n\
                     physical id\t: 0\nsiblings\t: {n}\ncore id\t\t: {cpu}\ncpu cores\t: {n}\n\
                     apicid\t\t: {cpu}\n\n"
                );
            }
        }
        ProcFile::SysStat => {
            // User time is the program's; system time the rest of the busy time (its
            // system calls and the kernel's own work). The CPUs' times together are shared
            // evenly between their lines.
            let n = m.cpus() as u64;
            let all = (m.since_boot_ns() / NS_PER_TICK) * n;
            let idle = (m.idle_ns() / NS_PER_TICK).min(all);
            let busy = all - idle;
            let user = (m.cpu_time(None).unwrap_or_default().user / NS_PER_TICK).min(busy);
            let system = busy - user;
            let _ = writeln!(out, "cpu  {user} 0 {system} {idle} 0 0 0 0 0 0");
            for cpu in 0..n {
                let _ = writeln!(
                    out,
                    "cpu{cpu} {} 0 {} {} 0 0 0 0 0 0",
                    user / n,
                    system / n,
                    idle / n
                );
            }
            let boot = m.realtime_ns().saturating_sub(m.since_boot_ns()) / 1_000_000_000;
            let _ = write!(
                out,
                "intr 0\nctxt 0\nbtime {boot}\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n"
            );
        }
        ProcFile::Version => {
            let _ = writeln!(out, "Linux version {UNAME_RELEASE} (kiln) {UNAME_VERSION}");
        }
        ProcFile::NetDev => net_dev(&mut out, p, m),
        ProcFile::NetRoute => net_route(&mut out, p, m),
        ProcFile::NetTcp(v4) => net_sockets(&mut out, p, true, v4),
        ProcFile::NetUdp(v4) => net_sockets(&mut out, p, false, v4),
        ProcFile::Fixed(text) => out.push_str(text),
        ProcFile::EntropyAvail => {
            out.push_str(if m.random_is_seeded() { "256\n" } else { "0\n" });
        }
        ProcFile::FileNr => {
            let open = p.files.open().count();
            let _ = writeln!(out, "{open}\t0\t9223372036854775807");
        }
        ProcFile::VmStat => {
            let (total, free) = m.ram();
            let used = (total - free.min(total)) / 4096;
            for (name, pages) in [
                ("nr_free_pages", free / 4096),
                ("nr_anon_pages", used),
                ("nr_file_pages", 0),
                ("pgpgin", 0),
                ("pgpgout", 0),
                ("pswpin", 0),
                ("pswpout", 0),
            ] {
                let _ = writeln!(out, "{name} {pages}");
            }
        }
        ProcFile::CpuList => {
            out = cpu_list(m.cpus());
            out.push('\n');
        }
        ProcFile::Hostname => {
            out = String::from_utf8_lossy(&crate::syscall::proc::nodename(p)).into_owned();
            out.push('\n');
        }
        ProcFile::OsRelease => {
            out.push_str(UNAME_RELEASE);
            out.push('\n');
        }
        ProcFile::Uuid => {
            let mut b = [0u8; 16];
            m.fill_random(&mut b);
            uuid(&mut out, b);
        }
        ProcFile::BootId => {
            let b = *p.proc.boot_id.get_or_insert_with(|| {
                let mut b = [0u8; 16];
                m.fill_random(&mut b);
                b
            });
            uuid(&mut out, b);
        }
    }
    Ok(out.into_bytes())
}

/// A version-4 (random) UUID from 16 random bytes, as `uuidgen` prints it.
fn uuid(out: &mut String, mut b: [u8; 16]) {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out.push('\n');
}

/// The name of the process (`tid` `None`) or of one of its threads: what `PR_SET_NAME` or a
/// write to its `comm` file set, else the program's file name, at most 15 bytes
/// (`TASK_COMM_LEN` - 1).
fn comm(p: &Process, tid: Option<u32>) -> String {
    let name = match tid {
        Some(tid) => p.proc.thread_comm(tid, &p.exe_path),
        None => p.proc.comm(&p.exe_path),
    };
    String::from_utf8_lossy(&name).into_owned()
}

/// Memory figures in bytes: the mapped size, and what is resident.
/// Bytes of the program's memory that are resident (`VmRSS`).
pub fn resident(p: &Process, m: &mut dyn Machine) -> u64 {
    sizes(p, m).1
}

fn sizes(p: &Process, m: &mut dyn Machine) -> (u64, u64) {
    let mut size = 0;
    let mut resident = 0;
    for (start, v) in p.vm.vmas() {
        size += v.end - start;
        if v.prot.read || v.prot.write || v.prot.exec {
            if let Ok(pages) = p.vm.residency(m.pages(), start, v.end) {
                resident += pages.iter().filter(|&&r| r != 0).count() as u64 * 4096;
            }
        }
    }
    (size, resident)
}

/// A thread's state letter and name as `stat` and `status` show them: the calling thread
/// runs; the others are shown sleeping (the kernel keeps no more than that per thread).
fn task_state(m: &dyn Machine, tid: Option<u32>) -> (char, &'static str) {
    match tid {
        Some(t) if m.running() != Some(t) => ('S', "S (sleeping)"),
        _ => ('R', "R (running)"),
    }
}

/// `stat` of the process (`tid` `None`) or of one of its threads.
fn stat(out: &mut String, p: &Process, m: &mut dyn Machine, tid: Option<u32>) {
    let who = tid.map_or(PID, i64::from);
    let (state, _) = task_state(m, tid);
    let cpu_time = m.cpu_time(tid).unwrap_or_default();
    let (utime, stime) = (cpu_time.user / NS_PER_TICK, cpu_time.system / NS_PER_TICK);
    let (vsize, rss) = sizes(p, m);
    let threads = m.thread_count();
    let cpu = m.cpu();
    let (code, stack) = (code_range(p), p.vm.stack().map_or(0, |s| s.end));
    let brk = p.vm.brk_start();
    let (args, env) = (&p.proc.args, &p.proc.env);
    let _ = writeln!(
        out,
        "{who} ({}) {state} 0 {PID} {PID} 0 -1 4194560 0 0 0 0 {utime} {stime} 0 0 20 0 {threads} 0 0 \
         {vsize} {} 18446744073709551615 {} {} {stack} 0 0 0 0 0 0 0 0 0 17 {cpu} 0 0 0 0 0 \
         0 0 {brk} {} {} {} {} 0",
        comm(p, tid),
        rss / 4096,
        code.start,
        code.end,
        args.start,
        args.end,
        env.start,
        env.end,
    );
}

/// Where the program's code is mapped (its first executable region of the program file).
fn code_range(p: &Process) -> core::ops::Range<u64> {
    p.vm.vmas()
        .find(|(_, v)| v.prot.exec && matches!(v.kind, crate::vm::VmaKind::Program))
        .map_or(0..0, |(start, v)| start..v.end)
}

/// Signal sets as `status` shows them (bit `n - 1` for signal `n`).
struct SignalSets {
    /// Pending for the calling thread.
    thread_pending: u64,
    /// Pending for the process.
    shared_pending: u64,
    /// The calling thread's mask.
    blocked: u64,
    /// Dispositions `SIG_IGN`.
    ignored: u64,
    /// Dispositions with a handler.
    caught: u64,
}

fn signal_sets(p: &Process, m: &mut dyn Machine, tid: Option<u32>) -> SignalSets {
    use crate::syscall::signal::{sig_bit, Disposition, NSIG};
    let (mut ignored, mut caught) = (0, 0);
    for sig in 1..=NSIG {
        match p.signals.disposition(sig) {
            Disposition::Ignore => ignored |= sig_bit(sig),
            Disposition::Handler(_) => caught |= sig_bit(sig),
            Disposition::Default => {}
        }
    }
    let t = match tid {
        Some(t) => m.thread_of(t).map(|s| s.signals.clone()),
        None => None,
    }
    .unwrap_or_else(|| m.thread().signals.clone());
    SignalSets {
        thread_pending: t.pending.bits(),
        shared_pending: p.signals.pending(),
        blocked: t.mask(),
        ignored,
        caught,
    }
}

/// `status` of the process (`tid` `None`) or of one of its threads.
fn status(out: &mut String, p: &Process, m: &mut dyn Machine, tid: Option<u32>) {
    let who = tid.map_or(PID, i64::from);
    let (_, state) = task_state(m, tid);
    let (vsize, rss) = sizes(p, m);
    let sig = signal_sets(p, m, tid);
    let (u, g) = (&p.proc.uid, &p.proc.gid);
    let groups: Vec<String> = p
        .proc
        .groups
        .iter()
        .map(|g| alloc::format!("{g}"))
        .collect();
    let cpus = m.cpus();
    let mask = if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    let _ = write!(
        out,
        "Name:\t{}\nUmask:\t{:04o}\nState:\t{state}\nTgid:\t{PID}\nNgid:\t0\nPid:\t{who}\n\
         PPid:\t0\nTracerPid:\t0\nUid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nFDSize:\t64\n\
         Groups:\t{}\nVmPeak:\t{:>8} kB\nVmSize:\t{:>8} kB\nVmHWM:\t{:>8} kB\nVmRSS:\t{:>8} kB\n\
         Threads:\t{}\nSigQ:\t0/{SIGQUEUE_MAX}\nSigPnd:\t{:016x}\nShdPnd:\t{:016x}\nSigBlk:\t{:016x}\n\
         SigIgn:\t{:016x}\nSigCgt:\t{:016x}\nCapInh:\t0000000000000000\n\
         CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n\
         CapAmb:\t0000000000000000\nNoNewPrivs:\t{}\nSeccomp:\t0\nCpus_allowed:\t{mask:x}\n\
         Cpus_allowed_list:\t{}\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n",
        comm(p, tid),
        p.vfs.umask,
        u.real,
        u.effective,
        u.saved,
        u.fs,
        g.real,
        g.effective,
        g.saved,
        g.fs,
        groups.join(" "),
        vsize >> 10,
        vsize >> 10,
        rss >> 10,
        rss >> 10,
        m.thread_count(),
        sig.thread_pending,
        sig.shared_pending,
        sig.blocked,
        sig.ignored,
        sig.caught,
        u8::from(p.proc.no_new_privs),
        cpu_list(cpus),
    );
}

/// CPUs `0` to `n - 1` as Linux lists them: `0`, `0-1`.
fn cpu_list(n: usize) -> String {
    match n {
        0 | 1 => String::from("0"),
        n => alloc::format!("0-{}", n - 1),
    }
}

/// `/proc/1/limits`: Linux's table of the limits `getrlimit` reports.
fn limits(out: &mut String, p: &Process) {
    const ROWS: [(&str, &str); 16] = [
        ("Max cpu time", "seconds"),
        ("Max file size", "bytes"),
        ("Max data size", "bytes"),
        ("Max stack size", "bytes"),
        ("Max core file size", "bytes"),
        ("Max resident set", "bytes"),
        ("Max processes", "processes"),
        ("Max open files", "files"),
        ("Max locked memory", "bytes"),
        ("Max address space", "bytes"),
        ("Max file locks", "locks"),
        ("Max pending signals", "signals"),
        ("Max msgqueue size", "bytes"),
        ("Max nice priority", ""),
        ("Max realtime priority", ""),
        ("Max realtime timeout", "us"),
    ];
    let _ = writeln!(
        out,
        "{:<25} {:<20} {:<20} {:<10}",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    let show = |v: u64| {
        if v == u64::MAX {
            String::from("unlimited")
        } else {
            alloc::format!("{v}")
        }
    };
    for (limit, (name, unit)) in p.proc.limits.iter().zip(ROWS) {
        let _ = writeln!(
            out,
            "{name:<25} {:<20} {:<20} {unit:<10}",
            show(limit.cur),
            show(limit.max)
        );
    }
}

/// The kernel's mounts and the volumes: (mount point, type, source, options, `st_dev`
/// minor).
fn mount_table(p: &Process) -> Vec<(String, &'static str, String, &'static str, u32)> {
    let mut t: Vec<_> = MOUNTS
        .iter()
        .map(|&(at, kind, source, opts, fs)| (at.into(), kind, source.into(), opts, fs as u32))
        .collect();
    for v in p.vfs.volumes() {
        let opts = if v.readonly { "ro,noexec" } else { "rw,noexec" };
        t.push((v.path.clone(), "9p", v.source.clone(), opts, v.minor));
    }
    t
}

/// `/proc/net/dev`: loopback's traffic is not counted (0); the card's is.
fn net_dev(out: &mut String, p: &Process, m: &mut dyn Machine) {
    out.push_str(concat!(
        "Inter-|   Receive                                                |  Transmit\n",
        " face |bytes    packets errs drop fifo frame compressed multicast|",
        "bytes    packets errs drop fifo colls carrier compressed\n",
    ));
    #[cfg(feature = "net")]
    for l in p.net.links(m) {
        let (rx_frames, tx_frames, rx_bytes, tx_bytes) = l.counts;
        let _ = writeln!(
            out,
            concat!(
                "{:>6}: {:>7} {:>7}    0    0    0     0          0         0 ",
                "{:>8} {:>7}    0    0    0     0       0          0",
            ),
            l.name, rx_bytes, rx_frames, tx_bytes, tx_frames,
        );
    }
    #[cfg(not(feature = "net"))]
    let _ = (p, m);
}

/// `/proc/net/tcp` (`tcp`) or `/proc/net/udp`, in Linux's columns: addresses as
/// hexadecimal words in the kernel's byte order, ports in hexadecimal, the state, the
/// queues, uid 0 and the socket's inode (what `netstat -p` matches against
/// `/proc/*/fd`). The IPv6 files (`v4` false) have the header only.
fn net_sockets(out: &mut String, p: &Process, tcp: bool, v4: bool) {
    if tcp {
        out.push_str("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n");
    } else {
        out.push_str("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n");
    }
    #[cfg(feature = "net")]
    {
        if !v4 {
            return;
        }
        let rows = if tcp {
            p.net.tcp_rows()
        } else {
            p.net.udp_rows()
        };
        for (sl, r) in rows.iter().enumerate() {
            let _ = write!(
                out,
                "{:>width$}: {:08X}:{:04X} {:08X}:{:04X} {:02X} {:08X}:{:08X} 00:00000000 00000000     0        0 {}",
                sl,
                u32::from_le_bytes(r.local.ip),
                r.local.port,
                u32::from_le_bytes(r.remote.ip),
                r.remote.port,
                r.state,
                r.tx_queue,
                r.rx_queue,
                r.inode,
                width = if tcp { 4 } else { 5 },
            );
            out.push_str(if tcp {
                " 1 0000000000000000 100 0 0 10 0\n"
            } else {
                " 2 0000000000000000 0\n"
            });
        }
    }
    #[cfg(not(feature = "net"))]
    let _ = (p, v4);
}

/// `/proc/net/route`: the card's network, and the default route through the gateway
/// (addresses in the kernel's byte order, as hexadecimal words).
fn net_route(out: &mut String, p: &Process, m: &mut dyn Machine) {
    out.push_str(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
    );
    #[cfg(feature = "net")]
    {
        let hex = |a: [u8; 4]| alloc::format!("{:08X}", u32::from_le_bytes(a));
        // The links first: asking for them sets the interface (and its gateway) up.
        let links = p.net.links(m);
        let gateway = p.net.gateway();
        for l in links.iter().filter(|l| !l.loopback) {
            let Some(((ip, _), (mask, _))) = l.addr.zip(l.mask_and_broadcast()) else {
                continue;
            };
            if let Some(gw) = gateway {
                // RTF_UP | RTF_GATEWAY.
                let _ = writeln!(
                    out,
                    "{}\t00000000\t{}\t0003\t0\t0\t0\t00000000\t0\t0\t0",
                    l.name,
                    hex(gw)
                );
            }
            let net = (u32::from_be_bytes(ip) & u32::from_be_bytes(mask)).to_be_bytes();
            // RTF_UP.
            let _ = writeln!(
                out,
                "{}\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0",
                l.name,
                hex(net),
                hex(mask)
            );
        }
    }
    #[cfg(not(feature = "net"))]
    let _ = (p, m);
}

/// NUL-terminated strings at `range` in the program's memory (what is readable of them).
fn strings(p: &mut Process, m: &mut dyn Machine, range: core::ops::Range<u64>) -> KResult<Vec<u8>> {
    let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(|_| Errno::EINVAL)?;
    let mut b = alloc::vec![0; len];
    if len > 0 && p.vm.copy_from_user(m.pages(), range.start, &mut b).is_err() {
        b.clear();
    }
    Ok(b)
}

#[cfg(test)]
mod tests;

// The text of /proc/sys/net/core/somaxconn is the stack's limit.
const _: () = assert!(crate::net::SOMAXCONN == 4096);
