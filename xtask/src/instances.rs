//! The instance commands: `run -d`, `ps`, `logs`, `stop`, `rm`, `inspect NAME` and the
//! hidden `__supervise`. Parsing and printing only; `kiln_toolchain::instance` does the work.

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, ValueEnum};
use kiln_toolchain::instance::ports::Port;
use kiln_toolchain::instance::state::{RestartPolicy, Spec};
use kiln_toolchain::instance::{control, logs, NewInstance, Store};
use kiln_toolchain::{note, Layout};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show every instance (by default only running ones).
    #[arg(short, long)]
    all: bool,
    /// Only the names.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep following the output until the instance exits.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (`all` for every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all", value_parser = parse_tail)]
    tail: Tail,
    /// Start each line with the time it was written (RFC 3339, nanoseconds).
    #[arg(short, long)]
    timestamps: bool,
    /// The instance.
    name: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait for the program to stop before killing it.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECS",
        default_value_t = 10
    )]
    time: u64,
    /// The instances.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running instances too.
    #[arg(short, long)]
    force: bool,
    /// The instances.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// What `inspect` looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InspectType {
    /// An instance name.
    Instance,
    /// An image file or OCI layout.
    Image,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Instance names, or images: a PVH image, a disk (raw, qcow2, vmdk, vhd, gce, efi) or
    /// an OCI layout directory. A name is looked up as an instance first.
    #[arg(value_name = "NAME|IMAGE", required = true)]
    pub targets: Vec<String>,
    /// For images: print the whole provenance document (with the SBOM) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Look only for this kind of object.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<InspectType>,
    /// For instances: print this Go-template-like format, e.g. '{{.State.ExitCode}}'.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// `logs --tail`: every line, or the last N.
#[derive(Clone, Copy, Debug)]
pub enum Tail {
    /// Every line.
    All,
    /// The last N lines.
    Last(usize),
}

fn parse_tail(s: &str) -> Result<Tail, String> {
    match s {
        "all" => Ok(Tail::All),
        n => n
            .parse()
            .map(Tail::Last)
            .map_err(|_| format!("`{s}`: give a number of lines, or `all`")),
    }
}

/// Parses `--restart`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    s.parse()
}

/// The `run` options that only shape the image or the detached instance: the runner gets
/// an `--image` instead, and the supervisor handles the rest.
fn not_for_runner() -> Vec<String> {
    let build = crate::ImageArgs::augment_args(clap::Command::new("build"));
    build
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .chain(["image_file", "detach", "name", "rm", "restart"].map(String::from))
        .collect()
}

/// The runner's options for a detached instance: every run-time option as given on the
/// command line (`m`: the `run` subcommand's matches), none of the build's.
pub fn runner_args(m: &ArgMatches) -> Vec<String> {
    let cmd = crate::Cli::command();
    let Some(run) = cmd.find_subcommand("run") else {
        return Vec::new();
    };
    let skip = not_for_runner();
    let (mut out, mut trailing) = (Vec::new(), Vec::new());
    for arg in run.get_arguments() {
        let id = arg.get_id().as_str();
        if skip.iter().any(|s| s == id) || m.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let values = m
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|v| v.to_string_lossy().into_owned());
        if arg.is_last_set() {
            trailing.extend(values);
            continue;
        }
        let (flag, long) = match (arg.get_long(), arg.get_short()) {
            (Some(l), _) => (format!("--{l}"), true),
            (None, Some(s)) => (format!("-{s}"), false),
            (None, None) => continue,
        };
        match arg.get_action() {
            ArgAction::SetTrue => out.push(flag),
            _ if long => out.extend(values.map(|v| format!("{flag}={v}"))),
            _ => values.for_each(|v| out.extend([flag.clone(), v])),
        }
    }
    if !trailing.is_empty() {
        out.push("--".into());
        out.extend(trailing);
    }
    out
}

