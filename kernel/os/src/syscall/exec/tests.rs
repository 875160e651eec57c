use super::*;
use crate::elf::build::{elf, Ph};
use crate::elf::{ET_EXEC, PF_R, PF_W, PF_X};
use crate::fd::{O_CLOEXEC, O_CREAT, O_RDONLY, O_RDWR};
use crate::fs::tar::tests::{finish, leak, push};
use crate::fs::Vfs;
use crate::process::ThreadState;
use crate::syscall::signal::{Disposition, SigAction, SIGTERM, SIGUSR1, SIG_IGN};
use crate::testing::FakeMachine;

const SCRATCH: u64 = 0x10_0000;
const SCRATCH_LEN: u64 = 0x10_0000;
const BASE: u64 = 0x40_0000;

/// A static program: headers, one code page, one data page.
fn program() -> Vec<u8> {
    let phs = [
        Ph::load(PF_R, 0, BASE, 0x300, 0x300),
        Ph::load(PF_R | PF_X, 0x1000, BASE + 0x1000, 0x10, 0x10),
        Ph::load(PF_R | PF_W, 0x2000, BASE + 0x2000, 0x20, 0x100),
    ];
    elf(ET_EXEC, BASE + 0x1000, &phs, 0x2020)
}

fn rootfs() -> &'static [u8] {
    let mut a = Vec::new();
    push(&mut a, b"./", b'5', 0o755, b"", b"");
    push(&mut a, b"bin/", b'5', 0o755, b"", b"");
    push(&mut a, b"bin/prog", b'0', 0o755, b"", &program());
    push(&mut a, b"bin/link", b'2', 0o777, b"prog", b"");
    push(
        &mut a,
        b"bin/script",
        b'0',
        0o755,
        b"",
        b"#!/bin/prog -x\necho\n",
    );
    push(&mut a, b"bin/nested", b'0', 0o755, b"", b"#! /bin/script\n");
    push(&mut a, b"bin/loop", b'0', 0o755, b"", b"#!/bin/loop\n");
    push(&mut a, b"bin/noexec", b'0', 0o644, b"", &program());
    push(&mut a, b"bin/text", b'0', 0o755, b"", b"just text\n");
    push(
        &mut a,
        b"bin/nointerp",
        b'0',
        0o755,
        b"",
        b"#!/bin/missing\n",
    );
    finish(&mut a);
    leak(a)
}

struct T {
    p: Process,
    m: FakeMachine,
    next: u64,
}

impl T {
    fn new() -> T {
        let vfs = Vfs::new(rootfs(), "/bin/app", b"\x7fELF").unwrap();
        let (p, m) =
            crate::syscall::testutil::process_with_memory(vfs, "/bin/app", SCRATCH, SCRATCH_LEN);
        T {
            p,
            m,
            next: SCRATCH,
        }
    }

    fn alloc(&mut self, n: u64) -> u64 {
        let a = self.next;
        self.next += n.div_ceil(16) * 16;
        a
    }

    fn put(&mut self, bytes: &[u8]) -> u64 {
        let a = self.alloc(bytes.len() as u64);
        self.p.vm.copy_to_user(&mut self.m.pages, a, bytes).unwrap();
        a
    }

    fn cstr(&mut self, s: &str) -> u64 {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(&b)
    }

    /// A NULL-terminated array of strings.
    fn strings(&mut self, items: &[&str]) -> u64 {
        let ptrs: Vec<u64> = items.iter().map(|s| self.cstr(s)).collect();
        let mut b: Vec<u8> = ptrs.iter().flat_map(|p| p.to_le_bytes()).collect();
        b.extend_from_slice(&[0; 8]);
        self.put(&b)
    }

    fn exec(&mut self, path: &str, argv: &[&str], envp: &[&str]) -> Outcome {
        let path = self.cstr(path);
        let argv = self.strings(argv);
        let envp = self.strings(envp);
        handle(
            &mut self.p,
            &mut self.m,
            sysno::EXECVE,
            [path, argv, envp, 0, 0, 0],
        )
        .expect("owned")
    }

