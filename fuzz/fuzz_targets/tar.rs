//! The kernel's root-filesystem reader (`os::fs::tar`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = kiln_os::fs::tar::parse(data) {
        for e in entries {
            assert!(e.path.starts_with('/'), "{:?}", e.path);
            assert!(!e.path.split('/').any(|c| c == "." || c == ".."));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let n = kiln_os::fs::tar::normalise(s);
        assert_eq!(
            kiln_os::fs::tar::normalise(&n),
            n,
            "normalise is idempotent"
        );
    }
});
