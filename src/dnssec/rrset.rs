//! The RRsets of a message section, each with the RRSIGs that cover it, and
//! the check of a signature over an RRset: signer, time window, key tag,
//! algorithm and the signature itself over the canonical form (RFC 4034
//! §3.1.8.1 and §6, RFC 4035 §5.3).
//!
//! The signed data is built here rather than by hickory-proto's `TBS`,
//! which orders RDATA before making it canonical and keeps duplicates.

use hickory_proto::{
    dnssec::PublicKey as _,
    dnssec::{
        Algorithm, Verifier,
        rdata::{DNSKEY, DNSSECRData, RRSIG},
    },
    rr::{Name, RData, Record, RecordType, SerialNumber},
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};

use super::verdict::{Failure, ede};

/// The records of one owner and type, and the signatures over them.
#[derive(Debug)]
pub struct RrSet<'m> {
    /// The owner, as the message spells it.
    pub name: &'m Name,
    /// The type of every record.
    pub rtype: RecordType,
    /// The records, in message order.
    pub records: Vec<&'m Record>,
    /// RRSIGs covering this owner and type.
    pub sigs: Vec<&'m RRSIG>,
}

/// What a signature that verified says about its RRset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// When the signature expires, in seconds since the epoch (mod 2^32).
    pub expiration: u32,
    /// The RRSIG's label count: fewer than the owner's when the RRset was
    /// expanded from a wildcard (RFC 4035 §5.3.4).
    pub labels: u8,
    /// The RRSIG's Original TTL: the RRset's TTL may not exceed it
    /// (RFC 4035 §5.3.3).
    pub original_ttl: u32,
}

impl Signed {
    /// Whichever of this signature and `other` expires first, as seen
    /// from `now` (expirations compare as time left, mod 2^32: RFC 4034
    /// §3.1.5); `other` when both expire together.
    pub fn earliest(self, other: Option<Signed>, now: u32) -> Signed {
        let left = |signed: Signed| signed.expiration.wrapping_sub(now);
        match other {
            Some(other) if left(other) <= left(self) => other,
            _ => self,
        }
    }

    /// The closest encloser of a wildcard-expanded `owner`: the wildcard's
    /// parent; `None` when the owner was not expanded.
    pub fn wildcard_parent(&self, owner: &Name) -> Option<Name> {
        (self.labels < owner.num_labels()).then(|| owner.trim_to(usize::from(self.labels)))
    }
}

/// Groups `records` into RRsets, RRSIGs attached to what they cover, in the
/// order owners and types first appear. Signatures covering nothing present
/// are dropped.
pub fn rrsets(records: &[Record]) -> Vec<RrSet<'_>> {
    let mut sets: Vec<RrSet<'_>> = Vec::new();
    let mut sigs: Vec<(&Name, &RRSIG)> = Vec::new();
    for record in records {
        if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &record.data {
            sigs.push((&record.name, sig));
            continue;
        }
        let rtype = record.record_type();
        match sets
            .iter_mut()
            .find(|set| set.rtype == rtype && *set.name == record.name)
        {
            Some(set) => set.records.push(record),
            None => sets.push(RrSet {
                name: &record.name,
                rtype,
                records: vec![record],
                sigs: Vec::new(),
            }),
        }
    }
    for (owner, sig) in sigs {
        let covered = sig.input().type_covered;
        if let Some(set) = sets
            .iter_mut()
            .find(|set| set.rtype == covered && set.name == owner)
        {
            set.sigs.push(sig);
        }
    }
    sets
}

