//! Deterministic tar layers: fixed owners, modes and mtime, entries in a fixed order.

use anyhow::anyhow;

/// The mtime for layer entries: `SOURCE_DATE_EPOCH` when set, else 0.
pub fn mtime() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
            anyhow!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds; unset it or give a Unix time"
            )
        }),
        _ => Ok(0),
    }
}

/// One entry: a directory (`data` = `None`) or a file.
struct Entry<'a> {
    path: &'a str,
    mode: u32,
    owner: u64,
    data: Option<&'a [u8]>,
}

fn build(entries: &[Entry<'_>], mtime: u64) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(e.path)?;
        h.set_mode(e.mode);
        h.set_uid(e.owner);
        h.set_gid(e.owner);
        h.set_mtime(mtime);
        h.set_username("")?;
        h.set_groupname("")?;
        match e.data {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_cksum();
                b.append(&h, std::io::empty())?;
            }
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                h.set_cksum();
                b.append(&h, d)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// The Kiln artifact's layer: `/unikraft/bin/kernel` (the PVH image) and
/// `/kiln/provenance.json`, owned by root.
pub fn kernel_layer(image: &[u8], provenance: &[u8], mtime: u64) -> anyhow::Result<Vec<u8>> {
    build(
        &[
            Entry {
                path: "kiln/",
                mode: 0o755,
                owner: 0,
                data: None,
            },
            Entry {
                path: "kiln/provenance.json",
                mode: 0o644,
                owner: 0,
                data: Some(provenance),
            },
            Entry {
                path: "unikraft/",
                mode: 0o755,
                owner: 0,
                data: None,
            },
            Entry {
                path: "unikraft/bin/",
                mode: 0o755,
                owner: 0,
                data: None,
            },
            Entry {
                path: "unikraft/bin/kernel",
                mode: 0o755,
                owner: 0,
                data: Some(image),
            },
        ],
        mtime,
    )
}

/// The containerDisk layer: `/disk/` and `/disk/FILE_NAME`, owned by 107:107 (KubeVirt's
/// qemu user), the disk read-only.
pub fn disk_layer(disk: &[u8], file_name: &str, mtime: u64) -> anyhow::Result<Vec<u8>> {
    if file_name.is_empty() || file_name.contains('/') {
        anyhow::bail!("disk file name {file_name:?} must be a plain file name");
    }
    let path = format!("disk/{file_name}");
    let id = super::KUBEVIRT_QEMU_ID;
    build(
        &[
            Entry {
                path: "disk/",
                mode: 0o755,
                owner: id,
                data: None,
            },
            Entry {
                path: &path,
                mode: 0o444,
                owner: id,
                data: Some(disk),
            },
        ],
        mtime,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn list(tar_bytes: &[u8]) -> Vec<(String, u64, u64, u32, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn disk_layer_is_owned_by_107_and_deterministic() {
        let a = disk_layer(b"QFI\xfbdisk", "hello.qcow2", 0).unwrap();
        assert_eq!(a, disk_layer(b"QFI\xfbdisk", "hello.qcow2", 0).unwrap());
        let l = list(&a);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].0.as_str(), l[0].1, l[0].2), ("disk/", 107, 107));
        assert_eq!(
            (l[1].0.as_str(), l[1].1, l[1].2, l[1].3),
            ("disk/hello.qcow2", 107, 107, 0o444)
        );
        assert_eq!(l[1].5, b"QFI\xfbdisk");
        assert!(l.iter().all(|e| e.4 == 0));
        assert!(disk_layer(b"x", "a/b", 0).is_err());
    }

    #[test]
    fn kernel_layer_holds_the_image_at_the_kraftkit_path() {
        let a = kernel_layer(b"\x7fELF", b"{}", 1_700_000_000).unwrap();
        assert_eq!(a, kernel_layer(b"\x7fELF", b"{}", 1_700_000_000).unwrap());
        let l = list(&a);
        let kernel = l.iter().find(|e| e.0 == "unikraft/bin/kernel").unwrap();
        assert_eq!((kernel.1, kernel.2, kernel.3), (0, 0, 0o755));
        assert_eq!(kernel.5, b"\x7fELF");
        assert_eq!(kernel.4, 1_700_000_000);
        let prov = l.iter().find(|e| e.0 == "kiln/provenance.json").unwrap();
        assert_eq!(prov.5, b"{}");
    }
}
