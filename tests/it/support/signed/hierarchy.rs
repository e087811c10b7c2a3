//! The hierarchy itself: a private root, `tld.` and the zones under it,
//! keys generated and every zone signed when first used, then shared by
//! all tests in the process (RSA key generation is slow in debug builds).
//! What each zone is for is listed in `cases`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use data_encoding::{BASE64, HEXUPPER};
use hickory_proto::dnssec::{
    Algorithm, DigestType, PublicKey, Verifier,
    rdata::{DNSSECRData, DS},
};
use hickory_proto::rr::rdata::{A, CNAME, NS, NULL};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::keys::{KeyKind, Role, ZoneKey};
use super::zone::{Denial, LIFETIME, Nsec3Params, SigTamper, Signing, TTL, Zone};

/// Seconds from signing until every signature of `short-lived.tld.`
/// expires, well under [`TTL`] and well over a test run: a validator must
/// not let the zone's answers live longer than that (RFC 4035 §5.3.3).
pub const SHORT_LIFETIME: u32 = 600;

const _: () = assert!(SHORT_LIFETIME < TTL, "the TTLs must outlive the signatures");

/// A fault the responder puts into answers for one query name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerTamper {
    /// No NSEC/NSEC3 records in the authority section: only the SOA.
    StripDenial,
    /// The NSEC/NSEC3 records replaced by one that proves nothing here.
    WrongDenial,
    /// A DS query answered NODATA with the SOA and no proof.
    StripDs,
}

/// Every zone of the test DNS, signed, with the faults the responder adds.
pub struct Hierarchy {
    /// Zones by apex; the responder picks the deepest enclosing one.
    pub(super) zones: BTreeMap<Name, Zone>,
    pub(super) tampers: Vec<(Name, AnswerTamper)>,
}

static SHARED: LazyLock<Hierarchy> = LazyLock::new(Hierarchy::build);

/// How a parent links to a child.
#[derive(Clone, Copy)]
enum Link {
    /// A DS for the child's KSK.
    Ds,
    /// No DS: an insecure delegation.
    NoDs,
    /// Only a DS whose algorithm is unassigned (200): insecure (RFC 4035 §5.2).
    UnknownAlgorithm,
    /// A good DS and one with an unassigned digest type (200): still secure.
    ExtraUnknownDigest,
    /// Only a DS with an unassigned digest type (200) and the key's own
    /// (known) algorithm: insecure (RFC 4035 §5.2, RFC 6840 §5.2).
    OnlyUnknownDigest,
    /// A DS for a key the child does not publish.
    OtherKey,
    /// The right key tag and algorithm, a wrong digest.
    BadDigest,
}

/// An unassigned DNSSEC algorithm and DS digest type number.
const UNASSIGNED: u8 = 200;

