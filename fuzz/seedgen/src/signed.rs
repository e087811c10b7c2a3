//! A small signed DNS hierarchy and a resolver-like responder over it, for
//! the seeds of `dnssec_records` and `upstream_answer`.
//!
//! ```text
//! .             Ed25519 KSK, NSEC     DS for example. and nsec3test.; insecure. unsigned
//! example.      KSK + ZSK, NSEC       www, alias (CNAME), dn (DNAME), *.wild, unsigned. (no DS)
//! nsec3test.    KSK, NSEC3 (1, "ab")  a, b.c (c an empty non-terminal), *.w, deleg. (no DS)
//! insecure.     unsigned              host
//! deleg.nsec3test., unsigned.example.  unsigned, host
//! ```
//!
//! Every key is Ed25519 from a fixed seed, whose signatures are
//! deterministic, so the seeds come out the same on every run. The
//! signatures run from 2020 to 2080, inside the RFC 1982 window of any
//! date before 2046.
//
// The signed data is built as dotstub builds it to check (RFC 4034
// §3.1.8.1: canonical RDATA, sorted, no duplicates), not with hickory's
// TBS, which sorts RDATA before making it canonical.

use std::collections::{BTreeMap, BTreeSet};

use data_encoding::{BASE32_DNSSEC, BASE64, HEXUPPER};
use hickory_proto::{
    dnssec::{
        Algorithm, DigestType, Nsec3HashAlgorithm, PublicKey as _, PublicKeyBuf,
        rdata::{DNSKEY, DNSSECRData, DS, NSEC, NSEC3, NSEC3PARAM, RRSIG, SigInput},
    },
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, Record, RecordType, SerialNumber,
        rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT},
    },
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};
use ring::signature::Ed25519KeyPair;

/// TTL of every record.
pub const TTL: u32 = 3600;
/// Signature validity (RFC 4034 §3.1.5): 2020-09-13 to 2080-11-28.
const INCEPTION: u32 = 1_600_000_000;
const EXPIRATION: u32 = 3_500_000_000;

pub fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid name")
}

//---- Keys ----

/// An Ed25519 zone key from a fixed seed.
pub struct Key {
    pair: Ed25519KeyPair,
    dnskey: DNSKEY,
    tag: u16,
}

impl Key {
    fn new(seed: u8, flags: u16) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("32 octets");
        let public = ring::signature::KeyPair::public_key(&pair)
            .as_ref()
            .to_vec();
        let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(public, Algorithm::ED25519));
        let tag = dnskey.calculate_key_tag().expect("a key tag");
        Self { pair, dnskey, tag }
    }

    /// The DS of this key as a DNSKEY of `owner` (SHA-256).
    fn ds(&self, owner: &Name) -> DS {
        let digest = self
            .dnskey
            .to_digest(owner, DigestType::SHA256)
            .expect("digest");
        DS::new(
            self.tag,
            Algorithm::ED25519,
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        )
    }

    /// The key as a trust anchor line.
    fn dnskey_line(&self, owner: &str) -> String {
        let public = BASE64.encode(self.dnskey.public_key().public_bytes());
        format!(
            "{owner} 3600 IN DNSKEY {} 3 15 {public}\n",
            self.dnskey.flags()
        )
    }

    fn ds_line(&self, owner: &str) -> String {
        let ds = self.ds(&name(owner));
        let digest = HEXUPPER.encode(ds.digest());
        format!("{owner} 3600 IN DS {} 15 2 {digest}\n", self.tag)
    }
}

//---- Zones ----

/// RRsets of one owner, by type.
type Node = BTreeMap<RecordType, Vec<RData>>;

/// One zone, signed when it has keys.
pub struct Zone {
    apex: Name,
    ksk: Option<Key>,
    zsk: Option<Key>,
    nsec3: Option<(Vec<u8>, u16)>,
    nodes: BTreeMap<Name, Node>,
    /// Delegations: NS only, not signed, no data below.
    cuts: BTreeSet<Name>,
    /// RRSIG records by owner and type covered.
    sigs: BTreeMap<(Name, RecordType), Record>,
    /// NSEC records (with their RRSIG) by owner.
    nsec: BTreeMap<Name, Vec<Record>>,
    /// NSEC3 records (with their RRSIG) by raw hash.
    nsec3_chain: BTreeMap<Vec<u8>, Vec<Record>>,
}

