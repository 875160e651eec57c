//! Kiln's command line: `cargo xtask` in this repository, and the installable `kiln` /
//! `cargo kiln` (the `cli` package), which carry the kernel's sources. Argument parsing and
//! progress only; the work is done by the `kiln-toolchain` library.
#![forbid(unsafe_code)]

mod instances;

use clap::{ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kiln_toolchain::app::AppSource;
use kiln_toolchain::disk::{self, Format};
use kiln_toolchain::image::{self, BuildRequest, NetChoice};
use kiln_toolchain::metadata::Defaults;
use kiln_toolchain::oci::publish::{self, ImageSource, PublishRequest};
use kiln_toolchain::oci::pull::{self, ImageArg, Policy, PullOptions};
use kiln_toolchain::oci::registry::{Credentials, PushOptions};
use kiln_toolchain::oci::ImageRef;
use kiln_toolchain::options::{self, FileSpec};
use kiln_toolchain::qemu::{self, Machine, ProgramOutput, RunOptions};
use kiln_toolchain::{bench, inspect, note, suite, Layout};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "Build and run Kiln unikernel images",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once per process: the size of the largest command's options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build a program into a bootable image; prints its path, size and sha256.
    BuildImage(BuildArgs),
    /// Build (if needed) and boot in QEMU; exits with the program's status.
    Run(RunArgs),
    /// Run the whole test suite (host, kernel unit, end-to-end).
    Test,
    /// Push an image to an OCI registry (or write an OCI layout); prints the digest.
    Publish(PublishArgs),
    /// Fetch an image that `publish` pushed into the cache, checking every digest and the
    /// image's own sha256; prints the digest.
    Pull(PullArgs),
    /// Print an instance's configuration and state (JSON), or the provenance of an image in
    /// any format Kiln writes.
    Inspect(instances::InspectArgs),
    /// List instances (`run -d`): running ones, or all with -a.
    Ps(instances::PsArgs),
    /// Print an instance's output: its stdout on stdout, its stderr on stderr.
    Logs(instances::LogsArgs),
    /// Stop instances: SIGTERM, then SIGKILL after the grace period.
    Stop(instances::StopArgs),
    /// Remove instances (running ones only with -f).
    Rm(instances::RmArgs),
    /// The supervisor of one instance (started by `run -d`).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The instance's directory.
        dir: PathBuf,
    },
    /// Print the accelerator runs use (`kvm` or `tcg`), probing KVM with the kernel first
    /// when the answer is not cached for this host boot, QEMU and kernel.
    Accel,
    /// Live figures of a running image (threads, memory, open files and sockets, system
    /// calls, network), read over its control channel.
    Stats(StatsArgs),
    /// Fuzz a parser that reads untrusted bytes (libFuzzer, stable Rust).
    Fuzz(FuzzArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Args, Debug)]
struct FuzzArgs {
    /// The target (see --list), or `all` for each in turn.
    #[arg(required_unless_present = "list")]
    target: Option<String>,
    /// List the targets and what each one feeds.
    #[arg(long)]
    list: bool,
    /// Seconds to fuzz each target.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    time: u64,
    /// Stop a target after this many executions, if sooner.
    #[arg(long, value_name = "N")]
    runs: Option<u64>,
    /// Write the counts to the fuzzing section of BENCHMARKS.md.
    #[arg(long)]
    record: bool,
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Boot time of the hello image against a do-nothing PVH image; writes BENCHMARKS.md.
    Boot {
        /// Boots per image and machine.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
    },
    /// A static HTTP server as a Kiln image against the same binary on a minimal Linux
    /// guest, over tap networking, under wrk (needs root); writes BENCHMARKS.md.
    Http(BenchHttpArgs),
    /// Debian's redis-server as a Kiln image against the same binary (with its libraries) on
    /// a minimal Linux guest, over tap networking, under redis-benchmark (needs root);
    /// writes BENCHMARKS.md.
    Redis(BenchRedisArgs),
    /// A CPU-bound two-thread program (examples/threads-hash) with one vCPU and with two,
    /// boots taking turns; writes BENCHMARKS.md.
    Smp(BenchSmpArgs),
    /// The HTTP example under constant load for minutes (`run -p` networking): failed
    /// requests (must be 0) and the kernel's memory use before and after (must be flat);
    /// writes BENCHMARKS.md.
    Soak(BenchSoakArgs),
}

#[derive(Args, Debug)]
struct BenchSmpArgs {
    /// Boots per CPU count.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Rounds each thread hashes.
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// The larger CPU count, compared with one (also the number of hashing threads).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=8))]
    cpus: u32,
}

#[derive(Args, Debug)]
struct BenchSoakArgs {
    /// Minutes of load.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1440))]
    minutes: u32,
    /// Open connections (one client thread each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,
    /// Guest memory: 256M, 1G, or a number of MiB.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_memory)]
    memory: u64,
}

#[derive(Args, Debug)]
struct BenchRedisArgs {
    /// Requests per command (redis-benchmark -n).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    requests: u32,
    /// Parallel connections (redis-benchmark -c).
    #[arg(short = 'c', long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10000))]
    clients: u32,
    /// Commands per pipeline in the pipelined runs (redis-benchmark -P); the runs without
    /// pipelining are always measured too.
    #[arg(short = 'P', long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=10000))]
    pipeline: u32,
    /// How many times each redis-benchmark run is repeated on each side's boot (the runs
    /// alternate; the report gives the median).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Guest memory for the measured runs: 256M, 1G, or a number of MiB.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_memory)]
    memory: u64,
    /// Skip the search for the smallest memory that serves.
    #[arg(long)]
    no_memory_search: bool,
}

#[derive(Args, Debug)]
struct BenchHttpArgs {
    /// Seconds of each measured load, on each side.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    duration: u32,
    /// Open connections (wrk -c), a comma-separated list: each count is measured with
    /// keep-alive, and the first also with a new connection per request.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        default_value = "16,256",
        value_parser = clap::value_parser!(u32).range(1..=10000)
    )]
    connections: Vec<u32>,
    /// wrk's --timeout: seconds after which a request without an answer counts as failed.
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=3600))]
    wrk_timeout: u32,
    /// Boots per side for the QEMU-start-to-first-response time.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Guest memory for the measured runs: 256M, 1G, or a number of MiB.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_memory)]
    memory: u64,
    /// Skip the search for the smallest memory that serves.
    #[arg(long)]
    no_memory_search: bool,
    /// Virtual CPUs of each guest (Kiln's and Linux's); more than one writes a section of
    /// its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    cpus: u32,
    /// The server: an example that serves HTTP on $PORT.
    #[arg(long, value_name = "NAME", default_value = "http-hello")]
    example: String,
    /// The server: a prebuilt ELF that serves HTTP on $PORT (8080), instead of an example
    /// (dynamically linked: its loader and libraries go to both sides).
    #[arg(long, value_name = "FILE", conflicts_with = "example")]
    elf: Option<PathBuf>,
    /// Put a host file or directory at DEST on both sides (the server's configuration, its
    /// pages): in the Kiln image's root filesystem and the Linux guest's initramfs.
    #[arg(long = "file", value_name = "SRC:DEST", value_parser = parse_file)]
    files: Vec<FileSpec>,
    /// Arguments for the server (after `--`), the same for Kiln and the Linux guest.
    #[arg(last = true, value_name = "ARGS")]
    server_args: Vec<String>,
}

