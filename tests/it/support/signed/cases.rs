//! The contract between the hierarchy and a validator: each query and the
//! verdict, rcode and Extended DNS Error (RFC 8914) it must end in.

use std::fmt;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// What validation must conclude about an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed from the trust anchor down: AD=1 for clients that ask.
    Secure,
    /// Provably unsigned (or signed only with what is not understood): AD=0.
    Insecure,
    /// Should be signed and is not verifiable: SERVFAIL with an EDE.
    Bogus,
}

/// The Extended DNS Error a bogus answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ede {
    /// INFO-CODE: 6 DNSSEC Bogus, 7 Signature Expired, 8 Signature Not Yet
    /// Valid, 9 DNSKEY Missing, 10 RRSIGs Missing, 12 NSEC Missing.
    pub code: u16,
    /// The name that failed, which EXTRA-TEXT must contain.
    pub culprit: &'static str,
}

/// One query against the hierarchy and its expected outcome.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// What the case is about, for failure messages.
    pub what: &'static str,
    /// The query name.
    pub qname: &'static str,
    /// The query type.
    pub qtype: RecordType,
    /// The rcode of the data itself, as a CD=1 query gets it.
    pub rcode: ResponseCode,
    /// What validation concludes.
    pub verdict: Verdict,
    /// For `Bogus`, the EDE; `None` otherwise.
    pub ede: Option<Ede>,
}

impl Case {
    const fn new(what: &'static str, qname: &'static str, qtype: RecordType) -> Case {
        Case {
            what,
            qname,
            qtype,
            rcode: ResponseCode::NoError,
            verdict: Verdict::Secure,
            ede: None,
        }
    }

    const fn nxdomain(mut self) -> Case {
        self.rcode = ResponseCode::NXDomain;
        self
    }

    const fn insecure(mut self) -> Case {
        self.verdict = Verdict::Insecure;
        self
    }

    const fn bogus(mut self, code: u16, culprit: &'static str) -> Case {
        self.verdict = Verdict::Bogus;
        self.ede = Some(Ede { code, culprit });
        self
    }

    /// The rcode a validating dotstub answers with: SERVFAIL when bogus.
    pub fn validated_rcode(&self) -> ResponseCode {
        match self.verdict {
            Verdict::Bogus => ResponseCode::ServFail,
            Verdict::Secure | Verdict::Insecure => self.rcode,
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.what, self.qname, self.qtype)
    }
}

use RecordType::{A, DNSKEY, TXT};

const DNSSEC_BOGUS: u16 = 6;
const SIGNATURE_EXPIRED: u16 = 7;
const SIGNATURE_NOT_YET_VALID: u16 = 8;
const DNSKEY_MISSING: u16 = 9;
const RRSIGS_MISSING: u16 = 10;
const NSEC_MISSING: u16 = 12;

