//! Provenance: what an image is made of and how it was built, as a JSON document stored in the
//! image itself (the payload's fourth part, [`kiln_abi::payload`]) and repeated in OCI configs
//! and annotations (`crate::oci`).
//!
//! The document (schema [`SCHEMA`]) records the app (name, version, where it came from, the
//! program's sha256), the git commit of the app's sources (marked dirty when they have
//! uncommitted changes), the Cargo.lock digest, an SBOM of the app's crates (CycloneDX 1.5 JSON,
//! from `cargo metadata`), the kernel (version, features, git commit, ELF sha256), `rustc -vV`,
//! the build flags, the baked configuration, and the image's sha256.
//!
//! **What `image_sha256` covers**: the SHA-256 of the PVH image file with every byte of the
//! provenance part set to zero. That is every byte of the kernel, program, root filesystem,
//! configuration, payload header and ELF headers, and nothing of this document (which cannot
//! contain its own hash). [`seal`] writes it; [`image_sha256`] recomputes it, so `inspect` can
//! check it on any image. Disk formats wrap the PVH image: the hash is the PVH image's, not the
//! disk's.
//!
//! Everything is deterministic: no timestamps unless `SOURCE_DATE_EPOCH` is set (then
//! `created` is that instant), no host paths, keys in a fixed order.

use crate::app::{App, AppSource, STATIC_RUSTFLAGS, TARGET};
use crate::Layout;
use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Stdio};

/// The document's schema identifier.
pub const SCHEMA: &str = "dev.kiln.provenance/v1";
/// What `image_sha256` covers, stored next to it.
pub const IMAGE_SHA256_COVERS: &str =
    "sha256 of the PVH image file with the bytes of the payload's provenance part set to zero";
/// Stands for the image hash until [`seal`] writes the real one (same length).
const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A git checkout's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Uncommitted changes (tracked or untracked) under the sources' directory.
    pub dirty: bool,
}

/// The program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// The app's name (the program runs as `/bin/<name>`).
    pub name: String,
    /// The package version (Rust apps), if known.
    pub version: Option<String>,
    /// Where it came from: `example:NAME`, `cargo:PACKAGE` or `elf:FILENAME`.
    pub source: String,
    /// SHA-256 of the program's ELF file.
    pub program_sha256: String,
    /// Git state of the app's sources, when they are in a git checkout.
    pub git: Option<GitInfo>,
    /// SHA-256 of the Cargo.lock the app was built with (Rust apps).
    pub cargo_lock_sha256: Option<String>,
}

/// The kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// `kiln-kernel` package version.
    pub version: String,
    /// Cargo features the kernel was built with (its default features).
    pub features: Vec<String>,
    /// SHA-256 of the kernel ELF before linking.
    pub elf_sha256: String,
    /// Git state of Kiln's `kernel/` and `abi/`.
    pub git: Option<GitInfo>,
}

/// Compilers and flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// `rustc -vV`: release line and host.
    pub rustc: Option<String>,
    /// `gcc --version` first line, for C apps.
    pub cc: Option<String>,
    /// How the app was built (cargo or gcc arguments), empty for `--elf`.
    pub app_flags: Vec<String>,
    /// How the kernel was built (`cargo build` arguments and rustflags).
    pub kernel_flags: Vec<String>,
    /// The Kiln toolchain version that linked the image.
    pub kiln_version: String,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The program.
    pub app: AppInfo,
    /// The kernel.
    pub kernel: KernelInfo,
    /// Compilers and flags.
    pub build: BuildInfo,
    /// The configuration baked into the image (kernel command-line tokens).
    pub config: String,
    /// SHA-256 of the root filesystem tar.
    pub rootfs_sha256: String,
    /// RFC 3339 time from `SOURCE_DATE_EPOCH`, absent otherwise.
    pub created: Option<String>,
    /// CycloneDX 1.5 JSON SBOM of the app's crates.
    pub sbom: Value,
    /// See [`IMAGE_SHA256_COVERS`].
    pub image_sha256: String,
    /// Always [`IMAGE_SHA256_COVERS`].
    pub image_sha256_covers: String,
    /// A dynamically linked program's interpreter and libraries, as packed (empty for a
    /// static program; absent in documents written before Kiln ran dynamic programs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libraries: Vec<LibraryInfo>,
}

