//! SPKI pins (RFC 7858 §4.2, RFC 7469 §2.4): SHA-256 digests of a
//! certificate's SubjectPublicKeyInfo, and the rustls verifier that demands
//! a normal chain check *and* a pin match.

use std::{fmt, str::FromStr, sync::Arc};

use data_encoding::BASE64;
use ring::digest;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime},
};
use webpki::VerifiedPath;

/// Length of a SHA-256 digest.
const PIN_LEN: usize = 32;

/// SHA-256 of a DER SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin([u8; PIN_LEN]);

impl SpkiPin {
    /// The pin of one certificate, or `None` when it does not parse.
    pub fn of_certificate(certificate: &CertificateDer<'_>) -> Option<Self> {
        let cert = webpki::EndEntityCert::try_from(certificate).ok()?;
        Some(Self::of_spki(cert.subject_public_key_info().as_ref()))
    }

    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        let mut pin = [0u8; PIN_LEN];
        pin.copy_from_slice(digest::digest(&digest::SHA256, spki_der).as_ref());
        Self(pin)
    }
}

/// A pin that is not base64 of a 32-octet digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected base64 of a 32-octet SHA-256 digest (44 characters), found {0:?}")]
pub struct BadPin(pub String);

impl FromStr for SpkiPin {
    type Err = BadPin;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        BASE64
            .decode(text.as_bytes())
            .ok()
            .and_then(|bytes| <[u8; PIN_LEN]>::try_from(bytes).ok())
            .map(Self)
            .ok_or_else(|| BadPin(text.to_owned()))
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(&self.0))
    }
}

//---- PinnedVerifier ----

/// Verifies the chain and name with webpki first, then requires a pinned
/// key on a *verified* path: the end entity, the intermediates that chain
/// it to a trusted root, or that root. A certificate merely sent along
/// proves nothing: certificates are public, so an impostor could append
/// the real server's.
#[derive(Debug)]
pub(super) struct PinnedVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Vec<TrustAnchor<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    pins: Vec<SpkiPin>,
}

impl PinnedVerifier {
    pub(super) fn new(
        webpki: Arc<WebPkiServerVerifier>,
        roots: Vec<TrustAnchor<'static>>,
        algorithms: WebPkiSupportedAlgorithms,
        pins: Vec<SpkiPin>,
    ) -> Self {
        Self {
            webpki,
            roots,
            algorithms,
            pins,
        }
    }

    /// Whether `path` holds a pinned key.
    fn path_is_pinned(&self, path: &VerifiedPath<'_>) -> bool {
        let anchor = webpki::spki_for_anchor(path.anchor());
        std::iter::once(path.end_entity().subject_public_key_info())
            .chain(
                path.intermediate_certificates()
                    .map(|cert| cert.subject_public_key_info()),
            )
            .chain(std::iter::once(anchor))
            .any(|spki| self.pins.contains(&SpkiPin::of_spki(spki.as_ref())))
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let unpinned =
            || rustls::Error::General("no verified certificate chain holds a pinned key".into());
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| unpinned())?;
        // A path without a pin is refused here, so webpki goes on to try
        // the other paths the presented certificates allow.
        let pinned = |path: &VerifiedPath<'_>| {
            if self.path_is_pinned(path) {
                Ok(())
            } else {
                Err(webpki::Error::UnknownIssuer)
            }
        };
        cert.verify_for_usage(
            self.algorithms.all,
            &self.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&pinned),
        )
        .map_err(|_| unpinned())?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_base64() {
        let text = "pin+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let pin: SpkiPin = text.parse().unwrap();
        assert_eq!(pin.to_string(), text);
    }

    #[test]
    fn refuses_wrong_lengths_and_alphabets() {
        for text in ["", "abc", "AAAA", "not base64 at all!!", &"A".repeat(64)] {
            assert!(text.parse::<SpkiPin>().is_err(), "{text}");
        }
    }

    #[test]
    fn pin_of_certificate_hashes_its_spki() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["dot.test".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let from_cert = SpkiPin::of_certificate(cert.der()).unwrap();
        assert_eq!(
            from_cert,
            SpkiPin::of_spki(&rcgen::PublicKeyData::subject_public_key_info(&key))
        );
        assert_eq!(
            SpkiPin::of_certificate(&CertificateDer::from(vec![1, 2, 3])),
            None
        );
    }
}
