//! System-call tracing (`kiln.trace`) and the missing-files report, as binary records for
//! the host ([`kiln_abi::record::Syscall`], [`kiln_abi::record::Missing`]).
//!
//! The kernel only copies: registers, the result, timestamps and the bytes behind pointer
//! arguments that [`kiln_abi::trace::captures`] names. Formatting in strace's style happens
//! on the host. A call that blocks is reported once as unfinished and once more when it
//! finally returns (the kernel runs a woken call again from its start; the re-runs in
//! between are not reported).

use alloc::vec::Vec;

use kiln_abi::record::{Blob, Missing, Phase, Syscall};
use kiln_abi::trace::{captures, Capture, MAX_BUF, MAX_SOCKADDR, MAX_STR};

use crate::machine::Machine;
use crate::process::{Outcome, Process};
use crate::small::{SmallMap, SmallSet};
use crate::sysno;

/// The result of a call that does not return (`exit`, a fatal signal): strace's `?`.
pub const NO_RETURN: i64 = i64::MIN;

/// Tracing state of the process.
#[derive(Debug, Default)]
pub struct Tracer {
    /// Blocked calls already reported as unfinished: thread -> (number, entry time).
    pending: SmallMap<u32, (u64, u64)>,
    /// Missing paths already reported.
    missing: SmallSet<Vec<u8>>,
}

/// What [`before`] saw of a call.
#[derive(Debug)]
pub struct Entry {
    start_ns: u64,
    inputs: Vec<Blob>,
}

/// Called before a traced call runs: the time and its input memory.
pub fn before(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Entry {
    let mut inputs = Vec::new();
    for c in captures(nr) {
        let (arg, data) = match *c {
            Capture::Str(i) => (i, read_str(p, m, a[usize::from(i)])),
            Capture::In { ptr, len } => (
                ptr,
                read(
                    p,
                    m,
                    a[usize::from(ptr)],
                    (a[usize::from(len)] as usize).min(MAX_BUF),
                ),
            ),
            Capture::InFixed { ptr, size } => {
                (ptr, read(p, m, a[usize::from(ptr)], usize::from(size)))
            }
            Capture::StrArray(i) => (i, read_str_array(p, m, a[usize::from(i)])),
            _ => continue,
        };
        if let Some(data) = data {
            inputs.push(Blob {
                arg,
                out: false,
                data,
            });
        }
    }
    Entry {
        start_ns: m.monotonic_ns(),
        inputs,
    }
}

/// Called when a traced call has an outcome: sends its record (or nothing, for the re-runs
/// of a call already reported as unfinished).
pub fn after(
    p: &mut Process,
    m: &mut dyn Machine,
    nr: u64,
    a: [u64; 6],
    out: &Outcome,
    entry: Entry,
) {
    let tid = m.thread().tid;
    let now = m.monotonic_ns();
    let (phase, start_ns, ret) = match out {
        Outcome::Block(_) => {
            if p.tracer.pending.contains_key(&tid) {
                return;
            }
            p.tracer.pending.insert(tid, (nr, entry.start_ns));
            (Phase::Unfinished, entry.start_ns, 0)
        }
        other => {
            let ret = match other {
                Outcome::Return(v) => *v,
                // `execve` returned into the new program: 0, as strace shows it.
                Outcome::Exec(_) => 0,
                _ => NO_RETURN,
            };
            match p.tracer.pending.remove(&tid) {
                Some((pending_nr, start)) if pending_nr == nr => (Phase::Resumed, start, ret),
                _ => (Phase::Complete, entry.start_ns, ret),
            }
        }
    };
    let mut blobs = entry.inputs;
    if ret >= 0 && phase != Phase::Unfinished {
        blobs.extend(outputs(p, m, nr, a, ret));
    }
    let record = Syscall {
        tid,
        phase,
        nr,
        args: a,
        ret,
        start_ns,
        end_ns: now,
        blobs,
    };
    m.record(&record.encode());
}

fn outputs(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6], ret: i64) -> Vec<Blob> {
    let mut out = Vec::new();
    for c in captures(nr) {
        let (arg, data) = match *c {
            Capture::Out { ptr } => (
                ptr,
                read(p, m, a[usize::from(ptr)], (ret as usize).min(MAX_BUF)),
            ),
            Capture::OutFixed { ptr, size } => {
                (ptr, read(p, m, a[usize::from(ptr)], usize::from(size)))
            }
            Capture::OutSockaddr { ptr, lenptr } => {
                let len = read(p, m, a[usize::from(lenptr)], 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes)
                    .unwrap_or(0) as usize;
                (ptr, read(p, m, a[usize::from(ptr)], len.min(MAX_SOCKADDR)))
            }
            _ => continue,
        };
        if let Some(data) = data {
            out.push(Blob {
                arg,
                out: true,
                data,
            });
        }
    }
    out
}

