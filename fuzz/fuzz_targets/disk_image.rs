//! The disk-image recognisers: `run --image` (`disk::detect_bytes`) and `inspect`
//! (`inspect::detect`, then the payload scanner and the provenance reader).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let tail = &data[data.len().saturating_sub(512)..];
    let _ = kiln_toolchain::disk::detect_bytes(&data[..data.len().min(1024)], tail);
    let _ = kiln_toolchain::inspect::detect(&data[..data.len().min(64)], tail);
    if let Ok(Some(image)) =
        kiln_toolchain::inspect::scan(&mut Cursor::new(data), data.len() as u64)
    {
        assert!(image.starts_with(b"\x7fELF"));
        let _ = kiln_toolchain::provenance::read(&image);
    }
    let _ = kiln_toolchain::provenance::read(data);
});
