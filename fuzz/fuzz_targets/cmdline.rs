//! The kernel command line (`abi::cmdline`): the baked-in configuration and QEMU's
//! `-append`. What parses must survive a round trip through `to_cmdline`.
#![no_main]

use kiln_abi::cmdline::{self, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        cmdline::decode(&cmdline::encode(data)).as_deref(),
        Some(data)
    );
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = cmdline::decode(s);
    let _ = cmdline::parse_ipv4_cidr(s);
    if let Ok(c) = Config::parse(s) {
        let again = Config::parse(&c.to_cmdline());
        assert_eq!(again.as_ref(), Ok(&c), "round trip of {s:?}");
        let merged = Config::default().overridden_by(c.clone());
        assert_eq!(merged.to_cmdline(), c.to_cmdline());
    }
});
