//! Forwarded host ports, claimed for an instance's life: one file per port under
//! `STATE/ports/`, created and released under a lock, so two instances never get the same
//! port; a claim whose instance is gone, exited or dead is free again.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One forwarded port: `-p HOST:GUEST[/udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The port on every host address.
    pub host: u16,
    /// The port in the guest.
    pub guest: u16,
    /// UDP rather than TCP.
    pub udp: bool,
}

impl Port {
    /// `tcp` or `udp`.
    pub fn proto(&self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }
}

impl std::fmt::Display for Port {
    /// Docker's form: `0.0.0.0:8080->8080/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0.0.0.0:{}->{}/{}", self.host, self.guest, self.proto())
    }
}

fn claim_file(dir: &Path, p: &Port) -> PathBuf {
    dir.join(format!("{}-{}", p.proto(), p.host))
}

/// Holds the ports lock while alive.
struct Locked(std::fs::File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn lock(dir: &Path) -> anyhow::Result<Locked> {
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    f.lock()?;
    Ok(Locked(f))
}

/// Whether the host lets us bind the port now (QEMU will, a moment later).
fn bindable(p: &Port) -> bool {
    if p.udp {
        std::net::UdpSocket::bind(("0.0.0.0", p.host)).is_ok()
    } else {
        std::net::TcpListener::bind(("0.0.0.0", p.host)).is_ok()
    }
}

/// Claims `ports` in `dir` for instance `id` named `name`. `holds(id, name)` says whether
/// an existing claim's instance still holds its ports. All or nothing: on an error no
/// port stays claimed.
pub fn claim(
    dir: &Path,
    id: &str,
    name: &str,
    ports: &[Port],
    holds: impl Fn(&str, &str) -> bool,
) -> anyhow::Result<()> {
    let _lock = lock(dir)?;
    let mut taken = Vec::new();
    let result = (|| {
        for p in ports {
            let file = claim_file(dir, p);
            if let Ok(text) = std::fs::read_to_string(&file) {
                let (owner_id, owner) = text.trim().split_once(' ').unwrap_or(("", ""));
                if owner_id != id && holds(owner_id, owner) {
                    anyhow::bail!(
                        "Bind for 0.0.0.0:{} failed: port is already allocated (by instance {owner})",
                        p.host
                    );
                }
            }
            if !bindable(p) {
                anyhow::bail!(
                    "Bind for 0.0.0.0:{} failed: port is already in use on this host",
                    p.host
                );
            }
            std::fs::write(&file, format!("{id} {name}\n"))?;
            taken.push(file);
        }
        Ok(())
    })();
    if result.is_err() {
        for f in taken {
            let _ = std::fs::remove_file(f);
        }
    }
    result
}

/// Releases every port instance `id` holds.
pub fn release(dir: &Path, id: &str) {
    let Ok(_lock) = lock(dir) else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let owned = std::fs::read_to_string(e.path())
            .is_ok_and(|t| t.split_whitespace().next() == Some(id));
        if owned {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nobody had a moment ago.
    fn unused() -> u16 {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn claims_are_exclusive_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = Port {
            host: unused(),
            guest: 80,
            udp: false,
        };
        assert_eq!(p.to_string(), format!("0.0.0.0:{}->80/tcp", p.host));
        claim(dir.path(), "a", "web", &[p], |_, _| true).unwrap();
        let e = claim(dir.path(), "b", "web2", &[p], |_, _| true).unwrap_err();
        assert!(
            e.to_string()
                .contains("already allocated (by instance web)"),
            "{e}"
        );
        // The same port over UDP is another port.
        claim(
            dir.path(),
            "b",
            "web2",
            &[Port { udp: true, ..p }],
            |_, _| true,
        )
        .unwrap();
        // A claim whose instance has gone is free.
        claim(dir.path(), "c", "web3", &[p], |id, _| id != "a").unwrap();
        release(dir.path(), "c");
        claim(dir.path(), "d", "web4", &[p], |_, _| true).unwrap();
        // All or nothing.
        let q = Port {
            host: unused(),
            ..p
        };
        assert!(claim(dir.path(), "e", "web5", &[q, p], |_, _| true).is_err());
        claim(dir.path(), "f", "web6", &[q], |_, _| true).unwrap();
        // A port some other program holds.
        let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let b = Port {
            host: busy.local_addr().unwrap().port(),
            ..p
        };
        let e = claim(dir.path(), "g", "web7", &[b], |_, _| true).unwrap_err();
        assert!(e.to_string().contains("in use on this host"), "{e}");
    }
}