impl Zone {
    fn new(apex: &str, ksk: Option<Key>, zsk: Option<Key>, nsec3: Option<(Vec<u8>, u16)>) -> Self {
        let apex = name(apex);
        let mut zone = Self {
            apex: apex.clone(),
            ksk,
            zsk,
            nsec3,
            nodes: BTreeMap::new(),
            cuts: BTreeSet::new(),
            sigs: BTreeMap::new(),
            nsec: BTreeMap::new(),
            nsec3_chain: BTreeMap::new(),
        };
        let ns = name("ns").append_domain(&apex).expect("short");
        let soa = SOA::new(
            ns.clone(),
            name("hostmaster").append_domain(&apex).expect("short"),
            1,
            7200,
            3600,
            1_209_600,
            300,
        );
        zone.add(&apex, RData::SOA(soa));
        zone.add(&apex, RData::NS(NS(ns.clone())));
        zone.add(&ns, RData::A(A::new(192, 0, 2, 53)));
        let keys: Vec<DNSKEY> = [&zone.ksk, &zone.zsk]
            .into_iter()
            .flatten()
            .map(|key| key.dnskey.clone())
            .collect();
        for key in keys {
            zone.add(&apex, RData::DNSSEC(DNSSECRData::DNSKEY(key)));
        }
        if let Some((salt, iterations)) = &zone.nsec3 {
            let param = NSEC3PARAM::new(Nsec3HashAlgorithm::SHA1, false, *iterations, salt.clone());
            zone.add(&apex, RData::DNSSEC(DNSSECRData::NSEC3PARAM(param)));
        }
        zone
    }

    fn add(&mut self, owner: &Name, data: RData) {
        let node = self.nodes.entry(owner.to_lowercase()).or_default();
        node.entry(data.record_type()).or_default().push(data);
    }

    /// Delegates `child`, securely when its KSK is given.
    fn delegate(&mut self, child: &str, child_ksk: Option<&Key>) {
        let child = name(child);
        let ns = name("ns").append_domain(&child).expect("short");
        self.add(&child, RData::NS(NS(ns)));
        if let Some(key) = child_ksk {
            self.add(&child, RData::DNSSEC(DNSSECRData::DS(key.ds(&child))));
        }
        self.cuts.insert(child);
    }

    fn is_signed(&self) -> bool {
        self.ksk.is_some()
    }

    /// Signs every authoritative RRset and builds the denial chain.
    fn finish(&mut self) {
        if !self.is_signed() {
            return;
        }
        let rrsets: Vec<(Name, RecordType, Vec<RData>)> = self
            .nodes
            .iter()
            .flat_map(|(owner, node)| {
                node.iter()
                    .map(move |(rtype, data)| (owner.clone(), *rtype, data.clone()))
            })
            .filter(|(owner, rtype, _)| !(self.cuts.contains(owner) && *rtype == RecordType::NS))
            .collect();
        for (owner, rtype, data) in rrsets {
            let sig = self.sign(&owner, rtype, &data);
            self.sigs.insert((owner, rtype), sig);
        }
        match self.nsec3.clone() {
            None => self.nsec_chain(),
            Some((salt, iterations)) => self.nsec3_chain(&salt, iterations),
        }
    }

    fn types_at(&self, owner: &Name) -> Vec<RecordType> {
        self.nodes
            .get(owner)
            .map(|node| node.keys().copied().collect())
            .unwrap_or_default()
    }

    fn nsec_chain(&mut self) {
        let owners: Vec<Name> = self.nodes.keys().cloned().collect();
        for (index, owner) in owners.iter().enumerate() {
            let next = owners.get(index + 1).unwrap_or(&owners[0]).clone();
            let nsec = NSEC::new_cover_self(next, self.types_at(owner));
            let data = RData::DNSSEC(DNSSECRData::NSEC(nsec));
            let sig = self.sign(owner, RecordType::NSEC, std::slice::from_ref(&data));
            let record = Record::from_rdata(owner.clone(), TTL, data);
            self.nsec.insert(owner.clone(), vec![record, sig]);
        }
    }

