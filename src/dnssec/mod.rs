//! DNSSEC validation (RFC 4033-4035, RFC 5155, RFC 6840): whether an
//! upstream's answer is secure, insecure or bogus, decided by dotstub from
//! its trust anchors down, so that an upstream that lies is caught.
//!
//! The resolver asks upstream with DO=1 and CD=1 and hands each answer to
//! [`Validator::validate`]. It follows the answer section as a chain
//! (CNAME, DNAME) and checks each RRset's signature with the keys of its
//! signer; a wildcard expansion needs proof that the name itself does not
//! exist; an answer with no data needs a denial proof (module `denial`).
//! The keys come from the chain of trust (module `chain`), fetched through
//! [`Fetch`] and kept in their own bounded cache.
//!
//! - [`TrustAnchors`]: built-in root keys or a trust anchor file.
//! - [`Verdict`] and [`Failure`]: the outcome and its Extended DNS Error.

mod anchor;
mod chain;
mod denial;
mod rrset;
mod verdict;

use std::{
    future::Future,
    num::NonZeroUsize,
    time::{SystemTime, UNIX_EPOCH},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{Name, RData, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};

use crate::{config::DnssecConfig, wire::Section};

pub use self::{
    anchor::{AnchorError, TrustAnchors},
    denial::MAX_NSEC3_ITERATIONS,
    verdict::{Failure, Verdict, ede},
};
use self::{
    chain::{Chain, Status, Zone, verified_denial},
    denial::{Denial, Proof},
    rrset::{RrSet, Signed, rrsets},
};

/// Longest CNAME/DNAME chain followed in one answer.
const MAX_CHAIN: usize = 16;

/// A fetch of DS or DNSKEY records failed (timeout, every upstream down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no upstream answered")]
pub struct FetchError;

/// Asks upstream for the records validation needs, with DO=1 and CD=1.
pub trait Fetch: Sync {
    /// The upstream's response to `name`/`rtype`.
    fn fetch(
        &self,
        name: &Name,
        rtype: RecordType,
    ) -> impl Future<Output = Result<Message, FetchError>> + Send;

    /// Whether the query these fetches serve is out of time: a fetch
    /// that failed then may have failed for want of time, which says
    /// nothing of the name it asked.
    fn out_of_time(&self) -> bool;
}

/// The outcome of validating one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Secure, insecure, bogus or undecided.
    pub verdict: Verdict,
    /// Seconds until the first signature the verdict rests on expires: no
    /// TTL of the answer may be longer.
    pub valid_for: Option<u32>,
    /// The RRsets (owner, lowercase, and type) of the answer and authority
    /// sections that the verdict rests on: signatures checked, or a CNAME
    /// synthesized from a checked DNAME. A secure answer is passed on with
    /// these alone (RFC 4035 §3.2.3: AD covers every RRset sent).
    /// Each with the section it was checked in: an RRset of the same owner
    /// and type in another section was not.
    pub checked: Vec<Checked>,
}

/// One RRset validation relied on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Where it stood.
    pub section: Section,
    /// Its owner.
    pub name: Name,
    /// Its type.
    pub rtype: RecordType,
    /// Its signature's Original TTL, which its TTL may not exceed (RFC 4035
    /// §5.3.3); `None` for a CNAME synthesized from a checked DNAME.
    pub original_ttl: Option<u32>,
}

impl Validated {
    /// Whether the RRset `name`/`rtype` of `section` is among those checked.
    pub fn is_checked(&self, section: Section, name: &Name, rtype: RecordType) -> bool {
        self.checked
            .iter()
            .any(|set| set.section == section && set.rtype == rtype && set.name == *name)
    }

    /// The lowest Original TTL among the checked RRsets of `section` of
    /// type `rtype` (any type, for RRSIG records): a TTL above it was
    /// stretched on the way.
    pub fn original_ttl(&self, section: Section, rtype: RecordType) -> Option<u32> {
        self.checked
            .iter()
            .filter(|set| set.section == section)
            .filter(|set| set.rtype == rtype || rtype == RecordType::RRSIG)
            .filter_map(|set| set.original_ttl)
            .min()
    }
}

/// Validates answers; holds the trust anchors and the key cache.
#[derive(Debug)]
pub struct Validator {
    chain: Chain,
}

impl Validator {
    /// A validator starting from `anchors`, whose key cache remembers at
    /// most `cache_names` names.
    pub fn new(anchors: TrustAnchors, cache_names: NonZeroUsize) -> Self {
        Self {
            chain: Chain::new(anchors, cache_names),
        }
    }

    /// The validator `config` asks for, if any.
    pub fn from_config(config: &DnssecConfig) -> Option<Self> {
        config
            .validate
            .then(|| Self::new(config.anchors.clone(), config.key_cache_names))
    }

