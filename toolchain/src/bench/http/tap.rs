//! The host side of the benchmark network: one tap device with the host's address, and a
//! permanent neighbour entry for the guest (QEMU gives a VM's only network card the MAC
//! address 52:54:00:12:34:56), so the first probe after the guest comes up is not held back
//! by ARP's one-second retries. Traffic stays on this machine. Needs root.

use anyhow::{bail, Context};
use std::process::{Command, Stdio};

/// The MAC address QEMU gives the first network card of a VM that names none.
pub const QEMU_DEFAULT_MAC: &str = "52:54:00:12:34:56";

/// Addresses of the benchmark network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Device name (at most 15 bytes).
    pub name: String,
    /// The host's address on it.
    pub host: [u8; 4],
    /// The guest's address.
    pub guest: [u8; 4],
    /// Prefix length.
    pub prefix: u8,
}

/// Dotted quad.
pub fn quad(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

impl TapConfig {
    /// The `ip` commands that set the device up (after creating it when `create`).
    pub fn setup_commands(&self, create: bool) -> Vec<Vec<String>> {
        let n = self.name.clone();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut c = Vec::new();
        if create {
            c.push(v(&["tuntap", "add", "dev", &n, "mode", "tap"]));
        }
        c.push(v(&[
            "addr",
            "replace",
            &format!("{}/{}", quad(self.host), self.prefix),
            "dev",
            &n,
        ]));
        c.push(v(&["link", "set", "dev", &n, "up"]));
        c.push(v(&[
            "neigh",
            "replace",
            &quad(self.guest),
            "lladdr",
            QEMU_DEFAULT_MAC,
            "dev",
            &n,
            "nud",
            "permanent",
        ]));
        c
    }
}

/// A tap device set up for the benchmark; removed on drop when we created it.
#[derive(Debug)]
pub struct Tap {
    /// Its configuration.
    pub config: TapConfig,
    created: bool,
}

fn ip(args: &[String]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("could not run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates (if missing) and configures the tap device.
pub fn setup(config: TapConfig) -> anyhow::Result<Tap> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "the benchmark needs root to create the tap device {} (ip tuntap add)",
            config.name
        );
    }
    let exists = std::path::Path::new("/sys/class/net")
        .join(&config.name)
        .exists();
    for c in config.setup_commands(!exists) {
        crate::note!("running: ip {}", c.join(" "));
        ip(&c)?;
    }
    if !exists {
        if let Ok(mut c) = CREATED.lock() {
            *c = Some(config.name.clone());
        }
    }
    Ok(Tap {
        config,
        created: !exists,
    })
}

/// The tap device this process created, to delete when it is stopped by a signal (drop
/// handlers do not run then).
static CREATED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Deletes the tap device this process created, if any (after a stop signal).
pub fn cleanup_after_signal() {
    if let Some(name) = CREATED.lock().ok().and_then(|mut c| c.take()) {
        let _ = ip(&["link".into(), "del".into(), "dev".into(), name]);
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if self.created {
            if let Ok(mut c) = CREATED.lock() {
                c.take();
            }
            crate::note!("running: ip link del dev {}", self.config.name);
            let _ = ip(&[
                "link".into(),
                "del".into(),
                "dev".into(),
                self.config.name.clone(),
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let c = TapConfig {
            name: "kilnbench0".into(),
            host: [10, 77, 77, 1],
            guest: [10, 77, 77, 2],
            prefix: 24,
        };
        let s: Vec<String> = c.setup_commands(true).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            s,
            [
                "tuntap add dev kilnbench0 mode tap",
                "addr replace 10.77.77.1/24 dev kilnbench0",
                "link set dev kilnbench0 up",
                "neigh replace 10.77.77.2 lladdr 52:54:00:12:34:56 dev kilnbench0 nud permanent"
            ]
        );
        assert_eq!(c.setup_commands(false).len(), 3);
    }
}