/// Every case, grouped as the hierarchy is.
pub static CASES: &[Case] = &[
    // One zone per algorithm, each a child of tld. with a DS.
    Case::new("RSASHA1 (5)", "www.rsasha1.tld.", A),
    Case::new("RSASHA1-NSEC3-SHA1 (7)", "www.rsasha1-nsec3.tld.", A),
    Case::new("RSASHA1-NSEC3-SHA1 (7) denial", "nx.rsasha1-nsec3.tld.", A).nxdomain(),
    Case::new("RSASHA256 (8)", "www.rsasha256.tld.", A),
    Case::new("RSASHA512 (10)", "www.rsasha512.tld.", A),
    Case::new("ECDSAP256SHA256 (13)", "www.ecdsap256.tld.", A),
    Case::new("ECDSAP384SHA384 (14)", "www.ecdsap384.tld.", A),
    Case::new("ED25519 (15)", "www.ed25519.tld.", A),
    Case::new("ED448 (16)", "www.ed448.tld.", A),
    Case::new("ED448 (16) denial", "nx.ed448.tld.", A).nxdomain(),
    Case::new("DNSKEY at an apex", "ecdsap256.tld.", DNSKEY),
    // NSEC denial.
    Case::new("NSEC NXDOMAIN", "nx.nsec.tld.", A).nxdomain(),
    Case::new("NSEC NODATA", "www.nsec.tld.", TXT),
    Case::new("NSEC wildcard answer", "x.w.nsec.tld.", A),
    Case::new("NSEC wildcard NODATA", "x.w.nsec.tld.", TXT),
    Case::new("NSEC empty non-terminal NODATA", "ent.nsec.tld.", A),
    // NSEC3, no salt, no extra iterations (RFC 9276 §3.1).
    Case::new("NSEC3 NXDOMAIN", "nx.nsec3.tld.", A).nxdomain(),
    Case::new("NSEC3 NODATA", "www.nsec3.tld.", TXT),
    Case::new("NSEC3 wildcard answer", "x.w.nsec3.tld.", A),
    Case::new("NSEC3 wildcard NODATA", "x.w.nsec3.tld.", TXT),
    Case::new("NSEC3 empty non-terminal NODATA", "ent.nsec3.tld.", A),
    // NSEC3 with salt aabbccdd and 10 iterations.
    Case::new("salted NSEC3 NXDOMAIN", "nx.nsec3-salted.tld.", A).nxdomain(),
    Case::new("salted NSEC3 NODATA", "www.nsec3-salted.tld.", TXT),
    Case::new("salted NSEC3 wildcard answer", "x.w.nsec3-salted.tld.", A),
    Case::new("salted NSEC3 wildcard NODATA", "x.w.nsec3-salted.tld.", TXT),
    Case::new(
        "salted NSEC3 empty non-terminal",
        "ent.nsec3-salted.tld.",
        A,
    ),
    // NSEC3 opt-out: a name covered by an opt-out NSEC3 may be an unsigned
    // delegation, so its NXDOMAIN is insecure (RFC 5155 §9.2); names with
    // their own NSEC3 are still proven. Wildcards are left out: validators
    // differ on opt-out spans there.
    Case::new("opt-out NXDOMAIN", "nx.nsec3-optout.tld.", A)
        .nxdomain()
        .insecure(),
    Case::new("opt-out NODATA", "www.nsec3-optout.tld.", TXT),
    Case::new("opt-out empty non-terminal", "ent.nsec3-optout.tld.", A),
    Case::new(
        "opt-out unsigned delegation",
        "www.unsigned.nsec3-optout.tld.",
        A,
    )
    .insecure(),
    // 500 iterations, over the RFC 9276 §3.2 cap: every NSEC3 proof is
    // insecure. RFC 9276 suggests EDE 27 with it; the contract asks none.
    Case::new("NSEC3 500 iterations NXDOMAIN", "nx.nsec3-iter500.tld.", A)
        .nxdomain()
        .insecure(),
    Case::new("NSEC3 500 iterations NODATA", "www.nsec3-iter500.tld.", TXT).insecure(),
    Case::new("NSEC3 500 iterations wildcard", "x.w.nsec3-iter500.tld.", A).insecure(),
    Case::new(
        "NSEC3 500 iterations wildcard NODATA",
        "x.w.nsec3-iter500.tld.",
        TXT,
    )
    .insecure(),
    Case::new("NSEC3 500 iterations ENT", "ent.nsec3-iter500.tld.", A).insecure(),
    Case::new("NSEC3 500 iterations positive", "www.nsec3-iter500.tld.", A),
    // Insecure delegations and DS algorithms.
    Case::new("no DS, NSEC proof", "www.insecure.tld.", A).insecure(),
    Case::new("no DS, NSEC3 proof", "www.insecure.nsec3.tld.", A).insecure(),
    Case::new("DS of unknown algorithm only", "www.unknown-alg.tld.", A).insecure(),
    Case::new("extra DS of unknown digest", "www.unknown-digest.tld.", A),
    Case::new(
        "DS of unknown digest only",
        "www.unknown-digest-only.tld.",
        A,
    )
    .insecure(),
    // Chains.
    Case::new("CNAME secure to secure", "cname.ecdsap256.tld.", A),
    Case::new(
        "CNAME secure to insecure",
        "cname-insecure.ecdsap256.tld.",
        A,
    )
    .insecure(),
    Case::new(
        "CNAME two hops across two secure zones",
        "two-hops.ecdsap256.tld.",
        A,
    ),
    Case::new("DNAME, unsigned CNAME", "www.dname.ecdsap256.tld.", A),
    Case::new(
        "DNAME secure to insecure",
        "www.dname-insecure.ecdsap256.tld.",
        A,
    )
    .insecure(),
    // Signatures expiring long before the TTLs (`SHORT_LIFETIME`).
    Case::new("short-lived signatures", "www.short-lived.tld.", A),
    Case::new("short-lived NXDOMAIN", "nx.short-lived.tld.", A).nxdomain(),
    Case::new("short-lived NODATA", "www.short-lived.tld.", TXT),
    Case::new("short-lived wildcard", "x.w.short-lived.tld.", A),
    // Bogus signatures.
    Case::new("corrupted signature", "corrupt.bogus.tld.", A)
        .bogus(DNSSEC_BOGUS, "corrupt.bogus.tld."),
    Case::new("expired signature", "expired.bogus.tld.", A)
        .bogus(SIGNATURE_EXPIRED, "expired.bogus.tld."),
    Case::new("signature not yet valid", "future.bogus.tld.", A)
        .bogus(SIGNATURE_NOT_YET_VALID, "future.bogus.tld."),
    Case::new("signed by an unpublished key", "unpublished.bogus.tld.", A)
        .bogus(DNSSEC_BOGUS, "unpublished.bogus.tld."),
    Case::new("RRSIG stripped", "stripped.bogus.tld.", A)
        .bogus(RRSIGS_MISSING, "stripped.bogus.tld."),
    // Bogus chains of trust.
    Case::new("DS matches no DNSKEY", "www.ds-mismatch.tld.", A)
        .bogus(DNSKEY_MISSING, "ds-mismatch.tld."),
    Case::new("DS with a wrong digest", "www.ds-bad-digest.tld.", A)
        .bogus(DNSKEY_MISSING, "ds-bad-digest.tld."),
    Case::new("DS over an unsigned child", "www.ds-unsigned.tld.", A)
        .bogus(DNSKEY_MISSING, "ds-unsigned.tld."),
    Case::new("DS stripped, no proof", "www.stripped-ds.tld.", A)
        .bogus(NSEC_MISSING, "stripped-ds.tld."),
    // Bogus denials.
    Case::new("NSEC proof missing", "missing-proof.nsec.tld.", A)
        .nxdomain()
        .bogus(NSEC_MISSING, "missing-proof.nsec.tld."),
    Case::new("NSEC3 proof missing", "missing-proof.nsec3.tld.", A)
        .nxdomain()
        .bogus(NSEC_MISSING, "missing-proof.nsec3.tld."),
    Case::new("NSEC proof wrong", "wrong-proof.nsec.tld.", A)
        .nxdomain()
        .bogus(NSEC_MISSING, "wrong-proof.nsec.tld."),
    Case::new("NSEC3 proof wrong", "wrong-proof.nsec3.tld.", A)
        .nxdomain()
        .bogus(NSEC_MISSING, "wrong-proof.nsec3.tld."),
];
