//! A real OCI registry for tests: Debian's `docker-registry` on 127.0.0.1, optionally with
//! htpasswd authentication (`apache2-utils`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the test, naming the package to install, when `tool` is not on PATH.
pub fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install it with `apt-get install {package}` (.ci/run does)"
    );
}

/// A `docker-registry` on 127.0.0.1, killed when dropped.
pub struct Registry {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing in `dir/storage` on `port`, with htpasswd auth when
    /// `users` is given (`user:password`).
    pub fn start(dir: &Path, port: u16, users: Option<(&str, &str)>) -> Registry {
        need("docker-registry", "docker-registry");
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let mut auth = String::new();
        if let Some((u, p)) = users {
            need("htpasswd", "apache2-utils");
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .unwrap();
            assert!(out.status.success());
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n{auth}",
            dir.join("storage").display()
        );
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen on 127.0.0.1:{port}; see {}",
                dir.join("registry.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// `127.0.0.1:PORT/REPO_TAG`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{}/{repo_tag}", self.port)
    }
}

impl Registry {
    /// The file holding blob `digest` in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops it (its storage stays).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
