//! A signed DNS hierarchy made at test time, and a responder that answers
//! from it like a recursive resolver queried with DO=1 and CD=1: the
//! upstream behind dotstub when its DNSSEC validator is under test.
//!
//! A private root (KSK and ZSK) delegates `tld.`, which delegates one zone
//! per signing algorithm, NSEC and NSEC3 denial zones, insecure and
//! unknown-algorithm and unknown-digest delegations, CNAME/DNAME chains,
//! a zone whose signatures expire before its TTLs, and bogus variants.
//! [`CASES`] lists the queries and what a validator must conclude; the
//! trust anchor comes from [`Hierarchy::trust_anchor_text`].
//!
//! Keys are generated and zones signed once per test process, with
//! inception an hour ago and expiration a day ahead ([`SHORT_LIFETIME`]
//! ahead in `short-lived.tld.`).

mod cases;
mod hierarchy;
mod keys;
mod responder;
mod zone;

pub use cases::{CASES, Case, Verdict};
pub use hierarchy::{Hierarchy, SHORT_LIFETIME};
pub use keys::ED448;
pub use zone::{TTL, Zone, nsec3_owner};
