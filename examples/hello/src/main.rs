//! Kiln's smoke-test program. Each line it prints checks one thing the kernel provides:
//!
//! - `arg[i]=...` for every argument (including `argv[0]`);
//! - `GREETING=...` (or `GREETING is not set`);
//! - `file PATH: CONTENTS` for the file named by `--cat PATH` or env `HELLO_FILE`
//!   (default `/etc/hostname`), e.g. one given with `--file SRC:DEST`;
//! - `tmp: ok` after writing and reading back a file in `/tmp`;
//! - `hello: done` on stderr.
//!
//! Exit status: `--exit N` or env `EXIT_STATUS`, else 0 when every check worked, 1 otherwise.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    let _ = writeln!(out, "hello from kiln");
    for (i, a) in args.iter().enumerate() {
        let _ = writeln!(out, "arg[{i}]={a}");
    }
    match std::env::var("GREETING") {
        Ok(g) => {
            let _ = writeln!(out, "GREETING={g}");
        }
        Err(_) => {
            let _ = writeln!(out, "GREETING is not set");
        }
    }

    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let path = flag("--cat")
        .or_else(|| std::env::var("HELLO_FILE").ok())
        .unwrap_or_else(|| "/etc/hostname".into());
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let _ = writeln!(out, "file {path}: {}", s.trim_end());
        }
        Err(e) => {
            ok = false;
            eprintln!("file {path}: error: {e}");
        }
    }

    let tmp = "/tmp/hello.txt";
    let text = "written by hello\n";
    match std::fs::write(tmp, text).and_then(|_| std::fs::read_to_string(tmp)) {
        Ok(back) if back == text => {
            let _ = writeln!(out, "tmp: ok");
        }
        Ok(back) => {
            ok = false;
            eprintln!("tmp: read back {back:?}, expected {text:?}");
        }
        Err(e) => {
            ok = false;
            eprintln!("tmp: error: {e}");
        }
    }
    let _ = out.flush();
    eprintln!("hello: done");

    let status = flag("--exit")
        .or_else(|| std::env::var("EXIT_STATUS").ok())
        .map(|s| match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("bad exit status {s:?}");
                2
            }
        })
        .unwrap_or(if ok { 0 } else { 1 });
    std::process::exit(status);
}
