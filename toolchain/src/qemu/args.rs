//! Assembling QEMU's command line and the kernel's run-time command line (pure functions).

use super::target::{Machine, Target};
pub use kiln_abi::cmdline::{parse_ipv4, parse_ipv4_cidr, NetConfig};
use kiln_abi::cmdline::{Config, InputChannel, Sink};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation (always works).
    Tcg,
    /// Hardware virtualisation (only when the probe says it works).
    Kvm,
}

impl Accel {
    /// `tcg` or `kvm`, as `KILN_ACCEL` spells them.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// What the user asked for at run time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunOptions {
    /// Which machine.
    pub machine: Machine,
    /// Guest memory in MiB; the target's default when `None`.
    pub memory_mib: Option<u64>,
    /// `--cpus`: virtual CPUs (one when `None`); more than one adds `-smp N` and, on TCG,
    /// one host thread per vCPU (`thread=multi`).
    pub cpus: Option<u32>,
    /// `-e K=V`: variables added to (or replacing) the baked-in ones.
    pub env: Vec<(String, String)>,
    /// `-- ARGS`: replaces the baked-in arguments when given.
    pub argv: Option<Vec<String>>,
    /// Kernel log at info level, streamed to stderr.
    pub verbose: bool,
    /// The network card and how it reaches the host.
    pub net: NetOptions,
    /// QEMU's gdb stub.
    pub gdb: Option<GdbStub>,
    /// `--core`: the kernel sends the program's memory (at most this many bytes) when it
    /// dies of a signal that dumps core.
    pub core_limit: Option<u64>,
    /// `--trace`: the kernel sends a record per system call.
    pub trace: bool,
    /// `--profile`: the kernel samples the running code this many times a second.
    pub profile_hz: Option<u32>,
    /// `--profile-kernel`: the runner samples the kernel's stacks through QMP at most this
    /// many times a second ([`super::kprof`]); the samples are in
    /// [`super::RunResult::kernel_profile`].
    pub kernel_profile_hz: Option<u32>,
    /// How long a stop (Ctrl-C, SIGTERM) waits after pressing the power button before it
    /// stops the machine hard.
    pub stop_timeout: std::time::Duration,
    /// Where QEMU writes the kernel's records (a file the caller may follow while the
    /// image runs); a file in the run's temporary directory when `None`.
    pub records_file: Option<PathBuf>,
    /// A Unix socket QEMU serves the kernel's control channel on (for `stats`); none when
    /// `None`.
    pub control_socket: Option<PathBuf>,
    /// `-v`: host directories mounted in the guest.
    pub volumes: Vec<super::volume::Volume>,
    /// Give the program the runner's standard input, read when the program asks for it
    /// ([`super::stdin`]); without it the program's standard input is empty.
    pub stdin: bool,
    /// Carry the program's standard output and error on ports of a virtio console (the
    /// target's `console_device`) rather than `isa-debugcon` ports: set for images whose
    /// kernel declares it can ([`kiln_abi::caps::VIRTIO_PORTS`]).
    pub console_virtio: bool,
    /// Carry the program's standard input on a port of that virtio console rather than a
    /// UART (a chunk per buffer, not 16 bytes per interrupt): set for images whose kernel
    /// declares it can ([`kiln_abi::caps::VIRTIO_STDIN`]).
    pub stdin_virtio: bool,
}

/// The UART port of the control channel (the PC's COM2, ISA IRQ 3).
pub const CONTROL_PORT: u16 = 0x2f8;
/// The UART port of the standard-input channel (the PC's COM3, ISA IRQ 4).
pub const STDIN_PORT: u16 = 0x3e8;

/// How the guest's network card reaches the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetBackend {
    /// QEMU user networking (the guest is 10.0.2.15 behind a NAT; the host is 10.0.2.2;
    /// ports reach the guest through forwards).
    #[default]
    User,
    /// A host tap device, by name.
    Tap(String),
    /// No network card.
    None,
}

/// One `-p HOSTPORT:GUESTPORT[/udp]` forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// Port on the host (on all of its addresses).
    pub host: u16,
    /// Port in the guest.
    pub guest: u16,
    /// UDP instead of TCP.
    pub udp: bool,
}

