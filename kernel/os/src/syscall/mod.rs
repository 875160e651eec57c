//! System-call dispatch: Linux numbers in, kernel services out.
//!
//! Each family module exposes `handle(process, machine, nr, args) -> Option<Outcome>` and
//! answers `None` for numbers it does not own. Whatever no family owns returns `-ENOSYS`
//! and is logged once by name.

pub mod exec;
pub mod fs;
pub mod mm;
pub mod net;
mod owners;
pub mod proc;
pub mod signal;
pub mod thread;
pub mod time;

use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::{Outcome, Process};
use crate::sysno;

/// `MSG_NOSIGNAL`: a socket send that must not raise `SIGPIPE`.
pub const MSG_NOSIGNAL: u64 = 0x4000;

/// A family of system calls: handles the numbers it owns, `None` for the others.
type Family = fn(&mut Process, &mut dyn Machine, u64, [u64; 6]) -> Option<Outcome>;

/// The families, in the order they are asked.
const FAMILIES: [Family; 8] = [
    thread::handle,
    fs::handle,
    mm::handle,
    proc::handle,
    signal::handle,
    time::handle,
    net::handle,
    exec::handle,
];

/// Runs system call `nr` with arguments `a` for the program.
///
/// The families are asked in turn (threads, files, memory, process, signals, time,
/// sockets, `execve`; after a number's first call, the one that owns it is asked directly: see
/// [`owners`]). A number none of them owns returns `-ENOSYS`; the first such call of each number is logged as
/// `unsupported syscall N (name)`. A write-family call failing with `EPIPE` raises
/// `SIGPIPE` (see [`signal::SignalState::send_sigpipe`]). With `p.trace` set, every call
/// is logged as `name(args) = result`.
pub fn dispatch(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Outcome {
    let traced = p.trace.then(|| crate::trace::before(p, m, nr, a));
    let owned = owners::owner(nr)
        .and_then(|f| FAMILIES[f](p, m, nr, a))
        .or_else(|| {
            FAMILIES.iter().enumerate().find_map(|(f, handle)| {
                let out = handle(p, m, nr, a)?;
                owners::learn(nr, f);
                Some(out)
            })
        });
    let out = match owned {
        Some(out) => out,
        None => {
            if p.unsupported_logged.insert(nr) {
                m.log(format_args!(
                    "unsupported syscall {nr} ({})",
                    sysno::name(nr).unwrap_or("unknown")
                ));
            }
            Outcome::Return(Errno::ENOSYS.as_return())
        }
    };
    // What this call changed in the network leaves now, and frames that arrived meanwhile
    // are taken in (see `end_of_call`). Not for a call about to wait: the run could wake its
    // thread before the thread waits, and that wake-up would be lost; the kernel runs the
    // stack after the thread waits instead.
    if !matches!(out, Outcome::Block(_)) {
        p.net.end_of_call(m);
    }
    let out = sigpipe(p, m, nr, a, out);
    crate::trace::note_missing(p, m, nr, a, &out);
    if let Some(entry) = traced {
        crate::trace::after(p, m, nr, a, &out, entry);
    }
    out
}

/// Raises `SIGPIPE` when write-family call `nr` failed with `EPIPE`: the outcome becomes
/// `Killed(13)` when the signal's default action applies.
fn sigpipe(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6], out: Outcome) -> Outcome {
    if out == Outcome::Return(Errno::EPIPE.as_return()) && raises_sigpipe(nr, a) {
        if let Some(sig) = p.signals.send_sigpipe(m) {
            return Outcome::Killed(sig);
        }
    }
    out
}

