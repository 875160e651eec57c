//! An unmodified tokio/hyper server from crates.io, `static-web-server`, built as its author
//! publishes it (only made static, and built unoptimised to keep the suite quick), serving
//! files from the image to a real HTTP client.

use kiln_tests::{build_image, kiln, root, scratch};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn curl(url: &str) -> Option<(String, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs (apt-get install curl)");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((body.to_string(), code.to_string()))
}

#[test]
fn static_web_server_from_crates_io_serves() {
    let dir = scratch("crates");
    let bin = dir.join("bin").join("static-web-server");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "install",
                "--quiet",
                "--locked",
                "--version",
                "2.44.1",
                "--root",
            ])
            .arg(&dir)
            .args(["--target", "x86_64-unknown-linux-gnu", "--config"])
            .arg(r#"target.x86_64-unknown-linux-gnu.rustflags=["-C","target-feature=+crt-static"]"#)
            // The author's profile (fat LTO, one codegen unit, opt-level 3) takes twice as
            // long to build on two cores; what this test checks is the same program's system
            // calls, which optimisation does not change.
            .args(["--config", "profile.release.lto=false"])
            .args(["--config", "profile.release.codegen-units=16"])
            .args(["--config", "profile.release.opt-level=0"])
            .arg("static-web-server")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo install static-web-server failed");
    }
    let site = scratch("crates").join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>served by kiln</h1>\n").unwrap();
    let file = format!("{}:/www", site.display());
    let image = build_image(
        "static-web-server",
        &["--elf", bin.to_str().unwrap(), "--file", &file],
    );

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(kiln(&["--help"]).status, 0);
    let mut guest = Command::new(root().join("target/debug/xtask"))
        .args([
            "run",
            "--image",
            image.to_str().unwrap(),
            "--timeout",
            "240",
        ])
        .args(["-p", &format!("{port}:8787")])
        .args([
            "--", "--host", "0.0.0.0", "--port", "8787", "--root", "/www",
        ])
        .current_dir(root())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("xtask runs");
    let url = format!("http://127.0.0.1:{port}/");
    let start = Instant::now();
    let first = loop {
        if let Some(r) = curl(&url) {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the server never answered"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let result = std::panic::catch_unwind(|| {
        assert_eq!(
            first,
            ("<h1>served by kiln</h1>\n".to_string(), "200".to_string())
        );
        for _ in 0..20 {
            assert_eq!(curl(&url).unwrap().1, "200");
        }
        let missing = curl(&format!("{url}missing.html")).unwrap();
        assert_eq!(missing.1, "404");
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || curl(&url))
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap().1, "200");
        }
    });
    // The server runs until stopped: stop QEMU and the runner.
    let _ = Command::new("kill")
        .arg("--")
        .arg(format!("-{}", guest.id()))
        .status();
    let _ = guest.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