impl Hierarchy {
    /// The hierarchy, built on first use.
    pub fn shared() -> &'static Hierarchy {
        &SHARED
    }

    /// The root's trust anchor as a DS line in zone-file format:
    /// `. 3600 IN DS <tag> <alg> 2 <hex>`.
    pub fn trust_anchor_text(&self) -> String {
        let ksk = self.root_ksk();
        let digest = ksk
            .dnskey()
            .to_digest(&Name::root(), DigestType::SHA256)
            .unwrap();
        format!(
            ". {TTL} IN DS {} {} 2 {}\n",
            ksk.key_tag(),
            u8::from(ksk.algorithm()),
            HEXUPPER.encode(digest.as_ref())
        )
    }

    /// The root's trust anchor as a DNSKEY line in zone-file format:
    /// `. 3600 IN DNSKEY 257 3 <alg> <base64>`.
    pub fn trust_anchor_dnskey_text(&self) -> String {
        let dnskey = self.root_ksk().dnskey();
        format!(
            ". {TTL} IN DNSKEY {} 3 {} {}\n",
            dnskey.flags(),
            u8::from(dnskey.algorithm()),
            BASE64.encode(dnskey.public_key().public_bytes())
        )
    }

    /// The zone at `apex` (`"nsec3.tld."`, say).
    pub fn zone(&self, apex: &str) -> &Zone {
        let apex = Name::from_ascii(apex).unwrap();
        self.zones.get(&apex).expect("the hierarchy has this zone")
    }

    /// Every zone, in canonical order of their apexes.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.values()
    }

    fn root_ksk(&self) -> &ZoneKey {
        &self.zones[&Name::root()].keys()[0]
    }

    fn build() -> Hierarchy {
        let mut zones = BTreeMap::new();
        let mut tld_records = Vec::new();
        for (label, zone, link) in tld_children() {
            tld_records.extend(delegation(&zone, link));
            zones.insert(zone.apex().clone(), zone);
            // The unsigned zones delegated from inside the NSEC3 zones.
            if let Some(child) = nested_child(label) {
                zones.insert(child.apex().clone(), child);
            }
        }
        let tld = signed_zone("tld.", KeyKind::EcdsaP256, Denial::Nsec, tld_records);
        let root_records = delegation(&tld, Link::Ds);
        zones.insert(tld.apex().clone(), tld);
        let root = Zone::build(
            Name::root(),
            root_records,
            Some(Signing {
                ksk: ZoneKey::generate(KeyKind::EcdsaP256, Role::Ksk),
                zsk: Some(ZoneKey::generate(KeyKind::EcdsaP256, Role::Zsk)),
                denial: Denial::Nsec,
                tampers: Vec::new(),
                lifetime: LIFETIME,
            }),
        );
        zones.insert(Name::root(), root);
        let tampers = [
            ("missing-proof.nsec.tld.", AnswerTamper::StripDenial),
            ("missing-proof.nsec3.tld.", AnswerTamper::StripDenial),
            ("wrong-proof.nsec.tld.", AnswerTamper::WrongDenial),
            ("wrong-proof.nsec3.tld.", AnswerTamper::WrongDenial),
            ("stripped-ds.tld.", AnswerTamper::StripDs),
        ];
        Hierarchy {
            zones,
            tampers: tampers.map(|(name, tamper)| (name_of(name), tamper)).into(),
        }
    }
}

//---- The zones under tld. ----

/// Each child of `tld.`: its label, the zone, how `tld.` links to it.
fn tld_children() -> Vec<(&'static str, Zone, Link)> {
    let algorithms = [
        ("rsasha1", KeyKind::RsaSha1, Denial::Nsec),
        (
            "rsasha1-nsec3",
            KeyKind::RsaSha1Nsec3Sha1,
            nsec3(&[], 0, false),
        ),
        ("rsasha256", KeyKind::RsaSha256, Denial::Nsec),
        ("rsasha512", KeyKind::RsaSha512, Denial::Nsec),
        ("ecdsap384", KeyKind::EcdsaP384, Denial::Nsec),
        ("ed25519", KeyKind::Ed25519, Denial::Nsec),
        ("ed448", KeyKind::Ed448, Denial::Nsec),
    ];
    let mut children: Vec<(&str, Zone, Link)> = algorithms
        .into_iter()
        .map(|(label, kind, denial)| {
            let mut records = basic(label);
            if label == "ed25519" {
                // The middle of the two-hop chain from ecdsap256.tld.
                records.push(cname("hop.ed25519.tld.", "www.ecdsap256.tld."));
            }
            let zone = signed_zone(&apex(label), kind, denial, records);
            (label, zone, Link::Ds)
        })
        .collect();
    let denials = [
        ("nsec", Denial::Nsec),
        ("nsec3", nsec3(&[], 0, false)),
        ("nsec3-salted", nsec3(&[0xaa, 0xbb, 0xcc, 0xdd], 10, false)),
        ("nsec3-optout", nsec3(&[], 0, true)),
        // Over the RFC 9276 §3.2 cap (validators treat it as insecure).
        ("nsec3-iter500", nsec3(&[], 500, false)),
    ];
    for (label, denial) in denials {
        let mut records = denial_records(label);
        records.extend(nested_apex(label).map(|child| ns(&name_of(child))));
        let zone = signed_zone(&apex(label), KeyKind::EcdsaP256, denial, records);
        children.push((label, zone, Link::Ds));
    }
    let mut ecdsa = basic("ecdsap256");
    ecdsa.extend([
        cname("cname.ecdsap256.tld.", "www.ed25519.tld."),
        cname("cname-insecure.ecdsap256.tld.", "www.insecure.tld."),
        cname("two-hops.ecdsap256.tld.", "hop.ed25519.tld."),
        dname("dname.ecdsap256.tld.", "ed25519.tld."),
        dname("dname-insecure.ecdsap256.tld.", "insecure.tld."),
    ]);
    let ecdsa = signed_zone("ecdsap256.tld.", KeyKind::EcdsaP256, Denial::Nsec, ecdsa);
    children.push(("ecdsap256", ecdsa, Link::Ds));
    children.push(("bogus", bogus_zone(), Link::Ds));
    children.push(("short-lived", short_lived_zone(), Link::Ds));
    let plain = |label: &'static str, link: Link| {
        let zone = signed_zone(&apex(label), KeyKind::EcdsaP256, Denial::Nsec, basic(label));
        (label, zone, link)
    };
    children.extend([
        plain("unknown-alg", Link::UnknownAlgorithm),
        plain("unknown-digest", Link::ExtraUnknownDigest),
        plain("unknown-digest-only", Link::OnlyUnknownDigest),
        plain("ds-mismatch", Link::OtherKey),
        plain("ds-bad-digest", Link::BadDigest),
        plain("stripped-ds", Link::Ds),
    ]);
    for (label, link) in [("insecure", Link::NoDs), ("ds-unsigned", Link::OtherKey)] {
        children.push((
            label,
            Zone::build(name_of(&apex(label)), basic(label), None),
            link,
        ));
    }
    children
}

