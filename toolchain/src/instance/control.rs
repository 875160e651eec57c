//! Operating instances: starting the supervisor, `stop`, `rm`, and what `ps` and `inspect`
//! show.

use super::procs::Proc;
use super::state::{self, now_ms, rfc3339_ms, Phase, State, Status};
use super::{Instance, Store};
use rustix::process::Signal;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `run -d` waits for the supervisor to start the program.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Polls `done` every 50 ms for at most `limit`; returns whether it became true.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the supervisor of a newly created instance (`exe __supervise DIR`) and waits until
/// it has started the program. On failure the instance is removed again.
pub fn start(store: &Store, inst: &Instance, exe: &Path) -> anyhow::Result<()> {
    let result = (|| {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(inst.supervisor_log_path())?;
        let mut child = Command::new(exe)
            .arg("__supervise")
            .arg(inst.dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("could not start the supervisor: {e}"))?;
        let started = wait_until(START_LIMIT, || {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            let status = inst.state().map(|s| s.status);
            exited
                || matches!(
                    status,
                    Ok(Status::Running | Status::Exited | Status::Restarting) | Err(_)
                )
        });
        let status = inst.state().map(|s| s.status);
        if !started || matches!(status, Ok(Status::Created)) {
            let _ = child.kill();
            let _ = child.wait();
            let said = std::fs::read_to_string(inst.supervisor_log_path()).unwrap_or_default();
            anyhow::bail!(
                "the supervisor did not start the program{}",
                match said.trim() {
                    "" => String::new(),
                    s => format!(": {s}"),
                }
            );
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = store.remove(inst);
    }
    result
}

/// `stop`: SIGTERM to the supervisor (which stops the virtual machine), up to `grace` for
/// it to exit, then SIGKILL to the runner and QEMU (status 137). Stopping an instance that
/// is not running does nothing.
pub fn stop(store: &Store, inst: &Instance, grace: Duration) -> anyhow::Result<()> {
    let s = inst.state()?;
    if !state::phase(&s).is_live() {
        return Ok(());
    }
    if grace.is_zero() {
        kill(store, inst)?;
    } else {
        if let Some(sup) = &s.supervisor {
            sup.signal(Signal::TERM);
        }
        if !wait_until(grace, || !inst.phase().is_live()) {
            kill(store, inst)?;
        }
    }
    // Done when nothing of it runs: the supervisor exits right after recording the exit.
    wait_until(Duration::from_secs(5), || {
        !s.supervisor.as_ref().is_some_and(Proc::alive)
    });
    Ok(())
}

/// Ends a live instance at once: SIGKILL to the runner's process group (the runner and its
/// QEMU). Its supervisor records 137; if the supervisor cannot, this does.
pub fn kill(store: &Store, inst: &Instance) -> anyhow::Result<()> {
    let Ok(s) = inst.state() else { return Ok(()) };
    if let Some(r) = &s.runner {
        r.signal_group(Signal::KILL);
    }
    if let Some(sup) = &s.supervisor {
        // No restart from here on (after the kill, so the runner is not stopped gently).
        sup.signal(Signal::TERM);
    }
    let gone = |r: &Option<Proc>| !r.as_ref().is_some_and(Proc::group_alive);
    if wait_until(Duration::from_secs(5), || {
        !inst.phase().is_live() && gone(&s.runner)
    }) {
        return Ok(());
    }
    // The supervisor is stuck or gone: take over.
    let Ok(mut s) = inst.state() else {
        return Ok(());
    };
    for p in [s.supervisor, s.runner].iter().flatten() {
        p.signal(Signal::KILL);
    }
    if let Some(r) = &s.runner {
        r.signal_group(Signal::KILL);
    }
    if s.status != Status::Exited {
        s.status = Status::Exited;
        s.exit_code = Some(137);
        s.finished_ms = Some(now_ms());
        s.stopped = true;
        s.runner = None;
        inst.write_state(&s)?;
    }
    super::ports::release(&store.ports_dir(), &inst.config.id);
    Ok(())
}

/// `rm`: removes an instance; a live one only with `force` (which kills it first).
pub fn remove(store: &Store, inst: &Instance, force: bool) -> anyhow::Result<()> {
    if inst.phase().is_live() {
        if !force {
            anyhow::bail!(
                "cannot remove instance \"{}\": it is running: stop it before removing or force remove (rm -f)",
                inst.config.name
            );
        }
        // docker rm -f kills rather than stops: SIGKILL to the supervisor (no restart, no
        // --rm of its own), then to the runner and QEMU.
        if let Ok(s) = inst.state() {
            if let Some(sup) = &s.supervisor {
                sup.signal(Signal::KILL);
            }
            let _ = wait_until(Duration::from_secs(2), || {
                !s.supervisor.as_ref().is_some_and(Proc::alive)
            });
            if let Some(r) = inst.state().ok().and_then(|s| s.runner) {
                r.signal_group(Signal::KILL);
                wait_until(Duration::from_secs(5), || !r.group_alive());
            }
        }
    }
    store.remove(inst)
}

fn short_digest(sha256: &str) -> &str {
    &sha256[..sha256.len().min(12)]
}

/// `ps`: docker's table (NAME first, plus the accelerator), `all` with exited instances.
pub fn ps_table(store: &Store, all: bool) -> String {
    let now = now_ms();
    let mut rows = vec![["NAME", "IMAGE", "CREATED", "STATUS", "PORTS", "ACCEL"].map(String::from)];
    for inst in store.list() {
        let Ok(s) = inst.state() else { continue };
        let phase = state::phase(&s);
        if !all && !phase.is_live() {
            continue;
        }
        let c = &inst.config;
        let ports = match phase {
            Phase::Running | Phase::Restarting => c
                .spec
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        rows.push([
            c.name.clone(),
            format!(
                "{}@sha256:{}",
                c.spec.image_name,
                short_digest(&c.image_sha256)
            ),
            format!(
                "{} ago",
                state::human_duration(now.saturating_sub(c.created_ms))
            ),
            state::status_line(&s, now),
            ports,
            s.accel.clone(),
        ]);
    }
    table(&rows)
}

/// Columns padded to their widest cell plus three spaces, as docker's tabwriter does.
fn table(rows: &[[String; 6]]) -> String {
    let mut widths = [0; 6];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `inspect NAME`: configuration and state, docker's field names where docker has one.
pub fn inspect_json(inst: &Instance) -> serde_json::Value {
    let c = &inst.config;
    let s = inst
        .state()
        .unwrap_or_else(|_| State::created(&c.spec.accel));
    let phase = state::phase(&s);
    let time = |t: Option<u64>| t.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339_ms);
    let pid = |p: &Option<Proc>| match phase.is_live() {
        true => p.map_or(0, |p| p.pid),
        false => 0,
    };
    let bindings: serde_json::Map<String, serde_json::Value> = c
        .spec
        .ports
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p.guest, p.proto()),
                serde_json::json!([{ "HostIp": "0.0.0.0", "HostPort": p.host.to_string() }]),
            )
        })
        .collect();
    serde_json::json!({
        "Id": c.id,
        "Name": c.name,
        "Created": rfc3339_ms(c.created_ms),
        "Image": format!("sha256:{}", c.image_sha256),
        "ImageName": c.spec.image_name,
        "ImagePath": inst.image_path(),
        "ImageSource": c.image_source,
        "Command": c.spec.command,
        "RunnerArgs": c.spec.runner_args,
        "WorkingDir": c.workdir,
        "State": {
            "Status": phase.word(),
            "Running": phase == Phase::Running,
            "Restarting": phase == Phase::Restarting,
            "Dead": phase == Phase::Dead,
            "Pid": pid(&s.runner),
            "SupervisorPid": pid(&s.supervisor),
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error,
            "StartedAt": time(s.started_ms),
            "FinishedAt": time(s.finished_ms),
            "StoppedByUser": s.stopped,
        },
        "RestartCount": s.restart_count,
        "Accelerator": s.accel,
        "LogPath": inst.log_path(),
        "SupervisorLogPath": inst.supervisor_log_path(),
        "HostConfig": {
            "AutoRemove": c.spec.auto_remove,
            "RestartPolicy": c.spec.restart.to_json(),
            "PortBindings": bindings,
        },
    })
}

