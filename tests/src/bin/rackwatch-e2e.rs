//! The `rackwatch` command line, built inside the test package so its integration tests can start
//! it as a separate process (and kill it) through `CARGO_BIN_EXE_rackwatch-e2e`.

fn main() -> std::process::ExitCode {
    rackwatch_gateway::cli::main()
}
