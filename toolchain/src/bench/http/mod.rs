//! `bench http`: one HTTP server binary (`examples/http-hello` by default, or any ELF with
//! its arguments; a dynamically linked one brings its loader and libraries from this host
//! to both sides) served (a) as a Kiln image and (b) as the server of a
//! minimal Linux guest (Debian's cloud kernel + an initramfs built here), on the same QEMU
//! machine and accelerator, over the same tap device, under the same `wrk` loads, one side
//! after the other. Both run the binary with the same arguments and `PORT=8080`.
//!
//! For each side: `boots` boots timing QEMU start to the first `200` answer (probed from the
//! host every 10 ms), the first of them also carrying a warm-up and the measured loads
//! ([`standard_loads`]: keep-alive at each connection count, then a new connection per
//! request at the first); then a binary search over [`report::MEMORY_SIZES`] for the
//! smallest memory that serves a short load.
//!
//! - [`linux`]: the kernel package, module order, `/init`, the initramfs ([`cpio`]).
//! - [`tap`]: the host's tap device. [`vm`]: a QEMU process and the first-response probe.
//! - [`wrk`]: running and parsing the load generator. [`report`]: the table, the search.

pub mod cpio;
pub mod linux;
pub mod report;
pub mod tap;
pub mod vm;
pub mod wrk;

pub use report::{format_report, HttpReport, LoadSpec, Side};

use crate::app::AppSource;
use crate::qemu::args::{self, NetBackend, NetConfig, NetOptions, StreamPaths};
use crate::qemu::{Accel, Machine, RunOptions};
use crate::Layout;
use anyhow::{bail, Context};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vm::Vm;
use wrk::Load;

/// The heading of this benchmark's section of `BENCHMARKS.md`.
pub const HEADING: &str = "## HTTP server: Kiln vs a Linux guest";

/// The section of `BENCHMARKS.md` a server's results go to: [`HEADING`] for the default
/// server (`examples/http-hello`), a section of its own for any other, so measuring a Go
/// server does not erase the example's figures.
pub fn heading_for(server: &AppSource) -> String {
    let name = match server {
        AppSource::Example(name) if name == "http-hello" => return HEADING.to_string(),
        AppSource::Example(name) => format!("examples/{name}"),
        AppSource::Manifest { path, bin } => match bin {
            Some(bin) => bin.clone(),
            None => path.parent().and_then(|d| d.file_name()).map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
        },
        AppSource::Elf(path) => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
    };
    format!("{HEADING} ({name})")
}

/// The tap device and addresses the benchmark uses.
pub fn default_network() -> tap::TapConfig {
    tap::TapConfig {
        name: "kilnbench0".into(),
        host: [10, 77, 77, 1],
        guest: [10, 77, 77, 2],
        prefix: 24,
    }
}

/// The port the server listens on (its `PORT`).
pub const PORT: u16 = 8080;

/// The connection counts measured when none are given.
pub const DEFAULT_CONNECTIONS: [u32; 2] = [16, 256];

/// The loads `bench http` measures for `connections` (in that order, at least one, none
/// repeated, each 1 to 10000): keep-alive at each count, then a new connection per request
/// (`Connection: close`) at the first; each for `seconds` with wrk's `--timeout` of
/// `timeout_secs`, and 2 wrk threads (fewer when there are fewer connections).
pub fn standard_loads(
    connections: &[u32],
    seconds: u32,
    timeout_secs: u32,
) -> anyhow::Result<Vec<Load>> {
    let Some(&first) = connections.first() else {
        bail!("no connection count given (--connections takes a list such as 16,256)");
    };
    for (i, &c) in connections.iter().enumerate() {
        if !(1..=10_000).contains(&c) {
            bail!("--connections {c}: each count must be from 1 to 10000");
        }
        if connections[..i].contains(&c) {
            bail!("--connections lists {c} twice");
        }
    }
    if seconds == 0 || timeout_secs == 0 {
        bail!("the load's duration and wrk's timeout must be at least 1 s");
    }
    let load = |connections: u32, close: bool| Load {
        threads: 2.min(connections),
        connections,
        seconds,
        timeout_secs,
        close,
    };
    let mut loads: Vec<Load> = connections.iter().map(|&c| load(c, false)).collect();
    loads.push(load(first, true));
    Ok(loads)
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The server: an example, or a prebuilt ELF (`--elf`), static or dynamically linked.
    pub server: AppSource,
    /// The server's arguments (the same on both sides).
    pub args: Vec<String>,
    /// The measured loads, in order (see [`standard_loads`]; at least one). The first, with
    /// keep-alive, also sets the warm-up and the memory search's probe.
    pub loads: Vec<Load>,
    /// Boots per side for the first-response time (at least 1).
    pub boots: usize,
    /// Guest memory for the measured runs (MiB).
    pub memory_mib: u64,
    /// Whether to search for the smallest memory that serves.
    pub memory_search: bool,
    /// The QEMU machine (the same for both sides).
    pub machine: Machine,
    /// Virtual CPUs of each side (`--cpus`).
    pub cpus: u32,
    /// Host files and directories put on both sides (`--file SRC:DEST`).
    pub files: Vec<crate::options::FileSpec>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            server: AppSource::Example("http-hello".into()),
            args: vec![],
            loads: standard_loads(&DEFAULT_CONNECTIONS, 10, 2)
                .expect("the default loads are valid"),
            boots: 3,
            memory_mib: 256,
            memory_search: true,
            machine: Machine::Q35,
            cpus: 1,
            files: vec![],
        }
    }
}

