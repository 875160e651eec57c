//! Debugging a running or finished image from the host: crash reports ([`crash`]), core
//! files ([`coredump`]), `run --gdb`
//! ([`gdb`]) and `run --pcap` (QEMU's `filter-dump`, set up in [`crate::qemu::args`]).

pub mod coredump;
pub mod crash;
pub mod gdb;
pub mod profile;

use anyhow::anyhow;
use std::path::Path;

/// The PVH image of `path`: the file itself, or the one inside a disk image.
pub fn pvh_image(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    if bytes.starts_with(b"\x7fELF") {
        Ok(bytes)
    } else {
        crate::inspect::scan_file(path)
    }
}

/// The program ELF in a PVH image's payload.
pub fn program_in_image(image: &[u8]) -> anyhow::Result<&[u8]> {
    let span = crate::provenance::find_payload(image)?;
    let range = span.offset + span.header.program.start..span.offset + span.header.program.end;
    image
        .get(range)
        .ok_or_else(|| anyhow!("the image's program lies outside the file"))
}

/// The bytes of the regular file at `path` in a PVH image's root filesystem (following
/// hard links); `None` when the archive has no such file.
pub fn file_in_image(image: &[u8], path: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let span = crate::provenance::find_payload(image)?;
    let range = span.offset + span.header.rootfs.start..span.offset + span.header.rootfs.end;
    let tar = image
        .get(range)
        .ok_or_else(|| anyhow!("the image's root filesystem lies outside the file"))?;
    file_in_tar(tar, path)
}