/// One packed library (or the dynamic loader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryInfo {
    /// Where the loader finds it in the image.
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// The Debian package that installed it (`dpkg -S`), when known.
    pub package: Option<String>,
    /// That package's version (`dpkg-query`), when known.
    pub version: Option<String>,
    /// Why it is there: `interpreter`, `needed by PATH`, `glibc run-time module`, `--lib`.
    pub reason: String,
}

/// The Debian package that owns `path` on this machine, and its version: `dpkg -S` on the
/// path, its real path and the other spelling of merged `/usr` (`/lib` vs `/usr/lib`).
pub fn debian_package(path: &str, real: &Path) -> Option<(String, Option<String>)> {
    let mut names = vec![path.to_string(), real.to_string_lossy().into_owned()];
    for n in names.clone() {
        if let Some(rest) = n.strip_prefix("/usr/") {
            names.push(format!("/{rest}"));
        } else {
            names.push(format!("/usr{n}"));
        }
    }
    names.dedup();
    let owner = names.iter().find_map(|n| {
        let out = output(Command::new("dpkg").arg("-S").arg(n))?;
        // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
        let line = out.lines().find(|l| !l.starts_with("diversion"))?;
        let (pkg, _) = line.split_once(": ")?;
        Some(pkg.split(',').next()?.trim().to_string())
    })?;
    let version = output(
        Command::new("dpkg-query")
            .arg("-W")
            .arg("-f=${Version}")
            .arg(&owner),
    )
    .filter(|v| !v.is_empty());
    Some((owner, version))
}

impl Provenance {
    /// Records the packed libraries (path, sha256, Debian package and version where `dpkg`
    /// knows them) and lists them in the SBOM as components.
    pub fn add_libraries(&mut self, libs: &[crate::dynamic::Library]) -> anyhow::Result<()> {
        use crate::dynamic::Reason;
        for lib in libs {
            let bytes = std::fs::read(&lib.host)
                .with_context(|| format!("could not read {}", lib.host.display()))?;
            let (package, version) = match debian_package(&lib.path, &lib.host) {
                Some((p, v)) => (Some(p), v),
                None => (None, None),
            };
            self.libraries.push(LibraryInfo {
                path: lib.path.clone(),
                sha256: hex(&bytes),
                package,
                version,
                reason: match &lib.reason {
                    Reason::Interpreter => "interpreter".into(),
                    Reason::Needed(by) => format!("needed by {by}"),
                    Reason::Runtime => "glibc run-time module".into(),
                    Reason::Requested => "--lib".into(),
                    Reason::Module(by) => format!("needed by {by} (added with --file)"),
                },
            });
        }
        if let Some(components) = self.sbom["components"].as_array_mut() {
            for l in &self.libraries {
                let name = l.path.rsplit('/').next().unwrap_or(&l.path);
                let mut c = json!({
                    "type": "library",
                    "bom-ref": format!("file:{}", l.path),
                    "name": name,
                    "hashes": [{ "alg": "SHA-256", "content": l.sha256 }],
                    "properties": [{ "name": "dev.kiln.path", "value": l.path }],
                });
                if let Some(v) = &l.version {
                    c["version"] = json!(v);
                }
                if let Some(p) = &l.package {
                    let bare = p.split(':').next().unwrap_or(p);
                    c["purl"] = json!(format!(
                        "pkg:deb/debian/{bare}{}?arch=amd64",
                        l.version
                            .as_ref()
                            .map(|v| format!("@{v}"))
                            .unwrap_or_default()
                    ));
                    c["supplier"] = json!({ "name": "Debian" });
                }
                components.push(c);
            }
        }
        Ok(())
    }
}