impl std::str::FromStr for PortForward {
    type Err = String;
    /// Parses `HOSTPORT:GUESTPORT`, optionally followed by `/tcp` or `/udp`.
    fn from_str(s: &str) -> Result<PortForward, String> {
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, proto)) => (p, proto),
            None => (s, "tcp"),
        };
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return Err(format!("`{s}`: the protocol is tcp or udp")),
        };
        let (h, g) = ports
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected HOSTPORT:GUESTPORT[/udp]"))?;
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("`{s}`: `{p}` is not a port (1-65535)"))
        };
        Ok(PortForward {
            host: port(h)?,
            guest: port(g)?,
            udp,
        })
    }
}

impl std::str::FromStr for NetBackend {
    type Err = String;
    /// `user`, `tap:NAME` or `none`.
    fn from_str(s: &str) -> Result<NetBackend, String> {
        match s {
            "user" => Ok(NetBackend::User),
            "none" => Ok(NetBackend::None),
            _ => match s.strip_prefix("tap:") {
                Some(name) if !name.is_empty() && !name.contains(',') => {
                    Ok(NetBackend::Tap(name.into()))
                }
                _ => Err(format!("`{s}`: expected user, tap:NAME or none")),
            },
        }
    }
}

/// Network options of a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetOptions {
    /// Where the card is connected.
    pub backend: NetBackend,
    /// Port forwards (user networking only).
    pub forwards: Vec<PortForward>,
    /// Static address, gateway and DNS for the guest (DHCP when no address).
    pub config: NetConfig,
    /// `--pcap FILE`: every frame the card sends and receives, as a pcap file.
    pub pcap: Option<PathBuf>,
}

/// `--gdb PORT`: QEMU's gdb stub for a debugger on the running image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GdbStub {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Hold the guest before its first instruction until the debugger continues it.
    pub wait: bool,
}

/// Where QEMU writes the three streams (FIFOs made by the runner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPaths {
    /// The program's stdout.
    pub stdout: PathBuf,
    /// The program's stderr.
    pub stderr: PathBuf,
    /// The kernel log (COM1).
    pub log: PathBuf,
    /// The exit status byte (a plain file).
    pub status: PathBuf,
    /// Binary records from the kernel (a plain file).
    pub records: PathBuf,
    /// QEMU's QMP socket, for a graceful stop (the power button); none when `None`.
    pub qmp: Option<PathBuf>,
    /// A second QMP socket, for the kernel profiler (`run --profile-kernel`); none when
    /// `None`.
    pub profiler_qmp: Option<PathBuf>,
    /// The socket the runner listens on for the standard-input channel (QEMU connects to
    /// it); none when `None`.
    pub stdin: Option<PathBuf>,
}

/// The address QEMU user networking (slirp) gives its one guest: its DHCP server hands out
/// addresses from `dhcpstart`, 10.0.2.15 by default (QEMU 7.2's `net=10.0.2.0/24`), and its
/// port forwards (`hostfwd`) go to that address unless told otherwise.
pub const USER_NET_GUEST: ([u8; 4], u8) = ([10, 0, 2, 15], 24);
/// The gateway (and host) on QEMU user networking (`host=`, default 10.0.2.2).
pub const USER_NET_GATEWAY: [u8; 4] = [10, 0, 2, 2];

/// The network settings passed to the guest. On user networking without `--ip` the runner
/// gives the kernel the address slirp's DHCP would hand out anyway, so the guest needs no
/// DHCP exchange before its first packet (the image's `/etc/resolv.conf` already names
/// slirp's DNS, 10.0.2.3). Everything else is passed as given; no address means DHCP.
pub fn guest_net_config(net: &NetOptions) -> NetConfig {
    let mut c = net.config.clone();
    if net.backend == NetBackend::User && c.ip.is_none() {
        c.ip = Some(USER_NET_GUEST);
        c.gateway = c.gateway.or(Some(USER_NET_GATEWAY));
    }
    c
}

/// Whether the program's standard output and error go to a virtio console: the target has
/// one and the image's kernel can use it.
fn console_on_virtio(target: &Target, opts: &RunOptions) -> bool {
    opts.console_virtio && target.console_device.is_some()
}

