//! The kernel command line: how configuration reaches one immutable image.
//!
//! The toolchain bakes a default configuration into the payload and the runner passes
//! run-time overrides on the kernel command line (`-append`). Both use the same
//! space-separated tokens:
//!
//! | token | meaning |
//! |---|---|
//! | `kiln.name=P` | the program's path, used as `argv[0]` and `AT_EXECFN` |
//! | `kiln.argv=A,B,...` | the arguments after `argv[0]`; `kiln.argv=` means none, and `""` is an empty argument |
//! | `kiln.env=K=V` | one environment variable (repeatable) |
//! | `kiln.stdout=S`, `kiln.stderr=S`, `kiln.log=S` | where each stream goes: `serial` (COM1), a raw byte port such as `0x402` (QEMU `isa-debugcon`), `virtio:N` (port N of the virtio console), or `off` |
//! | `kiln.core=BYTES` | on a core-dumping signal, send the program's memory (at most BYTES) as a [`crate::record::Memory`] record |
//! | `kiln.records=0x406` | a byte port for binary records ([`crate::record`]: crash state) |
//! | `kiln.control=0x2f8` | a 16550 UART at this port carries the control channel ([`crate::control`]) |
//! | `kiln.stdin=C` | what carries the program's standard input ([`crate::stdin`]): a 16550 UART at a port such as `0x3e8`, or `virtio:N` (port N of the virtio console); without it standard input is empty |
//! | `kiln.status=0x404` | a byte port that receives the final exit status (0-255) as one byte before the VM exits (QEMU's exit code holds only 7 bits of it) |
//! | `kiln.verbose` | kernel log at info level (default: warnings only) |
//! | `kiln.trace` | log every system call of the program |
//! | `kiln.profile=HZ` | send a [`crate::record::Sample`] of the running code HZ times a second |
//! | `kiln.memlog=SECS` | log the kernel's memory use every SECS seconds (`kiln.memlog`: every 10) |
//! | `kiln.ip=A.B.C.D/N` | static IPv4 address and prefix length (DHCP when absent) |
//! | `kiln.gw=A.B.C.D` | default gateway (with `kiln.ip`) |
//! | `kiln.dns=A.B.C.D` | a DNS server (repeatable); the kernel writes `/etc/resolv.conf` |
//! | `kiln.volume=TAG,PATH[,ro]` | mount the virtio-9p device with mount tag TAG at the absolute guest PATH, read-only with `ro` (repeatable) |
//!
//! Names, arguments and values are percent-encoded: every byte other than ASCII letters,
//! digits and `-._~/:@+` is written as `%XX`, so spaces, commas and `=` survive.
//! Other tokens (for example QEMU's `virtio_mmio.device=...`) are kept in
//! [`Config::other`] for the kernel's drivers.

use alloc::string::String;
use alloc::vec::Vec;

/// Where a byte stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The first 16550 UART (COM1, port 0x3f8).
    Serial,
    /// A write-only byte port (QEMU's `isa-debugcon`).
    Port(u16),
    /// A port of the virtio console (a multiport virtio-serial device), 1 to 30: a whole
    /// write per buffer, not a byte per port write. Where the kernel finds no such port,
    /// its bytes go to the serial console.
    Virtio(u32),
    /// Dropped.
    Off,
}

/// What carries the program's standard input (`kiln.stdin`, [`crate::stdin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputChannel {
    /// A 16550 UART at this I/O port: 16 bytes per interrupt.
    Uart(u16),
    /// A port of the virtio console (1 to 30): a chunk per buffer.
    Virtio(u32),
}

/// Network configuration given at run time: static address, gateway, DNS servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// Static IPv4 address and prefix length; DHCP when `None`.
    pub ip: Option<([u8; 4], u8)>,
    /// Default gateway.
    pub gateway: Option<[u8; 4]>,
    /// DNS servers, in order.
    pub dns: Vec<[u8; 4]>,
}

/// A host directory mounted in the guest (`kiln.volume`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The virtio-9p device's mount tag.
    pub tag: String,
    /// Absolute guest path of the mount point.
    pub path: String,
    /// Writes fail with `EROFS`.
    pub readonly: bool,
}

/// Parses a dotted-quad IPv4 address.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = u8::try_from(number(p, 10)?).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// An unsigned number in `radix`, as `u64::from_str_radix` reads it. Every number the
/// kernel parses from text goes through this one out-of-line function, then narrows with
/// `try_from`: `str::parse` and `from_str_radix` were inlined at each use, once per integer
/// type (about 2 KB of the kernel).
#[inline(never)]
pub fn number(s: &str, radix: u32) -> Option<u64> {
    u64::from_str_radix(s, radix).ok()
}

