//! `kiln`: Kiln's command line.

fn main() -> std::process::ExitCode {
    kiln::main()
}