/// Docker's `--format` for the simple case: each `{{.A.B}}` replaced by that field of
/// `value` (strings bare, anything else as JSON; `{{json .A}}` as JSON always).
pub fn format_template(template: &str, value: &serde_json::Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find("}}")
            .ok_or_else(|| format!("template `{template}`: unclosed {{{{"))?;
        let expr = rest[open + 2..open + close].trim();
        let (json, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        let path = path.strip_prefix('.').ok_or_else(|| {
            format!("template `{template}`: `{expr}` is not a field such as .State.Status")
        })?;
        let mut v = value;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            v = v
                .get(key)
                .ok_or_else(|| format!("template `{template}`: no field `{key}`"))?;
        }
        match v {
            serde_json::Value::String(s) if !json => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let v = serde_json::json!({"Name": "web", "State": {"ExitCode": 3, "Status": "exited"}});
        assert_eq!(
            format_template("{{.Name}} {{.State.ExitCode}} {{ .State.Status }}", &v).unwrap(),
            "web 3 exited"
        );
        assert_eq!(format_template("{{json .Name}}", &v).unwrap(), "\"web\"");
        assert_eq!(format_template("{{.}}", &v).unwrap(), v.to_string());
        assert!(format_template("{{.Nope}}", &v).is_err());
        assert!(format_template("{{.Name", &v).is_err());
        assert!(format_template("{{Name}}", &v).is_err());
    }

    #[test]
    fn tables_align() {
        let rows = [
            ["A", "BB", "C", "D", "", "F"].map(String::from),
            ["long", "x", "y", "z", "", "w"].map(String::from),
        ];
        assert_eq!(
            table(&rows),
            "A      BB   C   D      F\nlong   x    y   z      w\n"
        );
    }

    #[test]
    fn a_long_state_path_keeps_its_control_socket_short_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("x".repeat(120));
        let store = Store::at(&root);
        let image = dir.path().join("img.elf");
        std::fs::write(&image, b"image").unwrap();
        let inst = store
            .create(&super::super::NewInstance {
                name: Some("long".into()),
                image,
                spec: super::super::state::Spec {
                    image_name: "img".into(),
                    runner_args: vec![],
                    command: vec![],
                    ports: vec![],
                    restart: Default::default(),
                    auto_remove: false,
                    accel: "tcg".into(),
                },
            })
            .unwrap();
        let sock = inst.control_socket();
        assert!(sock.as_os_str().len() < 108, "{}", sock.display());
        assert!(!sock.starts_with(inst.dir()));
        std::fs::write(&sock, b"").unwrap();
        store.remove(&inst).unwrap();
        assert!(!sock.exists(), "{} left behind", sock.display());
    }

    #[test]
    fn store_life() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let image = dir.path().join("img.elf");
        std::fs::write(&image, b"image").unwrap();
        let req = super::super::NewInstance {
            name: Some("web".into()),
            image: image.clone(),
            spec: super::super::state::Spec {
                image_name: "img".into(),
                runner_args: vec!["--memory".into(), "64".into()],
                command: vec![],
                ports: vec![],
                restart: Default::default(),
                auto_remove: false,
                accel: "tcg".into(),
            },
        };
        let inst = store.create(&req).unwrap();
        assert_eq!(inst.config.image_sha256, crate::image::sha256_hex(b"image"));
        assert_eq!(std::fs::read(inst.image_path()).unwrap(), b"image");
        let e = store.create(&req).unwrap_err().to_string();
        assert!(
            e.starts_with("Conflict. The instance name \"web\" is already in use"),
            "{e}"
        );
        let gen = store
            .create(&super::super::NewInstance {
                name: None,
                ..req.clone()
            })
            .unwrap();
        assert!(gen.config.name.contains('_'));
        assert_eq!(store.list().len(), 2);
        assert_eq!(inst.phase(), Phase::Created);
        assert!(ps_table(&store, false).lines().count() == 1);
        assert!(ps_table(&store, true).contains("img@sha256:"));
        let j = inspect_json(&store.open("web").unwrap());
        assert_eq!(j["State"]["Status"], "created");
        assert_eq!(j["HostConfig"]["RestartPolicy"]["Name"], "no");
        remove(&store, &inst, false).unwrap();
        assert!(store.open("web").is_err());
        assert!(store.open("../x").is_err());
        store.create(&req).unwrap();
    }
}
