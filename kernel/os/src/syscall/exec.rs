//! `execve` and `execveat`: the process becomes another program of the root filesystem.
//!
//! A Kiln image still runs one process: `execve` replaces its program in place, as on
//! Linux. Shell entry points that end in `exec "$@"`, wrappers such as `env`, `nice` or
//! `chroot`-less launchers, and programs that re-execute themselves through
//! `/proc/self/exe` work unchanged. Scripts starting with `#!` run under their interpreter
//! (up to [`MAX_INTERPRETERS`] deep, as Linux allows).
//!
//! Everything that can fail is checked before anything changes, so a failed `execve`
//! returns its error to the program still running: the file (`ENOENT`, `EACCES`,
//! `ENOEXEC`), its dynamic loader, and the arguments and environment (`E2BIG`). Then the
//! other threads end, the address space is replaced, close-on-exec descriptors are closed,
//! handled signals go back to their default action, and the calling thread starts the new
//! program with fresh registers as the main thread. Only running out of memory while the
//! new program's pages are mapped, past that point, ends the process (`SIGKILL`, logged).
//!
//! Programs run only from the root filesystem, whose bytes stay in memory and are mapped
//! in place; `/tmp` and volumes are mounted `noexec` (`EACCES`, as on Linux).

use alloc::string::String;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::loader::{self, LoadError};
use crate::machine::Machine;
use crate::process::{Outcome, Process, Start, Wait, EXEC_CHANNEL, PID};
use crate::stack::{StackError, MAX_ARG_STRLEN};
use crate::syscall::fs::{
    base, closed, path_or_empty, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW,
};
use crate::syscall::ret;
use crate::sysno;
use crate::vm::STACK_SIZE;

/// How many `#!` interpreters may stand in a row (Linux's `BINPRM_MAX_RECURSION`
/// allows a script's interpreter to be a script, four levels down).
pub const MAX_INTERPRETERS: usize = 4;
/// Bytes of a script's first line that count (Linux's `BINPRM_BUF_SIZE`).
pub const SHEBANG_MAX: usize = 256;
/// Arguments and environment together, pointers included, at most a quarter of the stack
/// (Linux's limit, which the loader checks again).
pub const ARGS_MAX: u64 = STACK_SIZE / 4;

/// Handles `execve` and `execveat`; `None` for other numbers.
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    let (dirfd, path, argv, envp, flags) = match nr {
        sysno::EXECVE => (AT_FDCWD, a[0], a[1], a[2], 0),
        sysno::EXECVEAT => (a[0] as i32, a[1], a[2], a[3], a[4]),
        _ => return None,
    };
    Some(execve(p, m, dirfd, path, argv, envp, flags).unwrap_or_else(ret_err))
}

fn ret_err(e: Errno) -> Outcome {
    ret(Err(e))
}

/// What `execve` will run: the program file (an ELF file, after any `#!` interpreters)
/// and the arguments it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// The ELF file's canonical path (`/proc/self/exe`).
    pub path: String,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// Arguments, with each interpreter's name, argument and script path in front.
    pub argv: Vec<Vec<u8>>,
}

/// Looks a program file up: its canonical path and bytes (see [`crate::fs::Vfs::executable`]).
pub type Find<'f, 'a> = &'f dyn Fn(&str) -> KResult<(String, &'a [u8])>;

/// Follows `#!` lines from the file `first` (its canonical path and bytes, started as
/// `name` with arguments `argv`) to an ELF file; `find` looks interpreters up. `ENOEXEC`
/// for a file that is neither, `ELOOP` beyond [`MAX_INTERPRETERS`].
pub fn resolve<'a>(
    first: (String, &'a [u8]),
    name: &[u8],
    mut argv: Vec<Vec<u8>>,
    find: Find<'_, 'a>,
) -> KResult<Resolved<'a>> {
    let (mut path, mut bytes) = first;
    let mut name = name.to_vec();
    for _ in 0..=MAX_INTERPRETERS {
        if bytes.starts_with(b"\x7fELF") {
            return Ok(Resolved { path, bytes, argv });
        }
        let (interp, arg) = shebang(bytes)?;
        // The interpreter gets its own name, its argument, then the script's path in place
        // of `argv[0]` (which the script never sees, as on Linux).
        let mut next = alloc::vec![interp.to_vec()];
        next.extend(arg.map(<[u8]>::to_vec));
        next.push(name);
        next.extend(argv.into_iter().skip(1));
        argv = next;
        let interp = core::str::from_utf8(interp).map_err(|_| Errno::ENOENT)?;
        (path, bytes) = find(interp)?;
        name = interp.as_bytes().to_vec();
    }
    Err(Errno::ELOOP)
}

