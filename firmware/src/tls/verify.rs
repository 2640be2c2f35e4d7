//! The broker's certificate, checked against the CA the node was provisioned with, or against the
//! SHA-256 pin of that CA.
//!
//! `embedded-tls`'s `pki::CertVerifier` does the work: each certificate of the chain signed by the
//! one above it, up to the provisioned CA (ECDSA P-256, SHA-256); the server certificate's DNS names
//! (subject alternative names, else the common name, RFC 6125 §6.4.4) against the broker's host name;
//! the CertificateVerify signature over the handshake (RFC 8446 §4.4.3). Validity dates are not checked:
//! the node has no calendar clock ([`NoClock`], firmware/README.md).
//!
//! With a pin ([`Trust::Pin`]) the node carries no certificate: the broker must send its CA as the last
//! certificate of its chain, the SHA-256 of that certificate's DER must equal the pin, and that
//! certificate (copied into the anchor of `TlsBuffers`, [`MAX_CA_DER`] bytes) is then the trust anchor of
//! the same `CertVerifier` checks: the chain up to it, which includes the CA's own self-signature,
//! the host name and the handshake signature.
//!
//! `CertVerifier` answers a chain that does not verify and a name that does not match with the same
//! error, so [`NodeVerifier`] names the cause itself: if the server certificate carries the host name,
//! the chain failed. The classification only chooses the words of the report; the verdict is
//! `CertVerifier`'s.

use embedded_tls::pki::CertVerifier;
use embedded_tls::{Aes128GcmSha256, Certificate, CertificateEntryRef, NoClock, TlsError, TlsVerifier};
use rackwatch_protocols::MAX_CA_DER;
use sha2::{Digest, Sha256};

use crate::transport::LinkFailure;

/// The server certificate kept between the Certificate and CertificateVerify messages: a P-256
/// certificate with a few names is about 500 bytes; with a pin the chain includes the CA (about 450).
pub const MAX_SERVER_CERTIFICATE: usize = 1024;

/// The CA the broker's certificate must chain to (this module's documentation tells how each is
/// checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust<'a> {
    /// The CA certificate the node was provisioned with (DER).
    Ca(&'a [u8]),
    /// The SHA-256 of the CA certificate's DER: the broker must send that CA last in its chain.
    Pin([u8; 32]),
}

type Verifier<'a> = CertVerifier<'a, Aes128GcmSha256, NoClock, MAX_SERVER_CERTIFICATE>;

/// `CertVerifier`, and why it refused.
pub(super) struct NodeVerifier<'a> {
    /// The verifier; with a pin, made once the broker's CA has matched it.
    inner: Option<Verifier<'a>>,
    /// With a pin: the pin, and where the broker's CA is copied to serve as the anchor.
    pinned: Option<([u8; 32], &'a mut [u8; MAX_CA_DER])>,
    host: &'a str,
    pub(super) refused: Option<LinkFailure>,
}

impl<'a> NodeVerifier<'a> {
    /// `anchor` is only written with a pin.
    pub(super) fn new(trust: Trust<'a>, host: &'a str, anchor: &'a mut [u8; MAX_CA_DER]) -> Self {
        let (inner, pinned) = match trust {
            Trust::Ca(ca_der) => (Some(CertVerifier::new(Certificate::X509(ca_der))), None),
            Trust::Pin(pin) => (None, Some((pin, anchor))),
        };
        NodeVerifier {
            inner,
            pinned,
            host,
            refused: None,
        }
    }

    /// The verifier whose anchor is the CA the broker sent, if its SHA-256 is the pin.
    fn anchored_by_pin(&mut self, chain: &embedded_tls::CertificateRef) -> Result<Verifier<'a>, TlsError> {
        let (pin, anchor) = self.pinned.take().ok_or(TlsError::InvalidCertificate)?;
        let ca = match chain.entries.last() {
            // With the server certificate alone there is no CA to compare.
            Some(CertificateEntryRef::X509(der)) if chain.entries.len() > 1 => *der,
            _ => &[],
        };
        let copy = anchor.get_mut(..ca.len());
        match copy {
            Some(copy) if !ca.is_empty() && Sha256::digest(ca).as_slice() == pin => {
                copy.copy_from_slice(ca);
                let copy: &'a [u8] = copy;
                let mut inner = CertVerifier::new(Certificate::X509(copy));
                inner.set_hostname_verification(self.host)?;
                Ok(inner)
            }
            _ => {
                self.refused = Some(LinkFailure::PinMismatch);
                Err(TlsError::InvalidCertificate)
            }
        }
    }
}