    /// Validates `response`, the upstream's answer to `qname`/`qtype`.
    pub async fn validate(
        &self,
        qname: &Name,
        qtype: RecordType,
        response: &Message,
        fetch: &impl Fetch,
    ) -> Validated {
        let mut check = Check {
            chain: &self.chain,
            fetch,
            now: unix_now(),
            authority: rrsets(&response.authorities),
            used: Used::default(),
        };
        let verdict = check.response(qname, qtype, response).await;
        let valid_for = check
            .used
            .expiration
            .map(|signed| signed.expiration.wrapping_sub(check.now));
        Validated {
            verdict,
            valid_for,
            checked: check.used.checked,
        }
    }
}

/// The state of one validation.
struct Check<'a, 'm, F> {
    chain: &'a Chain,
    fetch: &'a F,
    /// Seconds since the epoch, mod 2^32 (RFC 4034 §3.1.5).
    now: u32,
    authority: Vec<RrSet<'m>>,
    used: Used,
}

/// What a validation has relied on so far.
#[derive(Debug, Default)]
struct Used {
    /// The signature that expires first.
    expiration: Option<Signed>,
    /// The RRsets checked, owner and type.
    checked: Vec<Checked>,
}

impl Used {
    /// Records that `name`/`rtype` verified, signed as `signed`.
    fn signed(&mut self, section: Section, set: &RrSet<'_>, signed: Signed, now: u32) {
        self.signature(signed, now);
        self.checked.push(Checked {
            section,
            name: set.name.clone(),
            rtype: set.rtype,
            original_ttl: Some(signed.original_ttl),
        });
    }

    /// Records a signature relied on: the answer lives no longer than it.
    fn signature(&mut self, signed: Signed, now: u32) {
        self.expiration = Some(signed.earliest(self.expiration, now));
    }

    /// Records an RRset relied on without a signature of its own.
    fn checked(&mut self, section: Section, name: &Name, rtype: RecordType) {
        // `Name`'s equality ignores case: no lower-cased copy needed.
        self.checked.push(Checked {
            section,
            name: name.clone(),
            rtype,
            original_ttl: None,
        });
    }

    /// The denial proofs `zone` signed in `authority`, recorded as used:
    /// their signatures bound the answer's lifetime like any other.
    fn proofs<'s>(
        &mut self,
        zone: &Zone,
        authority: &'s [RrSet<'s>],
        now: u32,
    ) -> Result<Denial<'s>, Failure> {
        let proofs = verified_denial(&zone.apex, &zone.keys, authority, now)?;
        if let Some(signed) = proofs.expiration {
            self.signature(signed, now);
        }
        for (name, rtype, original_ttl) in proofs.sets {
            self.checked.push(Checked {
                section: Section::Authority,
                name: name.clone(),
                rtype,
                original_ttl: Some(original_ttl),
            });
        }
        Ok(proofs.denial)
    }
}

impl<F: Fetch> Check<'_, '_, F> {
    async fn response(&mut self, qname: &Name, qtype: RecordType, response: &Message) -> Verdict {
        let rcode = response.metadata.response_code;
        if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
            // SERVFAIL, REFUSED...: no data to judge; passed on as it is.
            return Verdict::Insecure;
        }
        let answers = rrsets(&response.answers);
        let mut verdict = Verdict::Secure;
        let mut sname = qname.to_lowercase();
        for _ in 0..MAX_CHAIN {
            let exact = |rtype| {
                answers
                    .iter()
                    .find(|set: &&RrSet<'_>| set.rtype == rtype && *set.name == sname)
            };
            if let Some(set) = exact(qtype) {
                return verdict.and(self.data(set, &sname).await);
            }
            let dname = answers.iter().find(|set| {
                set.rtype == RecordType::DNAME && set.name.zone_of(&sname) && *set.name != sname
            });
            // A DNAME comes first: the CNAME synthesized from it at sname
            // is unsigned, and only the DNAME's signature counts (RFC 6672
            // §5.3.1).
            if let Some(set) = dname {
                verdict = verdict.and(self.data(set, &sname).await);
                let Some(target) = dname_target(set, &sname) else {
                    break;
                };
                // The unsigned CNAME beside it must say what the DNAME says.
                if let Some(cname) = exact(RecordType::CNAME) {
                    match cname.records.first().map(|r| &r.data) {
                        Some(RData::CNAME(said)) if said.0 == target => {
                            self.used
                                .checked(Section::Answer, &sname, RecordType::CNAME);
                        }
                        _ => {
                            let reason = "CNAME does not follow from the DNAME";
                            return Verdict::Bogus(Failure::new(ede::DNSSEC_BOGUS, reason, &sname));
                        }
                    }
                }
                sname = target;
                continue;
            }
            if let Some(set) = exact(RecordType::CNAME) {
                verdict = verdict.and(self.data(set, &sname).await);
                match set.records.first().map(|r| &r.data) {
                    Some(RData::CNAME(target)) => sname = target.0.to_lowercase(),
                    _ => break,
                }
                continue;
            }
            break;
        }
        verdict.and(self.denial(&sname, qtype, rcode).await)
    }