/// Parses `A.B.C.D/N` (`N` at most 32).
pub fn parse_ipv4_cidr(s: &str) -> Option<([u8; 4], u8)> {
    let (a, n) = s.split_once('/')?;
    let n = number(n, 10).filter(|&n| n <= 32)?;
    Some((parse_ipv4(a)?, n as u8))
}

fn ip_text(a: [u8; 4]) -> String {
    alloc::format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// A parsed command line. `None` and empty fields mean "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `argv[0]`: the program's path.
    pub name: Option<Vec<u8>>,
    /// The arguments after `argv[0]`, when given.
    pub argv: Option<Vec<Vec<u8>>>,
    /// Environment variables in order, as `(name, value)`.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where the program's standard output goes.
    pub stdout: Option<Sink>,
    /// Where the program's standard error goes.
    pub stderr: Option<Sink>,
    /// Where the kernel's own messages go.
    pub log: Option<Sink>,
    /// Where the final exit status is written as one byte.
    pub status: Option<Sink>,
    /// Where binary records ([`crate::record`]) go.
    pub records: Option<Sink>,
    /// The UART port of the control channel ([`crate::control`]), if any.
    pub control: Option<u16>,
    /// The standard-input channel ([`crate::stdin`]), if any.
    pub stdin: Option<InputChannel>,
    /// Send the program's memory for a core file when it dies of a core-dumping signal,
    /// at most this many bytes of it.
    pub core: Option<u64>,
    /// Log at info level.
    pub verbose: bool,
    /// Trace every system call.
    pub trace: bool,
    /// Log memory use at this interval (seconds).
    pub memlog: Option<u32>,
    /// `kiln.profile=HZ`: sample the running code this many times a second.
    pub profile: Option<u32>,
    /// Network settings.
    pub net: NetConfig,
    /// Host directories to mount, in order.
    pub volumes: Vec<Volume>,
    /// Tokens Kiln does not own, verbatim.
    pub other: Vec<String>,
}

/// The interval of a bare `kiln.memlog`, in seconds.
pub const DEFAULT_MEMLOG_SECS: u32 = 10;

/// The environment a program gets when its image and command line leave these out, as a
/// container runtime gives it: Docker's `PATH`, and `HOME` for root.
pub const DEFAULT_ENV: [&[u8]; 2] = [
    b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    b"HOME=/root",
];

/// Adds the [`DEFAULT_ENV`] variables `envp` (`NAME=value` entries) does not set.
pub fn add_default_env(envp: &mut Vec<Vec<u8>>) {
    for default in DEFAULT_ENV {
        let eq = default.iter().position(|&b| b == b'=').unwrap_or(0);
        let name = &default[..=eq];
        if !envp.iter().any(|kv| kv.starts_with(name)) {
            envp.push(default.to_vec());
        }
    }
}

/// Why a token could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The offending token.
    pub token: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ParseError {
    /// The error for `token`. Out of line and cold: the parser names it at a dozen checks,
    /// and each copy of the token's allocation would otherwise sit inline in the kernel.
    #[cold]
    #[inline(never)]
    fn new(token: &str, reason: &'static str) -> ParseError {
        ParseError {
            token: String::from(token),
            reason,
        }
    }
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "bad kernel command-line token `{}`: {}",
            self.token, self.reason
        )
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~/:@+".contains(&b)
}

/// Percent-encodes `bytes` for use in a token.
pub fn encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Decodes a percent-encoded string; `None` when a `%` is not followed by two hex digits.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The empty argument in `kiln.argv`. Percent-encoding writes it as nothing, which for a
/// single argument reads back as no arguments at all; `encode` never writes a raw `"`.
const EMPTY_ARG: &str = "\"\"";

fn encode_arg(a: &[u8]) -> String {
    if a.is_empty() {
        String::from(EMPTY_ARG)
    } else {
        encode(a)
    }
}

fn decode_arg(s: &str) -> Option<Vec<u8>> {
    if s == EMPTY_ARG {
        Some(Vec::new())
    } else {
        decode(s)
    }
}