impl TlsVerifier<Aes128GcmSha256> for NodeVerifier<'_> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        match &mut self.inner {
            Some(inner) => inner.set_hostname_verification(hostname),
            // Set when the pinned CA arrives; the engine passes the same name as `host`.
            None => Ok(()),
        }
    }

    fn verify_certificate(
        &mut self,
        transcript: &<Aes128GcmSha256 as embedded_tls::TlsCipherSuite>::Hash,
        cert: embedded_tls::CertificateRef,
    ) -> Result<(), TlsError> {
        if self.inner.is_none() {
            self.inner = Some(self.anchored_by_pin(&cert)?);
        }
        let leaf = match cert.entries.first() {
            Some(CertificateEntryRef::X509(der)) => *der,
            _ => &[],
        };
        let names_host = names_host(leaf, self.host);
        let inner = self.inner.as_mut().ok_or(TlsError::InvalidCertificate)?;
        let verdict = inner.verify_certificate(transcript, cert);
        if verdict.is_err() {
            self.refused = Some(if names_host {
                LinkFailure::UnknownCa
            } else {
                LinkFailure::WrongHostName
            });
        }
        verdict
    }

    fn verify_signature(&mut self, verify: embedded_tls::CertificateVerifyRef) -> Result<(), TlsError> {
        let inner = self.inner.as_mut().ok_or(TlsError::InvalidSignature)?;
        let verdict = inner.verify_signature(verify);
        if verdict.is_err() {
            self.refused = Some(LinkFailure::BadSignature);
        }
        verdict
    }
}

/// DER tag of a `dNSName` in a subject alternative name (RFC 5280 §4.2.1.6: `[2] IA5String`).
const DNS_NAME: u8 = 0x82;
/// The common name attribute (OID 2.5.4.3) as DER.
const COMMON_NAME_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];

/// Whether a DNS name or the common name in `der` matches `host` (exactly, or a `*.` wildcard for
/// its first label). A scan for the encodings, not a parse: it only words the report.
pub(super) fn names_host(der: &[u8], host: &str) -> bool {
    let host = host.as_bytes();
    let mut at = 0;
    while let Some(rest) = der.get(at..) {
        let name = match rest {
            [DNS_NAME, len, tail @ ..] => tail.get(..usize::from(*len)),
            [o0, o1, o2, o3, o4, _string_tag, len, tail @ ..]
                if [*o0, *o1, *o2, *o3, *o4] == COMMON_NAME_OID =>
            {
                tail.get(..usize::from(*len))
            }
            [] => break,
            _ => None,
        };
        if name.is_some_and(|name| name_matches(name, host)) {
            return true;
        }
        at += 1;
    }
    false
}

fn name_matches(name: &[u8], host: &[u8]) -> bool {
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some(suffix) = name.strip_prefix(b"*") else {
        return false;
    };
    let first_dot = host.iter().position(|&b| b == b'.');
    first_dot
        .and_then(|dot| host.get(dot..))
        .is_some_and(|host_suffix| suffix.starts_with(b".") && suffix.eq_ignore_ascii_case(host_suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_name_or_wildcard_names_the_host() {
        let san = [&[0x30, 0x0c, DNS_NAME, 10][..], b"broker.lab"].concat();
        assert!(names_host(&san, "broker.lab"));
        assert!(names_host(&san, "BROKER.lab"));
        assert!(!names_host(&san, "other.lab"));
        let wildcard = [&[DNS_NAME, 5][..], b"*.lab"].concat();
        assert!(names_host(&wildcard, "broker.lab"));
        assert!(!names_host(&wildcard, "a.broker.lab"));
        let cn = [&COMMON_NAME_OID[..], &[0x0c, 6], b"broker"].concat();
        assert!(names_host(&cn, "broker"));
        assert!(!names_host(&cn, "brok"));
    }
}
