//! Zone keys made at test time, one per DNSKEY: the public half as a
//! [`DNSKEY`] record and the private half able to sign TBS octets.
//!
//! hickory signs only ECDSA and Ed25519 here: its RSA signer refuses SHA-1
//! (algorithms 5 and 7) and ring refuses RSA moduli under 2048 bits, so
//! every RSA key is the `rsa` crate's PKCS#1 v1.5 signer (RFC 3110, 5702).
//! hickory knows nothing of Ed448 (it reads algorithm 16 as `Unknown(16)`),
//! so Ed448 keys are ed448-goldilocks-plus's, the crate dotstub verifies
//! with (RFC 8080).

use hickory_proto::dnssec::{
    Algorithm, PublicKeyBuf, SigningKey, TBS, Verifier,
    crypto::{EcdsaSigningKey, Ed25519SigningKey},
    rdata::DNSKEY,
};
use rsa::{
    RsaPrivateKey, pkcs1v15,
    sha2::{Sha256, Sha512},
    signature::{SignatureEncoding, Signer},
    traits::PublicKeyParts,
};
use sha1::Sha1;

/// RSA modulus size: the smallest ring verifies, and quick to generate.
const RSA_BITS: usize = 1024;

/// DNSKEY flags of a zone key (RFC 4034 §2.1.1): ZSKs have only the zone bit,
/// KSKs and combined keys also the secure entry point bit.
const ZONE: u16 = 0x0100;
const SEP: u16 = 0x0001;

/// ED448 (RFC 8080), which hickory has no name for.
pub const ED448: Algorithm = Algorithm::Unknown(16);

/// Octets of an Ed448 private key (RFC 8032 §5.2.5).
const ED448_SECRET_LEN: usize = 57;

/// The DNSSEC algorithms the hierarchy signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSASHA1 (5).
    RsaSha1,
    /// RSASHA1-NSEC3-SHA1 (7).
    RsaSha1Nsec3Sha1,
    /// RSASHA256 (8).
    RsaSha256,
    /// RSASHA512 (10).
    RsaSha512,
    /// ECDSAP256SHA256 (13).
    EcdsaP256,
    /// ECDSAP384SHA384 (14).
    EcdsaP384,
    /// ED25519 (15).
    Ed25519,
    /// ED448 (16).
    Ed448,
}

impl KeyKind {
    /// The algorithm number this kind signs as.
    // hickory deprecates the SHA-1 algorithms; testing them is the point.
    #[allow(deprecated)]
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::RsaSha1 => Algorithm::RSASHA1,
            KeyKind::RsaSha1Nsec3Sha1 => Algorithm::RSASHA1NSEC3SHA1,
            KeyKind::RsaSha256 => Algorithm::RSASHA256,
            KeyKind::RsaSha512 => Algorithm::RSASHA512,
            KeyKind::EcdsaP256 => Algorithm::ECDSAP256SHA256,
            KeyKind::EcdsaP384 => Algorithm::ECDSAP384SHA384,
            KeyKind::Ed25519 => Algorithm::ED25519,
            KeyKind::Ed448 => ED448,
        }
    }
}

/// Whether a key signs the DNSKEY RRset (KSK, SEP bit set) or the rest (ZSK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Key signing key, or a combined key that signs everything (flags 257).
    Ksk,
    /// Zone signing key (flags 256).
    Zsk,
}

/// A freshly generated zone key.
pub struct ZoneKey {
    dnskey: DNSKEY,
    key_tag: u16,
    secret: Secret,
}

enum Secret {
    Ring(Box<dyn SigningKey>),
    RsaSha1(pkcs1v15::SigningKey<Sha1>),
    RsaSha256(pkcs1v15::SigningKey<Sha256>),
    RsaSha512(pkcs1v15::SigningKey<Sha512>),
    Ed448(Box<ed448_goldilocks_plus::SigningKey>),
}