    fn open(&mut self, path: &str, flags: u32) -> i32 {
        let path = self.cstr(path);
        let a = [AT_FDCWD as u64, path, u64::from(flags), 0, 0, 0];
        match crate::syscall::fs::handle(&mut self.p, &mut self.m, sysno::OPENAT, a) {
            Some(Outcome::Return(fd)) if fd >= 0 => fd as i32,
            other => panic!("open: {other:?}"),
        }
    }

    fn err(&mut self, path: &str, argv: &[&str]) -> Errno {
        match self.exec(path, argv, &[]) {
            Outcome::Return(v) if v < 0 => Errno(-v as i32),
            other => panic!("{path}: {other:?}"),
        }
    }

    fn read(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = alloc::vec![0u8; len];
        self.p
            .vm
            .copy_from_user(&mut self.m.pages, addr, &mut b)
            .unwrap();
        b
    }

    fn word(&mut self, addr: u64) -> u64 {
        u64::from_le_bytes(self.read(addr, 8).try_into().unwrap())
    }

    /// The strings a NULL-terminated pointer array at `at` of the new program points to.
    fn strings_at(&mut self, mut at: u64) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let ptr = self.word(at);
            if ptr == 0 {
                return out;
            }
            let s = self.p.vm.read_cstr(&mut self.m.pages, ptr, 4096).unwrap();
            out.push(String::from_utf8(s).unwrap());
            at += 8;
        }
    }

    /// The new program's `argv` and `envp`, from its initial stack.
    fn started_with(&mut self, start: &Start) -> (Vec<String>, Vec<String>) {
        let sp = start.stack_pointer;
        let argc = self.word(sp) as usize;
        let argv = self.strings_at(sp + 8);
        assert_eq!(argv.len(), argc);
        let envp = self.strings_at(sp + 8 + 8 * (argc as u64 + 1));
        (argv, envp)
    }
}

fn started(out: Outcome) -> Start {
    match out {
        Outcome::Exec(s) => s,
        other => panic!("not started: {other:?}"),
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| String::from(*s)).collect()
}

#[test]
fn a_first_line_names_the_interpreter_and_one_argument() {
    assert_eq!(shebang(b"#!/bin/sh\necho"), Ok((&b"/bin/sh"[..], None)));
    assert_eq!(
        shebang(b"#! /usr/bin/env  python3 -u \r\n"),
        Ok((&b"/usr/bin/env"[..], Some(&b"python3 -u"[..])))
    );
    assert_eq!(
        shebang(b"#!\t/bin/busybox\tsh"),
        Ok((&b"/bin/busybox"[..], Some(&b"sh"[..])))
    );
    assert_eq!(shebang(b"#!   \nx"), Err(Errno::ENOEXEC));
    assert_eq!(shebang(b"#"), Err(Errno::ENOEXEC));
    assert_eq!(shebang(b"\x7fELF"), Err(Errno::ENOEXEC));
    // Only the first 256 bytes count, as Linux reads them.
    let mut long = b"#!/bin/sh ".to_vec();
    long.extend(core::iter::repeat_n(b'a', 400));
    let (_, arg) = shebang(&long).unwrap();
    assert_eq!(arg.unwrap().len(), SHEBANG_MAX - 2 - "/bin/sh ".len());
}

