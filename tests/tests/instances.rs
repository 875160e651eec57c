//! Detached instances, as a docker user drives them: `run -d`, `ps`, `logs`, `stop`, `rm`,
//! `inspect`, restart policies, `--rm`, and two commands racing for one name. Every test
//! has a state directory of its own (`KILN_STATE_DIR`).

use kiln_tests::{build_image, curl, free_port, kiln_env, scratch, wait_for_http, Run};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An instance state directory for one test: empty at the start, and its instances
/// removed (`rm -f`) at the end, whether the test passed or not.
struct StateDir(PathBuf);

impl StateDir {
    fn new(test: &str) -> StateDir {
        let dir = StateDir(scratch("instances").join(test));
        dir.remove_all();
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).unwrap();
        dir
    }

    fn remove_all(&self) {
        let names = k(&self.0, &["ps", "-aq"]).out();
        let mut args = vec!["rm", "-f"];
        args.extend(names.lines());
        if args.len() > 2 {
            k(&self.0, &args);
        }
    }
}

impl std::ops::Deref for StateDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// `cargo xtask ARGS` with this test's state directory.
fn k(state: &Path, args: &[&str]) -> Run {
    kiln_env(args, &[("KILN_STATE_DIR", state)])
}

fn image(name: &str, args: &[&str]) -> &'static Path {
    static IMAGES: OnceLock<std::sync::Mutex<Vec<(String, &'static Path)>>> = OnceLock::new();
    let mut all = IMAGES.get_or_init(Default::default).lock().unwrap();
    if let Some((_, p)) = all.iter().find(|(n, _)| n == name) {
        return p;
    }
    let p: &'static Path = Box::leak(build_image(name, args).into_boxed_path());
    all.push((name.to_string(), p));
    p
}

fn hello() -> &'static str {
    image("instances-hello", &["--example", "hello"])
        .to_str()
        .unwrap()
}

fn http() -> &'static str {
    image("instances-http", &["--example", "http-hello"])
        .to_str()
        .unwrap()
}

fn busybox() -> &'static str {
    image("instances-busybox", &["--elf", "/bin/busybox"])
        .to_str()
        .unwrap()
}

/// `run -d --name NAME --image IMAGE ARGS...`, which must print the name and succeed.
fn run_d(state: &Path, name: &str, image: &str, args: &[&str]) {
    let mut full = vec!["run", "-d", "--name", name, "--image", image];
    full.extend_from_slice(args);
    let r = k(state, &full);
    assert_eq!((r.status, r.out()), (0, format!("{name}\n")), "{r:?}");
}

/// `inspect -f FORMAT NAME`, trimmed.
fn field(state: &Path, name: &str, format: &str) -> String {
    let r = k(state, &["inspect", "-f", format, name]);
    assert_eq!(r.status, 0, "{r:?}");
    r.out().trim().to_string()
}

/// Waits (two minutes at most) until `done`.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what}: gave up waiting"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_exited(state: &Path, name: &str) {
    wait_for(&format!("{name} to exit"), || {
        field(state, name, "{{.State.Status}}") == "exited"
    });
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

