//! `/proc`'s files read the way programs read them: `openat` then `read`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::syscall::testutil::*;
use crate::sysno as nr;
use crate::testing::FakeMachine;

/// Reads the whole of `path` through the system calls.
fn read_file(
    p: &mut crate::process::Process,
    m: &mut FakeMachine,
    buf: u64,
    path: &str,
) -> Vec<u8> {
    poke(p, m, buf, path.as_bytes());
    poke(p, m, buf + path.len() as u64, &[0]);
    let fd = call(p, m, nr::OPENAT, &[-100i64 as u64, buf, 0, 0]);
    assert!(fd >= 0, "open {path}: {fd}");
    let mut all = Vec::new();
    loop {
        let n = call(p, m, nr::READ, &[fd as u64, buf, 4096]);
        assert!(n >= 0, "read {path}: {n}");
        if n == 0 {
            break;
        }
        all.extend(peek(p, m, buf, n as usize));
    }
    assert_eq!(call(p, m, nr::CLOSE, &[fd as u64]), 0);
    all
}

fn read_text(p: &mut crate::process::Process, m: &mut FakeMachine, buf: u64, path: &str) -> String {
    String::from_utf8(read_file(p, m, buf, path)).unwrap()
}

#[test]
fn self_is_a_link_to_the_pid_directory() {
    let (mut p, mut m, buf) = setup();
    poke(&mut p, &mut m, buf, b"/proc/self\0");
    let out = buf + 0x100;
    assert_eq!(call(&mut p, &mut m, nr::READLINK, &[buf, out, 64]), 1);
    assert_eq!(peek(&mut p, &mut m, out, 1), b"1");
    let status = read_text(&mut p, &mut m, buf, "/proc/1/status");
    assert!(status.starts_with("Name:\tprog\n"), "{status}");
    let via_thread = read_text(&mut p, &mut m, buf, "/proc/thread-self/status");
    assert!(via_thread.starts_with("Name:\tprog\n"), "{via_thread}");
}

#[test]
fn stat_has_linuxs_52_fields() {
    let (mut p, mut m, buf) = setup();
    m.now = kiln_abi::vdso::MONOTONIC_AT_BOOT_NS + 250 * 10_000_000;
    // The thread used 0.8 s of user and 0.3 s of system time, the process twice that.
    m.cpu_time = crate::sched::CpuTime {
        user: 800_000_000,
        system: 300_000_000,
    };
    let stat = read_text(&mut p, &mut m, buf, "/proc/self/stat");
    assert!(stat.starts_with("1 (prog) R 0 1 1 0 -1 "), "{stat}");
    assert!(stat.ends_with('\n'), "{stat}");
    let after_comm = stat.rsplit_once(") ").unwrap().1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    assert_eq!(fields.len() + 2, 52, "{stat}");
    // utime and stime (fields 14 and 15) in clock ticks; num_threads (field 20).
    assert_eq!(fields[14 - 3], "160", "{stat}");
    assert_eq!(fields[15 - 3], "60", "{stat}");
    assert_eq!(fields[20 - 3], "1", "{stat}");
    // A thread's own.
    let tid = m.thread.tid;
    let task = read_text(
        &mut p,
        &mut m,
        buf,
        &alloc::format!("/proc/self/task/{tid}/stat"),
    );
    let fields: Vec<&str> = task
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!((fields[14 - 3], fields[15 - 3]), ("80", "30"), "{task}");
    // vsize (field 23) covers at least the mapped buffer.
    assert!(fields[23 - 3].parse::<u64>().unwrap() >= BUF_LEN, "{stat}");
}