#[test]
fn the_program_replaces_the_old_one_with_its_arguments_and_environment() {
    let mut t = T::new();
    let s = started(t.exec("/bin/prog", &["prog", "a b", ""], &["K=v", "EMPTY="]));
    assert_eq!(s.entry, BASE + 0x1000);
    assert_eq!(s.load_bias, 0);
    let (argv, envp) = t.started_with(&s);
    assert_eq!(argv, strs(&["prog", "a b", ""]));
    assert_eq!(envp, strs(&["K=v", "EMPTY="]));
    // The old program's memory is gone; the new one's is there.
    let mut b = [0u8; 1];
    assert!(t
        .p
        .vm
        .copy_from_user(&mut t.m.pages, SCRATCH, &mut b)
        .is_err());
    assert_eq!(t.read(BASE + 0x2000, 4), program()[0x2000..0x2004].to_vec());
    assert_eq!(t.p.exe_path, "/bin/prog");
    assert!(t
        .m
        .log
        .iter()
        .any(|l| l == "execve: /bin/prog replaces /bin/app"));
    let exe = t.p.vfs.find("/", "/proc/self/exe", false).unwrap();
    assert_eq!(exe.symlink_target(), Some("/bin/prog"));
    // `/proc/self/cmdline` reads the new arguments.
    let cmdline = t.p.proc.args.clone();
    assert_eq!(
        t.read(cmdline.start, (cmdline.end - cmdline.start) as usize),
        b"prog\0a b\0\0".to_vec()
    );
}

#[test]
fn a_symbolic_link_runs_its_target_and_a_relative_path_runs_from_the_working_directory() {
    let mut t = T::new();
    started(t.exec("/bin/link", &["link"], &[]));
    assert_eq!(t.p.exe_path, "/bin/prog");
    assert_eq!(t.p.proc.comm(""), b"link");
    let mut t = T::new();
    t.p.cwd = "/bin".into();
    let s = started(t.exec("./prog", &["x"], &[]));
    assert_eq!(t.started_with(&s).0, strs(&["x"]));
}

#[test]
fn no_arguments_give_an_empty_argv0() {
    let mut t = T::new();
    let path = t.cstr("/bin/prog");
    let s = started(handle(&mut t.p, &mut t.m, sysno::EXECVE, [path, 0, 0, 0, 0, 0]).unwrap());
    assert_eq!(t.started_with(&s), (strs(&[""]), Vec::new()));
}

#[test]
fn a_script_runs_under_its_interpreter_with_the_script_path_in_place_of_argv0() {
    let mut t = T::new();
    let s = started(t.exec("/bin/script", &["whatever", "one", "two"], &[]));
    assert_eq!(
        t.started_with(&s).0,
        strs(&["/bin/prog", "-x", "/bin/script", "one", "two"])
    );
    // /proc/self/exe is the interpreter, as on Linux, and the name is the script's.
    assert_eq!(t.p.exe_path, "/bin/prog");
    assert_eq!(t.p.proc.comm(""), b"script");

    // A script whose interpreter is a script.
    let mut t = T::new();
    let s = started(t.exec("/bin/nested", &["n", "arg"], &[]));
    assert_eq!(
        t.started_with(&s).0,
        strs(&["/bin/prog", "-x", "/bin/script", "/bin/nested", "arg"])
    );
}

