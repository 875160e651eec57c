//! `pull` and `run REF`: fetch an image that `publish` pushed, check it, cache it by manifest
//! digest ([`super::cache`]).
//!
//! Checks, in order: the manifest's SHA-256 against the digest asked for (a digest
//! reference); the manifest's shape (one image manifest, not an index); the config's and each
//! layer's size and SHA-256 against their descriptors, while they stream to a staging
//! directory; the config's platform (a Kiln artifact, `qemu`/`x86_64`, or a KubeVirt
//! containerDisk); then the image taken out of the layer: its own `image_sha256` (the
//! provenance inside it) and the manifest's `dev.kiln.image.sha256` annotation. Only then is
//! the staging directory renamed into the cache. A tag resolves once per pull; the digest it
//! resolved to is what runs and what is printed.

use super::cache::{Cache, Entry, EntryInfo};
use super::reference::{digest_ok, PullRef};
use super::registry::{Credentials, Session};
use crate::provenance::{self, Provenance};
use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Docker's image manifest, which some registries convert to.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Indexes, asked for only to refuse them clearly.
const INDEXES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Largest manifest and config accepted (the config holds the provenance with its SBOM).
const MAX_JSON: u64 = 64 << 20;

/// When to ask the registry (docker's `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Always resolve the reference with the registry (`pull`'s behaviour).
    Always,
    /// Use the cache when it has the digest (or the tag's last digest); else pull (`run`'s
    /// default).
    Missing,
    /// Only the cache.
    Never,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "always" => Ok(Policy::Always),
            "missing" => Ok(Policy::Missing),
            "never" => Ok(Policy::Never),
            _ => Err(format!("`{s}`: expected always, missing or never")),
        }
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// When to ask the registry.
    pub policy: Policy,
    /// Allow plain HTTP to a registry that is not on this machine.
    pub insecure: bool,
    /// Credentials from the command line, if any.
    pub credentials: Option<Credentials>,
}

/// What `--image` / `run IMAGE` names: a file, or an image in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageArg {
    /// An image file on this machine.
    File(PathBuf),
    /// A registry reference.
    Remote(PullRef),
}

/// An existing path is a file; otherwise a registry reference; otherwise an error naming
/// both readings.
pub fn classify(s: &str) -> Result<ImageArg, String> {
    if Path::new(s).exists() {
        return Ok(ImageArg::File(s.into()));
    }
    PullRef::parse(s)
        .map(ImageArg::Remote)
        .map_err(|e| format!("{s}: no such file, and not a registry reference either ({e})"))
}

/// What a pull gave.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The cache entry (its [`Entry::image`] is the file to boot).
    pub entry: Entry,
    /// Whether it was downloaded now (else it was in the cache already).
    pub downloaded: bool,
}

/// One descriptor of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:HEX`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// The parts of an image manifest a pull uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `sha256:HEX` of `bytes`.
fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::image::sha256_hex(bytes))
}

/// Checks a manifest's bytes (against `expected` when the reference named a digest) and
/// parses it.
pub fn check_manifest(
    bytes: &[u8],
    expected: Option<&str>,
    what: &str,
) -> anyhow::Result<Manifest> {
    let digest = digest_of(bytes);
    if let Some(e) = expected {
        if e != digest {
            bail!("the manifest the registry sent for {what} hashes to {digest}, not {e}: it is corrupt or was tampered with; refusing it");
        }
    }
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| anyhow!("the manifest of {what} is not JSON: {e}"))?;
    let media = v["mediaType"].as_str().unwrap_or_default();
    if INDEXES.contains(&media) || v.get("manifests").is_some() {
        bail!("{what} is an image index (a list of images for several platforms); `publish` pushes single images, and Kiln pulls only those");
    }
    if v["schemaVersion"] != 2 {
        bail!(
            "{what}: unsupported manifest (schemaVersion {})",
            v["schemaVersion"]
        );
    }
    let m: Manifest = serde_json::from_value(v)
        .map_err(|e| anyhow!("the manifest of {what} is not an image manifest: {e}"))?;
    for d in std::iter::once(&m.config).chain(&m.layers) {
        if !digest_ok(&d.digest) {
            bail!(
                "the manifest of {what} names blob {:?}: Kiln checks sha256 digests only",
                d.digest
            );
        }
    }
    if m.config.size > MAX_JSON {
        bail!(
            "the config of {what} claims {} bytes; refusing it",
            m.config.size
        );
    }
    if m.layers.is_empty() {
        bail!("{what} has no layers: not an image `publish` pushed");
    }
    Ok(m)
}

