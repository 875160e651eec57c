//! Helpers for Kiln's end-to-end tests: run the `xtask` command line as a user would, and
//! look at what comes out.

pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A scratch directory for test outputs (under the target directory, kept for inspection).
pub fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target").join("kiln-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP port that was free on the host a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Path of the xtask binary, built once (with the accelerator settled), for tests that
/// spawn it themselves.
pub fn xtask_bin() -> PathBuf {
    xtask().to_path_buf()
}

/// Path of the xtask binary, built once.
fn xtask() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--package", "xtask"])
            .current_dir(root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building xtask failed");
        let bin = root().join("target").join("debug").join("xtask");
        // Settle the accelerator once, so no test's output carries the probe's note.
        let accel = Command::new(&bin)
            .arg("accel")
            .current_dir(root())
            .output()
            .expect("xtask runs");
        assert!(accel.status.success(), "xtask accel failed: {accel:?}");
        bin
    })
}

/// What a command did.
pub struct Run {
    /// Exit status (signals count as failures: -1).
    pub status: i32,
    /// Standard output, as bytes.
    pub stdout: Vec<u8>,
    /// Standard error, as text.
    pub stderr: String,
}

impl Run {
    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.out(),
            self.stderr
        )
    }
}

/// Runs `cargo xtask ARGS...` (through the built binary) from the repository root.
pub fn kiln(args: &[&str]) -> Run {
    kiln_env::<&str>(args, &[])
}

/// Like [`kiln`], with extra environment variables.
pub fn kiln_env<V: AsRef<std::ffi::OsStr>>(args: &[&str], env: &[(&str, V)]) -> Run {
    let out: Output = Command::new(xtask())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_ref())))
        .current_dir(root())
        .output()
        .expect("xtask runs");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Builds an image with `build-image ARGS -o <scratch>/<name>.elf` and returns its path.
pub fn build_image(name: &str, args: &[&str]) -> PathBuf {
    let out = scratch("images").join(format!("{name}.elf"));
    let r = build_image_to(&out, args);
    assert_eq!(r.status, 0, "build-image {args:?} failed: {r:?}");
    out
}

/// Runs `build-image ARGS -o OUT`.
pub fn build_image_to(out: &Path, args: &[&str]) -> Run {
    let mut full = vec!["build-image"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", out.to_str().unwrap()]);
    kiln(&full)
}

/// Boots `image` with `run --image IMAGE EXTRA...`.
pub fn run_image(image: &Path, extra: &[&str]) -> Run {
    let mut full = vec![
        "run",
        "--image",
        image.to_str().unwrap(),
        "--timeout",
        "120",
    ];
    full.extend_from_slice(extra);
    kiln(&full)
}

/// `curl -s URL` (5 s at most): the body, or `None` when the request failed.
pub fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Asks `url` until a server answers (two minutes at most, for a booting image under
/// emulation); returns the body.
pub fn wait_for_http(url: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Some(body) = curl(url) {
            return body;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "nothing answered {url}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Builds the C source `src` with Debian's gcc (`-O2`, then `extra`, such as `-static`)
/// into `dir/name`; returns the program's path.
pub fn gcc(dir: &Path, name: &str, src: &str, extra: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let exe = dir.join(name);
    let cc = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&c)
        .args(extra)
        .output()
        .expect("gcc runs");
    assert!(
        cc.status.success(),
        "gcc {name}: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    exe
}

/// Builds the C source `src` statically (`-static -O1`) into the scratch directory `name`.
pub fn gcc_static(name: &str, src: &str) -> PathBuf {
    gcc(&scratch(name), name, src, &["-static", "-O1"])
}

/// `run --image IMAGE --timeout 240 EXTRA...`, from the project root, not started.
pub fn run_command(image: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(xtask());
    c.args([
        "run",
        "--image",
        image.to_str().unwrap(),
        "--timeout",
        "240",
    ])
    .args(extra)
    .current_dir(root());
    c
}

/// A booted image running in the background (its own process group), stopped when dropped.
pub struct Guest {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Guest {
    /// Boots `image` with `extra` run options and waits for a stdout line containing `ready`.
    pub fn boot(image: &Path, extra: &[&str], ready: &str) -> Guest {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = run_command(image, extra)
            // Its own process group: reading a terminal from there would stop it.
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            // Its own process group, so a failed test can stop QEMU too.
            .process_group(0)
            .spawn()
            .expect("xtask runs");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the guest ended before printing `{ready}`");
            if line.contains(ready) {
                break;
            }
        }
        Guest { child, stdout }
    }

    /// Sends `signal` (`TERM`, `INT`...) to the runner alone, as a user's `kill` would.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill -{signal} failed");
    }

    /// Sends `signal` to the runner's whole process group, as a terminal's Ctrl-C (SIGINT)
    /// or `timeout` (SIGTERM) does.
    pub fn signal_group(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([
                &format!("-{signal}"),
                "--",
                &format!("-{}", self.child.id()),
            ])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill -{signal} to the group failed");
    }

    /// Waits for the guest to end; returns its exit status and the rest of its stdout.
    pub fn wait(mut self) -> (i32, String) {
        use std::io::Read;
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let status = self.child.wait().unwrap().code().unwrap_or(-1);
        (status, rest)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        stop_run(&mut self.child);
    }
}

/// Stops a `run` started in a process group of its own (`process_group(0)`): two SIGTERMs
/// (the runner's "stop at once"), so it removes its temporary directory as it returns; the
/// whole group is killed only if it is still there after 10 s. (SIGKILL alone left a
/// `/tmp/kiln-run-*` directory behind per test.)
pub fn stop_run(child: &mut std::process::Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let group = format!("-{pid}");
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}
