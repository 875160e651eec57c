//! `run --trace`: strace for a unikernel. The kernel sends a record per system call on the
//! records channel; this module follows that file while the program runs and writes one
//! strace-style line per call ([`format`]), filtered like strace's `-e trace=` ([`Filter`]),
//! or the table of `strace -c` ([`Summary`]). It also turns the kernel's missing-file
//! records into a packaging hint.

pub mod format;

use kiln_abi::path::normalise;
use kiln_abi::record::{Phase, Record, Syscall};
use kiln_abi::sysno::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which calls a trace shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every call.
    All,
    /// The calls with these numbers.
    Only(Vec<u64>),
}

/// strace's classes of calls.
fn class(name: &str) -> Option<&'static [u64]> {
    Some(match name {
        "file" => &[
            OPEN, OPENAT, STAT, LSTAT, NEWFSTATAT, STATX, ACCESS, FACCESSAT, FACCESSAT2, READLINK,
            READLINKAT, EXECVE, EXECVEAT, CHDIR, MKDIR, MKDIRAT, RMDIR, UNLINK, UNLINKAT, RENAME,
            RENAMEAT, RENAMEAT2, LINK, SYMLINK, TRUNCATE, CHMOD, FCHMODAT,
        ],
        "network" => &[
            SOCKET,
            CONNECT,
            ACCEPT,
            ACCEPT4,
            SENDTO,
            RECVFROM,
            SENDMSG,
            RECVMSG,
            SHUTDOWN,
            BIND,
            LISTEN,
            GETSOCKNAME,
            GETPEERNAME,
            SOCKETPAIR,
            SETSOCKOPT,
            GETSOCKOPT,
            SENDMMSG,
            RECVMMSG,
        ],
        "memory" => &[
            BRK, MMAP, MUNMAP, MPROTECT, MREMAP, MADVISE, MSYNC, MINCORE, MLOCK,
        ],
        "signal" => &[
            RT_SIGACTION,
            RT_SIGPROCMASK,
            RT_SIGRETURN,
            RT_SIGSUSPEND,
            RT_SIGPENDING,
            RT_SIGTIMEDWAIT,
            RT_SIGQUEUEINFO,
            SIGALTSTACK,
            KILL,
            TKILL,
            TGKILL,
            PAUSE,
            SIGNALFD4,
        ],
        "process" => &[
            CLONE, CLONE3, FORK, VFORK, EXECVE, EXECVEAT, EXIT, EXIT_GROUP, WAIT4, WAITID, KILL,
            TKILL, TGKILL,
        ],
        _ => return None,
    })
}

/// The number of the call named `name`.
fn number(name: &str) -> Option<u64> {
    (0..512).find(|&nr| kiln_abi::sysno::name(nr) == Some(name))
}

impl Filter {
    /// Parses strace's `trace=` list: call names and the classes `file`, `network`,
    /// `memory`, `signal`, `process` (also written `%file`...), comma-separated; `all`.
    pub fn parse(spec: &str) -> Result<Filter, String> {
        let mut nrs = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "all" {
                return Ok(Filter::All);
            }
            let bare = item.strip_prefix('%').unwrap_or(item);
            if let Some(c) = class(bare) {
                nrs.extend_from_slice(c);
            } else if let Some(nr) = number(item) {
                nrs.push(nr);
            } else {
                return Err(format!(
                    "--trace: `{item}` is neither a system call nor a class (file, network, memory, signal, process)"
                ));
            }
        }
        if nrs.is_empty() {
            return Err("--trace: name system calls or classes, or `all` or `summary`".into());
        }
        nrs.sort_unstable();
        nrs.dedup();
        Ok(Filter::Only(nrs))
    }

    /// Whether call `nr` is shown.
    pub fn shows(&self, nr: u64) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(n) => n.binary_search(&nr).is_ok(),
        }
    }
}

/// What `--trace` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Lines for the calls the filter shows.
    Lines(Filter),
    /// The `strace -c` table at the end.
    Summary,
}

impl Mode {
    /// `--trace[=SPEC]`: `summary`, or a filter.
    pub fn parse(spec: &str) -> Result<Mode, String> {
        match spec {
            "summary" => Ok(Mode::Summary),
            s => Filter::parse(s).map(Mode::Lines),
        }
    }
}

/// Counts for strace's `-c` table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    calls: BTreeMap<u64, (u64, u64, u64)>,
}

impl Summary {
    /// Counts one finished call.
    pub fn add(&mut self, s: &Syscall) {
        if s.phase == Phase::Unfinished {
            return;
        }
        let e = self.calls.entry(s.nr).or_default();
        e.0 += 1;
        if (-4095..0).contains(&s.ret) {
            e.1 += 1;
        }
        e.2 += s.end_ns.saturating_sub(s.start_ns);
    }

