//! The `dotstub` command line: parse arguments, build the configuration,
//! call the library, and turn the outcome into an exit code.
//!
//! Exit codes: 0 success; 1 dotstub could not run (an address could not be
//! bound, TLS setup failed, a query got no answer, a report or plot could
//! not be written); 2 the configuration, the command line or an input
//! trace (`padding eval`) was refused.

mod args;

use std::{io::IsTerminal, process::ExitCode};

use args::{Args, Command, Request};
#[cfg(feature = "lab")]
use dotstub::padding_lab::{self, EvalRequest, Settings};
use dotstub::{
    ErrorChain, RunError, Server,
    config::{Config, ConfigError, LogLevel},
    lookup,
    padding::PaddingPolicy,
    padding_probe::{self, ProbeOptions},
};

/// The static musl build's allocator (see Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Makes mimalloc reserve address space 64 MiB at a time instead of 1 GiB
/// (on 64-bit targets; 128 MiB on 32-bit ones), unless
/// `MIMALLOC_ARENA_RESERVE` says otherwise. mimalloc keeps bitmaps sized
/// by the arena: a 1 GiB one costs 0.16 MiB of resident memory, more than
/// a router's dotstub allocates at start, and 1 GiB of address space is a
/// third of what a 32-bit process has. More arenas come as they are needed.
/// Called first, before anything is allocated.
#[cfg(target_env = "musl")]
#[allow(unsafe_code)]
fn size_allocator_arenas() {
    use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

    /// `mi_option_arena_reserve` (mimalloc.h; the bindings stop before
    /// it), in KiB.
    const ARENA_RESERVE: mi_option_t = 23;
    const DEFAULT_KIB: std::ffi::c_long = if cfg!(target_pointer_width = "64") {
        1 << 20
    } else {
        128 << 10
    };
    const ROUTER_KIB: std::ffi::c_long = 64 << 10;
    // SAFETY: mimalloc's option calls take any option below its last and
    // may be made at any time; the check that the option holds its
    // default keeps a user's setting, and guards against another
    // mimalloc numbering its options differently.
    unsafe {
        if mi_option_get(ARENA_RESERVE) == DEFAULT_KIB {
            mi_option_set(ARENA_RESERVE, ROUTER_KIB);
        }
    }
}

/// Exit code when dotstub could not run.
const EXIT_FAILURE: u8 = 1;
/// Exit code when the configuration or command line was refused.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    #[cfg(target_env = "musl")]
    size_allocator_arenas();
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(Request::Run(args)) => args,
        Ok(Request::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("dotstub: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match args.command {
        Command::CheckConfig { ref file } => check_config(file),
        Command::Query {
            ref name,
            ref qtype,
        } => query(&args, name, qtype),
        Command::PaddingProbe {
            ref policies,
            ref names,
            ref qtype,
        } => padding_probe(&args, policies, names.as_deref(), qtype),
        #[cfg(feature = "lab")]
        Command::PaddingEval(ref eval) => padding_eval(eval),
        Command::Run => run(&args),
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
fn padding_eval(args: &args::EvalArgs) -> ExitCode {
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
