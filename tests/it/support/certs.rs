//! Throwaway PKI for the tests: a certificate authority minted with rcgen at test
//! time, the leaf identities it signs for rig upstreams, and the SPKI pins a
//! client could configure instead of (or besides) the CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Common name of every test CA, so a failing handshake's log is easy to place.
pub const CA_COMMON_NAME: &str = "dotstub test CA";

/// A throwaway certificate authority in its own temporary directory.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_spki_pin: String,
}

/// What a DoT server presents: chain (leaf first, then the CA cert) and key,
/// plus the pins a client could configure.
pub struct ServerIdentity {
    /// Certificate chain, leaf first, then the CA certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// `spki_pin_of` the leaf's SubjectPublicKeyInfo.
    pub leaf_spki_pin: String,
    /// `spki_pin_of` the CA's SubjectPublicKeyInfo.
    pub ca_spki_pin: String,
}

// PrivateKeyDer deliberately has no Clone, so the key is copied explicitly.
impl Clone for ServerIdentity {
    fn clone(&self) -> Self {
        ServerIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            leaf_spki_pin: self.leaf_spki_pin.clone(),
            ca_spki_pin: self.ca_spki_pin.clone(),
        }
    }
}

impl TestPki {
    /// A fresh CA (common name [`CA_COMMON_NAME`]), its PEM written to `<tempdir>/ca.pem`.
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("create temp dir for the test PKI");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generate CA key");
        let ca_spki_pin = spki_pin_of(&key.subject_public_key_info());
        let ca = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA PEM");
        TestPki {
            dir,
            ca_file,
            ca,
            ca_spki_pin,
        }
    }

    /// Path of the CA certificate PEM (what dotstub's `ca_file` points at).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The temporary directory, removed with the `TestPki`; tests put config files here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate in DER, for clients that build their trust store in memory.
    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A new key pair and leaf certificate for `dns_name` (SAN dNSName), signed by this CA.
    pub fn leaf(&self, dns_name: &str) -> ServerIdentity {
        let mut params = CertificateParams::new(vec![dns_name.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate leaf key");
        let leaf = params.signed_by(&key, &self.ca).expect("sign leaf");
        ServerIdentity {
            chain: vec![leaf.der().clone(), self.ca_cert()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            leaf_spki_pin: spki_pin_of(&key.subject_public_key_info()),
            ca_spki_pin: self.ca_spki_pin.clone(),
        }
    }
}

/// The pin of a DER SubjectPublicKeyInfo: base64 (standard, padded) of its SHA-256
/// (the `pin-sha256` form of RFC 7469 and RFC 8310).
pub fn spki_pin_of(spki_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    data_encoding::BASE64.encode(digest.as_ref())
}
