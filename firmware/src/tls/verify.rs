//! The broker's certificate, checked against the CA the node was provisioned with.
//!
//! `embedded-tls`'s `pki::CertVerifier` does the work: each certificate of the chain signed by the
//! one above it, up to the provisioned CA (ECDSA P-256, SHA-256); the server certificate's DNS names
//! (subject alternative names, else the common name, RFC 6125 §6.4.4) against the broker's host name;
//! the CertificateVerify signature over the handshake (RFC 8446 §4.4.3). Validity dates are not checked:
//! the node has no calendar clock ([`NoClock`], firmware/README.md).
//!
//! It answers a chain that does not verify and a name that does not match with the same error, so
//! [`NodeVerifier`] names the cause itself: if the server certificate carries the host name, the
//! chain failed. The classification only chooses the words of the report; the verdict is
//! `CertVerifier`'s.

use embedded_tls::pki::CertVerifier;
use embedded_tls::{Aes128GcmSha256, Certificate, NoClock, TlsError, TlsVerifier};

use crate::transport::LinkFailure;

/// The server certificate kept between the Certificate and CertificateVerify messages: a P-256
/// certificate with a few names is about 500 bytes.
pub const MAX_SERVER_CERTIFICATE: usize = 1024;

/// `CertVerifier`, and why it refused.
pub(super) struct NodeVerifier<'a> {
    inner: CertVerifier<'a, Aes128GcmSha256, NoClock, MAX_SERVER_CERTIFICATE>,
    host: &'a str,
    pub(super) refused: Option<LinkFailure>,
}

impl<'a> NodeVerifier<'a> {
    pub(super) fn new(ca_der: &'a [u8], host: &'a str) -> Self {
        NodeVerifier {
            inner: CertVerifier::new(Certificate::X509(ca_der)),
            host,
            refused: None,
        }
    }
}

impl TlsVerifier<Aes128GcmSha256> for NodeVerifier<'_> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        self.inner.set_hostname_verification(hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &<Aes128GcmSha256 as embedded_tls::TlsCipherSuite>::Hash,
        cert: embedded_tls::CertificateRef,
    ) -> Result<(), TlsError> {
        let leaf = match cert.entries.first() {
            Some(embedded_tls::CertificateEntryRef::X509(der)) => *der,
            _ => &[],
        };
        let names_host = names_host(leaf, self.host);
        self.inner.verify_certificate(transcript, cert).inspect_err(|_| {
            self.refused = Some(if names_host {
                LinkFailure::UnknownCa
            } else {
                LinkFailure::WrongHostName
            });
        })
    }

    fn verify_signature(&mut self, verify: embedded_tls::CertificateVerifyRef) -> Result<(), TlsError> {
        self.inner
            .verify_signature(verify)
            .inspect_err(|_| self.refused = Some(LinkFailure::BadSignature))
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