impl Provenance {
    /// The JSON bytes stored in the image (compact, fixed key order).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("provenance always serializes")
    }

    /// Parses a provenance document.
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Provenance> {
        serde_json::from_slice(bytes)
            .map_err(|e| anyhow!("the provenance document is not valid: {e}"))
    }

    /// Number of crates the SBOM lists besides the app.
    pub fn sbom_components(&self) -> usize {
        self.sbom["components"].as_array().map_or(0, |c| c.len())
    }
}

/// Lowercase hex SHA-256.
fn hex(bytes: &[u8]) -> String {
    crate::image::sha256_hex(bytes)
}

/// Runs a command and returns its trimmed stdout when it succeeds.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Git state of `dir` (HEAD, and whether anything under `paths` relative to `dir` changed).
pub fn git_info(dir: &Path, paths: &[&str]) -> Option<GitInfo> {
    let commit = output(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "HEAD"]),
    )?;
    let status = output(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["status", "--porcelain", "--"])
            .args(paths),
    )?;
    Some(GitInfo {
        commit,
        dirty: !status.is_empty(),
    })
}

/// `rustc -vV` as one line: `rustc 1.x.y (hash date); host: TRIPLE`.
pub fn rustc_version(dir: &Path) -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let text = output(Command::new(rustc).arg("-vV").current_dir(dir))?;
    let first = text.lines().next()?.to_string();
    let host = text.lines().find_map(|l| l.strip_prefix("host: "));
    Some(match host {
        Some(h) => format!("{first}; host: {h}"),
        None => first,
    })
}

/// An RFC 3339 UTC time from a Unix time (for `SOURCE_DATE_EPOCH`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `created` from `SOURCE_DATE_EPOCH`, if set; an unparsable value is an error.
pub fn created_from_env() -> anyhow::Result<Option<String>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => {
            let secs: i64 = v.trim().parse().map_err(|_| {
                anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds; unset it or give a Unix time")
            })?;
            Ok(Some(rfc3339(secs)))
        }
        _ => Ok(None),
    }
}

/// A CycloneDX component for a crate.
fn crate_component(kind: &str, name: &str, version: &str, license: Option<&str>) -> Value {
    let purl = format!("pkg:cargo/{name}@{version}");
    let mut c = json!({
        "type": kind,
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
    });
    if let Some(l) = license {
        c["licenses"] = json!([{ "expression": l }]);
    }
    c
}

/// An SBOM (CycloneDX 1.5) whose subject is `app` and whose components are `crates`
/// (`(name, version, license)`, sorted and deduplicated here) with the dependency edges `deps`.
pub fn cyclonedx(
    app: Value,
    mut crates: Vec<(String, String, Option<String>)>,
    mut deps: Vec<(String, Vec<String>)>,
) -> Value {
    crates.sort();
    crates.dedup();
    deps.sort();
    let components: Vec<Value> = crates
        .iter()
        .map(|(n, v, l)| crate_component("library", n, v, l.as_deref()))
        .collect();
    let dependencies: Vec<Value> = deps
        .into_iter()
        .map(|(r, mut on)| {
            on.sort();
            json!({ "ref": r, "dependsOn": on })
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "component": app,
            "tools": { "components": [
                { "type": "application", "name": "kiln", "version": env!("CARGO_PKG_VERSION") }
            ] }
        },
        "components": components,
        "dependencies": dependencies,
    })
}

/// What `cargo metadata` says about a Rust app: version, Cargo.lock digest and SBOM.
struct RustFacts {
    version: String,
    lock_sha256: Option<String>,
    sbom: Value,
    dir: std::path::PathBuf,
}

