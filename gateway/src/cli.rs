//! The `rackwatch` command line: argument parsing and the commands it runs.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::{pipeline, shutdown};
use clap::{Parser, Subcommand};

/// rackwatch watches the racks of a data centre: it takes readings from sensor nodes over MQTT or
/// serial, stores them in InfluxDB without losing one, and raises cooling and power alerts.
#[derive(Debug, Parser)]
#[command(name = "rackwatch", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find, provision and watch sensor nodes on serial lines.
    Node {
        #[command(subcommand)]
        command: crate::tools::node::NodeCommand,
    },
    /// Make update keys, sign firmware images into update files, and check them.
    Firmware {
        #[command(subcommand)]
        command: crate::tools::firmware::FirmwareCommand,
    },
    /// Write Mosquitto password and ACL files so each node may use only its own topics.
    BrokerAcl(crate::tools::node::BrokerAclOptions),
    /// Run the gateway: ingest, normalise, spool, write to InfluxDB.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short, env = "RACKWATCH_CONFIG", default_value = "rackwatch.toml")]
        config: PathBuf,
        /// Serve this partition of `[cluster]` (gateway/CLUSTER.md): one file for every gateway.
        #[arg(long, env = "RACKWATCH_PARTITION")]
        partition: Option<usize>,
    },
    /// Check a configuration file and say what is wrong with it, key by key.
    CheckConfig {
        #[arg(long, short, env = "RACKWATCH_CONFIG", default_value = "rackwatch.toml")]
        config: PathBuf,
    },
    /// Ask a running gateway whether it is ready (`/health/ready`), for container and systemd health
    /// checks: exit 0 when it is, 1 with its answer when not.
    Health {
        /// The gateway's `[http] listen` address (plain HTTP).
        #[arg(long, default_value = "127.0.0.1:9180")]
        address: std::net::SocketAddr,
        /// Only whether the process answers (`/health/live`).
        #[arg(long)]
        live: bool,
        /// Keep asking once a second for up to this many seconds (a start-up check).
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// Try rackwatch without hardware: an embedded broker, a simulated room of 20 racks with their
    /// sensor nodes, the gateway and its dashboard, and a cooling failure played out.
    Demo(crate::tools::demo::DemoOptions),
}

/// Runs the command line: parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo talks to a person on the terminal; its log shows only what went wrong.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn,rumqttd=off",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Demo(options) => crate::tools::demo::main(options),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(parsed) => {
                let problems = pipeline::preflight(&parsed);
                if !problems.is_empty() {
                    for problem in &problems {
                        eprintln!("{}: {problem}", config.display());
                    }
                    return ExitCode::from(2);
                }
                eprintln!(
                    "{}: ok (site {}, {} nodes in the inventory)",
                    config.display(),
                    parsed.site,
                    parsed.nodes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Health {
            address,
            live,
            wait_secs,
        } => {
            let path = if live { "/health/live" } else { "/health/ready" };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
            loop {
                let answer = crate::view::http::probe(address, path);
                let done = std::time::Instant::now() >= deadline;
                match answer {
                    Ok((200, _)) => return ExitCode::SUCCESS,
                    Ok((status, body)) if done => {
                        eprintln!("{address}{path}: {status}\n{body}");
                        return ExitCode::FAILURE;
                    }
                    Err(e) if done => {
                        eprintln!("{address}{path}: {e}");
                        return ExitCode::FAILURE;
                    }
                    _ => std::thread::sleep(std::time::Duration::from_secs(1)),
                }
            }
        }
        Command::Node { command } => crate::tools::node::main(command),
        Command::Firmware { command } => crate::tools::firmware::main(command),
        Command::BrokerAcl(options) => crate::tools::node::broker_acl_main(options),
        Command::Run { config, partition } => {
            let loaded = Config::load(&config).and_then(|mut config| {
                if let Some(partition) = partition {
                    config.serve_partition(partition)?;
                }
                Ok(config)
            });
            let config = match loaded {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let code = runtime.block_on(async {
                let (trigger, _) = shutdown::channel();
                let on_signal = trigger.clone();
                tokio::spawn(async move {
                    shutdown::wait_for_signal().await;
                    on_signal.trigger();
                });
                match pipeline::run(config, trigger).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e}");
                        ExitCode::FAILURE
                    }
                }
            });
            // A thread stuck in a syscall on a failing disk must not hold the process past its stop
            // budget: everything committed is on disk already.
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            code
        }
    }
}