    /// Checks an RRset of the answer (reached as `sname`): signed by a
    /// secure zone, or in an insecure one; expanded from a wildcard only
    /// with proof that `sname` itself does not exist.
    async fn data(&mut self, set: &RrSet<'_>, sname: &Name) -> Verdict {
        let Some(sig) = set.sigs.first() else {
            return match self.chain.status(set.name, self.fetch, self.now).await {
                Status::Secure(_) => Verdict::Bogus(Failure::new(
                    ede::RRSIGS_MISSING,
                    "unsigned RRset in a signed zone",
                    set.name,
                )),
                status => verdict_of(status),
            };
        };
        let signer = &sig.input().signer_name;
        if !signer.zone_of(set.name) {
            return Verdict::Bogus(Failure::new(
                ede::DNSSEC_BOGUS,
                "signer is not the zone of the RRset",
                set.name,
            ));
        }
        let zone = match self.chain.zone_keys(signer, self.fetch, self.now).await {
            Status::Secure(zone) => zone,
            status => return verdict_of(status),
        };
        match set.verify(&zone.keys, &zone.apex, self.now) {
            Ok(signed) => {
                self.used.signed(Section::Answer, set, signed, self.now);
                match signed.wildcard_parent(set.name) {
                    Some(parent) => self.wildcard(&zone, sname, &parent),
                    None => Verdict::Secure,
                }
            }
            Err(failure) => Verdict::Bogus(failure),
        }
    }

    /// Proof that `sname`, answered from the wildcard below `parent`, has
    /// no records of its own.
    fn wildcard(&mut self, zone: &Zone, sname: &Name, parent: &Name) -> Verdict {
        let denial = match self.used.proofs(zone, &self.authority, self.now) {
            Ok(denial) => denial,
            Err(failure) => return Verdict::Bogus(failure),
        };
        self.proof(denial.wildcard_answer(sname, parent), sname)
    }

    /// Proof that `sname` has no `qtype` (NOERROR) or does not exist
    /// (NXDOMAIN), from the NSEC or NSEC3 records of its zone.
    async fn denial(&mut self, sname: &Name, qtype: RecordType, rcode: ResponseCode) -> Verdict {
        let signer = self
            .authority
            .iter()
            .filter(|set| matches!(set.rtype, RecordType::NSEC | RecordType::NSEC3))
            .find_map(|set| set.sigs.first())
            .map(|sig| sig.input().signer_name.clone());
        let zone = match signer {
            Some(signer) if signer.zone_of(sname) => {
                self.chain.zone_keys(&signer, self.fetch, self.now).await
            }
            _ => self.chain.status(sname, self.fetch, self.now).await,
        };
        let zone = match zone {
            Status::Secure(zone) => zone,
            status => return verdict_of(status),
        };
        if let Err(failure) = self.soa(&zone) {
            return Verdict::Bogus(failure);
        }
        let denial = match self.used.proofs(&zone, &self.authority, self.now) {
            Ok(denial) => denial,
            Err(failure) => return Verdict::Bogus(failure),
        };
        let proof = if rcode == ResponseCode::NXDomain {
            denial.nxdomain(sname)
        } else {
            denial.nodata(sname, qtype)
        };
        self.proof(proof, sname)
    }

    /// Checks the signature of `zone`'s SOA in the authority section, when
    /// there is one: its TTL sets how long the denial is cached (RFC 2308).
    fn soa(&mut self, zone: &Zone) -> Result<(), Failure> {
        let soa = self
            .authority
            .iter()
            .find(|set| set.rtype == RecordType::SOA && *set.name == zone.apex);
        if let Some(set) = soa {
            let signed = set.verify(&zone.keys, &zone.apex, self.now)?;
            self.used.signed(Section::Authority, set, signed, self.now);
        }
        Ok(())
    }

    fn proof(&self, proof: Proof, sname: &Name) -> Verdict {
        match proof {
            Proof::Proven => Verdict::Secure,
            Proof::Insecure => Verdict::Insecure,
            Proof::Missing => Verdict::Bogus(Failure::new(
                ede::NSEC_MISSING,
                "no valid proof of nonexistence",
                sname,
            )),
        }
    }
}

fn verdict_of(status: Status) -> Verdict {
    match status {
        Status::Secure(_) => Verdict::Secure,
        Status::Insecure => Verdict::Insecure,
        Status::Bogus(failure) => Verdict::Bogus(failure),
        Status::Indeterminate(failure) => Verdict::Indeterminate(failure),
    }
}

/// `sname` rewritten by the DNAME `set` (RFC 6672 §2.2).
fn dname_target(set: &RrSet<'_>, sname: &Name) -> Option<Name> {
    let record = set.records.first()?;
    let RData::Unknown { rdata, .. } = &record.data else {
        return None;
    };
    let target = Name::read(&mut BinDecoder::new(&rdata.anything)).ok()?;
    let keep = usize::from(sname.num_labels() - set.name.num_labels());
    let prefix = Name::from_labels(sname.iter().take(keep)).ok()?;
    prefix
        .append_name(&target)
        .ok()
        .map(|name| name.to_lowercase())
}

/// Seconds since the epoch, mod 2^32, as signatures count time.
fn unix_now() -> u32 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_secs() as u32
}