#[test]
fn run_detached_then_logs_ps_inspect_rm() {
    let st = StateDir::new("hello");
    run_d(&st, "greeter", hello(), &["-e", "GREETING=hi"]);
    wait_exited(&st, "greeter");

    // The program's streams, each to its own, as it wrote them; none of Kiln's lines.
    let r = k(&st, &["logs", "greeter"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.out()
            .starts_with("hello from kiln\narg[0]=/bin/hello\nGREETING=hi\n"),
        "{r:?}"
    );
    assert!(r.out().ends_with("tmp: ok\n"), "{r:?}");
    assert_eq!(r.stderr, "hello: done\n", "{r:?}");
    let all = format!("{}{}", r.out(), r.stderr);
    // The last two lines of both streams (which of them came last is up to the pipes),
    // each after its time.
    let r = k(&st, &["logs", "--tail", "2", "-t", "greeter"]);
    let text = format!("{}{}", r.out(), r.stderr);
    assert_eq!(text.lines().count(), 2, "{r:?}");
    for l in text.lines() {
        let (time, line) = l.split_once("Z ").unwrap();
        assert!(
            time.starts_with("20") && time.as_bytes()[10] == b'T',
            "{r:?}"
        );
        assert!(all.lines().rev().take(3).any(|a| a == line), "{r:?}");
    }
    let r = k(&st, &["ps", "-a"]);
    let header = r.out().lines().next().unwrap_or_default().to_string();
    assert!(
        header.starts_with("NAME") && header.contains("STATUS"),
        "{r:?}"
    );
    let row = r
        .out()
        .lines()
        .find(|l| l.starts_with("greeter"))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("Exited (0) ") && row.contains("instances-hello@sha256:"),
        "{r:?}"
    );
    assert_eq!(
        k(&st, &["ps"]).out().lines().count(),
        1,
        "only running instances"
    );
    assert_eq!(k(&st, &["ps", "-aq"]).out(), "greeter\n");

    let r = k(&st, &["inspect", "greeter"]);
    assert_eq!(r.status, 0, "{r:?}");
    for needle in [
        "\"Name\": \"greeter\"",
        "\"ExitCode\": 0",
        "\"Status\": \"exited\"",
        "\"GREETING=hi\"",
        "\"LogPath\"",
        "\"SupervisorLogPath\"",
    ] {
        assert!(r.out().contains(needle), "{needle}: {r:?}");
    }
    // Image inspection still works beside instance inspection.
    let r = k(&st, &["inspect", hello()]);
    assert!(r.status == 0 && r.out().contains("verified"), "{r:?}");

    let r = k(&st, &["rm", "greeter"]);
    assert_eq!((r.status, r.out().as_str()), (0, "greeter\n"), "{r:?}");
    assert_eq!(k(&st, &["ps", "-a"]).out().lines().count(), 1);
    assert_eq!(std::fs::read_dir(st.join("instances")).unwrap().count(), 0);
}

