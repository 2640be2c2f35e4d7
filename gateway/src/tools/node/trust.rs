//! `rackwatch node provision --tls --ca FILE [--ca-pin] [--server-name NAME]`: what the node will trust.

use std::path::Path;

use rackwatch_protocols::{CaCertificate, CaPin, MAX_CA_DER};
use sha2::{Digest, Sha256};

/// The provisioned trust: the CA certificate, or its pin.
#[derive(Debug, Clone, PartialEq)]
pub enum Trust {
    Ca(Box<CaCertificate>),
    Pin(CaPin),
}

/// Reads the broker's CA (PEM with one certificate, or DER) from `path`: the certificate itself, or
/// with `pin` the SHA-256 of its DER (for nodes whose configuration store is too small for it).
pub fn read_trust(path: &Path, pin: bool) -> Result<Trust, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
    let der = ca_der(&bytes).map_err(|e| format!("--ca {}: {e}", path.display()))?;
    if pin {
        return Ok(Trust::Pin(pin_of(&der)));
    }
    CaCertificate::new(&der)
        .map(|ca| Trust::Ca(Box::new(ca)))
        .ok_or_else(|| {
            format!(
                "--ca {}: the certificate is {} bytes, a node takes at most {MAX_CA_DER}; use --ca-pin",
                path.display(),
                der.len()
            )
        })
}

/// The SHA-256 of a certificate's DER, as the node compares it.
pub fn pin_of(der: &[u8]) -> CaPin {
    CaPin(Sha256::digest(der).into())
}

/// The DER of the one certificate in `bytes` (PEM or DER).
fn ca_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let mut reader = bytes;
    let mut certificates = rustls_pemfile::certs(&mut reader);
    let first = certificates
        .next()
        .ok_or("no certificate in it (PEM \"CERTIFICATE\" or DER expected)")?
        .map_err(|e| format!("not PEM: {e}"))?;
    if certificates.next().is_some() {
        return Err("more than one certificate: give the CA alone".into());
    }
    Ok(first.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_der_give_the_same_certificate_and_pin() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.der"), der).unwrap();
        std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
        let from_der = read_trust(&dir.path().join("ca.der"), false).unwrap();
        assert_eq!(from_der, read_trust(&dir.path().join("ca.pem"), false).unwrap());
        assert_eq!(from_der, Trust::Ca(Box::new(CaCertificate::new(&der).unwrap())));
        let Trust::Pin(pin) = read_trust(&dir.path().join("ca.pem"), true).unwrap() else {
            panic!("a pin was asked for");
        };
        assert_eq!(pin, pin_of(&der));
        std::fs::write(dir.path().join("two.pem"), format!("{pem}{pem}")).unwrap();
        assert!(
            read_trust(&dir.path().join("two.pem"), false)
                .unwrap_err()
                .contains("more than one")
        );
        std::fs::write(dir.path().join("big.der"), [0x30; MAX_CA_DER + 1]).unwrap();
        assert!(
            read_trust(&dir.path().join("big.der"), false)
                .unwrap_err()
                .contains("--ca-pin")
        );
    }
}
