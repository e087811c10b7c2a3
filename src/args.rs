//! The `dotstub` binary's command line: its commands and their options,
//! read with lexopt, and the help text of each. It only reads: `main.rs`
//! acts on what it returns. (A module of the binary, not of the library.)

use std::{ffi::OsString, fmt::Display, net::SocketAddr, path::PathBuf, str::FromStr};

use dotstub::padding::PaddingPolicy;
#[cfg(feature = "lab")]
use dotstub::padding_lab::PolicyPair;
use lexopt::{
    Arg::{Long, Short, Value},
    Parser, ValueExt,
};

/// What the command line asks for.
#[derive(Debug)]
pub enum Request {
    /// Run a command.
    Run(Args),
    /// Print this (help or version) and exit successfully.
    Print(String),
}

/// The arguments of a command.
#[derive(Debug)]
pub struct Args {
    /// `--config FILE`: without it, the embedded default configuration.
    pub config: Option<PathBuf>,
    /// `--listen ADDR:PORT`, repeatable: replaces the configured addresses.
    pub listen: Vec<SocketAddr>,
    pub command: Command,
}

/// A command and what it alone takes.
#[derive(Debug)]
pub enum Command {
    /// Run the resolver (also with no command).
    Run,
    /// Check a configuration file and print the configuration in effect.
    CheckConfig { file: PathBuf },
    /// Resolve one question through the configured upstreams.
    Query { name: String, qtype: String },
    /// Probe padding policies against the configured upstreams.
    PaddingProbe {
        policies: Vec<PaddingPolicy>,
        names: Option<PathBuf>,
        qtype: String,
    },
    /// Measure padding policies on a trace.
    #[cfg(feature = "lab")]
    PaddingEval(EvalArgs),
}

/// Arguments of `dotstub padding eval`.
#[cfg(feature = "lab")]
#[derive(Debug)]
pub struct EvalArgs {
    pub trace: PathBuf,
    pub policies: Vec<PolicyPair>,
    pub limit: u16,
    pub runs: u32,
    pub seed: u64,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

/// Where on the command line the reader is: which command's options apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Top,
    Run,
    CheckConfig,
    Query,
    Padding,
    PaddingProbe,
    #[cfg(feature = "lab")]
    PaddingEval,
}

/// Options of any command, as read so far.
#[derive(Debug, Default)]
struct Options {
    config: Option<PathBuf>,
    listen: Vec<SocketAddr>,
    operands: Vec<OsString>,
    policies: Vec<PaddingPolicy>,
    names: Option<PathBuf>,
    qtype: Option<String>,
    #[cfg(feature = "lab")]
    pairs: Vec<PolicyPair>,
    #[cfg(feature = "lab")]
    limit: Option<u16>,
    #[cfg(feature = "lab")]
    runs: Option<u32>,
    #[cfg(feature = "lab")]
    seed: Option<u64>,
    #[cfg(feature = "lab")]
    json: bool,
    #[cfg(feature = "lab")]
    plot: Option<PathBuf>,
}

