//! `build-image`: program + root filesystem + kernel -> one image file.

use crate::app::{self, App, AppSource};
use crate::options::FileSpec;
use crate::{link, rootfs, Layout};
use anyhow::{anyhow, Context};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Everything `build-image` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// Where the program comes from.
    pub source: AppSource,
    /// `--rootfs DIR`.
    pub rootfs_dir: Option<PathBuf>,
    /// `--file SRC:DEST`.
    pub files: Vec<FileSpec>,
    /// `--lib NAME_OR_PATH`: more libraries for a dynamically linked program, beyond those it
    /// names ([`crate::dynamic`]).
    pub libs: Vec<String>,
    /// `--dynamic`: link a Rust or C program dynamically (see [`app::build_linked`]).
    pub dynamic: bool,
    /// `--env K=V`: baked-in environment.
    pub env: Vec<(String, String)>,
    /// `--arg A`: baked-in arguments.
    pub args: Vec<String>,
    /// `-o OUT`; `target/kiln/images/<name>.elf` when `None`.
    pub output: Option<PathBuf>,
    /// Whether the kernel gets its network stack.
    pub net: NetChoice,
    /// Whether the kernel gets the program profiler (`--with-profiler`, or `run --profile`):
    /// left out otherwise, as it is about 25 KB of the kernel that only `--profile` uses.
    pub profiler: bool,
    /// Whether the kernel gets host volumes (`--with-volumes`, or `run -v`): left out
    /// otherwise (about 33 KB of the kernel).
    pub volumes: bool,
}

/// Which kernel an image gets: with the network stack (smoltcp, virtio-net) or without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetChoice {
    /// Without it when the program's symbol table shows it cannot open a socket; with it
    /// otherwise (including programs without a symbol table).
    #[default]
    Auto,
    /// `--no-net`: without it, whatever the program.
    Off,
}

/// What the program's symbol table says about its use of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetUse {
    /// It has a socket-creating function (the name of the first found).
    Sockets(String),
    /// It has a symbol table and no socket-creating function.
    NoSockets,
    /// No symbol table (a stripped program) or not an ELF: nothing can be told.
    Unknown,
    /// Dynamically linked: its libraries, and those it loads with `dlopen`, may create
    /// sockets whatever its own symbols say.
    Dynamic,
}