/// The bytes of the regular file at `path` in the tar archive `tar` (following hard links).
fn file_in_tar(tar: &[u8], path: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut want = path.trim_start_matches('/').to_string();
    // A hard link names an earlier entry: look again for that one (a few levels at most).
    for _ in 0..4 {
        let mut target = None;
        for entry in tar::Archive::new(tar).entries()? {
            let mut entry = entry?;
            let name = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if name != want {
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_hard_link() {
                target = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
                break;
            }
            if !kind.is_file() {
                return Ok(None);
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(Some(bytes));
        }
        match target {
            Some(t) => {
                want = t
                    .trim_start_matches("./")
                    .trim_start_matches('/')
                    .to_string()
            }
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// The path the image's own program runs at (its baked `kiln.name`).
fn program_path(image: &[u8]) -> Option<String> {
    let span = crate::provenance::find_payload(image).ok()?;
    let c = &span.header.config;
    let bytes = image.get(span.offset + c.start..span.offset + c.end)?;
    let config = kiln_abi::cmdline::Config::parse(std::str::from_utf8(bytes).ok()?).ok()?;
    String::from_utf8(config.name?).ok()
}

/// The program a crash happened in, and its path: the file the last `execve` before the
/// crash ran (an [`kiln_abi::record::Exec`] record), or the image's own program.
fn crashed_program<'a>(
    image: &'a [u8],
    exec: Option<&[u8]>,
) -> anyhow::Result<(std::borrow::Cow<'a, [u8]>, String)> {
    let own_path = program_path(image).unwrap_or_else(|| "/bin/program".into());
    if let Some(path) = exec.map(String::from_utf8_lossy) {
        // The image's own program is not in the archive (the kernel places it itself).
        if let Some(bytes) = file_in_image(image, &path)? {
            return Ok((bytes.into(), path.into_owned()));
        }
    }
    Ok((program_in_image(image)?.into(), own_path))
}

/// `kernel` (a kernel ELF from the build tree) when it is the kernel the PVH image `image`
/// was linked with (its provenance records the kernel's SHA-256).
pub fn kernel_of_image(image: &[u8], kernel: &Path) -> Option<std::path::PathBuf> {
    let recorded = crate::provenance::read(image)
        .ok()
        .map(|(p, _)| p.kernel.elf_sha256)?;
    // The other variants (without the network stack, without the profiler) sit in their own
    // target directories under the default build's `target/` (see `Layout::kernel_elf_for`).
    let mut candidates = vec![kernel.to_path_buf()];
    if let Some(target) = kernel.ancestors().nth(3) {
        let inner = kernel.strip_prefix(target).unwrap_or(kernel);
        let kernel_dir = target.parent().unwrap_or(target);
        for v in crate::link::KernelVariant::all() {
            candidates.push(kernel_dir.join(v.target_dir()).join(inner));
        }
    }
    candidates
        .into_iter()
        .find(|k| std::fs::read(k).is_ok_and(|bytes| crate::image::sha256_hex(&bytes) == recorded))
}

/// Explains the kernel's records of a run of the image at `image`: for a crash, the report
/// of [`crash::report`]; for a kernel panic, the kernel's backtrace, symbolized from
/// `kernel` (the build tree's kernel ELF) when the image was linked with it. As lines.
pub fn explain_records(image: &Path, kernel: &Path, records: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut exec: Option<Vec<u8>> = None;
    for record in kiln_abi::record::parse_all(records) {
        if let kiln_abi::record::Record::Exec(e) = &record {
            exec = Some(e.path.clone());
            continue;
        }
        if let kiln_abi::record::Record::KernelPanic(k) = &record {
            let elf = pvh_image(image)
                .ok()
                .and_then(|b| kernel_of_image(&b, kernel))
                .and_then(|p| std::fs::read(p).ok())
                .unwrap_or_default();
            lines.push("kernel backtrace:".to_string());
            let sym = crash::Symbolizer::new(&elf, 0);
            let mut n = 0;
            for pc in &k.frames {
                for f in sym.frames(*pc, true) {
                    lines.push(crash::frame_line(n, &f));
                    n += 1;
                }
            }
            if elf.is_empty() {
                lines.push(
                    "(the kernel this image was linked with is not in the build tree: addresses only)"
                        .to_string(),
                );
            }
            continue;
        }
        let kiln_abi::record::Record::Crash(c) = record else {
            continue;
        };
        let text = match pvh_image(image) {
            Ok(bytes) => match crashed_program(&bytes, exec.as_deref()) {
                Ok((program, _)) => crash::report(&program, &c),
                Err(_) => crash::report(&[], &c),
            },
            Err(_) => crash::report(&[], &c),
        };
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// Writes the core file of a crash of the image at `image` to `out` when the records hold a
/// crash and the program's memory, with the program beside it (`OUT.elf`) for gdb. Returns
/// the program's path, or `None` when the program died without a core.
pub fn write_core(
    image: &Path,
    records: &[u8],
    out: &Path,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    use kiln_abi::record::Record;
    let mut crash = None;
    let mut memory = None;
    let mut exec = None;
    for r in kiln_abi::record::parse_all(records) {
        match r {
            Record::Crash(c) => crash = Some(c),
            Record::Memory(m) => memory = Some(m),
            Record::Exec(e) if crash.is_none() => exec = Some(e.path),
            _ => {}
        }
    }
    let (Some(crash), Some(memory)) = (crash, memory) else {
        return Ok(None);
    };
    let bytes = pvh_image(image)?;
    let (program, path) = crashed_program(&bytes, exec.as_deref())?;
    let program = &program[..];
    let core = coredump::write(program, &path, &crash, &memory);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::image::write_atomically(out, &core)?;
    let mut exe = out.as_os_str().to_owned();
    exe.push(".elf");
    let exe = std::path::PathBuf::from(exe);
    crate::image::write_atomically(&exe, program)?;
    Ok(Some(exe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_the_root_filesystem_is_found_through_hard_links() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, link: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, name, data).unwrap();
        };
        add("./bin/busybox", tar::EntryType::Regular, "", b"BUSYBOX");
        add("./bin/sh", tar::EntryType::Link, "./bin/busybox", b"");
        add("./bin/dir", tar::EntryType::Directory, "", b"");
        let tar = b.into_inner().unwrap();
        assert_eq!(
            file_in_tar(&tar, "/bin/busybox").unwrap().unwrap(),
            b"BUSYBOX"
        );
        assert_eq!(file_in_tar(&tar, "/bin/sh").unwrap().unwrap(), b"BUSYBOX");
        assert_eq!(file_in_tar(&tar, "/bin/dir").unwrap(), None);
        assert_eq!(file_in_tar(&tar, "/bin/none").unwrap(), None);
    }
}
