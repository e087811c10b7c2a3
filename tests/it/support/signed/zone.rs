//! One zone of the hierarchy: its records by owner name and type, signed
//! when built (RRSIGs, NSEC or NSEC3 chain), and the denial proofs a server
//! sends for names and types it does not have. No lookup across zones:
//! that is `responder`'s job.
//!
//! Names are kept lowercase and every RRset without duplicates, because
//! hickory's `TBS::from_input` sorts RDATA as written and does not dedupe.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::BASE32_DNSSEC;
use hickory_proto::dnssec::{
    Nsec3HashAlgorithm, TBS,
    rdata::{DNSSECRData, NSEC, NSEC3, NSEC3PARAM, RRSIG, SigInput},
};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};

use super::keys::{KeyKind, Role, ZoneKey};

/// TTL of every record, and the SOA MINIMUM (negative TTL, RFC 2308).
pub const TTL: u32 = 3600;

/// Seconds from signing until good signatures expire, unless a zone asks
/// for less ([`Signing::lifetime`]).
pub const LIFETIME: u32 = 24 * 3600;

/// How a signed zone denies names and types.
#[derive(Clone, Debug)]
pub enum Denial {
    /// NSEC (RFC 4034 §4).
    Nsec,
    /// NSEC3 (RFC 5155) with these parameters.
    Nsec3(Nsec3Params),
}

/// NSEC3 parameters: SHA-1 always.
#[derive(Clone, Debug)]
pub struct Nsec3Params {
    /// Salt, empty for none.
    pub salt: Vec<u8>,
    /// Extra hash iterations.
    pub iterations: u16,
    /// Leave unsigned delegations out of the chain, opt-out bit set on all (RFC 5155 §6).
    pub opt_out: bool,
}

impl Nsec3Params {
    /// The hash of `name` in the zone's chain.
    pub fn hash(&self, name: &Name) -> Vec<u8> {
        let digest = Nsec3HashAlgorithm::SHA1.hash(&self.salt, name, self.iterations);
        digest.unwrap().as_ref().to_vec()
    }
}

/// A deliberate fault in the signatures over the data at one owner name
/// (not over its NSEC/NSEC3, which stay good).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigTamper {
    /// A signature octet flipped.
    Corrupt,
    /// Valid from two days ago to an hour ago.
    Expired,
    /// Valid from an hour from now.
    NotYetValid,
    /// Signed by a key that is not in the DNSKEY RRset.
    UnpublishedKey,
    /// Not signed at all.
    Unsigned,
}

/// What signing a zone takes.
pub struct Signing {
    /// Signs the DNSKEY RRset; everything else too when there is no ZSK.
    pub ksk: ZoneKey,
    /// Signs everything but the DNSKEY RRset.
    pub zsk: Option<ZoneKey>,
    /// NSEC or NSEC3.
    pub denial: Denial,
    /// Faults in the signatures of some owner names.
    pub tampers: Vec<(Name, SigTamper)>,
    /// Seconds from now until the good signatures expire: [`LIFETIME`],
    /// or less than [`TTL`] for a zone whose TTLs outlive its signatures.
    pub lifetime: u32,
}

/// What a denial must prove (RFC 4035 §3.1.3, RFC 5155 §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The name does not exist, nor a wildcard that would match it.
    NxDomain,
    /// The name exists (maybe as an empty non-terminal) without the type.
    NoData,
    /// No wildcard matched by the name has the type.
    WildcardNoData,
    /// The name itself does not exist, so the wildcard applies.
    WildcardAnswer,
}

/// An RRset and the RRSIGs over it.
#[derive(Clone, Debug, Default)]
pub struct RrSet {
    /// The records, in canonical order.
    pub records: Vec<Record>,
    /// The RRSIG records over them (none in an unsigned zone).
    pub sigs: Vec<Record>,
}

impl RrSet {
    /// Records then signatures.
    pub fn all(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().chain(&self.sigs)
    }
}

