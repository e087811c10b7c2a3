//! What validation concludes about an answer ([`Verdict`]), and why an
//! answer failed ([`Failure`]): an Extended DNS Error code (RFC 8914) and
//! the name that failed, which the client reads in the EXTRA-TEXT.

use std::fmt;

use hickory_proto::rr::Name;

pub use crate::wire::reply::ede;

/// Why an answer could not be proven secure or insecure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Extended DNS Error info code, from [`ede`].
    pub code: u16,
    /// What went wrong, in a few words.
    pub reason: &'static str,
    /// The name (and type) that failed.
    pub name: Name,
}

impl Failure {
    /// A failure `code` of `name`, for `reason`.
    pub fn new(code: u16, reason: &'static str, name: &Name) -> Self {
        Self {
            code,
            reason,
            name: name.clone(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.name)
    }
}

/// The outcome of validating an answer or a step of the chain of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed all the way from a trust anchor: the client may see AD=1.
    Secure,
    /// Proven to lie under an unsigned delegation (or a zone signed only
    /// with algorithms dotstub does not know): passed on with AD=0.
    Insecure,
    /// Should be signed and is not, or the signatures or proofs are wrong:
    /// SERVFAIL with the failure's EDE.
    Bogus(Failure),
    /// A DS or DNSKEY fetch failed, so nothing could be decided: SERVFAIL
    /// with EDE 22, cached for a few seconds like an upstream's SERVFAIL;
    /// the key cache keeps nothing of it, so the next query asks again.
    Indeterminate(Failure),
}

impl Verdict {
    /// The verdict of an answer made of parts with verdicts `self` and
    /// `other`: any failure wins, then insecure, else secure.
    pub fn and(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (Bogus(f), _) | (_, Bogus(f)) => Bogus(f),
            (Indeterminate(f), _) | (_, Indeterminate(f)) => Indeterminate(f),
            (Insecure, _) | (_, Insecure) => Insecure,
            (Secure, Secure) => Secure,
        }
    }

    /// The failure, when there is one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Self::Bogus(failure) | Self::Indeterminate(failure) => Some(failure),
            Self::Secure | Self::Insecure => None,
        }
    }

    /// Whether the answer is secure.
    pub fn is_secure(&self) -> bool {
        matches!(self, Self::Secure)
    }
}
