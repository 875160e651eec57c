//! Host directories in a kernel built without them (the `volumes` feature off): the
//! virtio-9p driver and the 9P client are left out, and `kiln.volume` is refused at boot
//! with the fix. The toolchain builds volumes in only for images that ask for them (`run -v`,
//! `build-image --with-volumes`).

use kiln_abi::cmdline::Config;
use kiln_os::fs::Vfs;

/// Refuses the volumes of `config`, if it has any: this kernel cannot mount them.
pub fn start(
    config: &Config,
    _acpi: &[super::acpi::Transport],
    _vfs: &mut Vfs,
) -> Result<(), alloc::string::String> {
    match config.volumes.first() {
        None => Ok(()),
        Some(v) => Err(alloc::format!(
            "volume {}: this kernel was built without volumes; build the image with `build-image --with-volumes` (run -v with a program to build does)",
            v.path
        )),
    }
}
