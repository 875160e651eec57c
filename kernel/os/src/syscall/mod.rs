//! System-call dispatch: Linux numbers in, kernel services out.
//!
//! Each family module exposes `handle(process, machine, nr, args) -> Option<Outcome>` and
//! answers `None` for numbers it does not own. Whatever no family owns returns `-ENOSYS`
//! and is logged once by name.

pub mod fs;
pub mod mm;
pub mod net;
pub mod proc;
pub mod signal;
pub mod thread;
pub mod time;

use core::fmt;

use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::{Outcome, Process};
use crate::sysno;

/// `MSG_NOSIGNAL`: a socket send that must not raise `SIGPIPE`.
pub const MSG_NOSIGNAL: u64 = 0x4000;

/// Runs system call `nr` with arguments `a` for the program.
///
/// The families are asked in turn (files, memory, process, signals, time). A number none
/// of them owns returns `-ENOSYS`; the first such call of each number is logged as
/// `unsupported syscall N (name)`. A write-family call failing with `EPIPE` raises
/// `SIGPIPE` (see [`signal::SignalState::send_sigpipe`]). With `p.trace` set, every call
/// is logged as `name(args) = result`.
pub fn dispatch(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Outcome {
    let owned = thread::handle(p, m, nr, a)
        .or_else(|| fs::handle(p, m, nr, a))
        .or_else(|| mm::handle(p, m, nr, a))
        .or_else(|| proc::handle(p, m, nr, a))
        .or_else(|| signal::handle(p, m, nr, a))
        .or_else(|| time::handle(p, m, nr, a))
        .or_else(|| net::handle(p, m, nr, a));
    // A socket closed by this call sends its FIN now.
    p.net.poll_if_dirty(m);
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
    let out = sigpipe(p, m, nr, a, out);
    if p.trace {
        m.log(format_args!("{}", Trace { nr, a, out: &out }));
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

/// One trace line: `name(arg, ...) = result`.
struct Trace<'a> {
    nr: u64,
    a: [u64; 6],
    out: &'a Outcome,
}

impl fmt::Display for Trace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match sysno::name(self.nr) {
            Some(name) => write!(f, "{name}(")?,
            None => write!(f, "syscall_{}(", self.nr)?,
        }
        let count = sysno::arg_count(self.nr).unwrap_or(6);
        for (i, &arg) in self.a.iter().take(count).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_value(f, arg as i64)?;
        }
        f.write_str(") = ")?;
        match self.out {
            Outcome::Return(v) if (-4095..0).contains(v) => {
                f.write_str("-")?;
                match Errno(-*v as i32).name() {
                    "E?" => write!(f, "{}", -v),
                    name => f.write_str(name),
                }
            }
            Outcome::Return(v) => write_value(f, *v),
            Outcome::Exit(status) => write!(f, "? (exit {status})"),
            Outcome::Killed(sig) => write!(f, "? (killed by signal {sig})"),
            Outcome::Block(w) => match w.deadline {
                Some(d) => write!(f, "? (waits, deadline {d} ns)"),
                None => write!(f, "? (waits)"),
            },
            Outcome::ThreadExit(status) => write!(f, "? (thread exit {status})"),
        }
    }
}

/// Small numbers in decimal, everything else (addresses, flags) in hex.
fn write_value(f: &mut fmt::Formatter<'_>, v: i64) -> fmt::Result {
    if (-4096..0x10000).contains(&v) {
        write!(f, "{v}")
    } else {
        write!(f, "{:#x}", v as u64)
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

/// Helpers for handler tests: a process with a mapped buffer on a fake machine.
#[cfg(test)]
pub(crate) mod testutil {
    use alloc::collections::BTreeSet;
    use alloc::string::String;
    use alloc::vec::Vec;

    use crate::fd::FdTable;
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
        let mut p = Process {
            vm: AddressSpace::new(0x10_0000..0x20_0000),
            files: FdTable::with_console(),
            vfs: Vfs::new(leak(archive), "/bin/prog", b"").unwrap(),
            cwd: String::from("/"),
            exe_path: String::from("/bin/prog"),
            signals: Default::default(),
            next_tid: 2,
            trace: false,
            unsupported_logged: BTreeSet::new(),
            net: Default::default(),
        };
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
    use alloc::format;
    use alloc::string::String;

    fn trace(nr: u64, a: [u64; 6], out: Outcome) -> String {
        format!("{}", Trace { nr, a, out: &out })
    }

    #[test]
    fn trace_lines() {
        assert_eq!(
            trace(
                sysno::WRITE,
                [1, 0x7fff_0000_1000, 12, 9, 9, 9],
                Outcome::Return(12)
            ),
            "write(1, 0x7fff00001000, 12) = 12"
        );
        assert_eq!(
            trace(sysno::GETPID, [5; 6], Outcome::Return(1)),
            "getpid() = 1"
        );
        assert_eq!(
            trace(
                sysno::OPENAT,
                [(-100i64) as u64, 0x40_0000, 0, 0, 0, 0],
                Outcome::Return(-2)
            ),
            "openat(-100, 0x400000, 0, 0) = -ENOENT"
        );
        assert_eq!(
            trace(sysno::EXIT_GROUP, [3, 0, 0, 0, 0, 0], Outcome::Exit(3)),
            "exit_group(3) = ? (exit 3)"
        );
        assert_eq!(
            trace(sysno::KILL, [1, 6, 0, 0, 0, 0], Outcome::Killed(6)),
            "kill(1, 6) = ? (killed by signal 6)"
        );
        assert_eq!(
            trace(400, [0; 6], Outcome::Return(-38)),
            "syscall_400(0, 0, 0, 0, 0, 0) = -ENOSYS"
        );
        assert_eq!(
            trace(sysno::MMAP, [0; 6], Outcome::Return(0x7f00_0000_0000)),
            "mmap(0, 0, 0, 0, 0, 0) = 0x7f0000000000"
        );
        assert_eq!(
            trace(sysno::READ, [0; 6], Outcome::Return(-4000)),
            "read(0, 0, 0) = -4000"
        );
    }

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

    #[test]
    fn tracing() {
        let (mut p, mut m, _) = setup();
        p.trace = true;
        call(&mut p, &mut m, sysno::GETPID, &[]);
        call(&mut p, &mut m, sysno::CLOCK_GETTIME, &[99, 0]);
        assert_eq!(
            outcome(&mut p, &mut m, sysno::EXIT_GROUP, &[2]),
            Outcome::Exit(2)
        );
        assert_eq!(
            m.log,
            [
                "getpid() = 1",
                "clock_gettime(99, 0) = -EINVAL",
                "exit_group(2) = ? (exit 2)"
            ]
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
