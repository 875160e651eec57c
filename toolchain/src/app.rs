//! Building the program that goes into an image, or taking a prebuilt one.
//!
//! Programs are always built in release mode (small and fast under TCG); `--release` is
//! accepted for familiarity and changes nothing. Rust programs are built for
//! `x86_64-unknown-linux-gnu` with `+crt-static` as a *target* rustflag (build scripts and
//! proc-macros stay normal host programs), into the shared `target/kiln/apps`.
//! C examples are built with `gcc -static -O2`.

use crate::Layout;
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target triple programs are built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The `--config` that makes Rust programs static without touching build scripts.
pub const STATIC_RUSTFLAGS: &str =
    r#"target.x86_64-unknown-linux-gnu.rustflags=["-C","target-feature=+crt-static"]"#;

/// Where the program comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSource {
    /// `--example NAME`: `examples/NAME` (Rust package, C files or Go module).
    Example(String),
    /// `--manifest-path PATH [--bin NAME]`: any Rust package.
    Manifest {
        /// Path of the package's `Cargo.toml`.
        path: PathBuf,
        /// Which binary, when the package has several.
        bin: Option<String>,
    },
    /// `--elf FILE`: a prebuilt static program.
    Elf(PathBuf),
}

/// A built, validated program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Short name: the image is `<name>.elf`, the program runs as `/bin/<name>` (see
    /// [`program_path`] for `--elf` programs from `/usr` and `/opt`).
    pub name: String,
    /// Path of the static ELF.
    pub elf: PathBuf,
}

/// A `Stdio` writing to our stderr, so child tools never touch our stdout.
pub fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

/// Builds (where needed) and validates the program, statically linked.
pub fn build(layout: &Layout, source: &AppSource) -> anyhow::Result<App> {
    build_linked(layout, source, false)
}

/// [`build`]; with `dynamic` (`--dynamic`), Rust and C programs are linked dynamically
/// against the host's glibc (no `+crt-static`, no `gcc -static`), and `build-image` packs
/// their libraries. A prebuilt `--elf` program is taken as it is.
pub fn build_linked(layout: &Layout, source: &AppSource, dynamic: bool) -> anyhow::Result<App> {
    let app = match source {
        AppSource::Example(name) => build_example(layout, name, dynamic)?,
        AppSource::Manifest { path, bin } => {
            build_rust(layout, path, bin.as_deref(), None, dynamic)?
        }
        AppSource::Elf(path) => {
            if !path.is_file() {
                bail!("--elf {}: no such file", path.display());
            }
            App {
                name: name_from_path(path),
                elf: path.clone(),
            }
        }
    };
    let bytes =
        std::fs::read(&app.elf).with_context(|| format!("could not read {}", app.elf.display()))?;
    if let Some(line) = bytes.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let interp = String::from_utf8_lossy(line).trim().to_string();
        let name = app
            .elf
            .file_name()
            .map_or("script".into(), |n| n.to_string_lossy());
        bail!(
            "{}: a script for `{interp}`, not a compiled program: make a program that runs it the image's program and add the script, e.g. --elf /bin/busybox --file {}:/{name} -- sh /{name} (the kernel runs `#!` scripts the program execs)",
            app.elf.display(),
            app.elf.display(),
        );
    }
    crate::elf::validate(&bytes).map_err(|e| anyhow!("{}: {e}", app.elf.display()))?;
    Ok(app)
}

/// Where the program sits in the image. An `--elf` program from under `/usr` or `/opt`
/// keeps its host path, so programs that find their files next to themselves through
/// `/proc/self/exe` (Java finds its `lib` directory so, Python its prefix) find them where
/// `--file` put them; every other program is `/bin/NAME` (a host path elsewhere, such as a
/// build directory, would make the image depend on where it was built).
pub fn program_path(source: &AppSource, name: &str) -> String {
    use std::path::Component;
    if let AppSource::Elf(path) = source {
        let mut parts = Vec::new();
        let mut plain = path.is_absolute();
        for c in path.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(p) => match p.to_str() {
                    Some(p) => parts.push(p),
                    None => plain = false,
                },
                _ => plain = false,
            }
        }
        if plain && parts.len() >= 2 && matches!(parts[0], "usr" | "opt") {
            return format!("/{}", parts.join("/"));
        }
    }
    format!("/bin/{name}")
}

/// A program name from a file name: its stem, or `app`.
pub fn name_from_path(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("app")
        .to_string()
}

/// The kind of an example directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExampleKind {
    /// Has a `Cargo.toml`.
    Rust(PathBuf),
    /// Has `*.c` files (sorted).
    C(Vec<PathBuf>),
    /// Has a `go.mod`: a Go module, built static (`CGO_ENABLED=0`).
    Go(PathBuf),
}

