//! Why the evaluator could not read a trace or write its output.
//!
//! Messages name the file and the place in it (CSV line, capture block),
//! so the person who made the trace can find and fix it.

use std::{io, path::PathBuf};

/// An evaluator failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The trace file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The trace file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A CSV line is not what the format asks for.
    #[error("{}:{line}: {problem}", path.display())]
    Csv {
        /// The trace file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: CsvProblem,
    },
    /// A capture file is damaged or of a kind the evaluator cannot read.
    #[error("{}: block {block}: {problem}", path.display())]
    Pcap {
        /// The trace file.
        path: PathBuf,
        /// 1-based number of the capture block (file header included)
        /// where reading stopped.
        block: u64,
        /// What is wrong with it.
        problem: PcapProblem,
    },
    /// The trace holds no complete query/response pair.
    #[error("{}: no complete query/response pair in the trace", path.display())]
    Empty {
        /// The trace file.
        path: PathBuf,
    },
    /// The SVG chart could not be written.
    #[error("cannot write the plot {}: {reason}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// The plotting library's account of it.
        reason: String,
    },
    /// The table or JSON could not be written.
    #[error("cannot write the report")]
    Output {
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

impl LabError {
    /// Whether the trace was at fault (bad or unreadable input), as
    /// opposed to the evaluator failing to write its output.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Read { .. } | Self::Csv { .. } | Self::Pcap { .. } | Self::Empty { .. }
        )
    }
}

/// What is wrong with one CSV line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvProblem {
    /// The first line is not one of the two headers.
    #[error("expected the header \"qsize,rsize\" or \"qsize,rsize,qopt,ropt\", found {0:?}")]
    Header(String),
    /// A line has the wrong number of fields.
    #[error("expected {expected} comma-separated fields, found {found}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields on this line.
        found: usize,
    },
    /// A size is not a whole number from the smallest possible message up
    /// to 65,535.
    #[error("{column}: expected a DNS message size from {min} to 65535 octets, found {found:?}")]
    Size {
        /// `qsize` or `rsize`.
        column: &'static str,
        /// The smallest size allowed: a header, plus an OPT record when
        /// the line says there is one.
        min: usize,
        /// The field as written.
        found: String,
    },
    /// An OPT flag is neither 0 nor 1.
    #[error("{column}: expected 0 or 1, found {found:?}")]
    Flag {
        /// `qopt` or `ropt`.
        column: &'static str,
        /// The field as written.
        found: String,
    },
}

/// What is wrong with a capture file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapProblem {
    /// The file starts like a capture but its header cannot be read.
    #[error("not a readable pcap or pcapng file header")]
    Header,
    /// The file ends in the middle of a block.
    #[error("the capture ends in the middle of a block (file truncated?)")]
    Truncated,
    /// A block is malformed.
    #[error("malformed capture block")]
    Malformed,
    /// A block is larger than the evaluator will buffer.
    #[error("capture block larger than {0} octets")]
    TooLarge(usize),
    /// Packets of a link type the evaluator cannot decode.
    #[error("link type {0} is not supported (Ethernet, raw IP, Linux cooked and BSD loopback are)")]
    LinkType(i32),
}
