//! Configuration errors that name the file, the key, the position and the
//! reason, so a user can fix the file without reading the code.

use std::{fmt, ops::Range, path::PathBuf};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", Listing(origin, problems))]
    Invalid {
        /// The file, or the name of the embedded configuration.
        origin: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    pub(super) fn invalid(origin: &str, problems: Vec<Problem>) -> Self {
        Self::Invalid {
            origin: origin.to_owned(),
            problems,
        }
    }

    /// The problems found, empty for [`ConfigError::Read`].
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Read { .. } => &[],
            Self::Invalid { problems, .. } => problems,
        }
    }
}

/// One thing wrong in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, like `upstream[1].spki_pins[0]`; empty for the whole file.
    pub key: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What was expected and what was found.
    pub message: String,
}

impl Problem {
    pub(super) fn new(key: &str, message: impl fmt::Display) -> Self {
        Self {
            key: key.to_owned(),
            position: None,
            message: message.to_string(),
        }
    }

    /// Records the position of `span` (a byte range of `text`); an empty
    /// span at 0 means "not in the file" (a default) and is ignored.
    pub(super) fn at_span(mut self, text: &str, span: Option<Range<usize>>) -> Self {
        self.position = span.filter(|s| !s.is_empty()).map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        });
        self
    }
}

struct Listing<'a>(&'a str, &'a [Problem]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Listing(origin, problems) = self;
        for (index, problem) in problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{origin}")?;
            if let Some((line, column)) = problem.position {
                write!(f, ":{line}:{column}")?;
            }
            if !problem.key.is_empty() {
                write!(f, ": {}", problem.key)?;
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}