/// The first load, with keep-alive: the warm-up and the memory probe are made from it.
fn base_load(opts: &HttpOptions) -> Load {
    Load {
        close: false,
        ..opts.loads.first().copied().unwrap_or_default()
    }
}

/// The short load that decides whether a memory size serves.
fn probe_load(load: &Load) -> Load {
    Load {
        seconds: 3,
        ..*load
    }
}

/// How the report names the server: `examples/NAME` or the ELF's path, its size, a short
/// SHA-256, and its arguments.
pub fn describe_server(source: &AppSource, args: &[String], bytes: &[u8]) -> String {
    let what = match source {
        AppSource::Example(name) => format!("examples/{name}"),
        AppSource::Elf(path) => format!("`{}` (--elf)", path.display()),
        AppSource::Manifest { path, bin } => format!(
            "the package at {}{}",
            path.display(),
            bin.as_ref()
                .map_or(String::new(), |b| format!(", binary {b}"))
        ),
    };
    let sha = crate::image::sha256_hex(bytes);
    let mut s = format!(
        "{what} (static, {} bytes, sha256 {}…)",
        bytes.len(),
        &sha[..12.min(sha.len())]
    );
    if args.is_empty() {
        s.push_str(", no arguments");
    } else {
        s.push_str(&format!(", arguments `{}`", shell_words(args)));
    }
    s
}

/// `args` as a shell would need them: each word as it is when it is plain, in single quotes
/// otherwise.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How one side boots.
pub(crate) enum Boot {
    Kiln {
        image: PathBuf,
    },
    Linux {
        vmlinuz: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
}

/// One side of the comparison, ready to boot with any memory size (`bench http` and
/// `bench redis`).
pub(crate) struct Guest {
    pub(crate) name: &'static str,
    pub(crate) boot: Boot,
    pub(crate) qemu: PathBuf,
    pub(crate) accel: Accel,
    pub(crate) machine: Machine,
    /// Virtual CPUs.
    pub(crate) cpus: u32,
    pub(crate) net: tap::TapConfig,
    /// The server's port (also its `PORT`).
    pub(crate) port: u16,
    /// Where the consoles and QEMU's messages go.
    pub(crate) dir: PathBuf,
}

impl Guest {
    fn net_options(&self) -> NetOptions {
        NetOptions {
            backend: NetBackend::Tap(self.net.name.clone()),
            forwards: vec![],
            config: NetConfig {
                ip: Some((self.net.guest, self.net.prefix)),
                gateway: Some(self.net.host),
                dns: vec![],
            },
            pcap: None,
        }
    }

