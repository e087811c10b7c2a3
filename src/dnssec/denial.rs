//! Authenticated denial of existence: what a zone's NSEC (RFC 4035 §5.4,
//! RFC 6840 §4) or NSEC3 (RFC 5155 §8) records prove about a name. The
//! caller has checked their signatures; this module reads what they say.
//!
//! NSEC3 chains with more iterations than [`MAX_NSEC3_ITERATIONS`] prove
//! nothing and leave the answer insecure (RFC 9276 §3.2), as does a proof
//! that rests on an opt-out span (RFC 5155 §9.2).

use data_encoding::BASE32_DNSSEC;
use hickory_proto::{
    dnssec::{
        Nsec3HashAlgorithm,
        rdata::{DNSSECRData, NSEC, NSEC3},
    },
    rr::{Name, RData, RecordType, RecordTypeSet},
};

use super::rrset::RrSet;

/// Most NSEC3 iterations honoured; unbound and Knot use 150 too.
pub const MAX_NSEC3_ITERATIONS: u16 = 150;

/// What the records prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The denial holds.
    Proven,
    /// The proof rests on an opt-out span or on too many NSEC3 iterations:
    /// the answer is insecure.
    Insecure,
    /// The records do not prove it.
    Missing,
}

/// What the records say of a name where a DS was asked for and not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delegation {
    /// The name is in the zone, and not a zone cut: the walk goes on.
    NotACut,
    /// An unsigned delegation (no DS, or an opt-out span): insecure below.
    Insecure,
    /// Nothing is proven.
    Unproven,
}

/// The NSEC and NSEC3 records of one zone in a message.
#[derive(Debug)]
pub struct Denial<'m> {
    nsec: Vec<(&'m Name, &'m NSEC)>,
    nsec3: Option<Nsec3Chain<'m>>,
}

impl<'m> Denial<'m> {
    /// Reads the NSEC and NSEC3 RRsets among `sets` that belong to `zone`.
    pub fn new(zone: &Name, sets: &[&RrSet<'m>]) -> Self {
        let mut nsec = Vec::new();
        let mut nsec3 = Vec::new();
        for record in sets.iter().flat_map(|set| set.records.iter()) {
            match &record.data {
                RData::DNSSEC(DNSSECRData::NSEC(rdata)) if zone.zone_of(&record.name) => {
                    nsec.push((&record.name, rdata));
                }
                RData::DNSSEC(DNSSECRData::NSEC3(rdata)) => nsec3.push((&record.name, rdata)),
                _ => {}
            }
        }
        Self {
            nsec,
            nsec3: Nsec3Chain::new(zone, &nsec3),
        }
    }

    /// `qname` does not exist, nor a wildcard that could answer for it.
    pub fn nxdomain(&self, qname: &Name) -> Proof {
        match &self.nsec3 {
            Some(chain) => chain.nxdomain(qname),
            None => self.nsec_nxdomain(qname),
        }
    }

    /// `qname` has no `qtype` (nor CNAME), by name or by wildcard.
    pub fn nodata(&self, qname: &Name, qtype: RecordType) -> Proof {
        match &self.nsec3 {
            Some(chain) => chain.nodata(qname, qtype),
            None => self.nsec_nodata(qname, qtype),
        }
    }

    /// `qname`, answered from the wildcard below `wildcard_parent`, does
    /// not exist itself (RFC 4035 §5.3.4, RFC 5155 §8.8).
    pub fn wildcard_answer(&self, qname: &Name, wildcard_parent: &Name) -> Proof {
        match &self.nsec3 {
            Some(chain) => chain.wildcard_answer(qname, wildcard_parent),
            None if self.nsec_covering(qname).is_some() => Proof::Proven,
            None => Proof::Missing,
        }
    }

    /// What a NODATA answer to a DS query for `name` proves.
    pub fn delegation(&self, name: &Name) -> Delegation {
        match &self.nsec3 {
            Some(chain) => chain.delegation(name),
            None => self.nsec_delegation(name),
        }
    }

    //---- NSEC ----

    fn nsec_at(&self, name: &Name) -> Option<&'m NSEC> {
        self.nsec
            .iter()
            .find(|(owner, _)| *owner == name)
            .map(|(_, nsec)| *nsec)
    }

