//! `cargo kiln`: Kiln's command line as a cargo subcommand.

fn main() -> std::process::ExitCode {
    kiln::main()
}