/// A script's interpreter and its optional argument, from a first line `#!interp [arg]`
/// (the argument is the rest of the line, inner blanks kept, as Linux does). `ENOEXEC`
/// when `bytes` is no script or names no interpreter.
pub fn shebang(bytes: &[u8]) -> KResult<(&[u8], Option<&[u8]>)> {
    let line = bytes.strip_prefix(b"#!").ok_or(Errno::ENOEXEC)?;
    let line = &line[..line.len().min(SHEBANG_MAX - 2)];
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(end) => &line[..end],
        None => line,
    };
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = line.iter().position(|b| !blank(b)).ok_or(Errno::ENOEXEC)?;
    let line = &line[start..];
    let end = line.iter().rposition(|b| !blank(b)).map_or(0, |e| e + 1);
    let line = &line[..end];
    match line.iter().position(blank) {
        None => Ok((line, None)),
        Some(i) => {
            let rest = &line[i..];
            let skip = rest.iter().position(|b| !blank(b)).unwrap_or(rest.len());
            let arg = &rest[skip..];
            Ok((&line[..i], (!arg.is_empty()).then_some(arg)))
        }
    }
}

/// Reads a NULL-terminated array of string pointers (`argv`, `envp`; a null array is
/// empty), counting what they take of the stack against `budget` (`E2BIG` past it).
fn read_strings(
    p: &mut Process,
    m: &mut dyn Machine,
    mut at: u64,
    budget: &mut u64,
) -> KResult<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if at == 0 {
        return Ok(out);
    }
    loop {
        let ptr = u64::from_le_bytes(super::read_user::<8>(p, m, at)?);
        if ptr == 0 {
            return Ok(out);
        }
        let s =
            p.vm.read_cstr(m.pages(), ptr, MAX_ARG_STRLEN - 1)
                .map_err(|e| match e {
                    Errno::ENAMETOOLONG => Errno::E2BIG,
                    e => e,
                })?;
        // The string, its NUL and its pointer.
        let cost = s.len() as u64 + 1 + 8;
        *budget = budget.checked_sub(cost).ok_or(Errno::E2BIG)?;
        out.push(s);
        at = at.checked_add(8).ok_or(Errno::EFAULT)?;
    }
}

/// The errno for a program the loader refuses (logged too when it is a packaging problem
/// the program's own message would not explain).
fn load_errno(p: &mut Process, m: &mut dyn Machine, path: &str, e: &LoadError) -> Errno {
    match e {
        LoadError::Stack(StackError::TooBig { .. } | StackError::StringTooLong) => Errno::E2BIG,
        LoadError::Stack(_) => Errno::EINVAL,
        LoadError::NoInterpreter(interp) => {
            m.log(format_args!("execve {path}: {e}"));
            crate::trace::report_missing(p, m, interp.as_bytes().to_vec());
            Errno::ENOENT
        }
        LoadError::BadInterpreter(..) => {
            m.log(format_args!("execve {path}: {e}"));
            Errno::ELIBBAD
        }
        LoadError::OutOfMemory => Errno::ENOMEM,
        LoadError::Elf(_) | LoadError::StackOverlap | LoadError::VdsoOverlap => {
            m.log(format_args!("execve {path}: {e}"));
            Errno::ENOEXEC
        }
    }
}

