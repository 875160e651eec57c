//! `publish` against a real registry (Debian's `docker-registry`, started on loopback by the
//! test), checked with an independent client (Debian's `skopeo`).
//!
//! Needs `docker-registry`, `skopeo`, `apache2-utils` (htpasswd) and `qemu-utils` (qemu-img):
//! `.ci/run` installs them. A missing tool fails the test with the command to install it; no
//! test is skipped.

use kiln_tests::registry::{need, Registry};
use kiln_tests::{build_image, free_port, kiln, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn hello() -> &'static PathBuf {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| build_image("publish-hello", &["--example", "hello", "--arg", "--exit"]))
}

/// A fresh directory for one test.
fn fresh(name: &str) -> PathBuf {
    let d = scratch("publish").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn skopeo(args: &[&str]) -> std::process::Output {
    need("skopeo", "skopeo");
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs")
}

/// `skopeo inspect` of a docker:// reference: (succeeded, stdout, stderr).
fn skopeo_inspect(reference: &str, extra: &[&str]) -> (bool, String, String) {
    let docker = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&docker);
    let out = skopeo(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `"Key": "value"` string from skopeo's JSON.
fn json_field(json: &str, key: &str) -> String {
    let at = json
        .find(&format!("\"{key}\": \""))
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 5..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn digest_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest line in {stdout:?}"))
        .to_string()
}

/// Copies the image to an OCI layout with skopeo and returns the layout directory.
fn skopeo_pull(reference: &str, dir: &Path, creds: Option<&str>) -> PathBuf {
    let out_dir = dir.join("pulled");
    let _ = std::fs::remove_dir_all(&out_dir);
    let src = format!("docker://{reference}");
    let dst = format!("oci:{}", out_dir.display());
    // --preserve-digests: fail rather than re-encode anything.
    let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false"];
    if let Some(c) = creds {
        args.extend_from_slice(&["--src-creds", c]);
    }
    args.extend_from_slice(&[&src, &dst]);
    let out = skopeo(&args);
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_dir
}

/// The single layer blob of the single manifest in a layout skopeo wrote.
fn layer_blob(layout: &Path) -> PathBuf {
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    let manifest_digest = json_field_compact(&index, "digest");
    let manifest = std::fs::read_to_string(blob(layout, &manifest_digest)).unwrap();
    let layers = &manifest[manifest.find("\"layers\"").unwrap()..];
    blob(layout, &json_field_compact(layers, "digest"))
}

fn json_field_compact(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + pat.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn push_then_pull_back_with_skopeo_and_tags_are_immutable() {
    let dir = fresh("roundtrip");
    let reg = Registry::start(&dir, free_port(), None);
    let image = hello();
    let reference = reg.reference("kiln/hello:1.0.0");
    let r = kiln(&[
        "publish",
        "--image",
        image.to_str().unwrap(),
        "--oci",
        &reference,
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let digest = digest_line(&r.out());
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{r:?}");
    assert!(r.out().contains(&format!("pushed: {reference}")), "{r:?}");

    // An independent client sees the same digest, KraftKit's platform and annotations.
    let (ok, json, err) = skopeo_inspect(&reference, &[]);
    assert!(ok, "skopeo inspect: {err}");
    assert_eq!(json_field(&json, "Digest"), digest, "{json}");
    assert_eq!(json_field(&json, "Os"), "qemu", "{json}");
    assert_eq!(json_field(&json, "Architecture"), "x86_64", "{json}");
    let (ok, raw, _) = skopeo_inspect(&reference, &["--raw"]);
    assert!(ok);
    assert!(
        raw.contains("\"org.unikraft.kernel.image\":\"/unikraft/bin/kernel\""),
        "{raw}"
    );
    assert!(raw.contains("\"org.unikraft.kernel.version\""), "{raw}");
    assert!(raw.contains("\"dev.kiln.image.sha256\""), "{raw}");
    assert!(
        raw.contains("\"org.opencontainers.image.title\":\"hello\""),
        "{raw}"
    );

    // Pull it back: the layer holds the very image at /unikraft/bin/kernel.
    let pulled = skopeo_pull(&reference, &dir, None);
    let index = std::fs::read_to_string(pulled.join("index.json")).unwrap();
    assert_eq!(json_field_compact(&index, "digest"), digest);
    let unpack = dir.join("unpacked");
    std::fs::create_dir_all(&unpack).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(layer_blob(&pulled))
        .arg("-C")
        .arg(&unpack)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(unpack.join("unikraft/bin/kernel")).unwrap(),
        std::fs::read(image).unwrap()
    );
    assert!(unpack.join("kiln/provenance.json").is_file());
    // inspect reads the pulled layout.
    let r = kiln(&["inspect", pulled.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.out().contains("(oci-layout)") && r.out().contains("verified"),
        "{r:?}"
    );

    // The tag is immutable: a second push is refused and changes nothing...
    let r = kiln(&[
        "publish",
        "--image",
        image.to_str().unwrap(),
        "--oci",
        &reference,
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr.contains("already exists") && r.stderr.contains("--force"),
        "{r:?}"
    );
    assert!(r.out().is_empty(), "{r:?}");
    // ...unless --force.
    let r = kiln(&[
        "publish",
        "--image",
        image.to_str().unwrap(),
        "--oci",
        &reference,
        "--force",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(digest_line(&r.out()), digest, "same inputs, same digest");
    // No `latest` was invented.
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}", reg.reference("kiln/hello")),
    ]);
    let tags = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && tags.contains("\"1.0.0\"") && !tags.contains("latest"),
        "{tags}"
    );
    // A reference without a tag is refused before anything happens.
    let r = kiln(&[
        "publish",
        "--image",
        image.to_str().unwrap(),
        "--oci",
        &reg.reference("kiln/hello"),
    ]);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("never invents `latest`"), "{r:?}");
}

#[test]
fn kubevirt_container_disk_layout_and_ownership() {
    need("qemu-img", "qemu-utils");
    let dir = fresh("kubevirt");
    let reg = Registry::start(&dir, free_port(), None);
    // The qcow2 disk holding the image (`qemu-img convert` of the image's bytes).
    let qcow2 = dir.join("hello.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(hello())
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(st.success());
    let reference = reg.reference("kiln/hello-disk:1");
    let vm = dir.join("vm.yaml");
    let r = kiln(&[
        "publish",
        "--kubevirt",
        "--disk",
        qcow2.to_str().unwrap(),
        "--oci",
        &reference,
        "--kubevirt-manifest",
        vm.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let digest = digest_line(&r.out());
    let (ok, json, err) = skopeo_inspect(&reference, &[]);
    assert!(ok, "{err}");
    assert_eq!(json_field(&json, "Digest"), digest);
    assert_eq!(json_field(&json, "Os"), "linux");
    assert_eq!(json_field(&json, "Architecture"), "amd64");

    let pulled = skopeo_pull(&reference, &dir, None);
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(layer_blob(&pulled))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[0].starts_with("drwxr-xr-x 107/107") && lines[0].ends_with(" disk/"),
        "{listing}"
    );
    assert!(
        lines[1].starts_with("-r--r--r-- 107/107") && lines[1].ends_with(" disk/hello.qcow2"),
        "{listing}"
    );
    let unpack = dir.join("unpacked");
    std::fs::create_dir_all(&unpack).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(layer_blob(&pulled))
        .arg("-C")
        .arg(&unpack)
        .status()
        .unwrap()
        .success());
    assert_eq!(
        std::fs::read(unpack.join("disk/hello.qcow2")).unwrap(),
        std::fs::read(&qcow2).unwrap()
    );

    let yaml = std::fs::read_to_string(&vm).unwrap();
    assert!(yaml.contains("kind: VirtualMachine"), "{yaml}");
    assert!(
        yaml.contains(&format!(
            "image: \"{}@{digest}\"",
            reg.reference("kiln/hello-disk")
        )),
        "{yaml}"
    );
    assert!(yaml.contains("containerDisk:"), "{yaml}");

    // Without --disk, publish makes the qcow2 (a UEFI GPT disk, as `build-image --format
    // qcow2` does) from the image.
    let reference = reg.reference("kiln/hello-disk:2");
    let r = kiln(&[
        "publish",
        "--image",
        hello().to_str().unwrap(),
        "--kubevirt",
        "--oci",
        &reference,
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let pulled = skopeo_pull(&reference, &dir, None);
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(layer_blob(&pulled))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.contains("107/107") && listing.contains(" disk/hello.qcow2"),
        "{listing}"
    );
}

#[test]
fn authentication() {
    let dir = fresh("auth");
    let reg = Registry::start(&dir, free_port(), Some(("kiln", "s3cret")));
    let image = hello();
    let reference = reg.reference("kiln/private:1");
    for creds in [
        &[][..],
        &["--username", "kiln", "--password", "not-the-pass-qzx"],
    ] {
        let mut args = vec![
            "publish",
            "--image",
            image.to_str().unwrap(),
            "--oci",
            &reference,
        ];
        args.extend_from_slice(creds);
        let r = kiln(&args);
        assert_eq!(r.status, 1, "{r:?}");
        assert!(r.stderr.contains("authentication failed"), "{r:?}");
        assert!(r.stderr.contains("--username"), "{r:?}");
        assert!(
            !r.stderr.contains("not-the-pass"),
            "the password is never printed: {r:?}"
        );
    }
    let r = kiln(&[
        "publish",
        "--image",
        image.to_str().unwrap(),
        "--oci",
        &reference,
        "--username",
        "kiln",
        "--password",
        "s3cret",
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    let digest = digest_line(&r.out());
    let (ok, json, err) = skopeo_inspect(&reference, &["--creds", "kiln:s3cret"]);
    assert!(ok, "{err}");
    assert_eq!(json_field(&json, "Digest"), digest);
}

#[test]
fn registry_down_is_a_clear_error_and_leaves_no_tag() {
    let dir = fresh("down");
    let port = free_port();
    let reference = format!("127.0.0.1:{port}/kiln/hello:1");
    let r = kiln(&[
        "publish",
        "--image",
        hello().to_str().unwrap(),
        "--oci",
        &reference,
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "could not reach the registry at http://127.0.0.1:{port}"
        )),
        "{r:?}"
    );
    assert!(r.stderr.contains("is it running"), "{r:?}");
    assert!(r.out().is_empty(), "{r:?}");
    // The registry, back up on the same storage, has no such tag.
    let reg = Registry::start(&dir, port, None);
    let (ok, _, err) = skopeo_inspect(&reg.reference("kiln/hello:1"), &[]);
    assert!(
        !ok && (err.contains("manifest unknown") || err.contains("not found")),
        "{err}"
    );
}

#[test]
fn oci_layout_is_reproducible_and_inspectable() {
    let dir = fresh("layout");
    let a = dir.join("a");
    let b = dir.join("b");
    for d in [&a, &b] {
        let r = kiln(&[
            "publish",
            "--example",
            "hello",
            "--arg",
            "--exit",
            "--oci-dir",
            d.to_str().unwrap(),
        ]);
        assert_eq!(r.status, 0, "{r:?}");
    }
    let files = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v.push((
            "index.json".into(),
            std::fs::read(d.join("index.json")).unwrap(),
        ));
        v
    };
    assert_eq!(
        files(&a),
        files(&b),
        "two publishes of the same inputs differ"
    );
    let r = kiln(&["inspect", a.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("hello 0.1.0 (example:hello)"), "{r:?}");
    // A non-empty directory is not overwritten without --force.
    let r = kiln(&[
        "publish",
        "--image",
        hello().to_str().unwrap(),
        "--oci-dir",
        a.to_str().unwrap(),
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("--force"), "{r:?}");
}
