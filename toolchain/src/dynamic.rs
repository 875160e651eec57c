//! Dynamically linked programs: which files the dynamic loader will ask for, found the way it
//! finds them, without running anything on the host (no `ldd`).
//!
//! [`resolve`] reads the program's `PT_INTERP` and `DT_NEEDED` entries (goblin) and looks each
//! library up as glibc's loader does: in the `DT_RPATH` of the object and of the program (when
//! the object has no `DT_RUNPATH`), in its `DT_RUNPATH`, then in the loader's default
//! directories for x86_64 Debian ([`DEFAULT_DIRS`]). `$ORIGIN` (and `$LIB`, `$PLATFORM`) are
//! expanded. Libraries are followed recursively. There is no `/etc/ld.so.cache` in the image, so
//! the host's cache is not consulted either: a library that only the cache finds would be found
//! on the host and missed in the guest.
//!
//! glibc also loads modules at run time that no `DT_NEEDED` names: `libgcc_s.so.1` (thread
//! cancellation and `pthread_exit` unwind through it) and the NSS modules for `files` and `dns`
//! ([`GLIBC_RUNTIME`]); a program linked against `libc.so.6` gets those too, when the host has
//! them. `--lib NAME_OR_PATH` adds more ([`Resolver::extra`]).
//!
//! Every file is looked up under a root directory (`/` for real builds, a fabricated tree in
//! tests), and every path is an *image path*: the library lands in the image at the path the
//! loader asks for, with the host's symbolic links along the way recreated ([`host_entries`]).

use goblin::elf::header;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// The loader's default directories on x86_64 Debian, in search order (`ld.so --help`:
/// "system search path").
pub const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// Modules glibc opens at run time that no `DT_NEEDED` entry names: packed for every program
/// that links `libc.so.6`, when the host has them.
pub const GLIBC_RUNTIME: &[&str] = &["libgcc_s.so.1", "libnss_files.so.2", "libnss_dns.so.2"];

/// Why a file is in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The program's `PT_INTERP`.
    Interpreter,
    /// A `DT_NEEDED` entry of the object named here (an image path).
    Needed(String),
    /// One of [`GLIBC_RUNTIME`].
    Runtime,
    /// `--lib`.
    Requested,
    /// A `DT_NEEDED` entry of a file added with `--file` (its image path): see [`Module`].
    Module(String),
}

/// A dynamically linked file added to the image with `--file`: a library the program may
/// `dlopen` (the JDK's `lib/server/libjvm.so`, which needs `libstdc++`), a plugin, or a
/// program it may `execve`. Its libraries are packed too ([`Resolver::add_modules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Where it is in the image.
    pub path: String,
    /// The file on the host.
    pub host: PathBuf,
}

/// One file the loader will open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Where the loader looks for it in the image (the name it asks for).
    pub path: String,
    /// The real file on the host (symbolic links resolved).
    pub host: PathBuf,
    /// Why it is packed.
    pub reason: Reason,
}

/// Everything a dynamically linked program needs besides itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// The interpreter's path (`PT_INTERP`), `None` for a static program.
    pub interpreter: Option<String>,
    /// The interpreter and the libraries, in the order they were found.
    pub libraries: Vec<Library>,
}