fn execve(
    p: &mut Process,
    m: &mut dyn Machine,
    dirfd: i32,
    path_addr: u64,
    argv_addr: u64,
    envp_addr: u64,
    flags: u64,
) -> KResult<Outcome> {
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_or_empty(p, m, path_addr)?;
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    let first = if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        let f = p.files.get(dirfd)?;
        p.vfs.executable("/", &f.path, true)?
    } else {
        let base = base(p, dirfd, &path)?;
        p.vfs.executable(&base, &path, follow)?
    };
    let name = if path.is_empty() {
        first.0.clone()
    } else {
        path.clone()
    };
    let mut budget = ARGS_MAX;
    let mut argv = read_strings(p, m, argv_addr, &mut budget)?;
    let envp = read_strings(p, m, envp_addr, &mut budget)?;
    if argv.is_empty() {
        // Linux gives a program started with no arguments an empty `argv[0]`.
        argv.push(Vec::new());
    }
    let cwd = p.cwd.clone();
    let resolved = resolve(first, name.as_bytes(), argv, &|interp: &str| {
        p.vfs.executable(&cwd, interp, true)
    })?;

    let mut random = [0u8; 16];
    m.fill_random(&mut random);
    let mut interp_random = [0u8; 8];
    m.fill_random(&mut interp_random);
    let args = loader::Args {
        argv: &resolved.argv,
        envp: &envp,
        execfn: name.as_bytes(),
        random,
        hwcap: m.hwcap(),
        interp_random: u64::from_le_bytes(interp_random),
    };
    let vfs = &p.vfs;
    let find_file = |path: &str| -> Option<&'static [u8]> {
        vfs.executable("/", path, true).ok().map(|(_, bytes)| bytes)
    };
    let prepared = match loader::prepare(&p.vm, resolved.bytes, &args, &find_file) {
        Ok(prepared) => prepared,
        Err(e) => return Err(load_errno(p, m, &resolved.path, &e)),
    };

    // Past every check: the other threads end first (waiting, while some still run on
    // other CPUs, until they have), then the program is replaced.
    if !m.end_other_threads() {
        return Ok(Outcome::Block(Wait {
            channels: alloc::vec![EXEC_CHANNEL],
            deadline: None,
            on_timeout: 0,
            on_wake: None,
        }));
    }
    // The files outlive the program: what it wrote through shared mappings goes in first.
    super::mm::shared::flush_all(p, m);
    let loaded = match prepared.install(&mut p.vm, m.pages()) {
        Ok(l) => l,
        Err(e) => {
            m.log(format_args!(
                "execve {}: {e}; the old program is gone, so the process ends",
                resolved.path
            ));
            return Ok(Outcome::Killed(crate::syscall::signal::SIGKILL as u8));
        }
    };
    if let Some(clock) = m.clock_page() {
        // The page was just mapped; only running out of memory could fail, and then the
        // clock reads fall back to system calls.
        let _ = crate::vdso::publish(&mut p.vm, m.pages(), &clock);
    }
    let gone = p.files.close_on_exec();
    closed(m, gone);
    p.signals.reset_for_exec();
    p.timers.posix.clear();
    let t = m.thread();
    *t = crate::process::ThreadState {
        tid: PID as u32,
        signals: t.signals.after_exec(),
        ..Default::default()
    };
    p.proc.args = loaded.args.clone();
    p.proc.env = loaded.env.clone();
    // The name `ps` shows: the file the program was started by (a script's, a symbolic
    // link's own), at most 15 bytes, as Linux's `comm`.
    let base = name.rsplit('/').next().unwrap_or_default().as_bytes();
    p.proc.names.clear();
    p.proc.names.set(PID as u32, base);
    p.proc.robust_list = 0;
    p.vfs.set_exe(&resolved.path);
    // What the kernel keeps about the program (crash reports' bias, the profiler's
    // unwinding) switches first; then the host learns to symbolize from this file.
    m.program_replaced(resolved.bytes, loaded.load_bias);
    m.record(
        &kiln_abi::record::Exec {
            load_bias: loaded.load_bias,
            path: resolved.path.as_bytes().to_vec(),
        }
        .encode(),
    );
    // In the kernel's log (`run --verbose`): which program runs now.
    m.log(format_args!(
        "execve: {} replaces {}",
        resolved.path, p.exe_path
    ));
    p.exe_path = resolved.path;
    Ok(Outcome::Exec(Start {
        entry: loaded.entry,
        stack_pointer: loaded.stack_pointer,
        load_bias: loaded.load_bias,
    }))
}

#[cfg(test)]
mod tests;