/// Whether the program's standard input comes over a port of the virtio console.
fn stdin_on_virtio(target: &Target, opts: &RunOptions) -> bool {
    console_on_virtio(target, opts) && opts.stdin_virtio
}

/// The virtio console ports of stdout, stderr and stdin.
const STDOUT_VIRTIO_PORT: u32 = 1;
const STDERR_VIRTIO_PORT: u32 = 2;
const STDIN_VIRTIO_PORT: u32 = 3;

/// The run-time overrides passed with `-append`; the streams use the target's ports.
pub fn runtime_config(target: &Target, opts: &RunOptions) -> Config {
    let mut c = Config {
        argv: opts
            .argv
            .as_ref()
            .map(|a| a.iter().map(|s| s.as_bytes().to_vec()).collect()),
        stdout: Some(if console_on_virtio(target, opts) {
            Sink::Virtio(STDOUT_VIRTIO_PORT)
        } else {
            Sink::Port(target.stdout_port)
        }),
        stderr: Some(if console_on_virtio(target, opts) {
            Sink::Virtio(STDERR_VIRTIO_PORT)
        } else {
            Sink::Port(target.stderr_port)
        }),
        status: Some(Sink::Port(target.status_port)),
        records: Some(Sink::Port(target.records_port)),
        log: Some(Sink::Serial),
        verbose: opts.verbose,
        net: guest_net_config(&opts.net),
        core: opts.core_limit,
        trace: opts.trace,
        profile: opts.profile_hz,
        control: opts.control_socket.as_ref().map(|_| CONTROL_PORT),
        stdin: opts.stdin.then_some(if stdin_on_virtio(target, opts) {
            InputChannel::Virtio(STDIN_VIRTIO_PORT)
        } else {
            InputChannel::Uart(STDIN_PORT)
        }),
        volumes: super::volume::config(&opts.volumes),
        ..Config::default()
    };
    for (k, v) in &opts.env {
        c.set_env(k.as_bytes().to_vec(), v.as_bytes().to_vec());
    }
    c
}

/// Escapes a value for a QEMU `key=value,...` option (commas are doubled).
pub fn qemu_escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// The full QEMU argument list (without the program name) for a PVH image.
pub fn qemu_args(
    target: &Target,
    opts: &RunOptions,
    accel: Accel,
    image: &Path,
    streams: &StreamPaths,
) -> Vec<OsString> {
    let mut a = machine_args(target, opts, accel, streams);
    a.push("-append".into());
    a.push(runtime_config(target, opts).to_cmdline().into());
    a.push("-kernel".into());
    a.push(image.into());
    a
}

/// A disk for the UEFI target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiBoot {
    /// The disk image.
    pub disk: PathBuf,
    /// QEMU's `format=` for it (`raw`, `qcow2`, `vmdk`, `vpc`).
    pub format: String,
    /// This run's copy of the firmware variable store.
    pub vars: PathBuf,
    /// A file holding the run-time command line (passed as fw_cfg `opt/kiln/cmdline`).
    pub cmdline_file: PathBuf,
}

/// The fw_cfg file Kiln's EFI stub reads the run-time command line from.
pub const FW_CFG_CMDLINE: &str = "opt/kiln/cmdline";

/// The full QEMU argument list for booting a disk under UEFI firmware (`boot = "uefi"`).
/// The run-time command line must already be in `boot.cmdline_file`
/// ([`runtime_config`]`.to_cmdline()`).
pub fn uefi_args(
    target: &Target,
    opts: &RunOptions,
    accel: Accel,
    boot: &UefiBoot,
    streams: &StreamPaths,
) -> Vec<OsString> {
    let mut a = machine_args(target, opts, accel, streams);
    let code = target.firmware_code.clone().unwrap_or_default();
    let device = target
        .disk_device
        .clone()
        .unwrap_or_else(|| "virtio-blk-pci".into());
    for s in [
        "-drive".to_string(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            qemu_escape(Path::new(&code))
        ),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=1,file={}",
            qemu_escape(&boot.vars)
        ),
        "-drive".into(),
        format!(
            "file={},format={},if=none,id=kdisk,readonly=on",
            qemu_escape(&boot.disk),
            boot.format
        ),
        "-device".into(),
        format!("{device},drive=kdisk,bootindex=0"),
        "-fw_cfg".into(),
        format!(
            "name={FW_CFG_CMDLINE},file={}",
            qemu_escape(&boot.cmdline_file)
        ),
    ] {
        a.push(s.into());
    }
    a
}