/// Why the program's libraries cannot be packed. Each message names the file, who needs it
/// and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynError {
    /// A `DT_NEEDED` library (or `--lib NAME`) is nowhere in the search path.
    #[error("library {name}, needed by {needed_by}, was not found (searched {}); install the Debian package that has it (`apt-file search {name}`), or pass `--lib /PATH/TO/{name}` if it is elsewhere", searched.join(", "))]
    NotFound {
        /// The `DT_NEEDED` name.
        name: String,
        /// The object that needs it (image path).
        needed_by: String,
        /// The directories searched.
        searched: Vec<String>,
    },
    /// Only files for another architecture were found under the library's name.
    #[error("library {name}, needed by {needed_by}: {path} is {what}, not a 64-bit x86_64 library; install the amd64 package that has {name} (Debian: `apt-get install PACKAGE:amd64`)")]
    WrongArch {
        /// The `DT_NEEDED` name.
        name: String,
        /// The object that needs it.
        needed_by: String,
        /// The wrong file.
        path: String,
        /// What it is instead.
        what: String,
    },
    /// The interpreter is not a 64-bit x86_64 ELF.
    #[error("the program's interpreter {path} (PT_INTERP) is {what}: Kiln runs 64-bit x86_64 programs; pass a 64-bit x86_64 build of the program")]
    BadInterpreter {
        /// `PT_INTERP`.
        path: String,
        /// What it is instead.
        what: String,
    },
    /// The interpreter does not exist on the host.
    #[error("the program's interpreter {path} (PT_INTERP) does not exist on this machine; install the C library it was built for (Debian: libc6) or link the program statically")]
    NoInterpreter {
        /// `PT_INTERP`.
        path: String,
    },
    /// `--lib PATH` names no file.
    #[error("--lib {0}: no such file; pass a library's path or its name (such as libssl.so.3)")]
    NoSuchLib(String),
    /// A file could not be parsed as ELF.
    #[error("{path}: {why}; the file is damaged or not a library: reinstall its package")]
    Corrupt {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// Symbolic links loop.
    #[error("{0}: too many levels of symbolic links")]
    Loop(String),
}

/// What is wrong with a file that should be a 64-bit x86_64 ELF, or `None` when it is one.
fn arch_problem(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 20 || bytes[..4] != *b"\x7fELF" {
        return Some("not an ELF file".into());
    }
    if bytes[header::EI_CLASS] == header::ELFCLASS32 {
        return Some("a 32-bit ELF".into());
    }
    if bytes[header::EI_CLASS] != header::ELFCLASS64 || bytes[header::EI_DATA] != 1 {
        return Some("not a little-endian 64-bit ELF".into());
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if machine != header::EM_X86_64 {
        return Some(format!(
            "built for {} (e_machine {machine})",
            header::machine_to_str(machine)
        ));
    }
    None
}

/// What the loader reads from one object's dynamic section.
#[derive(Debug, Default)]
struct Dynamic {
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn dynamic_of(bytes: &[u8], path: &str) -> Result<(Option<String>, Dynamic), DynError> {
    if let Some(what) = arch_problem(bytes) {
        return Err(DynError::Corrupt {
            path: path.into(),
            why: what,
        });
    }
    crate::elf::headers(bytes).map_err(|e| DynError::Corrupt {
        path: path.into(),
        why: e.to_string(),
    })?;
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| DynError::Corrupt {
        path: path.into(),
        why: format!("ELF: {e}"),
    })?;
    let split = |v: &[&str]| -> Vec<String> {
        v.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    Ok((
        elf.interpreter.map(String::from),
        Dynamic {
            needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
            rpath: split(&elf.rpaths),
            runpath: split(&elf.runpaths),
        },
    ))
}

/// Joins an absolute image path and a relative or absolute one, removing `.` and `..`.
fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if rel.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((d, _)) => d,
    }
}

/// Expands the loader's dynamic string tokens in a search-path entry.
fn expand(entry: &str, origin: &str) -> String {
    let mut s = entry.to_string();
    for (token, value) in [
        ("$ORIGIN", origin),
        ("${ORIGIN}", origin),
        ("$LIB", "lib/x86_64-linux-gnu"),
        ("${LIB}", "lib/x86_64-linux-gnu"),
        ("$PLATFORM", "x86_64"),
        ("${PLATFORM}", "x86_64"),
    ] {
        s = s.replace(token, value);
    }
    join("/", &s)
}

/// Finds the libraries of one program under a root directory.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// The directory standing for `/` (the host's `/` for real builds).
    pub root: PathBuf,
    /// `--lib` entries: names searched like `DT_NEEDED`, or absolute paths.
    pub extra: Vec<String>,
}

/// An object whose dependencies are still to be looked up.
struct Pending {
    path: String,
    dynamic: Dynamic,
}

impl Resolver {
    /// A resolver for the host's own files.
    pub fn host(extra: Vec<String>) -> Resolver {
        Resolver {
            root: PathBuf::from("/"),
            extra,
        }
    }

    fn host_path(&self, image_path: &str) -> PathBuf {
        self.root.join(image_path.trim_start_matches('/'))
    }