    fn nsec3_chain(&mut self, salt: &[u8], iterations: u16) {
        // Every owner and every empty non-terminal above one.
        let mut names: BTreeSet<Name> = BTreeSet::new();
        for owner in self.nodes.keys() {
            let mut name = owner.clone();
            while name.num_labels() > self.apex.num_labels() {
                names.insert(name.clone());
                name = name.base_name();
            }
            names.insert(self.apex.clone());
        }
        let hashed: BTreeMap<Vec<u8>, Name> = names
            .into_iter()
            .map(|name| (self.hash(salt, iterations, &name), name))
            .collect();
        let hashes: Vec<&Vec<u8>> = hashed.keys().collect();
        let mut chain = BTreeMap::new();
        for (index, (hash, owner)) in hashed.iter().enumerate() {
            let next = hashes.get(index + 1).unwrap_or(&hashes[0]);
            let mut types = self.types_at(owner);
            if types
                .iter()
                .any(|t| !(self.cuts.contains(owner) && *t == RecordType::NS))
            {
                types.push(RecordType::RRSIG);
            }
            let nsec3 = NSEC3::new(
                Nsec3HashAlgorithm::SHA1,
                false,
                iterations,
                salt.to_vec(),
                next.to_vec(),
                types,
            );
            let data = RData::DNSSEC(DNSSECRData::NSEC3(nsec3));
            let label = BASE32_DNSSEC.encode(hash);
            let nsec3_owner = name(&label).append_domain(&self.apex).expect("short");
            let sig = self.sign(&nsec3_owner, RecordType::NSEC3, std::slice::from_ref(&data));
            chain.insert(
                hash.clone(),
                vec![Record::from_rdata(nsec3_owner, TTL, data), sig],
            );
        }
        self.nsec3_chain = chain;
    }

    fn hash(&self, salt: &[u8], iterations: u16, name: &Name) -> Vec<u8> {
        let digest = Nsec3HashAlgorithm::SHA1
            .hash(salt, name, iterations)
            .expect("hash");
        digest.as_ref().to_vec()
    }

    /// The RRSIG record over `owner`/`rtype` holding `data`.
    fn sign(&self, owner: &Name, rtype: RecordType, data: &[RData]) -> Record {
        let key = match (rtype, &self.zsk) {
            (RecordType::DNSKEY, _) | (_, None) => self.ksk.as_ref(),
            (_, Some(zsk)) => Some(zsk),
        }
        .expect("a signed zone has keys");
        let input = SigInput {
            type_covered: rtype,
            algorithm: Algorithm::ED25519,
            num_labels: owner.num_labels(),
            original_ttl: TTL,
            sig_expiration: SerialNumber::new(EXPIRATION),
            sig_inception: SerialNumber::new(INCEPTION),
            key_tag: key.tag,
            signer_name: self.apex.clone(),
        };
        let tbs = signed_data(owner, rtype, &input, data);
        let signature = key.pair.sign(&tbs).as_ref().to_vec();
        let rrsig = RRSIG::from_sig(input, signature);
        Record::from_rdata(owner.clone(), TTL, RData::DNSSEC(DNSSECRData::RRSIG(rrsig)))
    }

    //---- Lookups ----

    /// The records of `owner`/`rtype` (as `as_owner` for a wildcard
    /// expansion), with their RRSIG.
    fn rrset(&self, owner: &Name, rtype: RecordType, as_owner: &Name) -> Vec<Record> {
        let Some(data) = self.nodes.get(owner).and_then(|node| node.get(&rtype)) else {
            return Vec::new();
        };
        let mut records: Vec<Record> = data
            .iter()
            .map(|data| Record::from_rdata(as_owner.clone(), TTL, data.clone()))
            .collect();
        if let Some(sig) = self.sigs.get(&(owner.clone(), rtype)) {
            let mut sig = sig.clone();
            sig.name = as_owner.clone();
            records.push(sig);
        }
        records
    }

    /// Whether `name` exists: has records, or names below it do.
    fn exists(&self, name: &Name) -> bool {
        self.nodes.keys().any(|owner| name.zone_of(owner))
    }

    fn closest_encloser(&self, name: &Name) -> Name {
        let mut encloser = name.base_name();
        while !self.exists(&encloser) && encloser.num_labels() > self.apex.num_labels() {
            encloser = encloser.base_name();
        }
        encloser
    }

    fn soa(&self) -> Vec<Record> {
        self.rrset(&self.apex, RecordType::SOA, &self.apex)
    }