/// Checks a blob as it streams: no more bytes than its descriptor says, then the same size
/// and SHA-256.
pub struct Verifier<'a> {
    expected: &'a Descriptor,
    hasher: Sha256,
    count: u64,
}

impl<'a> Verifier<'a> {
    /// A verifier for the blob `expected` describes.
    pub fn new(expected: &'a Descriptor) -> Self {
        Verifier {
            expected,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Takes the next chunk.
    pub fn update(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.count += chunk.len() as u64;
        if self.count > self.expected.size {
            bail!(
                "blob {} is larger than the {} bytes its manifest says: it is corrupt or was tampered with; refusing it",
                self.expected.digest,
                self.expected.size
            );
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// Bytes so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Checks the whole blob.
    pub fn finish(self) -> anyhow::Result<()> {
        let e = self.expected;
        if self.count != e.size {
            bail!(
                "blob {} has {} bytes, not the {} its manifest says: it is corrupt, truncated or was tampered with; refusing it",
                e.digest,
                self.count,
                e.size
            );
        }
        let got = format!("sha256:{:x}", self.hasher.finalize());
        if got != e.digest {
            bail!(
                "blob {} is corrupt or was tampered with: its bytes hash to {got}; refusing it",
                e.digest
            );
        }
        Ok(())
    }
}

/// Where progress lines go: stdout for `pull`, stderr for `run`. On a terminal, downloads
/// count up in place.
pub struct Progress<'a> {
    /// The stream.
    pub out: &'a mut dyn Write,
    /// Whether it is a terminal.
    pub tty: bool,
}

impl Progress<'_> {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn counting(&mut self, short: &str, done: u64, total: u64) {
        if self.tty {
            let _ = write!(
                self.out,
                "\r\x1b[K{short}: Downloading {done}/{total} bytes"
            );
            let _ = self.out.flush();
        }
    }

    fn complete(&mut self, short: &str, total: u64) {
        let cr = if self.tty { "\r\x1b[K" } else { "" };
        self.line(&format!("{cr}{short}: Pull complete ({total} bytes)"));
    }
}

/// Fetches `d` into `out`, checked by a [`Verifier`]; `show` counts it as a layer.
fn fetch(
    s: &Session,
    d: &Descriptor,
    out: &mut dyn Write,
    show: Option<&mut Progress>,
) -> anyhow::Result<()> {
    let short = &d.digest["sha256:".len()..][..12];
    let mut v = Verifier::new(d);
    let mut show = show;
    let mut last = std::time::Instant::now();
    let streamed = s.blob(&d.digest, &mut |chunk| {
        v.update(chunk)?;
        out.write_all(chunk)?;
        if let Some(p) = show.as_deref_mut() {
            if last.elapsed().as_millis() >= 100 {
                p.counting(short, v.count(), d.size);
                last = std::time::Instant::now();
            }
        }
        Ok(())
    });
    if let Err(e) = streamed {
        // The client fails a stream whose digest differs at its end; say it our way.
        if v.count() == d.size {
            v.finish()?;
        }
        return Err(e);
    }
    v.finish()?;
    if let Some(p) = show {
        p.complete(short, d.size);
    }
    Ok(())
}

/// What the image is, from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A Kiln artifact: the PVH image at `/unikraft/bin/kernel`.
    Kernel,
    /// A KubeVirt containerDisk: the disk at this path.
    Disk(String),
}

/// Reads the config's platform: a Kiln artifact or a containerDisk; anything else is refused.
fn kind(config: &[u8], what: &str) -> anyhow::Result<Kind> {
    let c: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| anyhow!("the config of {what} is not JSON: {e}"))?;
    let (os, arch) = (
        c["os"].as_str().unwrap_or("?"),
        c["architecture"].as_str().unwrap_or("?"),
    );
    let labels = &c["config"]["Labels"];
    if let Some(disk) = labels["dev.kiln.kubevirt.disk"].as_str() {
        return Ok(Kind::Disk(disk.trim_start_matches('/').to_string()));
    }
    if os == super::PLATFORM && arch == super::ARCH && labels.get("dev.kiln.provenance").is_some() {
        return Ok(Kind::Kernel);
    }
    bail!(
        "{what} is not a Kiln image (its config says os {os}, architecture {arch}, and carries no Kiln provenance); `run` and `pull` take images that `cargo xtask publish` pushed"
    )
}

