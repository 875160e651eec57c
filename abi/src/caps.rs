//! What a kernel can do that older kernels could not, so that the runner asks for it only of
//! images whose kernel has it (an image built by an older Kiln, pulled from a registry,
//! stops at boot on a command-line value it does not know).
//!
//! The kernel carries one record, [`MAGIC`] followed by capability names separated by `;`
//! and ended by a NUL byte, in its read-only data; the runner finds it in the image's bytes
//! ([`find`]).

/// Starts the record.
pub const MAGIC: &[u8] = b"KILN-CAPS:";

/// The program's standard output and error may go to ports of a virtio console
/// (`kiln.stdout=virtio:1`, `kiln.stderr=virtio:2`).
pub const VIRTIO_PORTS: &str = "virtio-ports";

/// The program's standard input may come over a port of the virtio console
/// (`kiln.stdin=virtio:3`).
pub const VIRTIO_STDIN: &str = "virtio-stdin";

/// The capabilities an image's kernel declares (none for a kernel older than this record).
pub fn find(image: &[u8]) -> impl Iterator<Item = &str> {
    let record = image
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .map(|at| &image[at + MAGIC.len()..])
        .and_then(|rest| rest.split(|&b| b == 0).next())
        .filter(|r| r.len() <= 256)
        .and_then(|r| core::str::from_utf8(r).ok())
        .unwrap_or("");
    record.split(';').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn finds_the_record_in_an_image() {
        let mut image = b"\x7fELF....".to_vec();
        image.extend_from_slice(b"KILN-CAPS:virtio-ports;other\0more bytes");
        let caps: Vec<&str> = find(&image).collect();
        assert_eq!(caps, [VIRTIO_PORTS, "other"]);
        assert_eq!(find(b"an older kernel").count(), 0);
        assert_eq!(find(b"KILN-CAPS:\xff\xfe\0").count(), 0, "not text");
    }
}