impl RrSet<'_> {
    /// Checks that one of the RRSIGs is a valid signature of `zone` by one
    /// of `keys` at time `now` (seconds since the epoch).
    pub fn verify(&self, keys: &[DNSKEY], zone: &Name, now: u32) -> Result<Signed, Failure> {
        let fail = |code, reason| Failure::new(code, reason, self.name);
        let mut failure = fail(ede::RRSIGS_MISSING, "no signature over the RRset");
        for sig in &self.sigs {
            match self.check(sig, keys, zone, now) {
                Ok(signed) => return Ok(signed),
                Err((code, reason)) => failure = fail(code, reason),
            }
        }
        Err(failure)
    }

    fn check(
        &self,
        sig: &RRSIG,
        keys: &[DNSKEY],
        zone: &Name,
        now: u32,
    ) -> Result<Signed, (u16, &'static str)> {
        let input = sig.input();
        if input.signer_name != *zone || !zone.zone_of(self.name) {
            return Err((ede::DNSSEC_BOGUS, "signer is not the zone of the RRset"));
        }
        if input.num_labels > self.name.num_labels() {
            return Err((
                ede::DNSSEC_BOGUS,
                "signature has more labels than its owner",
            ));
        }
        let now = SerialNumber::new(now);
        if now < input.sig_inception {
            return Err((ede::SIGNATURE_NOT_YET_VALID, "signature not yet valid"));
        }
        if now > input.sig_expiration {
            return Err((ede::SIGNATURE_EXPIRED, "signature expired"));
        }
        if !algorithm_supported(input.algorithm) {
            return Err((ede::DNSSEC_BOGUS, "signature algorithm not supported"));
        }
        let mut candidates = keys
            .iter()
            .filter(|key| {
                key.zone_key()
                    && !key.revoke()
                    && key.public_key().algorithm() == input.algorithm
                    && key.calculate_key_tag().ok() == Some(input.key_tag)
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err((
                ede::DNSSEC_BOGUS,
                "signed by a key not in the zone's DNSKEY set",
            ));
        }
        let data = self
            .signed_data(sig)
            .map_err(|()| (ede::DNSSEC_BOGUS, "RRset cannot be put in canonical form"))?;
        if candidates.any(|key| verify_signature(key, &data, sig.sig())) {
            Ok(Signed {
                expiration: input.sig_expiration.get(),
                labels: input.num_labels,
                original_ttl: input.original_ttl,
            })
        } else {
            Err((ede::DNSSEC_BOGUS, "signature does not verify"))
        }
    }

    /// The data `sig` signs: its RDATA without the signature, then each
    /// record in canonical form and order, duplicates removed (RFC 4034
    /// §3.1.8.1, §6.2, §6.3).
    fn signed_data(&self, sig: &RRSIG) -> Result<Vec<u8>, ()> {
        let input = sig.input();
        let owner = if input.num_labels < self.name.num_labels() {
            let parent = self.name.trim_to(usize::from(input.num_labels));
            parent.prepend_label("*").map_err(|_| ())?
        } else {
            self.name.clone()
        };
        let mut rdatas = self
            .records
            .iter()
            .map(|record| canonical_rdata(&record.data))
            .collect::<Result<Vec<_>, _>>()?;
        rdatas.sort_unstable();
        rdatas.dedup();
        let mut data = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut data);
        encoder.set_canonical_form(true);
        encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
        input.emit(&mut encoder).map_err(|_| ())?;
        for rdata in rdatas {
            owner.emit(&mut encoder).map_err(|_| ())?;
            self.rtype.emit(&mut encoder).map_err(|_| ())?;
            encoder.emit_u16(1).map_err(|_| ())?; // class IN
            encoder.emit_u32(input.original_ttl).map_err(|_| ())?;
            let len = u16::try_from(rdata.len()).map_err(|_| ())?;
            encoder.emit_u16(len).map_err(|_| ())?;
            encoder.emit_vec(&rdata).map_err(|_| ())?;
        }
        Ok(data)
    }
}

/// `rdata` in canonical form: uncompressed, names in the RFC 4034 §6.2
/// types lowercased (hickory-proto's canonical mode knows which).
fn canonical_rdata(rdata: &RData) -> Result<Vec<u8>, ()> {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_canonical_form(true);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut encoder).map_err(|_| ())?;
    Ok(bytes)
}