    /// The file behind `image_path` with symbolic links resolved inside the root, as an
    /// image path; `None` when nothing is there.
    fn real(&self, image_path: &str) -> Result<Option<String>, DynError> {
        let mut todo: VecDeque<String> = image_path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        let mut cur = String::from("/");
        let mut links = 0;
        while let Some(part) = todo.pop_front() {
            let next = join(&cur, &part);
            let hp = self.host_path(&next);
            let Ok(meta) = std::fs::symlink_metadata(&hp) else {
                return Ok(None);
            };
            if meta.file_type().is_symlink() {
                links += 1;
                if links > 40 {
                    return Err(DynError::Loop(image_path.into()));
                }
                let target = std::fs::read_link(&hp).map_err(|_| DynError::Loop(next.clone()))?;
                let target = target.to_string_lossy();
                let resolved = join(&cur, &target);
                let mut rest: VecDeque<String> = resolved
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect();
                rest.extend(todo);
                todo = rest;
                cur = String::from("/");
            } else {
                cur = next;
            }
        }
        Ok(self.host_path(&cur).is_file().then_some(cur))
    }

    fn read(&self, image_path: &str) -> Result<Vec<u8>, DynError> {
        std::fs::read(self.host_path(image_path)).map_err(|e| DynError::Corrupt {
            path: image_path.into(),
            why: format!("could not read it: {e}"),
        })
    }

    /// Looks `name` up in `dirs`. `Ok(None)`: not found; a wrong-architecture file is
    /// remembered in `wrong` and skipped, as the loader does.
    fn search(
        &self,
        name: &str,
        dirs: &[String],
        wrong: &mut Option<(String, String)>,
    ) -> Result<Option<(String, String)>, DynError> {
        for d in dirs {
            let candidate = join(d, name);
            let Some(real) = self.real(&candidate)? else {
                continue;
            };
            let bytes = self.read(&real)?;
            match arch_problem(&bytes) {
                None => return Ok(Some((candidate, real))),
                Some(what) => {
                    wrong.get_or_insert((candidate, what));
                }
            }
        }
        Ok(None)
    }

    /// Resolves everything `program` (the ELF bytes of the program that will run at
    /// `program_path` in the image, from the host directory `program_dir`) needs.
    pub fn resolve(
        &self,
        program: &[u8],
        program_path: &str,
        program_dir: &Path,
    ) -> Result<Resolved, DynError> {
        let (interp, dynamic) = dynamic_of(program, program_path)?;
        let Some(interp) = interp else {
            return Ok(Resolved::default());
        };
        let mut out = Resolved {
            interpreter: Some(interp.clone()),
            libraries: Vec::new(),
        };
        let interp_real = self.real(&interp)?.ok_or_else(|| DynError::NoInterpreter {
            path: interp.clone(),
        })?;
        if let Some(what) = arch_problem(&self.read(&interp_real)?) {
            return Err(DynError::BadInterpreter { path: interp, what });
        }
        out.libraries.push(Library {
            path: interp.clone(),
            host: self.host_path(&interp_real),
            reason: Reason::Interpreter,
        });
        let mut seen: BTreeSet<String> = BTreeSet::new();
        seen.insert(interp.clone());
        if let Some(base) = interp.rsplit('/').next() {
            // The loader is also known by its soname (libc's DT_NEEDED names it so).
            seen.insert(base.to_string());
        }
        let program_dirs: Vec<String> = dynamic
            .rpath
            .iter()
            .chain(&dynamic.runpath)
            .cloned()
            .collect();
        let program_rpath = if dynamic.runpath.is_empty() {
            dynamic.rpath.clone()
        } else {
            Vec::new()
        };
        // `$ORIGIN` of the program: where it is on the host while searching; what is found
        // there goes into the image at the same place relative to the program's image path.
        let program_origin = parent(program_path).to_string();
        let host_origin = join("/", &program_dir.to_string_lossy());
        let mut queue = VecDeque::from([Pending {
            path: program_path.into(),
            dynamic,
        }]);
        let mut libc = false;
        let mut extras_queued = false;
        loop {
            let Some(obj) = queue.pop_front() else {
                if extras_queued {
                    break;
                }
                // Everything named is found: then what no DT_NEEDED names.
                extras_queued = true;
                self.add_extras(&mut out, &mut seen, &mut queue, libc)?;
                continue;
            };
            let origin = if obj.path == program_path {
                host_origin.clone()
            } else {
                parent(&obj.path).to_string()
            };
            let expand_all =
                |v: &[String]| -> Vec<String> { v.iter().map(|e| expand(e, &origin)).collect() };
            let mut rpath = if obj.dynamic.runpath.is_empty() {
                expand_all(&obj.dynamic.rpath)
            } else {
                Vec::new()
            };
            if obj.path != program_path {
                rpath.extend(program_rpath.iter().map(|e| expand(e, &host_origin)));
            }
            let runpath = expand_all(&obj.dynamic.runpath);
            for name in &obj.dynamic.needed {
                if name == "libc.so.6" {
                    libc = true;
                }
                if seen.contains(name) {
                    continue;
                }
                self.lookup(
                    &mut out,
                    &mut seen,
                    &mut queue,
                    name,
                    &obj.path,
                    &rpath,
                    &runpath,
                    Reason::Needed(obj.path.clone()),
                )?;
            }
        }
        // Libraries found through the program's `$ORIGIN` go to the same place relative to
        // the program's image path, where the loader will look for them.
        if host_origin != program_origin {
            let mut dirs: Vec<(String, String)> = Vec::new();
            for e in program_dirs
                .iter()
                .filter(|e| e.contains("$ORIGIN") || e.contains("${ORIGIN}"))
            {
                dirs.push((expand(e, &host_origin), expand(e, &program_origin)));
            }
            for lib in &mut out.libraries {
                let dir = parent(&lib.path).to_string();
                if let Some((_, image_dir)) = dirs.iter().find(|(h, _)| *h == dir) {
                    let name = lib.path.rsplit('/').next().unwrap_or("").to_string();
                    lib.path = join(image_dir, &name);
                }
            }
        }
        Ok(out)
    }