    /// The NSEC whose span holds `name`; never one at a delegation or DNAME
    /// above it, whose span says nothing of the child (RFC 6840 §4.1).
    fn nsec_covering(&self, name: &Name) -> Option<(&'m Name, &'m NSEC)> {
        self.nsec.iter().copied().find(|(owner, nsec)| {
            covers(owner, nsec.next_domain_name(), name)
                && !(owner.zone_of(name) && nsec.is_ancestor_delegation())
        })
    }

    fn nsec_nxdomain(&self, qname: &Name) -> Proof {
        let Some((owner, nsec)) = self.nsec_covering(qname) else {
            return Proof::Missing;
        };
        let closest_encloser = deeper(
            common_ancestor(qname, owner),
            common_ancestor(qname, nsec.next_domain_name()),
        );
        match wildcard(&closest_encloser) {
            Some(star) if self.nsec_covering(&star).is_some() => Proof::Proven,
            _ => Proof::Missing,
        }
    }

    fn nsec_nodata(&self, qname: &Name, qtype: RecordType) -> Proof {
        if let Some(nsec) = self.nsec_at(qname) {
            return proves_no_type(nsec.type_set(), qtype, qname);
        }
        let Some((owner, nsec)) = self.nsec_covering(qname) else {
            return Proof::Missing;
        };
        let next = nsec.next_domain_name();
        if next != qname && qname.zone_of(next) {
            // An empty non-terminal: names exist below it (RFC 4035 §3.1.3.2).
            return Proof::Proven;
        }
        let closest_encloser = deeper(common_ancestor(qname, owner), common_ancestor(qname, next));
        match wildcard(&closest_encloser).and_then(|star| self.nsec_at(&star)) {
            Some(nsec) => proves_no_type(nsec.type_set(), qtype, qname),
            None => Proof::Missing,
        }
    }

    fn nsec_delegation(&self, name: &Name) -> Delegation {
        if let Some(nsec) = self.nsec_at(name) {
            return delegation_from_types(nsec.type_set());
        }
        match self.nsec_covering(name) {
            Some(_) => Delegation::NotACut,
            None => Delegation::Unproven,
        }
    }
}

/// Whether a name with `types` proves that `qname` has no `qtype`.
fn proves_no_type(types: &RecordTypeSet, qtype: RecordType, qname: &Name) -> Proof {
    let at_delegation = types.contains(RecordType::NS) && !types.contains(RecordType::SOA);
    let wrong_side = match qtype {
        // The DS of a child lives in the parent: the child's apex says nothing.
        RecordType::DS => types.contains(RecordType::SOA) && !qname.is_root(),
        // Below a delegation the parent is not authoritative.
        _ => at_delegation,
    };
    if types.contains(qtype) || types.contains(RecordType::CNAME) || wrong_side {
        Proof::Missing
    } else {
        Proof::Proven
    }
}

/// What the types at a name where a DS was asked for say of it.
fn delegation_from_types(types: &RecordTypeSet) -> Delegation {
    if types.contains(RecordType::DS) || types.contains(RecordType::SOA) {
        Delegation::Unproven
    } else if types.contains(RecordType::NS) {
        Delegation::Insecure
    } else {
        Delegation::NotACut
    }
}

/// Whether the NSEC span from `owner` to `next` holds `name` (canonical
/// order; the last NSEC of a zone points back to the apex).
fn covers(owner: &Name, next: &Name, name: &Name) -> bool {
    if owner < next {
        owner < name && name < next
    } else {
        owner < name && next.zone_of(name)
    }
}