impl ZoneKey {
    /// A new random key of `kind` for `role`.
    pub fn generate(kind: KeyKind, role: Role) -> ZoneKey {
        let algorithm = kind.algorithm();
        let (public, secret) = match kind {
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => {
                let pkcs8 = EcdsaSigningKey::generate_pkcs8(algorithm).unwrap();
                ring_key(Box::new(
                    EcdsaSigningKey::from_pkcs8(&pkcs8, algorithm).unwrap(),
                ))
            }
            KeyKind::Ed25519 => {
                let pkcs8 = Ed25519SigningKey::generate_pkcs8().unwrap();
                ring_key(Box::new(Ed25519SigningKey::from_pkcs8(&pkcs8).unwrap()))
            }
            KeyKind::Ed448 => ed448_key(),
            KeyKind::RsaSha1
            | KeyKind::RsaSha1Nsec3Sha1
            | KeyKind::RsaSha256
            | KeyKind::RsaSha512 => rsa_key(kind),
        };
        let flags = match role {
            Role::Ksk => ZONE | SEP,
            Role::Zsk => ZONE,
        };
        let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(public, algorithm));
        let key_tag = dnskey.calculate_key_tag().unwrap();
        ZoneKey {
            dnskey,
            key_tag,
            secret,
        }
    }

    /// The DNSKEY record data that publishes this key.
    pub fn dnskey(&self) -> &DNSKEY {
        &self.dnskey
    }

    /// The key tag (RFC 4034 Appendix B) RRSIGs and DS records name it by.
    pub fn key_tag(&self) -> u16 {
        self.key_tag
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.dnskey.algorithm()
    }

    /// The signature over `tbs` (RFC 4034 §3.1.8.1 octets).
    pub fn sign(&self, tbs: &TBS) -> Vec<u8> {
        match &self.secret {
            Secret::Ring(key) => key.sign(tbs).unwrap(),
            Secret::RsaSha1(key) => key.sign(tbs.as_ref()).to_vec(),
            Secret::RsaSha256(key) => key.sign(tbs.as_ref()).to_vec(),
            Secret::RsaSha512(key) => key.sign(tbs.as_ref()).to_vec(),
            // PureEdDSA over the TBS octets, no context (RFC 8080 §4).
            Secret::Ed448(key) => key.sign_raw(tbs.as_ref()).to_bytes().to_vec(),
        }
    }
}

fn ring_key(key: Box<dyn SigningKey>) -> (Vec<u8>, Secret) {
    let public = key.to_public_key().unwrap().into_inner();
    (public, Secret::Ring(key))
}

/// A key from 57 random octets; the DNSKEY public key field is the
/// 57-octet encoded point (RFC 8080 §3).
fn ed448_key() -> (Vec<u8>, Secret) {
    let mut secret = [0; ED448_SECRET_LEN];
    rand::fill(&mut secret[..]);
    let key = ed448_goldilocks_plus::SigningKey::try_from(&secret[..]).unwrap();
    let public = key.verifying_key().to_bytes().to_vec();
    (public, Secret::Ed448(Box::new(key)))
}

fn rsa_key(kind: KeyKind) -> (Vec<u8>, Secret) {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS).unwrap();
    let public = rfc3110_public_key(&private);
    let secret = match kind {
        KeyKind::RsaSha1 | KeyKind::RsaSha1Nsec3Sha1 => {
            Secret::RsaSha1(pkcs1v15::SigningKey::new(private))
        }
        KeyKind::RsaSha256 => Secret::RsaSha256(pkcs1v15::SigningKey::new(private)),
        _ => Secret::RsaSha512(pkcs1v15::SigningKey::new(private)),
    };
    (public, secret)
}

/// RFC 3110 §2: exponent length (one octet, as the exponent is short),
/// exponent, modulus, all big-endian.
fn rfc3110_public_key(key: &RsaPrivateKey) -> Vec<u8> {
    let exponent = key.e().to_bytes_be();
    let mut public = vec![u8::try_from(exponent.len()).unwrap()];
    public.extend_from_slice(&exponent);
    public.extend_from_slice(&key.n().to_bytes_be());
    public
}