fn sink_token(s: Sink) -> String {
    match s {
        Sink::Serial => String::from("serial"),
        Sink::Off => String::from("off"),
        Sink::Virtio(port) => alloc::format!("virtio:{port}"),
        Sink::Port(p) => alloc::format!("{p:#x}"),
    }
}

fn parse_sink(v: &str) -> Option<Sink> {
    match v {
        "serial" => Some(Sink::Serial),
        "off" => Some(Sink::Off),
        _ if v.starts_with("virtio:") => number(&v[7..], 10)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=30).contains(n))
            .map(Sink::Virtio),
        _ => {
            let hex = v.strip_prefix("0x")?;
            number(hex, 16)
                .and_then(|n| u16::try_from(n).ok())
                .map(Sink::Port)
        }
    }
}

impl Config {
    /// Parses a command line. Unknown tokens go to [`Config::other`].
    pub fn parse(cmdline: &str) -> Result<Config, ParseError> {
        let mut c = Config::default();
        for token in cmdline.split(' ').filter(|t| !t.is_empty()) {
            // Called only on failure (`ok_or_else`): an eager `ok_or(err(..))` built, and
            // dropped, the token's copy for every check that passed.
            let err = |reason| ParseError::new(token, reason);
            let bad_encoding = "bad percent-encoding";
            let (key, value) = match token.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (token, None),
            };
            match (key, value) {
                ("kiln.name", Some(v)) => {
                    c.name = Some(decode(v).ok_or_else(|| err(bad_encoding))?)
                }
                ("kiln.argv", Some(v)) => {
                    let mut args = Vec::new();
                    if !v.is_empty() {
                        for a in v.split(',') {
                            args.push(decode_arg(a).ok_or_else(|| err(bad_encoding))?);
                        }
                    }
                    c.argv = Some(args);
                }
                ("kiln.env", Some(v)) => {
                    let (k, val) = v
                        .split_once('=')
                        .ok_or_else(|| err("expected kiln.env=NAME=VALUE"))?;
                    let k = decode(k).ok_or_else(|| err(bad_encoding))?;
                    if k.is_empty() {
                        return Err(err("empty variable name"));
                    }
                    let val = decode(val).ok_or_else(|| err(bad_encoding))?;
                    c.set_env(k, val);
                }
                (
                    "kiln.stdout" | "kiln.stderr" | "kiln.log" | "kiln.status" | "kiln.records",
                    Some(v),
                ) => {
                    let sink = parse_sink(v)
                        .ok_or_else(|| err("expected serial, off or a port like 0x402"))?;
                    match key {
                        "kiln.stdout" => c.stdout = Some(sink),
                        "kiln.stderr" => c.stderr = Some(sink),
                        "kiln.status" => c.status = Some(sink),
                        "kiln.records" => c.records = Some(sink),
                        _ => c.log = Some(sink),
                    }
                }
                ("kiln.stdin", Some(v)) => {
                    c.stdin = Some(match parse_sink(v) {
                        Some(Sink::Port(p)) => InputChannel::Uart(p),
                        Some(Sink::Virtio(n)) => InputChannel::Virtio(n),
                        _ => {
                            return Err(err(
                                "expected a UART port like 0x3e8 or a virtio console port like virtio:3",
                            ))
                        }
                    });
                }
                ("kiln.control", Some(v)) => {
                    let port = v
                        .strip_prefix("0x")
                        .and_then(|h| u16::try_from(number(h, 16)?).ok())
                        .ok_or_else(|| err("expected a UART port like 0x2f8"))?;
                    c.control = Some(port);
                }
                ("kiln.core", Some(v)) => {
                    c.core = Some(number(v, 10).ok_or_else(|| err("expected a size in bytes"))?)
                }
                ("kiln.verbose", None) => c.verbose = true,
                ("kiln.trace", None) => c.trace = true,
                ("kiln.profile", Some(v)) => {
                    c.profile = Some(
                        number(v, 10)
                            .and_then(|hz| u32::try_from(hz).ok())
                            .filter(|hz| (1..=10_000).contains(hz))
                            .ok_or_else(|| err("expected samples per second, 1 to 10000"))?,
                    )
                }
                ("kiln.memlog", None) => c.memlog = Some(DEFAULT_MEMLOG_SECS),
                ("kiln.memlog", Some(v)) => {
                    c.memlog = Some(
                        number(v, 10)
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|&n| n > 0)
                            .ok_or_else(|| err("expected a number of seconds"))?,
                    )
                }
                ("kiln.ip", Some(v)) => {
                    c.net.ip = Some(parse_ipv4_cidr(v).ok_or_else(|| err("expected A.B.C.D/N"))?)
                }
                ("kiln.gw", Some(v)) => {
                    c.net.gateway = Some(parse_ipv4(v).ok_or_else(|| err("expected A.B.C.D"))?)
                }
                ("kiln.dns", Some(v)) => c
                    .net
                    .dns
                    .push(parse_ipv4(v).ok_or_else(|| err("expected A.B.C.D"))?),
                ("kiln.volume", Some(v)) => c.volumes.push(
                    parse_volume(v).ok_or_else(|| err("expected kiln.volume=TAG,/PATH[,ro]"))?,
                ),
                _ if key.starts_with("kiln.") => return Err(err("unknown kiln option")),
                _ => c.other.push(String::from(token)),
            }
        }
        Ok(c)
    }

    /// Sets `name` to `value`, replacing an earlier value in place.
    pub fn set_env(&mut self, name: Vec<u8>, value: Vec<u8>) {
        match self.env.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.env.push((name, value)),
        }
    }

    /// Applies `runtime` on top of `self` (the baked-in defaults): given arguments replace
    /// the defaults, variables override by name, other settings win when given.
    pub fn overridden_by(mut self, runtime: Config) -> Config {
        if runtime.name.is_some() {
            self.name = runtime.name;
        }
        if runtime.argv.is_some() {
            self.argv = runtime.argv;
        }
        for (k, v) in runtime.env {
            self.set_env(k, v);
        }
        self.stdout = runtime.stdout.or(self.stdout);
        self.stderr = runtime.stderr.or(self.stderr);
        self.log = runtime.log.or(self.log);
        self.status = runtime.status.or(self.status);
        self.records = runtime.records.or(self.records);
        self.control = runtime.control.or(self.control);
        self.stdin = runtime.stdin.or(self.stdin);
        self.core = runtime.core.or(self.core);
        self.verbose |= runtime.verbose;
        self.trace |= runtime.trace;
        self.memlog = runtime.memlog.or(self.memlog);
        self.profile = runtime.profile.or(self.profile);
        if runtime.net.ip.is_some() {
            self.net.ip = runtime.net.ip;
        }
        if runtime.net.gateway.is_some() {
            self.net.gateway = runtime.net.gateway;
        }
        if !runtime.net.dns.is_empty() {
            self.net.dns = runtime.net.dns;
        }
        self.volumes.extend(runtime.volumes);
        self.other.extend(runtime.other);
        self
    }

    /// Writes the configuration back as command-line tokens ([`Config::parse`] reads it back).
    pub fn to_cmdline(&self) -> String {
        let mut t: Vec<String> = Vec::new();
        if let Some(n) = &self.name {
            t.push(alloc::format!("kiln.name={}", encode(n)));
        }
        if let Some(args) = &self.argv {
            let enc: Vec<String> = args.iter().map(|a| encode_arg(a)).collect();
            t.push(alloc::format!("kiln.argv={}", enc.join(",")));
        }
        for (k, v) in &self.env {
            t.push(alloc::format!("kiln.env={}={}", encode(k), encode(v)));
        }
        for (key, sink) in [
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("log", self.log),
            ("status", self.status),
            ("records", self.records),
        ] {
            if let Some(s) = sink {
                t.push(alloc::format!("kiln.{key}={}", sink_token(s)));
            }
        }
        if let Some(port) = self.control {
            t.push(alloc::format!("kiln.control={port:#x}"));
        }
        match self.stdin {
            Some(InputChannel::Uart(port)) => t.push(alloc::format!("kiln.stdin={port:#x}")),
            Some(InputChannel::Virtio(port)) => t.push(alloc::format!("kiln.stdin=virtio:{port}")),
            None => {}
        }
        if let Some(limit) = self.core {
            t.push(alloc::format!("kiln.core={limit}"));
        }
        if self.verbose {
            t.push(String::from("kiln.verbose"));
        }
        if self.trace {
            t.push(String::from("kiln.trace"));
        }
        if let Some(hz) = self.profile {
            t.push(alloc::format!("kiln.profile={hz}"));
        }
        if let Some(secs) = self.memlog {
            t.push(alloc::format!("kiln.memlog={secs}"));
        }
        if let Some((ip, len)) = self.net.ip {
            t.push(alloc::format!("kiln.ip={}/{len}", ip_text(ip)));
        }
        if let Some(gw) = self.net.gateway {
            t.push(alloc::format!("kiln.gw={}", ip_text(gw)));
        }
        for d in &self.net.dns {
            t.push(alloc::format!("kiln.dns={}", ip_text(*d)));
        }
        for v in &self.volumes {
            let ro = if v.readonly { ",ro" } else { "" };
            t.push(alloc::format!(
                "kiln.volume={},{}{ro}",
                encode(v.tag.as_bytes()),
                encode(v.path.as_bytes())
            ));
        }
        t.extend(self.other.iter().cloned());
        t.join(" ")
    }
}

