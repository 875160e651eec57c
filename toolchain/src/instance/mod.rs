//! Detached instances, docker-style: `run -d` starts an image in the background under a
//! small supervisor process; `ps`, `logs`, `stop`, `rm` and `inspect` operate them.
//!
//! State lives in a directory of its own ([`Store::from_env`]), one directory per instance:
//!
//! ```text
//! STATE/instances/NAME/config.json     what run -d decided (state::Config)
//!                      state.json      what the supervisor records (state::State)
//!                      log.json        the program's stdout and stderr (logs)
//!                      supervisor.log  Kiln's own lines: the runner's notes, the supervisor's
//!                      IMAGE           the instance's own copy of the image
//! STATE/ports/tcp-8080                 the claim on a forwarded host port (ports)
//! ```
//!
//! Concurrency: an instance directory is made in full under a temporary name and claimed
//! by renaming it to its name without replacing (`RENAME_NOREPLACE`), so of two `run -d
//! --name x` exactly one wins; ports are claimed under a lock; state files are replaced by
//! rename; `rm` renames the directory away before deleting it.
//!
//! - [`names`]: name rules and generated names. [`state`]: the two JSON files, docker's
//!   status words. [`procs`]: pids that cannot be mistaken after reuse. [`ports`]: port
//!   claims. [`logs`]: the log format, `--tail`, `--timestamps`, following.
//!   [`split`]: Kiln's lines apart from the program's stderr. [`supervisor`]: the process
//!   that owns a running instance. [`control`]: `stop`, `rm`, `ps`, `inspect`.

pub mod control;
pub mod logs;
pub mod names;
pub mod ports;
pub mod procs;
pub mod split;
pub mod state;
pub mod supervisor;

use anyhow::Context;
use state::{Config, State};
use std::path::{Path, PathBuf};

/// An instance name that names no instance.
#[derive(Debug, thiserror::Error)]
#[error("No such instance: {0}")]
pub struct NoSuchInstance(pub String);

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One instance: its directory and configuration.
#[derive(Debug, Clone)]
pub struct Instance {
    dir: PathBuf,
    /// What `run -d` decided.
    pub config: Config,
}

/// What `run -d` asks for.
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// `--name`, or `None` for a generated one.
    pub name: Option<String>,
    /// The image to copy into the instance.
    pub image: PathBuf,
    /// The rest of what `run -d` was asked for.
    pub spec: state::Spec,
}