/// ED448 (RFC 8080), which hickory-proto (through ring) cannot verify.
const ED448: Algorithm = Algorithm::Unknown(16);

/// Whether dotstub can verify signatures of `algorithm`: RSASHA1 (5, 7),
/// RSASHA256 (8), RSASHA512 (10), ECDSA P-256 (13) and P-384 (14) through
/// ring; ED25519 (15) through ring; ED448 (16) through
/// ed448-goldilocks-plus.
pub fn algorithm_supported(algorithm: Algorithm) -> bool {
    algorithm.is_supported() || algorithm == ED448
}

/// Whether `signature` by `key` verifies over `data`.
pub fn verify_signature(key: &DNSKEY, data: &[u8], signature: &[u8]) -> bool {
    let algorithm = key.public_key().algorithm();
    if algorithm == ED448 {
        return verify_ed448(key.public_key().public_bytes(), data, signature);
    }
    // hickory-proto asserts (in debug builds) that it knows the algorithm.
    algorithm.is_supported() && key.verify(data, signature).is_ok()
}

/// An Ed448 signature check (RFC 8032 §5.2.7, no context), keys and
/// signatures as RFC 8080 §3 and §4 put them in DNSKEY and RRSIG.
fn verify_ed448(public_key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    use ed448_goldilocks_plus::{Signature, VerifyingKey};
    let (Ok(public_key), Ok(signature)) = (public_key.try_into(), signature.try_into()) else {
        return false;
    };
    let (Ok(key), Ok(signature)) = (
        VerifyingKey::from_bytes(public_key),
        Signature::from_bytes(signature),
    ) else {
        return false;
    };
    key.verify_raw(&signature, data).is_ok()
}

#[cfg(test)]
mod tests {
    use data_encoding::HEXLOWER;
    use hickory_proto::dnssec::PublicKeyBuf;

    use super::*;

    #[test]
    fn earliest_signature_counts_time_left_across_the_wrap() {
        let at = |expiration: u32| Signed {
            expiration,
            labels: 2,
            original_ttl: 300,
        };
        let now = u32::MAX - 100;
        // 50 s left against 200 s left (past 2^32): the first.
        assert_eq!(at(now + 50).earliest(Some(at(99)), now), at(now + 50));
        assert_eq!(at(99).earliest(Some(at(now + 50)), now), at(now + 50));
        assert_eq!(at(99).earliest(None, now), at(99));
    }

    fn ed448_key(public_hex: &str) -> DNSKEY {
        let public = HEXLOWER.decode(public_hex.as_bytes()).unwrap();
        DNSKEY::new(true, true, false, PublicKeyBuf::new(public, ED448))
    }

    #[test]
    fn ed448_verifies_rfc_8032_test_vector_1() {
        // RFC 8032 §7.4, "Blank": the empty message.
        let key = ed448_key(
            "5fd7449b59b461fd2ce787ec616ad46a1da1342485a70e1f8a0ea75d80e96778\
             edf124769b46c7061bd6783df1e50f6cd1fa1abeafe8256180",
        );
        let mut signature = HEXLOWER
            .decode(
                b"533a37f6bbe457251f023c0d88f976ae2dfb504a843e34d2074fd823d41a591f\
                  2b233f034f628281f2fd7a22ddd47d7828c59bd0a21bfd3980ff0d2028d4b18a\
                  9df63e006c5d1c2d345b925d8dc00b4104852db99ac5c7cdda8530a113a0f4db\
                  b61149f05a7363268c71d95808ff2e652600",
            )
            .unwrap();
        assert!(algorithm_supported(ED448));
        assert!(verify_signature(&key, b"", &signature));
        assert!(!verify_signature(&key, b"x", &signature));
        signature[0] ^= 1;
        assert!(!verify_signature(&key, b"", &signature));
    }

    #[test]
    fn unknown_algorithms_are_not_supported() {
        assert!(!algorithm_supported(Algorithm::Unknown(253)));
        assert!(!algorithm_supported(Algorithm::Unknown(3)));
    }
}
