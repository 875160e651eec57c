//! An instance's configuration (fixed by `run -d`) and state (kept by its supervisor): JSON
//! files, each written whole to a temporary file and renamed into place, so a reader never
//! sees half of one.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ports::Port;
use super::procs::Proc;

/// What `run -d` was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The image's name (the example, program or file it was built or taken from).
    pub image_name: String,
    /// The `run` options for the runner, after `--image IMG`.
    pub runner_args: Vec<String>,
    /// The whole `run` command line as given, for `inspect`.
    pub command: Vec<String>,
    /// Forwarded host ports (claimed for the instance's life).
    pub ports: Vec<Port>,
    /// What to do when the program exits.
    pub restart: RestartPolicy,
    /// `--rm`: remove the instance when it has exited.
    pub auto_remove: bool,
    /// The accelerator chosen when the instance was created (`kvm` or `tcg`).
    pub accel: String,
}

/// What `run -d` decided; never changes afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// 64 hex digits, unique per instance (names can be reused after `rm`).
    pub id: String,
    /// The instance's name.
    pub name: String,
    /// When `run -d` created it (milliseconds since the Unix epoch).
    pub created_ms: u64,
    /// What it was asked for.
    #[serde(flatten)]
    pub spec: Spec,
    /// SHA-256 of the image file (the instance boots its own copy of it).
    pub image_sha256: String,
    /// Where the image came from.
    pub image_source: PathBuf,
    /// The file name of the instance's copy of the image, in its directory.
    pub image_file: String,
    /// The directory `run -d` ran in: relative paths in the options are relative to it.
    pub workdir: PathBuf,
}

/// `--restart`: docker's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestartPolicy {
    /// Never restart (the default).
    #[default]
    No,
    /// Restart after a non-zero exit, at most N times (0: without limit).
    OnFailure(u32),
    /// Restart after any exit that `stop` did not cause.
    Always,
    /// The same as `always` here (there is no daemon restart to survive).
    UnlessStopped,
}

impl RestartPolicy {
    /// Whether an exit with `code`, after `restarts` restarts so far, is followed by another.
    pub fn restarts_after(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || restarts < max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// Docker's `RestartPolicy` object: `Name` and `MaximumRetryCount`.
    pub fn to_json(self) -> serde_json::Value {
        let (name, max) = match self {
            RestartPolicy::No => ("no", 0),
            RestartPolicy::OnFailure(n) => ("on-failure", n),
            RestartPolicy::Always => ("always", 0),
            RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        };
        serde_json::json!({ "Name": name, "MaximumRetryCount": max })
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    /// `no`, `on-failure[:N]`, `always` or `unless-stopped`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, max) = match s.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (s, None),
        };
        match (name, max) {
            ("no", None) => Ok(RestartPolicy::No),
            ("always", None) => Ok(RestartPolicy::Always),
            ("unless-stopped", None) => Ok(RestartPolicy::UnlessStopped),
            ("on-failure", None) => Ok(RestartPolicy::OnFailure(0)),
            ("on-failure", Some(m)) => m.parse().map(RestartPolicy::OnFailure).map_err(|_| {
                format!("invalid restart policy `{s}`: the maximum retry count must be a non-negative number")
            }),
            ("no" | "always" | "unless-stopped", Some(_)) => Err(format!(
                "invalid restart policy `{s}`: maximum retry count can only be used with 'on-failure'"
            )),
            _ => Err(format!(
                "invalid restart policy `{s}`: use no, on-failure[:N], always or unless-stopped"
            )),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => write!(f, "no"),
            RestartPolicy::OnFailure(0) => write!(f, "on-failure"),
            RestartPolicy::OnFailure(n) => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => write!(f, "always"),
            RestartPolicy::UnlessStopped => write!(f, "unless-stopped"),
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<RestartPolicy> for String {
    fn from(p: RestartPolicy) -> String {
        p.to_string()
    }
}

/// Where an instance is in its life, as its supervisor last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Claimed by `run -d`; the supervisor has not started the program yet.
    Created,
    /// The runner (and its QEMU) is running.
    Running,
    /// The program exited and will be started again.
    Restarting,
    /// The program exited for good.
    Exited,
}

/// What the supervisor records (`state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Where the instance is in its life.
    pub status: Status,
    /// The supervisor process.
    pub supervisor: Option<Proc>,
    /// The runner process (`xtask run`, which owns QEMU), while it runs.
    pub runner: Option<Proc>,
    /// When the program last started (ms since the epoch).
    pub started_ms: Option<u64>,
    /// When it last exited.
    pub finished_ms: Option<u64>,
    /// Its last exit status (as `run` reports it: 128+N for signal N, 125 for Kiln's failures).
    pub exit_code: Option<i32>,
    /// Restarts so far.
    pub restart_count: u32,
    /// The accelerator the runs use.
    pub accel: String,
    /// Why the last run failed, when Kiln says so (the runner's last `kiln:` line).
    pub error: String,
    /// Whether `stop` (or `rm -f`) ended it.
    pub stopped: bool,
}

impl State {
    /// The state of an instance `run -d` has just claimed.
    pub fn created(accel: &str) -> State {
        State {
            status: Status::Created,
            supervisor: None,
            runner: None,
            started_ms: None,
            finished_ms: None,
            exit_code: None,
            restart_count: 0,
            accel: accel.to_string(),
            error: String::new(),
            stopped: false,
        }
    }
}

/// What an instance is doing, with its supervisor checked: a supervisor that is gone while
/// the state says otherwise makes the instance [`Phase::Dead`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Claimed, not started yet.
    Created,
    /// Up since `started_ms`.
    Running,
    /// Between two runs.
    Restarting,
    /// Exited for good.
    Exited,
    /// Its supervisor died without recording an exit: the status is unknown.
    Dead,
}

