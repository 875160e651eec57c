//! A project's own defaults for Kiln, from `[package.metadata.kiln]` in its Cargo.toml, so
//! `cargo kiln run` in that project needs no flags:
//!
//! ```toml
//! [package.metadata.kiln]
//! args = ["--port", "8080"]          # the program's arguments, baked into the image
//! env = { RUST_LOG = "info" }        # its environment, baked in
//! files = ["static:/srv/static"]     # SRC:DEST, SRC relative to the package
//! memory = "64M"                     # run's --memory
//! ports = ["8080:8080"]              # run's -p
//! format = "qcow2"                   # build-image's --format
//! dynamic = true                     # build-image's --dynamic
//! libs = ["libssl.so.3"]             # build-image's --lib
//! ```
//!
//! Flags override them: `--arg`s replace `args`, `--env` wins per variable, `--file`s and
//! `--lib`s add to `files` and `libs`, `--dynamic` turns `dynamic` on, and `--memory`, `-p`
//! and `--format` replace theirs.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// What `[package.metadata.kiln]` says (everything optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// The program's arguments.
    pub args: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Files to add, `SRC:DEST` with SRC resolved against the package's directory.
    pub files: Vec<String>,
    /// Guest memory, as `--memory` takes it.
    pub memory: Option<String>,
    /// Port forwards, as `-p` takes them.
    pub ports: Vec<String>,
    /// Image format, as `--format` takes it.
    pub format: Option<String>,
    /// Link the program dynamically (`--dynamic`).
    pub dynamic: bool,
    /// More libraries to pack (`--lib`).
    pub libs: Vec<String>,
}

/// The defaults of the package whose manifest is `manifest` (none without the table).
pub fn read(manifest: &Path) -> anyhow::Result<Defaults> {
    let meta = cargo_metadata::MetadataCommand::new()
        .manifest_path(manifest)
        .no_deps()
        .exec()
        .with_context(|| format!("could not read {}", manifest.display()))?;
    let want = manifest.canonicalize().unwrap_or_else(|_| manifest.into());
    let Some(pkg) = meta.packages.iter().find(|p| {
        p.manifest_path
            .as_std_path()
            .canonicalize()
            .is_ok_and(|m| m == want)
    }) else {
        return Ok(Defaults::default());
    };
    let dir = want.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&pkg.metadata["kiln"], &dir)
        .with_context(|| format!("{}: [package.metadata.kiln]", manifest.display()))
}

/// Reads the table's JSON form (`Null` when absent); `dir` anchors relative file sources.
pub fn parse(v: &serde_json::Value, dir: &Path) -> anyhow::Result<Defaults> {
    use serde_json::Value;
    let mut d = Defaults::default();
    let Value::Object(table) = v else {
        if v.is_null() {
            return Ok(d);
        }
        bail!("expected a table");
    };
    let strings = |key: &str, v: &Value| -> anyhow::Result<Vec<String>> {
        let Value::Array(items) = v else {
            bail!("{key}: expected a list of strings");
        };
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("{key}: expected a list of strings"))
            })
            .collect()
    };
    for (key, value) in table {
        match key.as_str() {
            "args" => d.args = strings(key, value)?,
            "ports" => d.ports = strings(key, value)?,
            "libs" => d.libs = strings(key, value)?,
            "dynamic" => {
                d.dynamic = value
                    .as_bool()
                    .with_context(|| format!("{key}: expected true or false"))?
            }
            "files" => {
                d.files = strings(key, value)?
                    .into_iter()
                    .map(|spec| match spec.split_once(':') {
                        Some((src, dest)) if Path::new(src).is_relative() => {
                            format!("{}:{dest}", dir.join(src).display())
                        }
                        _ => spec,
                    })
                    .collect()
            }
            "env" => {
                let Value::Object(vars) = value else {
                    bail!("env: expected a table of NAME = \"value\"");
                };
                for (k, v) in vars {
                    let v = v
                        .as_str()
                        .with_context(|| format!("env.{k}: expected a string"))?;
                    d.env.push((k.clone(), v.to_string()));
                }
            }
            "memory" | "format" => {
                let s = value
                    .as_str()
                    .with_context(|| format!("{key}: expected a string"))?
                    .to_string();
                if key == "memory" {
                    d.memory = Some(s);
                } else {
                    d.format = Some(s);
                }
            }
            other => {
                bail!("unknown key `{other}` (known: args, env, files, memory, ports, format, dynamic, libs)")
            }
        }
    }
    Ok(d)
}

/// The Cargo.toml of the package around `dir` (the nearest one up), if it is a package
/// rather than a virtual workspace.
pub fn package_manifest(dir: &Path) -> Option<PathBuf> {
    let root = crate::sources::project_root(dir)?;
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).ok()?;
    text.lines()
        .any(|l| l.trim() == "[package]")
        .then_some(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_key_is_read_and_files_resolve_against_the_package() {
        let v = json!({
            "args": ["--port", "8080"],
            "env": {"RUST_LOG": "info"},
            "files": ["static:/srv/static", "/etc/x:/etc/x"],
            "memory": "64M",
            "ports": ["8080:8080"],
            "format": "qcow2",
            "dynamic": true,
            "libs": ["libssl.so.3"],
        });
        let d = parse(&v, Path::new("/p")).unwrap();
        assert_eq!(d.args, ["--port", "8080"]);
        assert_eq!(d.env, [("RUST_LOG".to_string(), "info".to_string())]);
        assert_eq!(d.files, ["/p/static:/srv/static", "/etc/x:/etc/x"]);
        assert_eq!(d.memory.as_deref(), Some("64M"));
        assert_eq!(d.ports, ["8080:8080"]);
        assert_eq!(d.format.as_deref(), Some("qcow2"));
        assert!(d.dynamic);
        assert_eq!(d.libs, ["libssl.so.3"]);
        assert_eq!(
            parse(&json!(null), Path::new("/")).unwrap(),
            Defaults::default()
        );
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse(&json!({"memroy": "64M"}), Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("unknown key `memroy`"), "{e}");
        let e = parse(&json!({"args": "x"}), Path::new("/")).unwrap_err();
        assert!(
            e.to_string().contains("args: expected a list of strings"),
            "{e}"
        );
        let e = parse(&json!({"env": {"A": 1}}), Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("env.A: expected a string"), "{e}");
        let e = parse(&json!({"dynamic": "yes"}), Path::new("/")).unwrap_err();
        assert!(
            e.to_string().contains("dynamic: expected true or false"),
            "{e}"
        );
    }

    #[test]
    fn virtual_workspaces_are_not_packages() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        assert_eq!(package_manifest(d.path()), None);
        std::fs::write(d.path().join("Cargo.toml"), "[package]\nname = \"a\"\n").unwrap();
        assert_eq!(
            package_manifest(d.path()),
            Some(d.path().join("Cargo.toml"))
        );
    }
}
