//! `pull` and `run REF` against a real registry (Debian's `docker-registry` on loopback): the
//! image `publish` pushed comes back checked, is cached by digest, boots like a local image,
//! and anything tampered with is refused without being cached.
//!
//! Needs `docker-registry`, `apache2-utils` (htpasswd) and `qemu-utils` (qemu-img): `.ci/run`
//! installs them.

use kiln_tests::registry::Registry;
use kiln_tests::{build_image, free_port, kiln_env, scratch, Run};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn hello() -> &'static PathBuf {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| build_image("pull-hello", &["--example", "hello"]))
}

/// A fresh directory for one test: the registry's storage and the cache live in it.
fn fresh(name: &str) -> PathBuf {
    let d = scratch("pull").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `cargo xtask ARGS` with the cache in `dir/cache`.
fn kiln_in(dir: &Path, args: &[&str]) -> Run {
    let cache = dir.join("cache");
    kiln_env(args, &[("KILN_CACHE_DIR", cache.to_str().unwrap())])
}

/// Publishes the hello image as `reference`; returns the manifest digest.
fn publish(dir: &Path, image: &Path, reference: &str) -> String {
    let r = kiln_in(
        dir,
        &[
            "publish",
            "--image",
            image.to_str().unwrap(),
            "--oci",
            reference,
        ],
    );
    assert_eq!(r.status, 0, "{r:?}");
    r.out()
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap()
        .to_string()
}

/// `run REF` with a time limit and `extra` options.
fn run_ref(dir: &Path, reference: &str, extra: &[&str]) -> Run {
    let mut args = vec!["run", reference, "--timeout", "120"];
    args.extend_from_slice(extra);
    kiln_in(dir, &args)
}

/// The cache's entries (manifest digests' hex) and whether its staging area is empty.
fn cached(dir: &Path) -> (Vec<String>, bool) {
    let list = |p: PathBuf| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let cache = dir.join("cache");
    (
        list(cache.join("images/sha256")),
        list(cache.join("tmp")).is_empty(),
    )
}

#[test]
fn run_by_tag_then_by_digest_then_from_the_cache_with_the_registry_gone() {
    let dir = fresh("run");
    let mut reg = Registry::start(&dir, free_port(), None);
    let reference = reg.reference("kiln/hello:1.0.0");
    let digest = publish(&dir, hello(), &reference);

    // The first run downloads, shows the digest, and the program runs as from a file.
    let r = run_ref(&dir, &reference, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().starts_with("hello from kiln\n"), "{r:?}");
    assert!(r.stderr.contains("1.0.0: Pulling from kiln/hello"), "{r:?}");
    assert!(r.stderr.contains(&format!("Digest: {digest}")), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("Status: Downloaded newer image for {reference}")),
        "{r:?}"
    );
    assert!(r.stderr.contains("Pull complete ("), "{r:?}");
    let hex = digest.trim_start_matches("sha256:").to_string();
    assert_eq!(cached(&dir), (vec![hex.clone()], true));
    let entry = dir.join("cache/images/sha256").join(&hex);
    assert_eq!(
        std::fs::read(entry.join("hello.elf")).unwrap(),
        std::fs::read(hello()).unwrap(),
        "the cache holds the very image that was published"
    );

    // By digest, asking the registry: nothing new to download; run options apply.
    let pinned = reg.reference(&format!("kiln/hello@{digest}"));
    let r = run_ref(
        &dir,
        &pinned,
        &["--pull", "always", "-e", "GREETING=hi", "--", "--exit", "3"],
    );
    assert_eq!(r.status, 3, "{r:?}");
    assert!(r.out().contains("GREETING=hi\n"), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("Status: Image is up to date for {pinned}")),
        "{r:?}"
    );

    // With the registry gone, the digest and the tag (as last resolved) run from the cache.
    reg.stop();
    for by in [&pinned, &reference] {
        let r = run_ref(&dir, by, &[]);
        assert_eq!(r.status, 0, "{by}: {r:?}");
        assert!(r.out().starts_with("hello from kiln\n"), "{r:?}");
        assert!(r.stderr.contains(&format!("Digest: {digest}")), "{r:?}");
        assert!(r.stderr.contains("Using the cached image"), "{r:?}");
    }
    // Asking the registry now fails clearly, as a run error.
    let r = run_ref(&dir, &reference, &["--pull", "always"]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(r.stderr.contains("could not reach the registry"), "{r:?}");
    // --pull never with an image that was never pulled.
    let other = reg.reference("kiln/other:1");
    let r = run_ref(&dir, &other, &["--pull", "never"]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(r.stderr.contains("is not in the cache"), "{r:?}");
}

#[test]
fn pull_prints_progress_and_the_digest_like_docker() {
    let dir = fresh("pull");
    let reg = Registry::start(&dir, free_port(), None);
    let reference = reg.reference("kiln/hello:2");
    let digest = publish(&dir, hello(), &reference);
    let r = kiln_in(&dir, &["pull", &reference]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    let lines: Vec<&str> = out.lines().collect();
    let size = std::fs::metadata(hello()).unwrap().len();
    assert_eq!(lines[0], "2: Pulling from kiln/hello", "{r:?}");
    assert!(
        lines[1].ends_with(" bytes)") && lines[1].contains(": Pull complete ("),
        "{r:?}"
    );
    let layer_bytes: u64 = lines[1]
        .rsplit_once('(')
        .unwrap()
        .1
        .trim_end_matches(" bytes)")
        .parse()
        .unwrap();
    assert!(layer_bytes > size, "the layer holds the image: {r:?}");
    assert_eq!(
        &lines[2..],
        [
            format!("Digest: {digest}"),
            format!("Status: Downloaded newer image for {reference}"),
            reference.clone(),
        ],
        "{r:?}"
    );
    // Again: up to date, nothing downloaded.
    let r = kiln_in(&dir, &["pull", &reference]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.out()
            .contains(&format!("Status: Image is up to date for {reference}")),
        "{r:?}"
    );
    assert!(!r.out().contains("Pull complete"), "{r:?}");
    // -q: only the reference, pinned.
    let r = kiln_in(&dir, &["pull", "-q", &reference]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        format!("{}\n", reg.reference(&format!("kiln/hello@{digest}")))
    );

    // An unknown tag: a clear error, 1 for pull and 125 for run.
    let missing = reg.reference("kiln/hello:9.9");
    let r = kiln_in(&dir, &["pull", &missing]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "{missing}: manifest unknown: the registry has no such tag"
        )),
        "{r:?}"
    );
    let r = run_ref(&dir, &missing, &[]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(r.stderr.contains("manifest unknown"), "{r:?}");
    // Not a file and not a reference.
    let r = kiln_in(&dir, &["run", "nothing/here.elf"]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(
        r.stderr
            .contains("no such file, and not a registry reference"),
        "{r:?}"
    );
}

#[test]
fn a_tampered_layer_is_refused_and_nothing_is_cached() {
    let dir = fresh("tampered");
    let reg = Registry::start(&dir, free_port(), None);
    let reference = reg.reference("kiln/hello:1");
    publish(&dir, hello(), &reference);
    // Flip one byte in the middle of the layer, in the registry's own storage.
    let bytes = std::fs::read(hello()).unwrap();
    let prov = kiln_toolchain::provenance::read(&bytes).unwrap().0;
    let artifact = kiln_toolchain::oci::kiln_artifact(&bytes, &prov).unwrap();
    let blob = reg.blob_file(&artifact.layers[0].digest());
    let mut layer = std::fs::read(&blob).unwrap();
    assert_eq!(layer, artifact.layers[0].data, "{}", blob.display());
    let at = layer.len() / 2;
    layer[at] ^= 0x20;
    std::fs::write(&blob, &layer).unwrap();
    for cmd in [
        &["pull", &reference][..],
        &["run", &reference, "--timeout", "60"],
    ] {
        let r = kiln_in(&dir, cmd);
        assert_eq!(r.status, if cmd[0] == "pull" { 1 } else { 125 }, "{r:?}");
        assert!(
            r.stderr.contains(&format!(
                "blob {} is corrupt or was tampered with",
                artifact.layers[0].digest()
            )),
            "{r:?}"
        );
        assert!(r.out().lines().all(|l| !l.starts_with("hello")), "{r:?}");
        assert_eq!(cached(&dir), (vec![], true), "nothing cached");
    }

    // A consistent artifact (every digest right) around a changed image: its own
    // image_sha256 gives it away.
    let mut changed = bytes.clone();
    let at = changed.len() / 3;
    changed[at] ^= 1;
    let evil = kiln_toolchain::oci::kiln_artifact(&changed, &prov).unwrap();
    let evil_ref = reg.reference("kiln/evil:1");
    kiln_toolchain::oci::registry::push(
        &kiln_toolchain::oci::ImageRef::parse(&evil_ref).unwrap(),
        &evil,
        &Default::default(),
    )
    .unwrap();
    let r = run_ref(&dir, &evil_ref, &[]);
    assert_eq!(r.status, 125, "{r:?}");
    assert!(
        r.stderr.contains("does not match its own image_sha256"),
        "{r:?}"
    );
    assert_eq!(cached(&dir), (vec![], true), "nothing cached");
}

#[test]
fn pull_with_credentials_and_a_kubevirt_disk() {
    let dir = fresh("auth");
    let reg = Registry::start(&dir, free_port(), Some(("kiln", "s3cret")));
    let reference = reg.reference("kiln/disk:1");
    let creds = ["--username", "kiln", "--password", "s3cret"];
    let image = hello().to_str().unwrap();
    let mut args = vec![
        "publish",
        "--kubevirt",
        "--oci",
        &reference,
        "--image",
        image,
    ];
    args.extend_from_slice(&creds);
    let r = kiln_in(&dir, &args);
    assert_eq!(r.status, 0, "{r:?}");
    let r = kiln_in(&dir, &["pull", &reference]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("authentication failed"), "{r:?}");
    let mut args = vec!["pull", &reference];
    args.extend_from_slice(&creds);
    let r = kiln_in(&dir, &args);
    assert_eq!(r.status, 0, "{r:?}");
    // The containerDisk's qcow2 is cached as it was pushed, and `run` boots it with UEFI.
    let (entries, clean) = cached(&dir);
    assert!(clean && entries.len() == 1, "{entries:?}");
    let disk = dir
        .join("cache/images/sha256")
        .join(&entries[0])
        .join("hello.qcow2");
    let r = kiln_in(&dir, &["inspect", disk.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.out().contains("(qcow2)") && r.out().contains("verified"),
        "{r:?}"
    );
    let mut args = vec!["run", &reference, "--pull", "always", "--timeout", "200"];
    args.extend_from_slice(&creds);
    let r = kiln_in(&dir, &args);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().starts_with("hello from kiln\n"), "{r:?}");
    assert!(r.stderr.contains("Image is up to date"), "{r:?}");
}

#[test]
fn a_detached_instance_runs_straight_from_the_registry() {
    let dir = fresh("detached");
    let reg = Registry::start(&dir, free_port(), None);
    let reference = reg.reference("kiln/hello:detached");
    publish(&dir, hello(), &reference);
    let state = dir.join("state");
    let env = [
        ("KILN_CACHE_DIR", dir.join("cache")),
        ("KILN_STATE_DIR", state.clone()),
    ];
    let r = kiln_env(&["run", "-d", "--name", "pulled", &reference], &env);
    assert_eq!((r.status, r.out()), (0, "pulled\n".to_string()), "{r:?}");
    // It ends by itself; its log is the program's output.
    let start = std::time::Instant::now();
    loop {
        let ps = kiln_env(&["ps", "-a"], &env).out();
        if ps.contains("Exited (0)") {
            break;
        }
        assert!(start.elapsed().as_secs() < 120, "{ps}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let logs = kiln_env(&["logs", "pulled"], &env);
    assert!(logs.out().starts_with("hello from kiln\n"), "{logs:?}");
    assert_eq!(kiln_env(&["rm", "pulled"], &env).status, 0);
}