#[test]
fn what_cannot_run_is_an_error_and_the_old_program_goes_on() {
    let mut t = T::new();
    let fd = t.p.files.fds().count();
    assert_eq!(t.err("/bin/none", &["x"]), Errno::ENOENT);
    assert_eq!(t.err("", &["x"]), Errno::ENOENT);
    assert_eq!(t.err("/bin", &["x"]), Errno::EACCES);
    assert_eq!(t.err("/bin/noexec", &["x"]), Errno::EACCES);
    assert_eq!(t.err("/dev/null", &["x"]), Errno::EACCES);
    assert_eq!(t.err("/bin/text", &["x"]), Errno::ENOEXEC);
    assert_eq!(t.err("/bin/loop", &["x"]), Errno::ELOOP);
    assert_eq!(t.err("/bin/nointerp", &["x"]), Errno::ENOENT);
    assert_eq!(t.err("/bin/prog/x", &["x"]), Errno::ENOTDIR);
    // A program in /tmp (noexec, as the mount table says).
    let now = 0;
    t.p.vfs
        .open("/", "/tmp/prog", O_CREAT | O_RDWR, 0o755, now)
        .unwrap();
    assert_eq!(t.err("/tmp/prog", &["x"]), Errno::EACCES);
    assert_eq!(
        t.p.vfs.access("/", "/tmp/prog", 1, true),
        Err(Errno::EACCES)
    );
    assert_eq!(t.p.vfs.access("/", "/bin/prog", 1, true), Ok(()));
    // Bad pointers.
    let path = t.cstr("/bin/prog");
    let bad = handle(&mut t.p, &mut t.m, sysno::EXECVE, [path, 8, 0, 0, 0, 0]);
    assert_eq!(bad, Some(Outcome::Return(Errno::EFAULT.as_return())));
    let bad = handle(
        &mut t.p,
        &mut t.m,
        sysno::EXECVEAT,
        [AT_FDCWD as u64, path, 0, 0, 0x8, 0],
    );
    assert_eq!(bad, Some(Outcome::Return(Errno::EINVAL.as_return())));
    // Nothing changed: the old memory, files and name are still there.
    assert_eq!(t.read(path, 9), b"/bin/prog".to_vec());
    assert_eq!(t.p.files.fds().count(), fd);
    assert_eq!(t.p.exe_path, "/bin/app");
}

#[test]
fn arguments_beyond_a_quarter_of_the_stack_are_e2big() {
    let mut t = T::new();
    let path = t.cstr("/bin/prog");
    let big = t.cstr(&"x".repeat(100_000));
    // `n` pointers to the same 100,000-byte string.
    let array = |t: &mut T, n: usize| {
        let mut b: Vec<u8> = core::iter::repeat_n(big.to_le_bytes(), n)
            .flatten()
            .collect();
        b.extend_from_slice(&[0; 8]);
        t.put(&b)
    };
    let too_many = array(&mut t, 21);
    let out = handle(
        &mut t.p,
        &mut t.m,
        sysno::EXECVE,
        [path, too_many, 0, 0, 0, 0],
    );
    assert_eq!(out, Some(ret(Err(Errno::E2BIG))));
    // The environment counts too.
    let half = array(&mut t, 11);
    let out = handle(
        &mut t.p,
        &mut t.m,
        sysno::EXECVE,
        [path, half, half, 0, 0, 0],
    );
    assert_eq!(out, Some(ret(Err(Errno::E2BIG))));
    let huge = "y".repeat(MAX_ARG_STRLEN + 1);
    assert_eq!(
        t.exec("/bin/prog", &["p", &huge], &[]),
        ret(Err(Errno::E2BIG))
    );
    // Within the limit (2 MiB) it runs.
    let many = array(&mut t, 20);
    let out = handle(&mut t.p, &mut t.m, sysno::EXECVE, [path, many, 0, 0, 0, 0]);
    started(out.unwrap());
}

#[test]
fn close_on_exec_descriptors_close_and_the_others_stay() {
    let mut t = T::new();
    let keep = t.open("/bin/prog", O_RDONLY);
    let gone = t.open("/bin/prog", O_RDONLY | O_CLOEXEC);
    started(t.exec("/bin/prog", &["p"], &[]));
    assert!(t.p.files.get(keep).is_ok());
    assert_eq!(t.p.files.get(gone).err(), Some(Errno::EBADF));
    assert!(t.p.files.get(1).is_ok());
}