/// `len` bytes at `addr`, or `None` when they are not readable (or `addr` is null).
fn read(p: &mut Process, m: &mut dyn Machine, addr: u64, len: usize) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).ok()?;
    buf.resize(len, 0);
    p.vm.copy_from_user(m.pages(), addr, &mut buf).ok()?;
    Some(buf)
}

fn read_str(p: &mut Process, m: &mut dyn Machine, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    p.vm.read_cstr(m.pages(), addr, MAX_STR).ok()
}

/// A NULL-terminated array of strings at `addr`, as [`kiln_abi::trace::encode_str_array`]
/// keeps it (counted up to the first unreadable entry).
fn read_str_array(p: &mut Process, m: &mut dyn Machine, addr: u64) -> Option<Vec<u8>> {
    use kiln_abi::trace::{encode_str_array, MAX_ARRAY, MAX_ARRAY_COUNT, MAX_ARRAY_STR};
    if addr == 0 {
        return None;
    }
    let mut strings: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut count = 0;
    while count < MAX_ARRAY_COUNT {
        let Some(ptr) = read(p, m, addr + 8 * count as u64, 8) else {
            break;
        };
        let ptr = u64::from_le_bytes(ptr.try_into().ok()?);
        if ptr == 0 {
            break;
        }
        if strings.len() < MAX_ARRAY {
            let s = match p.vm.read_cstr(m.pages(), ptr, MAX_ARRAY_STR) {
                Ok(s) => (s, false),
                Err(_) => (read(p, m, ptr, MAX_ARRAY_STR)?, true),
            };
            strings.push(s);
        }
        count += 1;
    }
    let refs: Vec<(&[u8], bool)> = strings.iter().map(|(s, t)| (s.as_slice(), *t)).collect();
    Some(encode_str_array(count, &refs))
}

/// The calls whose `ENOENT` means "the image lacks this file", and their path argument.
fn path_arg(nr: u64) -> Option<usize> {
    match nr {
        sysno::OPEN | sysno::STAT | sysno::LSTAT | sysno::ACCESS | sysno::EXECVE => Some(0),
        sysno::OPENAT
        | sysno::NEWFSTATAT
        | sysno::FACCESSAT
        | sysno::FACCESSAT2
        | sysno::STATX
        | sysno::EXECVEAT => Some(1),
        _ => None,
    }
}

/// `AT_FDCWD`.
const AT_FDCWD: i64 = -100;

/// After every call: when a call that looks a file up failed with `ENOENT`, reports the
/// path once (made absolute) as a [`Missing`] record.
pub fn note_missing(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6], out: &Outcome) {
    if *out != Outcome::Return(-2) {
        return;
    }
    let Some(i) = path_arg(nr) else {
        return;
    };
    let Some(path) = read_str(p, m, a[i]) else {
        return;
    };
    let dirfd_is_cwd = i == 0 || a[0] as i64 as i32 as i64 == AT_FDCWD;
    let path = match path.first() {
        Some(b'/') => path,
        Some(_) if dirfd_is_cwd => {
            let mut abs = p.cwd.as_bytes().to_vec();
            if !abs.ends_with(b"/") {
                abs.push(b'/');
            }
            abs.extend_from_slice(&path);
            abs
        }
        _ => return,
    };
    if matches!(nr, sysno::EXECVE | sysno::EXECVEAT)
        && core::str::from_utf8(&path).is_ok_and(|s| p.vfs.find("/", s, true).is_ok())
    {
        // The program is there; what is missing is its dynamic loader, reported by
        // `execve` itself.
        return;
    }
    report_missing(p, m, path);
}

/// Reports `path` (absolute) once as a [`Missing`] record: a file the program needed and
/// the image lacks.
pub fn report_missing(p: &mut Process, m: &mut dyn Machine, path: Vec<u8>) {
    if p.tracer.missing.len() >= 1024 || !p.tracer.missing.insert(path.clone()) {
        return;
    }
    m.record(&Missing { path }.encode());
}
