//! Deciding between KVM and TCG by trying KVM, never by the presence of `/dev/kvm`.
//!
//! The probe boots the floor image with `-accel kvm` and gives it 3 s. The answer is cached
//! per host boot (keyed by `/proc/sys/kernel/random/boot_id`) in `target/kiln/kvm-probe`.
//! `KILN_ACCEL=tcg` or `KILN_ACCEL=kvm` skips the probe.

use super::args::Accel;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Parses a cache file: `Some(accel)` when it was written during boot `boot_id`.
pub fn parse_cache(text: &str, boot_id: &str) -> Option<Accel> {
    let mut lines = text.lines();
    if lines.next()? != boot_id {
        return None;
    }
    match lines.next()? {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

fn accel_name(a: Accel) -> &'static str {
    match a {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    }
}

/// Chooses the accelerator, probing (and caching) when needed.
pub fn choose(qemu: &Path, kiln_dir: &Path) -> Accel {
    match std::env::var("KILN_ACCEL").as_deref() {
        Ok("tcg") => return Accel::Tcg,
        Ok("kvm") => return Accel::Kvm,
        _ => {}
    }
    if !Path::new("/dev/kvm").exists() {
        return Accel::Tcg;
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cache = kiln_dir.join("kvm-probe");
    if let Some(a) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|t| parse_cache(&t, &boot_id))
    {
        return a;
    }
    let accel = if probe(qemu) { Accel::Kvm } else { Accel::Tcg };
    let _ = std::fs::create_dir_all(kiln_dir);
    let _ = std::fs::write(&cache, format!("{boot_id}\n{}\n", accel_name(accel)));
    accel
}

/// Boots the floor image under KVM; `true` when it exits cleanly within [`PROBE_TIMEOUT`].
pub fn probe(qemu: &Path) -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let image = dir.path().join("floor.elf");
    if std::fs::write(&image, crate::floor::bytes()).is_err() {
        return false;
    }
    let target = super::Machine::Microvm.target();
    let child = Command::new(qemu)
        .args(&target.common)
        .args(&target.machine)
        .args(&target.kvm)
        .args(["-m", "16M"])
        .args(&target.devices)
        .arg("-kernel")
        .arg(&image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                // Exit code 1 is both "guest wrote 0" and "QEMU failed": QEMU's stderr decides.
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return kiln_abi::exit::from_qemu_exit(s.code().unwrap_or(-1)) == Some(0)
                    && super::outcome::qemu_error(&err).is_none();
            }
            Ok(None) if start.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                super::kill_and_reap(&mut child);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_per_boot() {
        assert_eq!(parse_cache("abc\nkvm\n", "abc"), Some(Accel::Kvm));
        assert_eq!(parse_cache("abc\ntcg\n", "abc"), Some(Accel::Tcg));
        assert_eq!(parse_cache("abc\nkvm\n", "other"), None);
        assert_eq!(parse_cache("abc\nmaybe\n", "abc"), None);
        assert_eq!(parse_cache("", "abc"), None);
    }
}