    /// QEMU's arguments and the file holding the guest's console.
    fn args(&self, memory_mib: u64) -> (Vec<OsString>, PathBuf) {
        let target = self.machine.target();
        match &self.boot {
            Boot::Kiln { image } => {
                let paths = StreamPaths {
                    stdout: self.dir.join("kiln-stdout"),
                    stderr: self.dir.join("kiln-stderr"),
                    log: self.dir.join("kiln-console.log"),
                    status: self.dir.join("kiln-status"),
                    records: self.dir.join("kiln-records"),
                    qmp: None,
                    profiler_qmp: None,
                    stdin: None,
                };
                let opts = RunOptions {
                    machine: self.machine,
                    memory_mib: Some(memory_mib),
                    cpus: Some(self.cpus),
                    env: vec![("PORT".into(), self.port.to_string())],
                    net: self.net_options(),
                    ..RunOptions::default()
                };
                (
                    args::qemu_args(&target, &opts, self.accel, image, &paths),
                    paths.log,
                )
            }
            Boot::Linux {
                vmlinuz,
                initrd,
                cmdline,
            } => {
                let console = self.dir.join("linux-console.log");
                let mut a: Vec<OsString> = Vec::new();
                let accel = args::accel_args(&target, self.accel, self.cpus);
                for s in target.common.iter().chain(&target.machine).chain(&accel) {
                    a.push(s.into());
                }
                a.push("-m".into());
                a.push(format!("{memory_mib}M").into());
                a.extend(args::net_args(&target, &self.net_options()));
                for s in [
                    "-chardev".to_string(),
                    format!("file,id=con,path={}", args::qemu_escape(&console)),
                    "-serial".into(),
                    "chardev:con".into(),
                    "-append".into(),
                    cmdline.clone(),
                ] {
                    a.push(s.into());
                }
                a.push("-kernel".into());
                a.push(vmlinuz.into());
                a.push("-initrd".into());
                a.push(initrd.into());
                (a, console)
            }
        }
    }

    pub(crate) fn start(&self, memory_mib: u64) -> anyhow::Result<Vm> {
        let (a, console) = self.args(memory_mib);
        let _ = std::fs::remove_file(&console);
        Vm::start(
            &self.qemu,
            &a,
            &self
                .dir
                .join(format!("{}-qemu.log", self.name.to_lowercase())),
            &console,
        )
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(self.net.guest), self.port))
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }
}

/// Boots, measured load, first-response times and the memory search for one side.
fn measure(guest: &Guest, wrk: &Path, opts: &HttpOptions, side: &mut Side) {
    let boot_timeout = Duration::from_secs(180);
    for i in 0..opts.boots.max(1) {
        crate::note!(
            "{}: boot {} of {} ({} MiB)",
            guest.name,
            i + 1,
            opts.boots.max(1),
            opts.memory_mib
        );
        let mut vm = match guest.start(opts.memory_mib) {
            Ok(vm) => vm,
            Err(e) => {
                side.fail(format!("{e:#}"));
                return;
            }
        };
        match vm.first_response(guest.addr(), boot_timeout) {
            Ok(t) => {
                crate::note!(
                    "{}: first response after {:.3} s",
                    guest.name,
                    t.as_secs_f64()
                );
                side.first_responses.push(t);
            }
            Err(e) => {
                side.fail(e);
                return;
            }
        }
        if i == 0 {
            let warm = Load {
                seconds: 2,
                ..base_load(opts)
            };
            crate::note!("{}: warm-up: {}", guest.name, warm.command(&guest.url()));
            let _ = wrk::run(wrk, &warm, &guest.url());
            for (n, load) in opts.loads.iter().enumerate() {
                if n > 0 {
                    // Let the connections of the load before close on both ends.
                    std::thread::sleep(Duration::from_secs(1));
                }
                crate::note!("{}: load: {}", guest.name, load.command(&guest.url()));
                match wrk::run(wrk, load, &guest.url()) {
                    Ok(r) => {
                        crate::note!(
                            "{}: {}: {:.0} requests/s, p50 {:?}, p99 {:?}, failed {}",
                            guest.name,
                            load.label(),
                            r.rps,
                            r.p50,
                            r.p99,
                            report::failed_requests(&r)
                        );
                        side.loads.push(Some(r));
                    }
                    Err(e) => {
                        side.fail(format!("{}: {e:#}", load.label()));
                        side.loads.push(None);
                    }
                }
                if let Some(why) = vm.exited() {
                    side.fail(format!(
                        "{why} under load ({}); its last lines:\n{}",
                        load.label(),
                        vm.log_tail()
                    ));
                    return;
                }
            }
        }
        vm.stop();
    }
    if !opts.memory_search {
        return;
    }
    // A guest that has not answered in 5x its usual time (at least 20 s) is not coming up.
    let timeout = side
        .first_response()
        .map_or(boot_timeout, |t| (t * 5).max(Duration::from_secs(20)));
    let probe = probe_load(&base_load(opts));
    let (min, tried) = report::smallest_passing(&report::MEMORY_SIZES, |m| {
        // Two tries: a guest that serves once with this memory has enough of it (a second
        // failure is a failure; a first one may be a stall that has nothing to do with memory).
        let verdict = serves(guest, wrk, &probe, m, timeout).or_else(|why| {
            crate::note!(
                "{}: --memory {m}M: failed once ({why}); trying again",
                guest.name
            );
            serves(guest, wrk, &probe, m, timeout)
        });
        match &verdict {
            Ok(()) => crate::note!("{}: --memory {m}M: serves", guest.name),
            Err(why) => crate::note!("{}: --memory {m}M: does not serve: {why}", guest.name),
        }
        verdict.is_ok()
    });
    side.min_memory = min;
    side.memory_tried = tried;
}