/// Reads the command line (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Request, lexopt::Error> {
    let mut parser = Parser::from_args(args);
    let mut place = Place::Top;
    let mut options = Options::default();
    while let Some(arg) = parser.next()? {
        match (arg, place) {
            (Short('h') | Long("help"), _) => return Ok(Request::Print(help(place).to_owned())),
            (Short('V') | Long("version"), _) => return Ok(Request::Print(version())),
            (Short('c') | Long("config"), _) => options.config = Some(parser.value()?.into()),
            (Long("listen"), Place::Top | Place::Run) => {
                options.listen.push(value(&mut parser, "--listen")?);
            }
            (Long("policy"), Place::PaddingProbe) => {
                options.policies.push(value(&mut parser, "--policy")?);
            }
            (Long("names"), Place::PaddingProbe) => options.names = Some(parser.value()?.into()),
            (Long("type"), Place::PaddingProbe) => options.qtype = Some(parser.value()?.string()?),
            #[cfg(feature = "lab")]
            (Long("policy"), Place::PaddingEval) => {
                options.pairs.push(value(&mut parser, "--policy")?);
            }
            #[cfg(feature = "lab")]
            (Long("limit"), Place::PaddingEval) => {
                options.limit = Some(within(&mut parser, "--limit", 512..=u16::MAX)?);
            }
            #[cfg(feature = "lab")]
            (Long("runs"), Place::PaddingEval) => {
                options.runs = Some(within(&mut parser, "--runs", 1..=10_000)?);
            }
            #[cfg(feature = "lab")]
            (Long("seed"), Place::PaddingEval) => {
                options.seed = Some(value(&mut parser, "--seed")?)
            }
            #[cfg(feature = "lab")]
            (Long("json"), Place::PaddingEval) => options.json = true,
            #[cfg(feature = "lab")]
            (Long("plot"), Place::PaddingEval) => options.plot = Some(parser.value()?.into()),
            (Value(word), Place::Top) => match word.to_str() {
                Some("run") => place = Place::Run,
                Some("check-config") => place = Place::CheckConfig,
                Some("query") => place = Place::Query,
                Some("padding") => place = Place::Padding,
                Some("help") => return Ok(Request::Print(help(Place::Top).to_owned())),
                _ => return Err(unknown_command(&word, Place::Top)),
            },
            (Value(word), Place::Padding) => match word.to_str() {
                Some("probe") => place = Place::PaddingProbe,
                #[cfg(feature = "lab")]
                Some("eval") => place = Place::PaddingEval,
                _ => return Err(unknown_command(&word, Place::Padding)),
            },
            (Value(operand), _) => options.operands.push(operand),
            (arg, _) => return Err(arg.unexpected()),
        }
    }
    let config = options.config.take();
    let listen = std::mem::take(&mut options.listen);
    let command = command(place, options)?;
    Ok(Request::Run(Args {
        config,
        listen,
        command,
    }))
}

/// The command at `place`, from its operands and options.
fn command(place: Place, options: Options) -> Result<Command, lexopt::Error> {
    let mut operands = options.operands.into_iter();
    let command = match place {
        Place::Top | Place::Run => Command::Run,
        Place::CheckConfig => Command::CheckConfig {
            file: required(
                &mut operands,
                place,
                "FILE, the configuration file to check",
            )?
            .into(),
        },
        Place::Query => Command::Query {
            name: required(&mut operands, place, "NAME, the domain name to look up")?.string()?,
            qtype: operands
                .next()
                .map_or(Ok("A".to_owned()), ValueExt::string)?,
        },
        Place::Padding => {
            return Err(format!("padding needs a command\n\n{}", usage(place)).into());
        }
        Place::PaddingProbe => Command::PaddingProbe {
            policies: options.policies,
            names: options.names,
            qtype: options.qtype.unwrap_or_else(|| "A".to_owned()),
        },
        #[cfg(feature = "lab")]
        Place::PaddingEval => Command::PaddingEval(EvalArgs {
            trace: required(&mut operands, place, "TRACE, the trace to measure")?.into(),
            policies: options.pairs,
            limit: options.limit.unwrap_or(u16::MAX),
            runs: options.runs.unwrap_or(20),
            seed: options.seed.unwrap_or(0),
            json: options.json,
            plot: options.plot,
        }),
    };
    match operands.next() {
        Some(extra) => Err(lexopt::Error::UnexpectedArgument(extra)),
        None => Ok(command),
    }
}

/// The next of `operands`, which the command at `place` needs: `what`
/// names it when it is missing.
fn required(
    operands: &mut impl Iterator<Item = OsString>,
    place: Place,
    what: &str,
) -> Result<OsString, lexopt::Error> {
    operands
        .next()
        .ok_or_else(|| format!("{} needs {what}\n\n{}", command_name(place), usage(place)).into())
}

/// The value of `option`, parsed as a `T`.
fn value<T>(parser: &mut Parser, option: &str) -> Result<T, lexopt::Error>
where
    T: FromStr,
    T::Err: Display,
{
    let text = parser.value()?.string()?;
    text.parse()
        .map_err(|error| format!("invalid value '{text}' for '{option}': {error}").into())
}