/// Copies the file at `wanted` in the tar `layer` (gzip'd when `gzip`) to `to`; false when
/// the layer has no such file.
fn extract(layer: &Path, gzip: bool, wanted: &str, to: &Path) -> anyhow::Result<bool> {
    let f = std::fs::File::open(layer)?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./").trim_start_matches('/') == wanted
            && entry.header().entry_type().is_file()
        {
            let mut out = std::fs::File::create(to)?;
            std::io::copy(&mut entry, &mut out)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks the image taken out of the layer: its provenance, its own `image_sha256`, and
/// the manifest's annotation of it.
fn check_image(path: &Path, kind: &Kind, m: &Manifest, what: &str) -> anyhow::Result<Provenance> {
    let (prov, verified) = match kind {
        Kind::Kernel => {
            let bytes = std::fs::read(path)?;
            provenance::read(&bytes)
                .map_err(|e| anyhow!("the image in {what} is not a Kiln image: {e}"))?
        }
        Kind::Disk(_) => {
            let i = crate::inspect::inspect(path)
                .map_err(|e| anyhow!("the disk in {what} holds no Kiln image: {e}"))?;
            (i.provenance, i.verified)
        }
    };
    if !verified {
        bail!(
            "the image in {what} does not match its own image_sha256 {}: it was changed after it was built (corrupt or tampered with); refusing it",
            prov.image_sha256
        );
    }
    if let Some(a) = m.annotations.get("dev.kiln.image.sha256") {
        if *a != prov.image_sha256 {
            bail!(
                "the manifest of {what} says image sha256 {a}, but the image inside is {}: it was tampered with; refusing it",
                prov.image_sha256
            );
        }
    }
    Ok(prov)
}

/// A file name from an app name (letters, digits, `.`, `_`, `-`).
fn file_name(app: &str, ext: &str) -> String {
    let name: String = app
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.');
    format!("{}.{ext}", if name.is_empty() { "image" } else { name })
}

/// Whether a cached entry still holds the image it was verified with.
fn intact(e: &Entry) -> bool {
    crate::inspect::inspect(&e.image())
        .is_ok_and(|i| i.verified && i.provenance.image_sha256 == e.info.image_sha256)
}

/// Downloads, checks and caches the image `r` names, whose manifest is `bytes`.
fn download(
    cache: &Cache,
    s: &Session,
    r: &PullRef,
    bytes: &[u8],
    p: &mut Progress,
) -> anyhow::Result<Entry> {
    let what = r.to_string();
    let m = check_manifest(bytes, r.digest.as_deref(), &what)?;
    let digest = digest_of(bytes);
    let staging = cache.staging()?;
    let dir = staging.path();
    let mut config = Vec::new();
    fetch(s, &m.config, &mut config, None)?;
    let kind = kind(&config, &what)?;
    let (wanted, ext) = match &kind {
        Kind::Kernel => (
            super::KERNEL_PATH.trim_start_matches('/').to_string(),
            "elf",
        ),
        Kind::Disk(path) => {
            let ext = if path.ends_with(".qcow2") {
                "qcow2"
            } else {
                "raw"
            };
            (path.clone(), ext)
        }
    };
    let unpacked = dir.join("image");
    let mut found = false;
    for (i, layer) in m.layers.iter().enumerate() {
        let gzip = layer.media_type.ends_with("gzip");
        if !gzip && !layer.media_type.ends_with(".tar") {
            bail!(
                "layer {} of {what} is a {}, not a tar layer; refusing it",
                layer.digest,
                layer.media_type
            );
        }
        let file = dir.join(format!("layer{i}"));
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&file)
                .with_context(|| format!("could not write {}", file.display()))?,
        );
        fetch(s, layer, &mut out, Some(p))?;
        out.flush()?;
        drop(out);
        if !found {
            found = extract(&file, gzip, &wanted, &unpacked)?;
        }
        std::fs::remove_file(&file)?;
    }
    if !found {
        bail!("{what} holds no /{wanted}: not an image `publish` pushed");
    }
    let prov = check_image(&unpacked, &kind, &m, &what)?;
    let name = file_name(&prov.app.name, ext);
    std::fs::rename(&unpacked, dir.join(&name))?;
    std::fs::write(dir.join("manifest.json"), bytes)?;
    std::fs::write(dir.join("config.json"), &config)?;
    cache.commit(
        staging,
        &EntryInfo {
            reference: what,
            digest,
            file: name,
            image_sha256: prov.image_sha256,
        },
    )
}

/// The cached entry for `r` under `policy`, without the network; a damaged entry is removed.
fn cached(cache: &Cache, r: &PullRef) -> anyhow::Result<Option<Entry>> {
    let Some(digest) = r.digest.clone().or_else(|| cache.tag(r)) else {
        return Ok(None);
    };
    let Some(e) = cache.get(&digest)? else {
        return Ok(None);
    };
    if intact(&e) {
        return Ok(Some(e));
    }
    crate::note!("the cached copy of {r} ({digest}) is damaged; removing it");
    cache.remove(&digest)?;
    Ok(None)
}