/// Looks at `examples/NAME` and says how to build it.
pub fn example_kind(layout: &Layout, name: &str) -> anyhow::Result<ExampleKind> {
    let dir = layout.examples_dir().join(name);
    if name.is_empty() || name.contains('/') || !dir.is_dir() {
        bail!(
            "no example `{name}`; available: {}",
            list_examples(layout).join(", ")
        );
    }
    let manifest = dir.join("Cargo.toml");
    if manifest.is_file() {
        return Ok(ExampleKind::Rust(manifest));
    }
    if dir.join("go.mod").is_file() {
        return Ok(ExampleKind::Go(dir));
    }
    let c = c_files(&dir)?;
    if c.is_empty() {
        bail!("examples/{name} has no Cargo.toml, go.mod or *.c files");
    }
    Ok(ExampleKind::C(c))
}

fn c_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Names of the examples (directories under `examples/`), sorted.
pub fn list_examples(layout: &Layout) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(layout.examples_dir())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "target")
        .collect();
    v.sort();
    v
}

fn build_example(layout: &Layout, name: &str, dynamic: bool) -> anyhow::Result<App> {
    match example_kind(layout, name)? {
        ExampleKind::Rust(manifest) => build_rust(layout, &manifest, None, Some(name), dynamic),
        ExampleKind::C(files) => {
            let link: &[&str] = if dynamic { &[] } else { &["-static"] };
            crate::note!(
                "compiling examples/{name} (gcc {}-O2)",
                if dynamic { "" } else { "-static " }
            );
            let dir = if dynamic { "c-dynamic" } else { "c" };
            let install = "gcc libc6-dev";
            compile_example(layout, name, dir, ("gcc", install), |cmd, out| {
                cmd.args(link).args(["-O2", "-o"]).arg(out).args(&files);
            })
        }
        ExampleKind::Go(dir) => {
            if dynamic {
                bail!("examples/{name} is a Go program, built static: drop --dynamic");
            }
            // Static (no cgo) and reproducible (`-trimpath`, no build ID).
            crate::note!("compiling examples/{name} (go build, CGO_ENABLED=0)");
            compile_example(layout, name, "go", ("go", "golang-go"), |cmd, out| {
                cmd.args(["build", "-trimpath", "-ldflags=-buildid=", "-o"])
                    .arg(out)
                    .arg(".")
                    .current_dir(&dir)
                    .env("CGO_ENABLED", "0")
                    .env("GOFLAGS", "-mod=mod");
            })
        }
    }
}

/// Runs `compiler` (its arguments set by `args`, given the output path; the Debian packages
/// that install it for the error) to build example `name` into `apps_target_dir()/DIR/NAME`. It writes to a private name that is renamed
/// when done, so concurrent builds never see a half-written program.
fn compile_example(
    layout: &Layout,
    name: &str,
    dir: &str,
    (compiler, install): (&str, &str),
    args: impl FnOnce(&mut Command, &Path),
) -> anyhow::Result<App> {
    let out_dir = layout.apps_target_dir().join(dir);
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(name);
    let partial = out_dir.join(format!(".{name}.{}", std::process::id()));
    let mut cmd = Command::new(compiler);
    args(&mut cmd, &partial);
    let status = cmd
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
        .with_context(|| {
            format!("could not run {compiler}; install it (apt-get install {install})")
        })?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!("{compiler} failed to build examples/{name}; see the errors above");
    }
    std::fs::rename(&partial, &out)
        .with_context(|| format!("could not move the program to {}", out.display()))?;
    Ok(App {
        name: name.to_string(),
        elf: out,
    })
}

/// Picks the binary to build among a package's `bins`.
pub fn choose_bin(package: &str, bins: &[String], wanted: Option<&str>) -> anyhow::Result<String> {
    match (wanted, bins) {
        (Some(w), _) if bins.iter().any(|b| b == w) => Ok(w.to_string()),
        (Some(w), []) => bail!("package `{package}` has no binaries (asked for --bin {w})"),
        (Some(w), _) => bail!(
            "package `{package}` has no binary `{w}`; its binaries: {}",
            bins.join(", ")
        ),
        (None, [one]) => Ok(one.clone()),
        (None, []) => {
            bail!("package `{package}` has no binary target; Kiln runs programs, not libraries")
        }
        (None, _) => bail!(
            "package `{package}` has several binaries; choose one with --bin: {}",
            bins.join(", ")
        ),
    }
}

