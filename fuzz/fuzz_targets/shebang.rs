//! `execve`'s reading of `#!` lines (`os::syscall::exec::{shebang, resolve}`): whatever a
//! file's first bytes, the interpreter found is a non-empty word without blanks, and
//! following interpreters ends (in an ELF file, an error, or `ELOOP`) without panicking.
#![no_main]

use kiln_os::errno::Errno;
use kiln_os::syscall::exec::{resolve, shebang, MAX_INTERPRETERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((interp, arg)) = shebang(data) {
        assert!(!interp.is_empty());
        assert!(!interp.iter().any(|b| matches!(b, b' ' | b'\t' | b'\n')));
        if let Some(arg) = arg {
            assert!(!arg.is_empty() && !arg.contains(&b'\n'));
        }
    }
    // The file is its own interpreter: a script loops, an ELF file runs.
    let bytes = data;
    let find = |_: &str| Ok((String::from("/x"), bytes));
    match resolve(
        (String::from("/x"), bytes),
        b"/x",
        vec![b"x".to_vec()],
        &find,
    ) {
        Ok(r) => {
            assert!(bytes.starts_with(b"\x7fELF"));
            assert_eq!(r.argv, vec![b"x".to_vec()]);
        }
        Err(e) => assert!(
            [Errno::ENOEXEC, Errno::ELOOP, Errno::ENOENT].contains(&e),
            "{e:?}"
        ),
    }
    // An interpreter that is an ELF file: one level, the script's path in argv.
    let elf: &[u8] = b"\x7fELF";
    let find = |_: &str| Ok((String::from("/bin/sh"), elf));
    if let Ok(r) = resolve(
        (String::from("/s"), bytes),
        b"/s",
        vec![b"s".to_vec()],
        &find,
    ) {
        assert!(r.argv.len() <= 3 + MAX_INTERPRETERS);
    }
});