/// A built (and maybe signed) zone.
pub struct Zone {
    apex: Name,
    /// Every name in the zone, empty non-terminals included (no RRsets),
    /// in canonical order, which is what NSEC needs.
    nodes: BTreeMap<Name, BTreeMap<RecordType, RrSet>>,
    dnskeys: Vec<ZoneKey>,
    nsec3: Option<Nsec3Chain>,
}

struct Nsec3Chain {
    params: Nsec3Params,
    /// NSEC3 RRsets by raw hash, which orders them as the chain does.
    by_hash: BTreeMap<Vec<u8>, RrSet>,
}

/// Signature validity, in seconds since the epoch (RFC 4034 §3.1.5).
#[derive(Clone, Copy)]
struct Window {
    inception: u32,
    expiration: u32,
}

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

impl Window {
    fn from_now(inception: i64, expiration: i64) -> Window {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let now = i64::try_from(now.as_secs()).unwrap();
        let at = |offset: i64| u32::try_from(now + offset).unwrap();
        Window {
            inception: at(inception),
            expiration: at(expiration),
        }
    }
}

impl Zone {
    /// The zone at `apex` holding `records` plus an SOA, an NS at the apex
    /// and its address; signed when `signing` is given.
    pub fn build(apex: Name, records: Vec<Record>, signing: Option<Signing>) -> Zone {
        let mut zone = Zone {
            nodes: BTreeMap::new(),
            dnskeys: Vec::new(),
            nsec3: None,
            apex: apex.clone(),
        };
        let ns = Name::from_ascii("ns")
            .unwrap()
            .append_domain(&apex)
            .unwrap();
        zone.insert(Record::from_rdata(
            apex.clone(),
            TTL,
            RData::SOA(soa(&apex)),
        ));
        zone.insert(Record::from_rdata(
            apex.clone(),
            TTL,
            RData::NS(NS(ns.clone())),
        ));
        zone.insert(Record::from_rdata(ns, TTL, RData::A(A::new(192, 0, 2, 53))));
        for record in records {
            zone.insert(record);
        }
        zone.add_empty_non_terminals();
        if let Some(signing) = signing {
            zone.sign(signing);
        }
        zone
    }

    /// The apex name.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// Whether the zone carries signatures.
    pub fn is_signed(&self) -> bool {
        !self.dnskeys.is_empty()
    }

    /// The published keys, KSK first.
    pub fn keys(&self) -> &[ZoneKey] {
        &self.dnskeys
    }

    /// Whether `name` exists in the zone (with data or as an empty non-terminal).
    pub fn exists(&self, name: &Name) -> bool {
        self.nodes.contains_key(name)
    }

    /// The RRset of `rtype` at `name`.
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Option<&RrSet> {
        self.nodes.get(name)?.get(&rtype)
    }

    /// Whether `name` is a delegation point (NS below the apex).
    pub fn is_delegation(&self, name: &Name) -> bool {
        name != &self.apex && self.rrset(name, RecordType::NS).is_some()
    }

    /// The longest existing ancestor of `name` (the closest encloser, RFC 5155 §1.3).
    pub fn closest_encloser(&self, name: &Name) -> Name {
        let mut candidate = name.clone();
        while !self.exists(&candidate) && candidate != self.apex {
            candidate = candidate.base_name();
        }
        candidate
    }

    /// The NSEC or NSEC3 records (with their RRSIGs) that prove `proof`
    /// for `qname`; none in an unsigned zone.
    pub fn proof(&self, proof: Proof, qname: &Name) -> Vec<Record> {
        let names = match &self.nsec3 {
            _ if !self.is_signed() => Vec::new(),
            None => self.nsec_proof_names(proof, qname),
            Some(chain) => chain.proof_names(proof, qname, &self.apex),
        };
        let mut records: Vec<Record> = Vec::new();
        for name in names {
            for record in self.denial_for(&name).all() {
                if !records.contains(record) {
                    records.push(record.clone());
                }
            }
        }
        records
    }