fn rust_facts(manifest: &Path) -> anyhow::Result<RustFacts> {
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("could not resolve {}", manifest.display()))?;
    let meta = cargo_metadata::MetadataCommand::new()
        .cargo_path(crate::link::cargo())
        .manifest_path(&manifest)
        .other_options(vec!["--filter-platform".into(), TARGET.into()])
        .exec()
        .map_err(|e| anyhow!("cargo metadata failed for {}: {e}", manifest.display()))?;
    let root = meta
        .packages
        .iter()
        .find(|p| p.manifest_path.as_std_path() == manifest)
        .ok_or_else(|| anyhow!("{} is not a package manifest", manifest.display()))?;
    let lock = meta.workspace_root.as_std_path().join("Cargo.lock");
    let lock_sha256 = std::fs::read(&lock).ok().map(|b| hex(&b));

    // Walk the resolved graph from the app along normal (runtime) dependencies.
    let resolve = meta
        .resolve
        .as_ref()
        .ok_or_else(|| anyhow!("cargo metadata gave no dependency graph"))?;
    let by_id: std::collections::HashMap<_, _> = meta.packages.iter().map(|p| (&p.id, p)).collect();
    let nodes: std::collections::HashMap<_, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let purl = |id| {
        let p: &cargo_metadata::Package = by_id[id];
        format!("pkg:cargo/{}@{}", p.name, p.version)
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![&root.id];
    let mut crates = Vec::new();
    let mut deps = Vec::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.repr.clone()) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        let runtime: Vec<_> = node
            .deps
            .iter()
            .filter(|d| {
                d.dep_kinds
                    .iter()
                    .any(|k| k.kind == cargo_metadata::DependencyKind::Normal)
            })
            .map(|d| &d.pkg)
            .collect();
        deps.push((purl(id), runtime.iter().map(|d| purl(d)).collect()));
        if id != &root.id {
            let p = by_id[id];
            crates.push((p.name.to_string(), p.version.to_string(), p.license.clone()));
        }
        stack.extend(runtime);
    }
    let app = crate_component(
        "application",
        &root.name,
        &root.version.to_string(),
        root.license.as_deref(),
    );
    Ok(RustFacts {
        version: root.version.to_string(),
        lock_sha256,
        sbom: cyclonedx(app, crates, deps),
        dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
    })
}

/// The SBOM of a program Kiln did not build from Rust sources: just the program, with its hash.
pub fn program_sbom(name: &str, program_sha256: &str) -> Value {
    cyclonedx(
        json!({
            "type": "application",
            "bom-ref": format!("kiln-app:{name}"),
            "name": name,
            "hashes": [{ "alg": "SHA-256", "content": program_sha256 }],
        }),
        Vec::new(),
        Vec::new(),
    )
}

/// The kernel's version, default features and rustflags, read from the kernel workspace.
fn kernel_facts(layout: &Layout) -> anyhow::Result<(String, Vec<String>, Vec<String>)> {
    let dir = layout.kernel_dir();
    let read_toml = |p: &Path| -> anyhow::Result<toml::Table> {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("could not read {}", p.display()))?;
        text.parse()
            .map_err(|e| anyhow!("{} is not valid TOML: {e}", p.display()))
    };
    let ws = read_toml(&dir.join("Cargo.toml"))?;
    let kiln = read_toml(&dir.join("kiln/Cargo.toml"))?;
    let version = kiln
        .get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .or_else(|| {
            ws.get("workspace")
                .and_then(|w| w.get("package"))
                .and_then(|p| p.get("version"))
                .and_then(|v| v.as_str())
        })
        .unwrap_or("unknown")
        .to_string();
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let features = strings(kiln.get("features").and_then(|f| f.get("default")));
    let mut flags = vec!["cargo".to_string(), "build".into(), "--release".into()];
    if let Ok(cfg) = read_toml(&dir.join(".cargo/config.toml")) {
        let build = cfg.get("build");
        if let Some(t) = build.and_then(|b| b.get("target")).and_then(|t| t.as_str()) {
            flags.extend(["--target".to_string(), t.to_string()]);
        }
        let rustflags = strings(build.and_then(|b| b.get("rustflags")));
        if !rustflags.is_empty() {
            flags.push(format!("RUSTFLAGS={}", rustflags.join(" ")));
        }
    }
    Ok((version, features, flags))
}

