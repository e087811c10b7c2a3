//! The `dotstub` command line: parse arguments, build the configuration,
//! call the library, and turn the outcome into an exit code.
//!
//! Exit codes: 0 success; 1 dotstub could not run (an address could not be
//! bound, TLS setup failed, a query got no answer); 2 the configuration or
//! the command line was refused.

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use dotstub::{
    ErrorChain, RunError, Server,
    config::{Config, ConfigError, LogLevel},
    lookup,
};

/// A DNS-over-TLS privacy stub resolver.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); without it, the embedded default
    /// configuration runs (see config/dotstub.toml).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on ADDR:PORT instead of the configured addresses (repeat for more).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the resolver (the default).
    Run,
    /// Check a configuration file and print the configuration in effect.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Resolve one question through the configured upstreams and print the
    /// answer, the upstream that gave it and the round-trip time.
    Query {
        /// Domain name to look up.
        name: String,
        /// Record type: a mnemonic (A, AAAA, MX, ...) or a number.
        #[arg(default_value = "A")]
        qtype: String,
    },
}

/// Exit code when dotstub could not run.
const EXIT_FAILURE: u8 = 1;
/// Exit code when the configuration or command line was refused.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::CheckConfig { ref file }) => check_config(file),
        Some(Command::Query {
            ref name,
            ref qtype,
        }) => query(&args, name, qtype),
        Some(Command::Run) | None => run(&args),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            print!("{config}");
            ExitCode::SUCCESS
        }
        Err(error) => report(&error, EXIT_CONFIG),
    }
}

fn query(args: &Args, name: &str, qtype: &str) -> ExitCode {
    let config = match load(args) {
        Ok(config) => config,
        Err(error) => return report(&error, EXIT_CONFIG),
    };
    init_logging(config.log);
    match runtime().block_on(lookup::lookup(&config, name, qtype)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => report(&error, EXIT_FAILURE),
    }
}

fn run(args: &Args) -> ExitCode {
    let config = match load(args) {
        Ok(config) => config,
        Err(error) => return report(&error, EXIT_CONFIG),
    };
    init_logging(config.log);
    let runtime = runtime();
    let server = match runtime.block_on(async { Server::bind(config) }) {
        Ok(server) => server,
        Err(error @ RunError::Config(_)) => return report(&error, EXIT_CONFIG),
        Err(error) => return report(&error, EXIT_FAILURE),
    };
    match runtime.block_on(server.run(shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error, EXIT_FAILURE),
    }
}

/// The configuration named by `--config`, or the embedded one, with
/// `--listen` applied.
fn load(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    if !args.listen.is_empty() {
        config.listen.addresses.clone_from(&args.listen);
    }
    Ok(config)
}

fn report(error: &dyn std::error::Error, code: u8) -> ExitCode {
    eprintln!("dotstub: {}", ErrorChain(error));
    ExitCode::from(code)
}

fn init_logging(level: LogLevel) {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    // Colours only for a person at a terminal, never in files or journald.
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| {
            eprintln!("dotstub: cannot start the async runtime: {error}");
            std::process::exit(i32::from(EXIT_FAILURE))
        })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
