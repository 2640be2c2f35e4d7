//! `rackwatch`: the gateway's binary; everything it does is in [`rackwatch_gateway::cli`].

fn main() -> std::process::ExitCode {
    rackwatch_gateway::cli::main()
}