#[test]
fn status_names_the_process_and_its_ids() {
    let (mut p, mut m, buf) = setup();
    // prctl(PR_SET_NAME) renames it.
    poke(&mut p, &mut m, buf, b"worker\0");
    assert_eq!(call(&mut p, &mut m, nr::PRCTL, &[15, buf]), 0);
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/self/comm"),
        "worker\n"
    );
    let status = read_text(&mut p, &mut m, buf, "/proc/self/status");
    for line in [
        "SigCgt:\t0000000000000000\n",
        "Name:\tworker\n",
        "Pid:\t1\n",
        "PPid:\t0\n",
        "Uid:\t0\t0\t0\t0\n",
        "Threads:\t1\n",
        "Cpus_allowed_list:\t0\n",
    ] {
        assert!(status.contains(line), "{line:?} missing: {status}");
    }
    // A handler for SIGTERM (15), SIGPIPE (13) ignored, SIGUSR1 (10) blocked.
    let mut act = [0u8; 32];
    act[..8].copy_from_slice(&0x40_1000u64.to_le_bytes());
    poke(&mut p, &mut m, buf, &act);
    assert_eq!(call(&mut p, &mut m, nr::RT_SIGACTION, &[15, buf, 0, 8]), 0);
    act[..8].copy_from_slice(&1u64.to_le_bytes());
    poke(&mut p, &mut m, buf, &act);
    assert_eq!(call(&mut p, &mut m, nr::RT_SIGACTION, &[13, buf, 0, 8]), 0);
    poke(&mut p, &mut m, buf, &(1u64 << 9).to_le_bytes());
    assert_eq!(call(&mut p, &mut m, nr::RT_SIGPROCMASK, &[0, buf, 0, 8]), 0);
    let status = read_text(&mut p, &mut m, buf, "/proc/self/status");
    for line in [
        "SigBlk:\t0000000000000200\n",
        "SigIgn:\t0000000000001000\n",
        "SigCgt:\t0000000000004000\n",
    ] {
        assert!(status.contains(line), "{line:?} missing: {status}");
    }
}

#[test]
fn each_thread_has_its_own_stat_and_status() {
    let (mut p, mut m, buf) = setup();
    // Thread 3 (not the caller) blocks SIGUSR2 (12) and has SIGHUP (1) sent to it.
    let mut other = crate::process::ThreadState {
        tid: 3,
        ..Default::default()
    };
    other.signals.set_mask(1 << 11);
    other.signals.pending.add(crate::sigframe::SigInfo {
        signo: 1,
        ..Default::default()
    });
    m.others.insert(3, other);
    let stat = read_text(&mut p, &mut m, buf, "/proc/self/task/3/stat");
    assert!(stat.starts_with("3 (prog) S 0 1 1 "), "{stat}");
    assert_eq!(stat.split_whitespace().count(), 52, "{stat}");
    let own = read_text(&mut p, &mut m, buf, "/proc/self/task/1/stat");
    assert!(own.starts_with("1 (prog) R 0 1 1 "), "{own}");
    let status = read_text(&mut p, &mut m, buf, "/proc/1/task/3/status");
    for line in [
        "State:\tS (sleeping)\n",
        "Tgid:\t1\n",
        "Pid:\t3\n",
        "SigPnd:\t0000000000000001\n",
        "SigBlk:\t0000000000000800\n",
        "Threads:\t2\n",
    ] {
        assert!(status.contains(line), "{line:?} missing: {status}");
    }
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/1/task/3/comm"),
        "prog\n"
    );
    // The process's own files are the process's.
    let status = read_text(&mut p, &mut m, buf, "/proc/self/status");
    assert!(status.contains("Pid:\t1\n") && status.contains("SigBlk:\t0000000000000000\n"));
}

/// Writes `text` to the file at `path`, opened write-only; the `write`'s result.
fn write_text(
    p: &mut crate::process::Process,
    m: &mut FakeMachine,
    buf: u64,
    path: &str,
    text: &[u8],
) -> i64 {
    poke(p, m, buf, alloc::format!("{path}\0").as_bytes());
    let fd = call(p, m, nr::OPEN, &[buf, 1, 0]);
    assert!(fd >= 0, "open {path}: {fd}");
    poke(p, m, buf + 0x200, text);
    let n = call(
        p,
        m,
        nr::WRITE,
        &[fd as u64, buf + 0x200, text.len() as u64],
    );
    assert_eq!(call(p, m, nr::CLOSE, &[fd as u64]), 0);
    n
}