/// The value of `option`, a number within `range`.
#[cfg(feature = "lab")]
fn within<T>(
    parser: &mut Parser,
    option: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, lexopt::Error>
where
    T: FromStr + PartialOrd + Display,
    T::Err: Display,
{
    let number = value(parser, option)?;
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(format!(
            "invalid value '{number}' for '{option}': expected {} to {}",
            range.start(),
            range.end()
        )
        .into())
    }
}

/// `word` where a command of `place` (the top or `padding`) should be.
fn unknown_command(word: &OsString, place: Place) -> lexopt::Error {
    let kind = if place == Place::Top { "" } else { "padding " };
    format!("unknown {kind}command {word:?}\n\n{}", usage(place)).into()
}

fn version() -> String {
    format!("dotstub {}\n", env!("CARGO_PKG_VERSION"))
}

fn command_name(place: Place) -> &'static str {
    match place {
        Place::Top | Place::Run => "run",
        Place::CheckConfig => "check-config",
        Place::Query => "query",
        Place::Padding => "padding",
        Place::PaddingProbe => "padding probe",
        #[cfg(feature = "lab")]
        Place::PaddingEval => "padding eval",
    }
}

/// The usage line(s) of the help at `place`: its text up to the first
/// blank line after "Usage:".
fn usage(place: Place) -> &'static str {
    let text = help(place);
    let start = text.find("Usage:").unwrap_or(0);
    let end = text[start..]
        .find("\n\n")
        .map_or(text.len(), |at| start + at);
    &text[start..end]
}

fn help(place: Place) -> &'static str {
    match place {
        Place::Top => HELP,
        Place::Run => HELP_RUN,
        Place::CheckConfig => HELP_CHECK_CONFIG,
        Place::Query => HELP_QUERY,
        Place::Padding => HELP_PADDING,
        Place::PaddingProbe => HELP_PADDING_PROBE,
        #[cfg(feature = "lab")]
        Place::PaddingEval => HELP_PADDING_EVAL,
    }
}

const HELP: &str = "\
A DNS-over-TLS privacy stub resolver.

Usage: dotstub [OPTIONS] [COMMAND]

Commands:
  run           Run the resolver (the default)
  check-config  Check a configuration file and print the configuration in effect
  query         Resolve one question through the configured upstreams and print
                the answer, the upstream that gave it and the round-trip time
  padding       Padding research: measure what padding policies cost and show
  help          Print this help

Options:
  -c, --config <FILE>       Configuration file (TOML); without it, the embedded
                            default configuration runs (see config/dotstub.toml)
      --listen <ADDR:PORT>  Listen on ADDR:PORT instead of the configured
                            addresses (repeat for more)
  -h, --help                Print help (of a command: dotstub COMMAND --help)
  -V, --version             Print version
";

const HELP_RUN: &str = "\
Run the resolver (the default).

Usage: dotstub run [OPTIONS]

Options:
  -c, --config <FILE>       Configuration file (TOML); without it, the embedded
                            default configuration runs
      --listen <ADDR:PORT>  Listen on ADDR:PORT instead of the configured
                            addresses (repeat for more)
  -h, --help                Print help
";

const HELP_CHECK_CONFIG: &str = "\
Check a configuration file and print the configuration in effect.

Usage: dotstub check-config <FILE>

Arguments:
  <FILE>  The file to check

Options:
  -h, --help  Print help
";

const HELP_QUERY: &str = "\
Resolve one question through the configured upstreams and print the answer,
the upstream that gave it and the round-trip time.

Usage: dotstub query [OPTIONS] <NAME> [TYPE]

Arguments:
  <NAME>  Domain name to look up
  [TYPE]  Record type: a mnemonic (A, AAAA, MX, ...) or a number [default: A]

Options:
  -c, --config <FILE>  Configuration file (TOML); without it, the embedded
                       default configuration
  -h, --help           Print help
";

#[cfg(feature = "lab")]
const HELP_PADDING: &str = "\
Padding research: measure what padding policies cost and show.

