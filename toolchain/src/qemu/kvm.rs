//! Deciding between KVM and TCG by running Kiln's kernel under KVM, never by the presence of
//! `/dev/kvm` or by a do-nothing image.
//!
//! The probe boots the real kernel with a small ring-3 program ([`super::probe`]) under KVM
//! and passes only when the program's line arrives and it exits 0. A paravirtual KVM (PVM)
//! boots a do-nothing kernel but stops Kiln's at its first SSE instruction with
//! `KVM internal error ... emulation failure`, which is why the probe must be real. The answer
//! is cached in `target/kiln/kvm-probe`, keyed by the host's boot, the QEMU binary and the
//! kernel build ([`cache_key`]). `KILN_ACCEL=tcg` or `KILN_ACCEL=kvm` skips the probe. Runs
//! watch for KVM failing anyway and fall back to TCG ([`super::run`]).

use super::args::{Accel, NetBackend, NetOptions, RunOptions};
use super::{Machine, ProgramOutput};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the probe may take (KVM boots it in milliseconds).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The accelerator a run uses, and whether the user chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// Set by `KILN_ACCEL`: a failing KVM is then an error, not a reason to fall back.
    pub forced: bool,
    /// The probe cache file and this host's key, to record a KVM failure seen during a run.
    cache: Option<(PathBuf, String)>,
}

impl AccelChoice {
    /// An accelerator chosen without the probe (and without a cache to update).
    pub fn fixed(accel: Accel, forced: bool) -> Self {
        AccelChoice {
            accel,
            forced,
            cache: None,
        }
    }

    /// Records that KVM cannot run Kiln here, so later runs use TCG without trying it.
    pub fn mark_kvm_unusable(&self) {
        if let Some((path, key)) = &self.cache {
            write_cache(path, key, Accel::Tcg);
        }
    }
}

/// The cache key: the host's boot, the QEMU binary (size and modification time, which an
/// upgrade changes) and the kernel build (the first 16 hex digits of its SHA-256).
pub fn cache_key(boot_id: &str, qemu: &str, kernel_sha256: &str) -> String {
    format!(
        "boot={boot_id} qemu={qemu} kernel={}",
        &kernel_sha256[..kernel_sha256.len().min(16)]
    )
}

/// Parses a cache file: `Some(accel)` when it was written under `key`.
pub fn parse_cache(text: &str, key: &str) -> Option<Accel> {
    let mut lines = text.lines();
    if lines.next()? != key {
        return None;
    }
    match lines.next()? {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

fn write_cache(path: &Path, key: &str, accel: Accel) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Through a temporary file and a rename: concurrent runs never read half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, format!("{key}\n{}\n", accel.name())).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// `KILN_ACCEL`, when it names an accelerator.
pub fn forced_by_env() -> Option<Accel> {
    match std::env::var("KILN_ACCEL").as_deref() {
        Ok("tcg") => Some(Accel::Tcg),
        Ok("kvm") => Some(Accel::Kvm),
        _ => None,
    }
}

/// Chooses the accelerator for images with the kernel at `kernel` (an ELF), probing (and
/// caching) when needed.
pub fn choose(qemu: &Path, kiln_dir: &Path, kernel: &Path) -> AccelChoice {
    if let Some(a) = forced_by_env() {
        return AccelChoice::fixed(a, true);
    }
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        return AccelChoice::fixed(Accel::Tcg, false);
    }
    let Ok(kernel_bytes) = std::fs::read(kernel) else {
        return AccelChoice::fixed(Accel::Tcg, false);
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let qemu_id = std::fs::metadata(qemu)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            format!("{}-{}.{}", m.len(), m.mtime(), m.mtime_nsec())
        })
        .unwrap_or_default();
    let key = cache_key(&boot_id, &qemu_id, &crate::image::sha256_hex(&kernel_bytes));
    let cache = kiln_dir.join("kvm-probe");
    let choice = |accel| AccelChoice {
        accel,
        forced: false,
        cache: Some((cache.clone(), key.clone())),
    };
    if let Some(a) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|t| parse_cache(&t, &key))
    {
        return choice(a);
    }
    let verdict = probe(qemu, &kernel_bytes);
    if super::signals::received().is_some() {
        // Stopped during the probe: no answer to cache; the run that follows stops at once.
        return choice(Accel::Tcg);
    }
    let accel = match verdict {
        Ok(()) => Accel::Kvm,
        Err(why) => {
            crate::note!(
                "KVM cannot run Kiln's kernel on this host ({why}); using TCG (KILN_ACCEL=tcg skips this check)"
            );
            Accel::Tcg
        }
    };
    write_cache(&cache, &key, accel);
    choice(accel)
}