/// Which program to build, and what to put with it.
#[derive(Args, Debug)]
struct ImageArgs {
    /// Build examples/NAME (a Rust package, C files, or a Go module built static).
    #[arg(long, value_name = "NAME")]
    example: Option<String>,
    /// Build the Rust package at PATH (its Cargo.toml).
    #[arg(long, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
    /// The binary to build, when the package has several.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["example", "elf"])]
    bin: Option<String>,
    /// Use a prebuilt x86_64 program (static, or dynamically linked: its libraries are packed).
    #[arg(long, value_name = "FILE")]
    elf: Option<PathBuf>,
    /// A directory tree to use as the root filesystem.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Put a host file or directory at DEST (absolute) in the root filesystem.
    #[arg(long = "file", value_name = "SRC:DEST", value_parser = parse_file)]
    files: Vec<FileSpec>,
    /// For a dynamically linked program: pack one more library (a name such as libssl.so.3,
    /// searched as the dynamic loader would, or a path) with its dependencies.
    #[arg(long = "lib", value_name = "NAME_OR_PATH")]
    libs: Vec<String>,
    /// Link the Rust or C program dynamically against glibc (instead of statically) and
    /// pack its libraries.
    #[arg(long, conflicts_with = "elf")]
    dynamic: bool,
    /// Bake an environment variable into the image.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Bake an argument into the image (repeat for several).
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    args: Vec<String>,
    /// Where to write the image (default target/kiln/images/NAME.elf).
    #[arg(short = 'o', value_name = "OUT")]
    output: Option<PathBuf>,
    /// Accepted for familiarity: programs and the kernel are always built in release mode.
    #[arg(long)]
    release: bool,
    /// Leave the kernel's network stack out (socket(AF_INET) then fails with
    /// EAFNOSUPPORT). Without it, the stack is left out only when the program's symbol
    /// table shows no socket functions.
    #[arg(long)]
    no_net: bool,
    /// Build the program profiler into the kernel, for `run IMAGE --profile` later (about
    /// 25 KB; `run --profile` with a program to build puts it in by itself).
    #[arg(long)]
    with_profiler: bool,
    /// Build host volumes into the kernel, for `run IMAGE -v` later (about 33 KB; `run -v`
    /// with a program to build puts them in by itself).
    #[arg(long)]
    with_volumes: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").args(["example", "manifest_path", "elf", "image_file"])))]
struct BuildArgs {
    #[command(flatten)]
    image: ImageArgs,
    /// Output format: pvh (ELF), efi (PE32+ application), raw (GPT disk), qcow2, vmdk,
    /// vhd (fixed, Azure) or gce (tar.gz).
    /// (Default: the project's `[package.metadata.kiln] format`, else pvh.)
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    format: Option<Format>,
    /// Convert an existing image (PVH .elf or Kiln .efi) instead of building one.
    #[arg(long = "image", value_name = "IMG", conflicts_with_all = ["rootfs", "files", "libs", "dynamic", "env", "args", "bin"])]
    image_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["example", "manifest_path", "elf", "image_file", "disk"])))]
#[command(group(ArgGroup::new("dest").required(true).multiple(true).args(["oci", "oci_dir"])))]
struct PublishArgs {
    #[command(flatten)]
    build: ImageArgs,
    /// Publish an existing PVH image instead of building one.
    #[arg(long = "image", value_name = "IMG", conflicts_with_all = ["example", "manifest_path", "elf", "rootfs", "files", "libs", "dynamic", "env", "args", "output", "bin"])]
    image_file: Option<PathBuf>,
    /// Push to this registry reference (the tag is required; it is never overwritten without --force).
    #[arg(long, value_name = "REGISTRY/REPO:TAG", value_parser = parse_ref)]
    oci: Option<ImageRef>,
    /// Write an OCI image layout to DIR.
    #[arg(long, value_name = "DIR")]
    oci_dir: Option<PathBuf>,
    /// Publish a KubeVirt containerDisk (the disk under /disk/, uid/gid 107) instead.
    #[arg(long)]
    kubevirt: bool,
    /// The qcow2 (or raw) disk for --kubevirt, from `build-image --format qcow2`.
    #[arg(long, value_name = "FILE", requires = "kubevirt")]
    disk: Option<PathBuf>,
    /// Write a KubeVirt VirtualMachine manifest referencing the pushed containerDisk.
    #[arg(long, value_name = "FILE", requires_all = ["kubevirt", "oci"])]
    kubevirt_manifest: Option<PathBuf>,
    /// Memory request in the VirtualMachine manifest (default 128M).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// Replace an existing tag (or a non-empty --oci-dir).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// How to reach a registry (`publish`, `pull`, `run REF`).
#[derive(Args, Debug)]
struct RegistryArgs {
    /// Allow plain HTTP to a registry that is not on this machine.
    #[arg(long)]
    insecure: bool,
    /// Registry user name (or KILN_REGISTRY_USERNAME, or docker's config.json).
    #[arg(long, value_name = "USER", requires = "password")]
    username: Option<String>,
    /// Registry password or token (or KILN_REGISTRY_PASSWORD).
    #[arg(long, value_name = "PASSWORD", requires = "username")]
    password: Option<String>,
}

impl RegistryArgs {
    fn credentials(&self) -> Option<Credentials> {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(Args, Debug)]
struct PullArgs {
    /// REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST.
    #[arg(value_name = "REF", value_parser = parse_pull_ref)]
    reference: kiln_toolchain::oci::reference::PullRef,
    /// Print only the reference, pinned to its digest.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct StatsArgs {
    /// A running instance (`run -d`).
    #[arg(
        value_name = "NAME",
        required_unless_present = "socket",
        conflicts_with = "socket"
    )]
    name: Option<String>,
    /// The control socket of a `run --control-socket PATH` instead.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// One snapshot as JSON.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// One snapshot in Prometheus's text format.
    #[arg(long)]
    prometheus: bool,
    /// One page of text instead of refreshing every second.
    #[arg(long)]
    no_stream: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MachineArg {
    Microvm,
    Q35,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").args(["example", "manifest_path", "elf", "image_file", "image"])))]
struct RunArgs {
    /// An image file, or an image in a registry (REGISTRY/REPO:TAG or
    /// REGISTRY/REPO@sha256:DIGEST, as `publish` pushed it): the same as --image.
    #[arg(value_name = "IMAGE", conflicts_with_all = ["rootfs", "files", "libs", "dynamic", "env", "args", "output", "bin"])]
    image: Option<String>,
    #[command(flatten)]
    build: ImageArgs,
    /// Boot an existing image instead of building one: a file, or a registry reference.
    #[arg(long = "image", value_name = "IMG|REF", conflicts_with_all = ["rootfs", "files", "libs", "dynamic", "env", "args", "output", "bin"])]
    image_file: Option<PathBuf>,
    /// Run in the background as an instance and print its name (see ps, logs, stop, rm).
    #[arg(short = 'd', long)]
    detach: bool,
    /// Pass standard input to the program, as docker's -i: the default of every foreground
    /// run, accepted for the habit.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// docker's -t (a terminal for the program): refused, the image has no terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// With -d: the instance's name (default: a generated adjective_surname).
    #[arg(long, value_name = "NAME", requires = "detach")]
    name: Option<String>,
    /// With -d: remove the instance when it exits (a foreground run never leaves anything).
    #[arg(long)]
    rm: bool,
    /// With -d: restart the program when it exits: no, on-failure[:N], always, unless-stopped.
    #[arg(long, value_name = "POLICY", requires = "detach", value_parser = instances::parse_restart)]
    restart: Option<kiln_toolchain::instance::state::RestartPolicy>,
    /// For a registry reference: `missing` uses the cache when it has the image (by digest,
    /// or the digest the tag resolved to when last pulled), `always` asks the registry,
    /// `never` only the cache.
    #[arg(long, value_name = "WHEN", default_value = "missing", value_parser = parse_policy)]
    pull: Policy,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The machine to boot on.
    #[arg(long, value_enum, default_value = "microvm")]
    machine: MachineArg,
    /// Guest memory: 16M, 1G, or a number of MiB (default 128M).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// Virtual CPUs: the program's threads run on up to N at once (1 to 8, default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=8))]
    cpus: Option<u32>,
    /// Set an environment variable for this run (overrides the image's).
    #[arg(short = 'e', value_name = "K=V", value_parser = parse_env)]
    run_env: Vec<(String, String)>,
    /// Stop QEMU after this many seconds and exit 124 (default: no limit).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Show the kernel log and QEMU's messages on stderr.
    #[arg(long)]
    verbose: bool,
    /// Forward a host port to the guest (repeatable; TCP unless `/udp`).
    #[arg(short = 'p', long = "publish", value_name = "HOSTPORT:GUESTPORT[/udp]")]
    publish: Vec<kiln_toolchain::qemu::args::PortForward>,
    /// Mount a host directory in the guest (repeatable; read-only with `:ro`).
    #[arg(short = 'v', long = "volume", value_name = "HOSTDIR:/GUEST[:ro]")]
    volume: Vec<String>,
    /// Network backend: `user` (QEMU user networking, the default), `tap:NAME` or `none`.
    #[arg(long = "net", value_name = "BACKEND", default_value = "user")]
    net: kiln_toolchain::qemu::args::NetBackend,
    /// Static guest address instead of DHCP, such as 10.0.2.15/24.
    #[arg(long, value_name = "A.B.C.D/N", value_parser = parse_cidr)]
    ip: Option<([u8; 4], u8)>,
    /// Default gateway (with --ip).
    #[arg(long, value_name = "A.B.C.D", value_parser = parse_ip)]
    gateway: Option<[u8; 4]>,
    /// DNS server for the guest's /etc/resolv.conf (repeatable).
    #[arg(long, value_name = "A.B.C.D", value_parser = parse_ip)]
    dns: Vec<[u8; 4]>,
    /// Write every frame the network card sends and receives to FILE (pcap, for
    /// `tcpdump -r` and Wireshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Start QEMU's gdb stub on 127.0.0.1:PORT (default 1234) and print the gdb command that
    /// loads the program's and the kernel's symbols.
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "1234")]
    gdb: Option<u16>,
    /// With --gdb: hold the guest before its first instruction until gdb continues it.
    #[arg(long, requires = "gdb")]
    gdb_wait: bool,
    /// When the program dies of a signal that dumps core, write an ELF core file (for
    /// `gdb PROGRAM FILE`) to FILE, with the program beside it as FILE.elf.
    #[arg(long, value_name = "FILE", conflicts_with = "core_dir")]
    core: Option<PathBuf>,
    /// Like --core, in DIR as core.NAME.SECONDS.
    #[arg(long, value_name = "DIR")]
    core_dir: Option<PathBuf>,
    /// Trace system calls as strace does, on stderr: `--trace` for all of them,
    /// `--trace=open,read,network` for some (names and the classes file, network, memory,
    /// signal, process), `--trace=summary` for strace -c's table.
    #[arg(long, value_name = "SPEC", num_args = 0..=1, require_equals = true, default_missing_value = "all", value_parser = parse_trace)]
    trace: Option<kiln_toolchain::trace::Mode>,
    /// With --trace: the time since boot before each call and its duration after it.
    #[arg(long, requires = "trace")]
    trace_time: bool,
    /// With --trace: write the trace to FILE instead of stderr.
    #[arg(long, value_name = "FILE", requires = "trace")]
    trace_file: Option<PathBuf>,
    /// Sample where the program spends its time and write a flame graph (SVG) to FILE.
    #[arg(long, value_name = "FILE.svg")]
    profile: Option<PathBuf>,
    /// Write the profile's folded stacks (`a;b;c COUNT` lines) to FILE.
    #[arg(long, value_name = "FILE")]
    profile_folded: Option<PathBuf>,
    /// Samples per second for --profile / --profile-folded (default 997).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..=10000))]
    profile_hz: Option<u32>,
    /// Sample where the kernel spends its time (its own stacks, read from outside through
    /// QEMU's monitor) and write a flame graph (SVG) to FILE.
    #[arg(long, value_name = "FILE.svg", conflicts_with = "gdb")]
    profile_kernel: Option<PathBuf>,
    /// Write the kernel profile's folded stacks (`a;b;c COUNT` lines) to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "gdb")]
    profile_kernel_folded: Option<PathBuf>,
    /// Most kernel samples per second for --profile-kernel / --profile-kernel-folded
    /// (default 200; each stops the guest for a few milliseconds).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..=1000))]
    profile_kernel_hz: Option<u32>,
    /// Serve the kernel's control channel on this Unix socket, for `stats --socket PATH`.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Seconds a stop (Ctrl-C, SIGTERM) gives the program after pressing the virtual
    /// machine's power button (the program gets SIGTERM) before stopping it hard (137).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    stop_timeout: u64,
    /// Largest core file, like `ulimit -c`: 512K, 64M, 1G, or a number of MiB (default 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_core_limit)]
    core_limit: Option<u64>,
    /// Arguments for the program (replace the image's).
    #[arg(last = true, value_name = "ARGS")]
    program_args: Vec<String>,
}