    /// Adds to `resolved` what `modules` need that neither it nor the modules themselves
    /// provide (a module found by name among the others is left to its `RUNPATH`, as the
    /// loader will find it there). A module may never be loaded, so a library that cannot
    /// be found is not an error: the returned notes name each one and who needs it.
    pub fn add_modules(&self, resolved: &mut Resolved, modules: &[Module]) -> Vec<String> {
        let mut notes = Vec::new();
        if resolved.interpreter.is_none() {
            return notes;
        }
        let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        let provided: BTreeSet<String> = modules.iter().map(|m| base(&m.path)).collect();
        let mut seen: BTreeSet<String> = resolved.libraries.iter().map(|l| base(&l.path)).collect();
        // Where `$ORIGIN` is for each module: its directory on the host.
        let mut origins: std::collections::BTreeMap<String, String> = Default::default();
        let mut queue = VecDeque::new();
        for m in modules {
            let Ok(bytes) = std::fs::read(&m.host) else {
                continue;
            };
            if arch_problem(&bytes).is_some() {
                continue;
            }
            let Ok((_, dynamic)) = dynamic_of(&bytes, &m.path) else {
                continue;
            };
            let host = join("/", &m.host.to_string_lossy());
            origins.insert(m.path.clone(), parent(&host).to_string());
            queue.push_back(Pending {
                path: m.path.clone(),
                dynamic,
            });
        }
        while let Some(obj) = queue.pop_front() {
            let origin = origins
                .get(&obj.path)
                .cloned()
                .unwrap_or_else(|| parent(&obj.path).to_string());
            let expand_all =
                |v: &[String]| -> Vec<String> { v.iter().map(|e| expand(e, &origin)).collect() };
            let rpath = if obj.dynamic.runpath.is_empty() {
                expand_all(&obj.dynamic.rpath)
            } else {
                Vec::new()
            };
            let runpath = expand_all(&obj.dynamic.runpath);
            for name in &obj.dynamic.needed {
                if seen.contains(name) || provided.contains(&base(name)) {
                    continue;
                }
                let reason = Reason::Module(obj.path.clone());
                let looked = self.lookup(
                    resolved, &mut seen, &mut queue, name, &obj.path, &rpath, &runpath, reason,
                );
                if let Err(e) = looked {
                    seen.insert(name.clone());
                    notes.push(format!(
                        "{e} (packed without it: only loading {} would fail)",
                        obj.path
                    ));
                }
            }
        }
        notes
    }

