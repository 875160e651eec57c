//! tokio in a Kiln image: `examples/tokio-http` (hyper on tokio's multi-thread runtime:
//! non-blocking sockets, edge-triggered epoll, eventfd wake-ups, futexes, worker threads)
//! booted with a forwarded port and hit with curl, one request after another and many at
//! once.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kiln_tests::{build_image, root};

/// A free host port (taken and released; a race with other programs is unlikely).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl -s` with a time limit: (HTTP status, body).
fn curl(url: &str, extra: &[&str]) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (out.status.success() && code != 0).then(|| (code, body.to_string()))
}

/// The server VM: killed when dropped (if it has not ended by itself).
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn boot() -> Server {
        let image = build_image("tokio-http", &["--example", "tokio-http"]);
        let port = free_port();
        // `build_image` built the xtask binary.
        let xtask = root().join("target").join("debug").join("xtask");
        let child = Command::new(xtask)
            .args(["run", "--image", image.to_str().unwrap()])
            .args(["-p", &format!("{port}:8080"), "--timeout", "600"])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xtask runs");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while curl(&format!("{}/", server.base), &["--max-time", "5"]).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "the server never answered"
            );
            thread::sleep(Duration::from_millis(500));
        }
        server
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        curl(&url, &[]).unwrap_or_else(|| panic!("GET {url} failed"))
    }

    /// Ends the server with `/quit`; returns its exit status, stdout and stderr.
    fn quit(mut self) -> (i32, String, String) {
        assert_eq!(self.get("/quit"), (200, "bye\n".into()));
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the VM did not end"
            );
            thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    }
}

#[test]
fn tokio_server_answers_sequential_and_concurrent_requests() {
    let server = Arc::new(Server::boot());
    let mut requests = 1; // the readiness probe

    // One after another, each on a new connection.
    for _ in 0..40 {
        assert_eq!(server.get("/"), (200, "hello from kiln (tokio)\n".into()));
        requests += 1;
    }
    assert_eq!(server.get("/fanout"), (200, "fanout: 136\n".into()));
    assert_eq!(server.get("/nowhere").0, 404);
    let echo = curl(
        &format!("{}/echo", server.base),
        &["-X", "POST", "--data-binary", "kiln + tokio"],
    );
    assert_eq!(echo, Some((200, "kiln + tokio".into())));
    requests += 3;

    // Keep-alive: one curl, several requests on one connection.
    let url = format!("{}/", server.base);
    let out = Command::new("curl")
        .args(["-s", "--max-time", "60"])
        .args([&url, &url, &url, &url, &url])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from kiln (tokio)\n".repeat(5)
    );
    requests += 5;

    // Many at once: 8 clients, 10 requests each, some fanning out over the workers.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let s = Arc::clone(&server);
            thread::spawn(move || {
                for i in 0..10 {
                    if (c + i) % 3 == 0 {
                        assert_eq!(s.get("/fanout"), (200, "fanout: 136\n".into()));
                    } else {
                        assert_eq!(s.get("/"), (200, "hello from kiln (tokio)\n".into()));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    requests += 80;

    // curl's own parallel mode: 32 transfers, up to 16 at a time.
    let urls: Vec<String> = (0..32).map(|_| format!("{}/", server.base)).collect();
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "60",
            "--parallel",
            "--parallel-max",
            "16",
        ])
        .args(&urls)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from kiln (tokio)\n".repeat(32)
    );
    requests += 32;

    // Every request was counted (this one included).
    let (code, body) = server.get("/count");
    assert_eq!(code, 200);
    let counted: u64 = body.trim().parse().unwrap();
    assert!(counted > requests, "{counted} <= {requests}");

    let server = Arc::try_unwrap(server).ok().expect("clients are done");
    let (status, out, err) = server.quit();
    assert_eq!(status, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out, "tokio-http listening on 8080\n", "stderr:\n{err}");
}