    /// The table, as `strace -c` prints it.
    pub fn table(&self) -> String {
        let total_ns: u64 = self.calls.values().map(|c| c.2).sum();
        let mut rows: Vec<(&u64, &(u64, u64, u64))> = self.calls.iter().collect();
        rows.sort_by(|a, b| b.1 .2.cmp(&a.1 .2).then(b.1 .0.cmp(&a.1 .0)));
        let mut out = String::from(
            "% time     seconds  usecs/call     calls    errors syscall\n\
             ------ ----------- ----------- --------- --------- ----------------\n",
        );
        let pct = |ns: u64| {
            if total_ns == 0 {
                0.0
            } else {
                100.0 * ns as f64 / total_ns as f64
            }
        };
        for (nr, (calls, errors, ns)) in rows {
            let errors = if *errors == 0 {
                String::new()
            } else {
                errors.to_string()
            };
            out.push_str(&format!(
                "{:6.2} {:11.6} {:11} {:9} {:>9} {}\n",
                pct(*ns),
                *ns as f64 / 1e9,
                ns / 1000 / calls.max(&1),
                calls,
                errors,
                format::name(*nr)
            ));
        }
        let calls: u64 = self.calls.values().map(|c| c.0).sum();
        let errors: u64 = self.calls.values().map(|c| c.1).sum();
        out.push_str("------ ----------- ----------- --------- --------- ----------------\n");
        out.push_str(&format!(
            "100.00 {:11.6} {:11} {:9} {:>9} total\n",
            total_ns as f64 / 1e9,
            total_ns / 1000 / calls.max(1),
            calls,
            errors
        ));
        out
    }
}

/// Follows the records file of a running image and writes the trace.
pub struct Tracer {
    mode: Mode,
    time: bool,
    out: Box<dyn Write + Send>,
    summary: Summary,
}

impl Tracer {
    /// A tracer writing to `out`.
    pub fn new(mode: Mode, time: bool, out: Box<dyn Write + Send>) -> Tracer {
        Tracer {
            mode,
            time,
            out,
            summary: Summary::default(),
        }
    }

    /// Handles one record.
    pub fn feed(&mut self, r: &Record) {
        let Record::Syscall(s) = r else {
            return;
        };
        match &self.mode {
            Mode::Summary => self.summary.add(s),
            Mode::Lines(f) if f.shows(s.nr) => {
                let _ = writeln!(self.out, "{}", format::line(s, self.time));
                let _ = self.out.flush();
            }
            Mode::Lines(_) => {}
        }
    }

    /// Ends the trace (writes the summary table in summary mode).
    pub fn finish(mut self) {
        if self.mode == Mode::Summary {
            let _ = write!(self.out, "{}", self.summary.table());
        }
        let _ = self.out.flush();
    }
}

/// Follows `path` (the run's records file) until `done` is set and everything written is
/// read, feeding each whole record to `tracer`.
pub fn follow(
    path: &Path,
    done: Arc<AtomicBool>,
    mut tracer: Tracer,
) -> std::thread::JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut buf: Vec<u8> = Vec::new();
        let mut offset = 0usize;
        loop {
            let finished = done.load(Ordering::Acquire);
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.len() > offset {
                    buf.extend_from_slice(&bytes[offset..]);
                    offset = bytes.len();
                }
            }
            let mut used = 0;
            while let Ok((r, n)) = kiln_abi::record::parse(&buf[used..]) {
                tracer.feed(&r);
                used += n;
            }
            buf.drain(..used);
            if finished {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracer.finish();
    })
}

/// Whether `path` is one the dynamic loader tries as a matter of course and does without:
/// `/etc/ld.so.preload`, `/etc/ld.so.cache`, the hardware-capability subdirectories of its
/// search path (`glibc-hwcaps/x86-64-v3`, `tls`, `x86_64`) and libraries tried in one search
/// directory before the next. A library really missing fails with the loader's own message.
fn loader_probe(path: &str) -> bool {
    if path == "/etc/ld.so.preload" || path == "/etc/ld.so.cache" {
        return true;
    }
    let Some(rest) = crate::dynamic::DEFAULT_DIRS
        .iter()
        .find_map(|d| path.strip_prefix(d).and_then(|r| r.strip_prefix('/')))
    else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('/').collect();
    let last = parts.pop().unwrap_or("");
    let probe_dir =
        |d: &str| d == "glibc-hwcaps" || d == "tls" || d == "x86_64" || d.starts_with("x86-64-v");
    if parts.iter().all(|d| probe_dir(d)) {
        return probe_dir(last) || last.contains(".so");
    }
    false
}

/// Paths the packaging hint names when the list is cut short ([`missing_files`]).
pub const MISSING_SHOWN: usize = 8;

/// The packaging hint for the paths the program looked for and the image lacks (kernel
/// interfaces under /proc, /sys and /dev are left out, and /tmp, which the kernel provides
/// empty: `--file` cannot fill it): one line per path, in the order the program looked.
/// With `limit`, a line counting the paths left out, then the last `limit` (an interpreter
/// probes dozens of optional files on its way to the one it failed on, which comes last).
pub fn missing_files(records: &[u8], limit: Option<usize>) -> Vec<String> {
    let mut lines = missing_paths(records);
    if let Some(limit) = limit.filter(|&l| lines.len() > l) {
        let before = lines.len() - limit;
        lines.drain(..before);
        lines.insert(
            0,
            format!(
                "the program looked for {before} more path{} the image lacks before these \
                 (--verbose lists them all)",
                if before == 1 { "" } else { "s" }
            ),
        );
    }
    lines
}