    /// One NSEC/NSEC3 RRset (with RRSIGs) of the chain that neither matches
    /// nor covers `qname` or the wildcard at its closest encloser.
    pub fn wrong_proof(&self, qname: &Name) -> Vec<Record> {
        let right = self.proof(Proof::NxDomain, qname);
        self.chain_rrsets()
            .into_iter()
            .find(|rrset| !right.contains(&rrset.records[0]))
            .map(|rrset| rrset.all().cloned().collect())
            .unwrap_or_default()
    }

    /// The NSEC or NSEC3 records in chain order (empty when unsigned).
    pub fn chain(&self) -> Vec<Record> {
        let rrsets = self.chain_rrsets();
        rrsets
            .iter()
            .map(|rrset| rrset.records[0].clone())
            .collect()
    }

    /// The NSEC3 parameters, for an NSEC3 zone.
    pub fn nsec3_params(&self) -> Option<&Nsec3Params> {
        self.nsec3.as_ref().map(|chain| &chain.params)
    }

    fn chain_rrsets(&self) -> Vec<&RrSet> {
        match &self.nsec3 {
            Some(chain) => chain.by_hash.values().collect(),
            None => self
                .nodes
                .values()
                .filter_map(|types| types.get(&RecordType::NSEC))
                .collect(),
        }
    }

    fn nsec_proof_names(&self, proof: Proof, qname: &Name) -> Vec<Name> {
        let wildcard = wildcard_of(&self.closest_encloser(qname));
        match proof {
            Proof::NoData | Proof::WildcardAnswer => vec![qname.clone()],
            Proof::NxDomain | Proof::WildcardNoData => vec![qname.clone(), wildcard],
        }
    }

    /// The chain RRset that matches or covers `name`: with NSEC the greatest
    /// owner not after it, with NSEC3 the greatest hash not above its hash,
    /// wrapping to the last when there is none (RFC 4034 §4.1.1, RFC 5155 §3.1.7).
    fn denial_for(&self, name: &Name) -> &RrSet {
        match &self.nsec3 {
            Some(chain) => {
                let hash = chain.params.hash(name);
                let mut before = chain.by_hash.range(..=hash);
                let found = before
                    .next_back()
                    .or_else(|| chain.by_hash.last_key_value());
                found.unwrap().1
            }
            None => self
                .nodes
                .range(..=name.clone())
                .rev()
                .find_map(|(_, types)| types.get(&RecordType::NSEC))
                .unwrap(),
        }
    }

    fn insert(&mut self, record: Record) {
        let rrset = self
            .nodes
            .entry(record.name.to_lowercase())
            .or_default()
            .entry(record.record_type())
            .or_default();
        if !rrset.records.contains(&record) {
            rrset.records.push(record);
            rrset.records.sort();
        }
    }

    fn add_empty_non_terminals(&mut self) {
        let owners: Vec<Name> = self.nodes.keys().cloned().collect();
        for owner in owners {
            let mut name = owner.base_name();
            while self.apex.zone_of(&name) && name != self.apex {
                self.nodes.entry(name.clone()).or_default();
                name = name.base_name();
            }
        }
    }

    fn is_unsigned_delegation(&self, name: &Name) -> bool {
        self.is_delegation(name) && self.rrset(name, RecordType::DS).is_none()
    }
}

//---- Signing ----