#[test]
fn each_thread_has_its_own_name() {
    let (mut p, mut m, buf) = setup();
    m.others.insert(
        3,
        crate::process::ThreadState {
            tid: 3,
            ..Default::default()
        },
    );
    let comm = |p: &mut _, m: &mut _, path: &str| read_text(p, m, buf, path);
    // pthread_setname_np on another thread writes its comm file (no newline).
    assert_eq!(
        write_text(
            &mut p,
            &mut m,
            buf,
            "/proc/self/task/3/comm",
            b"tokio-runtime-worker"
        ),
        20
    );
    assert_eq!(
        comm(&mut p, &mut m, "/proc/self/task/3/comm"),
        "tokio-runtime-w\n"
    );
    assert!(comm(&mut p, &mut m, "/proc/1/task/3/status").starts_with("Name:\ttokio-runtime-w\n"));
    assert!(comm(&mut p, &mut m, "/proc/1/task/3/stat").starts_with("3 (tokio-runtime-w) "));
    // The process keeps its name.
    assert_eq!(comm(&mut p, &mut m, "/proc/self/comm"), "prog\n");
    assert_eq!(comm(&mut p, &mut m, "/proc/self/task/1/comm"), "prog\n");
    // Thread 3 names itself with prctl; the process's name stays.
    m.thread.tid = 3;
    poke(&mut p, &mut m, buf, b"worker-3\0");
    assert_eq!(call(&mut p, &mut m, nr::PRCTL, &[15, buf]), 0);
    assert_eq!(call(&mut p, &mut m, nr::PRCTL, &[16, buf + 64]), 0);
    assert_eq!(peek(&mut p, &mut m, buf + 64, 9), b"worker-3\0");
    assert_eq!(comm(&mut p, &mut m, "/proc/self/task/3/comm"), "worker-3\n");
    assert_eq!(comm(&mut p, &mut m, "/proc/self/comm"), "prog\n");
    // A thread it makes has its name.
    let tid = call(&mut p, &mut m, nr::CLONE, &[0x50f00, buf + 0x800, 0, 0, 0]);
    assert!(tid > 0 && tid != 3, "{tid}");
    m.others.insert(
        tid as u32,
        crate::process::ThreadState {
            tid: tid as u32,
            ..Default::default()
        },
    );
    assert_eq!(
        comm(
            &mut p,
            &mut m,
            &alloc::format!("/proc/self/task/{tid}/comm")
        ),
        "worker-3\n"
    );
    // Writing /proc/self/comm renames the process (Linux keeps a newline written).
    m.thread.tid = 1;
    assert_eq!(
        write_text(&mut p, &mut m, buf, "/proc/self/comm", b"server\n"),
        7
    );
    assert_eq!(comm(&mut p, &mut m, "/proc/self/comm"), "server\n\n");
    assert_eq!(comm(&mut p, &mut m, "/proc/self/task/3/comm"), "worker-3\n");
    // A thread that ends takes its name with it; the main thread's stays the process's.
    m.thread.tid = 3;
    assert!(matches!(
        outcome(&mut p, &mut m, nr::EXIT, &[0]),
        crate::process::Outcome::ThreadExit(0)
    ));
    assert_eq!(p.proc.names.get(3), None);
    m.thread.tid = 1;
    assert!(matches!(
        outcome(&mut p, &mut m, nr::EXIT, &[0]),
        crate::process::Outcome::ThreadExit(0)
    ));
    assert_eq!(comm(&mut p, &mut m, "/proc/self/comm"), "server\n\n");
    // Other /proc files stay read-only.
    poke(&mut p, &mut m, buf, b"/proc/self/status\0");
    assert_eq!(call(&mut p, &mut m, nr::OPEN, &[buf, 1, 0]), -13);
}

#[test]
fn cmdline_and_environ_are_the_strings_in_the_programs_memory() {
    let (mut p, mut m, buf) = setup();
    let strings = buf + 0x1000;
    poke(&mut p, &mut m, strings, b"/bin/prog\0-v\0HOME=/\0");
    p.proc.args = strings..strings + 13;
    p.proc.env = strings + 13..strings + 20;
    assert_eq!(
        read_file(&mut p, &mut m, buf, "/proc/self/cmdline"),
        b"/bin/prog\0-v\0"
    );
    assert_eq!(
        read_file(&mut p, &mut m, buf, "/proc/self/environ"),
        b"HOME=/\0"
    );
    // A program that moved its strings away (or a kernel without them) reads empty.
    p.proc.args = crate::syscall::testutil::UNMAPPED..crate::syscall::testutil::UNMAPPED + 4;
    assert_eq!(read_file(&mut p, &mut m, buf, "/proc/self/cmdline"), b"");
}

