//! The Debian packages the test suite uses, and installing the missing ones in one step.
//!
//! `cargo xtask test` must pass on a fresh machine with nothing but Rust: it installs (as
//! root) every package a test reaches for, in one `apt-get install --no-install-recommends`
//! call that it announces first; without root it prints that command and stops.

use anyhow::bail;
use std::path::Path;
use std::process::{Command, Stdio};

/// A Debian package and how to tell that it is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// The package's name.
    pub name: &'static str,
    /// A program in `PATH` (no slash) or a file (absolute path) the package provides.
    pub provides: &'static str,
    /// What uses it.
    pub why: &'static str,
}

/// Everything the suite uses.
pub const SUITE: &[Package] = &[
    Package {
        name: "qemu-system-x86",
        provides: "qemu-system-x86_64",
        why: "boots every image",
    },
    Package {
        name: "qemu-utils",
        provides: "qemu-img",
        why: "qcow2 and vmdk images",
    },
    Package {
        name: "ovmf",
        provides: "/usr/share/OVMF/OVMF_CODE.fd",
        why: "UEFI boots of disk images",
    },
    Package {
        name: "gcc",
        provides: "gcc",
        why: "the C examples and test programs",
    },
    Package {
        name: "libc6-dev",
        provides: "/usr/lib/x86_64-linux-gnu/libc.a",
        why: "static C programs",
    },
    Package {
        name: "busybox-static",
        provides: "/bin/busybox",
        why: "third-party program tests",
    },
    Package {
        name: "sqlite3",
        provides: "sqlite3",
        why: "the volume tests check a database written in the guest",
    },
    Package {
        name: "perl-base",
        provides: "perl",
        why: "third-party program tests (Debian's perl)",
    },
    Package {
        name: "jq",
        provides: "jq",
        why: "third-party program tests (Debian's jq)",
    },
    Package {
        name: "openssl",
        provides: "openssl",
        why: "third-party program tests (Debian's openssl)",
    },
    Package {
        name: "bash-static",
        provides: "/bin/bash-static",
        why: "third-party program tests",
    },
    Package {
        name: "zsh-static",
        provides: "/bin/zsh-static",
        why: "third-party program tests",
    },
    Package {
        name: "curl",
        provides: "curl",
        why: "HTTP clients in the network tests",
    },
    Package {
        name: "wrk",
        provides: "wrk",
        why: "load in the network tests and benchmarks",
    },
    Package {
        name: "docker-registry",
        provides: "docker-registry",
        why: "a real OCI registry for publish and pull",
    },
    Package {
        name: "skopeo",
        provides: "skopeo",
        why: "an independent OCI client for publish",
    },
    Package {
        name: "apache2-utils",
        provides: "htpasswd",
        why: "registry authentication tests",
    },
    Package {
        name: "nginx-light",
        provides: "/usr/sbin/nginx",
        why: "a dynamically linked Debian server, booted unmodified",
    },
    Package {
        name: "redis-server",
        provides: "/usr/bin/redis-server",
        why: "a dynamically linked Debian server, booted unmodified",
    },
    Package {
        name: "prometheus-node-exporter",
        provides: "/usr/bin/prometheus-node-exporter",
        why: "a Go program from Debian that reads /proc, booted unmodified",
    },
    Package {
        name: "redis-tools",
        provides: "/usr/bin/redis-cli",
        why: "the client of the redis test, and redis-benchmark for bench redis",
    },
    Package {
        name: "golang-go",
        provides: "/usr/bin/go",
        why: "Go examples (examples/go-http), built static",
    },
    Package {
        name: "python3",
        provides: "/usr/bin/python3",
        why: "Debian's dynamically linked interpreter, with extension modules loaded by dlopen",
    },
    Package {
        name: "procps",
        provides: "/usr/bin/ps",
        why: "ps and free read the kernel's /proc",
    },
    Package {
        name: "iproute2",
        provides: "/usr/bin/ip",
        why: "ip addr and ip route ask the kernel over netlink",
    },
    Package {
        name: "iputils-ping",
        provides: "/usr/bin/ping",
        why: "ping over the kernel's ICMP echo sockets",
    },
    Package {
        name: "iperf3",
        provides: "iperf3",
        why: "Debian's iperf3 in a guest: UDP sockets sharing a port",
    },
    Package {
        name: "gdb",
        provides: "gdb",
        why: "run --gdb and core files, checked with a real debugger",
    },
    Package {
        name: "tcpdump",
        provides: "tcpdump",
        why: "run --pcap, read back with tcpdump",
    },
];

/// Whether `p` is installed.
pub fn present(p: &Package) -> bool {
    if p.provides.starts_with('/') {
        Path::new(p.provides).exists()
    } else {
        crate::qemu::install::which(p.provides).is_some()
    }
}

/// The packages of `list` that are missing.
pub fn missing(list: &[Package]) -> Vec<Package> {
    list.iter().filter(|p| !present(p)).copied().collect()
}

/// The one command that installs `packages`.
pub fn install_command(packages: &[Package]) -> String {
    let names: Vec<&str> = packages.iter().map(|p| p.name).collect();
    format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        names.join(" ")
    )
}

/// Installs what of `list` is missing, in one apt-get call (as root); without root, fails
/// with the command to run.
pub fn ensure(list: &[Package]) -> anyhow::Result<()> {
    let need = missing(list);
    if need.is_empty() {
        return Ok(());
    }
    let command = install_command(&need);
    if !rustix::process::geteuid().is_root() {
        bail!(
            "the tests need Debian packages that are missing; install them with:\n  sudo sh -c '{command}'"
        );
    }
    crate::note!("installing what the tests use: {command}");
    let status = Command::new("sh")
        .args(["-c", &command])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(crate::app::stderr_stdio())
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => bail!("installing the test packages failed; run `{command}` yourself and try again"),
    }
    let still = missing(list);
    if !still.is_empty() {
        let names: Vec<&str> = still.iter().map(|p| p.provides).collect();
        bail!("still missing after the install: {}", names.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_installs_without_recommends() {
        let c = install_command(&SUITE[..2]);
        assert_eq!(
            c,
            "apt-get update && apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils"
        );
    }

    #[test]
    fn presence_checks() {
        let sh = Package {
            name: "x",
            provides: "sh",
            why: "",
        };
        let root = Package {
            name: "x",
            provides: "/",
            why: "",
        };
        let none = Package {
            name: "x",
            provides: "/no/such/file",
            why: "",
        };
        assert!(present(&sh) && present(&root) && !present(&none));
        assert_eq!(missing(&[sh, none]), vec![none]);
        for needed in ["gdb", "tcpdump", "qemu-system-x86", "busybox-static"] {
            assert!(SUITE.iter().any(|p| p.name == needed), "{needed}");
        }
        let mut names: Vec<&str> = SUITE.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SUITE.len(), "no package twice");
    }
}
