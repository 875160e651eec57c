//! Debugging a running or finished image from the host: crash reports ([`crash`]), `run --gdb`
//! ([`gdb`]) and `run --pcap` (QEMU's `filter-dump`, set up in [`crate::qemu::args`]).

pub mod crash;
pub mod gdb;

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

/// Explains the kernel's records of a run of the image at `image`: for a crash, the report
/// of [`crash::report`], as lines.
pub fn explain_records(image: &Path, records: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    for record in kiln_abi::record::parse_all(records) {
        let kiln_abi::record::Record::Crash(c) = record;
        let text = match pvh_image(image) {
            Ok(bytes) => match program_in_image(&bytes) {
                Ok(program) => crash::report(program, &c),
                Err(_) => crash::report(&[], &c),
            },
            Err(_) => crash::report(&[], &c),
        };
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}