/// Collects everything about a build except what [`crate::image`] fills in while assembling
/// (config, rootfs hash) and the image hash ([`seal`]).
pub fn collect(
    layout: &Layout,
    source: &AppSource,
    app: &App,
    program: &[u8],
    kernel: &[u8],
) -> anyhow::Result<Provenance> {
    let program_sha256 = hex(program);
    let (version, features, kernel_flags) = kernel_facts(layout)?;
    let kernel_git = git_info(&layout.root, &["kernel", "abi"]);
    let mut cc = None;
    // (Cargo.toml, label) for Rust apps; the example's name for C examples.
    let rust: Result<(std::path::PathBuf, String), Option<String>> = match source {
        AppSource::Elf(_) => Err(None),
        AppSource::Example(name) => match crate::app::example_kind(layout, name)? {
            crate::app::ExampleKind::Rust(m) => Ok((m, format!("example:{name}"))),
            crate::app::ExampleKind::C(_) | crate::app::ExampleKind::Go(_) => {
                Err(Some(name.clone()))
            }
        },
        AppSource::Manifest { path, .. } => Ok((path.clone(), String::new())),
    };
    let (app_info, sbom, app_flags, rustc_dir) = match rust {
        Err(None) => {
            let file = match source {
                AppSource::Elf(p) => p.file_name().map(|f| f.to_string_lossy().into_owned()),
                _ => None,
            };
            (
                AppInfo {
                    name: app.name.clone(),
                    version: None,
                    source: format!("elf:{}", file.unwrap_or_default()),
                    program_sha256: program_sha256.clone(),
                    git: None,
                    cargo_lock_sha256: None,
                },
                program_sbom(&app.name, &program_sha256),
                Vec::new(),
                layout.root.clone(),
            )
        }
        Err(Some(name)) => {
            let dir = layout.examples_dir().join(&name);
            // The compiler: Go's for a Go module, gcc for C files.
            cc = if dir.join("go.mod").is_file() {
                output(Command::new("go").arg("version"))
            } else {
                output(Command::new("gcc").arg("--version"))
            }
            .and_then(|t| t.lines().next().map(String::from));
            (
                AppInfo {
                    name: app.name.clone(),
                    version: None,
                    source: format!("example:{name}"),
                    program_sha256: program_sha256.clone(),
                    git: git_info(&dir, &["."]),
                    cargo_lock_sha256: None,
                },
                program_sbom(&app.name, &program_sha256),
                vec!["gcc".into(), "-static".into(), "-O2".into()],
                dir,
            )
        }
        Ok((manifest, label)) => {
            let facts = rust_facts(&manifest)?;
            let package = facts.sbom["metadata"]["component"]["name"]
                .as_str()
                .unwrap_or(&app.name)
                .to_string();
            let mut flags: Vec<String> = [
                "cargo",
                "build",
                "--release",
                "--target",
                TARGET,
                "--config",
                STATIC_RUSTFLAGS,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            flags.extend(["--bin".to_string(), app_bin(source, &app.name)]);
            (
                AppInfo {
                    name: app.name.clone(),
                    version: Some(facts.version.clone()),
                    source: if label.is_empty() {
                        format!("cargo:{package}")
                    } else {
                        label
                    },
                    program_sha256: program_sha256.clone(),
                    git: git_info(&facts.dir, &["."]),
                    cargo_lock_sha256: facts.lock_sha256.clone(),
                },
                facts.sbom,
                flags,
                facts.dir,
            )
        }
    };
    Ok(Provenance {
        schema: SCHEMA.into(),
        app: app_info,
        kernel: KernelInfo {
            version,
            features,
            elf_sha256: hex(kernel),
            git: kernel_git,
        },
        build: BuildInfo {
            rustc: rustc_version(&rustc_dir),
            cc,
            app_flags,
            kernel_flags,
            kiln_version: env!("CARGO_PKG_VERSION").into(),
        },
        config: String::new(),
        rootfs_sha256: String::new(),
        created: created_from_env()?,
        sbom,
        image_sha256: PLACEHOLDER.into(),
        image_sha256_covers: IMAGE_SHA256_COVERS.into(),
        libraries: Vec::new(),
    })
}

/// The binary that was built: `--bin` when given, else the one the app is named after.
fn app_bin(source: &AppSource, app_name: &str) -> String {
    match source {
        AppSource::Manifest { bin: Some(b), .. } => b.clone(),
        _ => app_name.to_string(),
    }
}

/// Where the payload lies in a PVH image file, and its parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSpan {
    /// File offset of the payload.
    pub offset: usize,
    /// The payload's header (ranges relative to `offset`).
    pub header: kiln_abi::payload::Header,
}

