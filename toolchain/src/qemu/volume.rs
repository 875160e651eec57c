//! `-v HOSTDIR:/GUEST[:ro|:rw]`: host directories mounted in the guest with virtio-9p.
//! Spellings and errors follow docker's `-v`; a missing host directory is an error (docker
//! would create it).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::args::qemu_escape;
use super::target::Target;
use kiln_abi::cmdline;

/// One volume of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host directory (absolute, symbolic links resolved).
    pub host: PathBuf,
    /// The mount point in the guest (absolute).
    pub guest: String,
    /// Writes fail in the guest (`EROFS`), and QEMU refuses them too.
    pub readonly: bool,
}

/// Parses one `-v` value and checks the host side: the directory must exist.
pub fn parse(spec: &str) -> Result<Volume, String> {
    let invalid = |why: &str| format!("invalid volume specification: '{spec}': {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, guest, mode) = match parts[..] {
        [h, g] => (h, g, None),
        [h, g, m] => (h, g, Some(m)),
        _ => {
            return Err(format!(
                "invalid volume specification: '{spec}' (expected HOSTDIR:/GUEST[:ro])"
            ))
        }
    };
    if host.is_empty() || guest.is_empty() {
        return Err(invalid("empty section between colons"));
    }
    let readonly = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => return Err(format!("invalid mode: {m}")),
    };
    if !guest.starts_with('/') {
        return Err(invalid(&format!(
            "invalid mount path: '{guest}' mount path must be absolute"
        )));
    }
    let guest = normalize(guest);
    if guest == "/" {
        return Err(invalid("invalid specification: destination can't be '/'"));
    }
    let host_path = Path::new(host);
    let meta = std::fs::metadata(host_path).map_err(|_| {
        format!("invalid mount config for type \"bind\": bind source path does not exist: {host}")
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "invalid mount config for type \"bind\": bind source path is not a directory: {host} (volumes are directories)"
        ));
    }
    let host = host_path
        .canonicalize()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    Ok(Volume {
        host,
        guest,
        readonly,
    })
}

/// Parses every `-v` value; two volumes on one mount point are an error.
pub fn parse_all(specs: &[String]) -> Result<Vec<Volume>, String> {
    let mut out: Vec<Volume> = Vec::new();
    for s in specs {
        let v = parse(s)?;
        if out.iter().any(|o| o.guest == v.guest) {
            return Err(format!("Duplicate mount point: {}", v.guest));
        }
        out.push(v);
    }
    Ok(out)
}

/// `/a//b/./c/` as `/a/b/c` (`..` is kept: the guest resolves it).
fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The mount tag of the `i`th volume.
pub fn tag(i: usize) -> String {
    format!("kiln{i}")
}

/// The kernel's `kiln.volume` settings.
pub fn config(volumes: &[Volume]) -> Vec<cmdline::Volume> {
    volumes
        .iter()
        .enumerate()
        .map(|(i, v)| cmdline::Volume {
            tag: tag(i),
            path: v.guest.clone(),
            readonly: v.readonly,
        })
        .collect()
}

/// QEMU's `-fsdev` and virtio-9p `-device` for each volume (the target's device kind).
/// `multidevs=remap` keeps inode numbers unique when the directory spans file systems.
pub fn qemu_args(target: &Target, volumes: &[Volume]) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let device = target.volume_device.as_deref().unwrap_or("virtio-9p-pci");
    for (i, v) in volumes.iter().enumerate() {
        let ro = if v.readonly { ",readonly=on" } else { "" };
        a.push("-fsdev".into());
        a.push(
            format!(
                "local,id=kvol{i},path={},security_model=none,multidevs=remap{ro}",
                qemu_escape(&v.host)
            )
            .into(),
        );
        a.push("-device".into());
        a.push(format!("{device},fsdev=kvol{i},mount_tag={}", tag(i)).into());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let v = parse(&format!("{d}:/data//x/")).unwrap();
        assert_eq!(v.guest, "/data/x");
        assert!(!v.readonly);
        assert!(parse(&format!("{d}:/data:ro")).unwrap().readonly);
        assert!(!parse(&format!("{d}:/data:rw")).unwrap().readonly);
        for (spec, want) in [
            (format!("{d}:data"), "must be absolute"),
            (format!("{d}:/"), "destination can't be '/'"),
            (format!("{d}:/a:xx"), "invalid mode: xx"),
            (d.to_string(), "expected HOSTDIR:/GUEST"),
            (":/a".to_string(), "empty section"),
            (format!("{d}/nope:/a"), "does not exist"),
        ] {
            let e = parse(&spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(parse(&format!("{}:/a", file.display()))
            .unwrap_err()
            .contains("not a directory"));
        let e = parse_all(&[format!("{d}:/a"), format!("{d}:/a/")]).unwrap_err();
        assert_eq!(e, "Duplicate mount point: /a");
        let vs = parse_all(&[format!("{d}:/a"), format!("{d}:/b:ro")]).unwrap();
        assert_eq!(config(&vs)[1].tag, "kiln1");
        assert!(config(&vs)[1].readonly);
    }
}