/// Whether system call `nr` failing with `EPIPE` raises `SIGPIPE`: the calls that write to
/// a pipe or stream socket, except socket sends flagged `MSG_NOSIGNAL`.
pub fn raises_sigpipe(nr: u64, a: [u64; 6]) -> bool {
    match nr {
        sysno::WRITE
        | sysno::WRITEV
        | sysno::PWRITE64
        | sysno::PWRITEV
        | sysno::PWRITEV2
        | sysno::SENDFILE
        | sysno::SPLICE
        | sysno::TEE
        | sysno::VMSPLICE => true,
        sysno::SENDTO | sysno::SENDMMSG => a[3] & MSG_NOSIGNAL == 0,
        sysno::SENDMSG => a[2] & MSG_NOSIGNAL == 0,
        _ => false,
    }
}

/// Reads `N` bytes of user memory at `addr` (`EFAULT` when unreadable).
pub(crate) fn read_user<const N: usize>(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
) -> KResult<[u8; N]> {
    let mut buf = [0; N];
    p.vm.copy_from_user(m.pages(), addr, &mut buf)?;
    Ok(buf)
}

/// Writes `data` to user memory at `addr` (`EFAULT` when not writable).
#[inline(never)]
pub(crate) fn write_user(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    data: &[u8],
) -> KResult<()> {
    p.vm.copy_to_user(m.pages(), addr, data)
}

/// The outcome of a call that returns a value or an error.
pub(crate) fn ret(r: KResult<i64>) -> Outcome {
    Outcome::Return(r.unwrap_or_else(Errno::as_return))
}

/// Where a blocking write `call` (number, descriptor, buffer, length) resumes: the bytes
/// earlier runs of the same call queued before they waited for room (0 for a new call).
pub(crate) fn write_resumes(m: &mut dyn Machine, call: [u64; 4]) -> u64 {
    match m.thread().partial_write.take() {
        Some(w) if w.call == call => w.done,
        _ => 0,
    }
}

/// Bytes in the buffers `iov` (address, length).
pub(crate) fn iov_len(iov: &[(u64, u64)]) -> u64 {
    iov.iter().map(|&(_, len)| len).sum()
}

/// The buffers `iov` without their first `skip` bytes: the buffers those cover whole are
/// left out, the one they end in starts after them.
pub(crate) fn iov_after(iov: &[(u64, u64)], mut skip: u64) -> alloc::vec::Vec<(u64, u64)> {
    let mut out = alloc::vec::Vec::with_capacity(iov.len());
    for &(base, len) in iov {
        if skip == 0 {
            out.push((base, len));
        } else if skip >= len {
            skip -= len;
        } else {
            out.push((base + skip, len - skip));
            skip = 0;
        }
    }
    out
}

/// The outcome of one run of a write `call` (of `total` bytes) to a pipe or stream socket
/// that resumed after `done` bytes and then queued `r` more: every byte queued, or an
/// error before any, ends
/// the call; otherwise (room ran out) it waits as `wait_for_room` says an `EAGAIN` would,
/// to run again and go on ([`crate::process::PartialWrite`]). A call that cannot wait (a
/// non-blocking descriptor), or would wait with a deadline (`SO_SNDTIMEO`), returns the
/// count so far: a wait that ends by its deadline does not run the call again, and would
/// leave the count behind for a later call with the same arguments.
pub(crate) fn write_settles(
    m: &mut dyn Machine,
    call: [u64; 4],
    total: u64,
    done: u64,
    r: KResult<i64>,
    wait_for_room: impl FnOnce(&mut dyn Machine) -> Outcome,
) -> Outcome {
    let queued = done + r.as_ref().map_or(0, |&n| n.max(0) as u64);
    match r {
        Err(e) if e != Errno::EAGAIN => {
            return if queued > 0 {
                Outcome::Return(queued as i64)
            } else {
                Outcome::Return(e.as_return())
            };
        }
        Ok(_) if queued >= total => return Outcome::Return(queued as i64),
        _ => {}
    }
    match wait_for_room(m) {
        Outcome::Block(mut w) if queued > 0 && w.deadline.is_none() => {
            w.on_timeout = queued as i64;
            m.thread().partial_write = Some(crate::process::PartialWrite { call, done: queued });
            Outcome::Block(w)
        }
        _ if queued > 0 => Outcome::Return(queued as i64),
        other => other,
    }
}