fn missing_paths(records: &[u8]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    kiln_abi::record::parse_all(records)
        .into_iter()
        .filter_map(|r| match r {
            Record::Missing(m) => Some(normalise(&String::from_utf8_lossy(&m.path))),
            _ => None,
        })
        .filter(|p| seen.insert(p.clone()))
        .filter(|p| {
            !["/proc/", "/sys/", "/dev/", "/tmp/"]
                .iter()
                .any(|k| p.starts_with(k))
        })
        .filter(|p| !loader_probe(p))
        .map(|p| format!("the program looked for {p}, which the image lacks: add it with --file HOSTPATH:{p}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_abi::record::Missing;

    #[test]
    fn filters_take_names_and_classes() {
        let f = Filter::parse("openat,network").unwrap();
        assert!(f.shows(OPENAT) && f.shows(SOCKET) && f.shows(ACCEPT4));
        assert!(!f.shows(READ));
        let f = Filter::parse("%file").unwrap();
        assert!(f.shows(NEWFSTATAT) && !f.shows(WRITE));
        assert_eq!(Filter::parse("all").unwrap(), Filter::All);
        assert!(Filter::parse("opnat").unwrap_err().contains("`opnat`"));
        assert!(Filter::parse("").is_err());
        assert_eq!(Mode::parse("summary").unwrap(), Mode::Summary);
        assert!(matches!(Mode::parse("memory").unwrap(), Mode::Lines(_)));
    }

    #[test]
    fn summary_counts_calls_errors_and_time() {
        let mut s = Summary::default();
        let call = |nr: u64, ret: i64, ns: u64| Syscall {
            tid: 1,
            phase: Phase::Complete,
            nr,
            args: [0; 6],
            ret,
            start_ns: 0,
            end_ns: ns,
            blobs: vec![],
        };
        s.add(&call(READ, 5, 3000));
        s.add(&call(READ, -11, 1000));
        s.add(&call(WRITE, 5, 12000));
        let t = s.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("% time"));
        assert!(lines[2].ends_with(" write"), "{t}");
        assert!(lines[3].contains("        2         1 read"), "{t}");
        assert!(lines[5].contains("        3         1 total"), "{t}");
    }

    #[test]
    fn missing_paths_are_normalised_and_listed_once() {
        assert_eq!(normalise("/./config.toml"), "/config.toml");
        assert_eq!(normalise("/www/../etc//x"), "/etc/x");
        let mut bytes = Missing {
            path: b"/./a".to_vec(),
        }
        .encode();
        bytes.extend(
            Missing {
                path: b"/a".to_vec(),
            }
            .encode(),
        );
        assert_eq!(missing_files(&bytes, None).len(), 1);
    }

    #[test]
    fn a_long_missing_list_is_cut_short_and_counted() {
        let mut bytes = Vec::new();
        for i in 0..11 {
            let path = format!("/usr/lib/python3.11/m{i}.py");
            bytes.extend(
                Missing {
                    path: path.into_bytes(),
                }
                .encode(),
            );
        }
        let all = missing_files(&bytes, None);
        assert_eq!(all.len(), 11);
        let cut = missing_files(&bytes, Some(8));
        assert_eq!(
            cut[0],
            "the program looked for 3 more paths the image lacks before these (--verbose lists them all)"
        );
        assert_eq!(cut[1..], all[3..]);
        assert_eq!(missing_files(&bytes, Some(11)), all);
    }

    #[test]
    fn missing_files_leave_kernel_interfaces_out() {
        let mut bytes = Missing {
            path: b"/etc/ssl/certs/ca-certificates.crt".to_vec(),
        }
        .encode();
        for path in ["/sys/fs/cgroup/cpu.max", "/tmp/app.pid"] {
            bytes.extend(
                Missing {
                    path: path.as_bytes().to_vec(),
                }
                .encode(),
            );
        }
        assert_eq!(
            missing_files(&bytes, None),
            ["the program looked for /etc/ssl/certs/ca-certificates.crt, which the image lacks: add it with --file HOSTPATH:/etc/ssl/certs/ca-certificates.crt"]
        );
        assert!(loader_probe("/etc/ld.so.cache"));
        assert!(loader_probe(
            "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v2/libc.so.6"
        ));
        assert!(loader_probe("/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v2"));
        assert!(loader_probe("/lib/x86_64-linux-gnu/tls/x86_64/x86_64"));
        assert!(loader_probe("/usr/lib/libz.so.1"));
        assert!(!loader_probe("/usr/lib/python3.11/os.py"));
        assert!(!loader_probe("/etc/ssl/certs/ca-certificates.crt"));
        assert!(!loader_probe("/lib/x86_64-linux-gnu/gconv/gconv-modules"));
    }
}
