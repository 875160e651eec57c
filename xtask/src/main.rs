//! `cargo xtask`: Kiln's developer commands (see the library for all of them).

fn main() -> std::process::ExitCode {
    xtask::run_cli(None)
}