    fn nsec_at(&self, name: &Name) -> Vec<Record> {
        match &self.nsec3 {
            None => self
                .nsec
                .get(name)
                .cloned()
                .unwrap_or_else(|| self.nsec_covering(name)),
            Some((salt, iterations)) => {
                let hash = self.hash(salt, *iterations, name);
                self.nsec3_chain.get(&hash).cloned().unwrap_or_default()
            }
        }
    }

    /// The NSEC or NSEC3 whose span holds `name`.
    fn nsec_covering(&self, name: &Name) -> Vec<Record> {
        match &self.nsec3 {
            None => self
                .nsec
                .range(..name.to_lowercase())
                .next_back()
                .or_else(|| self.nsec.iter().next_back())
                .map(|(_, records)| records.clone())
                .unwrap_or_default(),
            Some((salt, iterations)) => {
                let hash = self.hash(salt, *iterations, name);
                self.nsec3_chain
                    .range(..hash)
                    .next_back()
                    .or_else(|| self.nsec3_chain.iter().next_back())
                    .map(|(_, records)| records.clone())
                    .unwrap_or_default()
            }
        }
    }

    /// What this zone answers for `qname`/`qtype`.
    fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let qname = qname.to_lowercase();
        let signed = self.is_signed();
        let mut found = Lookup::default();
        if let Some(node) = self.nodes.get(&qname) {
            if node.contains_key(&qtype) {
                found.answers = self.rrset(&qname, qtype, &qname);
            } else if let Some([RData::CNAME(target)]) =
                node.get(&RecordType::CNAME).map(Vec::as_slice)
            {
                found.answers = self.rrset(&qname, RecordType::CNAME, &qname);
                found.chase = Some(target.0.clone());
            } else {
                found.authorities = self.soa();
                if signed {
                    found.authorities.extend(self.nsec_at(&qname));
                }
            }
            return found;
        }
        // A DNAME above the name (below the apex).
        let mut above = qname.base_name();
        while above.num_labels() > self.apex.num_labels() {
            if let Some(dname) = self
                .nodes
                .get(&above)
                .and_then(|node| node.get(&RecordType::DNAME))
            {
                found.answers = self.rrset(&above, RecordType::DNAME, &above);
                if let [RData::Unknown { rdata, .. }] = dname.as_slice() {
                    let target = hickory_proto::serialize::binary::BinDecoder::new(&rdata.anything);
                    let mut decoder = target;
                    let target: Name =
                        hickory_proto::serialize::binary::BinDecodable::read(&mut decoder)
                            .expect("a name");
                    let keep = usize::from(qname.num_labels() - above.num_labels());
                    let prefix = Name::from_labels(qname.iter().take(keep)).expect("short");
                    let synthesized = prefix.append_name(&target).expect("short");
                    found.answers.push(Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::CNAME(CNAME(synthesized.clone())),
                    ));
                    found.chase = Some(synthesized);
                }
                return found;
            }
            above = above.base_name();
        }
        found.authorities = self.soa();
        if self.exists(&qname) {
            // An empty non-terminal.
            if signed {
                found.authorities.extend(self.nsec_at(&qname));
            }
            return found;
        }
        let encloser = self.closest_encloser(&qname);
        let star = encloser.prepend_label("*").expect("short");
        let next_closer = qname.trim_to(usize::from(encloser.num_labels()) + 1);
        let mut proofs: Vec<Record> = Vec::new();
        if let Some(node) = self.nodes.get(&star) {
            match node.contains_key(&qtype) {
                true => {
                    found.answers = self.rrset(&star, qtype, &qname);
                    found.authorities.clear();
                    if signed {
                        proofs.extend(self.nsec_covering(&next_closer));
                    }
                }
                false => {
                    if signed {
                        if self.nsec3.is_some() {
                            proofs.extend(self.nsec_at(&encloser));
                        }
                        proofs.extend(self.nsec_covering(&next_closer));
                        proofs.extend(self.nsec_at(&star));
                    }
                }
            }
        } else {
            found.rcode = ResponseCode::NXDomain;
            if signed {
                if self.nsec3.is_some() {
                    proofs.extend(self.nsec_at(&encloser));
                    proofs.extend(self.nsec_covering(&next_closer));
                } else {
                    proofs.extend(self.nsec_covering(&qname));
                }
                proofs.extend(self.nsec_covering(&star));
            }
        }
        for record in proofs {
            if !found.authorities.contains(&record) {
                found.authorities.push(record);
            }
        }
        found
    }
}