/// Whether `guest` with `memory_mib` answers, serves `probe` and is still up afterwards;
/// why not, otherwise.
fn serves(
    guest: &Guest,
    wrk: &Path,
    probe: &Load,
    memory_mib: u64,
    timeout: Duration,
) -> Result<(), String> {
    let mut vm = guest.start(memory_mib).map_err(|e| format!("{e:#}"))?;
    vm.first_response(guest.addr(), timeout).map_err(|e| {
        let first = e.lines().next().unwrap_or_default();
        first
            .split("; its last lines")
            .next()
            .unwrap_or(first)
            .to_string()
    })?;
    let r = wrk::run(wrk, probe, &guest.url()).map_err(|e| format!("{e:#}"))?;
    if !r.served() {
        return Err(format!(
            "{} requests, {} socket errors, {} not 2xx/3xx",
            r.requests, r.socket_errors, r.non_2xx
        ));
    }
    if let Some(why) = vm.exited() {
        return Err(format!("{why} under load"));
    }
    if !vm::get_ok(guest.addr(), Duration::from_secs(2)) {
        return Err("no answer after the load".into());
    }
    vm.stop();
    Ok(())
}

/// The Kiln image of the server, its arguments baked in (like `build-image --elf FILE --arg
/// A`), written to `dir`.
fn build_server(
    layout: &Layout,
    opts: &HttpOptions,
    dir: &Path,
) -> anyhow::Result<crate::image::BuiltImage> {
    let name = match &opts.server {
        AppSource::Example(name) => name.clone(),
        AppSource::Elf(path) => crate::app::name_from_path(path),
        AppSource::Manifest { .. } => "server".into(),
    };
    crate::note!("building the Kiln image of the server ({name})");
    crate::image::build_image(
        layout,
        &crate::image::BuildRequest {
            source: opts.server.clone(),
            rootfs_dir: None,
            files: opts.files.clone(),
            env: vec![],
            args: opts.args.clone(),
            output: Some(dir.join(format!("{name}.elf"))),
            libs: vec![],
            dynamic: false,
            net: crate::image::NetChoice::Auto,
            profiler: false,
            volumes: false,
        },
    )
}

/// The initramfs entries a prebuilt server at `path` needs besides itself: none for a
/// static one; for a dynamically linked one its loader and libraries from this host, at the
/// paths the loader asks for (the Kiln image packs the same files). An error for a missing
/// file, and for libraries the host lacks.
fn server_libraries(path: &Path) -> anyhow::Result<Vec<linux::Extra>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("bench http: cannot read {}", path.display()))?;
    let Ok(info) = crate::elf::validate(&bytes) else {
        // Not a program: the image build says what is wrong with it.
        return Ok(vec![]);
    };
    if info.interpreter.is_none() {
        return Ok(vec![]);
    }
    let origin = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/bin"));
    let libs = crate::dynamic::Resolver::host(vec![])
        .resolve(&bytes, "/server", &origin)
        .map_err(|e| anyhow::anyhow!("bench http: {}: {e}", path.display()))?
        .libraries;
    linux::library_entries(&libs)
}

