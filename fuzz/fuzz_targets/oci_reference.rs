//! OCI references: `REGISTRY/REPOSITORY:TAG` (`publish`), and also `@sha256:DIGEST`
//! (`pull`, `run REF`).
#![no_main]

use kiln_toolchain::oci::reference::{ImageRef, PullRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageRef::parse(s) {
        assert_eq!(r.to_string(), s);
        assert_eq!(ImageRef::parse(&r.to_string()).as_ref(), Ok(&r));
        let _ = r.host();
        let _ = r.is_loopback();
        let _ = r.pinned("sha256:00");
    }
    if let Ok(r) = PullRef::parse(s) {
        assert_eq!(r.to_string(), s);
        assert!(r.tag.is_some() || r.digest.is_some());
        let _ = r.is_loopback();
    }
});