/// `TAG,PATH[,ro]` (both percent-encoded; the path absolute).
fn parse_volume(v: &str) -> Option<Volume> {
    let mut parts = v.split(',');
    let tag = String::from_utf8(decode(parts.next()?)?).ok()?;
    let path = String::from_utf8(decode(parts.next()?)?).ok()?;
    let readonly = match parts.next() {
        None => false,
        Some("ro") => true,
        Some(_) => return None,
    };
    if parts.next().is_some() || tag.is_empty() || !path.starts_with('/') {
        return None;
    }
    Some(Volume {
        tag,
        path,
        readonly,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_env_fills_only_what_is_missing() {
        let mut env = alloc::vec![b"HOME=/srv".to_vec(), b"PATHX=1".to_vec()];
        super::add_default_env(&mut env);
        assert_eq!(env.len(), 3);
        assert_eq!(env[0], b"HOME=/srv");
        assert!(env[2].starts_with(b"PATH=/usr/local/sbin:"));
        let mut none = alloc::vec::Vec::new();
        super::add_default_env(&mut none);
        assert_eq!(none.len(), 2);
    }
    use super::*;
    use alloc::vec;

    /// Found by the `cmdline` fuzz target's round trip of built configurations: one empty
    /// argument (`--arg ""`, `run -- ""`) was written as `kiln.argv=`, which reads back as
    /// no arguments.
    #[test]
    fn empty_arguments_survive_the_round_trip() {
        for argv in [
            vec![],
            vec![vec![]],
            vec![vec![], vec![]],
            vec![b"a".to_vec(), vec![]],
            vec![b"\"\"".to_vec()],
        ] {
            let c = Config {
                argv: Some(argv.clone()),
                ..Config::default()
            };
            let line = c.to_cmdline();
            assert_eq!(Config::parse(&line).unwrap().argv, Some(argv), "{line}");
        }
        assert_eq!(
            Config::parse("kiln.argv=").unwrap().argv,
            Some(Vec::<Vec<u8>>::new())
        );
        assert_eq!(
            Config::parse("kiln.argv=a,").unwrap().argv,
            Some(vec![b"a".to_vec(), vec![]])
        );
    }

    #[test]
    fn encoding_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let e = encode(&all);
        assert!(!e.contains(' ') && !e.contains(',') && !e.contains('='));
        assert_eq!(decode(&e).unwrap(), all);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%zz"), None);
    }

    #[test]
    fn parses_and_writes_back() {
        let mut c = Config {
            name: Some(b"/bin/hello".to_vec()),
            argv: Some(vec![b"a b".to_vec(), b"c,d".to_vec(), b"".to_vec()]),
            stdout: Some(Sink::Virtio(1)),
            stderr: Some(Sink::Virtio(2)),
            log: Some(Sink::Off),
            status: Some(Sink::Port(0x404)),
            records: Some(Sink::Port(0x406)),
            control: Some(0x2f8),
            stdin: Some(InputChannel::Virtio(3)),
            core: Some(1 << 30),
            trace: true,
            memlog: Some(5),
            ..Config::default()
        };
        c.set_env(b"GREETING".to_vec(), b"hi there=1".to_vec());
        let line = c.to_cmdline();
        assert_eq!(Config::parse(&line).unwrap(), c);
        c.stdin = Some(InputChannel::Uart(0x3e8));
        assert_eq!(Config::parse(&c.to_cmdline()).unwrap(), c);
        for bad in ["kiln.stdin=serial", "kiln.stdin=virtio:0", "kiln.stdin=3e8"] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn network_tokens_round_trip() {
        let c = Config::parse(
            "kiln.ip=10.0.2.15/24 kiln.gw=10.0.2.2 kiln.dns=10.0.2.3 kiln.dns=1.1.1.1",
        )
        .unwrap();
        assert_eq!(
            c.net,
            NetConfig {
                ip: Some(([10, 0, 2, 15], 24)),
                gateway: Some([10, 0, 2, 2]),
                dns: vec![[10, 0, 2, 3], [1, 1, 1, 1]],
            }
        );
        assert_eq!(Config::parse(&c.to_cmdline()).unwrap(), c);
        assert!(Config::parse("kiln.ip=10.0.2.15").is_err());
        assert!(Config::parse("kiln.ip=10.0.2.15/33").is_err());
        assert!(Config::parse("kiln.gw=10.0.2").is_err());
        assert!(Config::parse("kiln.dns=1.2.3.256").is_err());
        let baked = Config::parse("kiln.dns=9.9.9.9").unwrap();
        let rt = Config::parse("kiln.dns=10.0.2.3").unwrap();
        assert_eq!(baked.overridden_by(rt).net.dns, vec![[10, 0, 2, 3]]);
    }

    #[test]
    fn empty_argv_means_no_arguments() {
        assert_eq!(Config::parse("kiln.argv=").unwrap().argv, Some(vec![]));
        assert_eq!(Config::parse("").unwrap().argv, None);
    }

    #[test]
    fn foreign_tokens_are_kept() {
        let c = Config::parse("console=ttyS0  virtio_mmio.device=512@0xfeb00e00:12").unwrap();
        assert_eq!(
            c.other,
            vec!["console=ttyS0", "virtio_mmio.device=512@0xfeb00e00:12"]
        );
    }

    #[test]
    fn runtime_overrides_defaults() {
        let baked = Config::parse("kiln.argv=x,y kiln.env=A=1 kiln.env=B=2").unwrap();
        let rt = Config::parse("kiln.env=B=3 kiln.env=C=4 kiln.argv=z").unwrap();
        let c = baked.overridden_by(rt);
        assert_eq!(c.argv, Some(vec![b"z".to_vec()]));
        let env: Vec<_> = c.env.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            env,
            vec![(&b"A"[..], &b"1"[..]), (b"B", b"3"), (b"C", b"4")]
        );
        let kept = Config::parse("kiln.argv=x")
            .unwrap()
            .overridden_by(Config::default());
        assert_eq!(kept.argv, Some(vec![b"x".to_vec()]));
    }

    #[test]
    fn rejects_bad_tokens() {
        assert!(Config::parse("kiln.env=novalue").is_err());
        assert!(Config::parse("kiln.env==x").is_err());
        assert!(Config::parse("kiln.argv=%G1").is_err());
        assert!(Config::parse("kiln.stdout=lpt1").is_err());
        assert!(
            Config::parse("kiln.stdout=virtio:0").is_err(),
            "port 0 is the legacy one"
        );
        assert!(Config::parse("kiln.stdout=virtio:x").is_err());
        assert!(Config::parse("kiln.bogus=1").is_err());
        assert!(Config::parse("kiln.memlog=0").is_err());
        assert!(Config::parse("kiln.memlog=soon").is_err());
    }

    #[test]
    fn memlog_interval() {
        assert_eq!(Config::parse("kiln.memlog").unwrap().memlog, Some(10));
        assert_eq!(Config::parse("kiln.memlog=2").unwrap().memlog, Some(2));
        let baked = Config::parse("kiln.memlog=30").unwrap();
        let run = Config::parse("kiln.memlog=5").unwrap();
        assert_eq!(baked.overridden_by(run).memlog, Some(5));
    }

    #[test]
    fn volumes_round_trip() {
        let c = Config {
            volumes: vec![
                Volume {
                    tag: "kiln0".into(),
                    path: "/data dir,x".into(),
                    readonly: false,
                },
                Volume {
                    tag: "kiln1".into(),
                    path: "/ro".into(),
                    readonly: true,
                },
            ],
            ..Config::default()
        };
        let line = c.to_cmdline();
        assert_eq!(
            line,
            "kiln.volume=kiln0,/data%20dir%2Cx kiln.volume=kiln1,/ro,ro"
        );
        assert_eq!(Config::parse(&line).unwrap(), c);
        for bad in [
            "kiln.volume=kiln0",
            "kiln.volume=kiln0,rel",
            "kiln.volume=,/a",
            "kiln.volume=k,/a,rw",
            "kiln.volume=k,/a,ro,x",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        let merged = Config::parse("kiln.volume=a,/a")
            .unwrap()
            .overridden_by(Config::parse("kiln.volume=b,/b,ro").unwrap());
        assert_eq!(merged.volumes.len(), 2);
    }
}