impl Store {
    /// `$KILN_STATE_DIR`, else `$XDG_STATE_HOME/kiln`, else `~/.local/state/kiln`.
    pub fn from_env() -> anyhow::Result<Store> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = var("KILN_STATE_DIR")
            .or_else(|| {
                var("XDG_STATE_HOME")
                    .filter(|p| p.is_absolute())
                    .map(|p| p.join("kiln"))
            })
            .or_else(|| var("HOME").map(|h| h.join(".local/state/kiln")))
            .context("no state directory: set KILN_STATE_DIR (or HOME)")?;
        Ok(Store::at(root))
    }

    /// The store at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// Where port claims live.
    pub fn ports_dir(&self) -> PathBuf {
        self.root.join("ports")
    }

    /// The instance named `name`.
    pub fn open(&self, name: &str) -> anyhow::Result<Instance> {
        if names::validate(name).is_err() {
            return Err(NoSuchInstance(name.into()).into());
        }
        let dir = self.instances_dir().join(name);
        if !dir.join("config.json").is_file() {
            return Err(NoSuchInstance(name.into()).into());
        }
        self.open_dir(&dir)
    }

    /// The instance in `dir`.
    pub fn open_dir(&self, dir: &Path) -> anyhow::Result<Instance> {
        Ok(Instance {
            dir: dir.to_path_buf(),
            config: state::read_json(&dir.join("config.json"))?,
        })
    }

    /// Every instance, newest first.
    pub fn list(&self) -> Vec<Instance> {
        let Ok(entries) = std::fs::read_dir(self.instances_dir()) else {
            return Vec::new();
        };
        let mut all: Vec<Instance> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| self.open_dir(&e.path()).ok())
            .collect();
        all.sort_by_key(|i| std::cmp::Reverse(i.config.created_ms));
        all
    }

    /// Creates an instance: copies the image, writes its configuration and claims its name
    /// and ports, all or nothing. The supervisor is not started yet.
    pub fn create(&self, req: &NewInstance) -> anyhow::Result<Instance> {
        if let Some(n) = &req.name {
            names::validate(n).map_err(anyhow::Error::msg)?;
        }
        let parent = self.instances_dir();
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&parent)?;
        let image_file = req
            .image
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image.elf".into());
        let copy = tmp.path().join(&image_file);
        std::fs::copy(&req.image, &copy)
            .with_context(|| format!("could not copy {}", req.image.display()))?;
        let bytes = std::fs::read(&copy)?;
        let mut config = Config {
            id: names::new_id(),
            name: String::new(),
            created_ms: state::now_ms(),
            spec: req.spec.clone(),
            image_sha256: crate::image::sha256_hex(&bytes),
            image_source: std::path::absolute(&req.image).unwrap_or_else(|_| req.image.clone()),
            image_file,
            workdir: std::env::current_dir()?,
        };
        drop(bytes);
        state::write_json(
            &tmp.path().join("state.json"),
            &State::created(&req.spec.accel),
        )?;
        std::fs::File::create(tmp.path().join("log.json"))?;
        std::fs::File::create(tmp.path().join("supervisor.log"))?;
        let tmp = tmp.keep();
        let claimed = self.claim_name(&tmp, &mut config, req.name.as_deref());
        let dir = match claimed {
            Ok(dir) => dir,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let inst = Instance { dir, config };
        let holds = |id: &str, name: &str| {
            self.open(name).is_ok_and(|o| {
                o.config.id == id
                    && o.state().is_ok_and(|s| {
                        !matches!(state::phase(&s), state::Phase::Exited | state::Phase::Dead)
                    })
            })
        };
        if let Err(e) = ports::claim(
            &self.ports_dir(),
            &inst.config.id,
            &inst.config.name,
            &inst.config.spec.ports,
            holds,
        ) {
            let _ = self.remove(&inst);
            return Err(e);
        }
        Ok(inst)
    }

    /// Renames the prepared directory `tmp` to its name (given, or generated until one is
    /// free), never replacing an instance.
    fn claim_name(
        &self,
        tmp: &Path,
        config: &mut Config,
        name: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        for attempt in 0..100 {
            config.name = name.map_or_else(|| names::generate(attempt / 10), String::from);
            state::write_json(&tmp.join("config.json"), config)?;
            let dir = self.instances_dir().join(&config.name);
            match renameat_with(CWD, tmp, CWD, &dir, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(dir),
                Err(e) if e == rustix::io::Errno::EXIST || e == rustix::io::Errno::NOTEMPTY => {
                    if name.is_some() {
                        let owner = self
                            .open(&config.name)
                            .map(|o| format!(" by instance {}", &o.config.id[..12]))
                            .unwrap_or_default();
                        anyhow::bail!(
                            "Conflict. The instance name \"{}\" is already in use{owner}. Remove it (cargo xtask rm {}) to reuse the name.",
                            config.name,
                            config.name
                        );
                    }
                }
                Err(e) => anyhow::bail!("could not create {}: {e}", dir.display()),
            }
        }
        anyhow::bail!("could not find a free instance name; give one with --name")
    }

    /// Removes an instance's files and its port claims (renamed away first, so its name is
    /// free at once and nobody reads a half-removed instance).
    pub fn remove(&self, inst: &Instance) -> anyhow::Result<()> {
        // A control socket outside the directory (a long state path) goes too.
        let control = inst.control_socket();
        if !control.starts_with(&inst.dir) {
            let _ = std::fs::remove_file(&control);
        }
        let gone =
            self.instances_dir()
                .join(format!(".rm-{}-{:x}", inst.config.id, names::random_u64()));
        match std::fs::rename(&inst.dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => anyhow::bail!("could not remove {}: {e}", inst.dir.display()),
        }
        ports::release(&self.ports_dir(), &inst.config.id);
        std::fs::remove_dir_all(&gone)
            .with_context(|| format!("could not remove {}", gone.display()))
    }
}

impl Instance {
    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its own copy of the image.
    pub fn image_path(&self) -> PathBuf {
        self.dir.join(&self.config.image_file)
    }

    /// The Unix socket of its kernel's control channel (`stats NAME`): in its directory, or,
    /// where that path is too long for a socket address (108 bytes), a name in the
    /// temporary directory derived from it.
    pub fn control_socket(&self) -> PathBuf {
        let inside = self.dir.join("control.sock");
        if inside.as_os_str().len() < 100 {
            return inside;
        }
        use sha2::Digest;
        let hash = sha2::Sha256::digest(self.dir.as_os_str().as_encoded_bytes());
        let short: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("kiln-control-{short}.sock"))
    }

    /// The program's output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log.json")
    }

    /// Kiln's lines about the instance.
    pub fn supervisor_log_path(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }

    /// What the supervisor last recorded.
    pub fn state(&self) -> anyhow::Result<State> {
        state::read_json(&self.dir.join("state.json"))
    }

    /// Records `s` (atomically).
    pub fn write_state(&self, s: &State) -> anyhow::Result<()> {
        state::write_json(&self.dir.join("state.json"), s)
    }

    /// What it is doing now (exited when its directory has gone).
    pub fn phase(&self) -> state::Phase {
        self.state()
            .map_or(state::Phase::Exited, |s| state::phase(&s))
    }
}
