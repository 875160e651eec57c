//! Finding QEMU, and installing it from Debian's packages when it is missing and we are root.

use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian package that provides `qemu-system-x86_64`.
pub const PACKAGE: &str = "qemu-system-x86";
/// The install command Kiln runs (as root) or asks the user to run.
pub const INSTALL: &str = "apt-get update && apt-get install -y qemu-system-x86";

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
    if let Some(p) = which(binary) {
        return Ok(p);
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        bail!("{binary} is not installed; install it with: sudo sh -c '{INSTALL}'");
    }
    crate::note!("{binary} is missing; running: {INSTALL}");
    let status = Command::new("sh")
        .args(["-c", INSTALL])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .stdout(crate::app::stderr_stdio())
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => bail!("installing QEMU failed; run `{INSTALL}` yourself and try again"),
    }
    which(binary)
        .ok_or_else(|| anyhow::anyhow!("{binary} is still missing after installing {PACKAGE}"))
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
