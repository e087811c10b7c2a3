//! Answers from the hierarchy the way a recursive resolver does when asked
//! with DO=1 and CD=1: whatever the authorities said, RRSIGs and proofs
//! included, nothing validated. CNAME and DNAME chains are followed across
//! zones; the faults in `Hierarchy::tampers` are applied last.

use std::sync::Arc;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use super::super::dot_upstream::{Responder, Script};
use super::hierarchy::{AnswerTamper, Hierarchy};
use super::zone::{Proof, TTL, Zone, wildcard_of};

/// Longest CNAME/DNAME chain followed, as resolvers cap theirs.
const MAX_CHAIN: usize = 8;

impl Hierarchy {
    /// A `DotUpstream` script that answers every query from `self`.
    pub fn script(&'static self) -> Script {
        Script::Respond(self.responder())
    }

    /// What [`Hierarchy::script`] answers with.
    pub fn responder(&'static self) -> Responder {
        Responder(Arc::new(move |query| Some(self.answer(query))))
    }

    /// Like [`Hierarchy::script`], except that queries for `qname`/`qtype`
    /// (any letter case) are read and never answered: a DS or DNSKEY
    /// fetch that can only time out.
    pub fn script_silent_on(&'static self, qname: &str, qtype: RecordType) -> Script {
        Script::Respond(self.responder_except(qname, qtype, |_| None))
    }

    /// Answers every query from `self`, except that queries for
    /// `qname`/`qtype` (any letter case) get SERVFAIL: a DS or DNSKEY
    /// fetch that fails at once.
    pub fn responder_failing_on(&'static self, qname: &str, qtype: RecordType) -> Responder {
        self.responder_except(qname, qtype, |query| {
            let mut response = Message::response(query.metadata.id, query.metadata.op_code);
            response.queries = query.queries.clone();
            response.metadata.response_code = ResponseCode::ServFail;
            Some(response)
        })
    }

    /// Answers every query from `self`, except that queries for
    /// `qname`/`qtype` (any letter case) get what `except` returns; `None`
    /// leaves them unanswered.
    fn responder_except(
        &'static self,
        qname: &str,
        qtype: RecordType,
        except: fn(&Message) -> Option<Message>,
    ) -> Responder {
        let excepted = Name::from_ascii(qname)
            .expect("a valid test name")
            .to_lowercase();
        Responder(Arc::new(move |query| {
            let matches = query.queries.first().is_some_and(|asked| {
                asked.query_type() == qtype && asked.name().to_lowercase() == excepted
            });
            if matches {
                except(query)
            } else {
                Some(self.answer(query))
            }
        }))
    }