fn build_rust(
    layout: &Layout,
    manifest: &Path,
    bin: Option<&str>,
    example: Option<&str>,
    dynamic: bool,
) -> anyhow::Result<App> {
    if !manifest.is_file() {
        bail!("--manifest-path {}: no such file", manifest.display());
    }
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("could not resolve {}", manifest.display()))?;
    let meta = cargo_metadata::MetadataCommand::new()
        .cargo_path(crate::link::cargo())
        .manifest_path(&manifest)
        .no_deps()
        .exec()
        .map_err(|e| anyhow!("cargo metadata failed for {}: {e}", manifest.display()))?;
    let package = meta
        .packages
        .iter()
        .find(|p| p.manifest_path.as_std_path() == manifest)
        .ok_or_else(|| {
            anyhow!(
                "{} is a workspace manifest, not a package; point --manifest-path at the package's Cargo.toml",
                manifest.display()
            )
        })?;
    let bins: Vec<String> = package
        .targets
        .iter()
        .filter(|t| t.is_bin())
        .map(|t| t.name.clone())
        .collect();
    let bin = choose_bin(&package.name, &bins, bin)?;
    // Dynamic builds have a target directory of their own, so switching does not rebuild.
    let target_dir = if dynamic {
        layout.apps_target_dir().join("dynamic")
    } else {
        layout.apps_target_dir()
    };
    let link: &[&str] = if dynamic {
        &[]
    } else {
        &["--config", STATIC_RUSTFLAGS]
    };
    let status = Command::new(crate::link::cargo())
        .args(["build", "--release", "--target", TARGET])
        .args(link)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--bin", &bin])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("cargo failed to build `{bin}`; see the errors above");
    }
    Ok(App {
        name: example.unwrap_or(&bin).to_string(),
        elf: target_dir.join(TARGET).join("release").join(&bin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn programs_from_usr_and_opt_keep_their_path_others_go_to_bin() {
        let elf = |p: &str| AppSource::Elf(p.into());
        let cases = [
            (elf("/usr/bin/python3"), "/usr/bin/python3"),
            (elf("/usr/lib/jvm/j/bin/java"), "/usr/lib/jvm/j/bin/java"),
            (elf("/opt/app/bin/server"), "/opt/app/bin/server"),
            (elf("/usr//bin/./env"), "/usr/bin/env"),
            (elf("/usr/bin/../bin/x"), "/bin/x"),
            (elf("/usr"), "/bin/x"),
            (elf("/bin/busybox"), "/bin/x"),
            (elf("/home/me/target/release/app"), "/bin/x"),
            (elf("usr/bin/env"), "/bin/x"),
            (AppSource::Example("hello".into()), "/bin/x"),
        ];
        for (source, want) in cases {
            assert_eq!(program_path(&source, "x"), want, "{source:?}");
        }
    }

    #[test]
    fn chooses_binaries() {
        assert_eq!(choose_bin("p", &bins(&["a"]), None).unwrap(), "a");
        assert_eq!(choose_bin("p", &bins(&["a", "b"]), Some("b")).unwrap(), "b");
        let e = choose_bin("p", &bins(&["a", "b"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--bin") && e.contains("a, b"), "{e}");
        let e = choose_bin("p", &bins(&["a", "b"]), Some("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no binary `c`") && e.contains("a, b"), "{e}");
        assert!(choose_bin("p", &[], None).is_err());
        assert!(choose_bin("p", &[], Some("x")).is_err());
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(name_from_path(Path::new("/x/hello")), "hello");
        assert_eq!(name_from_path(Path::new("prog.bin")), "prog");
        assert_eq!(name_from_path(Path::new("/")), "app");
    }

    #[test]
    fn example_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        std::fs::create_dir_all(tmp.path().join("examples/r")).unwrap();
        std::fs::write(tmp.path().join("examples/r/Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(tmp.path().join("examples/c")).unwrap();
        std::fs::write(tmp.path().join("examples/c/b.c"), "").unwrap();
        std::fs::write(tmp.path().join("examples/c/a.c"), "").unwrap();
        std::fs::create_dir_all(tmp.path().join("examples/empty")).unwrap();
        std::fs::create_dir_all(tmp.path().join("examples/g")).unwrap();
        std::fs::write(tmp.path().join("examples/g/go.mod"), "module g\n").unwrap();
        assert!(matches!(
            example_kind(&layout, "g").unwrap(),
            ExampleKind::Go(_)
        ));
        assert!(matches!(
            example_kind(&layout, "r").unwrap(),
            ExampleKind::Rust(_)
        ));
        match example_kind(&layout, "c").unwrap() {
            ExampleKind::C(f) => assert!(f[0].ends_with("a.c") && f[1].ends_with("b.c")),
            k => panic!("{k:?}"),
        }
        let e = example_kind(&layout, "nope").unwrap_err().to_string();
        assert!(e.contains("available: c, empty, g, r"), "{e}");
        assert!(example_kind(&layout, "empty").is_err());
        assert!(example_kind(&layout, "../x").is_err());
        let e = build(&layout, &AppSource::Elf("/no/such".into())).unwrap_err();
        assert!(e.to_string().contains("no such file"));
    }

    #[test]
    fn elf_input_is_validated() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let f = tmp.path().join("script.sh");
        std::fs::write(&f, "echo hi\n").unwrap();
        let e = build(&layout, &AppSource::Elf(f.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("script.sh") && e.contains("not an ELF"), "{e}");
        // A `#!` script: the error says how to run it.
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let e = build(&layout, &AppSource::Elf(f.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a script for `/bin/sh`"), "{e}");
        assert!(e.contains(":/script.sh -- sh /script.sh"), "{e}");
        std::fs::write(&f, crate::elf::testdata::good_exec()).unwrap();
        let app = build(&layout, &AppSource::Elf(f)).unwrap();
        assert_eq!(app.name, "script");
    }
}