impl Zone {
    fn sign(&mut self, signing: Signing) {
        let Signing {
            ksk,
            zsk,
            denial,
            tampers,
            lifetime,
        } = signing;
        for key in std::iter::once(&ksk).chain(&zsk) {
            let dnskey = RData::DNSSEC(DNSSECRData::DNSKEY(key.dnskey().clone()));
            self.insert(Record::from_rdata(self.apex.clone(), TTL, dnskey));
        }
        match denial {
            Denial::Nsec => self.add_nsec_chain(),
            Denial::Nsec3(params) => self.add_nsec3_chain(params),
        }
        let signer = Signer {
            apex: self.apex.clone(),
            ksk: &ksk,
            zsk: zsk.as_ref().unwrap_or(&ksk),
            unpublished: ZoneKey::generate(KeyKind::EcdsaP256, Role::Zsk),
            lifetime: i64::from(lifetime),
        };
        let owners: Vec<Name> = self.nodes.keys().cloned().collect();
        for owner in owners {
            let tamper = tampers.iter().find(|(name, _)| name == &owner).map(|t| t.1);
            let delegation = self.is_delegation(&owner);
            for (rtype, rrset) in self.nodes.get_mut(&owner).unwrap() {
                // Delegation NS records are not authoritative, so not signed
                // (RFC 4035 §2.2); the chain records keep good signatures.
                let tamper = match rtype {
                    RecordType::NS if delegation => continue,
                    RecordType::NSEC => None,
                    _ => tamper,
                };
                rrset.sigs = signer
                    .rrsig(&owner, &rrset.records, tamper)
                    .into_iter()
                    .collect();
            }
        }
        if let Some(chain) = &mut self.nsec3 {
            for (hash, rrset) in &mut chain.by_hash {
                let owner = nsec3_owner(hash, &self.apex);
                rrset.sigs = signer
                    .rrsig(&owner, &rrset.records, None)
                    .into_iter()
                    .collect();
            }
        }
        self.dnskeys.push(ksk);
        self.dnskeys.extend(zsk);
    }

    fn add_nsec_chain(&mut self) {
        // Empty non-terminals get no NSEC (RFC 4035 §2.3).
        let owners: Vec<Name> = self
            .nodes
            .iter()
            .filter(|(_, types)| !types.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for (index, owner) in owners.iter().enumerate() {
            let next = owners.get(index + 1).unwrap_or(&self.apex).clone();
            let mut types: Vec<RecordType> = self.nodes[owner].keys().copied().collect();
            types.extend([RecordType::NSEC, RecordType::RRSIG]);
            let nsec = RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types)));
            self.insert(Record::from_rdata(owner.clone(), TTL, nsec));
        }
    }

    fn add_nsec3_chain(&mut self, params: Nsec3Params) {
        let param = NSEC3PARAM::new(
            Nsec3HashAlgorithm::SHA1,
            false,
            params.iterations,
            params.salt.clone(),
        );
        let param = RData::DNSSEC(DNSSECRData::NSEC3PARAM(param));
        self.insert(Record::from_rdata(self.apex.clone(), TTL, param));
        let mut hashed: BTreeMap<Vec<u8>, Vec<RecordType>> = BTreeMap::new();
        for (name, types) in &self.nodes {
            let unsigned = self.is_unsigned_delegation(name);
            if unsigned && params.opt_out {
                continue;
            }
            let mut types: Vec<RecordType> = types.keys().copied().collect();
            if !types.is_empty() && !unsigned {
                types.push(RecordType::RRSIG);
            }
            hashed.insert(params.hash(name), types);
        }
        let hashes: Vec<Vec<u8>> = hashed.keys().cloned().collect();
        let mut by_hash = BTreeMap::new();
        for (index, (hash, types)) in hashed.into_iter().enumerate() {
            let next = hashes[(index + 1) % hashes.len()].clone();
            let nsec3 = NSEC3::new(
                Nsec3HashAlgorithm::SHA1,
                params.opt_out,
                params.iterations,
                params.salt.clone(),
                next,
                types,
            );
            let owner = nsec3_owner(&hash, &self.apex);
            let record = Record::from_rdata(owner, TTL, RData::DNSSEC(DNSSECRData::NSEC3(nsec3)));
            let rrset = RrSet {
                records: vec![record],
                sigs: Vec::new(),
            };
            by_hash.insert(hash, rrset);
        }
        self.nsec3 = Some(Nsec3Chain { params, by_hash });
    }
}

impl Nsec3Chain {
    fn contains(&self, name: &Name) -> bool {
        self.by_hash.contains_key(&self.params.hash(name))
    }

    /// The closest provable encloser of `name` (RFC 5155 §7.2.1): its
    /// longest ancestor, or itself when `inclusive`, that has an NSEC3.
    fn closest_provable_encloser(&self, name: &Name, apex: &Name, inclusive: bool) -> Name {
        let mut candidate = if inclusive {
            name.clone()
        } else {
            name.base_name()
        };
        while !self.contains(&candidate) && &candidate != apex {
            candidate = candidate.base_name();
        }
        candidate
    }

