//! The `kantai` command: one binary for every role and tool (the library's [`kantai::Cli`]
//! with the built-in policies).

fn main() -> std::process::ExitCode {
    kantai::Cli::new().run()
}