/// The apex of the unsigned zone delegated from inside the NSEC3 zone
/// `label`, if any.
fn nested_apex(label: &str) -> Option<&'static str> {
    match label {
        "nsec3" => Some("insecure.nsec3.tld."),
        "nsec3-optout" => Some("unsigned.nsec3-optout.tld."),
        _ => None,
    }
}

fn nested_child(label: &str) -> Option<Zone> {
    let apex = nested_apex(label)?;
    let records = vec![a(&format!("www.{apex}"), 20)];
    Some(Zone::build(name_of(apex), records, None))
}

/// `bogus.tld.`: good keys and chain, bad signatures over some names' data.
fn bogus_zone() -> Zone {
    let faults = [
        ("corrupt", SigTamper::Corrupt),
        ("expired", SigTamper::Expired),
        ("future", SigTamper::NotYetValid),
        ("unpublished", SigTamper::UnpublishedKey),
        ("stripped", SigTamper::Unsigned),
    ];
    let names = faults.map(|(label, tamper)| (name_of(&format!("{label}.bogus.tld.")), tamper));
    let records = names
        .iter()
        .map(|(name, _)| a(&name.to_ascii(), 66))
        .collect();
    Zone::build(
        name_of("bogus.tld."),
        records,
        Some(Signing {
            ksk: ZoneKey::generate(KeyKind::EcdsaP256, Role::Ksk),
            zsk: None,
            denial: Denial::Nsec,
            tampers: names.into(),
            lifetime: LIFETIME,
        }),
    )
}

/// `short-lived.tld.`: a denial zone whose signatures, DNSKEY and NSEC
/// ones included, expire [`SHORT_LIFETIME`] seconds after signing while
/// every TTL is [`TTL`].
fn short_lived_zone() -> Zone {
    Zone::build(
        name_of("short-lived.tld."),
        denial_records("short-lived"),
        Some(Signing {
            ksk: ZoneKey::generate(KeyKind::EcdsaP256, Role::Ksk),
            zsk: None,
            denial: Denial::Nsec,
            tampers: Vec::new(),
            lifetime: SHORT_LIFETIME,
        }),
    )
}

//---- Building blocks ----

fn signed_zone(apex: &str, kind: KeyKind, denial: Denial, records: Vec<Record>) -> Zone {
    let signing = Signing {
        ksk: ZoneKey::generate(kind, Role::Ksk),
        zsk: None,
        denial,
        tampers: Vec::new(),
        lifetime: LIFETIME,
    };
    Zone::build(name_of(apex), records, Some(signing))
}