/// Builds both guests, runs everything, and returns the report (a side that fails is
/// reported, not fatal; failing to build or set up is).
pub fn http(layout: &Layout, opts: &HttpOptions) -> anyhow::Result<HttpReport> {
    if opts.loads.is_empty() {
        bail!("bench http: no load to measure");
    }
    let dir = layout.kiln_dir().join("bench/http");
    std::fs::create_dir_all(&dir)?;
    // The server first: a missing ELF, or a dynamically linked one whose libraries are not
    // all on this host, is refused before anything else is set up.
    let mut extras = match &opts.server {
        AppSource::Elf(path) => server_libraries(path)?,
        _ => vec![],
    };
    let lib_count = extras.len();
    for f in &opts.files {
        extras.extend(linux::file_entries(f)?);
    }
    let kiln_image = build_server(layout, opts, &dir)?;
    let server = std::fs::read(&kiln_image.app.elf)
        .with_context(|| format!("could not read {}", kiln_image.app.elf.display()))?;
    let mut server_detail = describe_server(&opts.server, &opts.args, &server);
    if lib_count > 0 {
        let bytes: usize = extras[..lib_count]
            .iter()
            .map(|e| match e {
                linux::Extra::File(_, d) => d.len(),
                linux::Extra::Symlink(..) => 0,
            })
            .sum();
        server_detail.push_str(&format!(
            "; dynamically linked: its loader and libraries ({bytes} bytes) are packed on \
             both sides"
        ));
        server_detail = server_detail.replacen("(static, ", "(", 1);
    }
    crate::note!("server: {server_detail}");

    let (qemu_bin, accel) = crate::qemu::prepare(layout, opts.machine)?;
    let accel = accel.accel;
    let wrk = crate::qemu::install::ensure_tool("wrk", "wrk")?;

    let linux_dir = layout.kiln_dir().join("linux");
    let kernel = linux::ensure_kernel(&linux_dir)?;
    let modules = linux::network_modules(&kernel)?;
    let init = std::fs::read(linux::build_init(&linux_dir)?)?;
    let module_bytes = modules
        .iter()
        .map(|(n, p)| Ok((n.clone(), std::fs::read(p)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let initrd_bytes = linux::initramfs(&init, &server, &opts.args, &module_bytes, &extras)?;
    let initrd = dir.join("initramfs.cpio.gz");
    std::fs::write(&initrd, &initrd_bytes)?;
    let vmlinuz_size = std::fs::metadata(&kernel.vmlinuz)?.len();
    crate::note!(
        "Linux guest: {} ({vmlinuz_size} bytes) + initramfs {} ({} bytes; modules {})",
        layout.display(&kernel.vmlinuz),
        layout.display(&initrd),
        initrd_bytes.len(),
        modules
            .iter()
            .map(|m| m.0.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );

    let net = default_network();
    let _tap = tap::setup(net.clone())?;
    // Other work on the host skews every number here: record how busy it was.
    let host_load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let guest = |name, boot| Guest {
        name,
        boot,
        qemu: qemu_bin.clone(),
        accel,
        machine: opts.machine,
        cpus: opts.cpus,
        net: net.clone(),
        port: PORT,
        dir: dir.clone(),
    };
    let kiln = guest(
        "Kiln",
        Boot::Kiln {
            image: kiln_image.path.clone(),
        },
    );
    let linux_guest = guest(
        "Linux",
        Boot::Linux {
            vmlinuz: kernel.vmlinuz.clone(),
            initrd: initrd.clone(),
            cmdline: linux::cmdline(net.guest, net.prefix, net.host, PORT),
        },
    );

    let mut k = Side {
        name: "Kiln".into(),
        image_size: Some(kiln_image.size),
        image_detail: format!(
            "{} bytes, one PVH ELF (Kiln kernel + server + root filesystem)",
            kiln_image.size
        ),
        ..Side::default()
    };
    measure(&kiln, &wrk, opts, &mut k);
    let mut l = Side {
        name: "Linux".into(),
        image_size: Some(vmlinuz_size + initrd_bytes.len() as u64),
        image_detail: format!(
            "vmlinuz {vmlinuz_size} bytes + initramfs {} bytes (gzip'd cpio: /init {} bytes, \
             the server, modules {})",
            initrd_bytes.len(),
            init.len(),
            modules
                .iter()
                .map(|m| m.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ..Side::default()
    };
    measure(&linux_guest, &wrk, opts, &mut l);

    Ok(HttpReport {
        kiln: k,
        linux: l,
        accel: match accel {
            Accel::Tcg => "TCG",
            Accel::Kvm => "KVM",
        }
        .into(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        host_load,
        machine: opts.machine.name().into(),
        vcpus: opts.cpus,
        memory_mib: opts.memory_mib,
        loads: opts
            .loads
            .iter()
            .map(|l| LoadSpec {
                label: l.label(),
                command: l.command(&kiln.url()),
            })
            .collect(),
        probe_load: probe_load(&base_load(opts)).command(&kiln.url()),
        boots: opts.boots.max(1),
        linux_kernel: kernel.package.clone(),
        server: server_detail,
    })
}

/// Rewrites the HTTP section of `BENCHMARKS.md`.
pub fn write_markdown(
    layout: &Layout,
    server: &AppSource,
    report: &HttpReport,
    command: &str,
) -> anyhow::Result<()> {
    let body = format!(
        "Measured with `{command}` (as root: it creates the tap device `{}`). Under TCG \
         (software emulation, no KVM on these machines) compare ratios more than absolute \
         numbers.\n\n{}",
        default_network().name,
        format_report(report)
    );
    let mut heading = heading_for(server);
    if report.vcpus > 1 {
        // Its own section: "## HTTP server on N vCPUs: ...".
        heading = heading.replacen(
            "## HTTP server",
            &format!("## HTTP server on {} vCPUs", report.vcpus),
            1,
        );
    }
    super::markdown::write_section(layout, &heading, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_for_a_connection_list() {
        let l = standard_loads(&[16, 256], 10, 2).unwrap();
        let shape: Vec<(u32, u32, bool)> = l
            .iter()
            .map(|l| (l.threads, l.connections, l.close))
            .collect();
        assert_eq!(shape, [(2, 16, false), (2, 256, false), (2, 16, true)]);
        assert!(l.iter().all(|l| l.seconds == 10 && l.timeout_secs == 2));
        assert_eq!(HttpOptions::default().loads, l);
        let one = standard_loads(&[1], 3, 10).unwrap();
        assert_eq!(one.len(), 2);
        assert_eq!((one[0].threads, one[1].close), (1, true));
        assert_eq!(base_load(&HttpOptions::default()), l[0]);
        assert_eq!(probe_load(&l[0]).seconds, 3);
        for (bad, why) in [
            (&[][..], "no connection count"),
            (&[0][..], "from 1 to 10000"),
            (&[16, 10_001][..], "from 1 to 10000"),
            (&[16, 64, 16][..], "16 twice"),
        ] {
            let e = standard_loads(bad, 10, 2).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(standard_loads(&[16], 0, 2).is_err());
        assert!(standard_loads(&[16], 1, 0).is_err());
    }

    #[test]
    fn each_server_has_its_own_section() {
        assert_eq!(
            heading_for(&AppSource::Example("http-hello".into())),
            HEADING
        );
        assert_eq!(
            heading_for(&AppSource::Elf("/tmp/x/gohttp".into())),
            format!("{HEADING} (gohttp)")
        );
        assert_eq!(
            heading_for(&AppSource::Manifest {
                path: "/src/sws/Cargo.toml".into(),
                bin: None
            }),
            format!("{HEADING} (sws)")
        );
    }

    #[test]
    fn server_description() {
        let d = describe_server(&AppSource::Example("http-hello".into()), &[], b"abc");
        assert_eq!(
            d,
            "examples/http-hello (static, 3 bytes, sha256 ba7816bf8f01…), no arguments"
        );
        let d = describe_server(
            &AppSource::Elf("/tmp/go server".into()),
            &["-msg".into(), "hi there".into(), "it's".into()],
            b"",
        );
        assert_eq!(
            d,
            "`/tmp/go server` (--elf) (static, 0 bytes, sha256 e3b0c44298fc…), arguments \
             `-msg 'hi there' 'it'\\''s'`"
        );
        assert_eq!(shell_words(&["".into(), "a=b,c".into()]), "'' a=b,c");
    }

    #[test]
    fn a_missing_elf_is_refused_before_anything_runs_and_a_dynamic_one_gets_its_libraries() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let opts = HttpOptions {
            server: AppSource::Elf(tmp.path().join("nope")),
            ..HttpOptions::default()
        };
        let e = format!("{:#}", http(&layout, &opts).unwrap_err());
        assert!(e.to_lowercase().contains("no such file"), "{e}");
        // This test program is linked dynamically (Rust's default on Linux): its loader and
        // libc go into the Linux guest's initramfs at their paths.
        let dynamic = std::env::current_exe().unwrap();
        let extras = server_libraries(&dynamic).unwrap();
        let paths: Vec<String> = extras
            .iter()
            .filter_map(|e| match e {
                linux::Extra::File(p, _) => Some(p.clone()),
                linux::Extra::Symlink(..) => None,
            })
            .collect();
        assert!(paths.iter().any(|p| p.contains("libc.so.6")), "{paths:?}");
        assert!(
            paths.iter().any(|p| p.contains("ld-linux-x86-64")),
            "{paths:?}"
        );
        let stat = tmp.path().join("static");
        std::fs::write(&stat, b"not a program").unwrap();
        assert!(server_libraries(&stat).unwrap().is_empty());
        let opts = HttpOptions {
            loads: vec![],
            ..HttpOptions::default()
        };
        assert!(http(&layout, &opts).is_err());
    }
}