/// Helpers for handler tests: a process with a mapped buffer on a fake machine.
#[cfg(test)]
pub(crate) mod testutil {
    use alloc::string::String;
    use alloc::vec::Vec;

    use crate::fs::tar::tests::{finish, leak, push};
    use crate::fs::Vfs;
    use crate::machine::Prot;
    use crate::process::{Outcome, Process};
    use crate::testing::FakeMachine;
    use crate::vm::{AddressSpace, MAP_ANONYMOUS, MAP_PRIVATE};

    /// Size of the buffer [`setup`] maps.
    pub const BUF_LEN: u64 = 0x4000;

    /// A process whose root file system holds `files` (path without leading slash, data),
    /// a fake machine, and the address of a mapped read-write buffer of `BUF_LEN` bytes.
    pub fn setup_with(files: &[(&str, &[u8])]) -> (Process, FakeMachine, u64) {
        let mut archive = Vec::new();
        for (path, data) in files {
            push(&mut archive, path.as_bytes(), b'0', 0o644, b"", data);
        }
        finish(&mut archive);
        let mut p = Process::new(
            AddressSpace::new(0x10_0000..0x20_0000),
            Vfs::new(leak(archive), "/bin/prog", b"").unwrap(),
            String::from("/bin/prog"),
        );
        let mut m = FakeMachine::default();
        let buf =
            p.vm.mmap(
                &mut m.pages,
                0,
                BUF_LEN,
                Prot::RW,
                MAP_PRIVATE | MAP_ANONYMOUS,
            )
            .unwrap();
        (p, m, buf)
    }

    /// A process running `exe` from `vfs`, with `len` bytes of read-write memory mapped at
    /// `at` (page-aligned, above the first page), and a fake machine.
    pub fn process_with_memory(vfs: Vfs, exe: &str, at: u64, len: u64) -> (Process, FakeMachine) {
        let mut m = FakeMachine::default();
        let mut vm = AddressSpace::new(0..0x1000);
        vm.mmap(
            &mut m.pages,
            at,
            len,
            Prot::RW,
            MAP_PRIVATE | MAP_ANONYMOUS | crate::vm::MAP_FIXED,
        )
        .unwrap();
        (Process::new(vm, vfs, String::from(exe)), m)
    }

    /// [`setup_with`] an empty root file system.
    pub fn setup() -> (Process, FakeMachine, u64) {
        setup_with(&[])
    }

    /// Dispatches a call with up to six arguments.
    pub fn outcome(p: &mut Process, m: &mut FakeMachine, nr: u64, args: &[u64]) -> Outcome {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        super::dispatch(p, m, nr, a)
    }

    /// Dispatches a call that must return, and returns its value. A call that only waits
    /// for time (no channels) is finished by moving the fake clock to its deadline.
    pub fn call(p: &mut Process, m: &mut FakeMachine, nr: u64, args: &[u64]) -> i64 {
        match outcome(p, m, nr, args) {
            Outcome::Return(v) => v,
            Outcome::Block(w) if w.channels.is_empty() && w.deadline.is_some() => {
                m.now = m.now.max(w.deadline.unwrap());
                w.on_timeout
            }
            other => panic!("call {nr} ended the program: {other:?}"),
        }
    }

    /// Reads user memory.
    pub fn peek(p: &mut Process, m: &mut FakeMachine, addr: u64, len: usize) -> Vec<u8> {
        let mut b = alloc::vec![0; len];
        p.vm.copy_from_user(&mut m.pages, addr, &mut b).unwrap();
        b
    }

    /// Reads a little-endian `u64` from user memory.
    pub fn peek64(p: &mut Process, m: &mut FakeMachine, addr: u64) -> u64 {
        u64::from_le_bytes(peek(p, m, addr, 8).try_into().unwrap())
    }

    /// Writes user memory.
    pub fn poke(p: &mut Process, m: &mut FakeMachine, addr: u64, data: &[u8]) {
        p.vm.copy_to_user(&mut m.pages, addr, data).unwrap();
    }

