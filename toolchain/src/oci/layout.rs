//! Writing an OCI image layout directory (`publish --oci-dir DIR`).

use super::Artifact;
use anyhow::{bail, Context};
use serde_json::json;
use std::path::Path;

/// Writes `artifact` as an OCI image layout in `dir`, tagged `tag` (the index entry's
/// `org.opencontainers.image.ref.name`) when given. A non-empty `dir` is refused unless
/// `force`, which replaces it.
pub fn write(
    dir: &Path,
    artifact: &Artifact,
    tag: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and is not a directory", dir.display()))?
            .next()
            .is_none();
        if !empty {
            if !force {
                bail!(
                    "{} already exists and is not empty; published images are immutable: choose another directory or pass --force to replace it",
                    dir.display()
                );
            }
            if !dir.join("oci-layout").is_file() {
                bail!(
                    "{} is not an OCI image layout; refusing to replace it even with --force",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("could not remove {}", dir.display()))?;
        }
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("could not create {}", blobs.display()))?;
    let put = |digest: &str, data: &[u8]| -> anyhow::Result<()> {
        let hex = digest.trim_start_matches("sha256:");
        crate::image::write_atomically(&blobs.join(hex), data)
    };
    for l in &artifact.layers {
        put(&l.digest(), &l.data)?;
    }
    put(&artifact.config.digest(), &artifact.config.data)?;
    put(&artifact.digest(), &artifact.manifest)?;
    let mut entry = json!({
        "mediaType": super::MEDIA_MANIFEST,
        "digest": artifact.digest(),
        "size": artifact.manifest.len(),
    });
    if let Some(t) = tag {
        entry["annotations"] = json!({ "org.opencontainers.image.ref.name": t });
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry],
    });
    crate::image::write_atomically(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    crate::image::write_atomically(&dir.join("index.json"), &serde_json::to_vec(&index)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_layout_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("oci");
        let p = crate::provenance::tests::sample();
        let a = super::super::kiln_artifact(b"\x7fELF", &p).unwrap();
        write(&dir, &a, Some("1.0"), false).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], a.digest());
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "1.0"
        );
        let hex = a.digest().trim_start_matches("sha256:").to_string();
        assert_eq!(
            std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap(),
            a.manifest
        );
        let e = write(&dir, &a, Some("1.0"), false).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        write(&dir, &a, None, true).unwrap();
        let not_oci = tmp.path().join("home");
        std::fs::create_dir_all(&not_oci).unwrap();
        std::fs::write(not_oci.join("precious"), "x").unwrap();
        assert!(write(&not_oci, &a, None, true).is_err());
        assert!(not_oci.join("precious").exists());
    }
}
