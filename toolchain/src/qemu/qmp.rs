//! QEMU's machine protocol (QMP), for the one request a run makes of a running QEMU:
//! pressing the virtual power button (`system_powerdown`), which is how the runner asks
//! the guest to stop gracefully (the kernel turns it into SIGTERM for the program).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The `-qmp` arguments for a socket at `path` that QEMU serves without waiting for us.
pub fn args(path: &Path) -> [String; 2] {
    [
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", super::args::qemu_escape(path)),
    ]
}

/// Presses the power button of the QEMU serving QMP at `path`.
pub fn system_powerdown(path: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    // The greeting, then one answer per command.
    reader.read_line(&mut line)?;
    for cmd in ["qmp_capabilities", "system_powerdown"] {
        writeln!(writer, "{{\"execute\":\"{cmd}\"}}")?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            // Events may come first; the answer has "return" or "error".
            if line.contains("\"return\"") {
                break;
            }
            if line.contains("\"error\"") {
                return Err(std::io::Error::other(line.trim().to_string()));
            }
        }
    }
    Ok(())
}