    /// An address that is not mapped.
    pub const UNMAPPED: u64 = 0x5000_0000;
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn unsupported_calls_are_logged_once() {
        let (mut p, mut m, _) = setup();
        assert_eq!(call(&mut p, &mut m, sysno::RSEQ, &[]), -38);
        assert_eq!(call(&mut p, &mut m, sysno::RSEQ, &[]), -38);
        assert_eq!(call(&mut p, &mut m, 400, &[]), -38);
        assert_eq!(call(&mut p, &mut m, sysno::RT_SIGRETURN, &[]), -38);
        assert_eq!(
            m.log,
            [
                "unsupported syscall 334 (rseq)",
                "unsupported syscall 400 (unknown)",
                "unsupported syscall 15 (rt_sigreturn)"
            ]
        );
    }

    fn syscalls(m: &crate::testing::FakeMachine) -> Vec<kiln_abi::record::Syscall> {
        kiln_abi::record::parse_all(&m.records)
            .into_iter()
            .filter_map(|r| match r {
                kiln_abi::record::Record::Syscall(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tracing_sends_one_record_per_call_with_its_memory() {
        use kiln_abi::record::Phase;
        let (mut p, mut m, mem) = setup_with(&[("etc/hostname", b"kiln\n")]);
        call(&mut p, &mut m, sysno::GETPID, &[]);
        assert!(m.records.is_empty(), "tracing off sends nothing");
        p.trace = true;
        call(&mut p, &mut m, sysno::GETPID, &[]);
        poke(&mut p, &mut m, mem, b"/etc/hostname\0");
        let fd = call(&mut p, &mut m, sysno::OPEN, &[mem, 0]);
        let buf = mem + 0x100;
        call(&mut p, &mut m, sysno::READ, &[fd as u64, buf, 64]);
        assert_eq!(
            outcome(&mut p, &mut m, sysno::EXIT_GROUP, &[2]),
            Outcome::Exit(2)
        );
        let s = syscalls(&m);
        let names: Vec<u64> = s.iter().map(|s| s.nr).collect();
        assert_eq!(
            names,
            [sysno::GETPID, sysno::OPEN, sysno::READ, sysno::EXIT_GROUP]
        );
        assert!(s.iter().all(|s| s.phase == Phase::Complete && s.tid == 1));
        assert_eq!(s[0].ret, 1);
        assert_eq!(s[1].blob(0), Some(&b"/etc/hostname"[..]));
        assert!(s[2].ret > 0);
        assert_eq!(s[2].blob(1).map(|b| b.len()), Some(s[2].ret as usize));
        assert_eq!(s[3].ret, crate::trace::NO_RETURN);
    }

    #[test]
    fn blocked_calls_are_unfinished_then_resumed() {
        use kiln_abi::record::Phase;
        let (mut p, mut m, mem) = setup();
        // Another thread could write, so an empty pipe blocks.
        m.other_threads = 1;
        p.trace = true;
        let fds = mem;
        call(&mut p, &mut m, sysno::PIPE, &[fds]);
        let b = peek(&mut p, &mut m, fds, 8);
        let (r, w) = (
            u32::from_le_bytes(b[..4].try_into().unwrap()) as u64,
            u32::from_le_bytes(b[4..].try_into().unwrap()) as u64,
        );
        let buf = mem + 0x100;
        // Blocks twice (a spurious wake-up), then returns.
        for _ in 0..2 {
            assert!(matches!(
                outcome(&mut p, &mut m, sysno::READ, &[r, buf, 16]),
                Outcome::Block(_)
            ));
        }
        let msg = mem + 0x200;
        poke(&mut p, &mut m, msg, b"hi");
        // The other thread writes.
        m.thread.tid = 2;
        call(&mut p, &mut m, sysno::WRITE, &[w, msg, 2]);
        m.thread.tid = 1;
        assert_eq!(call(&mut p, &mut m, sysno::READ, &[r, buf, 16]), 2);
        let phases: Vec<(u64, Phase)> = syscalls(&m).iter().map(|s| (s.nr, s.phase)).collect();
        assert_eq!(
            phases,
            [
                (sysno::PIPE, Phase::Complete),
                (sysno::READ, Phase::Unfinished),
                (sysno::WRITE, Phase::Complete),
                (sysno::READ, Phase::Resumed),
            ]
        );
        assert_eq!(syscalls(&m)[3].blob(1), Some(&b"hi"[..]));
    }

    #[test]
    fn missing_files_are_reported_once_each() {
        let (mut p, mut m, mem) = setup_with(&[("etc/hostname", b"kiln\n")]);
        let (abs, rel, there) = (mem, mem + 0x100, mem + 0x200);
        poke(&mut p, &mut m, abs, b"/etc/ssl/cert.pem\0");
        poke(&mut p, &mut m, rel, b"data.txt\0");
        poke(&mut p, &mut m, there, b"/etc/hostname\0");
        for _ in 0..2 {
            call(&mut p, &mut m, sysno::OPEN, &[abs, 0]);
            call(&mut p, &mut m, sysno::OPENAT, &[(-100i64) as u64, rel, 0]);
        }
        call(&mut p, &mut m, sysno::OPEN, &[there, 0]);
        let missing: Vec<Vec<u8>> = kiln_abi::record::parse_all(&m.records)
            .into_iter()
            .filter_map(|r| match r {
                kiln_abi::record::Record::Missing(x) => Some(x.path),
                _ => None,
            })
            .collect();
        assert_eq!(
            missing,
            [b"/etc/ssl/cert.pem".to_vec(), b"/data.txt".to_vec()]
        );
    }

    #[test]
    fn epipe_raises_sigpipe() {
        let (mut p, mut m, _) = setup();
        let epipe = Outcome::Return(-32);
        let w = sysno::WRITE;
        assert_eq!(
            sigpipe(&mut p, &mut m, w, [0; 6], epipe.clone()),
            Outcome::Killed(13)
        );
        assert_eq!(
            sigpipe(
                &mut p,
                &mut m,
                sysno::SENDTO,
                [0, 0, 0, MSG_NOSIGNAL, 0, 0],
                epipe.clone()
            ),
            epipe
        );
        assert_eq!(
            sigpipe(&mut p, &mut m, sysno::READ, [0; 6], epipe.clone()),
            epipe
        );
        assert_eq!(
            sigpipe(&mut p, &mut m, w, [0; 6], Outcome::Return(5)),
            Outcome::Return(5)
        );
        p.signals
            .set_action(
                signal::SIGPIPE,
                signal::SigAction {
                    handler: signal::SIG_IGN,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(sigpipe(&mut p, &mut m, w, [0; 6], epipe.clone()), epipe);
        assert!(m.log.is_empty());
    }

    #[test]
    fn sigpipe_family() {
        assert!(raises_sigpipe(sysno::WRITE, [0; 6]));
        assert!(raises_sigpipe(sysno::WRITEV, [0; 6]));
        assert!(raises_sigpipe(sysno::PWRITE64, [0; 6]));
        assert!(raises_sigpipe(sysno::SENDTO, [0; 6]));
        assert!(!raises_sigpipe(
            sysno::SENDTO,
            [0, 0, 0, MSG_NOSIGNAL, 0, 0]
        ));
        assert!(raises_sigpipe(sysno::SENDMSG, [0; 6]));
        assert!(!raises_sigpipe(
            sysno::SENDMSG,
            [0, 0, MSG_NOSIGNAL, 0, 0, 0]
        ));
        assert!(!raises_sigpipe(
            sysno::SENDMMSG,
            [0, 0, 0, MSG_NOSIGNAL, 0, 0]
        ));
        assert!(!raises_sigpipe(sysno::READ, [0; 6]));
        assert!(!raises_sigpipe(sysno::CONNECT, [0; 6]));
    }
}