fn nsec3(salt: &[u8], iterations: u16, opt_out: bool) -> Denial {
    Denial::Nsec3(Nsec3Params {
        salt: salt.to_vec(),
        iterations,
        opt_out,
    })
}

/// The parent's records for `child`: NS, and DS as `link` says.
fn delegation(child: &Zone, link: Link) -> Vec<Record> {
    let apex = child.apex();
    let good = || {
        let key = &child.keys()[0];
        ds_for(apex, key)
    };
    let ds = match link {
        Link::NoDs => Vec::new(),
        Link::Ds => vec![good()],
        Link::UnknownAlgorithm => {
            let ds = good();
            let unknown = Algorithm::Unknown(UNASSIGNED);
            vec![DS::new(
                ds.key_tag(),
                unknown,
                ds.digest_type(),
                ds.digest().to_vec(),
            )]
        }
        Link::ExtraUnknownDigest => {
            let ds = good();
            let unknown = DigestType::from(UNASSIGNED);
            let odd = DS::new(ds.key_tag(), ds.algorithm(), unknown, vec![0x5a; 32]);
            vec![ds, odd]
        }
        Link::OnlyUnknownDigest => {
            let ds = good();
            let unknown = DigestType::from(UNASSIGNED);
            // The SHA-256 digest, labelled with a type nobody knows.
            let digest = ds.digest().to_vec();
            vec![DS::new(ds.key_tag(), ds.algorithm(), unknown, digest)]
        }
        Link::OtherKey => vec![ds_for(
            apex,
            &ZoneKey::generate(KeyKind::EcdsaP256, Role::Ksk),
        )],
        Link::BadDigest => {
            let ds = good();
            let mut digest = ds.digest().to_vec();
            digest[0] ^= 0xff;
            vec![DS::new(
                ds.key_tag(),
                ds.algorithm(),
                ds.digest_type(),
                digest,
            )]
        }
    };
    let ds = ds
        .into_iter()
        .map(|ds| Record::from_rdata(apex.clone(), TTL, RData::DNSSEC(DNSSECRData::DS(ds))));
    std::iter::once(ns(apex)).chain(ds).collect()
}

fn ds_for(apex: &Name, key: &ZoneKey) -> DS {
    let digest = key.dnskey().to_digest(apex, DigestType::SHA256).unwrap();
    DS::new(
        key.key_tag(),
        key.algorithm(),
        DigestType::SHA256,
        digest.as_ref().to_vec(),
    )
}

/// `www` with an address.
fn basic(label: &str) -> Vec<Record> {
    vec![a(&format!("www.{}", apex(label)), 1)]
}

/// The names every denial zone has: `www`, a wildcard `*.w` and an empty
/// non-terminal `ent` (above `sub.ent`).
fn denial_records(label: &str) -> Vec<Record> {
    let apex = apex(label);
    vec![
        a(&format!("www.{apex}"), 1),
        a(&format!("*.w.{apex}"), 2),
        a(&format!("sub.ent.{apex}"), 3),
    ]
}

fn apex(label: &str) -> String {
    format!("{label}.tld.")
}

fn name_of(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn a(owner: &str, last: u8) -> Record {
    Record::from_rdata(name_of(owner), TTL, RData::A(A::new(192, 0, 2, last)))
}

fn ns(zone: &Name) -> Record {
    let target = name_of("ns").append_domain(zone).unwrap();
    Record::from_rdata(zone.clone(), TTL, RData::NS(NS(target)))
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name_of(owner), TTL, RData::CNAME(CNAME(name_of(target))))
}

/// hickory has no DNAME type: its RDATA is the target name, uncompressed.
fn dname(owner: &str, target: &str) -> Record {
    let rdata = NULL::with(name_of(target).to_bytes().unwrap());
    let rdata = RData::Unknown {
        code: RecordType::DNAME,
        rdata,
    };
    Record::from_rdata(name_of(owner), TTL, rdata)
}