#[test]
fn a_server_instance_answers_on_its_port_until_stopped() {
    let st = StateDir::new("server");
    let port = free_port();
    let publish = format!("{port}:8080");
    run_d(&st, "web", http(), &["-p", &publish]);
    assert_eq!(
        wait_for_http(&format!("http://127.0.0.1:{port}/")),
        "hello from kiln\n"
    );
    let ps = k(&st, &["ps"]).out();
    assert!(
        ps.contains(&format!("0.0.0.0:{port}->8080/tcp")) && ps.contains(" Up "),
        "{ps}"
    );
    // The supervisor leads a session of its own: closing the terminal does not reach it.
    let pid = field(&st, "web", "{{.State.SupervisorPid}}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let session = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(3)
        .unwrap();
    assert_eq!(session, pid, "{stat}");

    // Nobody else gets the port while it runs.
    let r = k(&st, &["run", "-d", "-p", &publish, "--image", http()]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(
        r.stderr
            .contains("port is already allocated (by instance web)"),
        "{r:?}"
    );
    assert_eq!(k(&st, &["ps", "-aq"]).out(), "web\n");

    // Its kernel answers `stats` by the instance's name.
    let r = k(&st, &["stats", "web", "--json"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("TCP 0.0.0.0:8080 LISTEN"), "{r:?}");

    let dir = st.join("instances").join("web");
    let r = k(&st, &["stop", "web"]);
    assert_eq!((r.status, r.out().as_str()), (0, "web\n"), "{r:?}");
    assert_eq!(field(&st, "web", "{{.State.Status}}"), "exited");
    assert!(curl(&format!("http://127.0.0.1:{port}/")).is_none());
    assert_eq!(
        processes_with(dir.to_str().unwrap()),
        0,
        "QEMU or the runner is left"
    );
    let row = k(&st, &["ps", "-a"]).out();
    assert!(row.contains("Exited (") && !row.contains(" Up "), "{row}");
    assert!(k(&st, &["logs", "web"])
        .out()
        .contains("listening on 0.0.0.0:8080"));
    let r = k(&st, &["stats", "web"]);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("instance web is not running"), "{r:?}");
    // Stopping what has stopped is fine, as with docker; the port is free again.
    assert_eq!(k(&st, &["stop", "web"]).status, 0);
    assert_eq!(
        std::fs::read_dir(st.join("ports"))
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0
    );
}

#[test]
fn stop_kills_after_the_grace_period_and_rm_needs_force() {
    let st = StateDir::new("kill");
    run_d(&st, "sleeper", busybox(), &["--", "sleep", "600"]);
    let r = k(&st, &["rm", "sleeper"]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("cannot remove instance \"sleeper\": it is running"),
        "{r:?}"
    );
    let r = k(&st, &["stop", "-t", "0", "sleeper"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(field(&st, "sleeper", "{{.State.ExitCode}}"), "137");
    assert!(k(&st, &["ps", "-a"]).out().contains("Exited (137)"));
    assert_eq!(
        processes_with(st.to_str().unwrap()),
        0,
        "QEMU or the runner is left"
    );

    // rm -f ends a running instance at once.
    run_d(&st, "again", busybox(), &["--", "sleep", "600"]);
    let r = k(&st, &["rm", "-f", "again", "sleeper"]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (0, "again\nsleeper\n"),
        "{r:?}"
    );
    assert_eq!(
        processes_with(st.to_str().unwrap()),
        0,
        "QEMU or the runner is left"
    );
    assert_eq!(k(&st, &["ps", "-aq"]).out(), "");
}

#[test]
fn two_runs_racing_for_one_name_one_wins() {
    let st = StateDir::new("race");
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let st = st.to_path_buf();
            std::thread::spawn(move || {
                k(
                    &st,
                    &[
                        "run",
                        "-d",
                        "--name",
                        "same",
                        "--image",
                        busybox(),
                        "--",
                        "sleep",
                        "600",
                    ],
                )
            })
        })
        .collect();
    let mut results: Vec<Run> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    results.sort_by_key(|r| r.status);
    assert_eq!(
        (results[0].status, results[1].status),
        (0, 125),
        "{results:?}"
    );
    assert_eq!(results[0].out(), "same\n");
    assert!(
        results[1]
            .stderr
            .contains("The instance name \"same\" is already in use"),
        "{results:?}"
    );
    assert_eq!(k(&st, &["ps", "-q"]).out(), "same\n");
    assert_eq!(k(&st, &["rm", "-f", "same"]).status, 0);
}

#[test]
fn auto_remove_leaves_nothing() {
    let st = StateDir::new("autorm");
    let r = k(
        &st,
        &["run", "-d", "--rm", "--name", "brief", "--example", "hello"],
    );
    assert_eq!(r.status, 0, "{r:?}");
    wait_for("brief to be removed", || {
        k(&st, &["inspect", "brief"]).status == 1
    });
    assert_eq!(k(&st, &["ps", "-aq"]).out(), "");
    assert_eq!(std::fs::read_dir(st.join("instances")).unwrap().count(), 0);
}

#[test]
fn on_failure_restarts_a_failing_program_twice() {
    let st = StateDir::new("restart");
    let script = "echo attempt; exit 3";
    run_d(
        &st,
        "flaky",
        busybox(),
        &["--restart", "on-failure:2", "--", "sh", "-c", script],
    );
    wait_exited(&st, "flaky");
    assert_eq!(
        field(&st, "flaky", "{{.RestartCount}} {{.State.ExitCode}}"),
        "2 3"
    );
    assert_eq!(k(&st, &["logs", "flaky"]).out(), "attempt\n".repeat(3));
    assert!(k(&st, &["ps", "-a"]).out().contains("Exited (3)"));
}

#[test]
fn logs_follow_until_the_instance_exits() {
    let st = StateDir::new("follow");
    let script =
        "echo one; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo two >&2; echo three";
    run_d(&st, "slow", busybox(), &["--", "sh", "-c", script]);
    let start = Instant::now();
    let r = k(&st, &["logs", "-f", "slow"]);
    assert_eq!(
        (r.status, r.out().as_str(), r.stderr.as_str()),
        (0, "one\nthree\n", "two\n"),
        "{r:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(120));
    assert_eq!(field(&st, "slow", "{{.State.Status}}"), "exited");
}

#[test]
fn bad_input_is_a_clear_error() {
    let st = StateDir::new("bad");
    for cmd in [
        &["logs", "nope"][..],
        &["stop", "nope"],
        &["rm", "nope"],
        &["inspect", "--type", "instance", "nope"],
        &["logs", "../../etc"],
    ] {
        let r = k(&st, cmd);
        assert_eq!(r.status, 1, "{cmd:?}: {r:?}");
        assert!(r.stderr.contains("No such instance: "), "{cmd:?}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "{cmd:?}: {r:?}");
    }
    let r = k(&st, &["inspect", "nope"]);
    assert_eq!((r.status, r.out().trim()), (1, "[]"), "{r:?}");
    for (cmd, says) in [
        (
            &["run", "-d", "--name", "a/b", "--image", hello()][..],
            "invalid instance name",
        ),
        (
            &[
                "run",
                "-d",
                "--rm",
                "--restart",
                "always",
                "--image",
                hello(),
            ],
            "Conflicting options",
        ),
        (&["run", "-d", "--image", "/nonexistent.elf"], "nonexistent"),
    ] {
        let r = k(&st, cmd);
        assert_eq!(r.status, 125, "{cmd:?}: {r:?}");
        assert!(r.stderr.contains(says), "{cmd:?}: {r:?}");
    }
    assert_eq!(k(&st, &["ps", "-aq"]).out(), "");
}

#[test]
fn a_dead_supervisor_is_never_reported_up() {
    let st = StateDir::new("dead");
    run_d(&st, "orphan", busybox(), &["--", "sleep", "600"]);
    let pid = field(&st, "orphan", "{{.State.SupervisorPid}}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The runner, whose parent died, stops its virtual machine on its own.
    wait_for("the runner to stop", || {
        processes_with(st.to_str().unwrap()) == 0
    });
    let ps = k(&st, &["ps", "-a"]).out();
    assert!(ps.contains("Exited (unknown)"), "{ps}");
    assert_eq!(k(&st, &["ps", "-q"]).out(), "");
    assert_eq!(field(&st, "orphan", "{{.State.Status}}"), "dead");
    assert_eq!(k(&st, &["rm", "orphan"]).status, 0);
}

#[test]
fn stop_lets_a_program_blocked_in_accept_finish_cleanly() {
    let st = StateDir::new("graceful");
    let image = image("instances-sigterm", &["--example", "sigterm"]);
    run_d(&st, "server", image.to_str().unwrap(), &["--", "accept"]);
    wait_for("the server to be ready", || {
        k(&st, &["logs", "server"]).out().contains("ready")
    });
    let r = k(&st, &["stop", "server"]);
    assert_eq!(r.status, 0, "{r:?}");
    // The power button became SIGTERM; accept returned EINTR and the program exited 0.
    assert_eq!(field(&st, "server", "{{.State.ExitCode}}"), "0");
    assert!(k(&st, &["logs", "server"]).out().contains("got SIGTERM"));
}

#[test]
fn a_detached_instance_writes_to_its_volume() {
    let st = StateDir::new("volume");
    let data = scratch("instances-volume-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let volume = format!("{}:/data", data.display());
    // A prebuilt image mounts volumes only when built with them.
    let image = image(
        "instances-busybox-volumes",
        &["--elf", "/bin/busybox", "--with-volumes"],
    );
    run_d(
        &st,
        "writer",
        image.to_str().unwrap(),
        &["-v", &volume, "--", "sh", "-c", "echo kept > /data/note"],
    );
    wait_exited(&st, "writer");
    assert_eq!(field(&st, "writer", "{{.State.ExitCode}}"), "0");
    assert_eq!(
        std::fs::read_to_string(data.join("note")).unwrap(),
        "kept\n"
    );
}