/// Whether a symbol's name is a function that creates a socket: C libraries' `socket` (glibc's
/// internal names too), Go's `syscall.Socket`/`net.sysSocket`. `socketpair` makes only
/// `AF_UNIX` sockets, which the kernel serves without its network stack.
fn creates_sockets(name: &str) -> bool {
    matches!(
        name,
        "socket" | "__socket" | "__libc_socket" | "__GI___socket" | "__sys_socket"
    ) || [".socket", ".Socket", ".sysSocket"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Reads the program's symbol table for socket functions (see [`NetUse`]).
pub fn network_use(program: &[u8]) -> NetUse {
    let Ok(elf) = goblin::elf::Elf::parse(program) else {
        return NetUse::Unknown;
    };
    if elf.interpreter.is_some() {
        return NetUse::Dynamic;
    }
    if elf.syms.is_empty() {
        return NetUse::Unknown;
    }
    for sym in elf.syms.iter() {
        if let Some(name) = elf.strtab.get_at(sym.st_name) {
            if creates_sockets(name) {
                return NetUse::Sockets(name.to_string());
            }
        }
    }
    NetUse::NoSockets
}

/// Whether the kernel in the PVH image `image` has the network stack, from the features its
/// provenance records; `None` when it has no provenance (or is not a PVH image).
pub fn kernel_has_network(image: &[u8]) -> Option<bool> {
    let (prov, _) = crate::provenance::read(image).ok()?;
    Some(prov.kernel.features.iter().any(|f| f == "net"))
}

/// The kernel variant for `program` under `choice`: `(with the network stack, why)`.
pub fn choose_net(choice: NetChoice, program: &[u8]) -> (bool, String) {
    match (choice, network_use(program)) {
        (NetChoice::Off, _) => (false, "without the network stack (--no-net)".into()),
        (NetChoice::Auto, NetUse::Sockets(f)) => (
            true,
            format!("with the network stack (the program calls `{f}`)"),
        ),
        (NetChoice::Auto, NetUse::NoSockets) => (
            false,
            "without the network stack (the program's symbol table has no socket functions)"
                .into(),
        ),
        (NetChoice::Auto, NetUse::Dynamic) => (
            true,
            "with the network stack (the program is dynamically linked: its libraries may use sockets; --no-net leaves it out)"
                .into(),
        ),
        (NetChoice::Auto, NetUse::Unknown) => (
            true,
            "with the network stack (the program has no symbol table to tell; --no-net leaves it out)"
                .into(),
        ),
    }
}

/// What [`build_image`] says about the kernel's optional parts other than the network
/// stack: which are in (asked for) and how to get those that are not.
pub fn optional_parts_note(v: link::KernelVariant) -> String {
    [
        (
            v.profile,
            "the program profiler",
            "--with-profiler, or run --profile, puts it in",
        ),
        (
            v.volumes,
            "host volumes",
            "--with-volumes, or run -v, puts them in",
        ),
    ]
    .iter()
    .map(|(on, what, how)| {
        if *on {
            format!("with {what} (asked for)")
        } else {
            format!("without {what} ({how})")
        }
    })
    .collect::<Vec<_>>()
    .join("; ")
}

/// Rewrites the recorded kernel build command (`cargo build --release ...`, see
/// [`crate::provenance`]) into the one that built variant `v`.
fn variant_flags(flags: &mut Vec<String>, v: link::KernelVariant) {
    if flags.len() >= 3 && flags[..3] == ["cargo", "build", "--release"] {
        let cargo = std::iter::once("cargo".to_string());
        flags.splice(0..3, cargo.chain(link::kernel_build_args(v)));
    }
}

/// A written image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The program inside.
    pub app: App,
    /// Where the image was written.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Assembles the payload and links it with the kernel ELF bytes (no building, no I/O besides
/// reading the program and rootfs sources). Notes about the rootfs go to stderr. The image has
/// an empty provenance part; [`assemble_with`] adds one.
pub fn assemble(kernel: &[u8], app: &App, req: &BuildRequest) -> anyhow::Result<Vec<u8>> {
    assemble_with(kernel, app, req, None)
}

/// [`assemble`], storing `provenance` (completed with the configuration and the rootfs hash,
/// then sealed with the image hash, see [`crate::provenance`]) in the payload.
pub fn assemble_with(
    kernel: &[u8],
    app: &App,
    req: &BuildRequest,
    provenance: Option<&crate::provenance::Provenance>,
) -> anyhow::Result<Vec<u8>> {
    let program =
        std::fs::read(&app.elf).with_context(|| format!("could not read {}", app.elf.display()))?;
    let exe = crate::app::program_path(&req.source, &app.name);
    let libraries = libraries(app, &exe, &program, &req.libs, &req.files)?;
    let mut files = req.files.clone();
    files.extend(glibc_locale(&libraries, &files));
    let (tar, notes) = rootfs::build(&rootfs::RootfsSpec {
        dir: req.rootfs_dir.clone(),
        files,
        app_name: app.name.clone(),
        program_path: exe.clone(),
        libraries: libraries.clone(),
    })?;
    for n in notes {
        crate::note!("{n}");
    }
    let config = link::baked_config(&exe, &req.args, &req.env).to_cmdline();
    let Some(prov) = provenance else {
        let payload = kiln_abi::payload::build(&program, &tar, &config);
        return link::link(kernel, &payload).map_err(|e| anyhow!("{e}"));
    };
    let mut prov = prov.clone();
    prov.config = config.clone();
    prov.rootfs_sha256 = sha256_hex(&tar);
    prov.add_libraries(&libraries)?;
    let payload =
        kiln_abi::payload::build_with_provenance(&program, &tar, &config, &prov.to_json());
    let mut image = link::link(kernel, &payload).map_err(|e| anyhow!("{e}"))?;
    crate::provenance::seal(&mut image)?;
    Ok(image)
}

/// Where glibc finds the `C.UTF-8` locale, which Debian always has.
pub const C_UTF8_LOCALE: &str = "/usr/lib/locale/C.utf8";

/// For a program linked against glibc's `libc.so.6`: the host's `C.UTF-8` locale (400 KB),
/// unless `files` already put something under `/usr/lib/locale`. Without it `setlocale`
/// with `LANG=C.UTF-8` fails quietly and text is handled as bytes (`gawk`'s `length`,
/// regular expressions), and Python, which asks for it at start, cannot coerce to UTF-8.
fn glibc_locale(libraries: &[crate::dynamic::Library], files: &[FileSpec]) -> Option<FileSpec> {
    let libc = libraries.iter().any(|l| l.path.ends_with("/libc.so.6"));
    let given = files
        .iter()
        .any(|f| f.dest == "/usr/lib/locale" || f.dest.starts_with("/usr/lib/locale/"));
    let src = PathBuf::from(C_UTF8_LOCALE);
    (libc && !given && src.join("LC_CTYPE").is_file()).then(|| FileSpec {
        src,
        dest: C_UTF8_LOCALE.into(),
    })
}

/// The interpreter and libraries a dynamically linked program needs (none for a static one),
/// found on this machine ([`crate::dynamic`]) for the program at `exe` in the image, with
/// what the dynamically linked files among `files` need ([`modules`]). `--lib` is refused
/// for a static program.
pub fn libraries(
    app: &App,
    exe: &str,
    program: &[u8],
    libs: &[String],
    files: &[FileSpec],
) -> anyhow::Result<Vec<crate::dynamic::Library>> {
    let dir = std::fs::canonicalize(&app.elf)
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"));
    let resolver = crate::dynamic::Resolver::host(libs.to_vec());
    let mut resolved = resolver
        .resolve(program, exe, &dir)
        .map_err(|e| anyhow!("{}: {e}", app.elf.display()))?;
    let before = resolved.libraries.len();
    for note in resolver.add_modules(&mut resolved, &modules(files)) {
        crate::note!("{note}");
    }
    let added = resolved.libraries.len() - before;
    if added > 0 {
        crate::note!("packed {added} more libraries that files added with --file need");
    }
    if resolved.interpreter.is_none() && !libs.is_empty() {
        anyhow::bail!(
            "--lib {}: {} is statically linked, so no dynamic loader would load a library; drop --lib (or use --file to add the file)",
            libs[0],
            app.elf.display()
        );
    }
    Ok(resolved.libraries)
}

/// The dynamically linked ELF files among `files` (directories walked; symbolic links not
/// followed), at their image paths.
pub fn modules(files: &[FileSpec]) -> Vec<crate::dynamic::Module> {
    fn walk(host: &Path, image: &str, out: &mut Vec<crate::dynamic::Module>) {
        let Ok(meta) = std::fs::symlink_metadata(host) else {
            return;
        };
        if meta.is_dir() {
            let Ok(dir) = std::fs::read_dir(host) else {
                return;
            };
            let mut names: Vec<_> = dir.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for n in names {
                let child = format!("{}/{}", image.trim_end_matches('/'), n.to_string_lossy());
                walk(&host.join(&n), &child, out);
            }
        } else if meta.is_file() && is_dynamic_elf(host) {
            out.push(crate::dynamic::Module {
                path: image.to_string(),
                host: host.to_path_buf(),
            });
        }
    }
    let mut out = Vec::new();
    for f in files {
        walk(&f.src, &f.dest, &mut out);
    }
    out
}

/// Whether the file at `path` is an ELF object with a dynamic section (read only as far as
/// its magic number for any other file).
fn is_dynamic_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok();
    if !ok || magic != *b"\x7fELF" {
        return false;
    }
    std::fs::read(path)
        .ok()
        .and_then(|b| {
            goblin::elf::Elf::parse(&b)
                .ok()
                .map(|e| e.dynamic.is_some())
        })
        .unwrap_or(false)
}

/// Builds the program and the kernel, links them and writes the image.
pub fn build_image(layout: &Layout, req: &BuildRequest) -> anyhow::Result<BuiltImage> {
    let app = app::build_linked(layout, &req.source, req.dynamic)?;
    let program =
        std::fs::read(&app.elf).with_context(|| format!("could not read {}", app.elf.display()))?;
    let (net, why) = choose_net(req.net, &program);
    crate::note!("kernel: {why}");
    let variant = link::KernelVariant {
        net,
        profile: req.profiler,
        volumes: req.volumes,
    };
    crate::note!("kernel: {}", optional_parts_note(variant));
    let kernel_path = link::build_kernel_variant(layout, variant)?;
    let kernel = std::fs::read(&kernel_path)
        .with_context(|| format!("could not read {}", kernel_path.display()))?;
    let mut prov = crate::provenance::collect(layout, &req.source, &app, &program, &kernel)?;
    let features = variant.features();
    prov.kernel
        .features
        .retain(|f| features.contains(&f.as_str()));
    variant_flags(&mut prov.build.kernel_flags, variant);
    if req.dynamic {
        // The flags as they were: no static linking.
        let flags = &mut prov.build.app_flags;
        flags.retain(|f| f != "-static");
        if let Some(i) = flags.iter().position(|f| f == crate::app::STATIC_RUSTFLAGS) {
            flags.drain(i - 1..=i);
        }
    }
    let image = assemble_with(&kernel, &app, req, Some(&prov))?;
    let path = req
        .output
        .clone()
        .unwrap_or_else(|| layout.default_image(&app.name));
    write_atomically(&path, &image)?;
    Ok(BuiltImage {
        app,
        size: image.len() as u64,
        sha256: sha256_hex(&image),
        path,
    })
}

/// The least guest memory, in MiB, a PVH image needs: where its loaded segments (kernel and
/// payload) end, plus what the kernel needs above them (`kiln_abi::memory::min_mib`, the
/// same rule the kernel checks at boot). `None` when `image` is not an ELF with segments.
pub fn min_memory_mib(image: &[u8]) -> Option<u64> {
    let elf = goblin::elf::Elf::parse(image).ok()?;
    let end = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
        .map(|p| p.p_paddr.saturating_add(p.p_memsz))
        .max()?;
    Some(kiln_abi::memory::min_mib(end))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("could not write in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .map_err(|e| anyhow!("could not write {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn modules_are_the_dynamically_linked_files_among_those_added() {
        use crate::options::FileSpec;
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("lib/server")).unwrap();
        std::fs::copy(
            "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0",
            d.join("lib/server/libx.so"),
        )
        .unwrap();
        std::fs::copy("/usr/bin/true", d.join("tool")).unwrap();
        std::fs::write(d.join("lib/notes.txt"), "not an ELF").unwrap();
        std::fs::write(d.join("lib/short"), "\x7f").unwrap();
        std::os::unix::fs::symlink("server/libx.so", d.join("lib/link.so")).unwrap();
        let busybox = FileSpec {
            src: "/bin/busybox".into(),
            dest: "/bin/sh".into(),
        };
        let tree = FileSpec {
            src: d.to_path_buf(),
            dest: "/opt/app".into(),
        };
        let m = super::modules(&[tree, busybox]);
        let paths: Vec<&str> = m.iter().map(|m| m.path.as_str()).collect();
        // The shared library and the dynamically linked program; not the text, the short
        // file, the link (its target is listed once) or the static busybox.
        assert_eq!(paths, ["/opt/app/lib/server/libx.so", "/opt/app/tool"]);
        assert_eq!(m[0].host, d.join("lib/server/libx.so"));
    }

    #[test]
    fn glibc_programs_get_the_c_utf8_locale_unless_given_one() {
        use crate::dynamic::{Library, Reason};
        let lib = |path: &str| Library {
            path: path.into(),
            host: PathBuf::from(path),
            reason: Reason::Requested,
        };
        let libc = [lib("/lib/x86_64-linux-gnu/libc.so.6")];
        let on_host = std::path::Path::new(C_UTF8_LOCALE)
            .join("LC_CTYPE")
            .is_file();
        let got = glibc_locale(&libc, &[]);
        assert_eq!(got.is_some(), on_host);
        if let Some(f) = got {
            assert_eq!(f.dest, C_UTF8_LOCALE);
        }
        assert_eq!(
            glibc_locale(&[lib("/lib/x86_64-linux-gnu/libz.so.1")], &[]),
            None
        );
        let given = FileSpec {
            src: PathBuf::from("/tmp/de"),
            dest: "/usr/lib/locale/de_DE.utf8".into(),
        };
        assert_eq!(glibc_locale(&libc, &[given]), None);
    }
    use super::*;

    #[test]
    fn socket_functions_are_recognised() {
        for n in [
            "socket",
            "__socket",
            "__libc_socket",
            "syscall.Socket",
            "net.sysSocket",
        ] {
            assert!(creates_sockets(n), "{n}");
        }
        for n in ["socketpair", "socket_helper", "close", "my_socket_count"] {
            assert!(!creates_sockets(n), "{n}");
        }
    }

    #[test]
    fn the_recorded_kernel_command_is_the_variants() {
        let base = [
            "cargo",
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-gnu",
        ];
        let mut flags: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        variant_flags(&mut flags, link::KernelVariant::FULL);
        assert_eq!(flags, base);
        let lean = link::KernelVariant {
            net: true,
            profile: false,
            volumes: false,
        };
        variant_flags(&mut flags, lean);
        assert_eq!(
            flags.join(" "),
            "cargo build --release -p kiln-kernel --no-default-features --features net --target-dir target/variants/net --target x86_64-unknown-linux-gnu"
        );
    }

    #[test]
    fn the_kernel_choice_follows_the_symbols_and_no_net() {
        // Not an ELF: nothing to tell, the network stays.
        assert!(choose_net(NetChoice::Auto, b"junk").0);
        assert!(!choose_net(NetChoice::Off, b"junk").0);
        assert_eq!(network_use(b"junk"), NetUse::Unknown);
    }

    #[test]
    fn minimum_memory_covers_the_loaded_segments() {
        let elf = crate::elf::testdata::good_exec();
        let parsed = goblin::elf::Elf::parse(&elf).unwrap();
        let end = parsed
            .program_headers
            .iter()
            .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
            .map(|p| p.p_paddr + p.p_memsz)
            .max()
            .unwrap();
        let mib = min_memory_mib(&elf).unwrap();
        assert!(mib * kiln_abi::memory::MIB >= end + kiln_abi::memory::MIN_FREE);
        assert!((mib - 1) * kiln_abi::memory::MIB < end + kiln_abi::memory::MIN_FREE);
        assert_eq!(min_memory_mib(b"not an elf"), None);
    }

    #[test]
    fn same_inputs_same_image() {
        let tmp = tempfile::tempdir().unwrap();
        let prog = tmp.path().join("prog");
        std::fs::write(&prog, crate::elf::testdata::good_exec()).unwrap();
        std::fs::write(tmp.path().join("conf"), "x=1\n").unwrap();
        let app = App {
            name: "prog".into(),
            elf: prog,
        };
        let req = BuildRequest {
            source: AppSource::Elf(app.elf.clone()),
            rootfs_dir: None,
            files: vec![FileSpec {
                src: tmp.path().join("conf"),
                dest: "/etc/conf".into(),
            }],
            libs: vec![],
            dynamic: false,
            env: vec![("GREETING".into(), "hi".into())],
            args: vec!["--exit".into(), "3".into()],
            output: None,
            net: NetChoice::Auto,
            profiler: false,
            volumes: false,
        };
        let kernel = crate::link::tests::fake_kernel(kiln_abi::payload::LOCATION_SYMBOL, 16);
        let a = assemble(&kernel, &app, &req).unwrap();
        let b = assemble(&kernel, &app, &req).unwrap();
        assert_eq!(a, b);
        assert_eq!(sha256_hex(&a), sha256_hex(&b));
        // The payload's config is the baked one.
        let (_, ph) = crate::elf::headers(&a).unwrap();
        let last = ph.iter().rfind(|p| p.p_type == 1).unwrap();
        let payload = &a[last.p_offset as usize..(last.p_offset + last.p_filesz) as usize];
        let h = kiln_abi::payload::parse(payload).unwrap();
        let config = std::str::from_utf8(&payload[h.config]).unwrap();
        assert_eq!(
            config,
            "kiln.name=/bin/prog kiln.argv=--exit,3 kiln.env=GREETING=hi"
        );
        let out = tmp.path().join("out/img.elf");
        write_atomically(&out, &a).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), a);
    }

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
