//! The Linux guest: Debian's cloud kernel (fetched with `apt-get download`, unpacked with
//! `dpkg-deb -x` into `target/kiln/linux/`, kept there) and an initramfs holding the server,
//! a small static `/init` (`toolchain/assets/linux-init.c`) and the network driver modules.
//!
//! The cloud kernel has no `CONFIG_IP_PNP` and builds virtio-net and virtio-pci as modules,
//! so `/init` loads them (in dependency order, read from each module's `.modinfo`), gives
//! eth0 its address with ioctls, and execs the server.

use super::cpio;
use crate::app::stderr_stdio;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian metapackage that names the current cloud kernel.
pub const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// The modules the guest needs for its network card on q35 (their dependencies follow).
pub const NEEDED_MODULES: [&str; 2] = ["virtio_pci", "virtio_net"];

/// The source of the guest's `/init`.
pub const INIT_SOURCE: &str = include_str!("../../../assets/linux-init.c");

/// An unpacked kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The versioned package, such as `linux-image-6.1.0-56-cloud-amd64`.
    pub package: String,
    /// `/boot/vmlinuz-*` from it.
    pub vmlinuz: PathBuf,
    /// Its `/lib/modules/VERSION`.
    pub modules: PathBuf,
}

/// The versioned kernel package from a metapackage's `Depends` field
/// (`linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)`).
pub fn kernel_package_from_depends(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|n| n.starts_with("linux-image-") && *n != METAPACKAGE)
        .map(str::to_string)
}

fn run_logged(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
        .with_context(|| format!("could not run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `apt-get download PACKAGE` in `dir`; after one `apt-get update` if apt does not know the
/// package yet. Returns the downloaded `.deb`.
fn apt_download(dir: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    crate::note!("running: apt-get download {package} (in {})", dir.display());
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stderr_stdio())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !download() {
        crate::note!("running: apt-get update (apt did not know {package})");
        run_logged(
            Command::new("apt-get").args(["update", "-q"]),
            "apt-get update",
        )?;
        if !download() {
            bail!("apt-get download {package} failed; see apt's messages above");
        }
    }
    find().with_context(|| format!("apt-get download left no {package}_*.deb"))
}

/// The kernel, from the cache in `dir` or downloaded and unpacked there.
pub fn ensure_kernel(dir: &Path) -> anyhow::Result<Kernel> {
    let root = dir.join("root");
    let debs = dir.join("debs");
    let marker = dir.join("package");
    if let Ok(package) = std::fs::read_to_string(&marker) {
        if let Ok(k) = find_kernel(&root, package.trim()) {
            return Ok(k);
        }
    }
    std::fs::create_dir_all(&debs)?;
    let meta = apt_download(&debs, METAPACKAGE)?;
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&meta)
        .arg("Depends")
        .output()
        .context("could not run dpkg-deb")?;
    let depends = String::from_utf8_lossy(&out.stdout);
    let package = kernel_package_from_depends(&depends).with_context(|| {
        format!(
            "{} depends on no linux-image package: `{}`",
            meta.display(),
            depends.trim()
        )
    })?;
    let deb = apt_download(&debs, &package)?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    crate::note!("running: dpkg-deb -x {} {}", deb.display(), root.display());
    run_logged(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "dpkg-deb -x",
    )?;
    std::fs::write(&marker, &package)?;
    find_kernel(&root, &package)
}

fn find_kernel(root: &Path, package: &str) -> anyhow::Result<Kernel> {
    let version = package
        .strip_prefix("linux-image-")
        .with_context(|| format!("{package} is not a linux-image package"))?;
    let vmlinuz = root.join(format!("boot/vmlinuz-{version}"));
    let modules = root.join(format!("lib/modules/{version}"));
    if !vmlinuz.is_file() || !modules.is_dir() {
        bail!(
            "{package} has no boot/vmlinuz-{version} and lib/modules/{version} under {}",
            root.display()
        );
    }
    Ok(Kernel {
        package: package.to_string(),
        vmlinuz,
        modules,
    })
}

/// The module names a `.ko` file depends on (its `.modinfo` `depends=` entry).
pub fn module_depends(ko: &[u8]) -> anyhow::Result<Vec<String>> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(ko).context("not an ELF module")?;
    let Some(info) = file.section_by_name(".modinfo") else {
        return Ok(Vec::new());
    };
    let data = info.data().context("unreadable .modinfo")?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|e| e.strip_prefix(b"depends="))
        .flat_map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect())
}

