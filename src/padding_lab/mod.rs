//! The padding lab's evaluator (`dotstub padding eval`): what a padding
//! policy costs in octets and how much it still leaks, measured on a trace
//! of real DNS transactions.
//!
//! The way through, one module per step:
//!
//! ```text
//! trace file --> trace::Trace       CSV (csv) or pcap/pcapng (pcap), existing padding
//!                                   stripped, kept as a histogram of size pairs
//!            --> evaluate           per PolicyPair: beta, phi, distinct pairs, entropy,
//!                                   unique share (random policies: exact spreads + draws)
//!            --> report / plot      aligned table or JSON; SVG chart
//! ```
//!
//! The policies themselves and their spreads of padded lengths belong to
//! [`crate::padding`]; this module only reads traces and measures. Every
//! formula is written out, with a worked example, in `docs/padding.md`.
//!
//! Main types: [`Trace`], [`PolicyPair`], [`Settings`], [`Evaluation`],
//! [`LabError`]; [`run_eval`] does what the command line asks.

// Maintainers: nothing here is on the resolver's hot path; allocation is
// fine. What must stay true is that no step is quadratic in the number of
// transactions: everything after reading works on the size-pair histogram.

mod csv;
mod error;
mod evaluate;
mod pcap;
mod plot;
mod policy;
mod report;
mod trace;

pub use error::{CsvProblem, LabError, PcapProblem};
pub use evaluate::{Evaluation, Settings, evaluate};
pub use plot::write_svg;
pub use policy::{BadPolicyPair, PolicyPair, default_grid};
pub use report::{json, table};
pub use trace::{CaptureStats, Message, Source, Trace, Transaction};

use std::{io::Write, path::PathBuf};

/// One `dotstub padding eval` run, as the command line asked for it.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The trace: CSV, pcap or pcapng (told apart by content).
    pub trace: PathBuf,
    /// The policies to measure; empty means [`default_grid`].
    pub policies: Vec<PolicyPair>,
    /// Limit, runs and seed.
    pub settings: Settings,
    /// Print JSON instead of the table.
    pub json: bool,
    /// Also write an SVG chart to this file.
    pub plot: Option<PathBuf>,
}

/// Reads the trace, evaluates every policy, writes the plot if asked and
/// prints the table or JSON to `out`. Returns the trace read, whose
/// [`Trace::source`] says what was found in it.
pub fn run_eval(request: &EvalRequest, out: &mut impl Write) -> Result<Trace, LabError> {
    let trace = Trace::read(&request.trace)?;
    let policies = match request.policies.is_empty() {
        true => default_grid(),
        false => request.policies.clone(),
    };
    let evaluations: Vec<Evaluation> = policies
        .iter()
        .map(|policy| evaluate(&trace, policy, &request.settings))
        .collect();
    if let Some(path) = &request.plot {
        write_svg(path, &trace, &evaluations)?;
    }
    let text = match request.json {
        true => json(&evaluations),
        false => table(&evaluations),
    };
    out.write_all(text.as_bytes())
        .map_err(|source| LabError::Output { source })?;
    Ok(trace)
}