impl PayloadSpan {
    /// File byte range of the provenance part.
    pub fn provenance(&self) -> std::ops::Range<usize> {
        self.offset + self.header.provenance.start..self.offset + self.header.provenance.end
    }
}

/// Finds the payload of a PVH image: the `PT_LOAD` whose bytes start with the payload magic.
pub fn find_payload(image: &[u8]) -> anyhow::Result<PayloadSpan> {
    let (_, phdrs) = crate::elf::headers(image).map_err(|e| anyhow!("not a Kiln image: {e}"))?;
    for p in phdrs
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_LOAD)
    {
        let start = p.p_offset as usize;
        let Some(bytes) = start
            .checked_add(p.p_filesz as usize)
            .and_then(|end| image.get(start..end))
        else {
            continue;
        };
        if bytes.starts_with(&kiln_abi::payload::MAGIC) {
            let header = kiln_abi::payload::parse(bytes)
                .map_err(|e| anyhow!("the image's payload is damaged: {e}"))?;
            return Ok(PayloadSpan {
                offset: start,
                header,
            });
        }
    }
    bail!("no Kiln payload in this ELF (no PT_LOAD starts with KILNPAY1): it is not a Kiln image")
}

/// The image hash (see [`IMAGE_SHA256_COVERS`]) of `image` whose provenance lies at `span`.
pub fn image_sha256(image: &[u8], span: std::ops::Range<usize>) -> String {
    let mut h = Sha256::new();
    h.update(&image[..span.start]);
    let zeros = [0u8; 4096];
    let mut left = span.len();
    while left > 0 {
        let n = left.min(zeros.len());
        h.update(&zeros[..n]);
        left -= n;
    }
    h.update(&image[span.end..]);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the image hash into the provenance of a freshly linked image (whose `image_sha256`
/// is still the placeholder) and returns it.
pub fn seal(image: &mut [u8]) -> anyhow::Result<String> {
    let span = find_payload(image)?.provenance();
    let needle = format!("\"image_sha256\":\"{PLACEHOLDER}\"");
    let at = image[span.clone()]
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .ok_or_else(|| anyhow!("the image's provenance has no image_sha256 placeholder"))?;
    let sha = image_sha256(image, span.clone());
    let value_at = span.start + at + "\"image_sha256\":\"".len();
    image[value_at..value_at + 64].copy_from_slice(sha.as_bytes());
    Ok(sha)
}

/// The provenance of a PVH image and whether its `image_sha256` matches the image.
pub fn read(image: &[u8]) -> anyhow::Result<(Provenance, bool)> {
    let span = find_payload(image)?;
    let range = span.provenance();
    if range.is_empty() {
        bail!("this image has no provenance (it was built by an older Kiln, payload version 1); rebuild it")
    }
    let prov = Provenance::from_json(&image[range.clone()])?;
    let ok = image_sha256(image, range) == prov.image_sha256;
    Ok((prov, ok))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Provenance {
        Provenance {
            schema: SCHEMA.into(),
            app: AppInfo {
                name: "hello".into(),
                version: Some("0.1.0".into()),
                source: "example:hello".into(),
                program_sha256: "ab".repeat(32),
                git: Some(GitInfo {
                    commit: "c0ffee".into(),
                    dirty: true,
                }),
                cargo_lock_sha256: Some("cd".repeat(32)),
            },
            kernel: KernelInfo {
                version: "0.1.0".into(),
                features: vec![],
                elf_sha256: "ef".repeat(32),
                git: None,
            },
            build: BuildInfo {
                rustc: Some("rustc 1.95.0".into()),
                cc: None,
                app_flags: vec!["cargo".into(), "build".into()],
                kernel_flags: vec![],
                kiln_version: "0.1.0".into(),
            },
            config: "kiln.name=/bin/hello".into(),
            rootfs_sha256: "12".repeat(32),
            created: None,
            sbom: program_sbom("hello", &"ab".repeat(32)),
            image_sha256: PLACEHOLDER.into(),
            image_sha256_covers: IMAGE_SHA256_COVERS.into(),
            libraries: Vec::new(),
        }
    }

    #[test]
    fn json_round_trip_and_fixed_order() {
        let p = sample();
        let j = p.to_json();
        assert_eq!(Provenance::from_json(&j).unwrap(), p);
        assert_eq!(j, sample().to_json());
        let text = String::from_utf8(j).unwrap();
        assert!(
            text.starts_with("{\"schema\":\"dev.kiln.provenance/v1\",\"app\":{\"name\":\"hello\"")
        );
        assert!(text.contains("\"bomFormat\":\"CycloneDX\""));
        assert!(!text.contains("/work/"), "no host paths: {text}");
    }

    #[test]
    fn seal_then_read_verifies_and_detects_tampering() {
        let kernel = crate::link::tests::fake_kernel(kiln_abi::payload::LOCATION_SYMBOL, 16);
        let payload =
            kiln_abi::payload::build_with_provenance(b"\x7fELFp", b"tar", "c", &sample().to_json());
        let mut image = crate::link::link(&kernel, &payload).unwrap();
        let before = image.clone();
        let sha = seal(&mut image).unwrap();
        assert_ne!(sha, PLACEHOLDER);
        assert_eq!(image.len(), before.len());
        let (prov, ok) = read(&image).unwrap();
        assert!(ok);
        assert_eq!(prov.image_sha256, sha);
        assert_eq!(prov.app.name, "hello");
        // The hash does not depend on the provenance's content...
        let span = find_payload(&image).unwrap().provenance();
        assert_eq!(image_sha256(&before, span.clone()), sha);
        // ...but on every other byte.
        let mut bad = image.clone();
        bad[span.start - 1] ^= 1;
        assert!(!read(&bad).unwrap().1);
        // Sealing twice from the same inputs gives the same bytes.
        let mut again = before.clone();
        seal(&mut again).unwrap();
        assert_eq!(again, image);
    }

    #[test]
    fn images_without_provenance_say_so() {
        let kernel = crate::link::tests::fake_kernel(kiln_abi::payload::LOCATION_SYMBOL, 16);
        let image = crate::link::link(&kernel, &kiln_abi::payload::build(b"p", b"r", "c")).unwrap();
        let e = read(&image).unwrap_err().to_string();
        assert!(e.contains("no provenance") && e.contains("rebuild"), "{e}");
        let e = read(b"not an elf").unwrap_err().to_string();
        assert!(e.contains("not a Kiln image"), "{e}");
    }

    #[test]
    fn sbom_of_a_real_crate_lists_its_runtime_dependencies() {
        // This crate itself: its normal dependencies, not its dev-dependencies.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let f = rust_facts(&manifest).unwrap();
        assert_eq!(f.version, env!("CARGO_PKG_VERSION"));
        assert!(f.lock_sha256.is_some());
        let names: Vec<&str> = f.sbom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"anyhow") && names.contains(&"kiln-abi"),
            "{names:?}"
        );
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(f.sbom["metadata"]["component"]["name"], "kiln-toolchain");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn sbom_is_sorted_cyclonedx() {
        let s = cyclonedx(
            json!({"type": "application", "name": "a"}),
            vec![
                ("zeta".into(), "1.0.0".into(), None),
                ("alpha".into(), "0.2.0".into(), Some("MIT".into())),
                ("zeta".into(), "1.0.0".into(), None),
            ],
            vec![(
                "pkg:cargo/a@1".into(),
                vec![
                    "pkg:cargo/zeta@1.0.0".into(),
                    "pkg:cargo/alpha@0.2.0".into(),
                ],
            )],
        );
        assert_eq!(s["specVersion"], "1.5");
        let c = s["components"].as_array().unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["purl"], "pkg:cargo/alpha@0.2.0");
        assert_eq!(c[0]["licenses"][0]["expression"], "MIT");
        assert_eq!(
            s["dependencies"][0]["dependsOn"][0],
            "pkg:cargo/alpha@0.2.0"
        );
    }
}