/// The target's accelerator arguments for `cpus` vCPUs: with more than one, `-smp N`, and
/// under TCG one host thread per vCPU (`thread=multi`, QEMU's default for x86 said out
/// loud), so two vCPUs run two threads of the guest at once.
pub fn accel_args(target: &Target, accel: Accel, cpus: u32) -> Vec<String> {
    let mut a: Vec<String> = match accel {
        Accel::Tcg => &target.tcg,
        Accel::Kvm => &target.kvm,
    }
    .iter()
    .map(|s| {
        if cpus > 1 && accel == Accel::Tcg && s == "tcg" {
            "tcg,thread=multi".to_string()
        } else {
            s.clone()
        }
    })
    .collect();
    if cpus > 1 {
        a.push("-smp".into());
        a.push(cpus.to_string());
    }
    a
}

/// Everything but the boot method: machine, accelerator, memory, devices, streams.
fn machine_args(
    target: &Target,
    opts: &RunOptions,
    accel: Accel,
    streams: &StreamPaths,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    for s in &target.common {
        push(s);
    }
    for s in &target.machine {
        push(s);
    }
    for s in accel_args(target, accel, opts.cpus.unwrap_or(1)) {
        push(&s);
    }
    let mib = opts
        .memory_mib
        .unwrap_or_else(|| target.default_memory_mib());
    push("-m");
    push(&format!("{mib}M"));
    for s in &target.devices {
        push(s);
    }
    if let (Some(bus), true) = (&target.console_device, console_on_virtio(target, opts)) {
        push("-device");
        push(bus);
    }
    for (id, path, port) in [
        ("kout", &streams.stdout, target.stdout_port),
        ("kerr", &streams.stderr, target.stderr_port),
        ("kstatus", &streams.status, target.status_port),
        ("krecords", &streams.records, target.records_port),
    ] {
        push("-chardev");
        push(&format!("file,id={id},path={}", qemu_escape(path)));
        push("-device");
        let virtio_port = match id {
            "kout" => Some(STDOUT_VIRTIO_PORT),
            "kerr" => Some(STDERR_VIRTIO_PORT),
            _ => None,
        };
        match virtio_port {
            Some(nr) if console_on_virtio(target, opts) => {
                // Ports 1 and 2 of the virtio-serial device: QEMU drops what port 0 (the
                // legacy console) cannot write at once, and holds the guest's buffer on
                // the others.
                push(&format!("virtserialport,chardev={id},nr={nr}"));
            }
            // SeaBIOS keeps logging to a port that reads back 0xe9: answer 0 so it stops.
            _ => push(&format!(
                "isa-debugcon,iobase={port:#x},chardev={id},readback=0"
            )),
        }
    }
    push("-chardev");
    push(&format!("file,id=klog,path={}", qemu_escape(&streams.log)));
    push("-serial");
    push("chardev:klog");
    if let Some(g) = opts.gdb {
        push("-gdb");
        push(&format!("tcp:127.0.0.1:{}", g.port));
        if g.wait {
            push("-S");
        }
    }
    if let Some(sock) = &opts.control_socket {
        push("-chardev");
        push(&format!(
            "socket,id=kctl,path={},server=on,wait=off",
            qemu_escape(sock)
        ));
        push("-device");
        push(&format!(
            "isa-serial,chardev=kctl,iobase={CONTROL_PORT:#x},irq=3"
        ));
    }
    if let Some(sock) = &streams.stdin {
        // The runner listens and QEMU connects before the guest runs, so no request of
        // the kernel's can come before someone is there to answer it.
        push("-chardev");
        push(&format!(
            "socket,id=kin,path={},server=off",
            qemu_escape(sock)
        ));
        push("-device");
        if stdin_on_virtio(target, opts) {
            push(&format!(
                "virtserialport,chardev=kin,nr={STDIN_VIRTIO_PORT}"
            ));
        } else {
            push(&format!(
                "isa-serial,chardev=kin,iobase={STDIN_PORT:#x},irq=4"
            ));
        }
    }
    for q in [&streams.qmp, &streams.profiler_qmp].into_iter().flatten() {
        a.extend(super::qmp::args(q).map(OsString::from));
    }
    a.extend(net_args(target, &opts.net));
    a.extend(super::volume::qemu_args(target, &opts.volumes));
    a
}

