//! A trace of DNS transactions, kept as a histogram of unpadded
//! (query, response) size pairs: the only thing the evaluator needs, and
//! small whatever the number of transactions.
//!
//! Reading is told apart by content, not by file name: a pcap or pcapng
//! magic number means a capture ([`super::pcap`]), anything else is read as
//! CSV ([`super::csv`]).

use std::{
    collections::HashMap,
    fmt,
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use foldhash::fast::RandomState;

use super::{LabError, csv, pcap};

/// One DNS message as the evaluator sees it: its length without any
/// Padding option, and whether it has an OPT record to put one in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Message {
    /// Octets of the DNS message (no TCP length prefix), existing Padding
    /// options (with their 4-octet headers) taken out.
    pub len: u16,
    /// Whether the message has an OPT record (RFC 6891).
    pub has_opt: bool,
}

impl Message {
    /// Octets of the OPT record a message without one gains to carry
    /// padding: root name, type, class, TTL and RDLENGTH (RFC 6891 §6.1.2).
    pub const OPT_RECORD_LEN: usize = 11;
    /// Octets of the Padding option's code and length (RFC 7830 §3).
    pub const OPTION_HEADER_LEN: usize = 4;

    /// The message's length once it carries an empty Padding option: what
    /// [`crate::padding::PaddingPolicy::spread`] takes.
    pub fn with_empty_option(&self) -> usize {
        let opt = match self.has_opt {
            true => 0,
            false => Self::OPT_RECORD_LEN,
        };
        usize::from(self.len) + Self::OPTION_HEADER_LEN + opt
    }
}

/// A query and the response it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Transaction {
    /// The query.
    pub query: Message,
    /// The response.
    pub response: Message,
}

/// What a capture held besides the pairs that were kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets (capture records) read.
    pub packets: u64,
    /// DNS messages found on port 53, over UDP and TCP.
    pub messages: u64,
    /// Queries never answered in the capture.
    pub unanswered: u64,
    /// Responses to no query seen (capture started late, or spoofed).
    pub unmatched: u64,
    /// Port-53 payloads that were not a readable DNS message, IP fragments
    /// and TCP streams lost to a gap.
    pub skipped: u64,
    /// Messages whose existing Padding option was taken out.
    pub padded: u64,
}

/// Where a trace came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A CSV of size pairs; `with_opt` tells whether it had the
    /// `qopt,ropt` columns.
    Csv {
        /// Whether the OPT columns were present.
        with_opt: bool,
    },
    /// A pcap or pcapng capture.
    Capture(CaptureStats),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Csv { with_opt: true } => f.write_str("CSV with OPT columns"),
            Self::Csv { with_opt: false } => f.write_str("CSV, no message has an OPT record"),
            Self::Capture(stats) => write!(
                f,
                "capture: {} packets, {} DNS messages, {} queries unanswered, \
                 {} responses unmatched, {} skipped, {} had padding taken out",
                stats.packets,
                stats.messages,
                stats.unanswered,
                stats.unmatched,
                stats.skipped,
                stats.padded
            ),
        }
    }
}

/// The transactions of a trace, counted per distinct size pair.
#[derive(Debug, Clone)]
pub struct Trace {
    // A hash map, not a vector of transactions: a million transactions
    // have a few thousand distinct pairs, and every metric is a function
    // of these counts.
    pairs: HashMap<Transaction, u64, RandomState>,
    total: u64,
    source: Source,
}

impl Trace {
    /// An empty trace from `source`.
    pub fn new(source: Source) -> Self {
        Self {
            pairs: HashMap::default(),
            total: 0,
            source,
        }
    }

    /// Reads a CSV, pcap or pcapng trace, stripping existing padding.
    /// A trace without a single complete pair is an error.
    pub fn read(path: &Path) -> Result<Self, LabError> {
        let read_error = |source| LabError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let mut magic = [0; 4];
        let got = read_up_to(&mut file, &mut magic).map_err(read_error)?;
        let file = File::open(path).map_err(read_error)?;
        let trace = match pcap::is_capture(&magic[..got]) {
            true => pcap::read(path, file)?,
            false => csv::read(path, BufReader::new(file))?,
        };
        match trace.is_empty() {
            true => Err(LabError::Empty {
                path: path.to_owned(),
            }),
            false => Ok(trace),
        }
    }

    /// Counts one more transaction.
    pub fn add(&mut self, transaction: Transaction) {
        self.add_many(transaction, 1);
    }

    /// Counts `count` more transactions of the same sizes.
    pub fn add_many(&mut self, transaction: Transaction, count: u64) {
        *self.pairs.entry(transaction).or_default() += count;
        self.total += count;
    }

    /// Number of transactions (N).
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether there is no transaction at all.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Each distinct transaction with how often it occurs (U), in no
    /// particular order.
    pub fn pairs(&self) -> impl Iterator<Item = (Transaction, u64)> + '_ {
        self.pairs.iter().map(|(pair, count)| (*pair, *count))
    }

    /// Number of distinct (query, response) messages.
    pub fn distinct(&self) -> usize {
        self.pairs.len()
    }

    /// Where the trace came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    pub(super) fn set_source(&mut self, source: Source) {
        self.source = source;
    }
}

/// Fills as much of `buf` as the file has.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_costs_four_octets_and_the_opt_record_eleven_more() {
        let with_opt = Message {
            len: 40,
            has_opt: true,
        };
        let without = Message {
            len: 40,
            has_opt: false,
        };
        assert_eq!(with_opt.with_empty_option(), 44);
        assert_eq!(without.with_empty_option(), 55);
    }

    #[test]
    fn equal_pairs_are_counted_once_with_their_multiplicity() {
        let message = |len| Message {
            len,
            has_opt: false,
        };
        let mut trace = Trace::new(Source::Csv { with_opt: false });
        let pair = Transaction {
            query: message(30),
            response: message(90),
        };
        trace.add(pair);
        trace.add(pair);
        trace.add_many(
            Transaction {
                query: message(31),
                response: message(90),
            },
            3,
        );
        assert_eq!(trace.len(), 5);
        assert_eq!(trace.distinct(), 2);
        assert!(trace.pairs().any(|(p, n)| p == pair && n == 2));
    }
}