/// `run -d`: builds and checks in the foreground, creates the instance, starts its
/// supervisor, prints its name.
pub fn run_detached(layout: &Layout, a: &crate::RunArgs, m: &ArgMatches) -> anyhow::Result<()> {
    let restart = a.restart.unwrap_or_default();
    if a.rm && restart != RestartPolicy::No {
        anyhow::bail!("Conflicting options: --restart and --rm");
    }
    let store = Store::from_env()?;
    if let Some(n) = &a.name {
        kiln_toolchain::instance::names::validate(n).map_err(anyhow::Error::msg)?;
        // Before the build, as a courtesy; `create` decides atomically.
        if store.open(n).is_ok() {
            anyhow::bail!("Conflict. The instance name \"{n}\" is already in use. Remove it (cargo xtask rm {n}) to reuse the name.");
        }
    }
    crate::check_run_args(a)?;
    let (image, defaults) = crate::run_image(layout, a)?;
    // The project's run defaults reach the runner as the flags they stand for.
    let mut runner = runner_args(m);
    if let (None, Some(mib)) = (a.memory, defaults.memory) {
        runner.insert(0, format!("--memory={mib}"));
    }
    if a.publish.is_empty() {
        for (_, p) in &defaults.ports {
            runner.insert(0, format!("--publish={p}"));
        }
    }
    let (_, accel) = kiln_toolchain::qemu::prepare(layout, crate::machine(a))?;
    let req = NewInstance {
        name: a.name.clone(),
        spec: Spec {
            image_name: image
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned()),
            runner_args: runner,
            command: std::env::args().skip(1).collect(),
            ports: defaults
                .ports(a)
                .iter()
                .map(|p| Port {
                    host: p.host,
                    guest: p.guest,
                    udp: p.udp,
                })
                .collect(),
            restart,
            auto_remove: a.rm,
            accel: accel.accel.name().into(),
        },
        image,
    };
    let inst = store.create(&req)?;
    control::start(&store, &inst, &std::env::current_exe()?)?;
    println!("{}", inst.config.name);
    Ok(())
}

/// `ps`.
pub fn ps(a: &PsArgs) -> anyhow::Result<u8> {
    let store = Store::from_env()?;
    if a.quiet {
        for i in store.list() {
            if a.all || i.phase().is_live() {
                println!("{}", i.config.name);
            }
        }
    } else {
        print!("{}", control::ps_table(&store, a.all));
    }
    Ok(0)
}

/// `logs`.
pub fn logs(a: &LogsArgs) -> anyhow::Result<u8> {
    let store = Store::from_env()?;
    let inst = store.open(&a.name)?;
    let mut reader = logs::Reader::open(&inst.log_path())?;
    let mut printer = logs::Printer::new(std::io::stdout(), std::io::stderr(), a.timestamps);
    let records = reader.read_new()?;
    let records = match a.tail {
        Tail::Last(n) => logs::tail(&records, n),
        Tail::All => records,
    };
    printer.print(&records)?;
    if a.follow {
        printer.follow(&mut reader, || {
            let p = inst.phase();
            !p.is_live() && p != kiln_toolchain::instance::state::Phase::Created
        })?;
    }
    Ok(0)
}

/// Runs `each` on every name, docker-style: the name on stdout when it worked, the error on
/// stderr when not; status 1 if any failed.
fn for_each_name(
    names: &[String],
    each: impl Fn(&Store, &str) -> anyhow::Result<()>,
) -> anyhow::Result<u8> {
    let store = Store::from_env()?;
    let mut status = 0;
    for name in names {
        match each(&store, name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                note!("error: {e:#}");
                status = 1;
            }
        }
    }
    Ok(status)
}

/// `stop`.
pub fn stop(a: &StopArgs) -> anyhow::Result<u8> {
    for_each_name(&a.names, |store, name| {
        control::stop(store, &store.open(name)?, Duration::from_secs(a.time))
    })
}

/// `rm`.
pub fn rm(a: &RmArgs) -> anyhow::Result<u8> {
    for_each_name(&a.names, |store, name| {
        control::remove(store, &store.open(name)?, a.force)
    })
}

/// `inspect`: instances as one JSON array (or `--format` per instance), images as before.
pub fn inspect(a: &InspectArgs) -> anyhow::Result<u8> {
    // Without a state directory there are no instances, but images still inspect.
    let store = Store::from_env().ok();
    let mut found = Vec::new();
    let (mut status, mut images) = (0, 0);
    for t in &a.targets {
        let inst = match a.kind {
            Some(InspectType::Image) => None,
            _ => store.as_ref().and_then(|s| s.open(t).ok()),
        };
        let result = match inst {
            Some(i) => {
                found.push(control::inspect_json(&i));
                Ok(())
            }
            None if a.kind == Some(InspectType::Instance) => {
                Err(anyhow::anyhow!("No such instance: {t}"))
            }
            None if !std::path::Path::new(t).exists() => {
                Err(anyhow::anyhow!("No such instance or image: {t}"))
            }
            None => {
                images += 1;
                crate::inspect_image(&PathBuf::from(t), a.json)
            }
        };
        if let Err(e) = result {
            note!("error: {e:#}");
            status = 1;
        }
    }
    match &a.format {
        Some(f) => {
            for v in &found {
                println!(
                    "{}",
                    control::format_template(f, v).map_err(anyhow::Error::msg)?
                );
            }
        }
        // docker prints `[]` when it found nothing.
        None if !found.is_empty() || images == 0 => {
            println!("{}", serde_json::to_string_pretty(&found)?);
        }
        None => {}
    }
    Ok(status)
}