    /// The response to `query`: QR, RA, the ID, RD, CD and question copied,
    /// AA=0, AD=0, an OPT with DO=1 if the query had an OPT.
    pub fn answer(&self, query: &Message) -> Message {
        let mut response = Message::response(query.metadata.id, query.metadata.op_code);
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.checking_disabled = query.metadata.checking_disabled;
        response.metadata.recursion_available = true;
        response.queries = query.queries.clone();
        if query.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            edns.set_dnssec_ok(true);
            response.edns = Some(edns);
        }
        let [question] = query.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        let qname = question.name().to_lowercase();
        self.resolve(&mut response, &qname, question.query_type(), 0);
        self.tamper(&mut response, &qname, question.query_type());
        response
    }

    /// The zone that answers for `qname`: the deepest one at or above it,
    /// except that the parent answers DS at a zone apex (RFC 4035 §3.1.4.1).
    pub fn zone_for(&self, qname: &Name, qtype: RecordType) -> Option<&Zone> {
        let mut name = qname.clone();
        loop {
            let parent_side = qtype == RecordType::DS && &name == qname && !name.is_root();
            if let Some(zone) = self.zones.get(&name).filter(|_| !parent_side) {
                return Some(zone);
            }
            if name.is_root() {
                return None;
            }
            name = name.base_name();
        }
    }

    fn resolve(&self, response: &mut Message, qname: &Name, qtype: RecordType, depth: usize) {
        let Some(zone) = self.zone_for(qname, qtype) else {
            response.metadata.response_code = ResponseCode::Refused;
            return;
        };
        if let Some(target) = follow_dname(zone, response, qname) {
            return self.chase(response, &target, qtype, depth);
        }
        if zone.exists(qname) {
            if let Some(rrset) = zone.rrset(qname, qtype) {
                return response.answers.extend(rrset.all().cloned());
            }
            if let Some(rrset) = zone.rrset(qname, RecordType::CNAME) {
                response.answers.extend(rrset.all().cloned());
                let RData::CNAME(CNAME(target)) = &rrset.records[0].data else {
                    unreachable!("a CNAME RRset holds CNAME data");
                };
                return self.chase(response, target, qtype, depth);
            }
            return negative(response, zone, Proof::NoData, qname);
        }
        let wildcard = wildcard_of(&zone.closest_encloser(qname));
        if !zone.exists(&wildcard) {
            return negative(response, zone, Proof::NxDomain, qname);
        }
        let Some(rrset) = zone.rrset(&wildcard, qtype) else {
            return negative(response, zone, Proof::WildcardNoData, qname);
        };
        // The synthesised RRset keeps the wildcard's RRSIG, whose labels
        // field tells validators it was expanded (RFC 4035 §5.3.4).
        response.answers.extend(rrset.all().map(|record| {
            let mut record = record.clone();
            record.name = qname.clone();
            record
        }));
        let proof = zone.proof(Proof::WildcardAnswer, qname);
        response.authorities.extend(proof);
    }

    fn chase(&self, response: &mut Message, target: &Name, qtype: RecordType, depth: usize) {
        if depth < MAX_CHAIN {
            self.resolve(response, target, qtype, depth + 1);
        }
    }

    fn tamper(&self, response: &mut Message, qname: &Name, qtype: RecordType) {
        let Some((_, tamper)) = self.tampers.iter().find(|(name, _)| name == qname) else {
            return;
        };
        let zone = self
            .zone_for(qname, qtype)
            .expect("tampered names are in the hierarchy");
        match tamper {
            AnswerTamper::StripDenial => response.authorities.retain(|r| !is_denial(r)),
            AnswerTamper::WrongDenial => {
                response.authorities.retain(|r| !is_denial(r));
                response.authorities.extend(zone.wrong_proof(qname));
            }
            AnswerTamper::StripDs if qtype == RecordType::DS => {
                response.answers.clear();
                response.authorities.clear();
                let soa = zone
                    .rrset(zone.apex(), RecordType::SOA)
                    .expect("every zone has an SOA");
                response.authorities.extend(soa.all().cloned());
            }
            AnswerTamper::StripDs => {}
        }
    }
}

/// NODATA or NXDOMAIN from `zone`: its SOA and the proof, both with RRSIGs.
fn negative(response: &mut Message, zone: &Zone, proof: Proof, qname: &Name) {
    if proof == Proof::NxDomain {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    let soa = zone
        .rrset(zone.apex(), RecordType::SOA)
        .expect("every zone has an SOA");
    response.authorities.extend(soa.all().cloned());
    response.authorities.extend(zone.proof(proof, qname));
}

/// For a name below a DNAME in `zone`: adds the DNAME with its RRSIG and the
/// synthesised CNAME, unsigned as servers send it (RFC 6672 §5.3.1), and
/// returns the new name.
fn follow_dname(zone: &Zone, response: &mut Message, qname: &Name) -> Option<Name> {
    let mut owner = qname.base_name();
    while zone.apex().zone_of(&owner) {
        if let Some(rrset) = zone.rrset(&owner, RecordType::DNAME) {
            let RData::Unknown { rdata, .. } = &rrset.records[0].data else {
                unreachable!("hickory keeps DNAME data as unknown");
            };
            let target = Name::from_bytes(&rdata.anything).ok()?;
            let prefix = usize::from(qname.num_labels() - owner.num_labels());
            let labels = qname.iter().take(prefix);
            let synthesised = Name::from_labels(labels)
                .ok()?
                .append_domain(&target)
                .ok()?;
            response.answers.extend(rrset.all().cloned());
            let cname = RData::CNAME(CNAME(synthesised.clone()));
            response
                .answers
                .push(Record::from_rdata(qname.clone(), TTL, cname));
            return Some(synthesised);
        }
        if &owner == zone.apex() {
            return None;
        }
        owner = owner.base_name();
    }
    None
}

/// NSEC/NSEC3 records and the RRSIGs over them.
fn is_denial(record: &Record) -> bool {
    let denial = [RecordType::NSEC, RecordType::NSEC3];
    match &record.data {
        RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(sig)) => {
            denial.contains(&sig.input().type_covered)
        }
        _ => denial.contains(&record.record_type()),
    }
}