/// Boots the probe image (the kernel in `kernel` with the probe program) under KVM: `Ok`
/// when the probe's line arrives and it exits 0, otherwise why not.
pub fn probe(qemu: &Path, kernel: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let image = dir.path().join("kvm-probe.elf");
    let bytes = super::probe::image(kernel).map_err(|e| e.to_string())?;
    std::fs::write(&image, bytes).map_err(|e| format!("could not write the probe: {e}"))?;
    let opts = RunOptions {
        machine: Machine::Microvm,
        memory_mib: Some(32),
        net: NetOptions {
            backend: NetBackend::None,
            ..Default::default()
        },
        ..Default::default()
    };
    let attempt = super::run_once(
        qemu,
        Accel::Kvm,
        &image,
        &opts,
        Some(PROBE_TIMEOUT),
        ProgramOutput::Collect,
    )
    .map_err(|e| e.to_string())?;
    let r = match attempt {
        super::Attempt::Done(r) => r,
        super::Attempt::AccelFailed { reason, .. } => return Err(reason),
    };
    judge(r.outcome.status, r.outcome.reason.as_deref(), &r.stdout)
}

/// The probe's verdict from its status, the runner's reason and its stdout.
pub fn judge(status: u8, reason: Option<&str>, stdout: &[u8]) -> Result<(), String> {
    if status == 0 && stdout == super::probe::PROBE_LINE.as_bytes() {
        return Ok(());
    }
    Err(match reason {
        Some(r) => r.strip_prefix("kiln: ").unwrap_or(r).to_string(),
        None if status == 0 => "the probe program did not print its line".into(),
        None => format!("the probe program exited with status {status}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_per_boot_qemu_and_kernel() {
        let key = cache_key("abc", "123-4.5", "0123456789abcdef0123");
        assert_eq!(key, "boot=abc qemu=123-4.5 kernel=0123456789abcdef");
        assert_eq!(
            parse_cache(&format!("{key}\nkvm\n"), &key),
            Some(Accel::Kvm)
        );
        assert_eq!(
            parse_cache(&format!("{key}\ntcg\n"), &key),
            Some(Accel::Tcg)
        );
        let other_kernel = cache_key("abc", "123-4.5", "ffff");
        assert_eq!(parse_cache(&format!("{key}\nkvm\n"), &other_kernel), None);
        let other_qemu = cache_key("abc", "999-4.5", "0123456789abcdef");
        assert_eq!(parse_cache(&format!("{key}\nkvm\n"), &other_qemu), None);
        assert_eq!(parse_cache(&format!("{key}\nmaybe\n"), &key), None);
        assert_eq!(parse_cache("", &key), None);
        // The format of earlier versions (boot id alone) is not trusted.
        assert_eq!(parse_cache("abc\nkvm\n", &key), None);
    }

    #[test]
    fn marking_kvm_unusable_updates_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvm-probe");
        let c = AccelChoice {
            accel: Accel::Kvm,
            forced: false,
            cache: Some((path.clone(), "k".into())),
        };
        write_cache(&path, "k", Accel::Kvm);
        c.mark_kvm_unusable();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse_cache(&text, "k"), Some(Accel::Tcg));
    }

    #[test]
    fn the_probe_passes_only_on_its_line_and_status() {
        let line = super::super::probe::PROBE_LINE.as_bytes();
        assert_eq!(judge(0, None, line), Ok(()));
        assert!(judge(1, None, line).unwrap_err().contains("status 1"));
        assert!(judge(0, None, b"").unwrap_err().contains("did not print"));
        let e = judge(
            125,
            Some("kiln: KVM internal error (emulation failure)"),
            b"",
        )
        .unwrap_err();
        assert_eq!(e, "KVM internal error (emulation failure)");
    }
}