Usage: dotstub padding <COMMAND>

Commands:
  eval   Measure padding policies on a trace of DNS transactions
  probe  Send names through every configured upstream under each policy

Options:
  -h, --help  Print help (of a command: dotstub padding COMMAND --help)
";

#[cfg(not(feature = "lab"))]
const HELP_PADDING: &str = "\
Padding research: measure what padding policies cost and show.

Usage: dotstub padding <COMMAND>

Commands:
  probe  Send names through every configured upstream under each policy
         (eval, the trace evaluator, is left out of this build)

Options:
  -h, --help  Print help (of a command: dotstub padding COMMAND --help)
";

const HELP_PADDING_PROBE: &str = "\
Send names through every configured upstream under each policy, over real TLS,
and report the query and answer sizes on the wire (DNS and TLS records), the
upstream's answer padding and the round-trip times. Bypasses the cache: every
name goes upstream.

Usage: dotstub padding probe [OPTIONS]

Options:
      --policy <POLICY>  A padding policy to probe (repeat for more): none,
                         block:N, max:N, random:N or random-block:N:K.
                         Default: none, block:128, block:468, random:128,
                         random-block:128:2 and max:1232
      --names <FILE>     File of names, one per line (# starts a comment).
                         Default: a built-in sample of 16 names
      --type <TYPE>      Record type asked for every name [default: A]
  -c, --config <FILE>    Configuration file (TOML); without it, the embedded
                         default configuration
  -h, --help             Print help
";

#[cfg(feature = "lab")]
const HELP_PADDING_EVAL: &str = "\
Measure padding policies on a trace of DNS transactions: what each costs in
octets (beta) and how much it still leaks (phi, distinct size pairs, entropy,
unique share). Formulas: docs/padding.md.

Usage: dotstub padding eval [OPTIONS] <TRACE>

Arguments:
  <TRACE>  The trace: a CSV with the header qsize,rsize[,qopt,ropt], or a pcap
           or pcapng capture of DNS over UDP and TCP port 53

Options:
      --policy <QUERY[/RESPONSE]>  A policy pair to measure (repeat for more),
                                   e.g. none, block:128/468, max:1500/4096,
                                   random-block:128:2/468:1. Default: a grid
                                   of RFC 8467's candidates
      --limit <OCTETS>             Largest padded message in octets, queries
                                   and responses alike (512 to 65535)
                                   [default: 65535]
      --runs <RUNS>                Draws averaged for a random policy
                                   (1 to 10000) [default: 20]
      --seed <SEED>                Seed of the first draw (draw k uses
                                   seed + k) [default: 0]
      --json                       Print a JSON array, one object per policy,
                                   instead of the table
      --plot <FILE.svg>            Also draw beta against phi and the padded
                                   size histograms into this SVG file
  -h, --help                       Print help
";

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> Result<Request, lexopt::Error> {
        parse(line.split_whitespace().map(OsString::from))
    }

    fn taken(line: &str) -> Args {
        match read(line) {
            Ok(Request::Run(args)) => args,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn refusal(line: &str) -> String {
        match read(line) {
            Err(error) => error.to_string(),
            Ok(other) => panic!("{line} was taken: {other:?}"),
        }
    }

    #[test]
    fn no_command_runs_the_resolver_with_the_options_given() {
        let args = taken("--listen 127.0.0.1:5353 --listen [::1]:5353 -c /etc/d.toml");
        assert!(matches!(args.command, Command::Run));
        assert_eq!(args.config, Some(PathBuf::from("/etc/d.toml")));
        assert_eq!(
            args.listen,
            [
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert!(matches!(
            taken("run --listen 127.0.0.1:53").command,
            Command::Run
        ));
    }

    #[test]
    fn query_takes_a_name_a_type_defaulting_to_a_and_the_config_anywhere() {
        let args = taken("query example.com --config x.toml");
        let Command::Query { name, qtype } = args.command else {
            panic!("{:?}", args.command);
        };
        assert_eq!((name.as_str(), qtype.as_str()), ("example.com", "A"));
        assert_eq!(args.config, Some(PathBuf::from("x.toml")));
        let Command::Query { qtype, .. } = taken("query example.com MX").command else {
            panic!();
        };
        assert_eq!(qtype, "MX");
    }

    #[test]
    fn missing_and_extra_operands_are_refused_with_the_usage() {
        let missing = refusal("check-config");
        assert!(missing.starts_with("check-config needs FILE"), "{missing}");
        assert!(
            missing.contains("Usage: dotstub check-config <FILE>"),
            "{missing}"
        );
        assert!(refusal("query").contains("needs NAME"));
        assert_eq!(
            refusal("query example.com A extra"),
            "unexpected argument \"extra\""
        );
        assert!(refusal("padding").starts_with("padding needs a command"));
    }

    #[test]
    fn unknown_commands_and_misplaced_options_are_refused() {
        assert!(refusal("serve").starts_with("unknown command \"serve\""));
        assert!(refusal("padding sweep").starts_with("unknown padding command \"sweep\""));
        assert_eq!(refusal("--verbose"), "invalid option '--verbose'");
        // --listen belongs to running the resolver, not to a query.
        assert_eq!(
            refusal("query x --listen 127.0.0.1:53"),
            "invalid option '--listen'"
        );
        assert_eq!(
            refusal("--config"),
            "missing argument for option '--config'"
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        let listen = refusal("--listen localhost");
        assert!(
            listen.starts_with("invalid value 'localhost' for '--listen'"),
            "{listen}"
        );
        let policy = refusal("padding probe --policy block:0");
        assert!(
            policy.starts_with("invalid value 'block:0' for '--policy'"),
            "{policy}"
        );
    }

    #[test]
    fn probe_takes_policies_names_and_type() {
        let Command::PaddingProbe {
            policies,
            names,
            qtype,
        } = taken("padding probe --policy none --policy block:468 --names n.txt --type AAAA")
            .command
        else {
            panic!();
        };
        assert_eq!(
            policies,
            ["none".parse().unwrap(), "block:468".parse().unwrap()]
        );
        assert_eq!(names, Some(PathBuf::from("n.txt")));
        assert_eq!(qtype, "AAAA");
    }

    #[cfg(feature = "lab")]
    #[test]
    fn eval_takes_its_options_within_their_ranges() {
        let Command::PaddingEval(eval) =
            taken("padding eval t.csv --policy block:128/468 --limit 1500 --runs 5 --seed 7 --json --plot p.svg").command
        else {
            panic!();
        };
        assert_eq!(eval.trace, PathBuf::from("t.csv"));
        assert_eq!(eval.policies, ["block:128/468".parse().unwrap()]);
        assert_eq!((eval.limit, eval.runs, eval.seed), (1500, 5, 7));
        assert!(eval.json);
        assert_eq!(eval.plot, Some(PathBuf::from("p.svg")));
        let Command::PaddingEval(defaults) = taken("padding eval t.csv").command else {
            panic!();
        };
        assert_eq!(
            (defaults.limit, defaults.runs, defaults.seed),
            (65_535, 20, 0)
        );
        assert_eq!(
            refusal("padding eval t.csv --limit 100"),
            "invalid value '100' for '--limit': expected 512 to 65535"
        );
        assert_eq!(
            refusal("padding eval t.csv --runs 0"),
            "invalid value '0' for '--runs': expected 1 to 10000"
        );
    }

    #[test]
    fn help_and_version_are_printed_for_the_command_asked() {
        let printed = |line: &str| match read(line) {
            Ok(Request::Print(text)) => text,
            other => panic!("{line}: {other:?}"),
        };
        assert!(printed("--help").contains("Usage: dotstub [OPTIONS] [COMMAND]"));
        assert!(printed("help").contains("check-config"));
        assert!(printed("query -h").contains("Usage: dotstub query [OPTIONS] <NAME> [TYPE]"));
        assert!(printed("padding probe --help").contains("--names <FILE>"));
        assert_eq!(
            printed("-V"),
            format!("dotstub {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}
