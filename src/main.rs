//! The `dotstub` command line: parse arguments, build the configuration,
//! call the library, and turn the outcome into an exit code.
//!
//! Exit codes: 0 success; 1 dotstub could not run (an address could not be
//! bound, TLS setup failed, a query got no answer, a report or plot could
//! not be written); 2 the configuration, the command line or an input
//! trace (`padding eval`) was refused.

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
#[cfg(feature = "lab")]
use dotstub::padding_lab::{self, EvalRequest, PolicyPair, Settings};
use dotstub::{
    ErrorChain, RunError, Server,
    config::{Config, ConfigError, LogLevel},
    lookup,
    padding::PaddingPolicy,
    padding_probe::{self, ProbeOptions},
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
    /// Padding research: measure what padding policies cost and show.
    Padding {
        #[command(subcommand)]
        command: PaddingCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PaddingCommand {
    /// Measure padding policies on a trace of DNS transactions: what each
    /// costs in octets (beta) and how much it still leaks (phi, distinct
    /// size pairs, entropy, unique share). Formulas: docs/padding.md.
    #[cfg(feature = "lab")]
    Eval(EvalArgs),
    /// Send names through every configured upstream under each policy,
    /// over real TLS, and report the query and answer sizes on the wire
    /// (DNS and TLS records), the upstream's answer padding and the
    /// round-trip times. Bypasses the cache: every name goes upstream.
    Probe {
        /// A padding policy to probe (repeat for more): none, block:N,
        /// max:N, random:N or random-block:N:K. Default: none, block:128,
        /// block:468, random:128, random-block:128:2 and max:1232.
        #[arg(long = "policy", value_name = "POLICY")]
        policies: Vec<PaddingPolicy>,
        /// File of names, one per line (# starts a comment). Default: a
        /// built-in sample of 16 names.
        #[arg(long, value_name = "FILE")]
        names: Option<PathBuf>,
        /// Record type asked for every name.
        #[arg(long = "type", default_value = "A", value_name = "TYPE")]
        qtype: String,
    },
}

/// Arguments of `dotstub padding eval`.
#[cfg(feature = "lab")]
#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// The trace: a CSV with the header qsize,rsize[,qopt,ropt], or a pcap
    /// or pcapng capture of DNS over UDP and TCP port 53.
    trace: PathBuf,
    /// A policy pair QUERY[/RESPONSE] to measure (repeat for more), e.g.
    /// none, block:128/468, max:1500/4096, random-block:128:2/468:1.
    /// Default: a grid of RFC 8467's candidates.
    #[arg(long = "policy", value_name = "QUERY[/RESPONSE]")]
    policies: Vec<PolicyPair>,
    /// Largest padded message in octets, queries and responses alike.
    #[arg(long, default_value_t = 65_535, value_name = "OCTETS",
          value_parser = clap::value_parser!(u16).range(512..))]
    limit: u16,
    /// Draws averaged for a random policy.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
    /// Seed of the first draw (draw k uses seed + k).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON array, one object per policy, instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw beta against phi and the padded size histograms into
    /// this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// The static musl build's allocator (see Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Some(Command::Padding {
            command:
                PaddingCommand::Probe {
                    ref policies,
                    ref names,
                    ref qtype,
                },
        }) => padding_probe(&args, policies, names.as_deref(), qtype),
        #[cfg(feature = "lab")]
        Some(Command::Padding {
            command: PaddingCommand::Eval(ref eval),
        }) => padding_eval(eval),
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

#[cfg(feature = "lab")]
fn padding_eval(args: &EvalArgs) -> ExitCode {
    let request = EvalRequest {
        trace: args.trace.clone(),
        policies: args.policies.clone(),
        settings: Settings {
            limit: usize::from(args.limit),
            runs: std::num::NonZeroU32::new(args.runs).unwrap_or(Settings::default().runs),
            seed: args.seed,
        },
        json: args.json,
        plot: args.plot.clone(),
    };
    match padding_lab::run_eval(&request, &mut std::io::stdout().lock()) {
        Ok(trace) => {
            eprintln!(
                "dotstub: {} transactions read from {} ({})",
                trace.len(),
                args.trace.display(),
                trace.source()
            );
            ExitCode::SUCCESS
        }
        Err(error) if error.is_bad_input() => report(&error, EXIT_CONFIG),
        Err(error) => report(&error, EXIT_FAILURE),
    }
}

fn padding_probe(
    args: &Args,
    policies: &[PaddingPolicy],
    names: Option<&std::path::Path>,
    qtype: &str,
) -> ExitCode {
    let config = match load(args) {
        Ok(config) => config,
        Err(error) => return report(&error, EXIT_CONFIG),
    };
    let names = match names.map(|path| (path, std::fs::read_to_string(path))) {
        None => None,
        Some((_, Ok(text))) => Some(text),
        Some((path, Err(error))) => {
            eprintln!("dotstub: cannot read {}: {error}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let options = match ProbeOptions::new(policies.to_vec(), names.as_deref(), qtype) {
        Ok(options) => options,
        Err(error) => return report(&error, EXIT_CONFIG),
    };
    init_logging(config.log);
    match runtime().block_on(padding_probe::probe(&config, &options)) {
        Ok(report) => {
            print!("{report}");
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