/// `__supervise DIR`: the supervisor of the instance in DIR.
pub fn supervise(dir: &std::path::Path) -> anyhow::Result<u8> {
    let store_root = dir
        .parent()
        .and_then(|p| p.parent())
        .ok_or_else(|| anyhow::anyhow!("{} is not an instance directory", dir.display()))?;
    let store = Store::at(store_root);
    kiln_toolchain::instance::supervisor::supervise(&store, dir, &std::env::current_exe()?)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn run_matches(args: &[&str]) -> (crate::RunArgs, ArgMatches) {
        let m = crate::Cli::command()
            .try_get_matches_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap();
        let cli = crate::Cli::from_arg_matches(&m).unwrap();
        let crate::Cmd::Run(r) = cli.command else {
            panic!()
        };
        (r, m.subcommand_matches("run").unwrap().clone())
    }

    #[test]
    fn the_runner_gets_every_run_time_option_and_no_build_option() {
        let (a, m) = run_matches(&[
            "run",
            "-d",
            "--name",
            "web",
            "--rm",
            "--example",
            "hello",
            "--file",
            "a:/b",
            "--env",
            "X=1",
            "--arg",
            "-d",
            "-p",
            "8080:80",
            "--publish",
            "53:53/udp",
            "-e",
            "A=B",
            "--trace=network",
            "--gdb",
            "--memory",
            "1G",
            "--verbose",
            "--",
            "-x",
            "--y",
        ]);
        assert!(a.detach && a.rm);
        let args = runner_args(&m);
        assert_eq!(
            args,
            [
                "--memory=1G",
                "-e",
                "A=B",
                "--verbose",
                "--publish=8080:80",
                "--publish=53:53/udp",
                "--gdb=1234",
                "--trace=network",
                "--",
                "-x",
                "--y"
            ]
        );
        // The runner parses them back to the same options.
        let mut again = vec!["run", "--image", "i.elf"];
        again.extend(args.iter().map(String::as_str));
        let (b, _) = run_matches(&again);
        assert_eq!(
            (
                b.memory,
                b.run_env,
                b.verbose,
                b.publish,
                b.gdb,
                b.program_args
            ),
            (
                a.memory,
                a.run_env,
                a.verbose,
                a.publish,
                a.gdb,
                a.program_args
            )
        );
        assert!(!b.detach && b.trace.is_some() && b.build.example.is_none());
    }

    #[test]
    fn instance_command_lines() {
        let (a, _) = run_matches(&["run", "-d", "--image", "i", "--restart", "on-failure:2"]);
        assert_eq!(a.restart, Some(RestartPolicy::OnFailure(2)));
        for bad in [
            &["run", "--image", "i", "--name", "x"][..],
            &["run", "--image", "i", "--restart", "always"],
            &["run", "-d", "--image", "i", "--restart", "sometimes"],
            &["logs"],
            &["logs", "x", "--tail", "some"],
            &["stop"],
            &["rm"],
            &["inspect"],
        ] {
            let r = crate::Cli::command()
                .try_get_matches_from(std::iter::once("xtask").chain(bad.iter().copied()));
            assert!(r.is_err(), "{bad:?} should be refused");
        }
        // Foreground --rm is accepted: docker users type it out of habit.
        run_matches(&["run", "--rm", "--image", "i"]);
        for good in [
            &["ps", "-a"][..],
            &["ps", "-aq"],
            &["logs", "-f", "--tail", "3", "-t", "x"],
            &["stop", "-t", "0", "a", "b"],
            &["rm", "-f", "a"],
            &["inspect", "-f", "{{.State.Status}}", "x"],
            &["inspect", "--type", "image", "x.elf", "--json"],
        ] {
            let r = crate::Cli::command()
                .try_get_matches_from(std::iter::once("xtask").chain(good.iter().copied()));
            assert!(r.is_ok(), "{good:?} should parse: {r:?}");
        }
    }
}