/// What a zone answered.
#[derive(Default)]
struct Lookup {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    /// A CNAME or DNAME target to follow.
    chase: Option<Name>,
}

/// The octets an RRSIG signs, as dotstub's `rrset::signed_data` builds them.
fn signed_data(owner: &Name, rtype: RecordType, input: &SigInput, data: &[RData]) -> Vec<u8> {
    let signed_owner = if input.num_labels < owner.num_labels() {
        owner
            .trim_to(usize::from(input.num_labels))
            .prepend_label("*")
            .expect("short")
    } else {
        owner.clone()
    };
    let mut rdatas: Vec<Vec<u8>> = data
        .iter()
        .map(|rdata| {
            let mut bytes = Vec::new();
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_canonical_form(true);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            rdata.emit(&mut encoder).expect("encodes");
            bytes
        })
        .collect();
    rdatas.sort_unstable();
    rdatas.dedup();
    let mut tbs = Vec::new();
    let mut encoder = BinEncoder::new(&mut tbs);
    encoder.set_canonical_form(true);
    encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
    input.emit(&mut encoder).expect("encodes");
    for rdata in rdatas {
        signed_owner.emit(&mut encoder).expect("encodes");
        rtype.emit(&mut encoder).expect("encodes");
        encoder.emit_u16(1).expect("encodes");
        encoder.emit_u32(input.original_ttl).expect("encodes");
        encoder
            .emit_u16(u16::try_from(rdata.len()).expect("short"))
            .expect("encodes");
        encoder.emit_vec(&rdata).expect("encodes");
    }
    tbs
}

//---- The hierarchy ----

pub struct Hierarchy {
    zones: Vec<Zone>,
}

/// How a response is dressed for the wire.
#[derive(Clone, Copy, Default)]
pub struct Dress {
    /// Flip one octet of the first signature in the answer section.
    pub corrupt: bool,
    /// Leave out the OPT record.
    pub no_edns: bool,
}

impl Hierarchy {
    pub fn build() -> Self {
        let root_ksk = Key::new(1, 257);
        let example_ksk = Key::new(2, 257);
        let example_zsk = Key::new(3, 256);
        let nsec3_ksk = Key::new(4, 257);

        let mut example = Zone::new("example.", Some(example_ksk), Some(example_zsk), None);
        example.add(&name("www.example."), RData::A(A::new(192, 0, 2, 1)));
        example.add(&name("www.example."), RData::A(A::new(192, 0, 2, 2)));
        example.add(
            &name("www.example."),
            RData::TXT(TXT::new(vec!["v=fuzz".to_owned()])),
        );
        example.add(
            &name("alias.example."),
            RData::CNAME(CNAME(name("www.example."))),
        );
        example.add(
            &name("mail.example."),
            RData::MX(MX::new(10, name("www.example."))),
        );
        example.add(
            &name("v6.example."),
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        );
        example.add(&name("*.wild.example."), RData::A(A::new(192, 0, 2, 7)));
        let mut dname_target = Vec::new();
        name("example.")
            .emit(&mut BinEncoder::new(&mut dname_target))
            .expect("encodes");
        example.add(
            &name("dn.example."),
            RData::Unknown {
                code: RecordType::DNAME,
                rdata: hickory_proto::rr::rdata::NULL::with(dname_target),
            },
        );
        example.delegate("unsigned.example.", None);

        let mut nsec3test = Zone::new("nsec3test.", Some(nsec3_ksk), None, Some((vec![0xab], 1)));
        nsec3test.add(&name("a.nsec3test."), RData::A(A::new(198, 51, 100, 1)));
        nsec3test.add(
            &name("b.c.nsec3test."),
            RData::TXT(TXT::new(vec!["deep".to_owned()])),
        );
        nsec3test.add(&name("*.w.nsec3test."), RData::A(A::new(198, 51, 100, 9)));
        nsec3test.delegate("deleg.nsec3test.", None);

        let mut insecure = Zone::new("insecure.", None, None, None);
        insecure.add(&name("host.insecure."), RData::A(A::new(203, 0, 113, 1)));

        let mut unsigned = Zone::new("unsigned.example.", None, None, None);
        unsigned.add(
            &name("host.unsigned.example."),
            RData::A(A::new(203, 0, 113, 2)),
        );

        let mut deleg = Zone::new("deleg.nsec3test.", None, None, None);
        deleg.add(
            &name("host.deleg.nsec3test."),
            RData::A(A::new(203, 0, 113, 3)),
        );

        let mut root = Zone::new(".", Some(root_ksk), None, None);
        root.delegate("example.", example.ksk.as_ref());
        root.delegate("insecure.", None);
        root.delegate("nsec3test.", nsec3test.ksk.as_ref());

        let mut zones = vec![root, example, nsec3test, insecure, unsigned, deleg];
        for zone in &mut zones {
            zone.finish();
        }
        Self { zones }
    }