impl Phase {
    /// Whether the instance may still run its program (`rm` refuses these without `-f`).
    pub fn is_live(self) -> bool {
        matches!(self, Phase::Running | Phase::Restarting)
    }

    /// Docker's `State.Status` word.
    pub fn word(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Restarting => "restarting",
            Phase::Exited => "exited",
            Phase::Dead => "dead",
        }
    }
}

/// [`Phase`] of `state`, checking that a live-looking instance's supervisor is alive.
pub fn phase(state: &State) -> Phase {
    let supervised = state.supervisor.as_ref().is_some_and(Proc::alive);
    match state.status {
        Status::Exited => Phase::Exited,
        Status::Created if state.supervisor.is_none() => Phase::Created,
        _ if !supervised => Phase::Dead,
        Status::Created | Status::Running => Phase::Running,
        Status::Restarting => Phase::Restarting,
    }
}

/// `ps`'s STATUS column, docker's words: `Up 3 minutes`, `Exited (0) 2 seconds ago`.
pub fn status_line(state: &State, now_ms: u64) -> String {
    let since = |t: Option<u64>| human_duration(now_ms.saturating_sub(t.unwrap_or(now_ms)));
    let code = state
        .exit_code
        .map_or_else(|| "unknown".to_string(), |c| c.to_string());
    match phase(state) {
        Phase::Created => "Created".into(),
        Phase::Running => format!("Up {}", since(state.started_ms)),
        Phase::Restarting => format!("Restarting ({code}) {} ago", since(state.finished_ms)),
        Phase::Exited => format!("Exited ({code}) {} ago", since(state.finished_ms)),
        Phase::Dead => "Exited (unknown): its supervisor died".into(),
    }
}

/// Docker's `units.HumanDuration`: `Less than a second`, `3 seconds`, `About a minute`...
pub fn human_duration(ms: u64) -> String {
    let secs = ms / 1000;
    let mins = secs / 60;
    let hours = (ms as f64 / 3_600_000.0 + 0.5) as u64;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `t` in docker's fixed-width RFC 3339 form, UTC with nanoseconds:
/// `2024-05-01T12:00:03.120000000Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = crate::provenance::rfc3339(d.as_secs() as i64);
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), d.subsec_nanos())
}

/// [`rfc3339`] of a time in milliseconds since the epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// Writes `value` as JSON to `path` atomically (a temporary file beside it, renamed over it).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, value)?;
    std::io::Write::write_all(&mut tmp, b"\n")?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("could not write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("could not read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        for (s, p) in [
            ("no", RestartPolicy::No),
            ("on-failure", RestartPolicy::OnFailure(0)),
            ("on-failure:2", RestartPolicy::OnFailure(2)),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
        ] {
            assert_eq!(s.parse::<RestartPolicy>(), Ok(p));
            assert_eq!(p.to_string(), s);
        }
        for bad in ["on-failure:x", "on-failure:-1", "always:3", "sometimes", ""] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
        let p = RestartPolicy::OnFailure(2);
        assert!(p.restarts_after(1, 0) && p.restarts_after(1, 1));
        assert!(!p.restarts_after(1, 2) && !p.restarts_after(0, 0));
        assert!(RestartPolicy::OnFailure(0).restarts_after(3, 1000));
        assert!(RestartPolicy::Always.restarts_after(0, 5));
        assert!(!RestartPolicy::No.restarts_after(1, 0));
    }

    #[test]
    fn docker_durations() {
        for (ms, s) in [
            (0, "Less than a second"),
            (1500, "1 second"),
            (59_999, "59 seconds"),
            (60_000, "About a minute"),
            (180_000, "3 minutes"),
            (3_600_000, "About an hour"),
            (5 * 3_600_000, "5 hours"),
            (3 * 86_400_000, "3 days"),
            (20 * 86_400_000, "2 weeks"),
            (90 * 86_400_000, "3 months"),
            (800 * 86_400_000, "2 years"),
        ] {
            assert_eq!(human_duration(ms), s, "{ms}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_ms(951_782_400_123),
            "2000-02-29T00:00:00.123000000Z"
        );
        assert_eq!(
            rfc3339_ms(1_735_689_599_000),
            "2024-12-31T23:59:59.000000000Z"
        );
    }

    #[test]
    fn status_lines() {
        let mut s = State::created("tcg");
        assert_eq!(status_line(&s, 0), "Created");
        s.status = Status::Exited;
        s.exit_code = Some(3);
        s.finished_ms = Some(1000);
        assert_eq!(status_line(&s, 3500), "Exited (3) 2 seconds ago");
        // A supervisor that no longer exists: never "Up".
        s.status = Status::Running;
        s.supervisor = Some(Proc {
            pid: i32::MAX,
            start: 1,
        });
        assert_eq!(phase(&s), Phase::Dead);
        s.supervisor = Proc::current();
        s.started_ms = Some(0);
        assert_eq!(status_line(&s, 180_000), "Up 3 minutes");
    }
}