/// Module name of a file name: `virtio-rng.ko` -> `virtio_rng`.
fn module_name(file_name: &str) -> Option<String> {
    Some(file_name.strip_suffix(".ko")?.replace('-', "_"))
}

/// The order to load `roots` and everything they depend on (`deps`: module -> its direct
/// dependencies): dependencies first, each module once.
pub fn load_order(
    roots: &[&str],
    deps: &dyn Fn(&str) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    fn visit(
        m: &str,
        deps: &dyn Fn(&str) -> anyhow::Result<Vec<String>>,
        done: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        if done.iter().any(|d| d == m) {
            return Ok(());
        }
        if path.iter().any(|p| p == m) {
            bail!("module dependency cycle: {} -> {m}", path.join(" -> "));
        }
        path.push(m.to_string());
        for d in deps(m)? {
            visit(&d, deps, done, path)?;
        }
        path.pop();
        done.push(m.to_string());
        Ok(())
    }
    let mut done = Vec::new();
    for r in roots {
        visit(r, deps, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

/// Every `*.ko` under `dir`, by module name.
fn index_modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()).and_then(module_name) {
                out.insert(n, p);
            }
        }
    }
    out
}

/// The `.ko` files the guest loads, in order.
pub fn network_modules(kernel: &Kernel) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let index = index_modules(&kernel.modules.join("kernel"));
    let path_of = |m: &str| -> anyhow::Result<PathBuf> {
        index.get(m).cloned().with_context(|| {
            format!(
                "module {m}.ko is not in {} (compressed modules are not supported)",
                kernel.modules.display()
            )
        })
    };
    let deps = |m: &str| -> anyhow::Result<Vec<String>> {
        let p = path_of(m)?;
        module_depends(&std::fs::read(&p)?).with_context(|| p.display().to_string())
    };
    load_order(&NEEDED_MODULES, &deps)?
        .into_iter()
        .map(|m| path_of(&m).map(|p| (m, p)))
        .collect()
}

