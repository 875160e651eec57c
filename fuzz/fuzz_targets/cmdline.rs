//! The kernel command line (`abi::cmdline`): the baked-in configuration and QEMU's
//! `-append`. Two directions: any text either fails to parse or round-trips through
//! `to_cmdline`, and any configuration the toolchain can build (the same bytes read as one)
//! reads back unchanged.
#![no_main]

use kiln_abi::cmdline::{self, Config, Sink};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn sink(u: &mut Unstructured) -> Result<Option<Sink>> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => None,
        1 => Some(Sink::Serial),
        2 => Some(Sink::Off),
        _ => Some(Sink::Port(u.arbitrary()?)),
    })
}

/// A configuration as the toolchain builds one (`other` only ever comes from parsing).
fn built(data: &[u8]) -> Result<Config> {
    let mut u = Unstructured::new(data);
    let mut c = Config {
        name: u.arbitrary()?,
        argv: u.arbitrary()?,
        stdout: sink(&mut u)?,
        stderr: sink(&mut u)?,
        log: sink(&mut u)?,
        status: sink(&mut u)?,
        verbose: u.arbitrary()?,
        trace: u.arbitrary()?,
        ..Config::default()
    };
    if u.arbitrary()? {
        c.net.ip = Some((u.arbitrary()?, u.int_in_range(0..=32)?));
    }
    c.net.gateway = u.arbitrary()?;
    c.net.dns = u.arbitrary()?;
    let env: Vec<(Vec<u8>, Vec<u8>)> = u.arbitrary()?;
    for (k, v) in env {
        if !k.is_empty() {
            c.set_env(k, v);
        }
    }
    Ok(c)
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        cmdline::decode(&cmdline::encode(data)).as_deref(),
        Some(data)
    );
    if let Ok(c) = built(data) {
        let line = c.to_cmdline();
        assert_eq!(Config::parse(&line).as_ref(), Ok(&c), "{line:?}");
    }
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