    fn proof_names(&self, proof: Proof, qname: &Name, apex: &Name) -> Vec<Name> {
        if proof == Proof::NoData && self.contains(qname) {
            return vec![qname.clone()];
        }
        let encloser = self.closest_provable_encloser(qname, apex, false);
        let next_closer = qname.trim_to(usize::from(encloser.num_labels()) + 1);
        match proof {
            Proof::WildcardAnswer => vec![next_closer],
            // No NSEC3 at the name: an opt-out delegation (RFC 5155 §7.2.4).
            Proof::NoData => vec![encloser, next_closer],
            Proof::NxDomain | Proof::WildcardNoData => {
                let wildcard = wildcard_of(&encloser);
                vec![encloser, next_closer, wildcard]
            }
        }
    }
}

/// The keys of a zone being signed.
struct Signer<'k> {
    apex: Name,
    ksk: &'k ZoneKey,
    /// The ZSK, or the KSK when it signs everything.
    zsk: &'k ZoneKey,
    /// Not in the DNSKEY RRset, for [`SigTamper::UnpublishedKey`].
    unpublished: ZoneKey,
    /// Seconds from now until good signatures expire.
    lifetime: i64,
}

impl Signer<'_> {
    /// The RRSIG record over `records` at `owner`, faulty as `tamper` says;
    /// `None` for [`SigTamper::Unsigned`].
    fn rrsig(&self, owner: &Name, records: &[Record], tamper: Option<SigTamper>) -> Option<Record> {
        let type_covered = records[0].record_type();
        let key = match type_covered {
            RecordType::DNSKEY => self.ksk,
            _ => self.zsk,
        };
        let good = Window::from_now(-HOUR, self.lifetime);
        let (key, window) = match tamper {
            Some(SigTamper::Unsigned) => return None,
            Some(SigTamper::UnpublishedKey) => (&self.unpublished, good),
            Some(SigTamper::Expired) => (key, Window::from_now(-2 * DAY, -HOUR)),
            Some(SigTamper::NotYetValid) => (key, Window::from_now(HOUR, DAY)),
            Some(SigTamper::Corrupt) | None => (key, good),
        };
        let input = SigInput {
            type_covered,
            algorithm: key.algorithm(),
            num_labels: owner.num_labels(),
            original_ttl: TTL,
            sig_expiration: SerialNumber::new(window.expiration),
            sig_inception: SerialNumber::new(window.inception),
            key_tag: key.key_tag(),
            signer_name: self.apex.clone(),
        };
        let tbs = TBS::from_input(owner, DNSClass::IN, &input, records.iter()).unwrap();
        let mut signature = key.sign(&tbs);
        if tamper == Some(SigTamper::Corrupt) {
            signature[0] ^= 0xff;
        }
        let rrsig = RRSIG::from_sig(input, signature);
        let rdata = RData::DNSSEC(DNSSECRData::RRSIG(rrsig));
        Some(Record::from_rdata(owner.clone(), TTL, rdata))
    }
}

/// `<base32hex of hash>.<apex>` (RFC 5155 §3).
pub fn nsec3_owner(hash: &[u8], apex: &Name) -> Name {
    let label = BASE32_DNSSEC.encode(hash);
    Name::from_ascii(label)
        .unwrap()
        .append_domain(apex)
        .unwrap()
}

/// `*.<name>`.
pub fn wildcard_of(name: &Name) -> Name {
    name.prepend_label("*").unwrap()
}

fn soa(apex: &Name) -> SOA {
    let ns = Name::from_ascii("ns").unwrap().append_domain(apex).unwrap();
    let mbox = Name::from_ascii("hostmaster")
        .unwrap()
        .append_domain(apex)
        .unwrap();
    SOA::new(ns, mbox, 1, 7200, 3600, 1_209_600, TTL)
}