/// The network card and its backend (`-netdev`, `-device`); nothing for `--net none` or a
/// target without a network device.
pub fn net_args(target: &Target, net: &NetOptions) -> Vec<OsString> {
    let Some(device) = &target.net_device else {
        return Vec::new();
    };
    let netdev = match &net.backend {
        NetBackend::None => return Vec::new(),
        NetBackend::User => {
            let mut s = String::from("user,id=n0");
            for f in &net.forwards {
                let proto = if f.udp { "udp" } else { "tcp" };
                s.push_str(&format!(",hostfwd={proto}::{}-:{}", f.host, f.guest));
            }
            s
        }
        // QEMU 7.2's filter-dump writes a tap's frames with the virtio-net header that
        // precedes each of them on the tap (10 or 12 bytes), which no pcap reader expects:
        // with `--pcap` the tap goes without it (and the card without the offloads it
        // carries).
        NetBackend::Tap(name) if net.pcap.is_some() => {
            format!("tap,id=n0,ifname={name},script=no,downscript=no,vnet_hdr=off")
        }
        NetBackend::Tap(name) => format!("tap,id=n0,ifname={name},script=no,downscript=no"),
    };
    let mut a: Vec<OsString> = vec![
        "-netdev".into(),
        netdev.into(),
        "-device".into(),
        format!("{device},netdev=n0").into(),
    ];
    if let Some(file) = &net.pcap {
        // QEMU's filter-dump writes libpcap's format (Ethernet link type) as frames pass.
        a.push("-object".into());
        a.push(format!("filter-dump,id=pcap0,netdev=n0,file={}", qemu_escape(file)).into());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_networking_gets_slirps_address_without_dhcp() {
        let user = NetOptions::default();
        let c = guest_net_config(&user);
        assert_eq!(c.ip, Some(([10, 0, 2, 15], 24)));
        assert_eq!(c.gateway, Some([10, 0, 2, 2]));
        assert!(
            c.dns.is_empty(),
            "the image's resolv.conf already names 10.0.2.3"
        );
        // An explicit address wins; tap and none are left alone (DHCP or nothing).
        let mut mine = NetOptions::default();
        mine.config.ip = Some(([10, 0, 2, 30], 24));
        assert_eq!(guest_net_config(&mine).ip, Some(([10, 0, 2, 30], 24)));
        let tap = NetOptions {
            backend: NetBackend::Tap("t0".into()),
            ..NetOptions::default()
        };
        assert_eq!(guest_net_config(&tap).ip, None);
        let none = NetOptions {
            backend: NetBackend::None,
            ..NetOptions::default()
        };
        assert_eq!(guest_net_config(&none).ip, None);
    }

    #[test]
    fn pcap_and_gdb_arguments() {
        let t = Machine::Microvm.target();
        let net = NetOptions {
            pcap: Some("/tmp/a,b.pcap".into()),
            ..NetOptions::default()
        };
        let s = joined(&net_args(&t, &net));
        assert_eq!(
            s[4..],
            [
                "-object",
                "filter-dump,id=pcap0,netdev=n0,file=/tmp/a,,b.pcap"
            ]
        );
        let none = NetOptions {
            backend: NetBackend::None,
            pcap: Some("x".into()),
            ..NetOptions::default()
        };
        assert!(net_args(&t, &none).is_empty());
        let tap = NetOptions {
            backend: NetBackend::Tap("t0".into()),
            pcap: Some("x".into()),
            ..NetOptions::default()
        };
        let s = joined(&net_args(&t, &tap));
        assert_eq!(
            s[1], "tap,id=n0,ifname=t0,script=no,downscript=no,vnet_hdr=off",
            "frames of a tap without their virtio-net header, as pcap readers expect"
        );
        let opts = RunOptions {
            gdb: Some(GdbStub {
                port: 1234,
                wait: true,
            }),
            ..RunOptions::default()
        };
        let paths = streams();
        let a = joined(&machine_args(&t, &opts, Accel::Tcg, &paths)).join(" ");
        assert!(a.contains("-gdb tcp:127.0.0.1:1234 -S"), "{a}");
    }

    #[test]
    fn cpus_add_smp_and_multi_threaded_tcg() {
        let t = Machine::Microvm.target();
        let paths = streams();
        let args = |cpus, accel| {
            let opts = RunOptions {
                cpus,
                ..RunOptions::default()
            };
            joined(&machine_args(&t, &opts, accel, &paths)).join(" ")
        };
        let one = args(None, Accel::Tcg);
        assert!(
            !one.contains("-smp") && one.contains("-accel tcg "),
            "{one}"
        );
        assert_eq!(one, args(Some(1), Accel::Tcg));
        let two = args(Some(2), Accel::Tcg);
        assert!(two.contains("-accel tcg,thread=multi "), "{two}");
        assert!(two.contains("-smp 2 "), "{two}");
        let kvm = args(Some(4), Accel::Kvm);
        assert!(
            kvm.contains("-accel kvm ") && kvm.contains("-smp 4 "),
            "{kvm}"
        );
    }

    #[test]
    fn network_arguments() {
        let t = Machine::Microvm.target();
        let mut net = NetOptions {
            forwards: vec!["8080:80".parse().unwrap(), "5353:53/udp".parse().unwrap()],
            ..NetOptions::default()
        };
        let a = joined(&net_args(&t, &net)).join(" ");
        assert_eq!(
            a,
            "-netdev user,id=n0,hostfwd=tcp::8080-:80,hostfwd=udp::5353-:53 -device virtio-net-device,netdev=n0"
        );
        net.backend = "tap:kiln0".parse().unwrap();
        let a = joined(&net_args(&Machine::Q35.target(), &net)).join(" ");
        assert_eq!(
            a,
            "-netdev tap,id=n0,ifname=kiln0,script=no,downscript=no -device virtio-net-pci,netdev=n0"
        );
        net.backend = NetBackend::None;
        assert!(net_args(&t, &net).is_empty());
        assert!("80".parse::<PortForward>().is_err());
        assert!("0:80".parse::<PortForward>().is_err());
        assert!("1:2/sctp".parse::<PortForward>().is_err());
        assert!("tap:".parse::<NetBackend>().is_err());
        net.config.ip = Some(([10, 0, 2, 20], 24));
        let opts = RunOptions {
            net,
            ..RunOptions::default()
        };
        assert!(runtime_config(&t, &opts)
            .to_cmdline()
            .contains("kiln.ip=10.0.2.20/24"));
    }

    fn streams() -> StreamPaths {
        StreamPaths {
            stdout: "/t/out".into(),
            stderr: "/t/err".into(),
            log: "/t/a,b/log".into(),
            status: "/t/status".into(),
            records: "/t/records".into(),
            qmp: Some("/t/qmp".into()),
            profiler_qmp: None,
            stdin: None,
        }
    }

    fn joined(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn microvm_defaults() {
        let opts = RunOptions::default();
        let a = joined(&qemu_args(
            &Machine::Microvm.target(),
            &opts,
            Accel::Tcg,
            Path::new("/img.elf"),
            &streams(),
        ));
        let s = a.join(" ");
        assert!(
            s.starts_with("-nodefaults -no-user-config -nographic -no-reboot -M microvm,"),
            "{s}"
        );
        assert!(s.contains("-accel tcg -cpu max -m 128M"), "{s}");
        assert!(s.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(s.contains(
            "-chardev file,id=kout,path=/t/out -device isa-debugcon,iobase=0x402,chardev=kout,readback=0"
        ));
        assert!(s.contains("-device isa-debugcon,iobase=0x403,chardev=kerr,readback=0"));
        assert!(
            s.contains("-chardev file,id=klog,path=/t/a,,b/log -serial chardev:klog"),
            "{s}"
        );
        let i = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(
            a[i + 1],
            "kiln.stdout=0x402 kiln.stderr=0x403 kiln.log=serial kiln.status=0x404 kiln.records=0x406 kiln.ip=10.0.2.15/24 kiln.gw=10.0.2.2"
        );
        assert!(s.contains("-chardev file,id=kstatus,path=/t/status -device isa-debugcon,iobase=0x404,chardev=kstatus,readback=0"), "{s}");
        assert_eq!(&a[a.len() - 2..], ["-kernel", "/img.elf"]);
    }

    #[test]
    fn q35_kvm_and_overrides() {
        let opts = RunOptions {
            machine: Machine::Q35,
            memory_mib: Some(16),
            cpus: None,
            env: vec![("GREETING".into(), "hi there".into())],
            argv: Some(vec!["a,b".into(), "--exit".into(), "3".into()]),
            verbose: true,
            net: NetOptions::default(),
            gdb: None,
            core_limit: None,
            trace: false,
            profile_hz: None,
            kernel_profile_hz: None,
            stop_timeout: std::time::Duration::from_secs(10),
            records_file: None,
            control_socket: Some("/run/c.sock".into()),
            volumes: vec![crate::qemu::volume::Volume {
                host: "/srv/a,b".into(),
                guest: "/data".into(),
                readonly: true,
            }],
            stdin: false,
            console_virtio: false,
            stdin_virtio: false,
        };
        let a = joined(&qemu_args(
            &Machine::Q35.target(),
            &opts,
            Accel::Kvm,
            Path::new("x"),
            &streams(),
        ));
        let s = a.join(" ");
        assert!(
            s.contains("-M q35 -accel kvm -cpu host,-arch-capabilities -m 16M"),
            "{s}"
        );
        assert!(
            s.contains("isa-debugcon,iobase=0x405,chardev=kout,readback=0"),
            "{s}"
        );
        assert!(
            s.contains("isa-debugcon,iobase=0x403,chardev=kerr,readback=0"),
            "{s}"
        );
        let i = a.iter().position(|x| x == "-append").unwrap();
        let c = Config::parse(&a[i + 1]).unwrap();
        assert_eq!(c.argv.unwrap()[0], b"a,b");
        assert_eq!(c.env, vec![(b"GREETING".to_vec(), b"hi there".to_vec())]);
        assert_eq!(c.stdout, Some(Sink::Port(0x405)));
        assert_eq!(c.status, Some(Sink::Port(0x404)));
        assert!(c.verbose);
        assert_eq!(c.volumes[0].tag, "kiln0");
        assert!(
            s.contains("-fsdev local,id=kvol0,path=/srv/a,,b,security_model=none,multidevs=remap,readonly=on -device virtio-9p-pci,fsdev=kvol0,mount_tag=kiln0"),
            "{s}"
        );
        // The control channel: a UART on a socket, and its port on the command line.
        assert!(
            s.contains("socket,id=kctl,path=/run/c.sock,server=on,wait=off -device isa-serial,chardev=kctl,iobase=0x2f8,irq=3"),
            "{s}"
        );
        assert_eq!(c.control, Some(CONTROL_PORT));
    }

    #[test]
    fn stdout_and_stderr_go_to_a_virtio_console_when_the_kernel_can_use_one() {
        for (machine, bus) in [
            (Machine::Microvm, "virtio-serial-device"),
            (Machine::Q35, "virtio-serial-pci"),
        ] {
            let opts = RunOptions {
                machine,
                console_virtio: true,
                ..RunOptions::default()
            };
            let t = machine.target();
            let a = joined(&qemu_args(
                &t,
                &opts,
                Accel::Tcg,
                Path::new("x"),
                &streams(),
            ));
            let s = a.join(" ");
            assert!(
                s.contains(&format!(
                    "-device {bus} -chardev file,id=kout,path=/t/out -device virtserialport,chardev=kout,nr=1 -chardev file,id=kerr,path=/t/err -device virtserialport,chardev=kerr,nr=2"
                )),
                "{s}"
            );
            assert!(
                !s.contains("chardev=kout,readback") && !s.contains("chardev=kerr,readback"),
                "{s}"
            );
            let i = a.iter().position(|x| x == "-append").unwrap();
            let c = Config::parse(&a[i + 1]).unwrap();
            assert_eq!(c.stdout, Some(Sink::Virtio(1)));
            assert_eq!(c.stderr, Some(Sink::Virtio(2)));
        }
        // The UEFI target has no console device: the debugcon port stays.
        let opts = RunOptions {
            console_virtio: true,
            ..RunOptions::default()
        };
        let c = runtime_config(&crate::qemu::target::uefi_target(), &opts);
        assert!(matches!(c.stdout, Some(Sink::Port(_))));
    }

    #[test]
    fn standard_input_gets_a_uart_that_qemu_connects_to_the_runner() {
        let t = Machine::Microvm.target();
        let opts = RunOptions {
            stdin: true,
            ..RunOptions::default()
        };
        let mut paths = streams();
        paths.stdin = Some("/t/a,b/stdin".into());
        let a = joined(&qemu_args(&t, &opts, Accel::Tcg, Path::new("x"), &paths));
        let s = a.join(" ");
        assert!(
            s.contains("-chardev socket,id=kin,path=/t/a,,b/stdin,server=off -device isa-serial,chardev=kin,iobase=0x3e8,irq=4"),
            "{s}"
        );
        let i = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(
            Config::parse(&a[i + 1]).unwrap().stdin,
            Some(InputChannel::Uart(STDIN_PORT))
        );
        // A kernel that reads it from the virtio console gets port 3 of it, on both machines.
        for machine in [Machine::Microvm, Machine::Q35] {
            let opts = RunOptions {
                stdin: true,
                console_virtio: true,
                stdin_virtio: true,
                ..RunOptions::default()
            };
            let a = joined(&qemu_args(
                &machine.target(),
                &opts,
                Accel::Tcg,
                Path::new("x"),
                &paths,
            ));
            let s = a.join(" ");
            assert!(
                s.contains("-chardev socket,id=kin,path=/t/a,,b/stdin,server=off -device virtserialport,chardev=kin,nr=3"),
                "{s}"
            );
            assert!(!s.contains("isa-serial,chardev=kin"), "{s}");
            let i = a.iter().position(|x| x == "-append").unwrap();
            assert_eq!(
                Config::parse(&a[i + 1]).unwrap().stdin,
                Some(InputChannel::Virtio(3))
            );
        }
        // Without it: no UART, and the kernel is told of none.
        let a = joined(&qemu_args(
            &t,
            &RunOptions::default(),
            Accel::Tcg,
            Path::new("x"),
            &streams(),
        ));
        assert!(!a.join(" ").contains("id=kin"));
        let i = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(Config::parse(&a[i + 1]).unwrap().stdin, None);
    }

    #[test]
    fn uefi_boots_the_disk_with_the_cmdline_in_fw_cfg() {
        let t = super::super::target::uefi_target();
        let boot = UefiBoot {
            disk: "/d/x,y.qcow2".into(),
            format: "qcow2".into(),
            vars: "/t/vars.fd".into(),
            cmdline_file: "/t/cmdline".into(),
        };
        let a = joined(&uefi_args(
            &t,
            &RunOptions::default(),
            Accel::Tcg,
            &boot,
            &streams(),
        ));
        let s = a.join(" ");
        assert!(s.contains("-M q35 -accel tcg"), "{s}");
        assert!(
            s.contains(
                "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd"
            ),
            "{s}"
        );
        assert!(
            s.contains("-drive if=pflash,format=raw,unit=1,file=/t/vars.fd"),
            "{s}"
        );
        assert!(
            s.contains("-drive file=/d/x,,y.qcow2,format=qcow2,if=none,id=kdisk,readonly=on -device virtio-blk-pci,drive=kdisk,bootindex=0"),
            "{s}"
        );
        assert!(
            s.contains("-fw_cfg name=opt/kiln/cmdline,file=/t/cmdline"),
            "{s}"
        );
        assert!(s.contains("isa-debugcon,iobase=0x405,chardev=kout"), "{s}");
        assert!(!s.contains("-kernel") && !s.contains("-append"), "{s}");
    }

    #[test]
    fn no_args_keeps_baked_ones() {
        let t = Machine::Microvm.target();
        assert_eq!(runtime_config(&t, &RunOptions::default()).argv, None);
    }
}