    /// Queues glibc's run-time modules (for a program that links `libc.so.6`, those the host
    /// has) and the `--lib` entries.
    fn add_extras(
        &self,
        out: &mut Resolved,
        seen: &mut BTreeSet<String>,
        queue: &mut VecDeque<Pending>,
        libc: bool,
    ) -> Result<(), DynError> {
        if libc {
            let dirs: Vec<String> = DEFAULT_DIRS.iter().map(|d| d.to_string()).collect();
            for name in GLIBC_RUNTIME {
                if seen.contains(*name) {
                    continue;
                }
                if let Some((path, real)) = self.search(name, &dirs, &mut None)? {
                    self.add(out, seen, queue, name, path, real, Reason::Runtime)?;
                }
            }
        }
        for e in &self.extra {
            if !e.contains('/') {
                self.lookup(out, seen, queue, e, "--lib", &[], &[], Reason::Requested)?;
                continue;
            }
            let path = join("/", e);
            let real = self
                .real(&path)?
                .ok_or_else(|| DynError::NoSuchLib(e.clone()))?;
            if let Some(what) = arch_problem(&self.read(&real)?) {
                return Err(DynError::WrongArch {
                    name: e.clone(),
                    needed_by: "--lib".into(),
                    path,
                    what,
                });
            }
            let name = path.rsplit('/').next().unwrap_or("").to_string();
            self.add(out, seen, queue, &name, path, real, Reason::Requested)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn lookup(
        &self,
        out: &mut Resolved,
        seen: &mut BTreeSet<String>,
        queue: &mut VecDeque<Pending>,
        name: &str,
        needed_by: &str,
        rpath: &[String],
        runpath: &[String],
        reason: Reason,
    ) -> Result<(), DynError> {
        let mut dirs: Vec<String> = Vec::new();
        if name.contains('/') {
            dirs.push(parent(&join("/", name)).to_string());
        } else {
            dirs.extend(rpath.iter().cloned());
            dirs.extend(runpath.iter().cloned());
            dirs.extend(DEFAULT_DIRS.iter().map(|d| d.to_string()));
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        let mut wrong = None;
        match self.search(base, &dirs, &mut wrong)? {
            Some((path, real)) => self.add(out, seen, queue, name, path, real, reason),
            None => Err(match wrong {
                Some((path, what)) => DynError::WrongArch {
                    name: name.into(),
                    needed_by: needed_by.into(),
                    path,
                    what,
                },
                None => DynError::NotFound {
                    name: name.into(),
                    needed_by: needed_by.into(),
                    searched: dirs,
                },
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        out: &mut Resolved,
        seen: &mut BTreeSet<String>,
        queue: &mut VecDeque<Pending>,
        name: &str,
        path: String,
        real: String,
        reason: Reason,
    ) -> Result<(), DynError> {
        seen.insert(name.to_string());
        if out.libraries.iter().any(|l| l.path == path) {
            return Ok(());
        }
        let bytes = self.read(&real)?;
        let (_, dynamic) = dynamic_of(&bytes, &path)?;
        out.libraries.push(Library {
            path: path.clone(),
            host: self.host_path(&real),
            reason,
        });
        queue.push_back(Pending { path, dynamic });
        Ok(())
    }
}

/// One entry of the root filesystem that makes a library's path resolve in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    /// A symbolic link (image path, target as on the host).
    Symlink(String, String),
    /// A regular file (image path, host file).
    File(String, PathBuf),
}

/// The entries that make `image_path` exist in the image as it does under `root`: the host's
/// symbolic links along the way (such as Debian's `/lib -> usr/lib`) and the file itself.
pub fn host_entries(root: &Path, image_path: &str) -> Result<Vec<Entry>, DynError> {
    let mut out = Vec::new();
    let mut todo: VecDeque<String> = image_path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let mut cur = String::from("/");
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        let next = join(&cur, &part);
        let hp = root.join(next.trim_start_matches('/'));
        let meta = std::fs::symlink_metadata(&hp).map_err(|e| DynError::Corrupt {
            path: next.clone(),
            why: format!("could not read it: {e}"),
        })?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Err(DynError::Loop(image_path.into()));
            }
            let target = std::fs::read_link(&hp)
                .map_err(|_| DynError::Loop(next.clone()))?
                .to_string_lossy()
                .into_owned();
            out.push(Entry::Symlink(next.clone(), target.clone()));
            let resolved = join(&cur, &target);
            let mut rest: VecDeque<String> = resolved
                .split('/')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
            rest.extend(todo);
            todo = rest;
            cur = String::from("/");
        } else if todo.is_empty() {
            out.push(Entry::File(next.clone(), hp));
        } else {
            cur = next;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn joins_and_expands() {
        assert_eq!(join("/usr/bin", "../lib"), "/usr/lib");
        assert_eq!(join("/usr/bin", "/lib64"), "/lib64");
        assert_eq!(join("/", ".."), "/");
        assert_eq!(expand("$ORIGIN/../lib", "/opt/app/bin"), "/opt/app/lib");
        assert_eq!(expand("${ORIGIN}", "/opt"), "/opt");
        assert_eq!(expand("/x/$LIB", "/"), "/x/lib/x86_64-linux-gnu");
        assert_eq!(parent("/bin/ls"), "/bin");
        assert_eq!(parent("/ls"), "/");
    }

    /// A fabricated root: Debian's merged /usr with a fake loader and libraries copied from
    /// the host's real ones (their contents only matter for the architecture check and their
    /// dynamic sections).
    fn fake_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib64")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("usr/lib64", r.join("lib64")).unwrap();
        let real = real_file("/lib64/ld-linux-x86-64.so.2");
        std::fs::copy(
            &real,
            r.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            r.join("usr/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        std::fs::copy(
            real_file("/lib/x86_64-linux-gnu/libc.so.6"),
            r.join("usr/lib/x86_64-linux-gnu/libc.so.6"),
        )
        .unwrap();
        t
    }

    fn real_file(p: &str) -> PathBuf {
        std::fs::canonicalize(p).unwrap()
    }

    fn names(r: &Resolved) -> Vec<&str> {
        r.libraries.iter().map(|l| l.path.as_str()).collect()
    }

    #[test]
    fn resolves_debian_ls() {
        let bytes = std::fs::read("/usr/bin/ls").unwrap();
        let r = Resolver::host(vec![])
            .resolve(&bytes, "/bin/ls", Path::new("/usr/bin"))
            .unwrap();
        assert_eq!(
            r.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        let n = names(&r);
        assert_eq!(n[0], "/lib64/ld-linux-x86-64.so.2");
        assert!(n.contains(&"/lib/x86_64-linux-gnu/libc.so.6"), "{n:?}");
        assert!(
            n.contains(&"/lib/x86_64-linux-gnu/libselinux.so.1"),
            "{n:?}"
        );
        // libselinux's own dependency (libpcre2-8), found recursively.
        assert!(n.iter().any(|p| p.contains("libpcre2-8.so.0")), "{n:?}");
        // glibc's run-time modules.
        assert!(n.contains(&"/lib/x86_64-linux-gnu/libgcc_s.so.1"), "{n:?}");
        assert!(r.libraries.iter().all(|l| l.host.is_file()));
        let libc = r
            .libraries
            .iter()
            .find(|l| l.path.ends_with("libc.so.6"))
            .unwrap();
        assert_eq!(libc.reason, Reason::Needed("/bin/ls".into()));
        assert!(!libc.host.is_symlink());
        // Static programs need nothing.
        let busybox = std::fs::read("/bin/busybox").unwrap();
        let r = Resolver::host(vec![])
            .resolve(&busybox, "/bin/busybox", Path::new("/bin"))
            .unwrap();
        assert_eq!(r, Resolved::default());
    }

    #[test]
    fn files_added_beside_the_program_get_their_libraries() {
        let true_ = std::fs::read("/usr/bin/true").unwrap();
        let res = Resolver::host(vec![]);
        let mut r = res
            .resolve(&true_, "/bin/true", Path::new("/usr/bin"))
            .unwrap();
        assert!(!names(&r).iter().any(|n| n.contains("libsqlite3")));
        // sqlite3 added as a tool the program may run: its libraries come along, found
        // recursively (libreadline's libtinfo), each saying who needs it.
        let tool = Module {
            path: "/opt/tools/sqlite3".into(),
            host: real_file("/usr/bin/sqlite3"),
        };
        let notes = res.add_modules(&mut r, std::slice::from_ref(&tool));
        assert!(notes.is_empty(), "{notes:?}");
        let n = names(&r);
        for lib in [
            "libsqlite3.so.0",
            "libreadline.so.8",
            "libtinfo.so.6",
            "libz.so.1",
        ] {
            assert!(n.iter().any(|p| p.ends_with(lib)), "{lib} in {n:?}");
        }
        let sqlite = r
            .libraries
            .iter()
            .find(|l| l.path.ends_with("libsqlite3.so.0"));
        assert_eq!(
            sqlite.map(|l| &l.reason),
            Some(&Reason::Module("/opt/tools/sqlite3".into()))
        );
        // A library that is itself among the added files is left to them.
        let mut r = res
            .resolve(&true_, "/bin/true", Path::new("/usr/bin"))
            .unwrap();
        let own = Module {
            path: "/opt/tools/lib/libsqlite3.so.0".into(),
            host: real_file("/usr/lib/x86_64-linux-gnu/libsqlite3.so.0"),
        };
        assert!(res.add_modules(&mut r, &[tool.clone(), own]).is_empty());
        assert!(
            !names(&r).iter().any(|n| n.ends_with("libsqlite3.so.0")),
            "{:?}",
            names(&r)
        );
        assert!(names(&r).iter().any(|n| n.ends_with("libreadline.so.8")));
        // One the machine lacks is a note, not an error: the file may never be loaded.
        let root = fake_root();
        let fake = Resolver {
            root: root.path().into(),
            extra: vec![],
        };
        let mut r = fake
            .resolve(&true_, "/bin/true", Path::new("/bin"))
            .unwrap();
        let before = r.libraries.len();
        let notes = fake.add_modules(&mut r, &[tool]);
        assert_eq!(r.libraries.len(), before);
        assert!(
            notes.iter().any(|n| n.contains("libsqlite3.so.0")
                && n.contains("/opt/tools/sqlite3")
                && n.contains("packed without it")),
            "{notes:?}"
        );
        // A static program has no loader to load anything.
        let busybox = std::fs::read("/bin/busybox").unwrap();
        let mut r = res
            .resolve(&busybox, "/bin/busybox", Path::new("/bin"))
            .unwrap();
        assert!(res.add_modules(&mut r, &[]).is_empty());
        assert_eq!(r, Resolved::default());
    }

    #[test]
    fn missing_and_wrong_libraries_are_clear_errors() {
        let root = fake_root();
        let ls = std::fs::read("/usr/bin/ls").unwrap();
        let res = Resolver {
            root: root.path().into(),
            extra: vec![],
        };
        let err = res.resolve(&ls, "/bin/ls", Path::new("/bin")).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, DynError::NotFound { name, needed_by, .. } if name == "libselinux.so.1" && needed_by == "/bin/ls"),
            "{msg}"
        );
        assert!(
            msg.contains("/usr/lib/x86_64-linux-gnu") && msg.contains("--lib"),
            "{msg}"
        );

        // A 32-bit library under the name: the loader skips it, and the error says why.
        let mut elf32 = std::fs::read("/usr/bin/ls").unwrap();
        elf32[4] = 1;
        std::fs::write(root.path().join("usr/lib/libselinux.so.1"), &elf32).unwrap();
        let err = res.resolve(&ls, "/bin/ls", Path::new("/bin")).unwrap_err();
        assert!(
            matches!(&err, DynError::WrongArch { path, .. } if path == "/lib/libselinux.so.1"),
            "{err}"
        );
        assert!(err.to_string().contains("32-bit"), "{err}");

        // A 32-bit interpreter.
        let ld = root
            .path()
            .join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
        let mut bytes = std::fs::read(&ld).unwrap();
        bytes[4] = 1;
        std::fs::write(&ld, &bytes).unwrap();
        let err = res.resolve(&ls, "/bin/ls", Path::new("/bin")).unwrap_err();
        assert!(matches!(err, DynError::BadInterpreter { .. }), "{err}");
        // No interpreter at all.
        std::fs::remove_file(&ld).unwrap();
        let err = res.resolve(&ls, "/bin/ls", Path::new("/bin")).unwrap_err();
        assert!(matches!(err, DynError::NoInterpreter { .. }), "{err}");
        assert!(err.to_string().contains("/lib64/ld-linux-x86-64.so.2"));
        // Garbage instead of a program.
        let err = res
            .resolve(b"\x7fELF\x02\x01", "/bin/x", Path::new("/"))
            .unwrap_err();
        assert!(matches!(err, DynError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn runpath_with_origin_and_extra_libs() {
        let root = fake_root();
        let r = root.path();
        // A program in /opt/app/bin whose RUNPATH is $ORIGIN/../lib, needing libc only
        // through that lib: fabricate by copying a real library that needs libc.
        std::fs::create_dir_all(r.join("opt/app/lib")).unwrap();
        std::fs::copy(
            real_file("/lib/x86_64-linux-gnu/libselinux.so.1"),
            r.join("opt/app/lib/libselinux.so.1"),
        )
        .unwrap();
        std::fs::copy(
            real_file("/lib/x86_64-linux-gnu/libpcre2-8.so.0"),
            r.join("usr/lib/x86_64-linux-gnu/libpcre2-8.so.0"),
        )
        .unwrap();
        let res = Resolver {
            root: r.into(),
            extra: vec![],
        };
        let dirs = vec![expand("$ORIGIN/../lib", "/opt/app/bin")];
        let mut out = Resolved::default();
        let mut seen = BTreeSet::new();
        let mut q = VecDeque::new();
        res.lookup(
            &mut out,
            &mut seen,
            &mut q,
            "libselinux.so.1",
            "/opt/app/bin/app",
            &[],
            &dirs,
            Reason::Needed("/opt/app/bin/app".into()),
        )
        .unwrap();
        assert_eq!(names(&out), ["/opt/app/lib/libselinux.so.1"]);
        // Its own needs are queued with its dynamic section.
        assert!(q[0].dynamic.needed.contains(&"libc.so.6".to_string()));

        // --lib by name and by path, packed with their dependencies.
        let ls = std::fs::read("/usr/bin/ls").unwrap();
        std::fs::copy(
            real_file("/lib/x86_64-linux-gnu/libselinux.so.1"),
            r.join("usr/lib/x86_64-linux-gnu/libselinux.so.1"),
        )
        .unwrap();
        let res = Resolver {
            root: r.into(),
            extra: vec!["/opt/app/lib/libselinux.so.1".into()],
        };
        let out = res.resolve(&ls, "/bin/ls", Path::new("/bin")).unwrap();
        assert!(names(&out).contains(&"/opt/app/lib/libselinux.so.1"));
        let res = Resolver {
            root: r.into(),
            extra: vec!["libnope.so.9".into()],
        };
        let err = res.resolve(&ls, "/bin/ls", Path::new("/bin")).unwrap_err();
        assert!(matches!(&err, DynError::NotFound { needed_by, .. } if needed_by == "--lib"));
        let res = Resolver {
            root: r.into(),
            extra: vec!["/nope/libx.so".into()],
        };
        assert!(matches!(
            res.resolve(&ls, "/bin/ls", Path::new("/bin")),
            Err(DynError::NoSuchLib(_))
        ));
    }

    #[test]
    fn host_entries_recreate_symlinks() {
        let root = fake_root();
        let e = host_entries(root.path(), "/lib64/ld-linux-x86-64.so.2").unwrap();
        assert_eq!(
            e,
            vec![
                Entry::Symlink("/lib64".into(), "usr/lib64".into()),
                Entry::Symlink(
                    "/usr/lib64/ld-linux-x86-64.so.2".into(),
                    "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into()
                ),
                Entry::Symlink("/lib".into(), "usr/lib".into()),
                Entry::File(
                    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
                    root.path()
                        .join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
                ),
            ]
        );
        symlink("loop", root.path().join("loop")).unwrap();
        assert!(matches!(
            host_entries(root.path(), "/loop/x"),
            Err(DynError::Loop(_))
        ));
    }
}