#[test]
fn cgroup_is_the_unified_root() {
    let (mut p, mut m, buf) = setup();
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/self/cgroup"),
        "0::/\n"
    );
}

#[test]
fn meminfo_uptime_and_loadavg_come_from_the_machine() {
    let (mut p, mut m, buf) = setup();
    m.ram = (256 << 20, 200 << 20);
    m.now = kiln_abi::vdso::MONOTONIC_AT_BOOT_NS + 12_345_000_000;
    let mem = read_text(&mut p, &mut m, buf, "/proc/meminfo");
    assert!(
        mem.starts_with("MemTotal:         262144 kB\nMemFree:          204800 kB\n"),
        "{mem}"
    );
    assert!(mem.contains("\nMemAvailable:     204800 kB\n"), "{mem}");
    assert!(mem.contains("\nSwapTotal:             0 kB\n"), "{mem}");
    m.idle_ns = 10_500_000_000;
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/uptime"),
        "12.34 10.50\n"
    );
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/loadavg"),
        "0.00 0.00 0.00 1/1 1\n"
    );
    // sysinfo agrees.
    assert_eq!(call(&mut p, &mut m, nr::SYSINFO, &[buf]), 0);
    assert_eq!(peek64(&mut p, &mut m, buf + 32), 256 << 20);
    assert_eq!(peek64(&mut p, &mut m, buf + 40), 200 << 20);
}

#[test]
fn cpuinfo_and_stat_have_a_line_per_cpu() {
    let (mut p, mut m, buf) = setup();
    m.cpus = 2;
    let info = read_text(&mut p, &mut m, buf, "/proc/cpuinfo");
    assert_eq!(info.matches("processor\t: ").count(), 2, "{info}");
    // 10 s since boot on 2 CPUs, 15 s of it idle: 5 s busy in all, 3 s of it the
    // program's user time (1.5 s for the running thread, doubled by the fake machine).
    m.now = kiln_abi::vdso::MONOTONIC_AT_BOOT_NS + 10_000_000_000;
    m.idle_ns = 15_000_000_000;
    m.cpu_time = crate::sched::CpuTime {
        user: 1_500_000_000,
        system: 100_000_000,
    };
    let stat = read_text(&mut p, &mut m, buf, "/proc/stat");
    assert!(
        stat.starts_with("cpu  300 0 200 1500 0 0 0 0 0 0\n"),
        "{stat}"
    );
    assert!(
        stat.contains("\ncpu1 150 0 100 750 0 0 0 0 0 0\n"),
        "{stat}"
    );
    assert!(
        stat.contains("\ncpu0 ") && stat.contains("\ncpu1 "),
        "{stat}"
    );
    assert!(stat.contains("\nbtime "), "{stat}");
    let version = read_text(&mut p, &mut m, buf, "/proc/version");
    assert!(
        version.starts_with("Linux version 6.1.0-kiln "),
        "{version}"
    );
}

#[test]
fn mounts_list_the_file_systems_with_their_device_numbers() {
    let (mut p, mut m, buf) = setup();
    let mounts = read_text(&mut p, &mut m, buf, "/proc/mounts");
    assert!(mounts.starts_with("rootfs / rootfs ro 0 0\n"), "{mounts}");
    assert!(
        mounts.contains("\ntmpfs /tmp tmpfs rw,nosuid,nodev,noexec 0 0\n"),
        "{mounts}"
    );
    let info = read_text(&mut p, &mut m, buf, "/proc/self/mountinfo");
    let tmp = info
        .lines()
        .find(|l| l.contains(" /tmp "))
        .expect("a /tmp line");
    // statx on /tmp: its st_dev is the mountinfo's major:minor.
    poke(&mut p, &mut m, buf, b"/tmp\0");
    let sx = buf + 0x100;
    assert_eq!(
        call(
            &mut p,
            &mut m,
            nr::STATX,
            &[-100i64 as u64, buf, 0, 0xfff, sx]
        ),
        0
    );
    let b = peek(&mut p, &mut m, sx, 0x100);
    let minor = u32::from_le_bytes(b[0x8c..0x90].try_into().unwrap());
    assert!(
        tmp.contains(&alloc::format!(" 0:{minor} / /tmp ")),
        "{tmp} vs minor {minor}"
    );
    assert!(tmp.contains(" - tmpfs tmpfs "), "{tmp}");
}