/// Builds `/init` with `gcc -static -Os -s` into `dir` (again only when the source changed).
pub fn build_init(dir: &Path) -> anyhow::Result<PathBuf> {
    let src = dir.join("linux-init.c");
    let out = dir.join("init");
    if out.is_file() && std::fs::read_to_string(&src).ok().as_deref() == Some(INIT_SOURCE) {
        return Ok(out);
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(&src, INIT_SOURCE)?;
    crate::note!("compiling the Linux guest's /init (gcc -static -Os -s)");
    crate::qemu::install::ensure_tool("gcc", "gcc")?;
    run_logged(
        Command::new("gcc")
            .args(["-static", "-Os", "-s", "-Wall", "-o"])
            .arg(&out)
            .arg(&src),
        "gcc (the Linux guest's /init; it needs gcc and libc6-dev)",
    )?;
    Ok(out)
}

/// The server's arguments as `/init` reads them from `/args`: each one followed by a NUL.
/// An argument holding a NUL cannot be passed to a program, and is refused.
pub fn args_file(args: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for a in args {
        if a.contains('\0') {
            bail!("the server's argument {a:?} holds a NUL byte");
        }
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// One more entry of the initramfs: a dynamically linked server's loader and libraries, at
/// the paths the loader asks for, with the symbolic links on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// A file (absolute path, contents); executable, as libraries are.
    File(String, Vec<u8>),
    /// A symbolic link (absolute path, target as on the host).
    Symlink(String, String),
}

impl Extra {
    fn path(&self) -> &str {
        match self {
            Extra::File(p, _) | Extra::Symlink(p, _) => p,
        }
    }
}

/// The initramfs entries for `libs` (from [`crate::dynamic::Resolver`]): for each, the host's
/// symbolic links along its path (Debian's `/lib -> usr/lib`, `/lib64/ld-linux-x86-64.so.2`)
/// and the file, as `build-image` packs them; each path once.
pub fn library_entries(libs: &[crate::dynamic::Library]) -> anyhow::Result<Vec<Extra>> {
    use crate::dynamic::{host_entries, Entry};
    let mut out: Vec<Extra> = Vec::new();
    for lib in libs {
        let entries = host_entries(Path::new("/"), &lib.path)
            .ok()
            .filter(|e| {
                matches!(e.last(), Some(Entry::File(_, h))
                    if std::fs::canonicalize(h).ok().as_deref() == Some(lib.host.as_path()))
            })
            .unwrap_or_else(|| vec![Entry::File(lib.path.clone(), lib.host.clone())]);
        for e in entries {
            let extra = match e {
                Entry::Symlink(path, target) => Extra::Symlink(path, target),
                Entry::File(path, host) => Extra::File(
                    path,
                    std::fs::read(&host)
                        .with_context(|| format!("could not read {}", host.display()))?,
                ),
            };
            if !out.iter().any(|o| o.path() == extra.path()) {
                out.push(extra);
            }
        }
    }
    Ok(out)
}

/// The initramfs entries for a `--file SRC:DEST`: the file at DEST, or each file under a
/// directory at its path below DEST (symbolic links followed, as `build-image` does).
pub fn file_entries(spec: &crate::options::FileSpec) -> anyhow::Result<Vec<Extra>> {
    fn walk(src: &Path, dest: &str, out: &mut Vec<Extra>) -> anyhow::Result<()> {
        let meta = std::fs::metadata(src).with_context(|| format!("--file {}", src.display()))?;
        if meta.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(src)
                .with_context(|| format!("--file {}", src.display()))?
                .collect::<Result<_, _>>()?;
            names.sort_by_key(|e| e.file_name());
            for e in names {
                let name = e.file_name().to_string_lossy().into_owned();
                walk(
                    &e.path(),
                    &format!("{}/{name}", dest.trim_end_matches('/')),
                    out,
                )?;
            }
        } else {
            let data =
                std::fs::read(src).with_context(|| format!("could not read {}", src.display()))?;
            out.push(Extra::File(dest.to_string(), data));
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&spec.src, &spec.dest, &mut out)?;
    Ok(out)
}

/// The directories that must exist before `extras` are unpacked (every parent of each
/// path, parents first, without `/`), leaving out those a symbolic link of `extras` stands
/// for.
fn parent_dirs(extras: &[Extra]) -> Vec<String> {
    let links: Vec<&str> = extras
        .iter()
        .filter_map(|e| match e {
            Extra::Symlink(p, _) => Some(p.as_str()),
            Extra::File(..) => None,
        })
        .collect();
    let mut dirs = std::collections::BTreeSet::new();
    for e in extras {
        let path = e.path().trim_start_matches('/');
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let d = &path[..at + i];
            if !links.contains(&format!("/{d}").as_str()) {
                dirs.insert(d.to_string());
            }
            at += i + 1;
        }
    }
    // A parent sorts before its children.
    dirs.into_iter().collect()
}

/// The initramfs (gzip'd newc cpio): `/init`, `/server`, `/args` (the server's arguments,
/// see [`args_file`]), `/modules/NN-NAME.ko` in load order, `/dev/console`, empty
/// `/proc`, `/tmp`, and `extras` (a dynamically linked server's loader and libraries, see
/// [`library_entries`]; files from `--file`, [`file_entries`]) with their directories.
pub fn initramfs(
    init: &[u8],
    server: &[u8],
    args: &[String],
    modules: &[(String, Vec<u8>)],
    extras: &[Extra],
) -> anyhow::Result<Vec<u8>> {
    let mut w = cpio::Writer::new();
    for d in parent_dirs(extras) {
        if !["dev", "proc", "tmp", "modules"].contains(&d.as_str()) {
            w.dir(&d, 0o755);
        }
    }
    for e in extras {
        match e {
            Extra::File(p, data) => w.file(p, 0o755, data),
            Extra::Symlink(p, target) => w.symlink(p, target),
        }
    }
    w.dir("dev", 0o755);
    w.char_device("dev/console", 0o600, 5, 1);
    w.dir("proc", 0o555);
    w.dir("tmp", 0o1777);
    w.dir("modules", 0o755);
    for (i, (name, ko)) in modules.iter().enumerate() {
        w.file(&format!("modules/{i:02}-{name}.ko"), 0o644, ko);
    }
    w.file("init", 0o755, init);
    w.file("server", 0o755, server);
    w.file("args", 0o644, &args_file(args)?);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&w.finish())?;
    Ok(gz.finish()?)
}