/// The longest common ancestor of `a` and `b`.
fn common_ancestor(a: &Name, b: &Name) -> Name {
    let most = a.num_labels().min(b.num_labels());
    (0..=most)
        .rev()
        .map(|labels| a.trim_to(usize::from(labels)))
        .find(|ancestor| ancestor.zone_of(b))
        .unwrap_or_else(Name::root)
}

fn deeper(a: Name, b: Name) -> Name {
    if a.num_labels() >= b.num_labels() {
        a
    } else {
        b
    }
}

/// `*.parent`.
fn wildcard(parent: &Name) -> Option<Name> {
    parent.prepend_label("*").ok()
}

//---- NSEC3 ----

/// A zone's NSEC3 records with one set of parameters, owner hashes decoded.
#[derive(Debug)]
struct Nsec3Chain<'m> {
    zone: Name,
    salt: &'m [u8],
    iterations: u16,
    records: Vec<(Vec<u8>, &'m NSEC3)>,
}

impl<'m> Nsec3Chain<'m> {
    /// The NSEC3 records owned by `<hash>.<zone>` with the first record's
    /// parameters (a record of another zone proves nothing here:
    /// RUSTSEC-2026-0505).
    fn new(zone: &Name, records: &[(&'m Name, &'m NSEC3)]) -> Option<Self> {
        let (_, first) = records
            .iter()
            .find(|(owner, _)| owner.base_name() == *zone)?;
        let records = records
            .iter()
            .filter(|(owner, nsec3)| {
                owner.base_name() == *zone
                    && nsec3.salt() == first.salt()
                    && nsec3.iterations() == first.iterations()
            })
            .filter_map(|(owner, nsec3)| {
                let label = owner.iter().next()?;
                let hash = BASE32_DNSSEC.decode(&label.to_ascii_lowercase()).ok()?;
                Some((hash, *nsec3))
            })
            .collect();
        Some(Self {
            zone: zone.clone(),
            salt: first.salt(),
            iterations: first.iterations(),
            records,
        })
    }

    fn hash(&self, name: &Name) -> Option<Vec<u8>> {
        let digest = Nsec3HashAlgorithm::SHA1
            .hash(self.salt, name, self.iterations)
            .ok()?;
        Some(digest.as_ref().to_vec())
    }