fn parse_file(s: &str) -> Result<FileSpec, String> {
    options::parse_file_spec(s).map_err(|e| e.0)
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    options::parse_env(s).map_err(|e| e.0)
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_ip(s: &str) -> Result<[u8; 4], String> {
    kiln_toolchain::qemu::args::parse_ipv4(s).ok_or_else(|| format!("`{s}` is not an IPv4 address"))
}

fn parse_cidr(s: &str) -> Result<([u8; 4], u8), String> {
    kiln_toolchain::qemu::args::parse_ipv4_cidr(s)
        .ok_or_else(|| format!("`{s}`: expected an IPv4 address and prefix, such as 10.0.2.15/24"))
}

/// Writes what `--profile` and `--profile-folded` asked for from the run's samples.
fn profile_outputs(image: &std::path::Path, a: &RunArgs, records: &[u8]) -> anyhow::Result<()> {
    use kiln_toolchain::debug::{self, profile};
    let bytes = debug::pvh_image(image)?;
    let program = debug::program_in_image(&bytes)?;
    let bias = debug::gdb::load_bias(program)?;
    // After an `execve` the samples are the new program's, a file of the image (or the
    // image's program itself, which the root filesystem's archive does not hold).
    let file = |path: &str| {
        debug::file_in_image(&bytes, path)
            .ok()
            .flatten()
            .or_else(|| Some(program.to_vec()))
    };
    let stacks = profile::folded(program, bias, records, &file);
    let samples: u64 = stacks.values().sum();
    if samples == 0 {
        note!("the profile has no samples: the kernel sends them when the program exits, and this one did not (stopped or timed out?)");
    }
    if let Some(f) = &a.profile_folded {
        std::fs::write(f, profile::folded_text(&stacks))
            .map_err(|e| anyhow::anyhow!("could not write {}: {e}", f.display()))?;
        note!("wrote {} ({samples} samples, folded stacks)", f.display());
    }
    if let Some(f) = &a.profile {
        let title = format!("{} ({samples} samples)", image.display());
        std::fs::write(f, profile::flame_graph(&stacks, &title)?)
            .map_err(|e| anyhow::anyhow!("could not write {}: {e}", f.display()))?;
        note!("wrote flame graph {} ({samples} samples)", f.display());
    }
    Ok(())
}

/// Writes what `--profile-kernel` and `--profile-kernel-folded` asked for from the kernel
/// profiler's samples, named from the build tree's kernel ELF when the image was linked
/// with it.
fn kernel_profile_outputs(
    image: &std::path::Path,
    kernel: &std::path::Path,
    a: &RunArgs,
    samples: Option<&kiln_toolchain::qemu::kprof::Samples>,
) -> anyhow::Result<()> {
    use kiln_toolchain::debug::{self, profile};
    let empty = kiln_toolchain::qemu::kprof::Samples::default();
    let samples = samples.unwrap_or(&empty);
    if let Some(why) = &samples.ended {
        note!("the kernel profiler stopped sampling early: {why}");
    }
    let elf = debug::pvh_image(image)
        .ok()
        .and_then(|b| debug::kernel_of_image(&b, kernel))
        .and_then(|p| std::fs::read(p).ok());
    if elf.is_none() {
        note!("the kernel this image was linked with is not in the build tree: the kernel profile has addresses only");
    }
    let stacks = profile::kernel_folded(elf.as_deref().unwrap_or_default(), samples);
    let total = samples.total();
    let held = if samples.span.is_zero() {
        0.0
    } else {
        100.0 * samples.held.as_secs_f64() / samples.span.as_secs_f64()
    };
    let idle = match samples.halted {
        0 => String::new(),
        n => format!(" ({n} of them idle)"),
    };
    let firmware = match samples.firmware {
        0 => String::new(),
        n => format!(", {n} in the firmware"),
    };
    let rate = if samples.span.is_zero() {
        0.0
    } else {
        total as f64 / samples.span.as_secs_f64()
    };
    let summary = format!(
        "{total} samples: {} in the kernel{idle}, {} in user mode{firmware}; {rate:.0} a second, holding the guest {held:.0}% of the time",
        samples.in_kernel(),
        samples.user,
    );
    if total == 0 {
        note!("the kernel profile has no samples (did the program end at once?)");
    }
    if let Some(f) = &a.profile_kernel_folded {
        std::fs::write(f, profile::folded_text(&stacks))
            .map_err(|e| anyhow::anyhow!("could not write {}: {e}", f.display()))?;
        note!("wrote {} (kernel profile, {summary})", f.display());
    }
    if let Some(f) = &a.profile_kernel {
        let title = format!("kernel: {} ({total} samples)", image.display());
        std::fs::write(f, profile::flame_graph(&stacks, &title)?)
            .map_err(|e| anyhow::anyhow!("could not write {}: {e}", f.display()))?;
        note!("wrote kernel flame graph {} ({summary})", f.display());
    }
    Ok(())
}

/// `stats`: one snapshot (JSON, Prometheus, `--no-stream`) or a page refreshed every
/// second until Ctrl-C or the image ends.
fn stats_cmd(a: &StatsArgs) -> anyhow::Result<()> {
    use kiln_toolchain::control;
    let (name, socket) = match (&a.name, &a.socket) {
        (_, Some(s)) => (s.display().to_string(), s.clone()),
        (Some(n), None) => {
            let store = kiln_toolchain::instance::Store::from_env()?;
            let inst = store.open(n)?;
            if inst.phase() != kiln_toolchain::instance::state::Phase::Running {
                anyhow::bail!("instance {n} is not running (see `ps -a`)");
            }
            (n.clone(), inst.control_socket())
        }
        (None, None) => anyhow::bail!("name an instance, or give --socket PATH"),
    };
    let first = control::fetch(&socket)?;
    if a.json {
        println!("{}", control::render_json(&name, &first));
        return Ok(());
    }
    if a.prometheus {
        print!("{}", control::render_prometheus(&name, &first));
        return Ok(());
    }
    if a.no_stream {
        print!("{}", control::render_text(&name, &first, None));
        return Ok(());
    }
    let mut before = first;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Ok(now) = control::fetch(&socket) else {
            note!("the image is gone");
            return Ok(());
        };
        // Clear the screen and draw the page again, as `top` does.
        print!(
            "\x1b[H\x1b[2J{}",
            control::render_text(&name, &now, Some(&before))
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        before = now;
    }
}

fn parse_trace(s: &str) -> Result<kiln_toolchain::trace::Mode, String> {
    kiln_toolchain::trace::Mode::parse(s)
}

fn parse_core_limit(s: &str) -> Result<u64, String> {
    options::parse_core_limit(s).map_err(|e| e.0)
}

fn parse_memory(s: &str) -> Result<u64, String> {
    options::parse_memory(s).map_err(|e| e.0)
}

fn parse_ref(s: &str) -> Result<ImageRef, String> {
    ImageRef::parse(s)
}

fn parse_pull_ref(s: &str) -> Result<kiln_toolchain::oci::reference::PullRef, String> {
    kiln_toolchain::oci::reference::PullRef::parse(s)
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse()
}

/// Where the sources and outputs are: the checkout this was built from while it exists
/// (`cargo xtask`, or `kiln` run from a checkout); otherwise, for an installed binary, the
/// sources it carries, unpacked into the user's cache, with outputs in the current
/// project's `target/kiln`.
fn layout(sources: Option<&kiln_toolchain::sources::Embedded>) -> anyhow::Result<Layout> {
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let checkout = xtask.parent().map(PathBuf::from).unwrap_or(xtask);
    match sources {
        Some(s) if !checkout.join("kernel/Cargo.toml").is_file() => {
            let root = s.unpack()?;
            Ok(Layout::new(root).with_work(kiln_toolchain::sources::work_dir()?))
        }
        _ => Ok(Layout::new(checkout)),
    }
}

/// The name to show and the arguments to parse: `cargo kiln ARGS` runs `cargo-kiln kiln
/// ARGS`, whose `kiln` is cargo's, not a subcommand.
fn invocation() -> (&'static str, Vec<std::ffi::OsString>) {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let exe = args
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    match exe.as_str() {
        "cargo-kiln" => {
            if args.get(1).is_some_and(|a| a == "kiln") {
                args.remove(1);
            }
            ("cargo kiln", args)
        }
        "kiln" => ("kiln", args),
        _ => ("cargo xtask", args),
    }
}

/// What to build, with the defaults of the project it comes from (`[package.metadata.kiln]`,
/// see `kiln_toolchain::metadata`) applied under the flags. With no program named, the
/// Rust package around the current directory.
fn request(a: &ImageArgs) -> anyhow::Result<(BuildRequest, Defaults)> {
    let manifest = |path: PathBuf| -> anyhow::Result<(AppSource, Defaults)> {
        let d = kiln_toolchain::metadata::read(&path)?;
        let source = AppSource::Manifest {
            path,
            bin: a.bin.clone(),
        };
        Ok((source, d))
    };
    let (source, d) = match (&a.example, &a.manifest_path, &a.elf) {
        (Some(n), _, _) => (AppSource::Example(n.clone()), Defaults::default()),
        (_, Some(p), _) => manifest(p.clone())?,
        (_, _, Some(f)) => (AppSource::Elf(f.clone()), Defaults::default()),
        _ => {
            let cwd = std::env::current_dir()?;
            match kiln_toolchain::metadata::package_manifest(&cwd) {
                Some(m) => manifest(m)?,
                None => anyhow::bail!(
                    "no program to build: run this inside a Rust package, or name one with --example NAME, --manifest-path PATH, --elf FILE or --image IMG"
                ),
            }
        }
    };
    let mut env = d.env.clone();
    for (k, v) in &a.env {
        env.retain(|(old, _)| old != k);
        env.push((k.clone(), v.clone()));
    }
    let mut files = d
        .files
        .iter()
        .map(|f| parse_file(f).map_err(|e| anyhow::anyhow!("[package.metadata.kiln] files: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    files.extend(a.files.iter().cloned());
    let req = BuildRequest {
        source,
        rootfs_dir: a.rootfs.clone(),
        files,
        libs: d.libs.iter().chain(&a.libs).cloned().collect(),
        dynamic: a.dynamic || d.dynamic,
        env,
        args: if a.args.is_empty() {
            d.args.clone()
        } else {
            a.args.clone()
        },
        output: a.output.clone(),
        net: if a.no_net {
            NetChoice::Off
        } else {
            NetChoice::Auto
        },
        profiler: a.with_profiler,
        volumes: a.with_volumes,
    };
    Ok((req, d))
}

/// `run`'s own defaults from a project's `[package.metadata.kiln]`.
#[derive(Debug, Default)]
struct RunDefaults {
    /// `memory`, in MiB.
    memory: Option<u64>,
    /// `ports`, parsed, and as written (for a detached instance's runner).
    ports: Vec<(kiln_toolchain::qemu::args::PortForward, String)>,
}

impl RunDefaults {
    fn from(d: &Defaults) -> anyhow::Result<RunDefaults> {
        let memory = d
            .memory
            .as_deref()
            .map(|m| {
                parse_memory(m).map_err(|e| anyhow::anyhow!("[package.metadata.kiln] memory: {e}"))
            })
            .transpose()?;
        let ports = d
            .ports
            .iter()
            .map(|p| {
                p.parse()
                    .map(|f| (f, p.clone()))
                    .map_err(|e| anyhow::anyhow!("[package.metadata.kiln] ports: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(RunDefaults { memory, ports })
    }

    /// The guest memory: the flag's, else the project's.
    fn memory(&self, a: &RunArgs) -> Option<u64> {
        a.memory.or(self.memory)
    }

    /// The port forwards: the flags', else the project's.
    fn ports(&self, a: &RunArgs) -> Vec<kiln_toolchain::qemu::args::PortForward> {
        if a.publish.is_empty() {
            self.ports.iter().map(|(p, _)| *p).collect()
        } else {
            a.publish.clone()
        }
    }
}

fn publish_request(a: &PublishArgs) -> anyhow::Result<PublishRequest> {
    let source = if let Some(i) = &a.image_file {
        ImageSource::File(i.clone())
    } else if a.build.example.is_some() || a.build.manifest_path.is_some() || a.build.elf.is_some()
    {
        ImageSource::Build(request(&a.build)?.0)
    } else {
        ImageSource::DiskOnly
    };
    Ok(PublishRequest {
        source,
        oci: a.oci.clone(),
        oci_dir: a.oci_dir.clone(),
        kubevirt: a.kubevirt,
        disk: a.disk.clone(),
        kubevirt_manifest: a.kubevirt_manifest.clone(),
        memory_mib: a.memory.unwrap_or(128),
        push: PushOptions {
            insecure: a.registry.insecure,
            force: a.force,
            credentials: a.registry.credentials(),
        },
    })
}

fn publish_cmd(layout: &Layout, a: &PublishArgs) -> anyhow::Result<()> {
    let p = publish::publish(layout, &publish_request(a)?)?;
    if let Some(dir) = &p.oci_dir {
        note!("wrote OCI layout {}", dir.display());
    }
    if let Some(r) = &p.pushed {
        println!("pushed: {r}");
    }
    if let Some(m) = &p.kubevirt_manifest {
        note!("wrote VirtualMachine manifest {}", m.display());
    }
    println!("digest: {}", p.digest);
    Ok(())
}

fn pull_cmd(a: &PullArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let opts = PullOptions {
        policy: Policy::Always,
        insecure: a.registry.insecure,
        credentials: a.registry.credentials(),
    };
    let (mut stdout, mut sink) = (std::io::stdout(), std::io::sink());
    let mut progress = pull::Progress {
        tty: !a.quiet && std::io::stdout().is_terminal(),
        out: if a.quiet { &mut sink } else { &mut stdout },
    };
    let cache = kiln_toolchain::oci::cache::Cache::from_env()?;
    let p = pull::pull(&cache, &a.reference, &opts, &mut progress)?;
    match a.quiet {
        true => println!("{}", a.reference.pinned(&p.entry.info.digest)),
        false => println!("{}", a.reference),
    }
    Ok(())
}

/// `inspect IMAGE`: the image's provenance.
fn inspect_image(image: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let i = inspect::inspect(image)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&i.provenance)?);
    } else {
        print!("{}", inspect::summary(image, &i));
    }
    if !i.verified {
        anyhow::bail!(
            "{}: the image's bytes do not match its recorded image_sha256",
            image.display()
        );
    }
    Ok(())
}

fn build_image(layout: &Layout, a: &BuildArgs) -> anyhow::Result<()> {
    let (img, format) = match &a.image_file {
        Some(existing) => {
            let format = a.format.unwrap_or(Format::Pvh);
            let img = disk::convert_image(layout, existing, format, a.image.output.clone())?;
            (img, format)
        }
        None => {
            let (req, d) = request(&a.image)?;
            let format = match (a.format, &d.format) {
                (Some(f), _) => f,
                (None, Some(f)) => parse_format(f)
                    .map_err(|e| anyhow::anyhow!("[package.metadata.kiln] format: {e}"))?,
                (None, None) => Format::Pvh,
            };
            (disk::build_image(layout, &req, format)?, format)
        }
    };
    println!("{}", img.path.display());
    println!("size: {} bytes", img.size);
    println!("sha256: {}", img.sha256);
    if format == Format::Pvh {
        if let Some(mib) = image::min_memory_mib(&std::fs::read(&img.path)?) {
            println!("memory: at least {mib} MiB");
        }
    }
    Ok(())
}

fn machine(a: &RunArgs) -> Machine {
    match a.machine {
        MachineArg::Microvm => Machine::Microvm,
        MachineArg::Q35 => Machine::Q35,
    }
}

/// What `run` can refuse before it builds or boots anything.
fn check_run_args(a: &RunArgs) -> anyhow::Result<()> {
    // Output files fail now, not after the program has run.
    for (flag, file) in [
        ("--profile", &a.profile),
        ("--profile-folded", &a.profile_folded),
        ("--profile-kernel", &a.profile_kernel),
        ("--profile-kernel-folded", &a.profile_kernel_folded),
    ] {
        if let Some(f) = file {
            std::fs::File::create(f).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write {flag} {}: {e} (give a path in an existing, writable directory)",
                    f.display()
                )
            })?;
        }
    }
    kiln_toolchain::qemu::volume::parse_all(&a.volume).map_err(anyhow::Error::msg)?;
    if a.tty {
        anyhow::bail!("-t: the image has no terminal to give the program (its standard input and output are pipes to `run`'s); drop -t: standard input reaches the program without it");
    }
    if a.interactive && a.detach {
        anyhow::bail!("-i with -d: a detached instance has no standard input (its output is in `logs`); drop one of them");
    }
    if a.pcap.is_some() && matches!(a.net, kiln_toolchain::qemu::args::NetBackend::None) {
        anyhow::bail!("--pcap records the network card's frames, and --net none has no card");
    }
    Ok(())
}

/// The image `run` boots: a file, an image pulled from a registry (progress on stderr), or
/// one built now, with the run defaults of the project it was built from.
fn run_image(layout: &Layout, a: &RunArgs) -> anyhow::Result<(PathBuf, RunDefaults)> {
    use std::io::IsTerminal;
    let given = a.image.clone().or_else(|| {
        a.image_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
    });
    if let Some(given) = given {
        let path = match pull::classify(&given).map_err(anyhow::Error::msg)? {
            ImageArg::File(p) => p,
            ImageArg::Remote(r) => {
                let opts = PullOptions {
                    policy: a.pull,
                    insecure: a.registry.insecure,
                    credentials: a.registry.credentials(),
                };
                let mut stderr = std::io::stderr();
                let mut progress = pull::Progress {
                    tty: stderr.is_terminal(),
                    out: &mut stderr,
                };
                let cache = kiln_toolchain::oci::cache::Cache::from_env()?;
                pull::pull(&cache, &r, &opts, &mut progress)?.entry.image()
            }
        };
        return Ok((path, RunDefaults::default()));
    }
    let (mut req, d) = request(&a.build)?;
    // The kernel samples the program only when it has the profiler.
    req.profiler |= a.profile.is_some() || a.profile_folded.is_some();
    // And mounts host directories only when it has volumes.
    req.volumes |= !a.volume.is_empty();
    let defaults = RunDefaults::from(&d)?;
    let img = image::build_image(layout, &req)?;
    note!(
        "image {} ({} bytes, sha256 {})",
        layout.display(&img.path),
        img.size,
        &img.sha256[..16]
    );
    Ok((img.path, defaults))
}

fn run(layout: &Layout, a: &RunArgs) -> anyhow::Result<u8> {
    let machine = machine(a);
    check_run_args(a)?;
    let (image, defaults) = run_image(layout, a)?;
    let (qemu_bin, accel) = qemu::prepare(layout, machine)?;
    let gdb = match a.gdb {
        Some(port) => {
            let dir = layout.kiln_dir().join("gdb");
            let setup =
                kiln_toolchain::debug::gdb::prepare(&image, &layout.kernel_elf(), &dir, port)?;
            if setup.kernel.is_none() {
                note!("the kernel this image was linked with is not in the build tree: gdb gets the program's symbols only");
            }
            note!(
                "gdb stub on 127.0.0.1:{port}{}; debug with: {}",
                if a.gdb_wait {
                    " (the guest waits for gdb to continue it)"
                } else {
                    ""
                },
                setup.command()
            );
            Some(kiln_toolchain::qemu::args::GdbStub {
                port,
                wait: a.gdb_wait,
            })
        }
        None => None,
    };
    let opts = RunOptions {
        machine,
        memory_mib: defaults.memory(a),
        cpus: a.cpus,
        env: a.run_env.clone(),
        argv: (!a.program_args.is_empty()).then(|| a.program_args.clone()),
        verbose: a.verbose,
        net: kiln_toolchain::qemu::args::NetOptions {
            backend: a.net.clone(),
            forwards: defaults.ports(a),
            config: kiln_toolchain::qemu::args::NetConfig {
                ip: a.ip,
                gateway: a.gateway,
                dns: a.dns.clone(),
            },
            pcap: a.pcap.clone(),
        },
        gdb,
        core_limit: (a.core.is_some() || a.core_dir.is_some())
            .then(|| a.core_limit.unwrap_or(1 << 30)),
        trace: a.trace.is_some(),
        profile_hz: (a.profile.is_some() || a.profile_folded.is_some())
            .then(|| a.profile_hz.unwrap_or(997)),
        kernel_profile_hz: (a.profile_kernel.is_some() || a.profile_kernel_folded.is_some())
            .then(|| a.profile_kernel_hz.unwrap_or(200)),
        stop_timeout: std::time::Duration::from_secs(a.stop_timeout),
        control_socket: a.control_socket.clone(),
        records_file: None,
        volumes: kiln_toolchain::qemu::volume::parse_all(&a.volume).map_err(anyhow::Error::msg)?,
        stdin: true,
        // Decided from the image when it runs (`qemu::run`).
        console_virtio: false,
        stdin_virtio: false,
    };
    if !opts.net.forwards.is_empty()
        && std::fs::read(&image)
            .ok()
            .and_then(|b| image::kernel_has_network(&b))
            == Some(false)
    {
        note!("this image's kernel has no network stack (built with --no-net, or for a program without socket functions): the forwarded ports reach nothing");
    }
    // A trace follows the records file while the image runs.
    let records_dir = tempfile::tempdir()?;
    let mut opts = opts;
    let follower = match &a.trace {
        Some(mode) => {
            let path = records_dir.path().join("records");
            opts.records_file = Some(path.clone());
            let out: Box<dyn std::io::Write + Send> = match &a.trace_file {
                Some(f) => Box::new(std::fs::File::create(f).map_err(|e| {
                    anyhow::anyhow!("could not create the trace file {}: {e}", f.display())
                })?),
                None => Box::new(std::io::stderr()),
            };
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let tracer = kiln_toolchain::trace::Tracer::new(mode.clone(), a.trace_time, out);
            Some((
                done.clone(),
                kiln_toolchain::trace::follow(&path, done, tracer),
            ))
        }
        None => None,
    };
    let r = qemu::run(
        &qemu_bin,
        &accel,
        &image,
        &opts,
        a.timeout.map(Duration::from_secs),
        ProgramOutput::Inherit,
    )?;
    if let Some((done, handle)) = follower {
        done.store(true, std::sync::atomic::Ordering::Release);
        let _ = handle.join();
    }
    for line in kiln_toolchain::debug::explain_records(&image, &layout.kernel_elf(), &r.records) {
        note!("{line}");
    }
    // A packaging aid: what the program looked for and did not find, when it failed (or
    // when asked to say more).
    if r.outcome.status != 0 || a.verbose || a.trace.is_some() {
        let limit = (!a.verbose).then_some(kiln_toolchain::trace::MISSING_SHOWN);
        for line in kiln_toolchain::trace::missing_files(&r.records, limit) {
            note!("{line}");
        }
    }
    // A kernel that failed (one without the profiler refuses --profile at boot) has said
    // why; an empty profile would only add noise.
    let kernel_failed = r.outcome.status == kiln_abi_failure();
    if (a.profile.is_some() || a.profile_folded.is_some()) && !kernel_failed {
        profile_outputs(&image, a, &r.records)?;
    }
    if a.profile_kernel.is_some() || a.profile_kernel_folded.is_some() {
        kernel_profile_outputs(&image, &layout.kernel_elf(), a, r.kernel_profile.as_ref())?;
    }
    let core_file = a.core.clone().or_else(|| {
        a.core_dir.as_ref().map(|d| {
            let name = image.file_stem().unwrap_or_default().to_string_lossy();
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            d.join(format!("core.{name}.{secs}"))
        })
    });
    if let Some(file) = core_file {
        match kiln_toolchain::debug::write_core(&image, &r.records, &file) {
            Ok(Some(exe)) => note!(
                "wrote core file {}; open it with: gdb {} {}",
                file.display(),
                exe.display(),
                file.display()
            ),
            Ok(None) => {}
            Err(e) => note!("could not write the core file {}: {e:#}", file.display()),
        }
    }
    if let Some(reason) = &r.outcome.reason {
        match reason.strip_prefix("kiln: ") {
            Some(line) => note!("{line}"),
            None => note!("{reason}"),
        }
    }
    Ok(r.outcome.status)
}

/// Runs the command line. `sources` are the kernel's sources an installed binary carries;
/// `cargo xtask` (`None`) uses the checkout it was built from.
pub fn run_cli(sources: Option<&kiln_toolchain::sources::Embedded>) -> ExitCode {
    let (name, args) = invocation();
    let matches = Cli::command()
        .name(name)
        .bin_name(name)
        .get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Whoever started us owns us: when it dies (a test runner, a killed `cargo`), we get
    // SIGTERM and stop our virtual machine like on any other stop signal. Not so an
    // instance's supervisor, which outlives the `run -d` that started it.
    if !matches!(cli.command, Cmd::Supervise { .. }) {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    }
    let layout = match layout(sources) {
        Ok(l) => l,
        Err(e) => {
            note!("error: {e:#}");
            return ExitCode::from(kiln_abi_failure());
        }
    };
    if matches!(cli.command, Cmd::Bench { .. }) {
        // Benchmarks start QEMU, load generators and a tap device of their own: a stop
        // signal stops them all and removes the device.
        qemu::signals::stop_children_on_signal(bench::http::tap::cleanup_after_signal);
    }
    let result = match &cli.command {
        Cmd::BuildImage(a) => build_image(&layout, a).map(|_| 0),
        Cmd::Run(a) if a.detach => {
            let m = matches
                .subcommand_matches("run")
                .cloned()
                .unwrap_or_default();
            match instances::run_detached(&layout, a, &m) {
                Ok(()) => Ok(0),
                Err(e) => {
                    note!("error: {e:#}");
                    return ExitCode::from(kiln_abi_failure());
                }
            }
        }
        Cmd::Run(a) => match run(&layout, a) {
            Ok(status) => return ExitCode::from(status),
            Err(e) => {
                note!("error: {e:#}");
                return ExitCode::from(kiln_abi_failure());
            }
        },
        Cmd::Test => suite::run(&layout).map(|_| 0),
        Cmd::Publish(a) => publish_cmd(&layout, a).map(|_| 0),
        Cmd::Pull(a) => pull_cmd(a).map(|_| 0),
        Cmd::Stats(a) => stats_cmd(a).map(|_| 0),
        Cmd::Inspect(a) => instances::inspect(a),
        Cmd::Ps(a) => instances::ps(a),
        Cmd::Logs(a) => instances::logs(a),
        Cmd::Stop(a) => instances::stop(a),
        Cmd::Rm(a) => instances::rm(a),
        Cmd::Supervise { dir } => instances::supervise(dir),
        Cmd::Accel => qemu::prepare_fresh(&layout, Machine::Microvm).map(|(_, choice)| {
            println!("{}", choice.accel.name());
            0
        }),
        Cmd::Fuzz(a) => match &a.target {
            Some(t) if !a.list => {
                let budget = kiln_toolchain::fuzz::Budget {
                    secs: a.time,
                    runs: a.runs,
                };
                kiln_toolchain::fuzz::run(&layout, t, budget, a.record).map(|_| 0)
            }
            _ => {
                print!("{}", kiln_toolchain::fuzz::list());
                Ok(0)
            }
        },
        Cmd::Bench {
            which: BenchCmd::Boot { runs },
        } => bench::boot(&layout, *runs as usize).and_then(|r| {
            print!("{}", bench::format_report(&r));
            bench::write_markdown(
                &layout,
                &r,
                &format!("cargo xtask bench boot --runs {runs}"),
            )?;
            note!("wrote BENCHMARKS.md");
            Ok(0)
        }),
        Cmd::Bench {
            which: BenchCmd::Http(a),
        } => bench_http(&layout, a).map(|_| 0),
        Cmd::Bench {
            which: BenchCmd::Redis(a),
        } => bench_redis(&layout, a).map(|_| 0),
        Cmd::Bench {
            which: BenchCmd::Soak(a),
        } => bench_soak(&layout, a),
        Cmd::Bench {
            which: BenchCmd::Smp(a),
        } => bench_smp(&layout, a).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            note!("error: {e:#}");
            // Stopped by a signal: say so as a shell would (130, 143, 129).
            match qemu::signals::received() {
                Some(sig) => ExitCode::from(128 + sig as u8),
                None => ExitCode::from(1),
            }
        }
    }
}

/// The options of `bench http`, checked (a bad connection list is an error, not a panic).
fn bench_http_options(a: &BenchHttpArgs) -> anyhow::Result<bench::http::HttpOptions> {
    let server = match &a.elf {
        Some(path) => {
            if !path.is_file() {
                anyhow::bail!("--elf {}: no such file", path.display());
            }
            AppSource::Elf(path.clone())
        }
        None => AppSource::Example(a.example.clone()),
    };
    Ok(bench::http::HttpOptions {
        server,
        args: a.server_args.clone(),
        loads: bench::http::standard_loads(&a.connections, a.duration, a.wrk_timeout)?,
        boots: a.runs as usize,
        memory_mib: a.memory,
        memory_search: !a.no_memory_search,
        cpus: a.cpus,
        files: a.files.clone(),
        ..Default::default()
    })
}

/// `bench http` as a reader would type it again (every option spelled out).
fn bench_http_command(a: &BenchHttpArgs) -> String {
    let connections: Vec<String> = a.connections.iter().map(u32::to_string).collect();
    let mut command = format!(
        "cargo xtask bench http --duration {} --connections {} --wrk-timeout {} --runs {} \
         --memory {}M",
        a.duration,
        connections.join(","),
        a.wrk_timeout,
        a.runs,
        a.memory
    );
    if a.no_memory_search {
        command.push_str(" --no-memory-search");
    }
    if a.cpus > 1 {
        command.push_str(&format!(" --cpus {}", a.cpus));
    }
    match &a.elf {
        Some(elf) => command.push_str(&format!(
            " --elf {}",
            bench::http::shell_words(&[elf.display().to_string()])
        )),
        None if a.example != "http-hello" => {
            command.push_str(&format!(" --example {}", a.example));
        }
        None => {}
    }
    for f in &a.files {
        let spec = format!("{}:{}", f.src.display(), f.dest);
        command.push_str(&format!(" --file {}", bench::http::shell_words(&[spec])));
    }
    if !a.server_args.is_empty() {
        command.push_str(&format!(" -- {}", bench::http::shell_words(&a.server_args)));
    }
    command
}

fn bench_http(layout: &Layout, a: &BenchHttpArgs) -> anyhow::Result<()> {
    let opts = bench_http_options(a)?;
    let r = bench::http::http(layout, &opts)?;
    print!("{}", bench::http::format_report(&r));
    bench::http::write_markdown(layout, &opts.server, &r, &bench_http_command(a))?;
    note!("wrote BENCHMARKS.md");
    Ok(())
}

/// The options of `bench redis`, checked.
fn bench_redis_options(a: &BenchRedisArgs) -> anyhow::Result<bench::redis::RedisOptions> {
    let o = bench::redis::RedisOptions {
        requests: a.requests,
        clients: a.clients,
        pipeline: a.pipeline,
        repeats: a.runs,
        memory_mib: a.memory,
        memory_search: !a.no_memory_search,
        ..Default::default()
    };
    o.check()?;
    Ok(o)
}

/// `bench redis` as a reader would type it again (every option spelled out).
fn bench_redis_command(a: &BenchRedisArgs) -> String {
    let mut command = format!(
        "cargo xtask bench redis --requests {} --clients {} --pipeline {} --runs {} --memory {}M",
        a.requests, a.clients, a.pipeline, a.runs, a.memory
    );
    if a.no_memory_search {
        command.push_str(" --no-memory-search");
    }
    command
}

fn bench_redis(layout: &Layout, a: &BenchRedisArgs) -> anyhow::Result<()> {
    let opts = bench_redis_options(a)?;
    let r = bench::redis::redis(layout, &opts)?;
    print!("{}", bench::redis::format_report(&r));
    bench::redis::write_markdown(layout, &r, &bench_redis_command(a))?;
    note!("wrote BENCHMARKS.md");
    Ok(())
}

fn bench_smp(layout: &Layout, a: &BenchSmpArgs) -> anyhow::Result<()> {
    let opts = bench::smp::SmpOptions {
        runs: a.runs as usize,
        threads: a.cpus,
        rounds: a.rounds,
        cpus: vec![1, a.cpus],
        ..Default::default()
    };
    let r = bench::smp::smp(layout, &opts)?;
    print!("{}", bench::smp::format_report(&r));
    let command = format!(
        "cargo xtask bench smp --runs {} --rounds {} --cpus {}",
        a.runs, a.rounds, a.cpus
    );
    bench::smp::write_markdown(layout, &r, &command)
}

fn bench_soak(layout: &Layout, a: &BenchSoakArgs) -> anyhow::Result<u8> {
    let opts = bench::soak::SoakOptions {
        minutes: a.minutes,
        connections: a.connections,
        memory_mib: a.memory,
        ..Default::default()
    };
    let r = bench::soak::soak(layout, &opts)?;
    print!("{}", bench::soak::format_report(&r));
    let command = format!(
        "cargo xtask bench soak --minutes {} --connections {} --memory {}M",
        a.minutes, a.connections, a.memory
    );
    bench::soak::write_markdown(layout, &r, &command)?;
    note!("wrote BENCHMARKS.md");
    if r.passed() {
        Ok(0)
    } else {
        note!("soak failed: requests failed, memory grew, or the load did not finish");
        Ok(1)
    }
}

/// `run` fails with 125 when Kiln itself cannot build or start the image (as `timeout` does).
fn kiln_abi_failure() -> u8 {
    125
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
    }

    #[test]
    fn build_image_selectors() {
        let c = parse(&[
            "build-image",
            "--example",
            "hello",
            "--file",
            "a:/etc/a",
            "--env",
            "A=1",
            "--arg",
            "--exit",
            "-o",
            "x.elf",
        ])
        .unwrap();
        let Cmd::BuildImage(b) = c.command else {
            panic!()
        };
        let (r, _) = request(&b.image).unwrap();
        assert_eq!(r.source, AppSource::Example("hello".into()));
        assert_eq!(r.files[0].dest, "/etc/a");
        assert_eq!(r.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(r.args, vec!["--exit"]);
        assert_eq!(r.output, Some(PathBuf::from("x.elf")));
        let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello/Cargo.toml");
        let c = parse(&["build-image", "--manifest-path", hello, "--bin", "b"]).unwrap();
        let Cmd::BuildImage(b) = c.command else {
            panic!()
        };
        assert!(matches!(
            request(&b.image).unwrap().0.source,
            AppSource::Manifest { bin: Some(_), .. }
        ));
        // A manifest that is not there is an error naming it.
        let c = parse(&["build-image", "--manifest-path", "nope/Cargo.toml"]).unwrap();
        let Cmd::BuildImage(b) = c.command else {
            panic!()
        };
        let e = request(&b.image).unwrap_err();
        assert!(format!("{e:#}").contains("nope/Cargo.toml"), "{e:#}");
    }

    #[test]
    fn publish_command_lines() {
        let c = parse(&[
            "publish",
            "--example",
            "hello",
            "--env",
            "A=1",
            "--oci",
            "127.0.0.1:5000/kiln/hello:1.0",
            "--oci-dir",
            "out",
            "--force",
        ])
        .unwrap();
        let Cmd::Publish(p) = c.command else { panic!() };
        let r = publish_request(&p).unwrap();
        assert!(matches!(r.source, ImageSource::Build(ref b) if b.env.len() == 1));
        assert_eq!(r.oci.unwrap().tag, "1.0");
        assert!(r.push.force && !r.push.insecure && r.push.credentials.is_none());
        let c = parse(&[
            "publish",
            "--image",
            "i.elf",
            "--oci",
            "ghcr.io/a/b:2",
            "--username",
            "u",
            "--password",
            "p",
        ])
        .unwrap();
        let Cmd::Publish(p) = c.command else { panic!() };
        let r = publish_request(&p).unwrap();
        assert_eq!(r.source, ImageSource::File("i.elf".into()));
        assert_eq!(r.push.credentials.unwrap().username, "u");
        let c = parse(&[
            "publish",
            "--kubevirt",
            "--disk",
            "d.qcow2",
            "--oci",
            "ghcr.io/a/b:2",
            "--kubevirt-manifest",
            "vm.yaml",
        ])
        .unwrap();
        let Cmd::Publish(p) = c.command else { panic!() };
        assert_eq!(publish_request(&p).unwrap().source, ImageSource::DiskOnly);
        assert!(parse(&["inspect", "x.qcow2", "--json"]).is_ok());
        for bad in [
            &["publish", "--example", "hello"][..],
            &["publish", "--example", "hello", "--oci", "ghcr.io/a/b"],
            &["publish", "--example", "hello", "--oci", "a/b:1"],
            &["publish", "--oci", "ghcr.io/a/b:1"],
            &["publish", "--image", "i", "--env", "A=1", "--oci-dir", "d"],
            &["publish", "--image", "i", "--disk", "d", "--oci-dir", "d"],
            &[
                "publish",
                "--image",
                "i",
                "--kubevirt",
                "--kubevirt-manifest",
                "m",
                "--oci-dir",
                "d",
            ],
            &[
                "publish",
                "--image",
                "i",
                "--oci-dir",
                "d",
                "--username",
                "u",
            ],
            &["inspect"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn bad_command_lines() {
        for bad in [
            &["build-image", "--example", "a", "--elf", "b"][..],
            &["build-image", "--elf", "b", "--bin", "x"],
            &["build-image", "--example", "a", "--file", "a:rel"],
            &["build-image", "--example", "a", "--env", "novalue"],
            &["run", "--example", "a", "--memory", "lots"],
            &["run", "--example", "a", "--machine", "pc"],
            &["run", "--example", "a", "--timeout", "0"],
            &["run", "--image", "i", "--file", "a:/b"],
            &["run", "--image", "i", "--bin", "b"],
            &["bench", "boot", "--runs", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn run_options() {
        let c = parse(&[
            "run",
            "--image",
            "i.elf",
            "--machine",
            "q35",
            "--memory",
            "1G",
            "-e",
            "K=V",
            "--timeout",
            "5",
            "--verbose",
            "--",
            "a",
            "--exit",
            "3",
        ])
        .unwrap();
        let Cmd::Run(r) = c.command else { panic!() };
        assert_eq!(r.image_file, Some(PathBuf::from("i.elf")));
        assert!(matches!(r.machine, MachineArg::Q35));
        assert_eq!(r.memory, Some(1024));
        assert_eq!(r.run_env, vec![("K".to_string(), "V".to_string())]);
        assert_eq!(r.timeout, Some(5));
        assert!(r.verbose);
        assert_eq!(r.program_args, vec!["a", "--exit", "3"]);
        let c = parse(&["run", "--example", "hello", "--env", "A=1", "-e", "B=2"]).unwrap();
        let Cmd::Run(r) = c.command else { panic!() };
        assert_eq!(r.build.env.len(), 1);
        assert_eq!(r.run_env.len(), 1);
        assert_eq!(r.timeout, None);
        assert!(parse(&["bench", "boot"]).is_ok());
        assert!(parse(&["test"]).is_ok());
        assert!(parse(&["accel"]).is_ok());
        let c = parse(&["run", "--image", "i", "--gdb", "--gdb-wait", "--pcap", "p"]).unwrap();
        let Cmd::Run(r) = c.command else { panic!() };
        assert_eq!((r.gdb, r.gdb_wait), (Some(1234), true));
        assert_eq!(r.pcap, Some(PathBuf::from("p")));
        let c = parse(&["run", "--image", "i", "--gdb", "4000"]).unwrap();
        let Cmd::Run(r) = c.command else { panic!() };
        assert_eq!((r.gdb, r.gdb_wait), (Some(4000), false));
        assert!(parse(&["run", "--image", "i", "--gdb-wait"]).is_err());
    }

    #[test]
    fn run_and_pull_take_registry_references() {
        let c = parse(&[
            "run",
            "127.0.0.1:5000/kiln/hello:1",
            "--pull",
            "never",
            "--",
            "a",
        ])
        .unwrap();
        let Cmd::Run(r) = c.command else { panic!() };
        assert_eq!(r.image.as_deref(), Some("127.0.0.1:5000/kiln/hello:1"));
        assert_eq!(
            (r.pull, r.program_args),
            (Policy::Never, vec!["a".to_string()])
        );
        let c = parse(&[
            "run",
            "--image",
            "ghcr.io/a/b:1",
            "--username",
            "u",
            "--password",
            "p",
        ])
        .unwrap();
        let Cmd::Run(r) = c.command else { panic!() };
        assert_eq!(r.pull, Policy::Missing);
        assert_eq!(r.registry.credentials().unwrap().username, "u");
        let c = parse(&["pull", "-q", "--insecure", "example.org:5000/a/b@sha256:00"]);
        assert!(c.is_err(), "a short digest is refused");
        let d = format!("example.org:5000/a/b@sha256:{}", "0".repeat(64));
        let c = parse(&["pull", "-q", "--insecure", &d]).unwrap();
        let Cmd::Pull(p) = c.command else { panic!() };
        assert!(p.quiet && p.registry.insecure);
        assert_eq!(p.reference.to_string(), d);
        for bad in [
            &["pull"][..],
            &["pull", "ghcr.io/a/b"],
            &["pull", "a/b:1"],
            &["run", "ghcr.io/a/b:1", "--example", "hello"],
            &["run", "ghcr.io/a/b:1", "--image", "x.elf"],
            &["run", "ghcr.io/a/b:1", "--env", "A=1"],
            &["run", "ghcr.io/a/b:1", "--pull", "sometimes"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn bench_http_command_lines() {
        let c = parse(&["bench", "http"]).unwrap();
        let Cmd::Bench {
            which: BenchCmd::Http(a),
        } = c.command
        else {
            panic!()
        };
        assert_eq!(
            (a.duration, a.runs, a.memory, a.wrk_timeout),
            (10, 3, 256, 2)
        );
        assert_eq!(a.connections, [16, 256]);
        assert!(!a.no_memory_search);
        assert_eq!(a.example, "http-hello");
        assert_eq!((a.elf.as_ref(), a.server_args.len()), (None, 0));
        assert_eq!(
            bench_http_command(&a),
            "cargo xtask bench http --duration 10 --connections 16,256 --wrk-timeout 2 \
             --runs 3 --memory 256M"
        );
        let o = bench_http_options(&a).unwrap();
        assert_eq!(o.server, AppSource::Example("http-hello".into()));
        let loads: Vec<(u32, u32, bool, u32)> = o
            .loads
            .iter()
            .map(|l| (l.threads, l.connections, l.close, l.timeout_secs))
            .collect();
        assert_eq!(
            loads,
            [(2, 16, false, 2), (2, 256, false, 2), (2, 16, true, 2)]
        );
        let c = parse(&[
            "bench",
            "http",
            "--duration",
            "3",
            "--connections",
            "1,64",
            "--wrk-timeout",
            "10",
            "--memory",
            "1G",
            "--no-memory-search",
        ])
        .unwrap();
        let Cmd::Bench {
            which: BenchCmd::Http(a),
        } = c.command
        else {
            panic!()
        };
        assert_eq!((a.duration, a.memory, a.no_memory_search), (3, 1024, true));
        assert_eq!((a.connections.clone(), a.wrk_timeout), (vec![1, 64], 10));
        let o = bench_http_options(&a).unwrap();
        assert_eq!(o.loads.len(), 3);
        assert_eq!(
            (o.loads[0].threads, o.loads[2].connections, o.loads[2].close),
            (1, 1, true),
            "never more wrk threads than connections"
        );
        assert!(o
            .loads
            .iter()
            .all(|l| l.seconds == 3 && l.timeout_secs == 10));
        assert!(!o.memory_search);
        let c = parse(&["bench", "http", "--connections", "32"]).unwrap();
        let Cmd::Bench {
            which: BenchCmd::Http(a),
        } = c.command
        else {
            panic!()
        };
        assert_eq!(a.connections, [32]);
        for bad in [
            &["bench", "http", "--connections", "0"][..],
            &["bench", "http", "--connections", ""],
            &["bench", "http", "--connections", "16,"],
            &["bench", "http", "--connections", ",16"],
            &["bench", "http", "--connections", "16,x"],
            &["bench", "http", "--connections", "16,20000"],
            &["bench", "http", "--wrk-timeout", "0"],
            &["bench", "http", "--elf", "a", "--example", "b"],
            &["bench", "http", "--elf"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    fn redis_args(args: &[&str]) -> BenchRedisArgs {
        let mut all = vec!["bench", "redis"];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            Cmd::Bench {
                which: BenchCmd::Redis(a),
            } => a,
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn bench_redis_command_lines() {
        let a = redis_args(&[]);
        assert_eq!(
            (
                a.requests,
                a.clients,
                a.pipeline,
                a.memory,
                a.no_memory_search
            ),
            (100_000, 16, 16, 256, false)
        );
        assert_eq!(
            bench_redis_command(&a),
            "cargo xtask bench redis --requests 100000 --clients 16 --pipeline 16 --runs 3 \
             --memory 256M"
        );
        let o = bench_redis_options(&a).unwrap();
        assert_eq!(o, bench::redis::RedisOptions::default());

        let a = redis_args(&[
            "--runs",
            "1",
            "-n",
            "20000",
            "-c",
            "8",
            "-P",
            "32",
            "--memory",
            "1G",
            "--no-memory-search",
        ]);
        assert_eq!(
            (
                a.requests,
                a.clients,
                a.pipeline,
                a.memory,
                a.no_memory_search
            ),
            (20_000, 8, 32, 1024, true)
        );
        assert_eq!(
            bench_redis_command(&a),
            "cargo xtask bench redis --requests 20000 --clients 8 --pipeline 32 --runs 1 \
             --memory 1024M --no-memory-search"
        );
        let o = bench_redis_options(&a).unwrap();
        assert_eq!(
            (
                o.requests,
                o.clients,
                o.pipeline,
                o.repeats,
                o.memory_search
            ),
            (20_000, 8, 32, 1, false)
        );
        let a = redis_args(&["--requests", "5", "--clients", "1", "--pipeline", "2"]);
        assert_eq!((a.requests, a.clients, a.pipeline), (5, 1, 2));
        for bad in [
            &["bench", "redis", "-n", "0"][..],
            &["bench", "redis", "--requests", "x"],
            &["bench", "redis", "-c", "0"],
            &["bench", "redis", "-P", "1"],
            &["bench", "redis", "--runs", "0"],
            &["bench", "redis", "--pipeline", "0"],
            &["bench", "redis", "--memory", "lots"],
            &["bench", "redis", "--elf", "/usr/bin/redis-server"],
            &["bench", "redis", "--", "--port", "7000"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn bench_http_elf_and_arguments() {
        let tmp = tempfile::tempdir().unwrap();
        let elf = tmp.path().join("server");
        std::fs::write(&elf, b"not checked here").unwrap();
        let elf_arg = elf.to_str().unwrap();
        let c = parse(&[
            "bench",
            "http",
            "--elf",
            elf_arg,
            "--file",
            "conf/a b.conf:/etc/a.conf",
            "--",
            "-addr",
            ":8080",
            "two words",
        ])
        .unwrap();
        let Cmd::Bench {
            which: BenchCmd::Http(a),
        } = c.command
        else {
            panic!()
        };
        assert_eq!(a.elf.as_deref(), Some(elf.as_path()));
        assert_eq!(a.server_args, ["-addr", ":8080", "two words"]);
        let o = bench_http_options(&a).unwrap();
        assert_eq!(o.server, AppSource::Elf(elf.clone()));
        assert_eq!(o.args, a.server_args);
        assert_eq!(o.files.len(), 1);
        assert_eq!(o.files[0].dest, "/etc/a.conf");
        assert!(bench_http_command(&a).ends_with(&format!(
            "--memory 256M --elf {elf_arg} --file 'conf/a b.conf:/etc/a.conf' -- -addr :8080 \
             'two words'"
        )));

        let missing = tmp.path().join("missing");
        let c = parse(&["bench", "http", "--elf", missing.to_str().unwrap()]).unwrap();
        let Cmd::Bench {
            which: BenchCmd::Http(a),
        } = c.command
        else {
            panic!()
        };
        let e = bench_http_options(&a).unwrap_err().to_string();
        assert!(e.contains("no such file") && e.contains("missing"), "{e}");

        let c = parse(&["bench", "http", "--connections", "16,16"]).unwrap();
        let Cmd::Bench {
            which: BenchCmd::Http(a),
        } = c.command
        else {
            panic!()
        };
        let e = bench_http_options(&a).unwrap_err().to_string();
        assert!(e.contains("16 twice"), "{e}");
    }
}
