//! Finding QEMU, and installing it from Debian's packages when it is missing and we are root.

use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian package that provides `qemu-system-x86_64`.
pub const PACKAGE: &str = "qemu-system-x86";
/// The install command Kiln runs (as root) or asks the user to run.
pub const INSTALL: &str =
    "apt-get update && apt-get install -y --no-install-recommends qemu-system-x86";

/// Finds `program` in `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| program.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Returns the path of `binary`, installing QEMU first when it is missing and we are root.
pub fn ensure(binary: &str) -> anyhow::Result<PathBuf> {
    ensure_tool(binary, PACKAGE)
}

/// Returns the path of `binary`, installing Debian's `package` when it is missing and we
/// are root (otherwise the error gives the command to run).
pub fn ensure_tool(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = which(binary) {
        return Ok(p);
    }
    install(binary, package)?;
    which(binary)
        .ok_or_else(|| anyhow::anyhow!("{binary} is still missing after installing {package}"))
}

/// Returns `path` (a file a Debian package ships, such as OVMF's firmware), installing
/// `package` when it is missing and we are root.
pub fn ensure_file(path: &Path, package: &str) -> anyhow::Result<PathBuf> {
    if !path.is_file() {
        install(&path.display().to_string(), package)?;
    }
    if !path.is_file() {
        bail!(
            "{} is still missing after installing {package}",
            path.display()
        );
    }
    Ok(path.to_path_buf())
}

fn install(what: &str, package: &str) -> anyhow::Result<()> {
    let command = format!("apt-get update && apt-get install -y --no-install-recommends {package}");
    let root = rustix::process::geteuid().is_root();
    if !root {
        bail!("{what} is not installed; install it with: sudo sh -c '{command}'");
    }
    crate::note!("{what} is missing; running: {command}");
    let status = Command::new("sh")
        .args(["-c", &command])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .stdout(crate::app::stderr_stdio())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("installing {package} failed; run `{command}` yourself and try again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("kiln-no-such-program").is_none());
        assert!(which("/no/such/bin").is_none());
    }
}