    fn matching(&self, name: &Name) -> Option<&'m NSEC3> {
        let hash = self.hash(name)?;
        self.records
            .iter()
            .find(|(owner, _)| *owner == hash)
            .map(|(_, nsec3)| *nsec3)
    }

    fn covering(&self, name: &Name) -> Option<&'m NSEC3> {
        let hash = self.hash(name)?;
        self.records
            .iter()
            .find(|(owner, nsec3)| {
                let next = nsec3.next_hashed_owner_name();
                if owner.as_slice() < next {
                    owner.as_slice() < hash.as_slice() && hash.as_slice() < next
                } else {
                    owner.as_slice() < hash.as_slice() || hash.as_slice() < next
                }
            })
            .map(|(_, nsec3)| *nsec3)
    }

    /// The closest encloser proof (RFC 5155 §8.3): the deepest existing
    /// ancestor of `name`, and the NSEC3 covering the next closer name.
    fn closest_encloser(&self, name: &Name) -> Option<(Name, &'m NSEC3)> {
        let zone_labels = self.zone.num_labels();
        for labels in (zone_labels..name.num_labels()).rev() {
            let encloser = name.trim_to(usize::from(labels));
            if let Some(nsec3) = self.matching(&encloser) {
                if nsec3.is_ancestor_delegation() && encloser != self.zone {
                    return None;
                }
                let next_closer = name.trim_to(usize::from(labels) + 1);
                return self.covering(&next_closer).map(|cover| (encloser, cover));
            }
        }
        None
    }

    fn too_costly(&self) -> bool {
        self.iterations > MAX_NSEC3_ITERATIONS
    }

    fn nxdomain(&self, qname: &Name) -> Proof {
        if self.too_costly() {
            return Proof::Insecure;
        }
        let Some((encloser, cover)) = self.closest_encloser(qname) else {
            return Proof::Missing;
        };
        if cover.opt_out() {
            return Proof::Insecure;
        }
        match wildcard(&encloser).and_then(|star| self.covering(&star)) {
            Some(_) => Proof::Proven,
            None => Proof::Missing,
        }
    }

    fn nodata(&self, qname: &Name, qtype: RecordType) -> Proof {
        if self.too_costly() {
            return Proof::Insecure;
        }
        if let Some(nsec3) = self.matching(qname) {
            return proves_no_type(nsec3.type_set(), qtype, qname);
        }
        let Some((encloser, cover)) = self.closest_encloser(qname) else {
            return Proof::Missing;
        };
        if qtype == RecordType::DS && cover.opt_out() {
            return Proof::Insecure;
        }
        match wildcard(&encloser).and_then(|star| self.matching(&star)) {
            Some(nsec3) => proves_no_type(nsec3.type_set(), qtype, qname),
            None => Proof::Missing,
        }
    }

    fn wildcard_answer(&self, qname: &Name, wildcard_parent: &Name) -> Proof {
        if self.too_costly() {
            return Proof::Insecure;
        }
        let next_closer = qname.trim_to(usize::from(wildcard_parent.num_labels()) + 1);
        match self.covering(&next_closer) {
            Some(cover) if cover.opt_out() => Proof::Insecure,
            Some(_) => Proof::Proven,
            None => Proof::Missing,
        }
    }

    fn delegation(&self, name: &Name) -> Delegation {
        if self.too_costly() {
            return Delegation::Insecure;
        }
        if let Some(nsec3) = self.matching(name) {
            return delegation_from_types(nsec3.type_set());
        }
        match self.closest_encloser(name) {
            Some((_, cover)) if cover.opt_out() => Delegation::Insecure,
            _ => Delegation::Unproven,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn nsec_spans_hold_names_between_owner_and_next_in_canonical_order() {
        let (owner, next) = (name("b.example."), name("d.example."));
        assert!(covers(&owner, &next, &name("c.example.")));
        assert!(covers(&owner, &next, &name("x.b.example.")));
        assert!(!covers(&owner, &next, &name("b.example.")));
        assert!(!covers(&owner, &next, &name("d.example.")));
        assert!(!covers(&owner, &next, &name("e.example.")));
    }

    #[test]
    fn the_last_nsec_of_a_zone_wraps_to_the_apex() {
        let (last, apex) = (name("m.example."), name("example."));
        assert!(covers(&last, &apex, &name("z.example.")));
        assert!(!covers(&last, &apex, &name("a.example.")));
        assert!(!covers(&last, &apex, &name("z.other.")));
    }

    #[test]
    fn common_ancestor_is_the_longest_shared_suffix() {
        let ancestor = common_ancestor(&name("a.b.example."), &name("C.B.example."));
        assert_eq!(ancestor, name("b.example."));
        assert_eq!(common_ancestor(&name("a."), &name("b.")), Name::root());
    }

    #[test]
    fn types_at_a_name_say_what_a_missing_ds_means() {
        let set = |types: &[RecordType]| NSEC::new(Name::root(), types.iter().copied());
        let set = |types: &[RecordType]| set(types).type_set().clone();
        let delegation = set(&[RecordType::NS, RecordType::NSEC, RecordType::RRSIG]);
        assert_eq!(delegation_from_types(&delegation), Delegation::Insecure);
        let signed_child = set(&[RecordType::NS, RecordType::DS, RecordType::NSEC]);
        assert_eq!(delegation_from_types(&signed_child), Delegation::Unproven);
        let child_apex = set(&[RecordType::NS, RecordType::SOA, RecordType::DNSKEY]);
        assert_eq!(delegation_from_types(&child_apex), Delegation::Unproven);
        let host = set(&[RecordType::A, RecordType::NSEC]);
        assert_eq!(delegation_from_types(&host), Delegation::NotACut);
    }
}