#[test]
fn handlers_go_back_to_their_default_and_ignored_signals_stay_ignored() {
    let mut t = T::new();
    let handler = SigAction {
        handler: 0x1234,
        flags: 0x0400_0000,
        ..SigAction::default()
    };
    t.p.signals.set_action(SIGUSR1, handler).unwrap();
    let ignore = SigAction {
        handler: SIG_IGN,
        mask: 0xff,
        ..SigAction::default()
    };
    t.p.signals.set_action(SIGTERM, ignore).unwrap();
    t.m.thread.signals.set_mask(1 << 9);
    t.m.thread.fs_base = 0x7000;
    t.m.thread.clear_child_tid = 0x8000;
    started(t.exec("/bin/prog", &["p"], &[]));
    assert_eq!(t.p.signals.disposition(SIGUSR1), Disposition::Default);
    assert_eq!(t.p.signals.disposition(SIGTERM), Disposition::Ignore);
    assert_eq!(t.p.signals.action(SIGTERM).unwrap().mask, 0);
    // The mask stays; the thread's TLS and exit futex are the old program's and go.
    assert_eq!(t.m.thread.signals.mask(), 1 << 9);
    assert_eq!(t.m.thread.fs_base, 0);
    assert_eq!(t.m.thread.clear_child_tid, 0);
}

#[test]
fn other_threads_end_and_the_caller_becomes_the_main_thread() {
    let mut t = T::new();
    t.m.thread.tid = 7;
    t.m.others.insert(
        1,
        ThreadState {
            tid: 1,
            ..Default::default()
        },
    );
    t.m.others_running = 1;
    // A thread still running on another CPU: the call waits for it to end.
    let out = t.exec("/bin/prog", &["p"], &[]);
    assert_eq!(
        out,
        Outcome::Block(Wait {
            channels: alloc::vec![EXEC_CHANNEL],
            deadline: None,
            on_timeout: 0,
            on_wake: None,
        })
    );
    assert_eq!(t.p.exe_path, "/bin/app");
    // Once it has, the call (run again) replaces the program.
    t.m.others_running = 0;
    started(t.exec("/bin/prog", &["p"], &[]));
    assert_eq!(t.m.thread.tid, PID as u32);
    assert!(t.m.others.is_empty());
}

#[test]
fn execveat_runs_an_open_file_with_at_empty_path() {
    let mut t = T::new();
    let fd = t.open("/bin/prog", O_RDONLY);
    let empty = t.cstr("");
    let argv = t.strings(&["fexec"]);
    let out = handle(
        &mut t.p,
        &mut t.m,
        sysno::EXECVEAT,
        [fd as u64, empty, argv, 0, AT_EMPTY_PATH, 0],
    )
    .unwrap();
    started(out);
    assert_eq!(t.p.exe_path, "/bin/prog");
    // Without the flag an empty path is ENOENT; a symbolic link with NOFOLLOW is ELOOP.
    let mut t = T::new();
    let empty = t.cstr("");
    let out = handle(
        &mut t.p,
        &mut t.m,
        sysno::EXECVEAT,
        [AT_FDCWD as u64, empty, 0, 0, 0, 0],
    );
    assert_eq!(out, Some(ret(Err(Errno::ENOENT))));
    let link = t.cstr("/bin/link");
    let out = handle(
        &mut t.p,
        &mut t.m,
        sysno::EXECVEAT,
        [AT_FDCWD as u64, link, 0, 0, AT_SYMLINK_NOFOLLOW, 0],
    );
    assert_eq!(out, Some(ret(Err(Errno::ELOOP))));
}

#[test]
fn a_missing_dynamic_loader_is_reported_as_the_missing_file() {
    let mut t = T::new();
    // The loader's own checks are the loader's tests; here: the report names the loader.
    let e = LoadError::NoInterpreter("/lib/ld.so".into());
    assert_eq!(
        load_errno(&mut t.p, &mut t.m, "/bin/dyn", &e),
        Errno::ENOENT
    );
    assert!(t.m.log.iter().any(|l| l.contains("/lib/ld.so")));
    let records = kiln_abi::record::parse_all(&t.m.records);
    assert!(records.iter().any(|r| matches!(
        r,
        kiln_abi::record::Record::Missing(m) if m.path == b"/lib/ld.so"
    )));
}
