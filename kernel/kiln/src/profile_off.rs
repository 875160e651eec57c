//! The sampling profiler in a kernel built without it (the `profile` feature off): the
//! stack walker and its call-frame parser (gimli) are left out, and `kiln.profile=HZ` is
//! refused at boot with the fix. The toolchain builds the profiler in only for images that
//! ask for it (`run --profile`, `build-image --with-profiler`).

use kiln_abi::record::Place;

use crate::Kernel;

/// Refuses a sampling rate: this kernel cannot sample.
pub fn start(hz: Option<u32>, _program: &'static [u8], _bias: u64) -> Result<(), &'static str> {
    match hz {
        Some(h) if h > 0 => Err("kiln.profile: this kernel was built without the profiler; build the image with `build-image --with-profiler` (run --profile with a program to build does)"),
        _ => Ok(()),
    }
}

/// When the next sample is due: never.
pub fn deadline() -> Option<u64> {
    None
}

/// Whether a sample is due: never.
pub fn due() -> bool {
    false
}

/// Never called ([`due`] is never true).
pub fn sample(_k: &mut Kernel, _place: Place, _rip: u64, _rsp: u64, _rbp: u64) {}

/// Never called ([`due`] is never true).
pub fn sample_idle() {}

/// Nothing to send.
pub fn finish() {}

/// No profiler: nothing to switch.
pub fn exec(_program: &'static [u8], _bias: u64) {}
