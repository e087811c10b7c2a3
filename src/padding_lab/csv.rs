//! The CSV trace format: a header line `qsize,rsize` or
//! `qsize,rsize,qopt,ropt`, then one transaction per line.
//!
//! Sizes are DNS message lengths in octets without the TCP length prefix,
//! taken as unpadded. `qopt`/`ropt` are 1 when that message already has an
//! OPT record, 0 when not; without those columns no message has one. Blank
//! lines are skipped; spaces around fields and a final CR are allowed.

use std::{io::BufRead, path::Path};

use super::{
    CsvProblem, LabError,
    trace::{Message, Source, Trace, Transaction},
};
use crate::wire::HEADER_LEN;

/// Reads a CSV trace from `reader`; `path` is only for messages.
pub(super) fn read(path: &Path, reader: impl BufRead) -> Result<Trace, LabError> {
    let mut lines = reader.lines();
    let mut header = None;
    let mut number = 0;
    let mut trace = Trace::new(Source::Csv { with_opt: false });
    let mut with_opt = false;
    while let Some(line) = lines.next().transpose().map_err(|source| LabError::Read {
        path: path.to_owned(),
        source,
    })? {
        number += 1;
        let bad = |problem| LabError::Csv {
            path: path.to_owned(),
            line: number,
            problem,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match header {
            None => {
                with_opt = parse_header(line).map_err(bad)?;
                header = Some(with_opt);
            }
            Some(with_opt) => trace.add(parse_line(line, with_opt).map_err(bad)?),
        }
    }
    trace.set_source(Source::Csv { with_opt });
    Ok(trace)
}

/// Whether the header has the OPT columns.
fn parse_header(line: &str) -> Result<bool, CsvProblem> {
    let names: Vec<&str> = line.split(',').map(str::trim).collect();
    match names.as_slice() {
        ["qsize", "rsize"] => Ok(false),
        ["qsize", "rsize", "qopt", "ropt"] => Ok(true),
        _ => Err(CsvProblem::Header(line.to_owned())),
    }
}

fn parse_line(line: &str, with_opt: bool) -> Result<Transaction, CsvProblem> {
    let expected = if with_opt { 4 } else { 2 };
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != expected {
        return Err(CsvProblem::FieldCount {
            expected,
            found: fields.len(),
        });
    }
    let flag = |index: usize, column| match fields.get(index).copied() {
        None => Ok(false),
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(found) => Err(CsvProblem::Flag {
            column,
            found: found.to_owned(),
        }),
    };
    let (qopt, ropt) = match with_opt {
        true => (flag(2, "qopt")?, flag(3, "ropt")?),
        false => (false, false),
    };
    Ok(Transaction {
        query: message(fields[0], qopt, "qsize")?,
        response: message(fields[1], ropt, "rsize")?,
    })
}

fn message(field: &str, has_opt: bool, column: &'static str) -> Result<Message, CsvProblem> {
    let min = HEADER_LEN + if has_opt { Message::OPT_RECORD_LEN } else { 0 };
    field
        .parse::<u16>()
        .ok()
        .filter(|len| usize::from(*len) >= min)
        .map(|len| Message { len, has_opt })
        .ok_or_else(|| CsvProblem::Size {
            column,
            min,
            found: field.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn parse(text: &str) -> Result<Trace, LabError> {
        read(Path::new("t.csv"), text.as_bytes())
    }

    fn problem(text: &str) -> (usize, CsvProblem) {
        match parse(text) {
            Err(LabError::Csv {
                path,
                line,
                problem,
            }) => {
                assert_eq!(path, PathBuf::from("t.csv"));
                (line, problem)
            }
            other => panic!("expected a CSV error, got {other:?}"),
        }
    }

    #[test]
    fn reads_both_headers_and_opt_flags() {
        let plain = parse("qsize,rsize\n30,90\n30,90\n").unwrap();
        assert_eq!(plain.len(), 2);
        assert_eq!(plain.source(), &Source::Csv { with_opt: false });
        let flagged = parse("qsize, rsize, qopt, ropt\r\n\n40,120,1,0\r\n").unwrap();
        let (pair, count) = flagged.pairs().next().unwrap();
        assert_eq!(count, 1);
        assert!(pair.query.has_opt && !pair.response.has_opt);
        assert_eq!((pair.query.len, pair.response.len), (40, 120));
    }

    #[test]
    fn bad_lines_are_reported_with_their_line_number() {
        assert!(matches!(
            problem("qsize;rsize\n"),
            (1, CsvProblem::Header(_))
        ));
        assert_eq!(
            problem("qsize,rsize\n30,90\n\n30\n"),
            (
                4,
                CsvProblem::FieldCount {
                    expected: 2,
                    found: 1
                }
            )
        );
        assert!(matches!(
            problem("qsize,rsize\n30,big\n"),
            (
                2,
                CsvProblem::Size {
                    column: "rsize",
                    ..
                }
            )
        ));
        assert!(matches!(
            problem("qsize,rsize\n11,90\n"),
            (
                2,
                CsvProblem::Size {
                    column: "qsize",
                    min: 12,
                    ..
                }
            )
        ));
        assert!(matches!(
            problem("qsize,rsize,qopt,ropt\n20,90,1,0\n"),
            (2, CsvProblem::Size { min: 23, .. })
        ));
        assert!(matches!(
            problem("qsize,rsize,qopt,ropt\n30,90,yes,0\n"),
            (2, CsvProblem::Flag { column: "qopt", .. })
        ));
        assert!(matches!(
            problem("qsize,rsize\n70000,90\n"),
            (2, CsvProblem::Size { .. })
        ));
    }
}