#[test]
fn proc_files_cannot_be_written() {
    let (mut p, mut m, buf) = setup();
    poke(&mut p, &mut m, buf, b"/proc/meminfo\0");
    // O_WRONLY
    assert!(call(&mut p, &mut m, nr::OPENAT, &[-100i64 as u64, buf, 1, 0]) < 0);
}

#[cfg(feature = "net")]
#[test]
fn net_dev_and_route_list_the_interfaces() {
    let (mut p, mut m, buf) = setup();
    let dev = read_text(&mut p, &mut m, buf, "/proc/net/dev");
    let lines: Vec<&str> = dev.lines().collect();
    assert_eq!(lines.len(), 3, "{dev}");
    assert!(lines[0].starts_with("Inter-|"), "{dev}");
    assert!(lines[2].starts_with("    lo:       0       0 "), "{dev}");
    assert_eq!(lines[2].split_whitespace().count(), 17, "{dev}");
    // The fake machine has no card, so no route beyond loopback's (which Linux does not
    // list in this table either).
    let route = read_text(&mut p, &mut m, buf, "/proc/net/route");
    assert_eq!(route.lines().count(), 1, "{route}");
    assert!(route.starts_with("Iface\tDestination\tGateway"), "{route}");
}

#[test]
fn statm_and_limits() {
    let (mut p, mut m, buf) = setup();
    let statm = read_text(&mut p, &mut m, buf, "/proc/self/statm");
    let fields: Vec<u64> = statm
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 7, "{statm}");
    assert!(fields[0] >= BUF_LEN / 4096, "{statm}");
    let limits = read_text(&mut p, &mut m, buf, "/proc/self/limits");
    assert!(
        limits.starts_with(
            "Limit                     Soft Limit           Hard Limit           Units     \n"
        ),
        "{limits}"
    );
    assert!(
        limits.contains(
            "\nMax stack size            8388608              unlimited            bytes     \n"
        ),
        "{limits}"
    );
    assert_eq!(limits.lines().count(), 17, "{limits}");
}

#[test]
fn sys_settings_hostname_and_uuids() {
    let (mut p, mut m, buf) = setup();
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/net/core/somaxconn"),
        "4096\n"
    );
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/kernel/ostype"),
        "Linux\n"
    );
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/kernel/osrelease"),
        "6.1.0-kiln\n"
    );
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/vm/overcommit_memory"),
        "0\n"
    );
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/kernel/random/entropy_avail"),
        "256\n"
    );
    // Without RDRAND the random bytes only mix the clock: nothing is claimed.
    m.weak_random = true;
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/kernel/random/entropy_avail"),
        "0\n"
    );
    m.weak_random = false;
    assert_eq!(read_text(&mut p, &mut m, buf, "/proc/diskstats"), "");
    // file-nr counts the open descriptors (its text is made as it is opened, before the
    // descriptor reading it exists).
    let open = p.files.open().count();
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/fs/file-nr"),
        alloc::format!("{open}\t0\t9223372036854775807\n")
    );
    // The node name uname gives, which sethostname changes.
    poke(&mut p, &mut m, buf, b"web1");
    assert_eq!(call(&mut p, &mut m, nr::SETHOSTNAME, &[buf, 4]), 0);
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/kernel/hostname"),
        "web1\n"
    );
    // A new version-4 UUID at each read; one boot id for the boot.
    let a = read_text(&mut p, &mut m, buf, "/proc/sys/kernel/random/uuid");
    let b = read_text(&mut p, &mut m, buf, "/proc/sys/kernel/random/uuid");
    assert_ne!(a, b);
    let parts: Vec<&str> = a.trim_end().split('-').collect();
    assert_eq!(
        parts.iter().map(|s| s.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{a}"
    );
    assert!(
        parts[2].starts_with('4') && "89ab".contains(&parts[3][..1]),
        "{a}"
    );
    let boot = read_text(&mut p, &mut m, buf, "/proc/sys/kernel/random/boot_id");
    assert_eq!(
        read_text(&mut p, &mut m, buf, "/proc/sys/kernel/random/boot_id"),
        boot
    );
}