    /// Trust anchor files for the fuzz target: root DNSKEY, root DS, and
    /// root DNSKEY plus a deeper anchor at `example.`.
    pub fn anchor_files(&self) -> [(&'static str, String); 3] {
        let root = self.zones[0].ksk.as_ref().expect("signed");
        let example = self.zones[1].ksk.as_ref().expect("signed");
        let head = "; Written by fuzz/seedgen: the keys of its signed hierarchy.\n";
        [
            (
                "dnssec-root-dnskey.txt",
                format!("{head}{}", root.dnskey_line(".")),
            ),
            ("dnssec-root-ds.txt", format!("{head}{}", root.ds_line("."))),
            (
                "dnssec-deeper.txt",
                format!(
                    "{head}{}{}",
                    root.dnskey_line("."),
                    example.dnskey_line("example.")
                ),
            ),
        ]
    }

    /// The zone that answers `qname`/`qtype`: the deepest one holding it,
    /// except that a DS is the parent's.
    fn zone_for(&self, qname: &Name, qtype: RecordType) -> &Zone {
        let holding = self.zones.iter().filter(|zone| zone.apex.zone_of(qname));
        let holding: Vec<&Zone> = if qtype == RecordType::DS && !qname.is_root() {
            holding.filter(|zone| zone.apex != *qname).collect()
        } else {
            holding.collect()
        };
        holding
            .into_iter()
            .max_by_key(|zone| zone.apex.num_labels())
            .expect("the root holds every name")
    }

    /// A recursive resolver's response to `qname`/`qtype` (DO=1, CD=1):
    /// CNAME and DNAME chains followed.
    pub fn respond(&self, qname: &str, qtype: RecordType, dress: Dress) -> Message {
        let qname = name(qname);
        let mut message = Message::new(0x5151, MessageType::Response, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        message.metadata.checking_disabled = true;
        message.add_query(Query::query(qname.clone(), qtype));
        let mut sname = qname;
        for _ in 0..4 {
            let found = self.zone_for(&sname, qtype).lookup(&sname, qtype);
            message.metadata.response_code = found.rcode;
            message.answers.extend(found.answers);
            message.authorities = found.authorities;
            match found.chase {
                Some(target) => sname = target,
                None => break,
            }
        }
        if dress.corrupt {
            let sig = message
                .answers
                .iter_mut()
                .find_map(|record| match &mut record.data {
                    RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig),
                    _ => None,
                });
            if let Some(sig) = sig {
                let mut octets = sig.sig().to_vec();
                octets[0] ^= 0x55;
                *sig = RRSIG::from_sig(sig.input().clone(), octets);
            }
        }
        if !dress.no_edns {
            let mut edns = Edns::new();
            edns.set_dnssec_ok(true);
            edns.set_max_payload(1232);
            message.set_edns(edns);
        }
        message
    }

    /// The DS and DNSKEY responses validating `qname` needs: for every
    /// name from the root down to it (and to `also`), its DS, and the
    /// DNSKEY of every zone apex among them.
    pub fn fetches(&self, qnames: &[&str]) -> Vec<Message> {
        let mut asked: BTreeSet<(Name, u16)> = BTreeSet::new();
        let mut messages = Vec::new();
        for qname in qnames {
            let qname = name(qname);
            for labels in 0..=qname.num_labels() {
                let step = qname.trim_to(usize::from(labels));
                let apex = self
                    .zones
                    .iter()
                    .any(|zone| zone.apex == step && zone.is_signed());
                let mut types = vec![];
                if !step.is_root() {
                    types.push(RecordType::DS);
                }
                if apex {
                    types.push(RecordType::DNSKEY);
                }
                for rtype in types {
                    if asked.insert((step.clone(), u16::from(rtype))) {
                        messages.push(self.respond(&step.to_ascii(), rtype, Dress::default()));
                    }
                }
            }
        }
        messages
    }
}
