//! The `unireader` command: `unireader tail URL…`, `unireader check URL…`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    unireader::cli::main_with(std::env::args())
}