/// The kernel command line: serial console, quiet, reboot (so QEMU exits) on panic, and
/// the settings `/init` reads; `PORT` reaches the server through init's environment.
pub fn cmdline(ip: [u8; 4], prefix: u8, gateway: [u8; 4], port: u16) -> String {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let q = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    format!(
        "console=ttyS0 quiet panic=-1 KILN_BENCH_IP={} KILN_BENCH_MASK={} KILN_BENCH_GW={} PORT={port}",
        q(ip),
        q(mask.to_be_bytes()),
        q(gateway)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_given_with_file_go_in_at_their_destinations() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("www/img")).unwrap();
        std::fs::write(tmp.path().join("www/index.html"), b"hi").unwrap();
        std::fs::write(tmp.path().join("www/img/a.png"), b"png").unwrap();
        std::fs::write(tmp.path().join("app.conf"), b"port 8080").unwrap();
        let spec = |src: &str, dest: &str| crate::options::FileSpec {
            src: tmp.path().join(src),
            dest: dest.into(),
        };
        let mut extras = file_entries(&spec("www", "/var/www")).unwrap();
        extras.extend(file_entries(&spec("app.conf", "/etc/app/app.conf")).unwrap());
        let files: Vec<(&str, &[u8])> = extras
            .iter()
            .map(|e| match e {
                Extra::File(p, d) => (p.as_str(), d.as_slice()),
                Extra::Symlink(..) => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            files,
            [
                ("/var/www/img/a.png", &b"png"[..]),
                ("/var/www/index.html", b"hi"),
                ("/etc/app/app.conf", b"port 8080"),
            ]
        );
        assert_eq!(
            parent_dirs(&extras),
            ["etc", "etc/app", "var", "var/www", "var/www/img"]
        );
        let e = file_entries(&spec("missing", "/x")).unwrap_err();
        assert!(format!("{e:#}").contains("missing"), "{e:#}");
    }

    #[test]
    fn metapackage_depends() {
        assert_eq!(
            kernel_package_from_depends("linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"),
            Some("linux-image-6.1.0-56-cloud-amd64".into())
        );
        assert_eq!(
            kernel_package_from_depends("initramfs-tools, linux-image-6.1.0-9-cloud-amd64"),
            Some("linux-image-6.1.0-9-cloud-amd64".into())
        );
        assert_eq!(kernel_package_from_depends("libc6"), None);
    }

    #[test]
    fn dependencies_load_first() {
        let table: BTreeMap<&str, Vec<&str>> = [
            ("virtio_net", vec!["net_failover", "virtio", "virtio_ring"]),
            ("net_failover", vec!["failover"]),
            ("failover", vec![]),
            (
                "virtio_pci",
                vec![
                    "virtio_pci_legacy_dev",
                    "virtio_pci_modern_dev",
                    "virtio",
                    "virtio_ring",
                ],
            ),
            ("virtio_pci_legacy_dev", vec![]),
            ("virtio_pci_modern_dev", vec![]),
            ("virtio", vec![]),
            ("virtio_ring", vec!["virtio"]),
        ]
        .into_iter()
        .collect();
        let deps = |m: &str| -> anyhow::Result<Vec<String>> {
            Ok(table
                .get(m)
                .with_context(|| format!("no {m}"))?
                .iter()
                .map(|s| s.to_string())
                .collect())
        };
        let order = load_order(&NEEDED_MODULES, &deps).unwrap();
        assert_eq!(
            order,
            [
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio",
                "virtio_ring",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        let cyclic = |m: &str| -> anyhow::Result<Vec<String>> {
            Ok(vec![if m == "a" { "b" } else { "a" }.to_string()])
        };
        assert!(load_order(&["a"], &cyclic).is_err());
        assert!(load_order(&["missing"], &deps).is_err());
    }

    #[test]
    fn kernel_command_line() {
        assert_eq!(
            cmdline([10, 77, 77, 2], 24, [10, 77, 77, 1], 8080),
            "console=ttyS0 quiet panic=-1 KILN_BENCH_IP=10.77.77.2 \
             KILN_BENCH_MASK=255.255.255.0 KILN_BENCH_GW=10.77.77.1 PORT=8080"
        );
        assert!(cmdline([10, 0, 0, 2], 0, [10, 0, 0, 1], 1).contains("MASK=0.0.0.0"));
    }

    #[test]
    fn initramfs_is_gzip_cpio() {
        let args = ["-listen".to_string(), "a b".into()];
        let gz = initramfs(
            b"INIT",
            b"SERVER",
            &args,
            &[("virtio".into(), b"KO".to_vec())],
            &[
                Extra::Symlink("/lib".into(), "usr/lib".into()),
                Extra::File(
                    "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                    b"LIBC".to_vec(),
                ),
            ],
        )
        .unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
        assert!(raw.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&raw);
        for name in [
            "dev/console",
            "modules/00-virtio.ko",
            "init\0",
            "server\0",
            "args\0",
            "-listen\0a b\0",
            "lib\0",
            "usr/lib\0",
            "usr/lib/x86_64-linux-gnu\0",
            "usr/lib/x86_64-linux-gnu/libc.so.6\0",
            "LIBC",
            "TRAILER!!!",
        ] {
            assert!(text.contains(name), "{name}");
        }
    }

    #[test]
    fn directories_for_libraries() {
        let e = [
            Extra::Symlink("/lib".into(), "usr/lib".into()),
            Extra::Symlink("/lib64".into(), "usr/lib64".into()),
            Extra::Symlink(
                "/usr/lib64/ld-linux-x86-64.so.2".into(),
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
            ),
            Extra::File("/usr/lib/x86_64-linux-gnu/libc.so.6".into(), vec![]),
        ];
        assert_eq!(
            parent_dirs(&e),
            ["usr", "usr/lib", "usr/lib/x86_64-linux-gnu", "usr/lib64"]
        );
    }

    #[test]
    fn redis_libraries_for_the_initramfs() {
        // Debian's redis-server, where it is installed (the suite installs it).
        let Ok(bytes) = std::fs::read("/usr/bin/redis-server") else {
            return;
        };
        let libs = crate::dynamic::Resolver::host(vec![])
            .resolve(&bytes, "/server", Path::new("/usr/bin"))
            .unwrap()
            .libraries;
        let e = library_entries(&libs).unwrap();
        let paths: Vec<&str> = e.iter().map(Extra::path).collect();
        // Each path once; the loader's own path present (a link or the file itself).
        let mut sorted = paths.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), paths.len(), "{paths:?}");
        assert!(paths.contains(&"/lib64/ld-linux-x86-64.so.2") || paths.contains(&"/lib64"));
        assert!(
            e.iter().any(
                |x| matches!(x, Extra::File(p, d) if p.ends_with("/libc.so.6") && !d.is_empty())
            ),
            "{paths:?}"
        );
    }

    #[test]
    fn server_arguments() {
        assert_eq!(args_file(&[]).unwrap(), b"");
        assert_eq!(
            args_file(&["-p".into(), "".into(), "x y".into()]).unwrap(),
            b"-p\0\0x y\0"
        );
        let e = args_file(&["a\0b".into()]).unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
    }

    #[test]
    fn modinfo_depends() {
        use object::write::Object;
        use object::{Architecture, BinaryFormat, Endianness, SectionKind};
        let mut o = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let s = o.add_section(vec![], b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        o.append_section_data(
            s,
            b"license=GPL\0depends=net_failover,virtio,virtio_ring\0intree=Y\0",
            1,
        );
        let ko = o.write().unwrap();
        assert_eq!(
            module_depends(&ko).unwrap(),
            ["net_failover", "virtio", "virtio_ring"]
        );
        let mut o = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let s = o.add_section(vec![], b".modinfo".to_vec(), SectionKind::ReadOnlyData);
        o.append_section_data(s, b"depends=\0", 1);
        assert!(module_depends(&o.write().unwrap()).unwrap().is_empty());
        assert!(module_depends(b"not an elf").is_err());
    }

    #[test]
    fn module_names() {
        assert_eq!(module_name("virtio-rng.ko"), Some("virtio_rng".into()));
        assert_eq!(module_name("virtio_net.ko.xz"), None);
    }
}