/// Pulls `r` into `cache` (or finds it there, as `opts.policy` allows), printing docker's
/// lines to `p`.
pub fn pull(
    cache: &Cache,
    r: &PullRef,
    opts: &PullOptions,
    p: &mut Progress,
) -> anyhow::Result<Pulled> {
    if opts.policy != Policy::Always {
        if let Some(entry) = cached(cache, r)? {
            p.line(&format!("Digest: {}", entry.info.digest));
            p.line(&format!("Status: Using the cached image for {r}"));
            return Ok(Pulled {
                entry,
                downloaded: false,
            });
        }
        if opts.policy == Policy::Never {
            bail!(
                "{r} is not in the cache ({}) and --pull never forbids asking the registry",
                cache.root().display()
            );
        }
    }
    let creds = opts.credentials.as_ref();
    let s = Session::open(&r.registry, &r.repository, opts.insecure, creds)?;
    let name = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_default();
    p.line(&format!("{name}: Pulling from {}", r.repository));
    let mut accept = vec![super::MEDIA_MANIFEST, DOCKER_MANIFEST];
    accept.extend(INDEXES);
    let bytes = s.manifest(&name, &accept)?.ok_or_else(|| {
        anyhow!(
            "{r}: manifest unknown: the registry has no such {}",
            if r.digest.is_some() { "digest" } else { "tag" }
        )
    })?;
    if bytes.len() as u64 > MAX_JSON {
        bail!("the manifest of {r} is {} bytes; refusing it", bytes.len());
    }
    let digest = digest_of(&bytes);
    let (entry, downloaded) = match cache.get(&digest)? {
        Some(e) if intact(&e) => (e, false),
        damaged => {
            if damaged.is_some() {
                cache.remove(&digest)?;
            }
            (download(cache, &s, r, &bytes, p)?, true)
        }
    };
    cache.set_tag(r, &digest)?;
    p.line(&format!("Digest: {digest}"));
    p.line(&format!(
        "Status: {} for {r}",
        if downloaded {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        }
    ));
    Ok(Pulled { entry, downloaded })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: super::super::MEDIA_LAYER.into(),
            digest: digest_of(data),
            size: data.len() as u64,
        }
    }

    #[test]
    fn classify_prefers_existing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = tmp.path().join("x.io:1");
        std::fs::write(&odd, b"").unwrap();
        let odd = odd.to_str().unwrap();
        assert_eq!(classify(odd), Ok(ImageArg::File(odd.into())));
        assert!(matches!(
            classify("127.0.0.1:5000/kiln/hello:1"),
            Ok(ImageArg::Remote(_))
        ));
        let e = classify("nothing/here.elf").unwrap_err();
        assert!(
            e.contains("no such file") && e.contains("not a registry reference"),
            "{e}"
        );
        assert_eq!("never".parse(), Ok(Policy::Never));
        assert!("sometimes".parse::<Policy>().is_err());
    }

    #[test]
    fn verifier_refuses_other_bytes() {
        let d = descriptor(b"kernel bytes");
        let mut v = Verifier::new(&d);
        v.update(b"kernel ").unwrap();
        v.update(b"bytes").unwrap();
        v.finish().unwrap();
        let mut v = Verifier::new(&d);
        v.update(b"kernel BYTES").unwrap();
        let e = v.finish().unwrap_err().to_string();
        assert!(e.contains("tampered") && e.contains(&d.digest), "{e}");
        let mut v = Verifier::new(&d);
        v.update(b"kernel").unwrap();
        assert!(v.finish().unwrap_err().to_string().contains("truncated"));
        let mut v = Verifier::new(&d);
        assert!(v.update(b"kernel bytes and more").is_err());
    }

    #[test]
    fn manifests_are_checked() {
        let p = crate::provenance::tests::sample();
        let a = super::super::kiln_artifact(b"\x7fELF", &p).unwrap();
        let m = check_manifest(&a.manifest, Some(&a.digest()), "x").unwrap();
        assert_eq!(m.layers[0], descriptor(&a.layers[0].data));
        assert_eq!(
            m.config,
            Descriptor {
                media_type: super::super::MEDIA_CONFIG.into(),
                ..descriptor(&a.config.data)
            }
        );
        assert_eq!(m.annotations["dev.kiln.image.sha256"], p.image_sha256);
        let other = format!("sha256:{}", "0".repeat(64));
        let e = check_manifest(&a.manifest, Some(&other), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tampered"), "{e}");
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(check_manifest(index, None, "x")
            .unwrap_err()
            .to_string()
            .contains("image index"));
        assert!(check_manifest(b"{", None, "x").is_err());
        assert!(check_manifest(br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"md5:0","size":1},"layers":[]}"#, None, "x").is_err());
        assert_eq!(kind(&a.config.data, "x").unwrap(), Kind::Kernel);
        let d = super::super::container_disk(b"QFI\xfb", "hello.qcow2", &p).unwrap();
        assert_eq!(
            kind(&d.config.data, "x").unwrap(),
            Kind::Disk("disk/hello.qcow2".into())
        );
        let e = kind(br#"{"os":"linux","architecture":"amd64","config":{}}"#, "x").unwrap_err();
        assert!(e.to_string().contains("not a Kiln image"), "{e}");
    }

    #[test]
    fn the_kernel_comes_out_of_the_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        std::fs::write(
            &layer,
            super::super::layer::kernel_layer(b"\x7fELF k", b"{}", 0).unwrap(),
        )
        .unwrap();
        let out = tmp.path().join("out");
        assert!(extract(&layer, false, "unikraft/bin/kernel", &out).unwrap());
        assert_eq!(std::fs::read(&out).unwrap(), b"\x7fELF k");
        assert!(!extract(&layer, false, "disk/x.qcow2", &out).unwrap());
        assert_eq!(file_name("hello world", "elf"), "hello_world.elf");
        assert_eq!(file_name("..", "elf"), "image.elf");
    }

    /// A sealed PVH image with the sample provenance.
    fn sealed() -> (Vec<u8>, Provenance) {
        let kernel = crate::link::tests::fake_kernel(kiln_abi::payload::LOCATION_SYMBOL, 16);
        let json = crate::provenance::tests::sample().to_json();
        let payload = kiln_abi::payload::build_with_provenance(b"\x7fELFp", b"tar", "c", &json);
        let mut image = crate::link::link(&kernel, &payload).unwrap();
        provenance::seal(&mut image).unwrap();
        let p = provenance::read(&image).unwrap().0;
        (image, p)
    }

    #[test]
    fn the_image_must_match_its_own_hash_and_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let (image, p) = sealed();
        let a = super::super::kiln_artifact(&image, &p).unwrap();
        let m = check_manifest(&a.manifest, None, "x").unwrap();
        let file = tmp.path().join("image");
        std::fs::write(&file, &image).unwrap();
        assert_eq!(check_image(&file, &Kind::Kernel, &m, "x").unwrap(), p);
        // One byte changed (the artifact rebuilt around it, so every digest agrees).
        let mut bad = image.clone();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        let e = check_image(&file, &Kind::Kernel, &m, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match its own image_sha256"), "{e}");
        // A manifest that claims another image.
        std::fs::write(&file, &image).unwrap();
        let mut other = m.clone();
        other
            .annotations
            .insert("dev.kiln.image.sha256".into(), "00".repeat(32));
        let e = check_image(&file, &Kind::Kernel, &other, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tampered"), "{e}");
        std::fs::write(&file, b"\x7fELF not kiln").unwrap();
        let e = check_image(&file, &Kind::Kernel, &m, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a Kiln image"), "{e}");
    }

    #[test]
    fn a_damaged_cache_entry_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path().to_path_buf());
        let (image, p) = sealed();
        let digest = format!("sha256:{}", "e".repeat(64));
        let r = PullRef::parse(&format!("127.0.0.1:1/kiln/hello:1@{digest}")).unwrap();
        let put = |bytes: &[u8]| {
            let staging = cache.staging().unwrap();
            std::fs::write(staging.path().join("hello.elf"), bytes).unwrap();
            let info = EntryInfo {
                reference: r.to_string(),
                digest: digest.clone(),
                file: "hello.elf".into(),
                image_sha256: p.image_sha256.clone(),
            };
            cache.commit(staging, &info).unwrap();
        };
        put(&image);
        assert!(cached(&cache, &r).unwrap().is_some());
        cache.remove(&digest).unwrap();
        let mut bad = image.clone();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        put(&bad);
        assert!(cached(&cache, &r).unwrap().is_none());
        assert!(cache.get(&digest).unwrap().is_none(), "removed");
        // --pull never then has nothing to run.
        let opts = PullOptions {
            policy: Policy::Never,
            insecure: false,
            credentials: None,
        };
        let mut out = Vec::new();
        let mut progress = Progress {
            out: &mut out,
            tty: false,
        };
        let e = pull(&cache, &r, &opts, &mut progress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in the cache"), "{e}");
    }
}
